//! Taking a grant role away: disable it, end its sessions, roll back the transactions it
//! prepared, clean up after it in every database where it owns something or holds privileges,
//! drop it.
//!
//! What the grantee made must not outlive the grant with anyone's privileges: a `SECURITY
//! DEFINER` function or a trigger on someone else's table runs as its owner or its caller, so
//! handing the role's objects to Brevet's admin (as `REASSIGN OWNED … TO CURRENT_USER` did)
//! would turn a temporary grant into permanent admin access. Objects are dropped (the default) or
//! quarantined under an inert `NOLOGIN` role (`keep_inert`), and every step is recorded.

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, PgPool, Row};

use super::{
    already_exists,
    config::{quote_ident, OnRevokeObjects},
    target_err, PostgresProvider,
};
use crate::ProviderError;

/// One thing revocation did to an object the grant role owned (for the evidence).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct ObjectAction {
    pub database: String,
    pub object: String,
    pub action: &'static str,
}

/// What one revocation found and did; kept for `verify_revoked`'s evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Cleanup {
    /// The role's OID, captured before the drop: sessions that survive it are found by this,
    /// since a dropped role's sessions no longer have a name in `pg_stat_activity`.
    pub role_oid: i64,
    pub sessions_terminated: u64,
    pub databases: Vec<String>,
    pub objects: Vec<ObjectAction>,
    pub on_revoke_objects: &'static str,
}

/// `GRANT <role> TO CURRENT_USER …`: Brevet's login needs the privileges of each grant role to
/// terminate its sessions and to drop or reassign what it owns. A `CREATEROLE` login is not a
/// member of the roles it creates before PostgreSQL 16; from 16 it holds only ADMIN OPTION
/// (without INHERIT or SET) unless `createrole_self_grant` says otherwise.
pub(super) fn membership_sql(role: &str, server_version_num: i32) -> String {
    let q = quote_ident(role);
    if server_version_num >= 160000 {
        format!("GRANT {q} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE")
    } else {
        format!("GRANT {q} TO CURRENT_USER")
    }
}

pub(super) async fn server_version_num(pool: &PgPool) -> Result<i32, ProviderError> {
    let row = sqlx::query("SELECT current_setting('server_version_num')::int4")
        .fetch_one(pool)
        .await
        .map_err(target_err)?;
    row.try_get(0).map_err(target_err)
}

pub(super) async fn role_oid(pool: &PgPool, role: &str) -> Result<Option<i64>, ProviderError> {
    let row = sqlx::query("SELECT oid::int8 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(pool)
        .await
        .map_err(target_err)?;
    row.map(|r| r.try_get(0).map_err(target_err)).transpose()
}

pub(super) async fn sessions_of(pool: &PgPool, oid: i64) -> Result<i64, ProviderError> {
    let row = sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE usesysid::int8 = $1")
        .bind(oid)
        .fetch_one(pool)
        .await
        .map_err(target_err)?;
    row.try_get(0).map_err(target_err)
}

/// How many transactions the role with this OID prepared that are still pending (see
/// `PREPARED`); by OID, so it still finds them after a `DROP ROLE`.
pub(super) async fn prepared_of(pool: &PgPool, oid: i64) -> Result<i64, ProviderError> {
    sqlx::query_scalar("SELECT count(*) FROM pg_prepared_xact() WHERE ownerid::int8 = $1")
        .bind(oid)
        .fetch_one(pool)
        .await
        .map_err(target_err)
}

/// Ends every session of the role with this OID and waits (briefly) until they are gone:
/// `pg_terminate_backend` only signals, and a backend still exiting would fail the check.
pub(super) async fn terminate_oid(pool: &PgPool, oid: i64) -> Result<u64, ProviderError> {
    let rows = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid::int8 = $1",
    )
    .bind(oid)
    .fetch_all(pool)
    .await
    .map_err(target_err)?;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while !rows.is_empty() && sessions_of(pool, oid).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(rows.len() as u64)
}

