//! The per-cloud compilers: a neutral [`Profile`] and the resource it is for become the native
//! permission set and the document the cloud takes (an IAM policy, a GCP custom role and its
//! binding, an Azure role definition). Every permission emitted is in the catalog and valid where
//! it will be bound; anything else is an error naming the permission and the fix.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::kinds::Native;
use crate::model::{Cloud, GcpLevel, Permission, Plane, Tags};
use crate::profile::{Forbidden, Profile};
use crate::{Catalog, Hit, Pattern, Query};

/// Where the compiled permissions will be bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The resource's ARNs (`arn:aws:s3:::logs`, `arn:aws:s3:::logs/*`).
    Aws { arns: Vec<String> },
    /// The custom role's home and the binding's resource: `projects/P`, `folders/F` or
    /// `organizations/O`, and optionally the resource's full name inside it
    /// (`projects/_/buckets/logs`), which the binding is limited to by an IAM condition.
    Gcp {
        scope: String,
        resource: Option<String>,
    },
    /// The assignable scope: `/subscriptions/S/resourceGroups/RG/providers/…` or a management
    /// group `/providers/Microsoft.Management/managementGroups/MG`.
    Azure { scope: String },
    /// The resource set a custom admin role is bound with: the groups (`groups/00g…`) or users
    /// whose accounts the role may act on.
    Okta { resources: Vec<String> },
}

impl Target {
    pub fn cloud(&self) -> Cloud {
        match self {
            Target::Aws { .. } => Cloud::Aws,
            Target::Gcp { .. } => Cloud::Gcp,
            Target::Azure { .. } => Cloud::Azure,
            Target::Okta { .. } => Cloud::Okta,
        }
    }
}

/// A profile compiled for one cloud and resource.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub cloud: Cloud,
    /// Indices into the catalog's permissions, in catalog order.
    pub permissions: Vec<u32>,
    /// The native document: IAM policy, `{role, binding}` for GCP, an Azure role definition.
    pub document: Value,
    /// Sensitive permissions it holds, one line each.
    pub warnings: Vec<String>,
}

impl Compiled {
    pub fn names<'c>(&self, catalog: &'c Catalog) -> Vec<&'c str> {
        self.permissions
            .iter()
            .map(|&i| catalog.permissions()[i as usize].name.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error("resource kind `{kind}` has no {cloud} mapping; list the {cloud} permissions under `{cloud}.add`")]
    NotOnCloud { kind: String, cloud: Cloud },
    #[error("`{name}` is not in the {cloud} permission catalog{hint}; look it up with `brevet catalog search`")]
    UnknownPermission {
        cloud: Cloud,
        name: String,
        hint: String,
    },
    #[error("the wildcard `{pattern}` matches no {cloud} permission in the catalog; write it as `brevet catalog search` shows the names")]
    WildcardMatchesNothing { cloud: Cloud, pattern: String },
    #[error("`{action}` acts on {types} and none of the resource's ARNs ({arns}) is of that shape; add an ARN of that shape to the resource or remove the action")]
    NoFittingArn {
        action: String,
        types: String,
        arns: String,
    },
    #[error("`{permission}` can only be granted at the organization level, not in a custom role for `{scope}`; remove it or bind at `organizations/…`")]
    OrganizationOnly { permission: String, scope: String },
    #[error("`{permission}` is a data action, which Azure does not allow at `{scope}` (a management group); assign at a subscription or below, or remove it")]
    DataActionAtManagementGroup { permission: String, scope: String },
    #[error("`{permission}` is tagged {tags}, which this deployment forbids (`[catalog] forbid`); remove it from the profile")]
    Forbidden { permission: String, tags: String },
    #[error("profile `{profile}` compiles to no {cloud} permission for this resource; widen `verbs`/`plane` or `{cloud}.add` what the task needs")]
    Nothing { profile: String, cloud: Cloud },
    #[error("{cloud} scope `{scope}` is not one Brevet can bind at: {fix}")]
    BadScope {
        cloud: Cloud,
        scope: String,
        fix: &'static str,
    },
}

