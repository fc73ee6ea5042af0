//! Answers: the server writes them, the CLI reads them.

use brevet_core::{Request, RequestKind, RequestState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{CredentialInputKind, CredentialKind};

/// The error body of every failed API call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `bad_request`, `policy_denied`.
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// For policy decisions: which policies decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub trace: Option<serde_json::Value>,
}

/// A request, or a grant (a request that was approved and activated).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    /// `access`, or `extension` (then `parent` is the extended grant).
    pub kind: String,
    pub parent: Option<String>,
    pub requester: String,
    pub resource: String,
    pub profile: String,
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub state: RequestState,
    pub approvals_required: u32,
    pub approvals: Vec<String>,
    pub policy: String,
    pub created_at: DateTime<Utc>,
    pub approve_by: DateTime<Utc>,
    pub activate_by: Option<DateTime<Utc>>,
    pub granted_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    pub extensions_applied: u32,
    pub max_extensions: u32,
    /// What the provider reported when it read the target back after revocation.
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<serde_json::Value>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl RequestView {
    pub fn new(r: &Request, approvals: Vec<String>) -> Self {
        let (kind, parent) = match &r.kind {
            RequestKind::Access => ("access", None),
            RequestKind::Extension { parent } => ("extension", Some(parent.to_string())),
        };
        Self {
            id: r.id.to_string(),
            kind: kind.into(),
            parent,
            requester: r.requester.to_string(),
            resource: r.resource.to_string(),
            profile: r.profile.to_string(),
            duration: r.duration.to_string(),
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            state: r.state,
            approvals_required: r.approvals_required,
            approvals,
            policy: r.policy_rule.clone(),
            created_at: r.created_at,
            approve_by: r.approve_by,
            activate_by: r.activate_by,
            granted_at: r.window.map(|w| w.granted_at),
            expires_at: r.window.map(|w| w.expires_at),
            revoked_at: r.revoked_at,
            revoke_reason: r.revoke_reason.clone(),
            extensions_applied: r.extensions_applied,
            max_extensions: r.max_extensions,
            evidence: r.evidence.as_ref().map(|e| serde_json::json!(e)),
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error.clone(),
        }
    }
}

/// A credential, in the one answer that carries it to its owner. `Debug` never prints the secret.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    /// The secret's format: what a client can do with it.
    pub kind: CredentialKind,
    /// Shown once; Brevet does not keep it.
    pub secret: String,
    /// Non-secret details worth showing (user name, host, database, principals).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivatedView {
    pub grant: RequestView,
    pub credential: CredentialView,
}

/// The server's audit public key and its latest signed checkpoint (none while the log is empty).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// Ed25519 public key, hex: what verifiers pin.
    pub public_key: String,
    pub checkpoint: Option<brevet_audit::Checkpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub id: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyTestView {
    /// `allow` or `deny`.
    pub outcome: String,
    pub policy: Option<String>,
    pub approvals_required: Option<u32>,
    pub max_duration: Option<String>,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub trace: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockView {
    pub principal: String,
    pub reason: String,
    pub locked_by: String,
    pub locked_at: DateTime<Utc>,
}

/// What happened to one grant under the kill switch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KillOutcome {
    pub grant_id: String,
    pub principal: String,
    pub resource: String,
    pub profile: String,
    /// `revoked` (and verified), `retrying` (failed or timed out; the scheduler keeps trying),
    /// `cancelled` (its activation failed and rolled back meanwhile: nothing was granted), or
    /// `pending_activation` (an activation in flight; revoked as soon as it lands).
    pub outcome: String,
    pub error: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<serde_json::Value>,
    /// Live sessions the provider ended before revoking (where it can: PostgreSQL backends).
    pub sessions_terminated: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KillReport {
    /// The principal, or `*` for everyone.
    pub target: String,
    pub reason: String,
    pub grants: Vec<KillOutcome>,
    /// Pending or approved requests that were cancelled.
    pub cancelled_requests: Vec<String>,
    pub revoked: usize,
    pub retrying: usize,
    /// Portal and CLI sessions that were ended, so the person is signed out everywhere.
    pub sessions_ended: u64,
    pub elapsed_ms: u64,
}

/// What one reconciliation pass found and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReconcileReport {
    pub providers_checked: usize,
    pub owned_seen: usize,
    pub orphans_removed: Vec<String>,
    pub errors: Vec<String>,
}

/// A resource and profile that policy lets someone ask for, with the limits that would apply.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Eligible {
    pub resource: String,
    pub profile: String,
    pub max_duration: String,
    pub approvals: u32,
    pub require_reason: bool,
    pub require_ticket: bool,
    pub max_extensions: u32,
    /// What activation needs from the requester (`public_key`: send an OpenSSH public key).
    pub credential_input: CredentialInputKind,
    /// What the profile grants on the resource in the target's own terms (IAM actions on
    /// ARNs…), one line each; empty when the provider shows nothing beyond the profile's name.
    #[serde(default)]
    pub grants: Vec<String>,
}

/// One notification delivery and its attempts so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub subscriber: String,
    /// Public event type, e.g. `request.created`.
    pub event_type: String,
    pub request_id: Option<String>,
    /// `pending` (first try or retry due at `next_attempt_at`), `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A device sign-in in progress: show `user_code` and `verification_uri` to the user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceLogin {
    /// Poll `/v1/login/device/poll` with this.
    pub login_id: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    /// Seconds between polls.
    pub interval: u64,
    pub expires_in: u64,
}

/// The session token the CLI keeps (shown once). `Debug` never prints the token.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResult {
    /// `pending`, `slow_down` or `complete`.
    pub status: String,
    pub token: Option<String>,
    pub principal: Option<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for CredentialView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialView")
            .field("kind", &self.kind)
            .field("secret", &"***")
            .field("details", &self.details)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl std::fmt::Debug for LoginResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResult")
            .field("status", &self.status)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("principal", &self.principal)
            .field("groups", &self.groups)
            .field("roles", &self.roles)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_secret_or_a_token() {
        let c = CredentialView {
            kind: CredentialKind::PostgresConnectionString,
            secret: "postgres://u:hunter2@h/db".into(),
            details: serde_json::json!({"user": "u"}),
            expires_at: Utc::now(),
        };
        let l = LoginResult {
            status: "complete".into(),
            token: Some("bvs_s3cr3t".into()),
            principal: Some("alice".into()),
            groups: vec![],
            roles: vec![],
            expires_at: None,
        };
        let text = format!("{c:?} {l:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("bvs_s3cr3t"),
            "{text}"
        );
        assert!(text.contains("PostgresConnectionString") && text.contains("alice"));
    }
}
