//! The Azure Resource Manager calls the provider makes, over one reqwest client. A thin client
//! of Brevet's own rather than generated crates: the Rust management-plane crates
//! (`azure_mgmt_authorization`) are the unmaintained legacy line and Microsoft's new ones do not
//! cover authorization yet; Brevet needs a dozen calls with exact control of ARM's errors,
//! `Retry-After` and `nextLink` paging. Tokens come from `azure_identity` (managed identity,
//! workload identity, a client secret) or a token the operator supplies. Every call is timed and
//! recorded in the operation's context.

use std::{sync::Arc, time::Duration};

use azure_core::credentials::TokenCredential;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::AzureCredentials;
use crate::{CallOutcome, OpContext, ProviderError, SecretText};

/// Role assignments and definitions (Microsoft.Authorization 2022-04-01).
pub const RBAC_API: &str = "2022-04-01";
/// PIM schedule requests (Microsoft.Authorization 2020-10-01).
pub const PIM_API: &str = "2020-10-01";
const SCOPE: &str = "https://management.azure.com/.default";
/// Throttled calls are tried this often, waiting what `Retry-After` asks (at most 10 s each).
const THROTTLE_ATTEMPTS: u32 = 4;

/// ARM's error body: `{"error":{"code","message"}}`.
#[derive(Debug, Clone)]
pub struct ArmError {
    pub http: u16,
    pub code: String,
    pub message: String,
}

impl ArmError {
    pub fn into_provider(self, what: &str) -> ProviderError {
        let text = format!(
            "{what}: Azure answered {} {}: {}",
            self.http, self.code, self.message
        );
        match self.http {
            429 => ProviderError::Throttled(text),
            409 if self.code == "Conflict" => ProviderError::Conflict(text),
            500..=599 => ProviderError::Unreachable(text),
            _ => ProviderError::Target(text),
        }
    }
}

pub enum Failure {
    Arm(ArmError),
    Other(ProviderError),
}

impl Failure {
    pub fn into_provider(self, what: &str) -> ProviderError {
        match self {
            Failure::Arm(a) => a.into_provider(what),
            Failure::Other(e) => e,
        }
    }
    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Arm(a) => Some(&a.code),
            Failure::Other(_) => None,
        }
    }
}

enum Auth {
    Credential(Arc<dyn TokenCredential>),
    Token(SecretText),
}

pub struct ArmClient {
    http: reqwest::Client,
    auth: Auth,
    base: String,
}

