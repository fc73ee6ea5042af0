//! The GCP IAM stand-in through its HTTP surface, as a client sees it: policies, conditions,
//! limits, custom-role lifecycle, inheritance, Storage — then Google's own Python client and
//! gcloud against it (clients nobody here wrote).

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use brevet_testkit::gcp::FakeGcp;
use serde_json::{json, Value};

/// One HTTP/1.1 request on loopback: (status, JSON body or Null).
fn call(
    fake: &FakeGcp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    call_raw(
        &fake.url,
        method,
        path,
        token,
        body.map(|b| b.to_string()).as_deref(),
        &[],
    )
}

fn call_raw(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        head += &format!("Authorization: Bearer {t}\r\n");
    }
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    write!(stream, "{head}\r\n{body}").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn get_policy(fake: &FakeGcp, resource: &str, version: i64) -> Value {
    let (s, p) = call(
        fake,
        "POST",
        &format!("/v3/{resource}:getIamPolicy"),
        None,
        Some(&json!({"options": {"requestedPolicyVersion": version}})),
    );
    assert_eq!(s, 200, "{p}");
    p
}

fn set_policy(fake: &FakeGcp, resource: &str, policy: Value) -> (u16, Value) {
    call(
        fake,
        "POST",
        &format!("/v3/{resource}:setIamPolicy"),
        None,
        Some(&json!({"policy": policy})),
    )
}

fn hierarchy() -> FakeGcp {
    let fake = FakeGcp::start();
    fake.add_organization("1");
    fake.add_folder("10", "organizations/1");
    fake.add_project("p1", Some("folders/10"));
    fake.add_project("p2", Some("organizations/1"));
    fake.add_bucket("b1", "p1");
    fake
}

fn expiring(role: &str, member: &str, until: &str) -> Value {
    json!({"role": role, "members": [member], "condition": {"title": "JIT access activation",
        "expression": format!("request.time < timestamp(\"{until}\")")}})
}

fn message(error: &Value) -> &str {
    error["error"]["message"].as_str().unwrap_or("")
}

