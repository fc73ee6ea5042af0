//! Tamper evidence: editing, deleting or reordering audit rows directly in either store is
//! detected by `brevet audit verify`, and so is an edited export file.

mod common;

use common::*;

fn sql(store_url: &str, statements: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(store_url).await.unwrap();
        sqlx::raw_sql(statements).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

fn verify(server: &Server) -> (bool, String) {
    let out = server.cli(ADMIN, &["audit", "verify"]);
    (out.status.success(), stdout(&out))
}

fn tamper_is_detected(store: StoreKind) {
    let world = World::new(store);
    let server = world.start();
    let store_url = match store {
        StoreKind::Sqlite => format!("sqlite://{}", server.dir.path().join("store.db").display()),
        StoreKind::Postgres => world.store_db.as_ref().unwrap().url.clone(),
    };
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
            "a",
        ],
    );
    server.cli_json(BOB, &["approve", r["id"].as_str().unwrap()]);
    server.cli_json(
        ALICE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "b",
        ],
    );
    assert!(
        verify(&server).1.contains("intact: 4 events"),
        "{}",
        verify(&server).1
    );

    // Edit.
    sql(
        &store_url,
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
    );
    let (ok, text) = verify(&server);
    assert!(
        !ok && text.contains("event 2: content does not match its hash"),
        "{text}"
    );
    sql(
        &store_url,
        "UPDATE audit_events SET actor = 'bob' WHERE seq = 2",
    );
    assert!(verify(&server).0, "restoring the row restores the chain");

    // Reorder: events 2 and 3 swap places.
    sql(&store_url, "UPDATE audit_events SET seq = -2 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = -2;");
    let (ok, text) = verify(&server);
    assert!(!ok && text.contains("event 2"), "{text}");
    sql(&store_url, "UPDATE audit_events SET seq = -2 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = -2;");
    assert!(verify(&server).0);

    // Delete from the middle, then from the end.
    sql(&store_url, "CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq IN (3, 4); DELETE FROM audit_events WHERE seq = 3;");
    let (ok, text) = verify(&server);
    assert!(!ok && text.contains("events 3..3 are missing"), "{text}");
    sql(&store_url, "INSERT INTO audit_events SELECT * FROM saved WHERE seq = 3; DELETE FROM audit_events WHERE seq = 4;");
    let (ok, text) = verify(&server);
    assert!(!ok && text.contains("recorded head is event 4"), "{text}");
    sql(
        &store_url,
        "INSERT INTO audit_events SELECT * FROM saved WHERE seq = 4; DROP TABLE saved;",
    );
    assert!(verify(&server).0);

    // An exported file verifies offline; an edited one does not.
    let export = stdout(&server.cli(ADMIN, &["audit", "export", "--format", "jsonl"]));
    let file = server.dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let out = server.cli(
        ADMIN,
        &["audit", "verify", "--file", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    std::fs::write(
        &file,
        export.replacen("\"reason\\\":\\\"a\\\"", "\"reason\\\":\\\"z\\\"", 1),
    )
    .unwrap();
    let out = server.cli(
        ADMIN,
        &["audit", "verify", "--file", file.to_str().unwrap()],
    );
    assert!(
        !out.status.success() && stdout(&out).contains("edited"),
        "{}",
        stdout(&out)
    );

    // CSV export has a header and one row per event.
    let csv = stdout(&server.cli(ADMIN, &["audit", "export", "--format", "csv"]));
    assert!(csv.starts_with("seq,at,kind,actor,request_id,data,prev_hash,hash\n"));
}

#[test]
fn audit_tamper_detected_on_sqlite() {
    tamper_is_detected(StoreKind::Sqlite);
}

#[test]
fn audit_tamper_detected_on_postgres() {
    tamper_is_detected(StoreKind::Postgres);
}

#[test]
fn only_admins_read_the_audit_log() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let out = server.cli(ALICE, &["audit", "verify"]);
    assert!(stderr(&out).contains("`admin` role"), "{}", stderr(&out));
}
