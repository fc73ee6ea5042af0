//! Expiry at scale (issue #15 item 7): a store holding 100,000 active grants, the real scheduler
//! (`Broker::spawn_background`) and an in-memory provider, on SQLite and — when
//! `BREVET_TEST_PG_URL` is set — PostgreSQL. `cargo bench -p brevet-server --bench expiry_drain`.
//!
//! - **A, a steady stream**: of `BENCH_GRANTS` active grants, `BENCH_STREAM_RATE` a second expire
//!   for `BENCH_STREAM_SECS` (the rest a day later, still in the store). Measured from the audit
//!   log: how long after its expiry each revocation started (`revocation_started`, the event
//!   `brevet_revocation_start_delay_seconds` times) and ended (`grant_revoked`, verified).
//! - **B, all at once**: `BENCH_GRANTS` grants expired at the same instant, drained by a
//!   provider held to `BENCH_DRAIN_RATE` revocations a second (`revoke_rate`; `off`: unlimited)
//!   with a burst of `BENCH_DRAIN_BURST`. Drain time (scheduler start → last revocation verified)
//!   against the ideal `(N − burst) / rate`; overhead = (drain − ideal) / drain. The most
//!   revocations started in any second, as the provider saw them, against `rate + burst`.
//!
//! Both print the process's peak RSS (`VmHWM`, reset after the fill, so it is the drain's) and
//! the store's commits per revocation. The store is filled through `Store::insert_requests`,
//! 1,000 grants a transaction, each with its `grant_activated` audit event. The in-memory target
//! starts empty (revoking what is absent is a success, as the provider contract says), so the
//! process's memory is Brevet's own.
//!
//! Knobs: `BENCH_GRANTS` (100000), `BENCH_SCENARIOS` (`a,b`), `BENCH_STORES` (`sqlite,postgres`),
//! `BENCH_STREAM_RATE` (200), `BENCH_STREAM_SECS` (30), `BENCH_DRAIN_RATE` (500),
//! `BENCH_DRAIN_BURST` (64), `BENCH_TICK_MS` (1000, the server's default `tick`). Run by
//! `cargo test` (without `--bench`), it is a smoke test: 2,000 grants, a 2-second stream.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use brevet_audit::{AuditDraft, EventKind};
use brevet_config::RevokeRate;
use brevet_core::{
    Binding, Evidence, GrantDuration, NewRequest, PrincipalId, ProfileName, ProviderName, Request,
    RequestKind, ResourceId,
};
use brevet_providers::{
    Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError,
};
use brevet_server::Broker;
use brevet_store::Store;
use chrono::{DateTime, Utc};

const PRINCIPALS: usize = 1000;
/// Revocations counted per slot of this length, for the most in any second.
const SLOT: Duration = Duration::from_millis(100);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        Err(_) => default,
    }
}

/// The in-memory provider, counting revoke calls by when they started (100 ms slots: bounded
/// memory, whatever the number of grants).
struct Counting {
    inner: support::InMemoryProvider,
    epoch: Instant,
    slots: Vec<AtomicU32>,
    revokes: AtomicU64,
}

impl Counting {
    fn new(longest: Duration) -> Self {
        let n = (longest.as_millis() / SLOT.as_millis()) as usize + 1;
        Self {
            inner: support::InMemoryProvider::default(),
            epoch: Instant::now(),
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
            revokes: AtomicU64::new(0),
        }
    }

    fn revokes(&self) -> u64 {
        self.revokes.load(Ordering::Relaxed)
    }