#[test]
fn etags_change_on_every_write_and_a_stale_one_is_aborted() {
    let fake = hierarchy();
    let p0 = get_policy(&fake, "projects/p1", 3);
    let etag0 = p0["etag"].as_str().unwrap().to_owned();
    let binding = json!({"role": "roles/storage.objectViewer", "members": ["user:a@example.com"]});
    let (s, p1) = call_raw(
        &fake.url,
        "POST",
        "/v1/projects/p1:setIamPolicy",
        None,
        Some(&json!({"policy": {"bindings": [binding], "etag": etag0}}).to_string()),
        &[("x-goog-request-reason", "ticket 42")],
    );
    assert_eq!(s, 200, "{p1}");
    let etag1 = p1["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag0, etag1);
    use base64::Engine as _;
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(&etag1)
            .is_ok(),
        "etag must be base64"
    );
    // The old etag is stale now: Google's exact text.
    let (s, e) = set_policy(&fake, "projects/p1", json!({"bindings": [], "etag": etag0}));
    assert_eq!(s, 409);
    assert_eq!(e["error"]["status"], "ABORTED");
    assert_eq!(e["error"]["errors"][0]["reason"], "aborted");
    assert_eq!(message(&e), "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.");
    // No etag: Google accepts the write and overwrites (the dangerous, real behaviour).
    let (s, p2) = set_policy(&fake, "projects/p1", json!({"bindings": []}));
    assert_eq!(s, 200);
    assert!(p2.get("bindings").is_none());
    let recorded = fake.requests();
    let set = recorded
        .iter()
        .find(|r| r.path == "/v1/projects/p1:setIamPolicy")
        .unwrap();
    assert_eq!(set.reason.as_deref(), Some("ticket 42"));
    assert_eq!(set.status, 200);
    assert_eq!(
        set.body.as_ref().unwrap()["policy"]["bindings"][0]["role"],
        "roles/storage.objectViewer"
    );
    assert_eq!(recorded.last().unwrap().status, 200);
    // Unknown resources look like missing permission; bad JSON is INVALID_ARGUMENT.
    let (s, e) = call(&fake, "POST", "/v1/projects/nope:getIamPolicy", None, None);
    assert_eq!(
        (s, e["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let (s, e) = call_raw(
        &fake.url,
        "POST",
        "/v1/projects/p1:setIamPolicy",
        None,
        Some("{\"policy\": "),
        &[],
    );
    assert_eq!(
        (s, e["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (s, _) = call_raw(
        &fake.url,
        "POST",
        "/v1/projects/p1:setIamPolicy",
        None,
        Some("{\"policy\": {\"bindings\": [{\"role\": 7}]}}"),
        &[],
    );
    assert_eq!(s, 400);
}

#[test]
fn interference_forces_a_retry_that_keeps_the_racers_binding() {
    let fake = hierarchy();
    fake.interfere("projects/p1", 2);
    let mine = json!({"role": "roles/storage.objectViewer", "members": ["user:a@example.com"]});
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut p = get_policy(&fake, "projects/p1", 3);
        let mut bindings = p["bindings"].as_array().cloned().unwrap_or_default();
        bindings.push(mine.clone());
        p["bindings"] = json!(bindings);
        let (s, _) = set_policy(&fake, "projects/p1", p);
        if s == 200 {
            break;
        }
        assert_eq!(s, 409);
        assert!(attempts < 5);
    }
    assert_eq!(attempts, 3);
    let stored = fake.policy("projects/p1");
    let text = stored.to_string();
    assert!(
        text.contains("user:racer-1@example.com")
            && text.contains("user:racer-2@example.com")
            && text.contains("user:a@example.com"),
        "{stored}"
    );
    // Storage answers a stale etag with 412, and its racer uses a Storage role.
    fake.interfere("projects/_/buckets/b1", 1);
    let p = call(
        &fake,
        "GET",
        "/storage/v1/b/b1/iam?optionsRequestedPolicyVersion=3",
        None,
        None,
    )
    .1;
    assert_eq!(p["kind"], "storage#policy");
    assert_eq!(p["resourceId"], "projects/_/buckets/b1");
    let (s, e) = call(&fake, "PUT", "/storage/v1/b/b1/iam", None, Some(&p));
    assert_eq!(s, 412, "{e}");
    assert_eq!(e["error"]["errors"][0]["reason"], "conditionNotMet");
    assert!(fake
        .policy("projects/_/buckets/b1")
        .to_string()
        .contains("racer-3"));
}

#[test]
fn version_3_rules_and_the_withcond_downgrade() {
    let fake = hierarchy();
    let cond = expiring(
        "roles/storage.objectViewer",
        "user:a@example.com",
        "2030-01-01T00:00:00Z",
    );
    let etag = get_policy(&fake, "projects/p1", 3)["etag"].clone();
    let (s, e) = set_policy(
        &fake,
        "projects/p1",
        json!({"bindings": [cond], "etag": etag}),
    );
    assert_eq!(s, 400);
    assert!(message(&e).contains("version 3"), "{e}");
    let (s, p) = set_policy(
        &fake,
        "projects/p1",
        json!({"version": 3, "bindings": [cond], "etag": etag}),
    );
    assert_eq!(s, 200, "{p}");
    let v3 = get_policy(&fake, "projects/p1", 3);
    assert_eq!(v3["version"], 3);
    assert_eq!(
        v3["bindings"][0]["condition"]["title"],
        "JIT access activation"
    );
    let v1 = get_policy(&fake, "projects/p1", 1);
    assert_eq!(v1["version"], 1);
    assert!(v1["bindings"][0]["role"]
        .as_str()
        .unwrap()
        .starts_with("roles/storage.objectViewer_withcond_"));
    assert!(v1["bindings"][0].get("condition").is_none());
    // A v1 write with the etag cannot touch a policy with conditions ...
    let (s, _) = set_policy(
        &fake,
        "projects/p1",
        json!({"version": 1, "bindings": [], "etag": v3["etag"]}),
    );
    assert_eq!(s, 400);
    // ... and the downgraded role name is no role.
    let (s, _) = set_policy(
        &fake,
        "projects/p1",
        json!({"version": 3, "bindings": v1["bindings"], "etag": v3["etag"]}),
    );
    assert_eq!(s, 400);
    // A policy with no conditions is version 1 even when 3 is asked for.
    assert_eq!(get_policy(&fake, "projects/p2", 3)["version"], 1);
    // updateMask without bindings leaves them alone.
    let (s, p) = call(
        &fake,
        "POST",
        "/v3/projects/p1:setIamPolicy",
        None,
        Some(
            &json!({"policy": {"version": 3, "bindings": [], "auditConfigs": []}, "updateMask": "auditConfigs"}),
        ),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["bindings"][0]["role"], "roles/storage.objectViewer");
}

#[test]
fn refusals_name_the_limit() {
    let fake = hierarchy();
    let m = |n: usize, prefix: &str| -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix}:u{i}@example.com"))
            .collect()
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!([{"role": "roles/storage.objectViewer", "members": m(800, "user")}, {"role": "roles/storage.objectAdmin", "members": m(710, "user")}]),
         "The number of members in the policy (1,510) is larger than the maximum allowed size 1,500."),
        (json!([{"role": "roles/storage.objectViewer", "members": m(253, "group")}]), "(253) is larger than the maximum allowed size 250"),
        (json!([expiring("roles/viewer", "user:a@example.com", "2030-01-01T00:00:00Z")]), "basic role"),
        (json!([expiring("roles/storage.objectViewer", "allUsers", "2030-01-01T00:00:00Z")]), "allUsers"),
        (json!([{"role": "roles/storage.objectViewer", "members": ["a@example.com"]}]), "Invalid principal"),
        (json!([{"role": "roles/storage.objectViewer", "members": ["projectOwner:p1"]}]), "Invalid principal"),
        (json!([{"role": "roles/storage.objectViewer", "members": ["user:a@example.com"], "condition": {"title": "t", "expression": "request.time <"}}]), "failed to parse"),
        (json!([{"role": "roles/storage.objectViewer", "members": ["user:a@example.com"], "condition": {"title": "t", "expression": vec!["true"; 14].join(" || ")}}]), "maximum allowed is 12"),
        (json!([{"role": "roles/no.such", "members": ["user:a@example.com"]}]), "Role (roles/no.such) does not exist"),
        (json!([{"role": "projects/p2/roles/other", "members": ["user:a@example.com"]}]), "does not exist in the resource's hierarchy"),
    ];
    for (bindings, expected) in cases {
        let (s, e) = set_policy(
            &fake,
            "projects/p1",
            json!({"version": 3, "bindings": bindings}),
        );
        assert_eq!(s, 400, "{expected}: {e}");
        assert!(message(&e).contains(expected), "{expected}: {e}");
        assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
    }
    let same: Vec<Value> = (0..21)
        .map(|i| {
            expiring(
                "roles/storage.objectViewer",
                "user:a@example.com",
                &format!("20{}-01-01T00:00:00Z", 30 + i),
            )
        })
        .collect();
    let (s, e) = set_policy(
        &fake,
        "projects/p1",
        json!({"version": 3, "bindings": same}),
    );
    assert!(
        s == 400 && message(&e).contains("maximum allowed is 20"),
        "{e}"
    );
    let big: Vec<Value> = (0..700).map(|i| json!({"role": "roles/storage.objectViewer", "members": [format!("user:a-rather-long-member-name-{i}@example.com")], "condition": {"title": "t", "expression": "true"}})).collect();
    let (s, e) = set_policy(&fake, "projects/p1", json!({"version": 3, "bindings": big}));
    assert!(s == 400 && message(&e).contains("65,536"), "{e}");
    // Storage: its convenience members are fine there; non-storage roles are not.
    let (s, e) = call(
        &fake,
        "PUT",
        "/storage/v1/b/b1/iam",
        None,
        Some(
            &json!({"bindings": [{"role": "roles/compute.admin", "members": ["user:a@example.com"]}]}),
        ),
    );
    assert!(
        s == 400 && message(&e).contains("not supported for this resource"),
        "{e}"
    );
    let (s, e) = call(
        &fake,
        "GET",
        "/storage/v1/b/b1/iam/testPermissions?permissions=resourcemanager.projects.get",
        None,
        None,
    );
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(&fake, "GET", "/storage/v1/b/nope/iam", None, None);
    assert_eq!(s, 404);
    assert!(fake.requests().iter().all(|r| r.status != 500));
}

