//! Role definitions: the built-in roles (from Brevet's catalog, or Azure's own JSON) and custom
//! roles with Azure's rules, plus the wildcard matching Azure applies to `actions`.

use std::collections::{BTreeMap, HashMap};

use brevet_catalog::{Catalog, Cloud, Plane};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{error::ArmError, scope::Scope, time};

/// One `permissions[]` entry of a role definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PermissionBlock {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

impl PermissionBlock {
    /// Azure's rule: an action is allowed by a block when it matches one of its `actions` and
    /// none of its `notActions` (data actions likewise, with the data lists). `notActions` only
    /// subtract within their own block: they are not a deny.
    pub fn allows(&self, action: &str, data: bool) -> bool {
        let (allow, except) = if data {
            (&self.data_actions, &self.not_data_actions)
        } else {
            (&self.actions, &self.not_actions)
        };
        allow.iter().any(|p| glob(p, action)) && !except.iter().any(|p| glob(p, action))
    }
}

/// Case-insensitive match where `*` stands for any run of characters (`/` included).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<u8> = pattern.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let t: Vec<u8> = text.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[derive(Debug, Clone)]
pub(crate) struct RoleDefinition {
    /// The GUID, as first written.
    pub name: String,
    pub role_name: String,
    pub description: String,
    pub custom: bool,
    pub permissions: Vec<PermissionBlock>,
    pub assignable_scopes: Vec<String>,
    /// Custom roles: the scope they were written at.
    pub scope: Scope,
    pub created_on: Option<DateTime<Utc>>,
    pub updated_on: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
}

/// ARM's id of role definition `guid` as seen from `scope`: below a subscription it is
/// subscription-relative, elsewhere tenant-relative.
pub(crate) fn definition_id(guid: &str, scope: &Scope) -> String {
    match scope.subscription() {
        Some(s) => {
            format!("/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
        }
        None => format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
    }
}

/// The GUID at the end of a role definition id (`…/providers/Microsoft.Authorization/roleDefinitions/G`).
pub(crate) fn guid_of_definition_id(id: &str) -> Option<&str> {
    let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., p, ns, kind, guid]
            if p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Authorization")
                && kind.eq_ignore_ascii_case("roleDefinitions")
                && is_guid(guid) =>
        {
            Some(guid)
        }
        _ => None,
    }
}

pub(crate) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl RoleDefinition {
    /// ARM's JSON, with the id as seen from `scope`.
    pub fn to_json(&self, scope: &Scope) -> Value {
        let id = if self.custom {
            definition_id(&self.name, &self.scope)
        } else {
            definition_id(&self.name, scope)
        };
        json!({
            "id": id,
            "name": self.name,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": self.role_name,
                "type": if self.custom { "CustomRole" } else { "BuiltInRole" },
                "description": self.description,
                "assignableScopes": self.assignable_scopes,
                "permissions": self.permissions,
                "createdOn": self.created_on.map(time::format),
                "updatedOn": self.updated_on.map(time::format),
                "createdBy": self.created_by,
                "updatedBy": self.updated_by,
            }
        })
    }
}

/// The `properties` of a role definition PUT.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleDefinitionProperties {
    pub role_name: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub role_type: Option<String>,
    #[serde(default)]
    pub permissions: Vec<PermissionBlock>,
    #[serde(default)]
    pub assignable_scopes: Vec<String>,
}

/// Azure's operations (from Brevet's catalog), lower-cased, by plane: what custom roles may
/// name and how an action is told to be a data action.
pub(crate) struct Operations {
    control: Vec<String>,
    data: Vec<String>,
    data_set: HashMap<String, ()>,
}

