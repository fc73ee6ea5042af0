//! The REST surface: ARM's `{scope}/providers/Microsoft.Authorization/…` paths and Entra ID's
//! token endpoint on one port. Scopes nest arbitrarily deep, so one fallback handler parses
//! every path itself.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{
    error::{entra_error, ArmError},
    pim::{Pim, RequestProperties},
    roles::{is_guid, RoleDefinition, RoleDefinitionProperties},
    scope::Scope,
    tenant::{AssignmentProperties, Filter, Tenant},
    FakeAzure, Recorded, TENANT_ID,
};

pub(crate) type Shared = Arc<Mutex<Tenant>>;

pub(crate) fn lock(state: &Shared) -> MutexGuard<'_, Tenant> {
    // No code panics while holding the lock on purpose; if a bug did, the data is still usable.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

const RBAC_API: &str = "2022-04-01";
const PIM_API: &str = "2020-10-01";

/// One parsed ARM call.
struct Call<'a> {
    method: &'a Method,
    scope: Scope,
    /// `roleAssignments`, as written.
    collection: &'a str,
    /// What follows the collection: `[name]`, `[name, "cancel"]`, or nothing.
    rest: Vec<&'a str>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    caller: Option<String>,
    /// `http://host:port`, for nextLink.
    base: String,
    path: &'a str,
}

impl Call<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The body's `properties`.
    fn properties<T: DeserializeOwned + Default>(&self) -> Result<T, ArmError> {
        match self.body.as_ref().map(|b| &b["properties"]) {
            None | Some(Value::Null) => {
                Err(ArmError::invalid_body("the request has no properties"))
            }
            Some(v) => serde_json::from_value(v.clone()).map_err(ArmError::invalid_body),
        }
    }
}

type Reply = Result<(u16, Option<Value>), ArmError>;

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = percent_decode(uri.path());
    let raw_query = uri.query().unwrap_or("").to_owned();
    if let Some(rest) = path.strip_prefix("/_fake/") {
        return super::control::control(&state, &method, rest, &raw_query, &body);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::to_owned);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_token_call = matches!(segments.as_slice(), [_, o, v, t] if o.eq_ignore_ascii_case("oauth2") && *v == "v2.0" && t.eq_ignore_ascii_case("token"));
    let parsed_body = if is_token_call || body.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        serde_json::from_slice::<Value>(&body)
            .map(Some)
            .map_err(ArmError::invalid_body)
    };
    let mut tenant = lock(&state);
    tenant.settle();
    let (status, reply, retry_after) = if tenant.throttle > 0 {
        tenant.throttle -= 1;
        let e = ArmError::throttled();
        (e.status, Some(e.body()), e.retry_after)
    } else if is_token_call {
        let (s, v) = token_grant(&tenant, &method, segments[0], &body);
        (s, Some(v), None)
    } else {
        let result = match &parsed_body {
            Err(e) => Err(e.clone()),
            Ok(b) => arm(
                &mut tenant,
                &method,
                &segments,
                &raw_query,
                b.clone(),
                token.as_deref(),
                &host,
                &path,
            ),
        };
        match result {
            Ok((s, v)) => (s, v, None),
            Err(e) => (e.status, Some(e.body()), e.retry_after),
        }
    };
    tenant.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: raw_query,
        body: parsed_body.ok().flatten(),
        status,
    });
    drop(tenant);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = match reply {
        Some(v) => (code, Json(v)).into_response(),
        None => code.into_response(),
    };
    if let Some(s) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

