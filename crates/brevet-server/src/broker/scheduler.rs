//! Background work: deadlines, expiry, resumption of interrupted activations, revocation retries,
//! and reconciliation of what providers hold against what grants cover.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{ProviderName, Request, RequestState};
use brevet_store::DueQuota;
use chrono::{DateTime, TimeZone, Utc};

use brevet_providers::{OpContext, Operation};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::{audit_data::event, Broker, BrokerError};

pub use brevet_wire::ReconcileReport;

/// How many due requests one scheduler pass claims of each provider, and works on at once.
const SCHEDULER_BATCH: u32 = 64;

/// What one scheduler pass did, and whether more is waiting.
#[derive(Debug, Default)]
struct Pass {
    handled: usize,
    /// A provider (or the rest) had more due work than the pass claimed: go on at once.
    backlog: bool,
    /// A rate-limited provider has due revocations it had no budget for: go on after this long.
    throttled: Option<Duration>,
    /// The instant the pass claimed work as of: whatever falls due after it is the next pass's.
    claimed_at: DateTime<Utc>,
}

impl Broker {
    /// One scheduler pass: claims due requests and works on each. Returns how many were
    /// handled.
    pub async fn tick(&self) -> Result<usize, BrokerError> {
        Ok(self.pass(true).await?.handled)
    }

    /// Claims each provider's due requests — up to a batch, or what its revocation budget allows
    /// now — and, when `rest` is set, those of providers no longer configured, then works on
    /// them all at once. The locked-principal sweep runs with the rest.
    async fn pass(&self, rest: bool) -> Result<Pass, BrokerError> {
        self.heartbeat.scheduled();
        if rest {
            if let Err(e) = self.sweep_locked().await {
                tracing::warn!(error = %e, "locked-principal sweep failed; retrying next tick");
            }
        }
        let started = Instant::now();
        let quotas: Vec<(&ProviderName, u32)> = self
            .providers
            .keys()
            .map(|p| (p, self.revoke_budgets.quota(p, SCHEDULER_BATCH, started)))
            .collect();
        let quota = DueQuota {
            providers: quotas
                .iter()
                .map(|(p, n)| (p.as_str(), i64::from(*n)))
                .collect(),
            others: if rest { i64::from(SCHEDULER_BATCH) } else { 0 },
        };
        let claimed_at = Utc::now();
        let due = self
            .store
            .claim_due_by_provider(claimed_at, &self.replica, self.settings.lease, &quota)
            .await?;
        if !due.taken_over.is_empty() {
            for (id, owner) in &due.taken_over {
                tracing::info!(grant_id = %id, previous_owner = %owner, "took over work whose lease ran out");
            }
            crate::telemetry::lease_takeovers(due.taken_over.len());
        }
        // What each provider's lane took, and how many of those start revocation work (what a
        // revocation budget is spent on).
        let mut taken: BTreeMap<ProviderName, (u32, u32)> = BTreeMap::new();
        for r in &due.requests {
            let n = taken.entry(r.resource.provider()).or_default();
            n.0 += 1;
            if matches!(
                r.state,
                RequestState::Active | RequestState::Revoking | RequestState::RevokeFailed
            ) {
                n.1 += 1;
            }
        }
        let mut pass = Pass {
            handled: due.requests.len(),
            claimed_at,
            ..Pass::default()
        };
        let mut listed = 0;
        for (p, quota) in &quotas {
            let (claimed, revocations) = taken.get(*p).copied().unwrap_or_default();
            listed += claimed;
            self.revoke_budgets
                .claimed(p, *quota, claimed, revocations, started);
            pass.backlog |= *quota == SCHEDULER_BATCH && claimed >= *quota;
        }
        pass.backlog |= rest && due.requests.len() as u32 - listed >= SCHEDULER_BATCH;
        // The claimed work runs at once: each piece is bounded by the provider timeout, so one
        // hung target holds up no other grant's revocation, and every piece finishes within the
        // lease it was claimed with (worked one after another, the last of a batch could start
        // after its lease ran out, and wait a provider timeout for every hung call before it).
        // A rate-limited provider's lane held only what its budget allowed, so none of it
        // waits for the budget either.
        let released = futures::future::join_all(due.requests.into_iter().map(|r| async move {
            let id = r.id;
            let span = tracing::info_span!("scheduled", grant_id = %id, state = %r.state);
            let released = match self.handle_due(r).instrument(span).await {
                // A revocation's outcome gave the lease back in its own transaction.
                Ok(true) => Ok(()),
                Ok(false) => self.store.release(id, &self.replica).await,
                Err(e) => {
                    tracing::warn!(grant_id = %id, error = %e, "scheduled work failed; it stays due");
                    self.store.release(id, &self.replica).await
                }
            };
            self.heartbeat.scheduled();
            released
        }))
        .await;
        for r in released {
            r?;
        }
        // Asked after the work: its budget refilled meanwhile.
        pass.throttled = self
            .revoke_budgets
            .throttled_for(SCHEDULER_BATCH, Instant::now());
        Ok(pass)
    }

