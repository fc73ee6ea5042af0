//! IAM actions and ARNs, parsed. (Whether an action exists, and whether it is sensitive, the
//! permission catalog says: `brevet-catalog`, through the config's access language.)

use std::fmt;

/// An IAM action such as `s3:GetObject` (`*` allowed in the action part only where configured).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IamAction {
    pub service: String,
    pub action: String,
}

impl IamAction {
    pub fn parse(s: &str) -> Result<Self, String> {
        // Every action of every service: IAM's own spelling, a wildcard like any other.
        if s == "*" {
            return Ok(Self {
                service: "*".into(),
                action: "*".into(),
            });
        }
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
        if self.service == "*" {
            return f.write_str("*");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_and_arns() {
        assert!(IamAction::parse("s3:GetObject").is_ok());
        assert!(IamAction::parse("s3:Get*").unwrap().is_wildcard());
        let all = IamAction::parse("*").unwrap();
        assert!(all.is_wildcard());
        assert_eq!(all.to_string(), "*");
        for bad in [
            "s3GetObject",
            "S3:GetObject",
            "s3:",
            ":Get",
            "s3:Get Object",
            "**",
            "*:*",
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
}
