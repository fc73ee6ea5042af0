//! Brevet's identity analyzer: reads the IAM exports people already have (AWS
//! `get-account-authorization-details`, GCP `get-iam-policy`/asset inventory and custom roles,
//! Azure `az role assignment list` and `az role definition list`), works out effective
//! permissions against the catalogs, and reports risky standing privilege by category, the
//! escalation graph with each principal's shortest path to admin, risk scores, and proposed
//! just-in-time replacements (Brevet profiles + Cedar) for each risky standing grant.
//!
//! Pure: readers in, a [`Report`] out — no files, no network. The CLI and the server are the
//! edges; `render` turns a report into text, JSON, SARIF or a self-contained HTML page.

pub mod aws;
pub mod azure;
mod bindings;
mod classify;
pub mod exclusions;
pub mod gcp;
mod graph;
mod input;
mod permset;
mod propose;
pub mod render;
pub mod report;
mod score;

pub use exclusions::Exclusions;
pub use input::{Input, DEFAULT_MAX_INPUT};
pub use report::*;

/// Why an export could not be analysed. Every variant names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{file}: line {line}, column {column}, at {path}: {reason}")]
    Malformed {
        file: String,
        line: usize,
        column: usize,
        path: String,
        reason: String,
    },
    #[error("{file}: at {path}: {reason}")]
    Field {
        file: String,
        path: String,
        reason: String,
    },
    #[error("{file} is not {expected}: it is {found}. {hint}")]
    WrongFormat {
        file: String,
        expected: &'static str,
        found: String,
        hint: &'static str,
    },
    #[error("{file} is larger than the {limit}-byte limit; if it really is one export, raise the limit with --max-input-size")]
    TooLarge { file: String, limit: u64 },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("the escalation graph of these exports has more than {limit} edges (memory grows with it, about 80 bytes an edge): analyse fewer accounts at a time, exclude service-linked and break-glass roles (--exclusions), or raise the limit with --max-edges")]
    TooManyEdges { limit: usize },
}

/// Edges an analysis holds at most unless told otherwise (about 400 MB of them).
pub const DEFAULT_MAX_EDGES: usize = 5_000_000;

/// What every analysis takes besides the exports.
#[derive(Debug, Clone)]
pub struct Options {
    pub exclusions: Exclusions,
    /// Largest export read, in bytes.
    pub max_input: u64,
    /// Most escalation-graph edges held; past it the analysis stops with
    /// [`AnalyzeError::TooManyEdges`] instead of growing without bound.
    pub max_edges: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            exclusions: Exclusions::default(),
            max_input: DEFAULT_MAX_INPUT,
            max_edges: DEFAULT_MAX_EDGES,
        }
    }
}

/// Reads a whole-document JSON value (GCP and Azure exports are told apart by shape first),
/// with the size limit and line/column errors.
pub(crate) fn read_value(
    input: Input<'_>,
    max: u64,
) -> Result<(String, serde_json::Value), AnalyzeError> {
    let name = input.name.clone();
    let v = input::parse::<serde_json::Value>(input, max)?;
    Ok((name, v))
}

/// Reads a value as `T`, errors naming the field path.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    file: &str,
    value: serde_json::Value,
) -> Result<T, AnalyzeError> {
    serde_path_to_error::deserialize(value).map_err(|e| AnalyzeError::Field {
        file: file.to_string(),
        path: match e.path().to_string() {
            p if p == "." => "(top level)".into(),
            p => p,
        },
        reason: e.into_inner().to_string(),
    })
}

/// What every cloud's analysis ends with: exclusions applied to findings, escalation paths,
/// scores, stable ordering.
pub(crate) fn finish(report: &mut Report, opts: &Options) {
    let before = report.findings.len();
    report
        .findings
        .retain(|f| !opts.exclusions.excludes_finding(f));
    report.excluded += before - report.findings.len();
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.category.cmp(&b.category))
            .then(a.policy.cmp(&b.policy))
            .then(a.id.cmp(&b.id))
    });
    // One sentence per kind of edge; an edge keeps its own only when it says more.
    let mut kinds = graph::EdgeKinds::from_sentences(std::mem::take(&mut report.edge_kinds));
    for e in &mut report.edges {
        // Settled already when the builder did it (an empty reason).
        if !e.reason.is_empty() {
            let reason = std::mem::take(&mut e.reason);
            kinds.settle(e, reason);
        }
    }
    report.edge_kinds = kinds.into_sentences();
    let admins: std::collections::HashSet<String> = report.admins.iter().cloned().collect();
    let ids: Vec<String> = report.principals.iter().map(|p| p.id.clone()).collect();
    report.paths = graph::shortest_paths(&report.edges, &admins, &ids);
    score::score(report);
    // Each grant keeps what it adds (its identity); profiles and resources are kept once.
    let mut profiles: Vec<ProfileProposal> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in &mut report.standing {
        let Some(p) = &mut s.proposal else { continue };
        let (own, shared) = propose::split_identity(&p.config);
        if seen.insert(p.profile.clone()) {
            profiles.push(ProfileProposal {
                profile: p.profile.clone(),
                config: shared,
            });
        }
        p.config = own;
    }
    let own: Vec<&str> = report
        .standing
        .iter()
        .filter_map(|s| s.proposal.as_ref())
        .map(|p| p.config.as_str())
        .collect();
    report.proposed_config = propose::merge_configs(
        own.into_iter()
            .chain(profiles.iter().map(|p| p.config.as_str())),
    );
    report.profiles = profiles;
    let mut cedar: Vec<&str> = report
        .standing
        .iter()
        .filter_map(|s| s.proposal.as_ref())
        .map(|p| p.cedar.as_str())
        .collect();
    cedar.sort_unstable();
    cedar.dedup();
    report.proposed_cedar = cedar.join("\n");
}
