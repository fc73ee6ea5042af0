//! Metrics: what Brevet measures, through the `metrics` facade, rendered in the Prometheus text
//! format by `metrics-exporter-prometheus` at `GET /metrics` (the route keeps its optional
//! `server.metrics_token`, so the exporter runs no listener of its own).
//!
//! Events are recorded where they happen (provider calls in `broker::lifecycle::bounded`,
//! activations and revocations in the broker, audit appends and commits in the store, deliveries
//! in the outbox, HTTP requests in a layer around every route); what is a count of the store's
//! rows (requests by state, pending revocations per provider, the scheduler's lag, deliveries by
//! state) is read from the store at each scrape, so every replica reports the same numbers.
//!
//! The recorder is process-wide (one per process, installed by the first [`install`]); a process
//! runs one broker. Metric names and their meaning are listed in `docs/observability.md`.

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

use brevet_core::RequestState;
use brevet_store::DeliveryState;
use chrono::{DateTime, Utc};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::broker::{Broker, BrokerError};

/// Latency buckets in seconds: sub-millisecond store work up to a five-minute provider retry.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Scrape-time gauges are set, then rendered, under this lock, so two scrapes (of two brokers in
/// one test process) never interleave their values.
static SCRAPE: Mutex<()> = Mutex::new(());

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Another recorder was installed first (an embedding program's): Brevet's events go
            // there, and this handle renders only the scrape-time gauges it cannot see.
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what is read from the store");
        }
        describe();
        // A counter without labels exists from the start at 0, so `increase()` sees its first
        // increment (a series born at 1 looks like no change).
        counter!("brevet_lease_takeovers_total").increment(0);
        handle
    })
}

