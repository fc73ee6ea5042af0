//! The notification outbox: deliveries derived from the audit log, claimed by workers with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and retried until delivered or given up.

use std::time::Duration;

use brevet_audit::AuditEvent;
use brevet_core::{Request, RequestState};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{audit::event_from_row, millis, Backend, Store, StoreError, WriteQuery, WriteTx};

/// Where a delivery is in its life: waiting (first try or a retry), done, or given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A delivery to queue: what goes to whom, and the key that makes it unique for that subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// `webhook:<name>`, `slack:channel`, `slack:dm`, `slack:response`, `email`.
    pub subscriber: String,
    /// `audit:<seq>` for audit events, `expiring:<request id>`, or any unique text.
    pub event_key: String,
    /// The public event type, e.g. `request.created`.
    pub event_type: String,
    pub request_id: Option<String>,
    pub payload: serde_json::Value,
}

/// A stored delivery and what has happened to it so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub subscriber: String,
    pub event_key: String,
    pub event_type: String,
    pub request_id: Option<String>,
    pub payload: serde_json::Value,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// Failed for the last time.
    GaveUp {
        error: String,
    },
}

/// Which deliveries to list. Empty means no restriction on that field.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub subscriber: Option<String>,
    pub request_id: Option<String>,
    pub limit: Option<i64>,
    /// Only those listed after this one (the next page).
    pub after: Option<crate::PageCursor>,
}

const COLUMNS: &str =
    "id, subscriber, event_key, event_type, request_id, payload, state, attempts, \
                       next_attempt_at, last_error, created_at, updated_at, delivered_at";

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn delivery_from_row(r: &sqlx::any::AnyRow) -> Result<Delivery, StoreError> {
    let payload: String = r.try_get(5)?;
    let state: String = r.try_get(6)?;
    Ok(Delivery {
        id: r.try_get(0)?,
        subscriber: r.try_get(1)?,
        event_key: r.try_get(2)?,
        event_type: r.try_get(3)?,
        request_id: r.try_get(4)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("delivery payload: {e}")))?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state `{state}`")))?,
        attempts: r.try_get(7)?,
        next_attempt_at: r.try_get::<Option<i64>, _>(8)?.map(time),
        last_error: r.try_get(9)?,
        created_at: time(r.try_get(10)?),
        updated_at: time(r.try_get(11)?),
        delivered_at: r.try_get::<Option<i64>, _>(12)?.map(time),
    })
}

/// Queues `d` unless that subscriber already has that event; returns whether it was queued.
async fn insert(tx: &mut WriteTx, d: &NewDelivery, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO deliveries (id, subscriber, event_key, event_type, request_id, payload, state, \
         attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $8) \
         ON CONFLICT (subscriber, event_key) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&d.subscriber)
    .bind(&d.event_key)
    .bind(&d.event_type)
    .bind(&d.request_id)
    .bind(d.payload.to_string())
    .bind(DeliveryState::Pending.as_str())
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

