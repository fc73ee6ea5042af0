//! Group commit: many write transactions, one fsync — on both backends.
//!
//! With `synchronous = FULL` (SQLite) or the default `synchronous_commit = on` (PostgreSQL),
//! every `COMMIT` waits for an fsync of the log. Committed one by one, a store that writes three
//! transactions per grant spends most of its writer's time waiting for the disk. Here each of
//! Brevet's write transactions is a *logical* transaction — a `SAVEPOINT` inside one open
//! *physical* transaction on the writer connection — and a flusher task commits the physical
//! transaction (one fsync) for every logical transaction released since the last flush.
//!
//! Durability is not weakened: [`Tx::commit`] returns only after the `COMMIT` that contains
//! the logical transaction has returned, so a caller that goes on to call a provider does so
//! after its intent is on disk, exactly as with a `COMMIT` of its own. If that `COMMIT` fails,
//! every logical transaction in it gets the error and none of them is durable — the same answer
//! each would have had alone. A logical transaction that fails or is dropped is rolled back to
//! its savepoint; the others in the batch are untouched (on PostgreSQL too, where an error
//! aborts the whole transaction unless it is rolled back to a savepoint).
//!
//! Logical transactions run one at a time on the one connection, and a later one sees what an
//! earlier one wrote even before the flush — which is safe, because it is committed in the same
//! or a later physical transaction, and its caller hears of success only after that. Plain
//! reads go to other connections and see only what is flushed.
//!
//! Each physical transaction first takes the store's write lock: on SQLite `BEGIN IMMEDIATE`
//! (SQLite has one writer anyway); on PostgreSQL the audit chain's head row (`SELECT … FOR
//! UPDATE`), which every audited write needs and which is held until `COMMIT` because the chain
//! is one sequence. Taking it *first* is what makes batching safe across replicas: a physical
//! transaction waits only before it holds anything, so two replicas' batches can never wait for
//! each other's rows (a deadlock); replicas take turns, each committing everything it gathered
//! while it waited with one fsync. Before, every PostgreSQL transaction took the head in the
//! middle and held it through its own fsync, so no two commits could share one.
//!
//! The audit chain's head travels with the physical transaction: it is read as the transaction
//! opens, once it holds the write lock (so nobody else can append meanwhile); each logical
//! transaction's appends advance it in memory (and a rollback to its savepoint puts it back), and
//! it is written to `audit_head` once, just before the `COMMIT`. An append is then its inserts
//! alone, not a read and a write of the head besides.
//!
//! Batching needs no timer: the flusher queues for the connection's mutex like everyone else
//! (tokio's mutex is fair), so it commits after the logical transactions that were already
//! waiting; under load a batch holds everything that arrived during the previous fsync. A
//! logical transaction that nobody is queued behind commits the batch itself, at once, instead of
//! handing it to the flusher: nobody could join it anyway.
//!
//! Every statement is a hand-off — on SQLite a message to its driver's worker thread and an
//! answer back, on PostgreSQL a round trip on the one writer connection — so what a physical
//! transaction runs for itself goes in as few as possible: opening one is one call (`BEGIN`, the
//! head's read, the first `SAVEPOINT`), and so is closing one (the last `RELEASE` when its writer
//! commits it, the head's write-back, `COMMIT`). A write alone in its physical transaction thus
//! costs two calls besides its own statements, where it cost six. sqlx has no group commit,
//! hence this module.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use sqlx::{pool::PoolConnection, Any, AnyConnection, AnyPool, Executor, Row};
use tokio::sync::{mpsc, watch, Mutex, OwnedMutexGuard};

use crate::{Backend, StoreError};

/// The outcome of one physical commit, shared by every logical transaction in it.
type Outcome = Option<Result<(), String>>;

/// The end of the audit chain: the last event's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub(crate) seq: i64,
    pub(crate) hash: String,
}

/// The chain's head in the open physical transaction, once read (see the module doc).
#[derive(Debug)]
struct Chain {
    /// As this transaction's writes have left it.
    now: ChainHead,
    /// As `audit_head` holds it; the flush writes `now` back if they differ.
    stored: ChainHead,
}

/// The writer connection's state, behind the mutex that serialises logical transactions.
struct Open {
    /// Held while a physical transaction is open; given back to the pool after each flush (an
    /// in-memory database has only this connection, and its readers need it between flushes).
    conn: Option<PoolConnection<Any>>,
    /// The open physical transaction's outcome channel; `None` when none is open.
    batch: Option<watch::Sender<Outcome>>,
    /// A logical transaction's savepoint is set and neither released nor rolled back. Seen by
    /// the next `begin` only if its owner vanished without its drop's rollback running (a
    /// runtime shutting down): then it is rolled back first, so nothing of it is committed.
    in_savepoint: bool,
    /// A logical transaction was released into the open physical transaction: its flush
    /// commits. Without one (every write in it failed or was dropped) it is rolled back instead,
    /// which on PostgreSQL spares a WAL flush for the head's row lock.
    released: bool,
    /// The audit chain's head, read as the open physical transaction opened.
    chain: Option<Chain>,
    /// `chain.now` when the current savepoint was set, for a rollback to put back.
    chain_at_savepoint: Option<ChainHead>,
}

