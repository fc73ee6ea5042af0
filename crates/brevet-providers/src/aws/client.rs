//! What every AWS mode shares: one provider instance's SDK clients and config, the mapping of SDK
//! errors to [`ProviderError`], the retry of conflicting or throttled calls, the per-binding call
//! log kept for the audit, and the IAM inline-policy calls and names the modes have in common.

use std::time::Duration;

use aws_sdk_iam::{error::ProvideErrorMetadata, operation::RequestId};
use brevet_core::Binding;
use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{AwsConfig, AwsIdentity, AwsResource};
use crate::{CallOutcome, OpContext, ProviderError};

/// The SDK's bound on one whole operation, retries included.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
/// IAM's limit on the total size of a role's inline policies, in characters (whitespace aside).
pub(super) const INLINE_POLICY_LIMIT: usize = 10_240;
/// The inline policy that denies sessions issued so far: on a per-grant role before it is deleted,
/// and (suffixed with the binding's digest) on a session base role per revoked binding.
pub(super) const REVOKE_POLICY: &str = "brevet-revoke-sessions";

pub(super) fn sdk_err<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    e: &aws_sdk_iam::error::SdkError<E>,
) -> ProviderError {
    use aws_sdk_iam::error::{DisplayErrorContext, SdkError};
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            ProviderError::Unreachable(format!("{op}: {}", DisplayErrorContext(e)))
        }
        SdkError::ServiceError(se) => match se.err().code() {
            Some(code) => {
                let text = format!("{op}: {code} {}", se.err().message().unwrap_or(""));
                match code {
                    "Throttling"
                    | "ThrottlingException"
                    | "TooManyRequestsException"
                    | "RequestLimitExceeded" => ProviderError::Throttled(text),
                    "ConflictException"
                    | "ConcurrentModification"
                    | "ConcurrentModificationException" => ProviderError::Conflict(text),
                    "ServiceFailure"
                    | "ServiceFailureException"
                    | "InternalFailure"
                    | "InternalServerException"
                    | "ServiceUnavailable"
                    | "ServiceUnavailableException" => ProviderError::Unreachable(text),
                    _ if se.raw().status().is_server_error() => ProviderError::Unreachable(text),
                    _ => ProviderError::Target(text),
                }
            }
            // No AWS error code: say what came back, so the cause (a proxy, a wrong endpoint,
            // an emulator's own error page) is visible. The response carries no secret.
            None => {
                let raw = se.raw();
                let body = raw
                    .body()
                    .bytes()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
                    .unwrap_or_default();
                ProviderError::Target(format!(
                    "{op}: HTTP {} without an AWS error code: {}",
                    raw.status().as_u16(),
                    body.trim()
                ))
            }
        },
        // Never the Debug form: a response that failed to parse (a `ResponseError`) carries the
        // raw HTTP response, which for `AssumeRole` holds the session credentials.
        other => ProviderError::Target(format!("{op}: {}", DisplayErrorContext(other))),
    }
}

/// A deletion's outcome: done, or already absent (IAM's `NoSuchEntity`), is success.
pub(super) fn deleted<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    r: Result<T, aws_sdk_iam::error::SdkError<E>>,
) -> Result<(), ProviderError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(sdk_err(op, &e)),
    }
}

/// How a role's inline policy is named in call records: `ROLE/POLICY`.
pub(super) fn role_policy(role: &str, policy: &str) -> String {
    format!("{role}/{policy}")
}

/// 20 hex digits of the binding key's SHA-256: the names Brevet gives a binding's IAM objects
/// derive from it, so every step is idempotent and needs no lookup.
pub(super) fn binding_digest(binding: &Binding) -> String {
    let digest = hex::encode(Sha256::digest(binding.key().as_bytes()));
    digest[..20].to_owned()
}

/// One provider instance's view of AWS, shared by its modes.
pub(super) struct AwsClient {
    pub(super) name: String,
    pub(super) config: AwsConfig,
    pub(super) iam: aws_sdk_iam::Client,
    pub(super) sts: aws_sdk_sts::Client,
    pub(super) sso: aws_sdk_ssoadmin::Client,
}

impl AwsClient {
    /// Builds the clients. Brevet's own AWS credentials come from the standard chain
    /// (environment, profile, instance role) — never from Brevet's config file.
    pub(super) async fn new(name: &str, config: AwsConfig) -> Self {
        // Bounded: the SDK's standard retries (with jitter) for throttling and transient errors,
        // each attempt and each whole operation under a timeout.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
            .timeout_config(timeouts);
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        Self {
            name: name.to_owned(),
            iam: aws_sdk_iam::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            sso: aws_sdk_ssoadmin::Client::new(&shared),
            config,
        }
    }

