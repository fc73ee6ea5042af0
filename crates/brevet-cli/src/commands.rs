use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::{bail, Context, Result};
use brevet_audit::VerifyReport;
use brevet_audit::{Anchor, AuditEvent, Checkpoint, PublicKey, Verifier};
use brevet_core::RequestState;
use brevet_wire::{
    ActivatedView, CheckpointView, CreateRequest, CredentialBody, CredentialView, Decision,
    DeliveryView, ExtendBody, KillBody, KillReport, LockView, PolicyTestBody, PolicyTestView,
    ReconcileReport, RequestView, RevokeBody, UnlockBody, WhoAmI,
};
use rand::RngCore;
use serde::Serialize;
use serde_json::json;

use crate::{
    client::{ApiFailure, Client},
    output, ssh, AuditCommand, Cli, Command, PolicyCommand, RequestArgs, SshCaCommand,
    TokenCommand,
};

/// Exit codes beyond success/failure, so scripts can tell outcomes apart.
pub const DENIED: u8 = 2;
pub const EXPIRED: u8 = 3;

/// Prints an answer: as JSON with `--json` (the wire type as the server wrote it), else as text.
pub(crate) fn print<T: Serialize>(json_mode: bool, v: &T, human: impl FnOnce(&T) -> String) {
    if json_mode {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", human(v));
    }
}

/// `path` with the page asked for.
fn paged(mut path: String, page: &crate::PageArgs) -> String {
    if let Some(n) = page.limit {
        path += &format!("&limit={n}");
    }
    if let Some(c) = &page.cursor {
        path += &format!("&cursor={}", output::query_escape(c));
    }
    path
}

/// Says on stderr (stdout stays the list, or its JSON) how to get the next page, if any.
fn more(next: Option<String>, what: &str) {
    if let Some(c) = next {
        eprintln!("more {what}: run the same command with --cursor {c}");
    }
}

