//! AWS, in three modes chosen per profile, each a type of its own (its file says how it grants
//! and revokes):
//! - `role` (`role.rs`): an IAM role per binding whose inline policy expires by itself;
//! - `session` (`session.rs`): `sts:AssumeRole` of a configured base role with a session policy,
//!   handed out in the AWS CLI `credential_process` shape;
//! - `identity_center` (`identity_center.rs`): an IAM Identity Center account assignment of a
//!   permission set.
//!
//! They share one client (`client.rs`): the SDK clients, SDK error mapping, retries and the
//! per-binding log of every AWS call's outcome, with its request id, for the audit log. One
//! provider instance may have profiles of every mode: [`AwsProvider`] resolves a binding's profile
//! to its mode once per call ([`Mode`]), and gathers what the reconciler sees from the modes that
//! create something per grant.

mod client;
mod documents;
mod identity_center;
pub mod names;
mod role;
mod session;
mod settings;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName, ResourceId};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub use names::{Arn, IamAction};
pub use settings::Kind;

use crate::{Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError};
use client::AwsClient;
use identity_center::{IdentityCenter, PermissionSetProfile};
use role::{Role, RoleProfile};
use session::{Session, SessionProfile};

/// The fuzz targets' way in (`fuzz/fuzz_targets/iam_policy_document.rs`): the functions that
/// read the policy documents and durations AWS returns, and build the ones Brevet writes.
#[doc(hidden)]
pub mod fuzzing {
    /// IAM's limit on a role's (and a permission set's) inline policies, in characters.
    pub const INLINE_POLICY_LIMIT: usize = super::client::INLINE_POLICY_LIMIT;
    pub use super::documents::{
        grant_policy, iso_duration, permission_set_deny_for, permission_set_policy_with_deny,
        policy_size, revocation_instant, revocation_obsolete_at, revoke_sessions_policy, DenyScope,
    };
}

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
    /// The profile's own action list (`actions = [...]`), allowed on every ARN of the resource.
    pub actions: Vec<IamAction>,
    /// Or, for `access = "NAME"`: the neutral profile compiled for each resource (by resource
    /// id), each action allowed only on the ARNs of the types it acts on.
    pub compiled: Option<BTreeMap<String, Vec<Scoped>>>,
}

/// Actions allowed on resources: one statement of a grant's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoped {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

impl AwsProfile {
    /// The statements this profile grants on `res` (resource id `resource`).
    pub fn statements(&self, resource: &str, res: &AwsResource) -> Vec<Scoped> {
        match &self.compiled {
            Some(by_resource) => by_resource.get(resource).cloned().unwrap_or_default(),
            None => vec![Scoped {
                actions: self.actions.iter().map(|a| a.to_string()).collect(),
                resources: res.arns.iter().map(|a| a.as_str().to_owned()).collect(),
            }],
        }
    }
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

/// What a profile's mode does for one of its bindings. [`AwsProvider::mode`] resolves a binding's
/// profile to it, so each [`Provider`] method dispatches once.
#[async_trait]
trait Mode: Send + Sync {
    /// The longest grant the mode can honour, if it has a limit.
    fn max_grant_duration(&self) -> Option<Duration> {
        None
    }

    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError>;

    async fn issue_credentials(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<Credential, ProviderError>;

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError>;

    /// What was read back that shows the binding's access is gone.
    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Value, ProviderError>;
}

pub struct AwsProvider {
    aws: Arc<AwsClient>,
    role: Role,
    session: Session,
    identity_center: IdentityCenter,
}

impl AwsProvider {
    /// Builds the clients. Brevet's own AWS credentials come from the standard chain
    /// (environment, profile, instance role) — never from Brevet's config file.
    pub async fn new(name: &str, config: AwsConfig) -> Self {
        let aws = Arc::new(AwsClient::new(name, config).await);
        Self {
            role: Role::new(aws.clone()),
            session: Session::new(aws.clone()),
            identity_center: IdentityCenter::new(aws.clone()),
            aws,
        }
    }

