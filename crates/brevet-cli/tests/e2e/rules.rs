//! Approval rules through the real binary and PostgreSQL: what `brevet request --wait` shows, a
//! revocation racing a failing activation on a real target with crash points, and reference
//! counting as PostgreSQL shows it (passwords that keep working, `VALID UNTIL`). The rules
//! themselves (self-approval, N-of-M, denial, extensions, deadlines, reference counting) are
//! tested in process in brevet-server's `tests/api`.

use std::time::Duration;

use crate::common::*;

#[test]
fn one_denial_ends_a_request_and_wait_exits_non_zero() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let waiting = server.spawn(
        ALICE,
        Cmd::request(
            &Ask::new("db.write", "postgres:orders")
                .lasting("10m")
                .reason("x"),
        )
        .wait(),
    );
    let id = first_pending(&server, BOB);
    server.approve(BOB, &id);
    let d = server.json(CAROL, Cmd::deny(&id).comment("use a replica"));
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
    let world = World::new(StoreKind::Sqlite)
        .server("lease = \"8s\"\nreconcile_every = \"off\"")
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
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("hold-activation");
    let gate_s = gate.display().to_string();
    let server = world.start_with(&[
        ("BREVET_FAILPOINT", "after-intent"),
        ("BREVET_FAILPOINT_WHILE", &gate_s),
    ]);
    let ask = |d: &str| {
        let r = server.request(
            DAVE,
            &Ask::new("db.read", "slowpg:orders").lasting(d).reason("x"),
        );
        r["id"].as_str().unwrap().to_owned()
    };
    let a = ask("3s");
    let a_conn = server.activate(DAVE, &a)["credential"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(world.brevet_roles().len(), 1);

    let b = ask("5m");
    std::fs::write(&gate, "").unwrap();
    let activating = server.spawn(DAVE, Cmd::activate(&b).json_output());
    server.wait_for(DAVE, &b, Duration::from_secs(10), |v| {
        v["state"] == "activating"
    });
    // A's end comes while B is mid-activation.
    std::thread::sleep(Duration::from_secs(4));
    assert_ne!(server.show(DAVE, &a)["state"], "active");

    // B's provider stops answering, and B's activation fails; its undo fails too, so the grant
    // ends and the removal is retried (never ignored) until the provider is back.
    forwarder.blackhole();
    std::fs::remove_file(&gate).unwrap();
    let out = activating.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let b_now = server.show(DAVE, &b);
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

/// Kept on real PostgreSQL beside the in-process version (brevet-server tests/api/rules.rs):
/// that the long grant's password keeps working through the short grant's reference-counted
/// `ensure`, and that `rolvaliduntil` follows the longer grant, is only seen on the target.
#[test]
fn overlapping_grants_keep_access_until_the_last_one_ends() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    // Dave's on-call policy approves automatically.
    let short = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("3s")
            .reason("a"),
    );
    let long = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("40s")
            .reason("b"),
    );
    let (short_id, long_id) = (short["id"].as_str().unwrap(), long["id"].as_str().unwrap());
    assert_eq!(short["state"], "approved");
    let a1 = server.activate(DAVE, short_id);
    let a2 = server.activate(DAVE, long_id);
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
    let revoked = server.revoke(DAVE, long_id);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["evidence"]["observation"]["role_exists"], false);
    assert!(!world.role_exists(&role));
}

#[test]
fn extending_the_shorter_of_two_grants_keeps_the_longer_ones_expiry() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let grant = |d: &str| {
        let r = server.request(
            DAVE,
            &Ask::new("db.read", "postgres:orders")
                .lasting(d)
                .reason("x"),
        );
        let id = r["id"].as_str().unwrap().to_owned();
        let a = server.activate(DAVE, &id);
        (id, a)
    };
    let (short, _) = grant("1m");
    let (_, long) = grant("8m");
    let role = long["credential"]["details"]["user"]
        .as_str()
        .unwrap()
        .to_owned();
    let long_end = chrono_epoch(long["grant"]["expires_at"].as_str().unwrap());
    server.json(DAVE, Cmd::extend(&short, "1m"));
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
