//! A caller that stops waiting part-way through a store write (a timeout, an HTTP client that
//! hung up) must leave the store usable: the write happens entirely or not at all, and the next
//! write works. Each write is cut short after a growing delay, so the cut lands everywhere in its
//! run — including between the database beginning the transaction and sqlx handing it over,
//! which used to leave the (single, on SQLite) connection inside a transaction nobody owned, so
//! that every later write failed. Runs on both real backends.

use std::time::Duration;

use brevet_audit::{AuditDraft, EventKind};
use brevet_store::Store;
use brevet_testkit::TestDb;

fn draft(n: usize) -> Vec<AuditDraft> {
    vec![AuditDraft::new(
        EventKind::SessionStarted,
        "alice",
        None,
        serde_json::json!({"n": n}),
    )]
}

async fn cut_writes_leave_the_store_usable(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let mut cut = 0;
    let mut written: i64 = 0;
    for n in 0..300 {
        match tokio::time::timeout(Duration::from_micros(cut), store.append_audit(draft(n))).await {
            Ok(r) => {
                r.unwrap();
                written += 1;
                cut = 0; // it finished: cut earlier again
            }
            Err(_) => cut += 20,
        }
        // The next write always works, and the chain stays whole.
        store
            .append_audit(draft(n))
            .await
            .unwrap_or_else(|e| panic!("after a write cut at {cut} µs: {e}"));
        written += 1;
    }
    let (head, _) = store.audit_head().await.unwrap();
    // Cut writes happened entirely or not at all.
    assert!(head >= written, "{head} < {written}");
    let mut v = brevet_audit::Verifier::new();
    let mut after = 0;
    while after < head {
        let page = store.audit_page(after, 1000).await.unwrap();
        after = page.last().unwrap().seq;
        for e in &page {
            v.push(e);
        }
    }
    assert!(v.finish(None).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_cut_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    cut_writes_leave_the_store_usable(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_cut_writes() {
    let db = TestDb::create("brevet_store_cancel");
    cut_writes_leave_the_store_usable(&db.url).await;
}
