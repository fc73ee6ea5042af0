//! The analyzer on realistic exports of each cloud: what it must find, what it must not, and
//! what it does with bad input.

use std::path::{Path, PathBuf};

use brevet_analyzer::aws::{analyze as aws, AwsInputs};
use brevet_analyzer::{azure, gcp, AnalyzeError, Category, Input, Options, Report};
use brevet_catalog::Catalog;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn aws_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/fixtures/aws-authz")
        .join(name)
}

fn input(p: &Path) -> Input<'static> {
    Input::new(p.display().to_string(), std::fs::File::open(p).unwrap())
}

fn small_aws(extra: impl FnOnce(&mut AwsInputs<'static>)) -> Report {
    let mut inputs = AwsInputs {
        exports: vec![input(&aws_fixture(
            "cloudsplaining-example-authz-details.json",
        ))],
        ..Default::default()
    };
    extra(&mut inputs);
    aws(&Catalog::embedded().unwrap(), inputs, &Options::default()).unwrap()
}

const ACCOUNT: &str = "arn:aws:iam::012345678901";

#[test]
fn aws_admins_paths_and_group_inheritance() {
    let r = small_aws(|_| {});
    // obama holds AdministratorAccess; userwithlotsofpermissions gets it from group `admin`.
    assert_eq!(
        r.admins,
        vec![
            format!("{ACCOUNT}:user/obama"),
            format!("{ACCOUNT}:user/userwithlotsofpermissions")
        ]
    );
    // OverprivilegedEC2 can create keys for every user, so it reaches an admin in one step.
    let p = r
        .paths
        .iter()
        .find(|p| p.principal.ends_with(":role/OverprivilegedEC2"))
        .expect("a path from OverprivilegedEC2");
    assert_eq!(p.edges.len(), 1);
    assert_eq!(&*r.edges[p.edges[0]].via, "iam:CreateAccessKey");
    assert!(r.admins.contains(&p.admin));
    // biden is no admin and reaches none.
    assert!(!r.paths.iter().any(|p| p.principal.ends_with(":user/biden")));
    // Findings name who holds the policy, users of a group included.
    let admin = r
        .findings
        .iter()
        .find(|f| {
            f.category == Category::AdminEquivalent && f.policy.ends_with("/AdministratorAccess")
        })
        .unwrap();
    assert!(
        admin
            .principals
            .contains(&format!("{ACCOUNT}:user/userwithlotsofpermissions")),
        "{:?}",
        admin.principals
    );
    // The riskiest principals are the admins, each score explained.
    assert!(r.admins.contains(&r.principal_scores[0].subject));
    assert!(r.principal_scores[0]
        .parts
        .iter()
        .any(|(_, why)| why == "admin-equivalent"));
    // Standing admin of a person: a proposal, with approval required.
    let s = r
        .standing
        .iter()
        .find(|s| s.principal.ends_with(":user/obama") && s.admin_equivalent)
        .unwrap();
    let p = s.proposal.as_ref().unwrap();
    assert!(
        p.cedar.contains("@approvals(\"1\")") && p.cedar.contains("User::\"obama\""),
        "{}",
        p.cedar
    );
    assert!(
        p.config
            .contains("arn = \"arn:aws:iam::012345678901:user/obama\""),
        "{}",
        p.config
    );
}

#[test]
fn aws_rights_sizing_from_access_advisor_and_cloudtrail() {
    let r = small_aws(|i| {
        i.last_accessed.push((
            format!("{ACCOUNT}:user/obama"),
            input(&here().join("aws/obama-last-accessed.json")),
        ));
        i.cloudtrail
            .push(input(&here().join("aws/biden-cloudtrail.json")));
    });
    // Access Advisor: obama used S3 in the last 90 days, IAM two years ago, EC2 never.
    let s = r
        .standing
        .iter()
        .find(|s| {
            s.principal.ends_with(":user/obama") && s.policy.ends_with("/AdministratorAccess")
        })
        .unwrap();
    let u = s.usage.as_ref().unwrap();
    assert_eq!(u.used, vec!["s3"]);
    assert!(
        u.unused.contains(&"iam".to_string()) && u.unused.contains(&"ec2".to_string()),
        "{:?} {:?}",
        u.used,
        &u.unused[..10.min(u.unused.len())]
    );
    let p = s.proposal.as_ref().unwrap();
    assert!(
        p.kept.iter().all(|a| a.starts_with("s3:")) && p.kept_count > 50 && p.kept_count < 1000,
        "{:?}",
        &p.kept[..5.min(p.kept.len())]
    );
    assert!(
        p.removed_count > 10_000 && p.removed.iter().all(|a| !a.starts_with("s3:")),
        "{}",
        p.removed_count
    );
    let profile = &r
        .profiles
        .iter()
        .find(|x| x.profile == p.profile)
        .unwrap()
        .config;
    assert!(
        profile.contains("\"s3:*\"") && !profile.contains("\"*\""),
        "{profile}"
    );
    // CloudTrail: biden used lambda:ListFunctions (logged as ListFunctions20150331),
    // lambda:GetFunction and s3:GetObject; the denied CreateAccessKey is no use.
    let s = r
        .standing
        .iter()
        .find(|s| {
            s.principal.ends_with(":user/biden") && s.policy.ends_with("/AWSLambdaFullAccess")
        })
        .unwrap();
    let u = s.usage.as_ref().unwrap();
    assert_eq!(
        u.used,
        vec!["lambda:GetFunction", "lambda:ListFunctions", "s3:GetObject"]
    );
    let p = s.proposal.as_ref().unwrap();
    assert_eq!(p.kept, u.used);
    assert!(!p.kept.iter().any(|a| a == "iam:CreateAccessKey"));
}

#[test]
fn gcp_hierarchy_impersonation_and_public_access() {
    let f = here().join("gcp");
    let inputs = vec![
        gcp::GcpInput {
            resource: None,
            input: input(&f.join("acme-prod.ancestors.json")),
        },
        gcp::GcpInput {
            resource: Some("buckets/acme-public-assets".into()),
            input: input(&f.join("public-assets.policy.json")),
        },
        gcp::GcpInput {
            resource: None,
            input: input(&f.join("roles.json")),
        },
    ];
    let r = gcp::analyze(&Catalog::embedded().unwrap(), inputs, &Options::default()).unwrap();
    // Owner, a folder IAM admin and an organisation admin can each grant themselves anything.
    for a in [
        "user:alice@acme.example",
        "group:platform@acme.example",
        "user:root-admin@acme.example",
        "serviceAccount:deployer@acme-prod.iam.gserviceaccount.com",
    ] {
        assert!(
            r.admins.iter().any(|x| x == a),
            "{a} not admin: {:?}",
            r.admins
        );
    }
    // A conditional binding is reported, marked, and makes nobody admin.
    assert!(!r.admins.iter().any(|x| x == "user:frank@acme.example"));
    assert!(r
        .findings
        .iter()
        .any(|f| f.principals == ["user:frank@acme.example"] && f.conditional));
    // A binding that ends at a time is temporary access, not standing privilege.
    assert!(!r
        .findings
        .iter()
        .any(|f| f.principals.iter().any(|p| p == "user:temp@acme.example")));
    // Token Creator, actAs + compute, and Editor all reach the owner service account.
    let to_deployer = |who: &str, via: &str| {
        r.edges.iter().any(|e| {
            &*e.from == who && e.to.starts_with("serviceAccount:deployer@") && &*e.via == via
        })
    };
    assert!(to_deployer(
        "user:bob@acme.example",
        "iam.serviceAccounts.getAccessToken"
    ));
    assert!(to_deployer("user:carol@acme.example", "actAs"));
    assert!(r
        .paths
        .iter()
        .any(|p| p.principal == "group:devs@acme.example"));
    // allUsers on the bucket is public access, critical.
    assert!(r
        .findings
        .iter()
        .any(|f| f.category == Category::PublicAccess
            && f.principals == ["allUsers"]
            && f.resources == ["buckets/acme-public-assets"]));
    // The custom role's secret access is found; the role exported without permissions warns.
    assert!(r
        .findings
        .iter()
        .any(|f| f.policy == "projects/acme-prod/roles/secretReader"
            && f.permissions
                .contains(&"secretmanager.versions.access".to_string())));
    assert!(r
        .warnings
        .iter()
        .any(|w| w.message.contains("legacyOps") && w.message.contains("--view=FULL")));
    // Proposals: none for the service account (a workload), one for alice.
    assert!(r
        .standing
        .iter()
        .filter(|s| s.principal.starts_with("serviceAccount:"))
        .all(|s| s.proposal.is_none()));
    let alice = r
        .standing
        .iter()
        .find(|s| s.principal == "user:alice@acme.example")
        .and_then(|s| s.proposal.as_ref())
        .unwrap();
    assert!(
        alice
            .config
            .contains("member = \"user:alice@acme.example\""),
        "{}",
        alice.config
    );
    let profile = r
        .profiles
        .iter()
        .find(|p| p.profile == alice.profile)
        .unwrap();
    assert!(profile.config.contains("basic role"), "{}", profile.config);
}

#[test]
fn azure_scopes_custom_roles_and_managed_identities() {
    let f = here().join("azure");
    let inputs = [
        "role-assignments.json",
        "role-definitions.json",
        "identities.json",
    ]
    .iter()
    .map(|n| input(&f.join(n)))
    .collect();
    let r = azure::analyze(&Catalog::embedded().unwrap(), inputs, &Options::default()).unwrap();
    let id = |name: &str| {
        r.principals
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .id
            .clone()
    };
    // Owner and User Access Administrator can assign themselves anything; Contributor cannot.
    assert!(r.admins.contains(&id("alice@contoso.example")));
    assert!(r.admins.contains(&id("bob@contoso.example")));
    assert!(!r.admins.contains(&id("carol@contoso.example")));
    // The deploy identity (Owner) is reached by the ops team (assign it to a VM they control)
    // and by carol (Contributor may add a federated credential to it).
    let deploy = id("deploy-identity");
    assert!(r.admins.contains(&deploy));
    for who in ["ops-team", "carol@contoso.example"] {
        assert!(
            r.paths
                .iter()
                .any(|p| p.principal == id(who) && p.admin == deploy),
            "{who}"
        );
    }
    // The custom role reads secrets; the condition-limited RBAC admin is marked conditional.
    assert!(r
        .findings
        .iter()
        .any(|f| f.policy == "Secret Reader" && f.category == Category::DataExfiltration));
    assert!(r
        .findings
        .iter()
        .any(|f| f.principals == [id("frank@contoso.example")] && f.conditional));
    // Proposals: PIM eligibility, none for the managed identity.
    assert!(r
        .standing
        .iter()
        .any(|s| s.principal == deploy && s.proposal.is_none()));
    assert!(r.proposed_config.contains("mode = \"pim\""));
}

fn err(text: &str) -> AnalyzeError {
    let inputs = AwsInputs {
        exports: vec![Input::from_bytes("bad.json", text.as_bytes())],
        ..Default::default()
    };
    aws(&Catalog::embedded().unwrap(), inputs, &Options::default()).unwrap_err()
}

#[test]
fn bad_input_is_named_and_located() {
    // Truncated: the real export cut short.
    let full =
        std::fs::read_to_string(aws_fixture("cloudsplaining-example-authz-details.json")).unwrap();
    let e = err(&full[..full.len() / 2]).to_string();
    assert!(e.contains("bad.json") && e.contains("cut short"), "{e}");
    // Another cloud's export given as AWS.
    let gcp = std::fs::read_to_string(here().join("gcp/public-assets.policy.json")).unwrap();
    let e = err(&gcp).to_string();
    assert!(
        e.contains("not `aws iam get-account-authorization-details` output"),
        "{e}"
    );
    // A field of the wrong type, with line and path.
    let e = err("{\"UserDetailList\": [\n{\"UserName\": \"a\", \"Arn\": 5}]}").to_string();
    assert!(
        e.contains("line 2") && e.contains("UserDetailList[0].Arn"),
        "{e}"
    );
    // A statement with a bad Effect.
    let e = err(r#"{"Policies": [{"PolicyName": "p", "Arn": "arn:aws:iam::1:policy/p", "PolicyVersionList": [{"IsDefaultVersion": true, "Document": {"Statement": {"Effect": "Permit", "Action": "*", "Resource": "*"}}}]}]}"#).to_string();
    assert!(e.contains("Permit") || e.contains("Effect"), "{e}");
    // Too large: stopped at the limit, not read to the end.
    let inputs = AwsInputs {
        exports: vec![Input::from_bytes("big.json", full.as_bytes())],
        ..Default::default()
    };
    let e = aws(
        &Catalog::embedded().unwrap(),
        inputs,
        &Options {
            max_input: 1000,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, AnalyzeError::TooLarge { limit: 1000, .. }),
        "{e}"
    );
    // GCP: a bare policy without its resource; Azure: a GCP file.
    let e = gcp::analyze(
        &Catalog::embedded().unwrap(),
        vec![gcp::GcpInput {
            resource: None,
            input: Input::from_bytes("p.json", gcp.as_bytes()),
        }],
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("projects/acme-prod=FILE"), "{e}");
    let e = azure::analyze(
        &Catalog::embedded().unwrap(),
        vec![Input::from_bytes("p.json", gcp.as_bytes())],
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not an Azure RBAC export") && e.contains("az role assignment list"),
        "{e}"
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any bytes: an error or a report, never a panic.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let catalog = Catalog::embedded().unwrap();
            let _ = aws(&catalog, AwsInputs { exports: vec![Input::from_bytes("x", &bytes)], ..Default::default() }, &Options::default());
            let _ = gcp::analyze(&catalog, vec![gcp::GcpInput { resource: Some("projects/p".into()), input: Input::from_bytes("x", &bytes) }], &Options::default());
            let _ = azure::analyze(&catalog, vec![Input::from_bytes("x", &bytes)], &Options::default());
        }

        /// Structurally valid exports with arbitrary names and patterns: no panic either.
        #[test]
        fn odd_policies(action in "[a-z*?:]{0,12}", resource in "[a-z*:/${}]{0,20}", name in "[A-Za-z/:-]{1,12}") {
            let doc = serde_json::json!({"UserDetailList": [{"UserName": name, "Arn": format!("arn:aws:iam::1:user/{name}"), "UserPolicyList": [{"PolicyName": "p", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}}]}]}).to_string();
            let catalog = Catalog::embedded().unwrap();
            let _ = aws(&catalog, AwsInputs { exports: vec![Input::from_bytes("x", doc.as_bytes())], ..Default::default() }, &Options::default());
        }
    }
}

