//! `/metrics` through the real router after real work: an activation, a revocation that fails
//! (unreachable target) and is retried, a throttled call retried within its step, a webhook
//! delivery that fails. Each series is read back by name and labels and checked against what
//! happened; the Prometheus alert rules and the Grafana dashboard in `docs/monitoring/` may name
//! only metrics the server exposes; and, when `BREVET_TEST_PROMTOOL` names Prometheus's own
//! `promtool` (scripts/test provides it), the exposition is linted and the rules are checked by it.
//!
//! The recorder is process-wide (one per process, as in the server), so series here carry this
//! test's own provider name (`metered`) and counters are read as differences.

use std::{sync::Arc, time::Duration};

use axum::http::{Method, StatusCode};
use brevet_server::testing::{
    Fault, FaultyProvider, InMemoryProvider, Op, TestApp, TestConfig, TestStore,
};

use crate::world::*;

const METERED: &str = "metered:orders";

/// One sample's value: `name{labels…}` whose labels include every pair in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            (n == name).then_some((rest.trim_end_matches('}'), value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse().expect("a sample's value is a number"))
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
}

async fn scrape(app: &TestApp) -> String {
    let (status, text) = app.call(Method::GET, "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

/// Every `brevet_…` metric name a file mentions (histogram series folded to their metric).
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("brevet_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if !preceded {
            let n = &text[start..end];
            let n = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            names.insert(n.to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    for store in TestStore::available() {
        let target = Arc::new(InMemoryProvider::with_profiles(&["db.read"]));
        let faulty = Arc::new(FaultyProvider::new(target.clone(), 11));
        // A webhook nobody listens on: its deliveries fail and are retried.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
        drop(dead);
        let config = TestConfig::new(POLICY)
            .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
            .principal("admin", &[], &["admin"], ADMIN)
            .provider("metered", faulty.clone())
            .resource(METERED)
            .toml(&format!(
                "[[notify.webhooks]]\nname = \"siem\"\nurl = \"{dead_url}\"\nevents = [\"*\"]\nsecret = \"0123456789abcdef0123456789abcdef\"\n"
            ));
        let app = TestApp::start(config, store).await.unwrap();
        let before = scrape(&app).await;
        let calls = |t: &str, call: &str, outcome: &str| {
            sample(
                t,
                "brevet_provider_calls_total",
                &[
                    ("provider", "metered"),
                    ("call", call),
                    ("outcome", outcome),
                ],
            )
            .unwrap_or(0.0)
        };

        // An activation: one ensure, one credential, one histogram sample each.
        let r = app
            .create_request(DAVE, &ask("db.read", METERED, "10m", Some("incident")))
            .await
            .unwrap();
        app.activate(DAVE, &r.id).await.unwrap();
        let t = scrape(&app).await;
        assert_eq!(
            calls(&t, "ensure", "ok") - calls(&before, "ensure", "ok"),
            1.0,
            "{t}"
        );
        assert_eq!(
            calls(&t, "issue_credentials", "ok") - calls(&before, "issue_credentials", "ok"),
            1.0
        );
        let activations = |t: &str| {
            sample(
                t,
                "brevet_activation_seconds_count",
                &[("provider", "metered"), ("outcome", "active")],
            )
            .unwrap_or(0.0)
        };
        assert_eq!(activations(&t) - activations(&before), 1.0, "{t}");
        assert!(
            value(
                &t,
                "brevet_request_to_grant_seconds_count",
                &[("provider", "metered")]
            ) >= 1.0
        );
        assert_eq!(
            value(&t, "brevet_requests", &[("state", "active")]),
            1.0,
            "{t}"
        );
        let activate_calls = |t: &str| {
            sample(
                t,
                "brevet_http_requests_total",
                &[
                    ("method", "POST"),
                    ("route", "/v1/requests/{id}/activate"),
                    ("status", "200"),
                ],
            )
            .unwrap_or(0.0)
        };
        // Other tests in this process answer HTTP too: at least this one.
        assert!(activate_calls(&t) - activate_calls(&before) >= 1.0, "{t}");
        assert!(value(&t, "brevet_audit_append_seconds_count", &[]) >= 3.0);
        assert!(value(&t, "brevet_store_commit_seconds_count", &[]) >= 2.0);
        assert!(value(&t, "brevet_store_write_lock_wait_seconds_count", &[]) >= 1.0);

        // A revocation whose target cannot be reached: failed, pending, overdue.
        faulty.set_next(Op::Revoke, Fault::Unreachable, 1);
        let v = app.revoke(DAVE, &r.id, None).await.unwrap();
        assert_eq!(state(&v), "revoke_failed");
        let t = scrape(&app).await;
        assert_eq!(
            calls(&t, "revoke", "unreachable") - calls(&before, "revoke", "unreachable"),
            1.0
        );
        assert_eq!(value(&t, "brevet_revocations_overdue", &[]), 1.0, "{t}");
        assert_eq!(
            value(
                &t,
                "brevet_revocations_pending",
                &[("provider", "metered"), ("state", "revoke_failed")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "brevet_revocations_pending",
                &[("provider", "metered"), ("state", "revoking")]
            ),
            0.0
        );
        let revocations = |t: &str, outcome: &str| {
            sample(
                t,
                "brevet_revocations_total",
                &[("provider", "metered"), ("outcome", outcome)],
            )
            .unwrap_or(0.0)
        };
        assert_eq!(
            revocations(&t, "failed") - revocations(&before, "failed"),
            1.0
        );

        // The retry is throttled twice, then goes through: two retries within its step.
        faulty.set_next(Op::Revoke, Fault::Throttled, 2);
        let retries = |t: &str| {
            sample(
                t,
                "brevet_provider_call_retries_total",
                &[("provider", "metered"), ("call", "revoke")],
            )
            .unwrap_or(0.0)
        };
        let done = World::wait_for_on(&app, &r.id, Duration::from_secs(30)).await;
        assert_eq!(state(&done), "revoked");
        let t = scrape(&app).await;
        assert_eq!(retries(&t) - retries(&before), 2.0, "{t}");
        assert_eq!(
            revocations(&t, "revoked") - revocations(&before, "revoked"),
            1.0
        );
        assert_eq!(value(&t, "brevet_revocations_overdue", &[]), 0.0);
        assert_eq!(
            value(
                &t,
                "brevet_revocations_pending",
                &[("provider", "metered"), ("state", "revoke_failed")]
            ),
            0.0
        );
        assert_eq!(value(&t, "brevet_requests", &[("state", "revoked")]), 1.0);
        assert_eq!(
            value(&t, "brevet_scheduler_lag_seconds", &[]),
            0.0,
            "nothing is due"
        );

        // The webhook: queued from the audit log, attempted, failed, to be retried.
        app.outbox().dispatch().await.unwrap();
        let t = scrape(&app).await;
        let pending = value(&t, "brevet_deliveries", &[("state", "pending")]);
        assert!(pending >= 1.0, "{t}");
        app.outbox().work().await.unwrap();
        let t = scrape(&app).await;
        assert!(
            value(
                &t,
                "brevet_delivery_attempts_total",
                &[("subscriber", "webhook:siem"), ("outcome", "retry")]
            ) >= 1.0,
            "{t}"
        );
        assert_eq!(
            value(&t, "brevet_deliveries", &[("state", "delivered")]),
            0.0
        );

        // A grant that runs to its end: expiry → revocation start and → access removed.
        let short = app
            .create_request(DAVE, &ask("db.read", METERED, "2s", Some("quick look")))
            .await
            .unwrap();
        app.activate(DAVE, &short.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let ended = World::wait_for_on(&app, &short.id, Duration::from_secs(30)).await;
        assert_eq!(state(&ended), "revoked");
        let t = scrape(&app).await;
        assert!(
            value(
                &t,
                "brevet_expiry_to_revoked_seconds_count",
                &[("provider", "metered")]
            ) >= 1.0
        );
        assert!(
            value(
                &t,
                "brevet_revocation_start_delay_seconds_count",
                &[("provider", "metered")]
            ) >= 1.0
        );
        assert!(
            sample(&t, "brevet_lease_takeovers_total", &[]).is_some(),
            "present from the start"
        );

        // What operators are given to alert and chart on exists.
        let exposed = names_in(&t);
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/monitoring");
        for file in ["brevet-alerts.yml", "brevet-grafana-dashboard.json"] {
            let text = std::fs::read_to_string(docs.join(file)).unwrap();
            let named = names_in(&text);
            assert!(named.len() >= 8, "{file} names {named:?}");
            let missing: Vec<_> = named.difference(&exposed).collect();
            assert!(
                missing.is_empty(),
                "{file} names metrics /metrics does not expose: {missing:?}\n{t}"
            );
        }
        promtool(&["check", "metrics"], Some(&t));
    }
}

#[tokio::test]
async fn the_alert_rules_pass_promtool() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/monitoring/brevet-alerts.yml");
    promtool(&["check", "rules", rules.to_str().unwrap()], None);
}

/// Runs Prometheus's `promtool` (from `BREVET_TEST_PROMTOOL`) and fails on any complaint; without
/// it, says so (and fails under `CI`, where scripts/test provides it).
fn promtool(args: &[&str], stdin: Option<&str>) {
    let Some(bin) = std::env::var_os("BREVET_TEST_PROMTOOL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BREVET_TEST_PROMTOOL is not set under CI"
        );
        eprintln!("skipped promtool {args:?}: BREVET_TEST_PROMTOOL is not set");
        return;
    };
    use std::io::Write;
    let mut child = std::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    // `check metrics` exits 0 but prints lint findings; there must be none.
    if args.get(1) == Some(&"metrics") {
        assert!(
            said.trim().is_empty(),
            "promtool check metrics found problems:\n{said}"
        );
    }
}
