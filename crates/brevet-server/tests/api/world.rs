//! One test's world: the principals and policy the binary e2e tests use, an in-memory provider
//! `mem` offering `db.owner`, `db.read` and `db.write` on resource `mem:orders`, and the app.

use std::{sync::Arc, time::Duration};

use brevet_providers::testing::memory::Entry;
use brevet_server::testing::{InMemoryProvider, TestApp, TestConfig, TestStore};
use brevet_wire::RequestView;

pub use brevet_server::testing::{ask, Failure};

pub const ALICE: &str = "test-alice-token";
pub const BOB: &str = "test-bob-token";
pub const CAROL: &str = "test-carol-token";
pub const ADMIN: &str = "test-admin-token";
pub const DAVE: &str = "test-dave-token";
pub const ERIN: &str = "test-erin-token";

pub const ORDERS: &str = "mem:orders";

pub const POLICY: &str = r#"
@id("dba-read")
@max_duration("1h")
@approvals("1")
permit (principal in Group::"dba", action == Action::"request", resource)
when { context.profile == "db.read" };

@id("dba-write")
@max_duration("1h")
@approvals("2")
permit (principal in Group::"dba", action == Action::"request", resource)
when { context.profile == "db.write" };

@id("oncall-read-auto")
@max_duration("10m")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { context.profile == "db.read" };

@id("oncall-write-auto")
@max_duration("10m")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { context.profile == "db.write" };

@id("leads-approve")
permit (principal in Group::"leads", action == Action::"approve", resource);
"#;

pub struct World {
    pub app: TestApp,
    /// The provider behind `mem`, to look at its target without going through Brevet.
    pub target: Arc<InMemoryProvider>,
}

impl World {
    pub async fn new(store: TestStore) -> World {
        World::with(store, |c| c).await
    }

    /// The standard world with `tweak` applied to its config (more principals, server settings).
    pub async fn with(store: TestStore, tweak: impl FnOnce(TestConfig) -> TestConfig) -> World {
        eprintln!("-- store: {store:?}");
        let target = Arc::new(InMemoryProvider::with_profiles(&[
            "db.owner", "db.read", "db.write",
        ]));
        let config = TestConfig::new(POLICY)
            .principal("alice", &["dba"], &["requester"], ALICE)
            .principal("bob", &["dba", "leads"], &["requester", "approver"], BOB)
            .principal("carol", &["leads"], &["approver"], CAROL)
            .principal("admin", &[], &["admin"], ADMIN)
            .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
            .provider("mem", target.clone())
            .resource(ORDERS);
        let app = TestApp::start(tweak(config), store)
            .await
            .unwrap_or_else(|e| panic!("the app starts on {store:?}: {e}"));
        World { app, target }
    }

    /// What the target holds, by binding key.
    pub fn present(&self) -> Vec<(String, Entry)> {
        let map = self.target.target();
        let map = map.lock().unwrap();
        let mut entries: Vec<_> = map.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// Number of audit events so far.
    pub async fn audit_len(&self) -> usize {
        self.app.audit_export(ADMIN).await.unwrap().len()
    }

    /// Runs scheduler passes until `token`'s view of `id` satisfies `done`, or panics after
    /// `limit`.
    pub async fn wait_for(
        &self,
        token: &str,
        id: &str,
        limit: Duration,
        done: impl Fn(&RequestView) -> bool,
    ) -> RequestView {
        let until = tokio::time::Instant::now() + limit;
        loop {
            self.app.tick().await.expect("a scheduler pass");
            let v = self.app.show(token, id).await.unwrap();
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{id} did not get there within {limit:?}: {v:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl World {
    /// Runs scheduler passes on `app` until the grant `id` is revoked, or panics after `limit`.
    pub async fn wait_for_on(app: &TestApp, id: &str, limit: Duration) -> RequestView {
        let until = tokio::time::Instant::now() + limit;
        loop {
            app.tick().await.expect("a scheduler pass");
            let v = app.show(ADMIN, id).await.unwrap();
            if v.state == brevet_core::RequestState::Revoked {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{id} was not revoked within {limit:?}: {v:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `RequestState` as the API and CLI spell it.
pub fn state(v: &RequestView) -> String {
    v.state.to_string()
}
