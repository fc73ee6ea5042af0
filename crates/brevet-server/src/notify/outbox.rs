//! The outbox's two loops. The dispatcher tails the audit log from its durable cursor and queues a
//! delivery per interested subscriber (and `grant.expiring` notices); the worker sends due
//! deliveries, each attempt bounded by a timeout, retrying with exponential backoff and jitter up
//! to a bounded number of attempts. Both run beside the broker and never touch a decision: a
//! decision is committed (with its audit event) before anything here sees it.

use std::{sync::Arc, time::Duration};

use brevet_audit::AuditEvent;
use brevet_core::Request;
use brevet_store::{AttemptOutcome, Delivery, NewDelivery, Store, StoreError};
use chrono::Utc;
use futures::StreamExt;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

use super::{
    event::{
        audit_payload, checkpoint_payload, event_type, expiring_payload, AUDIT_CHECKPOINT,
        GRANT_EXPIRING,
    },
    settings::{NotifySettings, RetryPolicy},
    subscriber::{DeliveryError, Subscriber},
};

const DISPATCH_BATCH: i64 = 200;
const CLAIM_BATCH: i64 = 32;
const CONCURRENT_ATTEMPTS: usize = 8;

pub struct Outbox {
    store: Store,
    subscribers: Vec<Arc<dyn Subscriber>>,
    settings: NotifySettings,
    /// Lease owner for claimed deliveries: unique per process.
    owner: String,
    wake_dispatcher: Notify,
    wake_worker: Notify,
}

impl Outbox {
    pub fn new(
        store: Store,
        subscribers: Vec<Arc<dyn Subscriber>>,
        settings: NotifySettings,
    ) -> Self {
        Self {
            store,
            subscribers,
            settings,
            owner: format!("notify-{}", uuid::Uuid::new_v4()),
            wake_dispatcher: Notify::new(),
            wake_worker: Notify::new(),
        }
    }

    /// Asks the dispatcher to look at the audit log now rather than at its next poll.
    pub fn wake(&self) {
        self.wake_dispatcher.notify_one();
    }

    /// Asks the worker to look for due deliveries now.
    pub fn wake_worker(&self) {
        self.wake_worker.notify_one();
    }

    fn route(&self, events: &[AuditEvent]) -> Vec<NewDelivery> {
        let mut out = Vec::new();
        for e in events {
            for s in self.subscribers.iter().filter(|s| s.wants(e)) {
                out.push(NewDelivery {
                    subscriber: s.name().to_owned(),
                    event_key: format!("audit:{}", e.seq),
                    event_type: event_type(&e.kind),
                    request_id: e.request_id.clone(),
                    payload: audit_payload(e),
                });
            }
        }
        out
    }

    fn route_expiring(&self, r: &Request) -> Vec<NewDelivery> {
        // A grant shorter than the warning would be warned about the moment it starts.
        let long_enough = r.window.is_some_and(|w| {
            (w.expires_at - w.granted_at).to_std().unwrap_or_default()
                > self.settings.expiry_warning
        });
        if !long_enough {
            return vec![];
        }
        let payload = expiring_payload(r, Utc::now());
        self.subscribers
            .iter()
            .filter(|s| s.wants_expiring(r))
            .map(|s| NewDelivery {
                subscriber: s.name().to_owned(),
                event_key: format!("expiring:{}", r.id),
                event_type: GRANT_EXPIRING.into(),
                request_id: Some(r.id.to_string()),
                payload: payload.clone(),
            })
            .collect()
    }

    /// Queues a signed audit checkpoint for every subscriber that keeps them, so copies of it
    /// exist outside Brevet's database. Once per checkpointed event, whichever replica signs.
    pub async fn queue_checkpoint(
        &self,
        cp: &brevet_audit::Checkpoint,
    ) -> Result<usize, StoreError> {
        let payload = checkpoint_payload(cp);
        let mut queued = 0;
        for s in self.subscribers.iter().filter(|s| s.wants_checkpoint()) {
            let d = NewDelivery {
                subscriber: s.name().to_owned(),
                event_key: format!("checkpoint:{}", cp.seq),
                event_type: AUDIT_CHECKPOINT.into(),
                request_id: None,
                payload: payload.clone(),
            };
            if self.store.enqueue_delivery(&d).await? {
                queued += 1;
            }
        }
        if queued > 0 {
            self.wake_worker.notify_one();
        }
        Ok(queued)
    }

