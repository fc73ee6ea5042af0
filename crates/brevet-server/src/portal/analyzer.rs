//! The identity analyzer in the portal (admins): risk summary chart, escalation graph,
//! findings table with filters, a finding's page with who holds it and how to replace it, and
//! the shareable HTML report. Everything is server-rendered — the pictures are SVG written by
//! `brevet_analyzer::render`, so the strict CSP (no inline script or style) holds; the copy
//! buttons are progressive enhancement in /static/portal.js.
//!
//! Exports can be uploaded too (`POST /analyzer/upload`, multipart, admins, CSRF token first):
//! analysed in memory, the report kept per cloud until replaced or removed, the upload audited.

use axum::{
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Redirect},
};
use brevet_analyzer::render::{graph_svg, render, short, summary_svg, Format};
use brevet_analyzer::{Category, Report, Severity};
use brevet_catalog::Cloud;
use brevet_core::Role;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::{layout, CsrfField, PageError, PageResult, Posted, Viewer};
use crate::analyzer::{Source, Upload, UploadError, UploadedFile};
use crate::api::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    q: String,
}

/// At most this many findings rows on one page (the rest are counted, and in the report).
const ROWS: usize = 300;

fn severity(s: &str) -> Option<Severity> {
    Severity::parse(s)
}

fn not_configured() -> Markup {
    html! {
        div.card id="analyzer-unconfigured" {
            p { "No IAM exports are configured or uploaded. Upload them above, or name them in the config and restart:" }
            pre { "[analyzer]\naws = [\"exports/account.json\"]        # aws iam get-account-authorization-details\ngcp = [\"projects/acme=exports/policy.json\"] # gcloud … get-iam-policy, roles\nazure = [\"exports/assignments.json\", \"exports/definitions.json\"]" }
            p.muted { "Or run it offline: " code { "brevet analyze aws|gcp|azure FILES…" } }
        }
    }
}

pub async fn overview(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(f): Query<Filter>,
) -> PageResult {
    viewer.require(Role::Admin)?;
    if !f.severity.is_empty() && severity(&f.severity).is_none() {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "severity `{}`: choose low, medium, high or critical",
                f.severity
            ),
        ));
    }
    if !f.category.is_empty() && Category::parse(&f.category).is_none() {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!("category `{}` is not one the analyzer reports", f.category),
        ));
    }
    let analyses = state.analyzer.all().await;
    let q = f.q.to_lowercase();
    let body = html! {
        (upload_form(&viewer, state.analyzer.settings().max_upload()))
        @if analyses.is_empty() { (not_configured()) }
        @else {
        form.card id="filters" method="get" action="/analyzer" {
            label for="f-cloud" { "Cloud" }
            select id="f-cloud" name="cloud" {
                option value="" { "all" }
                @for a in analyses.iter() { option value=(a.cloud.as_str()) selected[f.cloud == a.cloud.as_str()] { (a.cloud.as_str()) } }
            }
            label for="f-category" { "Category" }
            select id="f-category" name="category" {
                option value="" { "all" }
                @for c in Category::ALL { option value=(c.as_str()) selected[f.category == c.as_str()] { (c.title()) } }
            }
            label for="f-severity" { "At least" }
            select id="f-severity" name="severity" {
                option value="" { "any severity" }
                @for s in ["critical", "high", "medium", "low"] { option value=(s) selected[f.severity == s] { (s) } }
            }
            label for="f-q" { "Principal, policy or permission contains" }
            input type="text" id="f-q" name="q" value=(f.q);
            p { button type="submit" id="apply-filters" { "Filter" } }
        }
        @for a in analyses.iter().filter(|a| f.cloud.is_empty() || f.cloud == a.cloud.as_str()) {
            section.card data-cloud=(a.cloud.as_str()) data-source=(a.source.key()) {
                h2 { (a.cloud.as_str().to_uppercase()) @if let Source::Uploaded { .. } = a.source { " (uploaded)" } }
                p.muted {
                    @match &a.source {
                        Source::Configured => { "From " (a.files.join(", ")) }
                        Source::Uploaded { by, at } => { "Uploaded by " (by) " at " (layout::time(Some(*at))) ": " (a.files.join(", ")) }
                    }
                    " · " a href={ "/analyzer/report.html?cloud=" (a.cloud.as_str()) "&source=" (a.source.key()) } id={ "report-" (a.cloud.as_str()) "-" (a.source.key()) } { "download the full report (HTML)" }
                }
                @if let Source::Uploaded { .. } = a.source {
                    form.inline method="post" action="/analyzer/upload/remove" {
                        (layout::csrf(&viewer))
                        input type="hidden" name="cloud" value=(a.cloud.as_str());
                        button.secondary type="submit" id={ "remove-" (a.cloud.as_str()) } { "Remove this upload" }
                    }
                }
                @match &a.report {
                    Err(e) => p.error { "The exports could not be analysed: " (e) },
                    Ok(r) => (cloud_section(r, &f, &q)),
                }
            }
        }
        }
    };
    Ok(layout::page("Identity analyzer", Some(&viewer), body).into_response())
}

