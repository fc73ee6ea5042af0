//! The web portal and single sign-on, end to end against the real `brevet` binary:
//! - in headless Chromium (Debian's, driven by playwright-core), people sign in through a real
//!   OpenID provider process (panva's `oidc-provider`, tests/browser/oidc-provider.mjs), ask,
//!   approve, activate, see the countdown and the one-time connection string, and an admin uses
//!   the kill switch; screenshots land in target/browser-artifacts;
//! - `brevet login` signs in through the provider's device flow, approved in Chromium;
//! - over plain HTTP: CSRF, missing session, wrong role and another user's request id are
//!   refused with nothing changed; cookies and security headers are as documented.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use crate::common::*;
use serde_json::Value;

const SECRET: &str = "portal-client-secret-for-tests";

/// Policy in the provider's groups: engineering may ask for read access with one approval from
/// sre-leads; carol is an admin through security-admins (config, not policy).
const PORTAL_POLICY: &str = r#"
@id("engineering-read")
@max_duration("1h")
@approvals("1")
permit (principal in Group::"engineering", action == Action::"request", resource)
when { context.profile == "db.read" };

@id("dba-read")
@max_duration("1h")
@approvals("1")
permit (principal in Group::"dba", action == Action::"request", resource)
when { context.profile == "db.read" };

@id("leads-approve")
permit (principal in Group::"sre-leads", action == Action::"approve", resource);

@id("config-leads-approve")
permit (principal in Group::"leads", action == Action::"approve", resource);
"#;

fn oidc_world(provider: &OidcProvider) -> World {
    oidc_world_with(provider, "")
}

/// [`oidc_world`] with extra `[server]` settings.
fn oidc_world_with(provider: &OidcProvider, server_extra: &str) -> World {
    let oidc = format!(
        r#"
[oidc]
issuer = "{issuer}"
client_id = "brevet-portal"
client_secret = {{ env = "BREVET_TEST_OIDC_SECRET" }}
scopes = ["openid", "email", "profile", "groups"]
principal_claim = "email"
groups_claim = "groups"
button = "Sign in with the test provider"

[oidc.roles]
approver = ["sre-leads"]
admin = ["security-admins"]
"#,
        issuer = provider.issuer()
    );
    World::new(StoreKind::Sqlite)
        .server(server_extra)
        .with(&oidc)
        .env(&[("BREVET_TEST_OIDC_SECRET", SECRET)])
}

fn provider() -> OidcProvider {
    OidcProvider::start_with_clients(&[OidcClient::confidential(
        "brevet-portal",
        SECRET,
        &["http://127.0.0.1/auth/oidc/callback"],
    )
    .any_loopback_port()])
}

#[test]
fn portal_end_to_end_in_chromium_with_oidc() {
    let provider = provider();
    let world = oidc_world(&provider);
    let server = Server::start(
        std::path::Path::new(BIN),
        &world.config.text(),
        PORTAL_POLICY,
        &world.env_refs(),
    );
    let started = std::time::SystemTime::now();
    let out = run_browser_script(
        "portal-flow.mjs",
        &[("BREVET_URL", &server.url)],
        Duration::from_secs(300),
    );
    let result: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the browser script printed no result ({e}): {out}"));
    let id = result["request_id"].as_str().expect("request id");
    assert_eq!(result["everyone_lock_lifted"], true, "{result}");
    // Only alice's own lock is left after carol lifted the everyone-lock.
    let locks = server.locks(ADMIN);
    let locked: Vec<&str> = locks
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["principal"].as_str().unwrap())
        .collect();
    assert_eq!(locked, ["alice@example.com"], "{locks:#}");

    // What the browser saw is what the server recorded: approved by bob, revoked by the kill
    // switch with read-back evidence, everything on a verified chain.
    let r = server.show(ADMIN, id);
    assert_eq!(r["requester"], "alice@example.com");
    assert_eq!(r["approvals"], serde_json::json!(["bob@example.com"]));
    assert_eq!(r["state"], "revoked", "{r:#}");
    assert_eq!(r["evidence"]["observation"]["role_exists"], false, "{r:#}");
    let export = server.run(ADMIN, Cmd::audit_export());
    let events: Vec<Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    for expected in [
        ("session_started", "alice@example.com"),
        ("session_started", "bob@example.com"),
        ("session_started", "carol@example.com"),
        ("request_created", "alice@example.com"),
        ("approval_recorded", "bob@example.com"),
        ("grant_activated", "alice@example.com"),
        ("kill_switch", "carol@example.com"),
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected:?} missing in {kinds:?}"
        );
    }
    // The groups from the ID token fed policy, and were recorded at sign-in.
    let alice_login = events
        .iter()
        .find(|e| e["kind"] == "session_started" && e["actor"] == "alice@example.com")
        .unwrap();
    let data: Value = serde_json::from_str(alice_login["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["groups"], serde_json::json!(["engineering"]));
    assert_eq!(data["method"], "oidc");
    let verify = server.audit_verify(ADMIN);
    assert_eq!(verify["ok"], true);
    // The connection string shown once no longer works.
    let cred = result["credential"].as_str().unwrap();
    let err = psql(cred, "SELECT 1").expect_err("the revoked credential must not connect");
    assert!(
        err.contains("does not exist") || err.contains("authentication failed"),
        "{err}"
    );
    // Screenshots of every page were taken by this run and kept.
    let shots = browser_artifacts_dir();
    for name in [
        "01-sign-in",
        "03-request-form",
        "05-approvals-inbox",
        "08-one-time-credential",
        "09-my-access-active",
        "11-kill-report",
        "12-audit",
    ] {
        let p = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&p)
                .is_ok_and(|m| m.len() > 1000 && m.modified().is_ok_and(|t| t >= started)),
            "no screenshot {} from this run",
            p.display()
        );
    }
    // No secret reached the logs.
    assert!(!server.log_text().contains(SECRET));
    assert!(!server.log_text().contains(cred));
}

