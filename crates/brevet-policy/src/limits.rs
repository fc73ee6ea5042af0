use brevet_core::GrantDuration;
use serde::Serialize;

use crate::PolicyError;

/// Limits that apply when no annotation says otherwise.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Defaults {
    pub max_duration: GrantDuration,
    pub approvals: u32,
    pub require_reason: bool,
    pub max_extensions: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            // Proven infallible: 1h is within GrantDuration's bounds.
            max_duration: GrantDuration::from_secs(3600).unwrap_or_else(|_| unreachable!()),
            approvals: 1,
            require_reason: true,
            max_extensions: 2,
        }
    }
}

/// The limits a `permit` policy for `request` sets through its annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleLimits {
    pub max_duration: GrantDuration,
    /// Approvals needed from people other than the requester; 0 approves automatically.
    pub approvals: u32,
    pub require_reason: bool,
    pub require_ticket: bool,
    pub max_extensions: u32,
}

const KNOWN: [&str; 6] = [
    "id",
    "max_duration",
    "approvals",
    "require_reason",
    "require_ticket",
    "max_extensions",
];

impl RuleLimits {
    pub(crate) fn from_annotations<'a>(
        id: &str,
        annotations: impl Iterator<Item = (&'a str, &'a str)>,
        d: &Defaults,
    ) -> Result<Self, PolicyError> {
        let mut l = RuleLimits {
            max_duration: d.max_duration,
            approvals: d.approvals,
            require_reason: d.require_reason,
            require_ticket: false,
            max_extensions: d.max_extensions,
        };
        for (key, value) in annotations {
            let bad = |why: &str| PolicyError::Annotation {
                id: id.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
                why: why.to_owned(),
            };
            let boolean = || match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(bad("write \"true\" or \"false\"")),
            };
            let count = || {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 20)
                    .ok_or_else(|| bad("write a whole number from 0 to 20"))
            };
            match key {
                "id" => {}
                "max_duration" => {
                    l.max_duration = GrantDuration::parse(value).map_err(|e| bad(&e.to_string()))?
                }
                "approvals" => l.approvals = count()?,
                "require_reason" => l.require_reason = boolean()?,
                "require_ticket" => l.require_ticket = boolean()?,
                "max_extensions" => l.max_extensions = count()?,
                _ => {
                    return Err(bad(&format!(
                        "unknown annotation; Brevet understands @{}",
                        KNOWN.join(", @")
                    )))
                }
            }
        }
        Ok(l)
    }
}
