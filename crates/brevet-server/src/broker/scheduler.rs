//! Background work: deadlines, expiry, resumption of interrupted activations, revocation retries,
//! and reconciliation of what providers hold against what grants cover.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{Request, RequestState};
use chrono::{DateTime, TimeZone, Utc};

use brevet_providers::{OpContext, Operation};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::{audit_data::event, Broker, BrokerError};

pub use brevet_wire::ReconcileReport;

/// How many due requests one scheduler pass claims, and works on at once.
const SCHEDULER_BATCH: i64 = 64;

impl Broker {
    /// Claims due requests and works on each. Returns how many were handled.
    pub async fn tick(&self) -> Result<usize, BrokerError> {
        self.heartbeat.scheduled();
        if let Err(e) = self.sweep_locked().await {
            tracing::warn!(error = %e, "locked-principal sweep failed; retrying next tick");
        }
        let due = self
            .store
            .claim_due(
                Utc::now(),
                &self.replica,
                self.settings.lease,
                SCHEDULER_BATCH,
            )
            .await?;
        if !due.taken_over.is_empty() {
            for (id, owner) in &due.taken_over {
                tracing::info!(grant_id = %id, previous_owner = %owner, "took over work whose lease ran out");
            }
            crate::telemetry::lease_takeovers(due.taken_over.len());
        }
        let n = due.requests.len();
        // The claimed work runs at once: each piece is bounded by the provider timeout, so one
        // hung target holds up no other grant's revocation, and every piece finishes within the
        // lease it was claimed with (worked one after another, the last of a batch could start
        // after its lease ran out, and wait a provider timeout for every hung call before it).
        let released = futures::future::join_all(due.requests.into_iter().map(|r| async move {
            let id = r.id;
            let span = tracing::info_span!("scheduled", grant_id = %id, state = %r.state);
            if let Err(e) = self.handle_due(r).instrument(span).await {
                tracing::warn!(grant_id = %id, error = %e, "scheduled work failed; it stays due");
            }
            let released = self.store.release(id, &self.replica).await;
            self.heartbeat.scheduled();
            released
        }))
        .await;
        for r in released {
            r?;
        }
        Ok(n)
    }

    async fn handle_due(&self, mut r: Request) -> Result<(), BrokerError> {
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
                self.finish_revocation(r, "system", None).await?;
            }
            RequestState::Revoking | RequestState::RevokeFailed => {
                self.finish_revocation(r, "system", None).await?;
            }
            RequestState::Denied
            | RequestState::Expired
            | RequestState::Cancelled
            | RequestState::Revoked => {}
        }
        Ok(())
    }

    /// Removes anything a provider holds for Brevet that no grant covers (orphans after a crash,
    /// or manual re-creation), recording each as drift in the audit log.
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
            let covered = self.store.covered_bindings().await?;
            for o in owned {
                if o.binding_key.as_ref().is_some_and(|k| covered.contains(k)) {
                    continue;
                }
                let cx = OpContext::new(Operation::Reconcile, None);
                let result = tokio::time::timeout(
                    self.settings.provider_timeout,
                    provider.remove_owned(&cx, &o),
                )
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
            let mut tick = tokio::time::interval(broker.settings.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {
                        if broker.failpoint == Some(super::Failpoint::SchedulerPanic) {
                            panic!("failpoint scheduler-panic reached");
                        }
                        broker.hang_at(super::Failpoint::SchedulerTick).await;
                        // Keep draining while there is a backlog, then wait for the next tick.
                        loop {
                            match broker.tick().await {
                                Ok(n) if n as i64 >= SCHEDULER_BATCH => continue,
                                Ok(_) => break,
                                Err(e) => { tracing::error!(error = %e, "scheduler tick failed"); tokio::time::sleep(Duration::from_secs(1)).await; break; }
                            }
                        }
                    }
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