/// The sign-in callback against the real provider: a callback this browser did not start, one
/// whose state is not the one it started with, and one whose state was already used are each
/// refused, and none starts a session.
#[test]
fn oidc_callback_refuses_foreign_forged_and_reused_state() {
    let provider = provider();
    let world = oidc_world_with(&provider, "client_ip_header = \"x-forwarded-for\"");
    let server = Server::start(
        std::path::Path::new(BIN),
        &world.config.text(),
        PORTAL_POLICY,
        &world.env_refs(),
    );
    let portal = Portal::new(&server.url);
    let callback = |state: &str, cookie: Option<&str>| {
        let mut req = portal.http.get(format!(
            "{}/auth/oidc/callback?code=not-a-real-code&state={state}",
            server.url
        ));
        if let Some(c) = cookie {
            // Another tab's token form cookie alongside does not matter.
            req = req.header("cookie", format!("brevet_login=form:x; brevet_oidc={c}"));
        }
        let resp = req.send().unwrap();
        assert!(
            cookie_value(&resp, "brevet_session").is_none(),
            "no session from a refused callback"
        );
        (resp.status().as_u16(), resp.text().unwrap())
    };
    // Start a sign-in as a browser would: a redirect to the provider carrying the state, and
    // the state bound to this browser by a cookie.
    let start = portal
        .http
        .get(format!("{}/auth/oidc/start", server.url))
        .send()
        .unwrap();
    assert_eq!(start.status(), 303, "{:?}", start.headers());
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(provider.issuer()), "{location}");
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
    ] {
        assert!(location.contains(param), "{param} in {location}");
    }
    let state = location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let bound = cookie_value(&start, "brevet_oidc").expect("the state is bound to the browser");
    assert_eq!(bound, state);

    let (status, body) = callback(&state, None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not started in this browser"), "{body}");
    let (status, body) = callback("forged-state", Some(&bound));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not started in this browser"), "{body}");
    // The right state with a code the provider never issued: the provider refuses the code,
    // and the state is used up by that attempt.
    let (status, body) = callback(&state, Some(&bound));
    assert_eq!(status, 401, "{body}");
    let (status, body) = callback(&state, Some(&bound));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired or was already used"), "{body}");

    let export = server.audit_export(ADMIN);
    assert!(!export.contains("session_started"), "{export}");

    // Starting sign-ins is bounded per client (the address the proxy forwards): one client that
    // starts too many is told to wait, and another still signs in.
    let start_from = |client: &str| {
        portal
            .http
            .get(format!("{}/auth/oidc/start", server.url))
            .header("x-forwarded-for", format!("192.0.2.200, {client}"))
            .send()
            .unwrap()
    };
    let statuses: Vec<u16> = (0..25)
        .map(|_| start_from("203.0.113.9").status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        20,
        "{statuses:?}"
    );
    let busy = start_from("203.0.113.9");
    assert_eq!(busy.status(), 503);
    assert!(busy.text().unwrap().contains("try again in a minute"));
    assert_eq!(start_from("198.51.100.20").status(), 303);
}

