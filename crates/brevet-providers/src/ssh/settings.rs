//! `[providers.NAME]` with `kind = "ssh"`, and its hosts' tables: parsed here, with errors named
//! by their full path.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use brevet_config::{field, ConfigError, DurationOrZero, ProviderTables};
use brevet_core::ProfileName;
use serde::Deserialize;

use super::{load_or_create_ca, SshConfig, SshHost, SshProfile, SshProvider, StateLedger};
use crate::{
    registry::{BuildContext, ProviderKind, ProviderSetup},
    Provider, ProviderError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    ca_key_file: PathBuf,
    krl_file: Option<PathBuf>,
    #[serde(default = "backdate")]
    backdate: DurationOrZero,
    /// How long revoked serials stay in the KRL past expiry (hosts' clock skew).
    #[serde(default = "krl_margin")]
    krl_margin: DurationOrZero,
    profiles: BTreeMap<String, RawProfile>,
}

fn backdate() -> DurationOrZero {
    DurationOrZero(Duration::from_secs(60))
}
fn krl_margin() -> DurationOrZero {
    DurationOrZero(Duration::from_secs(600))
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    principals: Vec<String>,
    #[serde(default = "yes")]
    permit_pty: bool,
    #[serde(default)]
    port_forwarding: bool,
    #[serde(default)]
    agent_forwarding: bool,
    #[serde(default)]
    x11_forwarding: bool,
    force_command: Option<String>,
    source_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    host: String,
    #[serde(default = "port22")]
    port: u16,
}

fn port22() -> u16 {
    22
}

/// Parses and checks one instance's tables.
pub fn parse(t: &ProviderTables) -> Result<SshConfig, ConfigError> {
    let raw: Raw = t.parse()?;
    let mut profiles = BTreeMap::new();
    for (p, rp) in raw.profiles {
        let pn = ProfileName::parse(&p)
            .map_err(|e| field(t.at(&format!("profiles.\"{p}\"")), e.to_string()))?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        };
        if rp.principals.is_empty() || !rp.principals.iter().all(|s| ok(s)) {
            return Err(field(
                t.at(&format!("profiles.\"{p}\".principals")),
                "list one or more principal names (letters, digits, . _ - @), e.g. [\"deploy\"]",
            ));
        }
        profiles.insert(
            pn,
            SshProfile {
                principals: rp.principals,
                permit_pty: rp.permit_pty,
                port_forwarding: rp.port_forwarding,
                agent_forwarding: rp.agent_forwarding,
                x11_forwarding: rp.x11_forwarding,
                force_command: rp.force_command,
                source_address: rp.source_address,
            },
        );
    }
    let resources = t
        .parse_resources::<RawHost>()?
        .into_iter()
        .map(|(id, h)| {
            (
                id,
                SshHost {
                    host: h.host,
                    port: h.port,
                },
            )
        })
        .collect();
    Ok(SshConfig {
        ca_key_file: t.path(&raw.ca_key_file),
        krl_file: raw.krl_file.map(|f| t.path(&f)),
        backdate: raw.backdate.0,
        krl_margin: raw.krl_margin.0,
        profiles,
        resources,
    })
}

/// `kind = "ssh"`.
pub struct Kind;

#[derive(Debug)]
struct Setup(SshConfig);

impl ProviderKind for Kind {
    fn kind(&self) -> &'static str {
        "ssh"
    }
    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError> {
        Ok(Arc::new(Setup(parse(tables)?)))
    }
}

#[async_trait]
impl ProviderSetup for Setup {
    async fn build(&self, cx: BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let (ca, created) = load_or_create_ca(&self.0.ca_key_file)?;
        if created {
            tracing::warn!(provider = %cx.name, path = %self.0.ca_key_file.display(), "generated a new SSH user CA; publish it with `brevet ssh-ca public-key`");
        }
        let ledger = Arc::new(StateLedger(cx.state));
        Ok(Arc::new(SshProvider::new(
            &cx.name,
            self.0.clone(),
            ca,
            ledger,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(provider: &str, resources: &[(&str, &str)]) -> ProviderTables {
        ProviderTables {
            base: "/etc/brevet".into(),
            ..ProviderTables::from_toml("ssh", provider, resources).unwrap()
        }
    }

    const OK: &str = "ca_key_file = \"ca\"\n[profiles.\"ssh.login\"]\nprincipals = [\"ops\"]";

    #[test]
    fn a_valid_instance_parses_with_paths_under_the_config_directory() {
        let c = parse(&tables(OK, &[("box", "host = \"10.0.0.1\"")])).unwrap();
        assert_eq!(c.ca_key_file, PathBuf::from("/etc/brevet/ca"));
        assert_eq!(c.resources["box"].port, 22);
        assert_eq!(c.krl_margin, Duration::from_secs(600));
    }

    #[test]
    fn errors_name_the_field_by_its_full_path() {
        for (provider, resources, at, says) in [
            (
                "ca_key_file = \"ca\"\n[profiles.\"ssh.login\"]\nprincipals = [\"ops;rm\"]",
                vec![],
                "providers.ssh.profiles.\"ssh.login\".principals",
                "principal names",
            ),
            (
                "ca_key_file = \"ca\"\nkrl_margin = \"soon\"\n[profiles.\"ssh.login\"]\nprincipals = [\"ops\"]",
                vec![],
                "providers.ssh.krl_margin",
                "not a duration",
            ),
            (
                OK,
                vec![("box", "host = \"h\"\nport = \"x\"")],
                "resources.\"ssh:box\".port",
                "invalid type",
            ),
        ] {
            let e = parse(&tables(provider, &resources)).unwrap_err().to_string();
            assert!(e.contains(&format!("`{at}`")) && e.contains(says), "{at}: {e}");
        }
    }
}
