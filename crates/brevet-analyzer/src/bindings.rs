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
