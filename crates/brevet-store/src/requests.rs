use std::{collections::HashSet, time::Duration};

use brevet_audit::AuditDraft;
use brevet_core::{Approval, PrincipalId, Request, RequestId, RequestKind, RequestState};
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{
    audit::append, locks::Unlocked, millis, Backend, Store, StoreError, WriteQuery, WriteTx,
};

/// Which requests to list, newest first. Empty means no restriction on that field.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub requester: Option<PrincipalId>,
    pub states: Vec<RequestState>,
    pub limit: Option<i64>,
    /// Only those listed after this one (the next page).
    pub after: Option<PageCursor>,
}

/// Where a page of a newest-first list ended: the last row's creation time and id. Lists are
/// ordered by both, so a page that starts after it neither repeats nor skips a row, however
/// many are added meanwhile. Written `MILLIS.ID` (URL-safe) in the API's `cursor` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at_ms: i64,
    pub id: String,
}

impl PageCursor {
    pub fn new(created_at: DateTime<Utc>, id: impl Into<String>) -> Self {
        Self {
            created_at_ms: millis(created_at),
            id: id.into(),
        }
    }

    /// Reads a cursor as [`fmt::Display`] writes it — `^[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$`,
    /// as the API documents it — and `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('.')?;
        let digits = (1..=18).contains(&ms.len()) && ms.bytes().all(|b| b.is_ascii_digit());
        let id_ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !(digits && id_ok) {
            return None;
        }
        Some(Self {
            created_at_ms: ms.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at_ms, self.id)
    }
}

/// How much due work [`Store::claim_due_by_provider`] may claim: at most `n` requests of each
/// listed provider instance `(name, n)` (oldest due first), and at most `others` of every
/// provider not listed (with none listed: of all).
#[derive(Debug, Clone, Default)]
pub struct DueQuota<'a> {
    pub providers: Vec<(&'a str, i64)>,
    pub others: i64,
}

/// What [`Store::claim_due`] claimed: the requests, oldest due first, and which of them another
/// owner's lease still named (it ran out: that owner died or stalled) — `(request id, owner)`.
#[derive(Debug, Default)]
pub struct DueBatch {
    pub requests: Vec<Request>,
    pub taken_over: Vec<(String, String)>,
}

fn parse_doc(doc: &str) -> Result<Request, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("request document: {e}")))
}

fn doc_of(r: &Request) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parent_of(r: &Request) -> Option<String> {
    match &r.kind {
        RequestKind::Extension { parent } => Some(parent.to_string()),
        RequestKind::Access => None,
    }
}

fn with_version(row: &sqlx::any::AnyRow) -> Result<Request, StoreError> {
    let doc: String = row.try_get("doc")?;
    let mut r = parse_doc(&doc)?;
    r.version = row.try_get("version")?;
    Ok(r)
}

/// The version-checked `UPDATE` of a request (see [`update_request_as`] for its parameters).
const UPDATE_REQUEST: &str = "UPDATE requests SET state = $1, due_at = $2, version = $3, \
                              doc = $4 WHERE id = $5 AND version = $6";

async fn write_request(tx: &mut WriteTx, r: &Request, insert: bool) -> Result<Request, StoreError> {
    if !insert {
        return update_request_as(tx, r, UPDATE_REQUEST, |q| q).await;
    }
    let mut next = r.clone();
    next.version = r.version + 1;
    let doc = doc_of(&next)?;
    let due = next.due_at().map(millis);
    let result = sqlx::query(
        "INSERT INTO requests (id, requester, binding, provider, parent_id, state, created_at, due_at, version, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(next.id.to_string())
    .bind(next.requester.as_str())
    .bind(next.binding().key())
    .bind(next.resource.provider().to_string())
    .bind(parent_of(&next))
    .bind(next.state.as_str())
    .bind(millis(next.created_at))
    .bind(due)
    .bind(next.version)
    .bind(doc)
    .execute(&mut **tx)
    .await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Conflict(r.id.to_string()));
    }
    Ok(next)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the next parameter if there is one (the principal of [`Unlocked::sql`]).
