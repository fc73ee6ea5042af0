//! Azure grants and revocations per second against the Azure stand-in
//! (`brevet_testkit::azure::FakeAzure`, in process: no ARM authorization emulator exists), next to
//! the stand-in's own round trip, so Brevet's overhead shows as a ratio. Three modes, one after
//! the other on one broker, all at resource group rg1: a custom role
//! (Microsoft.Storage/storageAccounts/read + …/blobs/read) by plain role assignment, the built-in
//! Reader by plain role assignment, and the custom role through PIM. Every grant is a different
//! principal, so each is its own role assignment and the resource group holds N of them before
//! the revocations remove them again. The HTTP calls per operation are counted from the
//! stand-in's own record of what it answered, and cross-checked with the `provider_calls` Brevet
//! audits. `cargo bench -p brevet-server --bench azure_standin`.

mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use brevet_core::{ProfileName, ProviderName, ResourceId};
use brevet_providers::{
    azure::{
        AzureConfig, AzureCredentials, AzureIdentity, AzureMode, AzureProfile, AzureProvider,
        CustomSet, Grants,
    },
    Provider, SecretText,
};
use brevet_server::{
    config::{ResourceConfig, ServerSettings},
    AccessAsk, Broker,
};
use brevet_testkit::azure::{FakeAzure, Recorded, TENANT_ID};

const N: usize = 40;
/// Round trips timed for the yardstick (their median is used).
const RTT_SAMPLES: usize = 300;
const SUB: &str = "22222222-2222-4222-8222-222222222222";
/// Brevet's own service principal: the bearer token it calls ARM with.
const BREVET_OID: &str = "b4e4e700-0000-4000-8000-0000000000b4";
const RESOURCE: &str = "azure:rg1";

/// One Azure mode: a profile on resource group rg1.
struct Mode {
    label: &'static str,
    profile: &'static str,
    mode: AzureMode,
    grants: Grants,
}

fn main() {
    let fake = FakeAzure::start();
    fake.add_management_group("mg1", None);
    fake.add_subscription(SUB, Some("mg1"));
    fake.add_resource_group(SUB, "rg1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&fake));
}

/// The principal `user{i}`'s object id: a GUID that is a function of `i`.
fn object_id(i: usize) -> String {
    format!("a11ce000-0000-4000-8000-{i:012x}")
}

fn scope() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1")
}

fn custom() -> Grants {
    Grants::Custom(BTreeMap::from([(
        "rg1".to_owned(),
        CustomSet {
            actions: vec!["Microsoft.Storage/storageAccounts/read".into()],
            data_actions: vec![
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read".into(),
            ],
        },
    )]))
}

