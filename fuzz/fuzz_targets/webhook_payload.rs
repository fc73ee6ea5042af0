//! Webhooks are outbound only: Brevet parses no inbound webhook payload. What is fuzzed is what
//! Brevet builds from an audit event whose fields come from the input: the event type and the
//! `events = [...]` filter (`EventFilter::parse`), the payload (`audit_payload`), the exact body
//! POSTed (`webhook_body`) and its `Brevet-Signature` header (`webhook_signature`). The input is
//! newline-separated: kind, actor, request id, data (JSON text), delivery id, secret, event
//! filter names (comma-separated), then a timestamp. The body must be JSON carrying the payload
//! and the delivery id, and the signature what a receiver following docs/notifications.md
//! computes (checked here independently).
#![no_main]

use brevet_audit::AuditEvent;
use brevet_server::notify::event::{audit_payload, event_type, EventFilter};
use brevet_server::notify::signature::webhook_signature;
use brevet_server::notify::webhook::webhook_body;
use brevet_store::{Delivery, DeliveryState};
use chrono::DateTime;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(8, '\n');
    let mut next = || fields.next().unwrap_or_default();
    let (kind, actor, request_id, event_data) = (next(), next(), next(), next());
    let (delivery_id, secret, filter, t) = (next(), next(), next(), next());
    let t: i64 = t.trim().parse().unwrap_or(1_700_000_000);

    let event = AuditEvent {
        seq: 7,
        at: "2026-01-02T03:04:05.000006Z".into(),
        kind: kind.into(),
        actor: actor.into(),
        request_id: (!request_id.is_empty()).then(|| request_id.into()),
        data: event_data.into(),
        prev_hash: "0".repeat(64),
        hash: String::new(),
    };
    let ty = event_type(kind);
    let names: Vec<String> = filter.split(',').map(str::to_owned).collect();
    if let Ok(f) = EventFilter::parse(&names) {
        let _ = f.wants(&ty);
    }

    let payload = audit_payload(&event);
    assert_eq!(payload["type"], Value::String(ty));
    assert_eq!(payload["data"], event.data_json());

    let epoch = DateTime::from_timestamp(0, 0).unwrap();
    let delivery = Delivery {
        id: delivery_id.into(),
        subscriber: "webhook:fuzz".into(),
        event_key: format!("audit:{}", event.seq),
        event_type: payload["type"].as_str().unwrap_or_default().into(),
        request_id: event.request_id.clone(),
        payload: payload.clone(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        created_at: epoch,
        updated_at: epoch,
        delivered_at: None,
    };
    let body = webhook_body(&delivery);
    let mut sent: Value = serde_json::from_slice(&body).expect("the body is JSON");
    assert_eq!(sent["delivery_id"], Value::String(delivery_id.into()));
    sent.as_object_mut().unwrap().remove("delivery_id");
    // Compared after the same one trip through JSON text: serde_json does not promise that every
    // float parses back to the bits it was printed from.
    let reparsed: Value = serde_json::from_str(&payload.to_string()).unwrap();
    assert_eq!(
        sent, reparsed,
        "the body is the payload and the delivery id"
    );

    let header = webhook_signature(secret.as_bytes(), t, &body);
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{t}.").as_bytes());
    m.update(&body);
    let expected = format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()));
    assert_eq!(header, expected);
});