fn bind_some(q: AnyQuery<'_>, value: Option<String>) -> AnyQuery<'_> {
    match value {
        Some(v) => q.bind(v),
        None => q,
    }
}

/// Runs `sql`, an `UPDATE` of `r`'s row whose parameters `$1`–`$6` are the next state, due time,
/// version and document, the id and the version read; `more` binds any further ones. `Conflict`
/// unless it changed exactly that row.
async fn update_request_as<'q>(
    tx: &mut WriteTx,
    r: &Request,
    sql: &'q str,
    more: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
) -> Result<Request, StoreError> {
    let mut next = r.clone();
    next.version = r.version + 1;
    let doc = doc_of(&next)?;
    let query = sqlx::query(sql)
        .bind(next.state.as_str())
        .bind(next.due_at().map(millis))
        .bind(next.version)
        .bind(doc)
        .bind(next.id.to_string())
        .bind(r.version);
    let result = more(query).execute(&mut **tx).await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Conflict(r.id.to_string()));
    }
    Ok(next)
}

/// Updates `r` (version-checked) and, in the same statement, takes or gives back its lease.
async fn write_request_with_lease(
    tx: &mut WriteTx,
    r: &Request,
    lease: Hold<'_>,
    unless_locked: Option<Unlocked<'_>>,
) -> Result<Request, StoreError> {
    let written = write_request_holding(tx, r, lease, unless_locked).await;
    // Which condition failed: a lease another live operation holds is `Busy` (and takes
    // precedence, as when the lease was taken by a statement of its own); then a lock of the
    // kill switch; else the request changed or is gone.
    let Err(StoreError::Conflict(id)) = written else {
        return written;
    };
    if let Hold::Take { owner, now, .. } = lease {
        let row = sqlx::query("SELECT lease_owner, lease_until FROM requests WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = row {
            let holder: Option<String> = row.try_get(0)?;
            let until: Option<i64> = row.try_get(1)?;
            if until.is_some_and(|u| u >= millis(now)) && holder.as_deref() != Some(owner) {
                return Err(StoreError::Busy(format!("request {id}")));
            }
        }
    }
    if let Some(unlocked) = unless_locked {
        if let Some(lock) = unlocked.lock_that_stopped(tx).await? {
            return Err(StoreError::Locked(Box::new(lock)));
        }
    }
    Err(StoreError::Conflict(id))
}

/// The request's version-checked `UPDATE`, with its lease taken or given back and, when asked,
/// the kill switch's lock checked, all in one statement (see [`write_request_with_lease`] for
/// why it may have changed nothing).
async fn write_request_holding(
    tx: &mut WriteTx,
    r: &Request,
    lease: Hold<'_>,
    unless_locked: Option<Unlocked<'_>>,
) -> Result<Request, StoreError> {
    let unlocked = |n: usize| unless_locked.map_or_else(String::new, |u| u.sql(n));
    let principal = unless_locked.map(|u| u.principal.to_owned());
    match lease {
        Hold::Keep => {
            let sql = format!("{UPDATE_REQUEST}{}", unlocked(7));
            update_request_as(tx, r, &sql, |q| bind_some(q, principal)).await
        }
        // Giving the lease back, this step must still hold it: if it ran out and another
        // operation took the request over, this step's outcome is not the request's.
        Hold::Release { owner } => {
            let sql = format!(
                "UPDATE requests SET state = $1, due_at = $2, version = $3, doc = $4, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE id = $5 AND version = $6 AND lease_owner = $7{}",
                unlocked(8)
            );
            update_request_as(tx, r, &sql, |q| {
                bind_some(q.bind(owner.to_owned()), principal)
            })
            .await
        }
        Hold::Take { owner, now, lease } => {
            let sql = format!(
                "UPDATE requests SET state = $1, due_at = $2, version = $3, doc = $4, \
                 lease_owner = $7, lease_until = $8 \
                 WHERE id = $5 AND version = $6 \
                 AND (lease_until IS NULL OR lease_until < $9 OR lease_owner = $7){}",
                unlocked(10)
            );
            let until = millis(now) + lease.as_millis() as i64;
            update_request_as(tx, r, &sql, |q| {
                bind_some(
                    q.bind(owner.to_owned()).bind(until).bind(millis(now)),
                    principal,
                )
            })
            .await
        }
    }
}

/// A hold that one lifecycle step takes or gives back in the same transaction as its write: the
/// request's lease, or the lock on the request's binding. Folding them into the step's
/// transaction saves a commit each (an fsync on SQLite).
#[derive(Debug, Clone, Copy)]
pub enum Hold<'a> {
    Keep,
    /// Taken for `owner` unless another live holder has it (then the step fails with `Busy`
    /// and writes nothing).
    Take {
        owner: &'a str,
        now: DateTime<Utc>,
        lease: Duration,
    },
    /// Given back if `owner` holds it.
    Release {
        owner: &'a str,
    },
}

