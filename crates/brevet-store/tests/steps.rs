//! Lifecycle steps on both real backends: a step takes or gives back the request's lease and
//! its binding's lock in the same transaction as its write — one commit — and writes nothing
//! when a hold it needs is another operation's; the reference count (`holders`) counts only
//! grants whose access is in place.

use std::time::Duration;

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{
    GrantDuration, NewRequest, PrincipalId, ProfileName, Request, RequestKind, RequestState,
    ResourceId,
};
use brevet_store::{Hold, Step, Store, StoreError};
use chrono::Utc;

fn approved(who: &str) -> Request {
    Request::new(
        NewRequest {
            kind: RequestKind::Access,
            requester: PrincipalId::parse(who).unwrap(),
            resource: ResourceId::parse("postgres:orders").unwrap(),
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

fn audit(r: &Request) -> Vec<AuditDraft> {
    vec![AuditDraft::new(
        EventKind::ActivationStarted,
        "test",
        Some(r.id.to_string()),
        serde_json::json!({}),
    )]
}

async fn steps(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let lease = Duration::from_secs(60);
    let a = store
        .insert_request(&approved("alice"), vec![])
        .await
        .unwrap();
    let b = store
        .insert_request(&approved("alice"), vec![])
        .await
        .unwrap();
    assert_eq!(a.binding().key(), b.binding().key(), "one binding");

    // The intent: lease and binding lock taken with the write, in one commit.
    let mut ra = a.clone();
    ra.start_activation(Utc::now()).unwrap();
    let take = |owner| Hold::Take {
        owner,
        now: Utc::now(),
        lease,
    };
    let before = store.commits();
    let ra = store
        .write_step(Step {
            request: &ra,
            lease: take("op-a"),
            binding_lock: take("op-a"),
            audit: audit(&ra),
            unless_locked: None,
        })
        .await
        .unwrap();
    assert_eq!(store.commits() - before, 1, "one commit for the whole step");

    // Another operation on the same binding is refused while op-a holds it: nothing written.
    let events = store.audit_head().await.unwrap().0;
    let mut rb = b.clone();
    rb.start_activation(Utc::now()).unwrap();
    let busy = store
        .write_step(Step {
            request: &rb,
            lease: take("op-b"),
            binding_lock: take("op-b"),
            audit: audit(&rb),
            unless_locked: None,
        })
        .await;
    assert!(
        matches!(&busy, Err(StoreError::Busy(what)) if what.starts_with("binding")),
        "{busy:?}"
    );
    let still = store.get_request(b.id).await.unwrap().unwrap();
    assert_eq!(still.state, RequestState::Approved, "nothing written");
    assert_eq!(
        store.audit_head().await.unwrap().0,
        events,
        "nothing audited"
    );
    assert!(
        store.claim(b.id, "op-b", Utc::now(), lease).await.unwrap(),
        "B's lease was not taken either"
    );
    store.release(b.id, "op-b").await.unwrap();

    // The request's own lease, too: a second operation on A is refused.
    let mut again = ra.clone();
    again.reason = Some("other".into());
    let busy = store
        .write_step(Step {
            request: &again,
            lease: take("op-z"),
            binding_lock: Hold::Keep,
            audit: vec![],
            unless_locked: None,
        })
        .await;
    assert!(
        matches!(&busy, Err(StoreError::Busy(what)) if what.starts_with("request")),
        "{busy:?}"
    );
    // A stale copy too: the lease another operation holds is the answer, not the staleness.
    let mut stale_a = again.clone();
    stale_a.version -= 1;
    let busy = store
        .write_step(Step {
            request: &stale_a,
            lease: take("op-z"),
            binding_lock: Hold::Keep,
            audit: vec![],
            unless_locked: None,
        })
        .await;
    assert!(
        matches!(&busy, Err(StoreError::Busy(what)) if what.starts_with("request")),
        "{busy:?}"
    );

    // An activating grant is no holder: its access may not be in place.
    assert!(store
        .holders(&b.binding().key(), b.id)
        .await
        .unwrap()
        .is_empty());

    // The outcome gives both back: B can now take the binding.
    let mut done = ra.clone();
    done.activation_succeeded().unwrap();
    let done = store
        .write_step(Step {
            request: &done,
            lease: Hold::Release { owner: "op-a" },
            binding_lock: Hold::Release { owner: "op-a" },
            audit: audit(&done),
            unless_locked: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .holders(&b.binding().key(), b.id)
            .await
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect::<Vec<_>>(),
        vec![done.id],
        "an active grant is a holder"
    );
    let rb = store
        .write_step(Step {
            request: &rb,
            lease: take("op-b"),
            binding_lock: take("op-b"),
            audit: audit(&rb),
            unless_locked: None,
        })
        .await
        .unwrap();

    // A stale copy is refused as a conflict, and changes nothing.
    let stale = store.write_step(Step {
        request: &b,
        lease: Hold::Keep,
        binding_lock: Hold::Keep,
        audit: vec![],
        unless_locked: None,
    });
    assert!(matches!(stale.await, Err(StoreError::Conflict(_))));
    // Taking a lease it may take (its own) does not hide that the copy is stale.
    let stale = store.write_step(Step {
        request: &b,
        lease: take("op-b"),
        binding_lock: Hold::Keep,
        audit: vec![],
        unless_locked: None,
    });
    assert!(matches!(stale.await, Err(StoreError::Conflict(_))));
    assert_eq!(
        store.get_request(b.id).await.unwrap().unwrap().version,
        rb.version
    );
}

brevet_testkit::on_both_stores!(steps: sqlite_steps, postgres_steps);

/// A request that needed no approval never has an approver's decision (readers skip reading
/// them: `Request::awaited_approval`): recording one is refused and writes nothing.
async fn no_decision_on_a_request_that_needed_no_approval(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let r = store
        .insert_request(&approved("alice"), vec![])
        .await
        .unwrap();
    assert!(!r.awaited_approval());
    let approval = brevet_core::Approval {
        approver: PrincipalId::parse("bob").unwrap(),
        decision: brevet_core::ApprovalDecision::Approve,
        comment: None,
        at: Utc::now(),
    };
    let refused = store.record_decision(&r, &approval, audit(&r)).await;
    match refused {
        Err(StoreError::Refused(why)) => assert!(why.contains("needs no approval"), "{why}"),
        other => panic!("recorded: {other:?}"),
    }
    assert!(store.approvals(r.id).await.unwrap().is_empty());
    assert_eq!(
        store.get_request(r.id).await.unwrap().unwrap().version,
        r.version
    );
    assert_eq!(store.audit_head().await.unwrap().0, 0, "nothing audited");
}

brevet_testkit::on_both_stores!(no_decision_on_a_request_that_needed_no_approval:
    sqlite_no_decision_on_a_request_that_needed_no_approval,
    postgres_no_decision_on_a_request_that_needed_no_approval);

/// A step written `unless_locked` is refused by its own statement when the kill switch locks
/// its principal: `Locked`, and nothing written, not even the lease. The everyone-lock binds
/// only where it is said to (it spares admins); a lock on another principal, however similar
/// the name, does not; a lease another operation holds is still the first answer.
async fn a_step_unless_locked_is_refused_by_its_own_write(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let lease = Duration::from_secs(60);
    let take = |owner| Hold::Take {
        owner,
        now: Utc::now(),
        lease,
    };
    let lock = |who: &str| brevet_store::PrincipalLock {
        principal: who.into(),
        reason: "test".into(),
        locked_by: "admin".into(),
        locked_at: Utc::now(),
    };
    let unlocked = |everyone_lock_binds| brevet_store::Unlocked {
        principal: "alice",
        everyone_lock_binds,
    };
    let r = store
        .insert_request(&approved("alice"), vec![])
        .await
        .unwrap();
    let mut intent = r.clone();
    intent.start_activation(Utc::now()).unwrap();
    let step = |owner, everyone_lock_binds| Step {
        request: &intent,
        lease: take(owner),
        binding_lock: take(owner),
        audit: audit(&intent),
        unless_locked: Some(unlocked(everyone_lock_binds)),
    };

    store.lock_principal(&lock("alicia"), vec![]).await.unwrap();
    store.lock_principal(&lock("alice"), vec![]).await.unwrap();
    let events = store.audit_head().await.unwrap().0;
    for everyone_lock_binds in [true, false] {
        let refused = store.write_step(step("op-a", everyone_lock_binds)).await;
        assert!(
            matches!(&refused, Err(StoreError::Locked(lock)) if lock.principal == "alice" && lock.reason == "test"),
            "{refused:?}"
        );
    }
    let still = store.get_request(r.id).await.unwrap().unwrap();
    assert_eq!(still.version, r.version, "nothing written");
    assert_eq!(still.state, RequestState::Approved);
    assert_eq!(
        store.audit_head().await.unwrap().0,
        events,
        "nothing audited"
    );

    // The everyone-lock stops whom it binds, and only them.
    store.unlock_principal("alice", vec![]).await.unwrap();
    store.lock_principal(&lock("*"), vec![]).await.unwrap();
    let refused = store.write_step(step("op-a", true)).await;
    assert!(
        matches!(&refused, Err(StoreError::Locked(lock)) if lock.principal == "*"),
        "{refused:?}"
    );
    // Another owner takes what the refused writes would have: they held nothing.
    let written = store.write_step(step("op-c", false)).await.unwrap();
    assert_eq!(written.state, RequestState::Activating);

    // A stale copy of a locked principal's request hears of the lock, not of the change.
    let stale = store
        .write_step(Step {
            request: &intent,
            lease: Hold::Keep,
            binding_lock: Hold::Keep,
            audit: vec![],
            unless_locked: Some(unlocked(true)),
        })
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Locked(lock)) if lock.principal == "*"),
        "{stale:?}"
    );

    // Its lease is held by op-c: another operation hears `Busy` first, locked or not.
    let busy = store
        .write_step(Step {
            request: &written,
            lease: take("op-b"),
            binding_lock: Hold::Keep,
            audit: vec![],
            unless_locked: Some(unlocked(true)),
        })
        .await;
    assert!(matches!(&busy, Err(StoreError::Busy(_))), "{busy:?}");
}

brevet_testkit::on_both_stores!(a_step_unless_locked_is_refused_by_its_own_write:
    sqlite_a_step_unless_locked_is_refused_by_its_own_write,
    postgres_a_step_unless_locked_is_refused_by_its_own_write);
