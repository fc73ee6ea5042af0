//! A real OpenID provider for tests, and Node scripts that drive Debian's Chromium.
//!
//! [`OidcProvider`] runs `tests/browser/oidc-provider.mjs` (panva's oidc-provider, a certified
//! OpenID Connect implementation, with a minimal real login form) on `127.0.0.1`; the issuer is
//! `http://127.0.0.1:PORT`. Its users are alice/alice-pw (groups `engineering`), bob/bob-pw
//! (`sre-leads`), carol/carol-pw (`security-admins`) and dave/dave-pw (`engineering`); `sub` and
//! `preferred_username` are the user name, `email` is `<user>@example.com`. Ask for the scopes
//! `openid email profile groups`: email and groups are then in the ID token itself.
//!
//! [`run_browser_script`] runs a Node script from `tests/browser` (Playwright with Debian's
//! Chromium). `scripts/test` installs Node, Chromium and the scripts' npm packages.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// The users of the test provider: (user name, password, groups).
pub const OIDC_USERS: [(&str, &str, &[&str]); 4] = [
    ("alice", "alice-pw", &["engineering"]),
    ("bob", "bob-pw", &["sre-leads"]),
    ("carol", "carol-pw", &["security-admins"]),
    ("dave", "dave-pw", &["engineering"]),
];

/// The scopes a relying party asks for to get `email` and `groups` in the ID token.
pub const OIDC_SCOPES: &str = "openid email profile groups";

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `tests/browser`, checked to have its npm packages installed.
pub fn browser_dir() -> PathBuf {
    let dir = workspace_root().join("tests/browser");
    for package in ["oidc-provider", "playwright-core"] {
        if !dir.join("node_modules").join(package).is_dir() {
            panic!(
                "{} has no node_modules/{package}: run scripts/test, which runs npm ci in tests/browser \
                 (or run `npm ci` there yourself)",
                dir.display()
            );
        }
    }
    dir
}

/// The Node.js to run: `BREVET_NODE`, else `node` on the PATH.
pub fn node_command() -> Command {
    Command::new(std::env::var("BREVET_NODE").unwrap_or_else(|_| "node".to_owned()))
}

/// Where browser tests put screenshots: `BREVET_ARTIFACTS`, else `target/browser-artifacts`.
pub fn browser_artifacts_dir() -> PathBuf {
    std::env::var_os("BREVET_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/browser-artifacts"))
}

/// A client registered at the test provider.
#[derive(Clone, Debug)]
pub struct OidcClient {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Loopback redirect URIs match on any port (`application_type: native`, RFC 8252 §7.3).
    pub any_loopback_port: bool,
}

impl OidcClient {
    /// A confidential client (`client_secret_basic`) for the authorization code flow (PKCE with
    /// S256 required) and the device flow. The redirect URIs must match exactly, port included.
    pub fn confidential(id: &str, secret: &str, redirect_uris: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
            redirect_uris: redirect_uris.iter().map(|u| u.to_string()).collect(),
            grant_types: vec![
                "authorization_code".into(),
                "refresh_token".into(),
                DEVICE_CODE_GRANT.into(),
            ],
            any_loopback_port: false,
        }
    }

    /// A confidential client for the device flow only (e.g. a separate client for the CLI).
    pub fn device_only(id: &str, secret: &str) -> Self {
        Self {
            grant_types: vec![DEVICE_CODE_GRANT.into(), "refresh_token".into()],
            ..Self::confidential(id, secret, &[])
        }
    }

    /// Lets `http://127.0.0.1/...` redirect URIs match whatever port the request names, so the
    /// client can be registered before the relying party knows the port it listens on.
    pub fn any_loopback_port(mut self) -> Self {
        self.any_loopback_port = true;
        self
    }

    /// The client's registration metadata, as the provider script reads it.
    pub fn metadata(&self) -> Value {
        let code = self.grant_types.iter().any(|g| g == "authorization_code");
        json!({
            "client_id": self.id,
            "client_secret": self.secret,
            "client_name": "Brevet",
            "application_type": if self.any_loopback_port { "native" } else { "web" },
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": self.grant_types,
            "response_types": if code { vec!["code"] } else { vec![] },
            "redirect_uris": self.redirect_uris,
        })
    }
}

/// A running `tests/browser/oidc-provider.mjs`. Killed when dropped.
pub struct OidcProvider {
    issuer: String,
    child: Option<Child>,
    // Held open: the script exits by itself when this pipe closes, even if the test is killed.
    _stdin: Option<ChildStdin>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts the provider with one confidential client (authorization code + PKCE, and the
    /// device flow) whose redirect URIs must match exactly.
    pub fn start(client_id: &str, client_secret: &str, redirect_uris: &[&str]) -> Self {
        Self::start_with_clients(&[OidcClient::confidential(
            client_id,
            client_secret,
            redirect_uris,
        )])
    }

    /// Starts the provider with these clients, on a free port of 127.0.0.1.
    pub fn start_with_clients(clients: &[OidcClient]) -> Self {
        let dir = browser_dir();
        let tmp = tempfile::tempdir().expect("tempdir");
        let clients_file = tmp.path().join("clients.json");
        let clients: Vec<Value> = clients.iter().map(OidcClient::metadata).collect();
        std::fs::write(&clients_file, serde_json::to_vec_pretty(&clients).unwrap())
            .expect("write clients.json");
        let log = tmp.path().join("oidc-provider.log");
        let log_file = std::fs::File::create(&log).expect("provider log file");

        let mut child = node_command()
            .arg(dir.join("oidc-provider.mjs"))
            .args(["0", "--exit-with-stdin"])
            .current_dir(&dir)
            .env("OIDC_CLIENTS_FILE", &clients_file)
            .env_remove("OIDC_CLIENTS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node ({e}): run scripts/test, which installs Node.js")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("oidc provider listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let issuer = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(issuer) => issuer,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OIDC provider did not start within 60 s; its stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Self {
            issuer,
            _stdin: child.stdin.take(),
            child: Some(child),
            log,
            _dir: tmp,
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `http://127.0.0.1:PORT/device`, where a person enters a device-flow user code.
    pub fn device_page(&self) -> String {
        format!("{}/device", self.issuer)
    }

    /// What the provider wrote to stderr so far (warnings, request errors).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `node tests/browser/<script>` with `env` added (and `BREVET_CHROMIUM`, `BREVET_ARTIFACTS`
/// defaulted) and returns its stdout; panics with its stdout and stderr unless it exits 0 within
/// `timeout`.
pub fn run_browser_script(script: &str, env: &[(&str, &str)], timeout: Duration) -> String {
    let dir = browser_dir();
    let artifacts = browser_artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser artifacts directory");
    let mut cmd = node_command();
    cmd.arg(dir.join(script))
        .current_dir(&dir)
        .env("BREVET_ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("BREVET_CHROMIUM").is_none() {
        cmd.env("BREVET_CHROMIUM", "/usr/bin/chromium");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): run scripts/test, which installs it"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("{script} failed ({s})\n--- stdout\n{out}\n--- stderr\n{err}"),
        None => {
            panic!("{script} timed out after {timeout:?}\n--- stdout\n{out}\n--- stderr\n{err}")
        }
    }
}