#[test]
fn cli_login_uses_the_device_flow_and_logout_ends_the_session() {
    let provider = provider();
    let world = oidc_world(&provider);
    let server = Server::start(
        std::path::Path::new(BIN),
        &world.config.text(),
        PORTAL_POLICY,
        &world.env_refs(),
    );
    let home = tempfile::tempdir().unwrap();
    let sessions = home.path().join("sessions.json");
    let cli = |cmd: Cmd| {
        let mut c = cmd.command();
        c.env("BREVET_URL", &server.url)
            .env("BREVET_SESSION_FILE", &sessions)
            .env_remove("BREVET_TOKEN");
        c
    };
    let mut login = cli(Cmd::login("2m").json_output())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(login.stdout.take().unwrap()).lines();
    let start: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let uri = start["verification_uri_complete"]
        .as_str()
        .or(start["verification_uri"].as_str())
        .unwrap()
        .to_owned();
    run_browser_script(
        "device-approve.mjs",
        &[
            ("VERIFICATION_URI", &uri),
            ("USER_CODE", start["user_code"].as_str().unwrap()),
            ("OIDC_USER", "dave"),
            ("OIDC_PASSWORD", "dave-pw"),
        ],
        Duration::from_secs(120),
    );
    let done: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(login.wait().unwrap().success());
    assert_eq!(done["principal"], "dave@example.com");
    assert_eq!(done["groups"], serde_json::json!(["engineering"]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sessions).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the session file is private");
    }
    // Later commands use the saved session.
    let who = cli(Cmd::whoami().json_output()).output().unwrap();
    assert!(who.status.success(), "{}", stderr(&who));
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(who["id"], "dave@example.com");
    assert_eq!(who["groups"], serde_json::json!(["engineering"]));
    let req = cli(Cmd::request(
        &Ask::new("db.read", "postgres:orders")
            .lasting("10m")
            .reason("cli sso"),
    )
    .json_output())
    .output()
    .unwrap();
    assert!(req.status.success(), "{}", stderr(&req));
    // Sign-out ends the session at the server, not just locally.
    let token = std::fs::read_to_string(&sessions).unwrap();
    let token: Value = serde_json::from_str(&token).unwrap();
    let token = token[&server.url]["token"].as_str().unwrap().to_owned();
    assert!(cli(Cmd::logout()).output().unwrap().status.success());
    let after = server.run(&token, Cmd::whoami());
    assert!(!after.status.success());
    assert!(
        stderr(&after).contains("sign in again"),
        "{}",
        stderr(&after)
    );
    let who = cli(Cmd::whoami()).output().unwrap();
    assert!(!who.status.success());
}

