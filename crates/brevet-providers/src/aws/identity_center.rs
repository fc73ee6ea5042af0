//! IAM Identity Center: account assignments of a permission set to one user in one account.
//!
//! Assignments are created and deleted asynchronously, so a caller's timeout can end an attempt
//! before AWS does. Three things keep such an assignment from outliving its grant:
//! - creations Brevet sent are remembered per binding until their outcome is seen ([`InFlight`]):
//!   revocation waits for a known one to settle before deleting, and does not report revoked
//!   while one may still land;
//! - the reconciler lists every assignment of the configured permission sets, in the configured
//!   accounts, to the configured users, under the binding it would belong to, so one that no grant
//!   covers (an activation that gave up, a crash, or a standing assignment) is removed;
//! - deleting an assignment does not end role sessions already issued from it, so revocation also
//!   writes a deny for the user's sessions issued so far into the permission set's inline policy
//!   and provisions it to the account (AWS's documented technique).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_sdk_ssoadmin::types::{PrincipalType, ProvisionTargetType, StatusValues, TargetType};
use brevet_core::{Binding, Evidence};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{
    client::{sdk_err, AwsClient, INLINE_POLICY_LIMIT, OPERATION_TIMEOUT},
    documents, AwsMode, Mode,
};
use crate::{Credential, OpContext, OwnedAccess, ProviderError, SecretText};

/// How long an Identity Center assignment operation is polled before the attempt gives up.
pub(super) const ASSIGNMENT_SETTLE: Duration = Duration::from_secs(60);

/// How long a creation whose answer never arrived (the caller gave up while it was being sent)
/// may still land: the SDK's whole-operation timeout, then AWS's own provisioning time.
const UNKNOWN_OUTCOME: Duration = OPERATION_TIMEOUT.saturating_add(ASSIGNMENT_SETTLE);

/// `OwnedAccess::native_id` of an assignment: this, then instance, account, permission set and
/// user separated by `|` (which no ARN, account id or user id contains).
const NATIVE_PREFIX: &str = "identity-center-assignment:";

/// The session duration assumed when a permission set does not say or says it unreadably: the
/// longest Identity Center allows, so no deny is pruned while it may still matter.
const LONGEST_SESSION: Duration = Duration::from_secs(12 * 3600);

/// One account assignment, as AWS identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Assignment {
    pub instance: String,
    pub permission_set: String,
    pub account: String,
    pub user: String,
}

impl Assignment {
    fn native_id(&self) -> String {
        format!(
            "{NATIVE_PREFIX}{}|{}|{}|{}",
            self.instance, self.account, self.permission_set, self.user
        )
    }

    fn parse_native_id(s: &str) -> Option<Self> {
        let mut parts = s.strip_prefix(NATIVE_PREFIX)?.split('|');
        let a = Self {
            instance: parts.next()?.to_owned(),
            account: parts.next()?.to_owned(),
            permission_set: parts.next()?.to_owned(),
            user: parts.next()?.to_owned(),
        };
        let complete = parts.next().is_none()
            && [&a.instance, &a.account, &a.permission_set, &a.user]
                .iter()
                .all(|p| !p.is_empty());
        complete.then_some(a)
    }

    pub(super) fn is_native_id(s: &str) -> bool {
        s.starts_with(NATIVE_PREFIX)
    }
}

/// A `CreateAccountAssignment` Brevet sent whose outcome it has not seen yet.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    sent_at: Instant,
    /// Known once AWS answered; `None` when the caller gave up before the answer arrived.
    request_id: Option<String>,
}

/// What a creation status check found.
enum Creation {
    InProgress,
    /// Succeeded, failed, or no longer known to AWS: either way nothing more will land.
    Settled,
}

