//! AWS: `aws iam get-account-authorization-details` exports (one or several accounts),
//! optionally with Access Advisor or CloudTrail activity for rights-sizing.
//!
//! Findings per policy in cloudsplaining's categories (so the two compare; the differences
//! are listed and explained in docs/analyzer.md), trust-policy findings per role, escalation a
//! principal gets only from the combination of its policies, the PMapper-style graph (IAM,
//! STS and pass-role-to-compute edges) with admin detection, and a standing-privilege report
//! with proposed Brevet profiles.

mod document;
mod export;
mod findings;
mod graph;
mod lists;
mod model;
mod usage;

use std::collections::BTreeSet;

use brevet_catalog::{Catalog, Cloud};

use self::document::Effect;
use self::model::{Kind, Model};
use crate::permset::PermSet;
use crate::propose::{
    cedar_permit, comment_safe, principal_id, short_hash, slug, toml_list, toml_str,
};
use crate::report::{
    Category, Principal, PrincipalKind, Proposal, Report, Severity, StandingGrant, Usage, Warning,
};
use crate::{AnalyzeError, Input, Options};

/// Everything an AWS analysis reads.
#[derive(Default)]
pub struct AwsInputs<'a> {
    /// `get-account-authorization-details` exports.
    pub exports: Vec<Input<'a>>,
    /// Access Advisor results, each with the principal ARN it is about.
    pub last_accessed: Vec<(String, Input<'a>)>,
    /// CloudTrail exports.
    pub cloudtrail: Vec<Input<'a>>,
    /// A service not used within this many days counts as unused (Access Advisor).
    pub unused_days: u32,
}

