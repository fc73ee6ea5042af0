//! Shared set-up for the end-to-end tests: a real PostgreSQL target database with an `orders`
//! table, a store (SQLite file or a fresh PostgreSQL database), and the real `brevet` binary.
#![allow(dead_code)]

pub use crate::config::Config;
pub use brevet_testkit::*;
use serde_json::Value;

use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_brevet");
pub const DAVE: &str = "test-dave-token";

#[derive(Clone, Copy, Debug)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

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

@id("oncall-ssh-auto")
@max_duration("10m")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { resource.kind == "ssh" };

@id("no-ssh-to-vault")
forbid (principal, action == Action::"request", resource == Resource::"ssh:vault");

@id("oncall-aws-auto")
@max_duration("4h")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { resource.kind == "aws" };

@id("dba-gcp")
@max_duration("4h")
@approvals("1")
permit (principal in Group::"dba", action == Action::"request", resource)
when { resource.kind == "gcp" }
unless { principal in Group::"oncall" };

@id("oncall-gcp-auto")
@max_duration("4h")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { resource.kind == "gcp" };

@id("dba-azure")
@max_duration("4h")
@approvals("1")
permit (principal in Group::"dba", action == Action::"request", resource)
when { resource.kind == "azure" }
unless { principal in Group::"oncall" };

@id("oncall-azure-auto")
@max_duration("4h")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { resource.kind == "azure" };

@id("leads-approve")
permit (principal in Group::"leads", action == Action::"approve", resource);

@id("oncall-owner-auto")
@max_duration("10m")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { context.profile == "db.owner" };
"#;

/// One test's world: target database, store, unique role prefix, and the server config.
///
/// The `postgres` provider runs as a `NOSUPERUSER CREATEROLE` login with exactly the grants
/// docs/postgres.md lists (`admin`), as a least-privilege deployment would; a test that wants
/// the superuser (one is kept, in `flow`) calls [`World::with_superuser_admin`].
pub struct World {
    /// Brevet's PostgreSQL login for the target; `None` once a test has chosen another one.
    pub admin: Option<PgAdminLogin>,
    pub target: TestDb,
    pub store_db: Option<TestDb>,
    pub prefix: String,
    pub config: Config,
    pub env: Vec<(String, String)>,
}

impl World {
    /// The default world: the principals and policy above, the `postgres` provider on the
    /// target, and short test timings. Change it with [`World::server`], [`World::with`],
    /// [`World::set`] and [`World::env`].
    pub fn new(store: StoreKind) -> Self {
        let target = TestDb::create("brevet_target");
        psql(
            &target.url,
            "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'widget'), (2, 'gadget');",
        )
        .expect("seed target");
        let prefix = format!("brv_{}_", random_suffix());
        let store_db = matches!(store, StoreKind::Postgres).then(|| TestDb::create("brevet_store"));
        let admin = PgAdminLogin::create(&pg_admin_url(), &[(&target.name, &["public"])]);
        let mut env = vec![
            ("BREVET_TEST_PG_URL".to_string(), pg_admin_url()),
            (
                "BREVET_TEST_TARGET_ADMIN_URL".to_string(),
                admin.url.clone(),
            ),
        ];
        if let Some(db) = &store_db {
            env.push(("BREVET_TEST_STORE_URL".into(), db.url.clone()));
        }
        let store_url = match store {
            StoreKind::Sqlite => "\"sqlite://store.db\"".to_string(),
            StoreKind::Postgres => "{ env = \"BREVET_TEST_STORE_URL\" }".to_string(),
        };
        let config = Config::parse(&format!(
            r#"
[server]
listen = "127.0.0.1:0"
tick = "200ms"
provider_timeout = "2s"
lease = "6s"
reconcile_every = "2s"
approve_within = "10m"
activate_within = "10m"

[store]
url = {store_url}

[policy]
files = ["policy.cedar"]

[[principals]]
id = "alice"
groups = ["dba"]
roles = ["requester"]
token_sha256 = "dc60413a2e33b675d72d503f70e5525d4e481822dc2ab9fe9d32df16018ca4cc"

[[principals]]
id = "bob"
groups = ["dba", "leads"]
roles = ["requester", "approver"]
token_sha256 = "a28fae4a1341e69a71de015fb66ae7d1d92a23cecc2ce2376c8af30376908a8c"

[[principals]]
id = "carol"
groups = ["leads"]
roles = ["approver"]
token_sha256 = "c87f7e0f821041c50604dff008e0ba79d07451544d222b188273ba603a9ff8da"

[[principals]]
id = "admin"
roles = ["admin"]
token_sha256 = "17d6bfe05d1b1fb7bc499f8e3f639c7b3eda4c40f321eef8887a0c04c89a99c5"

[[principals]]
id = "dave"
groups = ["dba", "oncall"]
roles = ["requester"]
token_sha256 = "{dave}"

[providers.postgres]
kind = "postgres"
admin_url = {{ env = "BREVET_TEST_TARGET_ADMIN_URL" }}
role_prefix = "{prefix}"

[resources."postgres:orders"]
database = "{db}"
schemas = ["public"]
"#,
            dave = sha256_hex(DAVE),
            db = target.name,
        ));
        Self {
            admin: Some(admin),
            target,
            store_db,
            prefix,
            config,
            env,
        }
    }