fn create_role(fake: &FakeGcp, parent: &str, id: &str, permissions: &[&str]) -> (u16, Value) {
    call(
        fake,
        "POST",
        &format!("/v1/{parent}/roles"),
        None,
        Some(
            &json!({"roleId": id, "role": {"title": format!("Brevet {id}"), "includedPermissions": permissions, "stage": "GA"}}),
        ),
    )
}

#[test]
fn custom_roles_live_die_and_are_purged() {
    let fake = hierarchy();
    let (s, role) = create_role(
        &fake,
        "projects/p1",
        "brevet_reader",
        &["storage.objects.get", "storage.objects.list"],
    );
    assert_eq!(s, 200, "{role}");
    assert_eq!(role["name"], "projects/p1/roles/brevet_reader");
    assert_eq!(
        create_role(
            &fake,
            "projects/p1",
            "brevet_reader",
            &["storage.objects.get"]
        )
        .1["error"]["status"],
        "ALREADY_EXISTS"
    );
    for (id, perm, expected) in [
        ("x", "storage.objects.get", "role_id (x) is invalid"),
        (
            "bad_perm",
            "storage.objects.fly",
            "Permission storage.objects.fly is not valid.",
        ),
        (
            "org_perm",
            "resourcemanager.projects.list",
            "Permission resourcemanager.projects.list is not valid.",
        ),
        (
            "org_perm2",
            "resourcemanager.organizations.getIamPolicy",
            "is not valid.",
        ),
        (
            "unsupported",
            "cloudonefs.isiloncloud.com/clusters.list",
            "is not supported in custom roles.",
        ),
    ] {
        let (s, e) = create_role(&fake, "projects/p1", id, &[perm]);
        assert!(
            s == 400 && message(&e).contains(expected),
            "{expected}: {e}"
        );
    }
    // An organization role may hold organization-level permissions.
    assert_eq!(
        create_role(
            &fake,
            "organizations/1",
            "org_admin",
            &["resourcemanager.organizations.getIamPolicy"]
        )
        .0,
        200
    );
    // BASIC omits the permissions; FULL has them.
    let basic = call(&fake, "GET", "/v1/projects/p1/roles", None, None).1;
    assert!(basic["roles"][0].get("includedPermissions").is_none());
    let full = call(&fake, "GET", "/v1/projects/p1/roles?view=FULL", None, None).1;
    assert_eq!(
        full["roles"][0]["includedPermissions"],
        json!(["storage.objects.get", "storage.objects.list"])
    );
    // Bound, it grants; a stale role etag on patch is aborted.
    let etag = fake.policy("projects/p1")["etag"].clone();
    let binding =
        json!({"role": "projects/p1/roles/brevet_reader", "members": ["user:a@example.com"]});
    assert_eq!(
        set_policy(
            &fake,
            "projects/p1",
            json!({"bindings": [binding], "etag": etag})
        )
        .0,
        200
    );
    assert_eq!(
        fake.test_permissions(
            "user:a@example.com",
            "projects/_/buckets/b1",
            &["storage.objects.get", "storage.buckets.delete"]
        ),
        vec!["storage.objects.get"]
    );
    let (s, patched) = call(
        &fake,
        "PATCH",
        "/v1/projects/p1/roles/brevet_reader?updateMask=title",
        None,
        Some(&json!({"title": "new", "etag": role["etag"]})),
    );
    assert_eq!(s, 200, "{patched}");
    assert_ne!(patched["etag"], role["etag"]);
    let (s, e) = call(
        &fake,
        "PATCH",
        "/v1/projects/p1/roles/brevet_reader?updateMask=title",
        None,
        Some(&json!({"title": "x", "etag": role["etag"]})),
    );
    assert_eq!((s, e["error"]["status"].as_str()), (409, Some("ABORTED")));
    // Deleted: hidden, no effect, not bindable; still counted.
    let (s, deleted) = call(
        &fake,
        "DELETE",
        "/v1/projects/p1/roles/brevet_reader",
        None,
        None,
    );
    assert_eq!((s, &deleted["deleted"]), (200, &json!(true)));
    assert!(call(&fake, "GET", "/v1/projects/p1/roles", None, None)
        .1
        .get("roles")
        .is_none());
    assert_eq!(
        call(
            &fake,
            "GET",
            "/v1/projects/p1/roles?showDeleted=true",
            None,
            None
        )
        .1["roles"][0]["deleted"],
        true
    );
    assert!(fake
        .test_permissions(
            "user:a@example.com",
            "projects/p1",
            &["storage.objects.get"]
        )
        .is_empty());
    let (s, e) = set_policy(
        &fake,
        "projects/p2",
        json!({"bindings": [{"role": "projects/p1/roles/brevet_reader", "members": ["user:b@example.com"]}]}),
    );
    assert_eq!(s, 400, "{e}");
    fake.set_role_quota(1);
    let (s, e) = create_role(&fake, "projects/p1", "another", &["storage.objects.get"]);
    assert_eq!(
        (s, message(&e)),
        (429, "Maximum number of roles reached. Maximum is: 1")
    );
    assert_eq!(e["error"]["status"], "RESOURCE_EXHAUSTED");
    // Undelete within 7 days brings the grant back.
    fake.advance(chrono::Duration::days(6));
    let (s, back) = call(
        &fake,
        "POST",
        "/v1/projects/p1/roles/brevet_reader:undelete",
        None,
        Some(&json!({"etag": deleted["etag"]})),
    );
    assert_eq!(s, 200, "{back}");
    assert!(back.get("deleted").is_none());
    assert_eq!(
        fake.test_permissions(
            "user:a@example.com",
            "projects/p1",
            &["storage.objects.get"]
        ),
        vec!["storage.objects.get"]
    );
    // Deleted again and 7 days later: purged, its bindings gone, the quota free, the id embargoed.
    call(
        &fake,
        "DELETE",
        "/v1/projects/p1/roles/brevet_reader",
        None,
        None,
    );
    let etag_before = fake.policy("projects/p1")["etag"].clone();
    fake.advance(chrono::Duration::days(7));
    assert_eq!(
        call(
            &fake,
            "GET",
            "/v1/projects/p1/roles/brevet_reader",
            None,
            None
        )
        .0,
        404
    );
    let after = fake.policy("projects/p1");
    assert!(after.get("bindings").is_none(), "{after}");
    assert_ne!(after["etag"], etag_before);
    assert!(fake.roles("projects/p1").is_empty());
    assert_eq!(
        create_role(&fake, "projects/p1", "another", &["storage.objects.get"]).0,
        200
    );
    fake.set_role_quota(300);
    let (s, e) = create_role(
        &fake,
        "projects/p1",
        "brevet_reader",
        &["storage.objects.get"],
    );
    assert_eq!(
        (s, e["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION"))
    );
    assert_eq!(
        message(&e),
        "You can't create a role_id (brevet_reader) which has been marked for deletion."
    );
    fake.advance(chrono::Duration::days(31));
    assert_eq!(
        create_role(
            &fake,
            "projects/p1",
            "brevet_reader",
            &["storage.objects.get"]
        )
        .0,
        200
    );
    // Predefined roles come from the catalog.
    let (s, admin) = call(&fake, "GET", "/v1/roles/storage.admin", None, None);
    assert_eq!(s, 200);
    assert!(admin["includedPermissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "storage.buckets.setIamPolicy"));
}

#[test]
fn access_is_inherited_and_expires_with_the_clock() {
    let fake = hierarchy();
    fake.set_now("2026-12-01T10:00:00Z".parse().unwrap());
    fake.set_policy("organizations/1", json!({"bindings": [expiring("roles/storage.objectViewer", "user:a@example.com", "2026-12-01T12:00:00Z")]}));
    fake.set_policy("folders/10", json!({"bindings": [{"role": "roles/resourcemanager.projectIamAdmin", "members": ["domain:example.com"]}]}));
    let a = "user:a@example.com";
    for r in ["projects/p1", "projects/p2", "projects/_/buckets/b1"] {
        assert_eq!(
            fake.test_permissions(a, r, &["storage.objects.get", "storage.objects.delete"]),
            vec!["storage.objects.get"],
            "{r}"
        );
    }
    assert_eq!(
        fake.test_permissions(a, "projects/p1", &["resourcemanager.projects.setIamPolicy"])
            .len(),
        1
    );
    assert!(fake
        .test_permissions(a, "projects/p2", &["resourcemanager.projects.setIamPolicy"])
        .is_empty());
    // Over HTTP, as the caller named by the bearer token; no token holds nothing.
    let token = FakeGcp::token_for(a);
    let (s, held) = call(
        &fake,
        "POST",
        "/v1/projects/p1:testIamPermissions",
        Some(&token),
        Some(&json!({"permissions": ["storage.objects.get", "storage.objects.delete"]})),
    );
    assert_eq!(
        (s, held),
        (200, json!({"permissions": ["storage.objects.get"]}))
    );
    assert_eq!(
        call(
            &fake,
            "POST",
            "/v1/projects/p1:testIamPermissions",
            None,
            Some(&json!({"permissions": ["storage.objects.get"]}))
        )
        .1,
        json!({})
    );
    let (_, held) = call(&fake, "GET", "/storage/v1/b/b1/iam/testPermissions?permissions=storage.objects.get&permissions=storage.objects.delete", Some(&token), None);
    assert_eq!(held["permissions"], json!(["storage.objects.get"]));
    // The condition expires at 12:00 at the stand-in's clock.
    fake.advance(chrono::Duration::hours(2));
    assert!(fake
        .test_permissions(a, "projects/_/buckets/b1", &["storage.objects.get"])
        .is_empty());
    // The bucket's default policy lets the project's owners in through projectOwner:.
    fake.set_policy(
        "projects/p1",
        json!({"bindings": [{"role": "roles/owner", "members": ["user:o@example.com"]}]}),
    );
    assert_eq!(
        fake.test_permissions(
            "user:o@example.com",
            "projects/_/buckets/b1",
            &["storage.buckets.setIamPolicy"]
        )
        .len(),
        1
    );
}

#[test]
fn enforced_callers_need_the_permission_google_checks() {
    let fake = hierarchy();
    fake.set_policy("projects/p1", json!({"bindings": [{"role": "roles/resourcemanager.projectIamAdmin", "members": ["serviceAccount:brevet@p1.iam.gserviceaccount.com"]}]}));
    fake.enforce_callers(true);
    let brevet = FakeGcp::token_for("serviceAccount:brevet@p1.iam.gserviceaccount.com");
    let (s, e) = call(
        &fake,
        "POST",
        "/v1/projects/p1:getIamPolicy",
        Some(&FakeGcp::token_for("user:x@example.com")),
        None,
    );
    assert_eq!(s, 403);
    assert_eq!(message(&e), "Permission 'resourcemanager.projects.getIamPolicy' denied on resource 'projects/p1' (or it may not exist).");
    assert_eq!(
        call(
            &fake,
            "POST",
            "/v1/projects/p1:getIamPolicy",
            Some(&brevet),
            None
        )
        .0,
        200
    );
    assert_eq!(
        create_role(&fake, "projects/p1", "nope", &["storage.objects.get"]).0,
        403
    );
    // The token endpoint turns a JWT assertion's iss into a service-account token.
    use base64::Engine as _;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"iss":"brevet@p1.iam.gserviceaccount.com"}"#);
    let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=e30.{claims}.sig");
    let (s, t) = call_raw(&fake.url, "POST", "/token", None, Some(&form), &[]);
    assert_eq!(s, 200);
    assert_eq!(t["access_token"], brevet);
}

/// The venv's python (next to moto_server), or None when the tests run outside scripts/test.
fn venv_python() -> Option<std::path::PathBuf> {
    match std::env::var("BREVET_TEST_MOTO_SERVER") {
        Ok(moto) => Some(std::path::Path::new(&moto).with_file_name("python")),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("BREVET_TEST_MOTO_SERVER is not set: run the tests with scripts/test, which installs google-api-python-client")
        }
        Err(_) => {
            eprintln!("SKIPPED: BREVET_TEST_MOTO_SERVER is not set, so Google's Python client is not available (run scripts/test)");
            None
        }
    }
}