impl Store {
    /// Reads up to `limit` audit events after the dispatch cursor, queues the deliveries `route`
    /// makes of them and moves the cursor past them, atomically: an event is routed exactly once
    /// even with several replicas dispatching (the cursor row is locked for the transaction).
    /// Returns how many events were read.
    pub async fn dispatch_audit(
        &self,
        limit: i64,
        route: impl FnOnce(&[AuditEvent]) -> Vec<NewDelivery>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let cursor: i64 = sqlx::query(&format!("SELECT seq FROM notify_cursor WHERE id = 1{lock}"))
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(
            "SELECT seq, at, kind, actor, request_id, data, prev_hash, hash FROM audit_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let events: Vec<AuditEvent> = rows.iter().map(event_from_row).collect::<Result<_, _>>()?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let now = Utc::now();
        for d in route(&events) {
            insert(&mut tx, &d, now).await?;
        }
        sqlx::query("UPDATE notify_cursor SET seq = $1 WHERE id = 1")
            .bind(last)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(events.len())
    }

    /// Moves the dispatch cursor to the end of the audit log without routing anything (used
    /// when no subscriber is configured, so enabling one later does not replay old events).
    pub async fn skip_dispatch_to_head(&self) -> Result<(), StoreError> {
        // The head as the writer has it: `audit_head` is written back only at its commit.
        let mut tx = self.begin().await?;
        let head = tx.chain_head().seq;
        sqlx::query("UPDATE notify_cursor SET seq = $1 WHERE id = 1")
            .bind(head)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// For every active grant that ends by `horizon` and has had no notice yet, records that it
    /// has one now and queues the deliveries `route` makes of it, atomically: at most one notice
    /// per grant, across restarts and replicas. Returns how many grants were noticed.
    pub async fn queue_expiry_notices(
        &self,
        horizon: DateTime<Utc>,
        route: impl Fn(&Request) -> Vec<NewDelivery>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT doc, version FROM requests WHERE state = $1 AND due_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM expiry_notices n WHERE n.request_id = requests.id)",
        )
        .bind(RequestState::Active.as_str())
        .bind(millis(horizon))
        .fetch_all(&mut *tx)
        .await?;
        let now = Utc::now();
        let mut noticed = 0;
        for row in &rows {
            let doc: String = row.try_get(0)?;
            let r: Request = serde_json::from_str(&doc)
                .map_err(|e| StoreError::Corrupt(format!("request document: {e}")))?;
            let fresh = sqlx::query(
                "INSERT INTO expiry_notices (request_id, queued_at) VALUES ($1, $2) \
                 ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(r.id.to_string())
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
            if fresh.rows_affected() != 1 {
                continue;
            }
            noticed += 1;
            for d in route(&r) {
                insert(&mut tx, &d, now).await?;
            }
        }
        self.commit(tx).await?;
        Ok(noticed)
    }

    /// Queues one delivery outside the audit log (a reply to a chat user, say). Returns whether
    /// it was queued (false if that subscriber already has that event key).
    pub async fn enqueue_delivery(&self, d: &NewDelivery) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let queued = insert(&mut tx, d, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(queued)
    }

    /// Claims up to `limit` pending deliveries that are due and not leased by a live worker.
    /// On PostgreSQL rows are claimed with `FOR UPDATE SKIP LOCKED`, so replicas never send the
    /// same delivery at once; a crashed worker's lease runs out and the delivery is sent again.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let skip_locked = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (\
               SELECT id FROM deliveries WHERE state = $3 AND next_attempt_at <= $4 \
               AND (lease_until IS NULL OR lease_until < $4) \
               ORDER BY next_attempt_at LIMIT $5{skip_locked}) \
             RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(millis(now) + lease.as_millis() as i64)
            .bind(DeliveryState::Pending.as_str())
            .bind(millis(now))
            .bind(limit)
            .fetch_written_on(self)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Records an attempt by the lease holder and releases the lease. Returns false (and changes
    /// nothing) if `owner` no longer holds the delivery.
    pub async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let (state, next, error, delivered) = match outcome {
            AttemptOutcome::Delivered => (DeliveryState::Delivered, None, None, Some(millis(now))),
            AttemptOutcome::Retry { error, at } => {
                (DeliveryState::Pending, Some(millis(*at)), Some(error), None)
            }
            AttemptOutcome::GaveUp { error } => (DeliveryState::Failed, None, Some(error), None),
        };
        // A success keeps the previous error, so the history of a retried delivery stays visible.
        let r = sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
             last_error = COALESCE($3, last_error), delivered_at = $4, updated_at = $5, \
             lease_owner = NULL, lease_until = NULL WHERE id = $6 AND lease_owner = $7",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(error.map(|e| e.as_str()))
        .bind(delivered)
        .bind(millis(now))
        .bind(id)
        .bind(owner)
        .run_on(self)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// How many deliveries are in each state (for metrics).
    pub async fn count_deliveries(&self) -> Result<Vec<(DeliveryState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get(0)?;
                let state = DeliveryState::parse(&s)
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery state `{s}`")))?;
                Ok((state, r.try_get(1)?))
            })
            .collect()
    }

    /// Newest first.
    pub async fn list_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM deliveries WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.state.is_some() {
            sql += &format!(" AND state = {}", next());
        }
        if f.subscriber.is_some() {
            sql += &format!(" AND subscriber = {}", next());
        }
        if f.request_id.is_some() {
            sql += &format!(" AND request_id = {}", next());
        }
        if f.after.is_some() {
            let (at, id) = (next(), next());
            sql += &format!(" AND (created_at < {at} OR (created_at = {at} AND id < {id}))");
        }
        sql += &format!(" ORDER BY created_at DESC, id DESC LIMIT {}", next());
        let mut q = sqlx::query(&sql);
        if let Some(s) = f.state {
            q = q.bind(s.as_str());
        }
        if let Some(s) = &f.subscriber {
            q = q.bind(s.clone());
        }
        if let Some(r) = &f.request_id {
            q = q.bind(r.clone());
        }
        if let Some(c) = &f.after {
            q = q.bind(c.created_at_ms).bind(c.id.clone());
        }
        q = q.bind(f.limit.unwrap_or(200).clamp(1, 5000));
        q.fetch_all(&self.reader)
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    /// Remembers where a request's Slack approval message was posted.
    pub async fn save_slack_message(
        &self,
        request_id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO slack_messages (request_id, channel, ts) VALUES ($1, $2, $3) \
             ON CONFLICT (request_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
        )
        .bind(request_id)
        .bind(channel)
        .bind(ts)
        .run_on(self)
        .await?;
        Ok(())
    }

    /// The (channel, ts) of a request's Slack approval message, if one was posted.
    pub async fn slack_message(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT channel, ts FROM slack_messages WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}
