//! Allow policies: their wire shape, the checks setIamPolicy applies (cloud-contracts §1.1, §1.2)
//! and the views getIamPolicy returns per requested version.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{condition, error::ApiError};

/// cloud-contracts §1.2 ("Limits cannot be changed").
pub(crate) const MAX_PRINCIPALS: usize = 1_500;
pub(crate) const MAX_GROUPS_AND_DOMAINS: usize = 250;
pub(crate) const MAX_CONDITIONS_PER_ROLE_AND_MEMBER: usize = 20;
/// SetIamPolicyRequest: "The size of the policy is limited to a few 10s of KB" — 64 KB (§1.1).
pub(crate) const MAX_POLICY_BYTES: usize = 64 * 1024;

const BASIC_ROLES: [&str; 3] = ["roles/owner", "roles/editor", "roles/viewer"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Policy {
    #[serde(default)]
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_configs: Option<Value>,
    /// Cloud Storage decorates its policies with these; a client may send them back.
    #[serde(default, skip_serializing)]
    pub kind: Option<Value>,
    #[serde(default, skip_serializing)]
    pub resource_id: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Binding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Which API a policy is set through: Storage accepts its convenience members and refuses a
/// stale etag with 412 instead of 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    ResourceManager,
    Storage,
}

impl Policy {
    pub fn has_conditions(&self) -> bool {
        self.bindings.iter().any(|b| b.condition.is_some())
    }
}

/// Every check setIamPolicy makes on the policy itself; `role_bindable` answers whether a role
/// may be bound on the target resource (it knows the hierarchy and the custom roles).
pub(crate) fn validate(
    policy: &Policy,
    api: Api,
    role_bindable: impl Fn(&str) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let size = serde_json::to_vec(policy).map_or(0, |v| v.len());
    if size > MAX_POLICY_BYTES {
        return Err(ApiError::invalid(format!(
            "The size of the policy ({} bytes) is larger than the maximum allowed size {} bytes.",
            thousands(size),
            thousands(MAX_POLICY_BYTES)
        )));
    }
    if policy.has_conditions() && policy.version < 3 {
        return Err(ApiError::invalid(
            "Policies with conditional bindings must specify version 3 (policy.version = 3).",
        ));
    }
    if !matches!(policy.version, 0 | 1 | 3) {
        return Err(ApiError::invalid(format!(
            "Invalid policy version {}: the supported versions are 1 and 3.",
            policy.version
        )));
    }
    let mut principals = 0;
    let mut groups = 0;
    let mut conditions_per_pair: HashMap<(&str, &str), Vec<&Expr>> = HashMap::new();
    for binding in &policy.bindings {
        if binding.role.is_empty() {
            return Err(ApiError::invalid("A binding must name a role."));
        }
        if let Some(c) = &binding.condition {
            check_condition(binding, c)?;
        }
        for member in &binding.members {
            check_member(member, api)?;
            principals += 1;
            if member.starts_with("group:") || member.starts_with("domain:") {
                groups += 1;
            }
            if binding.condition.is_some()
                && matches!(member.as_str(), "allUsers" | "allAuthenticatedUsers")
            {
                return Err(ApiError::invalid(format!(
                    "Conditions are not supported for the public principal {member} (role {}).",
                    binding.role
                )));
            }
            if let Some(c) = &binding.condition {
                let seen = conditions_per_pair
                    .entry((binding.role.as_str(), member.as_str()))
                    .or_default();
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
        }
    }
    if principals > MAX_PRINCIPALS {
        return Err(ApiError::invalid(format!(
            "The number of members in the policy ({}) is larger than the maximum allowed size {}.",
            thousands(principals),
            thousands(MAX_PRINCIPALS)
        )));
    }
    if groups > MAX_GROUPS_AND_DOMAINS {
        return Err(ApiError::invalid(format!(
            "The number of group members in the policy's bindings ({groups}) is larger than the maximum allowed size {MAX_GROUPS_AND_DOMAINS}."
        )));
    }
    if let Some(((role, member), seen)) = conditions_per_pair
        .iter()
        .find(|(_, seen)| seen.len() > MAX_CONDITIONS_PER_ROLE_AND_MEMBER)
    {
        return Err(ApiError::invalid(format!(
            "The policy has {} bindings of role {role} to member {member} with different conditions; the maximum allowed is {MAX_CONDITIONS_PER_ROLE_AND_MEMBER}.",
            seen.len()
        )));
    }
    let mut checked: Vec<&str> = Vec::new();
    for binding in &policy.bindings {
        if !checked.contains(&binding.role.as_str()) {
            role_bindable(&binding.role)?;
            checked.push(&binding.role);
        }
    }
    Ok(())
}

fn check_condition(binding: &Binding, c: &Expr) -> Result<(), ApiError> {
    if BASIC_ROLES.contains(&binding.role.as_str()) {
        return Err(ApiError::invalid(format!(
            "Conditions are not supported for the basic role {}; use a predefined or custom role.",
            binding.role
        )));
    }
    if c.title.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::invalid(format!(
            "The condition of a binding of role {} has no title; a condition title is required.",
            binding.role
        )));
    }
    if c.title.as_deref().is_some_and(|t| t.len() > 100) {
        return Err(ApiError::invalid(
            "The condition title is longer than 100 characters.",
        ));
    }
    if c.description.as_deref().is_some_and(|d| d.len() > 256) {
        return Err(ApiError::invalid(
            "The condition description is longer than 256 characters.",
        ));
    }
    condition::check(&c.expression).map_err(ApiError::invalid)
}

