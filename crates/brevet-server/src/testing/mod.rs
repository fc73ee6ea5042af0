//! The server in process, for tests (feature `test-util`): [`TestApp`] is the real router, broker
//! and store built from a real config ([`TestConfig`], parsed by [`crate::Config`]'s parser) with
//! in-memory providers injected by name, served through `tower::ServiceExt::oneshot` (no socket,
//! no child process). One typed method per endpoint answers in `brevet-wire`'s types, or a
//! [`Failure`] read from the API's `ErrorBody`; [`TestApp::call`] sends raw bytes for
//! malformed-input tests.
//!
//! Background work (scheduler, reconciler, checkpoints, outbox) is not started: a test runs a
//! scheduler pass when it wants one ([`TestApp::tick`]), so timing is the test's to decide.

mod config;

use std::{fmt, sync::Arc};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use brevet_audit::{AuditEvent, VerifyReport};
use brevet_wire::{
    ActivatedView, CreateRequest, CredentialBody, Decision, ErrorBody, ExtendBody, KillBody,
    KillReport, LockView, RequestView, RevokeBody, UnlockBody, WhoAmI,
};
use serde::{de::DeserializeOwned, Serialize};
use tower::ServiceExt;

pub use brevet_providers::testing::{Fault, FaultyProvider, InMemoryProvider, Op};
pub use config::{TestConfig, INJECTED_KIND};

use crate::{Broker, BrokerError, Config, StartError};

/// Where a [`TestApp`] keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    /// A fresh SQLite file in the app's temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL cluster `BREVET_TEST_PG_URL` names (a superuser URL),
    /// dropped with the app.
    Postgres,
}

impl TestStore {
    /// SQLite, and PostgreSQL too when `BREVET_TEST_PG_URL` is set (`scripts/test` sets it).
    pub fn available() -> Vec<TestStore> {
        let mut stores = vec![TestStore::Sqlite];
        if std::env::var_os("BREVET_TEST_PG_URL").is_some() {
            stores.push(TestStore::Postgres);
        }
        stores
    }
}