impl Operations {
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let mut control = Vec::new();
        let mut data = Vec::new();
        for p in catalog
            .permissions()
            .iter()
            .filter(|p| p.cloud == Cloud::Azure)
        {
            match p.plane {
                Plane::Data => data.push(p.name.to_ascii_lowercase()),
                _ => control.push(p.name.to_ascii_lowercase()),
            }
        }
        let data_set = data.iter().map(|d| (d.clone(), ())).collect();
        Self {
            control,
            data,
            data_set,
        }
    }

    /// Whether Azure knows `action` as a data action (else it is checked as a control action).
    pub fn is_data_action(&self, action: &str) -> bool {
        self.data_set.contains_key(&action.to_ascii_lowercase())
    }

    fn known(&self, pattern: &str, data: bool) -> bool {
        let list = if data { &self.data } else { &self.control };
        if !pattern.contains('*') {
            let lower = pattern.to_ascii_lowercase();
            return list.contains(&lower);
        }
        list.iter().any(|o| glob(pattern, o))
    }
}

/// The role definitions of the tenant.
pub(crate) struct Roles {
    /// lower GUID → role
    pub builtin: BTreeMap<String, RoleDefinition>,
    /// lower GUID → role
    pub custom: BTreeMap<String, RoleDefinition>,
    /// Custom roles per tenant (Azure: 5,000).
    pub custom_limit: usize,
}

pub(crate) const CUSTOM_ROLE_LIMIT: usize = 5_000;

/// `az role definition list` JSON (Azure's own shape, one permission block per entry).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRole {
    name: String,
    role_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    permissions: Vec<PermissionBlock>,
}

