//! The broker: every operation on requests and grants, independent of HTTP. It asks policy, writes
//! intents and outcomes to the store (with their audit events, atomically) and calls providers.

mod audit_data;
mod binding_lock;
mod decide;
mod kill;
mod lifecycle;
mod revoke_budget;
mod scheduler;

use std::{collections::BTreeMap, sync::Arc};

use brevet_core::{
    CoreError, Principal, PrincipalId, ProfileName, ProviderName, Request, ResourceId,
};
use brevet_policy::{PolicyEngine, ResourceFacts, Subject};
use brevet_providers::{Provider, ProviderError};
use brevet_store::{Store, StoreError};

use crate::config::{PrincipalConfig, ResourceConfig, ServerSettings};

pub use decide::{AccessAsk, Eligible};
pub use kill::{KillOutcome, KillReport, KillTarget};
pub use lifecycle::Activated;
pub use scheduler::{Heartbeat, ReconcileReport};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("refused by policy: {reason}")]
    PolicyDenied {
        reason: String,
        trace: serde_json::Value,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("provider `{provider}` failed: {source}")]
    Provider {
        provider: String,
        source: ProviderError,
    },
    #[error("provider `{0}` did not answer in time; the operation will be retried")]
    ProviderTimeout(String),
    #[error("storage failed, so nothing was changed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for BrokerError {
    /// A write refused because someone else changed the request meanwhile, or holds it, is a
    /// conflict to retry (409), not a store failure.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) | StoreError::Busy(_) => Self::Conflict(e.to_string()),
            StoreError::Locked(_) => Self::Forbidden(e.to_string()),
            StoreError::Refused(_) => Self::Conflict(e.to_string()),
            other => Self::Store(other),
        }
    }
}

impl From<CoreError> for BrokerError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::SelfApproval(_) => Self::Forbidden(e.to_string()),
            CoreError::Invalid { .. } => Self::BadInput(e.to_string()),
            CoreError::BadTransition { .. } | CoreError::AlreadyDecided(_) => {
                Self::Conflict(e.to_string())
            }
        }
    }
}

/// Whose document [`Broker::provider_document`] serves.
pub enum DocumentOwner<'a> {
    Instance(&'a str),
    Kind {
        kind: &'a str,
        instance: Option<&'a str>,
    },
}

/// Test-only crash points: when `BREVET_FAILPOINT` names one, the server stops making progress
/// there (it hangs), so a test can `kill -9` it at exactly that step and check recovery. With
/// `BREVET_FAILPOINT_WHILE=<file>` it holds only while that file exists (and passes straight
/// through when it does not), so a test can pause one step, race something against it, and
/// let it go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// An activation has passed every check and not yet written its intent.
    BeforeIntent,
    AfterIntent,
    AfterProviderGrant,
    /// Between a credential request's state check and the provider's issuance.
    BeforeIssue,
    /// A revocation's start is durable (`revoking`); no provider call yet.
    AfterRevokeIntent,
    /// The provider removed the access; neither its read-back nor the outcome is written yet.
    AfterProviderRevoke,
    /// At the start of a scheduler tick (a stuck scheduler).
    SchedulerTick,
    /// The scheduler task panics at its first tick (a dead scheduler).
    SchedulerPanic,
}

/// The two sides of a held failpoint: the step says it arrived, the test lets it go.
#[derive(Default)]
pub(crate) struct HeldState {
    reached: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

/// A failpoint held by a test in process: the first step to reach it waits there until
/// [`FailpointHold::release`]; later ones pass. The in-process counterpart of
/// `BREVET_FAILPOINT_WHILE`, for races a test plays out step by step.
pub struct FailpointHold(Arc<HeldState>);

impl FailpointHold {
    /// Waits until a step is held there.
    pub async fn reached(&self) {
        self.0.reached.notified().await;
    }

