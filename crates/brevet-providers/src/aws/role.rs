//! `role` mode: an IAM role per binding, trusted only by the requester's identity, with an inline
//! policy of exactly the profile's actions on exactly the resource's ARNs and a
//! `DateLessThan aws:CurrentTime` condition, so AWS stops honouring it at expiry by itself.
//! Revocation first denies sessions issued so far (`aws:TokenIssueTime`), then deletes the role
//! and reads back `NoSuchEntity`. The reconciler finds the roles by their name and description.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{
    client::{binding_digest, deleted, sdk_err, AwsClient, REVOKE_POLICY},
    documents, AwsProfile, Mode,
};
use crate::{CallOutcome, Credential, OpContext, OwnedAccess, ProviderError, SecretText};

const GRANT_POLICY: &str = "brevet-grant";

/// Per-grant roles' description: this, then the binding key. Ownership is read from it.
const ROLE_DESCRIPTION: &str = "brevet binding ";

/// The per-grant roles of one provider instance.
pub(super) struct Role {
    aws: Arc<AwsClient>,
}

/// A `role`-mode profile, for the [`Mode`] calls on one of its bindings.
pub(super) struct RoleProfile<'a> {
    pub(super) role: &'a Role,
    pub(super) profile: &'a AwsProfile,
}

impl Role {
    pub(super) fn new(aws: Arc<AwsClient>) -> Self {
        Self { aws }
    }

    /// Role names derive from the binding, so every step is idempotent and needs no lookup.
    pub(super) fn role_name(&self, binding: &Binding) -> String {
        format!("{}{}", self.aws.config.role_prefix, binding_digest(binding))
    }

    /// Whether `name` has the shape of [`Self::role_name`]: the prefix and 20 hex digits.
    fn is_binding_role_name(&self, name: &str) -> bool {
        name.strip_prefix(&self.aws.config.role_prefix)
            .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    async fn ensure_role(
        &self,
        cx: &OpContext,
        binding: &Binding,
        profile: &AwsProfile,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let aws = &self.aws;
        let res = aws.resource(binding)?;
        let statements = profile.statements(binding.resource.name(), res);
        let requester = aws.identity(binding)?.arn.clone().ok_or_else(|| {
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
        let created = aws
            .call(
                cx,
                "CreateRole",
                &role,
                aws.iam
                    .create_role()
                    .role_name(&role)
                    .path(&aws.config.role_path)
                    .assume_role_policy_document(&trust)
                    .max_session_duration(aws.config.max_session_duration.as_secs() as i32)
                    .description(format!("{ROLE_DESCRIPTION}{}", binding.key()))
                    .set_tags(Some(tags.clone()))
                    .send(),
            )
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                let r = aws
                    .call(
                        cx,
                        "UpdateAssumeRolePolicy",
                        &role,
                        aws.iam
                            .update_assume_role_policy()
                            .role_name(&role)
                            .policy_document(&trust)
                            .send(),
                    )
                    .await;
                r.map_err(|e| sdk_err("UpdateAssumeRolePolicy", &e))?;
                let r = aws
                    .call(
                        cx,
                        "TagRole",
                        &role,
                        aws.iam
                            .tag_role()
                            .role_name(&role)
                            .set_tags(Some(tags))
                            .send(),
                    )
                    .await;
                r.map_err(|e| sdk_err("TagRole", &e))?;
            }
            Err(e) => return Err(sdk_err("CreateRole", &e)),
        }
        aws.put_policy(
            cx,
            &role,
            GRANT_POLICY,
            &documents::grant_policy(&statements, expires_at),
        )
        .await
    }

    async fn delete_role(&self, cx: &OpContext, role: &str) -> Result<(), ProviderError> {
        let aws = &self.aws;
        if !aws.role_exists(cx, role).await? {
            return Ok(());
        }
        // Live sessions first: from here on nothing issued so far works, even if deletion fails.
        aws.put_policy(
            cx,
            role,
            REVOKE_POLICY,
            &documents::revoke_sessions_policy(Utc::now(), None),
        )
        .await?;
        let r = aws
            .call(
                cx,
                "ListAttachedRolePolicies",
                role,
                aws.iam.list_attached_role_policies().role_name(role).send(),
            )
            .await;
        for p in r
            .map_err(|e| sdk_err("ListAttachedRolePolicies", &e))?
            .attached_policies()
        {
            let d = aws
                .call(
                    cx,
                    "DetachRolePolicy",
                    role,
                    aws.iam
                        .detach_role_policy()
                        .role_name(role)
                        .set_policy_arn(p.policy_arn().map(str::to_owned))
                        .send(),
                )
                .await;
            d.map_err(|e| sdk_err("DetachRolePolicy", &e))?;
        }
        let r = aws
            .call(
                cx,
                "ListRolePolicies",
                role,
                aws.iam.list_role_policies().role_name(role).send(),
            )
            .await;
        for name in r
            .map_err(|e| sdk_err("ListRolePolicies", &e))?
            .policy_names()
        {
            aws.delete_policy(cx, role, name).await?;
        }
        let d = aws
            .call(
                cx,
                "DeleteRole",
                role,
                aws.iam.delete_role().role_name(role).send(),
            )
            .await;
        deleted("DeleteRole", d)
    }

    /// Every per-grant role under the role path, with the binding its description names.
    pub(super) async fn list_owned(&self) -> Result<Vec<OwnedAccess>, ProviderError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = self
                .aws
                .iam
                .list_roles()
                .path_prefix(&self.aws.config.role_path)
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
        Ok(out)
    }

