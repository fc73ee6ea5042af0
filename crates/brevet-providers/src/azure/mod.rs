//! Azure: a role assignment per grant at exactly one scope (management group, subscription,
//! resource group or resource), in one of two modes per profile:
//! - `assignment`: a plain role assignment (Microsoft.Authorization 2022-04-01). Azure never
//!   expires it: Brevet deletes it at expiry, and the reconciler removes any Brevet assignment no
//!   grant covers;
//! - `pim`: a PIM `roleAssignmentScheduleRequests` AdminAssign with `expiration.type =
//!   AfterDateTime` (2020-10-01), so Azure removes the assignment at expiry even if Brevet is down
//!   (the tenant needs Entra ID P2 / Governance); AdminRemove on early revocation.
//!
//! What is assigned is a built-in role (`role = "…"`), or — for `access`/`permissions` profiles —
//! a custom role definition holding exactly the compiled operations, assignable only at the
//! grant's scope, content-addressed (its GUID and name come from the scope and the operation set),
//! so grants with the same set at the same scope share it; it is deleted when no assignment uses
//! it any more. Assignment names are GUIDs derived from (scope, principal, role), so a retried
//! PUT is idempotent, and the description `brevet binding <binding>` marks Brevet's own: an
//! existing assignment of the same role to the same principal that Brevet did not make is never
//! adopted nor removed.

mod client;
mod settings;

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName, ResourceId};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use settings::Kind;

use crate::{
    Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError, SecretText,
};
use client::{ArmClient, Failure, PIM_API, RBAC_API};

/// The fuzz target's way in (`fuzz/fuzz_targets/iam_policy_document.rs`): how a role assignment
/// ARM returns is recognised as Brevet's.
#[doc(hidden)]
pub mod fuzzing {
    /// The binding key of a role assignment Brevet made, if it is one.
    pub fn owner_of(assignment: &serde_json::Value) -> Option<String> {
        super::owner_of(assignment)
    }
}

/// Azure's own words on how long a change takes to be enforced everywhere.
pub const PROPAGATION: &str =
    "Azure RBAC changes can take up to 10 minutes to take effect (ARM caches \
     role assignments; a new sign-in or token refresh picks them up sooner)";

const ASSIGNMENT_MARK: &str = "brevet binding ";
const ROLE_MARK: &str = "brevet content-addressed role";

/// Where Brevet's own Entra credentials come from (never the config file, except a reference).
#[derive(Debug, Clone)]
pub enum AzureCredentials {
    /// The managed identity of the VM, App Service or container Brevet runs in.
    ManagedIdentity,
    /// AKS workload identity (AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE).
    WorkloadIdentity,
    /// An app registration's client secret.
    ClientSecret {
        client_id: String,
        secret: SecretText,
    },
    /// A bearer token minted outside Brevet (and the stand-in's tests): it is used as is.
    AccessToken(SecretText),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureMode {
    Assignment,
    Pim,
}

/// A custom role's operations at one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSet {
    pub actions: Vec<String>,
    pub data_actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Grants {
    /// (name or id as configured, role definition GUID).
    BuiltIn((String, String)),
    /// Per resource id.
    Custom(BTreeMap<String, CustomSet>),
}

#[derive(Debug, Clone)]
pub struct AzureProfile {
    pub mode: AzureMode,
    pub grants: Grants,
}

#[derive(Debug, Clone)]
pub struct AzureIdentity {
    pub object_id: String,
    /// `User`, `Group` or `ServicePrincipal`: always sent, so a just-created principal is not
    /// refused as PrincipalNotFound while the directory replicates.
    pub principal_type: String,
}

#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub tenant_id: String,
    pub credentials: AzureCredentials,
    /// The ARM base URL; default `https://management.azure.com`.
    pub endpoint: Option<String>,
    pub profiles: BTreeMap<ProfileName, AzureProfile>,
    /// Resource id → scope.
    pub resources: BTreeMap<String, String>,
    pub identities: BTreeMap<String, AzureIdentity>,
}

