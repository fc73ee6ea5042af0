//! Provider faults at scale (issue #15 item 2): many grants end at once — most expire, some are
//! revoked through the API — while 30 % of every provider call fails (unreachable, refused,
//! throttled, bad input), times out, or hangs. Nothing may be missed: every grant ends revoked
//! and verified, the target holds nothing, each grant is confirmed within the retry bound of its
//! last fault, and while revocations are failing they are visible, consistently, in `/metrics`
//! and in the grants list `brevet grants` shows.
//!
//! `BREVET_FAULTS_GRANTS` (default 200) and `BREVET_FAULTS_SEED` make a longer or different run;
//! docs/reliability.md has the figures.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::Method;
use brevet_core::RequestState;
use brevet_server::testing::{
    Fault, FaultyProvider, InMemoryProvider, Op, TestApp, TestConfig, TestStore,
};
use brevet_wire::RequestView;
use chrono::{DateTime, Utc};

use crate::world::*;

const PROVIDER_TIMEOUT: Duration = Duration::from_millis(300);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long the test sleeps between scheduler passes (the harness has no background scheduler);
/// looking at `/metrics` and the list adds to it, so the bounds use the longest gap measured.
const TICK: Duration = Duration::from_millis(50);
const FAULT_RATE: f64 = 0.3;

const OPS: [Op; 7] = [
    Op::Ensure,
    Op::Issue,
    Op::Revoke,
    Op::Verify,
    Op::ListOwned,
    Op::RemoveOwned,
    Op::TerminateSessions,
];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// How many due requests one scheduler pass claims and works on at once (the scheduler's batch).
const BATCH: usize = 64;
/// What one scheduler pass may take: its claimed work runs at once, each piece's provider calls
/// (binding lock, revoke, verify) bounded by the provider timeout; plus its store writes, for
/// which a loaded test machine gets a generous allowance. A pass beyond this waited on
/// something the provider timeout does not bound.
const PASS_BOUND: Duration = Duration::from_millis(3 * 300 + 2000);

/// The retry bound, with scheduler passes of at most `pass` every `gap` (`server.tick` in a
/// server): the faulted call ends at most a provider timeout after its fault was injected; the
/// failure waits at most the longest backoff; then a pass may be running, and the grant waits
/// behind at most the rest of the `due_at_once` grants due with it (a batch per pass) before
/// its own pass confirms it.
fn retry_bound(pass: Duration, gap: Duration, due_at_once: usize) -> Duration {
    let longest_backoff = RETRY_MAX.mul_f64(1.2);
    PROVIDER_TIMEOUT + longest_backoff + drain_bound(pass, gap, due_at_once)
}

/// From becoming due to confirmed, for a grant that saw no fault meanwhile: a pass may be
/// running, then it waits behind at most the backlog of grants due with it, then its own pass.
fn drain_bound(pass: Duration, gap: Duration, due_at_once: usize) -> Duration {
    (pass + gap) * (due_at_once.div_ceil(BATCH) as u32 + 1)
}

/// The two gauges of `/metrics` this suite reads: revocations that failed and are being
/// retried, and the requests in state `revoke_failed`.
async fn metrics(app: &TestApp) -> (i64, i64) {
    let (status, text) = app.call(Method::GET, "/metrics", None, "").await;
    assert!(status.is_success(), "/metrics answered {status}: {text}");
    let value = |name: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in /metrics:\n{text}"))
    };
    (
        value("brevet_revocations_overdue "),
        value("brevet_requests{state=\"revoke_failed\"} "),
    )
}

