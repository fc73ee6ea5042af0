//! Tamper evidence: editing, deleting or reordering audit rows directly in either store is
//! detected by `brevet audit verify`, and so is an edited export file. Signed checkpoints anchor
//! the chain outside the database: cutting the log short and setting `audit_head` back is
//! detected, as is a shortened export, and a forged checkpoint is refused.

use crate::common::*;
use crate::notify_support::*;

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
    let out = server.run(ADMIN, Cmd::audit_verify());
    (out.status.success(), stdout(&out))
}

fn store_url(world: &World, server: &Server, store: StoreKind) -> String {
    match store {
        StoreKind::Sqlite => format!("sqlite://{}", server.dir.path().join("store.db").display()),
        StoreKind::Postgres => world.store_db.as_ref().unwrap().url.clone(),
    }
}

/// Four audit events: request, approval + approved, request.
fn four_events(server: &Server) {
    let r = server.request(
        ALICE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("10m")
            .reason("a"),
    );
    server.approve(BOB, r["id"].as_str().unwrap());
    server.request(
        ALICE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("10m")
            .reason("b"),
    );
}

fn tamper_is_detected(store: StoreKind) {
    let world = World::new(store);
    let server = world.start();
    let store_url = store_url(&world, &server, store);
    four_events(&server);
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
    let export = stdout(&server.run(ADMIN, Cmd::audit_export().format("jsonl")));
    let file = server.dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let out = server.run(ADMIN, Cmd::audit_verify().file(file.to_str().unwrap()));
    assert!(out.status.success(), "{}", stdout(&out));
    std::fs::write(
        &file,
        export.replacen("\"reason\\\":\\\"a\\\"", "\"reason\\\":\\\"z\\\"", 1),
    )
    .unwrap();
    let out = server.run(ADMIN, Cmd::audit_verify().file(file.to_str().unwrap()));
    assert!(
        !out.status.success() && stdout(&out).contains("edited"),
        "{}",
        stdout(&out)
    );

    // CSV export has a header and one row per event.
    let csv = stdout(&server.run(ADMIN, Cmd::audit_export().format("csv")));
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
    let out = server.run(ALICE, Cmd::audit_verify());
    assert!(stderr(&out).contains("`admin` role"), "{}", stderr(&out));
}

/// Deletes the last event and sets `audit_head` back to the one before: the chain and its head
/// agree, only the signed checkpoint remembers event 4. Fails on 879dbb0 because `audit verify`
/// compared the chain only with `audit_head`, which sits in the same database, and passed.
fn truncation_behind_a_moved_head_is_detected(store: StoreKind) {
    let world = World::new(store);
    let mut server = world.start();
    let store_url = store_url(&world, &server, store);
    four_events(&server);
    let cp = server.json(ADMIN, Cmd::audit_checkpoint());
    assert_eq!(cp["seq"], 4, "{cp}");
    assert!(
        server.log_text().contains("audit checkpoint")
            && server
                .log_text()
                .contains(cp["signature"].as_str().unwrap()),
        "the checkpoint is published to the log output:\n{}",
        server.log_text()
    );

    sql(
        &store_url,
        "CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq = 4; \
         DELETE FROM audit_events WHERE seq = 4; \
         UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_events WHERE seq = 3) WHERE id = 1;",
    );
    let (ok, text) = verify(&server);
    assert!(
        !ok && text.contains("the log ends at event 3") && text.contains("is for event 4"),
        "{text}"
    );
    // Brevet does not bless the shortened log with a new checkpoint either.
    let out = server.run(ADMIN, Cmd::audit_checkpoint());
    assert!(
        !out.status.success() && stderr(&out).contains("removed from the end"),
        "{}",
        stderr(&out)
    );
    // A restart does not forget: the checkpoint is also kept in a file next to the store.
    let env = world.env_refs();
    server.restart(&env);
    let (ok, text) = verify(&server);
    assert!(
        !ok && text.contains("is for event 4"),
        "after restart: {text}"
    );
    wait_until(
        std::time::Duration::from_secs(10),
        "the start-up checkpoint refused and logged",
        || {
            server
                .log_text()
                .contains("AUDIT LOG TAMPERED")
                .then_some(())
        },
    );

    // Putting the row back and the head forward makes the log whole again.
    sql(
        &store_url,
        "INSERT INTO audit_events SELECT * FROM saved; \
         UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_events WHERE seq = 4) WHERE id = 1; \
         DROP TABLE saved;",
    );
    let (ok, text) = verify(&server);
    assert!(
        ok && text.contains("reaches the signed/expected event 4"),
        "{text}"
    );
}

#[test]
fn audit_truncation_with_head_set_back_detected_on_sqlite() {
    truncation_behind_a_moved_head_is_detected(StoreKind::Sqlite);
}

#[test]
fn audit_truncation_with_head_set_back_detected_on_postgres() {
    truncation_behind_a_moved_head_is_detected(StoreKind::Postgres);
}

const HOOK_SECRET: &str = "whsec-test-0123456789abcdef";

fn verify_args(server: &Server, cmd: Cmd) -> (bool, String, String) {
    let out = server.run(ADMIN, cmd);
    (out.status.success(), stdout(&out), stderr(&out))
}