pub fn analyze(
    catalog: &Catalog,
    inputs: AwsInputs<'_>,
    opts: &Options,
) -> Result<Report, AnalyzeError> {
    let mut warnings: Vec<Warning> = Vec::new();
    let mut exports = Vec::new();
    for input in inputs.exports {
        let file = input.name.clone();
        let details: export::AuthorizationDetails = crate::input::parse(input, opts.max_input)?;
        if details.user_detail_list.is_none()
            && details.group_detail_list.is_none()
            && details.role_detail_list.is_none()
            && details.policies.is_none()
        {
            return Err(AnalyzeError::WrongFormat {
                file,
                expected: "`aws iam get-account-authorization-details` output",
                found: "JSON without UserDetailList, GroupDetailList, RoleDetailList or Policies".into(),
                hint: "Export with `aws iam get-account-authorization-details --output json > account.json` (it pages for you).",
            });
        }
        exports.push((file, details));
    }
    let mut activity = usage::Activity::default();
    let days = if inputs.unused_days == 0 {
        90
    } else {
        inputs.unused_days
    };
    for (arn, input) in inputs.last_accessed {
        usage::last_accessed(&mut activity, &arn, input, days, opts.max_input)?;
    }
    for input in inputs.cloudtrail {
        usage::cloudtrail(&mut activity, input, opts.max_input)?;
    }

    let model = model::build(catalog, exports, &opts.exclusions, &mut warnings);
    let ev = graph::Evaluator::new(catalog, &model);
    let admin_groups = graph::admin_groups(&ev, &model);
    let mut admin_why: Vec<Option<String>> = (0..model.nodes.len())
        .map(|i| {
            if model.nodes[i].excluded {
                None
            } else {
                graph::is_admin(&ev, &model, &admin_groups, i)
            }
        })
        .collect();
    let mut admins: Vec<bool> = admin_why.iter().map(Option::is_some).collect();
    let (mut edges, edge_kinds) = graph::edges(&ev, &model, &admins, opts.max_edges)?;
    // Two steps PMapper does not take: a principal that can act as another (an edge) and can
    // also give that one any permission is admin-equivalent through it. Its own edges go, as
    // every admin's do (it reaches everyone).
    let index: std::collections::HashMap<&str, usize> = model
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.arn.as_str(), i))
        .collect();
    let mut promoted = false;
    let mut through: Vec<(usize, usize, String)> = Vec::new();
    // Only a principal whose policies name one of these calls at all can empower anyone (a bit
    // test per principal, so a million-edge graph is walked cheaply).
    let may: Vec<bool> = (0..model.nodes.len())
        .map(|s| {
            [
                "iam:PutUserPolicy",
                "iam:AttachUserPolicy",
                "iam:PutRolePolicy",
                "iam:AttachRolePolicy",
                "iam:AddUserToGroup",
            ]
            .iter()
            .any(|a| ev.mentions(s, a))
        })
        .collect();
    // Edges come grouped by source, sharing its id: look the source up once per group.
    let mut last: Option<(std::sync::Arc<str>, Option<usize>)> = None;
    for e in &edges {
        let s = match &last {
            Some((from, s)) if std::sync::Arc::ptr_eq(from, &e.from) => *s,
            _ => {
                let s = index.get(&*e.from).copied();
                last = Some((e.from.clone(), s));
                s
            }
        };
        let Some(s) = s.filter(|&s| may[s]) else {
            continue;
        };
        let Some(&d) = index.get(&*e.to) else {
            continue;
        };
        // An admin target is a path already.
        if admins[s] || admin_why[s].is_some() || admins[d] {
            continue;
        }
        if let Some(how) = graph::can_empower(&ev, &model, &admin_groups, s, d) {
            admin_why[s] = Some(format!(
                "can act as {} ({}) and give it any permission ({how})",
                model.nodes[d].name, e.via
            ));
            through.push((s, d, how));
            promoted = true;
        }
    }
    if promoted {
        admins = admin_why.iter().map(Option::is_some).collect();
        edges.retain(|e| index.get(&*e.from).is_none_or(|&s| !admins[s]));
    }

    let effective = effective_sets(catalog, &model);
    let mut findings =
        findings::policy_findings(catalog, &model, &opts.exclusions, &effective, &index);
    findings.extend(findings::trust_findings(&model));
    findings.extend(findings::combined_findings(catalog, &model, &effective));
    for (s, d, how) in &through {
        let (src, dst) = (&model.nodes[*s], &model.nodes[*d]);
        let policy = format!("{}:through:{}", src.arn, dst.arn);
        let permissions: Vec<String> = how
            .split_whitespace()
            .next()
            .map(|a| vec![a.to_string()])
            .unwrap_or_default();
        findings.push(crate::report::Finding {
            id: crate::report::finding_id(
                Cloud::Aws,
                Category::AdminEquivalent,
                &policy,
                &permissions,
            ),
            cloud: Cloud::Aws,
            category: Category::AdminEquivalent,
            severity: Severity::Critical,
            title: format!("{}: admin-equivalent through {}", src.name, dst.name),
            policy,
            permissions,
            resources: vec![dst.arn.clone()],
            principals: vec![src.arn.clone()],
            conditional: false,
            detail: format!(
                "{} {}: it can make that principal admin and use it.",
                src.name,
                admin_why[*s].as_deref().unwrap_or_default()
            ),
        });
    }

    let principals: Vec<Principal> = model
        .nodes
        .iter()
        .filter(|n| !n.excluded)
        .map(|n| Principal {
            id: n.arn.clone(),
            kind: match n.kind {
                Kind::User => PrincipalKind::User,
                Kind::Group => PrincipalKind::Group,
                Kind::Role => PrincipalKind::Role,
            },
            name: n.name.clone(),
            scope: format!("aws account {}", n.account),
            workload: n.workload(),
        })
        .collect();
    let standing = standing(catalog, &model, &findings, &admin_why, &activity);
    let mut report = Report {
        clouds: vec![Cloud::Aws],
        scopes: model
            .accounts
            .iter()
            .map(|a| format!("aws account {a}"))
            .collect(),
        principals,
        findings,
        edges,
        admins: model
            .nodes
            .iter()
            .zip(&admins)
            .filter(|(_, a)| **a)
            .map(|(n, _)| n.arn.clone())
            .collect(),
        admin_reasons: model
            .nodes
            .iter()
            .zip(&admin_why)
            .filter_map(|(n, w)| Some((n.arn.clone(), w.clone()?)))
            .collect(),
        standing,
        warnings,
        edge_kinds,
        ..Report::default()
    };
    crate::finish(&mut report, opts);
    Ok(report)
}

