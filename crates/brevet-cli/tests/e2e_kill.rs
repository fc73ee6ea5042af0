//! The kill switch across providers: one command locks a principal, cancels what they asked for,
//! revokes every grant in parallel, ends live sessions, and reports what took effect — and keeps
//! working, within its bound, when one provider does not answer.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

#[test]
fn kill_switch_cuts_a_principal_off_everywhere() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let mut conns = Vec::new();
    for profile in ["db.read", "db.write"] {
        let r = server.cli_json(
            DAVE,
            &[
                "request",
                profile,
                "--resource",
                "postgres:orders",
                "--for",
                "10m",
                "--reason",
                "x",
            ],
        );
        let a = server.cli_json(DAVE, &["activate", r["id"].as_str().unwrap()]);
        conns.push(a["credential"]["secret"].as_str().unwrap().to_owned());
    }
    let waiting = server.cli_json(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "later",
        ],
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

    let report = server.cli_json(ADMIN, &["kill", "dave", "--reason", "laptop stolen"]);
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
    let again = server.cli(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "1m",
            "--reason",
            "x",
        ],
    );
    assert!(
        stderr(&again).contains("locked by the kill switch (laptop stolen, by admin)"),
        "{}",
        stderr(&again)
    );
    let locks = server.cli_json(ADMIN, &["locks"]);
    assert_eq!(locks[0]["principal"], "dave");

    let export = stdout(&server.cli(ADMIN, &["audit", "export"]));
    assert!(export.contains("\"kind\":\"principal_locked\""));
    let kill_event = export
        .lines()
        .find(|l| l.contains("\"kind\":\"kill_switch\""))
        .expect("kill report audited");
    assert!(kill_event.contains("laptop stolen") && kill_event.contains("revoked"));
    assert_eq!(server.cli_json(ADMIN, &["audit", "verify"])["ok"], true);

    server.cli_json(ADMIN, &["unlock", "dave"]);
    server.cli_json(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "1m",
            "--reason",
            "back",
        ],
    );
    // Only admins hold the switch.
    assert!(stderr(&server.cli(BOB, &["kill", "alice", "--reason", "x"])).contains("`admin` role"));
}

#[test]
fn kill_switch_is_bounded_when_a_provider_does_not_answer() {
    let forwarder = Forwarder::start();
    let world = World::build(
        StoreKind::Sqlite,
        "",
        r#"
[providers.slowpg]
kind = "postgres"
admin_url = { env = "BREVET_TEST_PG2_URL" }
role_prefix = "{prefix}2"

[resources."slowpg:orders"]
database = "{db}"
"#,
        &[("BREVET_TEST_PG2_URL", &forwarder.url())],
    );
    let server = world.start();
    let mut ids = Vec::new();
    for resource in ["postgres:orders", "slowpg:orders"] {
        let r = server.cli_json(
            DAVE,
            &[
                "request",
                "db.read",
                "--resource",
                resource,
                "--for",
                "10m",
                "--reason",
                "x",
            ],
        );
        server.cli_json(DAVE, &["activate", r["id"].as_str().unwrap()]);
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(world.brevet_roles().len(), 2);

    forwarder.blackhole();
    let out = server.cli(ADMIN, &["--json", "kill", "dave", "--reason", "incident"]);
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
    let stuck_now = server.cli_json(DAVE, &["show", &ids[1]]);
    assert!(
        ["revoking", "revoke_failed"].contains(&stuck_now["state"].as_str().unwrap()),
        "{stuck_now:#}"
    );

    // The provider comes back; the scheduler finishes the job.
    forwarder.forward();
    server.wait_for(DAVE, &ids[1], Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert!(
        world.brevet_roles().is_empty(),
        "{:?}",
        world.brevet_roles()
    );
}
