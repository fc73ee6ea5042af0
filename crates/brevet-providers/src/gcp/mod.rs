//! GCP: a conditional IAM binding per grant, whose expiry Google enforces by itself
//! (`request.time < timestamp("…")`), on a project, folder, organisation (Resource Manager v3)
//! or Cloud Storage bucket (Storage JSON API). Two modes per profile:
//! - `predefined` (`role = "roles/…"`): the binding names that role;
//! - `custom` (`permissions = […]` or `access = "NAME"`): the binding names a custom role holding
//!   exactly the compiled permissions. Custom roles are content-addressed — the id is a hash of
//!   the sorted permission set — so every grant with the same set shares one role (GCP allows 300
//!   per project or organisation, deleted ones included for 7 days, and never lets an id be
//!   reused for ~37 days). A role no binding has used for `role_idle` is deleted by the
//!   reconciler; a soft-deleted one is undeleted when needed again; an id Google still holds as
//!   "marked for deletion" moves on to the next generation (`…_2`), never reused.
//!
//! Policies are read-modify-written with their etag (`client.rs`), retrying the whole cycle on
//! a concurrent write; only Brevet's own binding is ever added or removed (`policy.rs`).

mod client;
pub mod policy;
mod settings;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName, ResourceId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use settings::Kind;

use crate::{
    state::ProviderState, Credential, CredentialInput, OpContext, OwnedAccess, Provider,
    ProviderError, SecretText,
};
use client::{Failure, GcpClient};
use policy::Grant;

/// Google's own words on how long a policy change takes to reach every check.
pub const PROPAGATION: &str = "Google applies IAM policy changes in about 2 minutes, sometimes 7 or more; \
     until then the removed binding may still be honoured (its condition ends it at its expiry regardless)";

/// Where Brevet's own Google credentials come from (never from the config file itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// The Application Default Credentials chain: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
    /// ADC file, the metadata server (GCE, GKE Workload Identity), gcloud.
    ApplicationDefault,
    /// The metadata server only.
    MetadataServer,
    /// A service-account key file.
    KeyFile(PathBuf),
}

/// What a grant binds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcpResource {
    Project(String),
    Folder(String),
    Organization(String),
    /// A Cloud Storage bucket; `project` is where its custom roles live.
    Bucket {
        name: String,
        project: Option<String>,
    },
}

impl GcpResource {
    /// The IAM resource name (`projects/P`, `folders/F`, `organizations/O`,
    /// `projects/_/buckets/B`).
    pub fn full_name(&self) -> String {
        match self {
            Self::Project(p) => format!("projects/{p}"),
            Self::Folder(f) => format!("folders/{f}"),
            Self::Organization(o) => format!("organizations/{o}"),
            Self::Bucket { name, .. } => format!("projects/_/buckets/{name}"),
        }
    }

    pub fn is_bucket(&self) -> bool {
        matches!(self, Self::Bucket { .. })
    }
}

/// What a profile binds.
#[derive(Debug, Clone)]
pub enum Grantable {
    /// A predefined role (or an existing custom role, by full name).
    Predefined(String),
    /// Per resource id: the custom role's home (`projects/P`, `organizations/O`) and the
    /// permissions, checked against the catalog.
    Custom(BTreeMap<String, (String, Vec<String>)>),
}

#[derive(Debug, Clone)]
pub struct GcpProfile {
    pub grants: Grantable,
}

#[derive(Debug, Clone)]
pub struct GcpConfig {
    pub credentials: Credentials,
    /// One base URL for every Google API (a stand-in, a private endpoint); default: Google's.
    pub endpoint: Option<String>,
    /// Where custom roles live when set (`organizations/O`); else in each resource's project.
    pub organization: Option<String>,
    pub role_prefix: String,
    /// How long a custom role no binding uses is kept before the reconciler deletes it.
    pub role_idle: Duration,
    pub profiles: BTreeMap<ProfileName, GcpProfile>,
    pub resources: BTreeMap<String, GcpResource>,
    /// Brevet principal → IAM member (`user:…`, `group:…`, `serviceAccount:…`, `principal://…`).
    pub identities: BTreeMap<String, String>,
}

