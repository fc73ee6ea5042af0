//! A contract-faithful STAND-IN for the Azure Resource Manager authorization APIs Brevet's Azure
//! provider calls. No ARM authorization emulator exists (`amber-cloud` models RBAC in SQLite,
//! not ARM REST; `shared/cloud-contracts.md` §2.4), so this is Brevet's own implementation,
//! written from the published contracts:
//!
//! - the REST specs of Microsoft.Authorization as generated into `azure-mgmt-authorization`
//!   4.0.0 (Python): api-version 2022-04-01 for roleAssignments, roleDefinitions and
//!   permissions, 2020-10-01 for roleAssignmentScheduleRequests, roleAssignmentSchedules and
//!   roleAssignmentScheduleInstances — paths, field names, enums, and the status codes the
//!   clients accept (a role definition PUT answers 201 even for an update; a schedule request
//!   PUT 201; a role assignment PUT 201, or 200 when it changes an existing one);
//! - Azure's RBAC limits, rules and error texts as `shared/cloud-contracts.md` §2 collects them
//!   (RoleAssignmentExists, PrincipalNotFound and principalType, RoleAssignmentUpdateNotPermitted,
//!   RoleAssignmentLimitExceeded, RoleDefinitionWithSameNameExists, RoleDefinitionHasAssignments,
//!   InvalidActionOrNotAction, RoleAssignmentRequestPolicyValidationFailed);
//! - Entra ID's client-credentials token endpoint and error JSON, as azure_identity parses it.
//!
//! One loopback port serves, at ARM's paths (segments case-insensitive, `api-version`
//! required): `{scope}/providers/Microsoft.Authorization/roleAssignments[/{guid}]` (PUT, GET,
//! DELETE, list with `$filter=atScope()`, `principalId eq '…'`, `assignedTo('…')`, paged by
//! `nextLink`/`$skipToken`), `…/roleDefinitions[/{guid}]` (PUT, GET, DELETE, list with
//! `type eq 'CustomRole'|'BuiltInRole'`, `roleName eq '…'`, `atScopeAndBelow()`),
//! `…/permissions` (the caller's permission blocks), `…/roleAssignmentScheduleRequests[/{guid}
//! [/cancel]]`, `…/roleAssignmentSchedules[/{name}]`, `…/roleAssignmentScheduleInstances
//! [/{name}]`; and `POST /{tenant}/oauth2/v2.0/token`. Scopes: `/`, management groups,
//! subscriptions, resource groups, and any resource below a resource group (not registered,
//! but its resource group must exist).
//!
//! Callers: `Authorization: Bearer <token>` where the token is an UNSIGNED JWT whose `oid`
//! claim names the caller ([`FakeAzure::token_for`]; the token endpoint issues the same for an
//! app's service principal). Lists and writes are allowed to anyone unless
//! [`FakeAzure::enforce_callers`] is on; `permissions` always answers for the caller.
//!
//! Semantics kept: role assignment names are tenant-unique GUIDs; the same principal + role +
//! scope under a second name is 409 RoleAssignmentExists; PUT of an existing name with another
//! principal, role or scope is RoleAssignmentUpdateNotPermitted; an unknown principal is
//! PrincipalNotFound unless `principalType` is given; DELETE is 200 with the body or 204;
//! custom roles' assignableScopes limit where they can be assigned; access is the union of the
//! permission blocks of the roles assigned at the scope or above (resource → resource group →
//! subscription → management groups → `/`), `*` wildcards case-insensitive, notActions and
//! notDataActions subtracting within their own block, data actions only through dataActions.
//! PIM AdminAssign creates a schedule, its instance and an active role assignment (whose
//! `createdBy` is [`MS_PIM_OBJECT_ID`], which is how it can be told from a standing one), and
//! PIM removes that assignment once the controllable clock passes endDateTime. Standing
//! assignments are listed as permanent schedules too, as PIM shows them.
//!
//! Built-in roles: from Brevet's catalog (`brevet_catalog::Catalog::embedded()`), whose Azure
//! roles keep each role's patterns but not its split into permission blocks — the 16 of 928
//! built-in roles with several blocks become one block (stricter). To serve Azure's exact
//! blocks, point `BREVET_FAKE_AZURE_ROLES` at `az role definition list` JSON (e.g.
//! `shared/data/azure/built-in-roles-raw.json`); it is read at start.
//!
//! azure_identity (Rust, 1.0.0) refuses an `http://` authority host ("authority host doesn't use
//! HTTPS scheme"), but works against this stand-in with `ClientSecretCredential::new(TENANT_ID,
//! client_id, secret, options)` whose `client_options.cloud` is
//! `CloudConfiguration::Custom` with `authority_host = "https://127.0.0.1:PORT"` and whose
//! `client_options.per_call_policies` holds a test-only `Policy` that calls
//! `request.url_mut().set_scheme("http")` before passing the request on (checked against
//! azure_identity 1.0.0 / azure_core 1.1.0: token issued, AADSTS7000215 on a wrong secret, 429
//! retried). Python's azure-core needs `enforce_https=False` in the request options (see
//! `support/azure_clients.py`).
//!
//! What it leaves out: Entra groups and group membership (a Group principal's assignments do
//! not reach its members), deny assignments, ABAC condition evaluation (an assignment with a
//! `condition` grants nothing in `check_access`/`permissions`), propagation delay (changes
//! apply at once; `replication_delay` models only the directory's), role eligibilities and the
//! Self* request types, approvals, roleManagementPolicies as a REST resource (the expiration
//! rule is set by a control), `validate`, classic administrators, `tenantId` cross-tenant
//! calls, the `/{roleAssignmentId}` PUT's linked-scope checks, months and years in ISO 8601
//! durations, and Azure's leniency on custom-role actions: Azure accepts any operation of a
//! registered provider, the stand-in only those in Brevet's catalog (or patterns matching one).
//! Error codes and texts that Azure has been seen to send are verbatim (see above); the others
//! (invalid scheduleInfo, invalid assignable scopes, unsupported filters, length limits) follow
//! ARM's style but are not.
//!
//! Controls for a shell (`cargo run -p brevet-testkit --bin fake-azure`), all JSON:
//! `GET|POST /_fake/clock {"now"}`, `POST /_fake/advance {"seconds"}`,
//! `POST /_fake/management-groups {"id","parent"?}`, `/_fake/subscriptions {"id","managementGroup"?}`,
//! `/_fake/resource-groups {"subscription","name"}`, `/_fake/principals {"objectId","principalType"}`,
//! `/_fake/apps {"clientId","secret","objectId"}`, `/_fake/replication-delay {"objectId","n"}`,
//! `/_fake/throttle {"n"}`, `/_fake/pim-max-duration {"scope","seconds"}`, `/_fake/pim-pending {"on"}`,
//! `/_fake/enforce-callers {"on"}`, `/_fake/limits {"subscriptionAssignments"?,
//! "managementGroupAssignments"?, "customRoles"?, "pageSize"?}`, `GET|POST /_fake/assignments`
//! (POST `{"scope","principalId","roleDefinitionId","description"?}` seeds one),
//! `GET /_fake/role-definitions`, `POST /_fake/check-access {"principalId","action","scope"}`,
//! `GET /_fake/token?objectId=ID`, `GET /_fake/requests`.

