//! The REST surface: Google's paths on one port. axum cannot route `{id}:verb` segments, so one
//! fallback handler parses every path itself.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use base64::Engine as _;
use brevet_catalog::Cloud;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};

use super::{
    error::ApiError,
    iam::{bucket_name, Iam, Kind},
    policy::Policy,
    roles::{self, CreateRole, ListOptions, RoleFields},
    FakeGcp, Recorded,
};

pub(crate) type Shared = Arc<Mutex<Iam>>;

pub(crate) fn lock(state: &Shared) -> MutexGuard<'_, Iam> {
    // No code panics while holding the lock on purpose; if a bug did, the data is still usable.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn router(state: Shared) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// One parsed API call.
struct Call<'a> {
    method: &'a Method,
    segments: Vec<&'a str>,
    verb: Option<&'a str>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    caller: Option<String>,
}

impl Call<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn body<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        match &self.body {
            None => Ok(T::default()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}"))),
        }
    }
}

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
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let caller = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .and_then(|t| t.strip_prefix("member:").map(str::to_owned));
    // The token endpoint takes a form, not JSON.
    let parsed_body = if body.iter().all(u8::is_ascii_whitespace) || path == "/token" {
        Ok(None)
    } else {
        serde_json::from_slice::<Value>(&body)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
    };
    let result = match (&parsed_body, path.as_str()) {
        (_, "/token") => token(&body),
        (Err(e), _) => Err(e.clone()),
        (Ok(b), _) => {
            let (segments, verb) = split_path(&path);
            let call = Call {
                method: &method,
                segments,
                verb,
                query: serde_urlencoded::from_str(&raw_query).unwrap_or_default(),
                body: b.clone(),
                caller,
            };
            dispatch(&mut lock(&state), &call)
        }
    };
    let status = result.as_ref().map_or_else(|e| e.code, |_| 200);
    lock(&state).requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: raw_query,
        body: parsed_body.ok().flatten(),
        reason: header("x-goog-request-reason"),
        status,
    });
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST),
            Json(e.body()),
        )
            .into_response(),
    }
}

/// `/v1/projects/p1:getIamPolicy` → (["v1","projects","p1"], Some("getIamPolicy")).
fn split_path(path: &str) -> (Vec<&str>, Option<&str>) {
    let mut segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut verb = None;
    if let Some(last) = segments.last_mut() {
        if let Some((head, v)) = last.split_once(':') {
            *last = head;
            verb = Some(v);
        }
    }
    (segments, verb)
}

