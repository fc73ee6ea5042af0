//! The IAM policy documents Brevet writes. Each is built from typed inputs with `serde_json`, so no
//! input can change a document's structure.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{json, Value};

use super::names::{Arn, IamAction};

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Exactly the profile's actions on exactly the resource's ARNs, and only until `expires_at`:
/// AWS itself stops honouring it then, even if Brevet is down.
pub fn grant_policy(actions: &[IamAction], resources: &[Arn], expires_at: DateTime<Utc>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BrevetGrant",
            "Effect": "Allow",
            "Action": actions.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "Resource": resources.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "Condition": {"DateLessThan": {"aws:CurrentTime": time(expires_at)}}
        }]
    })
}

/// Only the requester's own identity may assume the per-grant role.
pub fn trust_policy(requester_arn: &Arn) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BrevetRequesterOnly",
            "Effect": "Allow",
            "Principal": {"AWS": requester_arn.as_str()},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// Denies everything to sessions issued before `at` — AWS's own "revoke active sessions"
/// technique. `session_name`, when given, narrows it to one grant's sessions on a shared role.
pub fn revoke_sessions_policy(at: DateTime<Utc>, session_name: Option<&str>) -> Value {
    // IAM compares whole seconds: round up, so a token issued earlier in the same second as the
    // revocation is denied too.
    let whole = at.trunc_subsecs(0);
    let at = if whole < at {
        whole + chrono::Duration::seconds(1)
    } else {
        whole
    };
    let mut condition = json!({"DateLessThan": {"aws:TokenIssueTime": time(at)}});
    if let Some(name) = session_name {
        condition["StringLike"] = json!({"aws:userid": format!("*:{name}")});
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BrevetRevokeSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": condition
        }]
    })
}

/// A policy's size as IAM counts it against a role's inline-policy limit: its characters, less
/// white space (so the compact JSON form).
pub fn policy_size(doc: &Value) -> usize {
    doc.to_string().chars().count()
}

/// How long a session-revoking deny can matter: STS session credentials live at most 12 hours
/// (AssumeRole's `DurationSeconds` limit), plus a margin for clock skew.
pub fn max_sts_session() -> chrono::Duration {
    chrono::Duration::hours(12) + chrono::Duration::minutes(15)
}

/// When a [`revoke_sessions_policy`] document stops protecting anything: every session it
/// denies was issued before its `aws:TokenIssueTime` and so has expired [`max_sts_session`]
/// later. `None` when the document does not look like one of Brevet's (never pruned then).
pub fn revocation_obsolete_at(doc: &Value) -> Option<DateTime<Utc>> {
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => return None,
    };
    let mut latest: Option<DateTime<Utc>> = None;
    for st in &statements {
        let t = st["Condition"]["DateLessThan"]["aws:TokenIssueTime"].as_str()?;
        let t = DateTime::parse_from_rfc3339(t).ok()?.with_timezone(&Utc);
        latest = Some(latest.map_or(t, |l| l.max(t)));
    }
    latest.map(|t| t + max_sts_session())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_become_obsolete_when_every_denied_session_has_expired() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let doc = revoke_sessions_policy(t, Some("brevet-dave-x"));
        assert_eq!(revocation_obsolete_at(&doc), Some(t + max_sts_session()));
        // Not ours, or unreadable: never considered obsolete.
        let allow = grant_policy(&[IamAction::parse("s3:GetObject").unwrap()], &[], t);
        assert_eq!(revocation_obsolete_at(&allow), None);
        assert_eq!(revocation_obsolete_at(&json!({"Statement": "x"})), None);
        let bad =
            json!({"Statement": [{"Condition": {"DateLessThan": {"aws:TokenIssueTime": "soon"}}}]});
        assert_eq!(revocation_obsolete_at(&bad), None);
    }

    #[test]
    fn grant_policy_is_exact_and_expires() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let p = grant_policy(
            &[IamAction::parse("s3:GetObject").unwrap()],
            &[Arn::parse("arn:aws:s3:::b/*").unwrap()],
            t,
        );
        assert_eq!(p["Statement"][0]["Action"], json!(["s3:GetObject"]));
        assert_eq!(p["Statement"][0]["Resource"], json!(["arn:aws:s3:::b/*"]));
        assert_eq!(
            p["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"],
            "2026-01-02T03:04:05Z"
        );
        // Revocation rounds up to the next whole second, never down.
        let later = t + chrono::Duration::milliseconds(250);
        assert_eq!(
            revoke_sessions_policy(later, None)["Statement"][0]["Condition"]["DateLessThan"]
                ["aws:TokenIssueTime"],
            "2026-01-02T03:04:06Z"
        );
        let r = revoke_sessions_policy(t, Some("brevet-alice-1"));
        assert_eq!(r["Statement"][0]["Effect"], "Deny");
        assert_eq!(
            r["Statement"][0]["Condition"]["StringLike"]["aws:userid"],
            "*:brevet-alice-1"
        );
    }
}
