//! The kill switch across providers: one command locks a principal, cancels what they asked for,
//! revokes every grant in parallel, ends live sessions, and reports what took effect — and keeps
//! working, within its bound, when one provider does not answer.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;

#[test]
fn kill_switch_cuts_a_principal_off_everywhere() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let mut conns = Vec::new();
    for profile in ["db.read", "db.write"] {
        let r = server.request(
            DAVE,
            &Ask::new(profile, "postgres:orders")
                .lasting("10m")
                .reason("x"),
        );
        let a = server.activate(DAVE, r["id"].as_str().unwrap());
        conns.push(a["credential"]["secret"].as_str().unwrap().to_owned());
    }
    let waiting = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("10m")
            .reason("later"),
    );
    assert_eq!(waiting["state"], "approved");
    assert_eq!(world.brevet_roles().len(), 2);
    let session = Command::new("psql")
        .args([conns[0].as_str(), "-X", "-c", "SELECT pg_sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let report = server.kill(ADMIN, "dave", "laptop stolen");
    assert_eq!(report["target"], "dave");
    assert_eq!(report["revoked"], 2, "{report:#}");
    assert_eq!(report["retrying"], 0);
    assert_eq!(
        report["cancelled_requests"],
        serde_json::json!([waiting["id"]])
    );
    let ended: u64 = report["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["sessions_terminated"].as_u64().unwrap())
        .sum();
    assert_eq!(
        ended, 1,
        "the open psql session was ended first: {report:#}"
    );
    for g in report["grants"].as_array().unwrap() {
        assert_eq!(g["outcome"], "revoked");
        assert_eq!(g["evidence"]["observation"]["role_exists"], false);
    }
    assert!(world.brevet_roles().is_empty());
    let s = session.wait_with_output().unwrap();
    assert!(!s.status.success() && String::from_utf8_lossy(&s.stderr).contains("terminat"));

    // Nothing new by or for dave until unlocked.
    let again = server.run(
        DAVE,
        Cmd::request(
            &Ask::new("db.read", "postgres:orders")
                .lasting("1m")
                .reason("x"),
        ),
    );
    assert!(
        stderr(&again).contains("locked by the kill switch (laptop stolen, by admin)"),
        "{}",
        stderr(&again)
    );
    let locks = server.locks(ADMIN);
    assert_eq!(locks[0]["principal"], "dave");

    let export = server.audit_export(ADMIN);
    assert!(export.contains("\"kind\":\"principal_locked\""));
    let kill_event = export
        .lines()
        .find(|l| l.contains("\"kind\":\"kill_switch\""))
        .expect("kill report audited");
    assert!(kill_event.contains("laptop stolen") && kill_event.contains("revoked"));
    // Ending the PostgreSQL sessions is audited in the kill switch's event, by grant.
    let e: serde_json::Value = serde_json::from_str(kill_event).unwrap();
    let data: serde_json::Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
    let calls = data["provider_calls"].as_object().unwrap();
    assert!(
        calls
            .values()
            .flat_map(|c| c.as_array().unwrap())
            .any(|c| { c["call"] == "pg_terminate_backend" && c["outcome"] == "ok" }),
        "{data:#}"
    );
    assert_eq!(server.audit_verify(ADMIN)["ok"], true);

    server.unlock(ADMIN, "dave");
    server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("1m")
            .reason("back"),
    );
    // Only admins hold the switch.
    assert!(stderr(&server.run(BOB, Cmd::kill("alice", "x"))).contains("`admin` role"));
}

#[test]
fn kill_switch_is_bounded_when_a_provider_does_not_answer() {
    let forwarder = Forwarder::start();
    let world = World::new(StoreKind::Sqlite)
        .with(
            r#"
[providers.slowpg]
kind = "postgres"
admin_url = { env = "BREVET_TEST_PG2_URL" }
role_prefix = "{prefix}2"

[resources."slowpg:orders"]
database = "{db}"
"#,
        )
        .env(&[("BREVET_TEST_PG2_URL", &forwarder.url())]);
    let server = world.start();
    let mut ids = Vec::new();
    for resource in ["postgres:orders", "slowpg:orders"] {
        let r = server.request(
            DAVE,
            &Ask::new("db.read", resource).lasting("10m").reason("x"),
        );
        server.activate(DAVE, r["id"].as_str().unwrap());
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(world.brevet_roles().len(), 2);

    forwarder.blackhole();
    let out = server.run(ADMIN, Cmd::kill("dave", "incident").json_output());
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit 2 while something still retries"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome = |rid: &str| {
        report["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["grant_id"] == rid)
            .unwrap()
            .clone()
    };
    assert_eq!(outcome(&ids[0])["outcome"], "revoked", "{report:#}");
    let stuck = outcome(&ids[1]);
    assert_eq!(stuck["outcome"], "retrying", "{report:#}");
    assert!(
        stuck["error"].as_str().unwrap().contains("slowpg"),
        "{stuck:#}"
    );
    // Bounded: provider_timeout is 2s; the whole kill answers well within its 7s per-grant bound.
    assert!(report["elapsed_ms"].as_u64().unwrap() < 8000, "{report:#}");
    // dave is locked now, so even reading his own grant is refused to him; an admin looks.
    let stuck_now = server.json(ADMIN, Cmd::show(&ids[1]));
    assert!(
        ["revoking", "revoke_failed"].contains(&stuck_now["state"].as_str().unwrap()),
        "{stuck_now:#}"
    );

    // The provider comes back; the scheduler finishes the job.
    forwarder.forward();
    server.wait_for(ADMIN, &ids[1], Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert!(
        world.brevet_roles().is_empty(),
        "{:?}",
        world.brevet_roles()
    );
}

const ADMIN2: &str = "test-admin2-token";

/// A world with a second admin, `admin2`, who may also request (group `oncall`: auto-approved)
/// and approve (group `leads`).
fn two_admins() -> World {
    World::new(StoreKind::Sqlite).with(&format!(
        r#"
[[principals]]
id = "admin2"
groups = ["oncall", "leads"]
roles = ["admin", "approver"]
token_sha256 = "{}"
"#,
        sha256_hex(ADMIN2)
    ))
}

fn active_grant(server: &Server, token: &str) -> String {
    let r = server.request(
        token,
        &Ask::new("db.read", "postgres:orders")
            .lasting("10m")
            .reason("x"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    server.activate(token, &id);
    id
}

/// Issue #9 item 4 (review finding 2). On 879dbb0 locks were checked only in some broker
/// operations, never for admin routes or static tokens: a killed admin's config token could
/// `POST /v1/unlock` for themselves (200), run the kill switch, export the audit log and revoke
/// others' grants. The lock is now checked once, in the `Caller` extractor.
#[test]
fn a_killed_admin_can_use_their_token_for_nothing() {
    let world = two_admins();
    let server = world.start();
    let daves = active_grant(&server, DAVE);
    server.kill(ADMIN, "admin2", "token leaked");

    let attempts: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        (
            "POST",
            "/v1/unlock".into(),
            Some(serde_json::json!({"principal": "admin2"})),
        ),
        (
            "POST",
            "/v1/kill".into(),
            Some(serde_json::json!({"principal": "dave", "reason": "x"})),
        ),
        (
            "POST",
            "/v1/kill".into(),
            Some(serde_json::json!({"all": true, "reason": "x"})),
        ),
        ("GET", "/v1/audit/export".into(), None),
        ("GET", "/v1/audit/verify".into(), None),
        (
            "POST",
            format!("/v1/grants/{daves}/revoke"),
            Some(serde_json::json!({})),
        ),
        ("POST", "/v1/reconcile".into(), None),
        ("GET", "/v1/deliveries".into(), None),
        ("GET", "/v1/locks".into(), None),
        ("GET", "/v1/requests".into(), None),
        ("GET", "/v1/whoami".into(), None),
    ];
    for (method, path, body) in attempts {
        let (status, text) = api_call(&server, ADMIN2, method, &path, body);
        assert_eq!(status, 403, "{method} {path} by a killed admin: {text}");
        assert!(
            text.contains("locked by the kill switch"),
            "{method} {path}: {text}"
        );
    }
    // And the CLI says so too.
    let out = server.run(ADMIN2, Cmd::unlock("admin2"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("locked by the kill switch (token leaked, by admin)"),
        "{}",
        stderr(&out)
    );

    // Nothing changed: the lock holds, dave is neither locked nor revoked.
    let locks = server.locks(ADMIN);
    assert_eq!(locks.as_array().unwrap().len(), 1, "{locks:#}");
    assert_eq!(locks[0]["principal"], "admin2");
    assert_eq!(server.show(DAVE, &daves)["state"], "active");
    // The other admin is not affected, and can lift it.
    server.unlock(ADMIN, "admin2");
    assert_eq!(api_call(&server, ADMIN2, "GET", "/v1/locks", None).0, 200);
}

/// Issue #9 item 5 (review finding 5). On 879dbb0 `lock_of` returned the first matching lock and
/// `*` sorts first; for an admin the everyone-lock is then discarded, so a killed admin became
/// free again as soon as `kill --all` was engaged: they could sign in, request and approve, and
/// the sweep skipped their grants.
#[test]
fn an_everyone_lock_does_not_lift_a_lock_on_an_admin() {
    let world = two_admins();
    let server = world.start();
    // Two of alice's requests that need one approval: admin2 may approve them, as the first shows.
    let ask = || {
        server.request(
            ALICE,
            &Ask::new("db.read", "postgres:orders")
                .lasting("5m")
                .reason("x"),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (ask(), ask());
    assert_eq!(server.approve(ADMIN2, &first)["state"], "approved");
    server.kill(ADMIN, "admin2", "compromised");
    server.kill(ADMIN, "*", "incident");
    let (status, text) = api_call(
        &server,
        ADMIN2,
        "POST",
        &format!("/v1/requests/{second}/approve"),
        Some(serde_json::json!({})),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("locked by the kill switch"), "{text}");
    // (`kill --all` cancelled alice's pending request too; admin2's approval is not on it.)
    let second = server.show(ADMIN, &second);
    assert_ne!(second["state"], "approved", "{second:#}");
    assert_eq!(second["approvals"], serde_json::json!([]), "{second:#}");

    let request = serde_json::json!({"resource": "postgres:orders", "profile": "db.read", "duration": "5m", "reason": "x"});
    let (status, text) = api_call(&server, ADMIN2, "POST", "/v1/requests", Some(request));
    assert_eq!(status, 403, "{text}");
    let (status, text) = api_call(
        &server,
        ADMIN2,
        "POST",
        "/v1/unlock",
        Some(serde_json::json!({"principal": "*"})),
    );
    assert_eq!(status, 403, "{text}");
    // No portal sign-in either.
    let portal = Portal::new(&server.url);
    let resp = portal.submit_token(ADMIN2, None);
    assert!(
        cookie_value(&resp, "brevet_session").is_none(),
        "a killed admin got a session"
    );
    assert!(resp.text().unwrap().contains("locked by the kill switch"));
    // The admin who is not locked by name still can act under the everyone-lock.
    assert_eq!(api_call(&server, ADMIN, "GET", "/v1/locks", None).0, 200);
}

/// Issue #9 item 5, the sweep: an admin holding a grant is spared by `kill --all`; when a lock on
/// them by name then appears (written here straight into the store, as another replica's kill
/// would), the scheduler's sweep must revoke their grant. On 879dbb0 the everyone-lock hid the
/// lock by name and the grant stayed active.
#[test]
fn the_sweep_revokes_an_admin_locked_by_name_under_an_everyone_lock() {
    let world = two_admins();
    let server = world.start();
    let grant = active_grant(&server, ADMIN2);
    let report = server.kill(ADMIN, "*", "incident");
    assert!(
        report["grants"].as_array().unwrap().is_empty(),
        "admins are spared: {report:#}"
    );
    assert_eq!(server.show(ADMIN2, &grant)["state"], "active");
    let store = format!("sqlite://{}", server.dir.path().join("store.db").display());
    exec_store_sql(
        &store,
        "INSERT INTO principal_locks (principal, reason, locked_by, locked_at) VALUES ('admin2', 'by name', 'admin', 0)",
    );
    server.wait_for(ADMIN, &grant, Duration::from_secs(20), |v| {
        v["state"] == "revoked"
    });
    assert!(
        world.brevet_roles().is_empty(),
        "{:?}",
        world.brevet_roles()
    );
}
