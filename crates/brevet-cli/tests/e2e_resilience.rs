//! Revocation that fails is retried and stays visible until it succeeds; several replicas on one
//! PostgreSQL store share the work without doing any of it twice.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn failed_revocation_is_retried_visible_and_never_forgotten() {
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
            "2s",
            "--reason",
            "x",
        ],
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let a = server.cli_json(DAVE, &["activate", &id]);
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
    let export = stdout(&server.cli(ADMIN, &["audit", "export"]));
    assert!(export.contains("\"kind\":\"revocation_failed\""));
    assert!(http_get(&format!("{}/metrics", server.url)).contains("brevet_revocations_overdue 0"));
}

#[test]
fn two_replicas_on_one_postgres_store_share_work_once() {
    let world = World::new(StoreKind::Postgres);
    let a = world.start();
    let b = world.start();
    let mut ids = Vec::new();
    for i in 0..6 {
        let (via, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = via.cli_json(
            DAVE,
            &[
                "request",
                "db.read",
                "--resource",
                "postgres:orders",
                "--for",
                "2s",
                "--reason",
                "x",
            ],
        );
        let id = r["id"].as_str().unwrap().to_owned();
        // Created on one replica, activated on the other: they share the store.
        other.cli_json(DAVE, &["activate", &id]);
        ids.push(id);
    }
    for id in &ids {
        a.wait_for(DAVE, id, Duration::from_secs(60), |v| {
            v["state"] == "revoked"
        });
    }
    assert!(
        world.brevet_roles().is_empty(),
        "{:?}",
        world.brevet_roles()
    );
    let export = stdout(&a.cli(ADMIN, &["audit", "export"]));
    for id in &ids {
        let count = |kind: &str| {
            export
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|e| e["request_id"] == id.as_str() && e["kind"] == kind)
                .count()
        };
        assert_eq!(
            count("revocation_started"),
            1,
            "{id} revocation started once"
        );
        assert_eq!(count("grant_revoked"), 1, "{id} revoked once");
    }
    assert_eq!(b.cli_json(ADMIN, &["audit", "verify"])["ok"], true);
}
