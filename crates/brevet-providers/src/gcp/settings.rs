//! `[providers.NAME]` with `kind = "gcp"`, and its resources' tables: parsed here, with errors
//! named by their full path. Every permission is checked against the catalog and every neutral
//! profile compiled for each resource at load, so a grant can only fail at activation for
//! reasons Google alone knows.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use brevet_catalog::{compile::Target, Cloud, GcpLevel, Language};
use brevet_config::{duration_literal, field, ConfigDuration, ConfigError, ProviderTables};
use brevet_core::ProfileName;
use serde::Deserialize;

use super::{
    policy::BASIC_ROLES, Credentials, GcpConfig, GcpProfile, GcpProvider, GcpResource, Grantable,
};
use crate::{
    registry::{BuildContext, ProviderKind, ProviderSetup},
    Provider, ProviderError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    credentials: Option<RawCredentials>,
    endpoint: Option<String>,
    organization: Option<String>,
    #[serde(default = "prefix")]
    role_prefix: String,
    #[serde(default = "idle")]
    role_idle: ConfigDuration,
    #[serde(default)]
    identities: BTreeMap<String, RawIdentity>,
    profiles: BTreeMap<String, RawProfile>,
}

fn prefix() -> String {
    "brevet_".into()
}
fn idle() -> ConfigDuration {
    duration_literal("7d")
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCredentials {
    Named(String),
    KeyFile {
        #[serde(rename = "key_file")]
        key_file: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    member: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    /// Predefined mode: a role Google (or the organisation) already has.
    role: Option<String>,
    /// Custom mode: these permissions, in a content-addressed custom role.
    #[serde(default)]
    permissions: Vec<String>,
    /// Custom mode: a neutral profile compiled for each resource.
    access: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    project: Option<String>,
    folder: Option<String>,
    organization: Option<String>,
    bucket: Option<String>,
}

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// Parses and checks one instance's tables.
pub fn parse(t: &ProviderTables) -> Result<GcpConfig, ConfigError> {
    let raw: Raw = t.parse()?;
    let credentials = match raw.credentials {
        None => Credentials::ApplicationDefault,
        Some(RawCredentials::Named(n)) => match n.as_str() {
            "application_default" => Credentials::ApplicationDefault,
            "metadata_server" => Credentials::MetadataServer,
            other => {
                return Err(field(
                    t.at("credentials"),
                    format!(
                        "`{other}` is not a credential source; use \"application_default\", \
                         \"metadata_server\" or {{ key_file = \"/path/to/key.json\" }}"
                    ),
                ))
            }
        },
        Some(RawCredentials::KeyFile { key_file }) => {
            if !key_file.is_file() {
                return Err(field(
                    t.at("credentials.key_file"),
                    format!("{} is not a readable file", key_file.display()),
                ));
            }
            Credentials::KeyFile(key_file)
        }
    };
    if let Some(e) = &raw.endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            return Err(field(
                t.at("endpoint"),
                "an endpoint is a URL such as http://127.0.0.1:8085",
            ));
        }
    }
    if let Some(o) = &raw.organization {
        if o.is_empty() || !o.chars().all(|c| c.is_ascii_digit()) {
            return Err(field(
                t.at("organization"),
                "an organization id is its number, e.g. \"123456789012\"",
            ));
        }
    }
    let prefix_ok = (1..=16).contains(&raw.role_prefix.len())
        && raw
            .role_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !prefix_ok {
        return Err(field(
            t.at("role_prefix"),
            "use 1 to 16 characters from letters, digits, `_` and `.` (custom role ids allow no others)",
        ));
    }
    let resources = parse_resources(t)?;
    let language = t.language()?;
    let mut identities = BTreeMap::new();
    for (who, ri) in raw.identities {
        let ok = [
            "user:",
            "group:",
            "serviceAccount:",
            "principal://",
            "principalSet://",
        ]
        .iter()
        .any(|p| ri.member.starts_with(p) && ri.member.len() > p.len());
        if !ok {
            return Err(field(
                t.at(&format!("identities.{who}.member")),
                format!(
                    "`{}` is not a member Brevet grants to; write user:EMAIL, group:EMAIL, \
                     serviceAccount:EMAIL or a workforce principal://… identity",
                    ri.member
                ),
            ));
        }
        identities.insert(who, ri.member);
    }
    let mut profiles = BTreeMap::new();
    for (p, rp) in raw.profiles {
        let pat = |f: &str| t.at(&format!("profiles.\"{p}\".{f}"));
        let pn = ProfileName::parse(&p)
            .map_err(|e| field(t.at(&format!("profiles.\"{p}\"")), e.to_string()))?;
        let given = [
            rp.role.is_some(),
            !rp.permissions.is_empty(),
            rp.access.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(field(
                t.at(&format!("profiles.\"{p}\"")),
                "give exactly one of `role` (a predefined role, e.g. \"roles/storage.objectViewer\"), \
                 `permissions` (a custom role of these) or `access` (a neutral profile)",
            ));
        }
        let grants = if let Some(role) = rp.role {
            Grantable::Predefined(check_role(&language, &role).map_err(|e| field(pat("role"), e))?)
        } else {
            let mut per_resource = BTreeMap::new();
            for (id, res) in &resources {
                let home = match role_home(raw.organization.as_deref(), res) {
                    Ok(h) => h,
                    Err(why) => {
                        return Err(field(
                            t.resource_at(id),
                            format!("profile `{p}` makes a custom role for it, but {why}"),
                        ))
                    }
                };
                let names = if let Some(access) = &rp.access {
                    let profile = language
                        .profile(access)
                        .map_err(|e| field(pat("access"), e))?;
                    let compiled = language
                        .compile(
                            profile,
                            &Target::Gcp {
                                scope: home.clone(),
                                resource: None,
                            },
                        )
                        .map_err(|e| {
                            field(
                                pat("access"),
                                format!("`{access}` for resource `{}`: {e}", t.resource_at(id)),
                            )
                        })?;
                    for w in &compiled.warnings {
                        tracing::warn!(provider = %t.name, access, resource = %id, "{w}");
                    }
                    compiled
                        .names(&language.catalog.get())
                        .into_iter()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                } else {
                    let mut names = Vec::new();
                    for (i, perm) in rp.permissions.iter().enumerate() {
                        let at = pat(&format!("permissions[{i}]"));
                        if perm.contains('*') {
                            return Err(field(at, "custom roles take exact permissions; list them (`brevet catalog search` finds them)"));
                        }
                        let checked = language
                            .check(Cloud::Gcp, perm)
                            .map_err(|e| field(at.clone(), e.to_string()))?;
                        for w in checked.warnings {
                            tracing::warn!(provider = %t.name, profile = %pn, "{w}");
                        }
                        let catalog = language.catalog.get();
                        let entry = catalog.permission(Cloud::Gcp, perm);
                        if entry.and_then(|e| e.gcp_level) == Some(GcpLevel::Organization)
                            && home.starts_with("projects/")
                        {
                            return Err(field(
                                at,
                                format!(
                                    "`{perm}` exists only at the organization level, and the custom role for \
                                     resource `{}` lives in {home}: set `organization` on the provider, or drop it",
                                    t.resource_at(id)
                                ),
                            ));
                        }
                        names.push(perm.clone());
                    }
                    names
                };
                if names.is_empty() {
                    return Err(field(
                        pat(if rp.access.is_some() {
                            "access"
                        } else {
                            "permissions"
                        }),
                        format!("grants nothing on resource `{}`", t.resource_at(id)),
                    ));
                }
                if res.is_bucket() {
                    if let Some(other) = names.iter().find(|n| !n.starts_with("storage.")) {
                        return Err(field(
                            pat(if rp.access.is_some() { "access" } else { "permissions" }),
                            format!(
                                "`{other}` does not apply to a Cloud Storage bucket (resource `{}`): a bucket's \
                                 policy grants only storage.* permissions",
                                t.resource_at(id)
                            ),
                        ));
                    }
                }
                if names.len() > 3_000 {
                    return Err(field(
                        pat("access"),
                        format!(
                            "{} permissions; a custom role holds at most 3,000",
                            names.len()
                        ),
                    ));
                }
                per_resource.insert(id.clone(), (home, names));
            }
            Grantable::Custom(per_resource)
        };
        profiles.insert(pn, GcpProfile { grants });
    }
    Ok(GcpConfig {
        credentials,
        endpoint: raw.endpoint,
        organization: raw.organization,
        role_prefix: raw.role_prefix,
        role_idle: raw.role_idle.0,
        profiles,
        resources,
        identities,
    })
}

