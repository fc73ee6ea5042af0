//! Storage: one repository type, [`Store`], with two real backends chosen by URL — SQLite (embedded
//! default, a file path, zero setup) and PostgreSQL (several replicas). All SQL lives here.
//!
//! Every write that changes a request appends its audit events in the same transaction, so a
//! state change without its audit record cannot exist: if the audit cannot be written, nothing is.

mod audit;
mod deliveries;
mod error;
mod locks;
mod requests;
mod sessions;
mod state;
mod writer;

use std::{str::FromStr, time::Duration};

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, Executor,
};

pub use deliveries::{AttemptOutcome, Delivery, DeliveryFilter, DeliveryState, NewDelivery};
pub use error::StoreError;
pub use locks::{LocksOn, PrincipalLock, Unlocked};
pub use requests::{DueBatch, DueQuota, Hold, PageCursor, RequestFilter, Step};
pub use sessions::{LoginFlow, SessionRecord};
pub use state::StateEntry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    /// Plain reads. On SQLite: separate read-only connections, which WAL lets read while the
    /// writer commits, so a status read never queues behind another request's fsync; each read
    /// sees every transaction committed before it began. On PostgreSQL: the same pool.
    reader: AnyPool,
    backend: Backend,
    /// Write transactions committed (explicit, or one statement on its own), for
    /// [`Store::commits`].
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Writes, and reads inside a write transaction: the group-committing writer, on one
    /// connection of the write pool at a time (on SQLite its only one; see [`writer`]).
    writer: writer::Writer,
}

/// A write statement run as its own transaction through [`Store::execute`] /
/// [`Store::fetch_written`] (so that, on SQLite, it joins the group commit).
pub(crate) trait WriteQuery<'q> {
    async fn run_on(self, store: &Store) -> Result<sqlx::any::AnyQueryResult, StoreError>;
    async fn fetch_written_on(self, store: &Store) -> Result<Vec<sqlx::any::AnyRow>, StoreError>;
}

impl<'q> WriteQuery<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    async fn run_on(self, store: &Store) -> Result<sqlx::any::AnyQueryResult, StoreError> {
        store.execute(self).await
    }
    async fn fetch_written_on(self, store: &Store) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        store.fetch_written(self).await
    }
}

/// A write transaction: a logical transaction that the group-committing writer makes durable
/// together with others (see [`writer`]). It is committed with [`Store::commit`], rolled back if
/// dropped, and derefs to the connection that statements run on.
pub(crate) type WriteTx = writer::Tx;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    ///
    /// `sqlite://PATH` or a bare file path selects SQLite; `postgres://…` selects PostgreSQL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), Backend::Postgres)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::Config(
                    "the SQLite store needs a file path, e.g. `sqlite://brevet.db`".into(),
                ));
            }
            (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite)
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|e| StoreError::Config(e.to_string()))?;
        let pool = match backend {
            // SQLite has one writer; a single connection avoids lock-upgrade deadlocks between
            // transactions that read and then write (the audit head, for instance).
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                // A local file's connection does not go stale; pinging it before every use
                // would cost a round trip to SQLite's worker thread per transaction.
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await,
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                // The writer's open transaction holds the audit chain's head, which every
                // replica's writes wait for (see `writer`). Should this process stop between
                // statements without its connection closing (frozen, or cut off behind a
                // firewall that drops packets), PostgreSQL ends the transaction after this long,
                // so the other replicas are not blocked for good. Nothing here idles in a
                // transaction on purpose: no provider call or other wait happens inside one.
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET idle_in_transaction_session_timeout = '30s'")
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await,
        }
        .map_err(|e| StoreError::Connect(redact(&e.to_string())))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        // An in-memory database is private to its connection: it has only the writer.
        let reader = match backend {
            Backend::Sqlite if url.contains(":memory:") => pool.clone(),
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA query_only = 1; PRAGMA busy_timeout = 5000;")
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(
                    AnyConnectOptions::from_str(&url)
                        .map_err(|e| StoreError::Config(e.to_string()))?,
                )
                .await
                .map_err(|e| StoreError::Connect(redact(&e.to_string())))?,
            Backend::Postgres => pool.clone(),
        };
        let writer = writer::Writer::start(pool.clone(), backend);
        let store = Self {
            reader,
            backend,
            commits: Default::default(),
            writer,
        };
        let filled = store.fill_request_providers().await?;
        if filled > 0 {
            tracing::info!(
                requests = filled,
                "recorded the provider of scheduled requests"
            );
        }
        let moved = store.import_legacy_certificates().await?;
        if moved > 0 {
            tracing::info!(
                records = moved,
                "moved SSH certificate records into provider state"
            );
        }
        Ok(store)
    }

    /// Starts a write transaction: a logical transaction of the group-committing writer, whose
    /// physical transaction takes the store's write lock up front (see [`writer`]).
    ///
    /// It begins on a task of its own. A caller that stops waiting (a timeout, a client that
    /// hung up) could otherwise be dropped after the database began the transaction but before
    /// the value that rolls it back on drop was handed over; the connection would stay inside a
    /// transaction nobody owns. Here the task always finishes, and dropping its transaction
    /// unused rolls it back.
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        self.writer.begin().await
    }

    /// Runs one `DELETE … WHERE key = $1` and, if it removed something, appends `audit` in the
    /// same transaction; returns whether it removed something (nothing is audited otherwise).
    pub(crate) async fn delete_audited(
        &self,
        sql: &'static str,
        key: &str,
        audit: Vec<brevet_audit::AuditDraft>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(sql).bind(key).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        audit::append(&mut tx, audit, chrono::Utc::now()).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    /// How many write transactions this store has committed so far (explicit, or one statement
    /// on its own). Each needs one durable write unless group commit shares it (see
    /// [`Store::flushes`]); the count per operation is what a regression test pins.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many durable writes (fsyncs) the commits took: the group-committing writer's
    /// physical commits, fewer than [`Store::commits`] when writes overlap.
    pub fn flushes(&self) -> u64 {
        self.writer.flushes()
    }

    pub(crate) async fn commit(&self, tx: WriteTx) -> Result<(), StoreError> {
        // The writer records the physical commit's own time.
        tx.commit().await?;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Runs one write statement as its own transaction (counted as one commit).
    pub(crate) async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyQueryResult, StoreError> {
        let mut tx = self.begin().await?;
        let done = query.execute(&mut *tx).await?;
        self.commit(tx).await?;
        Ok(done)
    }

    /// Runs one write statement that returns rows (`… RETURNING`) as its own transaction.
    pub(crate) async fn fetch_written<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut tx = self.begin().await?;
        let rows = query.fetch_all(&mut *tx).await?;
        self.commit(tx).await?;
        Ok(rows)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        // On a read connection: a health check must not queue behind the writer's fsyncs.
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

/// Connection errors can echo the URL; never let a password through to logs or users.
fn redact(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| match (w.find("://"), w.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://***{}", &w[..s], &w[at..]),
            _ => w.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}