/// Transactions the role prepared (`PREPARE TRANSACTION`, where `max_prepared_transactions` is
/// above 0), by the role's OID: (database, the statement that rolls one back, its description).
/// A prepared transaction outlives its session, `pg_terminate_backend` and even `DROP ROLE`: it
/// keeps its locks (a `DROP OWNED` waits on them for ever, and so does any DDL on a table it
/// wrote), and anyone allowed to may `COMMIT PREPARED` it later, landing the grantee's writes
/// after the grant. `pg_prepared_xact()` (what the `pg_prepared_xacts` view reads) gives the
/// owner's OID, readable without privileges; `%L` quotes the grantee's chosen identifier.
const PREPARED: &str = "SELECT d.datname::text, format('ROLLBACK PREPARED %L', p.gid), \
       format('prepared transaction %L', p.gid) \
     FROM pg_prepared_xact() p JOIN pg_database d ON d.oid = p.dbid \
     WHERE p.ownerid::int8 = $1 ORDER BY p.prepared";

/// Rows of (statement to run, object it acts on) from a query over the database's catalogs;
/// `$1` is the role's OID, `$2` the inert owner's name. Names in the statements come from
/// `format('%I')` and the `reg*` types' output, so an object name is never code.
async fn planned(
    pool: &PgPool,
    sql: &str,
    oid: i64,
    inert: &str,
) -> Result<Vec<(String, String)>, ProviderError> {
    let mut query = sqlx::query(sql).bind(oid);
    if sql.contains("$2") {
        query = query.bind(inert);
    }
    let rows = query.fetch_all(pool).await.map_err(target_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(target_err)?,
                r.try_get(1).map_err(target_err)?,
            ))
        })
        .collect()
}

/// Everything the role owns in the connected database, described (for the evidence).
const OWNED_OBJECTS: &str =
    "SELECT '', pg_describe_object(classid, objid, objsubid) FROM pg_shdepend \
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
       AND refclassid = 'pg_authid'::regclass AND refobjid::int8 = $1 AND deptype = 'o' ORDER BY 2";

/// Triggers and event triggers that call a function the role owns. A trigger's function is
/// checked for EXECUTE only when the trigger is created, and it runs as whoever fires it, so the
/// function goes, and its triggers with it (CASCADE needs no ownership of the triggers' tables).
const TRIGGER_FUNCTIONS: &str = "SELECT format('DROP FUNCTION %s CASCADE', p.oid::regprocedure), \
       format('function %s, used by %s', p.oid::regprocedure, string_agg(t.what, ', ' ORDER BY t.what)) \
     FROM pg_proc p JOIN ( \
       SELECT tgfoid AS f, format('trigger %I on %s', tgname, tgrelid::regclass) AS what FROM pg_trigger WHERE NOT tgisinternal \
       UNION ALL SELECT evtfoid, format('event trigger %I', evtname) FROM pg_event_trigger) t ON t.f = p.oid \
     WHERE p.proowner::int8 = $1 GROUP BY p.oid ORDER BY 2";

const SECURITY_DEFINER: &str = "SELECT format('ALTER ROUTINE %s SECURITY INVOKER', p.oid::regprocedure), \
       format('routine %s', p.oid::regprocedure) \
     FROM pg_proc p WHERE p.proowner::int8 = $1 AND p.prosecdef \
       AND p.oid NOT IN (SELECT tgfoid FROM pg_trigger UNION SELECT evtfoid FROM pg_event_trigger) ORDER BY 2";

/// Every privilege others hold on the role's relations, routines and schemas, PUBLIC's
/// included (routines are executable by PUBLIC unless revoked): a kept object is readable or
/// callable by nobody until a DBA adopts it. `$routines` narrows the routines.
macro_rules! privileges {
    ($routines:literal) => {
        concat!(
            "SELECT format('REVOKE ALL ON %s %s FROM PUBLIC%s CASCADE', kind, name, \
               (SELECT string_agg(', ' || quote_ident(r.rolname), '') FROM aclexplode(acl) a \
                JOIN pg_roles r ON r.oid = a.grantee WHERE a.grantee <> owner)), \
             format('%s %s', lower(kind), name) \
             FROM ( \
               SELECT 'TABLE' AS kind, c.oid::regclass::text AS name, c.relacl AS acl, c.relowner AS owner FROM pg_class c \
                 WHERE c.relowner::int8 = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
               UNION ALL SELECT 'ROUTINE', p.oid::regprocedure::text, p.proacl, p.proowner FROM pg_proc p \
                 WHERE p.proowner::int8 = $1 ",
            $routines,
            " UNION ALL SELECT 'SCHEMA', quote_ident(n.nspname), n.nspacl, n.nspowner FROM pg_namespace n \
                 WHERE n.nspowner::int8 = $1 \
             ) o ORDER BY 2"
        )
    };
}
/// For the quarantine: trigger functions are left out here and in `SECURITY_DEFINER`, because
/// `TRIGGER_FUNCTIONS` drops them first, in the same transaction.
const PRIVILEGES: &str = privileges!(
    "AND p.oid NOT IN (SELECT tgfoid FROM pg_trigger UNION SELECT evtfoid FROM pg_event_trigger)"
);
/// For the disarming, which runs before anything is dropped: every routine.
const PRIVILEGES_ALL: &str = privileges!("");