impl Roles {
    /// Built-in roles from Brevet's catalog. The catalog keeps each role's patterns in one list
    /// (`-` for notActions, `data:` for dataActions), so a role with several permission blocks
    /// becomes one block here, whose notActions subtract from all of it (stricter than Azure for
    /// the 16 of 928 roles that have several blocks).
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let builtin = catalog
            .roles()
            .iter()
            .filter(|r| r.cloud == Cloud::Azure && is_guid(&r.title))
            .map(|r| {
                let mut block = PermissionBlock::default();
                for p in &r.patterns {
                    if let Some(a) = p.strip_prefix("-data:") {
                        block.not_data_actions.push(a.to_owned());
                    } else if let Some(a) = p.strip_prefix("data:") {
                        block.data_actions.push(a.to_owned());
                    } else if let Some(a) = p.strip_prefix('-') {
                        block.not_actions.push(a.to_owned());
                    } else {
                        block.actions.push(p.clone());
                    }
                }
                builtin_role(&r.title, &r.name, &r.description, vec![block])
            })
            .map(|r| (r.name.to_ascii_lowercase(), r))
            .collect();
        Self {
            builtin,
            custom: BTreeMap::new(),
            custom_limit: CUSTOM_ROLE_LIMIT,
        }
    }

    /// Built-in roles from `az role definition list` JSON (keeps every permission block).
    pub fn from_az_json(text: &str) -> Result<Self, String> {
        let raw: Vec<RawRole> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let builtin = raw
            .into_iter()
            .filter(|r| is_guid(&r.name))
            .map(|r| {
                builtin_role(
                    &r.name,
                    &r.role_name,
                    r.description.as_deref().unwrap_or(""),
                    r.permissions,
                )
            })
            .map(|r| (r.name.to_ascii_lowercase(), r))
            .collect();
        Ok(Self {
            builtin,
            custom: BTreeMap::new(),
            custom_limit: CUSTOM_ROLE_LIMIT,
        })
    }

    pub fn get(&self, guid: &str) -> Option<&RoleDefinition> {
        let key = guid.to_ascii_lowercase();
        self.custom.get(&key).or_else(|| self.builtin.get(&key))
    }

    pub fn all(&self) -> impl Iterator<Item = &RoleDefinition> {
        self.builtin.values().chain(self.custom.values())
    }

    /// Checks a custom role as Azure does before writing it (`guid` may name an existing one:
    /// an update). Scopes in `assignableScopes` must parse; `resolve` checks they exist.
    pub fn validate(
        &self,
        guid: &str,
        props: &RoleDefinitionProperties,
        operations: &Operations,
        resolve: impl Fn(&Scope) -> Result<Scope, ArmError>,
    ) -> Result<(String, Vec<String>), ArmError> {
        if self.builtin.contains_key(&guid.to_ascii_lowercase()) {
            return Err(ArmError::bad_request(
                "RoleDefinitionUpdateNotPermitted",
                "Built-in role definitions cannot be created, updated or deleted.",
            ));
        }
        if let Some(t) = props.role_type.as_deref() {
            if !t.eq_ignore_ascii_case("CustomRole") {
                return Err(ArmError::bad_request(
                    "InvalidRoleDefinitionType",
                    format!("The role definition type '{t}' is not valid: only 'CustomRole' can be written."),
                ));
            }
        }
        let role_name = props.role_name.as_deref().map(str::trim).unwrap_or("");
        if role_name.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidRoleDefinitionName",
                "The role definition name cannot be empty.",
            ));
        }
        if role_name.chars().count() > 128 {
            return Err(ArmError::bad_request(
                "InvalidRoleDefinitionName",
                "The role definition name cannot be longer than 128 characters.",
            ));
        }
        if props.description.as_deref().unwrap_or("").chars().count() > 2_048 {
            return Err(ArmError::bad_request(
                "InvalidRoleDefinitionDescription",
                "The role definition description cannot be longer than 2048 characters.",
            ));
        }
        let taken = self.all().any(|r| {
            r.role_name.eq_ignore_ascii_case(role_name) && !r.name.eq_ignore_ascii_case(guid)
        });
        if taken {
            return Err(ArmError::conflict(
                "RoleDefinitionWithSameNameExists",
                "A role definition cannot be updated with a name that already exists.",
            ));
        }
        if props.assignable_scopes.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidAssignableScopes",
                "The role definition must have at least one assignable scope.",
            ));
        }
        if props.assignable_scopes.len() > 2_000 {
            return Err(ArmError::bad_request(
                "InvalidAssignableScopes",
                "A role definition cannot have more than 2000 assignable scopes.",
            ));
        }
        let mut scopes = Vec::new();
        for s in &props.assignable_scopes {
            let parsed = Scope::parse_str(s).filter(|p| *p != Scope::Root).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidAssignableScopes",
                    format!("The assignable scope '{s}' is not valid: name management groups, subscriptions, resource groups or resources (not '/')."),
                )
            })?;
            scopes.push(resolve(&parsed)?);
        }
        let management_groups = scopes
            .iter()
            .filter(|s| matches!(s, Scope::ManagementGroup(_)))
            .count();
        if management_groups > 1 {
            return Err(ArmError::bad_request(
                "InvalidAssignableScopes",
                "A role definition can have at most one management group as an assignable scope.",
            ));
        }
        let has_data = props
            .permissions
            .iter()
            .any(|p| !p.data_actions.is_empty() || !p.not_data_actions.is_empty());
        if management_groups > 0 && has_data {
            return Err(ArmError::bad_request(
                "InvalidAssignableScopes",
                "You cannot add data action permissions when you have a management group as an assignable scope",
            ));
        }
        for p in &props.permissions {
            for a in p.actions.iter().chain(&p.not_actions) {
                if !operations.known(a, false) {
                    return Err(ArmError::bad_request(
                        "InvalidActionOrNotAction",
                        format!(
                            "'{a}' does not match any of the actions supported by the providers."
                        ),
                    ));
                }
            }
            for a in p.data_actions.iter().chain(&p.not_data_actions) {
                if !operations.known(a, true) {
                    return Err(ArmError::bad_request(
                        "InvalidDataActionOrNotDataAction",
                        format!("'{a}' does not match any of the data actions supported by the providers."),
                    ));
                }
            }
        }
        let is_new = !self.custom.contains_key(&guid.to_ascii_lowercase());
        if is_new && self.custom.len() >= self.custom_limit {
            return Err(ArmError::bad_request(
                "RoleDefinitionLimitExceeded",
                format!("Role definition limit exceeded. No more role definitions can be created (the limit is {} per tenant).", self.custom_limit),
            ));
        }
        Ok((role_name.to_owned(), scopes.iter().map(Scope::id).collect()))
    }
}

