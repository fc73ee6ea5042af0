//! Helpers for end-to-end tests: they run the real `brevet` binary against a real PostgreSQL.
//!
//! The PostgreSQL cluster comes from `BREVET_TEST_PG_URL` (a superuser URL, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` sets it, starting a throwaway
//! cluster when none is reachable. Each test gets its own databases and role prefix, so tests run
//! in parallel on one cluster without seeing each other.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use rand::Rng;
use serde_json::Value;

pub mod azure;
pub mod fault_proxy;
pub mod gcp;
mod moto;
mod oidc;
mod serve;
pub use moto::*;
pub use oidc::*;
pub use serve::Served;
#[doc(hidden)]
pub use tempfile;

/// Runs `$body(url: &str)`, an async fn, as two tests on both real store backends: `$sqlite` on a
/// SQLite file in a directory of its own, `$postgres` on a PostgreSQL database of its own (see
/// [`TestDb`]). The caller needs `tokio` with its test macro.
#[macro_export]
macro_rules! on_both_stores {
    ($body:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = $crate::tempfile::tempdir().unwrap();
            $body(&format!(
                "sqlite://{}",
                dir.path().join("store.db").display()
            ))
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let db = $crate::TestDb::create("brevet_store");
            $body(&db.url).await;
        }
    };
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn pg_admin_url() -> String {
    std::env::var("BREVET_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("BREVET_TEST_PG_URL is not set: run the tests with `scripts/test`, which provides a PostgreSQL cluster")
    })
}

/// `postgres://…/<db>` for another database on the test cluster.
pub fn pg_url_for(db: &str) -> String {
    let admin = pg_admin_url();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("BREVET_TEST_PG_URL must end in /<database>");
    format!("{base}/{db}")
}

pub fn random_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| (b'a' + rng.gen_range(0..26)) as char)
        .collect()
}

/// Runs SQL through `psql` and returns its unaligned output, or psql's error text.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql must be installed (scripts/test installs it)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// `postgres://…/<db>` for a database on the cluster whose superuser URL is `cluster`.
pub fn url_on(cluster: &str, db: &str) -> String {
    let (base, _) = cluster
        .rsplit_once('/')
        .expect("a cluster URL must end in /<database>");
    format!("{base}/{db}")
}

/// `cluster`'s URL with another user and password (same host, port and database).
pub fn url_as(cluster: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = cluster
        .split_once("://")
        .expect("a cluster URL starts with postgres://");
    let host_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host_db}")
}

/// A database created for one test and dropped afterwards.
pub struct TestDb {
    pub name: String,
    pub url: String,
    cluster: String,
}

impl TestDb {
    pub fn create(prefix: &str) -> Self {
        Self::create_on(&pg_admin_url(), prefix)
    }

    /// A database on another cluster (`cluster` is its superuser URL), e.g. the PostgreSQL 16 one.
    pub fn create_on(cluster: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{}", random_suffix());
        psql(cluster, &format!("CREATE DATABASE {name}")).expect("create test database");
        Self {
            url: url_on(cluster, &name),
            name,
            cluster: cluster.to_owned(),
        }
    }

    /// The superuser URL of the cluster this database lives on.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql(
            &self.cluster,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A `NOSUPERUSER CREATEROLE` login with exactly the grants docs/postgres.md tells operators to
/// give Brevet's login, for tests that must not run as a superuser. Dropped afterwards.
pub struct PgAdminLogin {
    pub name: String,
    /// Its URL, on the cluster's `postgres` database (where Brevet's admin pool connects).
    pub url: String,
    cluster: String,
    databases: Vec<String>,
}

impl PgAdminLogin {
    /// Creates the login on `cluster` (a superuser URL) with, on each `(database, schemas)`:
    /// `CONNECT` on the database, `USAGE, CREATE` on each schema, and all privileges on the
    /// schema's tables and sequences, each `WITH GRANT OPTION`.
    pub fn create(cluster: &str, resources: &[(&str, &[&str])]) -> Self {
        let name = format!("brvadm_{}", random_suffix());
        let password = random_suffix();
        psql(
            cluster,
            &format!("CREATE ROLE {name} LOGIN NOSUPERUSER CREATEROLE NOCREATEDB INHERIT PASSWORD '{password}'"),
        )
        .expect("create the admin login");
        for (db, schemas) in resources {
            let mut sql = format!("GRANT CONNECT ON DATABASE {db} TO {name} WITH GRANT OPTION;");
            for s in *schemas {
                sql += &format!(
                    "GRANT USAGE, CREATE ON SCHEMA {s} TO {name} WITH GRANT OPTION;\
                     GRANT ALL ON ALL TABLES IN SCHEMA {s} TO {name} WITH GRANT OPTION;\
                     GRANT ALL ON ALL SEQUENCES IN SCHEMA {s} TO {name} WITH GRANT OPTION;"
                );
            }
            psql(&url_on(cluster, db), &sql).expect("grant to the admin login");
        }
        Self {
            url: url_on(&url_as(cluster, &name, &password), "postgres"),
            name,
            cluster: cluster.to_owned(),
            databases: resources.iter().map(|(db, _)| db.to_string()).collect(),
        }
    }

