//! PostgreSQL: a grant is a dedicated login role per binding, with exactly the profile's
//! privileges on one database's schemas and `VALID UNTIL` the grant's expiry, so the server itself
//! refuses new logins after expiry even if Brevet is down. Revocation disables the role, ends its
//! sessions (`pg_terminate_backend`), drops its privileges and the role, then reads `pg_roles` back.

mod config;
mod scram;

use std::{collections::HashMap, str::FromStr, sync::Mutex, time::Duration};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Row,
};

pub use config::{quote_ident, quote_literal, PgResource, PostgresConfig, Privilege};

use crate::{Credential, CredentialInput, OwnedAccess, Provider, ProviderError, SecretText};

const COMMENT_PREFIX: &str = "brevet binding ";

pub struct PostgresProvider {
    name: String,
    config: PostgresConfig,
    admin: PgConnectOptions,
    pools: Mutex<HashMap<String, PgPool>>,
}

fn target_err(e: sqlx::Error) -> ProviderError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
            ProviderError::Unreachable(e.to_string())
        }
        // Database errors carry the server's message, which never contains our credentials.
        other => ProviderError::Target(other.to_string()),
    }
}

impl PostgresProvider {
    /// `name` is the provider instance name (the resource-id prefix). Nothing is contacted yet:
    /// the target may be down when Brevet starts, and work is retried until it is back.
    pub fn new(name: &str, config: PostgresConfig) -> Result<Self, ProviderError> {
        let admin = PgConnectOptions::from_str(config.admin_url.expose()).map_err(|_| {
            ProviderError::Config("admin_url is not a valid postgres:// URL".into())
        })?;
        Ok(Self {
            name: name.to_owned(),
            config,
            admin,
            pools: Mutex::new(HashMap::new()),
        })
    }

    fn pool(&self, database: Option<&str>) -> PgPool {
        let key = database.unwrap_or("").to_owned();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(key)
            .or_insert_with(|| {
                let opts = match database {
                    Some(db) => self.admin.clone().database(db),
                    None => self.admin.clone(),
                };
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(opts)
            })
            .clone()
    }

    /// Role names are derived from the binding, so every step is idempotent and needs no lookup.
    pub fn role_name(&self, binding: &Binding) -> String {
        let digest = hex::encode(Sha256::digest(binding.key().as_bytes()));
        format!("{}{}", self.config.role_prefix, &digest[..20])
    }

    fn resource(&self, binding: &Binding) -> Result<&PgResource, ProviderError> {
        self.config
            .resources
            .get(binding.resource.name())
            .ok_or_else(|| ProviderError::UnknownResource(binding.resource.to_string()))
    }

