//! The AWS risk categories, per policy (as cloudsplaining judges them, so the two can be
//! compared), per role trust policy, and per principal where only the combination of its
//! policies escalates (which a per-policy scan cannot see).

use std::collections::BTreeSet;

use brevet_catalog::{Catalog, Cloud};

use super::document::{Effect, PrincipalSpec};
use super::lists::{CREDENTIAL_ACTIONS, ESCALATION_METHODS, EXFILTRATION_ACTIONS};
use super::model::{account_of, Kind, Model};
use crate::classify::explain;
use crate::permset::PermSet;
use crate::report::{finding_id, Category, Finding, Severity};
use crate::Exclusions;

/// Actions that let a principal rewrite its own permissions: with any of them on `*`, it can
/// give itself everything.
pub const SELF_ADMIN: [&str; 4] = [
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
];

/// Whether `have` (plus unknown literals) holds an action, by name, without case.
fn holds(catalog: &Catalog, have: &PermSet, literal: &BTreeSet<String>, action: &str) -> bool {
    match catalog.permission_index(Cloud::Aws, action) {
        Some(i) => have.contains(i),
        None => literal.contains(&action.to_ascii_lowercase()),
    }
}

/// The escalation methods `have` satisfies.
pub fn methods(
    catalog: &Catalog,
    have: &PermSet,
    literal: &BTreeSet<String>,
) -> Vec<(&'static str, &'static [&'static str])> {
    ESCALATION_METHODS
        .iter()
        .filter(|(_, acts)| acts.iter().all(|a| holds(catalog, have, literal, a)))
        .copied()
        .collect()
}

fn names(catalog: &Catalog, set: &PermSet) -> Vec<String> {
    let mut v: Vec<String> = set
        .iter()
        .map(|i| catalog.permissions()[i as usize].name.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Who holds each policy: the principals it is attached to, and the users of groups it is
/// attached to (they get it too).
pub fn all_holders(model: &Model) -> Vec<Vec<String>> {
    let mut out: Vec<BTreeSet<String>> = vec![BTreeSet::new(); model.policies.len()];
    for n in model.nodes.iter().filter(|n| !n.excluded) {
        for &p in &n.policies {
            out[p].insert(n.arn.clone());
            if n.kind == Kind::Group {
                for &m in &n.members {
                    if !model.nodes[m].excluded {
                        out[p].insert(model.nodes[m].arn.clone());
                    }
                }
            }
        }
    }
    out.into_iter().map(|s| s.into_iter().collect()).collect()
}

/// Per policy, cloudsplaining's categories. A finding names the holders the policy's
/// permissions still reach: one whose permissions boundary or other policies' denies take all
/// of the finding's permissions away is left out (`effective`: per node, what it is allowed
/// after denies and boundary).
pub fn policy_findings(
    catalog: &Catalog,
    model: &Model,
    exclusions: &Exclusions,
    effective: &[PermSet],
    node_of: &std::collections::HashMap<&str, usize>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let holders_of = all_holders(model);
    // Only a holder with a boundary or a deny somewhere in its policies can lose what a policy
    // allows; for the others the check is skipped (it costs name lookups per finding).
    let constrained: Vec<bool> = model
        .nodes
        .iter()
        .map(|n| {
            n.boundary.is_some()
                || n.policies
                    .iter()
                    .chain(
                        n.groups
                            .iter()
                            .flat_map(|&g| model.nodes[g].policies.iter()),
                    )
                    .any(|&p| !model.policies[p].facts.denied.is_empty())
        })
        .collect();
    let self_admin: Vec<u32> = SELF_ADMIN
        .iter()
        .filter_map(|a| catalog.permission_index(Cloud::Aws, a))
        .collect();
    let all_aws = catalog
        .permissions()
        .iter()
        .filter(|p| p.cloud == Cloud::Aws)
        .count();
    for (pi, p) in model.policies.iter().enumerate() {
        if p.excluded {
            continue;
        }
        let f = &p.facts;
        let principals = holders_of[pi].clone();
        let mut push = |category: Category, perms: Vec<String>, title: String, detail: String| {
            if perms.is_empty() {
                return;
            }
            let perms: Vec<String> = if matches!(
                category,
                Category::DataExfiltration
                    | Category::CredentialsExposure
                    | Category::InfrastructureModification
            ) {
                perms
                    .into_iter()
                    .filter(|a| !exclusions.excludes_action(a))
                    .collect()
            } else {
                perms
            };
            if perms.is_empty() {
                return;
            }
            let checked = principals
                .iter()
                .any(|h| node_of.get(h.as_str()).is_some_and(|&n| constrained[n]));
            // Names, or a service's wildcard (`iam:*`) in the service-wide category.
            let idx: Vec<u32> = if !checked {
                Vec::new()
            } else {
                perms
                    .iter()
                    .flat_map(|a| match catalog.permission_index(Cloud::Aws, a) {
                        Some(i) => vec![i],
                        None => catalog.expand(Cloud::Aws, a),
                    })
                    .collect()
            };
            let reached = |holder: &String| {
                idx.is_empty()
                    || !checked
                    || node_of
                        .get(holder.as_str())
                        .is_none_or(|&n| idx.iter().any(|&i| effective[n].contains(i)))
            };
            let principals: Vec<String> =
                principals.iter().filter(|h| reached(h)).cloned().collect();
            out.push(Finding {
                id: finding_id(Cloud::Aws, category, &p.id, &perms),
                cloud: Cloud::Aws,
                category,
                severity: category.severity(),
                title: format!("{}: {}", p.name, title),
                policy: p.id.clone(),
                permissions: crate::bindings::cap(&perms),
                resources: vec!["*".into()],
                principals,
                conditional: false,
                detail,
            });
        };
        // Admin-equivalent: everything, or rewriting its own permissions.
        let everything = f.unconstrained.len() * 10 >= all_aws * 9;
        let rewrites: Vec<String> = self_admin
            .iter()
            .filter(|&&i| f.unconstrained.contains(i))
            .map(|&i| catalog.permissions()[i as usize].name.clone())
            .collect();
        if everything || !rewrites.is_empty() {
            let (perms, why) = if everything {
                (
                    vec!["*".to_string()],
                    "allows (nearly) every action on every resource".to_string(),
                )
            } else {
                (
                    rewrites.clone(),
                    format!(
                        "allows {} on any principal, so a holder can give itself any permission",
                        rewrites.join(", ")
                    ),
                )
            };
            push(
                Category::AdminEquivalent,
                perms,
                "admin-equivalent".into(),
                format!(
                    "{} The policy {why}.",
                    explain(Category::AdminEquivalent, Cloud::Aws)
                ),
            );
        }
        let ms = methods(catalog, &f.unconstrained, &f.literal);
        if !ms.is_empty() {
            let mut acts: BTreeSet<String> = BTreeSet::new();
            for (_, a) in &ms {
                acts.extend(a.iter().map(|s| s.to_string()));
            }
            let list: Vec<&str> = ms.iter().map(|(m, _)| *m).collect();
            push(
                Category::PrivilegeEscalation,
                acts.into_iter().collect(),
                format!("{} escalation method(s)", ms.len()),
                format!(
                    "{} Methods: {}.",
                    explain(Category::PrivilegeEscalation, Cloud::Aws),
                    list.join(", ")
                ),
            );
        }
        let creds: Vec<String> = CREDENTIAL_ACTIONS
            .iter()
            .filter(|a| holds(catalog, &f.unconstrained, &f.literal, a))
            .map(|a| a.to_string())
            .collect();
        push(
            Category::CredentialsExposure,
            creds,
            "returns credentials".into(),
            explain(Category::CredentialsExposure, Cloud::Aws).into(),
        );
        let exfil: Vec<String> = EXFILTRATION_ACTIONS
            .iter()
            .filter(|a| holds(catalog, &f.unconstrained, &f.literal, a))
            .map(|a| a.to_string())
            .collect();
        push(
            Category::DataExfiltration,
            exfil,
            "reads data wholesale".into(),
            explain(Category::DataExfiltration, Cloud::Aws).into(),
        );
        push(
            Category::ResourceExposure,
            names(catalog, &f.permissions_management),
            "permissions management on *".into(),
            explain(Category::ResourceExposure, Cloud::Aws).into(),
        );
        push(
            Category::InfrastructureModification,
            names(catalog, &f.modify),
            "changes infrastructure on *".into(),
            explain(Category::InfrastructureModification, Cloud::Aws).into(),
        );
        let wild: Vec<String> = f
            .service_wildcards
            .iter()
            .map(|s| {
                if s == "*" {
                    "*".to_string()
                } else {
                    format!("{s}:*")
                }
            })
            .collect();
        push(
            Category::ServiceWildcard,
            wild,
            "whole services".into(),
            explain(Category::ServiceWildcard, Cloud::Aws).into(),
        );
    }
    out
}

/// Trust-policy findings per role: anyone, another account, or compute services may assume it.
pub fn trust_findings(model: &Model) -> Vec<Finding> {
    let mut out = Vec::new();
    for n in &model.nodes {
        let (Kind::Role, Some(trust), false) = (n.kind, &n.trust, n.excluded) else {
            continue;
        };
        let mut anyone: Option<bool> = None; // Some(conditional)
        let mut foreign: BTreeSet<String> = BTreeSet::new();
        let mut compute: BTreeSet<String> = BTreeSet::new();
        for s in trust
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
        {
            let assumes = s.action.as_ref().is_some_and(|a| {
                a.iter().any(|x| {
                    let x = x.to_ascii_lowercase();
                    x == "*" || x == "sts:*" || x.starts_with("sts:assumerole")
                })
            });
            if !assumes {
                continue;
            }
            let conditional = s
                .condition
                .as_ref()
                .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty()));
            match &s.principal {
                Some(PrincipalSpec::Everyone) => {
                    anyone = Some(anyone.unwrap_or(true) && conditional)
                }
                Some(PrincipalSpec::Typed { aws, service, .. }) => {
                    for a in aws {
                        if a == "*" || a == "arn:aws:iam::*:root" {
                            anyone = Some(anyone.unwrap_or(true) && conditional);
                            continue;
                        }
                        let acct = if a.chars().all(|c| c.is_ascii_digit()) && a.len() == 12 {
                            a.clone()
                        } else if a.starts_with("arn:aws:iam::") {
                            account_of(a)
                        } else {
                            String::new()
                        };
                        if !acct.is_empty() && acct != n.account {
                            foreign.insert(a.clone());
                        }
                    }
                    for svc in service {
                        let prefix = svc.split('.').next().unwrap_or("");
                        if svc.ends_with(".amazonaws.com")
                            && ["ec2", "eks", "ecs-tasks", "lambda"].contains(&prefix)
                        {
                            compute.insert(svc.clone());
                        }
                    }
                }
                None => {}
            }
        }
        let mut push = |category: Category,
                        severity: Severity,
                        perms: Vec<String>,
                        conditional: bool,
                        detail: String| {
            out.push(Finding {
                id: finding_id(Cloud::Aws, category, &n.arn, &perms),
                cloud: Cloud::Aws,
                category,
                severity,
                title: format!("{}: {}", n.name, category.title().to_lowercase()),
                policy: format!("{}:trust", n.arn),
                permissions: perms,
                resources: vec![n.arn.clone()],
                principals: vec![n.arn.clone()],
                conditional,
                detail,
            });
        };
        if let Some(conditional) = anyone {
            push(
                Category::PublicAccess,
                if conditional {
                    Severity::Medium
                } else {
                    Severity::Critical
                },
                vec!["sts:AssumeRole".into()],
                conditional,
                format!(
                    "The trust policy lets any AWS principal assume the role{}.",
                    if conditional {
                        " when its condition holds"
                    } else {
                        ""
                    }
                ),
            );
        }
        if !foreign.is_empty() {
            push(
                Category::CrossAccountTrust,
                Severity::Medium,
                foreign.into_iter().collect(),
                false,
                explain(Category::CrossAccountTrust, Cloud::Aws).into(),
            );
        }
        if !compute.is_empty() {
            push(
                Category::ComputeTrust,
                Severity::Low,
                compute.into_iter().collect(),
                false,
                explain(Category::ComputeTrust, Cloud::Aws).into(),
            );
        }
    }
    out
}

/// Per principal: escalation only the combination of its policies (its own and its groups')
/// allows — each policy alone is harmless, together they are not.
pub fn combined_findings(catalog: &Catalog, model: &Model, effective: &[PermSet]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (ni, n) in model.nodes.iter().enumerate() {
        if n.excluded || n.kind == Kind::Group {
            continue;
        }
        let mut pols: Vec<usize> = n.policies.clone();
        for &g in &n.groups {
            pols.extend(model.nodes[g].policies.iter().copied());
        }
        pols.sort_unstable();
        pols.dedup();
        let mut literal = BTreeSet::new();
        for &p in &pols {
            literal.extend(model.policies[p].facts.literal.iter().cloned());
        }
        let single: BTreeSet<&str> = pols
            .iter()
            .flat_map(|&p| {
                methods(
                    catalog,
                    &model.policies[p].facts.unconstrained,
                    &model.policies[p].facts.literal,
                )
                .into_iter()
                .map(|(m, _)| m)
            })
            .collect();
        let combined: Vec<(&str, &[&str])> = methods(catalog, &effective[ni], &literal)
            .into_iter()
            .filter(|(m, _)| !single.contains(m))
            .collect();
        if combined.is_empty() {
            continue;
        }
        let mut acts: BTreeSet<String> = BTreeSet::new();
        for (_, a) in &combined {
            acts.extend(a.iter().map(|s| s.to_string()));
        }
        // The policies that bring the actions.
        let mut from: BTreeSet<&str> = BTreeSet::new();
        for a in &acts {
            if let Some(i) = catalog.permission_index(Cloud::Aws, a) {
                for &p in &pols {
                    if model.policies[p].facts.unconstrained.contains(i) {
                        from.insert(model.policies[p].name.as_str());
                    }
                }
            }
        }
        let acts: Vec<String> = acts.into_iter().collect();
        let from: Vec<&str> = from.into_iter().collect();
        out.push(Finding {
            id: finding_id(
                Cloud::Aws,
                Category::PrivilegeEscalation,
                &format!("{}:combined", n.arn),
                &acts,
            ),
            cloud: Cloud::Aws,
            category: Category::PrivilegeEscalation,
            severity: Severity::High,
            title: format!(
                "{}: escalation through the combination of {}",
                n.name,
                from.join(" + ")
            ),
            policy: format!("{}:combined", n.arn),
            permissions: acts,
            resources: vec!["*".into()],
            principals: vec![n.arn.clone()],
            conditional: false,
            detail: format!(
                "No single policy allows it, but together ({}) they satisfy: {}.",
                from.join(", "),
                combined
                    .iter()
                    .map(|(m, _)| *m)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    out
}