    /// Whether the login really is no superuser (so a test cannot pass by accident).
    pub fn is_superuser(&self) -> bool {
        psql(
            &self.cluster,
            &format!(
                "SELECT rolsuper FROM pg_roles WHERE rolname = '{}'",
                self.name
            ),
        )
        .expect("read pg_roles")
            == "t"
    }
}

impl Drop for PgAdminLogin {
    fn drop(&mut self) {
        for db in self
            .databases
            .iter()
            .map(String::as_str)
            .chain(["postgres"])
        {
            let _ = psql(
                &url_on(&self.cluster, db),
                &format!("DROP OWNED BY {} CASCADE", self.name),
            );
        }
        let _ = psql(&self.cluster, &format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

/// Runs `cmd` to completion, as `Command::output` does, but kills it and panics after `limit`:
/// a command expected to refuse and exit (a server given a bad config) must not hang the test.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{cmd:?} still ran after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("wait")
}

/// A running `brevet server`. Killed when dropped.
pub struct Server {
    bin: PathBuf,
    pub config: PathBuf,
    pub url: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub log: PathBuf,
    env: Vec<(String, String)>,
}

impl Server {
    /// Writes `config` (and `policy` as `policy.cedar`) into a fresh directory and starts the
    /// server. The config should listen on `127.0.0.1:0`; the real address is read from stdout.
    pub fn start(bin: &Path, config: &str, policy: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("brevet.toml"), config).expect("write config");
        std::fs::write(dir.path().join("policy.cedar"), policy).expect("write policy");
        let mut s = Self {
            bin: bin.to_path_buf(),
            config: dir.path().join("brevet.toml"),
            url: String::new(),
            log: dir.path().join("server.log"),
            dir,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["server", "--config"])
            .arg(&self.config)
            .current_dir(self.dir.path());
        cmd.env("BREVET_LOG", "info,tower_http=debug")
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn brevet server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("brevet listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => self.url = url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
        self.child = Some(child);
    }

    /// Waits up to `timeout` for the server to exit on its own; its exit status, or `None` if
    /// it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// `kill -TERM`: a graceful shutdown, as a service manager stops it. Its exit status, or
    /// `None` if it is still running after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.as_ref()?.id();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit(timeout)
    }

    /// `kill -9`: no shutdown, no cleanup — a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same config and store, with different environment if given.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Port 0 in the config: the restarted server gets a new port.
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this server as the principal holding `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("BREVET_URL", &self.url)
            .env("BREVET_TOKEN", token)
            .output()
            .expect("run brevet")
    }

    /// Runs the CLI with `--json` and parses its answer; panics with stderr if it failed.
    pub fn cli_json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(token, &all);
        assert!(
            out.status.success(),
            "brevet {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Polls `GET /v1/requests/{id}` (via the CLI) until `pred` holds or `timeout` passes.
    pub fn wait_for(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.cli_json(token, &["show", id]);
            if pred(&v) {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting on {id}; last: {v:#}\nserver log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Demo principals and their tokens, as in the test configs below.
pub const ALICE: &str = "test-alice-token";
pub const BOB: &str = "test-bob-token";
pub const CAROL: &str = "test-carol-token";
pub const ADMIN: &str = "test-admin-token";
