//! `brevet analyze aws|gcp|azure FILES…`: the identity analyzer, offline, on the exports people
//! already have. Reads the files, runs `brevet_analyzer`, prints text, JSON, SARIF or HTML.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use brevet_analyzer::render::{render_to, Format};
use brevet_analyzer::{AnalyzeError, Exclusions, Input, Options, Severity};
use brevet_catalog::Catalog;
use clap::{Args, Subcommand};

/// Exit code when `--fail-on` finds a finding at or above the given severity.
pub const FINDINGS: u8 = 4;

#[derive(Args)]
pub struct Common {
    /// text, json, sarif or html.
    #[arg(long, default_value = "text")]
    format: String,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Findings not to report (TOML: policies, principals, users, groups, roles, exclude_actions).
    #[arg(long)]
    exclusions: Option<PathBuf>,
    /// Refuse exports larger than this many bytes.
    #[arg(long, default_value_t = brevet_analyzer::DEFAULT_MAX_INPUT)]
    max_input_size: u64,
    /// Stop with an error when the escalation graph has more edges than this (memory grows
    /// with it, about 80 bytes an edge).
    #[arg(long, default_value_t = brevet_analyzer::DEFAULT_MAX_EDGES)]
    max_edges: usize,
    /// Exit with code 4 when a finding of this severity or worse is reported (low, medium,
    /// high, critical): for CI.
    #[arg(long)]
    fail_on: Option<String>,
}

#[derive(Subcommand)]
pub enum AnalyzeCommand {
    /// AWS: `aws iam get-account-authorization-details --output json` exports (one per account).
    Aws {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Access Advisor results for one principal: ARN=FILE (from `aws iam
        /// get-service-last-accessed-details`); repeat per principal.
        #[arg(long = "last-accessed", value_name = "ARN=FILE")]
        last_accessed: Vec<String>,
        /// CloudTrail log files ({"Records": …}) or `aws cloudtrail lookup-events` output.
        #[arg(long, value_name = "FILE")]
        cloudtrail: Vec<PathBuf>,
        /// With Access Advisor data: a service not used in this many days is unused.
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
        unused_days: u32,
        #[command(flatten)]
        common: Common,
    },
    /// GCP: `get-iam-policy` outputs as RESOURCE=FILE (projects/ID=policy.json), and
    /// `get-ancestors-iam-policy`, `asset search-all-iam-policies` and `iam roles describe|list
    /// --view=FULL` outputs as FILE.
    Gcp {
        #[arg(required = true, value_name = "[RESOURCE=]FILE")]
        files: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Azure: `az role assignment list --all`, `az role definition list` and (optional)
    /// `az identity list` outputs, in any order.
    Azure {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn open(path: &PathBuf) -> Result<Input<'static>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Input::new(path.display().to_string(), f))
}

pub fn run(cmd: AnalyzeCommand, json: bool) -> Result<ExitCode> {
    let catalog = Catalog::embedded().context("the catalog built into brevet")?;
    let (common, report, names) = match cmd {
        AnalyzeCommand::Aws {
            files,
            last_accessed,
            cloudtrail,
            unused_days,
            common,
        } => {
            let opts = options(&common)?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let mut inputs = brevet_analyzer::aws::AwsInputs {
                unused_days,
                ..Default::default()
            };
            for f in &files {
                inputs.exports.push(open(f)?);
            }
            for la in &last_accessed {
                let Some((arn, file)) = la.split_once('=') else {
                    bail!("--last-accessed {la}: expected ARN=FILE, e.g. arn:aws:iam::123456789012:user/alice=alice-access.json");
                };
                if !arn.starts_with("arn:") {
                    bail!("--last-accessed {la}: `{arn}` is not an ARN; expected ARN=FILE");
                }
                inputs
                    .last_accessed
                    .push((arn.to_string(), open(&PathBuf::from(file))?));
            }
            for f in &cloudtrail {
                inputs.cloudtrail.push(open(f)?);
            }
            (
                common,
                brevet_analyzer::aws::analyze(&catalog, inputs, &opts),
                names,
            )
        }
        AnalyzeCommand::Gcp { files, common } => {
            let opts = options(&common)?;
            let mut inputs = Vec::new();
            let mut names = Vec::new();
            for f in &files {
                // RESOURCE=FILE names a bare policy's resource; a path may itself contain `=`
                // only if the part before it is not a resource name.
                let (resource, path) = match f.split_once('=') {
                    Some((r, p))
                        if ["projects/", "folders/", "organizations/", "buckets/"]
                            .iter()
                            .any(|k| r.starts_with(k)) =>
                    {
                        (Some(r.to_string()), PathBuf::from(p))
                    }
                    Some((r, _)) if !std::path::Path::new(f).exists() => {
                        bail!("{f}: `{r}` is not a GCP resource name; write projects/ID=FILE, folders/NUMBER=FILE, organizations/NUMBER=FILE or buckets/NAME=FILE")
                    }
                    _ => (None, PathBuf::from(f)),
                };
                names.push(path.display().to_string());
                inputs.push(brevet_analyzer::gcp::GcpInput {
                    resource,
                    input: open(&path)?,
                });
            }
            (
                common,
                brevet_analyzer::gcp::analyze(&catalog, inputs, &opts),
                names,
            )
        }
        AnalyzeCommand::Azure { files, common } => {
            let opts = options(&common)?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let mut inputs = Vec::new();
            for f in &files {
                inputs.push(open(f)?);
            }
            (
                common,
                brevet_analyzer::azure::analyze(&catalog, inputs, &opts),
                names,
            )
        }
    };
    let report = report.map_err(|e: AnalyzeError| anyhow::anyhow!(e))?;
    let format = if json {
        Format::Json
    } else {
        Format::parse(&common.format).with_context(|| {
            format!(
                "--format {}: expected text, json, sarif or html",
                common.format
            )
        })?
    };
    match &common.output {
        Some(path) => {
            let mut f =
                File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
            render_to(&report, format, &names, &mut f)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = render_to(&report, format, &names, &mut std::io::stdout().lock());
        }
    }
    if let Some(level) = &common.fail_on {
        let worst = report.findings.iter().map(|f| f.severity).max();
        if worst.is_some_and(|w| w >= severity(level).expect("checked in options")) {
            return Ok(ExitCode::from(FINDINGS));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn severity(s: &str) -> Option<Severity> {
    Severity::parse(s)
}

fn options(c: &Common) -> Result<Options> {
    if Format::parse(&c.format).is_none() {
        bail!("--format {}: expected text, json, sarif or html", c.format);
    }
    if let Some(f) = &c.fail_on {
        if severity(f).is_none() {
            bail!("--fail-on {f}: expected low, medium, high or critical");
        }
    }
    let exclusions = match &c.exclusions {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Exclusions::parse(&path.display().to_string(), &text)?
        }
        None => Exclusions::default(),
    };
    Ok(Options {
        exclusions,
        max_input: c.max_input_size,
        max_edges: c.max_edges,
    })
}
