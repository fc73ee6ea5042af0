//! Group commit (crates/brevet-store/src/writer.rs), on both real backends: concurrent write
//! transactions share one fsync, and yet each behaves as if it had committed alone — durable
//! (visible to another connection) when its commit returns, written entirely or not at all, and
//! a failed one takes nothing of the others with it. What is checked is read back through other
//! connections, and through a second store on the same database as another process (a replica)
//! would. On PostgreSQL, replicas batching at once must never deadlock on each other's rows.

use std::time::Duration;

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{
    GrantDuration, NewRequest, PrincipalId, ProfileName, Request, RequestKind, RequestState,
    ResourceId,
};
use brevet_store::{Hold, Step, Store, StoreError};
use brevet_testkit::TestDb;
use chrono::Utc;

fn approved(who: &str, resource: &str) -> Request {
    Request::new(
        NewRequest {
            kind: RequestKind::Access,
            requester: PrincipalId::parse(who).unwrap(),
            resource: ResourceId::parse(resource).unwrap(),
            profile: ProfileName::parse("db.read").unwrap(),
            duration: GrantDuration::parse("1h").unwrap(),
            reason: Some("r".into()),
            ticket: None,
            approvals_required: 0,
            policy_rule: "p".into(),
            max_extensions: 0,
            approve_within: Duration::from_secs(60),
            activate_within: Duration::from_secs(60),
        },
        Utc::now(),
    )
}

fn audit(r: &Request, what: &str) -> Vec<AuditDraft> {
    vec![AuditDraft::new(
        EventKind::ActivationStarted,
        "test",
        Some(r.id.to_string()),
        serde_json::json!({ "what": what }),
    )]
}

async fn verify_chain(store: &Store) -> i64 {
    let (head, _) = store.audit_head().await.unwrap();
    let mut v = brevet_audit::Verifier::new();
    let mut after = 0;
    while after < head {
        let page = store.audit_page(after, 1000).await.unwrap();
        after = page.last().unwrap().seq;
        for e in &page {
            v.push(e);
        }
    }
    assert!(v.finish(None).ok, "the audit chain verifies");
    head
}

brevet_testkit::on_both_stores!(concurrent_writes_share_fsyncs:
    sqlite_concurrent_writes_share_fsyncs_and_are_durable_when_they_return,
    postgres_concurrent_writes_share_fsyncs_and_are_durable_when_they_return);
brevet_testkit::on_both_stores!(a_failed_write_is_alone:
    sqlite_a_failed_write_takes_nothing_of_its_batch_with_it,
    postgres_a_failed_write_takes_nothing_of_its_batch_with_it);
brevet_testkit::on_both_stores!(no_lock_left:
    sqlite_a_failed_write_leaves_no_lock_for_other_processes,
    postgres_a_failed_write_leaves_no_lock_for_other_replicas);

/// Many writers at once: fewer fsyncs than commits, and each write is visible to a *reader*
/// connection the moment its commit returns — so no commit returned before its flush.
async fn concurrent_writes_share_fsyncs(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let (commits, flushes) = (store.commits(), store.flushes());
    let writes = (0..400).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let r = approved(&format!("user{i}"), &format!("postgres:db{i}"));
            let stored = store.insert_request(&r, audit(&r, "insert")).await.unwrap();
            // Read on another connection right after the commit returned.
            let seen = store.get_request(r.id).await.unwrap();
            assert_eq!(
                seen.map(|s| s.version),
                Some(stored.version),
                "a returned commit is visible to other connections"
            );
        })
    });
    for w in futures::future::join_all(writes).await {
        w.unwrap();
    }
    let (commits, flushes) = (store.commits() - commits, store.flushes() - flushes);
    assert_eq!(commits, 400);
    assert!(
        flushes < commits,
        "concurrent commits share fsyncs: {flushes} flushes for {commits} commits"
    );
    assert_eq!(verify_chain(&store).await, 400);

    // And they are in the database: a second store (another process) sees every one of them.
    let other = Store::connect(url).await.unwrap();
    assert_eq!(other.audit_head().await.unwrap().0, 400);
}