/// A predefined or existing custom role for predefined mode: known to the catalog (or a custom
/// role's full name), and not a basic role, which Google will not put under a condition.
fn check_role(language: &Language, role: &str) -> Result<String, String> {
    if BASIC_ROLES.contains(&role) {
        return Err(format!(
            "{role} is a basic role: Google refuses an IAM condition on it, so the grant could \
             not expire on its own; choose a predefined role or a neutral profile (`access`)"
        ));
    }
    let custom = (role.starts_with("projects/") || role.starts_with("organizations/"))
        && role.split('/').nth(2) == Some("roles")
        && role.split('/').count() == 4;
    if custom {
        return Ok(role.to_owned());
    }
    if !role.starts_with("roles/") {
        return Err(format!(
            "`{role}` is not a role name: write roles/NAME, projects/P/roles/ID or organizations/O/roles/ID"
        ));
    }
    if language.catalog.get().role(Cloud::Gcp, role).is_none() {
        return Err(format!(
            "`{role}` is not a GCP predefined role in Brevet's catalog; `brevet catalog search` finds roles \
             (for a newer role: `brevet catalog refresh` and `[catalog] file`)"
        ));
    }
    Ok(role.to_owned())
}

/// Where the custom role for a resource lives: the organisation if the provider names one,
/// else the resource's project.
pub(super) fn role_home(organization: Option<&str>, r: &GcpResource) -> Result<String, String> {
    if let Some(o) = organization {
        return Ok(format!("organizations/{o}"));
    }
    match r {
        GcpResource::Project(p) => Ok(format!("projects/{p}")),
        GcpResource::Bucket { project: Some(p), .. } => Ok(format!("projects/{p}")),
        GcpResource::Bucket { project: None, .. } => Err(
            "a bucket's custom role lives in its project: add `project = \"…\"` to the resource, or set \
             `organization` on the provider"
                .into(),
        ),
        GcpResource::Folder(_) | GcpResource::Organization(_) => Err(
            "folders and organizations can only bind organization-level custom roles: set \
             `organization` on the provider"
                .into(),
        ),
    }
}