/// Schemas holding the role's objects that it does not own: the inert owner needs `CREATE` on
/// them, because PostgreSQL refuses to give an object to a role that cannot create it there
/// (`pg_toast` aside: a table's TOAST table follows the table). Taken back once the objects are
/// its, so the inert owner keeps no privilege (`SCHEMAS_AFTER_INERT`).
macro_rules! schemas_for_inert {
    ($statement:literal) => {
        concat!(
            "SELECT DISTINCT format('",
            $statement,
            "', n.nspname, $2::text), format('schema %I', n.nspname) \
             FROM pg_namespace n WHERE n.nspowner::int8 <> $1 AND n.nspname <> 'pg_toast' AND n.oid IN ( \
               SELECT relnamespace FROM pg_class WHERE relowner::int8 = $1 \
               UNION SELECT pronamespace FROM pg_proc WHERE proowner::int8 = $1 \
               UNION SELECT typnamespace FROM pg_type WHERE typowner::int8 = $1 \
               UNION SELECT connamespace FROM pg_conversion WHERE conowner::int8 = $1 \
               UNION SELECT oprnamespace FROM pg_operator WHERE oprowner::int8 = $1 \
               UNION SELECT collnamespace FROM pg_collation WHERE collowner::int8 = $1) ORDER BY 2"
        )
    };
}
const SCHEMAS_FOR_INERT: &str = schemas_for_inert!("GRANT CREATE ON SCHEMA %I TO %I");
const SCHEMAS_AFTER_INERT: &str = schemas_for_inert!("REVOKE CREATE ON SCHEMA %I FROM %I");

/// Disarming, before anything is dropped or moved: every routine the role owns, trigger
/// functions included, stops running as its owner (`SECURITY DEFINER` off).
const DISARM_SECURITY_DEFINER: &str =
    "SELECT format('ALTER ROUTINE %s SECURITY INVOKER', p.oid::regprocedure), \
       format('routine %s', p.oid::regprocedure) \
     FROM pg_proc p WHERE p.proowner::int8 = $1 AND p.prosecdef ORDER BY 2";

/// Disarming: what Brevet granted the role in this database (and on it) is taken back, so
/// anything that still runs with the role's privileges — a view it owns, a function — can reach
/// nothing. `$2` is the role's name. Column privileges are not granted by Brevet, so not listed.
const DISARM_GRANTS: &str = "SELECT format('REVOKE ALL ON %s %s FROM %I', k.kind, k.name, $2::text), \
       format('%s %s', lower(k.kind), k.name) \
     FROM pg_shdepend d CROSS JOIN LATERAL ( \
       SELECT CASE d.classid WHEN 'pg_class'::regclass THEN 'TABLE' WHEN 'pg_namespace'::regclass THEN 'SCHEMA' \
                WHEN 'pg_proc'::regclass THEN 'ROUTINE' WHEN 'pg_type'::regclass THEN 'TYPE' \
                WHEN 'pg_database'::regclass THEN 'DATABASE' END AS kind, \
              CASE d.classid WHEN 'pg_class'::regclass THEN d.objid::regclass::text \
                WHEN 'pg_namespace'::regclass THEN (SELECT quote_ident(nspname) FROM pg_namespace WHERE oid = d.objid) \
                WHEN 'pg_proc'::regclass THEN d.objid::regprocedure::text \
                WHEN 'pg_type'::regclass THEN d.objid::regtype::text \
                WHEN 'pg_database'::regclass THEN (SELECT quote_ident(datname) FROM pg_database WHERE oid = d.objid) END AS name) k \
     WHERE d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) \
       AND d.refclassid = 'pg_authid'::regclass AND d.refobjid::int8 = $1 AND d.deptype = 'a' \
       AND k.kind IS NOT NULL AND k.name IS NOT NULL ORDER BY 2";

