//! The access language as the server (and the CLI offline, from the same config) serves it: the
//! catalog in use, the neutral profiles of `[access."NAME"]`, and what `[catalog] forbid` refuses;
//! search, show, compile and explain, answered as wire types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use brevet_catalog::compile::{
    compile, example_target, expand_named, tags_of, CompileError, Target,
};
use brevet_catalog::profile::{Forbidden, Profile, ProfileSpec};
use brevet_catalog::{Access, Catalog, Cloud, Hit, Language, Plane, Query, SharedCatalog, Tags};
use brevet_config::{field, ConfigError, DurationOrOff};
use brevet_wire::{
    CatalogEntry, CatalogHit, CloudExplanation, Comparison, CompiledProfile, PermissionView,
    ProfileExplanation, RoleRef, RoleView,
};
use serde::Deserialize;

/// `[catalog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    /// A snapshot written by `brevet catalog refresh`; default: the one built into brevet.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Sensitivity tags no profile may hold.
    #[serde(default)]
    pub forbid: Vec<String>,
    /// Files of `[access."NAME"]` tables (task templates shared between configs), read as if
    /// their tables were written in the config itself.
    #[serde(default)]
    pub profiles: Vec<PathBuf>,
    /// How long the server keeps the decoded catalog (about 25 MiB) once nothing uses it; the
    /// next use decodes it again (about 30 ms with its name lookups). `"off"` keeps it.
    #[serde(default = "default_unload_after")]
    pub unload_after: DurationOrOff,
}

impl Default for RawCatalog {
    fn default() -> Self {
        RawCatalog {
            file: None,
            forbid: Vec::new(),
            profiles: Vec::new(),
            unload_after: default_unload_after(),
        }
    }
}

fn default_unload_after() -> DurationOrOff {
    DurationOrOff(Some(std::time::Duration::from_secs(60)))
}

/// A file named by `[catalog] profiles`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    access: BTreeMap<String, ProfileSpec>,
}

/// The catalog and the profiles, checked.
#[derive(Debug, Clone)]
pub struct AccessLanguage {
    /// Decoded while in use (`catalog.get()`): the server releases it after `unload_after`.
    pub catalog: SharedCatalog,
    /// `[catalog] unload_after`; `None`: kept decoded.
    pub unload_after: Option<std::time::Duration>,
    /// The catalog with the profiles and what is forbidden, as providers compile through it.
    pub language: Arc<Language>,
    /// Sensitive permissions the profiles hold, for the start-up log.
    pub warnings: Vec<String>,
}

/// What went wrong answering a question about the catalog or a profile.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("`{0}` is neither a permission nor a role in the catalog; find it with `brevet catalog search`")]
    NotFound(String),
    #[error("unknown access profile `{name}`; the config defines: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// The parts of a config file the access language reads, other sections ignored.
#[derive(Debug, Deserialize)]
struct AccessSections {
    #[serde(default)]
    catalog: RawCatalog,
    #[serde(default)]
    access: BTreeMap<String, ProfileSpec>,
}