fn builtin_role(
    guid: &str,
    name: &str,
    description: &str,
    permissions: Vec<PermissionBlock>,
) -> RoleDefinition {
    RoleDefinition {
        name: guid.to_owned(),
        role_name: name.to_owned(),
        description: description.to_owned(),
        custom: false,
        permissions,
        assignable_scopes: vec!["/".to_owned()],
        scope: Scope::Root,
        created_on: None,
        updated_on: None,
        created_by: None,
        updated_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_case_insensitively_across_segments() {
        assert!(glob("*", "Microsoft.Storage/storageAccounts/read"));
        assert!(glob(
            "Microsoft.Storage/*",
            "microsoft.storage/storageaccounts/read"
        ));
        assert!(glob("*/read", "Microsoft.Compute/virtualMachines/read"));
        assert!(glob(
            "Microsoft.Storage/*/read",
            "Microsoft.Storage/storageAccounts/blobServices/read"
        ));
        assert!(!glob(
            "Microsoft.Storage/*/read",
            "Microsoft.Storage/storageAccounts/write"
        ));
        assert!(!glob(
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Storage/storageAccounts/readx"
        ));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
    }

    #[test]
    fn not_actions_subtract_within_a_block() {
        let owner_like = PermissionBlock {
            actions: vec!["*".into()],
            not_actions: vec!["Microsoft.Authorization/*/write".into()],
            ..Default::default()
        };
        assert!(owner_like.allows("Microsoft.Compute/virtualMachines/write", false));
        assert!(!owner_like.allows("Microsoft.Authorization/roleAssignments/write", false));
        assert!(!owner_like.allows(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            true
        ));
    }

    #[test]
    fn azures_own_role_json_keeps_every_permission_block() {
        let roles = Roles::from_az_json(
            r#"[{"name": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "roleName": "Reader", "description": null,
                 "permissions": [{"actions": ["*/read"]}, {"actions": ["Microsoft.Support/*"], "notActions": []}]},
                {"name": "not-a-guid", "roleName": "skipped"}]"#,
        )
        .unwrap();
        let reader = roles.get("ACDD72A7-3385-48EF-BD42-F606FBA81AE7").unwrap();
        assert_eq!(
            (reader.role_name.as_str(), reader.permissions.len()),
            ("Reader", 2)
        );
        assert_eq!(roles.builtin.len(), 1);
        assert!(Roles::from_az_json("{").is_err());
    }

    #[test]
    fn the_catalog_gives_builtin_roles_with_their_patterns() {
        let catalog = Catalog::embedded().unwrap();
        let roles = Roles::from_catalog(&catalog);
        let contributor = roles.get("b24988ac-6180-42a0-ab88-20f7382dd24c").unwrap();
        assert_eq!(contributor.role_name, "Contributor");
        let block = &contributor.permissions[0];
        assert!(block.actions.iter().any(|a| a == "*"));
        assert!(block
            .not_actions
            .iter()
            .any(|a| a.eq_ignore_ascii_case("Microsoft.Authorization/*/Write")));
        let blob_reader = roles.get("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1").unwrap();
        assert!(!blob_reader.permissions[0].data_actions.is_empty());
        assert!(roles.builtin.len() > 900, "{}", roles.builtin.len());
    }

    #[test]
    fn guids_and_definition_ids() {
        assert!(is_guid("acdd72a7-3385-48ef-bd42-f606fba81ae7"));
        assert!(!is_guid("acdd72a7-3385-48ef-bd42-f606fba81ae"));
        assert_eq!(
            guid_of_definition_id("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
            Some("acdd72a7-3385-48ef-bd42-f606fba81ae7")
        );
        assert_eq!(
            guid_of_definition_id("/providers/microsoft.authorization/roledefinitions/x"),
            None
        );
    }
}