async fn run(fake: &FakeAzure) {
    let modes = [
        Mode {
            label: "custom role by role assignment",
            profile: "az.blobs-read",
            mode: AzureMode::Assignment,
            grants: custom(),
        },
        Mode {
            label: "built-in Reader by role assignment",
            profile: "az.reader",
            mode: AzureMode::Assignment,
            grants: Grants::BuiltIn((
                "Reader".into(),
                "acdd72a7-3385-48ef-bd42-f606fba81ae7".into(),
            )),
        },
        Mode {
            label: "custom role through PIM",
            profile: "az.blobs-read-pim",
            mode: AzureMode::Pim,
            grants: custom(),
        },
    ];
    let users = support::principals(N);
    for i in 0..N {
        fake.add_principal(&object_id(i), "User");
    }
    let http = reqwest::Client::new();
    let token = FakeAzure::token_for(BREVET_OID);
    // The stand-in's own round trip: one principal's assignments at rg1, listed as ARM lists
    // them. The yardstick, on the still-empty resource group (and again with N assignments).
    let read = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'{}'&api-version=2022-04-01",
        scope(),
        object_id(0)
    );
    let empty_rtt = round_trip(&http, &fake.url, &token, &read).await;

    let dir = tempfile::tempdir().unwrap();
    let store =
        brevet_store::Store::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .await
            .unwrap();
    let config = AzureConfig {
        tenant_id: TENANT_ID.into(),
        credentials: AzureCredentials::AccessToken(SecretText::new(token.clone())),
        endpoint: Some(fake.url.clone()),
        profiles: modes
            .iter()
            .map(|m| {
                (
                    ProfileName::parse(m.profile).unwrap(),
                    AzureProfile {
                        mode: m.mode.clone(),
                        grants: m.grants.clone(),
                    },
                )
            })
            .collect(),
        resources: BTreeMap::from([("rg1".to_owned(), scope())]),
        identities: users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                (
                    u.id.to_string(),
                    AzureIdentity {
                        object_id: object_id(i),
                        principal_type: "User".into(),
                    },
                )
            })
            .collect(),
    };
    let provider: Arc<dyn Provider> = Arc::new(AzureProvider::new("azure", config).await.unwrap());
    let policy = brevet_policy::PolicyEngine::load(
        &[brevet_policy::PolicySource {
            name: "bench".into(),
            text: r#"@id("auto") @approvals("0") @max_duration("1h") permit (principal, action == Action::"request", resource);"#.into(),
        }],
        brevet_policy::Defaults::default(),
    )
    .unwrap();
    // A cloud call takes longer than an in-memory one: a longer lease and provider timeout.
    let settings = ServerSettings {
        lease: Duration::from_secs(90),
        provider_timeout: Duration::from_secs(20),
        ..support::settings(Duration::from_secs(1))
    };
    let rid = ResourceId::parse(RESOURCE).unwrap();
    let resources = BTreeMap::from([(
        rid.clone(),
        ResourceConfig {
            id: rid,
            kind: "azure",
            tags: BTreeMap::new(),
        },
    )]);
    let broker = Broker::new(
        store,
        Arc::new(policy),
        BTreeMap::from([(ProviderName::parse("azure").unwrap(), provider)]),
        resources,
        users.clone(),
        settings,
    );
    let principals: Vec<brevet_core::Principal> = users
        .iter()
        .map(|u| brevet_core::Principal {
            id: u.id.clone(),
            groups: Default::default(),
            roles: u.roles.clone(),
        })
        .collect();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut audit_cursor = 0;
    for m in &modes {
        let before = fake.requests().len();
        let mut ids = Vec::new();
        let mut grants = Vec::new();
        let commits = broker.store().commits();
        for p in &principals {
            let ask = AccessAsk {
                resource: RESOURCE.into(),
                profile: m.profile.into(),
                duration: "30m".into(),
                reason: Some("bench".into()),
                ticket: None,
            };
            let t = Instant::now();
            let r = broker.create(p, ask).await.unwrap();
            broker.activate(p, r.id, None).await.unwrap();
            grants.push(t.elapsed());
            ids.push(r.id);
        }
        let granted = fake.requests().split_off(before);
        let grant_commits = broker.store().commits() - commits;
        // The same read with all N assignments at rg1: what the growth costs the stand-in.
        let full_rtt = round_trip(&http, &fake.url, &token, &read).await;
        let assignments = fake.assignments().len();
        let before = fake.requests().len();
        let mut revocations = Vec::new();
        let commits = broker.store().commits();
        for (p, id) in principals.iter().zip(&ids) {
            let t = Instant::now();
            let r = broker.revoke(p, *id, None).await.unwrap();
            revocations.push(t.elapsed());
            assert_eq!(r.state, brevet_core::RequestState::Revoked);
        }
        let revoked = fake.requests().split_off(before);
        let revoke_commits = broker.store().commits() - commits;
        let (audited_grant, audited_revoke) =
            support::audited_calls(&broker, &mut audit_cursor).await;

        println!("== {} ({})", m.label, m.profile);
        println!(
            "stand-in round trip (GET …/roleAssignments?$filter=principalId eq): median {:.3} ms \
             on the empty resource group, {:.3} ms with {assignments} assignments in the tenant",
            ms(empty_rtt),
            ms(full_rtt)
        );
        report("grants:     ", &grants, &granted, empty_rtt, full_rtt);
        report("revocations:", &revocations, &revoked, empty_rtt, full_rtt);
        println!("calls per grant:");
        print_calls(&granted);
        println!("calls per revocation:");
        print_calls(&revoked);
        println!(
            "ARM calls Brevet audited: {:.2} per grant, {:.2} per revocation; \
             store commits (each an fsync on SQLite): {:.2} per grant, {:.2} per revocation; \
             assignments left after the revocations: {}",
            audited_grant as f64 / N as f64,
            audited_revoke as f64 / N as f64,
            grant_commits as f64 / N as f64,
            revoke_commits as f64 / N as f64,
            fake.assignments().len()
        );
    }
}

/// One line per kind of operation: the rate, the mean (and median) time of one, that as a
/// multiple of the stand-in round trips it needs, and Brevet's own time: what is left after
/// those calls, each counted at the round trip with N assignments (so a lower bound).
fn report(what: &str, times: &[Duration], calls: &[Recorded], rtt: Duration, full_rtt: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let per_op = api_calls(calls) as f64 / times.len() as f64;
    println!(
        "{what} {:>6.1}/s  {:>6.2} ms each (median {:.2}) = {:.2}x the {:.2} stand-in round trips it needs; \
         Brevet's own time ≥ {:.2} ms",
        1.0 / mean.as_secs_f64(),
        ms(mean),
        ms(median),
        ms(mean) / (per_op * ms(rtt)),
        per_op,
        ms(mean) - per_op * ms(full_rtt)
    );
}

/// The median of [`RTT_SAMPLES`] GETs of `path`, as the provider makes them (same bearer token;
/// one pooled connection), after a warm-up.
async fn round_trip(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Duration {
    let call = || {
        let req = http.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            resp.bytes().await.unwrap();
        }
    };
    for _ in 0..20 {
        call().await;
    }
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    for _ in 0..RTT_SAMPLES {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    samples[RTT_SAMPLES / 2]
}

/// Calls to ARM, leaving out any token exchange (none with an access token; cached otherwise).
fn api_calls(calls: &[Recorded]) -> usize {
    calls
        .iter()
        .filter(|c| !c.path.ends_with("/oauth2/v2.0/token"))
        .count()
}

/// Calls per operation by method and path (and whether a list is filtered), the subscription
/// written `{sub}` and every other GUID (assignment, role definition, request) `{id}`.
fn print_calls(calls: &[Recorded]) {
    let mut by_route: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        let path: Vec<&str> = c
            .path
            .split('/')
            .map(|seg| {
                if seg == SUB {
                    "{sub}"
                } else if is_guid(seg) {
                    "{id}"
                } else {
                    seg
                }
            })
            .collect();
        let filter = if c.query.contains("$filter") {
            "?$filter"
        } else {
            ""
        };
        *by_route
            .entry(format!(
                "{} {}{filter} → {}",
                c.method,
                path.join("/"),
                c.status
            ))
            .or_default() += 1;
    }
    for (route, n) in by_route {
        println!("  {:>5.3}  {route}", n as f64 / N as f64);
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, ch)| match i {
            8 | 13 | 18 | 23 => ch == '-',
            _ => ch.is_ascii_hexdigit(),
        })
}
