//! GCP grants and revocations per second against the GCP stand-in (`brevet_testkit::gcp::FakeGcp`,
//! in process: no GCP IAM emulator exists), next to the stand-in's own round trip, so Brevet's
//! overhead shows as a ratio. Both modes, one after the other on one broker: a custom role
//! (storage.objects.get + storage.objects.list) bound on project p1, and the predefined
//! roles/storage.objectViewer bound on bucket logs. Every grant is a different principal, so each
//! is its own conditional binding and the policy grows to N bindings before the revocations
//! shrink it again. The HTTP calls per operation are counted from the stand-in's own record of
//! what it answered, and cross-checked with the `provider_calls` Brevet audits.
//! `cargo bench -p brevet-server --bench gcp_standin`.

mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use brevet_core::{ProfileName, ProviderName, ResourceId};
use brevet_providers::{
    gcp::{Credentials, GcpConfig, GcpProfile, GcpProvider, GcpResource, Grantable},
    Provider,
};
use brevet_server::{
    config::{ResourceConfig, ServerSettings},
    provider_state::StoreState,
    AccessAsk, Broker,
};
use brevet_testkit::gcp::{FakeGcp, Recorded, BREVET_SERVICE_ACCOUNT};

const N: usize = 40;
/// Round trips timed for the yardstick (their median is used).
const RTT_SAMPLES: usize = 300;

