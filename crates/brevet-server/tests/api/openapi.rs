//! `/v1/openapi.json` says what the server does (issue #15 item 5): every route's parameters
//! where they really go, every answer a route can give, and bodies constrained as the server's
//! parsers are; and where schemathesis found the server accepting what a sensible document
//! refuses, the server now refuses it. The whole document is exercised by schemathesis in
//! brevet-cli's e2e `openapi_schema_holds_under_schemathesis`.

use axum::http::{Method, StatusCode};
use brevet_server::testing::TestStore;
use serde_json::Value;

use crate::world::*;

async fn document(w: &World) -> Value {
    let (status, body) = w.app.call(Method::GET, "/v1/openapi.json", None, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op));
        }
    }
    out
}

/// Before: the `{id}` routes declared no `id` parameter, query strings were declared as path
/// parameters, public routes required a bearer token, and 401/403/503 were missing almost
/// everywhere (schemathesis: 8 schema errors, 31 undocumented status codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_declares_every_parameter_and_answer() {
    let w = World::new(TestStore::Sqlite).await;
    let doc = document(&w).await;
    let public = [
        "GET /v1/health",
        "GET /metrics",
        "GET /v1/providers/{name}/{document}",
        "GET /v1/{kind}/{document}",
        "POST /v1/login/device",
        "POST /v1/login/device/poll",
    ];
    let ops = operations(&doc);
    assert!(ops.len() >= 34, "{} operations", ops.len());
    for (method, path, op) in &ops {
        let name = format!("{method} {path}");
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared =
            |name: &str, place: &str| params.iter().any(|p| p["name"] == name && p["in"] == place);
        // Every `{variable}` of the path is a path parameter, and no path parameter is made up.
        let variables: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for v in &variables {
            assert!(declared(v, "path"), "{name}: `{v}` is not declared");
        }
        for p in params.iter().filter(|p| p["in"] == "path") {
            let n = p["name"].as_str().unwrap();
            assert!(
                variables.contains(&n),
                "{name}: path parameter `{n}` is not in the path"
            );
        }
        let responses = op["responses"].as_object().unwrap();
        let answers = |code: &str| responses.contains_key(code);
        assert!(answers("408"), "{name}: 408 not documented");
        if public.contains(&name.as_str()) {
            assert!(
                op["security"]
                    .as_array()
                    .is_some_and(|s| s.contains(&serde_json::json!({}))),
                "{name} needs no token, but the document does not say so"
            );
        } else {
            assert!(op["security"].is_null(), "{name}: {}", op["security"]);
            for code in ["401", "403", "503"] {
                assert!(answers(code), "{name}: {code} not documented");
                assert_eq!(
                    responses[code]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{name}: {code}"
                );
            }
        }
        if op["requestBody"].is_object() {
            assert!(answers("413"), "{name}: 413 not documented");
        }
        if path.contains("{id}") {
            assert!(
                answers("400") && answers("404"),
                "{name}: 400/404 not documented"
            );
        }
    }
    // Query strings are query parameters (they were declared `in: path`).
    for (path, names) in [
        ("/v1/requests", &["pending", "all", "limit"][..]),
        ("/v1/grants", &["all"][..]),
        (
            "/v1/deliveries",
            &["state", "subscriber", "request", "limit"][..],
        ),
        ("/v1/catalog/search", &["q", "cloud", "access", "limit"][..]),
        ("/v1/audit/export", &["format"][..]),
    ] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        for n in names {
            assert!(
                params.iter().any(|p| p["name"] == *n && p["in"] == "query"),
                "GET {path}: `{n}` is not a query parameter: {params:?}"
            );
        }
    }
    let kill = &doc["components"]["schemas"]["KillBody"];
    assert!(kill["allOf"][1]["oneOf"].is_array(), "{kill}");
}

/// Before: `limit=0`, `limit=-5` and `limit=999999` were quietly clamped to the store's range and
/// answered 200 (schemathesis ST201 once the document gave the range).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_limits_outside_their_range_are_refused() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        for (token, path, max) in [
            (ALICE, "/v1/requests", 5000),
            (ADMIN, "/v1/deliveries", 5000),
            (ALICE, "/v1/catalog/search?q=bucket&", 200),
        ] {
            let sep = if path.ends_with('&') { "" } else { "?" };
            for bad in ["0".to_string(), "-5".into(), (max + 1).to_string()] {
                let url = format!("{path}{sep}limit={bad}");
                let (status, body) = w.app.call(Method::GET, &url, Some(token), "").await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
                assert!(
                    body.contains(&format!("use 1 to {max}")) || body.contains("limit"),
                    "{url}: {body}"
                );
            }
            for good in ["1".to_string(), max.to_string()] {
                let url = format!("{path}{sep}limit={good}");
                let (status, body) = w.app.call(Method::GET, &url, Some(token), "").await;
                assert_eq!(status, StatusCode::OK, "{url}: {body}");
            }
        }
    }
}

/// Before: a reason's limit counted UTF-8 bytes after trimming, so 1001 `é`s (1001 characters,
/// within the documented `maxLength` of 2000) were refused as "longer than 2000 characters".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_limits_count_characters() {
    for store in TestStore::available() {
        let w = World::new(store).await;
        let accented = "é".repeat(1500);
        let r = w
            .app
            .create_request(ALICE, &ask("db.read", ORDERS, "10m", Some(&accented)))
            .await
            .unwrap();
        assert_eq!(r.reason.as_deref(), Some(accented.as_str()));
        let refused = w
            .app
            .create_request(
                ALICE,
                &ask("db.read", ORDERS, "10m", Some(&"a".repeat(2001))),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused}");
        assert!(
            refused
                .message
                .contains("reason is longer than 2000 characters"),
            "{refused}"
        );
    }
}