/// What one look at `/metrics` and the grants list found, checked for consistency.
async fn look(app: &TestApp, grants: usize) -> usize {
    let (overdue, failed_gauge) = metrics(app).await;
    let list = app.grants(ADMIN, true).await.unwrap();
    assert_eq!(list.len(), grants, "every grant is listed, ended or not");
    let failed: Vec<&RequestView> = list
        .iter()
        .filter(|g| g.state == RequestState::RevokeFailed)
        .collect();
    assert_eq!(
        failed_gauge,
        failed.len() as i64,
        "brevet_requests{{state=\"revoke_failed\"}} counts the failing grants the list shows"
    );
    assert_eq!(
        overdue,
        failed.len() as i64,
        "brevet_revocations_overdue counts the failing grants the list shows"
    );
    for g in &failed {
        let error = g.last_error.as_deref().unwrap_or_default();
        assert!(
            g.attempts >= 1 && g.next_attempt_at.is_some(),
            "a failing revocation shows its attempts and next attempt: {g:#?}"
        );
        assert!(
            error.contains("injected fault") || error.contains("did not answer"),
            "a failing revocation shows why: {error}"
        );
    }
    failed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_revocation_is_missed_when_30_percent_of_provider_calls_fail_time_out_or_hang() {
    let grants = env_or("BREVET_FAULTS_GRANTS", 200) as usize;
    let seed = env_or("BREVET_FAULTS_SEED", 15_002);
    for store in TestStore::available() {
        run(store, grants, seed).await;
    }
}

async fn run(store: TestStore, grants: usize, seed: u64) {
    let started = Instant::now();
    let target = Arc::new(InMemoryProvider::with_profiles(&["db.read"]));
    let faulty = Arc::new(FaultyProvider::new(target.clone(), seed));
    let mut config = TestConfig::new(POLICY)
        .server(&format!(
            "provider_timeout = \"{}ms\"\nlease = \"{}ms\"\nrevoke_retry_max = \"{}ms\"\nrequests_per_minute = 100000",
            PROVIDER_TIMEOUT.as_millis(),
            PROVIDER_TIMEOUT.as_millis() * 3,
            RETRY_MAX.as_millis()
        ))
        .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
        .principal("admin", &[], &["admin"], ADMIN)
        .provider("mem", faulty.clone());
    // One resource per grant, so each grant is a binding of its own.
    let resources: Vec<String> = (0..grants).map(|i| format!("mem:r{i:05}")).collect();
    for r in &resources {
        config = config.resource(r);
    }
    let app = TestApp::start(config, store).await.unwrap();

    // A quarter are revoked through the API, the rest expire: all at once, as far as the
    // scheduler can tell, since it runs only when this test says.
    let revoked_by_hand = grants / 4;
    let mut ids = Vec::with_capacity(grants);
    for (i, r) in resources.iter().enumerate() {
        let duration = if i < revoked_by_hand { "10m" } else { "1s" };
        let v = app
            .create_request(DAVE, &ask("db.read", r, duration, Some("load")))
            .await
            .unwrap();
        app.activate(DAVE, &v.id).await.unwrap();
        ids.push(v.id);
    }
    assert_eq!(target.target().lock().unwrap().len(), grants);
    let activated = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let faults = [
        Fault::Unreachable,
        Fault::Refused,
        Fault::Throttled,
        Fault::BadInput,
        Fault::Slow(PROVIDER_TIMEOUT * 2),
        Fault::Hang,
    ];
    for op in OPS {
        faulty.set_mix(op, &faults, FAULT_RATE);
    }
    let mut due: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for id in &ids[..revoked_by_hand] {
        due.insert(id.clone(), Utc::now());
        let v = app.revoke(DAVE, id, Some("done")).await.unwrap();
        assert!(
            matches!(v.state, RequestState::Revoked | RequestState::RevokeFailed),
            "{v:#?}"
        );
    }

    // Scheduler passes until every grant is revoked, looking at /metrics and the list between
    // passes (nothing changes while the test looks).
    let limit =
        Duration::from_secs(60) + drain_bound(PASS_BOUND, Duration::from_secs(1), grants) * 3;
    let scheduler_started = Utc::now();
    let drain = Instant::now();
    let (mut looks, mut most_failing, mut looks_with_failures) = (0, 0, 0);
    let (mut passes, mut longest_pass, mut longest_gap) = (0, Duration::ZERO, Duration::ZERO);
    let mut last_pass_end = Instant::now();
    loop {
        let failing = look(&app, grants).await;
        looks += 1;
        most_failing = most_failing.max(failing);
        looks_with_failures += usize::from(failing > 0);
        let list = app.grants(ADMIN, true).await.unwrap();
        if list.iter().all(|g| g.state == RequestState::Revoked) {
            break;
        }
        assert!(
            drain.elapsed() < limit,
            "not every grant was revoked within {limit:?}: {:#?}",
            list.iter()
                .filter(|g| g.state != RequestState::Revoked)
                .collect::<Vec<_>>()
        );
        let pass = Instant::now();
        if passes > 0 {
            longest_gap = longest_gap.max(pass - last_pass_end);
        }
        app.tick().await.expect("a scheduler pass");
        passes += 1;
        longest_pass = longest_pass.max(pass.elapsed());
        last_pass_end = Instant::now();
        tokio::time::sleep(TICK).await;
    }
    let drained = drain.elapsed();
    faulty.clear_all();

    // Nothing missed: every grant revoked exactly once and verified, the target empty.
    assert!(
        target.target().lock().unwrap().is_empty(),
        "the target still holds: {:?}",
        target.target().lock().unwrap().keys().collect::<Vec<_>>()
    );
    let events = app.audit_export(ADMIN).await.unwrap();
    let revoked_events = events.iter().filter(|e| e.kind == "grant_revoked").count();
    // The provider calls revocations made, as their audit events record them, and how many
    // did not answer "ok" (an in-step retry of a throttled call is a call of its own).
    let (mut calls, mut failed_calls) = (0usize, 0usize);
    for e in events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "grant_revoked" | "revocation_failed"))
    {
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        for c in data["provider_calls"].as_array().into_iter().flatten() {
            calls += 1;
            failed_calls += usize::from(c["outcome"] != "ok");
        }
    }
    assert_eq!(revoked_events, grants, "one grant_revoked event per grant");
    assert!(app.audit_verify(ADMIN).await.unwrap().ok);
    assert!(
        looks_with_failures > 0,
        "failing revocations were seen in /metrics and the list"
    );

    // Each grant confirmed within the retry bound of its last fault, or, if it saw none after it
    // became due, behind at most the backlog due with it (measured from the first scheduler
    // pass at the earliest: the revocations through the API ran before it).
    let (bound, backlog_bound) = (
        retry_bound(longest_pass, longest_gap, grants),
        drain_bound(longest_pass, longest_gap, grants),
    );
    let mut after_fault = (Duration::ZERO, String::new(), None);
    let mut unfaulted = (Duration::ZERO, String::new());
    let mut attempts_max = 0;
    for g in app.grants(ADMIN, true).await.unwrap() {
        let expiry = g.expires_at.expect("a grant has an expiry");
        let became_due = due
            .get(&g.id)
            .copied()
            .unwrap_or_else(|| expiry.max(scheduler_started));
        let key = format!("{}|{}|{}", g.requester, g.resource, g.profile);
        let last = faulty
            .last_fault_on(&key)
            .filter(|(at, _)| *at >= became_due);
        let last_fault = last.map(|(at, _)| at);
        let revoked_at = g.revoked_at.expect("a revoked grant says when");
        attempts_max = attempts_max.max(g.attempts);
        // Nothing was retried before the test started running scheduler passes.
        let from = last_fault.unwrap_or(became_due).max(scheduler_started);
        let overdue = (revoked_at - from).to_std().unwrap_or_default();
        match last {
            Some(fault) if overdue > after_fault.0 => {
                after_fault = (overdue, g.id.clone(), Some(fault))
            }
            None if overdue > unfaulted.0 => unfaulted = (overdue, g.id.clone()),
            _ => {}
        }
    }
    let faulted = faulty.faulted_by_kind();
    let total: u64 = faulted.values().sum();
    eprintln!(
        "provider faults on {store:?}: {grants} grants ({revoked_by_hand} revoked through the API, {} expired), \
         seed {seed}; faults injected: {total} {faulted:?}; provider calls in revocations: {calls}, \
         {failed_calls} failed or timed out ({:.0} %); most failing at once: {most_failing} \
         (seen in {looks_with_failures} of {looks} looks); most attempts on one grant: {attempts_max}; \
         worst time from last fault to confirmed revocation: {:?} (bound {bound:?}); \
         worst from due to confirmed for grants without a fault since: {:?} (bound {backlog_bound:?}); \
         {passes} scheduler passes, longest {longest_pass:?} (bound {PASS_BOUND:?}), longest gap between passes {longest_gap:?}; \
         activation {activated:?}, drain {drained:?}, total {:?}",
        grants - revoked_by_hand,
        100.0 * failed_calls as f64 / calls.max(1) as f64,
        after_fault.0,
        unfaulted.0,
        started.elapsed()
    );
    assert!(total > 0, "faults were injected");
    assert!(
        longest_pass <= PASS_BOUND,
        "a scheduler pass took {longest_pass:?}, beyond {PASS_BOUND:?}"
    );
    let history = |id: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.request_id.as_deref() == Some(id))
            .map(|e| format!("{} {} {}", e.at, e.kind, e.data))
            .collect()
    };
    assert!(
        after_fault.0 <= bound,
        "grant {} was confirmed {:?} after its last fault, beyond the retry bound {bound:?}; \
         its last fault: {:?}; its history: {:#?}",
        after_fault.1,
        after_fault.0,
        after_fault.2,
        history(&after_fault.1)
    );
    assert!(
        unfaulted.0 <= backlog_bound,
        "grant {} was confirmed {:?} after it became due, beyond {backlog_bound:?}",
        unfaulted.1,
        unfaulted.0
    );
}

