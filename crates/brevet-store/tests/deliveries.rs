//! The notification outbox on both real backends: every audit event is routed exactly once even
//! with two replicas dispatching, claimed deliveries are never shared, attempts are recorded
//! (retry at a time, give up, delivered), expiry notices are queued once per grant.

use std::{collections::HashSet, time::Duration};

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{
    GrantDuration, NewRequest, PrincipalId, ProfileName, Request, RequestKind, ResourceId,
};
use brevet_store::{AttemptOutcome, DeliveryFilter, DeliveryState, NewDelivery, Store};
use brevet_testkit::TestDb;
use chrono::Utc;
use serde_json::json;

fn route(events: &[brevet_audit::AuditEvent]) -> Vec<NewDelivery> {
    events
        .iter()
        .flat_map(|e| {
            ["webhook:a", "webhook:b"].map(|s| NewDelivery {
                subscriber: s.into(),
                event_key: format!("audit:{}", e.seq),
                event_type: e.kind.replacen('_', ".", 1),
                request_id: e.request_id.clone(),
                payload: json!({"seq": e.seq}),
            })
        })
        .collect()
}

async fn append(store: &Store, n: usize) {
    for i in 0..n {
        store
            .append_audit(vec![AuditDraft::new(
                EventKind::DriftDetected,
                "system",
                None,
                json!({"n": i}),
            )])
            .await
            .unwrap();
    }
}

async fn dispatch_all(store: Store) -> usize {
    let mut read = 0;
    loop {
        let n = store.dispatch_audit(7, route).await.unwrap();
        if n == 0 {
            return read;
        }
        read += n;
    }
}

fn active_request(expires_in: chrono::Duration) -> Request {
    let now = Utc::now();
    let mut r = Request::new(
        NewRequest {
            kind: RequestKind::Access,
            requester: PrincipalId::parse("alice").unwrap(),
            resource: ResourceId::parse("postgres:orders").unwrap(),
            profile: ProfileName::parse("db.read").unwrap(),
            duration: GrantDuration::parse("1h").unwrap(),
            reason: None,
            ticket: None,
            approvals_required: 0,
            policy_rule: "p".into(),
            max_extensions: 0,
            approve_within: Duration::from_secs(60),
            activate_within: Duration::from_secs(60),
        },
        now,
    );
    r.start_activation(now).unwrap();
    r.activation_succeeded().unwrap();
    if let Some(w) = r.window.as_mut() {
        w.expires_at = now + expires_in;
    }
    r
}

