//! Times as ARM writes and reads them, and ISO 8601 durations (`PT8H`, `P1DT2H30M`).

use chrono::{DateTime, Duration, NaiveDateTime, SecondsFormat, Utc};

/// `2026-12-01T10:00:00.000Z`.
pub(crate) fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339, or the same without an offset (taken as UTC), as ARM accepts.
pub(crate) fn parse(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// An ISO 8601 duration of weeks, days, hours, minutes and seconds (no years or months: their
/// length is not fixed, and PIM's examples never use them).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::zero();
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            'T' if !in_time && number.is_empty() => in_time = true,
            d if d.is_ascii_digit() || d == '.' => number.push(d),
            unit => {
                let n: f64 = number.parse().ok()?;
                number.clear();
                let seconds = match (unit, in_time) {
                    ('W', false) => 604_800.0,
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return None,
                };
                let millis = n * seconds * 1_000.0;
                if !millis.is_finite() || millis > 1e15 {
                    return None;
                }
                total = total.checked_add(&Duration::try_milliseconds(millis as i64)?)?;
                any = true;
            }
        }
    }
    (number.is_empty() && any).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT8H"), Some(Duration::hours(8)));
        assert_eq!(
            parse_duration("P1DT2H30M"),
            Some(Duration::minutes(26 * 60 + 30))
        );
        assert_eq!(parse_duration("P365D"), Some(Duration::days(365)));
        assert_eq!(parse_duration("PT0.5S"), Some(Duration::milliseconds(500)));
        for bad in [
            "",
            "P",
            "PT",
            "8H",
            "P8H",
            "PT8",
            "P1Y",
            "PT99999999999999999H",
            "PTXH",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn times() {
        let t = parse("2026-12-01T10:00:00Z").unwrap();
        assert_eq!(format(t), "2026-12-01T10:00:00.000Z");
        assert_eq!(
            parse("2026-12-01T10:00:00.1234567"),
            Some(t + Duration::microseconds(123_456) + Duration::nanoseconds(700))
        );
        assert_eq!(parse("2026-12-01T12:00:00+02:00"), Some(t));
        assert_eq!(parse("yesterday"), None);
    }
}
