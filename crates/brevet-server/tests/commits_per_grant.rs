//! Regression guard for throughput (issue #15 item 6), counted — not timed, so it cannot flake —
//! on a real SQLite store with the in-memory provider, for the hot paths: an auto-approved
//! request, its activation with the credential and its revocation.
//!
//! Commits: each needs a durable write (an fsync, shared by group commit). A request makes 1, an
//! activation 2 (the intent with the lease and the binding lock; the outcome with the
//! credential's audit event, giving both back), a revocation 3 (the start with the lease, the
//! binding lock, the outcome giving both back). Before they were counted, an activation made 7
//! and a revocation 6.
//!
//! Statements: each is a call into the database driver — on SQLite a message to its worker
//! thread and an answer back, on PostgreSQL a round trip; on SQLite the work is mostly SQLite's
//! own, the hand-off a few percent of a grant's CPU (docs/benchmarks.md, the fourth session). Here
//! every write is alone in its physical transaction, which then costs two calls: one opens it
//! (`BEGIN`, the audit head's read, the savepoint), one closes it (the release, the head's
//! write-back, `COMMIT`). A request makes 5 calls in all, an activation 12, a revocation 14.
//! Before the writer kept the audit head and the lease was folded into the request's update
//! (2026-12-07) they were 12, 28 and 32; before a physical transaction was opened and closed in
//! one call each, 9, 21 and 26; before the intent's own write checked the kill switch (instead
//! of a read before it), an activation made 13. That writes sharing a physical transaction share these calls is
//! checked in the store's `writer::tests`.
//!
//! A change that adds a commit or a statement to these paths fails here and must say why in this
//! file.

#[path = "../benches/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};

use tracing_subscriber::{filter::Targets, layer::SubscriberExt, Layer};

/// The statements the store ran, as sqlx reports each one (target `sqlx::query`; its SQL as
/// `db.statement`, or as `summary` when that is all of it): one per call into the driver, which
/// on SQLite is a message to its worker thread and an answer back.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Sql {
            summary: String,
            statement: String,
        }
        impl tracing::field::Visit for Sql {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "summary" => value.clone_into(&mut self.summary),
                    "db.statement" => value.trim().clone_into(&mut self.statement),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut sql = Sql::default();
        event.record(&mut sql);
        let sql = if sql.statement.is_empty() {
            sql.summary
        } else {
            sql.statement
        };
        self.0.lock().unwrap().push(sql);
    }
}

impl Statements {
    /// Asserts that what ran since the last call was `calls` per operation for `ops` operations,
    /// and that each of the `commits` physical transactions was opened in one of them and closed
    /// in another.
    fn assert_per_op(&self, calls: usize, ops: usize, commits: u64, what: &str) {
        let all = std::mem::take(&mut *self.0.lock().unwrap());
        assert_eq!(all.len(), calls * ops, "calls per operation for {what}");
        let opened = all.iter().filter(|s| s.starts_with("BEGIN")).count();
        let closed = all.iter().filter(|s| s.ends_with("COMMIT")).count();
        assert_eq!(
            (opened as u64, closed as u64),
            (commits, commits),
            "each physical transaction opened in one call and closed in one: {all:#?}"
        );
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

use brevet_core::{Principal, PrincipalId, Role};
use brevet_server::AccessAsk;

fn ask(i: usize) -> AccessAsk {
    AccessAsk {
        resource: "mem:db0".into(),
        profile: "db.read".into(),
        duration: "10m".into(),
        reason: Some(format!("guard {i}")),
        ticket: None,
    }
}

#[tokio::test]
async fn request_activation_and_revocation_commit_a_fixed_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let users = 5;
    let broker = support::broker(&url, 1, support::principals(users)).await;
    let who = |i: usize| Principal {
        id: PrincipalId::parse(&format!("user{i}")).unwrap(),
        groups: Default::default(),
        roles: [Role::Requester].into(),
    };
    let store = broker.store().clone();
    const GRANTS: usize = 20;
    let statements = Statements::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(
            statements
                .clone()
                .with_filter(Targets::new().with_target("sqlx::query", tracing::Level::TRACE)),
        ),
    )
    .unwrap();
    // A first grant, not counted: the store's first connections and statements are set up.
    let first = broker.create(&who(0), ask(GRANTS)).await.unwrap().id;
    broker.activate(&who(0), first, None).await.unwrap();
    broker.revoke(&who(0), first, None).await.unwrap();

    let before = store.commits();
    statements.clear();
    let mut ids = Vec::new();
    for i in 0..GRANTS {
        ids.push(broker.create(&who(i % users), ask(i)).await.unwrap().id);
    }
    let created = store.commits() - before;
    statements.assert_per_op(
        5,
        GRANTS,
        created,
        "a request: the kill-switch lock read; open; the request, its event; close",
    );
    assert_eq!(
        created, GRANTS as u64,
        "one commit per auto-approved request"
    );

    let before = store.commits();
    for (i, id) in ids.iter().enumerate() {
        let a = broker.activate(&who(i % users), *id, None).await.unwrap();
        assert_eq!(a.request.state.to_string(), "active");
    }
    let activated = store.commits() - before;
    statements.assert_per_op(
        12,
        GRANTS,
        activated,
        "an activation: a read of the request; the intent (open, the request with its lease unless the kill switch locks the requester, the binding lock, the event, close); the binding's other holders; the outcome (the same five)",
    );
    assert_eq!(
        activated,
        2 * GRANTS as u64,
        "two commits per activation (intent; outcome with the credential)"
    );

    // Revocation: the start (taking the lease), the binding lock, the outcome (giving both back).
    let before = store.commits();
    for (i, id) in ids.iter().enumerate() {
        let r = broker.revoke(&who(i % users), *id, None).await.unwrap();
        assert_eq!(r.state.to_string(), "revoked");
    }
    let revoked = store.commits() - before;
    statements.assert_per_op(
        14,
        GRANTS,
        revoked,
        "a revocation: a read of the request; the start (open, the request with its lease, the event, close); the binding lock (open, INSERT, close); the binding's other holders; the outcome (open, the request giving its lease back, the binding lock given back, the event, close)",
    );
    assert_eq!(
        revoked,
        3 * GRANTS as u64,
        "three commits per revocation (start; binding lock; outcome)"
    );
}
