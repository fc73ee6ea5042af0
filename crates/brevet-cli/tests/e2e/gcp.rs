//! GCP end to end, against the stand-in (`brevet_testkit::gcp::FakeGcp`, checked by gcloud and
//! Google's Python client in its own tests; no GCP IAM emulator exists). Brevet signs in with a
//! service-account key file whose token endpoint is the stand-in's. What the grantee can do is
//! asked the way Google answers it — testIamPermissions as the grantee, conditions evaluated at
//! the stand-in's clock — so "Google ends the access by itself" is tested, with Brevet killed.

use std::time::Duration;

use brevet_testkit::gcp::FakeGcp;
use serde_json::{json, Value};

use crate::common::*;

const ALICE_MEMBER: &str = "user:alice@example.com";
const DAVE_MEMBER: &str = "user:dave@example.com";

/// What the neutral `storage.read` profile gives, and things it must not.
const PROBE: [&str; 6] = [
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.delete",
    "storage.buckets.delete",
    "resourcemanager.projects.setIamPolicy",
    "iam.roles.create",
];

pub struct GcpWorld {
    pub fake: FakeGcp,
    pub key_dir: tempfile::TempDir,
}

impl GcpWorld {
    pub fn start() -> Self {
        let fake = FakeGcp::start();
        fake.add_organization("1");
        fake.add_project("p1", Some("organizations/1"));
        fake.add_project("p2", Some("organizations/1"));
        fake.add_bucket("logs", "p1");
        let key_dir = tempfile::tempdir().unwrap();
        fake.write_key_file(key_dir.path());
        Self { fake, key_dir }
    }

    /// The `[providers.gcp]` fragment: `gcp.read` (custom role compiled from the neutral
    /// `storage.read`), `gcp.viewer` (predefined role), resources gcp:p1, gcp:p2, gcp:logs.
    pub fn config(&self) -> String {
        format!(
            r#"
[providers.gcp]
kind = "gcp"
endpoint = "{url}"
credentials = {{ key_file = "{key}" }}
role_idle = "3s"

[providers.gcp.identities]
alice = {{ member = "{ALICE_MEMBER}" }}
dave = {{ member = "{DAVE_MEMBER}" }}

[providers.gcp.profiles."gcp.read"]
access = "storage.read"

[providers.gcp.profiles."gcp.viewer"]
role = "roles/storage.objectViewer"

[access."storage.read"]
kind = "object-storage"
verbs = ["read", "list"]
plane = "data"

[resources."gcp:p1"]
project = "p1"

[resources."gcp:p2"]
project = "p2"

[resources."gcp:logs"]
bucket = "logs"
project = "p1"
"#,
            url = self.fake.url,
            key = self.key_dir.path().join("brevet-sa.json").display(),
        )
    }

    fn held(&self, member: &str, resource: &str) -> Vec<String> {
        self.fake.test_permissions(member, resource, &PROBE)
    }

    fn brevet_roles(&self, parent: &str) -> Vec<Value> {
        self.fake
            .roles(parent)
            .into_iter()
            .filter(|r| {
                r["name"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("/roles/brevet_")
            })
            .collect()
    }

    fn brevet_bindings(&self, resource: &str) -> Vec<Value> {
        self.fake.policy(resource)["bindings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|b| {
                b["condition"]["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("brevet:"))
            })
            .collect()
    }
}

fn world(gcp: &GcpWorld) -> World {
    World::new(StoreKind::Sqlite).with(&gcp.config())
}

/// What `brevet profile compile` (offline, from the same config) says `storage.read` is on p1.
fn compiled_set(w: &World) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brevet.toml");
    std::fs::write(&path, w.config.text()).unwrap();
    let out = Cmd::profile_compile("storage.read", &["projects/p1"])
        .config(&path)
        .json_output()
        .command()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut set: Vec<String> = serde_json::from_value(v["permissions"].clone()).unwrap();
    set.sort();
    set
}

