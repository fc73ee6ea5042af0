//! `/_fake/…`: the stand-in's controls over HTTP, so the `fake-azure` binary is usable from a
//! shell (the same operations as [`super::FakeAzure`]'s methods).

use axum::{
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    http::{lock, Shared},
    tenant::{App, Tenant},
    FakeAzure,
};

/// `/_fake/…`: the controls of [`FakeAzure`] for a shell (see the module documentation).
pub(crate) fn control(
    state: &Shared,
    method: &Method,
    rest: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut tenant = lock(state);
    tenant.settle();
    let result = run(&mut tenant, method.as_str(), rest, query, &body);
    tenant.settle();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

fn count(body: &Value, key: &str) -> Result<u64, String> {
    body[key]
        .as_u64()
        .ok_or_else(|| format!("body {{\"{key}\": N}}"))
}

fn run(
    tenant: &mut Tenant,
    method: &str,
    rest: &str,
    query: &str,
    body: &Value,
) -> Result<Value, String> {
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    let need = |k: &str| text(k).ok_or_else(|| format!("the body needs \"{k}\""));
    match (method, rest) {
        ("GET", "clock") => Ok(json!({"now": tenant.now.to_rfc3339()})),
        ("POST", "clock") => {
            let t = text("now")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .ok_or("body {\"now\": RFC 3339 time}")?;
            tenant.now = t.with_timezone(&chrono::Utc);
            Ok(json!({"now": tenant.now.to_rfc3339()}))
        }
        ("POST", "advance") => {
            let t = body["seconds"]
                .as_i64()
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| tenant.now.checked_add_signed(d))
                .ok_or("body {\"seconds\": N}")?;
            tenant.now = t;
            Ok(json!({"now": t.to_rfc3339()}))
        }
        ("POST", "management-groups") => {
            tenant
                .hierarchy
                .add_management_group(&need("id")?, text("parent").as_deref())?;
            Ok(json!({}))
        }
        ("POST", "subscriptions") => {
            tenant
                .hierarchy
                .add_subscription(&need("id")?, text("managementGroup").as_deref())?;
            Ok(json!({}))
        }
        ("POST", "resource-groups") => {
            tenant
                .hierarchy
                .add_resource_group(&need("subscription")?, &need("name")?)?;
            Ok(json!({}))
        }
        ("POST", "principals") => {
            tenant.add_principal(&need("objectId")?, &need("principalType")?)?;
            Ok(json!({}))
        }
        ("POST", "apps") => {
            let object_id = need("objectId")?;
            if !tenant
                .principals
                .contains_key(&object_id.to_ascii_lowercase())
            {
                tenant.add_principal(&object_id, "ServicePrincipal")?;
            }
            tenant.apps.insert(
                need("clientId")?.to_ascii_lowercase(),
                App {
                    secret: need("secret")?,
                    object_id,
                },
            );
            Ok(json!({}))
        }
        ("POST", "replication-delay") => {
            let n = u32::try_from(count(body, "n")?).unwrap_or(u32::MAX);
            tenant
                .replication_delay
                .insert(need("objectId")?.to_ascii_lowercase(), n);
            Ok(json!({}))
        }
        ("POST", "throttle") => {
            tenant.throttle = u32::try_from(count(body, "n")?).unwrap_or(u32::MAX);
            Ok(json!({}))
        }
        ("POST", "pim-max-duration") => {
            let scope = tenant.scope(&need("scope")?).map_err(|e| e.message)?;
            let d = body["seconds"]
                .as_i64()
                .and_then(chrono::Duration::try_seconds)
                .ok_or("body {\"scope\", \"seconds\": N}")?;
            tenant.pim.max_duration.insert(scope.key(), d);
            Ok(json!({}))
        }
        ("POST", "pim-pending") => {
            tenant.pim.pending_first = body["on"].as_bool().ok_or("body {\"on\": true|false}")?;
            Ok(json!({}))
        }
        ("POST", "enforce-callers") => {
            tenant.enforce_callers = body["on"].as_bool().ok_or("body {\"on\": true|false}")?;
            Ok(json!({}))
        }
        ("POST", "limits") => {
            let size = |k: &str| {
                body[k]
                    .as_u64()
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            };
            if let Some(n) = size("subscriptionAssignments") {
                tenant.limits.subscription_assignments = n;
            }
            if let Some(n) = size("managementGroupAssignments") {
                tenant.limits.management_group_assignments = n;
            }
            if let Some(n) = size("customRoles") {
                tenant.roles.custom_limit = n;
            }
            if let Some(n) = size("pageSize") {
                tenant.limits.page_size = n.max(1);
            }
            Ok(json!({
                "subscriptionAssignments": tenant.limits.subscription_assignments,
                "managementGroupAssignments": tenant.limits.management_group_assignments,
                "customRoles": tenant.roles.custom_limit,
                "pageSize": tenant.limits.page_size,
            }))
        }
        ("GET", "assignments") => Ok(json!(tenant
            .assignments
            .values()
            .map(|a| a.to_json())
            .collect::<Vec<_>>())),
        ("POST", "assignments") => {
            let scope = tenant.scope(&need("scope")?).map_err(|e| e.message)?;
            super::seed_assignment(
                tenant,
                &scope,
                &need("principalId")?,
                &need("roleDefinitionId")?,
                text("description").as_deref(),
            )
            .map(|id| json!({"id": id}))
        }
        ("GET", "role-definitions") => Ok(json!(super::custom_roles(tenant))),
        ("POST", "check-access") => {
            let scope = tenant.scope(&need("scope")?).map_err(|e| e.message)?;
            Ok(
                json!({"allowed": tenant.check_access(&need("principalId")?, &need("action")?, &scope)}),
            )
        }
        ("GET", "token") => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_str(query).unwrap_or_default();
            let id = params
                .into_iter()
                .find(|(k, _)| k == "objectId")
                .map(|(_, v)| v)
                .ok_or("query ?objectId=ID")?;
            Ok(json!({"token": FakeAzure::token_for(&id)}))
        }
        ("GET", "requests") => Ok(serde_json::to_value(&tenant.requests).unwrap_or_default()),
        _ => Err(format!("no control {method} /_fake/{rest}")),
    }
}