    /// Sets `[server]` keys, written as TOML lines (`lease = "8s"`); they replace the defaults.
    pub fn server(self, lines: &str) -> Self {
        self.with(&format!("[server]\n{lines}"))
    }

    /// Merges a TOML fragment (more providers, resources or principals) into the config, with
    /// `{db}` standing for the target database and `{prefix}` for the test's role prefix.
    pub fn with(mut self, fragment: &str) -> Self {
        let fragment = fragment
            .replace("{db}", &self.target.name)
            .replace("{prefix}", &self.prefix);
        self.config = self.config.merge(&fragment);
        self
    }

    /// Sets one key by its path (see [`Config`]).
    pub fn set(mut self, path: &str, value: impl Into<toml::Value>) -> Self {
        self.config = self.config.set(path, value);
        self
    }

    /// Adds variables to the server's environment (what `{ env = "…" }` in the config reads).
    pub fn env(mut self, vars: &[(&str, &str)]) -> Self {
        self.env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Runs `brevet server` on `config` (this world's policy and environment) and expects it to
    /// refuse to start: its output, and a check that the refused config created no store.
    pub fn refused_start(&self, config: &Config) -> std::process::Output {
        self.refused_start_with_policy(config, POLICY)
    }

    /// [`World::refused_start`] with `policy` as the config's `policy.cedar`.
    pub fn refused_start_with_policy(&self, config: &Config, policy: &str) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("brevet.toml"), config.text()).unwrap();
        std::fs::write(dir.path().join("policy.cedar"), policy).unwrap();
        let out = output_within(
            Command::new(BIN)
                .args(["server", "--config", "brevet.toml"])
                .current_dir(dir.path())
                .envs(self.env.iter().map(|(k, v)| (k, v))),
            std::time::Duration::from_secs(30),
        );
        assert!(
            !out.status.success(),
            "the server started on a config it should refuse:\n{}",
            config.text()
        );
        assert!(
            !dir.path().join("store.db").exists(),
            "a refused config must not create the store"
        );
        out
    }

    pub fn start(&self) -> Server {
        self.start_with(&[])
    }