#[test]
fn googles_python_client_round_trips() {
    let Some(python) = venv_python() else { return };
    let fake = hierarchy();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/gcp_clients.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&fake.url)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gcp_clients.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON summary");
    assert_eq!(
        summary["conditional_binding"]["expression"],
        "request.time < timestamp(\"2030-01-01T00:00:00Z\")"
    );
    assert_eq!(summary["conditional_version"], 3);
    assert_eq!(summary["stale_etag_status"], 409);
    assert_eq!(summary["role_created"], "projects/p1/roles/brevet_py");
    assert_eq!(summary["role_listed_deleted"], true);
    assert_eq!(summary["role_hidden_when_deleted"], true);
    assert_eq!(summary["role_undeleted"], true);
    assert_eq!(
        summary["invalid_permission"],
        "Permission storage.objects.fly is not valid."
    );
    assert_eq!(summary["quota_status"], 429);
    assert_eq!(summary["bucket_policy_kind"], "storage#policy");
    assert_eq!(summary["bucket_member_round_trip"], true);
    assert_eq!(
        summary["bucket_test_permissions"],
        json!(["storage.objects.get"])
    );
    assert_eq!(summary["bucket_stale_status"], 412);
    // What the Python client sent is what the stand-in recorded.
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/storage/v1/b/b1/iam" && r.method == "PUT" && r.status == 200));
    let stored = fake.policy("projects/p1");
    assert!(
        stored.to_string().contains("user:py@example.com"),
        "{stored}"
    );
}

