//! Cedar policy files with Brevet's annotations (`PolicyEngine::load`), then, for a set that
//! loads, a request and an approval decided against it. The first byte chooses the question
//! (who asks, for what, how long, with or without a reason and ticket); the rest is the policy
//! text. Beyond not panicking, two properties must hold whatever the policies say: an allowed
//! request meets the limits of the policy that allowed it, and nobody approves their own request.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use brevet_core::{GrantDuration, PrincipalId, ProfileName, ResourceId};
use brevet_policy::{
    ApproveQuery, Defaults, PolicyEngine, PolicySource, RequestDecision, RequestQuery,
    ResourceFacts, Subject,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ask, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let sources = [PolicySource {
        name: "fuzz.cedar".into(),
        text: text.into(),
    }];
    let Ok(engine) = PolicyEngine::load(&sources, Defaults::default()) else {
        return;
    };

    let alice = PrincipalId::parse("alice").unwrap();
    let bob = PrincipalId::parse("bob").unwrap();
    let groups: BTreeSet<String> = match ask & 3 {
        0 => BTreeSet::new(),
        1 => ["dba".to_string()].into(),
        2 => ["leads".to_string()].into(),
        _ => ["dba".to_string(), "leads".to_string()].into(),
    };
    let (resource, kind) = if ask & 4 == 0 {
        (ResourceId::parse("postgres:orders").unwrap(), "postgres")
    } else {
        (ResourceId::parse("aws:prod-account").unwrap(), "aws")
    };
    let tags: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
    let profile = ProfileName::parse(if ask & 8 == 0 { "db.read" } else { "db.write" }).unwrap();
    let duration = GrantDuration::from_secs(if ask & 16 == 0 { 900 } else { 4 * 3600 }).unwrap();
    let reason = (ask & 32 != 0).then_some("on call: INC-1");
    let ticket = (ask & 64 != 0).then_some("INC-1");
    let facts = ResourceFacts {
        id: &resource,
        kind,
        tags: &tags,
    };
    let requester = Subject {
        id: &alice,
        groups: &groups,
    };
    let q = RequestQuery {
        principal: requester,
        resource: facts,
        profile: &profile,
        duration,
        reason,
        ticket,
        extension: ask & 128 != 0,
    };
    if let RequestDecision::Allow { limits, .. } = engine.evaluate_request(&q) {
        assert!(duration <= limits.max_duration, "allowed over max_duration");
        assert!(
            !limits.require_reason || reason.is_some(),
            "allowed without a reason"
        );
        assert!(
            !limits.require_ticket || ticket.is_some(),
            "allowed without a ticket"
        );
    }

    let (self_approved, _) = engine.may_approve(&ApproveQuery {
        approver: requester,
        requester,
        resource: facts,
        profile: &profile,
        duration,
    });
    assert!(!self_approved, "a requester approved their own request");
    let _ = engine.may_approve(&ApproveQuery {
        approver: Subject {
            id: &bob,
            groups: &groups,
        },
        requester,
        resource: facts,
        profile: &profile,
        duration,
    });
});
