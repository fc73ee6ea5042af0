//! The state of the emulated tenant: hierarchy, directory, role definitions, role assignments,
//! PIM schedules, the clock and the knobs tests turn — and Azure's access rule over them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::ArmError,
    pim::Pim,
    roles::{definition_id, guid_of_definition_id, is_guid, Operations, PermissionBlock, Roles},
    scope::{Hierarchy, Scope},
    time, Recorded, TENANT_ID,
};

/// Role assignments per subscription (its resource groups and resources included).
pub(crate) const SUBSCRIPTION_ASSIGNMENT_LIMIT: usize = 4_000;
/// Role assignments per management group (at the group itself).
pub(crate) const MANAGEMENT_GROUP_ASSIGNMENT_LIMIT: usize = 500;
pub(crate) const PAGE_SIZE: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    pub name: String,
    pub scope: Scope,
    /// Lower-case GUID of the role definition.
    pub role: String,
    pub principal_id: String,
    pub principal_type: String,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
}

impl Assignment {
    pub fn id(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.scope.prefix(),
            self.name
        )
    }

    pub fn role_definition_id(&self) -> String {
        definition_id(&self.role, &self.scope)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id(),
            "name": self.name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "scope": self.scope.id(),
                "roleDefinitionId": self.role_definition_id(),
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "description": self.description,
                "condition": self.condition,
                "conditionVersion": self.condition_version,
                "createdOn": time::format(self.created_on),
                "updatedOn": time::format(self.updated_on),
                "createdBy": self.created_by,
                "updatedBy": self.updated_by,
                "delegatedManagedIdentityResourceId": null,
            }
        })
    }
}

/// The `properties` of a role assignment PUT.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AssignmentProperties {
    pub role_definition_id: Option<String>,
    pub principal_id: Option<String>,
    pub principal_type: Option<String>,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    /// Read-only in the spec; if given it must match the URL's scope.
    pub scope: Option<String>,
}

pub(crate) const PRINCIPAL_TYPES: [&str; 5] = [
    "User",
    "Group",
    "ServicePrincipal",
    "ForeignGroup",
    "Device",
];

/// An app registration: what the token endpoint accepts.
pub(crate) struct App {
    pub secret: String,
    pub object_id: String,
}

pub(crate) struct Limits {
    pub subscription_assignments: usize,
    pub management_group_assignments: usize,
    pub page_size: usize,
}

pub(crate) struct Tenant {
    pub now: DateTime<Utc>,
    pub hierarchy: Hierarchy,
    /// lower object id → (object id, principal type)
    pub principals: HashMap<String, (String, String)>,
    pub apps: HashMap<String, App>,
    /// lower object id → PUTs still to refuse
    pub replication_delay: HashMap<String, u32>,
    pub roles: Roles,
    pub operations: Operations,
    /// lower name → assignment (names are GUIDs, unique in the tenant)
    pub assignments: BTreeMap<String, Assignment>,
    pub pim: Pim,
    pub limits: Limits,
    pub throttle: u32,
    pub enforce_callers: bool,
    pub requests: Vec<Recorded>,
}

/// A fresh random GUID (version 4).
pub(crate) fn new_guid() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// How a list narrows its results (`$filter`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// `atScope()`: at or above the scope only (else also below).
    pub at_scope: bool,
    /// `principalId eq '…'` / `assignedTo('…')`.
    pub principal: Option<String>,
}

impl Filter {
    /// ARM's filter grammar for these lists: clauses joined by `and`.
    pub fn parse(filter: Option<&str>) -> Result<Filter, ArmError> {
        let mut out = Filter::default();
        let Some(text) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
            return Ok(out);
        };
        let unsupported = || {
            ArmError::bad_request(
                "UnsupportedQuery",
                format!("The filter '{text}' is not supported."),
            )
        };
        let lower = text.to_ascii_lowercase();
        let mut rest = lower.as_str();
        let mut original = text;
        loop {
            let (clause, clause_original, next) = match rest.find(" and ") {
                Some(i) => (&rest[..i], &original[..i], Some(i + 5)),
                None => (rest, original, None),
            };
            let clause = clause.trim();
            let clause_original = clause_original.trim();
            if clause == "atscope()" {
                out.at_scope = true;
            } else if let Some(v) = clause.strip_prefix("principalid eq ") {
                let v = clause_original[clause.len() - v.len()..].trim();
                out.principal = Some(v.trim_matches('\'').to_owned());
            } else if clause.starts_with("assignedto(") && clause.ends_with(')') {
                let v = &clause_original["assignedto(".len()..clause_original.len() - 1];
                out.principal = Some(v.trim().trim_matches('\'').to_owned());
            } else {
                return Err(unsupported());
            }
            match next {
                Some(i) => {
                    rest = &rest[i..];
                    original = &original[i..];
                }
                None => break,
            }
        }
        Ok(out)
    }
}

