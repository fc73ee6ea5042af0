//! Azure end to end, against the stand-in (`brevet_testkit::azure::FakeAzure`, checked by
//! Microsoft's Python SDK in its own tests; no ARM authorization emulator exists). What the
//! grantee may do is asked the way Azure decides it (assignments at the scope and above, the
//! role's actions and data actions), and PIM's expiry is run on the stand-in's clock with Brevet
//! killed. Brevet's token is one the stand-in issued (`access_token`): azure_identity refuses a
//! plain-http authority, so the credential chain itself is not exercised here.

use brevet_testkit::azure::{FakeAzure, TENANT_ID};
use serde_json::{json, Value};

use crate::common::*;
use crate::gcp::GcpWorld;

const SUB: &str = "22222222-2222-4222-8222-222222222222";
const DAVE_OID: &str = "da7e0000-0000-4000-8000-000000000004";
const ALICE_OID: &str = "a11ce000-0000-4000-8000-000000000001";
const BREVET_OID: &str = "b4e4e700-0000-4000-8000-0000000000b4";
const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
const BLOB_WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";

fn rg(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{name}")
}

pub struct AzureWorld {
    pub fake: FakeAzure,
}

impl AzureWorld {
    pub fn start() -> Self {
        let fake = FakeAzure::start();
        fake.add_management_group("mg1", None);
        fake.add_subscription(SUB, Some("mg1"));
        fake.add_resource_group(SUB, "rg1");
        fake.add_resource_group(SUB, "rg2");
        fake.add_principal(DAVE_OID, "User");
        fake.add_principal(ALICE_OID, "User");
        Self { fake }
    }

    /// `az.read` (custom role compiled from the neutral `storage.read`, plain assignment),
    /// `az.read-pim` (the same through PIM), `az.reader` (built-in Reader); resources
    /// azure:rg1, azure:rg2.
    pub fn config(&self) -> String {
        format!(
            r#"
[providers.azure]
kind = "azure"
tenant_id = "{TENANT_ID}"
endpoint = "{url}"
credentials = {{ access_token = {{ env = "BREVET_TEST_AZURE_TOKEN" }} }}

[providers.azure.identities]
dave = {{ object_id = "{DAVE_OID}" }}
alice = {{ object_id = "{ALICE_OID}", type = "User" }}

[providers.azure.profiles."az.read"]
access = "storage.read"

[providers.azure.profiles."az.read-pim"]
mode = "pim"
access = "storage.read"

[providers.azure.profiles."az.reader"]
role = "Reader"

[access."storage.read"]
kind = "object-storage"
verbs = ["read", "list"]
plane = "data"

[resources."azure:rg1"]
scope = "{rg1}"

[resources."azure:rg2"]
scope = "{rg2}"
"#,
            url = self.fake.url,
            rg1 = rg("rg1"),
            rg2 = rg("rg2"),
        )
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "BREVET_TEST_AZURE_TOKEN".into(),
            FakeAzure::token_for(BREVET_OID),
        )]
    }

    fn may(&self, who: &str, action: &str, group: &str) -> bool {
        self.fake.check_access(who, action, &rg(group))
    }
}

fn world(az: &AzureWorld) -> World {
    let env = az.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    World::new(StoreKind::Sqlite).with(&az.config()).env(&refs)
}

