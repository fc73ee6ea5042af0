//! The store on both real backends: claiming due work from several replicas at once never hands
//! one request to two replicas, optimistic concurrency refuses stale writes, and the audit chain
//! stays whole under concurrent appends.

use std::{collections::HashSet, time::Duration};

use brevet_audit::{AuditDraft, EventKind, Verifier};
use brevet_core::{
    GrantDuration, NewRequest, PrincipalId, ProfileName, Request, RequestKind, ResourceId,
};
use brevet_store::Store;
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