/// The object id a bearer token acts as (see [`FakeAzure::token_for`]).
pub(crate) fn caller_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["oid"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[allow(clippy::too_many_arguments)]
fn arm(
    tenant: &mut Tenant,
    method: &Method,
    segments: &[&str],
    raw_query: &str,
    body: Option<Value>,
    token: Option<&str>,
    host: &str,
    path: &str,
) -> Reply {
    // The last `providers/Microsoft.Authorization/<collection>` splits scope from resource
    // (a resource scope has its own `providers/<namespace>` before it).
    let split = (0..segments.len().saturating_sub(2)).rev().find(|&i| {
        segments[i].eq_ignore_ascii_case("providers")
            && segments[i + 1].eq_ignore_ascii_case("Microsoft.Authorization")
    });
    let Some(i) = split else {
        return Err(ArmError::not_found(
            "NotFound",
            format!(
                "The stand-in serves no {method} {path}: it serves Microsoft.Authorization only."
            ),
        ));
    };
    let collection = segments[i + 2];
    let wanted = match collection.to_ascii_lowercase().as_str() {
        "roleassignments" | "roledefinitions" | "permissions" => RBAC_API,
        "roleassignmentschedulerequests" | "roleassignmentschedules" | "roleassignmentscheduleinstances" => PIM_API,
        _ => {
            return Err(ArmError::bad_request(
                "InvalidResourceType",
                format!("The resource type '{collection}' could not be found in the namespace 'Microsoft.Authorization' in the stand-in."),
            ))
        }
    };
    let query: Vec<(String, String)> = serde_urlencoded::from_str(raw_query).unwrap_or_default();
    let version = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.as_str());
    match version {
        None => {
            return Err(ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ))
        }
        Some(v) if v == wanted => {}
        Some(v) if is_api_version(v) => {
            return Err(ArmError::bad_request(
                "NoRegisteredProviderFound",
                format!(
                    "The resource type '{collection}' could not be found in the namespace 'Microsoft.Authorization' for api version '{v}'. The supported api-versions are '{wanted}'."
                ),
            ))
        }
        Some(v) => {
            return Err(ArmError::bad_request(
                "InvalidApiVersionParameter",
                format!("The api-version '{v}' is invalid. The supported versions are '{wanted}'."),
            ))
        }
    }
    let raw_scope = Scope::parse(&segments[..i]).ok_or_else(|| {
        ArmError::bad_request(
            "InvalidScope",
            format!(
                "The scope '/{}' is not a valid ARM scope.",
                segments[..i].join("/")
            ),
        )
    })?;
    let caller = token.and_then(caller_of);
    if tenant.enforce_callers {
        match (token, &caller) {
            (None, _) => {
                return Err(ArmError::new(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                ))
            }
            (Some(_), None) => {
                return Err(ArmError::new(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                ))
            }
            _ => {}
        }
    }
    let scope = tenant.hierarchy.resolve(&raw_scope)?;
    let call = Call {
        method,
        scope,
        collection,
        rest: segments[i + 3..].to_vec(),
        query,
        body,
        caller,
        base: format!("http://{host}"),
        path,
    };
    dispatch(tenant, &call)
}

/// `2022-04-01`, `2020-10-01-preview`.
fn is_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn authorize(tenant: &Tenant, call: &Call, action: &str) -> Result<(), ArmError> {
    if !tenant.enforce_callers {
        return Ok(());
    }
    let caller = call.caller.as_deref().unwrap_or("");
    if tenant.check_access(caller, action, &call.scope) {
        Ok(())
    } else {
        Err(ArmError::authorization_failed(
            caller,
            action,
            &call.scope.id(),
        ))
    }
}

fn no_route(call: &Call) -> ArmError {
    ArmError::new(
        405,
        "MethodNotAllowed",
        format!(
            "The stand-in does not serve {} on {}.",
            call.method, call.path
        ),
    )
}

