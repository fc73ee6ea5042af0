//! GCP: IAM policies on the resource hierarchy (organisation → folders → projects → resources),
//! predefined roles from the catalog and custom roles from `gcloud iam roles` exports.
//!
//! Effective access of a member on a resource is the union of its bindings there and on every
//! ancestor. Escalation edges: a member who can mint tokens or keys for a service account
//! (`getAccessToken`, `signBlob`, `signJwt`, `implicitDelegation`, `serviceAccountKeys.create`),
//! or can deploy code as it (`actAs` plus a permission that runs code with an attached service
//! account), or can rewrite the service account's own IAM policy, can become it. Admin-equivalent:
//! `roles/owner`, or `setIamPolicy` on a project, folder or organisation (it can grant itself any
//! role there).

mod export;

use std::collections::{BTreeSet, HashMap};

use brevet_catalog::{Catalog, Cloud};

use crate::bindings::{self, Binding, Hierarchy, RoleDef};
use crate::permset::PermSet;
use crate::propose::{cedar_permit, principal_id, slug, toml_list, toml_str};
use crate::report::{
    Category, Edge, Principal, PrincipalKind, Proposal, Report, Severity, Warning,
};
use crate::{read_value, typed, AnalyzeError, Input, Options};

pub use export::Export;

/// One GCP export, and the resource it is the policy of when the file itself does not say
/// (a bare `get-iam-policy` output): `projects/acme-prod`, `folders/123`, `organizations/456`.
pub struct GcpInput<'a> {
    pub resource: Option<String>,
    pub input: Input<'a>,
}

const IMPERSONATE: [&str; 5] = [
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.signBlob",
    "iam.serviceAccounts.signJwt",
    "iam.serviceAccounts.implicitDelegation",
    "iam.serviceAccountKeys.create",
];

/// Permissions that run code with an attached service account: with `actAs` on it, the code
/// runs as that account.
const DEPLOY: [&str; 8] = [
    "compute.instances.create",
    "compute.instances.setServiceAccount",
    "cloudfunctions.functions.create",
    "cloudfunctions.functions.update",
    "run.services.create",
    "run.jobs.create",
    "cloudbuild.builds.create",
    "composer.environments.create",
];

const SET_IAM: [&str; 3] = [
    "resourcemanager.organizations.setIamPolicy",
    "resourcemanager.folders.setIamPolicy",
    "resourcemanager.projects.setIamPolicy",
];

struct Loaded {
    /// resource → (role name, member, conditional, temporary)
    bindings: Vec<(String, String, String, bool, bool)>,
    custom: HashMap<String, Option<Vec<String>>>,
    hierarchy: Hierarchy,
    scopes: BTreeSet<String>,
}