mod control;
mod error;
mod http;
mod pim;
mod roles;
mod scope;
mod tenant;
mod time;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use self::{
    http::lock,
    roles::{is_guid, Operations, Roles},
    scope::Scope,
    tenant::{new_guid, Assignment, Tenant},
};

/// The tenant (directory) the stand-in is: the token endpoint answers at `/{TENANT_ID}/oauth2/v2.0/token`.
pub const TENANT_ID: &str = "b7e7e700-a2e0-4000-8000-00000000a2e0";
/// The object id the stand-in gives PIM's own service principal (MS-PIM): the `createdBy` of
/// the role assignments PIM creates.
pub const MS_PIM_OBJECT_ID: &str = "b7e7e700-0091-4000-8000-000000000091";
/// The environment variable naming `az role definition list` JSON to take built-in roles from.
pub const ROLES_ENV: &str = "BREVET_FAKE_AZURE_ROLES";

/// One API call the stand-in answered (control calls under `/_fake/` are not recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    pub method: String,
    /// Percent-decoded.
    pub path: String,
    pub query: String,
    /// The JSON body (token requests: none, their form carries a secret).
    pub body: Option<Value>,
    pub status: u16,
}

/// The stand-in, serving on its own thread and tokio runtime until dropped.
pub struct FakeAzure {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    state: http::Shared,
    _server: crate::serve::Served,
}

impl FakeAzure {
    /// On a free loopback port.
    pub fn start() -> FakeAzure {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("start the Azure stand-in")
    }

