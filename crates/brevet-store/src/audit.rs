use brevet_audit::{AuditDraft, AuditEvent};
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{writer::ChainHead, Store, StoreError, WriteTx};

impl Store {
    /// Appends events on their own (drift findings, policy refusals), fail-closed: an error here
    /// is returned to the caller, which must not go on as if the event were recorded.
    pub async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append(&mut tx, drafts, Utc::now()).await?;
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

/// Seals and inserts `drafts` after the chain's head, inside the caller's transaction, and moves
/// the head on. The head is the writer's (see `writer`): read when its physical transaction took
/// the write lock and written back at its commit, so an append here is its inserts alone. Its
/// time is the `brevet_audit_append_seconds` histogram; the events are durable at the commit that
/// follows (`brevet_store_commit_seconds`).
pub(crate) async fn append(
    tx: &mut WriteTx,
    drafts: Vec<AuditDraft>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if drafts.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let out = append_sealed(tx, drafts, now).await;
    metrics::histogram!("brevet_audit_append_seconds").record(started.elapsed().as_secs_f64());
    out
}

/// Events per `INSERT`: 8 parameters each, well under both backends' limits on parameters per
/// statement (SQLite's 32,766, PostgreSQL's 65,535).
const EVENTS_PER_INSERT: usize = 100;

const INSERT_EVENTS: &str =
    "INSERT INTO audit_events (seq, at, kind, actor, request_id, data, prev_hash, hash) VALUES ";

/// The `INSERT` of `rows` events: `$1`–`$8` for the first, `$9`–`$16` for the second, and so
/// on. Most appends are of one event, whose statement is built once.
fn insert_sql(rows: usize) -> std::borrow::Cow<'static, str> {
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| build_insert_sql(1));
    if rows == 1 {
        return ONE.as_str().into();
    }
    build_insert_sql(rows).into()
}

fn build_insert_sql(rows: usize) -> String {
    let mut sql = String::from(INSERT_EVENTS);
    for i in 0..rows {
        let n = i * 8;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        let marks: Vec<String> = (n + 1..=n + 8).map(|k| format!("${k}")).collect();
        sql.push_str(&marks.join(", "));
        sql.push(')');
    }
    sql
}

async fn append_sealed(
    tx: &mut WriteTx,
    drafts: Vec<AuditDraft>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let ChainHead { mut seq, mut hash } = tx.chain_head();
    let mut events = Vec::with_capacity(drafts.len());
    for d in drafts {
        let e = d.seal(seq + 1, now, &hash);
        seq = e.seq;
        hash.clone_from(&e.hash);
        events.push(e);
    }
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let sql = insert_sql(chunk.len());
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.seq)
                .bind(&e.at)
                .bind(&e.kind)
                .bind(&e.actor)
                .bind(&e.request_id)
                .bind(&e.data)
                .bind(&e.prev_hash)
                .bind(&e.hash);
        }
        q.execute(&mut **tx).await?;
    }
    tx.advance_chain(ChainHead { seq, hash });
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_events_row_has_its_own_eight_parameters() {
        let cols = "INSERT INTO audit_events (seq, at, kind, actor, request_id, data, prev_hash, hash) VALUES ";
        assert_eq!(
            super::insert_sql(1),
            format!("{cols}($1, $2, $3, $4, $5, $6, $7, $8)")
        );
        assert_eq!(
            super::insert_sql(2),
            format!(
                "{cols}($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16)"
            )
        );
        assert!(super::insert_sql(100).ends_with("$793, $794, $795, $796, $797, $798, $799, $800)"));
    }
}
