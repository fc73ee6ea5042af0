//! Bad input gets a clear error naming what is wrong and how to fix it, and changes nothing.

use std::process::Command;

use crate::common::*;

fn requests_of(server: &Server, token: &str) -> usize {
    server
        .cli_json(token, &["requests"])
        .as_array()
        .unwrap()
        .len()
}

fn audit_len(server: &Server) -> usize {
    stdout(&server.cli(ADMIN, &["audit", "export"]))
        .lines()
        .count()
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let world = World::new(StoreKind::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            world.config.replace("tick = \"200ms\"", "tick = \"soon\""),
            "`soon` is not a duration",
        ),
        (
            world
                .config
                .replace("listen = \"127.0.0.1:0\"", "listen = \"nowhere\""),
            "server.listen",
        ),
        (
            world.config.replace("role_prefix", "role_prefx"),
            "unknown field `role_prefx`",
        ),
        (
            world.config.replace(
                "listen = \"127.0.0.1:0\"",
                "listen = \"127.0.0.1:0\"\nclient_ip_header = \"x forwarded for\"",
            ),
            "server.client_ip_header",
        ),
        (
            world.config.replace(
                "[resources.\"postgres:orders\"]",
                "[resources.\"pg:orders\"]",
            ),
            "no provider `pg` is configured",
        ),
        (
            world
                .config
                .replace("roles = [\"admin\"]", "roles = [\"root\"]"),
            "principals[3].roles",
        ),
        // Issue #9 item 9: on 879dbb0 a zero interval was accepted and panicked the scheduler.
        (
            world
                .config
                .replace("reconcile_every = \"2s\"", "reconcile_every = \"0s\""),
            "reconcile_every = \"0s\"",
        ),
        (
            world
                .config
                .replace("reconcile_every = \"2s\"", "reconcile_every = \"0s\""),
            "or \"off\" to turn it off",
        ),
        (
            world
                .config
                .replace("provider_timeout = \"2s\"", "provider_timeout = \"0s\""),
            "is zero; write a duration longer than zero",
        ),
    ];
    for (config, expected) in cases {
        std::fs::write(dir.path().join("brevet.toml"), &config).unwrap();
        std::fs::write(dir.path().join("policy.cedar"), POLICY).unwrap();
        let out = Command::new(BIN)
            .args(["server", "--config", "brevet.toml"])
            .current_dir(dir.path())
            .envs(world.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(expected),
            "expected `{expected}` in: {}",
            stderr(&out)
        );
        assert!(
            !dir.path().join("store.db").exists(),
            "a refused config must not create the store"
        );
    }
    // A policy that does not validate against the schema names the policy.
    std::fs::write(dir.path().join("brevet.toml"), &world.config).unwrap();
    std::fs::write(dir.path().join("policy.cedar"), "@id(\"typo\") permit (principal, action == Action::\"request\", resource) when { context.profil == \"x\" };").unwrap();
    let out = Command::new(BIN)
        .args(["server", "--config", "brevet.toml"])
        .current_dir(dir.path())
        .envs(world.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("policy `typo`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();

    let cases: [(&[&str], &str); 5] = [
        (&["request", "db.raed", "--resource", "postgres:orders", "--for", "10m", "--reason", "x"], "unknown profile `db.raed` for `postgres:orders`; it offers: db.owner, db.read, db.write"),
        (&["request", "db.read", "--resource", "postgres:nope", "--for", "10m", "--reason", "x"], "unknown resource `postgres:nope`; configured resources: postgres:orders"),
        (&["request", "db.read", "--resource", "orders", "--for", "10m", "--reason", "x"], "expected `<provider>:<name>`"),
        (&["request", "db.read", "--resource", "postgres:orders", "--for", "forever", "--reason", "x"], "write it like `30m`"),
        (&["request", "db.read", "--resource", "postgres:orders", "--for", "10m"], "requires a reason"),
    ];
    for (args, expected) in cases {
        let out = server.cli(ALICE, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "expected `{expected}` in: {}",
            stderr(&out)
        );
    }
    assert_eq!(requests_of(&server, ALICE), 0);

    // Over the policy's maximum: refused by policy (exit 2), recorded as a refusal, nothing else.
    let before = audit_len(&server);
    let out = server.cli(
        ALICE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "5h",
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "duration 5h is over the 1h maximum set by policy `dba-read`; ask for 1h or less"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(requests_of(&server, ALICE), 0);
    let export = stdout(&server.cli(ADMIN, &["audit", "export"]));
    assert_eq!(export.lines().count(), before + 1);
    assert!(export.lines().last().unwrap().contains("request_refused"));
    assert!(world.brevet_roles().is_empty());
}

#[test]
fn malformed_http_is_refused_cleanly() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let post = |body: &'static str| {
            http.post(format!("{}/v1/requests", server.url))
                .bearer_auth(ALICE)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let r = post("{not json").await.unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert!(v["error"]["message"].as_str().unwrap().contains("request body is not valid"), "{v}");

        let r = post(r#"{"profile":"db.read","resource":"postgres:orders","duration":"1m","reason":"x","admin":true}"#).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("unknown field `admin`"));

        let r = http.get(format!("{}/v1/requests", server.url)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("Authorization: Bearer"));
        let r = http.get(format!("{}/v1/requests", server.url)).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401);

        let r = http.get(format!("{}/v1/requests/not-a-uuid", server.url)).bearer_auth(ALICE).send().await.unwrap();
        assert_eq!(r.status(), 400);

        // Its own connection: the server closes a connection whose oversized body it refused.
        let big = "x".repeat(100_000);
        let r = reqwest::Client::new().post(format!("{}/v1/requests", server.url)).bearer_auth(ALICE).header("content-type", "application/json").body(big).send().await.unwrap();
        assert_eq!(r.status(), 413);

        let spec: serde_json::Value = http.get(format!("{}/v1/openapi.json", server.url)).send().await.unwrap().json().await.unwrap();
        assert!(spec["paths"]["/v1/requests/{id}/approve"]["post"].is_object());
    });
    assert_eq!(requests_of(&server, ALICE), 0);
    assert_eq!(audit_len(&server), 0);
}