    /// On `addr` (the `fake-azure` binary's `--port`).
    pub fn start_on(addr: SocketAddr) -> std::io::Result<FakeAzure> {
        let catalog = brevet_catalog::Catalog::embedded().map_err(std::io::Error::other)?;
        let roles = match std::env::var_os(ROLES_ENV) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)?;
                Roles::from_az_json(&text).map_err(|e| {
                    std::io::Error::other(format!("{ROLES_ENV}={}: {e}", path.to_string_lossy()))
                })?
            }
            None => Roles::from_catalog(&catalog),
        };
        let tenant = Tenant::new(roles, Operations::from_catalog(&catalog));
        let state: http::Shared = Arc::new(Mutex::new(tenant));
        let server = crate::serve::Served::start("fake-azure", addr, http::router(state.clone()))?;
        Ok(FakeAzure {
            url: server.url.clone(),
            state,
            _server: server,
        })
    }

    fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        let mut t = lock(&self.state);
        t.settle();
        t
    }

    /// `id`: `mg1`; `parent`: another management group's id. Panics if the parent is unknown.
    pub fn add_management_group(&self, id: &str, parent: Option<&str>) {
        if let Err(e) = self.tenant().hierarchy.add_management_group(id, parent) {
            panic!("FakeAzure::add_management_group({id}): {e}");
        }
    }

    /// `id`: a GUID string; `management_group`: its management group's id.
    pub fn add_subscription(&self, id: &str, management_group: Option<&str>) {
        if let Err(e) = self
            .tenant()
            .hierarchy
            .add_subscription(id, management_group)
        {
            panic!("FakeAzure::add_subscription({id}): {e}");
        }
    }

    pub fn add_resource_group(&self, subscription: &str, name: &str) {
        if let Err(e) = self
            .tenant()
            .hierarchy
            .add_resource_group(subscription, name)
        {
            panic!("FakeAzure::add_resource_group({subscription}, {name}): {e}");
        }
    }

    /// A directory object: `principal_type` is `User`, `Group` or `ServicePrincipal`.
    pub fn add_principal(&self, object_id: &str, principal_type: &str) {
        if let Err(e) = self.tenant().add_principal(object_id, principal_type) {
            panic!("FakeAzure::add_principal({object_id}): {e}");
        }
    }

    /// An app registration whose client secret the token endpoint accepts; its tokens act as
    /// service principal `object_id` (added to the directory if new).
    pub fn add_app(&self, client_id: &str, secret: &str, object_id: &str) {
        let mut t = self.tenant();
        if !t.principals.contains_key(&object_id.to_ascii_lowercase()) {
            let _ = t.add_principal(object_id, "ServicePrincipal");
        }
        t.apps.insert(
            client_id.to_ascii_lowercase(),
            tenant::App {
                secret: secret.to_owned(),
                object_id: object_id.to_owned(),
            },
        );
    }

    /// The next `n` role-assignment PUTs for this principal fail 400 PrincipalNotFound
    /// (directory replication delay) — whether or not they give `principalType`, so a client's
    /// retry can be tested either way (Azure itself skips the lookup when it is given).
    pub fn replication_delay(&self, object_id: &str, n: u32) {
        self.tenant()
            .replication_delay
            .insert(object_id.to_ascii_lowercase(), n);
    }

    /// The next `n` requests (any, the token endpoint included) get 429 with `Retry-After: 1`.
    pub fn throttle(&self, n: u32) {
        self.tenant().throttle = n;
    }

    /// The clock PIM schedules follow; starts at the real time.
    pub fn now(&self) -> DateTime<Utc> {
        self.tenant().now
    }

    pub fn set_now(&self, t: DateTime<Utc>) {
        let mut tenant = lock(&self.state);
        tenant.now = t;
        tenant.settle();
    }

    /// Moves the clock: PIM removes active assignments whose endDateTime has passed.
    pub fn advance(&self, d: Duration) {
        let mut tenant = lock(&self.state);
        tenant.now += d;
        tenant.settle();
    }

    /// PIM policy at `scope` (and below, unless a nearer scope has its own): the longest
    /// AdminAssign expiration allowed (ExpirationRule `Expiration_Admin_Assignment`, which then
    /// also requires an expiration). Longer requests → 400 RoleAssignmentRequestPolicyValidationFailed.
    pub fn set_pim_max_duration(&self, scope: &str, max: Duration) {
        let mut t = self.tenant();
        let scope = t
            .scope(scope)
            .unwrap_or_else(|e| panic!("FakeAzure::set_pim_max_duration({scope}): {e}"));
        t.pim.max_duration.insert(scope.key(), max);
    }

    /// With `on`, a successful AdminAssign answers `PendingProvisioning` and is provisioned
    /// (assignment created, status `Provisioned`) at the next GET of the request.
    pub fn set_pim_pending(&self, on: bool) {
        self.tenant().pim.pending_first = on;
    }

    /// With `on`, calls need the caller (bearer token) to hold the Microsoft.Authorization
    /// action they perform at the scope (`roleAssignments/write`, `/delete`, `/read`,
    /// `roleDefinitions/…`, `roleAssignmentScheduleRequests/…`): else 403 AuthorizationFailed.
    pub fn enforce_callers(&self, on: bool) {
        self.tenant().enforce_callers = on;
    }

    /// Role assignments allowed per subscription (default 4,000, resource groups and resources
    /// included) and per management group (default 500).
    pub fn set_assignment_limits(&self, per_subscription: usize, per_management_group: usize) {
        let mut t = self.tenant();
        t.limits.subscription_assignments = per_subscription;
        t.limits.management_group_assignments = per_management_group;
    }

    /// Custom roles allowed in the tenant (default 5,000).
    pub fn set_custom_role_limit(&self, n: usize) {
        self.tenant().roles.custom_limit = n;
    }

    /// Items per page of every list (default 100).
    pub fn set_page_size(&self, n: usize) {
        self.tenant().limits.page_size = n.max(1);
    }

    /// Every role assignment, in ARM's JSON.
    pub fn assignments(&self) -> Vec<Value> {
        self.tenant()
            .assignments
            .values()
            .map(Assignment::to_json)
            .collect()
    }

    /// The custom role definitions, in ARM's JSON.
    pub fn role_definitions(&self) -> Vec<Value> {
        custom_roles(&self.tenant())
    }

    /// Seeds a role assignment directly (a standing assignment made by someone else), with no
    /// limit or directory check. `role_definition_id`: a role definition id or bare GUID.
    /// Returns its id (the existing one's if the principal already holds the role there).
    pub fn put_assignment(
        &self,
        scope: &str,
        principal_id: &str,
        role_definition_id: &str,
        description: Option<&str>,
    ) -> String {
        let mut t = self.tenant();
        let s = t
            .scope(scope)
            .unwrap_or_else(|e| panic!("FakeAzure::put_assignment({scope}): {e}"));
        seed_assignment(&mut t, &s, principal_id, role_definition_id, description)
            .unwrap_or_else(|e| panic!("FakeAzure::put_assignment: {e}"))
    }

    /// May `principal_id` perform `action` at `scope` now? The engine behind `permissions` and
    /// [`Self::enforce_callers`] (see the module documentation). False for an unknown scope.
    pub fn check_access(&self, principal_id: &str, action: &str, scope: &str) -> bool {
        let t = self.tenant();
        t.scope(scope)
            .is_ok_and(|s| t.check_access(principal_id, action, &s))
    }

    /// Every API call so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The bearer token that acts as `principal_id`: an unsigned JWT (`alg: none`) with Azure's
    /// claims (`oid`, `tid`, `aud`, …), so a client that reads its own object id from its token
    /// (as azure-pim-cli does) works too.
    pub fn token_for(principal_id: &str) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let header = json!({"alg": "none", "typ": "JWT"});
        let claims = json!({
            "aud": "https://management.azure.com/",
            "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
            "oid": principal_id,
            "sub": principal_id,
            "tid": TENANT_ID,
            "ver": "1.0",
        });
        format!("{}.{}.", b64(&header), b64(&claims))
    }
}

