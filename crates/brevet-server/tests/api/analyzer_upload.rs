//! Exports uploaded to the portal's identity analyzer: analysed and shown, audited by digest
//! (never content), bad input refused with what is wrong and nothing kept, the CSRF token
//! checked before any file is read, the size bounded, and an upload removable.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use brevet_server::testing::{TestApp, TestConfig, TestStore};

use crate::callers::matrix_app;
use crate::portal_matrix::{get, sign_in, Browser};
use crate::world::*;

const BOUNDARY: &str = "----brevet-upload-test-7f3a";

/// One part of a multipart body: field name, file name (for a file input), bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/json\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post(app: &TestApp, b: &Browser, parts: &[Part<'_>]) -> (StatusCode, String, String) {
    let (status, headers, body) = app
        .send(
            Request::post("/analyzer/upload")
                .header(header::COOKIE, &b.cookie)
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(Body::from(multipart(parts)))
                .unwrap(),
        )
        .await;
    let location = headers
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, location, body)
}

fn fixture(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../brevet-analyzer/tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn uploads_audited(app: &TestApp) -> Vec<serde_json::Value> {
    app.audit_export(ADMIN)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.as_str() == "analyzer_upload")
        .map(|e| serde_json::from_str(&e.data).expect("audit data is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_exports_are_analysed_shown_audited_and_removable() {
    let app = matrix_app().await;
    let admin = sign_in(&app, ADMIN).await;
    let ancestors = fixture("gcp/acme-prod.ancestors.json");
    let roles = fixture("gcp/roles.json");
    let (status, location, body) = post(
        &app,
        &admin,
        &[
            ("csrf", None, admin.csrf.as_bytes()),
            ("cloud", None, b"gcp"),
            ("exports", Some("acme-prod.ancestors.json"), &ancestors),
            ("exports", Some("roles.json"), &roles),
            ("cloudtrail", Some(""), b""),
            ("gcp_resources", None, b""),
            ("exclusions", Some(""), b""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/analyzer?cloud=gcp");

    // The page shows the upload beside the configured Azure exports, with its findings.
    let (status, page) = get(&app, &admin, "/analyzer").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("data-cloud=\"gcp\" data-source=\"upload\""),
        "{page}"
    );
    assert!(page.contains("data-cloud=\"azure\" data-source=\"configured\""));
    assert!(page.contains("Uploaded by admin"));
    assert!(page.contains("acme-prod.ancestors.json, roles.json"));
    let report = brevet_analyzer::gcp::analyze(
        &brevet_catalog::Catalog::embedded().unwrap(),
        vec![
            brevet_analyzer::gcp::GcpInput {
                resource: None,
                input: brevet_analyzer::Input::from_bytes("a", &ancestors),
            },
            brevet_analyzer::gcp::GcpInput {
                resource: None,
                input: brevet_analyzer::Input::from_bytes("r", &roles),
            },
        ],
        &Default::default(),
    )
    .unwrap();
    let finding = &report.findings[0];
    assert!(page.contains(&format!("/analyzer/findings/{}", finding.id)));
    let (status, page) = get(&app, &admin, &format!("/analyzer/findings/{}", finding.id)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, html) = get(
        &app,
        &admin,
        "/analyzer/report.html?cloud=gcp&source=upload",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&finding.title.replace('&', "&amp;").replace('<', "&lt;")));

    // Audited by name, size and digest; the content is not in the log.
    let audited = uploads_audited(&app).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    let a = &audited[0];
    assert_eq!(a["cloud"], "gcp");
    assert_eq!(a["exports"][0]["name"], "acme-prod.ancestors.json");
    assert_eq!(a["exports"][0]["bytes"], ancestors.len());
    use sha2::Digest;
    assert_eq!(
        a["exports"][1]["sha256"],
        hex::encode(sha2::Sha256::digest(&roles))
    );
    assert_eq!(a["findings"], report.findings.len());
    let log = serde_json::to_string(&app.audit_export(ADMIN).await.unwrap()).unwrap();
    assert!(
        !log.contains("\"bindings\""),
        "the export's content reached the audit log"
    );

    // Removed: gone from the page; removing again says there is none.
    let remove = |b: &Browser| {
        Request::post("/analyzer/upload/remove")
            .header(header::COOKIE, &b.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={}&cloud=gcp", b.csrf)))
            .unwrap()
    };
    let (status, _, _) = app.send(remove(&admin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = get(&app, &admin, "/analyzer").await;
    assert!(!page.contains("data-source=\"upload\""));
    let (status, _, body) = app.send(remove(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no gcp upload to remove"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_upload_with_cloudtrail_rights_sizes_and_a_bare_gcp_policy_needs_its_resource() {
    let app = matrix_app().await;
    let admin = sign_in(&app, ADMIN).await;
    let aws =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../../shared/data/fixtures/aws-authz/cloudsplaining-example-authz-details.json",
        ))
        .expect("the shared AWS fixture (../shared/data)");
    let trail = fixture("aws/biden-cloudtrail.json");
    let (status, _, body) = post(
        &app,
        &admin,
        &[
            ("csrf", None, admin.csrf.as_bytes()),
            ("cloud", None, b"aws"),
            ("exports", Some("account.json"), &aws),
            ("cloudtrail", Some("trail.json"), &trail),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, page) = get(&app, &admin, "/analyzer?cloud=aws").await;
    assert!(page.contains("data-cloud=\"aws\" data-source=\"upload\""));
    // biden's standing grant is rights-sized by the trail: its finding page says what was used.
    let at = page
        .find("\">InlinePolicyForBidenGroup: ")
        .expect("biden's group policy has a finding");
    let id = &page[page[..at].rfind('/').unwrap() + 1..at];
    let (status, finding) = get(&app, &admin, &format!("/analyzer/findings/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        finding.contains(" unused in "),
        "CloudTrail usage is not shown: {finding}"
    );

    // A bare get-iam-policy file: without its resource, refused with how to name it.
    let bare = br#"{"bindings":[{"role":"roles/owner","members":["user:eve@example.com"]}],"etag":"BwX=","version":1}"#;
    let parts = |res: &'static [u8]| -> Vec<Part<'static>> {
        vec![
            ("cloud", None, b"gcp"),
            ("gcp_resources", None, res),
            ("exports", Some("policy.json"), bare),
        ]
    };
    let with_csrf = |mut p: Vec<Part<'static>>, csrf: &'static [u8]| {
        p.insert(0, ("csrf", None, csrf));
        p
    };
    let csrf: &'static [u8] = Box::leak(admin.csrf.clone().into_bytes().into_boxed_slice());
    let (status, _, body) = post(&app, &admin, &with_csrf(parts(b""), csrf)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("does not say whose it is"), "{body}");
    assert!(body.contains("nothing was kept"), "{body}");
    let (status, _, body) = post(&app, &admin, &with_csrf(parts(b"project/x"), csrf)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("not a GCP resource name"), "{body}");
    let (status, _, body) = post(
        &app,
        &admin,
        &with_csrf(parts(b"projects/acme-prod=other.json"), csrf),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("`other.json`, which is not among the uploaded files"),
        "{body}"
    );
    let (_, page) = get(&app, &admin, "/analyzer?cloud=gcp").await;
    assert!(
        !page.contains("data-cloud=\"gcp\""),
        "a refused upload was kept"
    );
    let (status, _, body) = post(
        &app,
        &admin,
        &with_csrf(parts(b"projects/acme-prod=policy.json"), csrf),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, page) = get(&app, &admin, "/analyzer?cloud=gcp&q=eve").await;
    assert!(page.contains("eve@example.com"), "{page}");
    // Two uploads were analysed (AWS, GCP); the refused ones left no trace.
    assert_eq!(uploads_audited(&app).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_the_reason_and_change_nothing() {
    let app = matrix_app().await;
    let admin = sign_in(&app, ADMIN).await;
    let csrf = admin.csrf.clone();
    let assignments = fixture("azure/role-assignments.json");
    let cases: Vec<(Vec<Part<'_>>, StatusCode, &str)> = vec![
        // The token must come first: a forged form gets nowhere near the files.
        (
            vec![
                ("exports", Some("a.json"), &assignments),
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"azure"),
            ],
            StatusCode::FORBIDDEN,
            "CSRF",
        ),
        (
            vec![
                ("csrf", None, b"0123456789abcdef0123456789abcdef"),
                ("cloud", None, b"azure"),
            ],
            StatusCode::FORBIDDEN,
            "CSRF",
        ),
        (
            vec![("cloud", None, b"azure")],
            StatusCode::FORBIDDEN,
            "CSRF",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"okta"),
                ("exports", Some("a.json"), &assignments),
            ],
            StatusCode::BAD_REQUEST,
            "cloud `okta`: choose aws, gcp or azure",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("exports", Some("a.json"), &assignments),
            ],
            StatusCode::BAD_REQUEST,
            "say which cloud",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"azure"),
                ("exports", Some(""), b""),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "choose at least one export file",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"azure"),
                (
                    "exports",
                    Some("cut.json"),
                    &assignments[..assignments.len() / 2],
                ),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "cut.json",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"aws"),
                ("exports", Some("assignments.json"), &assignments),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "assignments.json",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"azure"),
                ("exports", Some("a.json"), &assignments),
                ("cloudtrail", Some("t.json"), b"{}"),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "CloudTrail files go with AWS exports",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"azure"),
                ("exports", Some("a.json"), &assignments),
                ("exclusions", Some("x.toml"), b"policies = 3"),
            ],
            StatusCode::UNPROCESSABLE_ENTITY,
            "x.toml",
        ),
        (
            vec![
                ("csrf", None, csrf.as_bytes()),
                ("cloud", None, b"azure"),
                ("secret", None, b"x"),
            ],
            StatusCode::BAD_REQUEST,
            "unknown form field `secret`",
        ),
    ];
    for (parts, want, says) in cases {
        let (status, _, body) = post(&app, &admin, &parts).await;
        let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
        assert_eq!(status, want, "{names:?}: {body}");
        assert!(body.contains(says), "{names:?}: wanted `{says}` in {body}");
    }
    let (_, page) = get(&app, &admin, "/analyzer").await;
    assert!(
        !page.contains("data-source=\"upload\""),
        "a refused upload was kept"
    );
    assert!(uploads_audited(&app).await.is_empty());

    // A requester is refused before the body is read.
    let alice = sign_in(&app, ALICE).await;
    let (status, _, _) = post(
        &app,
        &alice,
        &[
            ("csrf", None, alice.csrf.as_bytes()),
            ("cloud", None, b"azure"),
            ("exports", Some("a.json"), &assignments),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_past_the_limit_is_refused_413_naming_the_setting() {
    let config = TestConfig::new(POLICY)
        .principal("admin", &[], &["admin"], ADMIN)
        .toml("[analyzer]\nmax_upload_mib = 1\n");
    let app = TestApp::start(config, TestStore::Sqlite).await.unwrap();
    let admin = sign_in(&app, ADMIN).await;
    let big = vec![b' '; 1024 * 1024 + 1];
    let (status, _, body) = post(
        &app,
        &admin,
        &[
            ("csrf", None, admin.csrf.as_bytes()),
            ("cloud", None, b"aws"),
            ("exports", Some("big.json"), &big),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("max_upload_mib"), "{body}");
    // The page offers the form even with nothing configured.
    let (status, page) = get(&app, &admin, "/analyzer").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("id=\"upload\"") && page.contains("At most 1 MiB"),
        "{page}"
    );
    assert!(page.contains("analyzer-unconfigured"));

    let bad = TestConfig::new(POLICY)
        .principal("admin", &[], &["admin"], ADMIN)
        .toml("[analyzer]\nmax_upload_mib = 0\n");
    let err = TestApp::start(bad, TestStore::Sqlite)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("analyzer.max_upload_mib"), "{err}");
}
