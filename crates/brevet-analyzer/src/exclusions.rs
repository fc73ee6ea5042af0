//! What not to report, like cloudsplaining's exclusions file but in TOML and for every cloud:
//!
//! ```toml
//! policies = ["AWSServiceRoleFor*", "roles/logging.logWriter"]   # policy/role names or ARNs
//! principals = ["arn:aws:iam::*:role/breakglass", "group:sre@example.com"]
//! users = ["terraform"]        # AWS user names (cloudsplaining's keys, for an easy move)
//! groups = []
//! roles = ["OrganizationAccountAccessRole"]
//! exclude_actions = ["s3:GetObject"]   # permissions never reported
//! service_linked_roles = false         # report AWS service-linked roles too (default: skip)
//! ```
//!
//! Globs use `*` and `?`, without case. Findings the exclusions drop are counted in the report
//! (`excluded`); excluded principals and policies are left out before the analysis.

use brevet_catalog::Pattern;
use serde::Deserialize;

use crate::report::Finding;
use crate::AnalyzeError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusions {
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub exclude_actions: Vec<String>,
    /// AWS service-linked roles (path `/aws-service-role/`) are the cloud's own and cannot be
    /// changed by the account: skipped unless this is `true`.
    #[serde(default)]
    pub service_linked_roles: bool,
}

fn any_match(globs: &[String], candidates: &[&str]) -> bool {
    globs.iter().filter(|g| !g.is_empty()).any(|g| {
        let p = Pattern::new(g, true);
        candidates.iter().any(|c| p.matches(c))
    })
}

impl Exclusions {
    /// Parses an exclusions file (TOML). Unknown keys are refused, naming the key.
    pub fn parse(file: &str, text: &str) -> Result<Exclusions, AnalyzeError> {
        toml_like(file, text)
    }

    /// A policy/role by name or ARN (`arn:…:policy/NAME` also matches `NAME`).
    pub fn excludes_policy(&self, policy: &str) -> bool {
        let short = policy.rsplit('/').next().unwrap_or(policy);
        any_match(&self.policies, &[policy, short])
    }

    /// A principal by id, or its name for the cloudsplaining-style kind lists (AWS ARNs:
    /// `…:user/NAME`, `…:role/path/NAME`).
    pub fn excludes_principal(&self, id: &str) -> bool {
        let name = id.rsplit('/').next().unwrap_or(id);
        if any_match(&self.principals, &[id, name]) {
            return true;
        }
        let kind = if id.contains(":user/") {
            &self.users
        } else if id.contains(":group/") {
            &self.groups
        } else if id.contains(":role/") {
            &self.roles
        } else {
            return false;
        };
        any_match(kind, &[name, id])
    }

    pub fn excludes_action(&self, action: &str) -> bool {
        any_match(&self.exclude_actions, &[action])
    }

    pub fn excludes_finding(&self, f: &Finding) -> bool {
        self.excludes_policy(&f.policy)
            || (!f.principals.is_empty() && f.principals.iter().all(|p| self.excludes_principal(p)))
            || (!f.permissions.is_empty()
                && !self.exclude_actions.is_empty()
                && f.permissions.iter().all(|a| self.excludes_action(a)))
    }
}

fn toml_like(file: &str, text: &str) -> Result<Exclusions, AnalyzeError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                (
                    before.matches('\n').count() + 1,
                    before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                )
            })
            .unwrap_or((0, 0));
        AnalyzeError::Malformed {
            file: file.into(),
            line,
            column,
            path: "(exclusions)".into(),
            reason: e.message().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let e = Exclusions::parse("x.toml", "# c\npolicies = [\"AWSServiceRoleFor*\", # why\n \"roles/owner\",\n]\nusers = [\"terraform\"]\nservice_linked_roles = true\n").unwrap();
        assert!(
            e.excludes_policy("arn:aws:iam::aws:policy/aws-service-role/AWSServiceRoleForSupport")
        );
        assert!(e.excludes_policy("roles/owner"));
        assert!(!e.excludes_policy("roles/editor"));
        assert!(e.excludes_principal("arn:aws:iam::1:user/terraform"));
        assert!(!e.excludes_principal("arn:aws:iam::1:role/terraform"));
        assert!(e.service_linked_roles);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Exclusions::parse("x.toml", "polices = [\"a\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("polices"), "{err}");
        let err = Exclusions::parse("x.toml", "\n\npolicies = [a]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
