//! `brevet login` / `brevet logout`: single sign-on for the CLI. The server runs the OIDC device
//! flow; the CLI shows the code and the URL, polls, and keeps the session token in a file only
//! its user can read (`$BREVET_SESSION_FILE`, or `~/.config/brevet/sessions.json`), one entry
//! per server URL. `BREVET_TOKEN` / `--token`, when given, take precedence.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use brevet_wire::{DeviceLogin, DevicePollBody, LoginResult};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::Client;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    pub token: String,
    pub principal: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

fn sessions_file() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BREVET_SESSION_FILE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("brevet").join("sessions.json"))
}

fn load_all() -> BTreeMap<String, SavedSession> {
    sessions_file()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save_all(all: &BTreeMap<String, SavedSession>) -> Result<PathBuf> {
    let path = sessions_file()
        .context("cannot tell where to keep the session: set HOME or BREVET_SESSION_FILE")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(all)?;
    // Written to a private temporary file and renamed, so the token is never readable by others.
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn key(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// The saved, unexpired session token for this server, if any.
pub fn saved_token(url: &str) -> Option<String> {
    load_all()
        .remove(&key(url))
        .filter(|s| s.expires_at > chrono::Utc::now())
        .map(|s| s.token)
}

pub async fn login(url: &str, json_out: bool, timeout: Duration) -> Result<()> {
    let anon = Client::new(url, None)?;
    let start: DeviceLogin = anon.post_empty("/v1/login/device").await?;
    let mut interval = Duration::from_secs(start.interval.max(1));
    if json_out {
        println!(
            "{}",
            json!({"user_code": start.user_code, "verification_uri": start.verification_uri,
                   "verification_uri_complete": start.verification_uri_complete})
        );
    } else {
        eprintln!(
            "To sign in, open {} and enter the code {}",
            start.verification_uri, start.user_code
        );
        if let Some(c) = &start.verification_uri_complete {
            eprintln!("(or open {c})");
        }
        eprintln!("Waiting for you to finish signing in…");
    }
    let deadline = Instant::now() + timeout;
    let poll = DevicePollBody {
        login_id: start.login_id.clone(),
    };
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            bail!("gave up waiting for the sign-in; run `brevet login` again");
        }
        let resp = match anon
            .send(Method::POST, "/v1/login/device/poll", Some(&poll))
            .await
        {
            Ok(r) => r,
            // The identity provider could not be reached for a moment: the sign-in is still
            // open at Brevet, so keep polling until the deadline.
            Err(e)
                if e.downcast_ref::<crate::client::ApiFailure>()
                    .is_some_and(|f| f.status == reqwest::StatusCode::BAD_GATEWAY) =>
            {
                eprintln!("{e:#}; still waiting…");
                continue;
            }
            Err(e) => return Err(e),
        };
        let accepted = resp.status() == reqwest::StatusCode::ACCEPTED;
        let v: LoginResult = crate::client::read(resp).await?;
        if accepted {
            if v.status == "slow_down" {
                interval += Duration::from_secs(5);
            }
            continue;
        }
        let session = SavedSession {
            token: v.token.clone().context("the server sent no token")?,
            principal: v.principal.clone().unwrap_or_default(),
            expires_at: v.expires_at.context("the server sent no expiry")?,
        };
        let mut all = load_all();
        all.insert(key(url), session.clone());
        let path = save_all(&all)?;
        if json_out {
            println!(
                "{}",
                json!({"principal": session.principal, "groups": v.groups, "roles": v.roles,
                       "expires_at": session.expires_at, "session_file": path})
            );
        } else {
            println!(
                "Signed in as {} (roles: {}; groups: {}) until {}.",
                session.principal,
                v.roles.join(", "),
                v.groups.join(", "),
                session.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        return Ok(());
    }
}

pub async fn logout(url: &str) -> Result<()> {
    let mut all = load_all();
    let Some(s) = all.remove(&key(url)) else {
        println!("Not signed in to {url}.");
        return Ok(());
    };
    let client = Client::new(url, Some(s.token))?;
    // Ends the session at the server; forget it locally either way.
    let ended = client.send(Method::POST, "/v1/logout", None::<&()>).await;
    save_all(&all)?;
    match ended {
        Ok(_) => println!("Signed out of {url}."),
        Err(e) => println!("Forgot the local session; the server said: {e}"),
    }
    Ok(())
}
