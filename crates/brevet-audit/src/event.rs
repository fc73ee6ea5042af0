use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RequestCreated,
    RequestRefused,
    ApprovalRecorded,
    RequestApproved,
    RequestDenied,
    RequestExpired,
    RequestCancelled,
    ActivationStarted,
    GrantActivated,
    ActivationFailed,
    CredentialsIssued,
    CredentialsRefused,
    GrantExtended,
    RevocationStarted,
    GrantRevoked,
    RevocationFailed,
    DriftDetected,
    PrincipalLocked,
    PrincipalUnlocked,
    KillSwitch,
    /// Someone signed in to the portal or the CLI (method, session kind).
    SessionStarted,
    /// A session ended: sign-out, or all of a principal's sessions by the kill switch.
    SessionEnded,
    /// An admin had IAM exports analysed in the portal (cloud, file names, sizes, SHA-256
    /// digests; the files themselves are not kept).
    AnalyzerUpload,
}

impl EventKind {
    pub fn as_str(&self) -> String {
        // serde gives the canonical snake_case name; a unit variant always serialises to a string.
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// An event before it has a place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub kind: EventKind,
    /// The principal who acted, or `system` for the scheduler and reconciler.
    pub actor: String,
    pub request_id: Option<String>,
    /// Who, what resource, which profile, why, approvers, window, evidence, decision trace…
    pub data: serde_json::Value,
}

impl AuditDraft {
    pub fn new(
        kind: EventKind,
        actor: impl Into<String>,
        request_id: Option<String>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            kind,
            actor: actor.into(),
            request_id,
            data,
        }
    }

    /// Places the draft in the chain after `prev_hash`.
    pub fn seal(self, seq: i64, at: DateTime<Utc>, prev_hash: &str) -> AuditEvent {
        let mut e = AuditEvent {
            seq,
            at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
            kind: self.kind.as_str(),
            actor: self.actor,
            request_id: self.request_id,
            // serde_json's default map is ordered, so this text is canonical for a given value.
            data: self.data.to_string(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }
}

/// A sealed event as stored and exported. Text fields are kept exactly as hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    /// RFC 3339 UTC timestamp, microsecond precision.
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub request_id: Option<String>,
    /// JSON text of the event's details.
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// SHA-256 over an unambiguous encoding (a JSON array) of every field except `hash` itself.
    pub fn compute_hash(&self) -> String {
        // A tuple serialises as the same compact JSON array as `json!([..]).to_string()` did,
        // byte for byte; written straight into the hasher, without copying every field (the
        // event's data above all) into a `Value` and then a string first.
        let fields = (
            self.seq,
            &self.at,
            &self.kind,
            &self.actor,
            &self.request_id,
            &self.data,
            &self.prev_hash,
        );
        let mut hasher = Sha256::new();
        serde_json::to_writer(&mut hasher, &fields)
            .expect("serialising strings and an integer into a hasher cannot fail");
        hex::encode(hasher.finalize())
    }

    pub fn data_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding the chain was first hashed with; chains already stored must still verify.
    fn first_encoding(e: &AuditEvent) -> String {
        let encoded = serde_json::json!([
            e.seq,
            e.at,
            e.kind,
            e.actor,
            e.request_id,
            e.data,
            e.prev_hash
        ])
        .to_string();
        hex::encode(Sha256::digest(encoded.as_bytes()))
    }

    #[test]
    fn hash_is_unchanged_from_the_first_encoding() {
        let data = serde_json::json!({"reason": "quote \" backslash \\ tab \t é 🙂 \u{1}", "n": [1, 2.5, null]});
        for (seq, request_id) in [(1, None), (i64::MAX, Some("0190-ab\"c".to_owned()))] {
            let e = AuditDraft::new(
                EventKind::GrantActivated,
                "ann\nbob",
                request_id,
                data.clone(),
            )
            .seal(seq, Utc::now(), GENESIS_HASH);
            assert_eq!(e.hash, first_encoding(&e));
        }
    }

    #[test]
    fn hash_of_a_known_event_is_pinned() {
        let e = AuditEvent {
            seq: 7,
            at: "2026-01-02T03:04:05.000006Z".into(),
            kind: "request_created".into(),
            actor: "alice".into(),
            request_id: Some("r1".into()),
            data: r#"{"a":"b\"c"}"#.into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        // SHA-256 of `[7,"2026-01-02T03:04:05.000006Z","request_created","alice","r1",
        // "{\"a\":\"b\\\"c\"}","000…0"]`, computed independently of serde_json.
        assert_eq!(
            e.compute_hash(),
            "05303454c6ab69efed27457332dca5687414a8c5fdec984148480a52acc3bdb0"
        );
        assert_eq!(e.compute_hash(), first_encoding(&e));
    }
}
