//! Bad input through the binary: a config the server refuses at start, and what the CLI makes of
//! a refused request. The API's answers to bad input are tested in process in brevet-server's
//! `tests/api`.

use std::process::Command;

use crate::common::*;

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

/// What the CLI makes of a refusal: the server's message on stderr and a non-zero exit, 2 when
/// policy refused. (Which inputs are refused, with which message, and that nothing changes is
/// tested in process in brevet-server's `tests/api`.)
#[test]
fn a_refused_request_exits_non_zero_with_the_servers_message() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let out = server.cli(
        ALICE,
        &[
            "request",
            "db.raed",
            "--resource",
            "postgres:orders",
            "--for",
            "10m",
            "--reason",
            "x",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "unknown profile `db.raed` for `postgres:orders`; it offers: db.owner, db.read, db.write"
        ),
        "{}",
        stderr(&out)
    );

    // Over the policy's maximum: refused by policy (exit 2).
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
    assert!(world.brevet_roles().is_empty());
}
