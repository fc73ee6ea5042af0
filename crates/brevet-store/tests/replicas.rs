//! The store on both real backends: claiming due work from several replicas at once never hands
//! one request to two replicas, optimistic concurrency refuses stale writes, and the audit chain
//! stays whole under concurrent appends.

use std::{collections::HashSet, time::Duration};

use brevet_audit::{AuditDraft, EventKind, Verifier};
use brevet_core::{
    GrantDuration, NewRequest, PrincipalId, ProfileName, Request, RequestKind, ResourceId,
};
use brevet_store::{DueQuota, Store};
use brevet_testkit::TestDb;
use chrono::Utc;

fn due_request(i: usize) -> Request {
    let mut r = Request::new(
        NewRequest {
            kind: RequestKind::Access,
            requester: PrincipalId::parse(&format!("user{i}")).unwrap(),
            resource: ResourceId::parse("postgres:orders").unwrap(),
            profile: ProfileName::parse("db.read").unwrap(),
            duration: GrantDuration::parse("1h").unwrap(),
            reason: Some("r".into()),
            ticket: None,
            approvals_required: 1,
            policy_rule: "p".into(),
            max_extensions: 0,
            approve_within: Duration::from_secs(0),
            activate_within: Duration::from_secs(60),
        },
        Utc::now() - chrono::Duration::seconds(5),
    );
    r.reason = Some(format!("r{i}"));
    r
}

