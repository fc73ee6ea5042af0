//! Allow policies, kept as the JSON Google returns (so fields Brevet does not model —
//! `auditConfigs`, other bindings' conditions, members it does not know — survive a
//! read-modify-write untouched), and the pure edits Brevet makes to them: its own conditional
//! binding added, replaced or removed, and Google's documented limits checked before a write.
//!
//! Brevet recognises its bindings by the condition: title `brevet:<hash of the binding key>`
//! and a description that starts with `brevet binding <binding key>`. A binding with the title
//! shape but another description is not Brevet's (a look-alike) and is never touched.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Google's limits on one allow policy (<https://cloud.google.com/iam/quotas>; "cannot be changed").
pub const MAX_PRINCIPALS: usize = 1_500;
pub const MAX_GROUPS_AND_DOMAINS: usize = 250;
pub const MAX_SAME_ROLE_MEMBER_CONDITIONS: usize = 20;
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Basic roles: Google refuses a condition on them, so an expiring grant of one cannot exist.
pub const BASIC_ROLES: [&str; 3] = ["roles/owner", "roles/editor", "roles/viewer"];

const DESCRIPTION_MARK: &str = "brevet binding ";

/// The condition title that marks the binding for `binding_key`.
pub fn title_for(binding_key: &str) -> String {
    let h = Sha256::digest(binding_key.as_bytes());
    format!("brevet:{}", hex::encode(&h[..8]))
}

/// What Brevet writes for one binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub role: String,
    pub member: String,
    pub binding_key: String,
    pub expires_at: DateTime<Utc>,
    /// Extra words for the description (the request it serves).
    pub note: String,
}

impl Grant {
    pub fn title(&self) -> String {
        title_for(&self.binding_key)
    }

