//! Azure RBAC: role assignments at scopes (management group → subscription → resource group →
//! resource), built-in roles from the catalog and role definitions from `az role definition
//! list`, managed identities from `az identity list`.
//!
//! A scope's assignments apply to everything below it. Admin-equivalent: a role holding
//! `Microsoft.Authorization/roleAssignments/write` (Owner, User Access Administrator, RBAC
//! Administrator… — it can assign itself Owner) or `*`. Escalation edges: assigning a
//! user-assigned identity to compute one controls
//! (`userAssignedIdentities/assign/action` plus a compute write), or adding a federated
//! credential to it, lets one act as that identity.

use std::collections::{BTreeSet, HashMap, HashSet};

use brevet_catalog::{Catalog, Cloud};
use serde::Deserialize;

use crate::bindings::{self, Binding, RoleDef};
use crate::permset::PermSet;
use crate::propose::{cedar_permit, principal_id, slug, toml_list, toml_str};
use crate::report::{Edge, Principal, PrincipalKind, Proposal, Report, Warning};
use crate::{read_value, typed, AnalyzeError, Input, Options};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assignment {
    principal_id: String,
    role_definition_id: String,
    scope: String,
    #[serde(default)]
    principal_name: Option<String>,
    #[serde(default)]
    principal_type: Option<String>,
    #[serde(default)]
    role_definition_name: Option<String>,
    #[serde(default)]
    condition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Definition {
    role_name: String,
    name: String,
    #[serde(default)]
    permissions: Vec<PermissionBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PermissionBlock {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    not_actions: Vec<String>,
    #[serde(default)]
    data_actions: Vec<String>,
    #[serde(default)]
    not_data_actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    id: String,
    name: String,
    principal_id: String,
}

/// Roles Brevet refuses as not task-sized; a proposal for them asks for a narrower role.
const NOT_TASK_SIZED: [&str; 4] = [
    "Owner",
    "Contributor",
    "User Access Administrator",
    "Role Based Access Control Administrator",
];

const COMPUTE_WRITE: [&str; 5] = [
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Web/sites/write",
    "Microsoft.ContainerInstance/containerGroups/write",
    "Microsoft.Logic/workflows/write",
    "Microsoft.Automation/automationAccounts/write",
];

fn guid_of(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_ascii_lowercase()
}

/// Whether `inner` is `outer` or below it (ARM scopes compare without case, per segment).
fn covers(outer: &str, inner: &str) -> bool {
    let o = outer.trim_end_matches('/').to_ascii_lowercase();
    let i = inner.trim_end_matches('/').to_ascii_lowercase();
    o.is_empty() || i == o || i.starts_with(&format!("{o}/"))
}

pub fn analyze(
    catalog: &Catalog,
    inputs: Vec<Input<'_>>,
    opts: &Options,
) -> Result<Report, AnalyzeError> {
    let mut assignments: Vec<Assignment> = Vec::new();
    let mut definitions: HashMap<String, Definition> = HashMap::new();
    let mut identities: Vec<Identity> = Vec::new();
    let mut warnings: Vec<Warning> = Vec::new();
    for input in inputs {
        let (file, value) = read_value(input, opts.max_input)?;
        let first = value.as_array().and_then(|a| a.first()).cloned();
        let Some(first) = first else {
            if value.as_array().is_some() {
                continue; // an empty list: nothing assigned
            }
            return Err(wrong(&file, &value));
        };
        if first.get("roleDefinitionId").is_some() && first.get("principalId").is_some() {
            assignments.extend(typed::<Vec<Assignment>>(&file, value)?);
        } else if first.get("roleName").is_some() && first.get("permissions").is_some() {
            for d in typed::<Vec<Definition>>(&file, value)? {
                definitions.insert(d.name.to_ascii_lowercase(), d);
            }
        } else if first.get("principalId").is_some() && first.get("clientId").is_some() {
            identities.extend(typed::<Vec<Identity>>(&file, value)?);
        } else {
            return Err(wrong(&file, &value));
        }
    }
    let universe = catalog.permissions().len();
    let expand = |patterns: &[String]| -> PermSet {
        let mut s = PermSet::new(universe);
        for p in patterns {
            for i in catalog.expand(Cloud::Azure, p) {
                s.insert(i);
            }
        }
        s
    };

    let mut roles: Vec<RoleDef> = Vec::new();
    let mut role_index: HashMap<String, usize> = HashMap::new();
    let mut bindings: Vec<Binding> = Vec::new();
    let mut names: HashMap<String, (String, Option<String>)> = HashMap::new();
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for a in &assignments {
        names.entry(a.principal_id.clone()).or_insert((
            a.principal_name.clone().unwrap_or_default(),
            a.principal_type.clone(),
        ));
        if opts.exclusions.excludes_principal(&a.principal_id)
            || a.principal_name
                .as_deref()
                .is_some_and(|n| opts.exclusions.excludes_principal(n))
        {
            continue;
        }
        let guid = guid_of(&a.role_definition_id);
        let idx = match role_index.get(&guid) {
            Some(&i) => i,
            None => {
                let def = if let Some(d) = definitions.get(&guid) {
                    let mut perms = PermSet::new(universe);
                    let mut patterns = Vec::new();
                    let mut everything = false;
                    for b in &d.permissions {
                        let mut allow = expand(&b.actions);
                        allow.difference_with(&expand(&b.not_actions));
                        let mut data = expand(&b.data_actions);
                        data.difference_with(&expand(&b.not_data_actions));
                        perms.union_with(&allow);
                        perms.union_with(&data);
                        everything |= b.actions.iter().any(|x| x == "*");
                        patterns.extend(b.actions.iter().cloned());
                        patterns.extend(b.not_actions.iter().map(|x| format!("-{x}")));
                        patterns.extend(b.data_actions.iter().cloned());
                        patterns.extend(b.not_data_actions.iter().map(|x| format!("-{x}")));
                    }
                    Some(RoleDef {
                        name: d.role_name.clone(),
                        title: d.role_name.clone(),
                        perms,
                        everything,
                        patterns,
                    })
                } else if let Some(r) = catalog.role(Cloud::Azure, &guid).or_else(|| {
                    a.role_definition_name
                        .as_deref()
                        .and_then(|n| catalog.role(Cloud::Azure, n))
                }) {
                    let mut perms = PermSet::new(universe);
                    for &i in &r.permissions {
                        perms.insert(i);
                    }
                    Some(RoleDef {
                        name: r.name.clone(),
                        title: r.name.clone(),
                        perms,
                        everything: r.patterns.iter().any(|p| p == "*"),
                        patterns: r.patterns.clone(),
                    })
                } else {
                    unknown.insert(
                        a.role_definition_name
                            .clone()
                            .unwrap_or_else(|| a.role_definition_id.clone()),
                    );
                    None
                };
                let Some(def) = def else { continue };
                if opts.exclusions.excludes_policy(&def.name) {
                    continue;
                }
                roles.push(def);
                role_index.insert(guid, roles.len() - 1);
                roles.len() - 1
            }
        };
        bindings.push(Binding {
            principal: a.principal_id.clone(),
            role: idx,
            scope: a.scope.clone(),
            conditional: a.condition.as_deref().is_some_and(|c| !c.trim().is_empty()),
        });
    }
    for u in unknown {
        warnings.push(Warning { file: "(azure)".into(), message: format!("role {u} is neither built in (in Brevet's catalog) nor in a role-definition export: add `az role definition list --custom-role-only true` output; its assignments were skipped") });
    }

    let idx = |n: &str| catalog.permission_index(Cloud::Azure, n);
    let ra_write = idx("Microsoft.Authorization/roleAssignments/write");
    let admin_why = |role: &RoleDef| -> Option<String> {
        if role.everything && ra_write.is_some_and(|i| role.perms.contains(i)) {
            return Some("* (every action)".into());
        }
        ra_write.filter(|&i| role.perms.contains(i)).map(|_| {
            "Microsoft.Authorization/roleAssignments/write: can assign itself Owner".into()
        })
    };
    let findings = bindings::findings(catalog, Cloud::Azure, &roles, &bindings, admin_why);

    let mut admins: BTreeSet<String> = BTreeSet::new();
    for b in &bindings {
        if !b.conditional && admin_why(&roles[b.role]).is_some() {
            admins.insert(b.principal.clone());
        }
    }

    // Escalation edges to managed identities.
    let assign = idx("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action");
    let federate =
        idx("Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write");
    let compute: Vec<u32> = COMPUTE_WRITE.iter().filter_map(|n| idx(n)).collect();
    let mut edges = Vec::new();
    let mut by_principal: HashMap<&str, Vec<&Binding>> = HashMap::new();
    for b in bindings.iter().filter(|b| !b.conditional) {
        by_principal
            .entry(b.principal.as_str())
            .or_default()
            .push(b);
    }
    for id in &identities {
        if edges.len() > opts.max_edges {
            return Err(AnalyzeError::TooManyEdges {
                limit: opts.max_edges,
            });
        }
        for (p, bs) in &by_principal {
            if *p == id.principal_id.as_str() {
                continue;
            }
            let mut eff = PermSet::new(universe);
            for b in bs.iter().filter(|b| covers(&b.scope, &id.id)) {
                eff.union_with(&roles[b.role].perms);
            }
            let can_deploy = bs
                .iter()
                .any(|b| compute.iter().any(|&c| roles[b.role].perms.contains(c)));
            if federate.is_some_and(|i| eff.contains(i)) {
                edges.push(Edge {
                    from: (*p).into(),
                    to: id.principal_id.as_str().into(),
                    via: "federatedIdentityCredentials/write".into(),
                    reason: format!(
                        "can add a federated credential to managed identity {} and sign in as it",
                        id.name
                    ),
                    conditional: false,
                });
            } else if assign.is_some_and(|i| eff.contains(i)) && can_deploy {
                edges.push(Edge { from: (*p).into(), to: id.principal_id.as_str().into(), via: "userAssignedIdentities/assign".into(), reason: format!("can attach managed identity {} to compute it can create or change, and act as it from there", id.name), conditional: false });
            }
        }
    }
    if edges.len() > opts.max_edges {
        return Err(AnalyzeError::TooManyEdges {
            limit: opts.max_edges,
        });
    }
    edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));

    let identity_ids: HashSet<&str> = identities.iter().map(|i| i.principal_id.as_str()).collect();
    let mut principals = bindings::principals_of(&bindings, |id| {
        let (name, ptype) = names.get(id).cloned().unwrap_or_default();
        let kind = if identity_ids.contains(id) {
            PrincipalKind::ManagedIdentity
        } else {
            match ptype.as_deref() {
                Some("Group") | Some("ForeignGroup") => PrincipalKind::Group,
                Some("ServicePrincipal") | Some("MSI") => PrincipalKind::ServicePrincipal,
                _ => PrincipalKind::User,
            }
        };
        let scope = bindings
            .iter()
            .find(|b| b.principal == id)
            .map(|b| crate::score::scope_of(&b.scope))
            .unwrap_or_default();
        Principal {
            id: id.to_string(),
            kind,
            name: if name.is_empty() {
                id.to_string()
            } else {
                name
            },
            scope,
            workload: matches!(
                kind,
                PrincipalKind::ServicePrincipal | PrincipalKind::ManagedIdentity
            ),
        }
    });
    for i in &identities {
        if !principals.iter().any(|p| p.id == i.principal_id) {
            principals.push(Principal {
                id: i.principal_id.clone(),
                kind: PrincipalKind::ManagedIdentity,
                name: i.name.clone(),
                scope: crate::score::scope_of(&i.id),
                workload: true,
            });
        }
    }
    principals.sort_by(|a, b| a.id.cmp(&b.id));
    let standing = bindings::standing(
        &roles,
        &bindings,
        &principals,
        &findings,
        |_| "role assignment".into(),
        |role, b, p, admin| (!p.workload).then(|| propose(role, b, p, admin)),
    );
    let scopes: BTreeSet<String> = bindings
        .iter()
        .map(|b| crate::score::scope_of(&b.scope))
        .collect();
    let mut report = Report {
        clouds: vec![Cloud::Azure],
        scopes: scopes.into_iter().collect(),
        principals,
        findings,
        edges,
        admins: admins.into_iter().collect(),
        standing,
        warnings,
        ..Report::default()
    };
    crate::finish(&mut report, opts);
    Ok(report)
}