/// An API call that did not succeed: its status and the `ErrorBody` it carried. A body that is
/// not an `ErrorBody` (a layer's plain-text refusal) is kept whole in `message`, `code` empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl Failure {
    fn read(status: StatusCode, body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(e) => Self {
                status,
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => Self {
                status,
                code: String::new(),
                message: body.to_owned(),
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// The app in process. Dropping it drops its store (the temporary directory, or the PostgreSQL
/// database).
pub struct TestApp {
    router: Router,
    broker: Arc<Broker>,
    config: Config,
    store: TestStore,
    dir: tempfile::TempDir,
    // Last: dropped after the pools above let go of it.
    _database: Option<brevet_testkit::TestDb>,
    outbox: Arc<crate::notify::outbox::Outbox>,
}

impl TestApp {
    /// Builds the app from `config` on a fresh store of kind `store`, as `brevet server` would
    /// (the same config parser, broker, routes and layers), without starting background work.
    pub async fn start(config: TestConfig, store: TestStore) -> Result<TestApp, StartError> {
        let dir = tempfile::tempdir().map_err(|e| file_error(std::env::temp_dir(), e))?;
        let database = match store {
            TestStore::Sqlite => None,
            // psql, as the binary end-to-end tests make theirs.
            TestStore::Postgres => Some(brevet_testkit::TestDb::create("brevet_harness")),
        };
        let store_url = match &database {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("store.db").display()),
        };
        let (path, text) = config
            .write(dir.path(), &store_url)
            .map_err(|e| file_error(dir.path().to_owned(), e))?;
        let parsed = Config::parse_with_kinds(&text, &path, config.kinds())?;
        let app = crate::build_app(&parsed).await?;
        Ok(TestApp {
            router: app.router,
            outbox: app.notifications.outbox.clone(),
            broker: app.state.broker,
            config: parsed,
            store,
            dir,
            _database: database,
        })
    }

    /// The notification outbox; nothing delivers until a test calls its `dispatch` and `work`.
    pub fn outbox(&self) -> &Arc<crate::notify::outbox::Outbox> {
        &self.outbox
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The config as the parser read it.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> TestStore {
        self.store
    }

    /// The app's directory: its config, policy, SQLite store and audit key.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// One scheduler pass, as the background scheduler runs every `server.tick`: expires what is
    /// past its deadline, revokes what ran out, retries what failed. Returns how many it handled.
    pub async fn tick(&self) -> Result<usize, BrokerError> {
        self.broker.tick().await
    }

    /// Sends one HTTP request through the router (every layer, as a socket would) and returns
    /// the status and body. `token` goes in `Authorization: Bearer`; a non-empty `body` is sent
    /// as `application/json` with its `Content-Length`, byte for byte.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !body.is_empty() {
            // As an HTTP client sends a body it has whole (the body limit reads the length).
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len());
        }
        let req = req
            .body(Body::from(body.to_owned()))
            .expect("a well-formed test request");
        let (status, _, text) = self.send(req).await;
        (status, text)
    }

    /// Sends any request through the router (cookies, forms: the portal) and returns the status,
    /// the headers and the body.
    pub async fn send(
        &self,
        mut req: axum::http::Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        // What `into_make_service_with_connect_info` gives every request of the real server.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40000,
            ))));
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the response body is readable");
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// A call whose success answers `T` as JSON; anything but 2xx is a [`Failure`].
    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Failure> {
        let text = body
            .map(|b| serde_json::to_string(b).expect("a wire type serializes"))
            .unwrap_or_default();
        let (status, answer) = self.call(method.clone(), path, Some(token), &text).await;
        if !status.is_success() {
            return Err(Failure::read(status, &answer));
        }
        Ok(serde_json::from_str(&answer).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {status} with a body that is not a {}: {e}\n{answer}",
                std::any::type_name::<T>()
            )
        }))
    }

    pub async fn whoami(&self, token: &str) -> Result<WhoAmI, Failure> {
        self.typed(Method::GET, "/v1/whoami", token, None::<&()>)
            .await
    }

    /// `POST /v1/requests`.
    pub async fn create_request(
        &self,
        token: &str,
        ask: &CreateRequest,
    ) -> Result<RequestView, Failure> {
        self.typed(Method::POST, "/v1/requests", token, Some(ask))
            .await
    }

    /// `GET /v1/requests?pending=…&all=…`, as `brevet requests [--pending] [--all]` asks.
    pub async fn requests(
        &self,
        token: &str,
        pending: bool,
        all: bool,
    ) -> Result<Vec<RequestView>, Failure> {
        let path = format!("/v1/requests?pending={pending}&all={all}");
        self.typed(Method::GET, &path, token, None::<&()>).await
    }

    /// `GET /v1/requests/{id}`.
    pub async fn show(&self, token: &str, id: &str) -> Result<RequestView, Failure> {
        let path = format!("/v1/requests/{id}");
        self.typed(Method::GET, &path, token, None::<&()>).await
    }

    pub async fn approve(
        &self,
        token: &str,
        id: &str,
        comment: Option<&str>,
    ) -> Result<RequestView, Failure> {
        self.decide(token, id, "approve", comment).await
    }

    pub async fn deny(
        &self,
        token: &str,
        id: &str,
        comment: Option<&str>,
    ) -> Result<RequestView, Failure> {
        self.decide(token, id, "deny", comment).await
    }

    async fn decide(
        &self,
        token: &str,
        id: &str,
        verb: &str,
        comment: Option<&str>,
    ) -> Result<RequestView, Failure> {
        let body = Decision {
            comment: comment.map(str::to_owned),
        };
        let path = format!("/v1/requests/{id}/{verb}");
        self.typed(Method::POST, &path, token, Some(&body)).await
    }

    pub async fn cancel(&self, token: &str, id: &str) -> Result<RequestView, Failure> {
        let path = format!("/v1/requests/{id}/cancel");
        self.typed(Method::POST, &path, token, None::<&()>).await
    }

    /// `POST /v1/requests/{id}/activate` with no credential input.
    pub async fn activate(&self, token: &str, id: &str) -> Result<ActivatedView, Failure> {
        self.activate_with(token, id, &CredentialBody::default())
            .await
    }

    pub async fn activate_with(
        &self,
        token: &str,
        id: &str,
        input: &CredentialBody,
    ) -> Result<ActivatedView, Failure> {
        let path = format!("/v1/requests/{id}/activate");
        self.typed(Method::POST, &path, token, Some(input)).await
    }

    /// `GET /v1/grants?all=…`.
    pub async fn grants(&self, token: &str, all: bool) -> Result<Vec<RequestView>, Failure> {
        let path = format!("/v1/grants?all={all}");
        self.typed(Method::GET, &path, token, None::<&()>).await
    }

    pub async fn revoke(
        &self,
        token: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<RequestView, Failure> {
        let body = RevokeBody {
            reason: reason.map(str::to_owned),
        };
        let path = format!("/v1/grants/{id}/revoke");
        self.typed(Method::POST, &path, token, Some(&body)).await
    }

    /// `POST /v1/grants/{id}/extend`: the extension request it made.
    pub async fn extend(
        &self,
        token: &str,
        id: &str,
        duration: &str,
    ) -> Result<RequestView, Failure> {
        let body = ExtendBody {
            duration: duration.to_owned(),
        };
        let path = format!("/v1/grants/{id}/extend");
        self.typed(Method::POST, &path, token, Some(&body)).await
    }

    pub async fn audit_verify(&self, token: &str) -> Result<VerifyReport, Failure> {
        self.typed(Method::GET, "/v1/audit/verify", token, None::<&()>)
            .await
    }

    /// `GET /v1/audit/export` (JSON lines), every event in order.
    pub async fn audit_export(&self, token: &str) -> Result<Vec<AuditEvent>, Failure> {
        let (status, body) = self
            .call(Method::GET, "/v1/audit/export", Some(token), "")
            .await;
        if !status.is_success() {
            return Err(Failure::read(status, &body));
        }
        Ok(body
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not an audit event ({e}): {l}"))
            })
            .collect())
    }

    pub async fn kill(&self, token: &str, body: &KillBody) -> Result<KillReport, Failure> {
        self.typed(Method::POST, "/v1/kill", token, Some(body))
            .await
    }

    pub async fn unlock(&self, token: &str, principal: &str) -> Result<Vec<LockView>, Failure> {
        let body = UnlockBody {
            principal: principal.to_owned(),
        };
        self.typed(Method::POST, "/v1/unlock", token, Some(&body))
            .await
    }

    pub async fn locks(&self, token: &str) -> Result<Vec<LockView>, Failure> {
        self.typed(Method::GET, "/v1/locks", token, None::<&()>)
            .await
    }
}

/// A [`CreateRequest`] as `brevet request PROFILE --resource RESOURCE --for DURATION --reason
/// REASON` sends it.
pub fn ask(profile: &str, resource: &str, duration: &str, reason: Option<&str>) -> CreateRequest {
    CreateRequest {
        profile: profile.to_owned(),
        resource: resource.to_owned(),
        duration: duration.to_owned(),
        reason: reason.map(str::to_owned),
        ticket: None,
    }
}

/// Trouble writing the app's files, as the config error the server would report.
fn file_error(path: std::path::PathBuf, error: std::io::Error) -> StartError {
    StartError::Config(crate::ConfigError::Read {
        path: path.display().to_string(),
        error,
    })
}
