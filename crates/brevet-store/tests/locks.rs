//! Kill-switch locks as the broker reads them on every request (`Store::locks_on`): a principal's
//! own lock and the everyone-lock, each for what it is, whatever else is locked — on both real
//! backends.

use brevet_store::{PrincipalLock, Store};
use chrono::{TimeZone, Utc};

fn lock(principal: &str) -> PrincipalLock {
    PrincipalLock {
        principal: principal.into(),
        reason: format!("{principal} is compromised"),
        locked_by: "root".into(),
        locked_at: Utc.timestamp_millis_opt(1_000).unwrap(),
    }
}

async fn own_and_everyone_locks_apart(url: &str) {
    let store = Store::connect(url).await.unwrap();
    for p in ["alice", "alicia", "mallory"] {
        store.lock_principal(&lock(p), vec![]).await.unwrap();
    }
    let on = store.locks_on("alice").await.unwrap();
    assert_eq!(on.own, Some(lock("alice")));
    assert_eq!(on.everyone, None, "no everyone-lock yet");
    let on = store.locks_on("bob").await.unwrap();
    assert_eq!(
        (on.own, on.everyone),
        (None, None),
        "others' locks do not bind bob"
    );

    store.lock_principal(&lock("*"), vec![]).await.unwrap();
    let on = store.locks_on("bob").await.unwrap();
    assert_eq!((on.own, on.everyone), (None, Some(lock("*"))));
    let on = store.locks_on("mallory").await.unwrap();
    assert_eq!(
        (on.own, on.everyone),
        (Some(lock("mallory")), Some(lock("*")))
    );

    assert!(store.unlock_principal("*", vec![]).await.unwrap());
    assert!(store.unlock_principal("alice", vec![]).await.unwrap());
    let on = store.locks_on("alice").await.unwrap();
    assert_eq!((on.own, on.everyone), (None, None), "both lifted");
    assert_eq!(
        store.locks_on("alicia").await.unwrap().own,
        Some(lock("alicia"))
    );
    assert_eq!(store.locks().await.unwrap().len(), 2, "alicia and mallory");
}

brevet_testkit::on_both_stores!(own_and_everyone_locks_apart:
    sqlite_own_and_everyone_locks_apart,
    postgres_own_and_everyone_locks_apart);