/// An export that lost its last line still verifies as a chain (on 879dbb0 `verify --file`
/// ignored any head, so it passed): held to a signed checkpoint, or to `--head`, it fails; the
/// full export passes. A checkpoint whose signature does not verify is refused, and so is a
/// forged checkpoint file on the server. The checkpoint also reaches a webhook, and that copy
/// verifies the export as received.
#[test]
fn exports_are_held_to_signed_checkpoints_and_forgeries_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hook = WebhookReceiver::start(&rt, HOOK_SECRET, 0);
    let notify = format!(
        r#"
[notify]
poll_every = "100ms"

[[notify.webhooks]]
name = "archive"
url = "{}"
events = ["audit.checkpoint"]
secret = {{ env = "BREVET_TEST_HOOK_SECRET" }}
"#,
        hook.url
    );
    let world = World::new(StoreKind::Sqlite)
        .with(&notify)
        .env(&[("BREVET_TEST_HOOK_SECRET", HOOK_SECRET)]);
    let server = world.start();
    four_events(&server);
    let dir = server.dir.path();
    let cp_text = stdout(&server.run(ADMIN, Cmd::audit_checkpoint().json_output()));
    let cp: serde_json::Value = serde_json::from_str(&cp_text).unwrap();
    assert_eq!(cp["seq"], 4, "{cp_text}");
    let public_key = cp["public_key"].as_str().unwrap().to_owned();
    let head = format!("4:{}", cp["hash"].as_str().unwrap());
    let cp_file = dir.join("cp.json");
    std::fs::write(&cp_file, &cp_text).unwrap();
    let cp_path = cp_file.to_str().unwrap();

    let export = stdout(&server.run(ADMIN, Cmd::audit_export().format("jsonl")));
    let full = dir.join("full.jsonl");
    std::fs::write(&full, &export).unwrap();
    let lines: Vec<&str> = export.lines().collect();
    let short = dir.join("short.jsonl");
    std::fs::write(&short, lines[..3].join("\n") + "\n").unwrap();
    let (full, short) = (full.to_str().unwrap(), short.to_str().unwrap());

    // The chain alone cannot tell a shortened export from a complete one.
    assert!(verify_args(&server, Cmd::audit_verify().file(short)).0);

    let (ok, out, err) = verify_args(
        &server,
        Cmd::audit_verify()
            .file(full)
            .checkpoint(cp_path)
            .public_key(&public_key),
    );
    assert!(
        ok && out.contains("reaches the signed/expected event 4"),
        "{out}{err}"
    );
    let (ok, out, err) = verify_args(
        &server,
        Cmd::audit_verify()
            .file(short)
            .checkpoint(cp_path)
            .public_key(&public_key),
    );
    assert!(
        !ok && out.contains("the log ends at event 3") && out.contains("is for event 4"),
        "{out}{err}"
    );
    let (ok, out, _) = verify_args(&server, Cmd::audit_verify().file(short).head(&head));
    assert!(!ok && out.contains("--head is for event 4"), "{out}");
    assert!(verify_args(&server, Cmd::audit_verify().file(full).head(&head)).0);
    // Without --file, the server's own export is held to the checkpoint.
    let (ok, out, err) = verify_args(
        &server,
        Cmd::audit_verify()
            .checkpoint(cp_path)
            .public_key(&public_key),
    );
    assert!(ok, "{out}{err}");

    // The webhook receiver's copy is a checkpoint as it stands (key asked of the server).
    let got = wait_until(
        std::time::Duration::from_secs(15),
        "audit.checkpoint at the webhook",
        || {
            hook.received()
                .into_iter()
                .find(|r| r.event == "audit.checkpoint")
        },
    );
    assert!(
        got.verified && got.body["seq"] == 4 && got.body["signature"] == cp["signature"],
        "{:?}",
        got.body
    );
    let received = got.body.to_string();
    let (ok, out, err) = verify_args(
        &server,
        Cmd::audit_verify().file(short).checkpoint(&received),
    );
    assert!(!ok && out.contains("is for event 4"), "{out}{err}");

    // Forgeries: a checkpoint moved back to event 3 (to bless the short export), a mangled
    // signature, and the right checkpoint checked against another key.
    let mut back = cp.clone();
    back["seq"] = 3.into();
    back["hash"] = serde_json::from_str::<serde_json::Value>(lines[2]).unwrap()["hash"].clone();
    let mut mangled = cp.clone();
    let sig = cp["signature"].as_str().unwrap();
    mangled["signature"] = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    )
    .into();
    for forged in [back, mangled] {
        let (ok, out, err) = verify_args(
            &server,
            Cmd::audit_verify()
                .file(short)
                .checkpoint(&forged.to_string())
                .public_key(&public_key),
        );
        assert!(!ok && err.contains("invalid signature"), "{out}{err}");
    }
    let other_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let (ok, out, err) = verify_args(
        &server,
        Cmd::audit_verify()
            .file(full)
            .checkpoint(cp_path)
            .public_key(other_key),
    );
    assert!(!ok && err.contains("not by the expected key"), "{out}{err}");

    // On the server, a forged checkpoint file fails verification until the real one is back.
    let on_disk = dir.join("store.db.audit-checkpoint.json");
    let real = std::fs::read_to_string(&on_disk).unwrap();
    let mut fake: serde_json::Value = serde_json::from_str(&real).unwrap();
    fake["seq"] = 99.into();
    std::fs::write(&on_disk, fake.to_string()).unwrap();
    let (ok, text) = verify(&server);
    assert!(
        !ok && text.contains("checkpoint file") && text.contains("invalid signature"),
        "{text}"
    );
    std::fs::write(&on_disk, real).unwrap();
    assert!(verify(&server).0);
}
