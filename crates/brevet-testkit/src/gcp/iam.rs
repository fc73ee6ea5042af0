//! The engine behind every API of the stand-in: the resource hierarchy, one allow policy per
//! resource, the custom roles, the controllable clock and the evaluation of access.

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use brevet_catalog::{Catalog, Cloud};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{
    condition,
    error::ApiError,
    policy::{self, Api, Binding, Etags, Policy},
    roles::{CreateRole, CustomRoles, Lifecycle, RoleFields},
    Recorded,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Organization,
    Folder,
    Project,
    Bucket,
}

#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub kind: Kind,
    /// The full name of the parent (`folders/10`, `organizations/1`, `projects/p1` for a bucket).
    pub parent: Option<String>,
    pub number: u64,
    pub created: DateTime<Utc>,
    bindings: Vec<Binding>,
    audit_configs: Option<Value>,
    etag: String,
}

pub(crate) struct Iam {
    pub now: DateTime<Utc>,
    pub resources: BTreeMap<String, Resource>,
    pub roles: CustomRoles,
    pub catalog: Arc<Catalog>,
    pub requests: Vec<Recorded>,
    pub enforce_callers: bool,
    etags: Etags,
    interference: HashMap<String, u32>,
    racers: u32,
    projects_made: u64,
}

/// Full name of a bucket as IAM (and `resource.name` in conditions) writes it.
pub(crate) fn bucket_name(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}