/// The account assignments of one provider instance, and what it remembers of them between calls.
pub(super) struct IdentityCenter {
    aws: Arc<AwsClient>,
    /// Creations sent whose outcome is not seen yet, by binding key. In memory only: after a
    /// restart the reconciler finds what they left.
    creations: Mutex<HashMap<String, InFlight>>,
    /// When each binding's sessions were denied by its latest revocation, for `verify_revoked` to
    /// check the deny is (still) there.
    revoked_at: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// An `identity_center`-mode profile, for the [`Mode`] calls on one of its bindings.
pub(super) struct PermissionSetProfile<'a> {
    pub(super) identity_center: &'a IdentityCenter,
    pub(super) instance: &'a str,
    pub(super) permission_set: &'a str,
}

impl IdentityCenter {
    pub(super) fn new(aws: Arc<AwsClient>) -> Self {
        Self {
            aws,
            creations: Mutex::new(HashMap::new()),
            revoked_at: Mutex::new(HashMap::new()),
        }
    }

    fn idc_user(&self, binding: &Binding) -> Result<String, ProviderError> {
        self.aws
            .identity(binding)?
            .identity_center_user_id
            .clone()
            .ok_or_else(|| {
                ProviderError::BadInput(format!(
                    "`{}` has no Identity Center user id (identities.{}.identity_center_user_id)",
                    binding.principal, binding.principal
                ))
            })
    }

    pub(super) fn assignment_of(
        &self,
        binding: &Binding,
        instance: &str,
        permission_set: &str,
    ) -> Result<Assignment, ProviderError> {
        Ok(Assignment {
            instance: instance.to_owned(),
            permission_set: permission_set.to_owned(),
            account: self.aws.resource(binding)?.account.clone(),
            user: self.idc_user(binding)?,
        })
    }

    /// The creation in flight for `binding`, if one may still land (older ones are forgotten).
    fn in_flight(&self, binding: &Binding) -> Option<InFlight> {
        let mut map = self.creations.lock().unwrap_or_else(|p| p.into_inner());
        let key = binding.key();
        let entry = map.get(&key)?.clone();
        if entry.request_id.is_none() && entry.sent_at.elapsed() > UNKNOWN_OUTCOME {
            map.remove(&key);
            return None;
        }
        Some(entry)
    }