#[test]
fn others_requests_are_invisible_and_untouchable() {
    // Erin approves, but no approval policy lets her decide database requests.
    const ERIN: &str = "test-erin-token";
    let erin = format!(
        "[[principals]]\nid = \"erin\"\ngroups = [\"sre\"]\nroles = [\"approver\"]\ntoken_sha256 = \"{}\"\n",
        sha256_hex(ERIN)
    );
    let world = World::build(StoreKind::Sqlite, "", &erin, &[]);
    let server = world.start();
    let r = server.cli_json(
        ALICE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "x",
        ],
    );
    let id = r["id"].as_str().unwrap();
    // Dave is a requester, not an approver: alice's request does not exist for him.
    for args in [
        vec!["show", id],
        vec!["cancel", id],
        vec!["activate", id],
        vec!["revoke", id],
    ] {
        let out = server.cli(DAVE, &args);
        assert!(
            stderr(&out).contains("no request"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // An approver whom policy does not let decide it does not see it either, singly or listed.
    for args in [vec!["show", id], vec!["approve", id]] {
        let out = server.cli(ERIN, &args);
        assert!(
            stderr(&out).contains("no request"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let listed = server.cli_json(ERIN, &["requests", "--pending"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    let listed = server.cli_json(BOB, &["requests", "--pending"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // An approver may see it but cannot activate or cancel it for her.
    assert!(stderr(&server.cli(BOB, &["cancel", id])).contains("only the requester"));
    assert_eq!(server.cli_json(ALICE, &["show", id])["state"], "pending");
}

/// Review finding 15: on 879dbb0 a revoke reason was taken as sent (64 KiB, control
/// characters), into the audit log, DMs and terminals. Now it is checked like every other
/// free-text field, and a refused revoke changes nothing.
#[test]
fn a_revoke_reason_with_control_characters_is_refused() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let r = server.cli_json(
        DAVE,
        &[
            "request",
            "db.read",
            "--resource",
            "postgres:orders",
            "--for",
            "5m",
            "--reason",
            "x",
        ],
    );
    let id = r["id"].as_str().unwrap();
    server.cli_json(DAVE, &["activate", id]);
    let (status, body) = api_call(
        &server,
        DAVE,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        Some(serde_json::json!({"reason": "done\u{1b}[2J\u{1b}[31mhacked"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("control characters"), "{body}");
    assert_eq!(server.cli_json(DAVE, &["show", id])["state"], "active");
}

/// Issue #9 item 11 (review finding 15). On 879dbb0 nothing bounded how many requests one
/// principal could create (each is audited and may notify approvers), and `/metrics` was open to
/// anyone. Now `server.requests_per_minute` refuses the excess with 429 and creates nothing, for
/// that principal only; and with `server.metrics_token` set, `/metrics` answers only to it.
#[test]
fn request_creation_is_limited_per_principal_and_metrics_can_need_a_token() {
    const METRICS_TOKEN: &str = "metrics-token-0123456789";
    let world = World::build(
        StoreKind::Sqlite,
        "requests_per_minute = 3\nmetrics_token = { env = \"BREVET_TEST_METRICS_TOKEN\" }",
        "",
        &[("BREVET_TEST_METRICS_TOKEN", METRICS_TOKEN)],
    );
    let server = world.start();
    let ask = serde_json::json!({
        "resource": "postgres:orders", "profile": "db.read", "duration": "5m", "reason": "x"
    });
    for _ in 0..3 {
        let (status, body) = api_call(&server, DAVE, "POST", "/v1/requests", Some(ask.clone()));
        assert_eq!(status, 201, "{body}");
    }
    let before = audit_len(&server);
    let (status, body) = api_call(&server, DAVE, "POST", "/v1/requests", Some(ask.clone()));
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("rate_limited") && body.contains("server.requests_per_minute"),
        "{body}"
    );
    assert_eq!(
        requests_of(&server, DAVE),
        3,
        "the refused one was not created"
    );
    assert_eq!(audit_len(&server), before, "and not audited as a request");
    // Another principal is not held back by dave's burst.
    let (status, body) = api_call(&server, ALICE, "POST", "/v1/requests", Some(ask));
    assert_eq!(status, 201, "{body}");

    let metrics = |token: Option<&str>| {
        let mut req = reqwest::blocking::Client::new().get(format!("{}/metrics", server.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(metrics(None).0, 401);
    assert_eq!(metrics(Some("metrics-token-wrong-0000")).0, 401);
    assert_eq!(
        metrics(Some(ADMIN)).0,
        401,
        "an API token is not the metrics token"
    );
    let (status, body) = metrics(Some(METRICS_TOKEN));
    assert_eq!(status, 200);
    assert!(body.contains("brevet_"), "{body}");
}
