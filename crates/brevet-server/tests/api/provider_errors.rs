//! How the broker treats a provider's failures by class: a throttled call is tried again within
//! the step; an unreachable target is left to the scheduler's backoff; a refusal is permanent and
//! said so at once — and access is still taken away once the cause is gone. Every provider call
//! and its outcome is in the step's audit event.

use std::{sync::Arc, time::Duration};

use brevet_server::testing::{
    Fault, FaultyProvider, InMemoryProvider, Op, TestApp, TestConfig, TestStore,
};
use serde_json::Value;

use crate::world::*;

/// Dave's auto-approved read grant on `mem:orders`, active, with the provider behind a fault
/// injector.
async fn active_grant(
    store: TestStore,
) -> (TestApp, Arc<InMemoryProvider>, Arc<FaultyProvider>, String) {
    let target = Arc::new(InMemoryProvider::with_profiles(&["db.read"]));
    let faulty = Arc::new(FaultyProvider::new(target.clone(), 7));
    let config = TestConfig::new(POLICY)
        .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
        .principal("admin", &[], &["admin"], ADMIN)
        .provider("mem", faulty.clone())
        .resource(ORDERS);
    let app = TestApp::start(config, store).await.unwrap();
    let r = app
        .create_request(DAVE, &ask("db.read", ORDERS, "10m", Some("incident")))
        .await
        .unwrap();
    app.activate(DAVE, &r.id).await.unwrap();
    assert_eq!(present(&target), 1);
    (app, target, faulty, r.id)
}

fn present(target: &InMemoryProvider) -> usize {
    target.target().lock().unwrap().len()
}

/// The data of the last audit event of `kind`.
async fn last_event(app: &TestApp, kind: &str) -> Value {
    let export = app.audit_export(ADMIN).await.unwrap();
    let e = export
        .iter()
        .rev()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} event: {export:#?}"));
    serde_json::from_str(&e.data).unwrap()
}

/// The outcomes of the broker's records of `call` (e.g. `provider.revoke`), in order.
fn outcomes(data: &Value, call: &str) -> Vec<Value> {
    data["provider_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no provider_calls: {data}"))
        .iter()
        .filter(|c| c["call"] == call)
        .map(|c| {
            assert_eq!(c["target"], ORDERS, "{c}");
            assert!(c["duration_ms"].is_u64(), "{c}");
            c["outcome"].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_revocation_is_tried_again_within_the_step() {
    for store in TestStore::available() {
        let (app, target, faulty, id) = active_grant(store).await;
        faulty.set_next(Op::Revoke, Fault::Throttled, 2);
        let v = app.revoke(DAVE, &id, Some("done")).await.unwrap();
        assert_eq!(state(&v), "revoked", "{v:#?}");
        assert_eq!(faulty.faulted(Op::Revoke), 2);
        assert_eq!(present(&target), 0, "the access is gone");
        let data = last_event(&app, "grant_revoked").await;
        assert_eq!(
            outcomes(&data, "provider.revoke"),
            [
                serde_json::json!({"error": "throttled"}),
                serde_json::json!({"error": "throttled"}),
                serde_json::json!("ok")
            ],
            "{data}"
        );
        assert_eq!(outcomes(&data, "provider.verify_revoked"), ["ok"], "{data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_call_is_tried_three_times_at_most_then_left_to_the_scheduler() {
    for store in TestStore::available() {
        let (app, target, faulty, id) = active_grant(store).await;
        faulty.set_next(Op::Revoke, Fault::Throttled, 5);
        let v = app.revoke(DAVE, &id, None).await.unwrap();
        assert_eq!(state(&v), "revoke_failed", "{v:#?}");
        assert_eq!(faulty.faulted(Op::Revoke), 3, "three attempts in the step");
        assert_eq!(present(&target), 1);
        let data = last_event(&app, "revocation_failed").await;
        assert_eq!(data["retryable"], true, "{data}");
        assert_eq!(outcomes(&data, "provider.revoke").len(), 3, "{data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_left_to_the_scheduler_and_not_called_permanent() {
    for store in TestStore::available() {
        let (app, target, faulty, id) = active_grant(store).await;
        faulty.set_next(Op::Revoke, Fault::Unreachable, 1);
        let v = app.revoke(DAVE, &id, None).await.unwrap();
        assert_eq!(state(&v), "revoke_failed", "{v:#?}");
        assert_eq!(faulty.faulted(Op::Revoke), 1, "not retried within the step");
        let error = v.last_error.clone().unwrap();
        assert!(
            error.contains("could not reach") && !error.contains("permanent"),
            "{error}"
        );
        let data = last_event(&app, "revocation_failed").await;
        assert_eq!(data["retryable"], true, "{data}");
        assert_eq!(
            outcomes(&data, "provider.revoke"),
            [serde_json::json!({"error": "unreachable"})]
        );
        // The scheduler's retry takes the access away.
        let done = World::wait_for_on(&app, &id, Duration::from_secs(20)).await;
        assert_eq!(state(&done), "revoked");
        assert_eq!(present(&target), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_revocation_is_shown_permanent_at_once_and_still_retried() {
    // A refusal, and input the provider cannot act on (a principal whose identity was removed
    // from the config while they held a grant): neither gets better by itself.
    for (store, fault, class, says) in TestStore::available().into_iter().flat_map(|s| {
        [
            (s, Fault::Refused, "refused", "refused"),
            (s, Fault::BadInput, "bad_input", "cannot act on"),
        ]
    }) {
        let (app, target, faulty, id) = active_grant(store).await;
        faulty.set(Op::Revoke, fault, 1.0);
        let v = app.revoke(DAVE, &id, None).await.unwrap();
        assert_eq!(state(&v), "revoke_failed", "{v:#?}");
        assert_eq!(faulty.faulted(Op::Revoke), 1, "not retried in the step");
        let error = v.last_error.clone().unwrap();
        assert!(
            error.contains(says) && error.contains("permanent"),
            "the grant says the failure is permanent: {error}"
        );
        let data = last_event(&app, "revocation_failed").await;
        assert_eq!(data["retryable"], false, "{data}");
        assert_eq!(
            outcomes(&data, "provider.revoke"),
            [serde_json::json!({ "error": class })]
        );
        assert_eq!(present(&target), 1, "the access is still there");
        // Once its cause is fixed, the scheduler's retry takes the access away.
        faulty.clear(Op::Revoke);
        let done = World::wait_for_on(&app, &id, Duration::from_secs(20)).await;
        assert_eq!(state(&done), "revoked");
        assert_eq!(present(&target), 0);
    }
}