async fn outbox(url: &str) {
    let a = Store::connect(url).await.unwrap();
    let b = Store::connect(url).await.unwrap();

    // Two replicas dispatch 60 events at once: each is routed exactly once per subscriber.
    append(&a, 60).await;
    let (ra, rb) = tokio::join!(dispatch_all(a.clone()), dispatch_all(b.clone()));
    assert_eq!(ra + rb, 60, "every event is read once");
    let all = a
        .list_deliveries(&DeliveryFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 120);
    assert!(all.iter().all(|d| d.state == DeliveryState::Pending));
    assert_eq!(a.dispatch_audit(10, route).await.unwrap(), 0);

    // Two replicas claim at once: no delivery is handed to both.
    let claim_all = |store: Store, owner: &'static str| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store
                .claim_deliveries(Utc::now(), owner, Duration::from_secs(60), 9)
                .await
                .unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch);
        }
    };
    let (ca, cb) = tokio::join!(claim_all(a.clone(), "ra"), claim_all(b.clone(), "rb"));
    let ia: HashSet<_> = ca.iter().map(|d| d.id.clone()).collect();
    let ib: HashSet<_> = cb.iter().map(|d| d.id.clone()).collect();
    assert!(
        ia.is_disjoint(&ib),
        "a delivery was claimed by both replicas"
    );
    assert_eq!(ia.len() + ib.len(), 120);

    // Only the lease holder records; a retry waits for its time; success keeps the last error.
    let (d, owner) = match ca.first() {
        Some(d) => (d.clone(), "ra"),
        None => (cb[0].clone(), "rb"),
    };
    let now = Utc::now();
    assert!(!a
        .record_attempt(&d.id, "someone-else", now, &AttemptOutcome::Delivered)
        .await
        .unwrap());
    let later = now + chrono::Duration::seconds(30);
    assert!(a
        .record_attempt(
            &d.id,
            owner,
            now,
            &AttemptOutcome::Retry {
                error: "HTTP 503".into(),
                at: later
            }
        )
        .await
        .unwrap());
    assert!(a
        .claim_deliveries(now, "rc", Duration::from_secs(60), 500)
        .await
        .unwrap()
        .is_empty());
    let again = a
        .claim_deliveries(later, "rc", Duration::from_secs(60), 500)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
    assert!(a
        .record_attempt(&d.id, "rc", later, &AttemptOutcome::Delivered)
        .await
        .unwrap());
    let delivered = a
        .list_deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Delivered),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].attempts, 2);
    assert_eq!(delivered[0].last_error.as_deref(), Some("HTTP 503"));
    assert!(delivered[0].delivered_at.is_some() && delivered[0].next_attempt_at.is_none());

    let other = ca.iter().chain(cb.iter()).find(|x| x.id != d.id).unwrap();
    let other_owner = if ia.contains(&other.id) { "ra" } else { "rb" };
    a.record_attempt(
        &other.id,
        other_owner,
        now,
        &AttemptOutcome::GaveUp {
            error: "timed out".into(),
        },
    )
    .await
    .unwrap();
    let failed = a
        .list_deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Failed),
            subscriber: Some(other.subscriber.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("timed out"));

    // Direct deliveries are unique per (subscriber, event key).
    let reply = NewDelivery {
        subscriber: "slack:response".into(),
        event_key: "reply-1".into(),
        event_type: "slack.reply".into(),
        request_id: None,
        payload: json!({"text": "no"}),
    };
    assert!(a.enqueue_delivery(&reply).await.unwrap());
    assert!(!a.enqueue_delivery(&reply).await.unwrap());

    // Expiry notices: once per grant, only for grants ending within the horizon.
    let soon = active_request(chrono::Duration::minutes(5));
    let later_grant = active_request(chrono::Duration::hours(2));
    a.insert_request(&soon, vec![]).await.unwrap();
    a.insert_request(&later_grant, vec![]).await.unwrap();
    let notice = |r: &Request| {
        vec![NewDelivery {
            subscriber: "slack:dm".into(),
            event_key: format!("expiring:{}", r.id),
            event_type: "grant.expiring".into(),
            request_id: Some(r.id.to_string()),
            payload: json!({}),
        }]
    };
    let horizon = Utc::now() + chrono::Duration::minutes(10);
    let (na, nb) = tokio::join!(
        a.queue_expiry_notices(horizon, notice),
        b.queue_expiry_notices(horizon, notice)
    );
    assert_eq!(na.unwrap() + nb.unwrap(), 1);
    assert_eq!(a.queue_expiry_notices(horizon, notice).await.unwrap(), 0);
    let dms = a
        .list_deliveries(&DeliveryFilter {
            subscriber: Some("slack:dm".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dms.len(), 1);
    assert_eq!(dms[0].request_id, Some(soon.id.to_string()));

    // Slack message coordinates.
    assert_eq!(a.slack_message("r1").await.unwrap(), None);
    a.save_slack_message("r1", "C1", "1.2").await.unwrap();
    a.save_slack_message("r1", "C1", "1.3").await.unwrap();
    assert_eq!(
        b.slack_message("r1").await.unwrap(),
        Some(("C1".into(), "1.3".into()))
    );

    // Without subscribers the cursor jumps to the end: nothing old is routed later.
    append(&a, 3).await;
    a.skip_dispatch_to_head().await.unwrap();
    assert_eq!(a.dispatch_audit(10, route).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox() {
    let db = TestDb::create("brevet_store_outbox");
    outbox(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox() {
    let dir = tempfile::tempdir().unwrap();
    outbox(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}