fn matches(r: &Report, f: &brevet_analyzer::Finding, filter: &Filter, q: &str) -> bool {
    (filter.category.is_empty() || f.category.as_str() == filter.category)
        && severity(&filter.severity).is_none_or(|s| f.severity >= s)
        && (q.is_empty()
            || f.policy.to_lowercase().contains(q)
            || f.title.to_lowercase().contains(q)
            || f.permissions.iter().any(|p| p.to_lowercase().contains(q))
            || f.principals
                .iter()
                .any(|p| p.to_lowercase().contains(q) || short(r, p).to_lowercase().contains(q)))
}

fn cloud_section(r: &Report, filter: &Filter, q: &str) -> Markup {
    let shown: Vec<&brevet_analyzer::Finding> = r
        .findings
        .iter()
        .filter(|f| matches(r, f, filter, q))
        .collect();
    html! {
        div.summary { (PreEscaped(summary_svg(r))) }
        p {
            strong { (r.admins.len()) } " admin-equivalent principal(s), "
            strong { (r.paths.len()) } " with a path to admin, "
            strong { (r.standing.len()) } " standing grant(s) of sensitive access."
        }
        h3 { "Escalation graph" }
        p.muted { "Click a principal to see its findings." }
        div.graph-box { (PreEscaped(graph_svg(r, 60, Some(&format!("/analyzer?cloud={}&q=", r.clouds.first().map(|c| c.as_str()).unwrap_or(""))))) ) }
        h3 { "Riskiest principals" }
        table.scores {
            thead { tr { th { "Score" } th { "Principal" } th { "Made of" } } }
            tbody {
                @for s in r.principal_scores.iter().take(10) {
                    tr { td { (s.score) } td title=(s.subject) { (short(r, &s.subject)) } td { @for (i, (n, why)) in s.parts.iter().enumerate() { @if i > 0 { "; " } (why) " +" (n) } } }
                }
            }
        }
        h3 { "Findings (" (shown.len()) " of " (r.findings.len()) ")" }
        table.findings {
            thead { tr { th { "Severity" } th { "Category" } th { "Finding" } th { "Principals" } } }
            tbody {
                @for f in shown.iter().take(ROWS) {
                    tr data-finding=(f.id) {
                        td { span class={ "sev sev-" (f.severity.as_str()) } { (f.severity.as_str()) } }
                        td { (f.category.title()) }
                        td { a href={ "/analyzer/findings/" (f.id) } { (f.title) } @if f.conditional { " " span.muted { "(conditional)" } } }
                        td { (f.principals.len()) }
                    }
                }
            }
        }
        @if shown.len() > ROWS { p.muted { (shown.len() - ROWS) " more: narrow the filter, or download the report." } }
        @if !r.proposed_config.is_empty() {
            h3 { "Proposed just-in-time replacements" }
            p.muted { "Paste into the config to make each risky standing grant eligible-only; then remove the standing grant at the cloud." }
            (copyable(&format!("proposed-config-{}", r.clouds.first().map(|c| c.as_str()).unwrap_or("x")), &r.proposed_config))
            (copyable(&format!("proposed-cedar-{}", r.clouds.first().map(|c| c.as_str()).unwrap_or("x")), &r.proposed_cedar))
        }
    }
}