/// A write that fails part-way (its lease was taken, then the binding turned out busy) leaves
/// nothing behind, while the writes committed in the same batch around it all stay.
async fn a_failed_write_is_alone(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let lease = Duration::from_secs(60);
    let take = |owner| Hold::Take {
        owner,
        now: Utc::now(),
        lease,
    };
    // One binding held by "holder"; 100 requests on it will fail to take it.
    let first = store
        .insert_request(&approved("alice", "postgres:shared"), vec![])
        .await
        .unwrap();
    let mut held = first.clone();
    held.start_activation(Utc::now()).unwrap();
    store
        .write_step(Step {
            request: &held,
            lease: take("holder"),
            binding_lock: take("holder"),
            audit: vec![],
            unless_locked: None,
        })
        .await
        .unwrap();
    let mut losers = Vec::new();
    for _ in 0..100 {
        losers.push(
            store
                .insert_request(&approved("alice", "postgres:shared"), vec![])
                .await
                .unwrap(),
        );
    }
    let head = store.audit_head().await.unwrap().0;

    // Interleave: 100 steps that must fail (after taking their lease) and 100 audit appends
    // that must succeed, all at once.
    let mut tasks = Vec::new();
    for (i, loser) in losers.iter().enumerate() {
        let (s, loser) = (store.clone(), loser.clone());
        tasks.push(tokio::spawn(async move {
            let store = s;
            let mut r = loser.clone();
            r.start_activation(Utc::now()).unwrap();
            let owner = format!("op-{i}");
            let busy = store
                .write_step(Step {
                    request: &r,
                    lease: Hold::Take {
                        owner: &owner,
                        now: Utc::now(),
                        lease,
                    },
                    binding_lock: Hold::Take {
                        owner: &owner,
                        now: Utc::now(),
                        lease,
                    },
                    audit: audit(&r, "must not be written"),
                    unless_locked: None,
                })
                .await;
            assert!(
                matches!(&busy, Err(StoreError::Busy(what)) if what.starts_with("binding")),
                "{busy:?}"
            );
        }));
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(vec![AuditDraft::new(
                    EventKind::SessionStarted,
                    "bob",
                    None,
                    serde_json::json!({ "n": i }),
                )])
                .await
                .unwrap();
        }));
    }
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    // Every success is there, no failure left a trace: the chain grew by exactly 100 events,
    // none of them from a failed step, and no failed step kept its lease or changed its request.
    assert_eq!(verify_chain(&store).await, head + 100);
    for e in store.audit_page(head, 1000).await.unwrap() {
        assert!(!e.data.contains("must not be written"), "{e:?}");
    }
    for loser in &losers {
        let now = store.get_request(loser.id).await.unwrap().unwrap();
        assert_eq!(now.state, RequestState::Approved);
        assert_eq!(now.version, loser.version);
        assert!(
            store
                .claim(loser.id, "checker", Utc::now(), lease)
                .await
                .unwrap(),
            "the failed step's lease was rolled back"
        );
    }
}

/// A write that failed must not leave the store's write lock held (SQLite's, or on PostgreSQL
/// the audit head's row lock): another process on the same database can write at once (SQLite's
/// busy timeout is 5 s, so a lock left open would fail it; PostgreSQL would make it wait).
async fn no_lock_left(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let r = store
        .insert_request(&approved("alice", "postgres:orders"), vec![])
        .await
        .unwrap();
    // A stale copy: the write fails with a conflict after its transaction began.
    let mut stale = r.clone();
    stale.version -= 1;
    stale.reason = Some("stale".into());
    let conflict = store.update_request(&stale, audit(&stale, "stale")).await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "{conflict:?}"
    );

    let other = Store::connect(url).await.unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(3),
        other.append_audit(audit(&r, "from another process")),
    )
    .await
    .expect("the write lock was given back")
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    // The first store still writes, after the other process did.
    store.append_audit(audit(&r, "again")).await.unwrap();
    assert_eq!(verify_chain(&store).await, 2);
}

/// Two PostgreSQL replicas batching at once, on the same few requests: each takes and gives back
/// leases (row locks, no audit) and appends to the audit chain (its head's row lock), in both
/// orders. Every write succeeds (a lease another holds is an answer, not an error), the chain
/// stays whole, and both replicas' batches shared fsyncs. Were a replica's batch to lock a row
/// and then wait for the head while the other's held the head and waited for that row,
/// PostgreSQL would fail a write with "deadlock detected"; this load runs into that about half
/// the time when the writer does not take the head first. `writer::tests` plays the exact
/// interleaving out step by step and fails every time without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_batching_at_once_never_deadlock() {
    let db = TestDb::create("brevet_group_commit");
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let mut shared = Vec::new();
    for i in 0..2 {
        let r = approved(&format!("user{i}"), "postgres:shared");
        a.insert_request(&r, vec![]).await.unwrap();
        shared.push(r.id);
    }
    let head = a.audit_head().await.unwrap().0;
    let lease = Duration::from_secs(60);
    let mut tasks = Vec::new();
    for n in 0..300usize {
        for (replica, store) in [("a", a.clone()), ("b", b.clone())] {
            let id = shared[(n / 2) % shared.len()];
            tasks.push(tokio::spawn(async move {
                let owner = format!("{replica}-{n}");
                let append = || {
                    store.append_audit(vec![AuditDraft::new(
                        EventKind::SessionStarted,
                        replica,
                        None,
                        serde_json::json!({ "n": n }),
                    )])
                };
                // Half lock a row first and append after, half the other way round.
                if n % 2 == 0 {
                    let took = store.claim(id, &owner, Utc::now(), lease).await?;
                    append().await?;
                    if took {
                        store.release(id, &owner).await?;
                    }
                } else {
                    append().await?;
                    if store.claim(id, &owner, Utc::now(), lease).await? {
                        store.release(id, &owner).await?;
                    }
                }
                Ok::<_, StoreError>(())
            }));
        }
    }
    // Stops at the first failure. PostgreSQL may take a while to see a deadlock (its
    // `deadlock_timeout` is a second; under load here it took up to 15 s): a wait this long for
    // 2,400 small writes is one too.
    let all =
        futures::future::try_join_all(tasks.into_iter().map(|t| async move { t.await.unwrap() }));
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .unwrap_or_else(|_| panic!("the replicas' writes were stuck for 30 s: a deadlock"))
        .unwrap_or_else(|e| panic!("a write failed: {e}"));
    assert_eq!(verify_chain(&a).await, head + 600);
    for (name, store) in [("a", &a), ("b", &b)] {
        assert!(
            store.flushes() < store.commits(),
            "replica {name}: {} fsyncs for {} commits",
            store.flushes(),
            store.commits()
        );
    }
}