    /// Routes every new audit event and due expiry notice. Returns how many were routed.
    pub async fn dispatch(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .store
                .dispatch_audit(DISPATCH_BATCH, |events| self.route(events))
                .await?;
            total += n;
            if n < DISPATCH_BATCH as usize {
                break;
            }
        }
        let horizon = Utc::now()
            + chrono::Duration::from_std(self.settings.expiry_warning).unwrap_or_default();
        total += self
            .store
            .queue_expiry_notices(horizon, |r| self.route_expiring(r))
            .await?;
        if total > 0 {
            self.wake_worker.notify_one();
        }
        Ok(total)
    }

    /// Claims due deliveries and attempts them, a few at a time. Returns how many were claimed.
    pub async fn work(&self) -> Result<usize, StoreError> {
        // The lease outlives the attempt's own timeout, so no other replica takes the delivery
        // while this attempt may still be running.
        let lease = self.settings.attempt_timeout * 2 + Duration::from_secs(5);
        let batch = self
            .store
            .claim_deliveries(Utc::now(), &self.owner, lease, CLAIM_BATCH)
            .await?;
        let n = batch.len();
        futures::stream::iter(batch)
            .for_each_concurrent(CONCURRENT_ATTEMPTS, |d| async move {
                let span = tracing::info_span!("delivery", delivery_id = %d.id, subscriber = %d.subscriber, event = %d.event_type, grant_id = d.request_id.as_deref());
                self.attempt(d).instrument(span).await
            })
            .await;
        Ok(n)
    }

    async fn attempt(&self, d: Delivery) {
        let subscriber = self.subscribers.iter().find(|s| s.name() == d.subscriber);
        let result = match subscriber {
            // Another replica may run a newer config that has it; retrying costs little.
            None => Err(DeliveryError::new(format!(
                "subscriber `{}` is not configured on this server",
                d.subscriber
            ))),
            Some(s) => tokio::time::timeout(self.settings.attempt_timeout, s.deliver(&d))
                .await
                .unwrap_or_else(|_| {
                    Err(DeliveryError::new(format!(
                        "timed out after {}",
                        humantime::format_duration(self.settings.attempt_timeout)
                    )))
                }),
        };
        let now = Utc::now();
        let attempts = d.attempts + 1;
        let outcome = match result {
            Ok(()) => {
                tracing::info!(attempts, "delivered");
                AttemptOutcome::Delivered
            }
            Err(e) if attempts >= i64::from(self.settings.retry.max_attempts) => {
                tracing::warn!(attempts, error = %e, "delivery failed for the last time");
                AttemptOutcome::GaveUp { error: e.message }
            }
            Err(e) => {
                let wait = backoff(&self.settings.retry, attempts, e.retry_after);
                tracing::warn!(attempts, error = %e, retry_in = %humantime::format_duration(wait), "delivery failed; will retry");
                AttemptOutcome::Retry {
                    error: e.message,
                    at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                }
            }
        };
        crate::telemetry::delivery_attempt(
            &d.subscriber,
            match &outcome {
                AttemptOutcome::Delivered => "delivered",
                AttemptOutcome::Retry { .. } => "retry",
                AttemptOutcome::GaveUp { .. } => "gave_up",
            },
        );
        match self
            .store
            .record_attempt(&d.id, &self.owner, now, &outcome)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("lease was lost before the attempt was recorded"),
            // The lease runs out and the delivery is attempted again: at least once.
            Err(e) => tracing::error!(error = %e, "cannot record the delivery attempt"),
        }
    }

    /// Runs the dispatcher and the worker until `shutdown` changes. With no subscriber
    /// configured, only moves the cursor to the end of the log (so nothing old is replayed when
    /// one is added later) and returns.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let outbox = Arc::clone(self);
        tokio::spawn(async move {
            if outbox.subscribers.is_empty() {
                if let Err(e) = outbox.store.skip_dispatch_to_head().await {
                    tracing::warn!(error = %e, "cannot move the notification cursor");
                }
                return;
            }
            tokio::join!(
                outbox.run_dispatcher(shutdown.clone()),
                outbox.run_worker(shutdown)
            );
        })
    }

    async fn run_dispatcher(&self, mut shutdown: watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(self.settings.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = poll.tick() => {}
                _ = self.wake_dispatcher.notified() => {}
            }
            if let Err(e) = self.dispatch().await {
                tracing::error!(error = %e, "notification dispatch failed; retrying");
            }
        }
    }

    async fn run_worker(&self, mut shutdown: watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(self.settings.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = poll.tick() => {}
                _ = self.wake_worker.notified() => {}
            }
            // Keep going while there is a backlog; stop between batches on shutdown.
            loop {
                match self.work().await {
                    Ok(n) if n as i64 >= CLAIM_BATCH && !*shutdown.borrow() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "notification worker failed; retrying");
                        break;
                    }
                }
            }
        }
    }
}

/// The wait before attempt `attempts + 1`: `base · 2^(attempts-1)` capped at `max_delay`, of which
/// a random half is taken off (jitter, so receivers recovering from an outage are not hit by
/// every retry at once); never shorter than what the receiver asked for with `Retry-After`.
pub fn backoff(policy: &RetryPolicy, attempts: i64, retry_after: Option<Duration>) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(30);
    let full = policy
        .base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(policy.max_delay);
    let half = full / 2;
    let jitter = rand::thread_rng().gen_range(0.0..=1.0);
    let wait = half + half.mul_f64(jitter);
    wait.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let p = RetryPolicy {
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
        };
        for _ in 0..100 {
            let first = backoff(&p, 1, None);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let third = backoff(&p, 3, None);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            let late = backoff(&p, 40, None);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        }
        assert!(backoff(&p, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
