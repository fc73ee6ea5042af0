//! The REST calls the GCP provider makes (Resource Manager v3 and Storage allow policies, IAM v1
//! custom roles), over one reqwest client: a thin client rather than Google's generated crates,
//! because Brevet needs four methods, exact control of the etag and of Google's error bodies,
//! and one base-URL override for every API (a stand-in, a private endpoint). Tokens come from
//! `gcp_auth` (Application Default Credentials, a service-account key file, the metadata server).
//! Every call is timed and recorded in the operation's context.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Credentials, GcpResource};
use crate::{CallOutcome, OpContext, ProviderError};

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How often one read-modify-write of a policy is tried when someone else writes in between.
pub const RMW_ATTEMPTS: u32 = 8;

/// Google's error body, as much of it as Brevet reads.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub http: u16,
    /// `ABORTED`, `FAILED_PRECONDITION`, `RESOURCE_EXHAUSTED` …
    pub status: String,
    pub message: String,
}

impl ApiError {
    /// The provider error class: concurrent edits are conflicts (re-read and retry), 429 and
    /// 5xx are throttling and unavailability, the rest are refusals.
    pub fn into_provider(self, what: &str) -> ProviderError {
        let text = format!(
            "{what}: Google answered {} {}: {}",
            self.http, self.status, self.message
        );
        match self.http {
            409 if self.status == "ABORTED" => ProviderError::Conflict(text),
            412 => ProviderError::Conflict(text),
            429 => ProviderError::Throttled(text),
            500..=599 => ProviderError::Unreachable(text),
            _ => ProviderError::Target(text),
        }
    }

    fn is_stale_etag(&self) -> bool {
        (self.http == 409 && self.status == "ABORTED") || self.http == 412
    }
}

pub enum Failure {
    Api(ApiError),
    Other(ProviderError),
}

impl Failure {
    pub fn into_provider(self, what: &str) -> ProviderError {
        match self {
            Failure::Api(a) => a.into_provider(what),
            Failure::Other(e) => e,
        }
    }
}

enum Auth {
    Provider(Arc<dyn gcp_auth::TokenProvider>),
}

pub struct GcpClient {
    http: reqwest::Client,
    auth: Auth,
    crm: String,
    iam: String,
    storage: String,
}

