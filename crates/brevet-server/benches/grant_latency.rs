//! Load generator: auto-approved request → grant committed, through the real HTTP API, at a fixed
//! request rate, on the SQLite and the PostgreSQL store. The provider is stubbed (in memory) so the
//! numbers show Brevet's own cost: policy, store writes with their audit events, and HTTP.
//!
//! Open loop: operation i is due at `start + i / rate`, and its latency counts from that due time,
//! so a slow server cannot hide its queueing delay (no coordinated omission).
//!
//! `cargo bench -p brevet-server --bench grant_latency`; knobs: BENCH_RATE (ops/s, default 50),
//! BENCH_SECONDS (default 10), BENCH_USERS (default 2000), BENCH_MAX_IN_FLIGHT (default 64),
//! BENCH_MIX=1 for mixed load (below), BENCH_STORES (`sqlite,postgres` by default; PostgreSQL
//! runs when BREVET_TEST_PG_URL is set). Besides latency it prints the store commits per grant,
//! the durable writes (fsyncs on SQLite) they took with group commit, and the requests refused
//! with 503 when the offered rate is past capacity.
//!
//! Mixed load (`BENCH_MIX=1`): of every ten operations, four are grants (auto-approved request →
//! activate), two are requests that need an approval followed by another principal approving
//! them, two list the caller's requests (`GET /v1/requests?limit=20`), and two revoke an earlier
//! grant (a list when none is left). Latency is reported per kind.

mod support;

use std::time::{Duration, Instant};

use brevet_server::{
    api::{router, AppState},
    auth::TokenAuthenticator,
};

/// Principals the load rotates over (`BENCH_USERS`, default 2,000): each one's grants share a
/// binding, so fewer of them means more operations contending for one binding's lock.
fn users() -> usize {
    static USERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *USERS.get_or_init(|| {
        std::env::var("BENCH_USERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    })
}

async fn start(
    store_url: &str,
) -> (
    String,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<brevet_server::Broker>,
) {
    // Many principals, so overlapping-grant bookkeeping is realistic rather than one hot binding.
    let principals = support::principals(users());
    let auth = std::sync::Arc::new(TokenAuthenticator::new(&principals));
    let broker = support::broker(store_url, 1, principals).await;
    let anchor = std::sync::Arc::new(
        brevet_server::audit_anchor::AuditAnchor::open(
            &brevet_server::audit_anchor::AuditSettings {
                signing_key: brevet_server::audit_anchor::KeySource::Configured(
                    std::sync::Arc::new(brevet_audit::CheckpointKey::from_seed([7; 32])),
                ),
                checkpoint_file: std::env::temp_dir().join(format!(
                    "brevet-bench-{}.checkpoint.json",
                    uuid::Uuid::new_v4()
                )),
                checkpoint_every: std::time::Duration::from_secs(60),
            },
            broker.store().clone(),
            None,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AppState {
        broker: broker.clone(),
        auth,
        oidc: None,
        anchor,
        access: std::sync::Arc::new(
            brevet_server::access::AccessLanguage::load(
                &Default::default(),
                &Default::default(),
                std::path::Path::new("."),
            )
            .unwrap(),
        ),
        analyzer: std::sync::Arc::new(brevet_server::analyzer::Analyzer::new(Default::default())),
    });
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, handle, broker)
}

/// How one operation ended: granted, or refused at once because the server was at capacity
/// (503 with `Retry-After`, the graceful answer to overload), or failed.
enum Outcome {
    Granted,
    Refused,
}

/// A 503 counts as a fast refusal only when admission control said so (`overloaded`); any
/// other 503 (the store failing) is an error.
async fn refused(resp: reqwest::Response) -> Result<Outcome, String> {
    let body = resp.text().await.unwrap_or_default();
    if body.contains("\"overloaded\"") {
        Ok(Outcome::Refused)
    } else {
        Err(format!("503: {body}"))
    }
}

/// One POST or GET; `Ok(None)` when admission control refused it.
async fn call(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<Option<serde_json::Value>, String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return match refused(resp).await? {
            Outcome::Refused => Ok(None),
            Outcome::Granted => unreachable!("refused() only refuses"),
        };
    }
    if !resp.status().is_success() {
        let status = resp.status();
        return Err(format!(
            "{what}: {status} {}",
            resp.text().await.unwrap_or_default()
        ));
    }
    resp.json().await.map(Some).map_err(|e| e.to_string())
}

/// Creates a request as principal `user`; its id, or `None` if refused.
async fn create(
    http: &reqwest::Client,
    url: &str,
    user: usize,
    profile: &str,
) -> Result<Option<String>, String> {
    let created = call(
        http.post(format!("{url}/v1/requests"))
            .bearer_auth(format!("token-{user}"))
            .json(&serde_json::json!({"profile": profile, "resource": "mem:db0", "duration": "30m", "reason": "bench"})),
        "request",
    )
    .await?;
    created
        .map(|c| {
            c["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no id: {c}"))
        })
        .transpose()
}

/// Request → activate; the grant's id when granted.
async fn grant(
    http: &reqwest::Client,
    url: &str,
    user: usize,
) -> Result<(Outcome, Option<String>), String> {
    let Some(id) = create(http, url, user, "db.read").await? else {
        return Ok((Outcome::Refused, None));
    };
    let activated = call(
        http.post(format!("{url}/v1/requests/{id}/activate"))
            .bearer_auth(format!("token-{user}")),
        "activate",
    )
    .await?;
    Ok(match activated {
        Some(_) => (Outcome::Granted, Some(id)),
        None => (Outcome::Refused, None),
    })
}

async fn one(http: &reqwest::Client, url: &str, i: usize) -> Result<Outcome, String> {
    grant(http, url, i % users()).await.map(|(o, _)| o)
}

/// What one operation of the mixed load was.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Grant,
    Approval,
    List,
    Revoke,
}

