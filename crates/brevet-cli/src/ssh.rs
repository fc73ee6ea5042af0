//! `brevet ssh` and `brevet ssh-cert`: a fresh key pair per use (the private key never leaves this
//! machine), an existing grant reused or a new one requested, the certificate signed for it, and
//! the system `ssh` run with both from a private temporary directory.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::{
    client::{ApiFailure, Client},
    commands::{wait_for_approval, DENIED},
};

#[derive(Args, Clone)]
pub struct SshArgs {
    /// `[user@]HOST`: HOST is a resource name (`web-1` means `ssh:web-1`) or a full resource id.
    pub target: String,
    /// Access profile.
    #[arg(long, default_value = "ssh.login")]
    pub profile: String,
    /// How long, when a new request is needed.
    #[arg(long = "for", value_name = "DURATION", default_value = "30m")]
    pub duration: String,
    /// Why, when a new request is needed.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub ticket: Option<String>,
    /// The SSH provider name used when HOST has no `provider:` prefix.
    #[arg(long, default_value = "ssh")]
    pub provider: String,
}

pub struct Obtained {
    dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
    user: String,
    host: String,
    port: u64,
    principals: Vec<String>,
    expires_at: String,
}

impl Obtained {
    /// Keeps the files (for `ssh-cert`) and describes them.
    pub fn keep(self) -> Value {
        let dir = self.dir.keep();
        json!({
            "dir": dir, "key": self.key, "cert": self.cert, "user": self.user, "host": self.host,
            "port": self.port, "principals": self.principals, "expires_at": self.expires_at,
        })
    }

    /// Runs `ssh` with the key and certificate; the files are removed afterwards.
    pub fn run_ssh(self, options: &[String], command: &[String]) -> Result<ExitCode> {
        let mut cmd = std::process::Command::new("ssh");
        cmd.arg("-i").arg(&self.key);
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", self.cert.display()));
        cmd.args(["-o", "IdentitiesOnly=yes", "-p", &self.port.to_string()]);
        for o in options {
            cmd.arg("-o").arg(o);
        }
        cmd.arg(format!("{}@{}", self.user, self.host));
        cmd.args(command);
        let status = cmd
            .status()
            .context("running ssh (is the OpenSSH client installed?)")?;
        drop(self.dir);
        Ok(ExitCode::from(
            status.code().unwrap_or(255).clamp(0, 255) as u8
        ))
    }
}

/// Gets a certificate for the target, or the exit code to stop with (denied, expired).
pub async fn obtain(client: &Client, a: &SshArgs) -> Result<Result<Obtained, u8>> {
    let (user, host) = match a.target.split_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h.to_owned()),
        None => (None, a.target.clone()),
    };
    let resource = if host.contains(':') {
        host
    } else {
        format!("{}:{host}", a.provider)
    };
    let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
        .context("generating a key pair")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the public key")?;
    let body = json!({"public_key": public});

    let grants: Value = client.call(Method::GET, "/v1/grants", None).await?;
    let existing = grants.as_array().into_iter().flatten().find(|g| {
        g["state"] == "active"
            && g["resource"] == resource.as_str()
            && g["profile"] == a.profile.as_str()
    });
    let credential: Value = match existing {
        Some(g) => {
            let id = g["id"].as_str().unwrap_or_default();
            eprintln!("using active grant {id}");
            client
                .call(
                    Method::POST,
                    &format!("/v1/grants/{id}/credentials"),
                    Some(body),
                )
                .await?
        }
        None => {
            let ask = json!({"profile": a.profile, "resource": resource, "duration": a.duration, "reason": a.reason, "ticket": a.ticket});
            let created: Value = match client.call(Method::POST, "/v1/requests", Some(ask)).await {
                Ok(v) => v,
                Err(e) => {
                    if let Some(f) = e.downcast_ref::<ApiFailure>() {
                        if f.code == "policy_denied" {
                            eprintln!("refused: {}", f.message);
                            return Ok(Err(DENIED));
                        }
                    }
                    return Err(e);
                }
            };
            let id = created["id"]
                .as_str()
                .context("no request id in the answer")?
                .to_owned();
            eprintln!("request {id}: {}", created["state"].as_str().unwrap_or("?"));
            if let Err(code) = wait_for_approval(client, &id).await? {
                return Ok(Err(code));
            }
            let activated: Value = client
                .call(
                    Method::POST,
                    &format!("/v1/requests/{id}/activate"),
                    Some(body),
                )
                .await?;
            activated["credential"].clone()
        }
    };
    if credential["kind"] != "ssh_certificate" {
        bail!(
            "`{resource}` is not an SSH resource (its credential is {})",
            credential["kind"]
        );
    }
    let d = &credential["details"];
    let principals: Vec<String> = d["principals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    // The login name is the user's choice: hosts may map certificate principals to accounts
    // (AuthorizedPrincipalsFile), so sshd, not this CLI, decides whether it is allowed.
    let user = match user {
        Some(u) => u,
        None => principals
            .first()
            .cloned()
            .context("the certificate names no principal")?,
    };

    let dir = tempfile::Builder::new()
        .prefix("brevet-ssh-")
        .tempdir()
        .context("creating a private directory")?;
    let key_path = dir.path().join("id_ed25519");
    let cert_path = dir.path().join("id_ed25519-cert.pub");
    write_private(
        &key_path,
        key.to_openssh(LineEnding::LF)
            .context("encoding the key")?
            .as_bytes(),
    )?;
    std::fs::write(
        &cert_path,
        format!("{}\n", credential["secret"].as_str().unwrap_or_default()),
    )?;
    Ok(Ok(Obtained {
        key: key_path,
        cert: cert_path,
        dir,
        user,
        host: d["host"].as_str().unwrap_or_default().to_owned(),
        port: d["port"].as_u64().unwrap_or(22),
        principals,
        expires_at: credential["expires_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)?;
    Ok(())
}