impl AccessLanguage {
    /// From a config file's `[catalog]` and `[access]` alone, for the CLI offline: a CI job can
    /// check profiles with a deployment's config without its secrets, policies or providers.
    pub fn from_config_file(path: &std::path::Path) -> Result<AccessLanguage, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let sections: AccessSections = brevet_config::parse_toml(&text, "")?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        AccessLanguage::load(&sections.catalog, &sections.access, base)
    }

    /// Loads the catalog and checks every profile: its kind, verbs and plane, that every
    /// `add`/`remove` names catalog permissions, and that it compiles for every cloud its kind
    /// maps to (against an example resource of the kind) without a forbidden permission.
    pub fn load(
        raw: &RawCatalog,
        specs: &BTreeMap<String, ProfileSpec>,
        base: &std::path::Path,
    ) -> Result<AccessLanguage, ConfigError> {
        let shared = match &raw.file {
            Some(f) => SharedCatalog::load_file(&base.join(f))
                .map_err(|e| field("catalog.file", e.to_string()))?,
            None => SharedCatalog::embedded().map_err(|e| field("catalog", e.to_string()))?,
        };
        // Held for the checks below only.
        let catalog = shared.get();
        let mut forbid = Tags::default();
        for (i, t) in raw.forbid.iter().enumerate() {
            forbid.insert(Tags::parse(t).ok_or_else(|| {
                field(
                    format!("catalog.forbid[{i}]"),
                    format!("unknown tag `{t}`; write privilege-escalation, credential-exposure, data-access or resource-exposure"),
                )
            })?);
        }
        let forbidden = Forbidden(forbid);
        let mut specs = specs.clone();
        for (i, f) in raw.profiles.iter().enumerate() {
            let at = format!("catalog.profiles[{i}]");
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| field(at.clone(), format!("cannot read {}: {e}", path.display())))?;
            let file: ProfileFile = brevet_config::parse_toml(&text, "")
                .map_err(|e| field(at.clone(), format!("{}: {e}", path.display())))?;
            for (name, spec) in file.access {
                if specs.insert(name.clone(), spec).is_some() {
                    return Err(field(
                        at.clone(),
                        format!(
                            "{} defines access profile `{name}` again; keep one",
                            path.display()
                        ),
                    ));
                }
            }
        }
        let mut profiles = BTreeMap::new();
        let mut warnings = Vec::new();
        for (name, spec) in &specs {
            let at = format!("access.\"{name}\"");
            let profile =
                Profile::parse(name, spec).map_err(|e| field(at.clone(), e.to_string()))?;
            for cloud in Cloud::ALL {
                let adjust = profile.adjust(cloud);
                for (list, entries) in [("add", &adjust.add), ("remove", &adjust.remove)] {
                    for (i, e) in entries.iter().enumerate() {
                        expand_named(&catalog, cloud, e).map_err(|err| {
                            field(format!("{at}.{cloud}.{list}[{i}]"), err.to_string())
                        })?;
                    }
                }
                let maps = profile.kind.native(cloud).is_some() || !adjust.add.is_empty();
                if !maps {
                    continue;
                }
                let target = example_target(&catalog, &profile, cloud);
                match compile(&catalog, &profile, &target, forbidden) {
                    Ok(c) => warnings.extend(
                        c.warnings
                            .iter()
                            .map(|w| format!("access profile `{name}` ({cloud}): {w}")),
                    ),
                    Err(e @ CompileError::Forbidden { .. }) => {
                        return Err(field(format!("{at}.{cloud}"), e.to_string()))
                    }
                    // The profile's own assignable scopes are known now: a data action there,
                    // or a scope that is no scope, is refused at start.
                    Err(e @ CompileError::DataActionAtManagementGroup { .. })
                    | Err(e @ CompileError::BadScope { .. })
                        if cloud == Cloud::Azure && !profile.azure.assignable_scopes.is_empty() =>
                    {
                        return Err(field(
                            format!("{at}.azure.assignable_scopes"),
                            e.to_string(),
                        ))
                    }
                    // Where it may be bound (organization-only permissions, Azure data actions,
                    // the ARNs an action needs) depends on the real resource, checked when the
                    // profile is compiled for it; said at start all the same.
                    Err(e) => warnings.push(format!(
                        "access profile `{name}` ({cloud}), on an example resource: {e}"
                    )),
                }
            }
            profiles.insert(name.clone(), profile);
        }
        Ok(AccessLanguage {
            language: Arc::new(Language {
                catalog: shared.clone(),
                profiles,
                forbidden,
            }),
            catalog: shared,
            unload_after: raw.unload_after.0,
            warnings,
        })
    }

    pub fn search(
        &self,
        text: &str,
        cloud: Option<&str>,
        access: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CatalogHit>, AccessError> {
        if text.split_whitespace().count() > brevet_catalog::search::MAX_WORDS {
            return Err(AccessError::BadInput(format!(
                "a search has at most {} words",
                brevet_catalog::search::MAX_WORDS
            )));
        }
        let mut q = Query::new(text);
        q.cloud = cloud.map(parse_cloud).transpose()?;
        q.access = access
            .map(|a| {
                Access::parse(a).ok_or_else(|| {
                    AccessError::BadInput(format!(
                        "unknown access level `{a}`; write list, read, write, tagging or permissions-management"
                    ))
                })
            })
            .transpose()?;
        q.limit = limit.clamp(1, 200);
        let held = self.catalog.get();
        let c: &Catalog = &held;
        Ok(c.search(&q)
            .into_iter()
            .map(|h| match h {
                Hit::Permission(i) => {
                    let p = &c.permissions()[i as usize];
                    CatalogHit {
                        entry: "permission".into(),
                        cloud: p.cloud.to_string(),
                        name: p.name.clone(),
                        detail: p.access.label().into(),
                        tags: names(p.tags),
                    }
                }
                Hit::Role(i) => {
                    let r = &c.roles()[i as usize];
                    CatalogHit {
                        entry: "role".into(),
                        cloud: r.cloud.to_string(),
                        name: r.name.clone(),
                        detail: r.title.clone(),
                        tags: names(tags_of(c, &r.permissions)),
                    }
                }
            })
            .collect())
    }

    /// A permission or role by name; with no cloud given, the first cloud that has it.
    pub fn show(&self, name: &str, cloud: Option<&str>) -> Result<CatalogEntry, AccessError> {
        let clouds = match cloud {
            Some(c) => vec![parse_cloud(c)?],
            None => Cloud::ALL.to_vec(),
        };
        let held = self.catalog.get();
        let c: &Catalog = &held;
        for cloud in &clouds {
            if let Some(i) = c.permission_index(*cloud, name) {
                let p = &c.permissions()[i as usize];
                let holders = c.roles_holding(i);
                return Ok(CatalogEntry::Permission(PermissionView {
                    cloud: p.cloud.to_string(),
                    name: p.name.clone(),
                    service: p.service().to_owned(),
                    access: p.access.label().into(),
                    verb: p.verb.as_str().into(),
                    // Only Azure files each operation under a plane; for AWS and GCP the
                    // resource kind decides.
                    plane: (p.cloud == Cloud::Azure).then(|| p.plane.as_str().to_owned()),
                    tags: names(p.tags),
                    description: p.description.clone(),
                    resource_types: p
                        .resource_types
                        .iter()
                        .map(|r| {
                            let t = &c.resource_types()[r.resource_type as usize];
                            format!(
                                "{}{}: {}",
                                t.name,
                                if r.required { "" } else { " (optional)" },
                                t.arn
                            )
                        })
                        .collect(),
                    dependent_actions: p.dependent.clone(),
                    condition_keys: c.condition_keys(p).map(str::to_owned).collect(),
                    custom_role_level: p.gcp_level.map(|l| {
                        match l {
                            brevet_catalog::GcpLevel::Project => "project",
                            brevet_catalog::GcpLevel::Organization => "organization",
                        }
                        .to_owned()
                    }),
                    held_by_count: holders.len(),
                    held_by: holders.iter().take(10).map(|r| role_ref(r)).collect(),
                }));
            }
        }
        for cloud in &clouds {
            if let Some(r) = c.role(*cloud, name) {
                return Ok(CatalogEntry::Role(RoleView {
                    cloud: r.cloud.to_string(),
                    name: r.name.clone(),
                    title: r.title.clone(),
                    description: r.description.clone(),
                    stage: r.stage.clone(),
                    size: r.permissions.len(),
                    patterns: r.patterns.clone(),
                    sensitive: r
                        .permissions
                        .iter()
                        .map(|&i| &c.permissions()[i as usize])
                        .filter(|p| p.tags.is_dangerous())
                        .take(20)
                        .map(|p| p.name.clone())
                        .collect(),
                }));
            }
        }
        Err(AccessError::NotFound(name.to_owned()))
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, AccessError> {
        self.language
            .profiles
            .get(name)
            .ok_or_else(|| AccessError::UnknownProfile {
                name: name.to_owned(),
                known: if self.language.profiles.is_empty() {
                    "none (add [access.\"NAME\"] tables)".into()
                } else {
                    self.language
                        .profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// Compiles profile `name` for the native resource `targets` name: one or more AWS ARNs, a
    /// GCP `projects/…`/`folders/…`/`organizations/…` scope (then optionally the resource's full
    /// name), or an Azure scope starting with `/`.
    pub fn compile(&self, name: &str, targets: &[String]) -> Result<CompiledProfile, AccessError> {
        let profile = self.profile(name)?;
        let target = parse_target(targets)?;
        self.compile_for(profile, &target)
    }

    fn compile_for(
        &self,
        profile: &Profile,
        target: &Target,
    ) -> Result<CompiledProfile, AccessError> {
        let held = self.catalog.get();
        let c: &Catalog = &held;
        let compiled = compile(c, profile, target, self.language.forbidden)?;
        Ok(CompiledProfile {
            profile: profile.name.clone(),
            cloud: compiled.cloud.to_string(),
            target: describe(target),
            permissions: compiled.names(c).into_iter().map(str::to_owned).collect(),
            compared: compare(c, &compiled.permissions),
            document: compiled.document,
            warnings: compiled.warnings,
        })
    }

    /// The profile in plain words, compiled for each cloud against an example resource of its
    /// kind, beside the precut roles that would cover it.
    pub fn explain(&self, name: &str) -> Result<ProfileExplanation, AccessError> {
        let profile = self.profile(name)?;
        let verbs: Vec<&str> = profile.verbs.iter().map(|v| v.as_str()).collect();
        let what = match (
            profile.planes.contains(&Plane::Control),
            profile.planes.contains(&Plane::Data),
        ) {
            (true, true) => "what it holds and its configuration",
            (false, true) => "what it holds (data plane)",
            _ => "its configuration (control plane)",
        };
        let how = match verbs.as_slice() {
            [] => "use only the permissions the profile adds per cloud on".to_owned(),
            [one] => one.to_string(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        };
        let mut summary = format!(
            "`{}` lets its holder {how} {what} of one resource of kind `{}` ({}).",
            profile.name, profile.kind.name, profile.kind.description,
        );
        if !profile.description.is_empty() {
            summary = format!("{}. {summary}", profile.description.trim_end_matches('.'));
        }
        let clouds = Cloud::ALL
            .into_iter()
            .filter(|c| profile.kind.native(*c).is_some() || !profile.adjust(*c).add.is_empty())
            .map(|cloud| {
                let target = example_target(&self.catalog.get(), profile, cloud);
                let (compiled, error) = match self.compile_for(profile, &target) {
                    Ok(c) => (Some(c), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                CloudExplanation {
                    cloud: cloud.to_string(),
                    example_target: describe(&target),
                    compiled,
                    error,
                }
            })
            .collect();
        Ok(ProfileExplanation {
            profile: profile.name.clone(),
            summary,
            clouds,
        })
    }
}

/// Gives the decoded catalog back to the system once nothing has used it for `after` (and at
/// once after start: the start-up checks are done with it), checking every tenth of `after`
/// (between 1 and 30 seconds). A compile or search in progress keeps it until it is done; the
/// next one decodes it again.
pub fn spawn_release(
    catalog: SharedCatalog,
    after: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use std::time::Duration;
    let tick = (after / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut idle = Duration::ZERO;
        loop {
            if catalog.release_idle(idle) {
                trim_heap();
                tracing::debug!(decodes = catalog.decodes(), "catalog released");
            }
            idle = after;
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

/// Hands freed heap pages back to the system. glibc keeps what a program frees in its arenas
/// for reuse; the catalog is some 200,000 small allocations, so without this its release would
/// leave the process as large as before. `malloc_trim` has no safe wrapper in a kept crate;
/// the `libc` binding is the thinnest way to call it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointer and only returns to the system memory that malloc
    // holds free; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

fn names(t: Tags) -> Vec<String> {
    t.names().into_iter().map(str::to_owned).collect()
}

fn role_ref(r: &brevet_catalog::Role) -> RoleRef {
    RoleRef {
        name: r.name.clone(),
        title: r.title.clone(),
        size: r.permissions.len(),
    }
}

fn parse_cloud(s: &str) -> Result<Cloud, AccessError> {
    Cloud::parse(s).ok_or_else(|| {
        AccessError::BadInput(format!(
            "unknown cloud `{s}`; write aws, gcp, azure or okta"
        ))
    })
}

/// Reads the native resource a profile is compiled for.
pub fn parse_target(targets: &[String]) -> Result<Target, AccessError> {
    let first = targets.first().ok_or_else(|| {
        AccessError::BadInput("name the resource: AWS ARNs, a GCP projects/… scope or an Azure /subscriptions/… scope".into())
    })?;
    if first.starts_with("arn:") {
        if let Some(bad) = targets.iter().find(|t| !t.starts_with("arn:")) {
            return Err(AccessError::BadInput(format!(
                "`{bad}` is not an ARN; an AWS resource is given as ARNs only"
            )));
        }
        return Ok(Target::Aws {
            arns: targets.to_vec(),
        });
    }
    if first.starts_with("okta:") {
        let resources = targets
            .iter()
            .map(|t| {
                t.strip_prefix("okta:").map(str::to_owned).ok_or_else(|| {
                    AccessError::BadInput(format!(
                        "`{t}` is not an Okta resource; write okta:groups/ID or okta:users/ID"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Target::Okta { resources });
    }
    if first.starts_with('/') {
        if targets.len() > 1 {
            return Err(AccessError::BadInput(
                "an Azure resource is one scope".into(),
            ));
        }
        return Ok(Target::Azure {
            scope: first.clone(),
        });
    }
    if ["projects/", "folders/", "organizations/"]
        .iter()
        .any(|p| first.starts_with(p))
    {
        if targets.len() > 2 {
            return Err(AccessError::BadInput(
                "a GCP resource is a scope and optionally the resource's full name".into(),
            ));
        }
        return Ok(Target::Gcp {
            scope: first.clone(),
            resource: targets.get(1).cloned(),
        });
    }
    Err(AccessError::BadInput(format!(
        "`{first}` names no cloud resource: write AWS ARNs (arn:aws:…), a GCP scope (projects/ID), an Azure scope (/subscriptions/ID/…) or Okta groups (okta:groups/ID)"
    )))
}

fn describe(t: &Target) -> String {
    match t {
        Target::Aws { arns } => arns.join(" "),
        Target::Gcp { scope, resource } => match resource {
            Some(r) => format!("{scope} {r}"),
            None => scope.clone(),
        },
        Target::Azure { scope } => scope.clone(),
        Target::Okta { resources } => resources
            .iter()
            .map(|r| format!("okta:{r}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The precut roles holding every compiled permission, smallest first (three at most).
fn compare(catalog: &Catalog, permissions: &[u32]) -> Vec<Comparison> {
    let Some(&first) = permissions.first() else {
        return Vec::new();
    };
    catalog
        .roles_holding(first)
        .into_iter()
        .map(|r| comparison(r, permissions))
        .filter(|c| c.covers)
        .take(3)
        .collect()
}

/// The compiled set beside one named precut role (for the comparison table and its tests).
pub fn compare_with(
    catalog: &Catalog,
    cloud: Cloud,
    role: &str,
    permissions: &[u32],
) -> Option<Comparison> {
    catalog
        .role(cloud, role)
        .map(|r| comparison(r, permissions))
}

fn comparison(r: &brevet_catalog::Role, permissions: &[u32]) -> Comparison {
    Comparison {
        role: r.name.clone(),
        title: r.title.clone(),
        role_size: r.permissions.len(),
        compiled_size: permissions.len(),
        covers: permissions
            .iter()
            .all(|p| r.permissions.binary_search(p).is_ok()),
    }
}
