use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::{bail, Context, Result};
use brevet_audit::{Anchor, AuditEvent, Checkpoint, PublicKey, Verifier};
use rand::RngCore;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    client::{ApiFailure, Client},
    output, ssh, AuditCommand, Cli, Command, PolicyCommand, RequestArgs, SshCaCommand,
    TokenCommand,
};

/// Exit codes beyond success/failure, so scripts can tell outcomes apart.
pub const DENIED: u8 = 2;
pub const EXPIRED: u8 = 3;

fn print(json_mode: bool, v: &Value, human: impl FnOnce(&Value) -> String) {
    if json_mode {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", human(v));
    }
}

fn list(json_mode: bool, v: &Value) {
    print(json_mode, v, |v| {
        let rows: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(output::request_line).collect())
            .unwrap_or_default();
        if rows.is_empty() {
            "nothing to show".into()
        } else {
            rows.join("\n")
        }
    });
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let token = cli
        .token
        .clone()
        .or_else(|| crate::login::saved_token(&cli.url));
    let client = Client::new(&cli.url, token)?;
    let j = cli.json;
    match cli.command {
        Command::Login { timeout } => crate::login::login(&cli.url, j, timeout.into()).await?,
        Command::Logout => crate::login::logout(&cli.url).await?,
        Command::Server { config } => {
            init_tracing();
            let config = brevet_server::Config::load(&config)?;
            brevet_server::serve(config, shutdown_signal()).await?;
        }
        Command::Request(args) => return request(&client, args, j).await,
        Command::Requests { pending, all } => {
            let v: Value = client
                .call(
                    Method::GET,
                    &format!("/v1/requests?pending={pending}&all={all}"),
                    None,
                )
                .await?;
            list(j, &v);
        }
        Command::Show { id } => {
            let v: Value = client
                .call(Method::GET, &format!("/v1/requests/{id}"), None)
                .await?;
            print(j, &v, output::request_detail);
        }
        Command::Approve { id, comment } => decide(&client, j, &id, "approve", comment).await?,
        Command::Deny { id, comment } => decide(&client, j, &id, "deny", comment).await?,
        Command::Cancel { id } => {
            let v: Value = client
                .call(Method::POST, &format!("/v1/requests/{id}/cancel"), None)
                .await?;
            print(j, &v, output::request_line);
        }
        Command::Activate { id, public_key } => {
            let body = json!({"public_key": read_key(public_key.as_deref())?});
            let v: Value = client
                .call(
                    Method::POST,
                    &format!("/v1/requests/{id}/activate"),
                    Some(body),
                )
                .await?;
            print(j, &v, |v| {
                format!(
                    "{}\n{}",
                    output::request_line(&v["grant"]),
                    output::credential(&v["credential"])
                )
            });
        }
        Command::Grants { all } => {
            let v: Value = client
                .call(Method::GET, &format!("/v1/grants?all={all}"), None)
                .await?;
            list(j, &v);
        }
        Command::Revoke { id, reason } => {
            let v: Value = client
                .call(
                    Method::POST,
                    &format!("/v1/grants/{id}/revoke"),
                    Some(json!({"reason": reason})),
                )
                .await?;
            print(j, &v, output::request_detail);
            if v["state"] != "revoked" {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Extend { id, duration } => {
            let v: Value = client
                .call(
                    Method::POST,
                    &format!("/v1/grants/{id}/extend"),
                    Some(json!({"duration": duration})),
                )
                .await?;
            print(j, &v, |v| format!("extension {}", output::request_line(v)));
        }
        Command::Credentials { id, public_key } => {
            let body = json!({"public_key": read_key(public_key.as_deref())?});
            let v: Value = client
                .call(
                    Method::POST,
                    &format!("/v1/grants/{id}/credentials"),
                    Some(body),
                )
                .await?;
            print(j, &v, output::credential);
        }
        Command::Policy(PolicyCommand::Test {
            config,
            principal,
            groups,
            profile,
            resource,
            duration,
            reason,
            ticket,
            expect,
        }) => {
            let v = match config {
                Some(path) => policy_test_offline(
                    &path, principal, groups, profile, resource, duration, reason, ticket,
                )?,
                None => {
                    let body = json!({"principal": principal, "groups": groups, "profile": profile, "resource": resource, "duration": duration, "reason": reason, "ticket": ticket});
                    client
                        .call(Method::POST, "/v1/policy/test", Some(body))
                        .await?
                }
            };
            print(j, &v, |v| match v["outcome"].as_str() {
                Some("allow") => format!(
                    "allow by policy `{}`: {} approval(s) needed, at most {}",
                    v["policy"].as_str().unwrap_or("?"),
                    v["approvals_required"],
                    v["max_duration"].as_str().unwrap_or("?")
                ),
                _ => format!("deny: {}", v["reason"].as_str().unwrap_or("?")),
            });
            let outcome = v["outcome"].as_str().unwrap_or("deny");
            match expect {
                Some(want) if want != outcome => {
                    eprintln!("expected {want}, got {outcome}");
                    return Ok(ExitCode::from(DENIED));
                }
                None if outcome != "allow" => return Ok(ExitCode::from(DENIED)),
                _ => {}
            }
        }
        Command::Audit(AuditCommand::Verify {
            file,
            head,
            checkpoint,
            public_key,
        }) => {
            let anchor = match (head, checkpoint) {
                (Some(_), Some(_)) => bail!("give --head or --checkpoint, not both"),
                (Some(h), None) => Some(parse_head(&h)?),
                (None, Some(c)) => {
                    Some(checked_checkpoint(&client, &c, public_key.as_deref()).await?)
                }
                (None, None) => None,
            };
            let report = match (file, anchor) {
                (Some(path), anchor) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
                    } else {
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?
                    };
                    verify_lines(&path.display().to_string(), &text, anchor)?
                }
                (None, Some(anchor)) => {
                    let text = client
                        .send(Method::GET, "/v1/audit/export?format=jsonl", None)
                        .await?
                        .text()
                        .await
                        .context("reading the export stream")?;
                    verify_lines("the server's export", &text, Some(anchor))?
                }
                (None, None) => client.call(Method::GET, "/v1/audit/verify", None).await?,
            };
            print(j, &report, |r| {
                if r["ok"] == true {
                    let anchored = match r["anchored_at"].as_i64() {
                        Some(seq) => format!("; reaches the signed/expected event {seq}"),
                        None => String::new(),
                    };
                    format!(
                        "audit log intact: {} events, head {} {}{anchored}",
                        r["events"],
                        r["last_seq"],
                        r["last_hash"].as_str().unwrap_or("")
                    )
                } else {
                    let problems: Vec<String> = r["problems"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|p| {
                                    format!(
                                        "  event {}: {}",
                                        p["seq"],
                                        p["what"].as_str().unwrap_or("")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "AUDIT LOG TAMPERED ({} events read):\n{}",
                        r["events"],
                        problems.join("\n")
                    )
                }
            });
            if report["ok"] != true {
                return Ok(ExitCode::from(DENIED));
            }
        }
        Command::Audit(AuditCommand::Checkpoint { latest }) => {
            let method = if latest { Method::GET } else { Method::POST };
            let view: Value = client.call(method, "/v1/audit/checkpoint", None).await?;
            let cp = &view["checkpoint"];
            if j {
                // The checkpoint itself, so `> cp.json` gives what `verify --checkpoint` reads.
                if cp.is_null() {
                    bail!("no checkpoint yet: the audit log is empty");
                }
                println!("{}", serde_json::to_string_pretty(cp)?);
            } else if cp.is_null() {
                println!(
                    "no checkpoint yet: the audit log is empty\npublic key: {}",
                    view["public_key"].as_str().unwrap_or("")
                );
            } else {
                println!(
                    "checkpoint: event {}, hash {}, signed at {}\npublic key: {}\nsignature: {}\nkeep a copy (brevet audit verify --checkpoint reads it):\n{}",
                    cp["seq"],
                    cp["hash"].as_str().unwrap_or(""),
                    cp["signed_at"].as_str().unwrap_or(""),
                    view["public_key"].as_str().unwrap_or(""),
                    cp["signature"].as_str().unwrap_or(""),
                    serde_json::to_string(cp)?
                );
            }
        }
        Command::Audit(AuditCommand::Export { format }) => {
            let mut resp = client
                .send(
                    Method::GET,
                    &format!("/v1/audit/export?format={format}"),
                    None,
                )
                .await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = resp.chunk().await.context("reading the export stream")? {
                out.write_all(&chunk)?;
            }
        }
        Command::Token(TokenCommand::New) => {
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let token = format!("brv_{}", hex::encode(raw));
            let hash = hex::encode(brevet_server::auth::hash_token(&token));
            print(j, &json!({"token": token, "token_sha256": hash}), |v| {
                format!(
                    "token (give it to its owner; it is not stored anywhere):\n  {}\nput this in the principal's config entry:\n  token_sha256 = \"{}\"",
                    v["token"].as_str().unwrap_or(""),
                    v["token_sha256"].as_str().unwrap_or("")
                )
            });
        }
        Command::Kill {
            principal,
            all,
            reason,
        } => {
            let body = json!({"principal": principal, "all": all, "reason": reason});
            let v: Value = client.call(Method::POST, "/v1/kill", Some(body)).await?;
            print(j, &v, output::kill_report);
            if v["retrying"].as_u64().unwrap_or(0) > 0 {
                return Ok(ExitCode::from(DENIED));
            }
        }
        Command::Unlock { principal } => {
            let v: Value = client
                .call(
                    Method::POST,
                    "/v1/unlock",
                    Some(json!({"principal": principal})),
                )
                .await?;
            print(j, &v, |v| {
                format!(
                    "unlocked `{principal}`; locks now: {}",
                    v.as_array().map_or(0, |a| a.len())
                )
            });
        }
        Command::Locks => {
            let v: Value = client.call(Method::GET, "/v1/locks", None).await?;
            print(j, &v, |v| {
                let rows: Vec<String> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|l| {
                                format!(
                                    "{}  locked by {} at {}: {}",
                                    l["principal"].as_str().unwrap_or(""),
                                    l["locked_by"].as_str().unwrap_or(""),
                                    l["locked_at"].as_str().unwrap_or(""),
                                    l["reason"].as_str().unwrap_or("")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if rows.is_empty() {
                    "no locks".into()
                } else {
                    rows.join("\n")
                }
            });
        }
        Command::Deliveries {
            state,
            subscriber,
            request,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (k, v) in [
                ("state", state),
                ("subscriber", subscriber),
                ("request", request),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", output::query_escape(&v)));
                }
            }
            let v: Value = client
                .call(
                    Method::GET,
                    &format!("/v1/deliveries?{}", query.join("&")),
                    None,
                )
                .await?;
            print(j, &v, output::deliveries);
        }
        Command::Aws(cmd) => return crate::aws::run(&client, cmd).await,
        Command::SshCa(SshCaCommand::PublicKey { provider }) => {
            let path = match provider {
                Some(p) => format!("/v1/ssh/ca?provider={p}"),
                None => "/v1/ssh/ca".into(),
            };
            let text = client.send(Method::GET, &path, None).await?.text().await?;
            print!("{text}");
        }
        Command::SshCert(args) => {
            return match ssh::obtain(&client, &args).await? {
                Ok(got) => {
                    let v = got.keep();
                    print(j, &v, output::ssh_cert);
                    Ok(ExitCode::SUCCESS)
                }
                Err(code) => Ok(ExitCode::from(code)),
            };
        }
        Command::Ssh {
            args,
            ssh_options,
            command,
        } => {
            return match ssh::obtain(&client, &args).await? {
                Ok(got) => got.run_ssh(&ssh_options, &command),
                Err(code) => Ok(ExitCode::from(code)),
            };
        }
        Command::Reconcile => {
            let v: Value = client.call(Method::POST, "/v1/reconcile", None).await?;
            print(j, &v, |v| {
                serde_json::to_string_pretty(v).unwrap_or_default()
            });
        }
        Command::Whoami => {
            let v: Value = client.call(Method::GET, "/v1/whoami", None).await?;
            print(j, &v, |v| {
                format!(
                    "{} groups={} roles={}",
                    v["id"].as_str().unwrap_or(""),
                    v["groups"],
                    v["roles"]
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn request(client: &Client, a: RequestArgs, j: bool) -> Result<ExitCode> {
    let body = json!({"profile": a.profile, "resource": a.resource, "duration": a.duration, "reason": a.reason, "ticket": a.ticket});
    let created: Value = match client.call(Method::POST, "/v1/requests", Some(body)).await {
        Ok(v) => v,
        Err(e) => {
            if let Some(f) = e.downcast_ref::<ApiFailure>() {
                if f.code == "policy_denied" {
                    eprintln!("refused: {}", f.message);
                    return Ok(ExitCode::from(DENIED));
                }
            }
            return Err(e);
        }
    };
    if !a.wait {
        print(j, &created, output::request_line);
        return Ok(ExitCode::SUCCESS);
    }
    let id = created["id"]
        .as_str()
        .context("the server's answer has no request id")?
        .to_owned();
    eprintln!("request {id}: {}", created["state"].as_str().unwrap_or("?"));
    if let Err(code) = wait_for_approval(client, &id).await? {
        return Ok(ExitCode::from(code));
    }
    let v: Value = client
        .call(Method::POST, &format!("/v1/requests/{id}/activate"), None)
        .await?;
    print(j, &v, |v| {
        format!(
            "{}\n{}",
            output::request_line(&v["grant"]),
            output::credential(&v["credential"])
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Polls a request until it is approved (`Ok(Ok(()))`), or ends without approval (`Ok(Err(exit
/// code))`), showing progress on stderr.
pub async fn wait_for_approval(client: &Client, id: &str) -> Result<Result<(), u8>> {
    let mut last = String::new();
    loop {
        let r: Value = client
            .call(Method::GET, &format!("/v1/requests/{id}"), None)
            .await?;
        let state = r["state"].as_str().unwrap_or("").to_owned();
        let progress = format!("{state} {}", r["approvals"]);
        if progress != last {
            match state.as_str() {
                "pending" => eprintln!(
                    "waiting for approval ({}/{})…",
                    r["approvals"].as_array().map_or(0, |a| a.len()),
                    r["approvals_required"]
                ),
                other => eprintln!("{other}"),
            }
            last = progress;
        }
        match state.as_str() {
            "pending" => tokio::time::sleep(Duration::from_millis(500)).await,
            "approved" => return Ok(Ok(())),
            "denied" | "cancelled" => {
                eprintln!("request {id} was {state}");
                return Ok(Err(DENIED));
            }
            "expired" => {
                eprintln!("request {id} expired before it was approved");
                return Ok(Err(EXPIRED));
            }
            other => bail!("request {id} is unexpectedly {other}"),
        }
    }
}

/// Records an approver's decision (`approve` or `deny`).
async fn decide(
    client: &Client,
    j: bool,
    id: &str,
    verb: &str,
    comment: Option<String>,
) -> Result<()> {
    let body = json!({"comment": comment});
    let v: Value = client
        .call(
            Method::POST,
            &format!("/v1/requests/{id}/{verb}"),
            Some(body),
        )
        .await?;
    print(j, &v, output::request_line);
    Ok(())
}

/// Reads a public key file for SSH grants.
fn read_key(path: Option<&std::path::Path>) -> Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p).with_context(|| format!("reading public key {}", p.display()))
    })
    .transpose()
    .map(|k| k.map(|k| k.trim().to_owned()))
}

#[allow(clippy::too_many_arguments)]
fn policy_test_offline(
    path: &std::path::Path,
    principal: Option<String>,
    groups: Option<Vec<String>>,
    profile: String,
    resource: String,
    duration: String,
    reason: Option<String>,
    ticket: Option<String>,
) -> Result<Value> {
    let config = brevet_server::Config::load(path)?;
    let policy = brevet_server::load_policy(&config)?;
    let principal = principal.context("--principal is required with --config")?;
    let id = brevet_core::PrincipalId::parse(&principal)?;
    let groups: std::collections::BTreeSet<String> = match groups {
        Some(g) => g.into_iter().collect(),
        None => config
            .principals
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.groups.clone())
            .unwrap_or_default(),
    };
    let rid = brevet_core::ResourceId::parse(&resource)?;
    let rc = config
        .resources
        .get(&rid)
        .with_context(|| format!("unknown resource `{rid}`; it is not in {}", path.display()))?;
    let profile = brevet_core::ProfileName::parse(&profile)?;
    let d = policy.evaluate_request(&brevet_policy::RequestQuery {
        principal: brevet_policy::Subject {
            id: &id,
            groups: &groups,
        },
        resource: brevet_policy::ResourceFacts {
            id: &rc.id,
            kind: rc.kind,
            tags: &rc.tags,
        },
        profile: &profile,
        duration: brevet_core::GrantDuration::parse(&duration)?,
        reason: reason.as_deref(),
        ticket: ticket.as_deref(),
        extension: false,
    });
    Ok(serde_json::to_value(
        brevet_server::api::PolicyTestView::from(d),
    )?)
}

fn verify_lines(source: &str, text: &str, anchor: Option<Anchor>) -> Result<Value> {
    let mut v = Verifier::new();
    if let Some(a) = anchor {
        v = v.anchored(a);
    }
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: AuditEvent = serde_json::from_str(line)
            .with_context(|| format!("{source} line {} is not an audit event", n + 1))?;
        v.push(&e);
    }
    Ok(serde_json::to_value(v.finish(None))?)
}

/// `--head SEQ:HASH`.
fn parse_head(text: &str) -> Result<Anchor> {
    let bad = || {
        anyhow::anyhow!(
            "--head must be SEQ:HASH, e.g. 42:3f5a…(64 hex characters), as `brevet audit verify` prints the head; got `{text}`"
        )
    };
    let (seq, hash) = text.split_once(':').ok_or_else(bad)?;
    let seq: i64 = seq.trim().parse().map_err(|_| bad())?;
    let hash = hash.trim().to_ascii_lowercase();
    if seq < 1 || hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(Anchor {
        seq,
        hash,
        source: "the expected head given with --head".into(),
    })
}

/// Reads `--checkpoint` (a file or inline JSON) and checks its signature with the pinned key,
/// or else with the key the server reports.
async fn checked_checkpoint(
    client: &Client,
    arg: &str,
    public_key: Option<&str>,
) -> Result<Anchor> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading --checkpoint {arg}"))?
    };
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("--checkpoint {arg} is not JSON"))?;
    // Also accept the API's answer, which wraps the checkpoint.
    let v = if v["checkpoint"].is_object() {
        v["checkpoint"].clone()
    } else {
        v
    };
    let cp: Checkpoint = serde_json::from_value(v).with_context(|| {
        format!("--checkpoint {arg} is not a checkpoint: it needs seq, hash, signed_at, public_key and signature")
    })?;
    let key = match public_key {
        Some(k) if k.trim().len() == 64 => PublicKey::parse(k, "--public-key")?,
        Some(path) => {
            let k = std::fs::read_to_string(path)
                .with_context(|| format!("reading --public-key {path}"))?;
            PublicKey::parse(&k, &format!("--public-key file {path}"))?
        }
        None => {
            let view: Value = client
                .call(Method::GET, "/v1/audit/checkpoint", None)
                .await
                .context("asking the server for its audit public key (or pass --public-key)")?;
            PublicKey::parse(
                view["public_key"].as_str().unwrap_or(""),
                "the server's public key",
            )?
        }
    };
    cp.verify(&key)
        .context("refusing --checkpoint: its signature does not verify")?;
    Ok(cp.anchor())
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("BREVET_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
