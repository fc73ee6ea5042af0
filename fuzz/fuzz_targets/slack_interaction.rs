//! `POST /slack/interactions`: the request signature check (`verify_slack`: the
//! X-Slack-Request-Timestamp and X-Slack-Signature headers over the raw body), the replay guard,
//! and the interaction payload as the handler reads it (`read_click`). The input is the
//! timestamp header, a newline, the signature header, a newline, then the body. Checked besides
//! not panicking: a forged signature is refused, the correct one (computed here independently)
//! accepted within the replay window, and accepted once.
#![no_main]

use brevet_server::notify::signature::{verify_slack, ReplayGuard, TOLERANCE_SECS};
use brevet_server::notify::slack::interactions::read_click;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
const NOW: i64 = 1_700_000_000;

fn slack_mac(timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    m.update(b"v0:");
    m.update(timestamp.as_bytes());
    m.update(b":");
    m.update(body);
    m.finalize().into_bytes().into()
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (timestamp, rest) = split_line(data);
    let (signature, body) = split_line(rest);
    let (Ok(timestamp), Ok(signature)) = (
        std::str::from_utf8(timestamp),
        std::str::from_utf8(signature),
    ) else {
        return;
    };

    // As presented: only the right MAC passes.
    if verify_slack(SECRET, Some(timestamp), Some(signature), body, NOW).is_ok() {
        let presented = signature
            .trim()
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok());
        assert_eq!(
            presented.as_deref(),
            Some(&slack_mac(timestamp.trim(), body)[..]),
            "a signature that is not the MAC was accepted"
        );
    }
    let _ = verify_slack(SECRET, None, Some(signature), body, NOW);

    // Correctly signed: accepted exactly when the timestamp is a number within the window.
    let good = format!("v0={}", hex::encode(slack_mac(timestamp.trim(), body)));
    let accepted = verify_slack(SECRET, Some(timestamp), Some(&good), body, NOW).is_ok();
    let fresh = timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| (i128::from(NOW) - i128::from(t)).abs() <= i128::from(TOLERANCE_SECS));
    assert_eq!(accepted, fresh, "timestamp `{timestamp}`");
    if accepted {
        let guard = ReplayGuard::default();
        let t = timestamp.trim().parse().unwrap();
        assert!(guard.first_use(&good, t, NOW));
        assert!(
            !guard.first_use(&good.to_ascii_uppercase(), t, NOW),
            "replayed"
        );
        let mut tampered = body.to_vec();
        tampered.push(b'&');
        assert!(verify_slack(SECRET, Some(timestamp), Some(&good), &tampered, NOW).is_err());
    }

    // What the handler reads once the signature has passed.
    if let Some(click) = read_click(body) {
        let _ = format!("{click:?}");
    }
});