impl Open {
    /// The savepoint was rolled back to: nothing of its logical transaction remains, its appends
    /// to the chain included.
    fn rolled_back(&mut self) {
        self.in_savepoint = false;
        if let Some(chain) = self.chain.as_mut() {
            chain.now = self
                .chain_at_savepoint
                .take()
                .unwrap_or_else(|| chain.stored.clone());
        }
    }
}

/// The group-committing writer. Cloned with the store.
#[derive(Clone)]
pub(crate) struct Writer {
    pool: AnyPool,
    backend: Backend,
    open: Arc<Mutex<Open>>,
    /// Logical transactions queued for the connection. A write that commits with none queued
    /// closes the physical transaction itself (see the module doc).
    queued: Arc<AtomicUsize>,
    flush: mpsc::UnboundedSender<()>,
    flushes: Arc<AtomicU64>,
}

/// Counts a logical transaction as queued for the connection until it holds it.
struct Queued(Arc<AtomicUsize>);

impl Queued {
    fn new(queued: &Arc<AtomicUsize>) -> Self {
        queued.fetch_add(1, Ordering::AcqRel);
        Self(queued.clone())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A logical write transaction: a savepoint inside the open physical transaction,
/// holding the writer connection until it is committed or dropped (then rolled back).
pub(crate) struct Tx {
    guard: Option<OwnedMutexGuard<Open>>,
    writer: Writer,
}

const SAVEPOINT: &str = "SAVEPOINT brevet_tx";
const RELEASE: &str = "RELEASE brevet_tx";
const ROLLBACK_TO: &str = "ROLLBACK TO brevet_tx; RELEASE brevet_tx";
/// Runs in any transaction that no error aborted, and fails in one that an error did.
const ALIVE: &str = "SELECT 1";

/// Closes a physical transaction: writes the chain's head back if its writes moved it, and
/// commits; after `first`, the last logical transaction's `RELEASE` when it commits the batch
/// itself, else [`ALIVE`]. One call: several statements, sent without parameters (PostgreSQL
/// takes several statements in one call only so), so the head's values are written into the
/// SQL — an integer, and a hash this process computed, checked to be hexadecimal.
///
/// The `COMMIT` is never the call's only statement. On PostgreSQL, `COMMIT` of a transaction
/// that an error aborted answers success and rolls back; a statement before it fails instead,
/// so such a batch is reported failed, never durable.
fn close_sql(first: Option<&str>, head: Option<&ChainHead>) -> Result<String, String> {
    let mut sql = String::new();
    sql.push_str(first.unwrap_or(ALIVE));
    sql.push_str("; ");
    if let Some(ChainHead { seq, hash }) = head {
        if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the audit chain's head hash is not hexadecimal: {hash:?}; nothing was committed"
            ));
        }
        sql.push_str(&format!(
            "UPDATE audit_head SET seq = {seq}, hash = '{hash}' WHERE id = 1; "
        ));
    }
    sql.push_str("COMMIT");
    Ok(sql)
}

