use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{invalid, CoreError};

/// How long access lasts once it is granted. Parsed from human text (`5s`, `30m`, `1h 30m`).
/// Bounded to between one second and 31 days so that no input can overflow timestamp arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantDuration(Duration);

impl GrantDuration {
    pub const MAX: Duration = Duration::from_secs(31 * 24 * 3600);

    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            invalid(
                "duration",
                s,
                format!("{e}; write it like `30m`, `1h` or `1h 30m`"),
            )
        })?;
        Self::from_std(d).map_err(|why| invalid("duration", s, why))
    }

    pub fn from_std(d: Duration) -> Result<Self, String> {
        if d < Duration::from_secs(1) {
            return Err("must be at least 1s".into());
        }
        if d > Self::MAX {
            return Err("must be at most 31 days".into());
        }
        // Whole milliseconds only, so the value round-trips through storage unchanged.
        Ok(Self(Duration::from_millis(d.as_millis() as u64)))
    }

    pub fn from_secs(secs: u64) -> Result<Self, String> {
        Self::from_std(Duration::from_secs(secs))
    }

    pub fn as_std(&self) -> Duration {
        self.0
    }

    pub fn as_chrono(&self) -> chrono::Duration {
        // Bounded by MAX above, so the conversion cannot fail.
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }

    pub fn as_millis(&self) -> i64 {
        self.0.as_millis() as i64
    }
}

impl fmt::Display for GrantDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for GrantDuration {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for GrantDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GrantDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        assert_eq!(GrantDuration::parse("5s").unwrap().as_millis(), 5000);
        assert_eq!(
            GrantDuration::parse("1h 30m").unwrap().as_millis(),
            5_400_000
        );
        assert!(GrantDuration::parse("0s").is_err());
        assert!(GrantDuration::parse("32days").is_err());
        let e = GrantDuration::parse("forever").unwrap_err().to_string();
        assert!(e.contains("`30m`"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["5s", "30m", "1h 30m", "2days"] {
            let d = GrantDuration::parse(s).unwrap();
            assert_eq!(GrantDuration::parse(&d.to_string()).unwrap(), d);
        }
    }
}
