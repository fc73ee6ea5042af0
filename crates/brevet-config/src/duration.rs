//! Durations written as text (`30s`, `8h`).

use std::time::Duration;

use serde::Deserialize;

/// A duration in the config. Zero is refused: every such duration is an interval, a timeout or
/// a lifetime, and zero would silently mean "never" or "at once" (an interval of zero once
/// stopped the scheduler). Where zero makes sense the field says so with [`DurationOrZero`];
/// where a feature can be turned off it says so with `"off"` ([`DurationOrOff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

fn parse<E: serde::de::Error>(s: &str) -> Result<Duration, E> {
    humantime::parse_duration(s).map_err(|e| {
        E::custom(format!(
            "`{s}` is not a duration ({e}); write it like \"30s\" or \"8h\""
        ))
    })
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = parse(&s)?;
        if v.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is zero; write a duration longer than zero, like \"30s\""
            )));
        }
        Ok(Self(v))
    }
}

/// A duration that may be zero (a clock-skew allowance, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationOrZero(pub Duration);

impl<'de> Deserialize<'de> for DurationOrZero {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map(Self)
    }
}

/// A duration, or `"off"` for a periodic task an operator may turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationOrOff(pub Option<Duration>);

impl<'de> Deserialize<'de> for DurationOrOff {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "off" {
            return Ok(Self(None));
        }
        let v = parse(&s)?;
        if v.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is zero; write an interval like \"60s\", or \"off\" to turn it off"
            )));
        }
        Ok(Self(Some(v)))
    }
}

/// A default written as text in the source. Only called with literals that parse; a typo shows
/// as a one-second default in the tests of the section that uses it.
pub fn duration_literal(s: &str) -> ConfigDuration {
    ConfigDuration(humantime::parse_duration(s).unwrap_or(Duration::from_secs(1)))
}
