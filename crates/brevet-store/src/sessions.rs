//! Sessions (portal cookie and CLI login) and sign-ins in progress.

use std::collections::BTreeSet;

use brevet_audit::AuditDraft;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;

use crate::{audit::append, millis, Store, StoreError, WriteQuery};

/// A signed-in session. The token itself is never stored: `id_hash` is its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub principal: String,
    pub groups: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    /// The session's anti-CSRF token (portal forms carry it).
    pub csrf: String,
    /// `browser` or `cli`.
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A sign-in in progress: the PKCE verifier (browser) or the device code (CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFlow {
    pub id_hash: String,
    /// `browser` or `device`.
    pub kind: String,
    pub secret: String,
    pub nonce: String,
    pub return_to: String,
    pub expires_at: DateTime<Utc>,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn set(json: &str) -> Result<BTreeSet<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("session set: {e}")))
}

impl Store {
    /// Records a new session with its audit event, atomically.
    pub async fn create_session(
        &self,
        s: &SessionRecord,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, principal, groups_json, roles_json, csrf, kind, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id_hash)
        .bind(&s.principal)
        .bind(serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&s.roles).unwrap_or_else(|_| "[]".into()))
        .bind(&s.csrf)
        .bind(&s.kind)
        .bind(millis(s.created_at))
        .bind(millis(s.expires_at))
        .execute(&mut *tx)
        .await?;
        append(&mut tx, audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// The live session with this token hash, if any (expired sessions are not returned).
    pub async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, principal, groups_json, roles_json, csrf, kind, created_at, expires_at \
             FROM sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(millis(now))
        .fetch_optional(&self.reader)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let groups: String = r.try_get(2)?;
        let roles: String = r.try_get(3)?;
        Ok(Some(SessionRecord {
            id_hash: r.try_get(0)?,
            principal: r.try_get(1)?,
            groups: set(&groups)?,
            roles: set(&roles)?,
            csrf: r.try_get(4)?,
            kind: r.try_get(5)?,
            created_at: at(r.try_get(6)?),
            expires_at: at(r.try_get(7)?),
        }))
    }

    /// Ends one session (sign-out); returns whether it existed. The audit event commits with it.
    pub async fn end_session(
        &self,
        id_hash: &str,
        audit: Vec<AuditDraft>,
    ) -> Result<bool, StoreError> {
        self.delete_audited("DELETE FROM sessions WHERE id_hash = $1", id_hash, audit)
            .await
    }

    /// Ends every session of `principal`; returns how many ended. Used by the kill switch. For
    /// `*` (everyone) it spares the principals listed in `spare` and every session that carries
    /// the admin role (admins signed in through SSO get the role from their groups, not from the
    /// config), so someone can still undo the lock.
    pub async fn end_sessions_of(
        &self,
        principal: &str,
        spare: &[String],
    ) -> Result<u64, StoreError> {
        if principal != "*" {
            return Ok(sqlx::query("DELETE FROM sessions WHERE principal = $1")
                .bind(principal)
                .run_on(self)
                .await?
                .rows_affected());
        }
        let rows = sqlx::query(
            "SELECT id_hash, principal, roles_json FROM sessions WHERE expires_at > $1",
        )
        .bind(millis(Utc::now()))
        .fetch_all(&self.reader)
        .await?;
        let mut ended = 0;
        for r in &rows {
            let principal: String = r.try_get(1)?;
            let roles: BTreeSet<String> =
                serde_json::from_str(&r.try_get::<String, _>(2)?).unwrap_or_default();
            if spare.contains(&principal) || roles.contains("admin") {
                continue;
            }
            ended += sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(r.try_get::<String, _>(0)?)
                .run_on(self)
                .await?
                .rows_affected();
        }
        Ok(ended)
    }

    /// Deletes expired sessions and sign-ins; returns how many rows went.
    pub async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(millis(now))
            .run_on(self)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM login_flows WHERE expires_at <= $1")
            .bind(millis(now))
            .run_on(self)
            .await?
            .rows_affected();
        Ok(a + b)
    }

    pub async fn create_login_flow(&self, f: &LoginFlow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_flows (id_hash, kind, secret, nonce, return_to, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&f.id_hash)
        .bind(&f.kind)
        .bind(&f.secret)
        .bind(&f.nonce)
        .bind(&f.return_to)
        .bind(millis(f.expires_at))
        .run_on(self)
        .await?;
        Ok(())
    }

    /// The live sign-in with this id, left in place (a device sign-in is polled several times).
    pub async fn login_flow(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LoginFlow>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, kind, secret, nonce, return_to, expires_at FROM login_flows WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(millis(now))
        .fetch_optional(&self.reader)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(LoginFlow {
            id_hash: r.try_get(0)?,
            kind: r.try_get(1)?,
            secret: r.try_get(2)?,
            nonce: r.try_get(3)?,
            return_to: r.try_get(4)?,
            expires_at: at(r.try_get(5)?),
        }))
    }

    /// Removes a sign-in; returns whether this call removed it, so only one caller redeems it.
    pub async fn take_login_flow(&self, id_hash: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM login_flows WHERE id_hash = $1")
            .bind(id_hash)
            .run_on(self)
            .await?
            .rows_affected()
            == 1)
    }
}
