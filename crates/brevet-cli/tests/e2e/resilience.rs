//! Revocation that fails is retried and stays visible until it succeeds; background work that
//! stalls or dies shows. (Several replicas on one store: `replicas.rs`.)

use std::time::Duration;

use crate::common::*;

#[test]
fn failed_revocation_is_retried_visible_and_never_forgotten() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let r = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("2s")
            .reason("x"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let a = server.activate(DAVE, &id);
    let conn = a["credential"]["secret"].as_str().unwrap().to_owned();
    let role = a["credential"]["details"]["user"]
        .as_str()
        .unwrap()
        .to_owned();

    // Make the target database refuse Brevet's connections, so revocation cannot finish there.
    let db = &world.target.name;
    psql(
        &pg_admin_url(),
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false; SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}';"),
    )
    .unwrap();
    let failed = server.wait_for(DAVE, &id, Duration::from_secs(30), |v| {
        v["state"] == "revoke_failed"
    });
    assert!(failed["attempts"].as_u64().unwrap() >= 1);
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("provider `postgres` failed"),
        "{failed:#}"
    );
    assert!(failed["next_attempt_at"].is_string());
    let metrics = http_get(&format!("{}/metrics", server.url));
    assert!(
        metrics.contains("brevet_revocations_overdue 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brevet_requests{state=\"revoke_failed\"} 1"),
        "{metrics}"
    );
    // Even half-done, the revocation already cut logins off (NOLOGIN comes first).
    let login = psql(&conn.replace(&format!("/{db}"), "/postgres"), "SELECT 1").unwrap_err();
    assert!(login.contains("not permitted to log in"), "{login}");
    assert!(world.role_exists(&role));

    // The target comes back: the retry finishes the job, with evidence.
    psql(
        &pg_admin_url(),
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    )
    .unwrap();
    let done = server.wait_for(DAVE, &id, Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(done["evidence"]["observation"]["role_exists"], false);
    assert!(!world.role_exists(&role));
    let export = server.audit_export(ADMIN);
    assert!(export.contains("\"kind\":\"revocation_failed\""));
    assert!(http_get(&format!("{}/metrics", server.url)).contains("brevet_revocations_overdue 0"));
}

/// Issue #9 item 9 (review finding 8). On 879dbb0 `/v1/health` only pinged the store, so a
/// scheduler stuck in a tick (or dead) left it green while nothing expired. Health now fails
/// once the scheduler has made no progress for a tick plus two leases, and `/metrics` says so.
#[test]
fn a_stuck_scheduler_makes_health_fail() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start_with(&[("BREVET_FAILPOINT", "scheduler-tick")]);
    let health = format!("{}/v1/health", server.url);
    let status = || reqwest::blocking::get(&health).unwrap().status().as_u16();
    assert_eq!(status(), 200, "healthy at first");
    let started = std::time::Instant::now();
    while status() == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health stayed green with a stuck scheduler"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // tick 200ms + 2 × lease 6s: not before about 12 s.
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let body = reqwest::blocking::get(&health).unwrap();
    assert_eq!(body.status().as_u16(), 503);
    let text = body.text().unwrap();
    assert!(text.contains("scheduler has made no progress"), "{text}");
    let metrics = http_get(&format!("{}/metrics", server.url));
    assert!(metrics.contains("brevet_scheduler_healthy 0"), "{metrics}");
    assert!(
        metrics.contains("brevet_scheduler_last_progress_seconds "),
        "{metrics}"
    );
}

/// Issue #9 item 9. On 879dbb0 a panic in the background task (as `reconcile_every = "0s"`
/// caused) went unnoticed: the API kept serving and nothing expired. A background task that dies
/// now stops the server with an error naming it, for the service manager to restart.
#[test]
fn a_dead_scheduler_stops_the_server() {
    let world = World::new(StoreKind::Sqlite);
    let mut server = world.start_with(&[("BREVET_FAILPOINT", "scheduler-panic")]);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server kept running without its scheduler");
    assert!(!status.success(), "{status:?}");
    let log = server.log_text();
    assert!(log.contains("background task `scheduler` died"), "{log}");
}

/// `reconcile_every = "off"` turns the reconciler off explicitly; expiry still works.
#[test]
fn the_reconciler_can_be_turned_off_and_grants_still_expire() {
    let world = World::new(StoreKind::Sqlite).server("reconcile_every = \"off\"");
    let server = world.start();
    let r = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("2s")
            .reason("x"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    server.activate(DAVE, &id);
    server.wait_for(DAVE, &id, Duration::from_secs(20), |v| {
        v["state"] == "revoked"
    });
    assert!(world.brevet_roles().is_empty());
    assert!(server.log_text().contains("the reconciler is off"));
}