/// Per node: what it may do without condition on every resource, across its own and its
/// groups' policies, less unconditional denies anywhere in them, within its boundary.
fn effective_sets(catalog: &Catalog, model: &Model) -> Vec<PermSet> {
    let universe = catalog.permissions().len();
    model
        .nodes
        .iter()
        .map(|n| {
            let mut pols = n.policies.clone();
            for &g in &n.groups {
                pols.extend(model.nodes[g].policies.iter().copied());
            }
            let mut have = PermSet::new(universe);
            let mut denied = PermSet::new(universe);
            for &p in &pols {
                let f = &model.policies[p].facts;
                let mut u = f.unconstrained.clone();
                u.union_with(&f.denied); // undo the policy's own subtraction: denies apply below
                have.union_with(&f.unconstrained);
                denied.union_with(&f.denied);
            }
            have.difference_with(&denied);
            if let Some(b) = n.boundary {
                let mut allowed = model.policies[b].facts.mentioned.clone();
                allowed.difference_with(&model.policies[b].facts.denied);
                have.intersect_with(&allowed);
            }
            have
        })
        .collect()
}

fn standing(
    catalog: &Catalog,
    model: &Model,
    findings: &[crate::report::Finding],
    admin_why: &[Option<String>],
    activity: &usage::Activity,
) -> Vec<StandingGrant> {
    let mut by_policy: std::collections::HashMap<&str, Vec<&crate::report::Finding>> =
        std::collections::HashMap::new();
    for f in findings {
        by_policy.entry(f.policy.as_str()).or_default().push(f);
    }
    let mut out = Vec::new();
    for (ni, n) in model.nodes.iter().enumerate() {
        if n.excluded || n.kind == Kind::Group {
            continue;
        }
        let mut held: Vec<(usize, String)> = n
            .policies
            .iter()
            .map(|&p| (p, "direct".to_string()))
            .collect();
        for &g in &n.groups {
            held.extend(
                model.nodes[g]
                    .policies
                    .iter()
                    .map(|&p| (p, format!("group {}", model.nodes[g].name))),
            );
        }
        // A policy held both directly and through a group is one standing grant, held two ways.
        let mut merged: Vec<(usize, String)> = Vec::new();
        for (p, via) in held {
            match merged.iter_mut().find(|(q, _)| *q == p) {
                Some((_, v)) => {
                    v.push_str(" and ");
                    v.push_str(&via);
                }
                None => merged.push((p, via)),
            }
        }
        for (p, via) in merged {
            let pol = &model.policies[p];
            let related: Vec<&crate::report::Finding> = by_policy
                .get(pol.id.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|f| {
                    f.policy == pol.id
                        && f.principals.contains(&n.arn)
                        && (f.severity >= Severity::High
                            || f.category == Category::DataExfiltration)
                })
                .collect();
            if related.is_empty() {
                continue;
            }
            let admin = related
                .iter()
                .any(|f| f.category == Category::AdminEquivalent)
                || (admin_why[ni].is_some()
                    && related
                        .iter()
                        .any(|f| f.category == Category::PrivilegeEscalation));
            let mut sensitive: BTreeSet<String> = BTreeSet::new();
            for f in &related {
                sensitive.extend(
                    f.permissions
                        .iter()
                        .filter(|x| !x.starts_with('…'))
                        .cloned(),
                );
            }
            let usage = usage_of(catalog, pol, &n.arn, activity).or_else(|| match &n.last_used {
                // AWS tracks role use for 400 days: an empty RoleLastUsed means none in that time.
                Some(None) => Some(Usage {
                    window: "400 days (RoleLastUsed)".into(),
                    used: vec![],
                    unused: vec![],
                    unused_entirely: true,
                }),
                _ => None,
            });
            let proposal = if n.workload() {
                None
            } else {
                propose(catalog, model, n, pol, admin, usage.as_ref())
            };
            out.push(StandingGrant {
                principal: n.arn.clone(),
                policy: pol.id.clone(),
                via,
                scope: format!("aws account {}", n.account),
                severity: related
                    .iter()
                    .map(|f| f.severity)
                    .max()
                    .unwrap_or(Severity::High),
                admin_equivalent: admin,
                sensitive: crate::bindings::cap(&sensitive.into_iter().collect::<Vec<_>>()),
                usage,
                proposal,
            });
        }
    }
    out
}

