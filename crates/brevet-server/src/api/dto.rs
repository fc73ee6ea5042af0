//! The API's wire types. Kept apart from the domain so the API can stay stable while it changes.

use brevet_core::{Request, RequestKind, RequestState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Access profile, e.g. `db.read`.
    pub profile: String,
    /// Resource id, e.g. `postgres:orders-prod`.
    pub resource: String,
    /// How long access lasts once activated, e.g. `30m`, `1h`.
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub comment: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`.
    pub duration: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestBody {
    /// Evaluate as this principal (admins only; default: the caller).
    pub principal: Option<String>,
    /// Groups to evaluate with (admins only; default: the principal's configured groups).
    pub groups: Option<Vec<String>>,
    pub profile: String,
    pub resource: String,
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
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
    #[schema(value_type = Object)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// e.g. `postgres_connection_string`.
    pub kind: String,
    /// Shown once; Brevet does not keep it.
    pub secret: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

impl From<&brevet_providers::Credential> for CredentialView {
    /// The one place a secret leaves Brevet: in the answer to its owner.
    fn from(c: &brevet_providers::Credential) -> Self {
        Self {
            kind: c.kind.into(),
            secret: c.secret.expose().to_owned(),
            details: c.details.clone(),
            expires_at: c.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivatedView {
    pub grant: RequestView,
    pub credential: CredentialView,
}

/// The server's audit public key and its latest signed checkpoint (none while the log is empty).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// Ed25519 public key, hex: what verifiers pin.
    pub public_key: String,
    pub checkpoint: Option<brevet_audit::Checkpoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub id: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    /// The principal to cut off; omit and set `all` to cut off everyone but admins.
    pub principal: Option<String>,
    #[serde(default)]
    pub all: bool,
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    /// The principal to unlock, or `*` to lift an everyone-lock.
    pub principal: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LockView {
    pub principal: String,
    pub reason: String,
    pub locked_by: String,
    pub locked_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// OpenSSH public key line to sign, for SSH grants.
    pub public_key: Option<String>,
}