/// The principal forms the allow-policy documentation lists (cloud-contracts §1.1); Storage also
/// takes its convenience values (`projectOwner:` …, storage.v1 `Policy.bindings.members`).
fn check_member(member: &str, api: Api) -> Result<(), ApiError> {
    let email = |rest: &str| {
        let (local, domain) = rest.split_once('@').unwrap_or(("", ""));
        !local.is_empty() && domain.contains('.') && !rest.contains(char::is_whitespace)
    };
    let valid = match member.split_once(':') {
        _ if matches!(member, "allUsers" | "allAuthenticatedUsers") => true,
        _ if member.starts_with("principal://") || member.starts_with("principalSet://") => {
            member.len() > "principal://".len()
        }
        Some(("user" | "group" | "serviceAccount", rest)) => email(rest),
        Some(("domain", rest)) => rest.contains('.') && !rest.contains(['@', ' ']),
        Some(("deleted", rest)) => match rest.split_once(':') {
            Some(("user" | "group" | "serviceAccount", r)) => {
                let (address, uid) = r.split_once("?uid=").unwrap_or((r, ""));
                email(address) && !uid.is_empty()
            }
            _ => false,
        },
        Some(("projectOwner" | "projectEditor" | "projectViewer", rest)) => {
            api == Api::Storage && !rest.is_empty()
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("Invalid principal: {member}. A principal is one of user:, group:, serviceAccount:, domain:, principal://, principalSet://, deleted:…, allUsers or allAuthenticatedUsers{}.",
            if api == Api::Storage { " (or projectOwner:, projectEditor:, projectViewer: on buckets)" } else { "" })))
    }
}

/// The policy as getIamPolicy returns it for `requested` (cloud-contracts §1.1): version 3 only
/// when there are conditions and 3 was asked for; below 3, each conditional binding's role gets
/// the suffix `_withcond_<hash>` and loses its condition, as Google documents.
pub(crate) fn view(
    bindings: &[Binding],
    etag: &str,
    audit_configs: &Option<Value>,
    requested: i64,
) -> Value {
    let conditional = bindings.iter().any(|b| b.condition.is_some());
    let shown: Vec<Value> = bindings
        .iter()
        .map(|b| match (&b.condition, requested >= 3) {
            (Some(c), false) => json!({"role": format!("{}_withcond_{}", b.role, condition_hash(c)), "members": b.members}),
            _ => serde_json::to_value(b).unwrap_or(Value::Null),
        })
        .collect();
    let mut out = json!({
        "version": if conditional && requested >= 3 { 3 } else { 1 },
        "etag": etag,
    });
    if !shown.is_empty() {
        out["bindings"] = Value::Array(shown);
    }
    if let Some(a) = audit_configs {
        out["auditConfigs"] = a.clone();
    }
    out
}

fn condition_hash(c: &Expr) -> String {
    let digest = Sha256::digest(serde_json::to_vec(c).unwrap_or_default());
    digest[..10].iter().map(|b| format!("{b:02x}")).collect()
}

/// Drops members-less bindings and duplicate members, as Google normalises a stored policy.
pub(crate) fn normalise(bindings: Vec<Binding>) -> Vec<Binding> {
    bindings
        .into_iter()
        .filter_map(|mut b| {
            let mut seen = Vec::new();
            b.members.retain(|m| {
                let new = !seen.contains(m);
                seen.push(m.clone());
                new
            });
            (!b.members.is_empty()).then_some(b)
        })
        .collect()
}