    fn privilege(&self, profile: &ProfileName) -> Result<Privilege, ProviderError> {
        self.config
            .profiles
            .get(profile)
            .copied()
            .ok_or_else(|| ProviderError::UnknownProfile {
                provider: self.name.clone(),
                profile: profile.to_string(),
                offered: self
                    .config
                    .profiles
                    .keys()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    async fn role_exists(&self, role: &str) -> Result<bool, ProviderError> {
        let row = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&self.pool(None))
            .await
            .map_err(target_err)?;
        Ok(row.is_some())
    }

    async fn live_sessions(&self, role: &str) -> Result<i64, ProviderError> {
        let row = sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .fetch_one(&self.pool(None))
            .await
            .map_err(target_err)?;
        row.try_get(0).map_err(target_err)
    }

    async fn terminate(&self, role: &str) -> Result<u64, ProviderError> {
        let rows = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        )
        .bind(role)
        .fetch_all(&self.pool(None))
        .await
        .map_err(target_err)?;
        Ok(rows.len() as u64)
    }

    /// Disables, disconnects and drops `role`; `database` is where its privileges live, if known.
    async fn drop_role(&self, role: &str, database: Option<&str>) -> Result<(), ProviderError> {
        if !self.role_exists(role).await? {
            return Ok(());
        }
        let q = quote_ident(role);
        let cluster = self.pool(None);
        // NOLOGIN first, so nothing reconnects between ending sessions and dropping the role.
        sqlx::raw_sql(&format!("ALTER ROLE {q} NOLOGIN"))
            .execute(&cluster)
            .await
            .map_err(target_err)?;
        self.terminate(role).await?;
        if let Some(db) = database {
            // Objects the role created are kept (given to the admin), then its privileges go.
            let sql = format!("REASSIGN OWNED BY {q} TO CURRENT_USER; DROP OWNED BY {q}");
            sqlx::raw_sql(&sql)
                .execute(&self.pool(Some(db)))
                .await
                .map_err(target_err)?;
        }
        sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {q}"))
            .execute(&cluster)
            .await
            .map_err(target_err)?;
        Ok(())
    }

    fn absent_evidence(&self, role: &str, sessions: i64) -> Evidence {
        Evidence {
            checked_at: Utc::now(),
            observation: serde_json::json!({
                "provider": self.name,
                "check": "SELECT 1 FROM pg_roles WHERE rolname = $1; SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                "role": role,
                "role_exists": false,
                "live_sessions": sessions,
            }),
        }
    }
}

fn grant_sql(role: &str, privilege: Privilege, r: &PgResource) -> String {
    let q = quote_ident(role);
    let mut sql = format!(
        "GRANT CONNECT ON DATABASE {} TO {q};\n",
        quote_ident(&r.database)
    );
    for s in &r.schemas {
        let s = quote_ident(s);
        sql += &format!("GRANT USAGE ON SCHEMA {s} TO {q};\n");
        let (tables, sequences) = match privilege {
            Privilege::Read => ("SELECT", "SELECT"),
            Privilege::Write => ("SELECT, INSERT, UPDATE, DELETE", "SELECT, USAGE"),
            Privilege::Owner => ("ALL PRIVILEGES", "ALL PRIVILEGES"),
        };
        sql += &format!("GRANT {tables} ON ALL TABLES IN SCHEMA {s} TO {q};\n");
        sql += &format!("GRANT {sequences} ON ALL SEQUENCES IN SCHEMA {s} TO {q};\n");
        if privilege == Privilege::Owner {
            sql += &format!("GRANT CREATE ON SCHEMA {s} TO {q};\n");
        }
    }
    sql
}

fn valid_until(t: DateTime<Utc>) -> String {
    quote_literal(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[async_trait]
impl Provider for PostgresProvider {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.config.profiles.keys().cloned().collect()
    }

    async fn ensure(
        &self,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let privilege = self.privilege(&binding.profile)?;
        let resource = self.resource(binding)?;
        let role = self.role_name(binding);
        let q = quote_ident(&role);
        let cluster = self.pool(None);
        let until = valid_until(expires_at);
        if self.role_exists(&role).await? {
            sqlx::raw_sql(&format!("ALTER ROLE {q} LOGIN VALID UNTIL {until}"))
                .execute(&cluster)
                .await
                .map_err(target_err)?;
        } else {
            // No password yet: nobody can log in until credentials are issued to the requester.
            let sql = format!(
                "CREATE ROLE {q} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
                 CONNECTION LIMIT {} VALID UNTIL {until}",
                self.config.connection_limit
            );
            match sqlx::raw_sql(&sql).execute(&cluster).await {
                Ok(_) => {}
                // Another attempt created it in between: fine, ensure is idempotent.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42710") => {
                    sqlx::raw_sql(&format!("ALTER ROLE {q} LOGIN VALID UNTIL {until}"))
                        .execute(&cluster)
                        .await
                        .map_err(target_err)?;
                }
                Err(e) => return Err(target_err(e)),
            }
        }
        let comment = format!(
            "COMMENT ON ROLE {q} IS {}",
            quote_literal(&format!("{COMMENT_PREFIX}{}", binding.key()))
        );
        sqlx::raw_sql(&comment)
            .execute(&cluster)
            .await
            .map_err(target_err)?;
        sqlx::raw_sql(&grant_sql(&role, privilege, resource))
            .execute(&self.pool(Some(&resource.database)))
            .await
            .map_err(target_err)?;
        Ok(())
    }

    async fn issue_credentials(
        &self,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        _input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        let resource = self.resource(binding)?;
        let role = self.role_name(binding);
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let password = hex::encode(raw);
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let verifier = scram::verifier(&password, &salt);
        let sql = format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&role),
            quote_literal(&verifier)
        );
        sqlx::raw_sql(&sql)
            .execute(&self.pool(None))
            .await
            .map_err(target_err)?;
        let host = self
            .config
            .connect_host
            .clone()
            .unwrap_or_else(|| self.admin.get_host().to_owned());
        let port = self
            .config
            .connect_port
            .unwrap_or_else(|| self.admin.get_port());
        let url = format!(
            "postgres://{role}:{password}@{host}:{port}/{}",
            resource.database
        );
        Ok(Credential {
            kind: "postgres_connection_string",
            secret: SecretText::new(url),
            details: serde_json::json!({"user": role, "host": host, "port": port, "database": resource.database}),
            expires_at,
        })
    }

    async fn revoke(&self, binding: &Binding) -> Result<(), ProviderError> {
        let resource = self.resource(binding)?;
        self.drop_role(&self.role_name(binding), Some(&resource.database))
            .await
    }

    async fn verify_revoked(&self, binding: &Binding) -> Result<Evidence, ProviderError> {
        let role = self.role_name(binding);
        if self.role_exists(&role).await? {
            return Err(ProviderError::StillPresent(format!(
                "role {role} still exists in pg_roles"
            )));
        }
        let sessions = self.live_sessions(&role).await?;
        if sessions > 0 {
            return Err(ProviderError::StillPresent(format!(
                "{sessions} sessions of role {role} are still open"
            )));
        }
        Ok(self.absent_evidence(&role, sessions))
    }

    async fn list_owned(&self) -> Result<Vec<OwnedAccess>, ProviderError> {
        let pattern = format!(
            "{}%",
            self.config
                .role_prefix
                .replace('\\', "\\\\")
                .replace('_', "\\_")
                .replace('%', "\\%")
        );
        let rows = sqlx::query(
            "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname",
        )
        .bind(pattern)
        .fetch_all(&self.pool(None))
        .await
        .map_err(target_err)?;
        rows.iter()
            .map(|r| {
                let native_id: String = r.try_get(0).map_err(target_err)?;
                let comment: Option<String> = r.try_get(1).map_err(target_err)?;
                let binding_key =
                    comment.and_then(|c| c.strip_prefix(COMMENT_PREFIX).map(str::to_owned));
                Ok(OwnedAccess {
                    native_id,
                    binding_key,
                })
            })
            .collect()
    }

    async fn remove_owned(&self, owned: &OwnedAccess) -> Result<Evidence, ProviderError> {
        if !owned.native_id.starts_with(&self.config.role_prefix) {
            return Err(ProviderError::Config(format!(
                "refusing to drop `{}`: it lacks Brevet's role prefix",
                owned.native_id
            )));
        }
        // The database its privileges live in, when the binding is still recorded on the role.
        let database = owned
            .binding_key
            .as_deref()
            .and_then(|k| k.split('|').nth(1))
            .and_then(|res| res.split_once(':'))
            .and_then(|(_, name)| self.config.resources.get(name))
            .map(|r| r.database.clone());
        self.drop_role(&owned.native_id, database.as_deref())
            .await?;
        if self.role_exists(&owned.native_id).await? {
            return Err(ProviderError::StillPresent(owned.native_id.clone()));
        }
        let sessions = self.live_sessions(&owned.native_id).await?;
        Ok(self.absent_evidence(&owned.native_id, sessions))
    }

    async fn terminate_sessions(&self, binding: &Binding) -> Result<u64, ProviderError> {
        self.terminate(&self.role_name(binding)).await
    }
}