/// Compiles `profile` for the resource `target` names.
pub fn compile(
    catalog: &Catalog,
    profile: &Profile,
    target: &Target,
    forbidden: Forbidden,
) -> Result<Compiled, CompileError> {
    let cloud = target.cloud();
    check_scope(target)?;
    let adjust = profile.adjust(cloud);
    let mut chosen: BTreeSet<u32> = BTreeSet::new();
    // The type of each target ARN, worked out once: every action of the service is held to them.
    let arn_types: Vec<Option<u32>> = match target {
        Target::Aws { arns } => arns.iter().map(|a| arn_type(catalog, a)).collect(),
        _ => Vec::new(),
    };
    match profile.kind.native(cloud) {
        Some(native) if !profile.verbs.is_empty() => {
            for &i in catalog.in_service(cloud, native.service) {
                let p = &catalog.permissions()[i as usize];
                if profile.verbs.contains(&p.verb)
                    && profile
                        .planes
                        .iter()
                        .any(|plane| in_kind(catalog, native, p, *plane))
                    && (cloud != Cloud::Aws || fits_types(p, &arn_types))
                {
                    chosen.insert(i);
                }
            }
        }
        Some(_) => {}
        None if adjust.add.is_empty() => {
            return Err(CompileError::NotOnCloud {
                kind: profile.kind.name.to_owned(),
                cloud,
            })
        }
        None => {}
    }
    for name in &adjust.add {
        for i in expand_named(catalog, cloud, name)? {
            let p = &catalog.permissions()[i as usize];
            check_forbidden(p, forbidden)?;
            // An added action must still fit the resource, unless it acts on no resource type
            // at all (AWS wildcard-only actions such as `s3:ListAllMyBuckets`).
            if let Target::Aws { arns } = target {
                if !p.resource_types.is_empty() && !fits_types(p, &arn_types) {
                    return Err(no_fitting_arn(catalog, p, arns));
                }
            }
            chosen.insert(i);
        }
    }
    for name in &adjust.remove {
        for i in expand_named(catalog, cloud, name)? {
            chosen.remove(&i);
        }
    }
    if chosen.is_empty() {
        return Err(CompileError::Nothing {
            profile: profile.name.clone(),
            cloud,
        });
    }
    if cloud == Cloud::Azure {
        for scope in &profile.azure.assignable_scopes {
            check_scope(&Target::Azure {
                scope: scope.clone(),
            })?;
        }
    }
    let mut warnings = Vec::new();
    for &i in &chosen {
        let p = &catalog.permissions()[i as usize];
        check_placement(p, target)?;
        for scope in &profile.azure.assignable_scopes {
            check_placement(
                p,
                &Target::Azure {
                    scope: scope.clone(),
                },
            )?;
        }
        check_forbidden(p, forbidden)?;
        if p.tags.is_dangerous() {
            warnings.push(format!(
                "`{}` is sensitive: {}",
                p.name,
                p.tags.names().join(", ")
            ));
        }
    }
    // A verb class that selects nothing here is said, not silently dropped (Azure's catalog, for
    // one, lacks data actions no built-in role names).
    for verb in &profile.verbs {
        let any = chosen
            .iter()
            .any(|&i| catalog.permissions()[i as usize].verb == *verb);
        if !any && profile.kind.native(cloud).is_some() {
            warnings.push(format!(
                "`{}` selects no {cloud} permission for kind `{}` in the chosen plane; add what the task needs under `{cloud}.add`",
                verb.as_str(),
                profile.kind.name
            ));
        }
    }
    let permissions: Vec<u32> = chosen.into_iter().collect();
    let document = document(catalog, profile, target, &arn_types, &permissions);
    Ok(Compiled {
        cloud,
        permissions,
        document,
        warnings,
    })
}

pub(crate) fn check_forbidden(p: &Permission, forbidden: Forbidden) -> Result<(), CompileError> {
    let hit: Vec<&str> = p
        .tags
        .names()
        .into_iter()
        .filter(|t| forbidden.0.names().contains(t))
        .collect();
    if hit.is_empty() {
        return Ok(());
    }
    Err(CompileError::Forbidden {
        permission: p.name.clone(),
        tags: hit.join(", "),
    })
}