impl ArmClient {
    pub fn new(
        tenant_id: &str,
        credentials: &AzureCredentials,
        endpoint: Option<&str>,
    ) -> Result<Self, ProviderError> {
        let cfg = |e: azure_core::Error| ProviderError::Config(format!("Azure credentials: {e}"));
        let auth = match credentials {
            AzureCredentials::ManagedIdentity => {
                Auth::Credential(azure_identity::ManagedIdentityCredential::new(None).map_err(cfg)?)
            }
            AzureCredentials::WorkloadIdentity => Auth::Credential(
                azure_identity::WorkloadIdentityCredential::new(Some(
                    azure_identity::WorkloadIdentityCredentialOptions {
                        tenant_id: Some(tenant_id.to_owned()),
                        ..Default::default()
                    },
                ))
                .map_err(cfg)?,
            ),
            AzureCredentials::ClientSecret { client_id, secret } => Auth::Credential(
                azure_identity::ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    azure_core::credentials::Secret::new(secret.expose().to_owned()),
                    None,
                )
                .map_err(cfg)?,
            ),
            AzureCredentials::AccessToken(t) => Auth::Token(t.clone()),
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?,
            auth,
            base: endpoint
                .map(|e| e.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| "https://management.azure.com".to_owned()),
        })
    }

    async fn token(&self) -> Result<String, Failure> {
        match &self.auth {
            Auth::Token(t) => Ok(t.expose().to_owned()),
            Auth::Credential(c) => c
                .get_token(&[SCOPE], None)
                .await
                .map(|t| t.token.secret().to_owned())
                .map_err(|e| {
                    Failure::Other(ProviderError::Unreachable(format!(
                        "getting an Entra token: {e}"
                    )))
                }),
        }
    }

    /// `path` is an ARM path (`/subscriptions/…`) or, for paging, a whole `nextLink` URL.
    pub async fn call(
        &self,
        cx: &OpContext,
        name: &str,
        method: Method,
        path: &str,
        api: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        // What the call acts on, for the record: the ARM path without its query.
        let target = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_start_matches(self.base.as_str());
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{}{path}{sep}api-version={api}", self.base)
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pending = cx.start(name, target);
            let r = self.send(method.clone(), &url, body).await;
            let (outcome, request_id) = match &r {
                Ok((_, _, id)) => (CallOutcome::Ok, id.clone()),
                Err((Failure::Arm(a), _, id)) => (
                    CallOutcome::Error(format!("{} {}", a.http, a.code)),
                    id.clone(),
                ),
                Err((Failure::Other(e), _, _)) => (CallOutcome::Error(e.class().into()), None),
            };
            pending.finish(outcome, request_id.as_deref());
            match r {
                Ok((status, v, _)) => return Ok((status, v)),
                Err((Failure::Arm(a), Some(wait), _))
                    if a.http == 429 && attempt < THROTTLE_ATTEMPTS =>
                {
                    tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
                }
                Err((f, _, _)) => return Err(f),
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value, Option<String>), (Failure, Option<Duration>, Option<String>)> {
        let token = self.token().await.map_err(|f| (f, None, None))?;
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            (
                Failure::Other(ProviderError::Unreachable(format!(
                    "{}: {e}",
                    url.split('?').next().unwrap_or_default()
                ))),
                None,
                None,
            )
        })?;
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-ms-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            let v = if text.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str(&text) {
                    Ok(v) => v,
                    // A proxy's page or a cut-short body is not an answer to read as "nothing".
                    Err(e) => {
                        return Err((
                            Failure::Other(ProviderError::Unreachable(format!(
                                "ARM answered {status} with a body that is not JSON ({e})"
                            ))),
                            None,
                            request_id,
                        ))
                    }
                }
            };
            return Ok((status.as_u16(), v, request_id));
        }
        Err((
            Failure::Arm(arm_error(status, &text)),
            Some(retry_after.unwrap_or(Duration::from_secs(1))),
            request_id,
        ))
    }

    /// Every item of a list, following `nextLink`.
    pub async fn list(
        &self,
        cx: &OpContext,
        name: &str,
        path: &str,
        api: &str,
    ) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::new();
        let mut next = path.to_owned();
        for _ in 0..1_000 {
            let (_, page) = self.call(cx, name, Method::GET, &next, api, None).await?;
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str() {
                Some(l) if !l.is_empty() => next = l.to_owned(),
                _ => return Ok(out),
            }
        }
        Err(Failure::Other(ProviderError::Target(format!(
            "{path}: more than 1,000 pages; Brevet does not act on a partial list"
        ))))
    }
}

fn arm_error(status: StatusCode, text: &str) -> ArmError {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let e = &v["error"];
    ArmError {
        http: status.as_u16(),
        code: e["code"]
            .as_str()
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
    fn arm_errors_are_classed() {
        let e = arm_error(
            StatusCode::CONFLICT,
            r#"{"error":{"code":"RoleAssignmentExists","message":"The role assignment already exists."}}"#,
        );
        assert_eq!(e.code, "RoleAssignmentExists");
        assert!(matches!(e.into_provider("x"), ProviderError::Target(_)));
        let e = arm_error(StatusCode::TOO_MANY_REQUESTS, "");
        assert!(matches!(e.into_provider("x"), ProviderError::Throttled(_)));
        let e = arm_error(StatusCode::BAD_GATEWAY, "<html>");
        assert!(matches!(
            e.into_provider("x"),
            ProviderError::Unreachable(_)
        ));
    }
}
