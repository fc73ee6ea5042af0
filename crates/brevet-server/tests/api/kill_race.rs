//! The kill switch against an activation that is already past every check made before its
//! intent (the API's, on every call): the intent's own write checks the lock, so a lock
//! committed after those checks still stops it — no access is created, nothing is written, and
//! the answer names the lock.

use brevet_core::{Principal, PrincipalId, RequestState, Role};
use brevet_server::testing::TestStore;
use brevet_store::PrincipalLock;

use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_after_the_checks_still_stops_the_activation() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let r = w
            .app
            .create_request(DAVE, &ask("db.read", ORDERS, "5m", Some("race")))
            .await
            .unwrap();
        assert_eq!(state(&r), "approved");
        let broker = w.app.broker();
        let id = r.id.parse().unwrap();
        // The lock lands after the API let dave in, before the intent: only the intent's write
        // can see it (the kill switch's sweep would cancel the request, which is not the race).
        broker
            .store()
            .lock_principal(
                &PrincipalLock {
                    principal: "dave".into(),
                    reason: "compromised laptop".into(),
                    locked_by: "admin".into(),
                    locked_at: chrono::Utc::now(),
                },
                vec![],
            )
            .await
            .unwrap();
        let events = broker.store().audit_head().await.unwrap().0;
        let dave = Principal {
            id: PrincipalId::parse("dave").unwrap(),
            groups: ["dba".to_owned(), "oncall".to_owned()].into(),
            roles: [Role::Requester].into(),
        };
        let refused = broker.activate(&dave, id, None).await;
        match refused {
            Err(brevet_server::BrokerError::Forbidden(why)) => {
                assert!(why.contains("locked by the kill switch"), "{why}");
                assert!(why.contains("compromised laptop"), "names the lock: {why}");
            }
            Err(other) => panic!("refused for the wrong reason: {other}"),
            Ok(_) => panic!("a locked principal was granted access"),
        }
        assert!(w.present().is_empty(), "no access: {:?}", w.present());
        let stored = broker.get(id).await.unwrap();
        assert_eq!(stored.state, RequestState::Approved, "nothing written");
        assert_eq!(
            broker.store().audit_head().await.unwrap().0,
            events,
            "nothing audited"
        );
    }
}