impl PostgresProvider {
    /// Disables, disconnects, cleans up after and drops `role`; `database` is the resource's
    /// database, when known. `None` when the role did not exist (absent is success).
    pub(super) async fn drop_role(
        &self,
        role: &str,
        database: Option<&str>,
    ) -> Result<Option<Cleanup>, ProviderError> {
        let cluster = self.pool(None);
        let Some(oid) = role_oid(&cluster, role).await? else {
            return Ok(None);
        };
        let version = server_version_num(&cluster).await?;
        let q = quote_ident(role);
        // Membership first: ending the role's sessions and rolling back its prepared
        // transactions need it, and `disable_login` may have to do both. Again on every
        // revocation: a role made by an older Brevet, or restored, may lack it.
        sqlx::raw_sql(&membership_sql(role, version))
            .execute(&cluster)
            .await
            .map_err(target_err)?;
        // NOLOGIN first, so nothing reconnects between ending sessions and dropping the role.
        let (mut sessions_terminated, mut objects) =
            self.disable_login(&cluster, role, oid).await?;
        sessions_terminated += terminate_oid(&cluster, oid).await?;
        // Before anything waits on their locks (see `PREPARED`).
        let (rolled_back, not_rolled_back) = self.roll_back_prepared(role, oid).await?;
        objects.extend(rolled_back);
        let databases = self.databases_of(oid, database).await?;
        let inert = match self.config.on_revoke_objects {
            OnRevokeObjects::Drop => None,
            OnRevokeObjects::KeepInert => Some(self.ensure_inert_owner(version).await?),
        };
        // Disarm everywhere first, statement by statement, each committed on its own: if the
        // cleanup below fails (and is retried), nothing the role left runs with any power meanwhile.
        for db in &databases {
            let acted = disarm(&self.pool(Some(db)), role, oid).await?;
            objects.extend(acted.into_iter().map(|(object, action)| ObjectAction {
                database: db.clone(),
                object,
                action,
            }));
        }
        for db in &databases {
            let pool = self.pool(Some(db));
            let acted = match &inert {
                None => drop_objects(&pool, role, oid).await?,
                Some(inert) => quarantine_objects(&pool, role, oid, inert).await?,
            };
            objects.extend(acted.into_iter().map(|(object, action)| ObjectAction {
                database: db.clone(),
                object,
                action,
            }));
        }
        // None can have been prepared since (the role cannot log in), but should one be there,
        // the role is not dropped: that would leave the transaction behind with no owner that
        // could roll it back but a superuser. Refused, the revocation is retried.
        let left = prepared_of(&cluster, oid).await?;
        if left > 0 {
            return Err(ProviderError::StillPresent(format!(
                "{left} transaction(s) prepared by role {role} are still pending \
                 ({}); the role is not dropped until they are rolled back",
                if not_rolled_back.is_empty() {
                    "prepared after the rollback".to_owned()
                } else {
                    not_rolled_back.join("; ")
                }
            )));
        }
        sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {q}"))
            .execute(&cluster)
            .await
            .map_err(target_err)?;
        // The disarming and the cleanup may both name an action on an object: once is enough.
        let mut seen = std::collections::HashSet::new();
        objects.retain(|o| seen.insert((o.database.clone(), o.object.clone(), o.action)));
        Ok(Some(Cleanup {
            role_oid: oid,
            sessions_terminated,
            databases,
            objects,
            on_revoke_objects: match self.config.on_revoke_objects {
                OnRevokeObjects::Drop => "drop",
                OnRevokeObjects::KeepInert => "keep_inert",
            },
        }))
    }

