//! The kill switch against an activation that is already past every check made before its
//! intent: the intent's own write checks the lock, so a lock committed after those checks still
//! stops it — no access is created, nothing is written, and the answer names the lock.
//!
//! Before the check moved into the intent, this race let a grant outlive the kill switch: the
//! activation read "not locked", the kill switch locked the principal and listed the request
//! as approved, the intent was written, and the kill switch's cancel of the now-activating
//! request failed as a conflict; the activation then went on to create the access.

use brevet_core::RequestState;
use brevet_server::{broker::Failpoint, testing::TestStore};
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
        let events = broker.store().audit_head().await.unwrap().0;
        let held = broker.hold_at(Failpoint::BeforeIntent);
        let (activated, ()) = tokio::join!(w.app.activate(DAVE, &r.id), async {
            held.reached().await;
            // The activation has passed the API's check and its own; the lock lands now.
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
            held.release();
        });
        let refused = match activated {
            Ok(a) => panic!("a locked principal was granted access: {}", a.grant.id),
            Err(e) => e,
        };
        assert_eq!(
            refused.status,
            axum::http::StatusCode::FORBIDDEN,
            "{refused}"
        );
        assert!(
            refused.message.contains("locked by the kill switch")
                && refused.message.contains("compromised laptop"),
            "names the lock: {refused}"
        );
        assert!(w.present().is_empty(), "no access: {:?}", w.present());
        let stored = broker.get(r.id.parse().unwrap()).await.unwrap();
        assert_eq!(stored.state, RequestState::Approved, "nothing written");
        assert_eq!(
            broker.store().audit_head().await.unwrap().0,
            events,
            "nothing audited"
        );
    }
}
