//! PIM for Azure resources, api-version 2020-10-01: roleAssignmentScheduleRequests (the Admin*
//! request types), the roleAssignmentSchedules they create, and their instances. An AdminAssign
//! with an expiration creates an active role assignment that PIM itself removes at endDateTime:
//! [`Pim::settle`] does that at the stand-in's clock.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::ArmError,
    roles::definition_id,
    scope::Scope,
    tenant::{new_guid, Assignment, Filter, Tenant},
    time, MS_PIM_OBJECT_ID,
};

const REQUEST_TYPES: [&str; 9] = [
    "AdminAssign",
    "AdminRemove",
    "AdminUpdate",
    "AdminExtend",
    "AdminRenew",
    "SelfActivate",
    "SelfDeactivate",
    "SelfExtend",
    "SelfRenew",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Expiration {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub end_date_time: Option<String>,
    pub duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScheduleInfo {
    pub start_date_time: Option<String>,
    pub expiration: Option<Expiration>,
}

/// The `properties` of a roleAssignmentScheduleRequests PUT.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestProperties {
    pub principal_id: Option<String>,
    pub role_definition_id: Option<String>,
    pub request_type: Option<String>,
    pub schedule_info: Option<Value>,
    pub justification: Option<String>,
    pub ticket_info: Option<Value>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ScheduleRequest {
    pub name: String,
    pub scope: Scope,
    pub principal_id: String,
    pub principal_type: String,
    pub role: String,
    pub request_type: String,
    pub status: String,
    pub schedule_info: Value,
    pub justification: Option<String>,
    pub ticket_info: Value,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    pub created_on: DateTime<Utc>,
    pub requestor_id: Option<String>,
    /// lower schedule name
    pub schedule: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub name: String,
    pub instance_name: String,
    pub scope: Scope,
    pub principal_id: String,
    pub principal_type: String,
    pub role: String,
    pub request_name: String,
    /// lower role assignment name, while active
    pub assignment: Option<String>,
    /// False while the request is PendingProvisioning.
    pub provisioned: bool,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

#[derive(Default)]
pub(crate) struct Pim {
    /// lower name → request
    pub requests: BTreeMap<String, ScheduleRequest>,
    /// lower name → schedule
    pub schedules: BTreeMap<String, Schedule>,
    /// scope key → the longest AdminAssign expiration allowed (ExpirationRule `Expiration_Admin_Assignment`)
    pub max_duration: HashMap<String, Duration>,
    /// Answer a successful AdminAssign `PendingProvisioning` and provision it at the next GET.
    pub pending_first: bool,
}

fn invalid(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("InvalidRoleAssignmentScheduleRequest", message)
}

fn policy_failed() -> ArmError {
    ArmError::bad_request(
        "RoleAssignmentRequestPolicyValidationFailed",
        "The following policy rules failed: [\"ExpirationRule\"]",
    )
}

fn does_not_exist() -> ArmError {
    ArmError::bad_request(
        "RoleAssignmentDoesNotExist",
        "The Role assignment does not exist.",
    )
}

fn same_target(scope: &Scope, role: &str, principal: &str) -> impl Fn(&Scope, &str, &str) -> bool {
    let (scope, role, principal) = (scope.key(), role.to_owned(), principal.to_ascii_lowercase());
    move |s: &Scope, r: &str, p: &str| {
        s.key() == scope && r == role && p.eq_ignore_ascii_case(&principal)
    }
}

fn expanded(
    tenant: &Tenant,
    scope: &Scope,
    role: &str,
    principal_id: &str,
    principal_type: &str,
) -> Value {
    let r = tenant.roles.get(role);
    json!({
        "scope": {"id": scope.id(), "displayName": scope.display_name(), "type": scope.kind()},
        "roleDefinition": {
            "id": definition_id(r.map_or(role, |r| r.name.as_str()), scope),
            "displayName": r.map(|r| r.role_name.clone()),
            "type": r.map(|r| if r.custom { "CustomRole" } else { "BuiltInRole" }),
        },
        "principal": {"id": principal_id, "displayName": principal_id, "email": null, "type": principal_type},
    })
}

impl ScheduleRequest {
    pub fn to_json(&self, tenant: &Tenant) -> Value {
        let schedule = self.schedule.as_ref().map(|s| {
            let name = tenant
                .pim
                .schedules
                .get(s)
                .map_or(s.clone(), |x| x.name.clone());
            format!(
                "{}/providers/Microsoft.Authorization/roleAssignmentSchedules/{name}",
                self.scope.prefix()
            )
        });
        let instance = self
            .schedule
            .as_ref()
            .and_then(|s| tenant.pim.schedules.get(s))
            .map(|s| {
                format!(
                    "{}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances/{}",
                    self.scope.prefix(),
                    s.instance_name
                )
            });
        json!({
            "id": format!("{}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{}", self.scope.prefix(), self.name),
            "name": self.name,
            "type": "Microsoft.Authorization/RoleAssignmentScheduleRequests",
            "properties": {
                "scope": self.scope.id(),
                "roleDefinitionId": definition_id(&self.role, &self.scope),
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "requestType": self.request_type,
                "status": self.status,
                "approvalId": null,
                "targetRoleAssignmentScheduleId": schedule,
                "targetRoleAssignmentScheduleInstanceId": instance,
                "scheduleInfo": self.schedule_info,
                "linkedRoleEligibilityScheduleId": null,
                "justification": self.justification,
                "ticketInfo": self.ticket_info,
                "condition": self.condition,
                "conditionVersion": self.condition_version,
                "createdOn": time::format(self.created_on),
                "requestorId": self.requestor_id,
                "expandedProperties": expanded(tenant, &self.scope, &self.role, &self.principal_id, &self.principal_type),
            }
        })
    }
}

/// A schedule as listed: a PIM one, or a standing role assignment (PIM lists those too, as
/// permanent `Assigned` schedules named like the assignment).
struct ScheduleView<'a> {
    name: String,
    instance_name: String,
    scope: &'a Scope,
    principal_id: &'a str,
    principal_type: &'a str,
    role: &'a str,
    request_id: Option<String>,
    assignment_id: Option<String>,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
    active: bool,
}

impl ScheduleView<'_> {
    fn common(&self, tenant: &Tenant) -> Value {
        json!({
            "scope": self.scope.id(),
            "roleDefinitionId": definition_id(self.role, self.scope),
            "principalId": self.principal_id,
            "principalType": self.principal_type,
            "linkedRoleEligibilityScheduleId": null,
            "assignmentType": "Assigned",
            "memberType": "Direct",
            "status": "Provisioned",
            "startDateTime": time::format(self.start),
            "endDateTime": self.end.map(time::format),
            "condition": null,
            "conditionVersion": null,
            "createdOn": time::format(self.created_on),
            "expandedProperties": expanded(tenant, self.scope, self.role, self.principal_id, self.principal_type),
        })
    }

    fn schedule_json(&self, tenant: &Tenant) -> Value {
        let mut p = self.common(tenant);
        p["roleAssignmentScheduleRequestId"] = json!(self.request_id);
        p["updatedOn"] = json!(time::format(self.updated_on));
        json!({
            "id": format!("{}/providers/Microsoft.Authorization/roleAssignmentSchedules/{}", self.scope.prefix(), self.name),
            "name": self.name,
            "type": "Microsoft.Authorization/roleAssignmentSchedules",
            "properties": p,
        })
    }

    fn instance_json(&self, tenant: &Tenant) -> Value {
        let mut p = self.common(tenant);
        p["roleAssignmentScheduleId"] = json!(format!(
            "{}/providers/Microsoft.Authorization/roleAssignmentSchedules/{}",
            self.scope.prefix(),
            self.name
        ));
        p["originRoleAssignmentId"] = json!(self.assignment_id);
        p["linkedRoleEligibilityScheduleInstanceId"] = Value::Null;
        json!({
            "id": format!("{}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances/{}", self.scope.prefix(), self.instance_name),
            "name": self.instance_name,
            "type": "Microsoft.Authorization/roleAssignmentScheduleInstances",
            "properties": p,
        })
    }
}

fn views(tenant: &Tenant) -> Vec<ScheduleView<'_>> {
    let mut out = Vec::new();
    let mut managed = std::collections::HashSet::new();
    for s in tenant.pim.schedules.values().filter(|s| s.provisioned) {
        let assignment = s
            .assignment
            .as_ref()
            .and_then(|a| tenant.assignments.get(a));
        if let Some(a) = &s.assignment {
            managed.insert(a.clone());
        }
        out.push(ScheduleView {
            name: s.name.clone(),
            instance_name: s.instance_name.clone(),
            scope: &s.scope,
            principal_id: &s.principal_id,
            principal_type: &s.principal_type,
            role: &s.role,
            request_id: Some(format!(
                "{}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{}",
                s.scope.prefix(),
                s.request_name
            )),
            assignment_id: assignment.map(Assignment::id),
            start: s.start,
            end: s.end,
            created_on: s.created_on,
            updated_on: s.updated_on,
            active: assignment.is_some(),
        });
    }
    for (key, a) in &tenant.assignments {
        if managed.contains(key) {
            continue;
        }
        out.push(ScheduleView {
            name: a.name.clone(),
            instance_name: a.name.clone(),
            scope: &a.scope,
            principal_id: &a.principal_id,
            principal_type: &a.principal_type,
            role: &a.role,
            request_id: None,
            assignment_id: Some(a.id()),
            start: a.created_on,
            end: None,
            created_on: a.created_on,
            updated_on: a.updated_on,
            active: true,
        });
    }
    out
}