impl Writer {
    /// Starts the flusher task; it ends when the last clone of this writer is dropped.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (flush, mut wakeups) = mpsc::unbounded_channel();
        let writer = Self {
            pool,
            backend,
            open: Arc::new(Mutex::new(Open {
                conn: None,
                batch: None,
                in_savepoint: false,
                released: false,
                chain: None,
                chain_at_savepoint: None,
            })),
            queued: Default::default(),
            flush,
            flushes: Default::default(),
        };
        let (open, flushes) = (writer.open.clone(), writer.flushes.clone());
        tokio::spawn(async move {
            while wakeups.recv().await.is_some() {
                while wakeups.try_recv().is_ok() {}
                let mut g = open.clone().lock_owned().await;
                if flush_open(&mut g).await {
                    flushes.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        writer
    }

    /// Opens a physical transaction, in one call: takes the store's write lock (see the module
    /// doc), reads the audit chain's head and sets the first logical transaction's savepoint.
    /// On SQLite `BEGIN IMMEDIATE` takes the lock, so a second process on the file waits rather
    /// than deadlocks; on PostgreSQL the head's row lock is the write lock, taken before the
    /// savepoint so that rolling back to it keeps the lock.
    fn open_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => {
                "BEGIN IMMEDIATE; SELECT seq, hash FROM audit_head WHERE id = 1; SAVEPOINT brevet_tx"
            }
            Backend::Postgres => {
                "BEGIN; SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE; SAVEPOINT brevet_tx"
            }
        }
    }

    /// Physical commits (each one fsync) so far.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Begins a logical transaction: waits for the connection, opens a physical transaction if
    /// none is open (taking the store's write lock first, see the module doc), and sets a
    /// savepoint.
    ///
    /// Runs on a task of its own, so a caller that stops waiting cannot leave the connection
    /// inside a savepoint nobody owns: the task always finishes and hands over a [`Tx`],
    /// whose drop rolls it back.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        let writer = self.clone();
        tokio::spawn(async move {
            let queued = Queued::new(&writer.queued);
            let mut g = writer.open.clone().lock_owned().await;
            drop(queued);
            let open = &mut *g;
            if open.in_savepoint {
                let conn = open.conn.as_mut().expect("held while a savepoint is set");
                if let Err(e) = conn.execute(ROLLBACK_TO).await {
                    abort(open, &e.to_string()).await;
                    writer.wake();
                    return Err(e.into());
                }
                open.rolled_back();
            }
            if open.conn.is_none() {
                open.conn = Some(writer.pool.acquire().await?);
            }
            let conn = open.conn.as_mut().expect("acquired above");
            if open.batch.is_none() {
                let started = std::time::Instant::now();
                let head = match open_transaction(conn, writer.open_sql()).await {
                    Ok(head) => head,
                    Err(e) => {
                        // Whatever part of it ran is undone (a failed `BEGIN` leaves nothing
                        // open); the connection goes back to the pool.
                        let _ = conn.execute("ROLLBACK").await;
                        open.conn = None;
                        return Err(e);
                    }
                };
                // Mostly the wait for the write lock: another process's transaction on SQLite,
                // another replica's batch on PostgreSQL.
                metrics::histogram!("brevet_store_write_lock_wait_seconds")
                    .record(started.elapsed().as_secs_f64());
                open.chain = Some(Chain {
                    now: head.clone(),
                    stored: head,
                });
                open.released = false;
                open.batch = Some(watch::channel(None).0);
            } else if let Err(e) = conn.execute(SAVEPOINT).await {
                abort(open, &e.to_string()).await;
                writer.wake();
                return Err(e.into());
            }
            open.in_savepoint = true;
            open.chain_at_savepoint = open.chain.as_ref().map(|c| c.now.clone());
            Ok(Tx {
                guard: Some(g),
                writer,
            })
        })
        .await
        .map_err(|e| StoreError::Database(format!("starting a transaction: {e}")))?
    }

    fn wake(&self) {
        // The flusher is gone only when every writer is: nobody waits for this flush then.
        let _ = self.flush.send(());
    }
}

impl Tx {
    /// The audit chain's head as this transaction sees it (its own appends included).
    pub(crate) fn chain_head(&self) -> ChainHead {
        self.open()
            .chain
            .as_ref()
            .expect("read as the physical transaction opened")
            .now
            .clone()
    }

    /// Moves the chain's head on after appending events up to `head`; written to `audit_head`
    /// when the physical transaction commits, and undone if this transaction is rolled back.
    pub(crate) fn advance_chain(&mut self, head: ChainHead) {
        self.open_mut()
            .chain
            .as_mut()
            .expect("read as the physical transaction opened")
            .now = head;
    }

    fn open(&self) -> &Open {
        self.guard
            .as_ref()
            .expect("a live transaction holds the connection")
    }

    fn open_mut(&mut self) -> &mut Open {
        self.guard
            .as_mut()
            .expect("a live transaction holds the connection")
    }