    fn set_in_flight(&self, binding: &Binding, entry: Option<InFlight>) {
        let mut map = self.creations.lock().unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(e) => map.insert(binding.key(), e),
            None => map.remove(&binding.key()),
        };
    }

    /// Whether AWS lists the assignment. `log` is the binding the calls are audited under.
    async fn assignment_present(
        &self,
        cx: &OpContext,
        a: &Assignment,
    ) -> Result<bool, ProviderError> {
        let mut token: Option<String> = None;
        loop {
            let r = self
                .aws
                .call(
                    cx,
                    "ListAccountAssignments",
                    &a.native_id(),
                    self.aws
                        .sso
                        .list_account_assignments()
                        .instance_arn(&a.instance)
                        .account_id(&a.account)
                        .permission_set_arn(&a.permission_set)
                        .set_next_token(token.clone())
                        .send(),
                )
                .await;
            let out = r.map_err(|e| sdk_err("ListAccountAssignments", &e))?;
            if out.account_assignments().iter().any(|x| {
                x.principal_type() == Some(&PrincipalType::User)
                    && x.principal_id() == Some(a.user.as_str())
            }) {
                return Ok(true);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(false),
            }
        }
    }

    /// AWS's status of an assignment creation.
    async fn describe_creation(
        &self,
        cx: &OpContext,
        a: &Assignment,
        request_id: &str,
    ) -> Result<
        aws_sdk_ssoadmin::operation::describe_account_assignment_creation_status::DescribeAccountAssignmentCreationStatusOutput,
        ProviderError,
    >{
        self.aws
            .with_retries(
                cx,
                "DescribeAccountAssignmentCreationStatus",
                &a.native_id(),
                || {
                    self.aws
                        .sso
                        .describe_account_assignment_creation_status()
                        .instance_arn(&a.instance)
                        .account_assignment_creation_request_id(request_id)
                        .send()
                },
            )
            .await
    }

    async fn creation_status(
        &self,
        cx: &OpContext,
        a: &Assignment,
        request_id: &str,
    ) -> Result<Creation, ProviderError> {
        let r = self.describe_creation(cx, a, request_id).await;
        match r {
            Ok(out) => match out
                .account_assignment_creation_status()
                .and_then(|s| s.status())
            {
                Some(StatusValues::Succeeded) | Some(StatusValues::Failed) => Ok(Creation::Settled),
                _ => Ok(Creation::InProgress),
            },
            // AWS keeps creation statuses for a while only; a forgotten one is long settled.
            Err(ProviderError::Target(m)) if m.contains("ResourceNotFoundException") => {
                Ok(Creation::Settled)
            }
            Err(e) => Err(e),
        }
    }

    /// Polls an asynchronous assignment operation until it settles, for at most
    /// [`ASSIGNMENT_SETTLE`] (the caller's own timeout may end it sooner).
    async fn settle(
        &self,
        cx: &OpContext,
        a: &Assignment,
        request_id: &str,
        create: bool,
    ) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + ASSIGNMENT_SETTLE;
        let mut delay = Duration::from_millis(100);
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::Unreachable(format!(
                    "account assignment {request_id} still in progress after {}s; it is checked \
                     again on the next attempt",
                    ASSIGNMENT_SETTLE.as_secs()
                )));
            }
            let status = if create {
                let out = self.describe_creation(cx, a, request_id).await?;
                out.account_assignment_creation_status()
                    .map(|s| (s.status().cloned(), s.failure_reason().map(str::to_owned)))
            } else {
                let out = self
                    .aws
                    .with_retries(
                        cx,
                        "DescribeAccountAssignmentDeletionStatus",
                        &a.native_id(),
                        || {
                            self.aws
                                .sso
                                .describe_account_assignment_deletion_status()
                                .instance_arn(&a.instance)
                                .account_assignment_deletion_request_id(request_id)
                                .send()
                        },
                    )
                    .await?;
                out.account_assignment_deletion_status()
                    .map(|s| (s.status().cloned(), s.failure_reason().map(str::to_owned)))
            };
            match status {
                Some((Some(StatusValues::Succeeded), _)) => return Ok(()),
                Some((Some(StatusValues::Failed), why)) => {
                    return Err(ProviderError::Target(format!(
                        "account assignment failed: {}",
                        why.unwrap_or_default()
                    )))
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Makes the binding's assignment exist, following an earlier attempt's creation if one is
    /// still in flight rather than sending another.
    pub(super) async fn ensure_assignment(
        &self,
        cx: &OpContext,
        binding: &Binding,
        instance: &str,
        permission_set: &str,
    ) -> Result<(), ProviderError> {
        let a = self.assignment_of(binding, instance, permission_set)?;
        if self.assignment_present(cx, &a).await? {
            self.set_in_flight(binding, None);
            return Ok(());
        }
        if let Some(InFlight {
            request_id: Some(id),
            ..
        }) = self.in_flight(binding)
        {
            let r = self.settle(cx, &a, &id, true).await;
            if !matches!(r, Err(ProviderError::Unreachable(_))) {
                self.set_in_flight(binding, None);
            }
            if r.is_ok() {
                return Ok(());
            }
        }
        // Remembered before it is sent: if the caller gives up while it is on the way, a later
        // revocation still knows an assignment may appear.
        self.set_in_flight(
            binding,
            Some(InFlight {
                sent_at: Instant::now(),
                request_id: None,
            }),
        );
        let created = self
            .aws
            .with_retries(cx, "CreateAccountAssignment", &a.native_id(), || {
                self.aws
                    .sso
                    .create_account_assignment()
                    .instance_arn(&a.instance)
                    .target_id(&a.account)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(&a.permission_set)
                    .principal_type(PrincipalType::User)
                    .principal_id(&a.user)
                    .send()
            })
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) => {
                // A refusal means nothing was created; a lost answer may still have.
                if !matches!(e, ProviderError::Unreachable(_)) {
                    self.set_in_flight(binding, None);
                }
                return Err(e);
            }
        };
        let Some(id) = out
            .account_assignment_creation_status()
            .and_then(|s| s.request_id())
            .map(str::to_owned)
        else {
            // Without it the outcome cannot be followed: never assume it succeeded.
            return Err(ProviderError::Target(
                "CreateAccountAssignment returned no request id to follow".into(),
            ));
        };
        self.set_in_flight(
            binding,
            Some(InFlight {
                sent_at: Instant::now(),
                request_id: Some(id.clone()),
            }),
        );
        let r = self.settle(cx, &a, &id, true).await;
        if !matches!(r, Err(ProviderError::Unreachable(_))) {
            self.set_in_flight(binding, None);
        }
        r
    }

    /// Deletes the assignment if AWS lists it, and waits for the deletion to settle.
    async fn delete_assignment(&self, cx: &OpContext, a: &Assignment) -> Result<(), ProviderError> {
        if !self.assignment_present(cx, a).await? {
            return Ok(());
        }
        let out = self
            .aws
            .with_retries(cx, "DeleteAccountAssignment", &a.native_id(), || {
                self.aws
                    .sso
                    .delete_account_assignment()
                    .instance_arn(&a.instance)
                    .target_id(&a.account)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(&a.permission_set)
                    .principal_type(PrincipalType::User)
                    .principal_id(&a.user)
                    .send()
            })
            .await?;
        let Some(id) = out
            .account_assignment_deletion_status()
            .and_then(|s| s.request_id())
            .map(str::to_owned)
        else {
            return Err(ProviderError::Target(
                "DeleteAccountAssignment returned no request id to follow".into(),
            ));
        };
        self.settle(cx, a, &id, false).await
    }

    /// Revokes the binding's assignment: waits for a creation of it that is still in flight (so
    /// the deletion is not overtaken by it), deletes it, then denies the user's sessions issued so
    /// far. A creation whose answer never came cannot be waited for; [`Self::verify_assignment_revoked`]
    /// reports it until it can no longer land, and the reconciler removes it if it does.
    pub(super) async fn revoke_assignment(
        &self,
        cx: &OpContext,
        binding: &Binding,
        instance: &str,
        permission_set: &str,
    ) -> Result<(), ProviderError> {
        let a = self.assignment_of(binding, instance, permission_set)?;
        if let Some(InFlight {
            request_id: Some(id),
            ..
        }) = self.in_flight(binding)
        {
            let deadline = tokio::time::Instant::now() + ASSIGNMENT_SETTLE;
            let mut delay = Duration::from_millis(100);
            while let Creation::InProgress = self.creation_status(cx, &a, &id).await? {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProviderError::Unreachable(format!(
                        "the account assignment's creation {id} is still in progress; it is \
                         deleted once it settles"
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            self.set_in_flight(binding, None);
        }
        if self.assignment_present(cx, &a).await? {
            // Listed: whatever creation was in flight has landed.
            self.set_in_flight(binding, None);
            self.delete_assignment(cx, &a).await?;
        }
        let at = self.deny_sessions_on_permission_set(cx, &a).await?;
        self.revoked_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(binding.key(), at);
        Ok(())
    }

    /// Evidence that the binding's assignment is gone, no creation of it can still land, and its
    /// sessions issued before the revocation are denied.
    pub(super) async fn verify_assignment_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
        instance: &str,
        permission_set: &str,
    ) -> Result<Value, ProviderError> {
        let a = self.assignment_of(binding, instance, permission_set)?;
        match self.in_flight(binding) {
            Some(InFlight {
                request_id: Some(id),
                ..
            }) => {
                if let Creation::InProgress = self.creation_status(cx, &a, &id).await? {
                    return Err(ProviderError::StillPresent(format!(
                        "the account assignment's creation {id} is still in progress"
                    )));
                }
                self.set_in_flight(binding, None);
            }
            Some(InFlight {
                request_id: None,
                sent_at,
            }) => {
                let left = UNKNOWN_OUTCOME.saturating_sub(sent_at.elapsed());
                return Err(ProviderError::StillPresent(format!(
                    "a CreateAccountAssignment for it was sent {}s ago and its answer never came; \
                     it could still land for {}s, so revocation is checked again",
                    sent_at.elapsed().as_secs(),
                    left.as_secs()
                )));
            }
            None => {}
        }
        if self.assignment_present(cx, &a).await? {
            return Err(ProviderError::StillPresent(
                "the account assignment still exists".into(),
            ));
        }
        let wanted = self
            .revoked_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&binding.key())
            .copied();
        let doc = self.permission_set_inline_policy(cx, &a).await?;
        let deny = doc
            .as_ref()
            .and_then(|d| documents::permission_set_deny_for(d, &a.user));
        let statement = match (deny, wanted) {
            (Some((t, st)), Some(w)) if t >= documents::revocation_instant(w) => st,
            (Some((_, st)), None) => st,
            // Written by this revocation but no longer there (another replica's write of the same
            // permission set's policy overtook it): the next attempt writes it again.
            _ => {
                return Err(ProviderError::StillPresent(format!(
                    "no deny for user {}'s sessions in permission set {}'s inline policy",
                    a.user, a.permission_set
                )))
            }
        };
        self.revoked_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&binding.key());
        Ok(json!({
            "check": "sso:ListAccountAssignments",
            "permission_set_arn": a.permission_set,
            "assigned": false,
            "session_deny": statement,
        }))
    }

    /// The permission set's inline policy, `None` when it has none.
    /// The permission set's inline policy as AWS returns it.
    async fn inline_policy(
        &self,
        cx: &OpContext,
        a: &Assignment,
    ) -> Result<
        aws_sdk_ssoadmin::operation::get_inline_policy_for_permission_set::GetInlinePolicyForPermissionSetOutput,
        ProviderError,
    >{
        self.aws
            .with_retries(
                cx,
                "GetInlinePolicyForPermissionSet",
                &a.permission_set,
                || {
                    self.aws
                        .sso
                        .get_inline_policy_for_permission_set()
                        .instance_arn(&a.instance)
                        .permission_set_arn(&a.permission_set)
                        .send()
                },
            )
            .await
    }

    async fn permission_set_inline_policy(
        &self,
        cx: &OpContext,
        a: &Assignment,
    ) -> Result<Option<Value>, ProviderError> {
        let r = self.inline_policy(cx, a).await?;
        let text = r.inline_policy().unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some).map_err(|e| {
            ProviderError::Target(format!(
                "permission set {}'s inline policy is not JSON: {e}",
                a.permission_set
            ))
        })
    }

    /// Denies the user's role sessions from the permission set issued before now, in the
    /// permission set's inline policy, and provisions it to the account so the account's role
    /// carries it. Returns the instant denied up to.
    async fn deny_sessions_on_permission_set(
        &self,
        cx: &OpContext,
        a: &Assignment,
    ) -> Result<DateTime<Utc>, ProviderError> {
        let described = self
            .aws
            .with_retries(cx, "DescribePermissionSet", &a.permission_set, || {
                self.aws
                    .sso
                    .describe_permission_set()
                    .instance_arn(&a.instance)
                    .permission_set_arn(&a.permission_set)
                    .send()
            })
            .await?;
        let session = described
            .permission_set()
            .and_then(|p| p.session_duration())
            .and_then(documents::iso_duration)
            .unwrap_or_else(|| {
                chrono::Duration::from_std(LONGEST_SESSION).unwrap_or(chrono::Duration::hours(12))
            });
        let existing = self.inline_policy(cx, a).await?;
        let now = Utc::now();
        let (doc, scope) = documents::permission_set_policy_with_deny(
            existing.inline_policy().unwrap_or_default(),
            &a.user,
            now,
            session,
            INLINE_POLICY_LIMIT,
        )
        .map_err(|why| {
            ProviderError::Config(format!("permission set {}: {why}", a.permission_set))
        })?;
        if scope != documents::DenyScope::User {
            tracing::warn!(
                permission_set = %a.permission_set,
                ?scope,
                "session denies fill the permission set's inline policy: collapsed into one"
            );
        }
        let doc = doc.to_string();
        self.aws
            .with_retries(
                cx,
                "PutInlinePolicyToPermissionSet",
                &a.permission_set,
                || {
                    self.aws
                        .sso
                        .put_inline_policy_to_permission_set()
                        .instance_arn(&a.instance)
                        .permission_set_arn(&a.permission_set)
                        .inline_policy(&doc)
                        .send()
                },
            )
            .await?;
        let provisioned = self
            .aws
            .with_retries(cx, "ProvisionPermissionSet", &a.permission_set, || {
                self.aws
                    .sso
                    .provision_permission_set()
                    .instance_arn(&a.instance)
                    .permission_set_arn(&a.permission_set)
                    .target_type(ProvisionTargetType::AwsAccount)
                    .target_id(&a.account)
                    .send()
            })
            .await?;
        let status = provisioned.permission_set_provisioning_status();
        let mut state = status.and_then(|s| s.status()).cloned();
        let request_id = status.and_then(|s| s.request_id()).map(str::to_owned);
        let deadline = tokio::time::Instant::now() + ASSIGNMENT_SETTLE;
        let mut delay = Duration::from_millis(100);
        while state == Some(StatusValues::InProgress) {
            let Some(id) = &request_id else { break };
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::Unreachable(format!(
                    "provisioning permission set {} ({id}) still in progress",
                    a.permission_set
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let out = self
                .aws
                .with_retries(
                    cx,
                    "DescribePermissionSetProvisioningStatus",
                    &a.permission_set,
                    || {
                        self.aws
                            .sso
                            .describe_permission_set_provisioning_status()
                            .instance_arn(&a.instance)
                            .provision_permission_set_request_id(id)
                            .send()
                    },
                )
                .await?;
            let s = out.permission_set_provisioning_status();
            if s.and_then(|s| s.status()) == Some(&StatusValues::Failed) {
                return Err(ProviderError::Target(format!(
                    "provisioning permission set {} failed: {}",
                    a.permission_set,
                    s.and_then(|s| s.failure_reason()).unwrap_or_default()
                )));
            }
            state = s.and_then(|s| s.status()).cloned();
        }
        if state == Some(StatusValues::Failed) {
            return Err(ProviderError::Target(format!(
                "provisioning permission set {} failed: {}",
                a.permission_set,
                status.and_then(|s| s.failure_reason()).unwrap_or_default()
            )));
        }
        Ok(now)
    }

    /// The configured (instance, permission set) pairs, each once.
    fn permission_sets(&self) -> Vec<(&str, &str)> {
        let mut sets: Vec<(&str, &str)> = self
            .aws
            .config
            .profiles
            .values()
            .filter_map(|p| match &p.mode {
                AwsMode::IdentityCenter {
                    instance_arn,
                    permission_set_arn,
                } => Some((instance_arn.as_str(), permission_set_arn.as_str())),
                _ => None,
            })
            .collect();
        sets.sort_unstable();
        sets.dedup();
        sets
    }

    /// The bindings an assignment could be the access of: every configured principal with that
    /// user id, resource in that account, and profile of that permission set.
    pub(super) fn bindings_of(&self, a: &Assignment) -> Vec<String> {
        let mut keys = Vec::new();
        for (principal, identity) in &self.aws.config.identities {
            if identity.identity_center_user_id.as_deref() != Some(a.user.as_str()) {
                continue;
            }
            for (resource, r) in &self.aws.config.resources {
                if r.account != a.account {
                    continue;
                }
                for (profile, p) in &self.aws.config.profiles {
                    let ours = matches!(&p.mode, AwsMode::IdentityCenter { instance_arn, permission_set_arn }
                        if *instance_arn == a.instance && *permission_set_arn == a.permission_set);
                    if ours {
                        keys.push(format!(
                            "{principal}|{}:{resource}|{profile}",
                            self.aws.name
                        ));
                    }
                }
            }
        }
        keys
    }

    fn is_configured(&self, a: &Assignment) -> bool {
        self.permission_sets()
            .contains(&(a.instance.as_str(), a.permission_set.as_str()))
            && self
                .aws
                .config
                .resources
                .values()
                .any(|r| r.account == a.account)
            && self
                .aws
                .config
                .identities
                .values()
                .any(|i| i.identity_center_user_id.as_deref() == Some(a.user.as_str()))
    }

    /// Every USER assignment of a configured permission set, in an account of a configured
    /// resource, to a user some configured principal is: what the reconciler compares with the
    /// grants. Assignments to anyone else (and group assignments) are never listed.
    pub(super) async fn list_owned(&self) -> Result<Vec<OwnedAccess>, ProviderError> {
        let mut accounts: Vec<&str> = self
            .aws
            .config
            .resources
            .values()
            .map(|r| r.account.as_str())
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut out = Vec::new();
        for (instance, permission_set) in self.permission_sets() {
            for account in &accounts {
                let mut token: Option<String> = None;
                loop {
                    let page = self
                        .aws
                        .sso
                        .list_account_assignments()
                        .instance_arn(instance)
                        .account_id(*account)
                        .permission_set_arn(permission_set)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| sdk_err("ListAccountAssignments", &e))?;
                    for x in page.account_assignments() {
                        let (Some(&PrincipalType::User), Some(user)) =
                            (x.principal_type(), x.principal_id())
                        else {
                            continue;
                        };
                        let a = Assignment {
                            instance: instance.to_owned(),
                            permission_set: permission_set.to_owned(),
                            account: (*account).to_owned(),
                            user: user.to_owned(),
                        };
                        match self.bindings_of(&a).as_slice() {
                            [] => {}
                            [one] => out.push(OwnedAccess {
                                native_id: a.native_id(),
                                binding_key: Some(one.clone()),
                            }),
                            several => tracing::warn!(
                                provider = %self.aws.name,
                                assignment = %a.native_id(),
                                bindings = ?several,
                                "an account assignment could belong to several bindings, so it \
                                 is not reconciled: give each account one resource, each \
                                 permission set one profile and each Identity Center user one \
                                 principal"
                            ),
                        }
                    }
                    match page.next_token() {
                        Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                        _ => break,
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes an assignment [`Self::list_owned`] listed: deletes it, reads it back gone
    /// and denies the user's sessions issued so far. Anything that is not an assignment of a
    /// configured permission set, account and user is refused untouched.
    pub(super) async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        let a = Assignment::parse_native_id(&owned.native_id)
            .filter(|a| self.is_configured(a))
            .ok_or_else(|| {
                ProviderError::Config(format!(
                    "refusing to delete `{}`: it is not an assignment of a configured permission \
                     set, in a configured account, to a configured Identity Center user",
                    owned.native_id
                ))
            })?;
        self.delete_assignment(cx, &a).await?;
        if self.assignment_present(cx, &a).await? {
            return Err(ProviderError::StillPresent(owned.native_id.clone()));
        }
        let denied_until = self.deny_sessions_on_permission_set(cx, &a).await?;
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: json!({
                "check": "sso:ListAccountAssignments",
                "assignment": owned.native_id,
                "assigned": false,
                "sessions_denied_before": denied_until,
            }),
        })
    }
}

#[async_trait]
impl Mode for PermissionSetProfile<'_> {
    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.identity_center
            .ensure_assignment(cx, binding, self.instance, self.permission_set)
            .await
    }

    async fn issue_credentials(
        &self,
        _cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<Credential, ProviderError> {
        let res = self.identity_center.aws.resource(binding)?;
        Ok(Credential {
            kind: crate::CredentialKind::AwsIdentityCenter,
            secret: SecretText::new(String::new()),
            details: json!({"account": res.account, "permission_set_arn": self.permission_set, "sign_in": "use your AWS access portal"}),
            expires_at,
        })
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        self.identity_center
            .revoke_assignment(cx, binding, self.instance, self.permission_set)
            .await
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Value, ProviderError> {
        self.identity_center
            .verify_assignment_revoked(cx, binding, self.instance, self.permission_set)
            .await
    }
}

#[cfg(test)]
mod tests {
    use brevet_core::ProfileName;

    use super::*;
    use crate::{
        aws::{AwsIdentity, AwsProfile, AwsProvider, AwsResource},
        Provider,
    };

    #[test]
    fn native_ids_round_trip_and_refuse_anything_else() {
        let a = Assignment {
            instance: "arn:aws:sso:::instance/ssoins-1".into(),
            permission_set: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
            account: "123456789012".into(),
            user: "9067-u".into(),
        };
        assert_eq!(Assignment::parse_native_id(&a.native_id()), Some(a.clone()));
        for bad in [
            "brevet-0123456789abcdef0123",
            "identity-center-assignment:a|b|c",
            "identity-center-assignment:a|b|c|d|e",
            "identity-center-assignment:a||c|d",
        ] {
            assert_eq!(Assignment::parse_native_id(bad), None, "{bad}");
        }
    }

    /// The reconciler's removal acts only on what `list_owned` can report: an assignment of a
    /// configured permission set, in a configured account, to a configured user. Anything else is
    /// refused before any AWS call (the endpoint here answers nothing, so a call would fail
    /// differently).
    #[tokio::test]
    async fn remove_owned_refuses_assignments_brevet_does_not_manage() {
        let mut config = super::super::unreachable_config();
        config.profiles.insert(
            ProfileName::parse("aws.admin").unwrap(),
            AwsProfile {
                mode: AwsMode::IdentityCenter {
                    instance_arn: "arn:aws:sso:::instance/ssoins-1".into(),
                    permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
                },
                actions: Vec::new(),
                compiled: None,
            },
        );
        config.resources.insert(
            "acct".into(),
            AwsResource {
                account: "123456789012".into(),
                arns: Vec::new(),
            },
        );
        config.identities.insert(
            "alice".into(),
            AwsIdentity {
                arn: None,
                identity_center_user_id: Some("u-alice".into()),
            },
        );
        let p = AwsProvider::new("aws", config).await;
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
                .remove_owned(
                    &OpContext::other(),
                    &OwnedAccess {
                        native_id: forged.clone(),
                        binding_key: Some("alice|aws:acct|aws.admin".into()),
                    },
                )
                .await
                .expect_err(&forged);
            assert!(
                e.to_string().contains("refusing to delete"),
                "{forged}: {e}"
            );
        }
        // The genuine one gets as far as calling AWS (which is not there).
        let e = p
            .remove_owned(
                &OpContext::other(),
                &OwnedAccess {
                    native_id: ok.into(),
                    binding_key: None,
                },
            )
            .await
            .expect_err("nothing answers");
        assert!(!e.to_string().contains("refusing"), "{e}");
        assert_eq!(
            p.identity_center.bindings_of(&Assignment {
                instance: "arn:aws:sso:::instance/ssoins-1".into(),
                permission_set: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
                account: "123456789012".into(),
                user: "u-alice".into(),
            }),
            ["alice|aws:acct|aws.admin"],
            "the binding key the broker's reconciler compares with covered bindings"
        );
    }
}
