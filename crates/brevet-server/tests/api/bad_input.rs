//! Bad input gets a clear error naming what is wrong and how to fix it, and changes nothing
//! (moved from the binary e2e `bad_input`, which keeps config refusal at start and the CLI's
//! exit codes).

use std::os::unix::fs::PermissionsExt;

use axum::http::{Method, StatusCode};
use brevet_server::testing::TestStore;

use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let cases = [
            (ask("db.raed", ORDERS, "10m", Some("x")), "unknown profile `db.raed` for `mem:orders`; it offers: db.owner, db.read, db.write"),
            (ask("db.read", "mem:nope", "10m", Some("x")), "unknown resource `mem:nope`; configured resources: mem:orders"),
            (ask("db.read", "orders", "10m", Some("x")), "expected `<provider>:<name>`"),
            (ask("db.read", ORDERS, "forever", Some("x")), "write it like `30m`"),
            (ask("db.read", ORDERS, "10m", None), "requires a reason"),
        ];
        for (body, expected) in cases {
            let refused = w.app.create_request(ALICE, &body).await.unwrap_err();
            assert!(refused.status.is_client_error(), "{body:?}: {refused}");
            assert!(
                refused.message.contains(expected),
                "expected `{expected}` in: {refused}"
            );
        }
        assert_eq!(w.app.requests(ALICE, false, false).await.unwrap().len(), 0);

        // Over the policy's maximum: refused by policy, recorded as a refusal, nothing else.
        let before = w.audit_len().await;
        let refused = w
            .app
            .create_request(ALICE, &ask("db.read", ORDERS, "5h", Some("x")))
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused}");
        assert_eq!(refused.code, "policy_denied", "{refused}");
        assert!(
            refused.message.contains(
                "duration 5h is over the 1h maximum set by policy `dba-read`; ask for 1h or less"
            ),
            "{refused}"
        );
        assert_eq!(w.app.requests(ALICE, false, false).await.unwrap().len(), 0);
        let export = w.app.audit_export(ADMIN).await.unwrap();
        assert_eq!(export.len(), before + 1);
        assert_eq!(export.last().unwrap().kind, "request_refused");
        assert!(w.present().is_empty(), "{:?}", w.present());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_refused_cleanly() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let post = async |body: &str| {
            w.app
                .call(Method::POST, "/v1/requests", Some(ALICE), body)
                .await
        };

        let (status, body) = post("{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request body is not valid"),
            "{v}"
        );

        let (status, body) = post(r#"{"profile":"db.read","resource":"mem:orders","duration":"1m","reason":"x","admin":true}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("unknown field `admin`"), "{body}");

        let (status, body) = w.app.call(Method::GET, "/v1/requests", None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("Authorization: Bearer"), "{body}");
        let (status, _) = w
            .app
            .call(Method::GET, "/v1/requests", Some("wrong"), "")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, _) = w
            .app
            .call(Method::GET, "/v1/requests/not-a-uuid", Some(ALICE), "")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (status, _) = post(&"x".repeat(100_000)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

        let (status, spec) = w.app.call(Method::GET, "/v1/openapi.json", None, "").await;
        assert_eq!(status, StatusCode::OK);
        let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
        assert!(spec["paths"]["/v1/requests/{id}/approve"]["post"].is_object());

        assert_eq!(w.app.requests(ALICE, false, false).await.unwrap().len(), 0);
        assert_eq!(w.audit_len().await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_requests_are_invisible_and_untouchable() {
    for store in TestStore::available() {
        // Erin approves, but no approval policy lets her decide database requests.
        let w = World::with(store, |c| {
            c.principal("erin", &["sre"], &["approver"], ERIN)
        })
        .await;
        let r = w
            .app
            .create_request(ALICE, &ask("db.read", ORDERS, "10m", Some("x")))
            .await
            .unwrap();
        let id = r.id.as_str();
        // Dave is a requester, not an approver: alice's request does not exist for him.
        no_request("dave show", w.app.show(DAVE, id).await);
        no_request("dave cancel", w.app.cancel(DAVE, id).await);
        no_request("dave activate", w.app.activate(DAVE, id).await);
        no_request("dave revoke", w.app.revoke(DAVE, id, None).await);
        // An approver whom policy does not let decide it does not see it either, singly or
        // listed.
        no_request("erin show", w.app.show(ERIN, id).await);
        no_request("erin approve", w.app.approve(ERIN, id, None).await);
        assert_eq!(w.app.requests(ERIN, true, false).await.unwrap().len(), 0);
        assert_eq!(w.app.requests(BOB, true, false).await.unwrap().len(), 1);
        // An approver may see it but cannot activate or cancel it for her.
        let cancel = w.app.cancel(BOB, id).await.unwrap_err();
        assert!(cancel.message.contains("only the requester"), "{cancel}");
        assert_eq!(state(&w.app.show(ALICE, id).await.unwrap()), "pending");
    }
}

/// Review finding 15: on 879dbb0 a revoke reason was taken as sent (64 KiB, control
/// characters), into the audit log, DMs and terminals. Now it is checked like every other
/// free-text field, and a refused revoke changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_reason_with_control_characters_is_refused() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let r = w
            .app
            .create_request(DAVE, &ask("db.read", ORDERS, "5m", Some("x")))
            .await
            .unwrap();
        w.app.activate(DAVE, &r.id).await.unwrap();
        let body = serde_json::json!({"reason": "done\u{1b}[2J\u{1b}[31mhacked"}).to_string();
        let (status, answer) = w
            .app
            .call(
                Method::POST,
                &format!("/v1/grants/{}/revoke", r.id),
                Some(DAVE),
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer.contains("control characters"), "{answer}");
        assert_eq!(state(&w.app.show(DAVE, &r.id).await.unwrap()), "active");
        assert_eq!(w.present().len(), 1, "the access is still there");
    }
}

