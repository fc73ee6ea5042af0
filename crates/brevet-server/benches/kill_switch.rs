//! Kill-switch wall time for one principal holding N active grants (N = 1, 10, 100), each on its
//! own resource, through the broker with an in-memory provider: the cost of locking, listing,
//! revoking in parallel (each revocation: two store transactions with audit, binding lock,
//! provider revoke + read-back) and auditing the report. SQLite, and PostgreSQL when
//! BREVET_TEST_PG_URL is set. `cargo bench -p brevet-server --bench kill_switch`.

mod support;

use std::time::Instant;

use brevet_server::{broker::KillTarget, AccessAsk};

async fn run(label: &str, url: &str, n: usize) {
    let principals = support::principals(2);
    let (user, admin) = (
        brevet_core::Principal {
            id: principals[0].id.clone(),
            groups: Default::default(),
            roles: principals[0].roles.clone(),
        },
        brevet_core::Principal {
            id: principals[1].id.clone(),
            groups: Default::default(),
            roles: principals[1].roles.clone(),
        },
    );
    let broker = support::broker(url, n, principals).await;
    for i in 0..n {
        let ask = AccessAsk {
            resource: format!("mem:db{i}"),
            profile: "db.read".into(),
            duration: "30m".into(),
            reason: Some("bench".into()),
            ticket: None,
        };
        let r = broker.create(&user, ask).await.unwrap();
        broker.activate(&user, r.id, None).await.unwrap();
    }
    let t = Instant::now();
    let report = broker
        .kill(
            &admin,
            KillTarget::Principal(user.id.clone()),
            "bench".into(),
        )
        .await
        .unwrap();
    let wall = t.elapsed();
    assert_eq!(report.revoked, n, "every grant revoked and verified");
    println!(
        "{label:<10} N {n:>4}  kill wall time {:>8.1} ms  ({:.2} ms per grant)",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3 / n as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for n in [1, 10, 100] {
            let dir = tempfile::tempdir().unwrap();
            run(
                "sqlite",
                &format!("sqlite://{}", dir.path().join("k.db").display()),
                n,
            )
            .await;
        }
        if std::env::var("BREVET_TEST_PG_URL").is_ok() {
            for n in [1, 10, 100] {
                let db = brevet_testkit::TestDb::create("brevet_bench_kill");
                run("postgres", &db.url, n).await;
            }
        }
    });
}