fn parse_resources(t: &ProviderTables) -> Result<BTreeMap<String, GcpResource>, ConfigError> {
    let mut out = BTreeMap::new();
    for (id, r) in t.parse_resources::<RawResource>()? {
        let rat = t.resource_at(&id);
        for (k, v) in [
            ("project", &r.project),
            ("folder", &r.folder),
            ("organization", &r.organization),
            ("bucket", &r.bucket),
        ] {
            if let Some(v) = v {
                if !id_ok(v) {
                    return Err(field(
                        format!("{rat}.{k}"),
                        format!("`{v}` is not a valid {k} id"),
                    ));
                }
            }
        }
        let res =
            match (r.project, r.folder, r.organization, r.bucket) {
                (project, None, None, Some(name)) => GcpResource::Bucket { name, project },
                (Some(p), None, None, None) => GcpResource::Project(p),
                (None, Some(f), None, None) => GcpResource::Folder(f),
                (None, None, Some(o), None) => GcpResource::Organization(o),
                _ => return Err(field(
                    rat,
                    "name exactly one thing to bind on: `project`, `folder`, `organization`, or \
                     `bucket` (with its `project`)",
                )),
            };
        out.insert(id, res);
    }
    Ok(out)
}

pub struct Kind;

#[derive(Debug)]
struct Setup(GcpConfig);

impl ProviderKind for Kind {
    fn kind(&self) -> &'static str {
        "gcp"
    }
    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError> {
        Ok(Arc::new(Setup(parse(tables)?)))
    }
}