    /// Makes one AWS call, timed, and records it in the operation's context with what it acted
    /// on and AWS's request id, for the audit log. Returns the SDK's own result.
    pub(super) async fn call<T, E>(
        &self,
        cx: &OpContext,
        op: &str,
        target: &str,
        fut: impl std::future::Future<Output = Result<T, aws_sdk_iam::error::SdkError<E>>>,
    ) -> Result<T, aws_sdk_iam::error::SdkError<E>>
    where
        T: RequestId,
        E: ProvideErrorMetadata + RequestId,
    {
        let pending = cx.start(op, target);
        let r = fut.await;
        let (request_id, outcome) = match &r {
            Ok(out) => (out.request_id(), CallOutcome::Ok),
            Err(e) => match e.as_service_error() {
                Some(se) => (
                    se.request_id(),
                    CallOutcome::Error(se.code().unwrap_or("error").to_owned()),
                ),
                None => (None, CallOutcome::Error("unreachable".into())),
            },
        };
        tracing::info!(provider = %self.name, op, target, request_id, outcome = ?outcome, "aws call");
        pending.finish(outcome, request_id);
        r
    }

    pub(super) fn resource(&self, b: &Binding) -> Result<&AwsResource, ProviderError> {
        self.config
            .resources
            .get(b.resource.name())
            .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string()))
    }

    /// The binding's resource, which must list ARNs: checked before anything is created, as a
    /// policy on no resource cannot be written.
    pub(super) fn resource_with_arns(&self, b: &Binding) -> Result<&AwsResource, ProviderError> {
        let res = self.resource(b)?;
        if res.arns.is_empty() {
            return Err(ProviderError::BadInput(format!(
                "resource `{}` lists no ARNs, and profile `{}` grants actions on the resource's ARNs: \
                 add them under resources.\"{}\".arns",
                b.resource, b.profile, b.resource
            )));
        }
        Ok(res)
    }

    pub(super) fn identity(&self, b: &Binding) -> Result<&AwsIdentity, ProviderError> {
        self.config
            .identities
            .get(b.principal.as_str())
            .ok_or_else(|| {
                ProviderError::BadInput(format!(
                    "`{}` has no AWS identity: add it under [providers.{}.identities]",
                    b.principal, self.name
                ))
            })
    }

    /// Runs an operation, retrying conflicts and throttling with jittered backoff (Identity Center
    /// returns ConflictException while another assignment operation is in flight).
    pub(super) async fn with_retries<T, E, F, Fut>(
        &self,
        cx: &OpContext,
        op: &str,
        target: &str,
        mut call: F,
    ) -> Result<T, ProviderError>
    where
        T: RequestId,
        E: ProvideErrorMetadata + RequestId + std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, aws_sdk_iam::error::SdkError<E>>>,
    {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=6 {
            let r = self.call(cx, op, target, call()).await;
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                    let retryable = matches!(
                        code,
                        "ConflictException" | "ThrottlingException" | "TooManyRequestsException"
                    );
                    if !retryable || attempt == 6 {
                        return Err(sdk_err(op, &e));
                    }
                }
            }
            let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
            tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Err(ProviderError::Target(format!("{op}: retries exhausted")))
    }

    pub(super) async fn role_exists(
        &self,
        cx: &OpContext,
        role: &str,
    ) -> Result<bool, ProviderError> {
        let r = self
            .call(
                cx,
                "GetRole",
                role,
                self.iam.get_role().role_name(role).send(),
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err("GetRole", &e)),
        }
    }

    pub(super) async fn put_policy(
        &self,
        cx: &OpContext,
        role: &str,
        name: &str,
        doc: &Value,
    ) -> Result<(), ProviderError> {
        // Which policy on which role (`ROLE/POLICY`): the evidence of a session deny is this call.
        let r = self
            .call(
                cx,
                "PutRolePolicy",
                &role_policy(role, name),
                self.iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .policy_document(doc.to_string())
                    .send(),
            )
            .await;
        r.map(|_| ()).map_err(|e| sdk_err("PutRolePolicy", &e))
    }

    pub(super) async fn delete_policy(
        &self,
        cx: &OpContext,
        role: &str,
        name: &str,
    ) -> Result<(), ProviderError> {
        let d = self
            .call(
                cx,
                "DeleteRolePolicy",
                &role_policy(role, name),
                self.iam
                    .delete_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .send(),
            )
            .await;
        deleted("DeleteRolePolicy", d)
    }

    pub(super) async fn policy_document(
        &self,
        cx: &OpContext,
        role: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let r = self
            .call(
                cx,
                "GetRolePolicy",
                &role_policy(role, name),
                self.iam
                    .get_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .send(),
            )
            .await;
        match r {
            Ok(out) => {
                // IAM returns policy documents URL-encoded.
                let raw = out.policy_document();
                let text = urlencoding::decode(raw)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| raw.to_owned());
                Ok(serde_json::from_str(&text).ok())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_err("GetRolePolicy", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The retry loop, with AWS error responses built as the SDK would parse them (moto never
    //! answers `ConflictException` or throttles, so the end-to-end tests cannot reach these
    //! paths). Time is paused: the backoff sleeps take no real time.

    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_ssoadmin::{
        error::{ErrorMetadata, SdkError},
        operation::create_account_assignment::{
            CreateAccountAssignmentError, CreateAccountAssignmentOutput,
        },
        types::error::{AccessDeniedException, ConflictException, ThrottlingException},
    };
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    async fn client() -> AwsClient {
        AwsClient::new("aws", super::super::unreachable_config()).await
    }

    type Answer = Result<CreateAccountAssignmentOutput, SdkError<CreateAccountAssignmentError>>;

    // The SDK's own result type, as an operation's `send()` returns it.
    #[allow(clippy::result_large_err)]
    fn failure(code: &str, status: u16) -> Answer {
        let meta = ErrorMetadata::builder().code(code).message("test").build();
        let err = match code {
            "ConflictException" => CreateAccountAssignmentError::ConflictException(
                ConflictException::builder().meta(meta).build(),
            ),
            "ThrottlingException" => CreateAccountAssignmentError::ThrottlingException(
                ThrottlingException::builder().meta(meta).build(),
            ),
            _ => CreateAccountAssignmentError::AccessDeniedException(
                AccessDeniedException::builder().meta(meta).build(),
            ),
        };
        Err(SdkError::service_error(
            err,
            Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        ))
    }

    fn outcomes(cx: &OpContext) -> Vec<String> {
        cx.take_calls()
            .into_iter()
            .map(|c| {
                assert_eq!(c.call, "CreateAccountAssignment");
                assert_eq!(c.target, "assignment-1");
                match c.outcome {
                    CallOutcome::Ok => "ok".to_owned(),
                    CallOutcome::Error(code) => code,
                }
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn conflicts_and_throttling_are_retried_then_succeed() {
        let c = client().await;
        let cx = OpContext::other();
        let n = AtomicU32::new(0);
        let r = c
            .with_retries(&cx, "CreateAccountAssignment", "assignment-1", || {
                let i = n.fetch_add(1, Ordering::SeqCst);
                async move {
                    match i {
                        0 => failure("ConflictException", 409),
                        1 => failure("ThrottlingException", 400),
                        _ => Ok(CreateAccountAssignmentOutput::builder().build()),
                    }
                }
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(n.load(Ordering::SeqCst), 3);
        assert_eq!(
            outcomes(&cx),
            ["ConflictException", "ThrottlingException", "ok"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_other_errors_are_not_retried() {
        let c = client().await;
        let cx = OpContext::other();
        let n = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let r = c
            .with_retries(&cx, "CreateAccountAssignment", "assignment-1", || {
                n.fetch_add(1, Ordering::SeqCst);
                async { failure("ConflictException", 409) }
            })
            .await;
        let e = r.expect_err("gives up");
        assert!(e.to_string().contains("ConflictException"), "{e}");
        assert!(
            matches!(e, ProviderError::Conflict(_)) && e.is_retryable(),
            "a conflict is retryable by the broker too: {e:?}"
        );
        assert_eq!(n.load(Ordering::SeqCst), 6, "six attempts at most");
        // Backoff between attempts: 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s, plus up to half again of jitter.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(6200) && waited <= Duration::from_millis(9300),
            "{waited:?}"
        );

        let n = AtomicU32::new(0);
        let r = c
            .with_retries(&cx, "CreateAccountAssignment", "assignment-1", || {
                n.fetch_add(1, Ordering::SeqCst);
                async { failure("AccessDeniedException", 400) }
            })
            .await;
        let e = r.expect_err("refused");
        assert!(
            matches!(e, ProviderError::Target(_)) && !e.is_retryable(),
            "access denied is permanent: {e:?}"
        );
        assert_eq!(n.load(Ordering::SeqCst), 1, "not retryable");
        assert_eq!(outcomes(&cx).last().unwrap(), "AccessDeniedException");
    }
}
