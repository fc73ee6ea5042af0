//! The shape GCP and Azure share: a principal holds a role at a scope, scopes inherit from
//! their parents. From it: findings per role and scope, admin-equivalent principals, standing
//! grants. (AWS's policies attach to principals instead; `aws/` has its own walk.)

use std::collections::{BTreeMap, BTreeSet, HashMap};

use brevet_catalog::{Catalog, Cloud};

use crate::classify::{classify, explain};
use crate::permset::PermSet;
use crate::report::{finding_id, Category, Finding, Principal, Severity};

/// A role as the analysis knows it: its name and permission set.
pub struct RoleDef {
    pub name: String,
    /// A display name where the id is opaque (Azure GUIDs).
    pub title: String,
    pub perms: PermSet,
    /// The role holds everything (`*`, GCP's basic Owner/Editor): reported as such.
    pub everything: bool,
    /// Permissions as written, for reports (`Microsoft.Storage/*`, `-Microsoft.Authorization/*`).
    pub patterns: Vec<String>,
}

/// "principal holds role at scope".
#[derive(Debug, Clone)]
pub struct Binding {
    pub principal: String,
    pub role: usize,
    pub scope: String,
    /// Limited by an IAM condition / ABAC condition.
    pub conditional: bool,
}

/// The scopes (resources) and their parents.
#[derive(Default)]
pub struct Hierarchy {
    pub parent: HashMap<String, String>,
}

impl Hierarchy {
    /// `scope` and its ancestors, nearest first.
    pub fn chain(&self, scope: &str) -> Vec<String> {
        let mut out = vec![scope.to_string()];
        let mut cur = scope;
        while let Some(p) = self.parent.get(cur) {
            if out.contains(p) {
                break; // a cycle in hand-made input; stop rather than loop
            }
            out.push(p.clone());
            cur = p;
        }
        out
    }
}

/// Findings: one per (role, scope, category), naming every principal bound to that role there.
pub fn findings(
    catalog: &Catalog,
    cloud: Cloud,
    roles: &[RoleDef],
    bindings: &[Binding],
    admin_role: impl Fn(&RoleDef) -> Option<String>,
) -> Vec<Finding> {
    // (role, scope) → (principals, all conditional?)
    let mut groups: BTreeMap<(usize, &str), (BTreeSet<&str>, bool)> = BTreeMap::new();
    for b in bindings {
        let e = groups
            .entry((b.role, b.scope.as_str()))
            .or_insert((BTreeSet::new(), true));
        e.0.insert(b.principal.as_str());
        e.1 &= b.conditional;
    }
    let mut classified: HashMap<usize, BTreeMap<Category, Vec<String>>> = HashMap::new();
    let mut out = Vec::new();
    for ((ri, scope), (principals, conditional)) in groups {
        let role = &roles[ri];
        let cats = classified
            .entry(ri)
            .or_insert_with(|| classify(catalog, cloud, &role.perms));
        let mut push = |category: Category, perms: Vec<String>, detail: String| {
            let mut severity = category.severity();
            if conditional && severity > Severity::Low {
                severity = match severity {
                    Severity::Critical => Severity::High,
                    Severity::High => Severity::Medium,
                    _ => Severity::Low,
                };
            }
            let policy = role.name.clone();
            out.push(Finding {
                id: finding_id(cloud, category, &format!("{policy}@{scope}"), &perms),
                cloud,
                category,
                severity,
                title: format!(
                    "{} at {scope}: {}",
                    role.title,
                    category.title().to_lowercase()
                ),
                policy,
                permissions: perms,
                resources: vec![scope.to_string()],
                principals: principals.iter().map(|s| s.to_string()).collect(),
                conditional,
                detail,
            });
        };
        if let Some(why) = admin_role(role) {
            push(
                Category::AdminEquivalent,
                vec![why.clone()],
                format!("{} {why}", explain(Category::AdminEquivalent, cloud)),
            );
        }
        for (cat, perms) in cats.iter() {
            let shown = cap(perms);
            push(*cat, shown, explain(*cat, cloud).to_string());
        }
    }
    out
}

/// At most 50 names in a finding (a basic role holds thousands), with a count of the rest.
pub fn cap(perms: &[String]) -> Vec<String> {
    const MAX: usize = 50;
    if perms.len() <= MAX {
        return perms.to_vec();
    }
    let mut v = perms[..MAX].to_vec();
    v.push(format!("… and {} more", perms.len() - MAX));
    v
}

/// Principals named in bindings, kinds by their ids.
pub fn principals_of(bindings: &[Binding], make: impl Fn(&str) -> Principal) -> Vec<Principal> {
    let ids: BTreeSet<&str> = bindings.iter().map(|b| b.principal.as_str()).collect();
    ids.into_iter().map(make).collect()
}

/// Standing grants: each (principal, role, scope) whose findings there are high or critical,
/// with the replacement `propose` makes for it (None for workload identities, or when nothing
/// can be proposed). `via` says how the grant is held.
pub fn standing(
    roles: &[RoleDef],
    bindings: &[Binding],
    principals: &[Principal],
    findings: &[Finding],
    via: impl Fn(&Binding) -> String,
    propose: impl Fn(&RoleDef, &Binding, &Principal, bool) -> Option<crate::report::Proposal>,
) -> Vec<crate::report::StandingGrant> {
    let mut by_policy: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for f in findings {
        by_policy.entry(f.policy.as_str()).or_default().push(f);
    }
    let by_id: HashMap<&str, &Principal> = principals.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut out = Vec::new();
    let mut seen: std::collections::HashSet<(&str, usize, &str)> = Default::default();
    for b in bindings {
        if !seen.insert((b.principal.as_str(), b.role, b.scope.as_str())) {
            continue;
        }
        let role = &roles[b.role];
        let related: Vec<&Finding> = by_policy
            .get(role.name.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|f| {
                f.resources.first() == Some(&b.scope)
                    && f.severity >= Severity::High
                    && f.principals.contains(&b.principal)
            })
            .collect();
        if related.is_empty() {
            continue;
        }
        let admin = related
            .iter()
            .any(|f| f.category == Category::AdminEquivalent);
        let mut sensitive: BTreeSet<String> = BTreeSet::new();
        for f in related
            .iter()
            .filter(|f| f.category != Category::AdminEquivalent)
        {
            sensitive.extend(
                f.permissions
                    .iter()
                    .filter(|p| !p.starts_with('…'))
                    .cloned(),
            );
        }
        let proposal = by_id
            .get(b.principal.as_str())
            .and_then(|p| propose(role, b, p, admin));
        out.push(crate::report::StandingGrant {
            principal: b.principal.clone(),
            policy: role.name.clone(),
            via: via(b),
            scope: b.scope.clone(),
            severity: related
                .iter()
                .map(|f| f.severity)
                .max()
                .unwrap_or(Severity::High),
            admin_equivalent: admin,
            sensitive: cap(&sensitive.into_iter().collect::<Vec<_>>()),
            usage: None,
            proposal,
        });
    }
    out
}
