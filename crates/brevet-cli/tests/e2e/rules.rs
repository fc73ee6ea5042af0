//! Approval rules through the real binary and PostgreSQL: what `brevet request --wait` shows, and
//! a revocation racing a failing activation on a real target with crash points. The rules
//! themselves (self-approval, N-of-M, denial, extensions, deadlines, reference counting) are
//! tested in process in brevet-server's `tests/api`.

use std::time::Duration;

use crate::common::*;

#[test]
fn one_denial_ends_a_request_and_wait_exits_non_zero() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let waiting = std::process::Command::new(BIN)
        .args([
            "request",
            "db.write",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "x",
            "--wait",
        ])
        .env("BREVET_URL", &server.url)
        .env("BREVET_TOKEN", ALICE)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = first_pending(&server, BOB);
    server.cli_json(BOB, &["approve", &id]);
    let d = server.cli_json(CAROL, &["deny", &id, "--comment", "use a replica"]);
    assert_eq!(d["state"], "denied");
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("waiting for approval (0/2)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("was denied"), "{}", stderr(&out));
}

/// Issue #9 item 7 (review finding 9). On 879dbb0 revocation took no binding lock and counted an
/// `activating` grant as a holder: grant A expiring while grant B (same binding) was still
/// activating kept the role for B, pushing `VALID UNTIL` to B's would-be end; when B's
/// activation then failed, nothing covered the role, and A's password worked until a reconcile
/// pass. Here the reconciler is off and B is held after its intent by a failpoint. B holds the
/// binding from its intent (the intent and the lock are one transaction), so A's revocation,
/// due meanwhile, waits for it and is retried. B's provider then stops answering and B's
/// activation fails (its undo too: it is retried as a revocation). Once the provider is back,
/// both end revoked, A's revocation counted no holder, and no role is left — before any
/// reconcile pass. (`holders` ignoring an activating grant is tested in the store's `steps`.)
#[test]
fn a_grant_expiring_beside_a_failing_activation_leaves_no_access() {
    let forwarder = Forwarder::start();
    let world = World::build(
        StoreKind::Sqlite,
        "lease = \"8s\"\nreconcile_every = \"off\"",
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
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("hold-activation");
    let gate_s = gate.display().to_string();
    let server = world.start_with(&[
        ("BREVET_FAILPOINT", "after-intent"),
        ("BREVET_FAILPOINT_WHILE", &gate_s),
    ]);
    let ask = |d: &str| {
        let r = server.cli_json(
            DAVE,
            &[
                "request",
                "db.read",
                "--resource",
                "slowpg:orders",
                "--for",
                d,
                "--reason",
                "x",
            ],
        );
        r["id"].as_str().unwrap().to_owned()
    };
    let a = ask("3s");
    let a_conn = server.cli_json(DAVE, &["activate", &a])["credential"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(world.brevet_roles().len(), 1);

    let b = ask("5m");
    std::fs::write(&gate, "").unwrap();
    let activating = std::process::Command::new(BIN)
        .args(["--json", "activate", &b])
        .env("BREVET_URL", &server.url)
        .env("BREVET_TOKEN", DAVE)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for(DAVE, &b, Duration::from_secs(10), |v| {
        v["state"] == "activating"
    });
    // A's end comes while B is mid-activation.
    std::thread::sleep(Duration::from_secs(4));
    assert_ne!(server.cli_json(DAVE, &["show", &a])["state"], "active");

    // B's provider stops answering, and B's activation fails; its undo fails too, so the grant
    // ends and the removal is retried (never ignored) until the provider is back.
    forwarder.blackhole();
    std::fs::remove_file(&gate).unwrap();
    let out = activating.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let b_now = server.cli_json(DAVE, &["show", &b]);
    assert_eq!(b_now["state"], "revoke_failed", "{b_now:#}");
    forwarder.forward();
    let revoked = server.wait_for(DAVE, &a, Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(
        revoked["evidence"]["observation"]["role_exists"], false,
        "A's revocation kept the access for an activation that never completed: {revoked:#}"
    );
    server.wait_for(DAVE, &b, Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert!(
        world.brevet_roles().is_empty(),
        "{:?}",
        world.brevet_roles()
    );
    assert!(
        psql(&a_conn, "SELECT 1").is_err(),
        "A's credential still works"
    );
}