    /// Lets the held step go on (or the next one to arrive pass at once).
    pub fn release(&self) {
        self.0.go.notify_one();
    }
}

impl Failpoint {
    pub fn from_env() -> Option<Self> {
        match std::env::var("BREVET_FAILPOINT").ok()?.as_str() {
            "before-intent" => Some(Self::BeforeIntent),
            "after-intent" => Some(Self::AfterIntent),
            "after-provider-grant" => Some(Self::AfterProviderGrant),
            "before-issue" => Some(Self::BeforeIssue),
            "after-revoke-intent" => Some(Self::AfterRevokeIntent),
            "after-provider-revoke" => Some(Self::AfterProviderRevoke),
            "scheduler-tick" => Some(Self::SchedulerTick),
            "scheduler-panic" => Some(Self::SchedulerPanic),
            _ => None,
        }
    }
}

pub struct Broker {
    pub(crate) store: Store,
    pub(crate) policy: Arc<PolicyEngine>,
    pub(crate) providers: BTreeMap<ProviderName, Arc<dyn Provider>>,
    pub(crate) resources: BTreeMap<ResourceId, ResourceConfig>,
    pub(crate) principals: BTreeMap<PrincipalId, PrincipalConfig>,
    pub(crate) settings: ServerSettings,
    /// Identifies this process in leases, so replicas never work on the same row at once.
    pub(crate) replica: String,
    pub(crate) failpoint: Option<Failpoint>,
    pub(crate) failpoint_while: Option<std::path::PathBuf>,
    /// A failpoint a test in this process holds ([`Broker::hold_at`]).
    pub(crate) held: std::sync::Mutex<Option<(Failpoint, Arc<HeldState>)>>,
    /// When background work last made progress (health and metrics).
    pub heartbeat: Heartbeat,
    /// Request creation per principal (`server.requests_per_minute`).
    pub(crate) request_limiter: crate::limits::WindowLimiter<PrincipalId>,
    /// Wakes operations waiting for a binding's lock when this process gives one back.
    pub(crate) binding_wakeups: binding_lock::Wakeups,
    /// API requests refused with 503 because the server was at capacity (for `/metrics`).
    pub(crate) requests_shed: std::sync::atomic::AtomicU64,
    /// How many revocations the scheduler may start now on each rate-limited provider.
    pub(crate) revoke_budgets: revoke_budget::RevokeBudgets,
}

impl Broker {
    pub fn new(
        store: Store,
        policy: Arc<PolicyEngine>,
        providers: BTreeMap<ProviderName, Arc<dyn Provider>>,
        resources: BTreeMap<ResourceId, ResourceConfig>,
        principals: Vec<PrincipalConfig>,
        settings: ServerSettings,
    ) -> Self {
        let request_limiter = crate::limits::WindowLimiter::new(crate::limits::Limits {
            per_key_per_minute: settings.requests_per_minute,
            total_per_minute: settings.requests_per_minute.saturating_mul(1000),
            tracked_keys: 100_000,
        });
        // Events are recorded from the first one on, whether or not anyone scrapes.
        crate::telemetry::install();
        Self {
            store,
            policy,
            providers,
            resources,
            principals: principals.into_iter().map(|p| (p.id.clone(), p)).collect(),
            settings,
            replica: format!("replica-{}", uuid::Uuid::new_v4()),
            binding_wakeups: binding_lock::Wakeups::default(),
            requests_shed: Default::default(),
            failpoint: Failpoint::from_env(),
            failpoint_while: std::env::var_os("BREVET_FAILPOINT_WHILE").map(Into::into),
            held: Default::default(),
            heartbeat: Heartbeat::new(),
            request_limiter,
            revoke_budgets: Default::default(),
        }
    }

    /// Holds the scheduler's revocations on each provider named to its rate
    /// (`[providers.NAME] revoke_rate`); the others are not limited. Expiry and retries of
    /// failed revocations are shaped by it; a revocation someone asks for (the API's revoke, the
    /// kill switch) is not held back.
    pub fn with_revoke_rates(
        mut self,
        rates: BTreeMap<ProviderName, brevet_config::RevokeRate>,
    ) -> Self {
        self.revoke_budgets = revoke_budget::RevokeBudgets::new(rates, std::time::Instant::now());
        self
    }

