//! `brevet ssh` and `brevet ssh-cert`: a fresh key pair per use (the private key never leaves this
//! machine), an existing grant reused or a new one requested, the certificate signed for it, and
//! the system `ssh` run with both from a private temporary directory.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use brevet_wire::{
    ActivatedView, CreateRequest, CredentialBody, CredentialInputKind, CredentialKind,
    CredentialView, Eligible, RequestView, SshCertificateDetails,
};
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::{
    client::{ApiFailure, Client},
    commands::{wait_for_approval, DENIED},
};

#[derive(Args, Clone)]
pub struct SshArgs {
    /// `[user@]HOST`: HOST is a resource name (`web-1` finds the one resource named `web-1` that
    /// takes an SSH public key and that you may ask for) or a full resource id (`ssh:web-1`).
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
    /// The provider whose resource HOST is, when HOST has no `provider:` prefix (default: found
    /// among the resources you may ask for).
    #[arg(long)]
    pub provider: Option<String>,
}

pub struct Obtained {
    dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
    user: String,
    host: String,
    port: u16,
    principals: Vec<String>,
    expires_at: DateTime<Utc>,
}

/// What `ssh-cert` leaves on disk, described.
#[derive(Debug, Serialize)]
pub struct Kept {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub principals: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

impl Obtained {
    /// Keeps the files (for `ssh-cert`) and describes them.
    pub fn keep(self) -> Kept {
        Kept {
            dir: self.dir.keep(),
            key: self.key,
            cert: self.cert,
            user: self.user,
            host: self.host,
            port: self.port,
            principals: self.principals,
            expires_at: self.expires_at,
        }
    }

    /// Runs `ssh` with the key and certificate; the files are removed afterwards.
    pub fn run_ssh(self, options: &[String], command: &[String]) -> Result<ExitCode> {
        let mut cmd = std::process::Command::new(OPENSSH_CLIENT);
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

/// The OpenSSH client program.
const OPENSSH_CLIENT: &str = "ssh";

/// The resource id HOST names: as given when it has a `provider:` prefix or `--provider` is set;
/// else the resource named HOST of the caller's active grant for `profile`; else the one resource
/// named HOST that takes a public key among those the caller may ask for; else HOST under the one
/// provider whose resources take a public key (so a request that policy refuses is refused by the
/// server, naming the policy, rather than not found here). `None`: nothing to ask for.
async fn resource_of(
    client: &Client,
    grants: &[RequestView],
    host: &str,
    provider: Option<&str>,
    profile: &str,
) -> Result<Option<String>> {
    if host.contains(':') {
        return Ok(Some(host.to_owned()));
    }
    if let Some(p) = provider {
        return Ok(Some(format!("{p}:{host}")));
    }
    let mut held: Vec<&str> = grants
        .iter()
        .filter(|g| g.state == brevet_core::RequestState::Active && g.profile == profile)
        .map(|g| g.resource.as_str())
        .filter(|r| r.split_once(':').is_some_and(|(_, n)| n == host))
        .collect();
    held.sort_unstable();
    held.dedup();
    if let [one] = held.as_slice() {
        return Ok(Some((*one).to_owned()));
    }
    let eligible: Vec<Eligible> = client.get("/v1/eligible").await?;
    let takes_key: Vec<(&str, &str)> = eligible
        .iter()
        .filter(|e| e.credential_input == CredentialInputKind::PublicKey)
        .filter_map(|e| e.resource.split_once(':'))
        .collect();
    let distinct = |it: &mut dyn Iterator<Item = String>| {
        let mut v: Vec<String> = it.collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let named = distinct(
        &mut takes_key
            .iter()
            .filter(|(_, n)| *n == host)
            .map(|(p, n)| format!("{p}:{n}")),
    );
    match named.as_slice() {
        [one] => return Ok(Some(one.clone())),
        [] => {}
        many => bail!(
            "`{host}` names several SSH resources ({}); give the full id",
            many.join(", ")
        ),
    }
    let providers = distinct(&mut takes_key.iter().map(|(p, _)| (*p).to_owned()));
    match providers.as_slice() {
        [one] => Ok(Some(format!("{one}:{host}"))),
        [] => {
            eprintln!(
                "refused: you hold no grant for `{host}` and policy lets you ask for no resource that takes an SSH key (give the full resource id PROVIDER:{host} to ask anyway)"
            );
            Ok(None)
        }
        many => bail!(
            "several providers take SSH keys ({}); give the full resource id (PROVIDER:{host}) or --provider",
            many.join(", ")
        ),
    }
}

/// Gets a certificate for the target, or the exit code to stop with (denied, expired).
pub async fn obtain(client: &Client, a: &SshArgs) -> Result<Result<Obtained, u8>> {
    let (user, host) = match a.target.split_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h.to_owned()),
        None => (None, a.target.clone()),
    };
    // The caller's grants, read once: a bare HOST is looked up among them, and an active one
    // for the resource is reused.
    let grants: Vec<RequestView> = client.get("/v1/grants").await?;
    let Some(resource) =
        resource_of(client, &grants, &host, a.provider.as_deref(), &a.profile).await?
    else {
        return Ok(Err(DENIED));
    };
    let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
        .context("generating a key pair")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the public key")?;
    let body = CredentialBody {
        public_key: Some(public),
    };

    let existing = grants.iter().find(|g| {
        g.state == brevet_core::RequestState::Active
            && g.resource == resource
            && g.profile == a.profile
    });
    let credential: CredentialView = match existing {
        Some(g) => {
            eprintln!("using active grant {}", g.id);
            client
                .post(&format!("/v1/grants/{}/credentials", g.id), &body)
                .await?
        }
        None => {
            let ask = CreateRequest {
                profile: a.profile.clone(),
                resource: resource.clone(),
                duration: a.duration.clone(),
                reason: a.reason.clone(),
                ticket: a.ticket.clone(),
            };
            let created: RequestView = match client.post("/v1/requests", &ask).await {
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
            eprintln!("request {}: {}", created.id, created.state.as_str());
            if let Err(code) = wait_for_approval(client, &created.id).await? {
                return Ok(Err(code));
            }
            let activated: ActivatedView = client
                .post(&format!("/v1/requests/{}/activate", created.id), &body)
                .await?;
            activated.credential
        }
    };
    if credential.kind != CredentialKind::SshCertificate {
        bail!(
            "`{resource}` is not an SSH resource (its credential is {})",
            credential.kind
        );
    }
    let d: SshCertificateDetails = serde_json::from_value(credential.details.clone())
        .context("the SSH certificate's details are not what this CLI reads")?;
    // The login name is the user's choice: hosts may map certificate principals to accounts
    // (AuthorizedPrincipalsFile), so sshd, not this CLI, decides whether it is allowed.
    let user = match user {
        Some(u) => u,
        None => d
            .principals
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
    std::fs::write(&cert_path, format!("{}\n", credential.secret))?;
    Ok(Ok(Obtained {
        key: key_path,
        cert: cert_path,
        dir,
        user,
        host: d.host,
        port: d.port,
        principals: d.principals,
        expires_at: credential.expires_at,
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