fn visible(
    tenant: &Tenant,
    scope: &Scope,
    filter: &Filter,
    target: &Scope,
    principal: &str,
) -> bool {
    let above = tenant.hierarchy.is_within(scope, target);
    let below = !filter.at_scope && tenant.hierarchy.is_within(target, scope);
    (above || below)
        && filter
            .principal
            .as_ref()
            .is_none_or(|p| p.eq_ignore_ascii_case(principal))
}

impl Pim {
    /// Starts schedules whose start has come and ends those whose end has passed.
    pub fn settle(&mut self, tenant: &mut Tenant, now: DateTime<Utc>) {
        let mut ended = Vec::new();
        for (key, s) in self.schedules.iter_mut() {
            if !s.provisioned {
                continue;
            }
            if let Some(a) = &s.assignment {
                if !tenant.assignments.contains_key(a) {
                    // Removed through the roleAssignments API: the schedule ends with it.
                    ended.push(key.clone());
                    continue;
                }
            }
            if s.end.is_some_and(|e| e <= now) {
                if let Some(a) = s.assignment.take() {
                    tenant.assignments.remove(&a);
                }
                ended.push(key.clone());
                continue;
            }
            if s.assignment.is_none() && s.start <= now {
                let taken = tenant.assignments.values().any(|a| {
                    same_target(&s.scope, &s.role, &s.principal_id)(
                        &a.scope,
                        &a.role,
                        &a.principal_id,
                    )
                });
                if taken {
                    continue;
                }
                let name = new_guid();
                tenant.assignments.insert(
                    name.clone(),
                    Assignment {
                        name: name.clone(),
                        scope: s.scope.clone(),
                        role: s.role.clone(),
                        principal_id: s.principal_id.clone(),
                        principal_type: s.principal_type.clone(),
                        description: None,
                        condition: None,
                        condition_version: None,
                        created_on: now,
                        updated_on: now,
                        created_by: Some(MS_PIM_OBJECT_ID.to_owned()),
                        updated_by: Some(MS_PIM_OBJECT_ID.to_owned()),
                    },
                );
                s.assignment = Some(name);
            }
        }
        for k in ended {
            self.schedules.remove(&k);
        }
    }