/// A hung provider call held up every other piece of due work: on dc068d3 a scheduler pass
/// worked its claimed requests one after another, so one revocation hanging until the provider
/// timeout delayed every grant behind it by that timeout — 64 claimed, a handful hanging, and
/// the last ones started after their lease had run out and long past the retry bound. Grant A
/// (on target `hung`) expires first, so it is claimed first, and its revocation hangs; B (on
/// another target), due in the same pass, is revoked before A's call times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_revocation_holds_up_no_other_grant() {
    for store in TestStore::available() {
        let hung = Arc::new(FaultyProvider::new(
            Arc::new(InMemoryProvider::with_profiles(&["db.read"])),
            1,
        ));
        let config = TestConfig::new(POLICY)
            .server("provider_timeout = \"5s\"\nlease = \"15s\"")
            .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
            .principal("admin", &[], &["admin"], ADMIN)
            .provider("hung", hung.clone())
            .provider(
                "mem",
                Arc::new(InMemoryProvider::with_profiles(&["db.read"])),
            )
            .resource("hung:a")
            .resource("mem:b");
        let app = TestApp::start(config, store).await.unwrap();
        let mut ids = Vec::new();
        for (resource, lasting) in [("hung:a", "1s"), ("mem:b", "2s")] {
            let v = app
                .create_request(DAVE, &ask("db.read", resource, lasting, Some("x")))
                .await
                .unwrap();
            app.activate(DAVE, &v.id).await.unwrap();
            ids.push(v.id);
        }
        tokio::time::sleep(Duration::from_millis(2100)).await;
        hung.set(Op::Revoke, Fault::Hang, 1.0);
        assert_eq!(app.tick().await.unwrap(), 2, "both due in one pass");
        let a = app.show(ADMIN, &ids[0]).await.unwrap();
        let b = app.show(ADMIN, &ids[1]).await.unwrap();
        assert_eq!(a.state, RequestState::RevokeFailed, "{a:#?}");
        assert!(a.last_error.unwrap().contains("did not answer"));
        assert_eq!(b.state, RequestState::Revoked, "{b:#?}");
        let events = app.audit_export(ADMIN).await.unwrap();
        let a_failed = events
            .iter()
            .find(|e| e.kind == "revocation_failed" && e.request_id.as_deref() == Some(&*ids[0]))
            .expect("A's failure is audited");
        let a_failed_at: DateTime<Utc> = a_failed.at.parse().unwrap();
        assert!(
            b.revoked_at.unwrap() < a_failed_at,
            "B was revoked only after A's hung call timed out ({:?} vs {:?})",
            b.revoked_at,
            a_failed.at
        );
        assert_eq!(hung.faulted(Op::Revoke), 1);
    }
}
