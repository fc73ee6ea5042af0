//! AWS CLI integration: `credential_process`, profiles in the AWS config file, and `exec`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use brevet_core::RequestState;
use brevet_wire::{
    AwsProcessCredentials, CredentialBody, CredentialKind, CredentialView, RequestView,
};
use clap::Subcommand;

use crate::client::Client;

#[derive(Subcommand)]
pub enum AwsCommand {
    /// Print credentials in the AWS CLI `credential_process` format (Version 1) for a profile
    /// written by `brevet aws configure`, from your active grant.
    CredentialProcess {
        #[arg(long)]
        profile: String,
    },
    /// Write (or update) `[profile NAME]` in the AWS config file so the AWS CLI and SDKs get
    /// credentials from Brevet.
    Configure {
        name: String,
        /// The Brevet resource, e.g. aws:prod-bucket.
        #[arg(long)]
        resource: String,
        /// The Brevet access profile, e.g. aws.s3-read.
        #[arg(long = "access-profile")]
        access_profile: String,
        #[arg(long)]
        region: Option<String>,
    },
    /// Run a command with the profile's credentials in its environment.
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn config_path() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("AWS_CONFIG_FILE") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").context("HOME is not set; set AWS_CONFIG_FILE")?;
    Ok(PathBuf::from(home).join(".aws").join("config"))
}

/// The section header of an AWS config profile: `[default]` for `default`, else `[profile NAME]`.
fn header(name: &str) -> String {
    if name == "default" {
        "[default]".to_owned()
    } else {
        format!("[profile {name}]")
    }
}

/// AWS profile names written by `configure` are kept to characters that need no quoting in the
/// config file or a shell command line.
fn check_profile_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("AWS profile name `{name}`: use letters, digits, `-`, `_` and `.` only");
    }
    Ok(())
}

/// Key/value lines of the profile's section.
fn section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let header = header(name);
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.trim_start().starts_with('['))
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect(),
    )
}

/// Replaces (or appends) one section, keeping the rest of the file as it was. A small edit by
/// hand: INI crates rewrite the whole file, losing the user's comments and layout.
fn replace_section(text: &str, name: &str, body: &str) -> String {
    let header = header(name);
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skipping = t == header;
            if skipping {
                out += body;
                replaced = true;
                continue;
            }
        }
        if !skipping {
            out += line;
            out.push('\n');
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out += body;
    }
    out
}

async fn credentials(client: &Client, name: &str) -> Result<AwsProcessCredentials> {
    let path = config_path()?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let Some(kv) = section(&text, name) else {
        bail!("no [profile {name}] in {}; run `brevet aws configure {name} --resource … --access-profile …`", path.display());
    };
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let (Some(resource), Some(profile)) = (get("brevet_resource"), get("brevet_access_profile"))
    else {
        bail!(
            "[profile {name}] in {} was not written by `brevet aws configure`",
            path.display()
        );
    };
    let grants: Vec<RequestView> = client.get("/v1/grants").await?;
    let Some(id) = grants
        .iter()
        .find(|g| g.state == RequestState::Active && g.resource == resource && g.profile == profile)
        .map(|g| g.id.clone())
    else {
        bail!(
            "no active grant for {profile} on {resource}; ask for one: brevet request {profile} --resource {resource} --for 1h --reason \"…\" --wait"
        );
    };
    let c: CredentialView = client
        .post(
            &format!("/v1/grants/{id}/credentials"),
            &CredentialBody::default(),
        )
        .await?;
    if c.kind != CredentialKind::AwsCredentialProcess {
        bail!(
            "{profile} on {resource} does not hand out AWS session credentials (it gives {})",
            c.kind
        );
    }
    serde_json::from_str(&c.secret).context("the credential is not credential_process JSON")
}

pub async fn run(client: &Client, cmd: AwsCommand) -> Result<ExitCode> {
    match cmd {
        AwsCommand::CredentialProcess { profile } => {
            let v = credentials(client, &profile).await?;
            println!("{}", serde_json::to_string(&v)?);
        }
        AwsCommand::Configure {
            name,
            resource,
            access_profile,
            region,
        } => {
            check_profile_name(&name)?;
            let path = config_path()?;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let exe = std::env::current_exe().context("locating the brevet binary")?;
            let exe = exe.display().to_string();
            if exe.contains('"') || exe.contains('\n') {
                bail!("the brevet binary's path {exe:?} cannot be written into credential_process");
            }
            // The AWS CLI splits credential_process like a shell: quote the path (it may hold spaces).
            let mut body = format!(
                "{}\ncredential_process = \"{exe}\" aws credential-process --profile {name}\nbrevet_resource = {resource}\nbrevet_access_profile = {access_profile}\n",
                header(&name)
            );
            if let Some(r) = region {
                body += &format!("region = {r}\n");
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, replace_section(&text, &name, &body))?;
            eprintln!(
                "wrote [profile {name}] to {}; use it with: aws --profile {name} …",
                path.display()
            );
        }
        AwsCommand::Exec { name, command } => {
            let v = credentials(client, &name).await?;
            let status = std::process::Command::new(&command[0])
                .args(&command[1..])
                .env("AWS_ACCESS_KEY_ID", &v.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &v.secret_access_key)
                .env("AWS_SESSION_TOKEN", &v.session_token)
                .env("AWS_CREDENTIAL_EXPIRATION", &v.expiration)
                .env_remove("AWS_PROFILE")
                .status()
                .with_context(|| format!("running {}", command[0]))?;
            return Ok(ExitCode::from(
                status.code().unwrap_or(255).clamp(0, 255) as u8
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place() {
        let text = "# mine\n[default]\nregion = eu-west-1\n\n[profile old]\nregion = x\n\n[profile keep]\nregion = y\n";
        let out = replace_section(text, "old", "[profile old]\nregion = z\n\n");
        assert!(out.starts_with("# mine\n[default]\nregion = eu-west-1\n"));
        assert!(out.contains("[profile old]\nregion = z\n") && !out.contains("region = x"));
        assert!(out.contains("[profile keep]\nregion = y"));
        let added = replace_section(text, "new", "[profile new]\nregion = n\n");
        assert!(
            added.ends_with("[profile new]\nregion = n\n")
                && added.contains("[profile old]\nregion = x")
        );
        assert_eq!(
            section(&added, "keep").unwrap(),
            vec![("region".to_string(), "y".to_string())]
        );
        assert_eq!(section(&added, "default").unwrap()[0].1, "eu-west-1");
        assert!(section(&added, "missing").is_none());
        // `default` is `[default]`, written and read alike.
        let d = replace_section(text, "default", "[default]\nregion = d\n\n");
        assert_eq!(d.matches("[default]").count(), 1, "{d}");
        assert_eq!(section(&d, "default").unwrap()[0].1, "d");
    }

    #[test]
    fn profile_names_need_no_quoting() {
        for ok in ["dev", "prod-ro", "a_b.c", "default"] {
            assert!(check_profile_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x]", "p\nq", "a=b", "sémantique"] {
            let e = check_profile_name(bad).unwrap_err().to_string();
            assert!(e.contains("letters, digits"), "{bad}: {e}");
        }
    }
}