    /// (start, end) from a request's `scheduleInfo`.
    fn window(
        info: &Value,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), ArmError> {
        let info: ScheduleInfo = if info.is_null() {
            ScheduleInfo::default()
        } else {
            serde_json::from_value(info.clone())
                .map_err(|e| invalid(format!("The scheduleInfo is not valid: {e}")))?
        };
        let start = match info.start_date_time.as_deref() {
            None => now,
            Some(s) => time::parse(s)
                .ok_or_else(|| invalid(format!("The startDateTime '{s}' is not a valid time.")))?,
        };
        let expiration = info.expiration.unwrap_or_default();
        let kind = expiration.kind.as_deref().unwrap_or("NoExpiration");
        let end = if kind.eq_ignore_ascii_case("NoExpiration") {
            None
        } else if kind.eq_ignore_ascii_case("AfterDuration") {
            let d = expiration.duration.as_deref().unwrap_or("");
            let d = time::parse_duration(d)
                .filter(|d| *d > Duration::zero())
                .ok_or_else(|| {
                    invalid(format!(
                        "The expiration duration '{d}' is not a valid ISO 8601 duration."
                    ))
                })?;
            Some(
                start
                    .checked_add_signed(d)
                    .ok_or_else(|| invalid("The expiration lies too far ahead."))?,
            )
        } else if kind.eq_ignore_ascii_case("AfterDateTime") {
            let e = expiration.end_date_time.as_deref().unwrap_or("");
            let end = time::parse(e)
                .ok_or_else(|| invalid(format!("The endDateTime '{e}' is not a valid time.")))?;
            if end <= start {
                return Err(invalid(
                    "The endDateTime must be later than the startDateTime.",
                ));
            }
            Some(end)
        } else {
            return Err(invalid(format!(
                "The expiration type '{kind}' is not valid: AfterDuration, AfterDateTime or NoExpiration."
            )));
        };
        Ok((start, end))
    }

