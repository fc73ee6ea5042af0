//! Regression guard for throughput (issue #15 item 6): what bounds grants per second on one
//! store is the number of durable commits each one makes (an fsync each on SQLite; the disk here
//! did 7,449 a second when docs/benchmarks.md was measured). This counts them — not wall time,
//! so it cannot flake — for the hot paths, on a real SQLite store with the in-memory provider: an
//! auto-approved request (1), its activation with the credential (2: the intent with the lease
//! and the binding lock, the outcome with the credential's audit event giving both back) and its
//! revocation (3: the start with the lease, the binding lock, the outcome giving both back).
//! Before this was counted, an activation made 7 commits and a revocation 6. A change that adds a
//! commit to these paths fails here and must say why in this file.

#[path = "../benches/support/mod.rs"]
mod support;

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

    let before = store.commits();
    let mut ids = Vec::new();
    for i in 0..GRANTS {
        ids.push(broker.create(&who(i % users), ask(i)).await.unwrap().id);
    }
    let created = store.commits() - before;
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
    assert_eq!(
        revoked,
        3 * GRANTS as u64,
        "three commits per revocation (start; binding lock; outcome)"
    );
}