fn dispatch(iam: &mut Iam, call: &Call) -> Result<Value, ApiError> {
    let m = call.method.as_str();
    match (call.segments.as_slice(), call.verb, m) {
        // Resource Manager v1 (projects, organizations) and v3 (also folders).
        (["v1", kind @ ("projects" | "organizations"), id], Some(verb), "POST")
        | (["v3", kind @ ("projects" | "folders" | "organizations"), id], Some(verb), "POST") => {
            let name = iam
                .resolve(&format!("{kind}/{id}"))
                .ok_or_else(ApiError::no_permission)?;
            if iam.resources[&name].kind == Kind::Bucket {
                return Err(ApiError::no_permission());
            }
            resource_manager_iam(iam, call, &name, verb)
        }
        ([version @ ("v1" | "v3"), "projects", id], None, "GET") => {
            let name = iam
                .resolve(&format!("projects/{id}"))
                .ok_or_else(ApiError::no_permission)?;
            authorize(iam, call, &name, "resourcemanager.projects.get")?;
            Ok(project_resource(iam, &name, version))
        }
        // IAM v1 custom roles.
        (["v1", kind @ ("projects" | "organizations"), id, "roles"], None, _) => {
            let parent = role_parent(iam, kind, id)?;
            match m {
                "POST" => {
                    authorize(iam, call, &parent, "iam.roles.create")?;
                    let request: CreateRole = call.body()?;
                    iam.create_role(&parent, request)
                }
                "GET" => {
                    authorize(iam, call, &parent, "iam.roles.list")?;
                    iam.settle();
                    let options = ListOptions {
                        show_deleted: call.param("showDeleted") == Some("true"),
                        full: call.param("view") == Some("FULL"),
                        page_size: call.param("pageSize").and_then(|s| s.parse().ok()),
                        page_token: call.param("pageToken").map(str::to_owned),
                    };
                    iam.roles.list(&parent, options)
                }
                _ => Err(not_found_path(call)),
            }
        }
        (["v1", kind @ ("projects" | "organizations"), id, "roles", role], verb, _) => {
            let parent = role_parent(iam, kind, id)?;
            let name = format!("{parent}/roles/{role}");
            iam.settle();
            match (m, verb) {
                ("GET", None) => {
                    authorize(iam, call, &parent, "iam.roles.get")?;
                    iam.roles.get(&name)
                }
                ("PATCH", None) => {
                    authorize(iam, call, &parent, "iam.roles.update")?;
                    let fields: RoleFields = call.body()?;
                    let mask = call.param("updateMask").map(str::to_owned);
                    iam.patch_role(&name, mask.as_deref(), fields)
                }
                ("DELETE", None) => {
                    authorize(iam, call, &parent, "iam.roles.delete")?;
                    let etag = call.param("etag").map(str::to_owned);
                    iam.delete_role(&name, etag.as_deref())
                }
                ("POST", Some("undelete")) => {
                    authorize(iam, call, &parent, "iam.roles.undelete")?;
                    #[derive(Deserialize, Default)]
                    struct Undelete {
                        etag: Option<String>,
                    }
                    let body: Undelete = call.body()?;
                    iam.undelete_role(&name, body.etag.as_deref())
                }
                _ => Err(not_found_path(call)),
            }
        }
        (["v1", "permissions"], Some("queryTestablePermissions"), "POST") => {
            query_testable_permissions(iam, call)
        }
        (["v1", "roles", rest @ ..], None, "GET") if !rest.is_empty() => {
            let name = format!("roles/{}", rest.join("/"));
            iam.catalog
                .role(Cloud::Gcp, &name)
                .filter(|r| r.name == name)
                .map(|r| {
                    let permissions: Vec<&str> = r
                        .permissions
                        .iter()
                        .filter_map(|&i| iam.catalog.permissions().get(i as usize).map(|p| p.name.as_str()))
                        .collect();
                    let mut v = json!({"name": r.name, "title": r.title, "description": r.description,
                        "includedPermissions": permissions, "etag": "AA=="});
                    if !r.stage.is_empty() && r.stage != "ALPHA" {
                        v["stage"] = json!(r.stage);
                    }
                    v
                })
                .ok_or_else(|| ApiError::not_found(format!("The role named {name} was not found.")))
        }
        // Cloud Storage JSON API v1.
        (["storage", "v1", "b", bucket, rest @ ..], None, _) => {
            let name = bucket_name(bucket);
            if !iam.resources.contains_key(&name) {
                return Err(ApiError::not_found("The specified bucket does not exist."));
            }
            storage(iam, call, &name, bucket, rest)
        }
        _ => Err(not_found_path(call)),
    }
}