fn dispatch(tenant: &mut Tenant, call: &Call) -> Reply {
    let m = call.method.as_str();
    match (
        call.collection.to_ascii_lowercase().as_str(),
        call.rest.as_slice(),
    ) {
        ("roleassignments", []) if m == "GET" => {
            authorize(tenant, call, "Microsoft.Authorization/roleAssignments/read")?;
            let filter = Filter::parse(call.param("$filter"))?;
            let items = tenant
                .list_assignments(&call.scope, &filter)
                .into_iter()
                .map(|a| a.to_json())
                .collect();
            page(tenant, call, items)
        }
        ("roleassignments", [name]) => match m {
            "PUT" => {
                authorize(
                    tenant,
                    call,
                    "Microsoft.Authorization/roleAssignments/write",
                )?;
                let props: AssignmentProperties = call.properties()?;
                let (status, body) =
                    tenant.put_assignment(&call.scope, name, props, call.caller.as_deref())?;
                Ok((status, Some(body)))
            }
            "GET" => {
                authorize(tenant, call, "Microsoft.Authorization/roleAssignments/read")?;
                tenant
                    .assignment_at(&call.scope, name)
                    .map(|a| (200, Some(a.to_json())))
                    .ok_or_else(|| {
                        ArmError::not_found(
                            "RoleAssignmentNotFound",
                            format!("The role assignment '{name}' is not found."),
                        )
                    })
            }
            "DELETE" => {
                authorize(
                    tenant,
                    call,
                    "Microsoft.Authorization/roleAssignments/delete",
                )?;
                let found = tenant
                    .assignment_at(&call.scope, name)
                    .map(|a| a.name.to_ascii_lowercase());
                Ok(match found.and_then(|k| tenant.assignments.remove(&k)) {
                    Some(a) => (200, Some(a.to_json())),
                    // Azure: "already deleted or does not exist".
                    None => (204, None),
                })
            }
            _ => Err(no_route(call)),
        },
        ("roledefinitions", []) if m == "GET" => {
            authorize(tenant, call, "Microsoft.Authorization/roleDefinitions/read")?;
            let items = list_definitions(tenant, call)?;
            page(tenant, call, items)
        }
        ("roledefinitions", [guid]) => match m {
            "PUT" => {
                authorize(
                    tenant,
                    call,
                    "Microsoft.Authorization/roleDefinitions/write",
                )?;
                put_definition(tenant, call, guid)
            }
            "GET" => {
                authorize(tenant, call, "Microsoft.Authorization/roleDefinitions/read")?;
                tenant
                    .roles
                    .get(guid)
                    .map(|r| (200, Some(r.to_json(&call.scope))))
                    .ok_or_else(|| {
                        ArmError::not_found(
                            "RoleDefinitionDoesNotExist",
                            "The specified role definition with ID '".to_owned()
                                + guid
                                + "' does not exist.",
                        )
                    })
            }
            "DELETE" => {
                authorize(
                    tenant,
                    call,
                    "Microsoft.Authorization/roleDefinitions/delete",
                )?;
                let key = guid.to_ascii_lowercase();
                if tenant.roles.builtin.contains_key(&key) {
                    return Err(ArmError::bad_request(
                        "RoleDefinitionUpdateNotPermitted",
                        "Built-in role definitions cannot be created, updated or deleted.",
                    ));
                }
                if !tenant.roles.custom.contains_key(&key) {
                    return Ok((204, None));
                }
                if tenant.assignments.values().any(|a| a.role == key) {
                    return Err(ArmError::conflict(
                        "RoleDefinitionHasAssignments",
                        "There are existing role assignments referencing role (code: RoleDefinitionHasAssignments)",
                    ));
                }
                let role = tenant.roles.custom.remove(&key);
                Ok((200, role.map(|r| r.to_json(&call.scope))))
            }
            _ => Err(no_route(call)),
        },
        ("permissions", []) if m == "GET" => {
            let caller = call.caller.as_deref().unwrap_or("");
            let value: Vec<Value> = tenant
                .permissions_of(caller, &call.scope)
                .into_iter()
                .map(|b| serde_json::to_value(b).unwrap_or_default())
                .collect();
            page(tenant, call, value)
        }
        ("roleassignmentschedulerequests", []) if m == "GET" => {
            authorize(
                tenant,
                call,
                "Microsoft.Authorization/roleAssignmentScheduleRequests/read",
            )?;
            let filter = Filter::parse(call.param("$filter"))?;
            let items = Pim::list_requests(tenant, &call.scope, &filter);
            page(tenant, call, items)
        }
        ("roleassignmentschedulerequests", [name]) => match m {
            "PUT" => {
                authorize(
                    tenant,
                    call,
                    "Microsoft.Authorization/roleAssignmentScheduleRequests/write",
                )?;
                let props: RequestProperties = call.properties()?;
                Pim::create(tenant, &call.scope, name, props, call.caller.as_deref())
                    .map(|v| (201, Some(v)))
            }
            "GET" => {
                authorize(
                    tenant,
                    call,
                    "Microsoft.Authorization/roleAssignmentScheduleRequests/read",
                )?;
                Pim::get_request(tenant, &call.scope, name).map(|v| (200, Some(v)))
            }
            _ => Err(no_route(call)),
        },
        ("roleassignmentschedulerequests", [name, action])
            if m == "POST" && action.eq_ignore_ascii_case("cancel") =>
        {
            authorize(
                tenant,
                call,
                "Microsoft.Authorization/roleAssignmentScheduleRequests/cancel/action",
            )?;
            Pim::cancel(tenant, &call.scope, name).map(|()| (200, None))
        }
        (c @ ("roleassignmentschedules" | "roleassignmentscheduleinstances"), rest)
            if m == "GET" && rest.len() <= 1 =>
        {
            let instances = c == "roleassignmentscheduleinstances";
            let action = if instances {
                "Microsoft.Authorization/roleAssignmentScheduleInstances/read"
            } else {
                "Microsoft.Authorization/roleAssignmentSchedules/read"
            };
            authorize(tenant, call, action)?;
            match rest {
                [name] => {
                    Pim::get_schedule(tenant, &call.scope, name, instances).map(|v| (200, Some(v)))
                }
                _ => {
                    let filter = Filter::parse(call.param("$filter"))?;
                    let items = Pim::list_schedules(tenant, &call.scope, &filter, instances);
                    page(tenant, call, items)
                }
            }
        }
        _ => Err(no_route(call)),
    }
}

