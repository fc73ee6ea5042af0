//! Custom roles (IAM v1 `projects.roles` / `organizations.roles`, cloud-contracts §1.3): creation
//! checks, the quota that counts deleted-but-not-purged roles, soft delete, undelete within 7
//! days, purge after 7 days and the 37-day embargo on a deleted role's id.

use std::collections::BTreeMap;

use base64::Engine as _;
use brevet_catalog::{Catalog, Cloud, GcpLevel, Permission};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error::ApiError, policy::Etags};

/// cloud-contracts §1.2: 300 per project and per organization.
pub(crate) const DEFAULT_QUOTA: usize = 300;
/// §1.3: "You have 7 days to undelete the custom role."
pub(crate) fn undelete_window() -> Duration {
    Duration::days(7)
}
/// §1.3: an id is reusable only ~37 days after deletion (7 + up to 30).
pub(crate) fn id_embargo() -> Duration {
    Duration::days(37)
}
const MAX_TITLE_BYTES: usize = 100;
const MAX_DESCRIPTION_BYTES: usize = 300;
const MAX_PERMISSIONS: usize = 3_000;
const STAGES: [&str; 6] = ["ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP"];

/// A sample of permissions Google refuses in any custom role (customRolesSupportLevel
/// NOT_SUPPORTED); the real list is long and changes, the stand-in only needs some to prove a
/// caller handles the refusal. Source: terraform-google-iam#130.
pub(crate) const NOT_SUPPORTED_IN_CUSTOM_ROLES: [&str; 1] =
    ["cloudonefs.isiloncloud.com/clusters.list"];

