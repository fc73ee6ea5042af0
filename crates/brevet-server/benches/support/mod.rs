//! Shared by the benchmarks: an in-memory provider (a stand-in that behaves like a target that
//! answers at once, so numbers show Brevet's own cost) and a broker built around it.
#![allow(dead_code)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use brevet_core::{ProviderName, ResourceId};
use brevet_providers::Provider;
use brevet_server::{
    config::{PrincipalConfig, ResourceConfig, ServerSettings},
    Broker,
};

/// The providers crate's in-memory provider: a target that answers at once, so numbers show
/// Brevet's own cost. It passes the provider conformance suite.
pub use brevet_providers::testing::InMemoryProvider;

pub const POLICY: &str = r#"@id("auto") @approvals("0") @max_duration("1h")
permit (principal, action == Action::"request", resource) when { context.profile == "db.read" };
@id("one-approval") @approvals("1") @max_duration("1h")
permit (principal, action == Action::"request", resource) when { context.profile == "db.write" };
@id("anyone-approves")
permit (principal, action == Action::"approve", resource);"#;

pub fn principals(n: usize) -> Vec<PrincipalConfig> {
    (0..n)
        .map(|i| PrincipalConfig {
            id: brevet_core::PrincipalId::parse(&format!("user{i}")).unwrap(),
            groups: Default::default(),
            roles: [
                brevet_core::Role::Requester,
                brevet_core::Role::Approver,
                brevet_core::Role::Admin,
            ]
            .into(),
            token_sha256: Some(brevet_server::auth::hash_token(&format!("token-{i}"))),
            slack_user: None,
            email: None,
        })
        .collect()
}

/// A broker on `store_url` with one in-memory provider `mem` offering resources `mem:db0`…
pub async fn broker(
    store_url: &str,
    resources: usize,
    principals: Vec<PrincipalConfig>,
) -> Arc<Broker> {
    broker_with_policy(store_url, resources, principals, POLICY).await
}

/// [`broker`] with other policies.
pub async fn broker_with_policy(
    store_url: &str,
    resources: usize,
    principals: Vec<PrincipalConfig>,
    policy: &str,
) -> Arc<Broker> {
    let provider = Arc::new(InMemoryProvider::with_profiles(&["db.read", "db.write"]));
    let settings = settings(Duration::from_secs(1));
    Arc::new(broker_on(store_url, resources, principals, policy, provider, settings).await)
}

/// The server settings the benchmarks use, with scheduler passes every `tick`.
pub fn settings(tick: Duration) -> ServerSettings {
    ServerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        approve_within: Duration::from_secs(3600),
        activate_within: Duration::from_secs(3600),
        tick,
        lease: Duration::from_secs(60),
        reconcile_every: Some(Duration::from_secs(3600)),
        provider_timeout: Duration::from_secs(10),
        revoke_backoff: brevet_core::RevokeBackoff::default(),
        public_url: "http://127.0.0.1:0".into(),
        session_ttl: Duration::from_secs(3600),
        client_ip_header: None,
        requests_per_minute: u32::MAX,
        metrics_token_sha256: None,
        max_in_flight: max_in_flight(),
        admission_wait: Duration::from_millis(100),
    }
}

/// A broker on `store_url` with `provider` as provider `mem`, offering resources `mem:db0`…
pub async fn broker_on(
    store_url: &str,
    resources: usize,
    principals: Vec<PrincipalConfig>,
    policy: &str,
    provider: Arc<dyn Provider>,
    settings: ServerSettings,
) -> Broker {
    let policy = brevet_policy::PolicyEngine::load(
        &[brevet_policy::PolicySource {
            name: "bench".into(),
            text: policy.into(),
        }],
        brevet_policy::Defaults::default(),
    )
    .unwrap();
    let store = brevet_store::Store::connect(store_url).await.unwrap();
    let mut providers: BTreeMap<ProviderName, Arc<dyn Provider>> = BTreeMap::new();
    providers.insert(ProviderName::parse("mem").unwrap(), provider);
    let resources = (0..resources)
        .map(|i| {
            let rid = ResourceId::parse(&format!("mem:db{i}")).unwrap();
            (
                rid.clone(),
                ResourceConfig {
                    id: rid,
                    kind: "memory",
                    tags: BTreeMap::new(),
                },
            )
        })
        .collect();
    Broker::new(
        store,
        Arc::new(policy),
        providers,
        resources,
        principals,
        settings,
    )
}

/// Target calls in the audit events written since `after` (grants, revocations), as the
/// provider recorded them — the broker's own `provider.*` step records left out; moves `after`
/// on.
pub async fn audited_calls(broker: &Broker, after: &mut i64) -> (usize, usize) {
    let (mut granted, mut revoked) = (0, 0);
    loop {
        let page = broker.store().audit_page(*after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        *after = last.seq;
        for e in &page {
            let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            let n = data["provider_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    c["call"]
                        .as_str()
                        .is_some_and(|c| !c.starts_with("provider."))
                })
                .count();
            match e.kind.as_str() {
                "grant_activated" | "credentials_issued" => granted += n,
                "grant_revoked" => revoked += n,
                _ => {}
            }
        }
    }
    (granted, revoked)
}

/// `BENCH_MAX_IN_FLIGHT`, else the server's default.
pub fn max_in_flight() -> usize {
    std::env::var("BENCH_MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}
