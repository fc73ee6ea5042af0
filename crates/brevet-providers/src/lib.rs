//! Providers: what turns a Brevet grant into real access on a target, and takes it away again.
//!
//! One trait, [`Provider`], is the extension point; each implementation lives in its own module
//! folder (`postgres/`, `ssh/`, `aws/`, `gcp/`, `azure/`), parses its own config and is listed once in
//! [`registry::builtin`] (one Cargo feature each). Every operation is idempotent, so the server
//! can retry it or resume it after a crash without creating anything twice. Durable state a
//! provider needs lives in [`state::ProviderState`], scoped to the instance.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod call;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod registry;
mod secret;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod state;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName, ResourceId};
use chrono::{DateTime, Utc};

pub use call::{CallOutcome, CallRecord, OpContext, Operation};
pub use secret::{Credential, SecretText};

/// A provider call's failure, classed by whether trying again can help
/// ([`ProviderError::is_retryable`]): the broker retries a retryable failure within the step and
/// shows a permanent one at once.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("resource `{0}` is not configured for this provider")]
    UnknownResource(String),
    #[error("profile `{profile}` is not offered by provider `{provider}`; it offers {offered}")]
    UnknownProfile {
        provider: String,
        profile: String,
        offered: String,
    },
    /// Retryable: the target could not be reached, or answered that it is unavailable.
    #[error("the target is unreachable: {0}")]
    Unreachable(String),
    /// Retryable: the target is limiting Brevet's request rate.
    #[error("the target is throttling requests: {0}")]
    Throttled(String),
    /// Retryable: a concurrent change on the target got in the way (a lock, a serialization
    /// failure, a concurrent modification).
    #[error("a concurrent change on the target got in the way: {0}")]
    Conflict(String),
    /// Permanent: the target refused the operation (permission denied, invalid request); trying
    /// again will not help until someone fixes the cause.
    #[error("the target refused the operation: {0}")]
    Target(String),
    /// Retryable: the target still shows the access after it was revoked.
    #[error("access is still present after revocation: {0}")]
    StillPresent(String),
    #[error("provider configuration: {0}")]
    Config(String),
    #[error("{0}")]
    BadInput(String),
}

impl ProviderError {
    /// Whether the same call may succeed if made again (unreachable, throttled, conflicting,
    /// still present); refusals, bad input and configuration errors will not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Throttled(_) | Self::Conflict(_) | Self::StillPresent(_)
        )
    }

    /// The class's name, as call records and audit events give it.
    pub fn class(&self) -> &'static str {
        match self {
            Self::UnknownResource(_) | Self::UnknownProfile { .. } => "unknown",
            Self::Unreachable(_) => "unreachable",
            Self::Throttled(_) => "throttled",
            Self::Conflict(_) => "conflict",
            Self::Target(_) => "refused",
            Self::StillPresent(_) => "still_present",
            Self::Config(_) => "config",
            Self::BadInput(_) => "bad_input",
        }
    }
}

/// Profile `p` from a provider's profiles, or the error naming the profiles it offers.
pub fn profile_of<'a, T>(
    provider: &str,
    profiles: &'a std::collections::BTreeMap<ProfileName, T>,
    p: &ProfileName,
) -> Result<&'a T, ProviderError> {
    profiles
        .get(p)
        .ok_or_else(|| ProviderError::UnknownProfile {
            provider: provider.to_owned(),
            profile: p.to_string(),
            offered: profiles
                .keys()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// What the requester supplies when asking for credentials.
#[derive(Debug, Clone, Default)]
pub struct CredentialInput {
    /// The grant the credentials are for (used in certificate key ids and records).
    pub grant_id: String,
    /// An OpenSSH public key line, for providers that sign the requester's own key.
    pub public_key: Option<String>,
}

/// Access on a target that Brevet created, as the target reports it (for reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAccess {
    /// The provider's own name for it (a role name, a certificate serial …).
    pub native_id: String,
    /// The binding it was created for, if the target still records it.
    pub binding_key: Option<String>,
}

/// What a requester must send to get credentials (a wire type: the CLI and portal read it), and
/// the secret's format.
pub use brevet_wire::{CredentialInputKind, CredentialKind};

/// A document a provider publishes (no token needed): what hosts or clients fetch to trust or
/// check its credentials, served at `/v1/providers/{name}/{document}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document {
    pub name: &'static str,
    pub content_type: &'static str,
    pub description: &'static str,
}

/// The provider interface. `ensure` and `revoke` act on a [`Binding`] (one principal's profile on
/// one resource); the server reference-counts overlapping grants so a provider never has to.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider kind, e.g. `postgres`.
    fn kind(&self) -> &'static str;

    /// The access profiles this instance can grant.
    fn profiles(&self) -> Vec<ProfileName>;

    /// What a requester must send with a credential request (the portal and CLI ask for it).
    fn credential_input(&self) -> CredentialInputKind {
        CredentialInputKind::None
    }

    /// What `profile` grants on `resource` in the target's own terms (IAM actions on ARNs, a
    /// permission set), one line each, for the requester to read before asking. Empty when the
    /// provider has nothing more precise to show than the profile's name.
    fn grants_preview(&self, _resource: &ResourceId, _profile: &ProfileName) -> Vec<String> {
        Vec::new()
    }

    /// Runs once before the server serves (SSH writes its KRL: sshd refuses every key while the
    /// file it reads is missing).
    async fn on_start(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The documents this provider publishes.
    fn documents(&self) -> &'static [Document] {
        &[]
    }

    /// One published document's current content; `None` if it has no such document.
    async fn document(&self, _name: &str) -> Result<Option<Vec<u8>>, ProviderError> {
        Ok(None)
    }

    /// Makes the binding exist with access ending at `expires_at`; creates or updates.
    /// Where the target can enforce expiry itself, it must be told `expires_at` here.
    ///
    /// Every call that acts on the target gets the operation's context `cx`, and records the
    /// target calls it makes there (`cx.start(..).finish(..)`), for the audit log.
    async fn ensure(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError>;

    /// Issues fresh credentials for an ensured binding, returned once to the requester and never
    /// stored by Brevet. Earlier credentials for the binding stop working.
    async fn issue_credentials(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        input: &CredentialInput,
    ) -> Result<Credential, ProviderError>;

    /// The longest grant this provider can honour for a profile, if it has a limit (an IAM role's
    /// maximum session duration, say). Longer requests are refused before anything is created.
    fn max_grant_duration(&self, _profile: &ProfileName) -> Option<std::time::Duration> {
        None
    }

    /// Checks what the requester supplied for credentials before anything is granted, so a bad
    /// input (a malformed public key, say) is refused with nothing created.
    fn check_credential_input(
        &self,
        _binding: &Binding,
        _input: &CredentialInput,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Removes the binding and ends its live sessions. Absent is success.
    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError>;

    /// Reads the target back and proves the binding is gone; `StillPresent` if it is not.
    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Evidence, ProviderError>;

    /// Everything on the target that Brevet created and still exists.
    async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError>;

    /// Removes something Brevet created that no grant covers any more (an orphan).
    async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError>;

    /// Ends live sessions of the binding without removing it; returns how many were ended.
    async fn terminate_sessions(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<u64, ProviderError>;
}
