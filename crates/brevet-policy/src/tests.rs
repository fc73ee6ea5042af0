use super::*;

const POLICIES: &str = r#"
@id("dba-read")
@max_duration("4h")
@approvals("1")
permit (principal in Group::"dba", action == Action::"request", resource)
when { resource.kind == "postgres" && context.profile == "db.read" };

@id("dba-read-quick")
@max_duration("15m")
@approvals("0")
permit (principal in Group::"dba", action == Action::"request", resource)
when { context.profile == "db.read" };

@id("prod-write")
@approvals("2")
@require_ticket("true")
permit (principal in Group::"dba", action == Action::"request", resource)
when { context.profile == "db.write" && resource.hasTag("env") && resource.getTag("env") == "prod" };

@id("leads-approve")
permit (principal in Group::"leads", action == Action::"approve", resource);

@id("no-interns")
forbid (principal in Group::"interns", action == Action::"request", resource);
"#;

fn engine() -> PolicyEngine {
    PolicyEngine::load(
        &[PolicySource {
            name: "test.cedar".into(),
            text: POLICIES.into(),
        }],
        Defaults::default(),
    )
    .unwrap()
}

struct Fixture {
    alice: PrincipalId,
    bob: PrincipalId,
    dba: BTreeSet<String>,
    leads: BTreeSet<String>,
    res: ResourceId,
    tags: BTreeMap<String, String>,
    read: ProfileName,
    write: ProfileName,
}

fn fx() -> Fixture {
    Fixture {
        alice: PrincipalId::parse("alice").unwrap(),
        bob: PrincipalId::parse("bob").unwrap(),
        dba: ["dba".to_string()].into(),
        leads: ["leads".to_string()].into(),
        res: ResourceId::parse("postgres:orders").unwrap(),
        tags: [("env".to_string(), "prod".to_string())].into(),
        read: ProfileName::parse("db.read").unwrap(),
        write: ProfileName::parse("db.write").unwrap(),
    }
}

fn ask<'a>(
    f: &'a Fixture,
    groups: &'a BTreeSet<String>,
    profile: &'a ProfileName,
    dur: &str,
    ticket: Option<&'a str>,
) -> RequestQuery<'a> {
    RequestQuery {
        principal: Subject {
            id: &f.alice,
            groups,
        },
        resource: ResourceFacts {
            id: &f.res,
            kind: "postgres",
            tags: &f.tags,
        },
        profile,
        duration: GrantDuration::parse(dur).unwrap(),
        reason: Some("patching"),
        ticket,
        extension: false,
    }
}

#[test]
fn picks_the_cheapest_rule_the_request_fits() {
    let (e, f) = (engine(), fx());
    match e.evaluate_request(&ask(&f, &f.dba, &f.read, "10m", None)) {
        RequestDecision::Allow {
            policy,
            limits,
            trace,
        } => {
            assert_eq!(policy, "dba-read-quick");
            assert_eq!(limits.approvals, 0);
            assert_eq!(
                trace.determining_policies,
                vec!["dba-read", "dba-read-quick"]
            );
        }
        d => panic!("{d:?}"),
    }
    match e.evaluate_request(&ask(&f, &f.dba, &f.read, "2h", None)) {
        RequestDecision::Allow { policy, limits, .. } => {
            assert_eq!(policy, "dba-read");
            assert_eq!(limits.approvals, 1);
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn over_max_duration_is_explained() {
    let (e, f) = (engine(), fx());
    match e.evaluate_request(&ask(&f, &f.dba, &f.read, "5h", None)) {
        RequestDecision::Deny { reason, .. } => {
            assert!(
                reason.contains("over the 4h maximum set by policy `dba-read`"),
                "{reason}"
            );
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn ticket_requirement_and_forbid_and_no_policy() {
    let (e, f) = (engine(), fx());
    let RequestDecision::Deny { reason, .. } =
        e.evaluate_request(&ask(&f, &f.dba, &f.write, "1h", None))
    else {
        panic!()
    };
    assert!(reason.contains("--ticket"), "{reason}");
    assert!(matches!(
        e.evaluate_request(&ask(&f, &f.dba, &f.write, "1h", Some("OPS-1"))),
        RequestDecision::Allow { .. }
    ));

    let interns: BTreeSet<String> = ["dba".to_string(), "interns".to_string()].into();
    let RequestDecision::Deny { reason, trace } =
        e.evaluate_request(&ask(&f, &interns, &f.read, "10m", None))
    else {
        panic!()
    };
    assert!(reason.contains("no-interns"), "{reason}");
    assert_eq!(trace.determining_policies, vec!["no-interns"]);

    let nobody = BTreeSet::new();
    let RequestDecision::Deny { reason, .. } =
        e.evaluate_request(&ask(&f, &nobody, &f.read, "10m", None))
    else {
        panic!()
    };
    assert!(reason.contains("no policy allows `alice`"), "{reason}");
}

#[test]
fn self_approval_is_forbidden_even_if_policy_permits() {
    let (e, f) = (engine(), fx());
    let q = |approver: &PrincipalId| {
        e.may_approve(&ApproveQuery {
            approver: Subject {
                id: approver,
                groups: &f.leads,
            },
            requester: Subject {
                id: &f.alice,
                groups: &f.leads,
            },
            resource: ResourceFacts {
                id: &f.res,
                kind: "postgres",
                tags: &f.tags,
            },
            profile: &f.read,
            duration: GrantDuration::parse("1h").unwrap(),
        })
    };
    assert!(q(&f.bob).0);
    let (ok, trace) = q(&f.alice);
    assert!(!ok);
    assert_eq!(trace.determining_policies, vec!["builtin:no-self-approval"]);
}

#[test]
fn bad_policies_are_refused_at_load_with_their_id() {
    let load = |text: &str| {
        PolicyEngine::load(
            &[PolicySource {
                name: "f.cedar".into(),
                text: text.into(),
            }],
            Defaults::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert!(load("permit (principal, action, resource").contains("f.cedar"));
    let e = load(
        r#"@id("x") permit (principal, action == Action::"request", resource) when { context.nope == 1 };"#,
    );
    assert!(e.contains("`x`"), "{e}");
    let e = load(
        r#"@id("y") @max_duration("forever") permit (principal, action == Action::"request", resource);"#,
    );
    assert!(e.contains("@max_duration"), "{e}");
    let e = load(
        r#"@id("z") @approval("1") permit (principal, action == Action::"request", resource);"#,
    );
    assert!(e.contains("unknown annotation"), "{e}");
    let e = load(
        r#"@id("d") permit (principal, action, resource); @id("d") permit (principal, action, resource);"#,
    );
    assert!(e.contains("share the id"), "{e}");
}