    /// The most revoke calls that started within 1 s (ten consecutive slots).
    fn most_in_a_second(&self) -> u32 {
        let per = (Duration::from_secs(1).as_millis() / SLOT.as_millis()) as usize;
        let counts: Vec<u32> = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        counts
            .windows(per)
            .map(|w| w.iter().sum())
            .max()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Provider for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn profiles(&self) -> Vec<ProfileName> {
        self.inner.profiles()
    }
    async fn ensure(
        &self,
        cx: &OpContext,
        b: &Binding,
        until: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.inner.ensure(cx, b, until).await
    }
    async fn issue_credentials(
        &self,
        cx: &OpContext,
        b: &Binding,
        until: DateTime<Utc>,
        input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        self.inner.issue_credentials(cx, b, until, input).await
    }
    async fn revoke(&self, cx: &OpContext, b: &Binding) -> Result<(), ProviderError> {
        let slot = (self.epoch.elapsed().as_millis() / SLOT.as_millis()) as usize;
        if let Some(s) = self.slots.get(slot) {
            s.fetch_add(1, Ordering::Relaxed);
        }
        self.revokes.fetch_add(1, Ordering::Relaxed);
        self.inner.revoke(cx, b).await
    }
    async fn verify_revoked(&self, cx: &OpContext, b: &Binding) -> Result<Evidence, ProviderError> {
        self.inner.verify_revoked(cx, b).await
    }
    async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        self.inner.list_owned(cx).await
    }
    async fn remove_owned(
        &self,
        cx: &OpContext,
        o: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        self.inner.remove_owned(cx, o).await
    }
    async fn terminate_sessions(&self, cx: &OpContext, b: &Binding) -> Result<u64, ProviderError> {
        self.inner.terminate_sessions(cx, b).await
    }
}

