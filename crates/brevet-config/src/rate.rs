//! `revoke_rate` / `revoke_burst`: how fast the scheduler may revoke on one provider instance.
//! Every `[providers.NAME]` table takes them (the server reads them, like `kind`), whatever the
//! provider's kind.

use crate::{field, ConfigError};

/// The most revocations per second (or in a burst) a limit may name: past it a limit is no
/// limit, and a typo of a few extra zeros is more likely than a target that takes a million
/// revocations a second.
const MOST: f64 = 1_000_000.0;

/// A provider's revocation rate limit: on average at most `per_second` scheduled revocations a
/// second, at most `burst` at once after a quiet spell. Built only by [`RevokeRate::take`] or
/// [`RevokeRate::new`], so both are positive and finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevokeRate {
    per_second: f64,
    burst: u32,
}

impl RevokeRate {
    /// `per_second` in (0, 1,000,000]; `burst` in 1..=1,000,000, one second's worth (at least
    /// one) when not given. The error says which bound was broken and how to write it.
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, String> {
        let per_second = checked_rate(per_second)?;
        let burst = match burst {
            Some(b) => checked_burst(i64::from(b))?,
            None => per_second.ceil() as u32,
        };
        Ok(Self { per_second, burst })
    }

    /// Revocations per second, on average.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// How many may start at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Takes `revoke_rate` and `revoke_burst` out of a `[providers.NAME]` table (`at` is
    /// `providers.NAME`), so the provider's own parser never sees them. `None`: no limit.
    pub fn take(table: &mut toml::Table, at: &str) -> Result<Option<Self>, ConfigError> {
        let rate = table.remove("revoke_rate");
        let burst = table.remove("revoke_burst");
        let burst = match burst {
            None => None,
            Some(toml::Value::Integer(b)) => {
                Some(checked_burst(b).map_err(|why| field(format!("{at}.revoke_burst"), why))?)
            }
            Some(other) => {
                return Err(field(
                    format!("{at}.revoke_burst"),
                    format!(
                        "`{other}` is not a whole number; write how many revocations may start at once, e.g. revoke_burst = 20"
                    ),
                ))
            }
        };
        let per_second = match rate {
            None if burst.is_some() => {
                return Err(field(
                    format!("{at}.revoke_burst"),
                    "needs revoke_rate beside it (revocations per second, e.g. revoke_rate = 50); without it revocations are not limited",
                ))
            }
            None => return Ok(None),
            Some(toml::Value::Integer(n)) => n as f64,
            Some(toml::Value::Float(f)) => f,
            Some(other) => {
                return Err(field(
                    format!("{at}.revoke_rate"),
                    format!(
                        "`{other}` is not a number; write revocations per second without quotes, e.g. revoke_rate = 50"
                    ),
                ))
            }
        };
        let per_second =
            checked_rate(per_second).map_err(|why| field(format!("{at}.revoke_rate"), why))?;
        Ok(Some(
            Self::new(per_second, burst).map_err(|why| field(at, why))?,
        ))
    }
}

fn checked_rate(per_second: f64) -> Result<f64, String> {
    if per_second.is_finite() && per_second > 0.0 && per_second <= MOST {
        return Ok(per_second);
    }
    Err(format!(
        "`{per_second}` is not a rate; write revocations per second as a number above 0 and at most 1000000, e.g. revoke_rate = 50 (or 0.5 for one every 2 seconds)"
    ))
}

fn checked_burst(b: i64) -> Result<u32, String> {
    match u32::try_from(b) {
        Ok(b) if b >= 1 && f64::from(b) <= MOST => Ok(b),
        _ => Err(format!(
            "`{b}` is not a burst; write how many revocations may start at once as a whole number from 1 to 1000000"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(text: &str) -> Result<Option<RevokeRate>, String> {
        let mut t: toml::Table = toml::from_str(text).unwrap();
        let r = RevokeRate::take(&mut t, "providers.pg").map_err(|e| e.to_string());
        assert!(
            !t.contains_key("revoke_rate") && !t.contains_key("revoke_burst"),
            "both keys are taken out, error or not"
        );
        r
    }

    #[test]
    fn a_rate_and_its_burst_are_read() {
        assert_eq!(take("kind = \"x\"").unwrap(), None);
        let r = take("revoke_rate = 50").unwrap().unwrap();
        assert_eq!((r.per_second(), r.burst()), (50.0, 50));
        let r = take("revoke_rate = 0.5").unwrap().unwrap();
        assert_eq!(
            (r.per_second(), r.burst()),
            (0.5, 1),
            "one second's worth, at least one"
        );
        let r = take("revoke_rate = 2000\nrevoke_burst = 64")
            .unwrap()
            .unwrap();
        assert_eq!((r.per_second(), r.burst()), (2000.0, 64));
    }

    #[test]
    fn bad_values_are_refused_naming_the_field_and_the_fix() {
        for (text, field, says) in [
            ("revoke_rate = 0", "providers.pg.revoke_rate", "above 0"),
            ("revoke_rate = -5", "providers.pg.revoke_rate", "above 0"),
            ("revoke_rate = nan", "providers.pg.revoke_rate", "above 0"),
            ("revoke_rate = inf", "providers.pg.revoke_rate", "above 0"),
            (
                "revoke_rate = 5e9",
                "providers.pg.revoke_rate",
                "at most 1000000",
            ),
            (
                "revoke_rate = \"50/s\"",
                "providers.pg.revoke_rate",
                "without quotes",
            ),
            (
                "revoke_rate = 5\nrevoke_burst = 0",
                "providers.pg.revoke_burst",
                "from 1",
            ),
            (
                "revoke_rate = 5\nrevoke_burst = -1",
                "providers.pg.revoke_burst",
                "from 1",
            ),
            (
                "revoke_rate = 5\nrevoke_burst = 2000000",
                "providers.pg.revoke_burst",
                "from 1",
            ),
            (
                "revoke_rate = 5\nrevoke_burst = 2.5",
                "providers.pg.revoke_burst",
                "whole number",
            ),
            (
                "revoke_burst = 5",
                "providers.pg.revoke_burst",
                "needs revoke_rate",
            ),
        ] {
            let e = take(text).unwrap_err();
            assert!(
                e.contains(&format!("`{field}`")) && e.contains(says),
                "{text:?}: {e}"
            );
        }
    }
}
