//! Admin pages: the kill switch with the lock list, and the audit browser with the chain's
//! verification status.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::IntoResponse,
};
use brevet_core::{PrincipalId, Role};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use maud::html;
use serde::Deserialize;

use super::{layout, CsrfField, PageError, PageResult, Posted, Viewer};
use crate::{
    api::AppState,
    broker::{BrokerError, KillReport, KillTarget},
};

async fn kill_body(
    state: &AppState,
    viewer: &Viewer,
    report: Option<&KillReport>,
) -> Result<maud::Markup, PageError> {
    let locks = state.broker.locks().await?;
    Ok(html! {
        @if let Some(r) = report {
            div.card id="kill-report" {
                p.notice { "Kill switch engaged for " strong { (r.target) } ": "
                    (r.revoked) " grant(s) revoked, " (r.retrying) " still being revoked, "
                    (r.cancelled_requests.len()) " request(s) cancelled, "
                    (r.sessions_ended) " session(s) ended, in " (r.elapsed_ms) " ms." }
                @if !r.grants.is_empty() {
                    table {
                        thead { tr { th { "Grant" } th { "Resource" } th { "Outcome" } } }
                        tbody { @for g in &r.grants { tr { td { (g.grant_id) } td { (g.resource) } td { (g.outcome) } } } }
                    }
                }
            }
        }
        div.card {
            p { "Cut a person off everywhere at once: they are locked, their open requests are cancelled, every grant they hold is revoked on every provider, and they are signed out." }
            form method="post" action="/admin/kill" {
                (layout::csrf(viewer))
                label for="principal" { "Principal" }
                input type="text" id="principal" name="principal" required placeholder="alice@example.com";
                label for="reason" { "Reason (recorded in the audit log)" }
                input type="text" id="reason" name="reason" required;
                p { button.danger type="submit" id="kill" { "Engage kill switch" } }
            }
        }
        h2 { "Locked principals" }
        @if locks.is_empty() { p id="no-locks" { "Nobody is locked." } }
        @else {
            table id="locks" {
                thead { tr { th { "Principal" } th { "Reason" } th { "By" } th { "At" } th {} } }
                tbody {
                    @for l in &locks {
                        tr {
                            td { (l.principal) } td { (l.reason) } td { (l.locked_by) }
                            td { (layout::time(Some(l.locked_at))) }
                            td {
                                form.inline method="post" action="/admin/unlock" {
                                    (layout::csrf(viewer))
                                    input type="hidden" name="principal" value=(l.principal);
                                    button.secondary type="submit" { "Unlock" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

pub async fn kill_page(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Role::Admin)?;
    let body = kill_body(&state, &viewer, None).await?;
    Ok(layout::page("Kill switch", Some(&viewer), body).into_response())
}

#[derive(Deserialize)]
pub struct KillForm {
    csrf: String,
    principal: String,
    reason: String,
}

impl CsrfField for KillForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn kill(
    State(state): State<AppState>,
    Posted { viewer, form }: Posted<KillForm>,
) -> PageResult {
    viewer.require(Role::Admin)?;
    let target = match form.principal.trim() {
        "*" => KillTarget::Everyone,
        p => KillTarget::Principal(
            PrincipalId::parse(p)
                .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
    };
    let report = state
        .broker
        .kill(&viewer.principal, target, form.reason)
        .await?;
    let body = kill_body(&state, &viewer, Some(&report)).await?;
    Ok(layout::page("Kill switch", Some(&viewer), body).into_response())
}

#[derive(Deserialize)]
pub struct UnlockForm {
    csrf: String,
    principal: String,
}

impl CsrfField for UnlockForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn unlock(
    State(state): State<AppState>,
    Posted { viewer, form }: Posted<UnlockForm>,
) -> PageResult {
    viewer.require(Role::Admin)?;
    state
        .broker
        .unlock(&viewer.principal, form.principal.trim())
        .await?;
    Ok(axum::response::Redirect::to("/admin/kill").into_response())
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    person: String,
    #[serde(default)]
    resource: String,
    /// `YYYY-MM-DD` or an RFC 3339 time.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// The most events one page shows (the newest that match).
const SHOWN: usize = 300;

/// A time bound from the filter form: empty (none), a day (`2026-11-01`: from its start for
/// `since`, through its end for `until`), or an RFC 3339 time.
fn time_bound(
    name: &str,
    text: &str,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, PageError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    let day = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "`{name}`: `{t}` is not a date; write it like 2026-11-01 or 2026-11-01T09:30:00Z"
            ),
        )
    })?;
    let start = day.and_time(NaiveTime::MIN).and_utc();
    Ok(Some(if end_of_day {
        start + chrono::Duration::days(1) - chrono::Duration::nanoseconds(1)
    } else {
        start
    }))
}

struct Filter<'a> {
    person: &'a str,
    resource: &'a str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

fn matches(e: &brevet_audit::AuditEvent, data: &serde_json::Value, f: &Filter<'_>) -> bool {
    let field = |k: &str| data.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let at = DateTime::parse_from_rfc3339(&e.at)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let in_time = match (f.since, f.until) {
        (None, None) => true,
        // An event whose time cannot be read cannot be placed in a range: shown only unfiltered.
        _ => {
            at.is_some_and(|at| f.since.is_none_or(|s| at >= s) && f.until.is_none_or(|u| at <= u))
        }
    };
    (f.person.is_empty()
        || e.actor == f.person
        || field("requester") == f.person
        || field("principal") == f.person)
        && (f.resource.is_empty() || field("resource") == f.resource)
        && in_time
}

/// Reads the whole chain once: verifies it (as `brevet audit verify` does) and keeps the newest
/// matching events.
pub async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    viewer.require(Role::Admin)?;
    let Query(q) = q.map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = Filter {
        person: q.person.trim(),
        resource: q.resource.trim(),
        since: time_bound("since", &q.since, false)?,
        until: time_bound("until", &q.until, true)?,
    };
    let store = state.broker.store();
    // The checkpoint before the head: one signed in between would lie beyond the head read.
    let mut verifier = state.anchor.verifier();
    let (head_seq, head_hash) = store.audit_head().await.map_err(BrokerError::from)?;
    let mut shown = std::collections::VecDeque::new();
    let mut after = 0;
    while after < head_seq {
        let page = store
            .audit_page(after, 1000)
            .await
            .map_err(BrokerError::from)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page.into_iter().filter(|e| e.seq <= head_seq) {
            verifier.push(&e);
            let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
            if matches(&e, &data, &filter) {
                if shown.len() == SHOWN {
                    shown.pop_front();
                }
                shown.push_back((e, data));
            }
        }
    }
    let report = verifier.finish(Some((head_seq, &head_hash)));
    let body = html! {
        div.card id="chain" {
            @if report.ok {
                p { span.ok-badge { "✔ Chain verified" } " — " (report.events) " events, head #" (report.last_seq) ", hash " code { (report.last_hash.chars().take(16).collect::<String>()) "…" } }
            } @else {
                p { span.bad-badge { "✘ Chain broken" } " — " (report.problems.len()) " problem(s):" }
                ul { @for p in &report.problems { li { (format!("{p:?}")) } } }
            }
        }
        form.card method="get" action="/admin/audit" {
            label for="person" { "Person" }
            input type="text" id="person" name="person" value=(q.person);
            label for="resource" { "Resource" }
            input type="text" id="resource" name="resource" value=(q.resource) placeholder="postgres:orders";
            label for="since" { "Since" }
            input type="text" id="since" name="since" value=(q.since) placeholder="2026-11-01";
            label for="until" { "Until" }
            input type="text" id="until" name="until" value=(q.until);
            p { button type="submit" { "Filter" } }
        }
        table id="events" {
            thead { tr { th { "#" } th { "At" } th { "Event" } th { "Actor" } th { "Request" } th { "Resource" } } }
            tbody {
                @for (e, data) in shown.iter().rev() {
                    tr {
                        td { (e.seq) } td { (e.at) } td { (e.kind) } td { (e.actor) }
                        td { (e.request_id.clone().unwrap_or_default()) }
                        td { (data.get("resource").and_then(|v| v.as_str()).unwrap_or("")) }
                    }
                }
            }
        }
        p.muted { "Showing the newest " (shown.len()) " matching events. Export everything with `brevet audit export`." }
    };
    Ok(layout::page("Audit log", Some(&viewer), body).into_response())
}