async fn replicas_never_share_work(url: &str) {
    let a = Store::connect(url).await.unwrap();
    let b = Store::connect(url).await.unwrap();
    for i in 0..120 {
        a.insert_request(&due_request(i), vec![]).await.unwrap();
    }
    let claim_all = |store: Store, owner: &'static str| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store
                .claim_due(Utc::now(), owner, Duration::from_secs(60), 7)
                .await
                .unwrap();
            if batch.requests.is_empty() {
                break;
            }
            mine.extend(batch.requests.into_iter().map(|r| r.id));
        }
        mine
    };
    let (ra, rb) = tokio::join!(
        claim_all(a.clone(), "replica-a"),
        claim_all(b.clone(), "replica-b")
    );
    let sa: HashSet<_> = ra.iter().collect();
    let sb: HashSet<_> = rb.iter().collect();
    assert!(
        sa.is_disjoint(&sb),
        "a request was claimed by both replicas"
    );
    assert_eq!(
        sa.len() + sb.len(),
        120,
        "every due request is claimed exactly once"
    );
    assert_eq!(ra.len(), sa.len());

    // Stale writes are refused: both read version N, only the first write wins.
    let id = ra.first().or(rb.first()).copied().unwrap();
    let r1 = a.get_request(id).await.unwrap().unwrap();
    let mut r2 = r1.clone();
    a.update_request(&r1, vec![]).await.unwrap();
    r2.reason = Some("stale".into());
    assert!(matches!(
        b.update_request(&r2, vec![]).await,
        Err(brevet_store::StoreError::Conflict(_))
    ));

    // Concurrent audit appends from both replicas keep one unbroken chain.
    let append = |store: Store, who: &'static str| async move {
        for n in 0..40 {
            let d = AuditDraft::new(
                EventKind::DriftDetected,
                who,
                None,
                serde_json::json!({"n": n}),
            );
            store.append_audit(vec![d]).await.unwrap();
        }
    };
    tokio::join!(append(a.clone(), "a"), append(b.clone(), "b"));
    let events = a.audit_page(0, 1000).await.unwrap();
    assert_eq!(events.len(), 80);
    let mut v = Verifier::new();
    events.iter().for_each(|e| v.push(e));
    let (seq, hash) = a.audit_head().await.unwrap();
    let report = v.finish(Some((seq, &hash)));
    assert!(report.ok, "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_never_share_work() {
    let db = TestDb::create("brevet_store_replicas");
    replicas_never_share_work(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_never_share_work() {
    let dir = tempfile::tempdir().unwrap();
    replicas_never_share_work(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn bad_store_urls_are_explained_without_leaking_passwords() {
    let e = Store::connect("postgres://brevet:s3cret@127.0.0.1:1/nowhere")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

/// A replica that dies holding leases: once they run out, another claims the work and is told
/// whose lease it took over; work it released itself, or never leased, is no takeover.
async fn leases_of_the_dead_are_taken_over(url: &str) {
    let store = Store::connect(url).await.unwrap();
    for i in 0..6 {
        store.insert_request(&due_request(i), vec![]).await.unwrap();
    }
    let lease = Duration::from_millis(200);
    let dead = store
        .claim_due(Utc::now(), "replica-dead", lease, 4)
        .await
        .unwrap();
    assert_eq!(dead.requests.len(), 4);
    assert!(dead.taken_over.is_empty(), "{:?}", dead.taken_over);
    let released = dead.requests[0].id;
    store.release(released, "replica-dead").await.unwrap();
    // While the leases live, only the two never claimed and the released one can be taken.
    let early = store
        .claim_due(Utc::now(), "replica-live", lease, 10)
        .await
        .unwrap();
    assert_eq!(early.requests.len(), 3);
    assert!(early.taken_over.is_empty(), "{:?}", early.taken_over);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = store
        .claim_due(Utc::now(), "replica-live", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(late.requests.len(), 6, "every lease ran out");
    let mut from_dead: Vec<_> = late
        .taken_over
        .iter()
        .filter(|(_, owner)| owner == "replica-dead")
        .map(|(id, _)| id.clone())
        .collect();
    from_dead.sort();
    let mut expected: Vec<_> = dead.requests[1..]
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    expected.sort();
    assert_eq!(from_dead, expected, "the dead replica's three live leases");
    assert_eq!(
        late.taken_over.len(),
        3,
        "its own earlier leases are no takeover: {:?}",
        late.taken_over
    );
    assert!(
        late.requests
            .windows(2)
            .all(|w| w[0].due_at() <= w[1].due_at()),
        "oldest due first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leases_of_the_dead_are_taken_over() {
    let db = TestDb::create("brevet_store_takeover");
    leases_of_the_dead_are_taken_over(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_leases_of_the_dead_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    leases_of_the_dead_are_taken_over(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await;
}

/// A request on `resource` whose deadline passed `ago` seconds ago (due since then).
fn due_on(i: usize, resource: &str, ago: i64) -> Request {
    let mut r = due_request(i);
    r.resource = ResourceId::parse(resource).unwrap();
    r.created_at = Utc::now() - chrono::Duration::seconds(ago);
    r.approve_by = r.created_at;
    r
}

/// Claiming by provider (the scheduler's lanes under a revocation rate limit): each listed
/// provider gets at most its quota, oldest due first, however large another's backlog; the
/// rest — providers not listed, and rows stored before the `provider` column, which connecting
/// fills in — comes through `others`.
async fn due_work_is_claimed_per_provider(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let lease = Duration::from_secs(60);
    let mut batch = Vec::new();
    for i in 0..40 {
        batch.push((due_on(i, "slow:a", 60 - i as i64), vec![]));
    }
    for i in 40..45 {
        batch.push((due_on(i, "fast:b", 10), vec![]));
    }
    for i in 45..48 {
        batch.push((due_on(i, "gone:c", 5), vec![]));
    }
    store.insert_requests(batch).await.unwrap();
    let by_provider = |b: &brevet_store::DueBatch| {
        let mut n = std::collections::BTreeMap::<String, usize>::new();
        for r in &b.requests {
            *n.entry(r.resource.provider().to_string()).or_default() += 1;
        }
        n
    };
    let quota = DueQuota {
        providers: vec![("slow", 4), ("fast", 64)],
        others: 0,
    };
    let first = store
        .claim_due_by_provider(Utc::now(), "r", lease, &quota)
        .await
        .unwrap();
    assert_eq!(
        by_provider(&first),
        [("fast".to_string(), 5), ("slow".to_string(), 4)].into(),
        "a quota per provider, and the unlisted left alone"
    );
    let oldest: Vec<_> = first
        .requests
        .iter()
        .filter(|r| r.resource.provider().as_str() == "slow")
        .map(|r| r.reason.clone().unwrap())
        .collect();
    assert_eq!(oldest, ["r0", "r1", "r2", "r3"], "its oldest due first");
    let rest = DueQuota {
        providers: vec![("slow", 0), ("fast", 64)],
        others: 64,
    };
    let second = store
        .claim_due_by_provider(Utc::now(), "r", lease, &rest)
        .await
        .unwrap();
    assert_eq!(
        by_provider(&second),
        [("gone".to_string(), 3)].into(),
        "a listed provider with no quota is not in the rest"
    );

    // Rows written before the provider column: not in any provider's lane, but in the rest
    // until connecting fills the column in.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("UPDATE requests SET provider = NULL WHERE provider = 'slow'")
        .execute(&raw)
        .await
        .unwrap();
    let slow_only = DueQuota {
        providers: vec![("slow", 64)],
        others: 0,
    };
    let none = store
        .claim_due_by_provider(Utc::now(), "r", lease, &slow_only)
        .await
        .unwrap();
    assert!(none.requests.is_empty());
    let store = Store::connect(url).await.unwrap();
    let filled = store
        .claim_due_by_provider(Utc::now(), "r", lease, &slow_only)
        .await
        .unwrap();
    assert_eq!(
        filled.requests.len(),
        36,
        "the rest of slow's backlog, filled in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_due_work_is_claimed_per_provider() {
    let db = TestDb::create("brevet_store_lanes");
    due_work_is_claimed_per_provider(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_due_work_is_claimed_per_provider() {
    let dir = tempfile::tempdir().unwrap();
    due_work_is_claimed_per_provider(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await;
}
