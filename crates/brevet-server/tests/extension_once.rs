//! An approved extension lengthens its grant once, however many approvals race to complete it,
//! and even when an approval is abandoned (its caller gave up, as Slack's 10 s budget does) after
//! the grant was extended but before the decision was recorded: the next approval must not extend
//! it again. Runs the broker on a real SQLite store with the benchmarks' in-memory provider.

#[path = "../benches/support/mod.rs"]
mod support;

use std::collections::BTreeSet;

use brevet_core::{ApprovalDecision, Principal, PrincipalId, Request, Role};
use brevet_server::{AccessAsk, Broker};
use chrono::{DateTime, Utc};

const POLICY: &str = r#"
@id("ask") @approvals("1") @max_duration("1h") @max_extensions("3")
permit (principal, action == Action::"request", resource) when { context.profile == "db.read" };
@id("leads-approve")
permit (principal in Group::"leads", action == Action::"approve", resource);
"#;

fn who(id: &str, lead: bool) -> Principal {
    Principal {
        id: PrincipalId::parse(id).unwrap(),
        groups: if lead {
            BTreeSet::from(["leads".to_owned()])
        } else {
            BTreeSet::new()
        },
        roles: if lead {
            BTreeSet::from([Role::Requester, Role::Approver])
        } else {
            BTreeSet::from([Role::Requester])
        },
    }
}

/// A broker on a fresh SQLite store (kept while the directory lives) with [`POLICY`].
async fn broker() -> (tempfile::TempDir, std::sync::Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("b.db").display());
    let broker = support::broker_with_policy(&url, 1, vec![], POLICY).await;
    (dir, broker)
}

/// Alice's 10-minute grant, approved by `lead` and activated: the request and its expiry.
async fn active_grant(
    broker: &Broker,
    alice: &Principal,
    lead: &Principal,
    round: usize,
) -> (Request, DateTime<Utc>) {
    let r = broker
        .create(
            alice,
            AccessAsk {
                resource: "mem:db0".into(),
                profile: "db.read".into(),
                duration: "10m".into(),
                reason: Some(format!("round {round}")),
                ticket: None,
            },
        )
        .await
        .unwrap();
    broker
        .decide(lead, r.id, ApprovalDecision::Approve, None)
        .await
        .unwrap();
    let active = broker.activate(alice, r.id, None).await.unwrap().request;
    let expires = active.window.unwrap().expires_at;
    (active, expires)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_approvals_extend_a_grant_once() {
    let (_dir, broker) = broker().await;
    let (alice, lead1, lead2) = (who("alice", false), who("lead1", true), who("lead2", true));

    for round in 0..5 {
        let (r, before) = active_grant(&broker, &alice, &lead1, round).await;

        let ext = broker.extend(&alice, r.id, "5m".into()).await.unwrap();
        let (a, b) = tokio::join!(
            broker.decide(&lead1, ext.id, ApprovalDecision::Approve, None),
            broker.decide(&lead2, ext.id, ApprovalDecision::Approve, None),
        );
        assert!(
            a.is_ok() || b.is_ok(),
            "one approval completes it: {a:?} {b:?}"
        );
        let after = broker.get(r.id).await.unwrap().window.unwrap().expires_at;
        assert_eq!(
            after - before,
            chrono::Duration::minutes(5),
            "round {round}: extended by exactly the extension ({a:?}, {b:?})"
        );
        let ext = broker.get(ext.id).await.unwrap();
        assert_eq!(ext.state.to_string(), "approved", "round {round}");
        // The losing approval can be retried: it is refused as already decided, nothing changes.
        let again = broker
            .decide(&lead2, ext.id, ApprovalDecision::Approve, None)
            .await;
        assert!(again.is_err());
        assert_eq!(
            broker.get(r.id).await.unwrap().window.unwrap().expires_at,
            after
        );
    }
}

/// An approval cut short at every point of its run (a timeout that grows round by round), then
/// completed by another approver: whatever the first one got done, the grant ends up extended by
/// exactly the extension, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_approval_then_another_extend_a_grant_once() {
    let (_dir, broker) = broker().await;
    let (alice, lead1, lead2) = (who("alice", false), who("lead1", true), who("lead2", true));
    let mut cut_between = 0;
    let mut cut = std::time::Duration::from_micros(0);
    for round in 0..400 {
        let (r, before) = active_grant(&broker, &alice, &lead1, round).await;
        let ext = broker.extend(&alice, r.id, "5m".into()).await.unwrap();
        let first = tokio::time::timeout(
            cut,
            broker.decide(&lead1, ext.id, ApprovalDecision::Approve, None),
        )
        .await;
        let after_first = broker.get(r.id).await.unwrap().window.unwrap().expires_at;
        let recorded = broker.get(ext.id).await.unwrap().state.to_string() == "approved";
        if after_first > before && !recorded {
            cut_between += 1;
        }
        if !recorded {
            // The cut approval's write may still be under way (it goes on after its caller
            // stopped waiting). The second one then races it and may hear "changed at the same
            // time; retry" or "not pending": a client retries, and finds the request approved.
            for attempt in 0.. {
                let e = match broker
                    .decide(&lead2, ext.id, ApprovalDecision::Approve, None)
                    .await
                {
                    Ok(_) => break,
                    Err(e) => e,
                };
                if broker.get(ext.id).await.unwrap().state.to_string() == "approved" {
                    break;
                }
                assert!(
                    attempt < 20 && e.to_string().contains("changed at the same time"),
                    "round {round} ({first:?}), attempt {attempt}: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        let after = broker.get(r.id).await.unwrap().window.unwrap().expires_at;
        assert_eq!(
            after - before,
            chrono::Duration::minutes(5),
            "round {round}, first approval cut after {cut:?}"
        );
        if recorded {
            // The first approval ran to the end: start cutting earlier again, in finer steps,
            // so the cut lands everywhere in its run.
            cut = std::time::Duration::from_micros(round as u64 % 7 * 50);
        } else {
            cut += std::time::Duration::from_micros(100);
        }
        if cut_between >= 3 {
            break;
        }
    }
    eprintln!("approvals cut between extending and recording: {cut_between}");
}