#[test]
fn portal_refuses_forged_anonymous_wrong_role_and_foreign_requests() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let portal = Portal::new(&server.url);
    let count_mine = |token: &str| {
        server
            .json(token, Cmd::requests())
            .as_array()
            .unwrap()
            .len()
    };

    // Headers: strict CSP and friends on every page.
    let login = portal
        .http
        .get(format!("{}/login", server.url))
        .send()
        .unwrap();
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(login.headers()["x-frame-options"], "DENY");

    // The token sign-in form itself is CSRF-protected (no matching pre-session cookie).
    let forged = portal.post(None, "/login/token", &[("csrf", "x"), ("token", ALICE)]);
    assert_eq!(forged.status(), 403);
    // A wrong token is refused.
    let wrong = portal.submit_token("not-a-token", None);
    assert_eq!(wrong.headers()["location"], "/login?error=bad_token");

    let (alice, alice_csrf) = portal.sign_in(ALICE);
    let ask = |csrf: Option<&str>, reason: &str| {
        let mut form = vec![
            ("choice", "postgres:orders|db.read"),
            ("duration", "10m"),
            ("reason", reason),
        ];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        portal.post(Some(&alice), "/request", &form)
    };

    // Missing session: pages send you to sign in, and a form post changes nothing.
    let anon = portal
        .http
        .get(format!("{}/access", server.url))
        .send()
        .unwrap();
    assert_eq!(anon.status(), 303);
    assert_eq!(anon.headers()["location"], "/login");
    let anon_post = portal.post(
        None,
        "/request",
        &[
            ("choice", "postgres:orders|db.read"),
            ("duration", "10m"),
            ("csrf", &alice_csrf),
        ],
    );
    assert_eq!(anon_post.status(), 303);
    assert_eq!(count_mine(ALICE), 0);

    // CSRF: a missing or wrong token is refused and nothing is created.
    assert_eq!(ask(None, "no csrf").status(), 400);
    let bad = ask(Some("0000"), "wrong csrf");
    assert_eq!(bad.status(), 403);
    assert!(bad.text().unwrap().contains("CSRF check failed"));
    assert_eq!(count_mine(ALICE), 0);

    // The real form works, and what people type is escaped, never markup.
    let ok = ask(Some(&alice_csrf), "<script>alert(1)</script>");
    assert_eq!(ok.status(), 303, "{:?}", ok.text());
    let location = ok.headers()["location"].to_str().unwrap().to_owned();
    let page = portal.get(&alice, &location).text().unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert(1)"));
    assert_eq!(count_mine(ALICE), 1);

    // Wrong role: alice (requester) cannot see the inbox or use the kill switch.
    assert_eq!(portal.get(&alice, "/approvals").status(), 403);
    assert_eq!(portal.get(&alice, "/admin/audit").status(), 403);
    let kill = portal.post(
        Some(&alice),
        "/admin/kill",
        &[("csrf", &alice_csrf), ("principal", "bob"), ("reason", "x")],
    );
    assert_eq!(kill.status(), 403);
    assert_eq!(server.locks(ADMIN).as_array().unwrap().len(), 0);

    // Another user's request id: invisible and untouchable.
    // Longer than dave's on-call auto-approval allows, so it waits for an approver.
    let daves = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("30m")
            .reason("mine"),
    );
    let dave_id = daves["id"].as_str().unwrap();
    assert_eq!(
        portal.get(&alice, &format!("/requests/{dave_id}")).status(),
        404
    );
    let cancel = portal.post(
        Some(&alice),
        &format!("/requests/{dave_id}/cancel"),
        &[("csrf", &alice_csrf)],
    );
    assert_eq!(cancel.status(), 404);
    let activate = portal.post(
        Some(&alice),
        &format!("/requests/{dave_id}/activate"),
        &[("csrf", &alice_csrf)],
    );
    assert_eq!(activate.status(), 404);
    assert_eq!(server.show(DAVE, dave_id)["state"], "pending");

    // bob approves dave's request in the portal with his own CSRF token; alice's token does
    // not work in bob's session.
    let (bob, bob_csrf) = portal.sign_in(BOB);
    let cross = portal.post(
        Some(&bob),
        &format!("/requests/{dave_id}/approve"),
        &[("csrf", &alice_csrf)],
    );
    assert_eq!(cross.status(), 403);
    assert_eq!(server.show(DAVE, dave_id)["state"], "pending");
    let approve = portal.post(
        Some(&bob),
        &format!("/requests/{dave_id}/approve"),
        &[("csrf", &bob_csrf), ("comment", "ok")],
    );
    assert_eq!(approve.status(), 303);
    assert_eq!(server.show(DAVE, dave_id)["state"], "approved");

    // The one-time credential page is never cached.
    let (dave, dave_csrf) = portal.sign_in(DAVE);
    let shown = portal.post(
        Some(&dave),
        &format!("/requests/{dave_id}/activate"),
        &[("csrf", &dave_csrf)],
    );
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.headers()["cache-control"], "no-store");
    assert!(shown.text().unwrap().contains("postgres"));

    // Sign-out ends the session server-side.
    assert_eq!(
        portal
            .post(Some(&alice), "/logout", &[("csrf", &alice_csrf)])
            .status(),
        303
    );
    assert_eq!(portal.get(&alice, "/access").status(), 303);
    // A session cookie is not an API token, and an API token is not a session cookie.
    assert!(!server.run(&alice, Cmd::whoami()).status.success());
    assert_eq!(portal.get(ALICE, "/access").status(), 303);

    // Signing in again in the same browser ends the session it had.
    let (first, _) = portal.sign_in(BOB);
    let again = portal.submit_token(BOB, Some(&format!("brevet_session={first}")));
    assert_eq!(again.status(), 303);
    let second = cookie_value(&again, "brevet_session").unwrap();
    assert_ne!(second, first);
    assert_eq!(
        portal.get(&first, "/access").status(),
        303,
        "the old session ended"
    );
    assert_eq!(portal.get(&second, "/access").status(), 200);
    // The sign-in cookie is cleared on the path it was set on.
    let cleared = again
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("brevet_login="))
        .expect("the sign-in cookie is removed");
    assert!(
        cleared.contains("Path=/") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // A CLI session token cannot become a browser session through the token form.
    let cli_token = portal.submit_token("bvs_0123456789abcdef", None);
    assert_eq!(cli_token.headers()["location"], "/login?error=bad_token");
    assert!(cookie_value(&cli_token, "brevet_session").is_none());
}