#[test]
fn an_azure_grant_is_the_compiled_role_at_one_resource_group_and_revocation_is_read_back() {
    let az = AzureWorld::start();
    let w = world(&az);
    let server = w.start();
    // A standing Reader assignment of alice's, which Brevet must never touch.
    let standing = az.fake.put_assignment(
        &rg("rg1"),
        ALICE_OID,
        &format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
        Some("granted by the platform team"),
    );
    let r = server.request(
        ALICE,
        &Ask::new("az.read", "azure:rg1")
            .lasting("20m")
            .reason("INC-9"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    server.approve(BOB, &id);
    let a = server.activate(ALICE, &id);
    assert_eq!(a["credential"]["kind"], "azure_role_assignment");
    assert_eq!(a["credential"]["details"]["scope"], rg("rg1"));

    // One custom role, assignable only at rg1, holding exactly what `brevet profile compile` says.
    let roles = az.fake.role_definitions();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(
        roles[0]["properties"]["assignableScopes"],
        json!([rg("rg1")])
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brevet.toml");
    std::fs::write(&path, w.config.text()).unwrap();
    let out = Cmd::profile_compile("storage.read", &[&rg("rg1")])
        .config(&path)
        .json_output()
        .command()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let compiled: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want: Vec<String> = serde_json::from_value(compiled["permissions"].clone()).unwrap();
    want.sort_by_key(|s| s.to_ascii_lowercase());
    let perms = &roles[0]["properties"]["permissions"][0];
    let mut got: Vec<String> = perms["actions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(perms["dataActions"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    got.sort_by_key(|s| s.to_ascii_lowercase());
    assert_eq!(got, want);

    // Azure's access rule: the compiled data action here, not a write, nothing in rg2.
    assert!(az.may(ALICE_OID, BLOB_READ, "rg1"));
    assert!(!az.may(ALICE_OID, BLOB_WRITE, "rg1"));
    assert!(!az.may(ALICE_OID, BLOB_READ, "rg2"));

    let g = server.revoke(ALICE, &id);
    let g = if g["state"] == "revoked" {
        g
    } else {
        server.wait_for(ALICE, &id, std::time::Duration::from_secs(20), |v| {
            v["state"] == "revoked"
        })
    };
    let ev = &g["evidence"]["observation"];
    assert_eq!(ev["assignment_present"], false, "{ev}");
    assert!(
        ev["propagation"].as_str().unwrap().contains("10 minutes"),
        "{ev}"
    );
    assert!(!az.may(ALICE_OID, BLOB_READ, "rg1"));
    assert!(
        az.fake.role_definitions().is_empty(),
        "the custom role went with its last assignment"
    );
    assert!(
        az.fake
            .assignments()
            .iter()
            .any(|a| a["id"] == standing.as_str()),
        "the standing assignment stays"
    );
    // Every ARM call is in the audit log with its outcome.
    let export = server.audit_export(ADMIN);
    assert!(
        export.contains("roleAssignments.create") && export.contains("roleAssignments.delete"),
        "{export}"
    );
}

#[test]
fn a_pim_grant_ends_at_its_expiry_with_brevet_killed() {
    let az = AzureWorld::start();
    let w = world(&az);
    let mut server = w.start();
    let r = server.request(
        DAVE,
        &Ask::new("az.read-pim", "azure:rg1")
            .lasting("20m")
            .reason("x"),
    );
    server.activate(DAVE, r["id"].as_str().unwrap());
    assert!(az.may(DAVE_OID, BLOB_READ, "rg1"));
    server.kill9();
    az.fake.advance(chrono::Duration::minutes(21));
    assert!(
        !az.may(DAVE_OID, BLOB_READ, "rg1"),
        "Azure PIM ended it without Brevet"
    );
}

#[test]
fn the_kill_switch_cuts_azure_gcp_and_aws_at_once() {
    let az = AzureWorld::start();
    let gcp = GcpWorld::start();
    let moto = Moto::start();
    let env = az.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w = World::new(StoreKind::Sqlite)
        .with(&az.config())
        .with(&gcp.config())
        .with(&aws_config(&moto.url))
        .env(&refs)
        .env(&AWS_ENV);
    let server = w.start();
    for (profile, resource) in [
        ("az.reader", "azure:rg1"),
        ("gcp.read", "gcp:p1"),
        ("aws.s3-read", "aws:bucket"),
    ] {
        let r = server.request(
            DAVE,
            &Ask::new(profile, resource).lasting("10m").reason("x"),
        );
        server.activate(DAVE, r["id"].as_str().unwrap());
    }
    assert!(az.may(DAVE_OID, "Microsoft.Storage/storageAccounts/read", "rg1"));
    let report = server.kill(ADMIN, "dave", "token leaked");
    assert_eq!(report["revoked"], 3, "{report:#}");
    for g in report["grants"].as_array().unwrap() {
        assert_eq!(g["outcome"], "revoked", "{g:#}");
    }
    assert!(!az.may(DAVE_OID, "Microsoft.Storage/storageAccounts/read", "rg1"));
    assert!(az
        .fake
        .assignments()
        .iter()
        .all(|a| a["properties"]["principalId"] != DAVE_OID));
    assert!(gcp
        .fake
        .test_permissions(
            "user:dave@example.com",
            "projects/p1",
            &["storage.objects.get"]
        )
        .is_empty());
    let (ok, text) = moto.aws(&["iam", "list-roles", "--path-prefix", "/brevet/"]);
    assert!(
        ok && serde_json::from_str::<Value>(&text).unwrap()["Roles"] == json!([]),
        "{text}"
    );
}

#[test]
fn bad_azure_input_is_refused_with_nothing_written() {
    let az = AzureWorld::start();
    let base = world(&az);
    for (path, value, words) in [
        (
            "providers.azure.profiles.\"az.reader\".role",
            "Owner",
            "not a task-sized grant",
        ),
        (
            "providers.azure.profiles.\"az.reader\".role",
            "Raeder",
            "not an Azure built-in role",
        ),
        (
            "resources.\"azure:rg1\".scope",
            "/",
            "never the tenant root",
        ),
        (
            "providers.azure.identities.dave.object_id",
            "dave@example.com",
            "GUID",
        ),
    ] {
        let e = stderr(&base.refused_start(&base.config.clone().set(path, value)));
        assert!(e.contains(path) && e.contains(words), "{path}: {e}");
    }
    assert!(
        az.fake.requests().is_empty(),
        "a refused config calls nothing"
    );
    // PIM's policy refuses a grant longer than it allows: the rule is named, nothing assigned.
    az.fake
        .set_pim_max_duration(&rg("rg1"), chrono::Duration::minutes(5));
    let server = base.start();
    let r = server.request(
        DAVE,
        &Ask::new("az.read-pim", "azure:rg1")
            .lasting("10m")
            .reason("x"),
    );
    let out = server.run(DAVE, Cmd::activate(r["id"].as_str().unwrap()));
    let e = stderr(&out);
    assert!(!out.status.success() && e.contains("ExpirationRule"), "{e}");
    assert!(!az.may(DAVE_OID, BLOB_READ, "rg1"));
}

#[test]
fn overlapping_azure_grants_share_one_custom_role_until_the_last_ends() {
    let az = AzureWorld::start();
    let w = world(&az);
    let server = w.start();
    let dave = server.request(
        DAVE,
        &Ask::new("az.read", "azure:rg1").lasting("20m").reason("x"),
    );
    let dave_id = dave["id"].as_str().unwrap().to_owned();
    server.activate(DAVE, &dave_id);
    let alice = server.request(
        ALICE,
        &Ask::new("az.read", "azure:rg1").lasting("20m").reason("y"),
    );
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    server.approve(CAROL, &alice_id);
    server.activate(ALICE, &alice_id);
    assert_eq!(
        az.fake.role_definitions().len(),
        1,
        "one role for both grants"
    );
    let wait_revoked = |token: &str, id: &str| {
        let g = server.revoke(token, id);
        if g["state"] != "revoked" {
            server.wait_for(token, id, std::time::Duration::from_secs(20), |v| {
                v["state"] == "revoked"
            });
        }
    };
    wait_revoked(ALICE, &alice_id);
    assert!(!az.may(ALICE_OID, BLOB_READ, "rg1"));
    assert!(az.may(DAVE_OID, BLOB_READ, "rg1"), "dave keeps his access");
    assert_eq!(
        az.fake.role_definitions().len(),
        1,
        "the role stays while dave's assignment uses it"
    );
    wait_revoked(DAVE, &dave_id);
    assert!(!az.may(DAVE_OID, BLOB_READ, "rg1"));
    assert!(
        az.fake.role_definitions().is_empty(),
        "the role goes with the last assignment"
    );
}
