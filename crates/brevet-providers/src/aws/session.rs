//! `session` mode: `sts:AssumeRole` on a configured base role with a session policy narrowing it
//! to the profile, `DurationSeconds` capped at the grant's remaining time; the credentials are
//! handed out in the AWS CLI `credential_process` shape. Revocation denies this grant's sessions on
//! the base role (TokenIssueTime + session name). Nothing is created per grant, so nothing is
//! listed for the reconciler.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use brevet_core::Binding;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::{
    client::{binding_digest, sdk_err, AwsClient, INLINE_POLICY_LIMIT, REVOKE_POLICY},
    documents, Arn, AwsProfile, Mode,
};
use crate::{Credential, OpContext, ProviderError, SecretText};

/// What tidying a base role's session denies left to do.
enum Tidy {
    /// The binding's own deny fits: write it.
    Fits,
    /// The denies were collapsed into one role-wide deny under the binding's name: done.
    Collapsed,
}

/// Sessions on the configured base roles of one provider instance.
pub(super) struct Session {
    aws: Arc<AwsClient>,
    /// When this process last received session credentials for a binding (by binding key): a
    /// deny older than that does not cover them, so it is no evidence of revocation. Lost on
    /// restart, which is safe: every revocation writes a deny as of its own instant first.
    issued: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The instant this process's latest deny for a binding covers sessions issued before (IAM
    /// compares whole seconds, so it is rounded up): credentials issued before it would be born
    /// denied.
    denied_before: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// A `session`-mode profile, for the [`Mode`] calls on one of its bindings.
pub(super) struct SessionProfile<'a> {
    pub(super) session: &'a Session,
    pub(super) base_role_arn: &'a Arn,
    pub(super) profile: &'a AwsProfile,
}

fn session_name(binding: &Binding) -> String {
    let who: String = binding
        .principal
        .as_str()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect();
    format!("brevet-{who}-{}", &binding_digest(binding)[..12])
}

/// The name of the binding's session deny on the base role.
fn deny_name(binding: &Binding) -> String {
    format!("{REVOKE_POLICY}-{}", binding_digest(binding))
}

fn base_role_name(arn: &Arn) -> String {
    arn.as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn chrono_of(t: &aws_sdk_sts::primitives::DateTime) -> DateTime<Utc> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos())
        .single()
        .unwrap_or_else(Utc::now)
}

impl Session {
    pub(super) fn new(aws: Arc<AwsClient>) -> Self {
        Self {
            aws,
            issued: Mutex::default(),
            denied_before: Mutex::default(),
        }
    }

    /// The role's `MaxSessionDuration` in seconds (IAM's default, one hour, when unset).
    async fn role_max_session(&self, cx: &OpContext, role: &str) -> Result<i64, ProviderError> {
        let r = self
            .aws
            .call(
                cx,
                "GetRole",
                role,
                self.aws.iam.get_role().role_name(role).send(),
            )
            .await;
        let out = r.map_err(|e| sdk_err("GetRole", &e))?;
        Ok(out
            .role()
            .and_then(|r| r.max_session_duration())
            .map_or(3600, i64::from))
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
        cx: &OpContext,
        binding: &Binding,
        role: &str,
        name: &str,
    ) -> Result<(), ProviderError> {
        let doc = documents::revoke_sessions_policy(Utc::now(), Some(&session_name(binding)));
        match self.tidy_revocations(cx, role, name, &doc).await {
            Ok(Tidy::Fits) => self.aws.put_policy(cx, role, name, &doc).await,
            Ok(Tidy::Collapsed) => Ok(()),
            Err(e) => {
                tracing::warn!(role = %role, error = %e, "could not tidy session denies");
                self.aws.put_policy(cx, role, name, &doc).await
            }
        }
    }