/// Every other portal action over plain HTTP, checked against what the server recorded: cancel
/// one's own request, deny with a comment, activate, extend (policy decides again, and a refusal
/// is explained on the page), revoke now, unlock, and the audit browser's filters.
#[test]
fn portal_cancel_deny_extend_revoke_unlock_and_audit_filters() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let portal = Portal::new(&server.url);
    let (alice, alice_csrf) = portal.sign_in(ALICE);
    let (bob, bob_csrf) = portal.sign_in(BOB);
    let (dave, dave_csrf) = portal.sign_in(DAVE);
    let (admin, admin_csrf) = portal.sign_in(ADMIN);
    let ask = |session: &str, csrf: &str, duration: &str, reason: &str| -> String {
        let r = portal.post(
            Some(session),
            "/request",
            &[
                ("csrf", csrf),
                ("choice", "postgres:orders|db.read"),
                ("duration", duration),
                ("reason", reason),
            ],
        );
        assert_eq!(r.status(), 303, "{:?}", r.text());
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        location.trim_start_matches("/requests/").to_owned()
    };
    let state_of = |id: &str| server.show(ADMIN, id)["state"].clone();

    // The requester withdraws a pending request.
    let first = ask(&alice, &alice_csrf, "10m", "changed my mind");
    assert_eq!(state_of(&first), "pending");
    let r = portal.post(
        Some(&alice),
        &format!("/requests/{first}/cancel"),
        &[("csrf", &alice_csrf)],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(state_of(&first), "cancelled");

    // An approver denies with a comment; the requester sees the decision and the comment.
    let second = ask(&alice, &alice_csrf, "10m", "please");
    // The inbox holds what approval policy lets the viewer decide: bob (a lead) sees it; the
    // admin, whom no approve policy names, does not; alice never sees her own.
    let card = format!("data-request=\"{second}\"");
    assert!(portal
        .get(&bob, "/approvals")
        .text()
        .unwrap()
        .contains(&card));
    let admin_inbox = portal.get(&admin, "/approvals");
    assert_eq!(admin_inbox.status(), 200);
    let admin_inbox = admin_inbox.text().unwrap();
    assert!(admin_inbox.contains("inbox-empty"), "{admin_inbox}");
    assert!(!admin_inbox.contains(&card));
    let r = portal.post(
        Some(&bob),
        &format!("/requests/{second}/deny"),
        &[("csrf", &bob_csrf), ("comment", "use the replica")],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(state_of(&second), "denied");
    let page = portal
        .get(&alice, &format!("/requests/{second}"))
        .text()
        .unwrap();
    assert!(page.contains("denied"), "{page}");
    assert!(page.contains("use the replica"), "{page}");

    // dave's on-call rule approves 5m at once; he activates, extends and revokes in the portal.
    let third = ask(&dave, &dave_csrf, "5m", "INC-9");
    assert_eq!(state_of(&third), "approved");
    let shown = portal.post(
        Some(&dave),
        &format!("/requests/{third}/activate"),
        &[("csrf", &dave_csrf)],
    );
    assert_eq!(shown.status(), 200);
    // The connection string revealed on the page works while the grant is active.
    let html = shown.text().unwrap();
    let at = html
        .find("id=\"credential\">")
        .expect("the credential on the page")
        + 16;
    let cred = html[at..].split('<').next().unwrap().replace("&amp;", "&");
    assert!(cred.starts_with("postgres://"), "{cred}");
    assert_eq!(
        psql(&cred, "SELECT 1").expect("the revealed credential connects"),
        "1"
    );
    let before = server.show(DAVE, &third)["expires_at"].clone();
    let access = portal.get(&dave, "/access").text().unwrap();
    assert!(
        access.contains(&format!("data-grant=\"{third}\"")),
        "{access}"
    );
    // Past the rule's 10m maximum: refused with the reason, nothing changes.
    let refused = portal.post(
        Some(&dave),
        &format!("/grants/{third}/extend"),
        &[("csrf", &dave_csrf), ("duration", "2h")],
    );
    assert_eq!(refused.status(), 403);
    assert!(refused.text().unwrap().contains("maximum"));
    assert_eq!(server.show(DAVE, &third)["expires_at"], before);
    let extended = portal.post(
        Some(&dave),
        &format!("/grants/{third}/extend"),
        &[("csrf", &dave_csrf), ("duration", "5m")],
    );
    assert_eq!(extended.status(), 303);
    let after = server.show(DAVE, &third);
    assert_ne!(after["expires_at"], before);
    assert_eq!(after["extensions_applied"], 1);
    // alice cannot revoke dave's grant; dave can.
    let foreign = portal.post(
        Some(&alice),
        &format!("/grants/{third}/revoke"),
        &[("csrf", &alice_csrf)],
    );
    assert_eq!(foreign.status(), 404);
    assert_eq!(state_of(&third), "active");
    let revoked = portal.post(
        Some(&dave),
        &format!("/grants/{third}/revoke"),
        &[("csrf", &dave_csrf)],
    );
    assert_eq!(revoked.status(), 303);
    assert_eq!(state_of(&third), "revoked");
    assert!(
        psql(&cred, "SELECT 1").is_err(),
        "the credential stops working when revoked in the portal"
    );
    assert!(!portal
        .get(&dave, "/access")
        .text()
        .unwrap()
        .contains(&format!("data-grant=\"{third}\"")));

    // The admin locks and unlocks in the portal.
    let k = portal.post(
        Some(&admin),
        "/admin/kill",
        &[
            ("csrf", &admin_csrf),
            // Principal ids are case-insensitive: this is carol.
            ("principal", "Carol"),
            ("reason", "drill"),
        ],
    );
    assert_eq!(k.status(), 200);
    let locks = server.locks(ADMIN);
    assert_eq!(locks.as_array().unwrap().len(), 1);
    assert_eq!(locks[0]["principal"], "carol", "{locks}");
    let fourth = ask(&alice, &alice_csrf, "10m", "while carol is locked");
    let refused = server.run(CAROL, Cmd::approve(&fourth));
    assert!(
        stderr(&refused).contains("locked"),
        "carol is locked: {}",
        stderr(&refused)
    );
    let u = portal.post(
        Some(&admin),
        "/admin/unlock",
        &[("csrf", &admin_csrf), ("principal", "CAROL")],
    );
    assert_eq!(u.status(), 303);
    assert_eq!(server.locks(ADMIN).as_array().unwrap().len(), 0);

    // Audit filters: by person, and by time (nothing before the epoch of this test, nothing
    // after tomorrow); a malformed date is explained.
    let by_dave = portal
        .get(&admin, "/admin/audit?person=dave")
        .text()
        .unwrap();
    assert!(by_dave.contains("Chain verified"), "{by_dave}");
    assert!(by_dave.contains("grant_revoked") && by_dave.contains("grant_extended"));
    assert!(
        !by_dave.contains("request_denied"),
        "alice's events are filtered out"
    );
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let none = portal.get(&admin, &format!("/admin/audit?since={tomorrow}"));
    assert_eq!(none.status(), 200);
    let none = none.text().unwrap();
    assert!(
        none.contains("id=\"events\"") && !none.contains("request_created"),
        "{none}"
    );
    // `until` a day means through the end of that day.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let through_today = portal
        .get(&admin, &format!("/admin/audit?until={today}"))
        .text()
        .unwrap();
    assert!(through_today.contains("request_created"), "{through_today}");
    let bad = portal.get(&admin, "/admin/audit?since=yesterday");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("since"));
}

/// A role taken away in the config is gone from live sessions as soon as the server runs with
/// that config — sessions keep only what sign-in proved, and the config is applied on every
/// request — instead of lasting until the session ends.
#[test]
fn a_role_removed_from_the_config_is_gone_from_live_sessions() {
    let world = World::new(StoreKind::Sqlite);
    let mut server = world.start();
    let portal = Portal::new(&server.url);
    let (bob, _) = portal.sign_in(BOB);
    assert_eq!(portal.get(&bob, "/approvals").status(), 200);

    // bob is no longer an approver.
    assert_eq!(
        world
            .config
            .get("principals.1.id")
            .and_then(toml::Value::as_str),
        Some("bob")
    );
    let edited = world.config.clone().set(
        "principals.1.roles",
        toml::Value::Array(vec!["requester".into()]),
    );
    std::fs::write(&server.config, edited.text()).unwrap();
    server.restart(&world.env_refs());

    let portal = Portal::new(&server.url);
    assert_eq!(portal.get(&bob, "/approvals").status(), 403);
    assert_eq!(
        portal.get(&bob, "/access").status(),
        200,
        "still signed in, as a requester"
    );
}
