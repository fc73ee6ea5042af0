use brevet_audit::{AuditDraft, EventKind};
use brevet_core::Request;
use serde_json::{json, Value};

/// The facts every audit event about a request carries: who, what, why, for how long, and where
/// in its lifecycle it is. `extra` adds what is specific to the event (approver, evidence, trace).
pub(crate) fn event(kind: EventKind, actor: &str, r: &Request, extra: Value) -> AuditDraft {
    let mut data = json!({
        "requester": r.requester,
        "resource": r.resource,
        "profile": r.profile,
        "duration": r.duration,
        "reason": r.reason,
        "ticket": r.ticket,
        "state": r.state,
        "policy": r.policy_rule,
        "approvals_required": r.approvals_required,
        "granted_at": r.window.map(|w| w.granted_at),
        "expires_at": r.window.map(|w| w.expires_at),
        "revoked_at": r.revoked_at,
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    AuditDraft::new(kind, actor, Some(r.id.to_string()), data)
}