/// Expands one `add`/`remove` entry: a wildcard must match something, a name must exist.
pub fn expand_named(catalog: &Catalog, cloud: Cloud, name: &str) -> Result<Vec<u32>, CompileError> {
    let found = catalog.expand(cloud, name);
    if !found.is_empty() {
        return Ok(found);
    }
    if Pattern::is_wildcard(name) {
        return Err(CompileError::WildcardMatchesNothing {
            cloud,
            pattern: name.to_owned(),
        });
    }
    let mut q = Query::new(name);
    q.cloud = Some(cloud);
    q.permissions_only = true;
    q.limit = 1;
    let hint = match catalog.search(&q).first() {
        Some(Hit::Permission(i)) => format!(
            " (did you mean `{}`?)",
            catalog.permissions()[*i as usize].name
        ),
        _ => String::new(),
    };
    Err(CompileError::UnknownPermission {
        cloud,
        name: name.to_owned(),
        hint,
    })
}

fn eq_any(list: &[&str], s: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(s))
}

/// Whether permission `p` acts on the kind in `plane`.
fn in_kind(catalog: &Catalog, native: &Native, p: &Permission, plane: Plane) -> bool {
    match p.cloud {
        Cloud::Aws => {
            if !p.service().eq_ignore_ascii_case(native.service) {
                return false;
            }
            let types: Vec<&str> = p
                .resource_types
                .iter()
                .map(|r| {
                    catalog.resource_types()[r.resource_type as usize]
                        .name
                        .as_str()
                })
                .collect();
            let extra = eq_any(native.data_extra, &p.name);
            let on_data = types.iter().any(|t| eq_any(native.data, t));
            let on_control = types.iter().any(|t| eq_any(native.control, t));
            match plane {
                Plane::Data => extra || on_data,
                Plane::Control => on_control && !on_data && !extra,
            }
        }
        Cloud::Gcp | Cloud::Okta => {
            let (collection, verb) = p.name.rsplit_once('.').unwrap_or_default();
            let extra = native.data_extra.contains(&p.name.as_str());
            // Who may use a resource is its configuration, even on a data collection
            // (`storage.objects.getIamPolicy`).
            if verb.ends_with("IamPolicy") {
                return plane == Plane::Control
                    && native
                        .control
                        .iter()
                        .chain(native.data)
                        .any(|c| *c == collection);
            }
            match plane {
                Plane::Data => extra || native.data.contains(&collection),
                Plane::Control => native.control.contains(&collection) && !extra,
            }
        }
        Cloud::Azure => {
            // Some data is read through management actions (`workspaces/query/read`): the
            // kind's `data_extra` puts them in the data plane.
            let extra = eq_any(native.data_extra, &p.name);
            match plane {
                Plane::Data => {
                    extra
                        || (p.plane == Plane::Data
                            && native.data.iter().any(|t| azure_on_type(&p.name, t)))
                }
                Plane::Control => {
                    !extra
                        && p.plane == Plane::Control
                        && native.control.iter().any(|t| azure_on_type(&p.name, t))
                }
            }
        }
    }
}

/// `T/read`, `T/write`, `T/delete` or `T/NAME/action`: an operation on type `T` itself (not on
/// a sub-resource of it).
fn azure_on_type(op: &str, ty: &str) -> bool {
    let (op_l, ty_l) = (op.to_ascii_lowercase(), ty.to_ascii_lowercase());
    let Some(rest) = op_l.strip_prefix(&ty_l).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(parts.as_slice(), [_] | [_, "action"])
}

/// AWS: does the action act on a resource type one of the target's ARNs (their types given) is
/// an instance of?
fn fits_types(p: &Permission, types: &[Option<u32>]) -> bool {
    p.resource_types
        .iter()
        .any(|r| types.contains(&Some(r.resource_type)))
}

/// The resource type an ARN is of: among its service's types whose template it matches, the
/// most specific (most literal characters), so `arn:aws:s3:::logs/*` is an `object`, not a
/// `bucket` whose name happens to hold a slash.
pub fn arn_type(catalog: &Catalog, arn: &str) -> Option<u32> {
    let service = arn.split(':').nth(2)?;
    catalog
        .resource_types_of(service)
        .iter()
        .map(|&i| (i, &catalog.resource_types()[i as usize]))
        // A few types list two templates joined by ", ".
        .filter(|(_, t)| t.arn.split(", ").any(|tpl| arn_fits(tpl, arn)))
        .max_by_key(|(_, t)| literal_len(&t.arn))
        .map(|(i, _)| i)
}

fn literal_len(template: &str) -> usize {
    let mut n = 0;
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        n += start;
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => return n + rest.len(),
        }
    }
    n + rest.len()
}