    /// Registers the SSH providers (also present in `providers`) for the CA and KRL endpoints.
    /// A document a provider publishes (`/v1/providers/{name}/{document}`): by instance name,
    /// or — for `/v1/{kind}/{document}` — the one instance of `kind` (`instance` picks one when
    /// there are several).
    pub async fn provider_document(
        &self,
        by: DocumentOwner<'_>,
        document: &str,
    ) -> Result<(&'static str, Vec<u8>), BrokerError> {
        let (name, provider) = match by {
            DocumentOwner::Instance(n) => self
                .providers
                .iter()
                .find(|(k, _)| k.as_str() == n)
                .ok_or_else(|| BrokerError::NotFound(format!("no provider `{n}` is configured")))?,
            DocumentOwner::Kind { kind, instance } => {
                let of_kind: Vec<_> = self
                    .providers
                    .iter()
                    .filter(|(_, p)| p.kind() == kind)
                    .collect();
                let names = || {
                    of_kind
                        .iter()
                        .map(|(k, _)| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                match (instance, of_kind.as_slice()) {
                    (Some(n), _) => {
                        *of_kind
                            .iter()
                            .find(|(k, _)| k.as_str() == n)
                            .ok_or_else(|| {
                                BrokerError::NotFound(format!(
                                    "no `{kind}` provider `{n}`; configured: {}",
                                    names()
                                ))
                            })?
                    }
                    (None, [one]) => *one,
                    (None, []) => {
                        return Err(BrokerError::NotFound(format!(
                            "no `{kind}` provider is configured"
                        )))
                    }
                    (None, _) => {
                        return Err(BrokerError::BadInput(format!(
                        "several `{kind}` providers are configured; name one with ?provider= ({})",
                        names()
                    )))
                    }
                }
            }
        };
        let Some(doc) = provider.documents().iter().find(|d| d.name == document) else {
            return Err(BrokerError::NotFound(format!(
                "provider `{name}` publishes no `{document}`; it publishes: {}",
                provider
                    .documents()
                    .iter()
                    .map(|d| d.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let bytes = provider
            .document(document)
            .await
            .map_err(|source| BrokerError::Provider {
                provider: name.to_string(),
                source,
            })?
            .ok_or_else(|| BrokerError::NotFound(format!("`{document}` is not available")))?;
        Ok((doc.content_type, bytes))
    }

    /// What a requester must send for credentials on `resource` (the portal asks for it).
    pub fn credential_input(&self, resource: &ResourceId) -> brevet_providers::CredentialInputKind {
        self.providers
            .get(&resource.provider())
            .map_or(brevet_providers::CredentialInputKind::None, |p| {
                p.credential_input()
            })
    }

    /// A lease owner for one operation: unique, so two tasks of this replica (an API call and
    /// the scheduler's sweep, say) can never both believe they hold the same request.
    pub(crate) fn operation_owner(&self) -> String {
        format!("{}/{}", self.replica, uuid::Uuid::new_v4())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    pub(crate) fn provider_for(
        &self,
        resource: &ResourceId,
    ) -> Result<&Arc<dyn Provider>, BrokerError> {
        self.providers.get(&resource.provider()).ok_or_else(|| {
            BrokerError::BadInput(format!(
                "no provider `{}` is configured for `{resource}`",
                resource.provider()
            ))
        })
    }

    /// Parses and checks a resource/profile pair against the config, with errors that list what
    /// exists so the caller can fix a typo.
    pub fn resolve(
        &self,
        resource: &str,
        profile: &str,
    ) -> Result<(&ResourceConfig, ProfileName), BrokerError> {
        let rid = ResourceId::parse(resource)?;
        let profile = ProfileName::parse(profile)?;
        let Some(rc) = self.resources.get(&rid) else {
            let known: Vec<String> = self.resources.keys().map(|r| r.to_string()).collect();
            return Err(BrokerError::BadInput(format!(
                "unknown resource `{rid}`; configured resources: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        let offered = self.provider_for(&rid)?.profiles();
        if !offered.contains(&profile) {
            return Err(BrokerError::BadInput(format!(
                "unknown profile `{profile}` for `{rid}`; it offers: {}",
                offered
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok((rc, profile))
    }

    pub(crate) fn facts<'a>(&self, rc: &'a ResourceConfig) -> ResourceFacts<'a> {
        ResourceFacts {
            id: &rc.id,
            kind: rc.kind,
            tags: &rc.tags,
        }
    }

    /// Groups of a principal as configured (for evaluating approvals about a requester).
    pub(crate) fn subject_of<'a>(
        &'a self,
        id: &'a PrincipalId,
        empty: &'a std::collections::BTreeSet<String>,
    ) -> Subject<'a> {
        Subject {
            id,
            groups: self.principals.get(id).map(|p| &p.groups).unwrap_or(empty),
        }
    }

    pub async fn get(&self, id: brevet_core::RequestId) -> Result<Request, BrokerError> {
        self.store.get_request(id).await?.ok_or_else(|| {
            BrokerError::NotFound(format!(
                "no request {id}; list yours with `brevet requests`"
            ))
        })
    }

    /// Whether the caller may see a request: their own; any, for an admin; for an approver, those
    /// that approval policy lets them decide (whatever its state now).
    pub fn may_see(&self, caller: &Principal, r: &Request) -> bool {
        r.requester == caller.id
            || caller.has_role(brevet_core::Role::Admin)
            || (caller.has_role(brevet_core::Role::Approver) && self.may_approve(caller, r))
    }

    /// Fetches a request the caller may see ([`Self::may_see`]). Others' requests are reported as
    /// not found, so ids reveal nothing.
    pub async fn get_visible(
        &self,
        caller: &Principal,
        id: brevet_core::RequestId,
    ) -> Result<Request, BrokerError> {
        let r = self.get(id).await?;
        if self.may_see(caller, &r) {
            Ok(r)
        } else {
            Err(BrokerError::NotFound(format!(
                "no request {id}; list yours with `brevet requests`"
            )))
        }
    }
}

impl Broker {
    /// Configured groups of a principal (empty if unknown).
    pub fn principal_groups(&self, id: &PrincipalId) -> std::collections::BTreeSet<String> {
        self.principals
            .get(id)
            .map(|p| p.groups.clone())
            .unwrap_or_default()
    }
}

impl Broker {
    /// The kind of a configured resource (`postgres`, `ssh`, `aws`).
    pub fn resource_kind(&self, id: &ResourceId) -> Option<&'static str> {
        self.resources.get(id).map(|r| r.kind)
    }

    /// The configured provider instances' names.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(|k| k.as_str())
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// The principal as the config describes it, if listed.
    pub fn principal_config(&self, id: &PrincipalId) -> Option<&PrincipalConfig> {
        self.principals.get(id)
    }
}
