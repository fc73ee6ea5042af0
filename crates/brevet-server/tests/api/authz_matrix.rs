//! The authorization matrix: every API operation the OpenAPI document lists, plus the few routes
//! it leaves out on purpose, × every kind of caller, as one table. A route without a row fails the
//! test, and so does a row for a route that is gone — so a new route must say who may call it.
//!
//! "Allowed" means the caller got past authentication and authorization: any answer but 401 and
//! 403, and, on routes about one request, but 404 (others' requests are answered "no request").
//! Business refusals (400, 409) count as allowed: the caller was let in to be told.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use brevet_server::testing::TestApp;

use crate::callers::*;

/// One operation: method, path as the OpenAPI document spells it, who may call it, the body to
/// send.
struct Row {
    method: Method,
    path: &'static str,
    rule: Rule,
    body: &'static str,
}

fn rows() -> Vec<Row> {
    let row = |method: Method, path: &'static str, rule: Rule, body: &'static str| Row {
        method,
        path,
        rule,
        body,
    };
    use Rule::*;
    vec![
        // Not in the OpenAPI document on purpose: health, the document itself, Prometheus.
        row(Method::GET, "/v1/health", Public, ""),
        row(Method::GET, "/v1/openapi.json", Public, ""),
        row(Method::GET, "/metrics", Public, ""),
        row(Method::GET, "/v1/providers/{name}/{document}", Public, ""),
        row(Method::GET, "/v1/{kind}/{document}", Public, ""),
        row(Method::POST, "/v1/login/device", Public, ""),
        row(
            Method::POST,
            "/v1/login/device/poll",
            Public,
            r#"{"login_id":"x"}"#,
        ),
        row(Method::POST, "/v1/logout", Principal, ""),
        row(Method::GET, "/v1/whoami", Principal, ""),
        row(Method::GET, "/v1/eligible", Principal, ""),
        row(
            Method::POST,
            "/v1/policy/test",
            Principal,
            r#"{"profile":"db.read","resource":"mem:orders","duration":"5m"}"#,
        ),
        row(
            Method::POST,
            "/v1/requests",
            Requester,
            r#"{"profile":"db.read","resource":"mem:orders","duration":"5m","reason":"matrix"}"#,
        ),
        row(Method::GET, "/v1/requests", Principal, ""),
        row(Method::GET, "/v1/grants", Principal, ""),
        row(Method::GET, "/v1/requests/{id}", OwnerApproverAdmin, ""),
        row(
            Method::POST,
            "/v1/requests/{id}/approve",
            DecidingApprover,
            "{}",
        ),
        row(
            Method::POST,
            "/v1/requests/{id}/deny",
            DecidingApprover,
            "{}",
        ),
        row(Method::POST, "/v1/requests/{id}/cancel", Owner, ""),
        row(Method::POST, "/v1/requests/{id}/activate", Owner, "{}"),
        row(
            Method::POST,
            "/v1/grants/{id}/extend",
            Owner,
            r#"{"duration":"1m"}"#,
        ),
        row(Method::POST, "/v1/grants/{id}/credentials", Owner, "{}"),
        row(Method::POST, "/v1/grants/{id}/revoke", OwnerOrAdmin, "{}"),
        row(Method::GET, "/v1/audit/verify", Admin, ""),
        row(Method::GET, "/v1/audit/export", Admin, ""),
        row(Method::GET, "/v1/audit/checkpoint", Admin, ""),
        row(Method::POST, "/v1/audit/checkpoint", Admin, ""),
        row(Method::POST, "/v1/reconcile", Admin, ""),
        row(
            Method::POST,
            "/v1/kill",
            Admin,
            r#"{"reason":"matrix: no target, refused as bad input"}"#,
        ),
        row(
            Method::POST,
            "/v1/unlock",
            Admin,
            r#"{"principal":"nobody-locked"}"#,
        ),
        row(Method::GET, "/v1/locks", Admin, ""),
        row(Method::GET, "/v1/deliveries", Admin, ""),
        row(Method::GET, "/v1/catalog/search", Principal, ""),
        row(Method::GET, "/v1/catalog/entries/{name}", Principal, ""),
        row(
            Method::POST,
            "/v1/profiles/{name}/compile",
            Principal,
            r#"{"resource":["arn:aws:s3:::x"]}"#,
        ),
        row(Method::GET, "/v1/profiles/{name}/explain", Principal, ""),
    ]
}

/// The operations the OpenAPI document lists, as `METHOD path`.
async fn documented(app: &TestApp) -> BTreeSet<String> {
    let (status, text) = app.call(Method::GET, "/v1/openapi.json", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            out.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_lets_in_exactly_who_it_should() {
    let app = matrix_app().await;

    // Every documented operation has a row, and every row is a route that exists.
    let mut undocumented: BTreeSet<String> =
        ["GET /v1/health", "GET /v1/openapi.json", "GET /metrics"]
            .map(String::from)
            .into();
    let doc = documented(&app).await;
    let table = rows();
    let covered: BTreeSet<String> = table
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let missing: Vec<&String> = doc.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "operations with no row in the authorization matrix: {missing:?}"
    );
    let stale: Vec<&String> = covered
        .iter()
        .filter(|r| !doc.contains(*r) && !undocumented.remove(*r))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for operations that do not exist: {stale:?}"
    );

    // The objects the rows act on; mallory and root locked by name.
    let objects = Objects::create(&app).await;
    lock_mallory_and_root(&app).await;

    let mut wrong = Vec::new();
    let mut checked = 0;
    for row in &table {
        for who in row.rule.callers() {
            let path = row
                .path
                .replace("{id}", objects.id_for(row.path))
                .replace("{name}", "mem")
                .replace("{kind}", "memory")
                .replace("{document}", "none");
            let (status, body) = app
                .call(row.method.clone(), &path, who.token(), row.body)
                .await;
            let about_one_request = row.path.contains("{id}");
            let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                || (about_one_request && status == StatusCode::NOT_FOUND);
            let let_in = !refused;
            let expected = row.rule.allows(who);
            checked += 1;
            if let_in != expected {
                wrong.push(format!(
                    "{} {} as {who:?}: {status} (expected {}) {}",
                    row.method,
                    row.path,
                    if expected { "allowed" } else { "refused" },
                    body.chars().take(160).collect::<String>()
                ));
            }
            assert!(
                !status.is_server_error(),
                "{} {path} as {who:?}: {status} {body}",
                row.method
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} cells differ from the matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, table.len() * EVERYONE.len());
}
