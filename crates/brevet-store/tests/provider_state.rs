//! Provider-scoped state on both real backends: compare-and-set, expiry, prefix listing, scope
//! per provider instance, purge — and the one-time import of the old SSH certificate table.

use brevet_store::Store;
use brevet_testkit::TestDb;
use chrono::{Duration, Utc};

async fn state(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let now = Utc::now();
    assert!(store
        .state_put("ssh", "cert/1", "{\"a\":1}", None, None, now)
        .await
        .unwrap());
    // Only if absent: a second create loses.
    assert!(!store
        .state_put("ssh", "cert/1", "{\"a\":2}", None, None, now)
        .await
        .unwrap());
    let e = store
        .state_get("ssh", "cert/1", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, "{\"a\":1}");
    // Compare-and-set: the current version wins once, a stale one never.
    assert!(store
        .state_put("ssh", "cert/1", "{\"a\":3}", None, Some(e.version), now)
        .await
        .unwrap());
    assert!(!store
        .state_put("ssh", "cert/1", "{\"a\":4}", None, Some(e.version), now)
        .await
        .unwrap());
    assert_eq!(
        store
            .state_get("ssh", "cert/1", now)
            .await
            .unwrap()
            .unwrap()
            .value,
        "{\"a\":3}"
    );
    // Scoped per instance.
    assert!(store
        .state_get("ssh2", "cert/1", now)
        .await
        .unwrap()
        .is_none());
    // Expiry: gone for readers at once, replaceable as absent, purged.
    let past = now - Duration::seconds(1);
    assert!(store
        .state_put("ssh", "cert/2", "{}", Some(past), None, now)
        .await
        .unwrap());
    assert!(store
        .state_get("ssh", "cert/2", now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .state_put("ssh", "other/x", "{}", None, None, now)
        .await
        .unwrap());
    let keys: Vec<String> = store
        .state_list("ssh", "cert/", now)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec!["cert/1"]);
    assert_eq!(store.purge_expired_state(now).await.unwrap(), 1);
    assert!(store
        .state_put("ssh", "cert/2", "{\"new\":true}", None, None, now)
        .await
        .unwrap());
    store.state_delete("ssh", "cert/2").await.unwrap();
    assert!(store
        .state_get("ssh", "cert/2", now)
        .await
        .unwrap()
        .is_none());
}

/// Rows of the old `ssh_certificates` table move into the SSH provider's state when the store
/// opens, in the shape its ledger reads, and the old table is left empty.
async fn legacy_certificates_move(url: &str) {
    Store::connect(url).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let until = (Utc::now() + Duration::hours(1)).timestamp_millis();
    sqlx::query(
        "INSERT INTO ssh_certificates (provider, serial, binding, grant_id, key_id, valid_before, revoked_at) \
         VALUES ('ssh', 42, 'alice|ssh:box|ssh.login', 'g1', 'k1', $1, NULL), \
                ('ssh', 43, 'alice|ssh:box|ssh.login', 'g1', 'k2', $1, $2)",
    )
    .bind(until)
    .bind(until - 1000)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let store = Store::connect(url).await.unwrap();
    let entries = store.state_list("ssh", "cert/", Utc::now()).await.unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].key, format!("cert/{:020}", 42));
    let v: serde_json::Value = serde_json::from_str(&entries[1].value).unwrap();
    assert_eq!(v["serial"], 43);
    assert_eq!(v["binding_key"], "alice|ssh:box|ssh.login");
    assert!(v["revoked_at"].is_string(), "{v}");
    assert!(v["valid_before"].is_string(), "{v}");
    // Opening again moves nothing twice.
    let again = Store::connect(url).await.unwrap();
    assert_eq!(
        again
            .state_list("ssh", "cert/", Utc::now())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn sqlite_provider_state() {
    let dir = tempfile::tempdir().unwrap();
    state(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
    legacy_certificates_move(&format!("sqlite://{}", dir.path().join("l.db").display())).await;
}

#[tokio::test]
async fn postgres_provider_state() {
    let db = TestDb::create("brevet_store_state");
    state(&db.url).await;
    let db = TestDb::create("brevet_store_legacy");
    legacy_certificates_move(&db.url).await;
}