    /// Role names derive from the binding, so every step is idempotent and needs no lookup.
    pub fn role_name(&self, binding: &Binding) -> String {
        self.role.role_name(binding)
    }

    fn profile(&self, p: &ProfileName) -> Result<&AwsProfile, ProviderError> {
        crate::profile_of(&self.aws.name, &self.aws.config.profiles, p)
    }

    /// The mode of a profile, with what that mode reads from the profile: the one place a
    /// profile's mode is looked at.
    fn mode(&self, profile: &ProfileName) -> Result<Box<dyn Mode + '_>, ProviderError> {
        let p = self.profile(profile)?;
        Ok(match &p.mode {
            AwsMode::Role => Box::new(RoleProfile {
                role: &self.role,
                profile: p,
            }),
            AwsMode::Session { base_role_arn } => Box::new(SessionProfile {
                session: &self.session,
                base_role_arn,
                profile: p,
            }),
            AwsMode::IdentityCenter {
                instance_arn,
                permission_set_arn,
            } => Box::new(PermissionSetProfile {
                identity_center: &self.identity_center,
                instance: instance_arn,
                permission_set: permission_set_arn,
            }),
        })
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.aws.config.profiles.keys().cloned().collect()
    }

    fn grants_preview(&self, resource: &ResourceId, profile: &ProfileName) -> Vec<String> {
        let (Some(p), Some(res)) = (
            self.aws.config.profiles.get(profile),
            self.aws.config.resources.get(resource.name()),
        ) else {
            return Vec::new();
        };
        match &p.mode {
            AwsMode::IdentityCenter {
                permission_set_arn, ..
            } => vec![format!("the permission set {permission_set_arn}")],
            _ => p
                .statements(resource.name(), res)
                .iter()
                .map(|s| format!("{} on {}", s.actions.join(", "), s.resources.join(", ")))
                .collect(),
        }
    }

    fn max_grant_duration(&self, profile: &ProfileName) -> Option<Duration> {
        self.mode(profile).ok()?.max_grant_duration()
    }

    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.mode(&binding.profile)?
            .ensure(cx, binding, expires_at)
            .await
    }

    async fn issue_credentials(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        _input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        self.mode(&binding.profile)?
            .issue_credentials(cx, binding, expires_at)
            .await
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        self.mode(&binding.profile)?.revoke(cx, binding).await
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Evidence, ProviderError> {
        let mut observation = self
            .mode(&binding.profile)?
            .verify_revoked(cx, binding)
            .await?;
        observation["provider"] = json!(self.aws.name);
        Ok(Evidence {
            checked_at: Utc::now(),
            observation,
        })
    }

    /// Per-grant roles and Identity Center assignments; `session` mode creates nothing per grant.
    async fn list_owned(&self, _cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        let mut out = self.role.list_owned().await?;
        out.extend(self.identity_center.list_owned().await?);
        Ok(out)
    }

    async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        if identity_center::Assignment::is_native_id(&owned.native_id) {
            return self.identity_center.remove_owned(cx, owned).await;
        }
        self.role.remove_owned(cx, owned).await
    }

    /// IAM sessions are ended by the TokenIssueTime deny that revocation writes first.
    async fn terminate_sessions(
        &self,
        _cx: &OpContext,
        _binding: &Binding,
    ) -> Result<u64, ProviderError> {
        Ok(0)
    }
}

/// A config whose endpoint nothing answers on, for tests that must fail before or at the first
/// AWS call.
#[cfg(test)]
fn unreachable_config() -> AwsConfig {
    AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: Some("http://127.0.0.1:9".into()),
        role_prefix: "brevet-".into(),
        role_path: "/brevet/".into(),
        max_session_duration: Duration::from_secs(3600),
        profiles: BTreeMap::new(),
        resources: BTreeMap::new(),
        identities: BTreeMap::new(),
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
            compiled: None,
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
            compiled: None,
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
