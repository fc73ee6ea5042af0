//! AWS, in three modes chosen per profile:
//! - `role`: an IAM role per binding, trusted only by the requester's identity, with an inline
//!   policy of exactly the profile's actions on exactly the resource's ARNs and a
//!   `DateLessThan aws:CurrentTime` condition, so AWS stops honouring it at expiry by itself.
//!   Revocation first denies sessions issued so far (`aws:TokenIssueTime`), then deletes the role
//!   and reads back `NoSuchEntity`.
//! - `session`: `sts:AssumeRole` on a configured base role with a session policy narrowing it to the
//!   profile, `DurationSeconds` capped at the grant's remaining time; the credentials are handed out
//!   in the AWS CLI `credential_process` shape. Revocation denies this grant's sessions on the base
//!   role (TokenIssueTime + session name).
//! - `identity_center`: an IAM Identity Center account assignment of a permission set, created and
//!   deleted asynchronously and polled until done, with conflicts and throttling retried; revocation
//!   also denies the user's sessions issued so far in the permission set's inline policy, and the
//!   reconciler lists assignments too (see `identity_center.rs`).
//!
//! Every AWS call's outcome, with its request id, is kept per binding for the audit log.

mod documents;
mod identity_center;
pub mod names;
mod settings;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_iam::{error::ProvideErrorMetadata, operation::RequestId};
use brevet_core::{Binding, Evidence, ProfileName};
use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use names::{ActionCatalog, Arn, IamAction};
pub use settings::Kind;

use crate::{Credential, CredentialInput, OwnedAccess, Provider, ProviderError, SecretText};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsMode {
    Role,
    Session {
        base_role_arn: Arn,
    },
    IdentityCenter {
        instance_arn: String,
        permission_set_arn: String,
    },
}

#[derive(Debug, Clone)]
pub struct AwsProfile {
    pub mode: AwsMode,
    pub actions: Vec<IamAction>,
}

#[derive(Debug, Clone)]
pub struct AwsResource {
    pub account: String,
    pub arns: Vec<Arn>,
}

/// How a Brevet principal is known to AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsIdentity {
    /// IAM user or role ARN allowed to assume per-grant roles (`role` mode).
    pub arn: Option<Arn>,
    /// IAM Identity Center user id (`identity_center` mode).
    pub identity_center_user_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    /// Set to reach an emulator (or a VPC endpoint); default: AWS's public endpoints.
    pub endpoint_url: Option<String>,
    pub role_prefix: String,
    pub role_path: String,
    /// `MaxSessionDuration` of per-grant roles; grants longer than this are refused.
    pub max_session_duration: Duration,
    pub profiles: BTreeMap<ProfileName, AwsProfile>,
    pub resources: BTreeMap<String, AwsResource>,
    pub identities: BTreeMap<String, AwsIdentity>,
}

