//! AWS grants and revocations per second against the moto emulator (role-per-grant mode: create
//! role, trust and tags, inline policy; revocation: session deny, policy removal, role deletion,
//! read-back), next to the emulator's own round trip, so Brevet's overhead shows as a ratio.
//! Needs BREVET_TEST_MOTO_SERVER (scripts/test installs moto into .test-services).
//! `cargo bench -p brevet-server --bench aws_moto`.

mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use brevet_core::{ProfileName, ProviderName, ResourceId};
use brevet_providers::{
    aws::{Arn, AwsConfig, AwsIdentity, AwsMode, AwsProfile, AwsProvider, AwsResource, IamAction},
    Provider,
};
use brevet_server::{
    config::{ResourceConfig, ServerSettings},
    AccessAsk, Broker,
};

const N: usize = 40;

fn main() {
    let Ok(moto) = std::env::var("BREVET_TEST_MOTO_SERVER") else {
        println!("skipped: set BREVET_TEST_MOTO_SERVER to moto_server (scripts/test installs it)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&url));
    let _ = child.kill();
    let _ = child.wait();
}

async fn run(url: &str) {
    // The emulator's own round trip: one cheap IAM call, timed through the same SDK.
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .load()
        .await;
    let iam = aws_sdk_iam::Client::new(&shared);
    for _ in 0..10 {
        iam.list_roles().send().await.unwrap();
    }
    let t = Instant::now();
    for _ in 0..100 {
        iam.get_role().role_name("absent").send().await.ok();
    }
    let rtt = t.elapsed() / 100;

    let profile = ProfileName::parse("aws.s3-read").unwrap();
    let users = support::principals(N);
    let config = AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(url.into()),
        role_prefix: "brevet-".into(),
        role_path: "/brevet/".into(),
        max_session_duration: Duration::from_secs(3600),
        profiles: BTreeMap::from([(
            profile.clone(),
            AwsProfile {
                mode: AwsMode::Role,
                actions: vec![IamAction::parse("s3:GetObject").unwrap()],
                compiled: None,
            },
        )]),
        resources: BTreeMap::from([(
            "bucket".to_string(),
            AwsResource {
                account: "123456789012".into(),
                arns: vec![Arn::parse("arn:aws:s3:::b/*").unwrap()],
            },
        )]),
        identities: users
            .iter()
            .map(|u| {
                (
                    u.id.to_string(),
                    AwsIdentity {
                        arn: Some(
                            Arn::parse(&format!("arn:aws:iam::123456789012:user/{}", u.id))
                                .unwrap(),
                        ),
                        identity_center_user_id: None,
                    },
                )
            })
            .collect(),
    };
    let provider: Arc<dyn Provider> = Arc::new(AwsProvider::new("aws", config).await);
    let dir = tempfile::tempdir().unwrap();
    let store =
        brevet_store::Store::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .await
            .unwrap();
    let policy = brevet_policy::PolicyEngine::load(
        &[brevet_policy::PolicySource {
            name: "bench".into(),
            text: r#"@id("auto") @approvals("0") @max_duration("1h") permit (principal, action == Action::"request", resource);"#.into(),
        }],
        brevet_policy::Defaults::default(),
    )
    .unwrap();
    let rid = ResourceId::parse("aws:bucket").unwrap();
    // A cloud call takes longer than an in-memory one: a longer lease and provider timeout.
    let settings = ServerSettings {
        lease: Duration::from_secs(90),
        provider_timeout: Duration::from_secs(20),
        ..support::settings(Duration::from_secs(1))
    };
    let broker = Broker::new(
        store,
        Arc::new(policy),
        BTreeMap::from([(ProviderName::parse("aws").unwrap(), provider)]),
        BTreeMap::from([(
            rid.clone(),
            ResourceConfig {
                id: rid,
                kind: "aws",
                tags: BTreeMap::new(),
            },
        )]),
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
    let t = Instant::now();
    let mut ids = Vec::new();
    for p in &principals {
        let ask = AccessAsk {
            resource: "aws:bucket".into(),
            profile: profile.to_string(),
            duration: "30m".into(),
            reason: Some("bench".into()),
            ticket: None,
        };
        let r = broker.create(p, ask).await.unwrap();
        broker.activate(p, r.id, None).await.unwrap();
        ids.push(r.id);
    }
    let grant = t.elapsed() / N as u32;
    let t = Instant::now();
    for (p, id) in principals.iter().zip(&ids) {
        let r = broker.revoke(p, *id, None).await.unwrap();
        assert_eq!(r.state, brevet_core::RequestState::Revoked);
    }
    let revoke = t.elapsed() / N as u32;
    // AWS calls per operation, counted from the call log Brevet audits with each step (grant:
    // CreateRole, PutRolePolicy; revocation: GetRole, the session deny, the listings, the policy
    // and role deletions and the GetRole read-back).
    let (granted, revoked) = support::audited_calls(&broker, &mut 0).await;
    let grant_calls = granted as f64 / N as f64;
    let revoke_calls = revoked as f64 / N as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("emulator round trip (iam:GetRole): {:.2} ms", ms(rtt));
    println!(
        "grants:       {:>6.1}/s  {:>6.2} ms each = {:.2}x the {:.1} emulator round trips it needs",
        1.0 / grant.as_secs_f64(),
        ms(grant),
        ms(grant) / (grant_calls * ms(rtt)),
        grant_calls
    );
    println!(
        "revocations:  {:>6.1}/s  {:>6.2} ms each = {:.2}x the {:.1} emulator round trips it needs",
        1.0 / revoke.as_secs_f64(),
        ms(revoke),
        ms(revoke) / (revoke_calls * ms(rtt)),
        revoke_calls
    );
}