    /// Releases the savepoint and waits until the physical transaction holding it is durable:
    /// commits it at once if no other logical transaction is queued to join it, else leaves that
    /// to the flusher, which queues behind them.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let mut g = self
            .guard
            .take()
            .expect("a live transaction holds the connection");
        let writer = self.writer.clone();
        // On a task of its own: once the savepoint is released, the flusher must be told even
        // if the caller stops waiting.
        tokio::spawn(async move {
            if writer.queued.load(Ordering::Acquire) == 0 {
                let committed = release_and_commit(&mut g).await;
                drop(g);
                match committed {
                    Ok(()) => {
                        writer.flushes.fetch_add(1, Ordering::Relaxed);
                    }
                    // The others in the batch, if it survived, are the flusher's.
                    Err(_) => writer.wake(),
                }
                return committed;
            }
            let conn = g.conn.as_mut().expect("held while a transaction is open");
            if let Err(e) = conn.execute(RELEASE).await {
                // This logical transaction fails (on PostgreSQL, a statement of it failed and
                // its caller committed anyway); the batch survives if rolling it back works.
                match conn.execute(ROLLBACK_TO).await {
                    Ok(_) => g.rolled_back(),
                    Err(_) => abort(&mut g, &e.to_string()).await,
                }
                drop(g);
                writer.wake();
                return Err(e.into());
            }
            g.in_savepoint = false;
            g.released = true;
            let mut outcome = g
                .batch
                .as_ref()
                .expect("a physical transaction is open")
                .subscribe();
            drop(g);
            writer.wake();
            let flushed = outcome
                .wait_for(Option::is_some)
                .await
                .map_err(|_| StoreError::Database("the commit was abandoned".into()))?
                .clone();
            match flushed {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(StoreError::Database(format!("committing: {e}"))),
                None => unreachable!("waited for an outcome"),
            }
        })
        .await
        .map_err(|e| StoreError::Database(format!("committing: {e}")))?
    }
}

impl Drop for Tx {
    /// Not committed: roll back to the savepoint before anyone else uses the connection (the
    /// guard moves into the task that does it). The flusher is woken either way, so a physical
    /// transaction is never left open holding SQLite's write lock.
    fn drop(&mut self) {
        let Some(mut g) = self.guard.take() else {
            return;
        };
        let writer = self.writer.clone();
        let rollback = async move {
            if let Some(conn) = g.conn.as_mut() {
                match conn.execute(ROLLBACK_TO).await {
                    Ok(_) => g.rolled_back(),
                    Err(e) => abort(&mut g, &e.to_string()).await,
                }
            }
            drop(g);
            writer.wake();
        };
        // Without a runtime (the process is ending) the connection is not used again; should
        // it be, `begin` and the flusher roll the savepoint back first (`in_savepoint`).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(rollback);
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.open()
            .conn
            .as_deref()
            .expect("a live transaction holds the connection")
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.open_mut()
            .conn
            .as_deref_mut()
            .expect("a live transaction holds the connection")
    }
}

/// Runs [`Writer::open_sql`]: every one of its statements (`fetch_all`, where `fetch_one` could
/// stop at the head's row before the savepoint is set), and returns the head.
async fn open_transaction(conn: &mut AnyConnection, sql: &str) -> Result<ChainHead, StoreError> {
    let rows = conn.fetch_all(sqlx::raw_sql(sql)).await?;
    let [row] = rows.as_slice() else {
        return Err(StoreError::Database(format!(
            "the audit chain's head: {} rows in `audit_head`, expected 1",
            rows.len()
        )));
    };
    Ok(ChainHead {
        seq: row.try_get(0)?,
        hash: row.try_get(1)?,
    })
}

/// A logical transaction that nobody is queued behind releases its savepoint and commits the
/// physical transaction holding it, in one call ([`close_sql`]); everyone released into it
/// earlier hears the outcome. Should that call fail at the `RELEASE` (on PostgreSQL, a statement
/// of this transaction failed and its caller committed anyway), rolling back to the savepoint
/// keeps the batch for the others, and this transaction alone fails; should it fail later,
/// nothing of the batch is durable and everyone in it hears so.
async fn release_and_commit(g: &mut Open) -> Result<(), StoreError> {
    let head = g
        .chain
        .as_ref()
        .filter(|c| c.now != c.stored)
        .map(|c| c.now.clone());
    let sql = match close_sql(Some(RELEASE), head.as_ref()) {
        Ok(sql) => sql,
        Err(e) => {
            abort(g, &e).await;
            return Err(StoreError::Database(e));
        }
    };
    let conn = g.conn.as_mut().expect("held while a transaction is open");
    let started = std::time::Instant::now();
    let result = run(conn, &sql).await;
    metrics::histogram!("brevet_store_commit_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(_) => {
            g.in_savepoint = false;
            g.released = false;
            g.chain = None;
            g.chain_at_savepoint = None;
            g.conn = None;
            if let Some(batch) = g.batch.take() {
                let _ = batch.send(Some(Ok(())));
            }
            Ok(())
        }
        Err(e) => {
            match conn.execute(ROLLBACK_TO).await {
                Ok(_) => g.rolled_back(),
                Err(_) => abort(g, &e.to_string()).await,
            }
            Err(StoreError::Database(format!("committing: {e}")))
        }
    }
}

/// Runs several statements without parameters, in one call (sqlx's `raw_sql`: not kept as a
/// prepared statement, as [`close_sql`]'s text is new every time).
async fn run(conn: &mut AnyConnection, sql: &str) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(sql)).await.map(|_| ())
}