/// IAM v1 `permissions.queryTestablePermissions` (gcloud calls it before `iam roles create`):
/// the catalog's GCP permissions usable at the resource's level, all as SUPPORTED in custom roles.
fn query_testable_permissions(iam: &Iam, call: &Call) -> Result<Value, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Query {
        #[serde(default)]
        full_resource_name: String,
        page_size: Option<usize>,
        page_token: Option<String>,
    }
    let q: Query = call.body()?;
    let name = q
        .full_resource_name
        .strip_prefix("//")
        // gcloud names the host of its endpoint override, not cloudresourcemanager's.
        .and_then(|n| n.split_once('/'))
        .and_then(|(_, n)| iam.resolve(n))
        .ok_or_else(ApiError::no_permission)?;
    let project_level = matches!(iam.resources[&name].kind, Kind::Project);
    let size = q.page_size.filter(|&n| n > 0).unwrap_or(100).min(1_000);
    let start: usize = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::invalid(format!("Invalid page token: {t}")))?,
    };
    let testable: Vec<&brevet_catalog::Permission> = iam
        .catalog
        .permissions()
        .iter()
        .filter(|p| p.cloud == Cloud::Gcp)
        .filter(|p| !project_level || roles::usable_in_project_roles(p))
        .collect();
    let page: Vec<Value> = testable
        .iter()
        .skip(start)
        .take(size)
        .map(|p| json!({"name": p.name, "stage": "GA"}))
        .collect();
    let mut out = json!({"permissions": page});
    if start + size < testable.len() {
        out["nextPageToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

fn not_found_path(call: &Call) -> ApiError {
    ApiError::not_found(format!(
        "The stand-in serves no {} {}{}",
        call.method,
        call.segments.join("/"),
        call.verb.map(|v| format!(":{v}")).unwrap_or_default()
    ))
}

fn role_parent(iam: &Iam, kind: &str, id: &str) -> Result<String, ApiError> {
    iam.resolve(&format!("{kind}/{id}"))
        .filter(|n| !n.contains("/buckets/"))
        .ok_or_else(ApiError::no_permission)
}

/// With [`FakeGcp::enforce_callers`] on, an admin call needs its permission on the resource, as
/// Google checks it (`Permission 'X' denied on resource 'Y' (or it may not exist).`).
fn authorize(iam: &mut Iam, call: &Call, name: &str, permission: &str) -> Result<(), ApiError> {
    if !iam.enforce_callers {
        return Ok(());
    }
    let held = iam.test_permissions(call.caller.as_deref(), name, &[permission.to_owned()]);
    if held.is_empty() {
        return Err(ApiError::denied(format!(
            "Permission '{permission}' denied on resource '{name}' (or it may not exist)."
        )));
    }
    Ok(())
}

fn resource_manager_iam(
    iam: &mut Iam,
    call: &Call,
    name: &str,
    verb: &str,
) -> Result<Value, ApiError> {
    let noun = match iam.resources[name].kind {
        Kind::Organization => "organizations",
        Kind::Folder => "folders",
        _ => "projects",
    };
    match verb {
        "getIamPolicy" => {
            authorize(
                iam,
                call,
                name,
                &format!("resourcemanager.{noun}.getIamPolicy"),
            )?;
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "camelCase")]
            struct Options {
                requested_policy_version: Option<i64>,
            }
            #[derive(Deserialize, Default)]
            struct GetRequest {
                options: Option<Options>,
            }
            let request: GetRequest = call.body()?;
            let version = request
                .options
                .and_then(|o| o.requested_policy_version)
                .unwrap_or(0);
            check_requested_version(version)?;
            iam.get_policy(name, version)
        }
        "setIamPolicy" => {
            authorize(
                iam,
                call,
                name,
                &format!("resourcemanager.{noun}.setIamPolicy"),
            )?;
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "camelCase")]
            struct SetRequest {
                policy: Option<Policy>,
                update_mask: Option<String>,
            }
            let request: SetRequest = call.body()?;
            let policy = request
                .policy
                .ok_or_else(|| ApiError::invalid("The request has no policy."))?;
            iam.set_policy(name, policy, request.update_mask.as_deref())
        }
        "testIamPermissions" => {
            #[derive(Deserialize, Default)]
            struct TestRequest {
                #[serde(default)]
                permissions: Vec<String>,
            }
            let request: TestRequest = call.body()?;
            if let Some(p) = request.permissions.iter().find(|p| p.contains('*')) {
                return Err(ApiError::invalid(format!(
                    "Permissions with wildcards ({p}) are not allowed."
                )));
            }
            let held = iam.test_permissions(call.caller.as_deref(), name, &request.permissions);
            Ok(if held.is_empty() {
                json!({})
            } else {
                json!({"permissions": held})
            })
        }
        _ => Err(not_found_path(call)),
    }
}

fn check_requested_version(version: i64) -> Result<(), ApiError> {
    if matches!(version, 0 | 1 | 3) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid requestedPolicyVersion {version}: the valid values are 0, 1 and 3."
        )))
    }
}

