//! A wrapper that injects faults into any provider: chosen operations fail (as an unreachable
//! target, or a refusal), are slowed down, or hang until the caller gives up — always, or at a
//! chosen fraction of calls (seeded, so a failing run can be repeated), one kind of fault or a
//! mix. Calls not faulted go to the wrapped provider unchanged. Every injected fault is counted by
//! operation and kind, and the last one on each binding is remembered with its time, so a test
//! can measure how long after its last fault a grant's revocation was confirmed. When each call
//! started is kept too, by operation, so a test can count the calls in a window of time (a rate
//! limit's).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName};
use chrono::{DateTime, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError};

/// A provider operation that can be faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Ensure,
    Issue,
    Revoke,
    Verify,
    ListOwned,
    RemoveOwned,
    TerminateSessions,
}

/// What happens to a faulted call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fails as if the target could not be reached (retryable).
    Unreachable,
    /// Fails as if the target refused (permanent).
    Refused,
    /// Fails as if the target were limiting Brevet's request rate (retryable).
    Throttled,
    /// Fails as if what Brevet sent could not be acted on (permanent).
    BadInput,
    /// Answers after this long (then as the wrapped provider does).
    Slow(Duration),
    /// Never answers: only the caller's timeout ends it.
    Hang,
}

impl Fault {
    /// The kind of fault, as counted by [`FaultyProvider::faulted_by_kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Unreachable => "unreachable",
            Fault::Refused => "refused",
            Fault::Throttled => "throttled",
            Fault::BadInput => "bad_input",
            Fault::Slow(_) => "slow",
            Fault::Hang => "hang",
        }
    }
}

struct Rule {
    /// The faults a faulted call gets, one picked at random per call.
    faults: Vec<Fault>,
    /// Fraction of calls faulted (1.0: every one).
    rate: f64,
    /// How many more calls may be faulted (`None`: no limit).
    remaining: Option<u64>,
}

pub struct FaultyProvider {
    inner: Arc<dyn Provider>,
    rules: Mutex<HashMap<Op, Rule>>,
    rng: Mutex<StdRng>,
    faulted: Mutex<HashMap<Op, u64>>,
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// The last fault injected into a call about each binding (by binding key), and when.
    last_on_binding: Mutex<HashMap<String, (DateTime<Utc>, &'static str)>>,
    /// When each call started, by operation, faulted or not.
    started: Mutex<HashMap<Op, Vec<Instant>>>,
}

impl FaultyProvider {
    /// Wraps `inner`; `seed` makes the choice of faulted calls repeatable.
    pub fn new(inner: Arc<dyn Provider>, seed: u64) -> Self {
        Self {
            inner,
            rules: Mutex::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            faulted: Mutex::default(),
            by_kind: Mutex::default(),
            last_on_binding: Mutex::default(),
            started: Mutex::default(),
        }
    }

    /// When each call to `op` so far started (faulted or not), in the order they started.
    pub fn call_times(&self, op: Op) -> Vec<Instant> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&op)
            .cloned()
            .unwrap_or_default()
    }

    /// Faults `rate` (0..=1) of the calls to `op` from now on.
    pub fn set(&self, op: Op, fault: Fault, rate: f64) {
        self.set_mix(op, &[fault], rate);
    }

    /// Faults `rate` (0..=1) of the calls to `op` from now on, each faulted call with one of
    /// `faults`, picked at random (seeded). An empty `faults` faults nothing.
    pub fn set_mix(&self, op: Op, faults: &[Fault], rate: f64) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).insert(
            op,
            Rule {
                faults: faults.to_vec(),
                rate,
                remaining: None,
            },
        );
    }

    /// Faults the next `n` calls to `op`, then calls through again.
    pub fn set_next(&self, op: Op, fault: Fault, n: u64) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).insert(
            op,
            Rule {
                faults: vec![fault],
                rate: 1.0,
                remaining: Some(n),
            },
        );
    }

    /// Stops faulting `op`.
    pub fn clear(&self, op: Op) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&op);
    }

    /// How many calls to `op` were faulted so far.
    pub fn faulted(&self, op: Op) -> u64 {
        *self
            .faulted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&op)
            .unwrap_or(&0)
    }

    /// Stops faulting anything.
    pub fn clear_all(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// How many calls were faulted so far, by kind of fault ([`Fault::kind`]), all operations
    /// together.
    pub fn faulted_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.by_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// When the last fault was injected into a call about the binding with key `binding_key`
    /// (when that call started), and its kind; `None` if none was.
    pub fn last_fault_on(&self, binding_key: &str) -> Option<(DateTime<Utc>, &'static str)> {
        self.last_on_binding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(binding_key)
            .copied()
    }

    /// Applies the rule for `op`, if any, to a call about `binding` (by key, when the call is
    /// about one): an error to return instead of calling through, or `None` (after any delay) to
    /// call through.
    async fn fault(&self, op: Op, binding: Option<&str>) -> Option<ProviderError> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default()
            .push(Instant::now());
        let fault = {
            let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            let rule = rules.get_mut(&op)?;
            if rule.remaining == Some(0) || rule.faults.is_empty() {
                return None;
            }
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            if !rng.gen_bool(rule.rate.clamp(0.0, 1.0)) {
                return None;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            rule.faults[rng.gen_range(0..rule.faults.len())].clone()
        };
        *self
            .faulted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default() += 1;
        *self
            .by_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(fault.kind())
            .or_default() += 1;
        if let Some(key) = binding {
            self.last_on_binding
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.to_owned(), (Utc::now(), fault.kind()));
        }
        match fault {
            Fault::Unreachable => Some(ProviderError::Unreachable(format!(
                "injected fault: {op:?} could not reach the target"
            ))),
            Fault::Refused => Some(ProviderError::Target(format!(
                "injected fault: the target refused {op:?}"
            ))),
            Fault::Throttled => Some(ProviderError::Throttled(format!(
                "injected fault: the target throttled {op:?}"
            ))),
            Fault::BadInput => Some(ProviderError::BadInput(format!(
                "injected fault: {op:?} got input it cannot act on"
            ))),
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                None
            }
            Fault::Hang => {
                std::future::pending::<()>().await;
                None
            }
        }
    }
}