/// One page of `items` (`$skipToken` = offset), with ARM's `nextLink` when more follow.
fn page(tenant: &Tenant, call: &Call, items: Vec<Value>) -> Reply {
    let start: usize = match call.param("$skipToken") {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            ArmError::bad_request(
                "InvalidSkipToken",
                format!("The skip token '{t}' is not valid."),
            )
        })?,
    };
    let size = tenant.limits.page_size.max(1);
    let value: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
    let mut out = json!({"value": value});
    if start.saturating_add(size) < items.len() {
        let mut query: Vec<(String, String)> = call
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skipToken"))
            .cloned()
            .collect();
        query.push(("$skipToken".to_owned(), (start + size).to_string()));
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        out["nextLink"] = json!(format!("{}{}?{query}", call.base, call.path));
    }
    Ok((200, Some(out)))
}

/// `$filter` of the role definition list: `type eq 'CustomRole'|'BuiltInRole'`,
/// `roleName eq '…'`, `atScopeAndBelow()`, joined by `and`.
fn list_definitions(tenant: &Tenant, call: &Call) -> Result<Vec<Value>, ArmError> {
    let mut kind: Option<bool> = None;
    let mut name: Option<String> = None;
    let mut below = false;
    if let Some(f) = call
        .param("$filter")
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        for clause in split_and(f) {
            let value = |prefix: &str| {
                clause
                    .get(..prefix.len())
                    .filter(|p| p.eq_ignore_ascii_case(prefix))
                    .map(|_| clause[prefix.len()..].trim().trim_matches('\'').to_owned())
            };
            if clause.eq_ignore_ascii_case("atScopeAndBelow()") {
                below = true;
            } else if let Some(v) = value("type eq ") {
                kind = Some(v.eq_ignore_ascii_case("CustomRole"));
            } else if let Some(v) = value("roleName eq ") {
                name = Some(v);
            } else {
                return Err(ArmError::bad_request(
                    "UnsupportedQuery",
                    format!("The filter '{f}' is not supported."),
                ));
            }
        }
    }
    let assignable_here = |r: &RoleDefinition| {
        !r.custom
            || r.assignable_scopes
                .iter()
                .filter_map(|s| Scope::parse_str(s))
                .any(|s| {
                    tenant.hierarchy.is_within(&call.scope, &s)
                        || (below && tenant.hierarchy.is_within(&s, &call.scope))
                })
    };
    Ok(tenant
        .roles
        .all()
        .filter(|r| kind.is_none_or(|custom| r.custom == custom))
        .filter(|r| {
            name.as_ref()
                .is_none_or(|n| r.role_name.eq_ignore_ascii_case(n))
        })
        .filter(|r| assignable_here(r))
        .map(|r| r.to_json(&call.scope))
        .collect())
}