/// The policy's granted services/actions against what the principal used.
fn usage_of(
    catalog: &Catalog,
    pol: &model::Policy,
    arn: &str,
    activity: &usage::Activity,
) -> Option<Usage> {
    let granted = &pol.facts.mentioned;
    if let Some(actions) = activity.actions.get(arn) {
        let used: BTreeSet<String> = actions
            .iter()
            .filter_map(|a| {
                catalog
                    .permission_index(Cloud::Aws, a)
                    .filter(|&i| granted.contains(i))
                    .map(|i| catalog.permissions()[i as usize].name.clone())
            })
            .collect();
        let unused_services: BTreeSet<String> = granted
            .iter()
            .map(|i| {
                catalog.permissions()[i as usize]
                    .service()
                    .to_ascii_lowercase()
            })
            .filter(|s| {
                !used
                    .iter()
                    .any(|u| u.to_ascii_lowercase().starts_with(&format!("{s}:")))
            })
            .collect();
        return Some(Usage {
            window: activity.window.clone(),
            unused_entirely: used.is_empty(),
            used: used.into_iter().collect(),
            unused: unused_services
                .into_iter()
                .map(|s| format!("{s}:*"))
                .collect(),
        });
    }
    if activity.covered.contains(arn) {
        let services = activity.services.get(arn).cloned().unwrap_or_default();
        let granted_services: BTreeSet<String> = granted
            .iter()
            .map(|i| {
                catalog.permissions()[i as usize]
                    .service()
                    .to_ascii_lowercase()
            })
            .collect();
        let used: Vec<String> = granted_services
            .iter()
            .filter(|s| services.contains(*s))
            .cloned()
            .collect();
        let unused: Vec<String> = granted_services
            .iter()
            .filter(|s| !services.contains(*s))
            .cloned()
            .collect();
        return Some(Usage {
            window: activity.window.clone(),
            unused_entirely: used.is_empty(),
            used,
            unused,
        });
    }
    None
}

/// Actions as a profile lists them: a service held whole as `svc:*`, everything as `*`.
fn collapse(catalog: &Catalog, kept: &[String]) -> Vec<String> {
    let all_aws = catalog
        .permissions()
        .iter()
        .filter(|p| p.cloud == Cloud::Aws)
        .count();
    if kept.len() * 10 >= all_aws * 9 {
        return vec!["*".into()];
    }
    let mut by_service: std::collections::BTreeMap<String, Vec<&String>> =
        std::collections::BTreeMap::new();
    for a in kept {
        by_service
            .entry(a.split(':').next().unwrap_or("").to_string())
            .or_default()
            .push(a);
    }
    let mut out = Vec::new();
    for (svc, acts) in by_service {
        if acts.len() >= 5 && acts.len() == catalog.in_service(Cloud::Aws, &svc).len() {
            out.push(format!("{svc}:*"));
        } else {
            out.extend(acts.into_iter().cloned());
        }
    }
    out
}

/// The policy's allowed action patterns, as written.
fn allowed_patterns(pol: &model::Policy) -> (Vec<String>, bool) {
    let mut out = BTreeSet::new();
    let mut not_action = false;
    for st in &pol.statements {
        if st.effect != Effect::Allow {
            continue;
        }
        if st.not_action {
            not_action = true;
            continue;
        }
        out.extend(st.patterns.iter().cloned());
    }
    (out.into_iter().collect(), not_action)
}