fn copyable(id: &str, text: &str) -> Markup {
    html! {
        div.copyable {
            button.secondary.copy type="button" data-copy=(id) { "Copy" }
            pre id=(id) { (text) }
        }
    }
}

pub async fn finding(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    viewer.require(Role::Admin)?;
    let analyses = state.analyzer.all().await;
    let Some((r, f)) = analyses
        .iter()
        .filter_map(|a| a.report.as_ref().ok())
        .find_map(|r| r.findings.iter().find(|f| f.id == id).map(|f| (r, f)))
    else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "no such finding (the exports may have changed since)",
        ));
    };
    let standing: Vec<&brevet_analyzer::StandingGrant> = r
        .standing
        .iter()
        .filter(|s| s.policy == f.policy && f.principals.contains(&s.principal))
        .collect();
    let body = html! {
        div.card id="finding" {
            p { span class={ "sev sev-" (f.severity.as_str()) } { (f.severity.as_str()) } " " (f.category.title()) @if f.conditional { " · conditional" } }
            p { (f.detail) }
            p { "Policy or role: " code { (f.policy) } }
            p { "Where: " @for (i, x) in f.resources.iter().enumerate() { @if i > 0 { ", " } code { (x) } } }
            h3 { "Permissions" }
            p id="permissions" { @for (i, p) in f.permissions.iter().enumerate() { @if i > 0 { " " } code { (p) } } }
        }
        h2 { "Who holds it" }
        table id="holders" {
            thead { tr { th { "Principal" } th { "Kind" } th { "Path to admin" } } }
            tbody {
                @for p in &f.principals {
                    tr {
                        td title=(p) { (short(r, p)) }
                        td { (r.principal(p).map(|x| x.kind.as_str()).unwrap_or("")) @if r.principal(p).is_some_and(|x| x.workload) { " (workload)" } }
                        td {
                            @if r.admins.contains(p) { strong { "is admin-equivalent" } @if let Some(why) = r.admin_reasons.get(p) { " (" (why) ")" } }
                            @else if let Some(path) = r.paths.iter().find(|x| &x.principal == p) {
                                @for &e in &path.edges { "→ " (short(r, &r.edges[e].to)) " (" code { (r.edges[e].via) } ") " }
                            } @else { span.muted { "none found" } }
                        }
                    }
                }
            }
        }
        @if !standing.is_empty() {
            h2 { "Proposed replacements" }
            @for (i, s) in standing.iter().enumerate() {
                div.card.proposal {
                    p { strong { (short(r, &s.principal)) } " holds this permanently (" (s.via) ")." }
                    @if let Some(u) = &s.usage { p.muted { (u.used.len()) " used, " (u.unused.len()) " unused in " (u.window) } }
                    @match &s.proposal {
                        None => p { "No proposal: a workload identity (rights-size it; nobody requests access for a machine), or nothing this principal can use today." },
                        Some(p) => {
                            p { "Make it eligible-only with profile " code { (p.profile) } ":" }
                            @let profile = r.profiles.iter().find(|x| x.profile == p.profile).map(|x| x.config.as_str()).unwrap_or("");
                            (copyable(&format!("proposal-{i}-config"), &format!("{}{}", p.config, profile)))
                            (copyable(&format!("proposal-{i}-cedar"), &p.cedar))
                        }
                    }
                }
            }
        }
        p { a href="/analyzer" { "Back to the analyzer" } }
    };
    Ok(layout::page(&f.title, Some(&viewer), body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Which {
    #[serde(default)]
    cloud: String,
    /// `configured` (the default) or `upload`.
    #[serde(default)]
    source: String,
}

/// The self-contained report, as a download (it carries its own inline CSS, which the portal's
/// CSP would refuse to apply: a download is not rendered under it).
pub async fn report(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(w): Query<Which>,
) -> PageResult {
    viewer.require(Role::Admin)?;
    if w.cloud.is_empty() {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "say which cloud's report: ?cloud=aws, gcp or azure",
        ));
    }
    let source = if w.source.is_empty() {
        "configured"
    } else {
        w.source.as_str()
    };
    if !["configured", "upload"].contains(&source) {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!("source `{source}`: say configured or upload"),
        ));
    }
    let analyses = state.analyzer.all().await;
    let Some(a) = analyses
        .iter()
        .find(|a| a.cloud.as_str() == w.cloud && a.source.key() == source)
    else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no {} exports are {}",
                w.cloud,
                if source == "upload" {
                    "uploaded"
                } else {
                    "configured"
                }
            ),
        ));
    };
    let r = a
        .report
        .as_ref()
        .map_err(|e| PageError::new(StatusCode::UNPROCESSABLE_ENTITY, e.clone()))?;
    let html = render(r, Format::Html, &a.files);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"brevet-analysis-{}.html\"", w.cloud),
            ),
        ],
        html,
    )
        .into_response())
}