#[async_trait]
impl Provider for FaultyProvider {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn profiles(&self) -> Vec<ProfileName> {
        self.inner.profiles()
    }
    fn max_grant_duration(&self, profile: &ProfileName) -> Option<Duration> {
        self.inner.max_grant_duration(profile)
    }
    fn credential_input(&self) -> crate::CredentialInputKind {
        self.inner.credential_input()
    }
    fn grants_preview(
        &self,
        resource: &brevet_core::ResourceId,
        profile: &brevet_core::ProfileName,
    ) -> Vec<String> {
        self.inner.grants_preview(resource, profile)
    }
    async fn on_start(&self) -> Result<(), ProviderError> {
        self.inner.on_start().await
    }
    fn documents(&self) -> &'static [crate::Document] {
        self.inner.documents()
    }
    async fn document(&self, name: &str) -> Result<Option<Vec<u8>>, ProviderError> {
        self.inner.document(name).await
    }
    fn check_credential_input(
        &self,
        b: &Binding,
        input: &CredentialInput,
    ) -> Result<(), ProviderError> {
        self.inner.check_credential_input(b, input)
    }
    async fn ensure(
        &self,
        cx: &OpContext,
        b: &Binding,
        until: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        match self.fault(Op::Ensure, Some(&b.key())).await {
            Some(e) => Err(e),
            None => self.inner.ensure(cx, b, until).await,
        }
    }
    async fn issue_credentials(
        &self,
        cx: &OpContext,
        b: &Binding,
        until: DateTime<Utc>,
        input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        match self.fault(Op::Issue, Some(&b.key())).await {
            Some(e) => Err(e),
            None => self.inner.issue_credentials(cx, b, until, input).await,
        }
    }
    async fn revoke(&self, cx: &OpContext, b: &Binding) -> Result<(), ProviderError> {
        match self.fault(Op::Revoke, Some(&b.key())).await {
            Some(e) => Err(e),
            None => self.inner.revoke(cx, b).await,
        }
    }
    async fn verify_revoked(&self, cx: &OpContext, b: &Binding) -> Result<Evidence, ProviderError> {
        match self.fault(Op::Verify, Some(&b.key())).await {
            Some(e) => Err(e),
            None => self.inner.verify_revoked(cx, b).await,
        }
    }
    async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        match self.fault(Op::ListOwned, None).await {
            Some(e) => Err(e),
            None => self.inner.list_owned(cx).await,
        }
    }
    async fn remove_owned(
        &self,
        cx: &OpContext,
        o: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        match self.fault(Op::RemoveOwned, o.binding_key.as_deref()).await {
            Some(e) => Err(e),
            None => self.inner.remove_owned(cx, o).await,
        }
    }
    async fn terminate_sessions(&self, cx: &OpContext, b: &Binding) -> Result<u64, ProviderError> {
        match self.fault(Op::TerminateSessions, Some(&b.key())).await {
            Some(e) => Err(e),
            None => self.inner.terminate_sessions(cx, b).await,
        }
    }
}