impl AwsConfig {
    /// Identity Center grants access per account, permission set and user, not per resource:
    /// when two bindings would map to one assignment, revoking one grant would delete the
    /// assignment the other relies on, and the reconciler could not tell whose it is. Such a
    /// config is refused, naming the fix; `Err` holds (field path, message).
    pub fn check_identity_center_unambiguous(&self, name: &str) -> Result<(), (String, String)> {
        let mut sets: BTreeMap<(&str, &str), &ProfileName> = BTreeMap::new();
        for (profile, p) in &self.profiles {
            if let AwsMode::IdentityCenter {
                instance_arn,
                permission_set_arn,
            } = &p.mode
            {
                if let Some(other) = sets.insert((instance_arn, permission_set_arn), profile) {
                    return Err((
                        format!("providers.{name}.profiles.\"{profile}\".permission_set_arn"),
                        format!(
                            "profiles `{other}` and `{profile}` assign the same permission set; \
                             one assignment cannot belong to two profiles: keep one of them"
                        ),
                    ));
                }
            }
        }
        if sets.is_empty() {
            return Ok(());
        }
        let mut accounts: BTreeMap<&str, &str> = BTreeMap::new();
        for (resource, r) in &self.resources {
            if let Some(other) = accounts.insert(&r.account, resource) {
                return Err((
                    format!("resources.\"{name}:{resource}\".account"),
                    format!(
                        "`{name}:{other}` and `{name}:{resource}` are both account {}, and \
                         Identity Center assigns a permission set to a whole account: give \
                         Identity Center profiles a provider of their own (another \
                         [providers.NAME] with kind = \"aws\") with one resource per account",
                        r.account
                    ),
                ));
            }
        }
        let mut users: BTreeMap<&str, &str> = BTreeMap::new();
        for (principal, identity) in &self.identities {
            if let Some(user) = identity.identity_center_user_id.as_deref() {
                if let Some(other) = users.insert(user, principal) {
                    return Err((
                        format!("providers.{name}.identities.{principal}.identity_center_user_id"),
                        format!(
                            "`{other}` and `{principal}` have the same Identity Center user id \
                             `{user}`: each user id belongs to one principal"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

pub struct AwsProvider {
    name: String,
    config: AwsConfig,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    sso: aws_sdk_ssoadmin::Client,
    calls: Mutex<HashMap<String, Vec<Value>>>,
    /// Identity Center creations sent whose outcome is not seen yet, by binding key. In memory
    /// only: after a restart the reconciler finds what they left.
    creations: Mutex<HashMap<String, identity_center::InFlight>>,
    /// When each Identity Center binding's sessions were denied by its latest revocation, for
    /// `verify_revoked` to check the deny is (still) there.
    revoked_at: Mutex<HashMap<String, DateTime<Utc>>>,
}

const GRANT_POLICY: &str = "brevet-grant";
const REVOKE_POLICY: &str = "brevet-revoke-sessions";
/// The SDK's bound on one whole operation, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
/// IAM's limit on the total size of a role's inline policies, in characters (whitespace aside).
const INLINE_POLICY_LIMIT: usize = 10_240;

/// What tidying a base role's session denies left to do.
enum Tidy {
    /// The binding's own deny fits: write it.
    Fits,
    /// The denies were collapsed into one role-wide deny under the binding's name: done.
    Collapsed,
}

/// Per-grant roles' description: this, then the binding key. Ownership is read from it.
const ROLE_DESCRIPTION: &str = "brevet binding ";

fn sdk_err<E: ProvideErrorMetadata + std::error::Error + 'static>(
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
                ProviderError::Target(format!("{op}: {code} {}", se.err().message().unwrap_or("")))
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
fn deleted<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    r: Result<T, aws_sdk_iam::error::SdkError<E>>,
) -> Result<(), ProviderError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(sdk_err(op, &e)),
    }
}

impl AwsProvider {
    /// Builds the clients. Brevet's own AWS credentials come from the standard chain
    /// (environment, profile, instance role) — never from Brevet's config file.
    pub async fn new(name: &str, config: AwsConfig) -> Self {
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
            calls: Mutex::new(HashMap::new()),
            creations: Mutex::new(HashMap::new()),
            revoked_at: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps one call's outcome for the audit log; `detail` names what it acted on.
    fn log(
        &self,
        binding: &Binding,
        op: &str,
        request_id: Option<&str>,
        outcome: &str,
        detail: &[(&str, &str)],
    ) {
        tracing::info!(provider = %self.name, op, request_id, outcome, "aws call");
        let mut entry = json!({"op": op, "request_id": request_id, "outcome": outcome});
        for (k, v) in detail {
            entry[*k] = json!(v);
        }
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.entry(binding.key()).or_default().push(entry);
    }

    fn logged<T: RequestId, E: ProvideErrorMetadata + RequestId>(
        &self,
        binding: &Binding,
        op: &str,
        r: &Result<T, aws_sdk_iam::error::SdkError<E>>,
    ) {
        self.logged_with(binding, op, r, &[]);
    }

    fn logged_with<T: RequestId, E: ProvideErrorMetadata + RequestId>(
        &self,
        binding: &Binding,
        op: &str,
        r: &Result<T, aws_sdk_iam::error::SdkError<E>>,
        detail: &[(&str, &str)],
    ) {
        match r {
            Ok(out) => self.log(binding, op, out.request_id(), "ok", detail),
            Err(e) => {
                let (rid, code) = match e.as_service_error() {
                    Some(se) => (se.request_id(), se.code().unwrap_or("error")),
                    None => (None, "unreachable"),
                };
                self.log(binding, op, rid, code, detail);
            }
        }
    }

    /// Role names derive from the binding, so every step is idempotent and needs no lookup.
    pub fn role_name(&self, binding: &Binding) -> String {
        let digest = hex::encode(Sha256::digest(binding.key().as_bytes()));
        format!("{}{}", self.config.role_prefix, &digest[..20])
    }

    /// Whether `name` has the shape of [`Self::role_name`]: the prefix and 20 hex digits.
    fn is_binding_role_name(&self, name: &str) -> bool {
        name.strip_prefix(&self.config.role_prefix)
            .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    fn session_name(binding: &Binding) -> String {
        let digest = hex::encode(Sha256::digest(binding.key().as_bytes()));
        let who: String = binding
            .principal
            .as_str()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect();
        format!("brevet-{who}-{}", &digest[..12])
    }

    fn profile(&self, p: &ProfileName) -> Result<&AwsProfile, ProviderError> {
        self.config
            .profiles
            .get(p)
            .ok_or_else(|| ProviderError::UnknownProfile {
                provider: self.name.clone(),
                profile: p.to_string(),
                offered: self
                    .config
                    .profiles
                    .keys()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn resource(&self, b: &Binding) -> Result<&AwsResource, ProviderError> {
        self.config
            .resources
            .get(b.resource.name())
            .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string()))
    }

    fn identity(&self, b: &Binding) -> Result<&AwsIdentity, ProviderError> {
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

    async fn role_exists(&self, binding: &Binding, role: &str) -> Result<bool, ProviderError> {
        let r = self.iam.get_role().role_name(role).send().await;
        self.logged(binding, "GetRole", &r);
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

    /// The role's `MaxSessionDuration` in seconds (IAM's default, one hour, when unset).
    async fn role_max_session(&self, binding: &Binding, role: &str) -> Result<i64, ProviderError> {
        let r = self.iam.get_role().role_name(role).send().await;
        self.logged(binding, "GetRole", &r);
        let out = r.map_err(|e| sdk_err("GetRole", &e))?;
        Ok(out
            .role()
            .and_then(|r| r.max_session_duration())
            .map_or(3600, i64::from))
    }

    async fn put_policy(
        &self,
        binding: &Binding,
        role: &str,
        name: &str,
        doc: &Value,
    ) -> Result<(), ProviderError> {
        let r = self
            .iam
            .put_role_policy()
            .role_name(role)
            .policy_name(name)
            .policy_document(doc.to_string())
            .send()
            .await;
        // Which policy on which role: the evidence of a session deny is this entry.
        self.logged_with(
            binding,
            "PutRolePolicy",
            &r,
            &[("role", role), ("policy", name)],
        );
        r.map(|_| ()).map_err(|e| sdk_err("PutRolePolicy", &e))
    }

    async fn ensure_role(
        &self,
        binding: &Binding,
        p: &AwsProfile,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let res = self.resource(binding)?;
        let requester = self.identity(binding)?.arn.clone().ok_or_else(|| {
            ProviderError::BadInput(format!(
                "`{}` has no IAM ARN to trust (identities.{}.arn)",
                binding.principal, binding.principal
            ))
        })?;
        let role = self.role_name(binding);
        let trust = documents::trust_policy(&requester).to_string();
        let tag = |k: &str, v: &str| aws_sdk_iam::types::Tag::builder().key(k).value(v).build();
        let tags = [
            tag("brevet:requester", binding.principal.as_str()),
            tag("brevet:resource", binding.resource.as_str()),
            tag("brevet:profile", binding.profile.as_str()),
            tag("brevet:expires", &expires_at.to_rfc3339()),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProviderError::Config(e.to_string()))?;
        let created = self
            .iam
            .create_role()
            .role_name(&role)
            .path(&self.config.role_path)
            .assume_role_policy_document(&trust)
            .max_session_duration(self.config.max_session_duration.as_secs() as i32)
            .description(format!("{ROLE_DESCRIPTION}{}", binding.key()))
            .set_tags(Some(tags.clone()))
            .send()
            .await;
        self.logged(binding, "CreateRole", &created);
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                let r = self
                    .iam
                    .update_assume_role_policy()
                    .role_name(&role)
                    .policy_document(&trust)
                    .send()
                    .await;
                self.logged(binding, "UpdateAssumeRolePolicy", &r);
                r.map_err(|e| sdk_err("UpdateAssumeRolePolicy", &e))?;
                let r = self
                    .iam
                    .tag_role()
                    .role_name(&role)
                    .set_tags(Some(tags))
                    .send()
                    .await;
                self.logged(binding, "TagRole", &r);
                r.map_err(|e| sdk_err("TagRole", &e))?;
            }
            Err(e) => return Err(sdk_err("CreateRole", &e)),
        }
        self.put_policy(
            binding,
            &role,
            GRANT_POLICY,
            &documents::grant_policy(&p.actions, &res.arns, expires_at),
        )
        .await
    }

    async fn delete_role(&self, binding: &Binding, role: &str) -> Result<(), ProviderError> {
        if !self.role_exists(binding, role).await? {
            return Ok(());
        }
        // Live sessions first: from here on nothing issued so far works, even if deletion fails.
        self.put_policy(
            binding,
            role,
            REVOKE_POLICY,
            &documents::revoke_sessions_policy(Utc::now(), None),
        )
        .await?;
        let r = self
            .iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await;
        self.logged(binding, "ListAttachedRolePolicies", &r);
        for p in r
            .map_err(|e| sdk_err("ListAttachedRolePolicies", &e))?
            .attached_policies()
        {
            let d = self
                .iam
                .detach_role_policy()
                .role_name(role)
                .set_policy_arn(p.policy_arn().map(str::to_owned))
                .send()
                .await;
            self.logged(binding, "DetachRolePolicy", &d);
            d.map_err(|e| sdk_err("DetachRolePolicy", &e))?;
        }
        let r = self.iam.list_role_policies().role_name(role).send().await;
        self.logged(binding, "ListRolePolicies", &r);
        for name in r
            .map_err(|e| sdk_err("ListRolePolicies", &e))?
            .policy_names()
        {
            self.delete_policy(binding, role, name).await?;
        }
        let d = self.iam.delete_role().role_name(role).send().await;
        self.logged(binding, "DeleteRole", &d);
        deleted("DeleteRole", d)
    }

    /// Writes the deny for one binding's sessions on a shared base role, keeping the role under
    /// IAM's limit on its inline policies' total size ([`INLINE_POLICY_LIMIT`]):
    /// - denies whose every denied session has expired are deleted first
    ///   ([`documents::revocation_obsolete_at`]);
    /// - if the new deny still does not fit, Brevet's denies are collapsed into one role-wide deny
    ///   at this instant, which covers every one of them (each denies only sessions issued before
    ///   an earlier instant) and this binding. It also ends other people's sessions on the base
    ///   role issued so far; they obtain new ones through `credential_process`. Fail-closed, and
    ///   logged as a warning.
    ///
    /// A failure to tidy does not stop the deny itself from being attempted.
    async fn deny_sessions_on_base_role(
        &self,
        binding: &Binding,
        role: &str,
        name: &str,
    ) -> Result<(), ProviderError> {
        let doc = documents::revoke_sessions_policy(Utc::now(), Some(&Self::session_name(binding)));
        match self.tidy_revocations(binding, role, name, &doc).await {
            Ok(Tidy::Fits) => self.put_policy(binding, role, name, &doc).await,
            Ok(Tidy::Collapsed) => Ok(()),
            Err(e) => {
                tracing::warn!(role = %role, error = %e, "could not tidy session denies");
                self.put_policy(binding, role, name, &doc).await
            }
        }
    }

    async fn tidy_revocations(
        &self,
        binding: &Binding,
        role: &str,
        name: &str,
        doc: &Value,
    ) -> Result<Tidy, ProviderError> {
        let prefix = format!("{REVOKE_POLICY}-");
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = self
                .iam
                .list_role_policies()
                .role_name(role)
                .set_marker(marker.clone())
                .send()
                .await;
            self.logged(binding, "ListRolePolicies", &r);
            let out = r.map_err(|e| sdk_err("ListRolePolicies", &e))?;
            names.extend(out.policy_names().iter().filter(|n| *n != name).cloned());
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        let now = Utc::now();
        // What stays on the role besides this binding's deny: (name, size, Brevet's deny?).
        let mut kept: Vec<(String, usize, bool)> = Vec::new();
        for n in names {
            let Some(d) = self.policy_document(binding, role, &n).await? else {
                continue;
            };
            let ours = n.starts_with(&prefix);
            if ours && documents::revocation_obsolete_at(&d).is_some_and(|t| t < now) {
                self.delete_policy(binding, role, &n).await?;
                continue;
            }
            kept.push((n, documents::policy_size(&d), ours));
        }
        let total: usize = kept.iter().map(|k| k.1).sum::<usize>() + documents::policy_size(doc);
        if total <= INLINE_POLICY_LIMIT {
            return Ok(Tidy::Fits);
        }
        let ours: Vec<&str> = kept.iter().filter(|k| k.2).map(|k| k.0.as_str()).collect();
        let Some((first, rest)) = ours.split_first() else {
            return Err(ProviderError::Config(format!(
                "the inline policies on base role {role} leave no room under IAM's \
                 {INLINE_POLICY_LIMIT}-character limit for a session deny: move them to managed policies"
            )));
        };
        tracing::warn!(
            role = %role,
            denies = ours.len(),
            "session denies fill the base role: collapsing them into one role-wide deny"
        );
        // In an order that never leaves a revoked session allowed: first one of Brevet's denies
        // becomes role-wide (smaller than before, so it fits), then the others it covers go, then
        // it moves to this binding's name.
        let wide = documents::revoke_sessions_policy(Utc::now(), None);
        self.put_policy(binding, role, first, &wide).await?;
        for n in rest {
            self.delete_policy(binding, role, n).await?;
        }
        self.put_policy(binding, role, name, &wide).await?;
        self.delete_policy(binding, role, first).await?;
        Ok(Tidy::Collapsed)
    }

    async fn delete_policy(
        &self,
        binding: &Binding,
        role: &str,
        name: &str,
    ) -> Result<(), ProviderError> {
        let d = self
            .iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await;
        self.logged(binding, "DeleteRolePolicy", &d);
        deleted("DeleteRolePolicy", d)
    }

    fn base_role_name(arn: &Arn) -> String {
        arn.as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    async fn policy_document(
        &self,
        binding: &Binding,
        role: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let r = self
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await;
        self.logged(binding, "GetRolePolicy", &r);
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

    /// Runs an Identity Center operation, retrying conflicts and throttling with jittered backoff
    /// (AWS returns ConflictException while another assignment operation is in flight).
    async fn with_retries<T, E, F, Fut>(
        &self,
        binding: &Binding,
        op: &str,
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
            let r = call().await;
            self.logged(binding, op, &r);
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
}

fn chrono_of(t: &aws_sdk_sts::primitives::DateTime) -> DateTime<Utc> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos())
        .single()
        .unwrap_or_else(Utc::now)
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.config.profiles.keys().cloned().collect()
    }

    fn max_grant_duration(&self, profile: &ProfileName) -> Option<Duration> {
        match self.config.profiles.get(profile).map(|p| &p.mode) {
            Some(AwsMode::Role) => Some(self.config.max_session_duration),
            _ => None,
        }
    }

    async fn ensure(
        &self,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let p = self.profile(&binding.profile)?.clone();
        let remaining = (expires_at - Utc::now()).to_std().unwrap_or_default();
        if !matches!(p.mode, AwsMode::IdentityCenter { .. })
            && self.resource(binding)?.arns.is_empty()
        {
            // Checked before anything is created: a policy on no resource cannot be written.
            return Err(ProviderError::BadInput(format!(
                "resource `{}` lists no ARNs, and profile `{}` grants actions on the resource's ARNs: \
                 add them under resources.\"{}\".arns",
                binding.resource, binding.profile, binding.resource
            )));
        }
        match &p.mode {
            AwsMode::Role => {
                if remaining > self.config.max_session_duration + Duration::from_secs(60) {
                    // Checked by the server before granting too; here it guards the provider itself.
                    return Err(ProviderError::BadInput(format!(
                        "the grant is longer than the roles' maximum session duration ({}s)",
                        self.config.max_session_duration.as_secs()
                    )));
                }
                self.ensure_role(binding, &p, expires_at).await
            }
            AwsMode::Session { base_role_arn } => {
                let role = Self::base_role_name(base_role_arn);
                if !self.role_exists(binding, &role).await? {
                    return Err(ProviderError::Config(format!(
                        "base role {} does not exist",
                        base_role_arn.as_str()
                    )));
                }
                Ok(())
            }
            AwsMode::IdentityCenter {
                instance_arn,
                permission_set_arn,
            } => {
                self.ensure_assignment(binding, instance_arn, permission_set_arn)
                    .await
            }
        }
    }

    async fn issue_credentials(
        &self,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        _input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        let p = self.profile(&binding.profile)?.clone();
        let res = self.resource(binding)?;
        match &p.mode {
            AwsMode::Role => {
                let arn = format!(
                    "arn:aws:iam::{}:role{}{}",
                    res.account,
                    self.config.role_path,
                    self.role_name(binding)
                );
                Ok(Credential {
                    kind: crate::CredentialKind::AwsRole,
                    secret: SecretText::new(arn.clone()),
                    details: json!({"role_arn": arn, "assume_with": format!("aws sts assume-role --role-arn {arn} --role-session-name {}", binding.principal)}),
                    expires_at,
                })
            }
            AwsMode::Session { base_role_arn } => {
                let remaining = (expires_at - Utc::now()).num_seconds();
                if remaining < 60 {
                    return Err(ProviderError::BadInput(
                        "the grant ends within a minute; extend it first".into(),
                    ));
                }
                // STS allows 900 s at least, and at most the base role's MaxSessionDuration (a
                // longer grant gets credentials that `credential_process` renews when they
                // lapse); the session policy's own expiry still ends every one on time.
                let max = self
                    .role_max_session(binding, &Self::base_role_name(base_role_arn))
                    .await?;
                let seconds = remaining.min(max).max(900) as i32;
                let policy = documents::grant_policy(&p.actions, &res.arns, expires_at).to_string();
                let r = self
                    .sts
                    .assume_role()
                    .role_arn(base_role_arn.as_str())
                    .role_session_name(Self::session_name(binding))
                    .policy(policy)
                    .duration_seconds(seconds)
                    .send()
                    .await;
                self.logged(binding, "AssumeRole", &r);
                let out = r.map_err(|e| sdk_err("AssumeRole", &e))?;
                let c = out.credentials().ok_or_else(|| {
                    ProviderError::Target("AssumeRole returned no credentials".into())
                })?;
                let expiration = chrono_of(c.expiration()).min(expires_at);
                let process = brevet_wire::AwsProcessCredentials {
                    version: 1,
                    access_key_id: c.access_key_id().to_owned(),
                    secret_access_key: c.secret_access_key().to_owned(),
                    session_token: c.session_token().to_owned(),
                    expiration: expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                let process = serde_json::to_string(&process)
                    .map_err(|e| ProviderError::Target(format!("encoding credentials: {e}")))?;
                Ok(Credential {
                    kind: crate::CredentialKind::AwsCredentialProcess,
                    secret: SecretText::new(process),
                    details: json!({"role_arn": base_role_arn.as_str(), "session_name": Self::session_name(binding), "access_key_id": c.access_key_id()}),
                    expires_at: expiration,
                })
            }
            AwsMode::IdentityCenter {
                permission_set_arn, ..
            } => Ok(Credential {
                kind: crate::CredentialKind::AwsIdentityCenter,
                secret: SecretText::new(String::new()),
                details: json!({"account": res.account, "permission_set_arn": permission_set_arn, "sign_in": "use your AWS access portal"}),
                expires_at,
            }),
        }
    }

    async fn revoke(&self, binding: &Binding) -> Result<(), ProviderError> {
        let p = self.profile(&binding.profile)?.clone();
        match &p.mode {
            AwsMode::Role => self.delete_role(binding, &self.role_name(binding)).await,
            AwsMode::Session { base_role_arn } => {
                let name = format!(
                    "{REVOKE_POLICY}-{}",
                    &self.role_name(binding)[self.config.role_prefix.len()..]
                );
                let role = Self::base_role_name(base_role_arn);
                self.deny_sessions_on_base_role(binding, &role, &name).await
            }
            AwsMode::IdentityCenter {
                instance_arn,
                permission_set_arn,
            } => {
                self.revoke_assignment(binding, instance_arn, permission_set_arn)
                    .await
            }
        }
    }

    async fn verify_revoked(&self, binding: &Binding) -> Result<Evidence, ProviderError> {
        let p = self.profile(&binding.profile)?.clone();
        let observation = match &p.mode {
            AwsMode::Role => {
                let role = self.role_name(binding);
                if self.role_exists(binding, &role).await? {
                    return Err(ProviderError::StillPresent(format!(
                        "IAM role {role} still exists"
                    )));
                }
                // Whether this attempt wrote the session deny before deleting (an earlier attempt
                // may have; its calls are in that attempt's audit event).
                let denied = self
                    .calls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&binding.key())
                    .is_some_and(|c| {
                        c.iter().any(|e| {
                            e["op"] == "PutRolePolicy"
                                && e["policy"] == REVOKE_POLICY
                                && e["outcome"] == "ok"
                        })
                    });
                json!({"check": "iam:GetRole", "role": role, "result": "NoSuchEntity", "sessions_denied_before_deletion": denied})
            }
            AwsMode::Session { base_role_arn } => {
                let role = Self::base_role_name(base_role_arn);
                let name = format!(
                    "{REVOKE_POLICY}-{}",
                    &self.role_name(binding)[self.config.role_prefix.len()..]
                );
                let Some(doc) = self.policy_document(binding, &role, &name).await? else {
                    return Err(ProviderError::StillPresent(format!(
                        "no session-revoking policy {name} on {role}"
                    )));
                };
                json!({"check": "iam:GetRolePolicy", "role": role, "policy": name, "document": doc})
            }
            AwsMode::IdentityCenter {
                instance_arn,
                permission_set_arn,
            } => {
                self.verify_assignment_revoked(binding, instance_arn, permission_set_arn)
                    .await?
            }
        };
        let mut observation = observation;
        observation["provider"] = json!(self.name);
        Ok(Evidence {
            checked_at: Utc::now(),
            observation,
        })
    }

    async fn list_owned(&self) -> Result<Vec<OwnedAccess>, ProviderError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = self
                .iam
                .list_roles()
                .path_prefix(&self.config.role_path)
                .set_marker(marker.clone())
                .send()
                .await;
            let page = r.map_err(|e| sdk_err("ListRoles", &e))?;
            for role in page.roles() {
                // Brevet's only if both the name (prefix + digest) and the description it writes
                // say so: a base role or anyone else's role under the same path is never listed.
                let binding_key = role
                    .description()
                    .and_then(|d| d.strip_prefix(ROLE_DESCRIPTION))
                    .map(str::to_owned);
                let Some(binding_key) = binding_key else {
                    continue;
                };
                if !self.is_binding_role_name(role.role_name()) {
                    continue;
                }
                out.push(OwnedAccess {
                    native_id: role.role_name().to_owned(),
                    binding_key: Some(binding_key),
                });
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        out.extend(self.owned_assignments().await?);
        Ok(out)
    }

    async fn remove_owned(&self, owned: &OwnedAccess) -> Result<Evidence, ProviderError> {
        if identity_center::Assignment::is_native_id(&owned.native_id) {
            return self.remove_owned_assignment(owned).await;
        }
        if !self.is_binding_role_name(&owned.native_id) {
            return Err(ProviderError::Config(format!(
                "refusing to delete `{}`: it is not named like a per-grant role ({}<20 hex digits>)",
                owned.native_id, self.config.role_prefix
            )));
        }
        let pseudo = Self::reconciler_binding(&self.name)?;
        // Read back before deleting: the name alone is not proof (a role someone made with the
        // same shape), only Brevet's description on it is. Absent is success.
        let r = self.iam.get_role().role_name(&owned.native_id).send().await;
        self.logged(&pseudo, "GetRole", &r);
        match r {
            Ok(out) => {
                let wanted = owned
                    .binding_key
                    .as_deref()
                    .map(|k| format!("{ROLE_DESCRIPTION}{k}"));
                let marked = out
                    .role()
                    .and_then(|r| r.description())
                    .is_some_and(|d| Some(d) == wanted.as_deref());
                if !marked {
                    let _ = self.take_call_log(&pseudo);
                    return Err(ProviderError::Config(format!(
                        "refusing to delete `{}`: it does not carry Brevet's `{ROLE_DESCRIPTION}…` description for that binding",
                        owned.native_id
                    )));
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) => {}
            Err(e) => return Err(sdk_err("GetRole", &e)),
        }
        self.delete_role(&pseudo, &owned.native_id).await?;
        if self.role_exists(&pseudo, &owned.native_id).await? {
            return Err(ProviderError::StillPresent(owned.native_id.clone()));
        }
        let calls = self.take_call_log(&pseudo);
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: json!({"check": "iam:GetRole", "role": owned.native_id, "result": "NoSuchEntity", "calls": calls}),
        })
    }

    /// IAM sessions are ended by the TokenIssueTime deny that revocation writes first.
    async fn terminate_sessions(&self, _binding: &Binding) -> Result<u64, ProviderError> {
        Ok(0)
    }

    fn take_call_log(&self, binding: &Binding) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&binding.key())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    //! The Identity Center retry loop, with AWS error responses built as the SDK would parse
    //! them (moto never answers `ConflictException` or throttles, so the end-to-end tests cannot
    //! reach these paths). Time is paused: the backoff sleeps take no real time.

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

    async fn provider() -> AwsProvider {
        AwsProvider::new(
            "aws",
            AwsConfig {
                region: "us-east-1".into(),
                endpoint_url: Some("http://127.0.0.1:9".into()),
                role_prefix: "brevet-".into(),
                role_path: "/brevet/".into(),
                max_session_duration: Duration::from_secs(3600),
                profiles: BTreeMap::new(),
                resources: BTreeMap::new(),
                identities: BTreeMap::new(),
            },
        )
        .await
    }

    fn binding() -> Binding {
        Binding {
            principal: brevet_core::PrincipalId::parse("alice").unwrap(),
            resource: brevet_core::ResourceId::parse("aws:acct").unwrap(),
            profile: ProfileName::parse("aws.admin").unwrap(),
        }
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

    fn outcomes(p: &AwsProvider) -> Vec<String> {
        p.take_call_log(&binding())
            .iter()
            .map(|c| c["outcome"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The reconciler's removal acts only on what `list_owned` can report: an assignment of a
    /// configured permission set, in a configured account, to a configured user. Anything else is
    /// refused before any AWS call (the endpoint here answers nothing, so a call would fail
    /// differently).
    #[tokio::test]
    async fn remove_owned_refuses_assignments_brevet_does_not_manage() {
        let mut p = provider().await;
        p.config.profiles.insert(
            ProfileName::parse("aws.admin").unwrap(),
            AwsProfile {
                mode: AwsMode::IdentityCenter {
                    instance_arn: "arn:aws:sso:::instance/ssoins-1".into(),
                    permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
                },
                actions: Vec::new(),
            },
        );
        p.config.resources.insert(
            "acct".into(),
            AwsResource {
                account: "123456789012".into(),
                arns: Vec::new(),
            },
        );
        p.config.identities.insert(
            "alice".into(),
            AwsIdentity {
                arn: None,
                identity_center_user_id: Some("u-alice".into()),
            },
        );
        let ok = "identity-center-assignment:arn:aws:sso:::instance/ssoins-1|123456789012|arn:aws:sso:::permissionSet/ssoins-1/ps-1|u-alice";
        for forged in [
            ok.replace("ps-1|", "ps-2|"),
            ok.replace("ssoins-1|", "ssoins-2|"),
            ok.replace("|123456789012|", "|210987654321|"),
            ok.replace("u-alice", "u-erin"),
            format!("{ok}|extra"),
            "identity-center-assignment:".to_owned(),
        ] {
            let e = p
                .remove_owned(&OwnedAccess {
                    native_id: forged.clone(),
                    binding_key: Some("alice|aws:acct|aws.admin".into()),
                })
                .await
                .expect_err(&forged);
            assert!(
                e.to_string().contains("refusing to delete"),
                "{forged}: {e}"
            );
        }
        // The genuine one gets as far as calling AWS (which is not there).
        let e = p
            .remove_owned(&OwnedAccess {
                native_id: ok.into(),
                binding_key: None,
            })
            .await
            .expect_err("nothing answers");
        assert!(!e.to_string().contains("refusing"), "{e}");
        assert_eq!(
            p.bindings_of(&identity_center::Assignment {
                instance: "arn:aws:sso:::instance/ssoins-1".into(),
                permission_set: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
                account: "123456789012".into(),
                user: "u-alice".into(),
            }),
            ["alice|aws:acct|aws.admin"],
            "the binding key the broker's reconciler compares with covered bindings"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn conflicts_and_throttling_are_retried_then_succeed() {
        let p = provider().await;
        let n = AtomicU32::new(0);
        let r = p
            .with_retries(&binding(), "CreateAccountAssignment", || {
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
            outcomes(&p),
            ["ConflictException", "ThrottlingException", "ok"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_other_errors_are_not_retried() {
        let p = provider().await;
        let n = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let r = p
            .with_retries(&binding(), "CreateAccountAssignment", || {
                n.fetch_add(1, Ordering::SeqCst);
                async { failure("ConflictException", 409) }
            })
            .await;
        let e = r.expect_err("gives up");
        assert!(e.to_string().contains("ConflictException"), "{e}");
        assert_eq!(n.load(Ordering::SeqCst), 6, "six attempts at most");
        // Backoff between attempts: 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s, plus up to half again of jitter.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(6200) && waited <= Duration::from_millis(9300),
            "{waited:?}"
        );

        let n = AtomicU32::new(0);
        let r = p
            .with_retries(&binding(), "CreateAccountAssignment", || {
                n.fetch_add(1, Ordering::SeqCst);
                async { failure("AccessDeniedException", 400) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1, "not retryable");
        assert_eq!(outcomes(&p).last().unwrap(), "AccessDeniedException");
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn ic(set: &str) -> AwsProfile {
        AwsProfile {
            mode: AwsMode::IdentityCenter {
                instance_arn: "arn:aws:sso:::instance/ssoins-1".into(),
                permission_set_arn: format!("arn:aws:sso:::permissionSet/ssoins-1/{set}"),
            },
            actions: vec![],
        }
    }

    fn config(
        profiles: &[(&str, AwsProfile)],
        accounts: &[(&str, &str)],
        users: &[(&str, &str)],
    ) -> AwsConfig {
        AwsConfig {
            region: "us-east-1".into(),
            endpoint_url: None,
            role_prefix: "brevet-".into(),
            role_path: "/brevet/".into(),
            max_session_duration: Duration::from_secs(3600),
            profiles: profiles
                .iter()
                .map(|(n, p)| (ProfileName::parse(n).unwrap(), p.clone()))
                .collect(),
            resources: accounts
                .iter()
                .map(|(r, a)| {
                    (
                        r.to_string(),
                        AwsResource {
                            account: a.to_string(),
                            arns: vec![],
                        },
                    )
                })
                .collect(),
            identities: users
                .iter()
                .map(|(p, u)| {
                    (
                        p.to_string(),
                        AwsIdentity {
                            arn: None,
                            identity_center_user_id: Some(u.to_string()),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Review of the hardening: two bindings on one assignment meant revoking one grant deleted
    /// the assignment another relied on, and the reconciler skipped it with only a log line.
    #[test]
    fn identity_center_configs_where_one_assignment_has_two_bindings_are_refused() {
        let role = AwsProfile {
            mode: AwsMode::Role,
            actions: vec![],
        };
        // Role-mode profiles may share an account between resources.
        let ok = config(
            &[("aws.read", role.clone())],
            &[("a", "111111111111"), ("b", "111111111111")],
            &[("alice", "u-1"), ("bob", "u-1")],
        );
        assert!(ok.check_identity_center_unambiguous("aws").is_ok());
        let ok = config(
            &[("aws.admin", ic("ps-1")), ("aws.read", role)],
            &[("a", "111111111111"), ("b", "222222222222")],
            &[("alice", "u-1"), ("bob", "u-2")],
        );
        assert!(ok.check_identity_center_unambiguous("aws").is_ok());

        for (c, at, says) in [
            (
                config(
                    &[("aws.admin", ic("ps-1"))],
                    &[("a", "111111111111"), ("b", "111111111111")],
                    &[],
                ),
                "resources.\"aws:b\".account",
                "are both account 111111111111",
            ),
            (
                config(
                    &[("aws.admin", ic("ps-1")), ("aws.ops", ic("ps-1"))],
                    &[("a", "111111111111")],
                    &[],
                ),
                "providers.aws.profiles.\"aws.ops\".permission_set_arn",
                "the same permission set",
            ),
            (
                config(
                    &[("aws.admin", ic("ps-1"))],
                    &[("a", "111111111111")],
                    &[("alice", "u-1"), ("bob", "u-1")],
                ),
                "providers.aws.identities.bob.identity_center_user_id",
                "same Identity Center user id",
            ),
        ] {
            let (field, why) = c.check_identity_center_unambiguous("aws").unwrap_err();
            assert_eq!(field, at);
            assert!(why.contains(says), "{why}");
        }
    }
}