/// Permissions Google refuses in a project-level role although the catalog marks them
/// project-level: terraform-google-iam#158 (`resourcemanager.projects.list`).
const NOT_VALID_IN_PROJECT_ROLES: [&str; 1] = ["resourcemanager.projects.list"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Live,
    Deleted {
        at: DateTime<Utc>,
    },
    /// Gone for good, remembered only to refuse its id until the embargo ends.
    Purged {
        deleted_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct CustomRole {
    pub name: String,
    pub parent: String,
    pub title: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub stage: String,
    pub etag: String,
    pub lifecycle: Lifecycle,
}

impl CustomRole {
    pub fn to_json(&self, full: bool) -> Value {
        let mut v = json!({"name": self.name, "title": self.title, "etag": self.etag});
        if !self.description.is_empty() {
            v["description"] = json!(self.description);
        }
        if full {
            v["includedPermissions"] = json!(self.permissions);
        }
        // iam.v1 Role.stage: "If the ALPHA launch stage has been selected for a role, the stage
        // field will not be included in the returned definition for the role."
        if self.stage != "ALPHA" {
            v["stage"] = json!(self.stage);
        }
        if matches!(self.lifecycle, Lifecycle::Deleted { .. }) {
            v["deleted"] = json!(true);
        }
        v
    }

    /// The permissions it grants when bound: none once deleted or DISABLED.
    pub fn granted(&self) -> &[String] {
        if self.lifecycle == Lifecycle::Live && self.stage != "DISABLED" {
            &self.permissions
        } else {
            &[]
        }
    }
}

/// The body of create (`{roleId, role}`) and the role of patch.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleFields {
    pub title: Option<String>,
    pub description: Option<String>,
    pub included_permissions: Option<Vec<String>>,
    pub stage: Option<String>,
    pub etag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateRole {
    #[serde(default)]
    pub role_id: String,
    #[serde(default)]
    pub role: RoleFields,
}

pub(crate) struct CustomRoles {
    roles: BTreeMap<String, CustomRole>,
    pub quota: usize,
}

impl Default for CustomRoles {
    fn default() -> Self {
        Self {
            roles: BTreeMap::new(),
            quota: DEFAULT_QUOTA,
        }
    }
}

pub(crate) struct ListOptions {
    pub show_deleted: bool,
    pub full: bool,
    pub page_size: Option<usize>,
    pub page_token: Option<String>,
}

impl CustomRoles {
    pub fn live(&self, name: &str) -> Option<&CustomRole> {
        self.roles
            .get(name)
            .filter(|r| r.lifecycle == Lifecycle::Live)
    }

    /// Live or deleted within the undelete window.
    pub fn visible(&self, name: &str) -> Option<&CustomRole> {
        self.roles
            .get(name)
            .filter(|r| !matches!(r.lifecycle, Lifecycle::Purged { .. }))
    }

    /// Every role of `parent` that is not purged, deleted ones included.
    pub fn of_parent<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a CustomRole> + 'a {
        self.roles
            .values()
            .filter(move |r| r.parent == parent && !matches!(r.lifecycle, Lifecycle::Purged { .. }))
    }

    pub fn create(
        &mut self,
        parent: &str,
        request: CreateRole,
        now: DateTime<Utc>,
        catalog: &Catalog,
        etags: &mut Etags,
    ) -> Result<Value, ApiError> {
        let id = request.role_id;
        let valid_id = (3..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid_id {
            return Err(ApiError::invalid(format!(
                "The role_id ({id}) is invalid: it must match [a-zA-Z0-9_.]{{3,64}}."
            )));
        }
        let name = format!("{parent}/roles/{id}");
        match self.roles.get(&name).map(|r| r.lifecycle) {
            Some(Lifecycle::Live) => {
                return Err(ApiError::already_exists(format!(
                    "A role named {name} already exists."
                )))
            }
            Some(Lifecycle::Deleted { at } | Lifecycle::Purged { deleted_at: at })
                if now < at + id_embargo() =>
            {
                return Err(ApiError::failed_precondition(format!(
                    "You can't create a role_id ({id}) which has been marked for deletion."
                )))
            }
            _ => {}
        }
        if self.of_parent(parent).count() >= self.quota {
            return Err(ApiError::exhausted(format!(
                "Maximum number of roles reached. Maximum is: {}",
                self.quota
            )));
        }
        let fields = request.role;
        let permissions = check_permissions(
            fields.included_permissions.unwrap_or_default(),
            parent,
            catalog,
        )?;
        let role = CustomRole {
            name: name.clone(),
            parent: parent.to_owned(),
            title: check_title(fields.title.unwrap_or_default())?,
            description: check_description(fields.description.unwrap_or_default())?,
            permissions,
            stage: check_stage(fields.stage.unwrap_or_else(|| "ALPHA".into()))?,
            etag: etags.next(),
            lifecycle: Lifecycle::Live,
        };
        let out = role.to_json(true);
        self.roles.insert(name, role);
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Result<Value, ApiError> {
        self.visible(name)
            .map(|r| r.to_json(true))
            .ok_or_else(|| not_found(name))
    }

    pub fn list(&self, parent: &str, options: ListOptions) -> Result<Value, ApiError> {
        let page_size = match options.page_size {
            None | Some(0) => 300,
            Some(n) => n.min(1_000),
        };
        let after = match options.page_token.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::invalid(format!("Invalid page token: {t}")))?,
            ),
        };
        let mut matching = self
            .of_parent(parent)
            .filter(|r| options.show_deleted || r.lifecycle == Lifecycle::Live)
            .filter(|r| after.as_deref().is_none_or(|a| r.name.as_str() > a));
        let page: Vec<&CustomRole> = matching.by_ref().take(page_size).collect();
        let mut out = json!({});
        if !page.is_empty() {
            out["roles"] = page.iter().map(|r| r.to_json(options.full)).collect();
        }
        if let (Some(last), Some(_)) = (page.last(), matching.next()) {
            out["nextPageToken"] =
                json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&last.name));
        }
        Ok(out)
    }

    pub fn patch(
        &mut self,
        name: &str,
        mask: Option<&str>,
        fields: RoleFields,
        catalog: &Catalog,
        etags: &mut Etags,
    ) -> Result<Value, ApiError> {
        let role = self.visible_mut(name)?;
        check_etag(role, fields.etag.as_deref())?;
        if role.lifecycle != Lifecycle::Live {
            return Err(ApiError::failed_precondition(format!(
                "You can't update the deleted role {name}; undelete it first."
            )));
        }
        let masked: Vec<&str> = mask
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        let wants = |field: &str| masked.is_empty() || masked.contains(&field);
        for field in &masked {
            if !["title", "description", "includedPermissions", "stage"].contains(field) {
                return Err(ApiError::invalid(format!(
                    "Invalid update mask field: {field}. Updatable fields are title, description, includedPermissions and stage."
                )));
            }
        }
        let mut updated = role.clone();
        if wants("title") {
            match fields.title {
                Some(t) => updated.title = check_title(t)?,
                None if !masked.is_empty() => updated.title = String::new(),
                None => {}
            }
        }
        if wants("description") {
            match fields.description {
                Some(d) => updated.description = check_description(d)?,
                None if !masked.is_empty() => updated.description = String::new(),
                None => {}
            }
        }
        if wants("includedPermissions") {
            match fields.included_permissions {
                Some(p) => updated.permissions = check_permissions(p, &role.parent, catalog)?,
                None if !masked.is_empty() => updated.permissions = Vec::new(),
                None => {}
            }
        }
        if wants("stage") {
            match fields.stage {
                Some(s) => updated.stage = check_stage(s)?,
                None if !masked.is_empty() => updated.stage = "ALPHA".into(),
                None => {}
            }
        }
        updated.etag = etags.next();
        *role = updated;
        Ok(role.to_json(true))
    }

    pub fn delete(
        &mut self,
        name: &str,
        etag: Option<&str>,
        now: DateTime<Utc>,
        etags: &mut Etags,
    ) -> Result<Value, ApiError> {
        let role = self.visible_mut(name)?;
        check_etag(role, etag)?;
        if role.lifecycle != Lifecycle::Live {
            return Err(ApiError::failed_precondition(format!(
                "The role {name} is already deleted."
            )));
        }
        role.lifecycle = Lifecycle::Deleted { at: now };
        role.etag = etags.next();
        Ok(role.to_json(true))
    }

    pub fn undelete(
        &mut self,
        name: &str,
        etag: Option<&str>,
        etags: &mut Etags,
    ) -> Result<Value, ApiError> {
        let role = self.visible_mut(name)?;
        check_etag(role, etag)?;
        if role.lifecycle == Lifecycle::Live {
            return Err(ApiError::failed_precondition(format!(
                "The role {name} is not deleted."
            )));
        }
        role.lifecycle = Lifecycle::Live;
        role.etag = etags.next();
        Ok(role.to_json(true))
    }

    /// Purges roles deleted more than 7 days before `now` and forgets tombstones past the
    /// 37-day embargo; returns the names purged now (their bindings must go from every policy).
    pub fn purge_due(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let mut purged = Vec::new();
        for role in self.roles.values_mut() {
            if let Lifecycle::Deleted { at } = role.lifecycle {
                if now >= at + undelete_window() {
                    role.lifecycle = Lifecycle::Purged { deleted_at: at };
                    purged.push(role.name.clone());
                }
            }
        }
        self.roles.retain(|_, r| match r.lifecycle {
            Lifecycle::Purged { deleted_at } => now < deleted_at + id_embargo(),
            _ => true,
        });
        purged
    }

    fn visible_mut(&mut self, name: &str) -> Result<&mut CustomRole, ApiError> {
        self.roles
            .get_mut(name)
            .filter(|r| !matches!(r.lifecycle, Lifecycle::Purged { .. }))
            .ok_or_else(|| not_found(name))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The role named {name} was not found."))
}