/// Issue #9 item 11 (review finding 15). On 879dbb0 nothing bounded how many requests one
/// principal could create (each is audited and may notify approvers), and `/metrics` was open to
/// anyone. Now `server.requests_per_minute` refuses the excess with 429 and creates nothing, for
/// that principal only; and with `server.metrics_token` set, `/metrics` answers only to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_creation_is_limited_per_principal_and_metrics_can_need_a_token() {
    const METRICS_TOKEN: &str = "metrics-token-0123456789";
    for store in TestStore::available() {
        let secrets = tempfile::tempdir().unwrap();
        let token_file = secrets.path().join("metrics-token");
        std::fs::write(&token_file, METRICS_TOKEN).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let w = World::with(store, |c| {
            c.server(&format!(
                "requests_per_minute = 3\nmetrics_token = {{ file = {:?} }}",
                token_file.display().to_string()
            ))
        })
        .await;
        let ask = ask("db.read", ORDERS, "5m", Some("x"));
        for _ in 0..3 {
            w.app.create_request(DAVE, &ask).await.unwrap();
        }
        let before = w.audit_len().await;
        let limited = w.app.create_request(DAVE, &ask).await.unwrap_err();
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{limited}");
        assert_eq!(limited.code, "rate_limited", "{limited}");
        assert!(
            limited.message.contains("server.requests_per_minute"),
            "{limited}"
        );
        assert_eq!(
            w.app.requests(DAVE, false, false).await.unwrap().len(),
            3,
            "the refused one was not created"
        );
        assert_eq!(w.audit_len().await, before, "and not audited as a request");
        // Another principal is not held back by dave's burst.
        w.app.create_request(ALICE, &ask).await.unwrap();

        let metrics = |token: Option<&'static str>| w.app.call(Method::GET, "/metrics", token, "");
        assert_eq!(metrics(None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            metrics(Some("metrics-token-wrong-0000")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            metrics(Some(ADMIN)).await.0,
            StatusCode::UNAUTHORIZED,
            "an API token is not the metrics token"
        );
        let (status, body) = metrics(Some(METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("brevet_"), "{body}");
    }
}

/// The call was refused as if the request did not exist.
fn no_request<T: std::fmt::Debug>(what: &str, answer: Result<T, Failure>) {
    let refused = answer.expect_err(what);
    assert!(refused.message.contains("no request"), "{what}: {refused}");
}