/// One GCP mode: a profile on a resource, and the stand-in's read of that resource's policy.
struct Mode {
    label: &'static str,
    resource: &'static str,
    profile: &'static str,
    /// The allow-policy read as the provider makes it: method, path, body.
    read: (reqwest::Method, &'static str, Option<serde_json::Value>),
}

fn main() {
    let fake = FakeGcp::start();
    fake.add_organization("1");
    fake.add_project("p1", Some("organizations/1"));
    fake.add_bucket("logs", "p1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&fake));
}

async fn run(fake: &FakeGcp) {
    let modes = [
        Mode {
            label: "custom role on project p1",
            resource: "gcp:p1",
            profile: "gcp.objects-read",
            read: (
                reqwest::Method::POST,
                "/v3/projects/p1:getIamPolicy",
                Some(serde_json::json!({"options": {"requestedPolicyVersion": 3}})),
            ),
        },
        Mode {
            label: "roles/storage.objectViewer on bucket logs",
            resource: "gcp:logs",
            profile: "gcp.object-viewer",
            read: (
                reqwest::Method::GET,
                "/storage/v1/b/logs/iam?optionsRequestedPolicyVersion=3",
                None,
            ),
        },
    ];
    let http = reqwest::Client::new();
    let token = FakeGcp::token_for(&format!("serviceAccount:{BREVET_SERVICE_ACCOUNT}"));
    // The stand-in's own round trip on the still-empty policies: the yardstick.
    let mut empty_rtt = Vec::new();
    for m in &modes {
        empty_rtt.push(round_trip(&http, &fake.url, &token, &m.read).await);
    }

    let users = support::principals(N);
    let dir = tempfile::tempdir().unwrap();
    let store =
        brevet_store::Store::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .await
            .unwrap();
    let config = GcpConfig {
        credentials: Credentials::KeyFile(fake.write_key_file(dir.path())),
        endpoint: Some(fake.url.clone()),
        organization: None,
        role_prefix: "brevet_".into(),
        role_idle: Duration::from_secs(3600),
        profiles: BTreeMap::from([
            (
                ProfileName::parse(modes[0].profile).unwrap(),
                GcpProfile {
                    grants: Grantable::Custom(BTreeMap::from([(
                        "p1".to_owned(),
                        (
                            "projects/p1".to_owned(),
                            vec![
                                "storage.objects.get".to_owned(),
                                "storage.objects.list".to_owned(),
                            ],
                        ),
                    )])),
                },
            ),
            (
                ProfileName::parse(modes[1].profile).unwrap(),
                GcpProfile {
                    grants: Grantable::Predefined("roles/storage.objectViewer".into()),
                },
            ),
        ]),
        resources: BTreeMap::from([
            ("p1".to_owned(), GcpResource::Project("p1".into())),
            (
                "logs".to_owned(),
                GcpResource::Bucket {
                    name: "logs".into(),
                    project: Some("p1".into()),
                },
            ),
        ]),
        identities: users
            .iter()
            .map(|u| (u.id.to_string(), format!("user:{}@example.com", u.id)))
            .collect(),
    };
    // Its state (the custom role's last use) in the broker's store, as `brevet server` builds it.
    let state = Arc::new(StoreState {
        store: store.clone(),
        provider: "gcp".into(),
    });
    let provider: Arc<dyn Provider> =
        Arc::new(GcpProvider::new("gcp", config, state).await.unwrap());
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
    let resources = modes
        .iter()
        .map(|m| {
            let rid = ResourceId::parse(m.resource).unwrap();
            (
                rid.clone(),
                ResourceConfig {
                    id: rid,
                    kind: "gcp",
                    tags: BTreeMap::new(),
                },
            )
        })
        .collect();
    let broker = Broker::new(
        store,
        Arc::new(policy),
        BTreeMap::from([(ProviderName::parse("gcp").unwrap(), provider)]),
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
    for (m, rtt) in modes.iter().zip(empty_rtt) {
        let before = fake.requests().len();
        let mut ids = Vec::new();
        let mut grants = Vec::new();
        let commits = broker.store().commits();
        for p in &principals {
            let ask = AccessAsk {
                resource: m.resource.into(),
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
        // The same read with all N bindings in the policy: what the growth costs the stand-in.
        let full_rtt = round_trip(&http, &fake.url, &token, &m.read).await;
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
            "stand-in round trip ({} {}): median {:.3} ms on the empty policy, {:.3} ms with {N} bindings",
            m.read.0,
            m.read.1.split('?').next().unwrap_or_default(),
            ms(rtt),
            ms(full_rtt)
        );
        report("grants:     ", &grants, &granted, rtt, full_rtt);
        report("revocations:", &revocations, &revoked, rtt, full_rtt);
        println!("calls per grant:");
        print_calls(&granted);
        println!("calls per revocation:");
        print_calls(&revoked);
        println!(
            "Google calls Brevet audited: {:.2} per grant, {:.2} per revocation; \
             store commits (each an fsync on SQLite): {:.2} per grant, {:.2} per revocation",
            audited_grant as f64 / N as f64,
            audited_revoke as f64 / N as f64,
            grant_commits as f64 / N as f64,
            revoke_commits as f64 / N as f64
        );
    }
}

/// One line per kind of operation: the rate, the mean (and median) time of one, that as a
/// multiple of the stand-in round trips it needs, and Brevet's own time: what is left after
/// those calls, each counted at the round trip of the full policy (so a lower bound).
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

/// The median of [`RTT_SAMPLES`] reads of one allow policy, as the provider makes them (same
/// method, body and bearer token; one pooled connection), after a warm-up.
async fn round_trip(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    (method, path, body): &(reqwest::Method, &str, Option<serde_json::Value>),
) -> Duration {
    let call = || {
        let mut req = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
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

/// Calls to Google's APIs, leaving out the OAuth token exchange (made once, then cached).
fn api_calls(calls: &[Recorded]) -> usize {
    calls.iter().filter(|c| c.path != "/token").count()
}

/// Calls per operation by method and path, the custom role's content-addressed id written
/// `{role}`.
fn print_calls(calls: &[Recorded]) {
    let mut by_route: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        let path: Vec<String> = c
            .path
            .split('/')
            .map(|seg| match seg.strip_prefix("brevet_") {
                Some(rest) => match rest.split_once(':') {
                    Some((_, verb)) => format!("{{role}}:{verb}"),
                    None => "{role}".to_owned(),
                },
                None => seg.to_owned(),
            })
            .collect();
        *by_route
            .entry(format!("{} {} → {}", c.method, path.join("/"), c.status))
            .or_default() += 1;
    }
    for (route, n) in by_route {
        println!("  {:>5.3}  {route}", n as f64 / N as f64);
    }
}
