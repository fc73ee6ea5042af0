//! The whole lifecycle against real services: the `brevet` binary, a real PostgreSQL target, and
//! each store backend. request (5 s) → approval by a second principal → activation → `psql`
//! checks → expiry → role gone, open session killed, audit verified, evidence stored.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::*;

/// `superuser`: Brevet's PostgreSQL login is the cluster's superuser (as in the quickstart)
/// instead of the least-privilege login every other test uses.
fn full_flow(store: StoreKind, superuser: bool) {
    let world = World::new(store);
    let world = if superuser {
        world.with_superuser_admin()
    } else {
        world
    };
    let server = world.start();

    // Alice asks and waits; the CLI shows progress and activates once approved.
    let waiting = server.spawn(
        ALICE,
        Cmd::request(
            &Ask::new("db.read", "postgres:orders")
                .lasting("5s")
                .reason("patch orders"),
        )
        .wait()
        .json_output(),
    );
    let id = first_pending(&server, BOB);
    let approved = server.json(BOB, Cmd::approve(&id).comment("go ahead"));
    assert_eq!(approved["state"], "approved");
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "request --wait failed: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("waiting for approval (0/1)"),
        "progress shown: {}",
        stderr(&out)
    );
    let activated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(activated["grant"]["state"], "active");
    let conn = activated["credential"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = activated["credential"]["details"]["user"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(role.starts_with(&world.prefix));

    // The target enforces expiry itself too: VALID UNTIL is the grant's end.
    let valid_until = psql(&pg_admin_url(), &format!("SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{role}'")).unwrap();
    let expires = chrono_epoch(activated["grant"]["expires_at"].as_str().unwrap());
    assert!(
        (valid_until.parse::<i64>().unwrap() - expires).abs() <= 1,
        "VALID UNTIL {valid_until} vs expiry {expires}"
    );

    // Exactly the profile: SELECT works, INSERT does not.
    assert_eq!(psql(&conn, "SELECT count(*) FROM orders").unwrap(), "2");
    let insert = psql(&conn, "INSERT INTO orders VALUES (3, 'nope')").unwrap_err();
    assert!(insert.contains("permission denied"), "{insert}");

    // An open session, which expiry must end.
    let session = Command::new("psql")
        .args([conn.as_str(), "-X", "-c", "SELECT pg_sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let grant = server.wait_for(ALICE, &id, Duration::from_secs(40), |v| {
        v["state"] == "revoked"
    });
    let started = Instant::now();
    let session_out = session.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        !session_out.status.success(),
        "the open session must be terminated"
    );
    assert!(
        String::from_utf8_lossy(&session_out.stderr).contains("terminat"),
        "{}",
        String::from_utf8_lossy(&session_out.stderr)
    );

    // The role is gone, and the grant carries the read-back that proves it.
    assert!(!world.role_exists(&role));
    assert!(
        psql(&conn, "SELECT 1").is_err(),
        "the credential must no longer work"
    );
    let evidence = &grant["evidence"]["observation"];
    assert_eq!(evidence["role"], role);
    assert_eq!(evidence["role_exists"], false);
    assert_eq!(evidence["live_sessions"], 0);
    assert_eq!(grant["revoke_reason"], "expired");

    // The audit chain verifies and tells the story, approver and evidence included.
    let report = server.audit_verify(ADMIN);
    assert_eq!(report["ok"], true, "{report:#}");
    let export = server.run(ADMIN, Cmd::audit_export().format("jsonl"));
    let kinds: Vec<String> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["request_id"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "request_created",
            "approval_recorded",
            "request_approved",
            "activation_started",
            "grant_activated",
            "credentials_issued",
            "revocation_started",
            "grant_revoked"
        ]
    );
    // Each step's audit event records the provider calls it made: the broker's own record and
    // the PostgreSQL provider's, on the grant's role, with outcome and duration.
    let calls_of = |kind: &str| -> Vec<serde_json::Value> {
        let e = stdout(&export)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["request_id"] == id.as_str() && e["kind"] == kind)
            .unwrap();
        let data: serde_json::Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
        data["provider_calls"].as_array().unwrap().clone()
    };
    for (kind, provider_call, target_call) in [
        (
            "grant_activated",
            "provider.ensure",
            "CREATE ROLE / ALTER ROLE VALID UNTIL / GRANT",
        ),
        (
            "credentials_issued",
            "provider.issue_credentials",
            "ALTER ROLE PASSWORD",
        ),
        (
            "grant_revoked",
            "provider.revoke",
            "NOLOGIN / terminate / disarm / DROP OWNED / DROP ROLE",
        ),
    ] {
        let calls = calls_of(kind);
        assert!(
            calls
                .iter()
                .any(|c| c["call"] == provider_call && c["outcome"] == "ok"),
            "{kind}: {calls:#?}"
        );
        assert!(
            calls.iter().any(|c| c["call"] == target_call
                && c["target"] == role.as_str()
                && c["outcome"] == "ok"
                && c["duration_ms"].is_u64()),
            "{kind}: {calls:#?}"
        );
    }
    let text = stdout(&export);
    assert!(
        text.contains("go ahead") && text.contains("patch orders") && text.contains("role_exists")
    );
    assert!(
        !text.contains(conn.split(':').nth(2).unwrap().split('@').next().unwrap()),
        "the password must never reach the audit log"
    );
    assert!(
        !server
            .log_text()
            .contains(conn.split(':').nth(2).unwrap().split('@').next().unwrap()),
        "nor the server log"
    );
}

#[test]
fn full_flow_on_sqlite_store() {
    full_flow(StoreKind::Sqlite, false);
}

/// The one run with a superuser admin login.
#[test]
fn full_flow_with_a_superuser_admin_login() {
    full_flow(StoreKind::Sqlite, true);
}

#[test]
fn full_flow_on_postgres_store() {
    full_flow(StoreKind::Postgres, false);
}