pub(crate) fn custom_roles(tenant: &Tenant) -> Vec<Value> {
    tenant
        .roles
        .custom
        .values()
        .map(|r| r.to_json(&r.scope))
        .collect()
}

pub(crate) fn seed_assignment(
    tenant: &mut Tenant,
    scope: &Scope,
    principal_id: &str,
    role_definition_id: &str,
    description: Option<&str>,
) -> Result<String, String> {
    let role = tenant
        .assignable_role(role_definition_id, scope)
        .map_err(|e| e.message)?;
    if let Some(a) = tenant.assignments.values().find(|a| {
        a.scope.key() == scope.key()
            && a.role == role
            && a.principal_id.eq_ignore_ascii_case(principal_id)
    }) {
        return Ok(a.id());
    }
    let principal_type = tenant
        .principals
        .get(&principal_id.to_ascii_lowercase())
        .map_or_else(|| "User".to_owned(), |(_, t)| t.clone());
    let name = new_guid();
    debug_assert!(is_guid(&name));
    let now = tenant.now;
    let a = Assignment {
        name: name.clone(),
        scope: scope.clone(),
        role,
        principal_id: principal_id.to_owned(),
        principal_type,
        description: description.map(str::to_owned),
        condition: None,
        condition_version: None,
        created_on: now,
        updated_on: now,
        created_by: None,
        updated_by: None,
    };
    let id = a.id();
    tenant.assignments.insert(name, a);
    Ok(id)
}