impl GcpClient {
    pub async fn new(
        credentials: &Credentials,
        endpoint: Option<&str>,
    ) -> Result<Self, ProviderError> {
        let provider: Arc<dyn gcp_auth::TokenProvider> = match credentials {
            Credentials::ApplicationDefault => gcp_auth::provider().await.map_err(|e| {
                ProviderError::Config(format!(
                    "no Google Application Default Credentials ({e}): set GOOGLE_APPLICATION_CREDENTIALS, \
                     run on GCP with a service account, or set credentials = {{ key_file = \"…\" }}"
                ))
            })?,
            Credentials::MetadataServer => Arc::new(
                gcp_auth::MetadataServiceAccount::new()
                    .await
                    .map_err(|e| ProviderError::Config(format!("the GCE metadata server: {e}")))?,
            ),
            Credentials::KeyFile(path) => Arc::new(
                gcp_auth::CustomServiceAccount::from_file(path).map_err(|e| {
                    ProviderError::Config(format!(
                        "service-account key file {}: {e}",
                        path.display()
                    ))
                })?,
            ),
        };
        let base = |default: &str| {
            endpoint
                .map(|e| e.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| default.to_owned())
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?,
            auth: Auth::Provider(provider),
            crm: base("https://cloudresourcemanager.googleapis.com"),
            iam: base("https://iam.googleapis.com"),
            storage: base("https://storage.googleapis.com"),
        })
    }

    async fn token(&self) -> Result<String, Failure> {
        match &self.auth {
            Auth::Provider(p) => p
                .token(&[SCOPE])
                .await
                .map(|t| t.as_str().to_owned())
                .map_err(|e| {
                    Failure::Other(ProviderError::Unreachable(format!(
                        "getting a Google access token: {e}"
                    )))
                }),
        }
    }

    /// One call: `name` is Google's method name for the record (`setIamPolicy`), `target` what
    /// it acts on.
    async fn call(
        &self,
        cx: &OpContext,
        name: &str,
        target: &str,
        method: Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let pending = cx.start(name, target);
        let result = self.send(cx, method, url, body).await;
        pending.finish(
            match &result {
                Ok(_) => CallOutcome::Ok,
                Err(Failure::Api(a)) => CallOutcome::Error(format!("{} {}", a.http, a.status)),
                Err(Failure::Other(e)) => CallOutcome::Error(e.class().into()),
            },
            None,
        );
        result
    }

    async fn send(
        &self,
        cx: &OpContext,
        method: Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let token = self.token().await?;
        let mut req = self.http.request(method, &url).bearer_auth(token);
        if let Some(reason) = cx.reason() {
            // Lands in Cloud Audit Logs beside the change. Header values are one line of
            // visible ASCII: anything else is replaced.
            let clean: String = reason
                .chars()
                .take(400)
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            req = req.header("x-goog-request-reason", clean);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::Other(ProviderError::Unreachable(format!(
                "{}: {e}",
                url.split('?').next().unwrap_or_default()
            )))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(if text.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    Failure::Other(ProviderError::Target(format!(
                        "Google's answer is not JSON ({e})"
                    )))
                })?
            });
        }
        Err(Failure::Api(api_error(status, &text)))
    }

    fn policy_url(&self, r: &GcpResource, write: bool) -> (Method, String) {
        match r {
            GcpResource::Bucket { name, .. } => {
                let base = format!("{}/storage/v1/b/{}/iam", self.storage, enc(name));
                if write {
                    (Method::PUT, base)
                } else {
                    (
                        Method::GET,
                        format!("{base}?optionsRequestedPolicyVersion=3"),
                    )
                }
            }
            other => (
                Method::POST,
                format!(
                    "{}/v3/{}:{}",
                    self.crm,
                    other.full_name(),
                    if write {
                        "setIamPolicy"
                    } else {
                        "getIamPolicy"
                    }
                ),
            ),
        }
    }

    /// The resource's allow policy at version 3 (conditions included).
    pub async fn get_policy(&self, cx: &OpContext, r: &GcpResource) -> Result<Value, Failure> {
        let (method, url) = self.policy_url(r, false);
        let body = (!r.is_bucket()).then(|| json!({"options": {"requestedPolicyVersion": 3}}));
        self.call(
            cx,
            "getIamPolicy",
            &r.full_name(),
            method,
            url,
            body.as_ref(),
        )
        .await
    }

    async fn set_policy(
        &self,
        cx: &OpContext,
        r: &GcpResource,
        policy: &Value,
    ) -> Result<Value, Failure> {
        if policy["etag"].as_str().is_none_or(str::is_empty) {
            // Without an etag, Google lets this write replace a policy someone changed since,
            // conditions and all: never.
            return Err(Failure::Other(ProviderError::Target(
                "refusing to write an allow policy without its etag".into(),
            )));
        }
        let (method, url) = self.policy_url(r, true);
        let body = if r.is_bucket() {
            policy.clone()
        } else {
            json!({"policy": policy, "updateMask": "bindings,etag,version"})
        };
        self.call(cx, "setIamPolicy", &r.full_name(), method, url, Some(&body))
            .await
    }

    /// Reads the policy, applies `edit` (which returns the policy to write, or `None` when
    /// nothing needs to change), checks Google's limits and writes it with the etag it was
    /// read with. A concurrent write (409 ABORTED, 412) re-runs the whole read-modify-write,
    /// with exponential backoff and jitter. Returns the policy as it now stands.
    pub async fn modify_policy(
        &self,
        cx: &OpContext,
        r: &GcpResource,
        edit: impl Fn(&Value) -> Result<Option<Value>, ProviderError>,
    ) -> Result<Value, ProviderError> {
        let what = format!("the allow policy of {}", r.full_name());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .get_policy(cx, r)
                .await
                .map_err(|f| f.into_provider(&what))?;
            let Some(next) = edit(&current)? else {
                return Ok(current);
            };
            super::policy::check_limits(&next).map_err(|why| {
                ProviderError::Target(format!("{what}: {why}; nothing was written"))
            })?;
            match self.set_policy(cx, r, &next).await {
                Ok(written) => return Ok(written),
                Err(Failure::Api(a)) if a.is_stale_etag() && attempt < RMW_ATTEMPTS => {
                    let base = 25u64 << attempt.min(7);
                    let jitter = rand::thread_rng().gen_range(0..=base);
                    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                }
                Err(f) => return Err(f.into_provider(&what)),
            }
        }
    }

    fn role_url(&self, name: &str) -> String {
        format!("{}/v1/{name}", self.iam)
    }

    /// A custom role by full name (`projects/P/roles/ID`); `None` if Google does not know it.
    pub async fn get_role(
        &self,
        cx: &OpContext,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        match self
            .call(
                cx,
                "roles.get",
                name,
                Method::GET,
                self.role_url(name),
                None,
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(Failure::Api(a)) if a.http == 404 => Ok(None),
            Err(f) => Err(f.into_provider(&format!("custom role {name}"))),
        }
    }

    pub async fn create_role(
        &self,
        cx: &OpContext,
        parent: &str,
        id: &str,
        role: &Value,
    ) -> Result<Value, Failure> {
        self.call(
            cx,
            "roles.create",
            &format!("{parent}/roles/{id}"),
            Method::POST,
            format!("{}/v1/{parent}/roles", self.iam),
            Some(&json!({"roleId": id, "role": role})),
        )
        .await
    }

    pub async fn patch_role(
        &self,
        cx: &OpContext,
        name: &str,
        role: &Value,
    ) -> Result<Value, ProviderError> {
        self.call(
            cx,
            "roles.patch",
            name,
            Method::PATCH,
            format!("{}?updateMask=includedPermissions", self.role_url(name)),
            Some(role),
        )
        .await
        .map_err(|f| f.into_provider(&format!("custom role {name}")))
    }

    pub async fn undelete_role(
        &self,
        cx: &OpContext,
        name: &str,
        etag: &str,
    ) -> Result<Value, ProviderError> {
        self.call(
            cx,
            "roles.undelete",
            name,
            Method::POST,
            format!("{}:undelete", self.role_url(name)),
            Some(&json!({"etag": etag})),
        )
        .await
        .map_err(|f| f.into_provider(&format!("custom role {name}")))
    }

    pub async fn delete_role(
        &self,
        cx: &OpContext,
        name: &str,
        etag: &str,
    ) -> Result<Value, ProviderError> {
        self.call(
            cx,
            "roles.delete",
            name,
            Method::DELETE,
            format!("{}?etag={}", self.role_url(name), enc(etag)),
            None,
        )
        .await
        .map_err(|f| f.into_provider(&format!("custom role {name}")))
    }

    /// Every live custom role under `parent` (`projects/P`, `organizations/O`), all pages.
    pub async fn list_roles(
        &self,
        cx: &OpContext,
        parent: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut url = format!("{}/v1/{parent}/roles?view=FULL&pageSize=1000", self.iam);
            if !token.is_empty() {
                url.push_str(&format!("&pageToken={}", enc(&token)));
            }
            let page = self
                .call(cx, "roles.list", parent, Method::GET, url, None)
                .await
                .map_err(|f| f.into_provider(&format!("custom roles of {parent}")))?;
            out.extend(page["roles"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_owned(),
                _ => return Ok(out),
            }
        }
    }
}

fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

fn api_error(status: StatusCode, text: &str) -> ApiError {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let e = &v["error"];
    ApiError {
        http: status.as_u16(),
        status: e["status"]
            .as_str()
            .or_else(|| e["errors"][0]["reason"].as_str())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"))
            .to_owned(),
        message: e["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(300).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_are_classed() {
        let e = api_error(
            StatusCode::CONFLICT,
            r#"{"error":{"code":409,"message":"There were concurrent policy changes.","status":"ABORTED"}}"#,
        );
        assert!(e.is_stale_etag());
        assert!(matches!(e.into_provider("x"), ProviderError::Conflict(_)));
        let e = api_error(
            StatusCode::PRECONDITION_FAILED,
            r#"{"error":{"code":412,"message":"Precondition Failed","errors":[{"reason":"conditionNotMet"}]}}"#,
        );
        assert!(e.is_stale_etag());
        assert_eq!(e.status, "conditionNotMet");
        let e = api_error(StatusCode::TOO_MANY_REQUESTS, "");
        assert!(matches!(e.into_provider("x"), ProviderError::Throttled(_)));
        let e = api_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":400,"message":"Permission x.y.z is not valid.","status":"INVALID_ARGUMENT"}}"#,
        );
        let p = e.into_provider("custom role");
        assert!(
            matches!(&p, ProviderError::Target(m) if m.contains("x.y.z is not valid")),
            "{p}"
        );
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, "<html>");
        assert!(matches!(
            e.into_provider("x"),
            ProviderError::Unreachable(_)
        ));
    }
}