    pub fn start_with(&self, extra_env: &[(&str, &str)]) -> Server {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra_env);
        Server::start(std::path::Path::new(BIN), &self.config.text(), POLICY, &env)
    }

    pub fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Roles with this test's prefix that exist on the target cluster.
    pub fn brevet_roles(&self) -> Vec<String> {
        let out = psql(
            &pg_admin_url(),
            &format!(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{}') ORDER BY 1",
                self.prefix
            ),
        )
        .unwrap();
        out.lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Connection URL for `role`, as the test superuser sees the target (for checks only).
    pub fn role_exists(&self, role: &str) -> bool {
        psql(
            &pg_admin_url(),
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
        )
        .unwrap()
            == "1"
    }
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Waits for a request by `token` to show up in `brevet requests --pending --all` for an approver.
pub fn first_pending(server: &Server, approver: &str) -> String {
    for _ in 0..80 {
        let v = server.json(approver, Cmd::requests().pending());
        if let Some(id) = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["id"].as_str())
        {
            return id.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("no pending request appeared; log:\n{}", server.log_text());
}

/// A plain GET (for endpoints the CLI does not wrap, such as `/metrics`).
pub fn http_get(url: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// The test PostgreSQL behind a [`fault_proxy::FaultProxy`] that a test can turn into a black
/// hole (accepts, never answers), to make one provider unreachable while another keeps working,
/// or have inject faults at a rate ([`Forwarder::proxy`]).
pub struct Forwarder {
    pub addr: std::net::SocketAddr,
    proxy: fault_proxy::FaultProxy,
}

impl Forwarder {
    pub fn start() -> Self {
        let proxy = fault_proxy::FaultProxy::start(&pg_host_port(&pg_admin_url()), 0);
        Self {
            addr: proxy.addr(),
            proxy,
        }
    }

    /// Admin URL for the test cluster through this forwarder.
    pub fn url(&self) -> String {
        through(&pg_admin_url(), self.addr)
    }

    /// From now on nothing answers, and existing connections are cut.
    pub fn blackhole(&self) {
        self.proxy.blackhole();
    }

    /// From now on everything is forwarded, and existing connections (silent ones included)
    /// are cut.
    pub fn forward(&self) {
        self.proxy.clear();
        self.proxy.cut_all();
    }

    pub fn proxy(&self) -> &fault_proxy::FaultProxy {
        &self.proxy
    }
}

/// The `host:port` of a `postgres://user:password@host:port/db?…` URL.
pub fn pg_host_port(url: &str) -> String {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let after_at = after_at.split_once("://").map_or(after_at, |(_, r)| r);
    after_at
        .split(['/', '?'])
        .next()
        .expect("a host in the URL")
        .to_owned()
}

/// `url` (a `postgres://` URL) with its `host:port` replaced by `addr`.
pub fn through(url: &str, addr: std::net::SocketAddr) -> String {
    url.replacen(&pg_host_port(url), &addr.to_string(), 1)
}

/// Config for an SSH provider named `ssh` with hosts `ssh:box` (the test sshd) and `ssh:vault`
/// (forbidden by policy). `ssh.login` maps to principal `ops`, `ssh.dev` to `dev`.
pub fn ssh_config(port: u16) -> String {
    format!(
        r#"
[providers.ssh]
kind = "ssh"
ca_key_file = "ssh_ca"
krl_file = "revoked.krl"
backdate = "10s"

[providers.ssh.profiles."ssh.login"]
principals = ["ops"]

[providers.ssh.profiles."ssh.dev"]
principals = ["dev"]

[resources."ssh:box"]
host = "127.0.0.1"
port = {port}

[resources."ssh:vault"]
host = "127.0.0.1"
port = {port}
"#
    )
}

/// A real OpenSSH server on a loopback port that trusts Brevet's CA and reads Brevet's KRL.
/// User `root` accepts certificates whose principals include `ops`.
pub struct Sshd {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start(port: u16, ca_public_line: &str, krl: &std::path::Path) -> Self {
        let sshd = std::path::Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "/usr/sbin/sshd is missing: run the tests with scripts/test, which installs openssh-server");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("host_key"))
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::write(d.join("ca.pub"), ca_public_line).unwrap();
        std::fs::write(d.join("principals_root"), "ops\n").unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             TrustedUserCAKeys {d}/ca.pub\nRevokedKeys {krl}\nAuthorizedPrincipalsFile {d}/principals_%u\n\
             AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n",
            d = d.display(),
            krl = krl.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "sshd did not start: {}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
    }

    /// Runs `ssh user@127.0.0.1 command` with a key and certificate; returns the output.
    pub fn ssh(&self, key: &str, cert: &str, user: &str, command: &str) -> std::process::Output {
        Command::new("ssh")
            .args([
                "-i",
                key,
                "-o",
                &format!("CertificateFile={cert}"),
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
            ])
            .args([
                "-o",
                "ConnectTimeout=10",
                "-p",
                &self.port.to_string(),
                &format!("{user}@127.0.0.1"),
                command,
            ])
            .output()
            .unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SSH_OPTS: [&str; 6] = [
    "--ssh-option",
    "StrictHostKeyChecking=no",
    "--ssh-option",
    "UserKnownHostsFile=/dev/null",
    "--ssh-option",
    "BatchMode=yes",
];

/// Env for a Brevet server talking to the emulator.
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// An AWS provider on the emulator: `aws.s3-read` (a role per grant), `aws.s3-neutral` (the same,
/// compiled from the neutral `storage.read`), `aws.s3-session` (STS on base role
/// `brevet-base`), `aws.admin` (Identity Center), resource `aws:bucket`.
pub fn aws_config(moto_url: &str) -> String {
    format!(
        r#"
[providers.aws]
kind = "aws"
region = "us-east-1"
endpoint_url = "{moto_url}"
max_session_duration = "1h"

[providers.aws.identities]
dave = {{ arn = "arn:aws:iam::123456789012:user/dave", identity_center_user_id = "idc-user-dave" }}

[providers.aws.profiles."aws.s3-read"]
mode = "role"
actions = ["s3:GetObject", "s3:ListBucket"]

# The neutral profile, compiled for the bucket through the catalog.
[providers.aws.profiles."aws.s3-neutral"]
mode = "role"
access = "storage.read"

[access."storage.read"]
kind = "object-storage"
verbs = ["read", "list"]
plane = "data"

[providers.aws.profiles."aws.s3-session"]
mode = "session"
base_role_arn = "arn:aws:iam::123456789012:role/brevet-base"
actions = ["s3:GetObject", "s3:ListBucket"]

[providers.aws.profiles."aws.admin"]
mode = "identity_center"
instance_arn = "arn:aws:sso:::instance/ssoins-test0000000000"
permission_set_arn = "arn:aws:sso:::permissionSet/ssoins-test0000000000/ps-admin000000000"

[resources."aws:bucket"]
account = "123456789012"
arns = ["arn:aws:s3:::data-bucket", "arn:aws:s3:::data-bucket/*"]
"#
    )
}

/// A cookie-carrying HTTP client for the portal without a browser.
pub struct Portal {
    pub http: reqwest::blocking::Client,
    pub base: String,
}

pub fn cookie_value(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap()[name.len() + 1..].to_owned())
}

pub fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

impl Portal {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
        }
    }

    /// Opens the sign-in page as a browser would and submits `token` in its form, sending
    /// `extra_cookie` (say, an existing session) along with the form's own cookie.
    pub fn submit_token(
        &self,
        token: &str,
        extra_cookie: Option<&str>,
    ) -> reqwest::blocking::Response {
        let page = self
            .http
            .get(format!("{}/login", self.base))
            .send()
            .unwrap();
        let pre = cookie_value(&page, "brevet_login").expect("login cookie");
        let csrf = hidden_csrf(&page.text().unwrap());
        let cookie = match extra_cookie {
            Some(c) => format!("brevet_login={pre}; {c}"),
            None => format!("brevet_login={pre}"),
        };
        self.http
            .post(format!("{}/login/token", self.base))
            .header("cookie", cookie)
            .form(&[("csrf", csrf.as_str()), ("token", token)])
            .send()
            .unwrap()
    }

    /// Signs in with an API token through the login form; returns (session cookie, CSRF token).
    pub fn sign_in(&self, token: &str) -> (String, String) {
        let resp = self.submit_token(token, None);
        assert_eq!(resp.status(), 303);
        let raw = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("brevet_session="))
            .expect("session cookie");
        assert!(raw.contains("HttpOnly"), "{raw}");
        assert!(raw.contains("SameSite=Lax"), "{raw}");
        assert!(raw.contains("Path=/"), "{raw}");
        let session = cookie_value(&resp, "brevet_session").unwrap();
        let html = self.get(&session, "/request").text().unwrap();
        (session, hidden_csrf(&html))
    }

    pub fn get(&self, session: &str, path: &str) -> reqwest::blocking::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("brevet_session={session}"))
            .send()
            .unwrap()
    }

    pub fn post(
        &self,
        session: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::blocking::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(s) = session {
            req = req.header("cookie", format!("brevet_session={s}"));
        }
        req.send().unwrap()
    }
}