/// `//cloudresourcemanager.googleapis.com/projects/p` → `projects/p`;
/// `//storage.googleapis.com/b` → `buckets/b`.
fn resource_name(full: &str) -> String {
    let Some(rest) = full.strip_prefix("//") else {
        return full.to_string();
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.starts_with("storage.") && !path.contains('/') {
        return format!("buckets/{path}");
    }
    path.to_string()
}

/// A binding is temporary when its condition ends it at a time (`request.time <
/// timestamp(…)`): that is just-in-time access already (Brevet's own bindings look like this).
fn is_temporary(expr: &str) -> bool {
    // Only a condition that is nothing but an expiry, within a year: `x || request.time < …`
    // or a far-off date is standing access in practice.
    let e: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(rest) = e
        .strip_prefix("request.time<timestamp(\"")
        .or_else(|| e.strip_prefix("request.time<=timestamp(\""))
    else {
        return false;
    };
    let Some(ts) = rest.strip_suffix("\")") else {
        return false;
    };
    chrono::DateTime::parse_from_rfc3339(ts).is_ok_and(|t| {
        t.with_timezone(&chrono::Utc) < chrono::Utc::now() + chrono::Duration::days(365)
    })
}

fn load(
    inputs: Vec<GcpInput<'_>>,
    opts: &Options,
    warnings: &mut Vec<Warning>,
) -> Result<Loaded, AnalyzeError> {
    let mut l = Loaded {
        bindings: Vec::new(),
        custom: HashMap::new(),
        hierarchy: Hierarchy::default(),
        scopes: BTreeSet::new(),
    };
    let add_policy = |l: &mut Loaded, resource: &str, policy: export::Policy| {
        l.scopes.insert(resource.to_string());
        for b in policy.bindings {
            let (conditional, temporary) = match &b.condition {
                Some(c) => (true, is_temporary(&c.expression)),
                None => (false, false),
            };
            for m in b.members {
                l.bindings.push((
                    resource.to_string(),
                    b.role.clone(),
                    m,
                    conditional,
                    temporary,
                ));
            }
        }
    };
    for GcpInput { resource, input } in inputs {
        let (file, value) = read_value(input, opts.max_input)?;
        let kind = export::detect(&value).map_err(|found| AnalyzeError::WrongFormat {
            file: file.clone(),
            expected: "a GCP IAM export",
            found,
            hint: "Give `gcloud projects get-iam-policy P --format=json` (as projects/P=FILE), `gcloud projects get-ancestors-iam-policy P --format=json`, `gcloud asset search-all-iam-policies --format=json` or `gcloud iam roles describe|list --format=json` output.",
        })?;
        match kind {
            "empty" => {}
            "policy" => {
                let Some(res) = resource.clone() else {
                    return Err(AnalyzeError::Invalid {
                        file,
                        reason: "a bare IAM policy does not say whose it is: name its resource, e.g. `projects/acme-prod=FILE` or `folders/123=FILE` (or export with `get-ancestors-iam-policy` or the asset inventory, which name it)".into(),
                    });
                };
                check_resource_name(&file, &res)?;
                let p: export::Policy = typed(&file, value)?;
                add_policy(&mut l, &res, p);
            }
            "ancestors" => {
                let list: Vec<export::Ancestor> = typed(&file, value)?;
                let names: Vec<String> = list
                    .iter()
                    .map(|a| format!("{}/{}", plural(&a.kind), a.id))
                    .collect();
                for w in names.windows(2) {
                    l.hierarchy.parent.insert(w[0].clone(), w[1].clone());
                }
                for (a, name) in list.into_iter().zip(names) {
                    add_policy(&mut l, &name, a.policy);
                }
            }
            "assets" => {
                let list: Vec<export::AssetPolicy> = typed(&file, value)?;
                for a in list {
                    let name = resource_name(&a.resource);
                    let mut chain: Vec<String> = Vec::new();
                    if let Some(p) = &a.project {
                        if *p != name {
                            chain.push(p.clone());
                        }
                    }
                    chain.extend(a.folders.iter().filter(|f| **f != name).cloned());
                    if let Some(o) = &a.organization {
                        if *o != name {
                            chain.push(o.clone());
                        }
                    }
                    let mut child = name.clone();
                    for parent in chain {
                        l.hierarchy
                            .parent
                            .entry(child.clone())
                            .or_insert(parent.clone());
                        child = parent;
                    }
                    add_policy(&mut l, &name, a.policy);
                }
            }
            "role" | "roles" => {
                let list: Vec<export::CustomRole> = if kind == "role" {
                    vec![typed(&file, value)?]
                } else {
                    typed(&file, value)?
                };
                for r in list {
                    if r.deleted {
                        continue;
                    }
                    if r.included_permissions.is_none() {
                        warnings.push(Warning {
                            file: file.clone(),
                            message: format!("custom role {} has no includedPermissions (`gcloud iam roles list` leaves them out): export with `gcloud iam roles list --view=FULL` or `describe`; its bindings are analysed as holding nothing", r.name),
                        });
                    }
                    l.custom.insert(r.name, r.included_permissions);
                }
            }
            _ => unreachable!("detect returns only the kinds above"),
        }
    }
    // A service account resource's parent is its project.
    let sa_resources: Vec<String> = l
        .scopes
        .iter()
        .filter(|s| s.contains("/serviceAccounts/"))
        .cloned()
        .collect();
    for s in sa_resources {
        if let Some((proj, _)) = s.split_once("/serviceAccounts/") {
            l.hierarchy
                .parent
                .entry(s.clone())
                .or_insert(proj.to_string());
        }
    }
    Ok(l)
}

fn plural(kind: &str) -> &str {
    match kind {
        "project" => "projects",
        "folder" => "folders",
        "organization" => "organizations",
        other => other,
    }
}

fn check_resource_name(file: &str, res: &str) -> Result<(), AnalyzeError> {
    let ok = ["projects/", "folders/", "organizations/", "buckets/"]
        .iter()
        .any(|p| res.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(AnalyzeError::Invalid {
            file: file.to_string(),
            reason: format!("`{res}` is not a GCP resource name: write projects/ID, folders/NUMBER, organizations/NUMBER or buckets/NAME"),
        })
    }
}

fn principal_of(member: &str, first_scope: &str) -> Principal {
    let (kind_s, rest) = member.split_once(':').unwrap_or((member, ""));
    let (kind, workload) = match kind_s {
        "user" | "principal" => (PrincipalKind::User, false),
        "group" => (PrincipalKind::Group, false),
        "serviceAccount" => (PrincipalKind::ServiceAccount, true),
        "deleted" => (PrincipalKind::User, false),
        _ => (PrincipalKind::Collective, false),
    };
    let scope = sa_project(member)
        .map(|p| format!("projects/{p}"))
        .unwrap_or_else(|| first_scope.to_string());
    Principal {
        id: member.to_string(),
        kind,
        name: if rest.is_empty() {
            member.to_string()
        } else {
            rest.to_string()
        },
        scope,
        workload,
    }
}

/// `serviceAccount:x@PROJECT.iam.gserviceaccount.com` → `PROJECT`.
fn sa_project(member: &str) -> Option<&str> {
    let email = member.strip_prefix("serviceAccount:")?;
    let (_, domain) = email.split_once('@')?;
    domain.strip_suffix(".iam.gserviceaccount.com")
}

pub fn analyze(
    catalog: &Catalog,
    inputs: Vec<GcpInput<'_>>,
    opts: &Options,
) -> Result<Report, AnalyzeError> {
    let mut warnings = Vec::new();
    let loaded = load(inputs, opts, &mut warnings)?;
    let universe = catalog.permissions().len();

    // Roles, by name, as the catalog or the custom-role exports define them.
    let mut roles: Vec<RoleDef> = Vec::new();
    let mut role_index: HashMap<String, usize> = HashMap::new();
    let mut unknown_roles: BTreeSet<String> = BTreeSet::new();
    let mut bindings: Vec<Binding> = Vec::new();
    let mut temporary = 0usize;
    for (resource, role, member, conditional, temp) in &loaded.bindings {
        if *temp {
            temporary += 1;
            continue;
        }
        if opts.exclusions.excludes_principal(member) || opts.exclusions.excludes_policy(role) {
            continue;
        }
        let idx = match role_index.get(role) {
            Some(&i) => i,
            None => {
                let def = if let Some(perms) = loaded.custom.get(role) {
                    let mut s = PermSet::new(universe);
                    for p in perms.iter().flatten() {
                        if let Some(i) = catalog.permission_index(Cloud::Gcp, p) {
                            s.insert(i);
                        }
                    }
                    Some(RoleDef {
                        name: role.clone(),
                        title: role.rsplit('/').next().unwrap_or(role).to_string(),
                        perms: s,
                        everything: false,
                        patterns: perms.clone().unwrap_or_default(),
                    })
                } else if let Some(r) = catalog.role(Cloud::Gcp, role) {
                    let mut s = PermSet::new(universe);
                    for &i in &r.permissions {
                        s.insert(i);
                    }
                    Some(RoleDef {
                        name: r.name.clone(),
                        title: r.title.clone(),
                        perms: s,
                        everything: matches!(role.as_str(), "roles/owner" | "roles/editor"),
                        patterns: Vec::new(),
                    })
                } else {
                    unknown_roles.insert(role.clone());
                    None
                };
                let Some(def) = def else { continue };
                roles.push(def);
                role_index.insert(role.clone(), roles.len() - 1);
                roles.len() - 1
            }
        };
        bindings.push(Binding {
            principal: member.clone(),
            role: idx,
            scope: resource.clone(),
            conditional: *conditional,
        });
    }
    for r in unknown_roles {
        warnings.push(Warning {
            file: "(gcp)".into(),
            message: format!("role {r} is neither predefined (in Brevet's catalog) nor in a custom-role export: add `gcloud iam roles describe {r} --format=json` to the files; its bindings were skipped"),
        });
    }
    if temporary > 0 {
        warnings.push(Warning { file: "(gcp)".into(), message: format!("{temporary} binding(s) end at a time (request.time < timestamp(…)): temporary access, not standing; not reported") });
    }

    let admin_why = |role: &RoleDef| -> Option<String> {
        if role.name == "roles/owner" {
            return Some("roles/owner".into());
        }
        SET_IAM
            .iter()
            .find(|p| {
                catalog
                    .permission_index(Cloud::Gcp, p)
                    .is_some_and(|i| role.perms.contains(i))
            })
            .map(|p| p.to_string())
    };
    let mut findings = bindings::findings(catalog, Cloud::Gcp, &roles, &bindings, admin_why);
    // Anything granted to everyone.
    for f in &mut findings {
        if f.principals
            .iter()
            .any(|p| p == "allUsers" || p == "allAuthenticatedUsers")
            && f.category != Category::PublicAccess
        {
            f.severity = Severity::Critical.max(f.severity);
        }
    }
    let public: Vec<&Binding> = bindings
        .iter()
        .filter(|b| b.principal == "allUsers" || b.principal == "allAuthenticatedUsers")
        .collect();
    for b in public {
        let role = &roles[b.role];
        findings.push(crate::report::Finding {
            id: crate::report::finding_id(
                Cloud::Gcp,
                Category::PublicAccess,
                &format!("{}@{}", role.name, b.scope),
                std::slice::from_ref(&b.principal),
            ),
            cloud: Cloud::Gcp,
            category: Category::PublicAccess,
            severity: Severity::Critical,
            title: format!("{} at {} granted to {}", role.title, b.scope, b.principal),
            policy: role.name.clone(),
            permissions: bindings::cap(
                &role
                    .perms
                    .iter()
                    .map(|i| catalog.permissions()[i as usize].name.clone())
                    .collect::<Vec<_>>(),
            ),
            resources: vec![b.scope.clone()],
            principals: vec![b.principal.clone()],
            conditional: b.conditional,
            detail: crate::classify::explain(Category::PublicAccess, Cloud::Gcp).into(),
        });
    }

    // Admin-equivalent principals (by scope) and the escalation edges.
    let mut admins: BTreeSet<String> = BTreeSet::new();
    for b in &bindings {
        if !b.conditional && admin_why(&roles[b.role]).is_some() {
            admins.insert(b.principal.clone());
        }
    }
    let idx = |n: &str| catalog.permission_index(Cloud::Gcp, n);
    let impersonate: Vec<(u32, &str)> = IMPERSONATE
        .iter()
        .filter_map(|n| idx(n).map(|i| (i, *n)))
        .collect();
    let act_as = idx("iam.serviceAccounts.actAs");
    let sa_set_iam = idx("iam.serviceAccounts.setIamPolicy");
    let deploy: Vec<u32> = DEPLOY.iter().filter_map(|n| idx(n)).collect();
    // Every service account the exports name, as member or as resource.
    let mut sas: BTreeSet<String> = bindings
        .iter()
        .filter(|b| b.principal.starts_with("serviceAccount:"))
        .map(|b| b.principal.clone())
        .collect();
    for s in &loaded.scopes {
        if let Some((_, email)) = s.split_once("/serviceAccounts/") {
            sas.insert(format!("serviceAccount:{email}"));
        }
    }
    // Who holds what where, unconditionally: member → scope → perms.
    let mut held: HashMap<&str, HashMap<&str, PermSet>> = HashMap::new();
    for b in bindings.iter().filter(|b| !b.conditional) {
        held.entry(b.principal.as_str())
            .or_default()
            .entry(b.scope.as_str())
            .or_insert_with(|| PermSet::new(universe))
            .union_with(&roles[b.role].perms);
    }
    let mut edges: Vec<Edge> = Vec::new();
    for sa in &sas {
        if edges.len() > opts.max_edges {
            return Err(AnalyzeError::TooManyEdges {
                limit: opts.max_edges,
            });
        }
        let email = sa.trim_start_matches("serviceAccount:");
        let Some(project) = sa_project(sa) else {
            continue;
        };
        let sa_resource = format!("projects/{project}/serviceAccounts/{email}");
        let mut chain = loaded.hierarchy.chain(&sa_resource);
        if !chain.contains(&format!("projects/{project}")) {
            chain.push(format!("projects/{project}"));
            chain.extend(
                loaded
                    .hierarchy
                    .chain(&format!("projects/{project}"))
                    .into_iter()
                    .skip(1),
            );
        }
        for (member, by_scope) in &held {
            if *member == sa.as_str() {
                continue;
            }
            let mut eff = PermSet::new(universe);
            for s in &chain {
                if let Some(p) = by_scope.get(s.as_str()) {
                    eff.union_with(p);
                }
            }
            if eff.is_empty() {
                continue;
            }
            let mut push = |via: &str, reason: String| {
                edges.push(Edge {
                    from: (*member).into(),
                    to: sa.as_str().into(),
                    via: via.into(),
                    reason,
                    conditional: false,
                })
            };
            if let Some((perm, name)) = impersonate.iter().find(|(i, _)| eff.contains(*i)) {
                let at = chain
                    .iter()
                    .find(|s| by_scope.get(s.as_str()).is_some_and(|p| p.contains(*perm)))
                    .map(String::as_str)
                    .unwrap_or("an ancestor");
                push(name, format!("holds {name} on the service account (through a binding on {at}): can act as it"));
            } else if sa_set_iam.is_some_and(|i| eff.contains(i)) {
                push("setIamPolicy", "can change the service account's IAM policy, so can grant itself Service Account Token Creator on it".into());
            } else if act_as.is_some_and(|i| eff.contains(i)) {
                // actAs alone runs nothing: it needs somewhere to deploy code, anywhere it holds it.
                let can_deploy = by_scope
                    .values()
                    .any(|p| deploy.iter().any(|&d| p.contains(d)));
                if can_deploy {
                    push("actAs", "holds iam.serviceAccounts.actAs on the service account and can deploy code (VMs, functions, Cloud Run, builds) that runs as it".into());
                }
            }
        }
    }
    if edges.len() > opts.max_edges {
        return Err(AnalyzeError::TooManyEdges {
            limit: opts.max_edges,
        });
    }
    edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    edges.dedup_by(|a, b| a.from == b.from && a.to == b.to);

    let mut first_scope: HashMap<&str, &str> = HashMap::new();
    for b in &bindings {
        first_scope
            .entry(b.principal.as_str())
            .or_insert(b.scope.as_str());
    }
    let mut principals = bindings::principals_of(&bindings, |m| {
        principal_of(m, first_scope.get(m).copied().unwrap_or(""))
    });
    for sa in &sas {
        if !principals.iter().any(|p| &p.id == sa) {
            principals.push(principal_of(sa, ""));
        }
    }
    principals.sort_by(|a, b| a.id.cmp(&b.id));

    let standing = bindings::standing(
        &roles,
        &bindings,
        &principals,
        &findings,
        |b| {
            if b.conditional {
                "binding (conditional)".into()
            } else {
                "binding".into()
            }
        },
        |role, b, p, admin| {
            // Service accounts and everyone-sets are no people to make eligible.
            if p.workload || p.kind == PrincipalKind::Collective {
                None
            } else {
                propose(catalog, role, b, admin)
            }
        },
    );
    let mut report = Report {
        clouds: vec![Cloud::Gcp],
        scopes: loaded.scopes.into_iter().collect(),
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

fn propose(_catalog: &Catalog, role: &RoleDef, b: &Binding, admin: bool) -> Option<Proposal> {
    // Brevet's GCP resources are projects, folders, organisations and buckets; a binding on
    // something inside them (a service account, a dataset) gets no proposal.
    if b.scope.matches('/').count() != 1 {
        return None;
    }
    let (kind, id) = b.scope.split_once('/').unwrap_or(("projects", &b.scope));
    let who = b
        .principal
        .split_once(':')
        .map(|(_, r)| r)
        .unwrap_or(&b.principal);
    let brevet_id = principal_id(who);
    let field = match kind {
        "folders" => "folder",
        "organizations" => "organization",
        "buckets" => "bucket",
        _ => "project",
    };
    // A project and a bucket may share a name: the kind is part of the resource's.
    let res_name = format!("gcp:{field}-{}", slug(id, 40));
    // Predefined role names are unique; custom roles repeat their short id across projects.
    let profile = if role.name.starts_with("roles/") {
        format!("gcp.{}", slug(role.name.trim_start_matches("roles/"), 50))
    } else {
        format!(
            "gcp.{}-{}",
            slug(role.name.rsplit('/').next().unwrap_or(&role.name), 40),
            crate::propose::short_hash(&[&role.name])
        )
    };
    let basic = matches!(
        role.name.as_str(),
        "roles/owner" | "roles/editor" | "roles/viewer"
    );
    let role_line = if basic {
        format!("# {} is a basic role: Google refuses conditions on it, so it cannot be granted with an expiry.\n# Replace it with the predefined roles each task needs, for example:\nrole = \"roles/iam.securityReviewer\"\n", crate::propose::comment_safe(&role.name))
    } else if role.name.starts_with("roles/") {
        format!("role = {}\n", toml_str(&role.name))
    } else {
        // A custom role: its permissions, as a Brevet custom profile.
        format!("permissions = {}\n", toml_list(&role.patterns))
    };
    let config = format!(
        "[providers.gcp.identities]\n{} = {{ member = {} }}\n\n[providers.gcp.profiles.{}]\n{role_line}\n[resources.{}]\n{field} = {}\n",
        toml_str(&brevet_id),
        toml_str(&b.principal),
        toml_str(&profile),
        toml_str(&res_name),
        toml_str(id),
    );
    Some(Proposal {
        cedar: cedar_permit(&brevet_id, &res_name, &profile, admin),
        profile,
        config,
        kept: Vec::new(),
        removed: Vec::new(),
        kept_count: 0,
        removed_count: 0,
    })
}