    fn check_policy(
        &self,
        tenant: &Tenant,
        scope: &Scope,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<(), ArmError> {
        let max = tenant
            .hierarchy
            .ancestors(scope)
            .iter()
            .find_map(|s| self.max_duration.get(&s.key()).copied());
        match (max, end) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(policy_failed()),
            (Some(max), Some(end)) if end - start > max => Err(policy_failed()),
            _ => Ok(()),
        }
    }

    /// PUT roleAssignmentScheduleRequests/{name}.
    pub fn create(
        tenant: &mut Tenant,
        scope: &Scope,
        name: &str,
        props: RequestProperties,
        caller: Option<&str>,
    ) -> Result<Value, ArmError> {
        if !super::roles::is_guid(name) {
            return Err(invalid(format!(
                "The role assignment schedule request name '{name}' is not a GUID."
            )));
        }
        let key = name.to_ascii_lowercase();
        if tenant.pim.requests.contains_key(&key) {
            return Err(ArmError::bad_request(
                "RoleAssignmentRequestExists",
                format!("A role assignment request with Id: {name} already exists"),
            ));
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
        let request_type = props
            .request_type
            .as_deref()
            .and_then(|t| REQUEST_TYPES.iter().find(|r| r.eq_ignore_ascii_case(t)))
            .ok_or_else(|| {
                ArmError::invalid_body(format!(
                    "properties.requestType must be one of {}",
                    REQUEST_TYPES.join(", ")
                ))
            })?
            .to_string();
        let role = tenant.assignable_role(role_definition_id, scope)?;
        let principal_type = tenant
            .principals
            .get(&principal_id.to_ascii_lowercase())
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                ArmError::bad_request(
                    "PrincipalNotFound",
                    format!(
                        "Principal {} does not exist in the directory {}.",
                        principal_id.replace('-', ""),
                        super::TENANT_ID
                    ),
                )
            })?;
        let now = tenant.now;
        let schedule_info = props.schedule_info.clone().unwrap_or(Value::Null);
        let matches = same_target(scope, &role, &principal_id);
        let existing = tenant
            .pim
            .schedules
            .iter()
            .find(|(_, s)| matches(&s.scope, &s.role, &s.principal_id))
            .map(|(k, _)| k.clone());
        let mut request = ScheduleRequest {
            name: name.to_owned(),
            scope: scope.clone(),
            principal_id: principal_id.clone(),
            principal_type: principal_type.clone(),
            role: role.clone(),
            request_type: request_type.clone(),
            status: "Provisioned".to_owned(),
            schedule_info: schedule_info.clone(),
            justification: props.justification,
            ticket_info: props.ticket_info.unwrap_or(json!({})),
            condition: props.condition,
            condition_version: props.condition_version,
            created_on: now,
            requestor_id: caller.map(str::to_owned),
            schedule: None,
        };
        match request_type.as_str() {
            "AdminAssign" => {
                let standing = tenant
                    .assignments
                    .values()
                    .any(|a| matches(&a.scope, &a.role, &a.principal_id));
                if existing.is_some() || standing {
                    return Err(ArmError::bad_request("RoleAssignmentExists", "The Role assignment already exists."));
                }
                let (start, end) = Self::window(&schedule_info, now)?;
                if end.is_some_and(|e| e <= now) {
                    return Err(invalid("The expiration lies in the past."));
                }
                tenant.pim.check_policy(tenant, scope, start, end)?;
                if start <= now {
                    tenant.check_assignment_limit(scope)?;
                }
                let pending = tenant.pim.pending_first;
                let schedule = Schedule {
                    name: new_guid(),
                    instance_name: new_guid(),
                    scope: scope.clone(),
                    principal_id,
                    principal_type,
                    role,
                    request_name: name.to_owned(),
                    assignment: None,
                    provisioned: !pending,
                    start,
                    end,
                    created_on: now,
                    updated_on: now,
                };
                request.status = if pending {
                    "PendingProvisioning"
                } else if start > now {
                    "ScheduleCreated"
                } else {
                    "Provisioned"
                }
                .to_owned();
                let skey = schedule.name.to_ascii_lowercase();
                request.schedule = Some(skey.clone());
                tenant.pim.schedules.insert(skey, schedule);
                tenant.settle();
            }
            "AdminRemove" => {
                if let Some(k) = existing {
                    if let Some(s) = tenant.pim.schedules.remove(&k) {
                        if let Some(a) = s.assignment {
                            tenant.assignments.remove(&a);
                        }
                        request.schedule = Some(k);
                    }
                } else {
                    let standing = tenant
                        .assignments
                        .iter()
                        .find(|(_, a)| matches(&a.scope, &a.role, &a.principal_id))
                        .map(|(k, _)| k.clone())
                        .ok_or_else(does_not_exist)?;
                    tenant.assignments.remove(&standing);
                }
                request.status = "Revoked".to_owned();
            }
            "AdminUpdate" | "AdminExtend" | "AdminRenew" => {
                let k = existing.ok_or_else(does_not_exist)?;
                let (start, end) = Self::window(&schedule_info, now)?;
                tenant.pim.check_policy(tenant, scope, start, end)?;
                if let Some(s) = tenant.pim.schedules.get_mut(&k) {
                    if s.assignment.is_none() {
                        s.start = start;
                    }
                    s.end = end;
                    s.updated_on = now;
                }
                request.schedule = Some(k);
                tenant.settle();
            }
            other => {
                return Err(invalid(format!(
                    "The stand-in has no role eligibilities, so it does not serve requestType '{other}'."
                )))
            }
        }
        let body = request.to_json(tenant);
        tenant.pim.requests.insert(key, request);
        Ok(body)
    }

    /// GET roleAssignmentScheduleRequests/{name}: a PendingProvisioning request is provisioned now.
    pub fn get_request(tenant: &mut Tenant, scope: &Scope, name: &str) -> Result<Value, ArmError> {
        let key = name.to_ascii_lowercase();
        let pending = match tenant.pim.requests.get(&key) {
            Some(r) if r.scope.key() == scope.key() => r.status == "PendingProvisioning",
            _ => return Err(request_not_found(name)),
        };
        if pending {
            let schedule = tenant
                .pim
                .requests
                .get(&key)
                .and_then(|r| r.schedule.clone());
            if let Some(s) = schedule.and_then(|s| tenant.pim.schedules.get_mut(&s)) {
                s.provisioned = true;
            }
            if let Some(r) = tenant.pim.requests.get_mut(&key) {
                r.status = "Provisioned".to_owned();
            }
            tenant.settle();
        }
        Ok(tenant.pim.requests[&key].to_json(tenant))
    }

    /// POST roleAssignmentScheduleRequests/{name}/cancel: only a request still pending can be.
    pub fn cancel(tenant: &mut Tenant, scope: &Scope, name: &str) -> Result<(), ArmError> {
        let key = name.to_ascii_lowercase();
        let request = tenant
            .pim
            .requests
            .get_mut(&key)
            .filter(|r| r.scope.key() == scope.key())
            .ok_or_else(|| request_not_found(name))?;
        if request.status != "PendingProvisioning" {
            return Err(ArmError::bad_request(
                "InvalidRoleAssignmentRequestStatus",
                format!(
                    "The request '{name}' is {} and can no longer be canceled.",
                    request.status
                ),
            ));
        }
        request.status = "Canceled".to_owned();
        if let Some(s) = request.schedule.clone() {
            tenant.pim.schedules.remove(&s);
        }
        Ok(())
    }

    pub fn list_requests(tenant: &Tenant, scope: &Scope, filter: &Filter) -> Vec<Value> {
        tenant
            .pim
            .requests
            .values()
            .filter(|r| visible(tenant, scope, filter, &r.scope, &r.principal_id))
            .map(|r| r.to_json(tenant))
            .collect()
    }

    pub fn list_schedules(
        tenant: &Tenant,
        scope: &Scope,
        filter: &Filter,
        instances: bool,
    ) -> Vec<Value> {
        views(tenant)
            .iter()
            .filter(|v| !instances || v.active)
            .filter(|v| visible(tenant, scope, filter, v.scope, v.principal_id))
            .map(|v| {
                if instances {
                    v.instance_json(tenant)
                } else {
                    v.schedule_json(tenant)
                }
            })
            .collect()
    }

    pub fn get_schedule(
        tenant: &Tenant,
        scope: &Scope,
        name: &str,
        instance: bool,
    ) -> Result<Value, ArmError> {
        views(tenant)
            .iter()
            .filter(|v| v.scope.key() == scope.key())
            .find(|v| {
                let n = if instance { &v.instance_name } else { &v.name };
                n.eq_ignore_ascii_case(name) && (!instance || v.active)
            })
            .map(|v| {
                if instance {
                    v.instance_json(tenant)
                } else {
                    v.schedule_json(tenant)
                }
            })
            .ok_or_else(|| {
                ArmError::not_found(
                    "RoleAssignmentScheduleNotFound",
                    format!("The role assignment schedule '{name}' is not found."),
                )
            })
    }
}

fn request_not_found(name: &str) -> ArmError {
    ArmError::not_found(
        "RoleAssignmentScheduleRequestNotFound",
        format!("The role assignment schedule request '{name}' is not found."),
    )
}
