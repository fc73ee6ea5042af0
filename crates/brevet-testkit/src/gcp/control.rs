//! `/_fake/…`: the stand-in's controls over HTTP, so the `fake-gcp` binary is usable from a shell
//! (the same operations as [`super::FakeGcp`]'s methods).

use axum::{
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    http::{lock, Shared},
    iam::{Iam, Kind},
};

/// `/_fake/…`: the controls of [`FakeGcp`] for a shell (see the module documentation).
pub(crate) fn control(
    state: &Shared,
    method: &Method,
    rest: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    let mut iam = lock(state);
    let result: Result<Value, String> = match (method.as_str(), rest) {
        ("GET", "clock") => Ok(json!({"now": iam.now.to_rfc3339()})),
        ("POST", "clock") => text("now")
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| {
                iam.now = t.with_timezone(&chrono::Utc);
                json!({"now": iam.now.to_rfc3339()})
            })
            .ok_or_else(|| "body {\"now\": RFC 3339 time}".to_owned()),
        ("POST", "advance") => body["seconds"]
            .as_i64()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|d| iam.now.checked_add_signed(d))
            .map(|t| {
                iam.now = t;
                json!({"now": t.to_rfc3339()})
            })
            .ok_or_else(|| "body {\"seconds\": N}".to_owned()),
        ("POST", "organizations") => add(&mut iam, Kind::Organization, text("id"), None),
        ("POST", "folders") => add(&mut iam, Kind::Folder, text("id"), text("parent")),
        ("POST", "projects") => add(&mut iam, Kind::Project, text("id"), text("parent")),
        ("POST", "buckets") => add(
            &mut iam,
            Kind::Bucket,
            text("name"),
            text("project").map(|p| format!("projects/{p}")),
        ),
        ("POST", "interfere") => match (text("resource"), body["writes"].as_u64()) {
            (Some(r), Some(n)) => {
                iam.interfere(&r, u32::try_from(n).unwrap_or(u32::MAX));
                Ok(json!({}))
            }
            _ => Err("body {\"resource\": NAME, \"writes\": N}".to_owned()),
        },
        ("POST", "role-quota") => body["quota"]
            .as_u64()
            .map(|n| {
                iam.roles.quota = usize::try_from(n).unwrap_or(usize::MAX);
                json!({})
            })
            .ok_or_else(|| "body {\"quota\": N}".to_owned()),
        ("POST", "enforce-callers") => body["on"]
            .as_bool()
            .map(|on| {
                iam.enforce_callers = on;
                json!({})
            })
            .ok_or_else(|| "body {\"on\": true|false}".to_owned()),
        ("GET", "requests") => Ok(serde_json::to_value(&iam.requests).unwrap_or_default()),
        ("GET", "policy") => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_str(query).unwrap_or_default();
            let resource = params
                .into_iter()
                .find(|(k, _)| k == "resource")
                .map(|(_, v)| v)
                .unwrap_or_default();
            iam.get_policy(&resource, 3).map_err(|e| e.message)
        }
        ("POST", "test-permissions") => {
            let permissions: Vec<String> =
                serde_json::from_value(body["permissions"].clone()).unwrap_or_default();
            match (text("member"), text("resource")) {
                (Some(m), Some(r)) => {
                    let name = iam.resolve(&r).unwrap_or(r);
                    Ok(json!({"permissions": iam.test_permissions(Some(&m), &name, &permissions)}))
                }
                _ => Err("body {\"member\", \"resource\", \"permissions\": [..]}".to_owned()),
            }
        }
        _ => Err(format!("no control {method} /_fake/{rest}")),
    };
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

fn add(
    iam: &mut Iam,
    kind: Kind,
    id: Option<String>,
    parent: Option<String>,
) -> Result<Value, String> {
    let id = id.ok_or("the body names no id")?;
    iam.add(kind, &id, parent.as_deref())
        .map(|name| json!({"name": name}))
}
