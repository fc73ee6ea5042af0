//! The API's wire types live in `brevet-wire`, shared with the CLI; this module converts domain
//! values into them.

use brevet_policy::RequestDecision;
pub use brevet_wire::{
    ActivatedView, CheckpointView, CreateRequest, CredentialBody, CredentialView, Decision,
    Eligible, ExtendBody, KillBody, KillOutcome, KillReport, LockView, PolicyTestBody,
    PolicyTestView, ReconcileReport, RequestView, RevokeBody, UnlockBody, WhoAmI,
};

/// The one place a secret leaves Brevet: in the answer to its owner.
pub fn credential_view(c: &brevet_providers::Credential) -> CredentialView {
    CredentialView {
        kind: c.kind,
        secret: c.secret.expose().to_owned(),
        details: c.details.clone(),
        expires_at: c.expires_at,
    }
}

/// A policy decision as `POST /v1/policy/test` answers it (and `brevet policy test --config`
/// prints it).
pub fn policy_test_view(d: RequestDecision) -> PolicyTestView {
    let trace = serde_json::to_value(d.trace()).unwrap_or_default();
    match d {
        RequestDecision::Allow { policy, limits, .. } => PolicyTestView {
            outcome: "allow".into(),
            policy: Some(policy),
            approvals_required: Some(limits.approvals),
            max_duration: Some(limits.max_duration.to_string()),
            reason: None,
            trace,
        },
        RequestDecision::Deny { reason, .. } => PolicyTestView {
            outcome: "deny".into(),
            policy: None,
            approvals_required: None,
            max_duration: None,
            reason: Some(reason),
            trace,
        },
    }
}