    async fn tidy_revocations(
        &self,
        cx: &OpContext,
        role: &str,
        name: &str,
        doc: &Value,
    ) -> Result<Tidy, ProviderError> {
        let aws = &self.aws;
        let prefix = format!("{REVOKE_POLICY}-");
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = aws
                .call(
                    cx,
                    "ListRolePolicies",
                    role,
                    aws.iam
                        .list_role_policies()
                        .role_name(role)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await;
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
            let Some(d) = aws.policy_document(cx, role, &n).await? else {
                continue;
            };
            let ours = n.starts_with(&prefix);
            if ours && documents::revocation_obsolete_at(&d).is_some_and(|t| t < now) {
                aws.delete_policy(cx, role, &n).await?;
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
        aws.put_policy(cx, role, first, &wide).await?;
        for n in rest {
            aws.delete_policy(cx, role, n).await?;
        }
        aws.put_policy(cx, role, name, &wide).await?;
        aws.delete_policy(cx, role, first).await?;
        Ok(Tidy::Collapsed)
    }
}

#[async_trait]
impl Mode for SessionProfile<'_> {
    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let aws = &self.session.aws;
        aws.resource_with_arns(binding)?;
        let role = base_role_name(self.base_role_arn);
        if !aws.role_exists(cx, &role).await? {
            return Err(ProviderError::Config(format!(
                "base role {} does not exist",
                self.base_role_arn.as_str()
            )));
        }
        Ok(())
    }

    async fn issue_credentials(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<Credential, ProviderError> {
        let aws = &self.session.aws;
        let res = aws.resource(binding)?;
        let remaining = (expires_at - Utc::now()).num_seconds();
        if remaining < 60 {
            return Err(ProviderError::BadInput(
                "the grant ends within a minute; extend it first".into(),
            ));
        }
        // STS allows 900 s at least, and at most the base role's MaxSessionDuration (a longer
        // grant gets credentials that `credential_process` renews when they lapse); the session
        // policy's own expiry still ends every one on time.
        let max = self
            .session
            .role_max_session(cx, &base_role_name(self.base_role_arn))
            .await?;
        let seconds = remaining.min(max).max(900) as i32;
        // A revocation of this binding in the last second denies sessions issued up to the end
        // of that second: wait it out, or these credentials would never work.
        let denied_before = self
            .session
            .denied_before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&binding.key())
            .copied();
        if let Some(wait) = denied_before.and_then(|t| (t - Utc::now()).to_std().ok()) {
            tokio::time::sleep(wait + std::time::Duration::from_millis(50)).await;
        }
        let statements = self.profile.statements(binding.resource.name(), res);
        let policy = documents::grant_policy(&statements, expires_at).to_string();
        let r = aws
            .call(
                cx,
                "AssumeRole",
                self.base_role_arn.as_str(),
                aws.sts
                    .assume_role()
                    .role_arn(self.base_role_arn.as_str())
                    .role_session_name(session_name(binding))
                    .policy(policy)
                    .duration_seconds(seconds)
                    .send(),
            )
            .await;
        let out = r.map_err(|e| sdk_err("AssumeRole", &e))?;
        // After the answer: no later than AWS's issue time of these credentials.
        self.session
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(binding.key(), Utc::now());
        let c = out
            .credentials()
            .ok_or_else(|| ProviderError::Target("AssumeRole returned no credentials".into()))?;
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
            details: json!({"role_arn": self.base_role_arn.as_str(), "session_name": session_name(binding), "access_key_id": c.access_key_id()}),
            expires_at: expiration,
        })
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        let role = base_role_name(self.base_role_arn);
        self.session
            .deny_sessions_on_base_role(cx, binding, &role, &deny_name(binding))
            .await?;
        // No earlier than the instant the deny just written names.
        self.session
            .denied_before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(binding.key(), documents::revocation_instant(Utc::now()));
        Ok(())
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Value, ProviderError> {
        let role = base_role_name(self.base_role_arn);
        let name = deny_name(binding);
        let Some(doc) = self.session.aws.policy_document(cx, &role, &name).await? else {
            return Err(ProviderError::StillPresent(format!(
                "no session-revoking policy {name} on {role}"
            )));
        };
        // The deny covers sessions issued before its instant; one issued since (by this
        // process) is not covered: the deny is from an earlier revocation.
        let denies_before = doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let last_issued = self
            .session
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&binding.key())
            .copied();
        match (denies_before, last_issued) {
            (None, _) => {
                return Err(ProviderError::StillPresent(format!(
                    "{name} on {role} has no aws:TokenIssueTime bound"
                )))
            }
            (Some(before), Some(issued)) if issued >= before => {
                return Err(ProviderError::StillPresent(format!(
                    "sessions issued at {issued} are not covered by {name} on {role}, which denies those issued before {before}"
                )))
            }
            _ => {}
        }
        Ok(
            json!({"check": "iam:GetRolePolicy", "role": role, "policy": name, "document": doc, "latest_session_issued": last_issued}),
        )
    }
}
