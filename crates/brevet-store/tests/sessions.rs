//! Sessions and sign-ins on both real backends: expired sessions are not returned, sign-out and
//! the kill switch end sessions, and a sign-in can be redeemed only once.

use std::collections::BTreeSet;

use brevet_audit::{AuditDraft, EventKind};
use brevet_store::{LoginFlow, SessionRecord, Store};
use brevet_testkit::TestDb;
use chrono::{Duration, SubsecRound, Utc};

fn session(id: &str, principal: &str, ttl: Duration) -> SessionRecord {
    let now = Utc::now();
    SessionRecord {
        id_hash: id.into(),
        principal: principal.into(),
        groups: BTreeSet::from(["engineering".to_owned()]),
        roles: BTreeSet::from(["requester".to_owned()]),
        csrf: format!("csrf-{id}"),
        kind: "browser".into(),
        created_at: now,
        expires_at: now + ttl,
    }
}

fn started(p: &str) -> Vec<AuditDraft> {
    vec![AuditDraft::new(
        EventKind::SessionStarted,
        p,
        None,
        serde_json::json!({"method": "test"}),
    )]
}

async fn sessions_live_and_end(url: &str) {
    let store = Store::connect(url).await.unwrap();
    // The store keeps timestamps to the millisecond; compare like with like.
    let now = Utc::now().trunc_subsecs(3);
    store
        .create_session(
            &session("a1", "alice", Duration::hours(1)),
            started("alice"),
        )
        .await
        .unwrap();
    store
        .create_session(
            &session("a2", "alice", Duration::hours(1)),
            started("alice"),
        )
        .await
        .unwrap();
    store
        .create_session(&session("b1", "bob", Duration::hours(1)), started("bob"))
        .await
        .unwrap();
    store
        .create_session(
            &session("old", "bob", Duration::seconds(-1)),
            started("bob"),
        )
        .await
        .unwrap();

    let a1 = store.session("a1", now).await.unwrap().unwrap();
    assert_eq!(a1.principal, "alice");
    assert_eq!(a1.groups, BTreeSet::from(["engineering".to_owned()]));
    assert_eq!(a1.csrf, "csrf-a1");
    assert!(
        store.session("old", now).await.unwrap().is_none(),
        "expired sessions are not live"
    );
    assert!(store.session("nope", now).await.unwrap().is_none());

    // Sign-out ends one session, once.
    assert!(store.end_session("a2", vec![]).await.unwrap());
    assert!(!store.end_session("a2", vec![]).await.unwrap());
    assert!(store.session("a2", now).await.unwrap().is_none());

    // The kill switch ends all of a principal's sessions; `*` spares the listed admins.
    assert_eq!(store.end_sessions_of("alice", &[]).await.unwrap(), 1);
    assert!(store.session("a1", now).await.unwrap().is_none());
    assert!(store.session("b1", now).await.unwrap().is_some());
    assert_eq!(
        store
            .end_sessions_of("*", &["bob".to_owned()])
            .await
            .unwrap(),
        0
    );
    assert!(store.session("b1", now).await.unwrap().is_some());
    // An admin by SSO group (the role is on the session, not in any config) is spared by `*`.
    let mut sso_admin = session("c1", "carol", Duration::hours(1));
    sso_admin.roles = BTreeSet::from(["requester".to_owned(), "admin".to_owned()]);
    store
        .create_session(&sso_admin, started("carol"))
        .await
        .unwrap();
    assert_eq!(
        store.end_sessions_of("*", &[]).await.unwrap(),
        1,
        "b1 (the expired one is left to the purge)"
    );
    assert!(store.session("c1", now).await.unwrap().is_some());
    assert_eq!(store.end_sessions_of("carol", &[]).await.unwrap(), 1);
    assert!(store.session("b1", now).await.unwrap().is_none());

    // A sign-in is redeemed once, and an expired one is gone.
    let flow = LoginFlow {
        id_hash: "state1".into(),
        kind: "browser".into(),
        secret: "verifier".into(),
        nonce: "n".into(),
        return_to: "/".into(),
        expires_at: now + Duration::minutes(10),
    };
    store.create_login_flow(&flow).await.unwrap();
    assert_eq!(store.login_flow("state1", now).await.unwrap(), Some(flow));
    assert!(store.take_login_flow("state1").await.unwrap());
    assert!(!store.take_login_flow("state1").await.unwrap());
    store
        .create_login_flow(&LoginFlow {
            id_hash: "stale".into(),
            kind: "device".into(),
            secret: "dc".into(),
            nonce: String::new(),
            return_to: String::new(),
            expires_at: now - Duration::seconds(1),
        })
        .await
        .unwrap();
    assert!(store.login_flow("stale", now).await.unwrap().is_none());
    // The expired "old" session and the stale sign-in.
    assert_eq!(store.purge_expired_sessions(now).await.unwrap(), 2);
    assert_eq!(store.purge_expired_sessions(now).await.unwrap(), 0);
}

#[tokio::test]
async fn postgres_sessions() {
    let db = TestDb::create("brevet_store_sessions");
    sessions_live_and_end(&db.url).await;
}

#[tokio::test]
async fn sqlite_sessions() {
    let dir = tempfile::tempdir().unwrap();
    sessions_live_and_end(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}