#[test]
fn gcloud_round_trips() {
    if Command::new("gcloud").arg("--version").output().is_err() {
        eprintln!("SKIPPED: gcloud is not on PATH, so the gcloud round trip did not run");
        return;
    }
    let fake = hierarchy();
    let config = tempfile::tempdir().unwrap();
    let gcloud = |args: &[&str]| {
        let out = Command::new("gcloud")
            .args(args)
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER",
                format!("{}/", fake.url),
            )
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM",
                format!("{}/", fake.url),
            )
            .env("CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "true")
            .env("CLOUDSDK_CONFIG", config.path())
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .output()
            .expect("run gcloud");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "gcloud {args:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let expression = r#"request.time < timestamp("2030-01-01T00:00:00Z")"#;
    gcloud(&[
        "projects",
        "add-iam-policy-binding",
        "p1",
        "--member=user:a@example.com",
        "--role=roles/storage.objectViewer",
        &format!("--condition=expression={expression},title=t"),
        "--format=json",
    ]);
    let policy: Value = serde_json::from_str(&gcloud(&[
        "projects",
        "get-iam-policy",
        "p1",
        "--format=json",
    ]))
    .expect("JSON policy");
    assert_eq!(policy["version"], 3, "{policy}");
    assert_eq!(policy["bindings"][0]["condition"]["expression"], expression);
    assert_eq!(
        fake.policy("projects/p1")["bindings"][0]["members"],
        json!(["user:a@example.com"])
    );
    gcloud(&[
        "iam",
        "roles",
        "create",
        "brevet_gc",
        "--project=p1",
        "--title=Brevet",
        "--permissions=storage.objects.get",
        "--stage=GA",
        "--format=json",
    ]);
    let role: Value = serde_json::from_str(&gcloud(&[
        "iam",
        "roles",
        "describe",
        "brevet_gc",
        "--project=p1",
        "--format=json",
    ]))
    .unwrap();
    assert_eq!(role["includedPermissions"], json!(["storage.objects.get"]));
    gcloud(&[
        "iam",
        "roles",
        "delete",
        "brevet_gc",
        "--project=p1",
        "--format=json",
    ]);
    assert_eq!(fake.roles("projects/p1")[0]["deleted"], true);
    gcloud(&[
        "iam",
        "roles",
        "undelete",
        "brevet_gc",
        "--project=p1",
        "--format=json",
    ]);
    assert!(fake.roles("projects/p1")[0].get("deleted").is_none());
}