fn describe() {
    use metrics::Unit::{Count, Seconds};
    describe_gauge!("brevet_requests", Count, "Requests by state.");
    describe_gauge!(
        "brevet_revocations_overdue",
        Count,
        "Revocations that failed and are being retried (state revoke_failed)."
    );
    describe_gauge!(
        "brevet_revocations_pending",
        Count,
        "Revocations not yet done, per provider instance: revoking (under way or interrupted) and revoke_failed (waiting for a retry)."
    );
    describe_gauge!(
        "brevet_scheduler_lag_seconds",
        Seconds,
        "Now minus when the longest-waiting due work (expiry, deadline, retry, resumption) fell due; 0 when nothing is due."
    );
    describe_gauge!(
        "brevet_scheduler_last_progress_seconds",
        Seconds,
        "Unix time the scheduler last made progress."
    );
    describe_gauge!(
        "brevet_reconciler_last_pass_seconds",
        Seconds,
        "Unix time of the reconciler's last pass that reached every provider without an error (0: none yet); alert when it falls behind reconcile_every."
    );
    describe_gauge!(
        "brevet_scheduler_healthy",
        "1 while the scheduler makes progress, 0 when it is stuck."
    );
    describe_gauge!(
        "brevet_deliveries",
        Count,
        "Notification deliveries by state (pending: first try or a retry; delivered; failed: given up)."
    );
    describe_counter!(
        "brevet_requests_shed_total",
        Count,
        "API requests refused with 503 because the server was at capacity (server.max_in_flight)."
    );
    describe_counter!(
        "brevet_store_commits_total",
        Count,
        "Write transactions the store has committed (explicit, or a single write statement)."
    );
    describe_counter!(
        "brevet_store_fsyncs_total",
        Count,
        "Durable writes the commits took: on SQLite the group commits (one fsync each, shared by every transaction in it); on PostgreSQL one per commit."
    );
    describe_counter!(
        "brevet_provider_calls_total",
        Count,
        "Provider calls by provider instance, call and outcome (ok, or the error's class: unreachable, refused, throttled, conflict, bad_input, still_present, unknown, config, timeout)."
    );
    describe_counter!(
        "brevet_provider_call_retries_total",
        Count,
        "Provider calls made again within one step (a throttled or conflicting answer)."
    );
    describe_histogram!(
        "brevet_provider_call_seconds",
        Seconds,
        "Time of one provider call (each attempt), by provider instance and call."
    );
    describe_histogram!(
        "brevet_activation_seconds",
        Seconds,
        "A requester's activation, from the API call to the grant committed with its credential, by provider instance and outcome."
    );
    describe_histogram!(
        "brevet_request_to_grant_seconds",
        Seconds,
        "From a request's creation to its grant committed active (includes time waiting for approval and for the requester to activate), by provider instance."
    );
    describe_histogram!(
        "brevet_revocation_seconds",
        Seconds,
        "One revocation attempt (binding lock, provider revoke and read-back, outcome committed), by provider instance and outcome."
    );
    describe_histogram!(
        "brevet_revocation_start_delay_seconds",
        Seconds,
        "From a grant's expiry to the scheduler starting its revocation, by provider instance."
    );
    describe_histogram!(
        "brevet_expiry_to_revoked_seconds",
        Seconds,
        "From a grant's expiry to its revocation verified at the provider, by provider instance (grants revoked after their expiry only)."
    );
    describe_counter!(
        "brevet_revocations_total",
        Count,
        "Revocation attempts by provider instance and outcome (revoked, failed)."
    );
    describe_counter!(
        "brevet_lease_takeovers_total",
        Count,
        "Due work claimed whose lease another replica (or an earlier life of this one) still named when it ran out."
    );
    describe_histogram!(
        "brevet_audit_append_seconds",
        Seconds,
        "Appending events to the audit chain inside a store transaction (taking the chain's head and inserting); durable at the commit that follows."
    );
    describe_histogram!(
        "brevet_store_commit_seconds",
        Seconds,
        "Committing one batch of store write transactions (its fsync, shared by every write in it)."
    );
    describe_histogram!(
        "brevet_store_write_lock_wait_seconds",
        Seconds,
        "Opening a batch of store writes: mostly the wait for the store's write lock (another replica's batch on PostgreSQL, another process on SQLite)."
    );
    describe_counter!(
        "brevet_delivery_attempts_total",
        Count,
        "Notification delivery attempts by subscriber and outcome (delivered, retry, gave_up)."
    );
    describe_counter!(
        "brevet_http_requests_total",
        Count,
        "HTTP requests by method, route (as routed, e.g. /v1/requests/{id}) and status code."
    );
    describe_histogram!(
        "brevet_http_request_seconds",
        Seconds,
        "Time to answer an HTTP request (to its response head), by method and route."
    );
}

/// One provider call's attempt: its outcome label and how long it took.
pub(crate) fn provider_call(provider: &str, call: &str, outcome: &str, took: Duration) {
    let (provider, call) = (provider.to_owned(), call.to_owned());
    counter!("brevet_provider_calls_total", "provider" => provider.clone(), "call" => call.clone(), "outcome" => outcome.to_owned())
        .increment(1);
    histogram!("brevet_provider_call_seconds", "provider" => provider, "call" => call)
        .record(took.as_secs_f64());
}

pub(crate) fn provider_retry(provider: &str, call: &str) {
    counter!("brevet_provider_call_retries_total", "provider" => provider.to_owned(), "call" => call.to_owned())
        .increment(1);
}