#[async_trait]
impl ProviderSetup for Setup {
    async fn build(&self, cx: BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(
            GcpProvider::new(&cx.name, self.0.clone(), cx.state).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(provider: &str, resources: &[(&str, &str)]) -> ProviderTables {
        ProviderTables::from_toml("gcp", provider, resources).unwrap()
    }

    fn err(provider: &str, resources: &[(&str, &str)]) -> String {
        parse(&tables(provider, resources)).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_instance_parses_in_both_modes() {
        let c = parse(&tables(
            "[identities.alice]\nmember = \"user:alice@example.com\"\n\
             [profiles.\"gcp.view\"]\nrole = \"roles/storage.objectViewer\"\n\
             [profiles.\"gcp.read\"]\npermissions = [\"storage.objects.get\", \"storage.objects.list\"]",
            &[("logs", "bucket = \"logs\"\nproject = \"p1\""), ("p1", "project = \"p1\"")],
        ))
        .unwrap();
        assert_eq!(c.role_prefix, "brevet_");
        assert_eq!(c.role_idle, std::time::Duration::from_secs(7 * 86_400));
        let read = &c.profiles[&ProfileName::parse("gcp.read").unwrap()];
        let Grantable::Custom(per) = &read.grants else {
            panic!()
        };
        assert_eq!(per["logs"].0, "projects/p1");
        assert_eq!(
            per["logs"].1,
            ["storage.objects.get", "storage.objects.list"]
        );
        assert!(matches!(c.resources["logs"], GcpResource::Bucket { .. }));
    }

    /// Each mistake is named by its path, with the fix.
    #[test]
    fn bad_config_is_refused_by_path() {
        let view = "[profiles.\"gcp.view\"]\nrole = \"roles/storage.objectViewer\"";
        let p1 = [("p1", "project = \"p1\"")];
        for (provider, resources, path, words) in [
            ("[profiles.\"gcp.x\"]\nrole = \"roles/owner\"", &p1[..], "profiles.\"gcp.x\".role", "basic role"),
            ("[profiles.\"gcp.x\"]\nrole = \"roles/no.suchRole\"", &p1[..], "profiles.\"gcp.x\".role", "not a GCP predefined role"),
            ("[profiles.\"gcp.x\"]\npermissions = [\"storage.objects.gett\"]", &p1[..], "profiles.\"gcp.x\".permissions[0]", "storage.objects.gett"),
            ("[profiles.\"gcp.x\"]\npermissions = [\"storage.*\"]", &p1[..], "profiles.\"gcp.x\".permissions[0]", "exact permissions"),
            ("[profiles.\"gcp.x\"]\npermissions = [\"resourcemanager.folders.get\"]", &p1[..], "profiles.\"gcp.x\".permissions[0]", "organization level"),
            ("[profiles.\"gcp.x\"]\npermissions = [\"resourcemanager.projects.list\"]", &p1[..], "profiles.\"gcp.x\".permissions[0]", "organization level"),
            ("[profiles.\"gcp.x\"]\nrole = \"roles/browser\"\npermissions = [\"storage.objects.get\"]", &p1[..], "profiles.\"gcp.x\"", "exactly one of"),
            ("[profiles.\"gcp.x\"]\npermissions = [\"compute.instances.get\"]", &[("b", "bucket = \"b\"\nproject = \"p1\"")][..], "profiles.\"gcp.x\".permissions", "does not apply to a Cloud Storage bucket"),
            ("[profiles.\"gcp.x\"]\npermissions = [\"storage.objects.get\"]", &[("f", "folder = \"10\"")][..], "resources.\"gcp:f\"", "set `organization`"),
            (view, &[("x", "project = \"p1\"\nfolder = \"3\"")][..], "resources.\"gcp:x\"", "exactly one thing"),
            (&format!("credentials = \"magic\"\n{view}"), &p1[..], "providers.gcp.credentials", "metadata_server"),
            (&format!("role_prefix = \"bre-vet\"\n{view}"), &p1[..], "providers.gcp.role_prefix", "letters, digits"),
            (&format!("[identities.alice]\nmember = \"alice@example.com\"\n{view}"), &p1[..], "identities.alice.member", "user:EMAIL"),
            (&format!("[identities.alice]\nmember = \"allUsers\"\n{view}"), &p1[..], "identities.alice.member", "user:EMAIL"),
        ] {
            let e = err(provider, resources);
            assert!(e.contains(path) && e.contains(words), "{path} / {words}: {e}");
        }
    }
}