impl Tenant {
    pub fn new(roles: Roles, operations: Operations) -> Self {
        Self {
            now: Utc::now(),
            hierarchy: Hierarchy::default(),
            principals: HashMap::new(),
            apps: HashMap::new(),
            replication_delay: HashMap::new(),
            roles,
            operations,
            assignments: BTreeMap::new(),
            pim: Pim::default(),
            limits: Limits {
                subscription_assignments: SUBSCRIPTION_ASSIGNMENT_LIMIT,
                management_group_assignments: MANAGEMENT_GROUP_ASSIGNMENT_LIMIT,
                page_size: PAGE_SIZE,
            },
            throttle: 0,
            enforce_callers: false,
            requests: Vec::new(),
        }
    }

    /// A scope string, parsed and checked to exist.
    pub fn scope(&self, s: &str) -> Result<Scope, ArmError> {
        let parsed = Scope::parse_str(s).ok_or_else(|| {
            ArmError::bad_request(
                "InvalidScope",
                format!("The scope '{s}' is not a valid ARM scope."),
            )
        })?;
        self.hierarchy.resolve(&parsed)
    }

    pub fn add_principal(&mut self, object_id: &str, principal_type: &str) -> Result<(), String> {
        let Some(t) = PRINCIPAL_TYPES
            .iter()
            .find(|t| t.eq_ignore_ascii_case(principal_type))
        else {
            return Err(format!(
                "principal type must be one of {PRINCIPAL_TYPES:?}, not {principal_type:?}"
            ));
        };
        if object_id.is_empty() {
            return Err("an object id cannot be empty".to_owned());
        }
        self.principals.insert(
            object_id.to_ascii_lowercase(),
            (object_id.to_owned(), (*t).to_owned()),
        );
        Ok(())
    }

    /// Removes PIM assignments whose end has passed and starts those whose start has come, as
    /// PIM does on its own.
    pub fn settle(&mut self) {
        let now = self.now;
        let mut pim = std::mem::take(&mut self.pim);
        pim.settle(self, now);
        self.pim = pim;
    }

    fn assignments_in_subscription(&self, subscription: &str) -> usize {
        self.assignments
            .values()
            .filter(|a| {
                a.scope
                    .subscription()
                    .is_some_and(|s| s.eq_ignore_ascii_case(subscription))
            })
            .count()
    }

    /// RoleAssignmentLimitExceeded before adding one at `scope`.
    pub fn check_assignment_limit(&self, scope: &Scope) -> Result<(), ArmError> {
        let exceeded = match scope {
            Scope::ManagementGroup(_) => {
                let key = scope.key();
                self.assignments
                    .values()
                    .filter(|a| a.scope.key() == key)
                    .count()
                    >= self.limits.management_group_assignments
            }
            _ => scope.subscription().is_some_and(|s| {
                self.assignments_in_subscription(s) >= self.limits.subscription_assignments
            }),
        };
        if exceeded {
            return Err(ArmError::bad_request(
                "RoleAssignmentLimitExceeded",
                "No more role assignments can be created.",
            ));
        }
        Ok(())
    }