fn wrong(file: &str, value: &serde_json::Value) -> AnalyzeError {
    let found = match value {
        serde_json::Value::Array(a) => format!(
            "a list whose first item has keys {:?}",
            a.first()
                .and_then(|f| f.as_object())
                .map(|o| o.keys().take(6).cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        ),
        serde_json::Value::Object(o) => format!(
            "an object with keys {:?}",
            o.keys().take(6).collect::<Vec<_>>()
        ),
        _ => "not a list".into(),
    };
    AnalyzeError::WrongFormat {
        file: file.to_string(),
        expected: "an Azure RBAC export",
        found,
        hint: "Give `az role assignment list --all --output json`, `az role definition list --output json` and optionally `az identity list --output json` output.",
    }
}

fn propose(role: &RoleDef, b: &Binding, p: &Principal, admin: bool) -> Proposal {
    let brevet_id = principal_id(&p.name);
    let last = b
        .scope
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("scope");
    // Resource groups called `prod` exist in many subscriptions: the scope's hash tells them apart.
    let res_name = format!(
        "azure:{}-{}",
        slug(last, 40),
        crate::propose::short_hash(&[&b.scope.to_ascii_lowercase()])
    );
    // Custom roles of one name may differ by subscription: their definition is in the name.
    let pats: Vec<&str> = role.patterns.iter().map(String::as_str).collect();
    let profile = format!(
        "az.{}-{}",
        slug(&role.name, 40),
        crate::propose::short_hash(&pats)
    );
    let ptype = match p.kind {
        PrincipalKind::Group => "Group",
        _ => "User",
    };
    let role_line = if NOT_TASK_SIZED
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&role.name))
    {
        format!("# Brevet refuses {} as not task-sized (it changes who may do what, or everything).\n# Give the task's built-in role instead, for example:\nrole = \"Reader\"\n", crate::propose::comment_safe(&role.name))
    } else if role
        .patterns
        .iter()
        .any(|x| x.contains('*') || x.starts_with('-'))
    {
        format!("role = {}\n", toml_str(&role.name))
    } else {
        format!("permissions = {}\n", toml_list(&role.patterns))
    };
    let config = format!(
        "[providers.azure.identities]\n{} = {{ object_id = {}, type = {} }}\n\n[providers.azure.profiles.{}]\nmode = \"pim\"\n{role_line}\n[resources.{}]\nscope = {}\n",
        toml_str(&brevet_id),
        toml_str(&p.id),
        toml_str(ptype),
        toml_str(&profile),
        toml_str(&res_name),
        toml_str(&b.scope),
    );
    Proposal {
        cedar: cedar_permit(&brevet_id, &res_name, &profile, admin),
        profile,
        config,
        kept: Vec::new(),
        removed: Vec::new(),
        kept_count: 0,
        removed_count: 0,
    }
}
