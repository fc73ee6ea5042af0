//! A provider's revocation rate limit (`[providers.NAME] revoke_rate`, `revoke_burst`; issue #15
//! item 7): the background scheduler revokes expired grants on a limited provider no faster than
//! its rate allows (counted from when the provider saw each revoke call), another provider's
//! expiries are not held up behind the limited one's backlog, and the kill switch is not
//! throttled. The config errors are unit tests beside the parser (brevet-config `rate.rs`,
//! brevet-server `config.rs`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use brevet_core::RequestState;
use brevet_server::testing::{
    Fault, FaultyProvider, InMemoryProvider, Op, TestApp, TestConfig, TestStore,
};
use brevet_wire::KillBody;

use crate::world::*;

fn recorded() -> Arc<FaultyProvider> {
    // No fault is ever set: the wrapper only records when each call started.
    Arc::new(FaultyProvider::new(
        Arc::new(InMemoryProvider::with_profiles(&["db.read"])),
        7,
    ))
}

/// The most calls among `calls` (sorted) that start within any `window`.
fn most_in_window(calls: &[Instant], window: Duration) -> usize {
    calls
        .iter()
        .enumerate()
        .map(|(i, start)| {
            calls[i..]
                .iter()
                .take_while(|t| **t < *start + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Grants of one second on `resources`, activated one after another.
async fn grants_on(app: &TestApp, resources: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for r in resources {
        let v = app
            .create_request(DAVE, &ask("db.read", r, "1s", Some("rate")))
            .await
            .unwrap();
        app.activate(DAVE, &v.id).await.unwrap();
        ids.push(v.id);
    }
    ids
}

async fn wait_all_revoked(app: &TestApp, ids: &[String], within: Duration) {
    let started = Instant::now();
    loop {
        let list = app.grants(ADMIN, true).await.unwrap();
        let left: Vec<_> = list
            .iter()
            .filter(|g| ids.contains(&g.id) && g.state != RequestState::Revoked)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < within,
            "not revoked within {within:?}: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the scheduler's background tasks and waits for each to end.
async fn stop_background(
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
) {
    stop.send(true).unwrap();
    for (name, task) in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("the {name} task stops when told"))
            .unwrap();
    }
}

const RATE: f64 = 10.0;
const BURST: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_provider_is_revoked_at_its_rate_and_holds_up_no_other() {
    for store in TestStore::available() {
        eprintln!("-- store: {store:?}");
        let (slow, fast) = (recorded(), recorded());
        let slow_resources: Vec<String> = (0..30).map(|i| format!("slow:r{i:02}")).collect();
        let fast_resources: Vec<String> = (0..10).map(|i| format!("fast:r{i:02}")).collect();
        let mut config = TestConfig::new(POLICY)
            .server("tick = \"100ms\"")
            .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
            .principal("admin", &[], &["admin"], ADMIN)
            .provider("slow", slow.clone())
            .provider_settings(
                "slow",
                &format!("revoke_rate = {RATE}\nrevoke_burst = {BURST}"),
            )
            .provider("fast", fast.clone());
        for r in slow_resources.iter().chain(&fast_resources) {
            config = config.resource(r);
        }
        let app = TestApp::start(config, store).await.unwrap();
        // The limited provider's grants first, so its backlog is the oldest due work.
        let mut ids = grants_on(&app, &slow_resources).await;
        ids.extend(grants_on(&app, &fast_resources).await);

        // All 40 due before the scheduler starts: 30 on the limited provider at once, however
        // long the activations took.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let tasks = app.broker().spawn_background(stopped);
        wait_all_revoked(&app, &ids, Duration::from_secs(30)).await;
        stop_background(stop, tasks).await;

        let slow_calls = slow.call_times(Op::Revoke);
        let fast_calls = fast.call_times(Op::Revoke);
        assert_eq!(slow_calls.len(), slow_resources.len(), "one revoke each");
        assert_eq!(fast_calls.len(), fast_resources.len(), "one revoke each");
        // In any second: at most a burst plus a second's worth, with one call of slack for
        // where the window falls. Unlimited, all 30 went in a fraction of a second.
        let most = most_in_window(&slow_calls, Duration::from_secs(1));
        assert!(
            most <= BURST + RATE as usize + 1,
            "{most} revocations of the limited provider started within one second"
        );
        // And not slower than its rate allows by much: after the burst, one every 100 ms.
        let span = *slow_calls.last().unwrap() - slow_calls[0];
        let ideal = Duration::from_secs_f64((slow_calls.len() - BURST) as f64 / RATE);
        assert!(
            span >= ideal.mul_f64(0.8),
            "{} revocations took {span:?}: faster than {RATE}/s after a burst of {BURST}",
            slow_calls.len()
        );
        assert!(
            span <= ideal * 3,
            "{} revocations took {span:?}, far slower than {RATE}/s",
            slow_calls.len()
        );
        // The other provider's grants, due together with the limited one's, were revoked at once
        // (a pass starts every 100 ms): none waited behind the limited provider's backlog, whose
        // last revocation started seconds later.
        let slow_last = *slow_calls.last().unwrap() - started;
        assert!(
            slow_last > Duration::from_secs(2),
            "the limited provider's last revocation started {slow_last:?} after the scheduler"
        );
        for t in &fast_calls {
            assert!(
                *t - started < Duration::from_secs(1),
                "an unlimited provider's revocation started {:?} after the scheduler, behind the limited provider's backlog",
                *t - started
            );
        }
    }
}

/// The kill switch is an emergency: a provider's revocation rate limit does not hold it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_is_not_throttled() {
    for store in TestStore::available() {
        eprintln!("-- store: {store:?}");
        let slow = recorded();
        let resources: Vec<String> = (0..6).map(|i| format!("slow:r{i}")).collect();
        let mut config = TestConfig::new(POLICY)
            .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
            .principal("admin", &[], &["admin"], ADMIN)
            .provider("slow", slow.clone())
            .provider_settings("slow", "revoke_rate = 0.2\nrevoke_burst = 1");
        for r in &resources {
            config = config.resource(r);
        }
        let app = TestApp::start(config, store).await.unwrap();
        for r in &resources {
            let v = app
                .create_request(DAVE, &ask("db.read", r, "10m", Some("kill")))
                .await
                .unwrap();
            app.activate(DAVE, &v.id).await.unwrap();
        }
        let report = app
            .kill(
                ADMIN,
                &KillBody {
                    principal: Some("dave".into()),
                    all: false,
                    reason: "incident".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(report.revoked, resources.len(), "{report:#?}");
        let calls = slow.call_times(Op::Revoke);
        assert_eq!(calls.len(), resources.len());
        // Throttled, the last would have started 25 s after the first (one every 5 s).
        let span = *calls.last().unwrap() - calls[0];
        assert!(
            span < Duration::from_secs(5),
            "the kill switch waited {span:?}"
        );
    }
}

/// A grant that expires while the scheduler is busy with another one's slow revocation is
/// revoked as soon as that pass ends, not a tick later: the pass asks what falls due next as of
/// when it claimed its work. (It asked as of when it finished, which skipped whatever fell due
/// in between until the next tick: the one-second maximum start lags of the 100,000-grant
/// benchmark.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_expiring_during_a_slow_revocation_is_not_left_for_a_tick() {
    for store in TestStore::available() {
        eprintln!("-- store: {store:?}");
        let provider = recorded();
        provider.set(Op::Revoke, Fault::Slow(Duration::from_millis(800)), 1.0);
        let config = TestConfig::new(POLICY)
            // A tick far longer than the wait allowed below.
            .server("tick = \"10s\"")
            .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
            .principal("admin", &[], &["admin"], ADMIN)
            .provider("db", provider.clone())
            .resource("db:first")
            .resource("db:second");
        let app = TestApp::start(config, store).await.unwrap();
        let first = grants_on(&app, &["db:first".to_owned()]).await;
        // The second expires while the first's revocation (800 ms) is under way.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = grants_on(&app, &["db:second".to_owned()]).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = app.broker().spawn_background(stopped);
        let ids = [first, second].concat();
        wait_all_revoked(&app, &ids, Duration::from_secs(15)).await;
        stop_background(stop, tasks).await;
        let calls = provider.call_times(Op::Revoke);
        assert_eq!(calls.len(), 2, "one revoke each");
        // The second fell due about 300 ms after the first; its revocation starts when the
        // first's pass ends (about 800 ms after the first), not 10 s later.
        let gap = calls[1] - calls[0];
        assert!(
            gap < Duration::from_secs(3),
            "the second revocation started {gap:?} after the first: it waited for the tick"
        );
    }
}