fn upload_form(viewer: &Viewer, max: usize) -> Markup {
    html! {
        details.card id="upload" {
            summary { "Analyse exports (upload)" }
            p.muted { "The files are analysed in memory and not kept; the report stays here, one per cloud, until replaced, removed or the server restarts. Each upload is audited (names, sizes, digests). At most " (max / (1024 * 1024)) " MiB in all." }
            form method="post" action="/analyzer/upload" enctype="multipart/form-data" {
                (layout::csrf(viewer))
                label for="u-cloud" { "Cloud" }
                select id="u-cloud" name="cloud" required {
                    option value="aws" { "AWS — aws iam get-account-authorization-details" }
                    option value="gcp" { "GCP — gcloud … get-iam-policy / get-ancestors-iam-policy, asset search-all-iam-policies, iam roles list" }
                    option value="azure" { "Azure — az role assignment list --all, az role definition list, identities" }
                }
                label for="u-exports" { "Export files (JSON)" }
                input type="file" id="u-exports" name="exports" multiple required accept=".json,application/json";
                label for="u-cloudtrail" { "AWS only: CloudTrail activity (optional; unused permissions are proposed removed)" }
                input type="file" id="u-cloudtrail" name="cloudtrail" multiple accept=".json,application/json";
                label for="u-resources" { "GCP only: the resource of a bare get-iam-policy file (RESOURCE, or RESOURCE=FILENAME for each)" }
                input type="text" id="u-resources" name="gcp_resources" placeholder="projects/acme-prod";
                label for="u-exclusions" { "Exclusions file (optional, TOML; the configured one applies otherwise)" }
                input type="file" id="u-exclusions" name="exclusions" accept=".toml";
                p { button type="submit" id="upload-submit" { "Analyse" } }
            }
        }
    }
}

fn parse_cloud(s: &str) -> Result<Cloud, PageError> {
    match s {
        "aws" => Ok(Cloud::Aws),
        "gcp" => Ok(Cloud::Gcp),
        "azure" => Ok(Cloud::Azure),
        other => Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!("cloud `{other}`: choose aws, gcp or azure"),
        )),
    }
}

fn bad(message: impl Into<String>) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, message)
}

