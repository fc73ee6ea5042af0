//! The portal's authorization matrix: every page and form action × every kind of caller, signed
//! in through the portal itself (a browser session cookie and its CSRF token), as one table. A
//! portal route without a row fails the test, like the API's matrix (`authz_matrix.rs`).
//!
//! "Refused" is 401 or 403, a redirect to the sign-in page, or — on pages about one request — 404
//! (others' requests are answered "no request"). Business refusals (400, 409) count as let in.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use brevet_server::testing::TestApp;

use crate::callers::*;

struct Row {
    method: Method,
    path: &'static str,
    rule: Rule,
    /// Form fields besides `csrf`.
    form: &'static str,
}

fn rows() -> Vec<Row> {
    let row = |method: Method, path: &'static str, rule: Rule, form: &'static str| Row {
        method,
        path,
        rule,
        form,
    };
    use Rule::*;
    vec![
        row(Method::GET, "/request", RequesterOrAdmin, ""),
        row(
            Method::POST,
            "/request",
            Requester,
            "choice=mem%3Aorders%7Cdb.read&duration=5m&reason=matrix",
        ),
        row(Method::GET, "/requests", Principal, ""),
        row(Method::GET, "/requests/{id}", OwnerApproverAdmin, ""),
        row(
            Method::POST,
            "/requests/{id}/approve",
            DecidingApprover,
            "comment=",
        ),
        row(
            Method::POST,
            "/requests/{id}/deny",
            DecidingApprover,
            "comment=",
        ),
        row(Method::POST, "/requests/{id}/cancel", Owner, ""),
        row(Method::POST, "/requests/{id}/activate", Owner, ""),
        row(Method::GET, "/access", Principal, ""),
        row(Method::POST, "/grants/{id}/extend", Owner, "duration=1m"),
        row(Method::POST, "/grants/{id}/revoke", OwnerOrAdmin, ""),
        row(Method::GET, "/approvals", ApproverOrAdmin, ""),
        row(Method::GET, "/admin/kill", Admin, ""),
        row(
            Method::POST,
            "/admin/kill",
            Admin,
            "principal=&reason=matrix",
        ),
        row(
            Method::POST,
            "/admin/unlock",
            Admin,
            "principal=nobody-locked",
        ),
        row(Method::GET, "/admin/audit", Admin, ""),
        row(Method::GET, "/analyzer", Admin, ""),
        row(Method::GET, "/analyzer/findings/{id}", Admin, ""),
        row(Method::GET, "/analyzer/report.html", Admin, ""),
        // A form post, not multipart: an admin is told so (400), everyone else refused first.
        row(Method::POST, "/analyzer/upload", Admin, ""),
        row(Method::POST, "/analyzer/upload/remove", Admin, "cloud=aws"),
        // Last: it ends the session the rows above use.
        row(Method::POST, "/logout", Principal, ""),
    ]
}

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Clone)]
pub(crate) struct Browser {
    pub cookie: String,
    pub csrf: String,
}

fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in: {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// Whether a session cookie opens a page.
async fn opens_a_page(app: &TestApp, cookie: &str) -> bool {
    app.send(
        Request::get("/access")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .0 == StatusCode::OK
}

/// A portal page as a signed-in browser gets it: its status and body.
pub(crate) async fn get(app: &TestApp, b: &Browser, path: &str) -> (StatusCode, String) {
    let (status, _, body) = app
        .send(
            Request::get(path)
                .header(header::COOKIE, &b.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    (status, body)
}

/// Signs in through the token form, as a browser does.
pub(crate) async fn sign_in(app: &TestApp, token: &str) -> Browser {
    let (status, headers, page) = app
        .send(Request::get("/login").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let login = set_cookie(&headers, "brevet_login").expect("the sign-in form's cookie");
    let form = format!("csrf={}&token={token}", csrf_in(&page));
    let (status, headers, body) = app
        .send(
            Request::post("/login/token")
                .header(header::COOKIE, &login)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert!(status.is_redirection(), "{status} {body}");
    let cookie = set_cookie(&headers, "brevet_session").expect("a session cookie");
    let (status, _, page) = app
        .send(
            Request::get("/access")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    Browser {
        csrf: csrf_in(&page),
        cookie,
    }
}

/// The portal's routes, read from the router's own listing in `portal/mod.rs`, so a new page
/// without a row fails the test.
fn portal_routes() -> BTreeSet<String> {
    let source = include_str!("../../src/portal/mod.rs");
    let mut out = BTreeSet::new();
    for line in source.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(".route(\"") else {
            continue;
        };
        let path = &rest[..rest.find('"').unwrap()];
        for (method, name) in [("get(", "GET"), ("post(", "POST")] {
            if rest.contains(method) || rest.contains(&format!(".{method}")) {
                out.insert(format!("{name} {path}"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_portal_page_and_action_lets_in_exactly_who_it_should() {
    let app = matrix_app().await;

    // Every portal route has a row, and every row is a route (static files and the sign-in
    // pages are public by design and listed here).
    let public: BTreeSet<String> = [
        "GET /",
        "GET /static/portal.css",
        "GET /static/portal.js",
        "GET /login",
        "POST /login/token",
        "GET /auth/oidc/start",
        "GET /auth/oidc/callback",
    ]
    .map(String::from)
    .into();
    let table = rows();
    let covered: BTreeSet<String> = table
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let routes = portal_routes();
    let missing: Vec<&String> = routes
        .iter()
        .filter(|r| !covered.contains(*r) && !public.contains(*r))
        .collect();
    assert!(missing.is_empty(), "portal routes with no row: {missing:?}");
    let stale: Vec<&String> = covered.iter().filter(|r| !routes.contains(*r)).collect();
    assert!(
        stale.is_empty(),
        "rows for routes that do not exist: {stale:?}"
    );

    // Sessions first (a locked principal cannot sign in), then the locks.
    let mut browsers = std::collections::HashMap::new();
    for who in EVERYONE {
        match who.token() {
            Some(token) if who != Who::BadCredential => {
                browsers.insert(who, sign_in(&app, token).await);
            }
            _ => {}
        }
    }
    browsers.insert(
        Who::BadCredential,
        Browser {
            cookie: "brevet_session=not-a-session".into(),
            csrf: "0".repeat(32),
        },
    );
    let objects = Objects::create(&app).await;
    lock_mallory_and_root(&app).await;

    let mut wrong = Vec::new();
    for row in &table {
        for who in row.rule.callers() {
            let path = row.path.replace("{id}", objects.id_for(row.path));
            let mut req = Request::builder().method(row.method.clone()).uri(&path);
            let browser = browsers.get(&who);
            if let Some(b) = browser {
                req = req.header(header::COOKIE, &b.cookie);
            }
            let req = if row.method == Method::POST {
                let csrf = browser.map(|b| b.csrf.clone()).unwrap_or_default();
                let form = if row.form.is_empty() {
                    format!("csrf={csrf}")
                } else {
                    format!("csrf={csrf}&{}", row.form)
                };
                req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
            } else {
                req.body(Body::empty())
            }
            .unwrap();
            // Whether the caller's session opened a page before the call (for sign-out).
            let alive_before = match browser {
                Some(b) if row.path == "/logout" => opens_a_page(&app, &b.cookie).await,
                _ => false,
            };
            let (status, headers, body) = app.send(req).await;
            let to_sign_in = status.is_redirection()
                && headers
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .is_some_and(|l| l.starts_with("/login"));
            let mut refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                || to_sign_in
                || (row.path.contains("{id}") && status == StatusCode::NOT_FOUND);
            // Signing out answers with the sign-in page either way: it was let in if the
            // session opened a page before and no longer does.
            if row.path == "/logout" && to_sign_in {
                if let Some(b) = browser {
                    refused = !alive_before || opens_a_page(&app, &b.cookie).await;
                }
            }
            let expected = row.rule.allows(who);
            if refused == expected {
                wrong.push(format!(
                    "{} {} as {who:?}: {status} (expected {}) {}",
                    row.method,
                    row.path,
                    if expected { "let in" } else { "refused" },
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
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