/// Commits the open physical transaction, if any, and tells everyone in it; gives the
/// connection back to the pool. Returns whether a transaction was committed.
async fn flush_open(g: &mut Open) -> bool {
    let Some(batch) = g.batch.take() else {
        return false;
    };
    // A savepoint whose owner vanished (see `in_savepoint`) is not committed.
    if g.in_savepoint {
        let rolled_back = match g.conn.as_mut() {
            Some(conn) => conn.execute(ROLLBACK_TO).await.map_err(|e| e.to_string()),
            None => Err("the writer connection was lost".into()),
        };
        if let Err(e) = rolled_back {
            g.batch = Some(batch);
            abort(g, &e).await;
            return false;
        }
        g.rolled_back();
    }
    let chain = g.chain.take();
    g.chain_at_savepoint = None;
    let released = std::mem::take(&mut g.released);
    let Some(conn) = g.conn.as_mut() else {
        let _ = batch.send(Some(Err("the writer connection was lost".into())));
        return false;
    };
    if !released {
        // Nothing to keep and nobody waiting for it: give the write lock back.
        let _ = conn.execute("ROLLBACK").await;
        g.conn = None;
        let _ = batch.send(Some(Ok(())));
        return false;
    }
    let started = std::time::Instant::now();
    let head = chain.filter(|c| c.now != c.stored).map(|c| c.now);
    let result = match close_sql(None, head.as_ref()) {
        Ok(sql) => run(conn, &sql).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    metrics::histogram!("brevet_store_commit_seconds").record(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(()) => Ok(()),
        Err(e) => {
            // SQLite may have rolled back already; make sure nothing stays open.
            let _ = conn.execute("ROLLBACK").await;
            Err(e)
        }
    };
    let committed = outcome.is_ok();
    g.conn = None;
    let _ = batch.send(Some(outcome));
    committed
}

/// A statement that must not fail did (a savepoint could not be set, released or rolled back
/// to): the physical transaction's state is unknown, so all of it is rolled back and every
/// logical transaction already released in it is told it failed. Fail closed.
async fn abort(g: &mut Open, why: &str) {
    if let Some(conn) = g.conn.as_mut() {
        let _ = conn.execute("ROLLBACK").await;
    }
    if let Some(batch) = g.batch.take() {
        let _ = batch.send(Some(Err(format!("rolled back: {why}"))));
    }
    g.conn = None;
    g.in_savepoint = false;
    g.released = false;
    g.chain = None;
    g.chain_at_savepoint = None;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Executor;

    use crate::Store;

    fn verify(events: &[brevet_audit::AuditEvent]) {
        let mut v = brevet_audit::Verifier::new();
        for e in events {
            v.push(e);
        }
        assert!(v.finish(None).ok, "the audit chain verifies");
    }

    fn event(what: &str) -> Vec<brevet_audit::AuditDraft> {
        vec![brevet_audit::AuditDraft::new(
            brevet_audit::EventKind::SessionStarted,
            "test",
            None,
            serde_json::json!({ "what": what }),
        )]
    }

    /// Three writes in one physical transaction, each appending to the audit chain: the first is
    /// released, the second rolled back (its caller dropped it), the third released. The chain's
    /// head lives in memory while the batch is open, so the rollback must take the second's
    /// event off it too: the third event follows the first, the chain verifies, and `audit_head`
    /// names the third, written when the transaction holding all three commits.
    async fn a_rolled_back_append_leaves_the_chain_whole(url: &str) {
        let store = Store::connect(url).await.unwrap();
        // Connecting may leave the flusher a batch to close (a transaction that found nothing
        // to do); let it finish, so it is not queued for the connection below.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut first = store.begin().await.unwrap();
        crate::audit::append(&mut first, event("first"), chrono::Utc::now())
            .await
            .unwrap();
        // Queued for the connection before the first's commit wakes the flusher (tokio's mutex
        // is fair): both join the first's physical transaction.
        let queued = |store: &Store| {
            let store = store.clone();
            tokio::spawn(async move { store.begin().await })
        };
        let second = queued(&store);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = queued(&store);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first_done = tokio::spawn({
            let store = store.clone();
            async move { store.commit(first).await }
        });
        let mut second = second.await.unwrap().unwrap();
        crate::audit::append(&mut second, event("rolled back"), chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(
            second.chain_head().seq,
            2,
            "the second sees the first's event"
        );
        let row: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&mut *second)
            .await
            .unwrap();
        assert_eq!(
            row, 0,
            "the head's row is written only when the batch commits"
        );
        drop(second);
        let mut third = third.await.unwrap().unwrap();
        // The first's commit waits for the flush of its physical transaction, which cannot
        // happen while the third holds the connection: the third is in the same one.
        assert!(!first_done.is_finished(), "the first's transaction is open");
        assert_eq!(
            third.chain_head().seq,
            1,
            "the rollback took the event off the head"
        );
        crate::audit::append(&mut third, event("third"), chrono::Utc::now())
            .await
            .unwrap();
        store.commit(third).await.unwrap();
        first_done.await.unwrap().unwrap();

        let (head, head_hash) = store.audit_head().await.unwrap();
        assert_eq!(head, 2);
        let events = store.audit_page(0, 10).await.unwrap();
        let what: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(what, [r#"{"what":"first"}"#, r#"{"what":"third"}"#]);
        assert_eq!(events[1].hash, head_hash, "audit_head names the last event");
        verify(&events);
    }

    /// The first write of a batch, which opened it, appends and is rolled back: the rollback
    /// puts back the head as the batch read it; the next write in the same batch starts the
    /// chain afresh.
    async fn a_rolled_back_first_append_leaves_the_chain_whole(url: &str) {
        let store = Store::connect(url).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flushes = store.flushes();
        let mut first = store.begin().await.unwrap();
        crate::audit::append(&mut first, event("rolled back"), chrono::Utc::now())
            .await
            .unwrap();
        let next = tokio::spawn({
            let store = store.clone();
            async move { store.begin().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Its rollback wakes the flusher, which queues behind `next`: same batch.
        drop(first);
        let mut next = next.await.unwrap().unwrap();
        assert_eq!(next.chain_head().seq, 0, "nothing of the rollback");
        crate::audit::append(&mut next, event("kept"), chrono::Utc::now())
            .await
            .unwrap();
        store.commit(next).await.unwrap();
        assert_eq!(store.flushes() - flushes, 1, "both were in one transaction");
        let events = store.audit_page(0, 10).await.unwrap();
        let what: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(what, [r#"{"what":"kept"}"#]);
        assert_eq!(
            store.audit_head().await.unwrap(),
            (1, events[0].hash.clone())
        );
        verify(&events);
    }

    /// A batch whose every write was rolled back is not committed (no fsync, nothing to keep),
    /// and it gives the write lock back: another process writes at once, and so does this one.
    async fn a_batch_of_rolled_back_writes_is_not_committed(url: &str) {
        let store = Store::connect(url).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flushes = store.flushes();
        let mut dropped = store.begin().await.unwrap();
        crate::audit::append(&mut dropped, event("dropped"), chrono::Utc::now())
            .await
            .unwrap();
        drop(dropped);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.flushes(), flushes, "nothing was committed");

        let other = Store::connect(url).await.unwrap();
        tokio::time::timeout(Duration::from_secs(3), other.append_audit(event("other")))
            .await
            .expect("the write lock was given back")
            .unwrap();
        store.append_audit(event("again")).await.unwrap();
        let events = store.audit_page(0, 10).await.unwrap();
        let what: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(what, [r#"{"what":"other"}"#, r#"{"what":"again"}"#]);
        verify(&events);
    }

    /// A first write that appended `what` and was released into the open batch, and a second
    /// that was queued before it committed (so ahead of the flusher) and now holds the
    /// connection, the batch still open: the first's commit, still waiting, and the second.
    async fn released_with_one_behind(
        store: &Store,
        what: &str,
    ) -> (
        tokio::task::JoinHandle<Result<(), crate::StoreError>>,
        super::Tx,
    ) {
        let mut first = store.begin().await.unwrap();
        crate::audit::append(&mut first, event(what), chrono::Utc::now())
            .await
            .unwrap();
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.begin().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first_done = tokio::spawn({
            let store = store.clone();
            async move { store.commit(first).await }
        });
        (first_done, second.await.unwrap().unwrap())
    }

    /// The last write of a batch closes it itself, and its `COMMIT` fails (here: a deferred
    /// constraint its write broke, checked only then). Nothing of the batch is durable, so every
    /// write in it must hear so — the one released earlier too, which waits for the batch — and
    /// the store must go on writing with its chain whole.
    async fn a_failed_commit_of_a_batch_fails_every_write_in_it(url: &str) {
        let store = Store::connect(url).await.unwrap();
        store
            .execute(sqlx::query(
                "CREATE TABLE deferred_check (id BIGINT PRIMARY KEY, parent BIGINT \
                 REFERENCES deferred_check (id) DEFERRABLE INITIALLY DEFERRED)",
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flushes = store.flushes();
        let (first_done, mut last) = released_with_one_behind(&store, "first").await;
        crate::audit::append(&mut last, event("last"), chrono::Utc::now())
            .await
            .unwrap();
        last.execute("INSERT INTO deferred_check (id, parent) VALUES (1, 42)")
            .await
            .expect("a deferred constraint is checked at COMMIT, not now");
        let failed = store.commit(last).await;
        assert!(
            failed.is_err(),
            "the last write's commit failed: {failed:?}"
        );
        let first_failed = tokio::time::timeout(Duration::from_secs(10), first_done)
            .await
            .expect("the first write hears of its batch")
            .unwrap();
        assert!(
            first_failed.is_err(),
            "the first write was in the failed COMMIT: {first_failed:?}"
        );
        assert_eq!(store.flushes(), flushes, "nothing was committed");

        assert!(store.audit_page(0, 10).await.unwrap().is_empty());
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deferred_check")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(rows, 0);
        store.append_audit(event("after")).await.unwrap();
        let events = store.audit_page(0, 10).await.unwrap();
        let what: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(what, [r#"{"what":"after"}"#]);
        verify(&events);
    }

    brevet_testkit::on_both_stores!(a_failed_commit_of_a_batch_fails_every_write_in_it:
        sqlite_a_failed_commit_of_a_batch_fails_every_write_in_it,
        postgres_a_failed_commit_of_a_batch_fails_every_write_in_it);

    brevet_testkit::on_both_stores!(a_batch_of_rolled_back_writes_is_not_committed:
        sqlite_a_batch_of_rolled_back_writes_is_not_committed,
        postgres_a_batch_of_rolled_back_writes_is_not_committed);

    brevet_testkit::on_both_stores!(a_rolled_back_first_append_leaves_the_chain_whole:
        sqlite_a_rolled_back_first_append_leaves_the_chain_whole,
        postgres_a_rolled_back_first_append_leaves_the_chain_whole);

    brevet_testkit::on_both_stores!(a_rolled_back_append_leaves_the_chain_whole:
        sqlite_a_rolled_back_append_leaves_the_chain_whole,
        postgres_a_rolled_back_append_leaves_the_chain_whole);

    /// A write that nobody is queued behind closes its physical transaction itself, releasing
    /// its savepoint in the same call. On PostgreSQL a statement of it that failed (its caller
    /// committed anyway) makes that release fail: rolling back to the savepoint must then keep
    /// the batch for the write released into it earlier, which the flusher commits; the failing
    /// write alone fails, and nothing of it stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_failed_write_closing_its_batch_fails_alone() {
        let db = brevet_testkit::TestDb::create("brevet_writer");
        let store = Store::connect(&db.url).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (kept_done, mut failing) = released_with_one_behind(&store, "kept").await;
        crate::audit::append(&mut failing, event("failed"), chrono::Utc::now())
            .await
            .unwrap();
        assert!(failing.execute("SELECT 1 / 0").await.is_err());
        let failed = store.commit(failing).await;
        assert!(
            failed.is_err(),
            "the failed write does not commit: {failed:?}"
        );
        tokio::time::timeout(Duration::from_secs(10), kept_done)
            .await
            .expect("the flusher commits what was kept")
            .unwrap()
            .unwrap();

        let events = store.audit_page(0, 10).await.unwrap();
        let what: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(what, [r#"{"what":"kept"}"#]);
        assert_eq!(store.audit_head().await.unwrap().0, 1);
        verify(&events);
        store.append_audit(event("after")).await.unwrap();
        verify(&store.audit_page(0, 10).await.unwrap());
    }

    /// Should a batch ever be closed with its PostgreSQL transaction aborted by an error (no
    /// path leads there: a released write's `RELEASE` succeeded, and a failed rollback aborts
    /// the batch), its writes are told it failed: PostgreSQL answers a `COMMIT` of such a
    /// transaction with success, having rolled it back. The state is made by hand here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_an_aborted_batch_is_never_reported_committed() {
        let db = brevet_testkit::TestDb::create("brevet_writer");
        let store = Store::connect(&db.url).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flushes = store.flushes();
        let mut tx = store.writer.begin().await.unwrap();
        assert!(
            tx.execute("SELECT 1 / 0").await.is_err(),
            "aborts the transaction"
        );
        let mut g = tx.guard.take().expect("held");
        g.in_savepoint = false;
        g.released = true;
        let mut outcome = g.batch.as_ref().expect("open").subscribe();
        drop(g);
        store.writer.wake();
        let told = tokio::time::timeout(Duration::from_secs(10), outcome.wait_for(Option::is_some))
            .await
            .expect("the flusher closes the batch")
            .unwrap()
            .clone();
        assert!(matches!(told, Some(Err(_))), "reported: {told:?}");
        assert_eq!(store.flushes(), flushes, "not counted as a commit");
        store.append_audit(event("after")).await.unwrap();
        verify(&store.audit_page(0, 10).await.unwrap());
    }

    #[test]
    fn a_head_that_is_not_hexadecimal_is_never_written_into_sql() {
        let head = |hash: &str| super::ChainHead {
            seq: 7,
            hash: hash.into(),
        };
        assert_eq!(
            super::close_sql(Some(super::RELEASE), Some(&head("00ff"))).unwrap(),
            "RELEASE brevet_tx; UPDATE audit_head SET seq = 7, hash = '00ff' WHERE id = 1; COMMIT"
        );
        assert_eq!(super::close_sql(None, None).unwrap(), "SELECT 1; COMMIT");
        for bad in ["", "00'; DROP TABLE audit_events; --", "abc g"] {
            let err = super::close_sql(None, Some(&head(bad))).unwrap_err();
            assert!(err.contains("not hexadecimal"), "{err}");
        }
    }

    /// A replica frozen with a batch open — a paused VM, or a network cut that leaves its TCP
    /// connection up — holds the audit head, which every other replica's writes wait for.
    /// PostgreSQL ends its transaction after `idle_in_transaction_session_timeout` (30 s, set on
    /// every store connection), so the others wait that long at most; the frozen replica's
    /// unconfirmed write fails, and once it thaws it writes again on a new connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_frozen_replica_holds_up_the_others_for_30_s_at_most() {
        let db = brevet_testkit::TestDb::create("brevet_writer");
        let a = Store::connect(&db.url).await.unwrap();
        let b = Store::connect(&db.url).await.unwrap();
        let mut frozen = a.begin().await.unwrap();
        crate::audit::append(&mut frozen, event("never confirmed"), chrono::Utc::now())
            .await
            .unwrap();

        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(45), b.append_audit(event("b")))
            .await
            .expect("the other replica's write went on within 45 s")
            .unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(25),
            "the frozen batch held the head until PostgreSQL ended it: waited {waited:?}"
        );

        let thawed = a.commit(frozen).await;
        assert!(thawed.is_err(), "its transaction was ended: {thawed:?}");
        a.append_audit(event("a again")).await.unwrap();
        let events = a.audit_page(0, 10).await.unwrap();
        let what: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(what, [r#"{"what":"b"}"#, r#"{"what":"a again"}"#]);
        verify(&events);
    }

    /// The interleaving that deadlocks batching replicas unless each physical transaction takes
    /// the audit head first, played out step by step on a real PostgreSQL: replica A's open
    /// batch has changed a row, and its next write wants the audit head; replica B's write holds
    /// the head and wants A's row. Taking the head at `BEGIN`, B waits before it holds anything,
    /// A finishes its batch, and then B goes on: every write succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_batches_wait_for_each_other_only_before_holding_anything() {
        let db = brevet_testkit::TestDb::create("brevet_writer");
        let a = Store::connect(&db.url).await.unwrap();
        let b = Store::connect(&db.url).await.unwrap();
        let row = "INSERT INTO binding_locks (binding, owner, lease_until) VALUES ('x', 'o', 0)";
        a.execute(sqlx::query(row)).await.unwrap();
        let take_row = |owner: &'static str| {
            format!("UPDATE binding_locks SET owner = '{owner}' WHERE binding = 'x'")
        };
        let head = "SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE";

        // A: a first write changes the row and is released into the open batch; a second,
        // queued behind it (ahead of the flusher), takes the connection with the batch still open.
        let mut a1 = a.writer.begin().await.unwrap();
        a1.execute(take_row("a").as_str()).await.unwrap();
        let a2 = tokio::spawn({
            let w = a.writer.clone();
            async move { w.begin().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a1_done = tokio::spawn(a1.commit());
        let mut a2 = tokio::time::timeout(Duration::from_secs(5), a2)
            .await
            .expect("the second write gets the connection")
            .unwrap()
            .unwrap();
        assert!(!a1_done.is_finished(), "the batch is still open");

        // B: one write that would take the head, then the row A's batch holds.
        let b_done = tokio::spawn({
            let w = b.writer.clone();
            async move {
                let mut b1 = w.begin().await?;
                b1.execute(head).await?;
                b1.execute(take_row("b").as_str()).await?;
                b1.commit().await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;

        // A's second write takes the head. Had B been able to take it, this would wait for B
        // while B waits for A: PostgreSQL's deadlock detector would fail one of the two.
        tokio::time::timeout(Duration::from_secs(20), a2.execute(head))
            .await
            .expect("A's write did not wait for B")
            .unwrap();
        a2.commit().await.unwrap();
        a1_done.await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(20), b_done)
            .await
            .expect("B went on once A's batch committed")
            .unwrap()
            .unwrap();
        let owner: String = sqlx::query_scalar("SELECT owner FROM binding_locks")
            .fetch_one(&a.reader)
            .await
            .unwrap();
        assert_eq!(owner, "b", "B's write came after A's batch");
    }
}