#[test]
fn odd_input_is_refused_never_crashes() {
    let fake = hierarchy();
    let bodies = ["", "null", "[]", "{", "\"x\"", "{\"policy\": null}", "{\"policy\": {\"bindings\": null}}",
        "{\"policy\": {\"version\": 99}}", "{\"policy\": {\"bindings\": [{\"role\": \"roles/storage.admin\", \"members\": [\"user:a@example.com\"], \"condition\": {\"title\": \"t\", \"expression\": \"((((((((((((((((((\"}}]}}",
        "{\"options\": {\"requestedPolicyVersion\": -1}}", "{\"roleId\": \"\\u0000\", \"role\": {\"stage\": \"NOPE\"}}"];
    let paths = [
        "/v1/projects/p1:setIamPolicy",
        "/v3/folders/10:getIamPolicy",
        "/v1/projects/p1/roles",
        "/v1/projects/p1/roles/x:undelete",
        "/v1/projects/p1:nope",
        "/v3/projects/_/buckets/b1:getIamPolicy",
        "/v1/roles/",
        "/storage/v1/b/b1/iam",
        "/%ZZ/%",
        "/v1/permissions:queryTestablePermissions",
        "/token",
    ];
    for path in paths {
        for body in bodies {
            for method in ["POST", "PUT", "PATCH", "DELETE", "GET"] {
                let (s, _) = call_raw(&fake.url, method, path, Some("garbage"), Some(body), &[]);
                assert!(
                    (200..500).contains(&s) && s != 0,
                    "{method} {path} {body}: {s}"
                );
            }
        }
    }
    assert_eq!(
        call(&fake, "POST", "/v1/projects/p1:getIamPolicy", None, None).0,
        200
    );
}