/// One lifecycle step of a request, written atomically: the request (version-checked), its
/// audit events, and what happens to its lease and its binding's lock.
pub struct Step<'a> {
    pub request: &'a Request,
    pub lease: Hold<'a>,
    pub binding_lock: Hold<'a>,
    pub audit: Vec<AuditDraft>,
    /// Written only if the kill switch does not lock this principal, checked by the request's
    /// own `UPDATE` (`Locked` otherwise, after `Busy`, before `Conflict`): a lock committed
    /// before the step is always seen, and one committed after it finds the step's outcome
    /// already durable, for the kill switch's sweep.
    pub unless_locked: Option<Unlocked<'a>>,
}

impl Store {
    /// Writes one lifecycle step in one transaction. `Busy` if a hold to take is held by
    /// another live operation, `Conflict` if the request changed since it was read (or, giving
    /// the lease back, this operation no longer holds it); either way nothing is written. When
    /// the request's lease is busy, that is the answer even if the request also changed.
    ///
    /// The request's row is written, version-checked, and its lease taken or given back by one
    /// statement: on SQLite each statement is a round trip to its driver's thread, on PostgreSQL
    /// to the server, and this is the hottest write there is.
    pub async fn write_step(&self, step: Step<'_>) -> Result<Request, StoreError> {
        let r = step.request;
        let binding = r.binding().key();
        let mut tx = self.begin().await?;
        let stored = write_request_with_lease(&mut tx, r, step.lease, step.unless_locked).await?;
        if let Hold::Take { owner, now, lease } = step.binding_lock {
            if !take_binding_lock(&mut tx, &binding, owner, now, lease).await? {
                return Err(StoreError::Busy(format!("binding {binding}")));
            }
        }
        if let Hold::Release { owner } = step.binding_lock {
            sqlx::query("DELETE FROM binding_locks WHERE binding = $1 AND owner = $2")
                .bind(&binding)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        append(&mut tx, step.audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    /// Stores a new request with its audit events; returns it with its stored version.
    pub async fn insert_request(
        &self,
        r: &Request,
        audit: Vec<AuditDraft>,
    ) -> Result<Request, StoreError> {
        let mut tx = self.begin().await?;
        let stored = write_request(&mut tx, r, true).await?;
        append(&mut tx, audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    /// Stores many new requests, each with its audit events, in one transaction: one commit for
    /// the lot. Each is written exactly as [`Store::insert_request`] writes it. For imports and
    /// for the load generator (`brevet-server/benches/expiry_drain.rs`), which fills a store
    /// with 100,000 grants; the broker never calls it.
    pub async fn insert_requests(
        &self,
        batch: Vec<(Request, Vec<AuditDraft>)>,
    ) -> Result<Vec<Request>, StoreError> {
        let mut tx = self.begin().await?;
        let mut stored = Vec::with_capacity(batch.len());
        let mut audit = Vec::new();
        for (r, events) in batch {
            stored.push(write_request(&mut tx, &r, true).await?);
            audit.extend(events);
        }
        append(&mut tx, audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    /// Writes `r` if nobody changed it since it was read (`r.version`), with its audit events,
    /// atomically. Returns the stored request; `Conflict` if it changed underneath.
    pub async fn update_request(
        &self,
        r: &Request,
        audit: Vec<AuditDraft>,
    ) -> Result<Request, StoreError> {
        let mut tx = self.begin().await?;
        let stored = write_request(&mut tx, r, false).await?;
        append(&mut tx, audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    /// Records one approver's decision together with the request's resulting state.
    pub async fn record_decision(
        &self,
        r: &Request,
        approval: &Approval,
        audit: Vec<AuditDraft>,
    ) -> Result<Request, StoreError> {
        // Readers rely on this (`Request::awaited_approval`): a request that needs no approval
        // has no decisions.
        if !r.awaited_approval() {
            return Err(StoreError::Refused(format!(
                "request {} needs no approval; no decision is recorded for it",
                r.id
            )));
        }
        let mut tx = self.begin().await?;
        let doc =
            serde_json::to_string(approval).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let inserted = sqlx::query(
            "INSERT INTO approvals (request_id, approver, at, doc) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (request_id, approver) DO NOTHING",
        )
        .bind(r.id.to_string())
        .bind(approval.approver.as_str())
        .bind(millis(approval.at))
        .bind(doc)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            return Err(StoreError::AlreadyDecided(approval.approver.to_string()));
        }
        let stored = write_request(&mut tx, r, false).await?;
        append(&mut tx, audit, Utc::now()).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    /// The decisions on one request, in the order they were taken.
    pub async fn approvals(&self, id: RequestId) -> Result<Vec<Approval>, StoreError> {
        Ok(self
            .approvals_of(&[id])
            .await?
            .remove(&id)
            .unwrap_or_default())
    }

    /// The decisions on each of `ids`, in one read (a page of requests, not one read each),
    /// each request's in the order they were taken. Ids without any are absent from the map.
    pub async fn approvals_of(
        &self,
        ids: &[RequestId],
    ) -> Result<std::collections::HashMap<RequestId, Vec<Approval>>, StoreError> {
        let mut out: std::collections::HashMap<RequestId, Vec<Approval>> = Default::default();
        // Chunked so that no statement has more parameters than a backend takes.
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT request_id, doc FROM approvals WHERE request_id IN ({}) \
                 ORDER BY request_id, at, approver",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.to_string());
            }
            for row in q.fetch_all(&self.reader).await? {
                let id: String = row.try_get(0)?;
                let doc: String = row.try_get(1)?;
                let id = id
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("approval's request id: {e}")))?;
                let approval = serde_json::from_str(&doc)
                    .map_err(|e| StoreError::Corrupt(format!("approval: {e}")))?;
                out.entry(id).or_default().push(approval);
            }
        }
        Ok(out)
    }

    pub async fn get_request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        let row = sqlx::query("SELECT doc, version FROM requests WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(with_version).transpose()
    }

    /// Newest first.
    pub async fn list_requests(&self, f: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut sql = String::from("SELECT doc, version FROM requests WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.requester.is_some() {
            sql += &format!(" AND requester = {}", next());
        }
        if !f.states.is_empty() {
            let marks: Vec<String> = f.states.iter().map(|_| next()).collect();
            sql += &format!(" AND state IN ({})", marks.join(", "));
        }
        if f.after.is_some() {
            let (at, id) = (next(), next());
            sql += &format!(" AND (created_at < {at} OR (created_at = {at} AND id < {id}))");
        }
        sql += &format!(" ORDER BY created_at DESC, id DESC LIMIT {}", next());
        let mut q = sqlx::query(&sql);
        if let Some(p) = &f.requester {
            q = q.bind(p.as_str().to_owned());
        }
        for s in &f.states {
            q = q.bind(s.as_str());
        }
        if let Some(c) = &f.after {
            q = q.bind(c.created_at_ms).bind(c.id.clone());
        }
        q = q.bind(f.limit.unwrap_or(500).clamp(1, 5000));
        q.fetch_all(&self.reader)
            .await?
            .iter()
            .map(with_version)
            .collect()
    }

    /// Other requests whose access on the same binding is in place (active): the reference
    /// count. An activation still in flight is not counted: it may fail, and it ensures the
    /// access itself, under the binding lock, once it runs.
    pub async fn holders(
        &self,
        binding_key: &str,
        except: RequestId,
    ) -> Result<Vec<Request>, StoreError> {
        let rows = sqlx::query(
            "SELECT doc, version FROM requests WHERE binding = $1 AND state = $2 AND id <> $3",
        )
        .bind(binding_key)
        .bind(RequestState::Active.as_str())
        .bind(except.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(with_version).collect()
    }

    /// Which of `keys` some request covers now (activating, active, or being revoked): anything
    /// a provider holds outside them is an orphan. Asks about at most 500 keys a query (index
    /// `requests_binding`), so what it reads grows with what the provider holds, not with every
    /// grant in the store.
    pub async fn covered_among(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut covered = HashSet::new();
        for chunk in keys.chunks(500) {
            let marks = (0..chunk.len())
                .map(|i| format!("${}", i + 5))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT DISTINCT binding FROM requests WHERE binding IN ({marks}) \
                 AND state IN ($1, $2, $3, $4)"
            );
            let mut q = sqlx::query(&sql)
                .bind(RequestState::Activating.as_str())
                .bind(RequestState::Active.as_str())
                .bind(RequestState::Revoking.as_str())
                .bind(RequestState::RevokeFailed.as_str());
            for k in chunk {
                q = q.bind(k.as_str());
            }
            for row in q.fetch_all(&self.reader).await? {
                covered.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(covered)
    }

    /// Claims up to `limit` requests whose scheduled work is due and which no live lease holds.
    /// Replicas never claim the same row: a claim only takes rows whose lease has run out, and
    /// replicas' write batches take turns (see `writer`); on PostgreSQL the rows are also read
    /// `FOR UPDATE SKIP LOCKED`, so this would hold without the turns too. A crashed replica's
    /// lease simply runs out, and the rows it still held are reported as taken over
    /// (`DueBatch::taken_over`).
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<DueBatch, StoreError> {
        let quota = DueQuota {
            providers: Vec::new(),
            others: limit,
        };
        self.claim_due_by_provider(now, owner, lease, &quota).await
    }

    /// [`Store::claim_due`] with a quota per provider instance: each listed provider's due work
    /// is read on its own (index `requests_provider_due`), so one provider's backlog is never
    /// scanned, let alone claimed, while another's is looked for; the rest (providers not
    /// listed) is read in due order past them. One transaction, one commit, whatever the lanes.
    pub async fn claim_due_by_provider(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease: Duration,
        quota: &DueQuota<'_>,
    ) -> Result<DueBatch, StoreError> {
        let skip_locked = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let claimable = "due_at <= $1 AND (lease_until IS NULL OR lease_until < $1)";
        let mut tx = self.begin().await?;
        let mut due = Vec::new();
        for (provider, limit) in quota.providers.iter().filter(|(_, n)| *n > 0) {
            let rows = sqlx::query(&format!(
                "SELECT id, lease_owner FROM requests WHERE provider = $3 AND {claimable} \
                 ORDER BY due_at LIMIT $2{skip_locked}"
            ))
            .bind(millis(now))
            .bind(*limit)
            .bind(*provider)
            .fetch_all(&mut *tx)
            .await?;
            due.extend(rows);
        }
        if quota.others > 0 {
            let unlisted = match quota.providers.len() {
                0 => String::new(),
                n => format!(
                    " AND (provider IS NULL OR provider NOT IN ({}))",
                    (0..n)
                        .map(|i| format!("${}", i + 3))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let sql = format!(
                "SELECT id, lease_owner FROM requests WHERE {claimable}{unlisted} \
                 ORDER BY due_at LIMIT $2{skip_locked}"
            );
            let mut q = sqlx::query(&sql).bind(millis(now)).bind(quota.others);
            for (provider, _) in &quota.providers {
                q = q.bind(*provider);
            }
            due.extend(q.fetch_all(&mut *tx).await?);
        }
        if due.is_empty() {
            // Nothing to claim: no write, no commit (the transaction rolls back when dropped).
            return Ok(DueBatch::default());
        }
        let mut ids = Vec::with_capacity(due.len());
        let mut taken_over = Vec::new();
        for row in &due {
            let id: String = row.try_get(0)?;
            let previous: Option<String> = row.try_get(1)?;
            if let Some(previous) = previous.filter(|p| p != owner) {
                taken_over.push((id.clone(), previous));
            }
            ids.push(id);
        }
        // At most the quotas' sum (64 a provider from the scheduler): one placeholder each.
        let placeholders = (0..ids.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE requests SET lease_owner = $1, lease_until = $2 WHERE id IN ({placeholders}) \
             RETURNING doc, version"
        );
        let until = millis(now) + lease.as_millis() as i64;
        let mut update = sqlx::query(&sql).bind(owner).bind(until);
        for id in &ids {
            update = update.bind(id.as_str());
        }
        let rows = update.fetch_all(&mut *tx).await?;
        self.commit(tx).await?;
        let mut requests = rows
            .iter()
            .map(with_version)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order; keep the oldest due first.
        requests.sort_by_key(|r| r.due_at());
        Ok(DueBatch {
            requests,
            taken_over,
        })
    }

    /// Claims one request for `owner` unless another live lease holds it. Returns whether it did.
    pub async fn claim(
        &self,
        id: RequestId,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE requests SET lease_owner = $1, lease_until = $2 \
             WHERE id = $3 AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)",
        )
        .bind(owner)
        .bind(millis(now) + lease.as_millis() as i64)
        .bind(id.to_string())
        .bind(millis(now))
        .run_on(self)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn release(&self, id: RequestId, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE requests SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
            .bind(id.to_string())
            .bind(owner)
            .run_on(self)
            .await?;
        Ok(())
    }

    /// When the longest-waiting due work fell due (`None`: nothing is due at `now`) — the
    /// scheduler's lag is `now` minus this.
    pub async fn oldest_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(due_at) FROM requests WHERE due_at <= $1")
            .bind(millis(now))
            .fetch_one(&self.reader)
            .await?;
        let oldest: Option<i64> = row.try_get(0)?;
        Ok(oldest.and_then(DateTime::from_timestamp_millis))
    }

    /// When the next scheduled work falls due after `now` (`None`: none is scheduled), so the
    /// scheduler can wake for it rather than at its next tick.
    pub async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(due_at) FROM requests WHERE due_at > $1")
            .bind(millis(now))
            .fetch_one(&self.reader)
            .await?;
        let next: Option<i64> = row.try_get(0)?;
        Ok(next.and_then(DateTime::from_timestamp_millis))
    }

    /// Revocations not yet done (`revoking`: under way or interrupted; `revoke_failed`: waiting
    /// for a retry), counted per provider instance: `(provider, state, count)`.
    pub async fn pending_revocations(
        &self,
    ) -> Result<Vec<(String, RequestState, i64)>, StoreError> {
        let provider = provider_of_binding(self.backend);
        let rows = sqlx::query(&format!(
            "SELECT {provider}, state, COUNT(*) FROM requests WHERE state IN ($1, $2) \
             GROUP BY {provider}, state"
        ))
        .bind(RequestState::Revoking.as_str())
        .bind(RequestState::RevokeFailed.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(1)?;
                let state = state
                    .parse()
                    .map_err(|e: brevet_core::CoreError| StoreError::Corrupt(e.to_string()))?;
                Ok((r.try_get(0)?, state, r.try_get(2)?))
            })
            .collect()
    }

    /// How many requests are in each state (for metrics and the overdue count).
    pub async fn count_by_state(&self) -> Result<Vec<(RequestState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM requests GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get(0)?;
                let n: i64 = r.try_get(1)?;
                let st = s
                    .parse()
                    .map_err(|e: brevet_core::CoreError| StoreError::Corrupt(e.to_string()))?;
                Ok((st, n))
            })
            .collect()
    }
}

/// SQL for the provider instance named in a row's `binding`: the key is
/// `principal|provider:name|profile`, and no part can hold `|` or `:` before the provider's
/// name ends.
fn provider_of_binding(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "split_part(split_part(binding, '|', 2), ':', 1)",
        Backend::Sqlite => {
            "substr(substr(binding, instr(binding, '|') + 1), 1, \
             instr(substr(binding, instr(binding, '|') + 1), ':') - 1)"
        }
    }
}

impl Store {
    /// Fills the `provider` column of requests stored before it existed and still scheduled
    /// (the scheduler claims by provider); the rest never needs it. Idempotent, run at connect.
    pub(crate) async fn fill_request_providers(&self) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE requests SET provider = {} WHERE provider IS NULL AND due_at IS NOT NULL",
            provider_of_binding(self.backend)
        );
        Ok(sqlx::query(&sql).run_on(self).await?.rows_affected())
    }
}

async fn take_binding_lock(
    tx: &mut WriteTx,
    binding_key: &str,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO binding_locks (binding, owner, lease_until) VALUES ($1, $2, $3) \
         ON CONFLICT (binding) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
         WHERE binding_locks.lease_until < $4 OR binding_locks.owner = excluded.owner",
    )
    .bind(binding_key)
    .bind(owner)
    .bind(millis(now) + lease.as_millis() as i64)
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

impl Store {
    /// Takes the lock on a binding for `owner` unless another live holder has it. Returns whether
    /// it did. A crashed holder's lock simply runs out after `lease`.
    pub async fn lock_binding(
        &self,
        binding_key: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let taken = take_binding_lock(&mut tx, binding_key, owner, now, lease).await?;
        if taken {
            self.commit(tx).await?;
        }
        Ok(taken)
    }

    pub async fn unlock_binding(&self, binding_key: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM binding_locks WHERE binding = $1 AND owner = $2")
            .bind(binding_key)
            .bind(owner)
            .run_on(self)
            .await?;
        Ok(())
    }
}
