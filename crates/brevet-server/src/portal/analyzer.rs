//! The identity analyzer in the portal (admins): risk summary chart, escalation graph,
//! findings table with filters, a finding's page with who holds it and how to replace it, and
//! the shareable HTML report. Everything is server-rendered — the pictures are SVG written by
//! `brevet_analyzer::render`, so the strict CSP (no inline script or style) holds; the copy
//! buttons are progressive enhancement in /static/portal.js.

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::IntoResponse,
};
use brevet_analyzer::render::{graph_svg, render, short, summary_svg, Format};
use brevet_analyzer::{Category, Report, Severity};
use brevet_core::Role;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::{layout, PageError, PageResult, Viewer};
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
            p { "No IAM exports are configured. Name them in the config and restart:" }
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
    if !state.analyzer.configured() {
        return Ok(
            layout::page("Identity analyzer", Some(&viewer), not_configured()).into_response(),
        );
    }
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
    let analyses = state.analyzer.current().await;
    let q = f.q.to_lowercase();
    let body = html! {
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
            section.card data-cloud=(a.cloud.as_str()) {
                h2 { (a.cloud.as_str().to_uppercase()) }
                p.muted { "From " (a.files.join(", ")) " · " a href={ "/analyzer/report.html?cloud=" (a.cloud.as_str()) } id={ "report-" (a.cloud.as_str()) } { "download the full report (HTML)" } }
                @match &a.report {
                    Err(e) => p.error { "The exports could not be analysed: " (e) },
                    Ok(r) => (cloud_section(r, &f, &q)),
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
    let analyses = state.analyzer.current().await;
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
                            @if r.admins.contains(p) { strong { "is admin-equivalent" } }
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
    let analyses = state.analyzer.current().await;
    let Some(a) = analyses.iter().find(|a| a.cloud.as_str() == w.cloud) else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no {} exports are configured", w.cloud),
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