    /// Runs one pass and says how long to wait before the next: not at all while some provider
    /// has more than a batch due; until a rate-limited provider with work waiting can start a
    /// batch of it; else until the next work falls due; never longer than a tick. `rest_at` is
    /// when a pass last took the rest (providers no longer configured, and the locked-principal
    /// sweep): once a tick, since its query reads past every provider's backlog.
    async fn step(&self, rest_at: &mut Option<Instant>) -> Duration {
        let tick = self.settings.tick;
        let rest = rest_at.is_none_or(|at| at.elapsed() >= tick);
        let pass = match self.pass(rest).await {
            Ok(pass) => pass,
            Err(e) => {
                tracing::error!(error = %e, "scheduler tick failed");
                return tick.max(Duration::from_secs(1));
            }
        };
        if rest {
            *rest_at = Some(Instant::now());
        }
        if pass.backlog {
            return Duration::ZERO;
        }
        // Asked as of the claim, not of now: work that fell due while the pass ran (a slow
        // revocation, say) was not claimed, and asking "due after now" would skip it until
        // the next tick. Its time has passed, so the next pass starts at once.
        let now = Utc::now();
        let next_due = match self.store.next_due(pass.claimed_at).await {
            Ok(Some(at)) => (at - now).to_std().unwrap_or_default(),
            Ok(None) => tick,
            Err(e) => {
                tracing::warn!(error = %e, "could not read when work next falls due");
                tick
            }
        };
        next_due.min(tick).min(pass.throttled.unwrap_or(tick))
    }

    /// Works on one due request claimed by this replica. `true` when its last step gave the
    /// lease back (a revocation's outcome does, saving a commit), `false` when the caller must.
    async fn handle_due(&self, mut r: Request) -> Result<bool, BrokerError> {
        let now = Utc::now();
        match r.state {
            RequestState::Pending | RequestState::Approved => {
                r.expire_deadline(now)?;
                let audit = vec![event(
                    EventKind::RequestExpired,
                    "system",
                    &r,
                    json!({"deadline_passed": true}),
                )];
                self.store.update_request(&r, audit).await?;
            }
            RequestState::Activating if self.lock_for(&r.requester).await?.is_some() => {
                // Its owner was locked by the kill switch meanwhile: never finish granting it.
                let why = "activation interrupted, and its requester is locked by the kill switch";
                self.abandon_activation(r, why, "system").await?;
            }
            RequestState::Activating => {
                // An intent without an outcome: the activating process died. Finish it (the
                // provider call is idempotent); the requester fetches credentials afresh.
                let expires_at = r.window.map(|w| w.expires_at).unwrap_or(now);
                tracing::info!(grant_id = %r.id, "resuming interrupted activation");
                self.complete_activation(r, expires_at, "system").await?;
            }
            RequestState::Active => {
                if let Some(w) = r.window {
                    crate::telemetry::revocation_started(
                        r.resource.provider().as_str(),
                        w.expires_at,
                        now,
                    );
                }
                r.start_revocation(now, "expired")?;
                let audit = vec![event(
                    EventKind::RevocationStarted,
                    "system",
                    &r,
                    json!({"why": "expired"}),
                )];
                let r = self.store.update_request(&r, audit).await?;
                self.finish_revocation(r, "system", Some(&self.replica))
                    .await?;
                return Ok(true);
            }
            RequestState::Revoking | RequestState::RevokeFailed => {
                self.finish_revocation(r, "system", Some(&self.replica))
                    .await?;
                return Ok(true);
            }
            RequestState::Denied
            | RequestState::Expired
            | RequestState::Cancelled
            | RequestState::Revoked => {}
        }
        Ok(false)
    }