    /// `ALTER ROLE … NOLOGIN`, which the grantee can make wait for ever: any role may change its
    /// own password, and a transaction that did (`BEGIN; ALTER ROLE CURRENT_USER PASSWORD …`),
    /// left open in a session or prepared, holds the role's `pg_authid` row, so the `ALTER`
    /// waits for it, and nothing after it (ending the sessions above all) would ever run. So
    /// while it waits, the role's sessions are ended and its prepared transactions rolled back,
    /// every 250 ms. Once what held the row is gone the waiting `ALTER` goes through first: it
    /// is queued for the row's lock, ahead of any new session the grantee could open. Should it
    /// still wait after `lock_timeout` (10 s: something Brevet cannot end holds the row) it fails
    /// as a conflict and the revocation is retried. Returns the sessions ended and the
    /// transactions rolled back meanwhile.
    async fn disable_login(
        &self,
        cluster: &PgPool,
        role: &str,
        oid: i64,
    ) -> Result<(u64, Vec<ObjectAction>), ProviderError> {
        let sql = format!(
            "SET LOCAL lock_timeout = '10s'; ALTER ROLE {} NOLOGIN",
            quote_ident(role)
        );
        let nologin = sqlx::raw_sql(&sql).execute(cluster);
        tokio::pin!(nologin);
        let (mut terminated, mut rolled_back) = (0, Vec::new());
        loop {
            tokio::select! {
                done = &mut nologin => {
                    done.map_err(target_err)?;
                    return Ok((terminated, rolled_back));
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    terminated += terminate_oid(cluster, oid).await?;
                    rolled_back.extend(self.roll_back_prepared(role, oid).await?.0);
                }
            }
        }
    }

    /// Rolls back every transaction the role prepared, in whichever database (see `PREPARED`).
    /// `ROLLBACK PREPARED` must come from the database the transaction was prepared in, and from
    /// its owner or a superuser: so from a connection of its own to that database, as the grant
    /// role (Brevet's login is a member with `SET`, see `membership_sql`), closed afterwards so
    /// that no pooled connection is ever left acting as the grant role.
    async fn roll_back_prepared(
        &self,
        role: &str,
        oid: i64,
    ) -> Result<(Vec<ObjectAction>, Vec<String>), ProviderError> {
        let rows = sqlx::query(PREPARED)
            .bind(oid)
            .fetch_all(&self.pool(None))
            .await
            .map_err(target_err)?;
        // One that cannot be rolled back (its database unreachable to Brevet's login, say) does
        // not stop the rest of the revocation: the role is disarmed and cleaned up meanwhile,
        // and only its drop waits (`drop_role` refuses it while one remains, saying why).
        let (mut acted, mut failed) = (Vec::new(), Vec::new());
        for row in &rows {
            let database: String = row.try_get(0).map_err(target_err)?;
            let statement: String = row.try_get(1).map_err(target_err)?;
            let object: String = row.try_get(2).map_err(target_err)?;
            let mut conn =
                match PgConnection::connect_with(&self.admin.clone().database(&database)).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        failed.push(format!(
                            "{object} in database {database}: {}",
                            target_err(e)
                        ));
                        continue;
                    }
                };
            let done = async {
                conn.execute(format!("SET ROLE {}", quote_ident(role)).as_str())
                    .await?;
                conn.execute(statement.as_str()).await
            }
            .await;
            let _ = conn.close().await;
            match done {
                Ok(_) => {}
                // Committed or rolled back by someone else meanwhile: nothing is left of it.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42704") => continue,
                Err(e) => {
                    failed.push(format!(
                        "{object} in database {database}: {}",
                        target_err(e)
                    ));
                    continue;
                }
            }
            acted.push(ObjectAction {
                database,
                object,
                action: "rolled back",
            });
        }
        Ok((acted, failed))
    }

    /// Every database where the role owns objects or holds privileges (`pg_shdepend`), plus the
    /// resource's own: a grantee who made something in another database must not make the
    /// final `DROP ROLE` fail for ever.
    async fn databases_of(
        &self,
        oid: i64,
        resource_db: Option<&str>,
    ) -> Result<Vec<String>, ProviderError> {
        let rows = sqlx::query(
            "SELECT d.datname::text FROM pg_database d WHERE d.datallowconn AND ( \
               d.datname = coalesce($2, current_database()) OR d.oid IN ( \
                 SELECT dbid FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid::int8 = $1)) \
             ORDER BY d.datname = coalesce($2, current_database()) DESC, 1",
        )
        .bind(oid)
        .bind(resource_db)
        .fetch_all(&self.pool(None))
        .await
        .map_err(target_err)?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(target_err))
            .collect()
    }

    /// The role kept objects go to: `NOLOGIN`, `NOINHERIT`, no privileges of its own, a member
    /// of nothing; Brevet's login is a member so that it may hand objects to it.
    async fn ensure_inert_owner(&self, version: i32) -> Result<String, ProviderError> {
        let inert = self.inert_owner();
        let q = quote_ident(&inert);
        let cluster = self.pool(None);
        if role_oid(&cluster, &inert).await?.is_none() {
            let create = format!(
                "CREATE ROLE {q} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT; \
                 COMMENT ON ROLE {q} IS 'brevet inert owner: objects left by revoked grant roles, quarantined'"
            );
            match sqlx::raw_sql(&create).execute(&cluster).await {
                Ok(_) => {}
                // Made by a concurrent revocation in between: fine.
                Err(sqlx::Error::Database(e)) if already_exists(e.as_ref()) => {}
                Err(e) => return Err(target_err(e)),
            }
        }
        // Whoever made it, it must still be inert: objects handed to a role that can log in, or
        // inherits from another, would carry that role's powers.
        let row = sqlx::query(
            "SELECT r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication \
                    OR r.rolbypassrls OR r.rolinherit \
                    OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid), \
                    coalesce(shobj_description(r.oid, 'pg_authid'), '') LIKE 'brevet inert owner:%' \
             FROM pg_roles r WHERE r.rolname = $1",
        )
        .bind(&inert)
        .fetch_one(&cluster)
        .await
        .map_err(target_err)?;
        let (powers, marked): (bool, bool) = (
            row.try_get(0).map_err(target_err)?,
            row.try_get(1).map_err(target_err)?,
        );
        if powers || !marked {
            return Err(ProviderError::Config(format!(
                "refusing to hand objects to `{inert}` (providers.{}.inert_owner): it must be \
                 NOLOGIN NOINHERIT with no attributes or memberships and Brevet's comment; drop \
                 it and let Brevet create it, or name another role",
                self.name
            )));
        }
        sqlx::raw_sql(&membership_sql(&inert, version))
            .execute(&cluster)
            .await
            .map_err(target_err)?;
        Ok(inert)
    }
}