fn check_etag(role: &CustomRole, etag: Option<&str>) -> Result<(), ApiError> {
    match etag.filter(|e| !e.is_empty()) {
        Some(e) if e != role.etag => Err(ApiError::aborted(format!(
            "The etag of role {} does not match: the role changed after it was read. Read it again and retry.",
            role.name
        ))),
        _ => Ok(()),
    }
}

fn check_title(title: String) -> Result<String, ApiError> {
    if title.len() > MAX_TITLE_BYTES {
        return Err(ApiError::invalid(format!(
            "The role title is {} bytes long; the maximum is {MAX_TITLE_BYTES} bytes.",
            title.len()
        )));
    }
    Ok(title)
}

fn check_description(description: String) -> Result<String, ApiError> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ApiError::invalid(format!(
            "The role description is {} bytes long; the maximum is {MAX_DESCRIPTION_BYTES} bytes.",
            description.len()
        )));
    }
    Ok(description)
}

fn check_stage(stage: String) -> Result<String, ApiError> {
    if STAGES.contains(&stage.as_str()) {
        Ok(stage)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid value for stage: {stage}. Valid stages are {}.",
            STAGES.join(", ")
        )))
    }
}

/// Whether a GCP permission may stand in a project-level custom role.
pub(crate) fn usable_in_project_roles(permission: &Permission) -> bool {
    permission.gcp_level != Some(GcpLevel::Organization)
        && !NOT_VALID_IN_PROJECT_ROLES.contains(&permission.name.as_str())
}

/// §1.3: every permission must exist, be usable in custom roles and, in a project role, not be
/// organization-level.
fn check_permissions(
    permissions: Vec<String>,
    parent: &str,
    catalog: &Catalog,
) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for p in permissions {
        if out.contains(&p) {
            continue;
        }
        if NOT_SUPPORTED_IN_CUSTOM_ROLES.contains(&p.as_str()) {
            return Err(ApiError::invalid(format!(
                "Permission {p} is not supported in custom roles."
            )));
        }
        let in_project = parent.starts_with("projects/");
        let valid = catalog
            .permission(Cloud::Gcp, &p)
            .is_some_and(|perm| !in_project || usable_in_project_roles(perm));
        if !valid {
            return Err(ApiError::invalid(format!("Permission {p} is not valid.")));
        }
        out.push(p);
    }
    if out.len() > MAX_PERMISSIONS {
        return Err(ApiError::invalid(format!(
            "The role has {} permissions; the maximum is {MAX_PERMISSIONS}.",
            out.len()
        )));
    }
    Ok(out)
}