    /// Removes anything a provider holds for Brevet that no grant covers (orphans after a crash,
    /// or manual re-creation), recording each as drift in the audit log.
    #[tracing::instrument(name = "reconcile", skip_all)]
    pub async fn reconcile(&self) -> Result<ReconcileReport, BrokerError> {
        let mut report = ReconcileReport::default();
        for (name, provider) in &self.providers {
            report.providers_checked += 1;
            // List the target before reading the store: anything created after the store read
            // had its intent written first, so it cannot be mistaken for an orphan.
            let listing = OpContext::new(Operation::Reconcile, None);
            let owned = match tokio::time::timeout(
                self.settings.provider_timeout,
                provider.list_owned(&listing),
            )
            .await
            {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    report.errors.push(format!("{name}: {e}"));
                    continue;
                }
                Err(_) => {
                    report
                        .errors
                        .push(format!("{name}: timed out listing owned access"));
                    continue;
                }
            };
            report.owned_seen += owned.len();
            // Only the bindings the target holds are looked up: memory grows with what the
            // provider lists, not with every grant in the store.
            let keys: Vec<String> = owned.iter().filter_map(|o| o.binding_key.clone()).collect();
            let covered = self.store.covered_among(&keys).await?;
            for o in owned {
                if o.binding_key.as_ref().is_some_and(|k| covered.contains(k)) {
                    continue;
                }
                let cx = OpContext::new(Operation::Reconcile, None);
                // No grant covers it, so there is no grant id: the span names what was found.
                let result = tokio::time::timeout(
                    self.settings.provider_timeout,
                    provider.remove_owned(&cx, &o),
                )
                .instrument(tracing::info_span!("remove_orphan", provider = %name, native_id = %o.native_id))
                .await;
                let (outcome, evidence) = match result {
                    Ok(Ok(ev)) => ("removed", json!(ev)),
                    Ok(Err(e)) => ("removal_failed", json!({"error": e.to_string()})),
                    Err(_) => ("removal_failed", json!({"error": "timed out"})),
                };
                if outcome == "removed" {
                    report
                        .orphans_removed
                        .push(format!("{name}:{}", o.native_id));
                } else {
                    report.errors.push(format!(
                        "{name}: could not remove {}: {evidence}",
                        o.native_id
                    ));
                }
                tracing::warn!(provider = %name, native_id = %o.native_id, outcome, "drift: access without a covering grant");
                self.store
                    .append_audit(vec![AuditDraft::new(
                        EventKind::DriftDetected,
                        "system",
                        None,
                        json!({"provider": name, "native_id": o.native_id, "binding": o.binding_key, "outcome": outcome, "evidence": evidence, "provider_calls": cx.take_calls()}),
                    )])
                    .await?;
            }
        }
        Ok(report)
    }

    /// Starts the background tasks — the scheduler, the reconciler (unless turned off) and the
    /// session purge — each running until `shutdown` changes. The caller supervises them: one
    /// that ends before shutdown has died, and the server stops rather than serve without it.
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<(&'static str, tokio::task::JoinHandle<()>)> {
        let mut tasks = vec![
            ("scheduler", self.spawn_scheduler(shutdown.clone())),
            ("session purge", self.spawn_purge(shutdown.clone())),
            (
                "metrics upkeep",
                crate::telemetry::spawn_upkeep(shutdown.clone()),
            ),
        ];
        match self.settings.reconcile_every {
            Some(every) => tasks.push(("reconciler", self.spawn_reconciler(every, shutdown))),
            None => tracing::warn!("the reconciler is off (server.reconcile_every = \"off\"): access left behind after a crash is not removed"),
        }
        tasks
    }

    fn spawn_scheduler(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let mut rest_at = None;
            while !*shutdown.borrow() {
                if broker.failpoint == Some(super::Failpoint::SchedulerPanic) {
                    panic!("failpoint scheduler-panic reached");
                }
                broker.hang_at(super::Failpoint::SchedulerTick).await;
                let wait = broker.step(&mut rest_at).await;
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    fn spawn_purge(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let mut purge = tokio::time::interval(Duration::from_secs(60));
            purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = purge.tick() => {
                        // Expired sessions and abandoned sign-ins: gone, so the tables stay small.
                        match broker.store.purge_expired_sessions(chrono::Utc::now()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(rows = n, "purged expired sessions and sign-ins"),
                            Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
                        }
                        match broker.store.purge_expired_state(chrono::Utc::now()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(rows = n, "purged expired provider state"),
                            Err(e) => tracing::warn!(error = %e, "could not purge expired provider state"),
                        }
                    }
                }
            }
        })
    }

    fn spawn_reconciler(
        self: &Arc<Self>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let mut reconcile = tokio::time::interval(every);
            reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = reconcile.tick() => {
                        // Only a pass that checked every provider counts: one that keeps
                        // failing (a provider unreachable, say) must show as stale.
                        match broker.reconcile().await {
                            Ok(r) if !r.errors.is_empty() => tracing::error!(?r, "reconciliation incomplete"),
                            Ok(r) => {
                                if !r.orphans_removed.is_empty() {
                                    tracing::warn!(?r, "reconciliation found drift");
                                }
                                broker.heartbeat.reconciled();
                            }
                            Err(e) => tracing::error!(error = %e, "reconciliation failed"),
                        }
                    }
                }
            }
        })
    }
}

