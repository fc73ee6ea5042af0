//! OpenTelemetry trace export (the `otlp` feature) through the real binary: a receiver in the
//! test takes the OTLP/HTTP POSTs and reads them with OpenTelemetry's own generated protobuf types
//! (`opentelemetry-proto`), not with anything of ours, then checks that a grant's spans — its
//! request, activation and revocation, manual and on expiry — carry its id, that the service is
//! named, that the configured headers reach the collector and never the log, and that the spans
//! still buffered are sent on a graceful shutdown.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{any_value::Value as Any, KeyValue},
    trace::v1::Span,
};
use prost::Message;

use crate::common::*;

/// What the receiver was sent: each POST's headers of interest and its decoded body.
#[derive(Default)]
struct Received {
    posts: Vec<(Option<String>, Option<String>, ExportTraceServiceRequest)>,
    refused: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

async fn traces(State(got): State<Shared>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut got = got.lock().unwrap();
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => got
            .posts
            .push((header("content-type"), header("x-collector-key"), req)),
        Err(e) => got.refused.push(e.to_string()),
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

fn receiver() -> (Served, Shared) {
    let got = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(got.clone());
    let served = Served::start("otlp-receiver", "127.0.0.1:0".parse().unwrap(), app)
        .expect("start the OTLP receiver");
    (served, got)
}

fn string(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// The spans carrying `grant_id` = `id`, by name.
fn names_for(spans: &[Span], id: &str) -> BTreeSet<String> {
    spans
        .iter()
        .filter(|s| string(&s.attributes, "grant_id").as_deref() == Some(id))
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn grant_spans_reach_an_otlp_collector_with_the_grant_id() {
    let (collector, got) = receiver();
    let world = World::new(StoreKind::Sqlite).env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
        ("OTEL_SERVICE_NAME", "brevet-e2e"),
        // Percent-encoded, as the specification writes header values.
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-collector-key=sekrit%2Fkey-7",
        ),
    ]);
    let mut server = world.start();

    // Auto-approved (on-call), activated, revoked by hand.
    let manual = server.request(
        DAVE,
        &Ask::new("db.read", "postgres:orders")
            .lasting("10m")
            .reason("traced"),
    );
    assert_eq!(manual["state"], "approved");
    let manual = manual["id"].as_str().unwrap().to_owned();
    server.activate(DAVE, &manual);
    let revoked = server.revoke(DAVE, &manual);
    assert_eq!(revoked["state"], "revoked", "{revoked:#}");

    // Auto-approved, activated, and revoked by the scheduler when it expires.
    let expiring = server.request(
        DAVE,
        &Ask::new("db.write", "postgres:orders")
            .lasting("2s")
            .reason("traced"),
    );
    let expiring = expiring["id"].as_str().unwrap().to_owned();
    server.activate(DAVE, &expiring);
    server.wait_for(DAVE, &expiring, Duration::from_secs(30), |v| {
        v["state"] == "revoked"
    });

    // The batch processor sends every 5 s by default; what it still holds is sent on shutdown.
    let status = server
        .terminate(Duration::from_secs(30))
        .expect("the server stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", server.log_text());

    let got = got.lock().unwrap();
    assert!(
        got.refused.is_empty(),
        "undecodable bodies: {:?}",
        got.refused
    );
    assert!(
        !got.posts.is_empty(),
        "no spans were sent:\n{}",
        server.log_text()
    );
    let mut spans = Vec::new();
    for (content_type, key, req) in &got.posts {
        assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
        assert_eq!(
            key.as_deref(),
            Some("sekrit/key-7"),
            "OTEL_EXPORTER_OTLP_HEADERS reaches the collector, decoded"
        );
        for rs in &req.resource_spans {
            let resource = rs.resource.as_ref().expect("a resource");
            assert_eq!(
                string(&resource.attributes, "service.name").as_deref(),
                Some("brevet-e2e")
            );
            spans.extend(rs.scope_spans.iter().flat_map(|s| s.spans.iter().cloned()));
        }
    }

    let manual_spans = names_for(&spans, &manual);
    for name in [
        "create_request",
        "activate",
        "provider_call",
        "revoke",
        "revocation",
    ] {
        assert!(
            manual_spans.contains(name),
            "no `{name}` span with grant_id {manual}; its spans: {manual_spans:?}"
        );
    }
    let expiring_spans = names_for(&spans, &expiring);
    for name in [
        "create_request",
        "activate",
        "scheduled",
        "revocation",
        "provider_call",
    ] {
        assert!(
            expiring_spans.contains(name),
            "no `{name}` span with grant_id {expiring}; its spans: {expiring_spans:?}"
        );
    }
    assert!(
        !expiring_spans.contains("revoke"),
        "expiry is not a manual revocation"
    );
    // Spans nest: the revocation's provider work is a child of the manual revoke, in its trace.
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == name && string(&s.attributes, "grant_id").as_deref() == Some(&manual)
            })
            .unwrap_or_else(|| panic!("no {name} span for {manual}"))
    };
    let (revoke, revocation) = (named("revoke"), named("revocation"));
    assert_eq!(revocation.parent_span_id, revoke.span_id);
    assert_eq!(revocation.trace_id, revoke.trace_id);
    // An API call's trace starts at its HTTP request (method and path, never the query).
    let created = named("create_request");
    let http = spans
        .iter()
        .find(|s| s.span_id == created.parent_span_id)
        .expect("the request's HTTP span");
    assert_eq!(http.name, "request");
    assert_eq!(string(&http.attributes, "method").as_deref(), Some("POST"));
    assert_eq!(
        string(&http.attributes, "path").as_deref(),
        Some("/v1/requests")
    );
    assert!(
        !spans
            .iter()
            .any(|s| string(&s.attributes, "path").as_deref() == Some("/v1/health")),
        "health checks are not traced"
    );

    // Headers carry collectors' keys: never in the log.
    let log = server.log_text();
    assert!(log.contains("exporting traces over OTLP/HTTP"), "{log}");
    assert!(!log.contains("sekrit"), "a header value was logged:\n{log}");
}

#[test]
fn a_malformed_endpoint_is_refused_naming_the_variable() {
    let world = World::new(StoreKind::Sqlite)
        .env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318")]);
    let out = world.refused_start(&world.config);
    let err = stderr(&out);
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && err.contains("http://"),
        "{err}"
    );
}