fn export(v: serde_json::Value) -> Report {
    let text = v.to_string();
    let inputs = AwsInputs {
        exports: vec![Input::new(
            "x.json",
            std::io::Cursor::new(text.into_bytes()),
        )],
        ..Default::default()
    };
    aws(&Catalog::embedded().unwrap(), inputs, &Options::default()).unwrap()
}

fn inline(name: &str, action: &str, resource: &str) -> serde_json::Value {
    serde_json::json!({"PolicyName": name, "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}})
}

/// Found by review: proposals must not merge different grants, name one person for another,
/// let a crafted name inject config, or offer more than the principal holds today.
#[test]
fn proposals_never_collide_inject_or_widen() {
    let admin = serde_json::json!({"PolicyName": "AdministratorAccess", "Arn": "arn:aws:iam::aws:policy/AdministratorAccess", "DefaultVersionId": "v1",
        "PolicyVersionList": [{"VersionId": "v1", "IsDefaultVersion": true, "Document": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}]});
    let boundary = serde_json::json!({"PolicyName": "s3-only", "Arn": "arn:aws:iam::111111111111:policy/s3-only", "DefaultVersionId": "v1",
        "PolicyVersionList": [{"VersionId": "v1", "IsDefaultVersion": true, "Document": {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]});
    let r = export(serde_json::json!({
        "Policies": [admin, boundary],
        "UserDetailList": [
            // The same user name in two accounts, each with an inline policy named `ops`.
            {"UserName": "admin", "Arn": "arn:aws:iam::111111111111:user/admin", "UserPolicyList": [inline("ops", "iam:*", "*")]},
            {"UserName": "admin", "Arn": "arn:aws:iam::222222222222:user/admin", "UserPolicyList": [inline("ops", "secretsmanager:GetSecretValue", "*")]},
            // Administrator within an s3-only boundary.
            {"UserName": "bounded", "Arn": "arn:aws:iam::111111111111:user/bounded", "AttachedManagedPolicies": [{"PolicyName": "AdministratorAccess", "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}],
             "PermissionsBoundary": {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": "arn:aws:iam::111111111111:policy/s3-only"}}
        ],
        "RoleDetailList": [{"RoleName": "x\n[[principals]]\nid = \"mallory\"\n#", "Arn": "arn:aws:iam::111111111111:role/evil", "Path": "/",
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "sts:AssumeRole"}]},
            "AttachedManagedPolicies": [{"PolicyName": "AdministratorAccess", "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}]}]
    }));
    // Two people, two identities; two different `ops` policies, two profiles.
    let ids: std::collections::BTreeSet<&str> = r
        .standing
        .iter()
        .filter(|s| s.principal.ends_with(":user/admin"))
        .filter_map(|s| s.proposal.as_ref())
        .map(|p| p.config.as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        r.proposed_config.contains("\"admin+111111111111\"")
            && r.proposed_config.contains("\"admin+222222222222\""),
        "{}",
        r.proposed_config
    );
    let ops: std::collections::BTreeSet<&str> = r
        .standing
        .iter()
        .filter(|s| s.policy.ends_with(":inline/ops"))
        .filter_map(|s| s.proposal.as_ref())
        .map(|p| p.profile.as_str())
        .collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    // No injected table, and the role's permit is left to the admin (commented out).
    let parsed: toml::Value = toml::from_str(&r.proposed_config).unwrap();
    assert!(parsed.get("principals").is_none(), "{}", r.proposed_config);
    assert!(
        !r.proposed_cedar
            .lines()
            .any(|l| l.starts_with("permit") && l.contains("mallory")),
        "{}",
        r.proposed_cedar
    );
    // Within its boundary, "bounded" is offered S3, not everything.
    let b = r
        .standing
        .iter()
        .find(|s| s.principal.ends_with(":user/bounded"))
        .and_then(|s| s.proposal.as_ref())
        .unwrap();
    let profile = &r
        .profiles
        .iter()
        .find(|p| p.profile == b.profile)
        .unwrap()
        .config;
    assert!(
        profile.contains("\"s3:*\"") && !profile.contains("\"*\""),
        "{profile}"
    );
    // Every Cedar id is distinct.
    let ids: Vec<&str> = r
        .proposed_cedar
        .lines()
        .filter(|l| l.starts_with("@id("))
        .collect();
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len());
}

/// Found by review: a CloudTrail time with a multi-byte character where the date is cut.
#[test]
fn odd_cloudtrail_times_do_not_panic() {
    let trail = r#"{"Records": [{"eventTime": "2024-01-0é-00", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "userIdentity": {"arn": "arn:aws:iam::012345678901:user/biden"}}]}"#;
    let r = small_aws(|i| {
        i.cloudtrail.push(Input::new(
            "t.json",
            std::io::Cursor::new(trail.as_bytes().to_vec()),
        ))
    });
    assert!(r.standing.iter().any(|s| s
        .usage
        .as_ref()
        .is_some_and(|u| u.window.contains("2024-01-0é"))));
}

/// A graph past `max_edges` stops the analysis with an error naming the way out, for every
/// cloud, instead of growing without bound; at the limit it still completes.
#[test]
fn a_graph_past_the_edge_limit_is_refused_not_grown() {
    let cat = Catalog::embedded().unwrap();
    let opts = |max_edges| Options {
        max_edges,
        ..Options::default()
    };
    let aws_inputs = || AwsInputs {
        exports: vec![input(&aws_fixture("cloudsplaining-example.json"))],
        ..Default::default()
    };
    let full = aws(&cat, aws_inputs(), &Options::default()).unwrap();
    assert!(full.edges.len() >= 2, "{}", full.edges.len());
    let Err(e) = aws(&cat, aws_inputs(), &opts(0)) else {
        panic!("a graph past the limit was analysed");
    };
    assert!(matches!(e, AnalyzeError::TooManyEdges { limit: 0 }), "{e}");
    assert!(e.to_string().contains("--max-edges"), "{e}");
    assert_eq!(
        aws(&cat, aws_inputs(), &opts(full.edges.len()))
            .unwrap()
            .edges
            .len(),
        full.edges.len()
    );

    let g = here().join("gcp");
    let gcp_inputs = || {
        vec![
            gcp::GcpInput {
                resource: None,
                input: input(&g.join("acme-prod.ancestors.json")),
            },
            gcp::GcpInput {
                resource: None,
                input: input(&g.join("roles.json")),
            },
        ]
    };
    assert!(!gcp::analyze(&cat, gcp_inputs(), &Options::default())
        .unwrap()
        .edges
        .is_empty());
    assert!(matches!(
        gcp::analyze(&cat, gcp_inputs(), &opts(0)),
        Err(AnalyzeError::TooManyEdges { limit: 0 })
    ));

    let a = here().join("azure");
    let azure_inputs = || {
        [
            "role-assignments.json",
            "role-definitions.json",
            "identities.json",
        ]
        .iter()
        .map(|n| input(&a.join(n)))
        .collect::<Vec<_>>()
    };
    assert!(!azure::analyze(&cat, azure_inputs(), &Options::default())
        .unwrap()
        .edges
        .is_empty());
    assert!(matches!(
        azure::analyze(&cat, azure_inputs(), &opts(0)),
        Err(AnalyzeError::TooManyEdges { limit: 0 })
    ));
}

/// Escalations PMapper has no check for: joining a group whose policies make its members
/// admin, and acting as another principal whose permissions one can also change (an inline or
/// attached policy, or that principal's membership of an admin group).
#[test]
fn aws_empowering_another_principal_one_can_act_as_is_admin() {
    let inline = |name: &str, stmts: &str| {
        format!(
            r#"{{"PolicyName": "{name}", "PolicyDocument": {{"Version": "2012-10-17", "Statement": [{stmts}]}}}}"#
        )
    };
    let allow = |action: &str, res: &str| {
        format!(r#"{{"Effect": "Allow", "Action": "{action}", "Resource": "{res}"}}"#)
    };
    let acct = "arn:aws:iam::111111111111";
    let user = |name: &str, policy: String| {
        format!(
            r#"{{"UserName": "{name}", "UserId": "AIDA{name}", "Arn": "{acct}:user/{name}", "Path": "/", "GroupList": [], "AttachedManagedPolicies": [], "UserPolicyList": [{policy}]}}"#
        )
    };
    let users = [
        user(
            "ops",
            inline(
                "ops",
                &[
                    allow("sts:AssumeRole", &format!("{acct}:role/app")),
                    allow("iam:PutRolePolicy", &format!("{acct}:role/app")),
                ]
                .join(","),
            ),
        ),
        user(
            "joiner",
            inline(
                "j",
                &allow("iam:AddUserToGroup", &format!("{acct}:group/Admins")),
            ),
        ),
        user(
            "keymaker",
            inline(
                "k",
                &[
                    allow("iam:CreateAccessKey", &format!("{acct}:user/quiet")),
                    allow("iam:AttachUserPolicy", &format!("{acct}:user/quiet")),
                ]
                .join(","),
            ),
        ),
        user(
            "limited",
            inline(
                "l",
                &allow("iam:PutRolePolicy", &format!("{acct}:role/app")),
            ),
        ),
        user(
            "assumer",
            inline("a", &allow("sts:AssumeRole", &format!("{acct}:role/app"))),
        ),
        user("quiet", String::new()),
    ]
    .join(",");
    let trust = format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": ["{acct}:user/ops", "{acct}:user/assumer"]}}, "Action": "sts:AssumeRole"}}]}}"#
    );
    let export = format!(
        r#"{{"UserDetailList": [{users}],
  "GroupDetailList": [{{"GroupName": "Admins", "GroupId": "AGPA1", "Arn": "{acct}:group/Admins", "Path": "/", "AttachedManagedPolicies": [], "GroupPolicyList": [{}]}}],
  "RoleDetailList": [{{"RoleName": "app", "RoleId": "AROA1", "Arn": "{acct}:role/app", "Path": "/", "AssumeRolePolicyDocument": {trust}, "AttachedManagedPolicies": [], "RolePolicyList": [], "InstanceProfileList": []}}],
  "Policies": []}}"#,
        inline("everything", &allow("*", "*"))
    );
    let r = aws(
        &Catalog::embedded().unwrap(),
        AwsInputs {
            exports: vec![Input::from_bytes("empower.json", export.as_bytes())],
            ..Default::default()
        },
        &Options::default(),
    )
    .unwrap();
    let admin = |name: &str| r.admins.iter().any(|a| a == &format!("{acct}:user/{name}"));
    for name in ["ops", "joiner", "keymaker"] {
        assert!(admin(name), "{name} is not admin: {:?}", r.admins);
    }
    for name in ["limited", "assumer", "quiet"] {
        assert!(!admin(name), "{name} is admin: {:?}", r.admins);
    }
    // No edges from an admin; the assumer keeps its edge to the role.
    assert!(!r.edges.iter().any(|e| e.from.ends_with("user/ops")));
    assert!(r
        .edges
        .iter()
        .any(|e| e.from.ends_with("user/assumer") && e.to.ends_with("role/app")));
    // The admin finding says how.
    let why = r
        .findings
        .iter()
        .filter(|f| f.principals.iter().any(|p| p.ends_with("user/ops")))
        .map(|f| format!("{} {}", f.title, f.detail))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(why.contains("iam:PutRolePolicy"), "{why}");
}

/// A per-policy finding names the holders the policy's permissions still reach: one whose
/// permissions boundary takes them away is not listed (and is not admin).
#[test]
fn per_policy_findings_leave_out_holders_a_boundary_stops() {
    let acct = "arn:aws:iam::111111111111";
    let policy = |name: &str, action: &str| {
        format!(
            r#"{{"PolicyName": "{name}", "PolicyId": "ANPA{name}", "Arn": "{acct}:policy/{name}", "Path": "/", "DefaultVersionId": "v1", "AttachmentCount": 1, "IsAttachable": true,
  "PolicyVersionList": [{{"VersionId": "v1", "IsDefaultVersion": true, "Document": {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "{action}", "Resource": "*"}}]}}}}]}}"#
        )
    };
    let user = |name: &str, boundary: &str| {
        format!(
            r#"{{"UserName": "{name}", "UserId": "AIDA{name}", "Arn": "{acct}:user/{name}", "Path": "/", "GroupList": [], "UserPolicyList": [],
  "AttachedManagedPolicies": [{{"PolicyName": "IamAll", "PolicyArn": "{acct}:policy/IamAll"}}]{boundary}}}"#
        )
    };
    let bounded = format!(
        r#", "PermissionsBoundary": {{"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": "{acct}:policy/S3Only"}}"#
    );
    let export = format!(
        r#"{{"UserDetailList": [{}, {}], "GroupDetailList": [], "RoleDetailList": [], "Policies": [{}, {}]}}"#,
        user("free", ""),
        user("bounded", &bounded),
        policy("IamAll", "iam:*"),
        policy("S3Only", "s3:*")
    );
    let r = aws(
        &Catalog::embedded().unwrap(),
        AwsInputs {
            exports: vec![Input::from_bytes("bounded.json", export.as_bytes())],
            ..Default::default()
        },
        &Options::default(),
    )
    .unwrap();
    let of_iam_all: Vec<&brevet_analyzer::Finding> = r
        .findings
        .iter()
        .filter(|f| f.policy.ends_with("policy/IamAll"))
        .collect();
    assert!(
        of_iam_all
            .iter()
            .any(|f| f.category == brevet_analyzer::Category::PrivilegeEscalation),
        "{of_iam_all:?}"
    );
    for f in &of_iam_all {
        assert!(
            f.principals.iter().any(|p| p.ends_with("user/free")),
            "{}: {:?}",
            f.title,
            f.principals
        );
        assert!(
            !f.principals.iter().any(|p| p.ends_with("user/bounded")),
            "{}: the boundary stops it: {:?}",
            f.title,
            f.principals
        );
    }
    assert!(r.admins.iter().any(|a| a.ends_with("user/free")));
    assert!(!r.admins.iter().any(|a| a.ends_with("user/bounded")));
}