/// When the background work last made progress, for `/v1/health` and `/metrics`: a scheduler
/// that is stuck (or dead) must show, since nothing expires without it.
#[derive(Debug)]
pub struct Heartbeat {
    scheduler: AtomicI64,
    reconciler: AtomicI64,
}

impl Heartbeat {
    pub(crate) fn new() -> Self {
        let now = Utc::now().timestamp_millis();
        Self {
            scheduler: AtomicI64::new(now),
            reconciler: AtomicI64::new(0),
        }
    }

    pub(crate) fn scheduled(&self) {
        self.scheduler
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    fn reconciled(&self) {
        self.reconciler
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The scheduler's last progress (start of a tick, or one piece of due work done).
    pub fn scheduler_at(&self) -> DateTime<Utc> {
        at(self.scheduler.load(Ordering::Relaxed))
    }

    /// The reconciler's last pass that reached every provider without an error, if any.
    pub fn reconciler_at(&self) -> Option<DateTime<Utc>> {
        match self.reconciler.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(at(ms)),
        }
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Broker {
    /// How long the scheduler may go without progress before it counts as stuck: a tick plus
    /// two leases (one piece of work is bounded by its lease).
    pub fn scheduler_stale_after(&self) -> Duration {
        self.settings.tick + self.settings.lease * 2
    }

    /// `Err` with what is wrong when the scheduler has made no progress for too long.
    pub fn scheduler_health(&self, now: DateTime<Utc>) -> Result<(), String> {
        let last = self.heartbeat.scheduler_at();
        let idle = (now - last).to_std().unwrap_or_default();
        if idle > self.scheduler_stale_after() {
            return Err(format!(
                "the scheduler has made no progress for {}s (last at {last}); expiry and revocation retries are not running",
                idle.as_secs()
            ));
        }
        Ok(())
    }
}
