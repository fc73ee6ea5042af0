//! Event types as subscribers see them: the audit event kind with a dot (`request_created` →
//! `request.created`), plus `grant.expiring`, which Brevet queues itself before a grant ends, and
//! `audit.checkpoint`, a signed copy of the log's head for subscribers to keep.

use brevet_audit::{AuditEvent, EventKind};
use brevet_core::Request;
use serde_json::{json, Value};

/// Event types that do not come from the audit log.
pub const GRANT_EXPIRING: &str = "grant.expiring";
pub const AUDIT_CHECKPOINT: &str = "audit.checkpoint";

/// `request_created` → `request.created`.
pub fn event_type(kind: &str) -> String {
    kind.replacen('_', ".", 1)
}

fn is_known(event_type: &str) -> bool {
    event_type == GRANT_EXPIRING
        || event_type == AUDIT_CHECKPOINT
        || (event_type.matches('.').count() == 1
            && serde_json::from_value::<EventKind>(Value::String(event_type.replace('.', "_")))
                .is_ok())
}

/// Which event types a subscriber wants: a list of names, or `*` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    all: bool,
    types: Vec<String>,
}

impl EventFilter {
    pub fn parse(names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Err(
                "list the event types to send, e.g. [\"request.created\"], or [\"*\"] for all"
                    .into(),
            );
        }
        let mut types = Vec::new();
        for n in names {
            if n == "*" {
                return Ok(Self {
                    all: true,
                    types: vec![],
                });
            }
            if !is_known(n) {
                return Err(format!(
                    "`{n}` is not an event type; use names like request.created, request.approved, request.denied, grant.activated, grant.revoked, grant.expiring (see docs/notifications.md), or \"*\""
                ));
            }
            types.push(n.clone());
        }
        Ok(Self { all: false, types })
    }

    pub fn wants(&self, event_type: &str) -> bool {
        self.all || self.types.iter().any(|t| t == event_type)
    }
}

/// The JSON a subscriber receives for an audit event: the event as stored, with `data` as an
/// object and its public `type`.
pub fn audit_payload(e: &AuditEvent) -> Value {
    json!({
        "type": event_type(&e.kind),
        "seq": e.seq,
        "at": e.at,
        "kind": e.kind,
        "actor": e.actor,
        "request_id": e.request_id,
        "data": e.data_json(),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

/// The JSON of an `audit.checkpoint`: the signed checkpoint as `brevet audit verify
/// --checkpoint` reads it, with its `type`.
pub fn checkpoint_payload(cp: &brevet_audit::Checkpoint) -> Value {
    let mut v = serde_json::to_value(cp).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), AUDIT_CHECKPOINT.into());
    }
    v
}

/// The JSON of a `grant.expiring` notice, shaped like an audit event (without chain fields).
pub fn expiring_payload(r: &Request, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "type": GRANT_EXPIRING,
        "seq": null,
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "kind": "grant_expiring",
        "actor": "system",
        "request_id": r.id.to_string(),
        "data": {
            "requester": r.requester,
            "resource": r.resource,
            "profile": r.profile,
            "duration": r.duration,
            "state": r.state,
            "expires_at": r.window.map(|w| w.expires_at),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_audit_kinds() {
        assert_eq!(event_type("request_created"), "request.created");
        assert_eq!(event_type("grant_revoked"), "grant.revoked");
        let f = EventFilter::parse(&["request.created".into(), "grant.expiring".into()]).unwrap();
        assert!(f.wants("request.created") && f.wants("grant.expiring"));
        assert!(EventFilter::parse(&["audit.checkpoint".into()])
            .unwrap()
            .wants(AUDIT_CHECKPOINT));
        assert!(!f.wants("request.denied"));
        assert!(EventFilter::parse(&["*".into()])
            .unwrap()
            .wants("kill.switch"));
        assert!(EventFilter::parse(&["request_created".into()]).is_err());
        assert!(EventFilter::parse(&[]).is_err());
    }
}