fn propose(
    catalog: &Catalog,
    model: &Model,
    n: &model::Node,
    pol: &model::Policy,
    admin: bool,
    usage: Option<&Usage>,
) -> Option<Proposal> {
    let (patterns, not_action) = allowed_patterns(pol);
    // What the policy allows (NotAction statements included), and what of it was used.
    let granted = &pol.facts.mentioned;
    let perms = catalog.permissions();
    let mut kept_set = granted.clone();
    match usage {
        Some(u) if !u.used.is_empty() && u.used.iter().all(|x| x.contains(':')) => {
            let mut used = PermSet::new(perms.len());
            for a in &u.used {
                if let Some(i) = catalog.permission_index(Cloud::Aws, a) {
                    used.insert(i);
                }
            }
            kept_set.intersect_with(&used);
        }
        Some(u) if !u.used.is_empty() => {
            let used: BTreeSet<String> = u.used.iter().map(|s| s.to_ascii_lowercase()).collect();
            let mut keep = PermSet::new(perms.len());
            for i in granted.iter() {
                if used.contains(&perms[i as usize].service().to_ascii_lowercase()) {
                    keep.insert(i);
                }
            }
            kept_set = keep;
        }
        _ => {}
    }
    // Never more than the principal holds today: its other policies' unconditional denies and
    // its permissions boundary apply to the proposal too.
    let mut today = PermSet::new(perms.len());
    let mut denied = PermSet::new(perms.len());
    let mut held: Vec<usize> = n.policies.clone();
    for &g in &n.groups {
        held.extend(model.nodes[g].policies.iter().copied());
    }
    for &p in &held {
        today.union_with(&model.policies[p].facts.mentioned);
        denied.union_with(&model.policies[p].facts.denied);
    }
    today.difference_with(&denied);
    if let Some(b) = n.boundary {
        let mut within = model.policies[b].facts.mentioned.clone();
        within.difference_with(&model.policies[b].facts.denied);
        today.intersect_with(&within);
    }
    let before = kept_set.len();
    kept_set.intersect_with(&today);
    let narrowed = kept_set.len() < before;
    if kept_set.is_empty() {
        // Denied everywhere else or outside its boundary: nothing to make eligible.
        return None;
    }
    let mut removed_set = granted.clone();
    removed_set.difference_with(&kept_set);
    let names = |set: &PermSet, limit: usize| -> Vec<String> {
        set.iter()
            .take(limit)
            .map(|i| perms[i as usize].name.clone())
            .collect()
    };
    let (kept_count, removed_count) = (kept_set.len(), removed_set.len());
    let removed = names(&removed_set, 50);
    // AWS-managed policy names are unique; inline and customer-managed ones are not.
    let profile = if pol.aws_managed {
        format!("aws.{}", slug(&pol.name, 50))
    } else {
        format!("aws.{}-{}", slug(&pol.name, 40), short_hash(&[&pol.id]))
    };
    // User names repeat across accounts: with several accounts, the account is part of the id.
    let brevet_id = if model.accounts.len() > 1 {
        format!("{}+{}", principal_id(&n.name), n.account)
    } else {
        principal_id(&n.name)
    };
    let mut comments = String::new();
    // The most compact honest list: what was used when activity says so; otherwise the
    // policy's own patterns (`s3:Get*` is shorter than what it expands to); a NotAction
    // policy expanded into what it allows.
    let rights_sized = usage.is_some_and(|u| !u.used.is_empty()) && removed_count > 0;
    // Rights-sized to one principal's use: its own profile.
    let profile = if rights_sized || narrowed {
        format!(
            "aws.{}-{}-{}",
            slug(&pol.name, 30),
            slug(&n.name, 20),
            short_hash(&[&pol.id, &n.arn])
        )
    } else {
        profile
    };
    if narrowed {
        comments.push_str(&format!("# Narrowed to what {} may do today: its other policies' denies and its permissions boundary apply.\n", comment_safe(&n.name)));
    }
    let actions: Vec<String> = if rights_sized || narrowed || not_action || patterns.is_empty() {
        collapse(catalog, &names(&kept_set, usize::MAX))
    } else {
        patterns.clone()
    };
    if actions.iter().any(|a| a.contains('*')) {
        comments.push_str(
            "# Wildcards: the provider needs allow_wildcards = true under [providers.aws].\n",
        );
    }
    if not_action {
        comments.push_str("# The policy allows by NotAction (everything but a list): expanded here into what that allows.\n");
    }
    if usage.is_some_and(|u| u.unused_entirely) {
        comments.push_str("# Nothing in this policy was used in the activity window: consider removing it rather than making it eligible.\n");
    }
    let identity = match n.kind {
        Kind::User => format!("[providers.aws.identities]\n{} = {{ arn = {} }}\n\n", toml_str(&brevet_id), toml_str(&n.arn)),
        _ => format!("# {} is a role: make each person who assumes it a Brevet principal with their own identity,\n# give them this profile instead of the role, and write their Cedar permit (the proposal's is commented out).\n\n", comment_safe(&n.name)),
    };
    let arns = resource_arns(pol, &n.account);
    let whole_account = arns
        == [
            format!("arn:aws:*:*:{}:*", n.account),
            "arn:aws:s3:::*".to_string(),
        ];
    let res_name = if whole_account {
        format!("aws:{}", n.account)
    } else {
        let joined: Vec<&str> = arns.iter().map(String::as_str).collect();
        format!("aws:{}-{}", n.account, short_hash(&joined))
    };
    let mut profile_block = format!(
        "[providers.aws.profiles.{}]\n{comments}mode = \"role\"\nactions = {}\n",
        toml_str(&profile),
        toml_list(&actions)
    );
    // A role's inline policies hold 10,240 characters in all (Brevet's revocation deny shares
    // them): a grant that cannot fit is proposed commented out, with what to do instead.
    let size: usize = 80
        + actions.iter().map(|a| a.len() + 3).sum::<usize>()
        + arns.iter().map(|a| a.len() + 3).sum::<usize>();
    if size > 9_000 {
        let commented: String = profile_block.lines().map(|l| format!("# {l}\n")).collect();
        profile_block = format!("# {} does not fit a role's inline policy (about {size} characters, IAM allows 10,240):\n# supply Access Advisor or CloudTrail data to rights-size it, or grant it through an\n# Identity Center permission set (mode = \"identity_center\").\n{commented}", comment_safe(&pol.name));
    }
    let config = format!(
        "{identity}{profile_block}\n[resources.{}]\naccount = {}\narns = {}\n",
        toml_str(&res_name),
        toml_str(&n.account),
        toml_list(&arns),
    );
    let cedar = cedar_permit(&brevet_id, &res_name, &profile, admin);
    // A role is not a person: a live permit for a Brevet principal named after it could make
    // someone else eligible. The admin writes the permits for the role's people.
    let cedar = if n.kind == Kind::Role {
        crate::propose::commented(&cedar, "//")
    } else {
        cedar
    };
    Some(Proposal {
        cedar,
        profile,
        config,
        kept: names(&kept_set, 50),
        removed,
        kept_count,
        removed_count,
    })
}

/// The ARNs the policy's allows name, or the whole account.
fn resource_arns(pol: &model::Policy, account: &str) -> Vec<String> {
    let mut arns = BTreeSet::new();
    for st in pol.statements.iter().filter(|s| s.effect == Effect::Allow) {
        match &st.resources {
            document::Resources::Listed(v) => {
                for a in v {
                    let parts: Vec<&str> = a.splitn(6, ':').collect();
                    // Only ARNs Brevet can scope a resource to: this account's or account-less.
                    if parts.len() == 6 && (parts[4].is_empty() || parts[4] == account) {
                        arns.insert(a.clone());
                    }
                }
            }
            _ => {
                arns.insert(format!("arn:aws:*:*:{account}:*"));
                arns.insert("arn:aws:s3:::*".into());
            }
        }
    }
    if arns.is_empty() {
        arns.insert(format!("arn:aws:*:*:{account}:*"));
    }
    arns.into_iter().collect()
}