#[test]
fn a_gcp_grant_is_exactly_the_compiled_profile_and_google_ends_it_without_brevet() {
    let gcp = GcpWorld::start();
    let w = world(&gcp);
    let mut server = w.start();
    let r = server.request(
        ALICE,
        &Ask::new("gcp.read", "gcp:p1")
            .lasting("20m")
            .reason("INC-7 read the export"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["state"], "pending");
    assert!(
        gcp.brevet_roles("projects/p1").is_empty(),
        "nothing before approval"
    );
    server.approve(BOB, &id);
    let a = server.activate(ALICE, &id);
    assert_eq!(a["credential"]["kind"], "gcp_iam_binding");
    assert_eq!(a["credential"]["details"]["member"], ALICE_MEMBER);

    // One custom role whose permissions are the compiled set, bound with an expiring condition.
    let roles = gcp.brevet_roles("projects/p1");
    assert_eq!(roles.len(), 1, "{roles:?}");
    let mut included: Vec<String> =
        serde_json::from_value(roles[0]["includedPermissions"].clone()).unwrap();
    included.sort();
    let compiled = compiled_set(&w);
    assert_eq!(included, compiled);
    let bindings = gcp.brevet_bindings("projects/p1");
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0]["role"], roles[0]["name"]);
    assert_eq!(bindings[0]["members"], json!([ALICE_MEMBER]));
    let expires = a["grant"]["expires_at"].as_str().unwrap();
    let expr = bindings[0]["condition"]["expression"].as_str().unwrap();
    assert!(
        expr.starts_with("request.time < timestamp(\"") && expr.contains(&expires[..19]),
        "{expr} vs {expires}"
    );

    // testIamPermissions as alice: exactly the compiled set here, nothing on the sibling.
    let mut held = gcp.held(ALICE_MEMBER, "projects/p1");
    held.sort();
    let expected: Vec<String> = PROBE
        .iter()
        .filter(|p| compiled.iter().any(|c| c == *p))
        .map(|p| p.to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(held, expected);
    assert!(gcp.held(ALICE_MEMBER, "projects/p2").is_empty());
    assert!(gcp.held(DAVE_MEMBER, "projects/p1").is_empty());

    // The justification went with the write, for Cloud Audit Logs.
    let reasons: Vec<String> = gcp
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(":setIamPolicy"))
        .filter_map(|r| r.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("INC-7 read the export")),
        "{reasons:?}"
    );

    // Brevet dies; Google's clock passes the expiry; access is gone without Brevet.
    server.kill9();
    gcp.fake.advance(chrono::Duration::minutes(21));
    assert!(gcp.held(ALICE_MEMBER, "projects/p1").is_empty());
}