/// `POST /analyzer/upload`: the role is checked before the body is read, the CSRF token must
/// be the first field (so no file is read for a forged form), and the body is bounded by
/// `[analyzer] max_upload_mib` (413 past it). Bad input answers with what is wrong and keeps
/// nothing.
pub async fn upload(State(state): State<AppState>, viewer: Viewer, req: Request) -> PageResult {
    viewer.require(Role::Admin)?;
    let analyzer = state.analyzer.clone();
    let permit = analyzer
        .begin_upload()
        .map_err(|e| PageError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut form = Multipart::from_request(req, &state)
        .await
        .map_err(|e| bad(format!("{e}: send the upload form as multipart/form-data")))?;
    let mut csrf_checked = false;
    let mut cloud = None;
    let mut resources = String::new();
    let mut exports = Vec::new();
    let mut cloudtrail = Vec::new();
    let mut exclusions = None;
    let too_large = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        PageError::new(
            status,
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the upload is larger than {} MiB: raise [analyzer] max_upload_mib, or run `brevet analyze` on the files",
                    state.analyzer.settings().max_upload() / (1024 * 1024)
                )
            } else {
                format!("the upload could not be read: {e}")
            },
        )
    };
    while let Some(field) = form.next_field().await.map_err(too_large)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "csrf" {
            viewer.check_csrf(&field.text().await.map_err(too_large)?)?;
            csrf_checked = true;
            continue;
        }
        if !csrf_checked {
            viewer.check_csrf("")?;
        }
        match name.as_str() {
            "cloud" => cloud = Some(parse_cloud(field.text().await.map_err(too_large)?.trim())?),
            "gcp_resources" => resources = field.text().await.map_err(too_large)?,
            "exports" | "cloudtrail" | "exclusions" => {
                let file_name = field.file_name().unwrap_or_default().to_string();
                let bytes = field.bytes().await.map_err(too_large)?;
                // A file input left empty still sends a part, with no name and no bytes.
                if file_name.is_empty() && bytes.is_empty() {
                    continue;
                }
                let file = UploadedFile {
                    name: if file_name.is_empty() {
                        name.clone()
                    } else {
                        file_name
                    },
                    bytes,
                };
                match name.as_str() {
                    "exports" => exports.push(file),
                    "cloudtrail" => cloudtrail.push(file),
                    _ if exclusions.is_some() => {
                        return Err(bad("one exclusions file at most"));
                    }
                    _ => exclusions = Some(file),
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown form field `{other}`: the form has cloud, exports, cloudtrail, gcp_resources and exclusions"
                )))
            }
        }
    }
    if !csrf_checked {
        viewer.check_csrf("")?;
    }
    let cloud =
        cloud.ok_or_else(|| bad("say which cloud the exports are of (aws, gcp or azure)"))?;
    let gcp_resources = Upload::parse_gcp_resources(&resources).map_err(bad)?;
    let upload = Upload {
        cloud,
        exports,
        cloudtrail,
        exclusions,
        gcp_resources,
    };
    match state
        .analyzer
        .upload(
            permit,
            state.broker.store(),
            viewer.principal.id.as_str(),
            upload,
        )
        .await
    {
        Ok(a) => Ok(Redirect::to(&format!("/analyzer?cloud={}", a.cloud.as_str())).into_response()),
        Err(UploadError::Busy) => Err(PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UploadError::Busy.to_string(),
        )),
        Err(UploadError::Bad(e)) => Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The exports were not analysed (nothing was kept): {e}"),
        )),
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    csrf: String,
    cloud: String,
}

impl CsrfField for RemoveForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /analyzer/upload/remove`: drops a cloud's uploaded analysis.
pub async fn remove_upload(
    State(state): State<AppState>,
    posted: Posted<RemoveForm>,
) -> PageResult {
    posted.viewer.require(Role::Admin)?;
    let cloud = parse_cloud(&posted.form.cloud)?;
    if !state.analyzer.remove_upload(cloud) {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no {} upload to remove", cloud.as_str()),
        ));
    }
    Ok(Redirect::to("/analyzer").into_response())
}
