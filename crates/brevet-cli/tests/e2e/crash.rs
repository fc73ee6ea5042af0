//! Crash safety: `kill -9` of the server at the worst moments, then a restart, must leave no
//! access that no grant covers; and the reconciler removes orphans it finds on the target.

use std::time::Duration;

use crate::common::*;

fn crash_during_activation(store: StoreKind, failpoint: &str) {
    let world = World::new(store);
    let mut server = world.start_with(&[("BREVET_FAILPOINT", failpoint)]);
    let r = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("5s")
            .reason("incident"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["state"], "approved");

    let mut activating = server.spawn(DAVE, Cmd::activate(&id));
    // The intent is durable before any provider call.
    server.wait_for(DAVE, &id, Duration::from_secs(20), |v| {
        v["state"] == "activating"
    });
    if failpoint == "after-provider-grant" {
        for _ in 0..80 {
            if !world.brevet_roles().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            world.brevet_roles().len(),
            1,
            "the provider created the role before the crash"
        );
    } else {
        assert!(world.brevet_roles().is_empty(), "no provider call yet");
    }

    server.kill9();
    let _ = activating.kill();
    let _ = activating.wait();

    // Restart without the failpoint: the interrupted activation is resumed once the dead
    // process's lease runs out, then the (already passed) expiry revokes it.
    server.restart(&world.env_refs());
    let g = server.wait_for(DAVE, &id, Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(g["evidence"]["observation"]["role_exists"], false);
    assert!(
        world.brevet_roles().is_empty(),
        "orphan roles left: {:?}",
        world.brevet_roles()
    );

    let export = server.audit_export(ADMIN);
    assert!(export.contains("\"kind\":\"activation_started\""));
    let resumed = export
        .lines()
        .any(|l| l.contains("\"kind\":\"grant_activated\"") && l.contains("\"actor\":\"system\""));
    assert!(
        resumed,
        "the restarted server resumed the activation:\n{export}"
    );
    assert_eq!(server.audit_verify(ADMIN)["ok"], true);
}

#[test]
fn kill_9_after_provider_grant_leaves_no_orphan_sqlite() {
    crash_during_activation(StoreKind::Sqlite, "after-provider-grant");
}

#[test]
fn kill_9_after_provider_grant_leaves_no_orphan_postgres() {
    crash_during_activation(StoreKind::Postgres, "after-provider-grant");
}

#[test]
fn kill_9_after_intent_leaves_no_orphan() {
    crash_during_activation(StoreKind::Sqlite, "after-intent");
}

#[test]
fn reconciler_removes_orphans_and_keeps_covered_access() {
    // Only the pass this test asks for: a background one could take the orphan first.
    let world = World::new(StoreKind::Sqlite).server("reconcile_every = \"off\"");
    let server = world.start();
    // A covered role: an active grant.
    let r = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("5m")
            .reason("x"),
    );
    let a = server.activate(DAVE, r["id"].as_str().unwrap());
    let covered = a["credential"]["details"]["user"]
        .as_str()
        .unwrap()
        .to_owned();
    // An orphan: a role with Brevet's prefix and binding marker that no grant covers (as after a
    // restore of an old store backup, or a manual re-creation).
    let orphan = format!("{}0123456789abcdef0123", world.prefix);
    psql(
        &pg_admin_url(),
        &format!("CREATE ROLE {orphan} LOGIN; COMMENT ON ROLE {orphan} IS 'brevet binding alice|postgres:orders|db.owner'"),
    )
    .unwrap();
    let report = server.reconcile(ADMIN);
    assert_eq!(
        report["orphans_removed"],
        serde_json::json!([format!("postgres:{orphan}")]),
        "{report:#}"
    );
    assert!(!world.role_exists(&orphan));
    assert!(
        world.role_exists(&covered),
        "access an active grant covers must stay"
    );
    let export = server.audit_export(ADMIN);
    let drift = export
        .lines()
        .find(|l| l.contains("drift_detected"))
        .expect("drift is audited");
    assert!(
        drift.contains(&orphan) && drift.contains("removed"),
        "{drift}"
    );
}