/// Turns off `SECURITY DEFINER` on the role's routines, revokes every privilege others hold on
/// its objects (PUBLIC's `EXECUTE` included), and takes back what Brevet granted it. Each
/// statement commits alone and a failing one does not stop the rest (it is logged; the cleanup
/// that follows covers the same ground and reports its own failure).
async fn disarm(
    pool: &PgPool,
    role: &str,
    oid: i64,
) -> Result<Vec<(String, &'static str)>, ProviderError> {
    let mut acted = Vec::new();
    // The grant role's own privileges before its objects' ACLs: revoking on one of its objects
    // waits for that object's locks, revoking on the resource's tables does not depend on them.
    for (query, action) in [
        (DISARM_SECURITY_DEFINER, "made SECURITY INVOKER"),
        (DISARM_GRANTS, "grant role's privilege revoked"),
        (PRIVILEGES_ALL, "privileges revoked"),
    ] {
        for (statement, object) in planned(pool, query, oid, role).await? {
            match sqlx::raw_sql(&statement).execute(pool).await {
                Ok(_) => acted.push((object, action)),
                Err(e) => {
                    tracing::warn!(role, %object, error = %e, "could not disarm; the cleanup will retry")
                }
            }
        }
    }
    Ok(acted)
}

/// `drop`: everything the role owns goes, with what depends on it (its triggers on other
/// tables), and its privileges are revoked; one statement, so it is all or nothing.
async fn drop_objects(
    pool: &PgPool,
    role: &str,
    oid: i64,
) -> Result<Vec<(String, &'static str)>, ProviderError> {
    let mut acted: Vec<(String, &'static str)> = planned(pool, TRIGGER_FUNCTIONS, oid, "")
        .await?
        .into_iter()
        .map(|(_, object)| (object, "dropped"))
        .collect();
    let owned: Vec<(String, &'static str)> = planned(pool, OWNED_OBJECTS, oid, "")
        .await?
        .into_iter()
        .filter(|(_, object)| !acted.iter().any(|(a, _)| a.starts_with(object.as_str())))
        .map(|(_, object)| (object, "dropped"))
        .collect();
    acted.extend(owned);
    sqlx::raw_sql(&format!("DROP OWNED BY {} CASCADE", quote_ident(role)))
        .execute(pool)
        .await
        .map_err(target_err)?;
    Ok(acted)
}

/// `keep_inert`: trigger functions dropped with their triggers, `SECURITY DEFINER` off, every
/// privilege on the objects revoked, then the objects given to the inert role. One multi-statement
/// query, which PostgreSQL runs as one implicit transaction: all of it or nothing.
async fn quarantine_objects(
    pool: &PgPool,
    role: &str,
    oid: i64,
    inert: &str,
) -> Result<Vec<(String, &'static str)>, ProviderError> {
    const TRIGGER_FUNCTION_DROPPED: &str = "dropped (used by a trigger)";
    let q = quote_ident(role);
    let mut script = String::new();
    let mut acted = Vec::new();
    for (query, action) in [
        (TRIGGER_FUNCTIONS, TRIGGER_FUNCTION_DROPPED),
        (SECURITY_DEFINER, "made SECURITY INVOKER"),
        (PRIVILEGES, "privileges revoked"),
        (SCHEMAS_FOR_INERT, "CREATE granted to the inert owner"),
    ] {
        for (statement, object) in planned(pool, query, oid, inert).await? {
            script += &statement;
            script += ";\n";
            acted.push((object, action));
        }
    }
    let owned = planned(pool, OWNED_OBJECTS, oid, inert).await?;
    let take_back = planned(pool, SCHEMAS_AFTER_INERT, oid, inert).await?;
    script += &format!(
        "REASSIGN OWNED BY {q} TO {};\nDROP OWNED BY {q};\n",
        quote_ident(inert)
    );
    for (statement, _) in take_back {
        script += &statement;
        script += ";\n";
    }
    sqlx::raw_sql(&script)
        .execute(pool)
        .await
        .map_err(target_err)?;
    // What the trigger functions' drop did not take now belongs to the inert owner.
    let dropped: Vec<String> = acted
        .iter()
        .filter(|(_, a)| *a == TRIGGER_FUNCTION_DROPPED)
        .map(|(o, _)| o.clone())
        .collect();
    acted.extend(
        owned
            .into_iter()
            .filter(|(_, object)| !dropped.iter().any(|d| d.starts_with(object.as_str())))
            .map(|(_, object)| (object, "reassigned to the inert owner")),
    );
    Ok(acted)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::{postgres::PgConnectOptions, Connection, PgConnection};

    use super::*;

    /// Fails on 879dbb0 because the check after `DROP ROLE` counted sessions by name
    /// (`usename = $1`), which finds nothing once the role is dropped: a session that survived
    /// the drop went unseen and the revocation was reported verified. Against the real test
    /// cluster: a session outlives an out-of-band `DROP ROLE`; by name it is invisible, by the
    /// OID captured before the drop it is found, and terminated.
    #[tokio::test]
    async fn a_dropped_roles_surviving_session_is_found_by_oid_not_by_name() {
        let url = std::env::var("BREVET_TEST_PG_URL")
            .expect("BREVET_TEST_PG_URL is not set: run the tests with scripts/test");
        let admin = PgPool::connect(&url).await.unwrap();
        let role = format!("brvoid_{}", hex::encode(rand::random::<[u8; 6]>()));
        sqlx::raw_sql(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
            .execute(&admin)
            .await
            .unwrap();
        let oid = role_oid(&admin, &role).await.unwrap().unwrap();
        let opts = PgConnectOptions::from_str(&url)
            .unwrap()
            .username(&role)
            .password("pw");
        let session = PgConnection::connect_with(&opts).await.unwrap();
        sqlx::raw_sql(&format!("DROP ROLE {role}"))
            .execute(&admin)
            .await
            .unwrap();

        let by_name: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
                .bind(&role)
                .fetch_one(&admin)
                .await
                .unwrap();
        assert_eq!(by_name, 0, "by name, the surviving session is invisible");
        assert_eq!(sessions_of(&admin, oid).await.unwrap(), 1);
        assert_eq!(terminate_oid(&admin, oid).await.unwrap(), 1);
        assert_eq!(sessions_of(&admin, oid).await.unwrap(), 0);
        drop(session);
    }
}
