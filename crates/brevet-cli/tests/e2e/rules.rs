//! Approval rules and reference counting, end to end through the real binary and PostgreSQL.

use std::time::Duration;

use crate::common::*;

#[test]
fn self_approval_is_refused_and_changes_nothing() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    // Bob is both a requester and an approver, and policy lets leads approve anything.
    let r = server.cli_json(
        BOB,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "look",
        ],
    );
    let id = r["id"].as_str().unwrap();
    let out = server.cli(BOB, &["approve", id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("self-approval is never allowed"),
        "{}",
        stderr(&out)
    );
    let after = server.cli_json(BOB, &["show", id]);
    assert_eq!(after["state"], "pending");
    assert_eq!(after["approvals"], serde_json::json!([]));
    // Nobody else's approval was recorded either: the audit has only the creation.
    let export = stdout(&server.cli(ADMIN, &["audit", "export"]));
    assert_eq!(export.lines().count(), 1, "{export}");
}

#[test]
fn n_of_m_needs_distinct_eligible_approvers() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let r = server.cli_json(
        ALICE,
        &[
            "request",
            "db.write",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "fix row",
        ],
    );
    let id = r["id"].as_str().unwrap();
    assert_eq!(r["approvals_required"], 2);

    let one = server.cli_json(BOB, &["approve", id]);
    assert_eq!(one["state"], "pending");
    assert_eq!(one["approvals"], serde_json::json!(["bob"]));

    let again = server.cli(BOB, &["approve", id]);
    assert!(
        stderr(&again).contains("has already recorded a decision"),
        "{}",
        stderr(&again)
    );

    // Dave has no approver role; the requester cannot count.
    let dave = server.cli(DAVE, &["approve", id]);
    assert!(
        stderr(&dave).contains("`approver` role"),
        "{}",
        stderr(&dave)
    );

    // Activation before enough approvals is refused with a hint.
    let early = server.cli(ALICE, &["activate", id]);
    assert!(
        stderr(&early).contains("needs approval"),
        "{}",
        stderr(&early)
    );

    let two = server.cli_json(CAROL, &["approve", id]);
    assert_eq!(two["state"], "approved");
    assert_eq!(two["approvals"], serde_json::json!(["bob", "carol"]));

    let a = server.cli_json(ALICE, &["activate", id]);
    let conn = a["credential"]["secret"].as_str().unwrap();
    psql(conn, "INSERT INTO orders VALUES (3, 'written')").expect("db.write may insert");
}

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
    assert!(!server.cli(ALICE, &["activate", &id]).status.success());
}

#[test]
fn overlapping_grants_keep_access_until_the_last_one_ends() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    // Dave's on-call policy approves automatically.
    let short = server.cli_json(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "3s",
            "--reason",
            "a",
        ],
    );
    let long = server.cli_json(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "40s",
            "--reason",
            "b",
        ],
    );
    let (short_id, long_id) = (short["id"].as_str().unwrap(), long["id"].as_str().unwrap());
    assert_eq!(short["state"], "approved");
    let a1 = server.cli_json(DAVE, &["activate", short_id]);
    let a2 = server.cli_json(DAVE, &["activate", long_id]);
    let role = a2["credential"]["details"]["user"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        a1["credential"]["details"]["user"],
        role.as_str(),
        "one binding, one role"
    );
    let conn = a2["credential"]["secret"].as_str().unwrap().to_owned();

    // The short grant expires; the long one still covers the binding, so access stays.
    let ended = server.wait_for(DAVE, short_id, Duration::from_secs(30), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(ended["evidence"]["observation"]["access_removed"], false);
    assert_eq!(
        ended["evidence"]["observation"]["binding_still_held_by"],
        serde_json::json!([long_id])
    );
    assert!(world.role_exists(&role));
    assert_eq!(
        psql(&conn, "SELECT count(*) FROM orders").unwrap(),
        "2",
        "access must survive the shorter grant"
    );
    // The target's own expiry follows the grant that remains.
    let until = psql(&pg_admin_url(), &format!("SELECT rolvaliduntil > now() + interval '20 seconds' FROM pg_roles WHERE rolname = '{role}'")).unwrap();
    assert_eq!(until, "t");

    // When the last grant ends, the access goes.
    let revoked = server.cli_json(DAVE, &["revoke", long_id]);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["evidence"]["observation"]["role_exists"], false);
    assert!(!world.role_exists(&role));
}