#[test]
fn revocation_removes_only_the_binding_shared_roles_outlive_it_and_idle_roles_are_collected() {
    let gcp = GcpWorld::start();
    // Someone else's conditional binding, which every write must keep.
    let mut seeded = gcp.fake.policy("projects/p1");
    seeded["bindings"] = json!([{
        "role": "roles/storage.objectViewer",
        "members": ["group:auditors@example.com"],
        "condition": {"title": "audit window", "expression": "request.time < timestamp(\"2099-01-01T00:00:00Z\")"}
    }]);
    seeded["version"] = json!(3);
    gcp.fake.set_policy("projects/p1", seeded);
    let w = world(&gcp).server("reconcile_every = \"1s\"");
    let server = w.start();
    let dave = server.request(
        DAVE,
        &Ask::new("gcp.read", "gcp:p1").lasting("20m").reason("x"),
    );
    let dave_id = dave["id"].as_str().unwrap().to_owned();
    server.activate(DAVE, &dave_id);
    let alice = server.request(
        ALICE,
        &Ask::new("gcp.read", "gcp:p1").lasting("20m").reason("y"),
    );
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    server.approve(CAROL, &alice_id);
    server.activate(ALICE, &alice_id);
    assert_eq!(
        gcp.brevet_roles("projects/p1").len(),
        1,
        "one role shared by both grants"
    );
    assert_eq!(gcp.brevet_bindings("projects/p1").len(), 2);

    let g = server.revoke(ALICE, &alice_id);
    let g = if g["state"] == "revoked" {
        g
    } else {
        server.wait_for(ALICE, &alice_id, Duration::from_secs(20), |v| {
            v["state"] == "revoked"
        })
    };
    let ev = &g["evidence"]["observation"];
    assert_eq!(ev["binding_present"], false, "{ev}");
    assert_eq!(ev["resource"], "projects/p1");
    assert!(
        ev["propagation"].as_str().unwrap().contains("2 minutes"),
        "{ev}"
    );
    assert!(gcp.held(ALICE_MEMBER, "projects/p1").is_empty());
    assert!(
        !gcp.held(DAVE_MEMBER, "projects/p1").is_empty(),
        "dave's grant is untouched"
    );
    let policy = gcp.fake.policy("projects/p1");
    assert!(
        policy["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["condition"]["title"] == "audit window"),
        "someone else's conditional binding survives: {policy}"
    );

    // A Brevet binding no grant covers (left by a crash, or re-created by hand) is drift: the
    // reconciler removes it, and only it.
    let key = "mallory|gcp:p1|gcp.read";
    let mut policy = gcp.fake.policy("projects/p1");
    let role = gcp.brevet_roles("projects/p1")[0]["name"].clone();
    policy["bindings"].as_array_mut().unwrap().push(json!({
        "role": role,
        "members": ["user:mallory@example.com"],
        "condition": {
            "title": format!("brevet:{}", &sha256_hex(key)[..16]),
            "description": format!("brevet binding {key}"),
            "expression": "request.time < timestamp(\"2099-01-01T00:00:00Z\")",
        }
    }));
    gcp.fake.set_policy("projects/p1", policy);
    assert!(!gcp
        .held("user:mallory@example.com", "projects/p1")
        .is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gcp
        .held("user:mallory@example.com", "projects/p1")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the uncovered binding was never reconciled away"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        !gcp.held(DAVE_MEMBER, "projects/p1").is_empty(),
        "dave's covered binding stays"
    );
    assert!(
        server
            .audit_export(ADMIN)
            .lines()
            .any(|l| l.contains("drift_detected") && l.contains("mallory")),
        "the removal is audited as drift"
    );

    // The shared role stays while dave's binding uses it, and goes once idle after his ends.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(gcp.brevet_roles("projects/p1").len(), 1);
    server.revoke(DAVE, &dave_id);
    server.wait_for(DAVE, &dave_id, Duration::from_secs(20), |v| {
        v["state"] == "revoked"
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let roles = gcp.brevet_roles("projects/p1");
        if roles.iter().all(|r| r["deleted"] == true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "idle role never collected: {roles:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(gcp.brevet_bindings("projects/p1").is_empty());

    // A new grant with the same set gets the role back (undeleted: Google never lets the id be
    // made again while it is held as deleted).
    let again = server.request(
        DAVE,
        &Ask::new("gcp.read", "gcp:p1").lasting("20m").reason("z"),
    );
    server.activate(DAVE, again["id"].as_str().unwrap());
    let roles = gcp.brevet_roles("projects/p1");
    assert_eq!(roles.len(), 1);
    assert_ne!(roles[0]["deleted"], true);
    assert!(!gcp.held(DAVE_MEMBER, "projects/p1").is_empty());
}

#[test]
fn a_writer_racing_every_set_iam_policy_loses_no_binding() {
    let gcp = GcpWorld::start();
    let w = world(&gcp);
    let server = w.start();
    gcp.fake.interfere("projects/p1", 3);
    gcp.fake.interfere("projects/_/buckets/logs", 3);
    let r = server.request(
        DAVE,
        &Ask::new("gcp.read", "gcp:p1").lasting("20m").reason("x"),
    );
    server.activate(DAVE, r["id"].as_str().unwrap());
    let r = server.request(
        DAVE,
        &Ask::new("gcp.viewer", "gcp:logs")
            .lasting("20m")
            .reason("x"),
    );
    server.activate(DAVE, r["id"].as_str().unwrap());
    for resource in ["projects/p1", "projects/_/buckets/logs"] {
        let policy = gcp.fake.policy(resource);
        let members: Vec<String> = policy["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_owned())
            })
            .collect();
        // The stand-in numbers its racers across resources: three per resource here.
        let racers = members
            .iter()
            .filter(|m| m.starts_with("user:racer-"))
            .count();
        assert_eq!(
            racers, 3,
            "a racer's binding on {resource} was lost: {policy}"
        );
        assert!(members.iter().any(|m| m == DAVE_MEMBER), "{policy}");
    }
    // Each conflict was answered by re-reading, never by writing without the etag.
    let statuses: Vec<u16> = gcp
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.ends_with(":setIamPolicy") || (r.method == "PUT" && r.path.ends_with("/iam"))
        })
        .map(|r| r.status)
        .collect();
    assert!(
        statuses.iter().filter(|s| **s == 409).count() >= 3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 412).count() >= 3,
        "{statuses:?}"
    );
    assert!(gcp
        .held(DAVE_MEMBER, "projects/_/buckets/logs")
        .contains(&"storage.objects.get".to_owned()));
}

