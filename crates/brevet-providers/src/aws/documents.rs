//! The IAM policy documents Brevet writes. Each is built from typed inputs with `serde_json`, so no
//! input can change a document's structure.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{json, Value};
use sha2::Digest;

use super::names::Arn;
use super::Scoped;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Exactly the profile's actions on exactly the resource's ARNs, and only until `expires_at`:
/// AWS itself stops honouring it then, even if Brevet is down.
pub fn grant_policy(statements: &[Scoped], expires_at: DateTime<Utc>) -> Value {
    let statements: Vec<Value> = statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "Sid": if i == 0 { "BrevetGrant".to_owned() } else { format!("BrevetGrant{i}") },
                "Effect": "Allow",
                "Action": s.actions,
                "Resource": s.resources,
                "Condition": {"DateLessThan": {"aws:CurrentTime": time(expires_at)}}
            })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
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

/// IAM compares whole seconds: round up, so a token issued earlier in the same second as the
/// revocation is denied too.
pub fn revocation_instant(at: DateTime<Utc>) -> DateTime<Utc> {
    let whole = at.trunc_subsecs(0);
    if whole < at {
        whole + chrono::Duration::seconds(1)
    } else {
        whole
    }
}

/// Denies everything to sessions issued before `at` — AWS's own "revoke active sessions"
/// technique. `session_name`, when given, narrows it to one grant's sessions on a shared role.
pub fn revoke_sessions_policy(at: DateTime<Utc>, session_name: Option<&str>) -> Value {
    let at = revocation_instant(at);
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

/// The `Sid` of every statement Brevet writes into a permission set's inline policy; statements
/// whose `Sid` starts otherwise are the permission set's own and are never changed.
pub const PERMISSION_SET_DENY_SID: &str = "BrevetRevokeSessions";

/// The identity-store condition key AWS documents for denying one Identity Center user's role
/// sessions: the user id is stable, unlike the user name in `aws:userid`, which follows renames.
const IDENTITY_STORE_USER: &str = "identitystore:UserId";

/// How one of Brevet's permission-set denies is scoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyScope {
    /// One user's sessions (the usual case).
    User,
    /// Several users' sessions, all at the latest instant: denies collapsed to fit the size limit.
    Users,
    /// Every session of the permission set: even the collapsed denies did not fit.
    Everyone,
}

