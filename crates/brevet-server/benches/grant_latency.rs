//! Load generator: auto-approved request → grant committed, through the real HTTP API, at a fixed
//! request rate, on the SQLite and the PostgreSQL store. The provider is stubbed (in memory) so the
//! numbers show Brevet's own cost: policy, store writes with their audit events, and HTTP.
//!
//! Open loop: operation i is due at `start + i / rate`, and its latency counts from that due time,
//! so a slow server cannot hide its queueing delay (no coordinated omission).
//!
//! `cargo bench -p brevet-server --bench grant_latency`; knobs: BENCH_RATE (ops/s, default 50),
//! BENCH_SECONDS (default 10), BENCH_USERS (default 2000), BENCH_MAX_IN_FLIGHT (default 64);
//! PostgreSQL runs when BREVET_TEST_PG_URL is set. Besides latency it prints the store commits
//! per grant, and the requests refused with 503 when the offered rate is past capacity.

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

async fn one(http: &reqwest::Client, url: &str, i: usize) -> Result<Outcome, String> {
    let token = format!("token-{}", i % users());
    let resp = http
        .post(format!("{url}/v1/requests"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "db.read", "resource": "mem:db0", "duration": "30m", "reason": "bench"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return refused(resp).await;
    }
    let created: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| format!("no id: {created}"))?;
    let r = http
        .post(format!("{url}/v1/requests/{id}/activate"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return refused(r).await;
    }
    if !r.status().is_success() {
        return Err(format!("activate: {}", r.text().await.unwrap_or_default()));
    }
    Ok(Outcome::Granted)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(label: &str, store_url: &str, rate: f64, seconds: f64) {
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
    latencies.sort();
    refused.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<10} rate {rate:>5.0}/s  granted {:>5}  errors {errors}  goodput {:>6.1}/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  commits/grant {:.2}",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        ms(pct(&latencies, 0.50)),
        ms(pct(&latencies, 0.90)),
        ms(pct(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        commits as f64 / latencies.len().max(1) as f64,
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

fn main() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rate, seconds) = (env("BENCH_RATE", 50.0), env("BENCH_SECONDS", 10.0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        run(
            "sqlite",
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
            rate,
            seconds,
        )
        .await;
        if std::env::var("BREVET_TEST_PG_URL").is_ok() {
            let db = brevet_testkit::TestDb::create("brevet_bench");
            run("postgres", &db.url, rate, seconds).await;
        } else {
            println!("postgres   skipped: set BREVET_TEST_PG_URL to a PostgreSQL superuser URL");
        }
    });
}
