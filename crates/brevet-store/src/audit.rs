use brevet_audit::{AuditDraft, AuditEvent};
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Backend, Store, StoreError, WriteTx};

impl Store {
    /// Appends events on their own (drift findings, policy refusals), fail-closed: an error here
    /// is returned to the caller, which must not go on as if the event were recorded.
    pub async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append(&mut tx, self.backend, drafts, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Events with `seq > after`, oldest first, at most `limit`.
    pub async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, actor, request_id, data, prev_hash, hash FROM audit_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Events about one request, oldest first.
    pub async fn audit_for_request(&self, request_id: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, actor, request_id, data, prev_hash, hash FROM audit_events \
             WHERE request_id = $1 ORDER BY seq",
        )
        .bind(request_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The recorded end of the chain: last sequence number and its hash.
    pub async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

pub(crate) fn event_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        kind: r.try_get(2)?,
        actor: r.try_get(3)?,
        request_id: r.try_get(4)?,
        data: r.try_get(5)?,
        prev_hash: r.try_get(6)?,
        hash: r.try_get(7)?,
    })
}

/// Seals and inserts `drafts` after the current head, inside the caller's transaction. Its time
/// (reading the chain's head, already locked by the writer's physical transaction, and the
/// inserts) is the `brevet_audit_append_seconds` histogram; the events are durable at the commit
/// that follows (`brevet_store_commit_seconds`).
pub(crate) async fn append(
    tx: &mut WriteTx,
    backend: Backend,
    drafts: Vec<AuditDraft>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if drafts.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let out = append_sealed(tx, backend, drafts, now).await;
    metrics::histogram!("brevet_audit_append_seconds").record(started.elapsed().as_secs_f64());
    out
}

async fn append_sealed(
    tx: &mut WriteTx,
    backend: Backend,
    drafts: Vec<AuditDraft>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The writer's physical transaction took this row's lock when it began (see `writer`);
    // asking again costs nothing and keeps the append correct on its own.
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "SELECT seq, hash FROM audit_head WHERE id = 1{lock}"
    ))
    .fetch_one(&mut **tx)
    .await?;
    let (mut seq, mut hash): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
    for d in drafts {
        let e = d.seal(seq + 1, now, &hash);
        sqlx::query(
            "INSERT INTO audit_events (seq, at, kind, actor, request_id, data, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.seq)
        .bind(&e.at)
        .bind(&e.kind)
        .bind(&e.actor)
        .bind(&e.request_id)
        .bind(&e.data)
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&mut **tx)
        .await?;
        seq = e.seq;
        hash = e.hash;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