/// A deny for role sessions from a permission set issued before `at`, for `users` (all of the
/// permission set's sessions when `None`).
fn permission_set_deny(at: DateTime<Utc>, users: Option<&[String]>) -> Value {
    let at = revocation_instant(at);
    let mut condition = json!({"DateLessThan": {"aws:TokenIssueTime": time(at)}});
    let sid = match users {
        Some([one]) => {
            condition["StringEquals"] = json!({ IDENTITY_STORE_USER: one });
            let digest = hex::encode(sha2::Sha256::digest(one.as_bytes()));
            format!("{PERMISSION_SET_DENY_SID}{}", &digest[..16])
        }
        Some(many) => {
            condition["StringEquals"] = json!({ IDENTITY_STORE_USER: many });
            format!("{PERMISSION_SET_DENY_SID}Users")
        }
        None => format!("{PERMISSION_SET_DENY_SID}All"),
    };
    json!({"Sid": sid, "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition})
}

fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn is_brevet_deny(st: &Value) -> bool {
    st["Sid"]
        .as_str()
        .is_some_and(|s| s.starts_with(PERMISSION_SET_DENY_SID))
        && st["Effect"] == "Deny"
}

fn deny_time(st: &Value) -> Option<DateTime<Utc>> {
    let t = st["Condition"]["DateLessThan"]["aws:TokenIssueTime"].as_str()?;
    Some(DateTime::parse_from_rfc3339(t).ok()?.with_timezone(&Utc))
}

/// The users a deny names; `None` when it names none (it covers everyone).
fn deny_users(st: &Value) -> Option<Vec<String>> {
    match &st["Condition"]["StringEquals"][IDENTITY_STORE_USER] {
        Value::String(u) => Some(vec![u.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

/// The permission set's inline policy (`existing`, empty when it has none) with a deny for `user`'s
/// sessions issued before `at` added, its own statements untouched, and kept small:
/// - Brevet's denies older than the permission set's session duration are dropped (every session
///   they deny has expired), and so is an earlier deny for the same user (the new one covers it);
/// - if the document is still over `limit` characters, Brevet's denies are collapsed into one for
///   all their users at `at`, then into one for every session at `at` — both deny more than
///   needed, never less (a user re-granted since signs in again).
///
/// An error names what does not fit or cannot be read; the policy is then left as it is.
pub fn permission_set_policy_with_deny(
    existing: &str,
    user: &str,
    at: DateTime<Utc>,
    session_duration: chrono::Duration,
    limit: usize,
) -> Result<(Value, DenyScope), String> {
    let mut doc = if existing.trim().is_empty() {
        json!({"Version": "2012-10-17", "Statement": []})
    } else {
        serde_json::from_str::<Value>(existing)
            .map_err(|e| format!("its inline policy is not JSON ({e}); fix or remove it"))?
    };
    if !doc.is_object() {
        return Err("its inline policy is not a JSON object; fix or remove it".into());
    }
    // A session duration reaching back past the calendar's start (only an absurd one does)
    // leaves every deny needed: pruning errs on the side of denying.
    let oldest_needed = at
        .checked_sub_signed(session_duration)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let (ours, theirs): (Vec<Value>, Vec<Value>) =
        statements(&doc).into_iter().partition(is_brevet_deny);
    let kept: Vec<Value> = ours
        .into_iter()
        .filter(|st| deny_time(st).is_none_or(|t| t >= oldest_needed))
        .filter(|st| deny_users(st).as_deref() != Some(&[user.to_owned()][..]))
        .collect();
    let with = |mine: Vec<Value>| {
        let mut all = theirs.clone();
        all.extend(mine);
        all
    };
    let mut mine = kept.clone();
    mine.push(permission_set_deny(at, Some(&[user.to_owned()])));
    doc["Statement"] = json!(with(mine));
    if policy_size(&doc) <= limit {
        return Ok((doc, DenyScope::User));
    }
    let mut users: Vec<String> = vec![user.to_owned()];
    let mut everyone = false;
    for st in &kept {
        match deny_users(st) {
            Some(u) => users.extend(u),
            None => everyone = true,
        }
    }
    users.sort();
    users.dedup();
    if !everyone {
        doc["Statement"] = json!(with(vec![permission_set_deny(at, Some(&users))]));
        if policy_size(&doc) <= limit {
            return Ok((doc, DenyScope::Users));
        }
    }
    doc["Statement"] = json!(with(vec![permission_set_deny(at, None)]));
    if policy_size(&doc) <= limit {
        return Ok((doc, DenyScope::Everyone));
    }
    Err(format!(
        "its inline policy leaves no room under the {limit}-character limit for a session deny: \
         move its statements to managed policies"
    ))
}

/// The latest instant before which `user`'s sessions are denied by one of Brevet's statements
/// in a permission set's inline policy, with that statement; `None` when none covers the user.
pub fn permission_set_deny_for(doc: &Value, user: &str) -> Option<(DateTime<Utc>, Value)> {
    statements(doc)
        .into_iter()
        .filter(|st| is_brevet_deny(st) && st["Action"] == "*" && st["Resource"] == "*")
        .filter(|st| deny_users(st).is_none_or(|u| u.iter().any(|u| u == user)))
        .filter_map(|st| deny_time(&st).map(|t| (t, st)))
        .max_by_key(|(t, _)| *t)
}

/// An ISO 8601 duration as Identity Center writes a permission set's `SessionDuration`
/// (`PT1H`, `PT8H30M`, `PT900S`); `None` for anything else, one too long for a
/// `chrono::Duration` included.
pub fn iso_duration(s: &str) -> Option<chrono::Duration> {
    let mut rest = s.strip_prefix("PT")?;
    if rest.is_empty() {
        return None;
    }
    let mut total = chrono::Duration::zero();
    for (unit, seconds) in [('H', 3600), ('M', 60), ('S', 1)] {
        if let Some((n, after)) = rest.split_once(unit) {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let part = chrono::Duration::try_seconds(n.parse::<i64>().ok()?.checked_mul(seconds)?)?;
            total = total.checked_add(&part)?;
            rest = after;
        }
    }
    rest.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_permission_set_deny_keeps_its_own_statements_and_prunes_expired_denies() {
        let now = at("2026-01-02T12:00:00.300Z");
        let own = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
        let hour = chrono::Duration::hours(1);
        let (doc, scope) =
            permission_set_policy_with_deny(&own.to_string(), "u-dave", now, hour, 10_240).unwrap();
        assert_eq!(scope, DenyScope::User);
        let st = doc["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(
            st[0], own["Statement"][0],
            "the permission set's own statement stays"
        );
        assert_eq!(st[1]["Effect"], "Deny");
        assert_eq!(
            st[1]["Condition"]["StringEquals"]["identitystore:UserId"],
            "u-dave"
        );
        assert_eq!(
            st[1]["Condition"]["DateLessThan"]["aws:TokenIssueTime"], "2026-01-02T12:00:01Z",
            "rounded up"
        );
        let (t, _) = permission_set_deny_for(&doc, "u-dave").unwrap();
        assert_eq!(t, at("2026-01-02T12:00:01Z"));
        assert!(permission_set_deny_for(&doc, "u-erin").is_none());

        // Later: erin is revoked two hours on; dave's deny has outlived the session duration.
        let later = now + chrono::Duration::hours(2);
        let (doc2, _) =
            permission_set_policy_with_deny(&doc.to_string(), "u-erin", later, hour, 10_240)
                .unwrap();
        assert!(permission_set_deny_for(&doc2, "u-dave").is_none(), "{doc2}");
        assert!(permission_set_deny_for(&doc2, "u-erin").is_some());
        assert_eq!(doc2["Statement"].as_array().unwrap().len(), 2);
        // The same user again: one statement, at the later instant.
        let (doc3, _) = permission_set_policy_with_deny(
            &doc2.to_string(),
            "u-erin",
            later + chrono::Duration::minutes(1),
            hour,
            10_240,
        )
        .unwrap();
        assert_eq!(doc3["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(
            permission_set_deny_for(&doc3, "u-erin").unwrap().0,
            at("2026-01-02T14:01:01Z")
        );
        // Unreadable inline policies are never overwritten.
        assert!(permission_set_policy_with_deny("{not json", "u", now, hour, 10_240).is_err());
    }

    #[test]
    fn permission_set_denies_collapse_to_fit_and_never_cover_less() {
        let now = at("2026-01-02T12:00:00Z");
        let hour = chrono::Duration::hours(1);
        let mut doc = String::new();
        for i in 0..40 {
            let user = format!("9067{i:04}-aaaa-bbbb-cccc-dddddddddddd");
            let (d, _) = permission_set_policy_with_deny(
                &doc,
                &user,
                now + chrono::Duration::seconds(i),
                hour,
                2_000,
            )
            .unwrap();
            assert!(policy_size(&d) <= 2_000);
            for j in 0..=i {
                let u = format!("9067{j:04}-aaaa-bbbb-cccc-dddddddddddd");
                let (t, _) = permission_set_deny_for(&d, &u).unwrap_or_else(|| panic!("{u}: {d}"));
                assert!(
                    t >= now + chrono::Duration::seconds(j),
                    "{u} covered from its revocation"
                );
            }
            doc = d.to_string();
        }
        let (_, scope) = permission_set_policy_with_deny(&doc, "x", now + hour, hour, 300).unwrap();
        assert_eq!(scope, DenyScope::Everyone);
        assert!(permission_set_policy_with_deny(&doc, "x", now, hour, 100).is_err());
    }

    #[test]
    fn session_durations_parse_as_identity_center_writes_them() {
        assert_eq!(iso_duration("PT1H"), Some(chrono::Duration::hours(1)));
        assert_eq!(
            iso_duration("PT8H30M"),
            Some(chrono::Duration::minutes(510))
        );
        assert_eq!(iso_duration("PT900S"), Some(chrono::Duration::seconds(900)));
        for bad in ["", "PT", "P1D", "1H", "PTH", "PT1X", "PT-1H"] {
            assert_eq!(iso_duration(bad), None, "{bad}");
        }
        // Found by fuzzing (fuzz target `iam_policy_document`): numbers past what a
        // `chrono::Duration` holds panicked instead of reading as nothing.
        for too_long in [
            "PT9999999999999999S",
            "PT9223372036854775807H",
            "PT2562047788015H9223372036854S",
        ] {
            assert_eq!(iso_duration(too_long), None, "{too_long}");
        }
    }

    /// Found by fuzzing (fuzz target `iam_policy_document`): a `SessionDuration` of
    /// `PT3888888888H` (444,000 years) reaches back past the calendar's start, and subtracting it
    /// from the revocation instant panicked. Such a duration now keeps every earlier deny.
    #[test]
    fn a_session_duration_past_the_calendar_keeps_every_deny() {
        let now = at("2026-01-02T12:00:00Z");
        let (earlier, _) = permission_set_policy_with_deny(
            "",
            "u-erin",
            now - chrono::Duration::days(400),
            chrono::Duration::hours(1),
            10_240,
        )
        .unwrap();
        let long = iso_duration("PT3888888888H").unwrap();
        let (doc, scope) =
            permission_set_policy_with_deny(&earlier.to_string(), "u-dave", now, long, 10_240)
                .unwrap();
        assert_eq!(scope, DenyScope::User);
        assert!(permission_set_deny_for(&doc, "u-erin").is_some(), "{doc}");
        assert!(permission_set_deny_for(&doc, "u-dave").is_some(), "{doc}");
    }

    #[test]
    fn revocations_become_obsolete_when_every_denied_session_has_expired() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let doc = revoke_sessions_policy(t, Some("brevet-dave-x"));
        assert_eq!(revocation_obsolete_at(&doc), Some(t + max_sts_session()));
        // Not ours, or unreadable: never considered obsolete.
        let allow = grant_policy(
            &[Scoped {
                actions: vec!["s3:GetObject".into()],
                resources: vec![],
            }],
            t,
        );
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
            &[Scoped {
                actions: vec!["s3:GetObject".into()],
                resources: vec!["arn:aws:s3:::b/*".into()],
            }],
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