fn no_fitting_arn(catalog: &Catalog, p: &Permission, arns: &[String]) -> CompileError {
    CompileError::NoFittingArn {
        action: p.name.clone(),
        types: p
            .resource_types
            .iter()
            .map(|r| {
                let t = &catalog.resource_types()[r.resource_type as usize];
                format!("`{}` ({})", t.name, t.arn)
            })
            .collect::<Vec<_>>()
            .join(" or "),
        arns: arns.join(", "),
    }
}

/// Matches an ARN against an AWS resource-type template (`arn:${Partition}:s3:::${BucketName}`):
/// a placeholder stands for one or more characters without `:` (log group names and role paths
/// hold slashes), except the last one, which may hold anything (object keys, paths); `${Region}`
/// and `${Account}` may be empty (global services). Byte-wise and by dynamic programming, so any
/// input — non-ASCII, thousands of slashes — costs at most template tokens × ARN length.
pub fn arn_fits(template: &str, arn: &str) -> bool {
    enum Token<'t> {
        Literal(&'t [u8]),
        /// One or more bytes; `colon`: may hold `:`; `empty`: may also be empty.
        Hole {
            colon: bool,
            empty: bool,
        },
    }
    let mut tokens = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}').map(|e| start + e) else {
            break;
        };
        if start > 0 {
            tokens.push(Token::Literal(&rest.as_bytes()[..start]));
        }
        let name = &rest[start + 2..end];
        tokens.push(Token::Hole {
            colon: false,
            empty: name == "Region" || name == "Account",
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        tokens.push(Token::Literal(rest.as_bytes()));
    }
    if let Some(Token::Hole { colon, .. }) = tokens
        .iter_mut()
        .rev()
        .find(|t| matches!(t, Token::Hole { .. }))
    {
        *colon = true;
    }
    let a = arn.as_bytes();
    // reach[i]: the ARN's first i bytes can be matched by the tokens so far.
    let mut reach = vec![false; a.len() + 1];
    reach[0] = true;
    for t in &tokens {
        let mut next = vec![false; a.len() + 1];
        match t {
            Token::Literal(lit) => {
                for i in 0..=a.len() {
                    if reach[i]
                        && a.len() - i >= lit.len()
                        && a[i..i + lit.len()].eq_ignore_ascii_case(lit)
                    {
                        next[i + lit.len()] = true;
                    }
                }
            }
            Token::Hole { colon, empty } => {
                // Extend every reachable start over a run of allowed bytes, in one pass.
                let mut open = false;
                for i in 0..=a.len() {
                    if open && (*colon || a[i - 1] != b':') {
                        next[i] = true;
                    } else {
                        open = false;
                    }
                    if reach[i] {
                        if *empty {
                            next[i] = true;
                        }
                        open = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[a.len()]
}

fn check_scope(target: &Target) -> Result<(), CompileError> {
    match target {
        Target::Aws { arns } if arns.is_empty() => Err(CompileError::BadScope {
            cloud: Cloud::Aws,
            scope: String::new(),
            fix: "give the resource at least one ARN",
        }),
        Target::Gcp { scope, .. }
            if !["projects/", "organizations/"]
                .iter()
                .any(|p| scope.starts_with(p) && scope.len() > p.len()) =>
        {
            Err(CompileError::BadScope {
                cloud: Cloud::Gcp,
                scope: scope.clone(),
                fix: "write `projects/ID` or `organizations/ID` (GCP keeps custom roles only there; to bind on a folder, compile for its organization)",
            })
        }
        Target::Okta { resources }
            if resources.is_empty()
                || resources.iter().any(|r| {
                    let (kind, id) = r.split_once('/').unwrap_or((r, ""));
                    !matches!(kind, "groups" | "users")
                        || id.is_empty()
                        || !id.bytes().all(|b| b.is_ascii_alphanumeric())
                }) =>
        {
            Err(CompileError::BadScope {
            cloud: Cloud::Okta,
            scope: String::new(),
            fix: "name the groups or users the role may act on, each as okta:groups/ID or okta:users/ID (a role over the whole org is what the task should not get)",
        })
        }
        Target::Azure { scope } if !scope.starts_with('/') => Err(CompileError::BadScope {
            cloud: Cloud::Azure,
            scope: scope.clone(),
            fix: "write a resource ID such as `/subscriptions/ID/resourceGroups/NAME` or `/providers/Microsoft.Management/managementGroups/ID`",
        }),
        _ => Ok(()),
    }
}

fn is_management_group(scope: &str) -> bool {
    scope == "/"
        || scope
            .to_ascii_lowercase()
            .starts_with("/providers/microsoft.management/managementgroups/")
}

/// Whether permission `p` may be bound where the target says.
fn check_placement(p: &Permission, target: &Target) -> Result<(), CompileError> {
    match target {
        Target::Gcp { scope, .. }
            if p.gcp_level == Some(GcpLevel::Organization)
                && !scope.starts_with("organizations/") =>
        {
            Err(CompileError::OrganizationOnly {
                permission: p.name.clone(),
                scope: scope.clone(),
            })
        }
        Target::Azure { scope } if p.plane == Plane::Data && is_management_group(scope) => {
            Err(CompileError::DataActionAtManagementGroup {
                permission: p.name.clone(),
                scope: scope.clone(),
            })
        }
        _ => Ok(()),
    }
}

fn document(
    catalog: &Catalog,
    profile: &Profile,
    target: &Target,
    arn_types: &[Option<u32>],
    permissions: &[u32],
) -> Value {
    let perm = |i: &u32| &catalog.permissions()[*i as usize];
    let description = if profile.description.is_empty() {
        format!("Brevet access profile {}", profile.name)
    } else {
        profile.description.clone()
    };
    match target {
        Target::Aws { arns } => {
            // One statement per set of resources, so each action is allowed only on the ARNs
            // of the types it acts on.
            let mut by_resources: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
            for i in permissions {
                let p = perm(i);
                let resources: Vec<String> = if p.resource_types.is_empty() {
                    vec!["*".to_owned()]
                } else {
                    arns.iter()
                        .zip(arn_types)
                        .filter(|(_, t)| fits_types(p, std::slice::from_ref(t)))
                        .map(|(arn, _)| arn)
                        .cloned()
                        .collect()
                };
                by_resources
                    .entry(resources)
                    .or_default()
                    .push(p.name.clone());
            }
            let statements: Vec<Value> = by_resources
                .into_iter()
                .enumerate()
                .map(|(n, (resources, actions))| {
                    json!({
                        "Sid": format!("Brevet{n}"),
                        "Effect": "Allow",
                        "Action": actions,
                        "Resource": resources,
                    })
                })
                .collect();
            json!({ "Version": "2012-10-17", "Statement": statements })
        }
        Target::Gcp { scope, resource } => {
            let included: Vec<&str> = permissions.iter().map(|i| perm(i).name.as_str()).collect();
            let mut binding = json!({ "resource": scope });
            if let Some(r) = resource {
                binding["condition"] = json!({
                    "title": "brevet-resource",
                "expression": format!(
                        "resource.name == {0} || resource.name.startsWith({1})",
                        serde_json::to_string(r).unwrap_or_default(),
                        serde_json::to_string(&format!("{r}/")).unwrap_or_default()
                    ),
                });
            }
            json!({
                "role": {
                    "title": profile.name,
                    "description": description,
                    "stage": "GA",
                    "includedPermissions": included,
                },
                "binding": binding,
            })
        }
        Target::Azure { scope } => {
            let (data, control): (Vec<&Permission>, Vec<&Permission>) = permissions
                .iter()
                .map(perm)
                .partition(|p| p.plane == Plane::Data);
            json!({
                "Name": profile.name,
                "IsCustom": true,
                "Description": description,
                "Actions": control.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "NotActions": [],
                "DataActions": data.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "NotDataActions": [],
                "AssignableScopes": std::iter::once(scope)
                    .chain(profile.azure.assignable_scopes.iter().filter(|s| *s != scope))
                    .collect::<Vec<_>>(),
            })
        }
        Target::Okta { resources } => {
            let permissions: Vec<&str> =
                permissions.iter().map(|i| perm(i).name.as_str()).collect();
            json!({
                "role": {
                    "label": profile.name,
                    "description": description,
                    "permissions": permissions,
                },
                "resourceSet": {
                    "label": format!("brevet {}", profile.name),
                    "description": description,
                    "resources": resources,
                },
            })
        }
    }
}

/// An example resource of the profile's kind in `cloud`: AWS ARNs made from the kind's
/// resource-type templates, a GCP project, an Azure resource group.
pub fn example_target(catalog: &Catalog, profile: &Profile, cloud: Cloud) -> Target {
    match cloud {
        Cloud::Aws => {
            let mut arns: Vec<String> = Vec::new();
            if let Some(native) = profile.kind.native(Cloud::Aws) {
                for t in catalog.resource_types() {
                    let of_kind = t.service.eq_ignore_ascii_case(native.service)
                        && native
                            .control
                            .iter()
                            .chain(native.data)
                            .any(|n| n.eq_ignore_ascii_case(&t.name));
                    if of_kind {
                        arns.push(example_arn(&t.arn));
                    }
                }
            }
            // A kind with no AWS mapping: the resources the added permissions act on.
            let added = if profile.kind.native(Cloud::Aws).is_none() {
                profile.aws.add.as_slice()
            } else {
                &[]
            };
            for name in added {
                for i in catalog.expand(Cloud::Aws, name) {
                    for r in &catalog.permissions()[i as usize].resource_types {
                        let arn =
                            example_arn(&catalog.resource_types()[r.resource_type as usize].arn);
                        if !arns.contains(&arn) {
                            arns.push(arn);
                        }
                    }
                }
            }
            if arns.is_empty() {
                arns.push("arn:aws:iam::123456789012:root".into());
            }
            Target::Aws { arns }
        }
        Cloud::Gcp => Target::Gcp {
            scope: "projects/example-project".into(),
            resource: None,
        },
        Cloud::Okta => Target::Okta {
            resources: vec!["groups/00gexample".into()],
        },
        Cloud::Azure => Target::Azure {
            scope: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/example"
                .into(),
        },
    }
}

fn example_arn(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let var = &rest[start + 2..start + end];
        out.push_str(match var {
            "Partition" => "aws",
            "Region" => "us-east-1",
            "Account" => "123456789012",
            _ => "example",
        });
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Tags present among `permissions`, for `profile explain`.
pub fn tags_of(catalog: &Catalog, permissions: &[u32]) -> Tags {
    let mut t = Tags::default();
    for &i in permissions {
        t.insert(catalog.permissions()[i as usize].tags);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::arn_fits;

    #[test]
    fn arns_fit_the_templates_of_their_type() {
        let bucket = "arn:${Partition}:s3:::${BucketName}";
        let object = "arn:${Partition}:s3:::${BucketName}/${ObjectName}";
        assert!(arn_fits(bucket, "arn:aws:s3:::logs"));
        // A bucket's template also takes `logs/*` (the last placeholder may hold a slash, as
        // secret names and role paths do); `arn_type` then picks the more specific `object`.
        assert!(arn_fits(object, "arn:aws:s3:::logs/*"));
        assert!(arn_fits(object, "arn:aws:s3:::logs/a/b.txt"));
        assert!(!arn_fits(object, "arn:aws:s3:::logs"));
        let secret = "arn:${Partition}:secretsmanager:${Region}:${Account}:secret:${SecretId}";
        assert!(arn_fits(
            secret,
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"
        ));
        assert!(!arn_fits(secret, "arn:aws:s3:::logs"));
        let role = "arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}";
        assert!(arn_fits(role, "arn:aws:iam::123456789012:role/x/y"));
        // Global services leave the region empty.
        let user = "arn:${Partition}:iam::${Account}:user/${UserNameWithPath}";
        assert!(arn_fits(user, "arn:aws:iam::123456789012:user/dave"));
        let table = "arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}";
        assert!(!arn_fits(table, "arn:aws:dynamodb:::table"));
        // Any input is safe: non-ASCII object keys, and a long ARN of slashes against a template
        // of four placeholders (this took exponential time when matched by backtracking).
        assert!(arn_fits(object, "arn:aws:s3:::b/ü/ñ.txt"));
        assert!(arn_fits(bucket, "arn:aws:s3:::bücket"));
        let api =
            "arn:${Partition}:execute-api:${Region}:${Account}:${ApiId}/${Stage}/${Method}/${Path}";
        let long = format!(
            "arn:aws:execute-api:us-east-1:123456789012:{}",
            "/".repeat(5000)
        );
        let t = std::time::Instant::now();
        assert!(arn_fits(api, &long), "slashes may fill every placeholder");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