    /// Removes a role [`Self::list_owned`] listed, once its description shows it is Brevet's for
    /// that binding, and reads it back gone.
    pub(super) async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        let aws = &self.aws;
        if !self.is_binding_role_name(&owned.native_id) {
            return Err(ProviderError::Config(format!(
                "refusing to delete `{}`: it is not named like a per-grant role ({}<20 hex digits>)",
                owned.native_id, aws.config.role_prefix
            )));
        }
        // Read back before deleting: the name alone is not proof (a role someone made with the
        // same shape), only Brevet's description on it is. Absent is success.
        let r = aws
            .call(
                cx,
                "GetRole",
                &owned.native_id,
                aws.iam.get_role().role_name(&owned.native_id).send(),
            )
            .await;
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
        self.delete_role(cx, &owned.native_id).await?;
        if aws.role_exists(cx, &owned.native_id).await? {
            return Err(ProviderError::StillPresent(owned.native_id.clone()));
        }
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: json!({"check": "iam:GetRole", "role": owned.native_id, "result": "NoSuchEntity"}),
        })
    }
}

#[async_trait]
impl Mode for RoleProfile<'_> {
    fn max_grant_duration(&self) -> Option<Duration> {
        Some(self.role.aws.config.max_session_duration)
    }

    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        let aws = &self.role.aws;
        aws.resource_with_arns(binding)?;
        let remaining = (expires_at - Utc::now()).to_std().unwrap_or_default();
        if remaining > aws.config.max_session_duration + Duration::from_secs(60) {
            // Checked by the server before granting too; here it guards the provider itself.
            return Err(ProviderError::BadInput(format!(
                "the grant is longer than the roles' maximum session duration ({}s)",
                aws.config.max_session_duration.as_secs()
            )));
        }
        self.role
            .ensure_role(cx, binding, self.profile, expires_at)
            .await
    }

    async fn issue_credentials(
        &self,
        _cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<Credential, ProviderError> {
        let aws = &self.role.aws;
        let res = aws.resource(binding)?;
        let arn = format!(
            "arn:aws:iam::{}:role{}{}",
            res.account,
            aws.config.role_path,
            self.role.role_name(binding)
        );
        Ok(Credential {
            kind: crate::CredentialKind::AwsRole,
            secret: SecretText::new(arn.clone()),
            details: json!({"role_arn": arn, "assume_with": format!("aws sts assume-role --role-arn {arn} --role-session-name {}", binding.principal)}),
            expires_at,
        })
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        self.role
            .delete_role(cx, &self.role.role_name(binding))
            .await
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Value, ProviderError> {
        let aws = &self.role.aws;
        let role = self.role.role_name(binding);
        if aws.role_exists(cx, &role).await? {
            return Err(ProviderError::StillPresent(format!(
                "IAM role {role} still exists"
            )));
        }
        // Whether this attempt wrote the session deny before deleting (an earlier attempt may
        // have; its calls are in that attempt's audit event).
        let deny = super::client::role_policy(&role, REVOKE_POLICY);
        let denied = cx.has_call(|c| {
            c.call == "PutRolePolicy" && c.target == deny && c.outcome == CallOutcome::Ok
        });
        Ok(
            json!({"check": "iam:GetRole", "role": role, "result": "NoSuchEntity", "sessions_denied_before_deletion": denied}),
        )
    }
}