const MIX: [Kind; 10] = [
    Kind::Grant,
    Kind::Approval,
    Kind::List,
    Kind::Grant,
    Kind::Revoke,
    Kind::Grant,
    Kind::Approval,
    Kind::List,
    Kind::Grant,
    Kind::Revoke,
];

type Granted = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(String, usize)>>>;

/// One operation of the mixed load.
async fn mixed(
    http: &reqwest::Client,
    url: &str,
    i: usize,
    granted: &Granted,
) -> Result<(Kind, Outcome), String> {
    let user = i % users();
    let token = format!("token-{user}");
    let kind = MIX[i % MIX.len()];
    let ok = |r: Option<serde_json::Value>| {
        if r.is_some() {
            Outcome::Granted
        } else {
            Outcome::Refused
        }
    };
    let oldest = match kind {
        Kind::Revoke => granted.lock().unwrap().pop_front(),
        _ => None,
    };
    match (kind, oldest) {
        (Kind::Grant, _) => {
            let (outcome, id) = grant(http, url, user).await?;
            if let Some(id) = id {
                granted.lock().unwrap().push_back((id, user));
            }
            Ok((kind, outcome))
        }
        (Kind::Approval, _) => {
            let Some(id) = create(http, url, user, "db.write").await? else {
                return Ok((kind, Outcome::Refused));
            };
            let approver = (user + 1) % users();
            let approved = call(
                http.post(format!("{url}/v1/requests/{id}/approve"))
                    .bearer_auth(format!("token-{approver}"))
                    .json(&serde_json::json!({"comment": "bench"})),
                "approve",
            )
            .await?;
            Ok((kind, ok(approved)))
        }
        (Kind::Revoke, Some((id, owner))) => {
            let revoked = call(
                http.post(format!("{url}/v1/grants/{id}/revoke"))
                    .bearer_auth(format!("token-{owner}"))
                    .json(&serde_json::json!({"reason": "bench"})),
                "revoke",
            )
            .await?;
            Ok((kind, ok(revoked)))
        }
        (Kind::List | Kind::Revoke, _) => {
            let listed = call(
                http.get(format!("{url}/v1/requests?limit=20"))
                    .bearer_auth(&token),
                "list",
            )
            .await?;
            Ok((Kind::List, ok(listed)))
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(label: &str, store_url: &str, rate: f64, seconds: f64, mix: bool) {
    if mix {
        return run_mixed(label, store_url, rate, seconds).await;
    }
    let (url, server, broker) = start(store_url).await;
    let http = reqwest::Client::new();
    // Warm up connections and caches.
    for i in 0..20 {
        if let Err(e) = one(&http, &url, i).await {
            panic!("warm-up failed: {e}");
        }
    }
    let total = (rate * seconds) as usize;
    let commits_before = broker.store().commits();
    let flushes_before = broker.store().flushes();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            one(&http, &url, i + 20)
                .await
                .map(|outcome| (outcome, due.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut refused = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((Outcome::Granted, d)) => latencies.push(d),
            Ok((Outcome::Refused, d)) => refused.push(d),
            Err(e) => {
                errors += 1;
                if errors < 3 {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let wall = start.elapsed();
    let commits = broker.store().commits() - commits_before;
    let flushes = broker.store().flushes() - flushes_before;
    latencies.sort();
    refused.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<10} rate {rate:>5.0}/s  granted {:>5}  errors {errors}  goodput {:>6.1}/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  commits/grant {:.2}  fsyncs/grant {:.2}",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        ms(pct(&latencies, 0.50)),
        ms(pct(&latencies, 0.90)),
        ms(pct(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        commits as f64 / latencies.len().max(1) as f64,
        flushes as f64 / latencies.len().max(1) as f64,
    );
    if !refused.is_empty() {
        println!(
            "{:<10} refused (503, Retry-After) {:>5}  p50 {:>7.2} ms  p99 {:>7.2} ms",
            "",
            refused.len(),
            ms(pct(&refused, 0.50)),
            ms(pct(&refused, 0.99)),
        );
    }
    server.abort();
}

/// The mixed load: [`MIX`] at `rate` operations per second, latency per kind.
async fn run_mixed(label: &str, store_url: &str, rate: f64, seconds: f64) {
    let (url, server, broker) = start(store_url).await;
    let http = reqwest::Client::new();
    let granted = Granted::default();
    for i in 0..20 {
        if let Err(e) = mixed(&http, &url, i, &granted).await {
            panic!("warm-up failed: {e}");
        }
    }
    let total = (rate * seconds) as usize;
    let (commits_before, flushes_before) = (broker.store().commits(), broker.store().flushes());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (http, url, granted) = (http.clone(), url.clone(), granted.clone());
        tasks.push(tokio::spawn(async move {
            mixed(&http, &url, i + 20, &granted)
                .await
                .map(|done| (done, due.elapsed()))
        }));
    }
    let mut by_kind: std::collections::BTreeMap<Kind, (Vec<Duration>, usize)> = Default::default();
    let (mut errors, mut done) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(((kind, Outcome::Granted), d)) => {
                by_kind.entry(kind).or_default().0.push(d);
                done += 1;
            }
            Ok(((kind, Outcome::Refused), _)) => by_kind.entry(kind).or_default().1 += 1,
            Err(e) => {
                errors += 1;
                if errors < 3 {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let wall = start.elapsed();
    let commits = broker.store().commits() - commits_before;
    let flushes = broker.store().flushes() - flushes_before;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<10} mixed {rate:>5.0}/s  done {done:>5}  errors {errors}  goodput {:>6.1}/s  commits/op {:.2}  fsyncs/op {:.2}",
        done as f64 / wall.as_secs_f64(),
        commits as f64 / done.max(1) as f64,
        flushes as f64 / done.max(1) as f64,
    );
    for (kind, (mut lat, refused)) in by_kind {
        lat.sort();
        if lat.is_empty() {
            println!("{:<10}   {kind:?}: none done, {refused} refused", "");
            continue;
        }
        println!(
            "{:<10}   {:<9} {:>5} done  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  refused {refused}",
            "",
            format!("{kind:?}"),
            lat.len(),
            ms(pct(&lat, 0.50)),
            ms(pct(&lat, 0.90)),
            ms(pct(&lat, 0.99)),
            ms(*lat.last().unwrap()),
        );
    }
    server.abort();
}

fn main() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rate, seconds) = (env("BENCH_RATE", 50.0), env("BENCH_SECONDS", 10.0));
    let mix = std::env::var("BENCH_MIX").is_ok_and(|v| v == "1");
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        if stores.contains("sqlite") {
            run(
                "sqlite",
                &format!("sqlite://{}", dir.path().join("bench.db").display()),
                rate,
                seconds,
                mix,
            )
            .await;
        }
        if !stores.contains("postgres") {
        } else if std::env::var("BREVET_TEST_PG_URL").is_ok() {
            let db = brevet_testkit::TestDb::create("brevet_bench");
            run("postgres", &db.url, rate, seconds, mix).await;
        } else {
            println!("postgres   skipped: set BREVET_TEST_PG_URL to a PostgreSQL superuser URL");
        }
    });
}