impl Iam {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            now: Utc::now(),
            resources: BTreeMap::new(),
            roles: CustomRoles::default(),
            catalog,
            requests: Vec::new(),
            enforce_callers: false,
            etags: Etags::default(),
            interference: HashMap::new(),
            racers: 0,
            projects_made: 0,
        }
    }

    pub fn add(&mut self, kind: Kind, id: &str, parent: Option<&str>) -> Result<String, String> {
        let valid_id = !id.is_empty()
            && id.len() <= 63
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_id {
            return Err(format!("invalid id {id:?}"));
        }
        let (name, number) = match kind {
            Kind::Organization | Kind::Folder => {
                let number = id
                    .parse()
                    .map_err(|_| format!("{kind:?} ids are numbers, not {id:?}"))?;
                let prefix = if kind == Kind::Folder {
                    "folders"
                } else {
                    "organizations"
                };
                (format!("{prefix}/{id}"), number)
            }
            Kind::Project => {
                self.projects_made += 1;
                (
                    format!("projects/{id}"),
                    100_000_000_000 + self.projects_made,
                )
            }
            Kind::Bucket => (bucket_name(id), 0),
        };
        let parent = match (kind, parent) {
            (Kind::Organization, _) | (Kind::Project, None) => None,
            (_, Some(p)) => Some(self.resolve(p).ok_or_else(|| format!("no parent {p}"))?),
            (_, None) => return Err(format!("{kind:?} {id} needs a parent")),
        };
        let parent_kind = parent
            .as_ref()
            .and_then(|p| self.resources.get(p))
            .map(|r| r.kind);
        let fits = match kind {
            Kind::Organization => true,
            Kind::Folder | Kind::Project => {
                matches!(parent_kind, None | Some(Kind::Organization | Kind::Folder))
            }
            Kind::Bucket => parent_kind == Some(Kind::Project),
        };
        if !fits || (kind == Kind::Folder && parent.is_none()) {
            return Err(format!("a {kind:?} cannot live under {parent:?}"));
        }
        if self.resources.contains_key(&name) {
            return Err(format!("{name} exists already"));
        }
        let bindings = match (kind, &parent) {
            // A new bucket's policy as Cloud Storage makes it: the project's basic roles hold the
            // legacy bucket roles through the convenience members.
            (Kind::Bucket, Some(project)) => {
                let p = project.trim_start_matches("projects/");
                vec![
                    binding(
                        "roles/storage.legacyBucketOwner",
                        &[&format!("projectEditor:{p}"), &format!("projectOwner:{p}")],
                    ),
                    binding(
                        "roles/storage.legacyBucketReader",
                        &[&format!("projectViewer:{p}")],
                    ),
                ]
            }
            _ => Vec::new(),
        };
        let etag = self.etags.next();
        self.resources.insert(
            name.clone(),
            Resource {
                kind,
                parent,
                number,
                created: self.now,
                bindings,
                audit_configs: None,
                etag,
            },
        );
        Ok(name)
    }

    /// The stored key of a resource named as a client may name it (`projects/<number>` too).
    pub fn resolve(&self, name: &str) -> Option<String> {
        if self.resources.contains_key(name) {
            return Some(name.to_owned());
        }
        let number: u64 = name.strip_prefix("projects/")?.parse().ok()?;
        self.resources
            .iter()
            .find(|(_, r)| r.kind == Kind::Project && r.number == number)
            .map(|(k, _)| k.clone())
    }

    /// `name` and its ancestors, nearest first.
    fn lineage(&self, name: &str) -> Vec<(&str, &Resource)> {
        let mut out = Vec::new();
        let mut next = Some(name);
        while let Some(n) = next {
            let Some((key, r)) = self.resources.get_key_value(n) else {
                break;
            };
            if out.len() > 64 {
                break;
            }
            out.push((key.as_str(), r));
            next = r.parent.as_deref();
        }
        out
    }

    fn ancestor_of_kind(&self, name: &str, kind: Kind) -> Option<&str> {
        self.lineage(name)
            .into_iter()
            .find(|(_, r)| r.kind == kind)
            .map(|(k, _)| k)
    }

    fn api_of(&self, name: &str) -> Api {
        match self.resources.get(name).map(|r| r.kind) {
            Some(Kind::Bucket) => Api::Storage,
            _ => Api::ResourceManager,
        }
    }

    /// Purges custom roles past their undelete window, removing their bindings from every policy
    /// (iam.v1 roles.delete: "the binding is permanently removed"). Runs before every operation,
    /// so moving the clock is enough.
    pub fn settle(&mut self) {
        let purged = self.roles.purge_due(self.now);
        if purged.is_empty() {
            return;
        }
        for r in self.resources.values_mut() {
            let before = r.bindings.len();
            r.bindings.retain(|b| !purged.contains(&b.role));
            if r.bindings.len() != before {
                r.etag = self.etags.next();
            }
        }
    }

    pub fn get_policy(&mut self, name: &str, requested_version: i64) -> Result<Value, ApiError> {
        self.settle();
        let r = self
            .resources
            .get(name)
            .ok_or_else(ApiError::no_permission)?;
        let mut out = policy::view(&r.bindings, &r.etag, &r.audit_configs, requested_version);
        if r.kind == Kind::Bucket {
            out["kind"] = json!("storage#policy");
            out["resourceId"] = json!(name);
        }
        Ok(out)
    }

    /// The stored policy replaced without any check (a seed for tests); a new etag.
    pub fn seed_policy(&mut self, name: &str, p: Policy) -> Result<(), ApiError> {
        let etag = self.etags.next();
        let r = self
            .resources
            .get_mut(name)
            .ok_or_else(ApiError::no_permission)?;
        r.bindings = policy::normalise(p.bindings);
        r.audit_configs = p.audit_configs;
        r.etag = etag;
        Ok(())
    }

    /// setIamPolicy (cloud-contracts §1.1) on `name`; `update_mask` as the request gives it.
    pub fn set_policy(
        &mut self,
        name: &str,
        new: Policy,
        update_mask: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.settle();
        if !self.resources.contains_key(name) {
            return Err(ApiError::no_permission());
        }
        let api = self.api_of(name);
        self.race(name);
        let r = &self.resources[name];
        if let Some(etag) = new.etag.as_deref().filter(|e| !e.is_empty()) {
            if etag != r.etag {
                return Err(match api {
                    Api::Storage => ApiError::precondition_failed(),
                    Api::ResourceManager => ApiError::concurrent_change(),
                });
            }
            // Without an etag Google lets a version-1 write replace a policy with conditions and
            // drops them all (the documented hazard); with one it insists on version 3.
            if new.version < 3 && r.bindings.iter().any(|b| b.condition.is_some()) {
                return Err(ApiError::invalid(
                    "The policy has conditional bindings: a setIamPolicy that changes it must use version 3 (policy.version = 3).",
                ));
            }
        }
        policy::validate(&new, api, |role| self.role_bindable(name, role))?;
        let mask = update_mask
            .filter(|m| !m.trim().is_empty())
            .unwrap_or("bindings,etag");
        let fields: Vec<&str> = mask.split(',').map(str::trim).collect();
        if let Some(f) = fields
            .iter()
            .find(|f| !["bindings", "etag", "auditConfigs", "version"].contains(f))
        {
            return Err(ApiError::invalid(format!(
                "Invalid update mask field: {f}. Allowed: bindings, etag, auditConfigs."
            )));
        }
        let etag = self.etags.next();
        let r = self
            .resources
            .get_mut(name)
            .ok_or_else(ApiError::no_permission)?;
        if fields.contains(&"bindings") {
            r.bindings = policy::normalise(new.bindings);
        }
        if fields.contains(&"auditConfigs") {
            r.audit_configs = new.audit_configs;
        }
        r.etag = etag;
        self.get_policy(name, 3)
    }

    /// Whether `role` may be bound on `name` (cloud-contracts §1.3): a predefined role that
    /// exists, or a live custom role of the resource's project or organization.
    fn role_bindable(&self, name: &str, role: &str) -> Result<(), ApiError> {
        let missing = || {
            ApiError::invalid(format!(
                "Role ({role}) does not exist in the resource's hierarchy."
            ))
        };
        let kind = self.resources.get(name).map(|r| r.kind);
        if role.starts_with("roles/") {
            if self
                .catalog
                .role(Cloud::Gcp, role)
                .is_none_or(|r| r.name != role)
            {
                return Err(missing());
            }
            // Bucket policies hold Cloud Storage roles only (storage.v1 Policy.bindings.role).
            if kind == Some(Kind::Bucket) && !role.starts_with("roles/storage.") {
                return Err(ApiError::invalid(format!(
                    "Role {role} is not supported for this resource."
                )));
            }
            return Ok(());
        }
        let Some((parent, _)) = role.split_once("/roles/") else {
            return Err(missing());
        };
        let home = if parent.starts_with("projects/") {
            self.ancestor_of_kind(name, Kind::Project)
        } else {
            self.ancestor_of_kind(name, Kind::Organization)
        };
        if home.is_none() || self.resolve(parent).as_deref() != home {
            return Err(missing());
        }
        let canonical = format!(
            "{}/roles/{}",
            home.unwrap_or_default(),
            role.rsplit('/').next().unwrap_or_default()
        );
        match self.roles.visible(&canonical) {
            Some(r) if r.lifecycle != Lifecycle::Live => Err(ApiError::invalid(format!(
                "Role ({role}) does not exist in the resource's hierarchy: it was deleted."
            ))),
            Some(_) => Ok(()),
            None => Err(missing()),
        }
    }

    /// A concurrent writer, as [`super::FakeGcp::interfere`] asked for.
    fn race(&mut self, name: &str) {
        let Some(left) = self.interference.get_mut(name).filter(|n| **n > 0) else {
            return;
        };
        *left -= 1;
        self.racers += 1;
        let role = if self.api_of(name) == Api::Storage {
            "roles/storage.objectViewer"
        } else {
            "roles/viewer"
        };
        let member = format!("user:racer-{}@example.com", self.racers);
        let etag = self.etags.next();
        if let Some(r) = self.resources.get_mut(name) {
            match r
                .bindings
                .iter_mut()
                .find(|b| b.role == role && b.condition.is_none())
            {
                Some(b) => b.members.push(member),
                None => r.bindings.push(binding(role, &[&member])),
            }
            r.etag = etag;
        }
    }

    pub fn create_role(&mut self, parent: &str, request: CreateRole) -> Result<Value, ApiError> {
        self.settle();
        self.roles
            .create(parent, request, self.now, &self.catalog, &mut self.etags)
    }

    pub fn patch_role(
        &mut self,
        name: &str,
        mask: Option<&str>,
        fields: RoleFields,
    ) -> Result<Value, ApiError> {
        self.settle();
        self.roles
            .patch(name, mask, fields, &self.catalog, &mut self.etags)
    }

    pub fn delete_role(&mut self, name: &str, etag: Option<&str>) -> Result<Value, ApiError> {
        self.settle();
        self.roles.delete(name, etag, self.now, &mut self.etags)
    }

    pub fn undelete_role(&mut self, name: &str, etag: Option<&str>) -> Result<Value, ApiError> {
        self.settle();
        self.roles.undelete(name, etag, &mut self.etags)
    }

    pub fn interfere(&mut self, name: &str, writes: u32) {
        self.interference.insert(name.to_owned(), writes);
    }

    /// Which of `permissions` `caller` holds on `name` now, in request order.
    pub fn test_permissions(
        &mut self,
        caller: Option<&str>,
        name: &str,
        permissions: &[String],
    ) -> Vec<String> {
        self.settle();
        let Some(caller) = caller else {
            return Vec::new();
        };
        let mut held = vec![false; permissions.len()];
        for (_, r) in self.lineage(name) {
            for b in &r.bindings {
                if !b.members.iter().any(|m| self.member_matches(m, caller)) {
                    continue;
                }
                if let Some(c) = &b.condition {
                    if !condition::holds(&c.expression, self.now, name) {
                        continue;
                    }
                }
                for (i, p) in permissions.iter().enumerate() {
                    held[i] = held[i] || self.role_grants(&b.role, p);
                }
            }
        }
        permissions
            .iter()
            .zip(held)
            .filter(|(_, h)| *h)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn role_grants(&self, role: &str, permission: &str) -> bool {
        if role.starts_with("roles/") {
            let Some(index) = self.catalog.permission_index(Cloud::Gcp, permission) else {
                return false;
            };
            return self
                .catalog
                .role(Cloud::Gcp, role)
                .is_some_and(|r| r.name == role && r.permissions.contains(&index));
        }
        // Bindings keep the role name as written, which may use the project number.
        let canonical = role
            .split_once("/roles/")
            .and_then(|(parent, id)| Some(format!("{}/roles/{id}", self.resolve(parent)?)));
        canonical
            .and_then(|c| self.roles.live(&c))
            .is_some_and(|r| r.granted().iter().any(|p| p == permission))
    }

    /// Group memberships are unknown to the stand-in, so `group:` members match only themselves.
    fn member_matches(&self, member: &str, caller: &str) -> bool {
        if member.eq_ignore_ascii_case(caller)
            || member == "allUsers"
            || member == "allAuthenticatedUsers"
        {
            return true;
        }
        if let Some(domain) = member.strip_prefix("domain:") {
            let email_domain = caller
                .split_once(':')
                .and_then(|(_, e)| e.rsplit_once('@'))
                .map(|(_, d)| d);
            return email_domain.is_some_and(|d| d.eq_ignore_ascii_case(domain));
        }
        let basic = match member.split_once(':') {
            Some(("projectOwner", p)) => Some(("roles/owner", p)),
            Some(("projectEditor", p)) => Some(("roles/editor", p)),
            Some(("projectViewer", p)) => Some(("roles/viewer", p)),
            _ => None,
        };
        basic.is_some_and(|(role, project)| {
            self.resources
                .get(&format!("projects/{project}"))
                .is_some_and(|r| {
                    r.bindings.iter().any(|b| {
                        b.role == role
                            && b.condition.is_none()
                            && b.members.iter().any(|m| m.eq_ignore_ascii_case(caller))
                    })
                })
        })
    }
}

fn binding(role: &str, members: &[&str]) -> Binding {
    Binding {
        role: role.to_owned(),
        members: members.iter().map(|m| m.to_string()).collect(),
        condition: None,
    }
}