/// `1510` → `1,510`, as Google writes counts in its limit messages.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(role: &str, members: &[&str], condition: Option<&str>) -> Binding {
        Binding {
            role: role.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            condition: condition.map(|e| Expr {
                title: Some("t".into()),
                description: None,
                expression: e.into(),
                location: None,
            }),
        }
    }

    fn check(bindings: Vec<Binding>, version: i64) -> Result<(), ApiError> {
        let p = Policy {
            version,
            bindings,
            ..Policy::default()
        };
        validate(&p, Api::ResourceManager, |_| Ok(()))
    }

    #[test]
    fn members_and_conditions() {
        assert!(check(
            vec![binding(
                "roles/x",
                &[
                    "user:a@example.com",
                    "deleted:user:b@example.com?uid=123",
                    "principalSet://iam.googleapis.com/locations/global/workforcePools/p/group/g",
                    "allUsers"
                ],
                None
            )],
            1
        )
        .is_ok());
        for bad in [
            "a@example.com",
            "user:",
            "role:x",
            "projectOwner:p1",
            "deleted:user:b@example.com",
        ] {
            let e = check(vec![binding("roles/x", &[bad], None)], 1).unwrap_err();
            assert_eq!(e.code, 400, "{bad}");
        }
        let cond = Some("request.time < timestamp('2030-01-01T00:00:00Z')");
        assert!(
            check(vec![binding("roles/x", &["user:a@example.com"], cond)], 1)
                .unwrap_err()
                .message
                .contains("version 3")
        );
        assert!(check(vec![binding("roles/x", &["user:a@example.com"], cond)], 3).is_ok());
        assert!(check(
            vec![binding("roles/viewer", &["user:a@example.com"], cond)],
            3
        )
        .unwrap_err()
        .message
        .contains("basic role"));
        assert!(check(vec![binding("roles/x", &["allUsers"], cond)], 3)
            .unwrap_err()
            .message
            .contains("allUsers"));
    }

    #[test]
    fn limits_name_their_values() {
        let members: Vec<String> = (0..1_510)
            .map(|i| format!("user:u{i}@example.com"))
            .collect();
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        let e = check(
            vec![
                binding("roles/x", &refs[..1_000], None),
                binding("roles/y", &refs[1_000..], None),
            ],
            1,
        )
        .unwrap_err();
        assert_eq!(e.message, "The number of members in the policy (1,510) is larger than the maximum allowed size 1,500.");
        let groups: Vec<String> = (0..253)
            .map(|i| format!("group:g{i}@example.com"))
            .collect();
        let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
        let e = check(vec![binding("roles/x", &refs, None)], 1).unwrap_err();
        assert!(
            e.message
                .contains("(253) is larger than the maximum allowed size 250"),
            "{e}"
        );
        let many: Vec<Binding> = (0..21)
            .map(|i| {
                binding(
                    "roles/x",
                    &["user:a@example.com"],
                    Some(&format!(
                        "request.time < timestamp('20{}-01-01T00:00:00Z')",
                        30 + i
                    )),
                )
            })
            .collect();
        assert!(check(many.clone(), 3)
            .unwrap_err()
            .message
            .contains("maximum allowed is 20"));
        assert!(check(many[..20].to_vec(), 3).is_ok());
    }

    #[test]
    fn downgraded_view_hides_conditions() {
        let b = vec![
            binding("roles/x", &["user:a@example.com"], Some("true")),
            binding("roles/y", &["user:a@example.com"], None),
        ];
        let v1 = view(&b, "BwE=", &None, 1);
        assert_eq!(v1["version"], 1);
        let role = v1["bindings"][0]["role"].as_str().unwrap();
        assert!(
            role.starts_with("roles/x_withcond_") && role.len() == "roles/x_withcond_".len() + 20
        );
        assert!(v1["bindings"][0].get("condition").is_none());
        let v3 = view(&b, "BwE=", &None, 3);
        assert_eq!(v3["version"], 3);
        assert_eq!(v3["bindings"][0]["condition"]["expression"], "true");
        assert_eq!(view(&b[1..], "BwE=", &None, 3)["version"], 1);
        assert_eq!(thousands(1_500), "1,500");
        assert_eq!(thousands(65_536), "65,536");
    }
}

/// The source of etags: base64 of 8 bytes that change on every write anywhere in the stand-in
/// (gcloud refuses an etag that is not valid base64, cloud-contracts §1.1).
#[derive(Debug, Default)]
pub(crate) struct Etags {
    writes: u64,
}

impl Etags {
    pub fn next(&mut self) -> String {
        use base64::Engine as _;
        self.writes += 1;
        let mut bytes = self.writes.to_be_bytes();
        // Google's policy etags start with 0x07 ("Bw…"); any leading byte would do.
        bytes[0] = 0x07;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
