//! The lock on a binding: provider work on one binding (activation, revocation, extension of
//! overlapping grants) never interleaves, across replicas too. It is a leased row in the store,
//! taken on its own or inside a lifecycle step's transaction ([`brevet_store::Step`]).

use std::{future::Future, sync::Arc};

use tokio::sync::Notify;

use brevet_core::Request;
use brevet_store::{Store, StoreError};
use chrono::Utc;

use super::{Broker, BrokerError};

/// Wake-ups for operations waiting on a binding lock that this process gives back, so they
/// retry at once instead of at their next poll. Sharded by binding (a spurious wake-up only costs
/// a retry); a lock given back by another replica is noticed at the next poll (every 50 ms).
pub(crate) struct Wakeups([Arc<Notify>; 64]);

impl Default for Wakeups {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Arc::new(Notify::new())))
    }
}

impl Wakeups {
    pub(crate) fn of(&self, binding_key: &str) -> Arc<Notify> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        binding_key.hash(&mut h);
        self.0[(h.finish() % 64) as usize].clone()
    }
}

/// Waits for the binding's lock to be given back in this process, or for the poll interval.
pub(crate) async fn wait_for_binding(wakeup: tokio::sync::futures::Notified<'_>) {
    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), wakeup).await;
}

/// A binding lock this operation holds or is taking. Released when the work ends — on its own
/// or folded into the operation's last step; if the operation is dropped first (a client hung
/// up, a caller's timeout ran out), the release is spawned from `Drop`, so the next operation on
/// the binding does not wait for the lease to run out. Each store write that may take the lock
/// runs on a task of its own, so a dropped caller cannot leave a half-sent write that lands
/// after the release: the release waits for it.
pub(crate) struct HeldBindingLock {
    store: Store,
    key: String,
    owner: String,
    wakeup: Arc<Notify>,
    in_flight: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl HeldBindingLock {
    /// A guard for `owner`'s lock on `r`'s binding, not taken yet.
    pub(crate) fn new(broker: &Broker, r: &Request, owner: String) -> Self {
        let key = r.binding().key();
        Self {
            store: broker.store.clone(),
            wakeup: broker.binding_wakeups.of(&key),
            key,
            owner,
            in_flight: None,
            released: false,
        }
    }

    /// The wake-up for this binding, to wait on after an attempt found the lock busy.
    pub(crate) fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }

    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs a store write that may take the lock on a task of its own, remembered until it ends.
    pub(crate) async fn write<T: Send + 'static>(
        &mut self,
        write: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.in_flight = Some(tokio::spawn(async move {
            let _ = tx.send(write.await);
        }));
        let out = rx.await;
        self.in_flight = None;
        out.unwrap_or_else(|_| Err(StoreError::Database("a store write was cut short".into())))
    }

    /// Tries once to take the lock on its own.
    async fn try_take(&mut self, lease: std::time::Duration) -> Result<bool, StoreError> {
        let (store, key, owner) = (self.store.clone(), self.key.clone(), self.owner.clone());
        self.write(async move { store.lock_binding(&key, &owner, Utc::now(), lease).await })
            .await
    }

    /// The lock was given back by a step that wrote it away.
    pub(crate) fn released_by_step(&mut self) {
        self.released = true;
        self.wakeup.notify_waiters();
    }

    /// The lock was never taken: nothing to give back.
    pub(crate) fn not_taken(&mut self) {
        self.released = true;
    }

    /// Gives the lock back (nothing if a step already did).
    pub(crate) async fn release(&mut self) {
        if self.released {
            return;
        }
        // Marked released only once done: a caller dropped during the release leaves it to Drop.
        // If it fails, the lock's lease runs out on its own.
        if let Err(e) = self.store.unlock_binding(&self.key, &self.owner).await {
            tracing::warn!(error = %e, "could not release binding lock");
        }
        self.released = true;
        self.wakeup.notify_waiters();
    }
}

impl Drop for HeldBindingLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, key, owner) = (self.store.clone(), self.key.clone(), self.owner.clone());
        let (in_flight, wakeup) = (self.in_flight.take(), self.wakeup.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(write) = in_flight {
                    let _ = write.await;
                }
                // The owner is this operation's alone: this deletes nothing if it never got it.
                if let Err(e) = store.unlock_binding(&key, &owner).await {
                    tracing::warn!(error = %e, "could not release an abandoned binding lock");
                }
                wakeup.notify_waiters();
            });
        }
    }
}

impl Broker {
    /// Takes `r`'s binding lock for a new operation, waiting up to `server.provider_timeout`
    /// for another operation on the binding to finish.
    pub(crate) async fn lock_binding(&self, r: &Request) -> Result<HeldBindingLock, BrokerError> {
        let mut held = HeldBindingLock::new(self, r, self.operation_owner());
        let deadline = tokio::time::Instant::now() + self.settings.provider_timeout;
        loop {
            let wakeup = held.wakeup();
            let given_back = wakeup.notified();
            if held.try_take(self.settings.lease).await? {
                return Ok(held);
            }
            if tokio::time::Instant::now() >= deadline {
                held.not_taken();
                return Err(busy_binding(r));
            }
            wait_for_binding(given_back).await;
        }
    }

    /// Runs `work` holding the binding's lock.
    pub(crate) async fn with_binding_lock<T>(
        &self,
        r: &Request,
        work: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        let mut held = self.lock_binding(r).await?;
        let out = work.await;
        held.release().await;
        out
    }
}

pub(crate) fn busy_binding(r: &Request) -> BrokerError {
    BrokerError::Conflict(format!(
        "another operation on {} is in progress; retry in a moment",
        r.binding()
    ))
}
