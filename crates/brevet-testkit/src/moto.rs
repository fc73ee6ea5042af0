//! The moto AWS emulator and the real AWS CLI, for tests of the AWS provider (end to end, and
//! its conformance run).

use std::process::{Command, Stdio};

use crate::{free_port, stderr, stdout};

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
                        .join("support/moto_enforcing.py"),
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