const ROLE_MARK: &str = "brevet content-addressed role";

/// The custom role's id for a permission set (sorted, deduplicated): the same set always gets
/// the same id, any other set another one. `generation` > 1 when Google still holds an earlier
/// id as deleted.
pub fn role_id(prefix: &str, permissions: &[String], generation: u32) -> String {
    let mut sorted: Vec<&str> = permissions.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let h = Sha256::digest(format!("v1\n{}", sorted.join("\n")).as_bytes());
    let base = format!("{prefix}{}", &hex::encode(h)[..40]);
    if generation > 1 {
        format!("{base}_{generation}")
    } else {
        base
    }
}

fn sorted_set(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub struct GcpProvider {
    name: String,
    config: GcpConfig,
    client: GcpClient,
    state: Arc<dyn ProviderState>,
}

impl GcpProvider {
    pub async fn new(
        name: &str,
        config: GcpConfig,
        state: Arc<dyn ProviderState>,
    ) -> Result<Self, ProviderError> {
        let client = GcpClient::new(&config.credentials, config.endpoint.as_deref()).await?;
        Ok(Self {
            name: name.to_owned(),
            config,
            client,
            state,
        })
    }

    fn profile(&self, p: &ProfileName) -> Result<&GcpProfile, ProviderError> {
        crate::profile_of(&self.name, &self.config.profiles, p)
    }

    fn resource(&self, b: &Binding) -> Result<&GcpResource, ProviderError> {
        self.config
            .resources
            .get(b.resource.name())
            .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string()))
    }

    fn member(&self, b: &Binding) -> Result<&str, ProviderError> {
        self.config
            .identities
            .get(b.principal.as_str())
            .map(String::as_str)
            .ok_or_else(|| {
                ProviderError::BadInput(format!(
                    "principal `{}` has no Google identity: add [providers.{}.identities.\"{}\"] \
                     member = \"user:EMAIL\" (or group:, serviceAccount:, principal://…)",
                    b.principal, self.name, b.principal
                ))
            })
    }

    /// The custom role's home and permissions for a binding, if its profile is custom.
    fn custom_of(&self, b: &Binding) -> Result<Option<(&str, &[String])>, ProviderError> {
        match &self.profile(&b.profile)?.grants {
            Grantable::Predefined(_) => Ok(None),
            Grantable::Custom(per) => per
                .get(b.resource.name())
                .map(|(h, p)| Some((h.as_str(), p.as_slice())))
                .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string())),
        }
    }

    fn state_key(home: &str, permissions: &[String]) -> String {
        format!("role:{home}/{}", role_id("", permissions, 1))
    }

    /// Records that the role is in use now (so the reconciler keeps it for `role_idle`).
    async fn touch(&self, key: &str, id: &str) -> Result<(), ProviderError> {
        // A use recorded within a tenth of role_idle (at most an hour) is recent enough: the
        // reconciler then waits at least 0.9 × role_idle, and a busy role costs no store write
        // per grant.
        let fresh = chrono::Duration::from_std(self.config.role_idle / 10)
            .unwrap_or_default()
            .min(chrono::Duration::hours(1));
        for _ in 0..5 {
            let current = self.state.get(key).await?;
            if let Some(c) = &current {
                let recent = c.value["last_used"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| Utc::now() - t.with_timezone(&Utc) < fresh);
                if recent && c.value["id"] == id {
                    return Ok(());
                }
            }
            let value = json!({"id": id, "last_used": ts(Utc::now())});
            if self
                .state
                .put(key, &value, None, current.map(|c| c.version))
                .await?
            {
                return Ok(());
            }
        }
        Err(ProviderError::Conflict(format!(
            "could not record the use of custom role {id}"
        )))
    }

    /// The role a binding names: the predefined one, or its content-addressed custom role,
    /// made (or undeleted, or restored to its permission set) first.
    async fn ensure_role(&self, cx: &OpContext, b: &Binding) -> Result<String, ProviderError> {
        let (home, permissions) = match (&self.profile(&b.profile)?.grants, self.custom_of(b)?) {
            (Grantable::Predefined(role), _) => return Ok(role.clone()),
            (_, Some(c)) => c,
            (_, None) => unreachable!("custom profiles have a role per resource"),
        };
        let key = Self::state_key(home, permissions);
        let known = self.state.get(&key).await?;
        let known_id = known
            .as_ref()
            .and_then(|s| s.value["id"].as_str().map(str::to_owned));
        let mut generation = (1..12)
            .find(|g| {
                known_id.as_deref()
                    == Some(role_id(&self.config.role_prefix, permissions, *g).as_str())
            })
            .unwrap_or(1);
        let want = sorted_set(&json!(permissions));
        let profile = b.profile.to_string();
        for _ in 0..12 {
            let id = role_id(&self.config.role_prefix, permissions, generation);
            let name = format!("{home}/roles/{id}");
            match self.client.get_role(cx, &name).await? {
                Some(r) if r["deleted"].as_bool() == Some(true) => {
                    let etag = r["etag"].as_str().unwrap_or_default();
                    self.client.undelete_role(cx, &name, etag).await?;
                }
                Some(r) => {
                    if sorted_set(&r["includedPermissions"]) != want {
                        // Someone edited a role Brevet's grants share: put the set back.
                        tracing::warn!(role = %name, "custom role's permissions were changed outside Brevet; restoring them");
                        self.client
                            .patch_role(
                                cx,
                                &name,
                                &json!({"includedPermissions": want, "etag": r["etag"]}),
                            )
                            .await?;
                    }
                }
                None => {
                    let role = json!({
                        "title": format!("Brevet {}", &id[self.config.role_prefix.len()..][..12]),
                        "description": truncate(&format!(
                            "{ROLE_MARK}: {} permissions, first made for profile {profile}. Shared by every grant \
                             with this set; deleted after {} unused.",
                            want.len(),
                            humanize(self.config.role_idle)
                        ), 300),
                        "includedPermissions": want,
                        "stage": "GA",
                    });
                    match self.client.create_role(cx, home, &id, &role).await {
                        Ok(_) => {}
                        Err(Failure::Api(a)) if a.http == 409 => continue, // made meanwhile: read it
                        Err(Failure::Api(a))
                            if a.http == 400 && a.message.contains("marked for deletion") =>
                        {
                            generation += 1;
                            continue;
                        }
                        Err(Failure::Api(a)) if a.http == 429 => {
                            return Err(ProviderError::Target(format!(
                                "the custom-role quota of {home} is full (Google: \"{}\"; 300 per project or \
                                 organization, deleted roles included for 7 days). Nothing was bound. Free \
                                 roles (`gcloud iam roles list --show-deleted`), lower role_idle so Brevet \
                                 deletes unused roles sooner, or set `organization` so roles are shared \
                                 across projects",
                                a.message
                            )))
                        }
                        Err(f) => return Err(f.into_provider(&format!("creating custom role {name}"))),
                    }
                }
            }
            self.touch(&key, &id).await?;
            return Ok(name);
        }
        Err(ProviderError::Target(format!(
            "could not make custom role {home}/roles/{}…: Google refused every generation",
            role_id(&self.config.role_prefix, permissions, 1)
        )))
    }

    fn note(cx: &OpContext) -> String {
        cx.request_id()
            .map(|r| format!("request {r}"))
            .unwrap_or_default()
    }

    async fn remove_binding(
        &self,
        cx: &OpContext,
        res: &GcpResource,
        key: &str,
    ) -> Result<Value, ProviderError> {
        self.client
            .modify_policy(cx, res, |p| {
                if !policy::ours(p).iter().any(|(k, _)| k == key) {
                    return Ok(None);
                }
                policy::edited(p, key, None)
                    .map(Some)
                    .map_err(ProviderError::Target)
            })
            .await
    }

    fn homes(&self) -> Vec<String> {
        let mut homes: Vec<String> = self
            .config
            .profiles
            .values()
            .filter_map(|p| match &p.grants {
                Grantable::Custom(per) => Some(per.values().map(|(h, _)| h.clone())),
                Grantable::Predefined(_) => None,
            })
            .flatten()
            .collect();
        homes.sort();
        homes.dedup();
        homes
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{} days", s / 86_400)
    } else if s.is_multiple_of(3_600) {
        format!("{} hours", s / 3_600)
    } else {
        format!("{s} seconds")
    }
}

