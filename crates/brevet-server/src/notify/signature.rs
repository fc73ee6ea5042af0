//! HMAC-SHA256 signatures: the ones Brevet puts on its webhooks, and the ones Slack puts on the
//! interactions it sends to Brevet (checked in constant time, with a replay window).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signed timestamp may be from now, either way, before it is refused as a replay.
pub const TOLERANCE_SECS: i64 = 5 * 60;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length, so `new_from_slice` cannot fail here.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The `Brevet-Signature` header for a webhook body sent at Unix time `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn webhook_signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let ts = t.to_string();
    let v1 = hex::encode(mac(secret, &[ts.as_bytes(), b".", body]));
    format!("t={ts},v1={v1}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Request-Timestamp or X-Slack-Signature")]
    Missing,
    #[error("request timestamp is not a number")]
    BadTimestamp,
    #[error("request timestamp is more than five minutes from now (a replay?)")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Checks Slack's request signature: `X-Slack-Signature` must be `v0=` + hex
/// HMAC-SHA256(signing secret, `v0:<X-Slack-Request-Timestamp>:<raw body>`), and the timestamp
/// within [`TOLERANCE_SECS`] of `now`. Nothing of the body is trusted before this passes.
pub fn verify_slack(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let t: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    // `abs_diff`, not `(now - t).abs()`: that overflows for a timestamp near i64::MIN (a panic
    // with overflow checks; without them a difference that wrapped to i64::MIN passed as fresh).
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let presented = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    let expected = mac(
        signing_secret,
        &[b"v0:", timestamp.trim().as_bytes(), b":", body],
    );
    // Lengths are public (32 bytes); the comparison of contents is constant-time.
    if presented.len() == expected.len() && bool::from(presented.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Remembers the signatures of interactions already accepted within the replay window, so the
/// same signed request cannot be sent twice. The timestamp check bounds how long one must be
/// remembered; memory is bounded by the number of clicks in ten minutes. Per process: replicas
/// behind a load balancer each keep their own (a replay to another replica still meets the
/// idempotent decision path, which records nothing twice).
#[derive(Default)]
pub struct ReplayGuard {
    seen: std::sync::Mutex<std::collections::HashMap<[u8; 32], i64>>,
}

impl ReplayGuard {
    /// True the first time this signature is presented (at signed time `t`), false after.
    pub fn first_use(&self, signature: &str, t: i64, now: i64) -> bool {
        use sha2::Digest;
        // Hex is case-insensitive to the verifier, so it must be to the memory too.
        let key: [u8; 32] = Sha256::digest(signature.trim().to_ascii_lowercase().as_bytes()).into();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| now.abs_diff(*at) <= 2 * TOLERANCE_SECS.unsigned_abs());
        seen.insert(key, t).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_within_the_window() {
        let g = ReplayGuard::default();
        assert!(g.first_use("v0=aa", 1000, 1000));
        assert!(!g.first_use("v0=aa", 1000, 1010));
        assert!(g.first_use("v0=bb", 1000, 1010));
        assert!(
            !g.first_use("V0=BB", 1000, 1010),
            "the same signature in upper case"
        );
        // Long after the window the entry is forgotten (the timestamp check refuses it anyway).
        assert!(g.first_use("v0=aa", 1000, 1000 + 3 * TOLERANCE_SECS));
    }

    fn slack_sign(secret: &[u8], t: &str, body: &[u8]) -> String {
        format!(
            "v0={}",
            hex::encode(mac(secret, &[b"v0:", t.as_bytes(), b":", body]))
        )
    }

    #[test]
    fn slack_signatures_are_checked() {
        // Slack's documented example request.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(slack_sign(secret, "1531420618", body), sig);
        assert_eq!(
            verify_slack(secret, Some("1531420618"), Some(sig), body, 1531420618 + 10),
            Ok(())
        );
        assert_eq!(
            verify_slack(
                secret,
                Some("1531420618"),
                Some(sig),
                body,
                1531420618 + 301
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_slack(b"other", Some("1531420618"), Some(sig), body, 1531420618),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack(secret, Some("1531420618"), Some("v0=zz"), body, 1531420618),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack(secret, None, Some(sig), body, 1531420618),
            Err(SignatureError::Missing)
        );
        let mut tampered = body.to_vec();
        tampered[0] = b'T';
        assert_eq!(
            verify_slack(secret, Some("1531420618"), Some(sig), &tampered, 1531420618),
            Err(SignatureError::Mismatch)
        );
    }

    /// Found while fuzzing (fuzz target `slack_interaction`): `(now - t).abs()` overflowed for
    /// a timestamp header near i64::MIN, before any signature was checked — a panic in builds
    /// with overflow checks; in release builds `-(2^63 - now)` wrapped to i64::MIN, whose `abs()`
    /// is negative, so a request signed at that instant passed the replay window.
    #[test]
    fn a_timestamp_far_from_now_is_stale_whatever_its_size() {
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"payload=%7B%7D";
        let now = 1_700_000_000_i64;
        for t in [i64::MIN, -(i64::MAX - now) - 1, i64::MIN + 1, i64::MAX] {
            let ts = t.to_string();
            let sig = slack_sign(secret, &ts, body);
            assert_eq!(
                verify_slack(secret, Some(&ts), Some(&sig), body, now),
                Err(SignatureError::Stale),
                "{ts}"
            );
        }
        let g = ReplayGuard::default();
        assert!(g.first_use("v0=aa", i64::MIN, now));
        assert!(g.first_use("v0=bb", now, now));
        assert!(
            g.first_use("v0=aa", now, now),
            "an entry that far off is forgotten"
        );
    }

    #[test]
    fn webhook_signature_is_hmac_of_timestamp_dot_body() {
        // RFC 4231-style check against an independently computed value.
        let s = webhook_signature(b"secret", 1700000000, b"{}");
        let expected = hex::encode(mac(b"secret", &[b"1700000000.{}"]));
        assert_eq!(s, format!("t=1700000000,v1={expected}"));
    }
}