fn storage(
    iam: &mut Iam,
    call: &Call,
    name: &str,
    bucket: &str,
    rest: &[&str],
) -> Result<Value, ApiError> {
    match (call.method.as_str(), rest) {
        ("GET", []) => {
            authorize(iam, call, name, "storage.buckets.get")?;
            let r = &iam.resources[name];
            let project = r
                .parent
                .as_deref()
                .and_then(|p| iam.resources.get(p))
                .map_or(0, |p| p.number);
            Ok(
                json!({"kind": "storage#bucket", "id": bucket, "name": bucket, "projectNumber": project.to_string(),
                "location": "US", "storageClass": "STANDARD", "timeCreated": r.created.to_rfc3339(),
                "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "bucketPolicyOnly": {"enabled": true}}}),
            )
        }
        ("GET", ["iam"]) => {
            authorize(iam, call, name, "storage.buckets.getIamPolicy")?;
            let version = match call.param("optionsRequestedPolicyVersion") {
                None => 0,
                Some(v) => v.parse().map_err(|_| {
                    ApiError::invalid(format!("Invalid optionsRequestedPolicyVersion: {v}"))
                })?,
            };
            check_requested_version(version)?;
            iam.get_policy(name, version)
        }
        ("PUT", ["iam"]) => {
            authorize(iam, call, name, "storage.buckets.setIamPolicy")?;
            let policy = call
                .body
                .clone()
                .ok_or_else(|| ApiError::invalid("The request has no policy."))
                .and_then(|v| {
                    serde_json::from_value::<Policy>(v).map_err(|e| {
                        ApiError::invalid(format!("Invalid JSON payload received. {e}"))
                    })
                })?;
            iam.set_policy(name, policy, None)
        }
        ("GET", ["iam", "testPermissions"]) => {
            let permissions: Vec<String> = call
                .query
                .iter()
                .filter(|(k, _)| k == "permissions")
                .map(|(_, v)| v.clone())
                .collect();
            if permissions.is_empty() {
                return Err(ApiError::invalid("Required parameter: permissions"));
            }
            if let Some(p) = permissions.iter().find(|p| !p.starts_with("storage.")) {
                return Err(ApiError::invalid(format!("Invalid permission: {p}. Only storage.* permissions can be tested on a bucket.")));
            }
            let held = iam.test_permissions(call.caller.as_deref(), name, &permissions);
            let mut out = json!({"kind": "storage#testIamPermissionsResponse"});
            if !held.is_empty() {
                out["permissions"] = json!(held);
            }
            Ok(out)
        }
        _ => Err(not_found_path(call)),
    }
}

fn project_resource(iam: &Iam, name: &str, version: &str) -> Value {
    let r = &iam.resources[name];
    let id = name.trim_start_matches("projects/");
    let parent = r.parent.as_deref().and_then(|p| p.split_once('/'));
    if version == "v1" {
        let mut v = json!({"projectNumber": r.number.to_string(), "projectId": id, "lifecycleState": "ACTIVE",
            "name": id, "createTime": r.created.to_rfc3339()});
        if let Some((kind, pid)) = parent {
            v["parent"] = json!({"type": kind.trim_end_matches('s'), "id": pid});
        }
        v
    } else {
        let mut v = json!({"name": format!("projects/{}", r.number), "projectId": id, "state": "ACTIVE",
            "displayName": id, "createTime": r.created.to_rfc3339(), "etag": "W/\"0\""});
        if let Some(p) = &r.parent {
            v["parent"] = json!(p);
        }
        v
    }
}

/// OAuth2 JWT-bearer grant (a service-account key file whose `token_uri` points here). The
/// assertion's signature is NOT checked: the token just names `serviceAccount:<iss>`.
fn token(body: &[u8]) -> Result<Value, ApiError> {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err(ApiError::invalid(
            "grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer",
        ));
    }
    let claims = field("assertion")
        .and_then(|a| a.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| ApiError::invalid("The assertion is not a JWT."))?;
    let iss = claims["iss"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("The JWT has no iss claim."))?;
    Ok(
        json!({"access_token": FakeGcp::token_for(&format!("serviceAccount:{iss}")), "token_type": "Bearer", "expires_in": 3600}),
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