/// Runs SQL statements directly against a store (`sqlite://…` or `postgres://…`), behind
/// Brevet's back: for tests that act as someone with database access.
pub fn exec_store_sql(store_url: &str, statements: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(store_url).await.unwrap();
        sqlx::raw_sql(statements).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

/// An HTTP call to the API with a bearer token; returns (status, body).
pub fn api_call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let http = reqwest::blocking::Client::new();
    let url = format!("{}{path}", server.url);
    let mut req = match method {
        "GET" => http.get(url),
        "POST" => http.post(url),
        other => panic!("unsupported method {other}"),
    };
    req = req.bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// Seconds since the epoch of an RFC 3339 time, as `date` reads it.
pub fn chrono_epoch(s: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", s, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl World {
    /// The same world with its target database (seeded the same way) on another cluster, given by
    /// its superuser URL: the PostgreSQL 16 one, say. The store stays where it was.
    pub fn on_cluster(self, cluster: &str) -> World {
        let World {
            admin,
            target: _old,
            store_db,
            prefix,
            config,
            env,
        } = self;
        drop(admin);
        let target = TestDb::create_on(cluster, "brevet_target");
        psql(
            &target.url,
            "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'widget'), (2, 'gadget');",
        )
        .expect("seed target");
        let config = config.set(
            "resources.\"postgres:orders\".database",
            target.name.as_str(),
        );
        let admin = PgAdminLogin::create(cluster, &[(&target.name, &["public"])]);
        let url = admin.url.clone();
        World {
            admin: Some(admin),
            target,
            store_db,
            prefix,
            config,
            env,
        }
        .with_admin_url(&url)
    }

    /// Points the `postgres` provider's `admin_url` at `url` (another login, made by the test).
    pub fn with_admin_url(mut self, url: &str) -> World {
        self.env
            .retain(|(k, _)| k != "BREVET_TEST_TARGET_ADMIN_URL");
        self.env
            .push(("BREVET_TEST_TARGET_ADMIN_URL".into(), url.to_owned()));
        self
    }

    /// Runs the `postgres` provider as the cluster's superuser (the quickstart's setting).
    pub fn with_superuser_admin(mut self) -> World {
        let cluster = self.cluster();
        self.admin = None;
        self.with_admin_url(&cluster)
    }

    /// Superuser URL of the cluster the target database lives on.
    pub fn cluster(&self) -> String {
        self.target.cluster().to_owned()
    }
}

/// An HTTP proxy in front of the emulator that holds every request for one AWS operation (by its
/// `X-Amz-Target` header, e.g. `SWBExternalService.CreateAccountAssignment`) for `hold` before
/// forwarding it, and forwards everything else at once. A held request is forwarded even when
/// the client has given up meanwhile, as AWS finishes a request whose caller went away. Each
/// connection carries one request (`Connection: close`), so no request waits behind a held one.
pub struct HoldingProxy {
    pub url: String,
    forwarded: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl HoldingProxy {
    pub fn start(upstream: &str, target: &str, hold: std::time::Duration) -> Self {
        use std::{
            io::{Read, Write},
            net::{TcpListener, TcpStream},
            sync::{Arc, Mutex},
        };
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// emulator URL")
            .trim_end_matches('/')
            .to_owned();
        let wanted = format!("x-amz-target: {}", target.to_ascii_lowercase());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let forwarded: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
        let seen = forwarded.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (upstream, wanted, seen) = (upstream.clone(), wanted.clone(), seen.clone());
                std::thread::spawn(move || {
                    let mut client = client;
                    // One request: its head up to the blank line, then Content-Length bytes.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match client.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match client.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let held = head
                        .lines()
                        .any(|l| l.to_ascii_lowercase().trim_end() == wanted);
                    if held {
                        std::thread::sleep(hold);
                    }
                    // Same request, but asking the emulator to close after answering.
                    let mut request: Vec<u8> = head
                        .split("\r\n")
                        .filter(|l| {
                            !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty()
                        })
                        .flat_map(|l| format!("{l}\r\n").into_bytes())
                        .collect();
                    request.extend_from_slice(b"Connection: close\r\n\r\n");
                    request.extend_from_slice(&buf[head_end..head_end + length]);
                    let Ok(mut server) = TcpStream::connect(&upstream) else {
                        return;
                    };
                    let mut response = Vec::new();
                    if server.write_all(&request).is_err()
                        || server.read_to_end(&mut response).is_err()
                    {
                        return;
                    }
                    if held {
                        seen.lock().unwrap().push(std::time::Instant::now());
                    }
                    // Tell the client this connection ends here, then end it.
                    let text_end = response
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(response.len(), |i| i + 4);
                    let head = String::from_utf8_lossy(&response[..text_end]).to_string();
                    let mut out: Vec<u8> = head
                        .split("\r\n")
                        .filter(|l| {
                            !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty()
                        })
                        .flat_map(|l| format!("{l}\r\n").into_bytes())
                        .collect();
                    out.extend_from_slice(b"Connection: close\r\n\r\n");
                    out.extend_from_slice(&response[text_end..]);
                    let _ = client.write_all(&out);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self { url, forwarded }
    }

    /// When each held request reached the emulator and was answered, oldest first.
    pub fn forwarded(&self) -> Vec<std::time::Instant> {
        self.forwarded.lock().unwrap().clone()
    }
}

/// moto's Identity Center instance with a permission set created in it (session duration one
/// hour and an allow statement of its own), and `aws_config` pointed at them: what an
/// `identity_center` profile needs to write session denies. Returns (config, instance ARN,
/// permission set ARN).
pub fn identity_center_config(moto: &Moto, endpoint_url: &str) -> (String, String, String) {
    let instances = moto.aws_json(&["sso-admin", "list-instances"]);
    let instance = instances["Instances"][0]["InstanceArn"]
        .as_str()
        .expect("moto has an Identity Center instance")
        .to_owned();
    let created = moto.aws_json(&[
        "sso-admin",
        "create-permission-set",
        "--instance-arn",
        &instance,
        "--name",
        "Admin",
        "--session-duration",
        "PT1H",
    ]);
    let permission_set = created["PermissionSet"]["PermissionSetArn"]
        .as_str()
        .unwrap()
        .to_owned();
    moto.aws_json(&[
        "sso-admin",
        "put-inline-policy-to-permission-set",
        "--instance-arn",
        &instance,
        "--permission-set-arn",
        &permission_set,
        "--inline-policy",
        PERMISSION_SET_OWN_POLICY,
    ]);
    let config = Config::parse(&aws_config(endpoint_url))
        .set(
            "providers.aws.profiles.\"aws.admin\".instance_arn",
            instance.as_str(),
        )
        .set(
            "providers.aws.profiles.\"aws.admin\".permission_set_arn",
            permission_set.as_str(),
        )
        .text();
    (config, instance, permission_set)
}

/// The permission set's own inline policy in [`identity_center_config`]: never Brevet's to change.
pub const PERMISSION_SET_OWN_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Admin","Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// What `brevet request` asks for; the flags are written by [`Ask::args`], not by each test.
#[derive(Debug, Clone)]
pub struct Ask {
    profile: String,
    resource: String,
    duration: Option<String>,
    reason: Option<String>,
    ticket: Option<String>,
}

impl Ask {
    pub fn new(profile: &str, resource: &str) -> Self {
        Self {
            profile: profile.into(),
            resource: resource.into(),
            duration: None,
            reason: None,
            ticket: None,
        }
    }
    /// `--for DURATION`.
    pub fn lasting(mut self, duration: &str) -> Self {
        self.duration = Some(duration.into());
        self
    }
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn ticket(mut self, ticket: &str) -> Self {
        self.ticket = Some(ticket.into());
        self
    }
    /// The arguments of `brevet request` (without `--json` or `--wait`).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "request".into(),
            self.profile.clone(),
            "--resource".into(),
            self.resource.clone(),
        ];
        for (flag, v) in [
            ("--for", &self.duration),
            ("--reason", &self.reason),
            ("--ticket", &self.ticket),
        ] {
            if let Some(v) = v {
                a.extend([flag.to_string(), v.clone()]);
            }
        }
        a
    }
}

/// One `brevet` command line, made by a constructor per command and a method per flag, so a test
/// names the command and its options instead of writing an argument vector. Run it with
/// [`Commands::run`] (any outcome: exit code, stdout, stderr) or [`Commands::json`] (`--json`,
/// must succeed).
#[derive(Debug, Clone)]
pub struct Cmd(Vec<String>);

impl Cmd {
    fn of(words: &[&str]) -> Self {
        Self(words.iter().map(|w| w.to_string()).collect())
    }
    fn flag(mut self, flag: &str, value: &str) -> Self {
        self.0.extend([flag.to_string(), value.to_string()]);
        self
    }
    fn switch(mut self, flag: &str) -> Self {
        self.0.push(flag.to_string());
        self
    }
    /// `--all` (`grants`: ended grants too, and everyone's for an admin).
    pub fn all(self) -> Self {
        self.switch("--all")
    }

    /// `brevet request PROFILE --resource R …` as the [`Ask`] says.
    pub fn request(ask: &Ask) -> Self {
        Self(ask.args())
    }
    pub fn requests() -> Self {
        Self::of(&["requests"])
    }
    pub fn show(id: &str) -> Self {
        Self::of(&["show", id])
    }
    pub fn approve(id: &str) -> Self {
        Self::of(&["approve", id])
    }
    pub fn deny(id: &str) -> Self {
        Self::of(&["deny", id])
    }
    pub fn activate(id: &str) -> Self {
        Self::of(&["activate", id])
    }
    pub fn revoke(id: &str) -> Self {
        Self::of(&["revoke", id])
    }
    /// `brevet extend ID --for DURATION`.
    pub fn extend(id: &str, by: &str) -> Self {
        Self::of(&["extend", id]).flag("--for", by)
    }
    pub fn grants() -> Self {
        Self::of(&["grants"])
    }
    pub fn locks() -> Self {
        Self::of(&["locks"])
    }
    pub fn reconcile() -> Self {
        Self::of(&["reconcile"])
    }
    pub fn whoami() -> Self {
        Self::of(&["whoami"])
    }
    pub fn deliveries() -> Self {
        Self::of(&["deliveries"])
    }
    /// `brevet kill PRINCIPAL --reason R`; `*` kills everyone (`--all`).
    pub fn kill(principal: &str, reason: &str) -> Self {
        match principal {
            "*" => Self::of(&["kill", "--all"]),
            p => Self::of(&["kill", p]),
        }
        .flag("--reason", reason)
    }
    pub fn unlock(principal: &str) -> Self {
        Self::of(&["unlock", principal])
    }
    pub fn audit_verify() -> Self {
        Self::of(&["audit", "verify"])
    }
    pub fn audit_checkpoint() -> Self {
        Self::of(&["audit", "checkpoint"])
    }
    pub fn audit_export() -> Self {
        Self::of(&["audit", "export"])
    }
    pub fn ssh_ca_public_key() -> Self {
        Self::of(&["ssh-ca", "public-key"])
    }
    /// `brevet ssh-cert USER@HOST`.
    pub fn ssh_cert(target: &str) -> Self {
        Self::of(&["ssh-cert", target])
    }
    /// `brevet ssh USER@HOST`; OpenSSH options with [`Cmd::ssh_options`], a remote command with
    /// [`Cmd::remote`].
    pub fn ssh(target: &str) -> Self {
        Self::of(&["ssh", target])
    }
    /// `brevet analyze CLOUD FILES…` (offline).
    pub fn analyze(cloud: &str, files: &[&str]) -> Self {
        let mut c = Self::of(&["analyze", cloud]);
        c.0.extend(files.iter().map(|f| f.to_string()));
        c
    }
    /// `--output PATH` (analyze).
    pub fn output_to(self, path: &std::path::Path) -> Self {
        self.flag("--output", &path.display().to_string())
    }
    /// `--fail-on SEVERITY` (analyze).
    pub fn fail_on(self, severity: &str) -> Self {
        self.flag("--fail-on", severity)
    }
    /// `--exclusions FILE` (analyze).
    pub fn exclusions(self, path: &std::path::Path) -> Self {
        self.flag("--exclusions", &path.display().to_string())
    }
    /// `--last-accessed ARN=FILE` (analyze aws).
    pub fn last_accessed(self, arn_file: &str) -> Self {
        self.flag("--last-accessed", arn_file)
    }
    /// `brevet catalog search WORDS…`.
    pub fn catalog_search(words: &str) -> Self {
        let mut c = Self::of(&["catalog", "search"]);
        c.0.extend(words.split_whitespace().map(str::to_owned));
        c
    }
    /// `brevet profile compile PROFILE --resource R…`.
    pub fn profile_compile(profile: &str, resources: &[&str]) -> Self {
        resources
            .iter()
            .fold(Self::of(&["profile", "compile", profile]), |c, r| {
                c.flag("--resource", r)
            })
    }
    /// `brevet catalog show NAME`.
    pub fn catalog_show(name: &str) -> Self {
        Self::of(&["catalog", "show", name])
    }
    /// `--offline`: the catalog built into brevet, no server.
    pub fn offline(self) -> Self {
        self.switch("--offline")
    }
    /// `--config FILE`: answer offline from a config's catalog and profiles.
    pub fn config(self, path: &std::path::Path) -> Self {
        self.flag("--config", path.to_str().expect("a UTF-8 path"))
    }
    /// `brevet profile explain PROFILE`.
    pub fn profile_explain(profile: &str) -> Self {
        Self::of(&["profile", "explain", profile])
    }
    /// `--cloud C` (catalog commands).
    pub fn cloud(self, cloud: &str) -> Self {
        self.flag("--cloud", cloud)
    }
    /// `brevet login --timeout T` (OIDC device sign-in).
    pub fn login(timeout: &str) -> Self {
        Self::of(&["login"]).flag("--timeout", timeout)
    }
    pub fn logout() -> Self {
        Self::of(&["logout"])
    }
    /// `brevet aws configure NAME --resource R --access-profile P`.
    pub fn aws_configure(name: &str, resource: &str, access_profile: &str) -> Self {
        Self::of(&["aws", "configure", name])
            .flag("--resource", resource)
            .flag("--access-profile", access_profile)
    }
    /// `brevet aws credential-process --profile NAME`.
    pub fn aws_credential_process(name: &str) -> Self {
        Self::of(&["aws", "credential-process"]).flag("--profile", name)
    }
    /// `brevet aws exec NAME -- COMMAND…`.
    pub fn aws_exec(name: &str, command: &[&str]) -> Self {
        Self::of(&["aws", "exec", name]).remote(command)
    }

    /// `--for DURATION`.
    pub fn lasting(self, duration: &str) -> Self {
        self.flag("--for", duration)
    }
    pub fn reason(self, reason: &str) -> Self {
        self.flag("--reason", reason)
    }
    pub fn comment(self, comment: &str) -> Self {
        self.flag("--comment", comment)
    }
    pub fn profile(self, profile: &str) -> Self {
        self.flag("--profile", profile)
    }
    /// `--public-key`: the SSH key file (`activate`) or the audit key (`audit verify`).
    pub fn public_key(self, key: &str) -> Self {
        self.flag("--public-key", key)
    }
    /// `audit export --format F`.
    pub fn format(self, format: &str) -> Self {
        self.flag("--format", format)
    }
    /// `audit verify --file F`.
    pub fn file(self, path: &str) -> Self {
        self.flag("--file", path)
    }
    /// `audit verify --head SEQ:HASH`.
    pub fn head(self, head: &str) -> Self {
        self.flag("--head", head)
    }
    /// `audit verify --checkpoint FILE|JSON`.
    pub fn checkpoint(self, checkpoint: &str) -> Self {
        self.flag("--checkpoint", checkpoint)
    }
    /// `deliveries --subscriber S`.
    pub fn subscriber(self, subscriber: &str) -> Self {
        self.flag("--subscriber", subscriber)
    }
    /// `deliveries --state S`.
    pub fn state(self, state: &str) -> Self {
        self.flag("--state", state)
    }
    /// `requests --pending`.
    pub fn pending(self) -> Self {
        self.switch("--pending")
    }
    /// `request --wait`: waits for approval and activates.
    pub fn wait(self) -> Self {
        self.switch("--wait")
    }
    /// `aws configure --region R`.
    pub fn region(self, region: &str) -> Self {
        self.flag("--region", region)
    }
    /// Options passed through to OpenSSH (`brevet ssh`).
    pub fn ssh_options(mut self, options: &[&str]) -> Self {
        self.0.extend(options.iter().map(|o| o.to_string()));
        self
    }
    /// The command `brevet ssh` runs on the host (after `--`).
    pub fn remote(mut self, command: &[&str]) -> Self {
        self.0.push("--".into());
        self.0.extend(command.iter().map(|o| o.to_string()));
        self
    }
    /// Asks for `--json` output while still reading the whole outcome with [`Commands::run`].
    pub fn json_output(mut self) -> Self {
        self.0.insert(0, "--json".into());
        self
    }
    /// The `brevet` process for this command, with no server or token set: for a test that
    /// runs it in its own environment (a session file, an AWS config file).
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.args(&self.0);
        c
    }
}

/// Running [`Cmd`]s against a server, and a shorthand for the commands most tests run, answering
/// the command's `--json` output.
pub trait Commands {
    /// Runs the command, whatever its outcome.
    fn run(&self, token: &str, cmd: Cmd) -> std::process::Output;
    /// Runs the command with `--json`; panics (with stderr) unless it succeeds.
    fn json(&self, token: &str, cmd: Cmd) -> Value;
    /// Starts the command in the background, stdout and stderr piped.
    fn spawn(&self, token: &str, cmd: Cmd) -> std::process::Child;

    fn request(&self, token: &str, ask: &Ask) -> Value {
        self.json(token, Cmd::request(ask))
    }
    fn show(&self, token: &str, id: &str) -> Value {
        self.json(token, Cmd::show(id))
    }
    fn activate(&self, token: &str, id: &str) -> Value {
        self.json(token, Cmd::activate(id))
    }
    fn approve(&self, token: &str, id: &str) -> Value {
        self.json(token, Cmd::approve(id))
    }
    fn revoke(&self, token: &str, id: &str) -> Value {
        self.json(token, Cmd::revoke(id))
    }
    fn grants(&self, token: &str) -> Value {
        self.json(token, Cmd::grants())
    }
    fn locks(&self, token: &str) -> Value {
        self.json(token, Cmd::locks())
    }
    fn reconcile(&self, token: &str) -> Value {
        self.json(token, Cmd::reconcile())
    }
    /// `brevet kill PRINCIPAL --reason …` (`*`: `--all`).
    fn kill(&self, token: &str, principal: &str, reason: &str) -> Value {
        self.json(token, Cmd::kill(principal, reason))
    }
    fn unlock(&self, token: &str, principal: &str) -> Value {
        self.json(token, Cmd::unlock(principal))
    }
    fn audit_verify(&self, token: &str) -> Value {
        self.json(token, Cmd::audit_verify())
    }
    /// `brevet audit export` as JSON lines.
    fn audit_export(&self, token: &str) -> String {
        stdout(&self.run(token, Cmd::audit_export()))
    }
}

impl Commands for Server {
    fn run(&self, token: &str, cmd: Cmd) -> std::process::Output {
        let args: Vec<&str> = cmd.0.iter().map(String::as_str).collect();
        self.cli(token, &args)
    }
    fn json(&self, token: &str, cmd: Cmd) -> Value {
        let args: Vec<&str> = cmd.0.iter().map(String::as_str).collect();
        self.cli_json(token, &args)
    }
    fn spawn(&self, token: &str, cmd: Cmd) -> std::process::Child {
        cmd.command()
            .env("BREVET_URL", &self.url)
            .env("BREVET_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start brevet")
    }
}