#[async_trait]
impl Provider for GcpProvider {
    fn kind(&self) -> &'static str {
        "gcp"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.config.profiles.keys().cloned().collect()
    }

    fn grants_preview(&self, resource: &ResourceId, profile: &ProfileName) -> Vec<String> {
        let (Some(p), Some(res)) = (
            self.config.profiles.get(profile),
            self.config.resources.get(resource.name()),
        ) else {
            return Vec::new();
        };
        match &p.grants {
            Grantable::Predefined(role) => vec![format!("{role} on {}", res.full_name())],
            Grantable::Custom(per) => per
                .get(resource.name())
                .map(|(_, perms)| {
                    vec![format!(
                        "a custom role of {} on {}",
                        perms.join(", "),
                        res.full_name()
                    )]
                })
                .unwrap_or_default(),
        }
    }

    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let member = self.member(binding)?.to_owned();
        let res = self.resource(binding)?;
        let role = self.ensure_role(cx, binding).await?;
        let grant = Grant {
            role,
            member,
            binding_key: binding.key(),
            expires_at,
            note: Self::note(cx),
        };
        self.client
            .modify_policy(cx, res, |p| {
                if policy::holds(p, &grant) {
                    return Ok(None);
                }
                policy::edited(p, &grant.binding_key, Some(&grant))
                    .map(Some)
                    .map_err(ProviderError::Target)
            })
            .await?;
        Ok(())
    }

    async fn issue_credentials(
        &self,
        _cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        _input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        let member = self.member(binding)?;
        let res = self.resource(binding)?;
        let role = match (
            &self.profile(&binding.profile)?.grants,
            self.custom_of(binding)?,
        ) {
            (Grantable::Predefined(r), _) => r.clone(),
            (_, Some((home, perms))) => format!(
                "{home}/roles/{}",
                role_id(&self.config.role_prefix, perms, 1)
            ),
            (_, None) => String::new(),
        };
        Ok(Credential {
            kind: crate::CredentialKind::GcpIamBinding,
            secret: SecretText::new(String::new()),
            details: json!({
                "member": member,
                "role": role,
                "resource": res.full_name(),
                "expires_at": ts(expires_at),
                "use": "your own Google identity (gcloud auth login, Application Default Credentials); Google ends the binding at expires_at",
            }),
            expires_at,
        })
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        let res = self.resource(binding)?;
        // Found by its key, so an identity removed from the config since does not hide it.
        self.remove_binding(cx, res, &binding.key()).await?;
        // The idle clock of the shared role starts now, not at its last activation. Best effort:
        // the access is gone, and a profile edited since must not make revocation fail.
        if let Ok(Some((home, perms))) = self.custom_of(binding) {
            let key = Self::state_key(home, perms);
            if let Ok(Some(s)) = self.state.get(&key).await {
                if let Some(id) = s.value["id"].as_str() {
                    if let Err(e) = self.touch(&key, id).await {
                        tracing::warn!(
                            role = id,
                            "could not record the custom role's last use: {e}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Evidence, ProviderError> {
        let res = self.resource(binding)?;
        let key = binding.key();
        let p =
            self.client.get_policy(cx, res).await.map_err(|f| {
                f.into_provider(&format!("the allow policy of {}", res.full_name()))
            })?;
        if let Some((_, b)) = policy::ours(&p).into_iter().find(|(k, _)| *k == key) {
            return Err(ProviderError::StillPresent(format!(
                "{} still has Brevet's binding {} of {}",
                res.full_name(),
                policy::title_for(&key),
                b["role"]
            )));
        }
        let now = Utc::now();
        Ok(Evidence {
            checked_at: now,
            observation: json!({
                "resource": res.full_name(),
                "binding_title": policy::title_for(&key),
                "member": self.member(binding).ok(),
                "policy_etag": p["etag"],
                "bindings_in_policy": p["bindings"].as_array().map_or(0, Vec::len),
                "binding_present": false,
                "removed_by": ts(now),
                "propagation": PROPAGATION,
                "propagation_complete_by": ts(now + chrono::Duration::minutes(7)),
            }),
        })
    }

    async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        let mut out = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for res in self.config.resources.values() {
            let p = self.client.get_policy(cx, res).await.map_err(|f| {
                f.into_provider(&format!("the allow policy of {}", res.full_name()))
            })?;
            for b in p["bindings"].as_array().into_iter().flatten() {
                if let Some(r) = b["role"].as_str() {
                    used.insert(r.to_owned());
                }
            }
            for (key, b) in policy::ours(&p) {
                out.push(OwnedAccess {
                    native_id: format!(
                        "{}#{}",
                        res.full_name(),
                        b["condition"]["title"].as_str().unwrap_or_default()
                    ),
                    binding_key: Some(key),
                });
            }
        }
        // Custom roles no binding names: kept for role_idle after their last use, then reported
        // (no binding key: nothing covers them) for removal.
        let now = Utc::now();
        for home in self.homes() {
            for r in self.client.list_roles(cx, &home).await? {
                let Some(name) = r["name"].as_str() else {
                    continue;
                };
                let id = name.rsplit('/').next().unwrap_or_default();
                if !self.owns_role(&r, id) {
                    continue;
                }
                let key = format!(
                    "role:{home}/{}",
                    role_state_suffix(&self.config.role_prefix, id)
                );
                if used.contains(name) {
                    self.touch(&key, id).await?;
                    continue;
                }
                match self.last_used(&key).await? {
                    None => self.touch(&key, id).await?,
                    Some(t)
                        if now - t
                            > chrono::Duration::from_std(self.config.role_idle)
                                .unwrap_or_default() =>
                    {
                        out.push(OwnedAccess {
                            native_id: format!("role {name}"),
                            binding_key: None,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(out)
    }

    async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        if let Some(name) = owned.native_id.strip_prefix("role ") {
            let (home, id) = name.rsplit_once("/roles/").ok_or_else(|| {
                ProviderError::BadInput(format!("`{name}` is not a custom role name"))
            })?;
            let Some(r) = self.client.get_role(cx, name).await? else {
                return Ok(Evidence {
                    checked_at: Utc::now(),
                    observation: json!({"role": name, "present": false}),
                });
            };
            if !self.owns_role(&r, id) {
                return Err(ProviderError::BadInput(format!(
                    "custom role {name} was not made by Brevet; it is left alone"
                )));
            }
            let key = format!(
                "role:{home}/{}",
                role_state_suffix(&self.config.role_prefix, id)
            );
            if let Some(t) = self.last_used(&key).await? {
                if Utc::now() - t
                    <= chrono::Duration::from_std(self.config.role_idle).unwrap_or_default()
                {
                    return Err(ProviderError::Conflict(format!(
                        "custom role {name} was used again at {}; it stays",
                        ts(t)
                    )));
                }
            }
            if r["deleted"].as_bool() != Some(true) {
                let etag = r["etag"].as_str().unwrap_or_default();
                self.client.delete_role(cx, name, etag).await?;
            }
            self.state.delete(&key).await?;
            let now = Utc::now();
            return Ok(Evidence {
                checked_at: now,
                observation: json!({
                    "role": name,
                    "deleted": true,
                    "why": format!("no binding used it for {}", humanize(self.config.role_idle)),
                    "undeletable_until": ts(now + chrono::Duration::days(7)),
                }),
            });
        }
        let (resource, title) = owned.native_id.split_once('#').ok_or_else(|| {
            ProviderError::BadInput(format!(
                "`{}` is not a binding Brevet lists",
                owned.native_id
            ))
        })?;
        let res = self
            .config
            .resources
            .values()
            .find(|r| r.full_name() == resource)
            .ok_or_else(|| ProviderError::UnknownResource(resource.to_owned()))?;
        let key = match &owned.binding_key {
            Some(k) if policy::title_for(k) == title => k.clone(),
            _ => {
                return Err(ProviderError::BadInput(format!(
                    "`{}` is not one of Brevet's bindings; it is left alone",
                    owned.native_id
                )))
            }
        };
        let p = self.remove_binding(cx, res, &key).await?;
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: json!({
                "resource": resource,
                "binding_title": title,
                "binding_present": policy::ours(&p).iter().any(|(k, _)| *k == key),
                "policy_etag": p["etag"],
                "propagation": PROPAGATION,
            }),
        })
    }

    async fn terminate_sessions(
        &self,
        _cx: &OpContext,
        _binding: &Binding,
    ) -> Result<u64, ProviderError> {
        // Google keeps no per-binding session: access ends when the binding goes (after
        // propagation). OAuth tokens the grantee holds stay valid, but carry no permission the
        // binding does not give.
        Ok(0)
    }
}

impl GcpProvider {
    fn owns_role(&self, r: &Value, id: &str) -> bool {
        id.starts_with(&self.config.role_prefix)
            && r["description"]
                .as_str()
                .is_some_and(|d| d.starts_with(ROLE_MARK))
    }

    async fn last_used(&self, key: &str) -> Result<Option<DateTime<Utc>>, ProviderError> {
        Ok(self.state.get(key).await?.and_then(|s| {
            s.value["last_used"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        }))
    }
}

/// The state key's hash part for a role id (its generation suffix and prefix taken off).
fn role_state_suffix(prefix: &str, id: &str) -> String {
    let rest = id.strip_prefix(prefix).unwrap_or(id);
    rest.split('_').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ids_are_content_addressed_and_valid() {
        let a = role_id(
            "brevet_",
            &["storage.objects.list".into(), "storage.objects.get".into()],
            1,
        );
        let b = role_id(
            "brevet_",
            &[
                "storage.objects.get".into(),
                "storage.objects.list".into(),
                "storage.objects.get".into(),
            ],
            1,
        );
        assert_eq!(a, b, "order and duplicates do not matter");
        assert_ne!(a, role_id("brevet_", &["storage.objects.get".into()], 1));
        assert_eq!(
            role_id("brevet_", &["x.y.z".into()], 3),
            format!("{}_3", role_id("brevet_", &["x.y.z".into()], 1))
        );
        for id in [&a, &role_id("brevet_", &["x.y.z".into()], 12)] {
            assert!(
                (3..=64).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
                "{id}"
            );
        }
        assert_eq!(
            role_state_suffix("brevet_", &role_id("brevet_", &["x.y.z".into()], 4)),
            role_id("", &["x.y.z".into()], 1)
        );
        assert_eq!(
            GcpProvider::state_key("projects/p", &["x.y.z".into()]),
            format!(
                "role:projects/p/{}",
                role_state_suffix("brevet_", &role_id("brevet_", &["x.y.z".into()], 1))
            )
        );
    }
}
