//! Bad input through the binary: a config the server refuses at start, and what the CLI makes of
//! a refused request. The API's answers to bad input are tested in process in brevet-server's
//! `tests/api`.

use std::process::Command;

use crate::common::*;

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let world = World::new(StoreKind::Sqlite);
    let base = || world.config.clone();
    let cases = [
        (
            base().set("server.tick", "soon"),
            "`soon` is not a duration",
        ),
        (base().set("server.listen", "nowhere"), "server.listen"),
        (
            base().rename("providers.postgres.role_prefix", "role_prefx"),
            "unknown field `role_prefx`",
        ),
        (
            base().set("server.client_ip_header", "x forwarded for"),
            "server.client_ip_header",
        ),
        (
            base().rename("resources.\"postgres:orders\"", "pg:orders"),
            "no provider `pg` is configured",
        ),
        (
            base().set(
                "principals.3.roles",
                toml::Value::Array(vec!["root".into()]),
            ),
            "principals[3].roles",
        ),
        // Issue #9 item 9: on 879dbb0 a zero interval was accepted and panicked the scheduler.
        (
            base().set("server.reconcile_every", "0s"),
            "reconcile_every = \"0s\"",
        ),
        (
            base().set("server.reconcile_every", "0s"),
            "or \"off\" to turn it off",
        ),
        (
            base().set("server.provider_timeout", "0s"),
            "is zero; write a duration longer than zero",
        ),
        // The access language: an unknown resource kind, a permission not in the catalog.
        (
            base().merge("[access.x]\nkind = \"objet-storage\"\nverbs = [\"read\"]"),
            "unknown resource kind `objet-storage`",
        ),
        (
            base().merge(
                "[access.x]\nkind = \"secret\"\nverbs = [\"read\"]\nplane = \"data\"\ngcp.add = [\"secretmanager.versions.acess\"]",
            ),
            "access.\"x\".gcp.add[0]",
        ),
    ];
    for (config, expected) in cases {
        let out = world.refused_start(&config);
        assert!(
            stderr(&out).contains(expected),
            "expected `{expected}` in: {}",
            stderr(&out)
        );
    }
    // A policy that does not validate against the schema names the policy.
    let out = world.refused_start_with_policy(
        &world.config,
        "@id(\"typo\") permit (principal, action == Action::\"request\", resource) when { context.profil == \"x\" };",
    );
    assert!(stderr(&out).contains("policy `typo`"), "{}", stderr(&out));

    // A config file that is not there: its path and the system's reason, once (the reason was
    // printed twice, as the message and again as its "caused by").
    let dir = tempfile::tempdir().unwrap();
    let out = output_within(
        Command::new(BIN)
            .args(["server", "--config", "nowhere.toml"])
            .current_dir(dir.path()),
        std::time::Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot read config file nowhere.toml: No such file or directory"),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

/// What the CLI makes of a refusal: the server's message on stderr and a non-zero exit, 2 when
/// policy refused. (Which inputs are refused, with which message, and that nothing changes is
/// tested in process in brevet-server's `tests/api`.)
#[test]
fn a_refused_request_exits_non_zero_with_the_servers_message() {
    let world = World::new(StoreKind::Sqlite);
    let server = world.start();
    let out = server.run(
        ALICE,
        Cmd::request(
            &Ask::new("db.raed", "postgres:orders")
                .lasting("10m")
                .reason("x"),
        ),
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
    let out = server.run(
        ALICE,
        Cmd::request(
            &Ask::new("db.read", "postgres:orders")
                .lasting("5h")
                .reason("x"),
        ),
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