#[test]
fn the_kill_switch_cuts_gcp_aws_and_postgres_at_once() {
    let gcp = GcpWorld::start();
    let moto = Moto::start();
    let w = world(&gcp).with(&aws_config(&moto.url)).env(&AWS_ENV);
    let server = w.start();
    for (profile, resource) in [
        ("gcp.read", "gcp:p1"),
        ("aws.s3-read", "aws:bucket"),
        ("db.read", "postgres:orders"),
    ] {
        let r = server.request(
            DAVE,
            &Ask::new(profile, resource).lasting("10m").reason("x"),
        );
        server.activate(DAVE, r["id"].as_str().unwrap());
    }
    assert!(!gcp.held(DAVE_MEMBER, "projects/p1").is_empty());
    assert_eq!(w.brevet_roles().len(), 1);
    let report = server.kill(ADMIN, "dave", "token leaked");
    assert_eq!(report["revoked"], 3, "{report:#}");
    for g in report["grants"].as_array().unwrap() {
        assert_eq!(g["outcome"], "revoked", "{g:#}");
    }
    assert!(gcp.held(DAVE_MEMBER, "projects/p1").is_empty());
    assert!(gcp.brevet_bindings("projects/p1").is_empty());
    assert!(w.brevet_roles().is_empty());
    let (ok, text) = moto.aws(&["iam", "list-roles", "--path-prefix", "/brevet/"]);
    assert!(ok, "{text}");
    let roles: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(roles["Roles"], json!([]), "{text}");
}

#[test]
fn bad_gcp_input_is_refused_with_nothing_written() {
    let gcp = GcpWorld::start();
    let base = world(&gcp);
    // At start: a basic role (Google will not put it under a condition), an unknown permission.
    for (path, value, words) in [
        (
            "providers.gcp.profiles.\"gcp.viewer\".role",
            "roles/editor",
            "basic role",
        ),
        (
            "providers.gcp.profiles.\"gcp.viewer\".role",
            "roles/storage.objectViewr",
            "not a GCP predefined role",
        ),
    ] {
        let out = base.refused_start(&base.config.clone().set(path, value));
        let e = stderr(&out);
        assert!(e.contains(path) && e.contains(words), "{e}");
    }
    let bad_perm = base
        .config
        .clone()
        .merge("[providers.gcp.profiles.\"gcp.odd\"]\npermissions = [\"storage.objects.gett\"]");
    let e = stderr(&base.refused_start(&bad_perm));
    assert!(
        e.contains("providers.gcp.profiles.\"gcp.odd\".permissions[0]")
            && e.contains("storage.objects.gett"),
        "{e}"
    );
    assert!(
        gcp.fake.requests().is_empty(),
        "a refused config calls nothing"
    );

    // At activation: a policy already at Google's 1,500-principal limit is not written to.
    let many: Vec<String> = (0..1_500)
        .map(|i| format!("user:u{i}@example.com"))
        .collect();
    gcp.fake.set_policy(
        "projects/p2",
        json!({"version": 1, "bindings": [{"role": "roles/browser", "members": many}]}),
    );
    let before = gcp.fake.policy("projects/p2");
    let server = base.start();
    let r = server.request(
        DAVE,
        &Ask::new("gcp.viewer", "gcp:p2").lasting("10m").reason("x"),
    );
    let out = server.run(DAVE, Cmd::activate(r["id"].as_str().unwrap()));
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("1500") && e.contains("principals"),
        "{e}"
    );
    assert_eq!(
        gcp.fake.policy("projects/p2"),
        before,
        "nothing was written"
    );
    assert!(
        !gcp.fake
            .requests()
            .iter()
            .any(|r| r.path == "/v3/projects/p2:setIamPolicy"),
        "no write was even tried"
    );
    // A principal with no Google identity is refused at activation, before anything is made.
    let r = server.request(
        BOB,
        &Ask::new("gcp.viewer", "gcp:p1").lasting("10m").reason("x"),
    );
    let id = r["id"].as_str().unwrap();
    server.approve(CAROL, id);
    let out = server.run(BOB, Cmd::activate(id));
    assert!(
        !out.status.success() && stderr(&out).contains("has no Google identity"),
        "{}",
        stderr(&out)
    );
    assert!(gcp.brevet_bindings("projects/p1").is_empty());
}