/// A GUID that is a function of `parts` (hashed; formatted as a version-4 GUID so ARM takes it).
pub fn guid_of(parts: &[&str]) -> String {
    let h = Sha256::digest(parts.join("\n").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The role definition id for GUID `guid` as seen from `scope`.
fn role_definition_id(scope: &str, guid: &str) -> String {
    let sub = scope
        .split('/')
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("subscriptions"))
        .map(|w| w[1].to_owned());
    match sub {
        Some(s) => {
            format!("/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
        }
        None => format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
    }
}

fn last_segment(id: &str) -> String {
    id.rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn same_scope(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// The binding key of an assignment Brevet made: its description names the binding, and its
/// name is the GUID Brevet derives from its own scope, principal and role — a hand-made
/// assignment with a copied description is not Brevet's.
fn owner_of(a: &Value) -> Option<String> {
    let p = &a["properties"];
    let key = p["description"]
        .as_str()?
        .strip_prefix(ASSIGNMENT_MARK)?
        .split("; ")
        .next()?;
    let expected = guid_of(&[
        "assignment",
        &p["scope"]
            .as_str()?
            .trim_end_matches('/')
            .to_ascii_lowercase(),
        &p["principalId"].as_str()?.to_ascii_lowercase(),
        &last_segment(p["roleDefinitionId"].as_str()?),
    ]);
    a["name"]
        .as_str()?
        .eq_ignore_ascii_case(&expected)
        .then(|| key.to_owned())
}

fn role_guid(scope: &str, set: &CustomSet) -> String {
    let lower = |v: &[String]| {
        v.iter()
            .map(|s| s.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    };
    guid_of(&[
        "role",
        &scope.to_ascii_lowercase(),
        &lower(&set.actions),
        &lower(&set.data_actions),
    ])
}

pub struct AzureProvider {
    name: String,
    config: AzureConfig,
    arm: ArmClient,
}

/// What one binding assigns.
struct Plan<'a> {
    scope: &'a str,
    identity: &'a AzureIdentity,
    mode: &'a AzureMode,
    /// The role definition GUID, and the custom set to define first, if custom.
    role_guid: String,
    custom: Option<&'a CustomSet>,
}

impl Plan<'_> {
    fn role_id(&self) -> String {
        role_definition_id(self.scope, &self.role_guid)
    }
    fn assignment_name(&self) -> String {
        guid_of(&[
            "assignment",
            &self.scope.to_ascii_lowercase(),
            &self.identity.object_id,
            &self.role_guid,
        ])
    }
    fn assignments_path(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments",
            self.scope
        )
    }
}

impl AzureProvider {
    pub async fn new(name: &str, config: AzureConfig) -> Result<Self, ProviderError> {
        let arm = ArmClient::new(
            &config.tenant_id,
            &config.credentials,
            config.endpoint.as_deref(),
        )?;
        Ok(Self {
            name: name.to_owned(),
            config,
            arm,
        })
    }

    fn profile(&self, p: &ProfileName) -> Result<&AzureProfile, ProviderError> {
        crate::profile_of(&self.name, &self.config.profiles, p)
    }

    fn plan(&self, b: &Binding) -> Result<Plan<'_>, ProviderError> {
        let profile = self.profile(&b.profile)?;
        let scope = self
            .config
            .resources
            .get(b.resource.name())
            .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string()))?;
        let identity = self.config.identities.get(b.principal.as_str()).ok_or_else(|| {
            ProviderError::BadInput(format!(
                "principal `{}` has no Entra identity: add [providers.{}.identities.\"{}\"] object_id = \"GUID\" \
                 (and type = \"User\", \"Group\" or \"ServicePrincipal\")",
                b.principal, self.name, b.principal
            ))
        })?;
        let (role_guid, custom) = match &profile.grants {
            Grants::BuiltIn((_, guid)) => (guid.clone(), None),
            Grants::Custom(per) => {
                let set = per
                    .get(b.resource.name())
                    .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string()))?;
                (role_guid(scope, set), Some(set))
            }
        };
        Ok(Plan {
            scope,
            identity,
            mode: &profile.mode,
            role_guid,
            custom,
        })
    }

    /// Defines (or re-defines, if someone edited it) the content-addressed custom role.
    async fn put_role(&self, cx: &OpContext, plan: &Plan<'_>) -> Result<(), ProviderError> {
        let Some(set) = plan.custom else {
            return Ok(());
        };
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
            plan.scope, plan.role_guid
        );
        let body = json!({"properties": {
            "roleName": format!("Brevet {}", &plan.role_guid[..18]),
            "description": format!(
                "{ROLE_MARK} for {}: {} operations. Shared by every grant of this set at this scope; deleted when no assignment uses it.",
                plan.scope,
                set.actions.len() + set.data_actions.len()
            ),
            "type": "CustomRole",
            "permissions": [{"actions": set.actions, "notActions": [], "dataActions": set.data_actions, "notDataActions": []}],
            "assignableScopes": [plan.scope],
        }});
        match self.arm.call(cx, "roleDefinitions.createOrUpdate", Method::PUT, &path, RBAC_API, Some(&body)).await {
            Ok(_) => Ok(()),
            Err(f) if f.code() == Some("RoleDefinitionWithSameNameExists") => Err(ProviderError::Target(format!(
                "a custom role named `Brevet {}` that Brevet did not define exists in the tenant: rename or delete it",
                &plan.role_guid[..18]
            ))),
            Err(f) => Err(f.into_provider(&format!("custom role {}", plan.role_guid))),
        }
    }

    /// Deletes the custom role if no assignment uses it any more (Azure refuses otherwise).
    async fn drop_role_if_unused(
        &self,
        cx: &OpContext,
        plan: &Plan<'_>,
    ) -> Result<(), ProviderError> {
        if plan.custom.is_none() {
            return Ok(());
        }
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
            plan.scope, plan.role_guid
        );
        match self
            .arm
            .call(
                cx,
                "roleDefinitions.delete",
                Method::DELETE,
                &path,
                RBAC_API,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.code() == Some("RoleDefinitionHasAssignments") => Ok(()),
            Err(f) => Err(f.into_provider(&format!("custom role {}", plan.role_guid))),
        }
    }

    /// The principal's assignments at the plan's scope (inherited ones excluded).
    async fn assignments_of(
        &self,
        cx: &OpContext,
        plan: &Plan<'_>,
    ) -> Result<Vec<Value>, ProviderError> {
        let path = format!(
            "{}?$filter=principalId%20eq%20'{}'",
            plan.assignments_path(),
            plan.identity.object_id
        );
        let all = self
            .arm
            .list(cx, "roleAssignments.list", &path, RBAC_API)
            .await
            .map_err(|f| f.into_provider(&format!("role assignments at {}", plan.scope)))?;
        Ok(all
            .into_iter()
            .filter(|a| {
                same_scope(
                    a["properties"]["scope"].as_str().unwrap_or_default(),
                    plan.scope,
                )
            })
            .collect())
    }

    async fn ensure_assignment(
        &self,
        cx: &OpContext,
        b: &Binding,
        plan: &Plan<'_>,
    ) -> Result<(), ProviderError> {
        let path = format!("{}/{}", plan.assignments_path(), plan.assignment_name());
        let mut description = format!("{ASSIGNMENT_MARK}{}", b.key());
        if let Some(r) = cx.request_id() {
            description.push_str(&format!("; request {r}"));
        }
        let body = json!({"properties": {
            "roleDefinitionId": plan.role_id(),
            "principalId": plan.identity.object_id,
            "principalType": plan.identity.principal_type,
            "description": description,
        }});
        let mut wait = Duration::from_millis(250);
        let mut redefined = false;
        for attempt in 1..=5 {
            match self.arm.call(cx, "roleAssignments.create", Method::PUT, &path, RBAC_API, Some(&body)).await {
                Ok(_) => return Ok(()),
                Err(f) if f.code() == Some("RoleAssignmentExists") => {
                    // The same role for the same principal at this scope under another name.
                    let existing = self.assignments_of(cx, plan).await?;
                    let same_role = existing
                        .iter()
                        .find(|a| last_segment(a["properties"]["roleDefinitionId"].as_str().unwrap_or_default()) == plan.role_guid);
                    return match same_role {
                        Some(a) if owner_of(a).as_deref() == Some(b.key().as_str()) => Ok(()),
                        _ => Err(ProviderError::Target(format!(
                            "{} already holds this role at {} through an assignment Brevet did not make; Brevet \
                             neither takes it over nor removes it (remove that standing assignment if the access \
                             should be just-in-time)",
                            plan.identity.object_id, plan.scope
                        ))),
                    };
                }
                Err(f) if f.code() == Some("PrincipalNotFound") && attempt < 5 => {
                    // Directory replication: the principal exists but ARM has not seen it yet.
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(f) if f.code() == Some("PrincipalNotFound") => {
                    return Err(ProviderError::Unreachable(format!(
                        "Azure does not see principal {} yet (directory replication); will retry",
                        plan.identity.object_id
                    )))
                }
                Err(f) if f.code() == Some("RoleDefinitionDoesNotExist") || f.code() == Some("InvalidRoleDefinitionId") => {
                    // A concurrent revocation deleted the shared custom role between our PUTs.
                    if plan.custom.is_some() && !redefined {
                        redefined = true;
                        self.put_role(cx, plan).await?;
                    } else {
                        return Err(f.into_provider(&format!("role assignment at {}", plan.scope)));
                    }
                }
                Err(f) if f.code() == Some("RoleAssignmentLimitExceeded") => {
                    return Err(ProviderError::Target(format!(
                        "{}: Azure allows 4,000 role assignments per subscription and 500 per management group; \
                         remove unused assignments. Nothing was assigned",
                        f.into_provider(&format!("role assignment at {}", plan.scope))
                    )))
                }
                Err(f) => return Err(f.into_provider(&format!("role assignment at {}", plan.scope))),
            }
        }
        unreachable!("every attempt returns or retries")
    }

    async fn pim_request(
        &self,
        cx: &OpContext,
        b: &Binding,
        plan: &Plan<'_>,
        request_type: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Value, Failure> {
        // Azure never lets a request name be used twice: each request is a new GUID;
        // idempotency comes from reading PIM's schedule first (`ensure`).
        let guid = uuid::Uuid::new_v4().to_string();
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{guid}",
            plan.scope
        );
        let mut justification = format!("{ASSIGNMENT_MARK}{}", b.key());
        if let Some(r) = cx.reason() {
            justification.push_str("; ");
            justification.push_str(r);
        }
        let mut properties = json!({
            "principalId": plan.identity.object_id,
            "roleDefinitionId": plan.role_id(),
            "requestType": request_type,
            "justification": justification.chars().take(500).collect::<String>(),
        });
        if let Some(t) = expires_at {
            // No startDateTime: Azure starts it at its own now, so a Brevet clock running ahead
            // of Azure's never schedules the access for later.
            properties["scheduleInfo"] = json!({
                "expiration": {"type": "AfterDateTime", "endDateTime": ts(t)},
            });
        }
        let (_, v) = self
            .arm
            .call(
                cx,
                &format!("roleAssignmentScheduleRequests.{request_type}"),
                Method::PUT,
                &path,
                PIM_API,
                Some(&json!({"properties": properties})),
            )
            .await?;
        // Poll until Azure has provisioned (or refused) it.
        let mut v = v;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = v["properties"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match status.as_str() {
                "Provisioned" | "Granted" | "Revoked" | "AdminApproved" | "ScheduleCreated" => {
                    return Ok(v)
                }
                "Failed"
                | "Denied"
                | "Canceled"
                | "AdminDenied"
                | "TimedOut"
                | "Invalid"
                | "FailedAsResourceIsLocked" => {
                    return Err(Failure::Other(ProviderError::Target(format!(
                        "Azure PIM {request_type} at {} ended {status}",
                        plan.scope
                    ))))
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(Failure::Other(ProviderError::Unreachable(format!(
                        "Azure PIM {request_type} at {} is still {status}; will check again",
                        plan.scope
                    ))))
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let (_, next) = self
                        .arm
                        .call(
                            cx,
                            "roleAssignmentScheduleRequests.get",
                            Method::GET,
                            &path,
                            PIM_API,
                            None,
                        )
                        .await?;
                    v = next;
                }
            }
        }
    }

    fn pim_error(f: Failure, scope: &str) -> ProviderError {
        if f.code() == Some("RoleAssignmentRequestPolicyValidationFailed") {
            let msg = match &f {
                Failure::Arm(a) => a.message.clone(),
                Failure::Other(e) => e.to_string(),
            };
            return ProviderError::Target(format!(
                "Azure PIM's policy for this role at {scope} refused the request ({msg}); ExpirationRule means the \
                 grant is longer than PIM allows there: ask for less time, or change the role's PIM settings"
            ));
        }
        f.into_provider(&format!("PIM schedule request at {scope}"))
    }

    /// PIM's active assignments of the plan's role to its principal at its scope that Brevet
    /// asked for for this binding: instances of the schedules that Brevet's own requests
    /// (justification `brevet binding <key>`) created. A standing assignment, one an
    /// administrator made through PIM, or one the principal activated is never among them.
    async fn pim_instances(
        &self,
        cx: &OpContext,
        b: &Binding,
        plan: &Plan<'_>,
    ) -> Result<Vec<Value>, ProviderError> {
        let mark = format!("{ASSIGNMENT_MARK}{}", b.key());
        let filter = format!("$filter=principalId%20eq%20'{}'", plan.identity.object_id);
        let requests = self
            .arm
            .list(
                cx,
                "roleAssignmentScheduleRequests.list",
                &format!(
                    "{}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests?{filter}",
                    plan.scope
                ),
                PIM_API,
            )
            .await
            .map_err(|f| f.into_provider(&format!("PIM requests at {}", plan.scope)))?;
        let ours: std::collections::BTreeSet<String> = requests
            .iter()
            .filter(|r| {
                r["properties"]["justification"].as_str().is_some_and(|j| {
                    j == mark
                        || j.strip_prefix(mark.as_str())
                            .is_some_and(|rest| rest.starts_with(';'))
                })
            })
            .filter_map(|r| r["properties"]["targetRoleAssignmentScheduleId"].as_str())
            .map(last_segment)
            .collect();
        if ours.is_empty() {
            return Ok(Vec::new());
        }
        let all = self
            .arm
            .list(
                cx,
                "roleAssignmentScheduleInstances.list",
                &format!(
                    "{}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?{filter}",
                    plan.scope
                ),
                PIM_API,
            )
            .await
            .map_err(|f| f.into_provider(&format!("PIM assignments at {}", plan.scope)))?;
        Ok(all
            .into_iter()
            .filter(|i| {
                let p = &i["properties"];
                same_scope(p["scope"].as_str().unwrap_or_default(), plan.scope)
                    && last_segment(p["roleDefinitionId"].as_str().unwrap_or_default())
                        == plan.role_guid
                    && ours.contains(&last_segment(
                        p["roleAssignmentScheduleId"].as_str().unwrap_or_default(),
                    ))
            })
            .collect())
    }

    /// Brevet's plain assignment for the binding, read by its derived name (not by listing, so a
    /// list that lags or is cut short cannot hide it); `None` if absent or not Brevet's for
    /// this binding.
    async fn own_assignment(
        &self,
        cx: &OpContext,
        b: &Binding,
        plan: &Plan<'_>,
    ) -> Result<Option<Value>, ProviderError> {
        let path = format!("{}/{}", plan.assignments_path(), plan.assignment_name());
        match self
            .arm
            .call(
                cx,
                "roleAssignments.get",
                Method::GET,
                &path,
                RBAC_API,
                None,
            )
            .await
        {
            Ok((_, a)) if owner_of(&a).as_deref() == Some(b.key().as_str()) => Ok(Some(a)),
            Ok(_) => Ok(None),
            Err(Failure::Arm(a)) if a.http == 404 => Ok(None),
            Err(f) => Err(f.into_provider(&format!("role assignment {path}"))),
        }
    }

    /// Brevet's access for the binding still at its scope: its own assignment, and in PIM mode
    /// the assignment PIM made for Brevet's request.
    async fn present(
        &self,
        cx: &OpContext,
        b: &Binding,
        plan: &Plan<'_>,
    ) -> Result<Vec<Value>, ProviderError> {
        let mut out: Vec<Value> = self
            .own_assignment(cx, b, plan)
            .await?
            .into_iter()
            .collect();
        if *plan.mode == AzureMode::Pim {
            out.extend(self.pim_instances(cx, b, plan).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Provider for AzureProvider {
    fn kind(&self) -> &'static str {
        "azure"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.config.profiles.keys().cloned().collect()
    }

    fn grants_preview(&self, resource: &ResourceId, profile: &ProfileName) -> Vec<String> {
        let (Some(p), Some(scope)) = (
            self.config.profiles.get(profile),
            self.config.resources.get(resource.name()),
        ) else {
            return Vec::new();
        };
        let how = match p.mode {
            AzureMode::Assignment => "assigned",
            AzureMode::Pim => "assigned through PIM (Azure ends it at expiry)",
        };
        match &p.grants {
            Grants::BuiltIn((name, _)) => {
                vec![format!("the built-in role {name}, {how} at {scope}")]
            }
            Grants::Custom(per) => per
                .get(resource.name())
                .map(|s| {
                    vec![format!(
                        "a custom role of {}, {how} at {scope}",
                        s.actions
                            .iter()
                            .chain(&s.data_actions)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
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
        let plan = self.plan(binding)?;
        self.put_role(cx, &plan).await?;
        match plan.mode {
            AzureMode::Assignment => self.ensure_assignment(cx, binding, &plan).await,
            AzureMode::Pim => {
                let end = ts(expires_at);
                for _ in 0..3 {
                    let current = self.pim_instances(cx, binding, &plan).await?;
                    let current_end = current.first().map(|i| {
                        i["properties"]["endDateTime"]
                            .as_str()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| ts(t.with_timezone(&Utc)))
                    });
                    let result = match current_end {
                        Some(e) if e.as_deref() == Some(end.as_str()) => return Ok(()),
                        // Brevet's earlier PIM assignment: move its end.
                        Some(_) => {
                            self.pim_request(cx, binding, &plan, "AdminUpdate", Some(expires_at))
                                .await
                        }
                        None => {
                            self.pim_request(cx, binding, &plan, "AdminAssign", Some(expires_at))
                                .await
                        }
                    };
                    match result {
                        Ok(_) => return Ok(()),
                        Err(f) if f.code() == Some("RoleAssignmentExists") => {
                            if self.pim_instances(cx, binding, &plan).await?.is_empty() {
                                // A standing assignment, not Brevet's: never taken over.
                                return Err(ProviderError::Target(format!(
                                    "{} already holds this role at {} through a standing assignment Brevet did \
                                     not make; Brevet neither takes it over nor removes it",
                                    plan.identity.object_id, plan.scope
                                )));
                            }
                            // A concurrent ensure made it meanwhile: read again.
                        }
                        Err(f) => return Err(Self::pim_error(f, plan.scope)),
                    }
                }
                Err(ProviderError::Conflict(format!(
                    "PIM assignments at {} kept changing while Brevet wrote; will retry",
                    plan.scope
                )))
            }
        }
    }

    async fn issue_credentials(
        &self,
        _cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        _input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        let plan = self.plan(binding)?;
        Ok(Credential {
            kind: crate::CredentialKind::AzureRoleAssignment,
            secret: SecretText::new(String::new()),
            details: json!({
                "object_id": plan.identity.object_id,
                "role_definition_id": plan.role_id(),
                "scope": plan.scope,
                "mode": match plan.mode { AzureMode::Assignment => "assignment", AzureMode::Pim => "pim" },
                "expires_at": ts(expires_at),
                "use": "your own Entra identity (az login, the portal); a new sign-in picks the role up",
            }),
            expires_at,
        })
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        let plan = self.plan(binding)?;
        // AdminRemove would also remove a standing assignment of the role: only ask for it
        // while PIM shows Brevet's time-bound one.
        if *plan.mode == AzureMode::Pim && !self.pim_instances(cx, binding, &plan).await?.is_empty()
        {
            match self
                .pim_request(cx, binding, &plan, "AdminRemove", None)
                .await
            {
                Ok(_) => {}
                Err(f)
                    if f.code()
                        .is_some_and(|c| c.contains("DoesNotExist") || c.contains("NotFound")) => {}
                Err(f) => return Err(Self::pim_error(f, plan.scope)),
            }
        }
        if let Some(a) = self.own_assignment(cx, binding, &plan).await? {
            let id = a["id"].as_str().unwrap_or_default().to_owned();
            self.arm
                .call(
                    cx,
                    "roleAssignments.delete",
                    Method::DELETE,
                    &id,
                    RBAC_API,
                    None,
                )
                .await
                .map_err(|f| f.into_provider(&format!("role assignment {id}")))?;
        }
        self.drop_role_if_unused(cx, &plan).await
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Evidence, ProviderError> {
        let plan = self.plan(binding)?;
        let left = self.present(cx, binding, &plan).await?;
        if let Some(a) = left.first() {
            return Err(ProviderError::StillPresent(format!(
                "{} still has {} at {}",
                plan.identity.object_id, a["id"], plan.scope
            )));
        }
        let now = Utc::now();
        Ok(Evidence {
            checked_at: now,
            observation: json!({
                "scope": plan.scope,
                "principal_id": plan.identity.object_id,
                "role_definition_id": plan.role_id(),
                "assignment_present": false,
                "checked_by": "roleAssignments list at the scope, filtered by principalId",
                "removed_by": ts(now),
                "propagation": PROPAGATION,
                "propagation_complete_by": ts(now + chrono::Duration::minutes(10)),
            }),
        })
    }

    async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        let mut out = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        let scopes: std::collections::BTreeSet<&String> = self.config.resources.values().collect();
        for scope in &scopes {
            let path = format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()"
            );
            let all = self
                .arm
                .list(cx, "roleAssignments.list", &path, RBAC_API)
                .await
                .map_err(|f| f.into_provider(&format!("role assignments at {scope}")))?;
            for a in all {
                used.insert(last_segment(
                    a["properties"]["roleDefinitionId"]
                        .as_str()
                        .unwrap_or_default(),
                ));
                if !same_scope(a["properties"]["scope"].as_str().unwrap_or_default(), scope) {
                    continue;
                }
                if let Some(key) = owner_of(&a) {
                    out.push(OwnedAccess {
                        native_id: a["id"].as_str().unwrap_or_default().to_owned(),
                        binding_key: Some(key),
                    });
                }
            }
            let path = format!("{scope}/providers/Microsoft.Authorization/roleDefinitions?$filter=type%20eq%20'CustomRole'");
            let roles = self
                .arm
                .list(cx, "roleDefinitions.list", &path, RBAC_API)
                .await
                .map_err(|f| f.into_provider(&format!("role definitions at {scope}")))?;
            for r in roles {
                let ours = r["properties"]["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(ROLE_MARK));
                let assignable_here =
                    r["properties"]["assignableScopes"]
                        .as_array()
                        .is_some_and(|s| {
                            s.len() == 1 && s[0].as_str().is_some_and(|x| same_scope(x, scope))
                        });
                let guid =
                    last_segment(r["id"].as_str().or(r["name"].as_str()).unwrap_or_default());
                if ours && assignable_here && !used.contains(&guid) {
                    out.push(OwnedAccess {
                        native_id: format!(
                            "{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
                        ),
                        binding_key: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.native_id.cmp(&b.native_id));
        out.dedup();
        Ok(out)
    }

    async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        let id = owned.native_id.as_str();
        let lower = id.to_ascii_lowercase();
        let (kind, guard): (&str, Box<dyn Fn(&Value) -> bool + Send + Sync>) =
            if lower.contains("/providers/microsoft.authorization/roleassignments/") {
                let key = owned.binding_key.clone();
                (
                    "roleAssignments",
                    Box::new(move |v: &Value| key.is_some() && owner_of(v) == key),
                )
            } else if lower.contains("/providers/microsoft.authorization/roledefinitions/") {
                (
                    "roleDefinitions",
                    Box::new(|v: &Value| {
                        v["properties"]["description"]
                            .as_str()
                            .is_some_and(|d| d.starts_with(ROLE_MARK))
                    }),
                )
            } else {
                return Err(ProviderError::BadInput(format!(
                    "`{id}` is not an assignment or role Brevet lists"
                )));
            };
        let current = match self
            .arm
            .call(cx, &format!("{kind}.get"), Method::GET, id, RBAC_API, None)
            .await
        {
            Ok((_, v)) => v,
            Err(Failure::Arm(a)) if a.http == 404 => {
                return Ok(Evidence {
                    checked_at: Utc::now(),
                    observation: json!({"id": id, "present": false}),
                })
            }
            Err(f) => return Err(f.into_provider(id)),
        };
        if !guard(&current) {
            return Err(ProviderError::BadInput(format!(
                "`{id}` was not made by Brevet for that binding; it is left alone"
            )));
        }
        match self
            .arm
            .call(
                cx,
                &format!("{kind}.delete"),
                Method::DELETE,
                id,
                RBAC_API,
                None,
            )
            .await
        {
            Ok(_) => {}
            Err(f) if f.code() == Some("RoleDefinitionHasAssignments") => {
                return Err(ProviderError::Conflict(format!(
                    "custom role {id} is assigned again; it stays"
                )))
            }
            Err(f) => return Err(f.into_provider(id)),
        }
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: json!({"id": id, "deleted": true, "propagation": PROPAGATION}),
        })
    }

    async fn terminate_sessions(
        &self,
        _cx: &OpContext,
        _binding: &Binding,
    ) -> Result<u64, ProviderError> {
        // ARM has no per-assignment session: tokens already issued keep their other rights, and
        // lose this role once the removal has propagated.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_deterministic_and_well_formed() {
        let a = guid_of(&["assignment", "/subscriptions/x", "p", "r"]);
        assert_eq!(a, guid_of(&["assignment", "/subscriptions/x", "p", "r"]));
        assert_ne!(a, guid_of(&["assignment", "/subscriptions/x", "p", "r2"]));
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        let set = CustomSet {
            actions: vec!["A/read".into()],
            data_actions: vec![],
        };
        let upper = CustomSet {
            actions: vec!["a/READ".into()],
            data_actions: vec![],
        };
        assert_eq!(
            role_guid("/subscriptions/X", &set),
            role_guid("/subscriptions/x", &upper),
            "ARM is case-insensitive"
        );
        assert_eq!(
            role_definition_id("/subscriptions/S/resourceGroups/rg", "g"),
            "/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/g"
        );
        assert_eq!(
            role_definition_id("/providers/Microsoft.Management/managementGroups/mg", "g"),
            "/providers/Microsoft.Authorization/roleDefinitions/g"
        );
    }

    #[test]
    fn only_assignments_described_and_named_as_brevets_are_owned() {
        let scope = "/subscriptions/S/resourceGroups/rg";
        let name = guid_of(&["assignment", &scope.to_ascii_lowercase(), "p", "g"]);
        let a = json!({"name": name, "properties": {
            "scope": scope, "principalId": "p",
            "roleDefinitionId": "/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/g",
            "description": "brevet binding alice|azure:rg|az.read; request r-1"}});
        assert_eq!(owner_of(&a).as_deref(), Some("alice|azure:rg|az.read"));
        let mut copied = a.clone();
        copied["name"] = json!("00000000-0000-4000-8000-000000000000");
        assert!(
            owner_of(&copied).is_none(),
            "a copied description is not enough"
        );
        let mut by_hand = a.clone();
        by_hand["properties"]["description"] = json!("made by hand");
        assert!(owner_of(&by_hand).is_none());
    }
}