    pub fn expression(&self) -> String {
        format!(
            "request.time < timestamp(\"{}\")",
            self.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    fn binding(&self) -> Value {
        let mut description = format!("{DESCRIPTION_MARK}{}", self.binding_key);
        if !self.note.is_empty() {
            description.push_str("; ");
            description.push_str(&self.note);
        }
        json!({
            "role": self.role,
            "members": [self.member],
            "condition": {
                "title": self.title(),
                "description": description,
                "expression": self.expression(),
            }
        })
    }
}

fn bindings(policy: &Value) -> &[Value] {
    policy["bindings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Whether `b` is Brevet's binding for `binding_key` (title and description both say so).
pub fn is_ours_for(b: &Value, binding_key: &str) -> bool {
    let c = &b["condition"];
    c["title"].as_str() == Some(title_for(binding_key).as_str())
        && c["description"].as_str().is_some_and(|d| {
            d.strip_prefix(DESCRIPTION_MARK)
                .is_some_and(|rest| rest.split("; ").next() == Some(binding_key))
        })
}

/// The binding key of a binding Brevet made, if it is one: the description names a key whose
/// hash is the title.
pub fn owner_of(b: &Value) -> Option<String> {
    let c = &b["condition"];
    let key = c["description"]
        .as_str()?
        .strip_prefix(DESCRIPTION_MARK)?
        .split("; ")
        .next()?;
    (c["title"].as_str() == Some(title_for(key).as_str())).then(|| key.to_owned())
}

/// The expiry in an expression Brevet wrote (`request.time < timestamp("…")`).
pub fn expiry_of(b: &Value) -> Option<DateTime<Utc>> {
    let e = b["condition"]["expression"].as_str()?;
    let rest = e.strip_prefix("request.time < timestamp(\"")?;
    let ts = rest.strip_suffix("\")")?;
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Brevet's bindings in `policy`, with their binding keys.
pub fn ours(policy: &Value) -> Vec<(String, &Value)> {
    bindings(policy)
        .iter()
        .filter_map(|b| owner_of(b).map(|k| (k, b)))
        .collect()
}

/// Whether the policy already holds exactly `grant` (one binding, same role, member, expiry).
pub fn holds(policy: &Value, grant: &Grant) -> bool {
    let mine: Vec<&Value> = bindings(policy)
        .iter()
        .filter(|b| is_ours_for(b, &grant.binding_key))
        .collect();
    mine.len() == 1
        && mine[0]["role"] == grant.role
        && mine[0]["members"] == json!([grant.member])
        && mine[0]["condition"]["expression"] == grant.expression()
}

/// `policy` with `binding_key`'s bindings taken out — whole: a member someone added to Brevet's
/// binding (a grantee's second identity, say) would otherwise keep the access under Brevet's
/// condition after revocation — and, if given, `grant` added. Every other binding — its
/// members, its condition — stays as read. The result asks for version 3 (conditions) and
/// keeps the etag it was read with, so the write fails if anyone changed the policy since.
/// An answer that is not a JSON object is no allow policy: an error, and nothing to write.
pub fn edited(policy: &Value, binding_key: &str, grant: Option<&Grant>) -> Result<Value, String> {
    if !policy.is_object() {
        return Err(format!(
            "the allow policy read is not a JSON object ({}); nothing was written",
            match policy {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        ));
    }
    let mut out = policy.clone();
    let mut kept: Vec<Value> = bindings(policy)
        .iter()
        .filter(|b| !is_ours_for(b, binding_key))
        .cloned()
        .collect();
    if let Some(g) = grant {
        kept.push(g.binding());
    }
    out["bindings"] = Value::Array(kept);
    out["version"] = json!(3);
    Ok(out)
}

/// A limit Google would refuse the policy for, named, with the numbers.
pub fn check_limits(policy: &Value) -> Result<(), String> {
    let mut principals = 0usize;
    let mut groups = 0usize;
    let mut same: std::collections::HashMap<(&str, &str), usize> = Default::default();
    for b in bindings(policy) {
        let role = b["role"].as_str().unwrap_or_default();
        let conditional = b.get("condition").is_some_and(|c| !c.is_null());
        if conditional && BASIC_ROLES.contains(&role) {
            return Err(format!(
                "Google refuses an IAM condition on the basic role {role}, so its expiry could not be enforced"
            ));
        }
        for m in b["members"].as_array().into_iter().flatten() {
            let m = m.as_str().unwrap_or_default();
            principals += 1;
            if m.starts_with("group:") || m.starts_with("domain:") {
                groups += 1;
            }
            if conditional {
                *same.entry((role, m)).or_default() += 1;
            }
        }
    }
    if principals > MAX_PRINCIPALS {
        return Err(format!(
            "the policy would name {principals} principals; Google's limit is {MAX_PRINCIPALS} per allow policy"
        ));
    }
    if groups > MAX_GROUPS_AND_DOMAINS {
        return Err(format!(
            "the policy would name {groups} groups and domains; Google's limit is {MAX_GROUPS_AND_DOMAINS} per allow policy"
        ));
    }
    if let Some(((role, member), n)) = same
        .into_iter()
        .find(|(_, n)| *n > MAX_SAME_ROLE_MEMBER_CONDITIONS)
    {
        return Err(format!(
            "{member} would hold {role} under {n} different conditions; Google's limit is {MAX_SAME_ROLE_MEMBER_CONDITIONS}"
        ));
    }
    let size = serde_json::to_vec(policy).map(|v| v.len()).unwrap_or(0);
    if size > MAX_POLICY_BYTES {
        return Err(format!(
            "the policy would be {size} bytes; Google's limit is {MAX_POLICY_BYTES} bytes (64 KB)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn grant(key: &str, member: &str) -> Grant {
        Grant {
            role: "projects/p/roles/brevet_x".into(),
            member: member.into(),
            binding_key: key.into(),
            expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 10, 0, 0).unwrap(),
            note: "request r-1".into(),
        }
    }

    fn foreign() -> Value {
        json!({
            "role": "roles/storage.objectViewer",
            "members": ["user:bob@example.com", "deleted:user:old@example.com?uid=123"],
            "condition": {"title": "office hours", "expression": "request.time.getHours(\"Europe/Berlin\") < 18"}
        })
    }

    #[test]
    fn adding_keeps_every_other_binding_and_field_and_replacing_leaves_one() {
        let policy = json!({"version": 1, "etag": "BwY=", "bindings": [foreign()], "auditConfigs": [{"service": "allServices"}]});
        let g = grant("alice|gcp:p|x", "user:alice@example.com");
        let once = edited(&policy, &g.binding_key, Some(&g)).unwrap();
        assert_eq!(once["etag"], "BwY=");
        assert_eq!(once["version"], 3);
        assert_eq!(once["auditConfigs"], policy["auditConfigs"]);
        assert_eq!(once["bindings"][0], foreign());
        assert!(holds(&once, &g));
        assert_eq!(expiry_of(&once["bindings"][1]), Some(g.expires_at));
        // A new expiry replaces the old binding: never two for one key.
        let later = Grant {
            expires_at: g.expires_at + chrono::Duration::hours(1),
            ..g.clone()
        };
        let twice = edited(&once, &g.binding_key, Some(&later)).unwrap();
        assert_eq!(twice["bindings"].as_array().unwrap().len(), 2);
        assert!(holds(&twice, &later) && !holds(&twice, &g));
        // Removal takes exactly Brevet's binding out.
        let gone = edited(&twice, &g.binding_key, None).unwrap();
        assert_eq!(gone["bindings"], json!([foreign()]));
        assert!(ours(&gone).is_empty());
    }

    #[test]
    fn only_bindings_with_a_matching_title_and_description_are_brevets() {
        let g = grant("alice|gcp:p|x", "user:alice@example.com");
        let mut lookalike = g.binding();
        lookalike["condition"]["description"] = json!("made by hand");
        assert!(owner_of(&lookalike).is_none());
        let mut forged = g.binding();
        forged["condition"]["description"] = json!("brevet binding someone|else|x");
        assert!(owner_of(&forged).is_none(), "title must be the key's hash");
        let policy = json!({"bindings": [lookalike.clone(), g.binding()]});
        assert_eq!(ours(&policy).len(), 1);
        // Removing Brevet's binding leaves the look-alike alone.
        let out = edited(&policy, &g.binding_key, None).unwrap();
        assert_eq!(out["bindings"], json!([lookalike]));
        // A member someone added to Brevet's binding (a grantee's second identity) goes with it:
        // it must not keep the access under Brevet's condition after revocation.
        let mut shared = g.binding();
        shared["members"] = json!([g.member, "user:mallory@example.com"]);
        let out = edited(&json!({"bindings": [shared]}), &g.binding_key, None).unwrap();
        assert_eq!(out["bindings"], json!([]));
    }

    #[test]
    fn removal_takes_the_deleted_member_form_too() {
        let g = grant("alice|gcp:p|x", "user:alice@example.com");
        let mut b = g.binding();
        b["members"] = json!(["deleted:user:alice@example.com?uid=42"]);
        let out = edited(&json!({"bindings": [b]}), &g.binding_key, None).unwrap();
        assert_eq!(out["bindings"], json!([]));
    }

    /// Found by fuzzing (fuzz target `iam_policy_document`, minimised to the policy `7`): an
    /// answer to getIamPolicy that is not a JSON object panicked in the edit (serde_json's
    /// `value["bindings"] = …` on a number) instead of failing the call.
    #[test]
    fn an_answer_that_is_not_an_object_is_refused_not_edited() {
        let g = grant("alice|gcp:p|x", "user:alice@example.com");
        for answer in [
            json!(7),
            json!("policy"),
            json!([]),
            json!(null),
            json!(true),
        ] {
            assert!(!holds(&answer, &g));
            assert!(ours(&answer).is_empty());
            let e = edited(&answer, &g.binding_key, Some(&g)).unwrap_err();
            assert!(e.contains("not a JSON object"), "{e}");
            assert!(edited(&answer, &g.binding_key, None).is_err());
        }
    }

    #[test]
    fn limits_are_named() {
        let many: Vec<String> = (0..1_501)
            .map(|i| format!("user:u{i}@example.com"))
            .collect();
        let e = check_limits(&json!({"bindings": [{"role": "roles/viewer", "members": many}]}))
            .unwrap_err();
        assert!(e.contains("1501 principals") && e.contains("1500"), "{e}");
        let groups: Vec<String> = (0..251)
            .map(|i| format!("group:g{i}@example.com"))
            .collect();
        let e = check_limits(&json!({"bindings": [{"role": "roles/viewer", "members": groups}]}))
            .unwrap_err();
        assert!(e.contains("251 groups") && e.contains("250"), "{e}");
        let same: Vec<Value> = (0..21)
            .map(|i| {
                json!({"role": "roles/browser", "members": ["user:a@example.com"],
                       "condition": {"title": format!("t{i}"), "expression": "true"}})
            })
            .collect();
        let e = check_limits(&json!({ "bindings": same })).unwrap_err();
        assert!(
            e.contains("21 different conditions") && e.contains("20"),
            "{e}"
        );
        let e = check_limits(
            &json!({"bindings": [{"role": "roles/owner", "members": ["user:a@example.com"],
            "condition": {"title": "t", "expression": "true"}}]}),
        )
        .unwrap_err();
        assert!(e.contains("basic role roles/owner"), "{e}");
        let big: Vec<Value> = (0..700)
            .map(|i| json!({"role": format!("roles/r{i}"), "members": ["user:a@example.com"],
                            "condition": {"title": "t", "description": "x".repeat(80), "expression": "true"}}))
            .collect();
        let e = check_limits(&json!({ "bindings": big })).unwrap_err();
        assert!(e.contains("64 KB"), "{e}");
        assert!(check_limits(&json!({"bindings": [foreign()]})).is_ok());
    }
}