fn list(json_mode: bool, v: &[RequestView]) {
    print(json_mode, &v, |v| output::request_list(v));
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let token = cli
        .token
        .clone()
        .or_else(|| crate::login::saved_token(&cli.url));
    let client = Client::new(&cli.url, token)?;
    let j = cli.json;
    match cli.command {
        Command::Analyze(cmd) => return crate::analyze::run(cmd, j),
        Command::Catalog(cmd) => crate::catalog::catalog(&client, j, cmd).await?,
        Command::Profile(cmd) => crate::catalog::profile(&client, j, cmd).await?,
        Command::Login { timeout } => crate::login::login(&cli.url, j, timeout.into()).await?,
        Command::Logout => crate::login::logout(&cli.url).await?,
        Command::Server { config } => {
            let telemetry = crate::telemetry::init()?;
            let served = async {
                let config = brevet_server::Config::load(&config)?;
                brevet_server::serve(config, shutdown_signal()).await?;
                anyhow::Ok(())
            }
            .await;
            // After serving, so the spans of the last requests and background work are sent.
            telemetry.shutdown().await;
            served?;
        }
        Command::Request(args) => return request(&client, args, j).await,
        Command::Requests { pending, all, page } => {
            let (v, next) = client
                .get_page::<RequestView>(&paged(
                    format!("/v1/requests?pending={pending}&all={all}"),
                    &page,
                ))
                .await?;
            list(j, &v);
            more(next, "requests");
        }
        Command::Show { id } => {
            let v: RequestView = client.get(&format!("/v1/requests/{id}")).await?;
            print(j, &v, output::request_detail);
        }
        Command::Approve { id, comment } => decide(&client, j, &id, "approve", comment).await?,
        Command::Deny { id, comment } => decide(&client, j, &id, "deny", comment).await?,
        Command::Cancel { id } => {
            let v: RequestView = client
                .post_empty(&format!("/v1/requests/{id}/cancel"))
                .await?;
            print(j, &v, output::request_line);
        }
        Command::Activate { id, public_key } => {
            let body = CredentialBody {
                public_key: read_key(public_key.as_deref())?,
            };
            let v: ActivatedView = client
                .post(&format!("/v1/requests/{id}/activate"), &body)
                .await?;
            print(j, &v, activated);
        }
        Command::Grants { all, page } => {
            let (v, next) = client
                .get_page::<RequestView>(&paged(format!("/v1/grants?all={all}"), &page))
                .await?;
            list(j, &v);
            more(next, "grants");
        }
        Command::Revoke { id, reason } => {
            let v: RequestView = client
                .post(&format!("/v1/grants/{id}/revoke"), &RevokeBody { reason })
                .await?;
            print(j, &v, output::request_detail);
            if v.state != RequestState::Revoked {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Extend { id, duration } => {
            let v: RequestView = client
                .post(&format!("/v1/grants/{id}/extend"), &ExtendBody { duration })
                .await?;
            print(j, &v, |v| format!("extension {}", output::request_line(v)));
        }
        Command::Credentials { id, public_key } => {
            let body = CredentialBody {
                public_key: read_key(public_key.as_deref())?,
            };
            let v: CredentialView = client
                .post(&format!("/v1/grants/{id}/credentials"), &body)
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
                    let body = PolicyTestBody {
                        principal,
                        groups,
                        profile,
                        resource,
                        duration,
                        reason,
                        ticket,
                    };
                    client.post("/v1/policy/test", &body).await?
                }
            };
            print(j, &v, |v| match v.outcome.as_str() {
                "allow" => format!(
                    "allow by policy `{}`: {} approval(s) needed, at most {}",
                    v.policy.as_deref().unwrap_or("?"),
                    v.approvals_required.map_or("?".into(), |n| n.to_string()),
                    v.max_duration.as_deref().unwrap_or("?")
                ),
                _ => format!("deny: {}", v.reason.as_deref().unwrap_or("?")),
            });
            let outcome = v.outcome.as_str();
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
                        .get_text("/v1/audit/export?format=jsonl")
                        .await
                        .context("reading the export stream")?;
                    verify_lines("the server's export", &text, Some(anchor))?
                }
                (None, None) => client.get("/v1/audit/verify").await?,
            };
            print(j, &report, |r: &VerifyReport| {
                if r.ok {
                    let anchored = match r.anchored_at {
                        Some(seq) => format!("; reaches the signed/expected event {seq}"),
                        None => String::new(),
                    };
                    format!(
                        "audit log intact: {} events, head {} {}{anchored}",
                        r.events, r.last_seq, r.last_hash
                    )
                } else {
                    let problems: Vec<String> = r
                        .problems
                        .iter()
                        .map(|p| format!("  event {}: {}", p.seq, p.what))
                        .collect();
                    format!(
                        "AUDIT LOG TAMPERED ({} events read):\n{}",
                        r.events,
                        problems.join("\n")
                    )
                }
            });
            if !report.ok {
                return Ok(ExitCode::from(DENIED));
            }
        }
        Command::Audit(AuditCommand::Checkpoint { latest }) => {
            let view: CheckpointView = if latest {
                client.get("/v1/audit/checkpoint").await?
            } else {
                client.post_empty("/v1/audit/checkpoint").await?
            };
            match (&view.checkpoint, j) {
                // The checkpoint itself, so `> cp.json` gives what `verify --checkpoint` reads.
                (None, true) => bail!("no checkpoint yet: the audit log is empty"),
                (Some(cp), true) => println!("{}", serde_json::to_string_pretty(cp)?),
                (None, false) => println!(
                    "no checkpoint yet: the audit log is empty\npublic key: {}",
                    view.public_key
                ),
                (Some(cp), false) => println!(
                    "checkpoint: event {}, hash {}, signed at {}\npublic key: {}\nsignature: {}\nkeep a copy (brevet audit verify --checkpoint reads it):\n{}",
                    cp.seq,
                    cp.hash,
                    cp.signed_at,
                    view.public_key,
                    cp.signature,
                    serde_json::to_string(cp)?
                ),
            }
        }
        Command::Audit(AuditCommand::Export { format }) => {
            let mut resp = client
                .get_raw(&format!("/v1/audit/export?format={format}"))
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
            print(j, &json!({"token": token, "token_sha256": hash}), |_| {
                format!(
                    "token (give it to its owner; it is not stored anywhere):\n  {token}\nput this in the principal's config entry:\n  token_sha256 = \"{hash}\""
                )
            });
        }
        Command::Kill {
            principal,
            all,
            reason,
        } => {
            let body = KillBody {
                principal,
                all,
                reason,
            };
            let v: KillReport = client.post("/v1/kill", &body).await?;
            print(j, &v, output::kill_report);
            if v.retrying > 0 {
                return Ok(ExitCode::from(DENIED));
            }
        }
        Command::Unlock { principal } => {
            let body = UnlockBody {
                principal: principal.clone(),
            };
            let v: Vec<LockView> = client.post("/v1/unlock", &body).await?;
            print(j, &v, |v| {
                format!("unlocked `{principal}`; locks now: {}", v.len())
            });
        }
        Command::Locks => {
            let v: Vec<LockView> = client.get("/v1/locks").await?;
            print(j, &v, |v| output::locks(v));
        }
        Command::Deliveries {
            state,
            subscriber,
            request,
            limit,
            cursor,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(c) = &cursor {
                query.push(format!("cursor={}", output::query_escape(c)));
            }
            for (k, v) in [
                ("state", state),
                ("subscriber", subscriber),
                ("request", request),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", output::query_escape(&v)));
                }
            }
            let (v, next) = client
                .get_page::<DeliveryView>(&format!("/v1/deliveries?{}", query.join("&")))
                .await?;
            print(j, &v, |v| output::deliveries(v));
            more(next, "deliveries");
        }
        Command::Aws(cmd) => return crate::aws::run(&client, cmd).await,
        Command::SshCa(SshCaCommand::PublicKey { provider }) => {
            let path = match provider {
                Some(p) => format!("/v1/ssh/ca?provider={p}"),
                None => "/v1/ssh/ca".into(),
            };
            let text = client.get_text(&path).await?;
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
            let v: ReconcileReport = client.post_empty("/v1/reconcile").await?;
            print(j, &v, |v| {
                serde_json::to_string_pretty(v).unwrap_or_default()
            });
        }
        Command::Whoami => {
            let v: WhoAmI = client.get("/v1/whoami").await?;
            print(j, &v, |v| {
                format!(
                    "{} groups={} roles={}",
                    v.id,
                    serde_json::to_string(&v.groups).unwrap_or_default(),
                    serde_json::to_string(&v.roles).unwrap_or_default()
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn request(client: &Client, a: RequestArgs, j: bool) -> Result<ExitCode> {
    let body = CreateRequest {
        profile: a.profile,
        resource: a.resource,
        duration: a.duration,
        reason: a.reason,
        ticket: a.ticket,
    };
    let created: RequestView = match client.post("/v1/requests", &body).await {
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
    let id = created.id;
    eprintln!("request {id}: {}", created.state.as_str());
    if let Err(code) = wait_for_approval(client, &id).await? {
        return Ok(ExitCode::from(code));
    }
    let v: ActivatedView = client
        .post_empty(&format!("/v1/requests/{id}/activate"))
        .await?;
    print(j, &v, activated);
    Ok(ExitCode::SUCCESS)
}

fn activated(v: &ActivatedView) -> String {
    format!(
        "{}\n{}",
        output::request_line(&v.grant),
        output::credential(&v.credential)
    )
}

/// Polls a request until it is approved (`Ok(Ok(()))`), or ends without approval (`Ok(Err(exit
/// code))`), showing progress on stderr.
pub async fn wait_for_approval(client: &Client, id: &str) -> Result<Result<(), u8>> {
    let mut last = None;
    loop {
        let r: RequestView = client.get(&format!("/v1/requests/{id}")).await?;
        let progress = (r.state, r.approvals.len());
        if last != Some(progress) {
            match r.state {
                RequestState::Pending => eprintln!(
                    "waiting for approval ({}/{})…",
                    r.approvals.len(),
                    r.approvals_required
                ),
                other => eprintln!("{}", other.as_str()),
            }
            last = Some(progress);
        }
        match r.state {
            RequestState::Pending => tokio::time::sleep(Duration::from_millis(500)).await,
            RequestState::Approved => return Ok(Ok(())),
            RequestState::Denied | RequestState::Cancelled => {
                eprintln!("request {id} was {}", r.state.as_str());
                return Ok(Err(DENIED));
            }
            RequestState::Expired => {
                eprintln!("request {id} expired before it was approved");
                return Ok(Err(EXPIRED));
            }
            other => bail!("request {id} is unexpectedly {}", other.as_str()),
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
    let v: RequestView = client
        .post(&format!("/v1/requests/{id}/{verb}"), &Decision { comment })
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
) -> Result<PolicyTestView> {
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
    Ok(brevet_server::api::policy_test_view(d))
}

fn verify_lines(source: &str, text: &str, anchor: Option<Anchor>) -> Result<VerifyReport> {
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
    Ok(v.finish(None))
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
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("--checkpoint {arg} is not JSON"))?;
    // Also accept the API's answer (a CheckpointView), which wraps the checkpoint.
    let v = match serde_json::from_value::<CheckpointView>(v.clone()) {
        Ok(CheckpointView {
            checkpoint: Some(cp),
            ..
        }) => serde_json::to_value(cp)?,
        _ => v,
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
            let view: CheckpointView = client
                .get("/v1/audit/checkpoint")
                .await
                .context("asking the server for its audit public key (or pass --public-key)")?;
            PublicKey::parse(&view.public_key, "the server's public key")?
        }
    };
    cp.verify(&key)
        .context("refusing --checkpoint: its signature does not verify")?;
    Ok(cp.anchor())
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