    /// The role a `roleDefinitionId` names, checked to exist and to be assignable at `scope`.
    pub fn assignable_role(
        &self,
        role_definition_id: &str,
        scope: &Scope,
    ) -> Result<String, ArmError> {
        let invalid = || {
            ArmError::bad_request(
                "InvalidRoleDefinitionId",
                format!("The role definition ID '{role_definition_id}' is not valid."),
            )
        };
        let guid = guid_of_definition_id(role_definition_id)
            .or_else(|| is_guid(role_definition_id).then_some(role_definition_id))
            .ok_or_else(invalid)?;
        let role = self.roles.get(guid).ok_or_else(invalid)?;
        if role.custom {
            let covered = role.assignable_scopes.iter().any(|s| {
                Scope::parse_str(s).is_some_and(|outer| self.hierarchy.is_within(scope, &outer))
            });
            if !covered {
                return Err(ArmError::bad_request(
                    "InvalidCreateRoleAssignmentRequest",
                    format!(
                        "The role definition '{}' is not available for assignment at scope '{}': its assignableScopes do not include it.",
                        role.name,
                        scope.id()
                    ),
                ));
            }
        }
        Ok(role.name.to_ascii_lowercase())
    }

    /// The principal type to record; PrincipalNotFound as Azure answers while the directory has
    /// not (yet) got the principal.
    pub fn check_principal(
        &mut self,
        principal_id: &str,
        given_type: Option<&str>,
    ) -> Result<String, ArmError> {
        let key = principal_id.to_ascii_lowercase();
        let not_found = || {
            ArmError::bad_request(
                "PrincipalNotFound",
                format!(
                    "Principal {} does not exist in the directory {TENANT_ID}. Check that you have the correct principal ID. \
                     If you are creating this principal and then immediately assigning a role, this error might be related \
                     to a replication delay. In this case, set the role assignment principalType property to a value, such \
                     as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                    principal_id.replace('-', "")
                ),
            )
        };
        if let Some(n) = self.replication_delay.get_mut(&key) {
            if *n > 0 {
                *n -= 1;
                return Err(not_found());
            }
        }
        let given = match given_type {
            None => None,
            Some(t) => Some(
                PRINCIPAL_TYPES
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(t))
                    .map(|p| (*p).to_owned())
                    .ok_or_else(|| {
                        ArmError::bad_request(
                            "InvalidPrincipalType",
                            format!(
                                "The principal type '{t}' is not valid. Valid values are {}.",
                                PRINCIPAL_TYPES.join(", ")
                            ),
                        )
                    })?,
            ),
        };
        match (self.principals.get(&key), given) {
            (Some((_, known)), Some(g)) if !known.eq_ignore_ascii_case(&g) => Err(ArmError::bad_request(
                "UnmatchedPrincipalType",
                format!("The PrincipalId '{principal_id}' has type '{known}' , which is different from specified PrincipalType '{g}'."),
            )),
            (Some((_, known)), _) => Ok(known.clone()),
            (None, Some(g)) => Ok(g),
            (None, None) => Err(not_found()),
        }
    }

    pub fn put_assignment(
        &mut self,
        scope: &Scope,
        name: &str,
        props: AssignmentProperties,
        caller: Option<&str>,
    ) -> Result<(u16, Value), ArmError> {
        if !is_guid(name) {
            return Err(ArmError::bad_request(
                "InvalidRoleAssignmentId",
                format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
            ));
        }
        if let Some(s) = props.scope.as_deref() {
            let same = Scope::parse_str(s).is_some_and(|p| p.key() == scope.key());
            if !same {
                return Err(ArmError::bad_request(
                    "InvalidCreateRoleAssignmentRequest",
                    format!(
                        "The request to create role assignment '{name}' is not valid. Role assignment scope '{s}' must match the scope specified on the URI '{}'.",
                        scope.id()
                    ),
                ));
            }
        }
        let principal_id = props
            .principal_id
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ArmError::invalid_body("properties.principalId is required"))?
            .to_owned();
        let role_definition_id = props
            .role_definition_id
            .as_deref()
            .ok_or_else(|| ArmError::invalid_body("properties.roleDefinitionId is required"))?;
        let role = self.assignable_role(role_definition_id, scope)?;
        let key = name.to_ascii_lowercase();
        if let Some(existing) = self.assignments.get(&key) {
            let same = existing.scope.key() == scope.key()
                && existing.role == role
                && existing.principal_id.eq_ignore_ascii_case(&principal_id);
            if !same {
                return Err(ArmError::bad_request(
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
        } else if self.assignments.values().any(|a| {
            a.scope.key() == scope.key()
                && a.role == role
                && a.principal_id.eq_ignore_ascii_case(&principal_id)
        }) {
            return Err(ArmError::conflict(
                "RoleAssignmentExists",
                "The role assignment already exists.",
            ));
        }
        let principal_type =
            self.check_principal(&principal_id, props.principal_type.as_deref())?;
        let now = self.now;
        if let Some(existing) = self.assignments.get_mut(&key) {
            existing.description = props.description;
            existing.condition = props.condition;
            existing.condition_version = props.condition_version;
            existing.updated_on = now;
            existing.updated_by = caller.map(str::to_owned);
            return Ok((200, existing.to_json()));
        }
        self.check_assignment_limit(scope)?;
        let a = Assignment {
            name: name.to_owned(),
            scope: scope.clone(),
            role,
            principal_id,
            principal_type,
            description: props.description,
            condition: props.condition,
            condition_version: props.condition_version,
            created_on: now,
            updated_on: now,
            created_by: caller.map(str::to_owned),
            updated_by: caller.map(str::to_owned),
        };
        let body = a.to_json();
        self.assignments.insert(key, a);
        Ok((201, body))
    }

    pub fn assignment_at(&self, scope: &Scope, name: &str) -> Option<&Assignment> {
        self.assignments
            .get(&name.to_ascii_lowercase())
            .filter(|a| a.scope.key() == scope.key())
    }

    /// Assignments visible from `scope`: at or above it, and below it unless `atScope()`.
    pub fn list_assignments(&self, scope: &Scope, filter: &Filter) -> Vec<&Assignment> {
        let above: Vec<String> = self
            .hierarchy
            .ancestors(scope)
            .iter()
            .map(Scope::key)
            .collect();
        self.assignments
            .values()
            .filter(|a| {
                above.contains(&a.scope.key())
                    || (!filter.at_scope && self.hierarchy.is_within(&a.scope, scope))
            })
            .filter(|a| {
                filter
                    .principal
                    .as_ref()
                    .is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p))
            })
            .collect()
    }

    /// The permission blocks of every role `principal` holds at `scope` (assigned there or above).
    pub fn permissions_of(&self, principal: &str, scope: &Scope) -> Vec<PermissionBlock> {
        let filter = Filter {
            at_scope: true,
            principal: Some(principal.to_owned()),
        };
        self.list_assignments(scope, &filter)
            .into_iter()
            .filter(|a| a.condition.is_none())
            .filter_map(|a| self.roles.get(&a.role))
            .flat_map(|r| r.permissions.iter().cloned())
            .collect()
    }

    /// Azure's access check: some block of some role assigned to the principal at the scope or
    /// above allows the action. Assignments with an ABAC condition are not evaluated and grant
    /// nothing here.
    pub fn check_access(&self, principal: &str, action: &str, scope: &Scope) -> bool {
        let data = self.operations.is_data_action(action);
        self.permissions_of(principal, scope)
            .iter()
            .any(|b| b.allows(action, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(Filter::parse(None).unwrap(), Filter::default());
        assert_eq!(
            Filter::parse(Some("atScope()")).unwrap(),
            Filter {
                at_scope: true,
                principal: None
            }
        );
        assert_eq!(
            Filter::parse(Some("principalId eq 'AbC'")).unwrap(),
            Filter {
                at_scope: false,
                principal: Some("AbC".into())
            }
        );
        assert_eq!(
            Filter::parse(Some("atScope() and assignedTo('AbC')")).unwrap(),
            Filter {
                at_scope: true,
                principal: Some("AbC".into())
            }
        );
        assert_eq!(
            Filter::parse(Some("roleName eq 'x'")).unwrap_err().code,
            "UnsupportedQuery"
        );
        assert_eq!(
            Filter::parse(Some("assignedTo(")).unwrap_err().code,
            "UnsupportedQuery"
        );
    }

    #[test]
    fn guids_are_version_4() {
        let g = new_guid();
        assert!(is_guid(&g), "{g}");
        assert_eq!(&g[14..15], "4");
    }
}