fn split_and(f: &str) -> Vec<&str> {
    let lower = f.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = lower[start..].find(" and ") {
        out.push(f[start..start + i].trim());
        start += i + 5;
    }
    out.push(f[start..].trim());
    out
}

fn put_definition(tenant: &mut Tenant, call: &Call, guid: &str) -> Reply {
    if !is_guid(guid) {
        return Err(ArmError::bad_request(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{guid}' is not valid. The role definition ID must be a GUID."),
        ));
    }
    let props: RoleDefinitionProperties = call.properties()?;
    let (role_name, assignable_scopes) = {
        let hierarchy = &tenant.hierarchy;
        tenant
            .roles
            .validate(guid, &props, &tenant.operations, |s| hierarchy.resolve(s))?
    };
    let key = guid.to_ascii_lowercase();
    let now = tenant.now;
    let previous = tenant.roles.custom.get(&key);
    let role = RoleDefinition {
        name: previous.map_or_else(|| guid.to_owned(), |p| p.name.clone()),
        role_name,
        description: props.description.unwrap_or_default(),
        custom: true,
        permissions: props.permissions,
        assignable_scopes,
        scope: previous.map_or_else(|| call.scope.clone(), |p| p.scope.clone()),
        created_on: Some(previous.and_then(|p| p.created_on).unwrap_or(now)),
        updated_on: Some(now),
        created_by: previous.map_or_else(|| call.caller.clone(), |p| p.created_by.clone()),
        updated_by: call.caller.clone(),
    };
    let body = role.to_json(&call.scope);
    tenant.roles.custom.insert(key, role);
    // The generated clients accept only 201 for this PUT, create or update alike.
    Ok((201, Some(body)))
}

/// Entra ID's client-credentials grant (`POST /{tenant}/oauth2/v2.0/token`), answered with a
/// token that acts as the app's service principal.
fn token_grant(tenant: &Tenant, method: &Method, tenant_id: &str, body: &[u8]) -> (u16, Value) {
    if method != Method::POST {
        return (
            405,
            entra_error(
                "invalid_request",
                900561,
                "The endpoint only accepts POST requests.",
            ),
        );
    }
    if !tenant_id.eq_ignore_ascii_case(TENANT_ID) {
        return (
            400,
            entra_error("invalid_tenant", 90002, &format!("Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")),
        );
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("client_credentials") {
        return (
            400,
            entra_error(
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type: only client_credentials is served.",
            ),
        );
    }
    let scope = field("scope").unwrap_or("");
    if !scope.ends_with("/.default") {
        return (
            400,
            entra_error("invalid_scope", 1002012, &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")),
        );
    }
    let client_id = field("client_id").unwrap_or("");
    let Some(app) = tenant.apps.get(&client_id.to_ascii_lowercase()) else {
        return (
            400,
            entra_error("unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{TENANT_ID}'.")),
        );
    };
    if field("client_secret") != Some(app.secret.as_str()) {
        return (
            401,
            entra_error("invalid_client", 7000215, &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.")),
        );
    }
    (
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": FakeAzure::token_for(&app.object_id)}),
    )
}

/// Decodes `%XX` escapes; invalid ones stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