/// Grant `i`: principal `user{i % 1000}` on `mem:db{i / 1000}`, a binding of its own, active
/// since `granted_at` until `expires_at`, with its `grant_activated` audit event.
fn grant(
    i: usize,
    granted_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> (Request, Vec<AuditDraft>) {
    let duration = GrantDuration::from_std((expires_at - granted_at).to_std().unwrap()).unwrap();
    let mut r = Request::new(
        NewRequest {
            kind: RequestKind::Access,
            requester: PrincipalId::parse(&format!("user{}", i % PRINCIPALS)).unwrap(),
            resource: ResourceId::parse(&format!("mem:db{}", i / PRINCIPALS)).unwrap(),
            profile: ProfileName::parse("db.read").unwrap(),
            duration,
            reason: Some("bench".into()),
            ticket: None,
            approvals_required: 0,
            policy_rule: "auto".into(),
            max_extensions: 0,
            approve_within: Duration::from_secs(3600),
            activate_within: Duration::from_secs(3600),
        },
        granted_at,
    );
    r.start_activation(granted_at).unwrap();
    r.activation_succeeded().unwrap();
    let audit = AuditDraft::new(
        EventKind::GrantActivated,
        r.requester.as_str(),
        Some(r.id.to_string()),
        serde_json::json!({"resource": r.resource, "expires_at": expires_at, "bench": true}),
    );
    (r, vec![audit])
}

/// Stores grants `from..to`, 1,000 a transaction.
async fn fill(
    store: &Store,
    from: usize,
    to: usize,
    granted_at: DateTime<Utc>,
    expiry: impl Fn(usize) -> DateTime<Utc>,
) {
    let mut i = from;
    while i < to {
        let end = (i + 1000).min(to);
        let batch = (i..end).map(|i| grant(i, granted_at, expiry(i))).collect();
        store.insert_requests(batch).await.unwrap();
        i = end;
    }
}

/// (VmRSS, VmHWM) of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// Resets VmHWM to the current RSS, so the next reading is the peak from here on.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Seconds from each event of `kind`'s grant expiry to the event, from the audit log (paged).
async fn lags(store: &Store, kind: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page.iter().filter(|e| e.kind == kind) {
            let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            let expired: DateTime<Utc> = data["expires_at"].as_str().unwrap().parse().unwrap();
            let at: DateTime<Utc> = e.at.parse().unwrap();
            out.push((at - expired).num_microseconds().unwrap() as f64 / 1e6);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// When the last event of `kind` was written.
async fn last_event_at(store: &Store, kind: &str) -> DateTime<Utc> {
    let (head, _) = store.audit_head().await.unwrap();
    let mut after = (head - 2000).max(0);
    let mut last = None;
    loop {
        let page = store.audit_page(after, 1000).await.unwrap();
        let Some(end) = page.last() else { break };
        after = end.seq;
        if let Some(e) = page.iter().rev().find(|e| e.kind == kind) {
            last = Some(e.at.parse().unwrap());
        }
    }
    last.expect("an event of that kind")
}

async fn broker(url: &str, grants: usize, provider: Arc<Counting>, tick: Duration) -> Broker {
    support::broker_on(
        url,
        grants.div_ceil(PRINCIPALS),
        support::principals(PRINCIPALS),
        support::POLICY,
        provider,
        support::settings(tick),
    )
    .await
}

/// Runs the background tasks until `done` says so (checked every 20 ms) or `limit` passes.
async fn run_until(broker: &Arc<Broker>, limit: Duration, done: impl Fn() -> bool) -> bool {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = broker.spawn_background(stopped);
    let started = Instant::now();
    let finished = loop {
        if done() {
            break true;
        }
        if started.elapsed() > limit {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.send(true).unwrap();
    for (_, t) in tasks {
        let _ = t.await;
    }
    finished
}

async fn wait_idle(store: &Store) {
    // The last revocation's outcome is written after its provider call: wait for nothing due.
    while store.oldest_due(Utc::now()).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream(label: &str, url: &str, n: usize, tick: Duration) {
    let rate: f64 = env("BENCH_STREAM_RATE", 200.0);
    let secs: f64 = env("BENCH_STREAM_SECS", 30.0);
    let streamed = ((rate * secs) as usize).min(n);
    let provider = Arc::new(Counting::new(Duration::from_secs(3600)));
    let broker = Arc::new(broker(url, n, provider.clone(), tick).await);
    let store = broker.store().clone();
    let filling = Instant::now();
    let now = Utc::now();
    fill(&store, streamed, n, now, |_| {
        now + chrono::Duration::days(1)
    })
    .await;
    let first = Utc::now() + chrono::Duration::seconds(3);
    let step = chrono::Duration::microseconds((1e6 / rate) as i64);
    fill(&store, 0, streamed, Utc::now(), |i| first + step * i as i32).await;
    let filled = filling.elapsed();
    reset_peak();
    let (rss, _) = memory();
    let commits = store.commits();
    let limit = Duration::from_secs_f64(secs + 60.0);
    let finished = run_until(&broker, limit, || provider.revokes() as usize >= streamed).await;
    wait_idle(&store).await;
    let (_, peak) = memory();
    let commits = store.commits() - commits;
    let started = lags(&store, "revocation_started").await;
    let revoked = lags(&store, "grant_revoked").await;
    assert!(
        finished,
        "not every streamed grant was revoked within {limit:?}"
    );
    assert_eq!(started.len(), streamed);
    let ms = |v: f64| v * 1e3;
    println!(
        "| {label} | A | {n} active, {streamed} expiring at {rate}/s | fill {:.1} s | start lag p50 {:.0} / p99 {:.0} / max {:.0} ms | revoked lag p50 {:.0} / p99 {:.0} / max {:.0} ms | RSS {rss:.0} MiB, peak {peak:.0} MiB | {:.1} commits/revocation |",
        filled.as_secs_f64(),
        ms(percentile(&started, 0.5)),
        ms(percentile(&started, 0.99)),
        ms(percentile(&started, 1.0)),
        ms(percentile(&revoked, 0.5)),
        ms(percentile(&revoked, 0.99)),
        ms(percentile(&revoked, 1.0)),
        commits as f64 / streamed as f64,
    );
}

async fn burst(label: &str, url: &str, n: usize, tick: Duration) {
    let rate: Option<f64> = match std::env::var("BENCH_DRAIN_RATE").as_deref() {
        Ok("off") => None,
        _ => Some(env("BENCH_DRAIN_RATE", 500.0)),
    };
    let burst: u32 = env("BENCH_DRAIN_BURST", 64);
    let provider = Arc::new(Counting::new(Duration::from_secs(7200)));
    let mut b = broker(url, n, provider.clone(), tick).await;
    if let Some(rate) = rate {
        let limit = RevokeRate::new(rate, Some(burst)).unwrap();
        b = b.with_revoke_rates(BTreeMap::from([(
            ProviderName::parse("mem").unwrap(),
            limit,
        )]));
    }
    let broker = Arc::new(b);
    let store = broker.store().clone();
    let filling = Instant::now();
    let expired = Utc::now() - chrono::Duration::seconds(1);
    fill(&store, 0, n, expired - chrono::Duration::seconds(1), |_| {
        expired
    })
    .await;
    let filled = filling.elapsed();
    reset_peak();
    let (rss, _) = memory();
    let commits = store.commits();
    let ideal = rate.map(|r| n.saturating_sub(burst as usize) as f64 / r);
    let limit = Duration::from_secs_f64(ideal.unwrap_or(600.0) * 2.0 + 60.0);
    let started = Utc::now();
    let finished = run_until(&broker, limit, || provider.revokes() as usize >= n).await;
    wait_idle(&store).await;
    let (_, peak) = memory();
    let commits = store.commits() - commits;
    assert!(finished, "not every grant was revoked within {limit:?}");
    let end = last_event_at(&store, "grant_revoked").await;
    let drain = (end - started).num_microseconds().unwrap() as f64 / 1e6;
    let limited = match (rate, ideal) {
        (Some(r), Some(ideal)) => format!(
            "{r}/s, burst {burst} | ideal {ideal:.2} s | overhead {:.2} % | most in 1 s: {} (limit {})",
            (drain - ideal) / drain * 100.0,
            provider.most_in_a_second(),
            r as u32 + burst,
        ),
        _ => format!(
            "unlimited | achieved {:.0}/s | | most in 1 s: {}",
            n as f64 / drain,
            provider.most_in_a_second()
        ),
    };
    println!(
        "| {label} | B | {n} expired at once | fill {:.1} s | {limited} | drain {drain:.2} s | RSS {rss:.0} MiB, peak {peak:.0} MiB | {:.1} commits/revocation |",
        filled.as_secs_f64(),
        commits as f64 / n as f64,
    );
}

fn main() {
    // Under `cargo test` (no `--bench`, a debug build) the same code runs as a smoke test on a
    // small store, so `scripts/test` checks it without spending minutes on it.
    if !std::env::args().any(|a| a == "--bench") {
        for (knob, small) in [("BENCH_GRANTS", "2000"), ("BENCH_STREAM_SECS", "2")] {
            if std::env::var_os(knob).is_none() {
                std::env::set_var(knob, small);
            }
        }
    }
    let n: usize = env("BENCH_GRANTS", 100_000);
    let tick = Duration::from_millis(env("BENCH_TICK_MS", 1000));
    let scenarios: String = env("BENCH_SCENARIOS", "a,b".to_string());
    let stores: String = env("BENCH_STORES", "sqlite,postgres".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for store in stores.split(',') {
            for scenario in scenarios.split(',') {
                let dir = tempfile::tempdir().unwrap();
                let db;
                let url = match store {
                    "sqlite" => format!("sqlite://{}", dir.path().join("drain.db").display()),
                    "postgres" if std::env::var_os("BREVET_TEST_PG_URL").is_some() => {
                        db = brevet_testkit::TestDb::create("brevet_bench_drain");
                        db.url.clone()
                    }
                    "postgres" => continue,
                    other => panic!("BENCH_STORES: unknown store `{other}` (sqlite, postgres)"),
                };
                match scenario {
                    "a" => stream(store, &url, n, tick).await,
                    "b" => burst(store, &url, n, tick).await,
                    other => panic!("BENCH_SCENARIOS: unknown scenario `{other}` (a, b)"),
                }
            }
        }
    });
}