#[test]
fn extensions_pass_policy_and_are_bounded() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let r = server.cli_json(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "5m",
            "--reason",
            "a",
        ],
    );
    let id = r["id"].as_str().unwrap();
    let a = server.cli_json(DAVE, &["activate", id]);
    let before = a["grant"]["expires_at"].as_str().unwrap().to_owned();
    // Over the on-call rule's 10m maximum: refused by policy.
    let too_long = server.cli(DAVE, &["extend", id, "--for", "2h"]);
    assert!(
        stderr(&too_long).contains("maximum"),
        "{}",
        stderr(&too_long)
    );
    let ext = server.cli_json(DAVE, &["extend", id, "--for", "5m"]);
    assert_eq!(ext["kind"], "extension");
    assert_eq!(ext["state"], "approved");
    let g = server.cli_json(DAVE, &["show", id]);
    assert_ne!(g["expires_at"].as_str().unwrap(), before);
    assert_eq!(g["extensions_applied"], 1);
    server.cli_json(DAVE, &["extend", id, "--for", "1m"]);
    let third = server.cli(DAVE, &["extend", id, "--for", "1m"]);
    assert!(
        stderr(&third).contains("all 2 extensions"),
        "{}",
        stderr(&third)
    );
}

#[test]
fn an_extension_that_needs_approval_is_applied_when_approved() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let r = server.cli_json(
        ALICE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "x",
        ],
    );
    let id = r["id"].as_str().unwrap();
    server.cli_json(BOB, &["approve", id]);
    let a = server.cli_json(ALICE, &["activate", id]);
    let before = a["grant"]["expires_at"].as_str().unwrap().to_owned();
    let ext = server.cli_json(ALICE, &["extend", id, "--for", "20m"]);
    assert_eq!(
        ext["state"], "pending",
        "the dba-read rule needs one approval, for extensions too"
    );
    assert_eq!(
        server.cli_json(ALICE, &["show", id])["expires_at"],
        before.as_str()
    );
    let approved = server.cli_json(CAROL, &["approve", ext["id"].as_str().unwrap()]);
    assert_eq!(approved["state"], "approved");
    let g = server.cli_json(ALICE, &["show", id]);
    assert_ne!(g["expires_at"], before.as_str());
    assert_eq!(g["extensions_applied"], 1);
    let export = stdout(&server.cli(ADMIN, &["audit", "export"]));
    assert!(export.contains("\"kind\":\"grant_extended\""));
}

/// Issue #9 item 11 (review finding 15): on 879dbb0 `decide` never looked at `approve_by`, so
/// while the scheduler was behind or stuck (held here by a failpoint) a request past its
/// deadline could still be approved and then activated.
#[test]
fn a_request_past_its_approve_by_deadline_cannot_be_approved() {
    let world = World::with_server_settings(StoreKind::Sqlite, "approve_within = \"2s\"");
    let server = world.start_with(&[("BREVET_FAILPOINT", "scheduler-tick")]);
    let r = server.cli_json(
        ALICE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "5m",
            "--reason",
            "x",
        ],
    );
    assert_eq!(r["state"], "pending");
    let id = r["id"].as_str().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = server.cli(BOB, &["approve", id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("approve-by deadline"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.cli_json(ALICE, &["show", id])["state"],
        "pending",
        "nothing changed"
    );
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

/// Issue #9 item 11 (review finding 12). On 879dbb0 an extension set the target's expiry to the
/// extended grant's own end, ignoring the other grants on the binding: extending the shorter of
/// two overlapping grants cut the longer one's `VALID UNTIL` short.
#[test]
fn extending_the_shorter_of_two_grants_keeps_the_longer_ones_expiry() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let grant = |d: &str| {
        let r = server.cli_json(
            DAVE,
            &[
                "request",
                "db.read",
                "--resource",
                "postgres:orders",
                "--for",
                d,
                "--reason",
                "x",
            ],
        );
        let id = r["id"].as_str().unwrap().to_owned();
        let a = server.cli_json(DAVE, &["activate", &id]);
        (id, a)
    };
    let (short, _) = grant("1m");
    let (_, long) = grant("8m");
    let role = long["credential"]["details"]["user"]
        .as_str()
        .unwrap()
        .to_owned();
    let long_end = chrono_epoch(long["grant"]["expires_at"].as_str().unwrap());
    server.cli_json(DAVE, &["extend", &short, "--for", "1m"]);
    let until: i64 = psql(
        &pg_admin_url(),
        &format!("SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{role}'"),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(
        until >= long_end - 1,
        "VALID UNTIL {until} fell before the longer grant's end {long_end}"
    );
}
