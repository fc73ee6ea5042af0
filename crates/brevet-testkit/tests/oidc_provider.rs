//! The browser-test harness on its own, with no Brevet involved: the real OIDC provider starts and
//! describes itself, and Debian's Chromium signs in at it (authorization code + PKCE, then the
//! device flow) through `tests/browser/selfcheck.mjs`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use brevet_testkit::{browser_artifacts_dir, run_browser_script, OidcClient, OidcProvider};
use serde_json::Value;

/// A plain HTTP/1.0 GET on loopback: (status, body).
fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_owned())
}

#[test]
fn provider_serves_discovery_with_pkce_and_device_flow() {
    let op = OidcProvider::start(
        "brevet-portal",
        "portal-secret",
        &["http://127.0.0.1:18080/auth/callback"],
    );
    let issuer = op.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");

    let (status, body) = http_get(&format!("{issuer}/.well-known/openid-configuration"));
    assert_eq!(status, 200, "{body}\n{}", op.log_text());
    let meta: Value = serde_json::from_str(&body).expect("discovery JSON");
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["authorization_endpoint"], format!("{issuer}/auth"));
    assert_eq!(meta["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        meta["device_authorization_endpoint"],
        format!("{issuer}/device/auth")
    );
    assert_eq!(meta["jwks_uri"], format!("{issuer}/jwks"));
    let has = |key: &str, value: &str| {
        meta[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing: {meta:#}"))
            .iter()
            .any(|v| v == value)
    };
    assert!(has("code_challenge_methods_supported", "S256"));
    assert!(has(
        "grant_types_supported",
        "urn:ietf:params:oauth:grant-type:device_code"
    ));
    assert!(has("id_token_signing_alg_values_supported", "RS256"));
    assert!(has(
        "token_endpoint_auth_methods_supported",
        "client_secret_basic"
    ));
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(has("scopes_supported", scope), "scope {scope}");
    }
    for claim in ["email", "groups", "preferred_username", "name"] {
        assert!(has("claims_supported", claim), "claim {claim}");
    }

    let (status, jwks) = http_get(&format!("{issuer}/jwks"));
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(jwks["keys"][0].get("d").is_none(), "private key published");
}

#[test]
fn chromium_signs_in_with_pkce_and_approves_a_device_code() {
    let op = OidcProvider::start_with_clients(&[OidcClient::confidential(
        "selfcheck",
        "selfcheck-secret",
        &["http://127.0.0.1/auth/callback"],
    )
    .any_loopback_port()]);
    let out = run_browser_script(
        "selfcheck.mjs",
        &[
            ("OIDC_ISSUER", op.issuer()),
            ("OIDC_CLIENT_ID", "selfcheck"),
            ("OIDC_CLIENT_SECRET", "selfcheck-secret"),
        ],
        Duration::from_secs(180),
    );
    assert!(out.contains("selfcheck: ok"), "{out}");
    assert!(browser_artifacts_dir()
        .join("selfcheck-login.png")
        .is_file());
}