pub(crate) fn activation(provider: &str, ok: bool, took: Duration) {
    let outcome = if ok { "active" } else { "failed" };
    histogram!("brevet_activation_seconds", "provider" => provider.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

pub(crate) fn granted(provider: &str, created_at: DateTime<Utc>, now: DateTime<Utc>) {
    histogram!("brevet_request_to_grant_seconds", "provider" => provider.to_owned())
        .record(seconds_between(created_at, now));
}

pub(crate) fn revocation_started(provider: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) {
    histogram!("brevet_revocation_start_delay_seconds", "provider" => provider.to_owned())
        .record(seconds_between(expires_at, now));
}

/// One revocation attempt: `expires_at` is the grant's end, if it had one (a grant revoked after
/// it records how long after its end the access was gone).
pub(crate) fn revocation(
    provider: &str,
    revoked: bool,
    took: Duration,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let outcome = if revoked { "revoked" } else { "failed" };
    counter!("brevet_revocations_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
    histogram!("brevet_revocation_seconds", "provider" => provider.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
    if let Some(end) = expires_at.filter(|end| revoked && *end <= now) {
        histogram!("brevet_expiry_to_revoked_seconds", "provider" => provider.to_owned())
            .record(seconds_between(end, now));
    }
}

pub(crate) fn lease_takeovers(n: usize) {
    counter!("brevet_lease_takeovers_total").increment(n as u64);
}

pub(crate) fn delivery_attempt(subscriber: &str, outcome: &'static str) {
    counter!("brevet_delivery_attempts_total", "subscriber" => subscriber.to_owned(), "outcome" => outcome)
        .increment(1);
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds().max(0)) as f64 / 1000.0
}

/// Counts HTTP requests and their latency by route template (never the raw path, whose ids would
/// make a series per request).
pub async fn http_layer(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    histogram!("brevet_http_request_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    counter!("brevet_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// What `GET /metrics` answers: the store's counts read now, then everything rendered.
pub async fn render(broker: &Broker) -> Result<String, BrokerError> {
    let handle = install();
    let store = broker.store();
    let now = Utc::now();
    let counts = store.count_by_state().await?;
    let pending = store.pending_revocations().await?;
    let oldest_due = store.oldest_due(now).await?;
    let deliveries = store.count_deliveries().await?;
    let healthy = broker.scheduler_health(now).is_ok();
    let hb = &broker.heartbeat;
    let unix = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;

    let _scrape = SCRAPE.lock().unwrap_or_else(|p| p.into_inner());
    let count_of = |s: RequestState| {
        counts
            .iter()
            .find(|(st, _)| *st == s)
            .map_or(0, |(_, n)| *n)
    };
    for s in RequestState::ALL {
        gauge!("brevet_requests", "state" => s.as_str()).set(count_of(s) as f64);
    }
    gauge!("brevet_revocations_overdue").set(count_of(RequestState::RevokeFailed) as f64);
    // Every configured provider has both series, at 0 when nothing is pending there.
    for name in broker.provider_names() {
        for s in [RequestState::Revoking, RequestState::RevokeFailed] {
            let n = pending
                .iter()
                .find(|(p, st, _)| p == name && *st == s)
                .map_or(0, |(_, _, n)| *n);
            gauge!("brevet_revocations_pending", "provider" => name.to_owned(), "state" => s.as_str())
                .set(n as f64);
        }
    }
    gauge!("brevet_scheduler_lag_seconds").set(oldest_due.map_or(0.0, |t| seconds_between(t, now)));
    gauge!("brevet_scheduler_last_progress_seconds").set(unix(hb.scheduler_at()));
    gauge!("brevet_reconciler_last_pass_seconds").set(hb.reconciler_at().map_or(0.0, unix));
    gauge!("brevet_scheduler_healthy").set(f64::from(u8::from(healthy)));
    for s in DeliveryState::ALL {
        let n = deliveries
            .iter()
            .find(|(st, _)| *st == s)
            .map_or(0, |(_, n)| *n);
        gauge!("brevet_deliveries", "state" => s.as_str()).set(n as f64);
    }
    counter!("brevet_requests_shed_total").absolute(
        broker
            .requests_shed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    counter!("brevet_store_commits_total").absolute(store.commits());
    counter!("brevet_store_fsyncs_total").absolute(store.flushes());
    Ok(handle.render())
}

/// Drains histogram samples into their buckets now and then, so a server nobody scrapes does not
/// keep every sample (the exporter aggregates on render or upkeep).
pub fn spawn_upkeep(
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let handle = install();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = every.tick() => handle.run_upkeep(),
                _ = shutdown.changed() => return,
            }
        }
    })
}
