use brevet_audit::AuditDraft;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{audit::append, millis, Store, StoreError};

/// A write that must not happen while the kill switch locks `principal`: checked by the write's
/// own statement, so no lock can land between a check and the write (see
/// [`crate::Step::unless_locked`]).
#[derive(Debug, Clone, Copy)]
pub struct Unlocked<'a> {
    pub principal: &'a str,
    /// Whether the everyone-lock (`*`) binds them too: it spares admins, so that someone can
    /// lift it.
    pub everyone_lock_binds: bool,
}

impl Unlocked<'_> {
    /// The condition, for a statement whose parameter `$n` is bound to [`Unlocked::principal`].
    pub(crate) fn sql(&self, n: usize) -> String {
        if self.everyone_lock_binds {
            format!(
                " AND NOT EXISTS (SELECT 1 FROM principal_locks WHERE principal IN (${n}, '*'))"
            )
        } else {
            format!(" AND NOT EXISTS (SELECT 1 FROM principal_locks WHERE principal = ${n})")
        }
    }

    /// After a write with [`Unlocked::sql`] changed nothing: the lock that stopped it, if that
    /// is why (read in the same transaction, so it is the lock the write saw).
    pub(crate) async fn lock_that_stopped(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Option<PrincipalLock>, StoreError> {
        Ok(read_locks_on(conn, self.principal)
            .await?
            .binding(self.everyone_lock_binds))
    }
}

/// A kill-switch lock on one principal (or `*`, everyone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalLock {
    pub principal: String,
    pub reason: String,
    pub locked_by: String,
    pub locked_at: DateTime<Utc>,
}

impl Store {
    /// Locks `principal` (or `*`), with its audit event, atomically. Locking again keeps the first
    /// lock's record and still succeeds.
    pub async fn lock_principal(
        &self,
        lock: &PrincipalLock,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO principal_locks (principal, reason, locked_by, locked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (principal) DO NOTHING",
        )
        .bind(&lock.principal)
        .bind(&lock.reason)
        .bind(&lock.locked_by)
        .bind(millis(lock.locked_at))
        .execute(&mut *tx)
        .await?;
        append(&mut tx, audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Removes a lock; returns whether there was one.
    pub async fn unlock_principal(
        &self,
        principal: &str,
        audit: Vec<AuditDraft>,
    ) -> Result<bool, StoreError> {
        self.delete_audited(
            "DELETE FROM principal_locks WHERE principal = $1",
            principal,
            audit,
        )
        .await
    }

    pub async fn locks(&self) -> Result<Vec<PrincipalLock>, StoreError> {
        let rows = sqlx::query("SELECT principal, reason, locked_by, locked_at FROM principal_locks ORDER BY principal")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(lock_from_row).collect()
    }

    /// The locks that bear on `principal`: its own and the everyone-lock, kept apart so a
    /// caller can never mistake one for the other (admins are spared only by the everyone-lock).
    /// Read on every request: by primary key, however many principals are locked.
    pub async fn locks_on(&self, principal: &str) -> Result<LocksOn, StoreError> {
        read_locks_on(&self.reader, principal).await
    }
}

/// [`Store::locks_on`], read through `db`: the store's readers, or a write transaction that
/// must see the locks as its own statements do.
async fn read_locks_on<'e, E>(db: E, principal: &str) -> Result<LocksOn, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT principal, reason, locked_by, locked_at FROM principal_locks \
         WHERE principal IN ($1, '*')",
    )
    .bind(principal)
    .fetch_all(db)
    .await?;
    let mut on = LocksOn::default();
    for l in rows.iter().map(lock_from_row) {
        let l = l?;
        if l.principal == "*" {
            on.everyone = Some(l);
        } else if l.principal == principal {
            on.own = Some(l);
        }
    }
    Ok(on)
}

fn lock_from_row(r: &sqlx::any::AnyRow) -> Result<PrincipalLock, StoreError> {
    let at: i64 = r.try_get(3)?;
    Ok(PrincipalLock {
        principal: r.try_get(0)?,
        reason: r.try_get(1)?,
        locked_by: r.try_get(2)?,
        locked_at: Utc.timestamp_millis_opt(at).single().unwrap_or_default(),
    })
}

/// The kill-switch locks that bear on one principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocksOn {
    /// A lock on this principal by name.
    pub own: Option<PrincipalLock>,
    /// The everyone-lock (`*`), if engaged.
    pub everyone: Option<PrincipalLock>,
}

impl LocksOn {
    /// The lock that binds the principal: its own always, the everyone-lock only if it binds
    /// them (it spares admins, so that someone can lift it).
    pub fn binding(self, everyone_lock_binds: bool) -> Option<PrincipalLock> {
        self.own.or(if everyone_lock_binds {
            self.everyone
        } else {
            None
        })
    }
}