#[test]
fn the_binary_serves_the_same_with_shell_controls() {
    let port = brevet_testkit::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-gcp"))
        .args([
            "--port",
            &port,
            "--organization",
            "1",
            "--folder",
            "10@organizations/1",
            "--project",
            "p1@folders/10",
            "--bucket",
            "b1@p1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start fake-gcp");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().to_owned();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let clock = |body: Option<&str>| {
        call_raw(
            &url,
            if body.is_some() { "POST" } else { "GET" },
            if body.is_some() {
                "/_fake/advance"
            } else {
                "/_fake/clock"
            },
            None,
            body,
            &[],
        )
        .1
    };
    let before: chrono::DateTime<chrono::Utc> =
        clock(None)["now"].as_str().unwrap().parse().unwrap();
    let after: chrono::DateTime<chrono::Utc> = clock(Some("{\"seconds\": 3600}"))["now"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after - before, chrono::Duration::hours(1));
    assert_eq!(
        call_raw(
            &url,
            "POST",
            "/_fake/projects",
            None,
            Some("{\"id\": \"p2\", \"parent\": \"folders/10\"}"),
            &[]
        )
        .0,
        200
    );
    let (s, p) = call_raw(&url, "GET", "/storage/v1/b/b1/iam", None, None, &[]);
    assert_eq!(
        (s, p["resourceId"].as_str()),
        (200, Some("projects/_/buckets/b1"))
    );
    assert_eq!(
        call_raw(
            &url,
            "POST",
            "/v3/projects/p2:getIamPolicy",
            None,
            None,
            &[]
        )
        .0,
        200
    );
    let _ = child.kill();
    let _ = child.wait();
}
