//! Requesters' and approvers' pages: request access, my requests, my access (with countdown,
//! extend, revoke and the one-time credential), and the approval inbox.

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Redirect},
};
use brevet_core::{ApprovalDecision, RequestId, RequestState, Role};
use maud::{html, Markup};
use serde::Deserialize;

use super::{layout, CsrfField, CsrfForm, PageError, PageResult, Posted, Viewer};
use crate::{
    api::{
        handlers::{approvers, decisions as decisions_on, views as request_views},
        AppState, RequestView,
    },
    broker::AccessAsk,
};

fn parse_id(id: &str) -> Result<RequestId, PageError> {
    id.parse()
        .map_err(|e: brevet_core::CoreError| PageError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Which page of a list (`?cursor=`, as the "Older" link writes it).
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

impl PageQuery {
    fn after(&self) -> Result<Option<brevet_store::PageCursor>, PageError> {
        match &self.cursor {
            None => Ok(None),
            Some(c) => brevet_store::PageCursor::parse(c).map(Some).ok_or_else(|| {
                PageError::new(
                    StatusCode::BAD_REQUEST,
                    "that page address is not one this portal gave; start from the first page",
                )
            }),
        }
    }
}

/// Lists are pages of `PORTAL_PAGE`, newest first.
const PORTAL_PAGE: i64 = 200;

/// One page of requests as views, and the link to the next page when this one is full.
async fn views(
    state: &AppState,
    filter: brevet_store::RequestFilter,
    path: &str,
) -> Result<(Vec<RequestView>, Markup), PageError> {
    let rows = state
        .broker
        .store()
        .list_requests(&filter)
        .await
        .map_err(|e| PageError::from(crate::broker::BrokerError::from(e)))?;
    // The page's decisions are read in one query, not one per row.
    let out = request_views(state, rows.iter()).await?;
    let next = older_link(path, rows.len(), filter.limit, rows.last());
    Ok((out, next))
}

/// An "Older" link to the page after `last`, when `listed` filled the page.
fn older_link(
    path: &str,
    listed: usize,
    limit: Option<i64>,
    last: Option<&brevet_core::Request>,
) -> Markup {
    match last {
        Some(r) if limit.is_some_and(|l| listed as i64 >= l) => {
            let cursor = brevet_store::PageCursor::new(r.created_at, r.id.to_string());
            html! { p.pager { a rel="next" href=(format!("{path}?cursor={cursor}")) { "Older →" } } }
        }
        _ => html! {},
    }
}

fn ok(title: &str, viewer: &Viewer, body: Markup) -> PageResult {
    Ok(layout::page(title, Some(viewer), body).into_response())
}

pub async fn request_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Role::Requester)?;
    let options = state.broker.eligible(&viewer.principal);
    let body = html! {
        @if options.is_empty() {
            p { "Policy does not let you ask for anything at the moment. Ask an admin which groups grant access." }
        } @else {
            p.muted { "These are the resources and access profiles policy lets you ask for, with the limits that apply." }
            table id="eligible" {
                thead { tr { th { "Resource" } th { "Profile" } th { "Grants" } th { "Longest" } th { "Approvals" } th { "Needs" } } }
                tbody {
                    @for o in &options {
                        tr {
                            td { (o.resource) } td { (o.profile) }
                            td.grants {
                                @if o.grants.is_empty() {
                                    span.muted { "as the profile is configured" }
                                } @else {
                                    details {
                                        summary { "what it grants, natively" }
                                        ul { @for g in &o.grants { li { code { (g) } } } }
                                    }
                                }
                            }
                            td { (o.max_duration) }
                            td { @if o.approvals == 0 { "none (automatic)" } @else { (o.approvals) } }
                            td {
                                @if o.require_reason { "reason " }
                                @if o.require_ticket { "ticket" }
                            }
                        }
                    }
                }
            }
            div.card {
                form method="post" action="/request" {
                    (layout::csrf(&viewer))
                    label for="choice" { "What" }
                    select id="choice" name="choice" required {
                        @for o in &options {
                            option value=(format!("{}|{}", o.resource, o.profile)) {
                                (o.profile) " on " (o.resource) " — up to " (o.max_duration)
                                @if o.approvals > 0 { ", " (o.approvals) " approval(s)" }
                            }
                        }
                    }
                    label for="duration" { "For how long" }
                    input type="text" id="duration" name="duration" value="1h" required placeholder="e.g. 30m, 2h";
                    label for="reason" { "Why (shown to approvers and kept in the audit log)" }
                    input type="text" id="reason" name="reason" maxlength="2000";
                    label for="ticket" { "Ticket" }
                    input type="text" id="ticket" name="ticket" maxlength="200";
                    p { button type="submit" id="submit-request" { "Request access" } }
                }
            }
        }
    };
    ok("Request access", &viewer, body)
}

#[derive(Deserialize)]
pub struct RequestForm {
    csrf: String,
    choice: String,
    duration: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
}

impl CsrfField for RequestForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn opt(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

pub async fn create(
    State(state): State<AppState>,
    Posted { viewer, form }: Posted<RequestForm>,
) -> PageResult {
    viewer.require(Role::Requester)?;
    let (resource, profile) = form.choice.split_once('|').ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Choose a resource and profile from the list.",
        )
    })?;
    let r = state
        .broker
        .create(
            &viewer.principal,
            AccessAsk {
                resource: resource.into(),
                profile: profile.into(),
                duration: form.duration,
                reason: opt(form.reason),
                ticket: opt(form.ticket),
            },
        )
        .await?;
    Ok(Redirect::to(&format!("/requests/{}", r.id)).into_response())
}

fn requests_table(rows: &[RequestView], show_requester: bool) -> Markup {
    html! {
        table.requests {
            thead { tr {
                th { "Request" }
                @if show_requester { th { "Requester" } }
                th { "Resource" } th { "Profile" } th { "Duration" } th { "State" } th { "Created" }
            } }
            tbody {
                @for r in rows {
                    tr {
                        td { a href=(format!("/requests/{}", r.id)) { (r.id) } }
                        @if show_requester { td { (r.requester) } }
                        td { (r.resource) } td { (r.profile) } td { (r.duration) }
                        td { (layout::state_badge(&r.state.to_string())) }
                        td { (layout::time(Some(r.created_at))) }
                    }
                }
            }
        }
    }
}

pub async fn my_requests(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(page): Query<PageQuery>,
) -> PageResult {
    let (rows, older) = views(
        &state,
        brevet_store::RequestFilter {
            requester: Some(viewer.principal.id.clone()),
            states: vec![],
            limit: Some(PORTAL_PAGE),
            after: page.after()?,
        },
        "/requests",
    )
    .await?;
    let body = html! {
        @if rows.is_empty() { p { "No requests yet. " a href="/request" { "Request access" } } }
        @else { (requests_table(&rows, false)) }
        (older)
    };
    ok("My requests", &viewer, body)
}

pub async fn request_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let r = state
        .broker
        .get_visible(&viewer.principal, parse_id(&id)?)
        .await?;
    // Read once, for the view and the decisions' table.
    let decisions = decisions_on(&state, &r).await?;
    let v = RequestView::new(&r, approvers(&decisions));
    let mine = r.requester == viewer.principal.id;
    let may_decide = !mine
        && r.state == RequestState::Pending
        && (viewer.principal.has_role(Role::Approver) || viewer.principal.has_role(Role::Admin))
        && state.broker.may_approve(&viewer.principal, &r);
    let needs_key = state.broker.credential_input(&r.resource)
        == brevet_providers::CredentialInputKind::PublicKey;
    let body = html! {
        div.card id="request" {
            p { "State: " (layout::state_badge(&v.state.to_string())) }
            table {
                tr { th { "Requester" } td { (v.requester) } }
                tr { th { "Resource" } td { (v.resource) } }
                tr { th { "Profile" } td { (v.profile) } }
                tr { th { "Duration" } td { (v.duration) } }
                tr { th { "Reason" } td { (v.reason.clone().unwrap_or_default()) } }
                tr { th { "Ticket" } td { (v.ticket.clone().unwrap_or_default()) } }
                tr { th { "Approvals" } td { (v.approvals.len()) " of " (v.approvals_required) @if !v.approvals.is_empty() { " (" (v.approvals.join(", ")) ")" } } }
                tr { th { "Policy" } td { (v.policy) } }
                tr { th { "Expires" } td { (layout::countdown(v.expires_at, &format!("/requests/{}", r.id))) } }
                @if let Some(e) = &v.last_error { tr { th { "Last error" } td.error { (e) } } }
                @if let Some(why) = &r.revoke_reason { tr { th { "Revoked because" } td { (why) } } }
            }
        }
        @if !decisions.is_empty() {
            div.card id="decisions" {
                h2 { "Decisions" }
                table {
                    thead { tr { th { "Who" } th { "Decision" } th { "Comment" } th { "At" } } }
                    tbody {
                        @for d in &decisions {
                            tr {
                                td { (d.approver) }
                                td { @if d.decision == ApprovalDecision::Approve { "approved" } @else { "denied" } }
                                td { (d.comment.clone().unwrap_or_default()) }
                                td { (d.at.format("%Y-%m-%d %H:%M:%S UTC")) }
                            }
                        }
                    }
                }
            }
        }
        @if mine && r.state == RequestState::Approved {
            div.card {
                form method="post" action=(format!("/requests/{}/activate", r.id)) {
                    (layout::csrf(&viewer))
                    @if needs_key {
                        label for="public_key" { "Your SSH public key (the certificate is issued for it)" }
                        textarea id="public_key" name="public_key" required {}
                    }
                    p { button type="submit" id="activate" { "Activate now" } }
                    p.muted { "Access starts now and lasts " (v.duration) ". The credential is shown once." }
                }
            }
        }
        @if mine && matches!(r.state, RequestState::Pending | RequestState::Approved) {
            form.inline method="post" action=(format!("/requests/{}/cancel", r.id)) {
                (layout::csrf(&viewer))
                button.secondary type="submit" { "Withdraw request" }
            }
        }
        @if may_decide { (decide_forms(&viewer, &v)) }
    };
    ok(&format!("Request {}", r.id), &viewer, body)
}

fn decide_forms(viewer: &Viewer, v: &RequestView) -> Markup {
    html! {
        div.card.decide {
            form.inline method="post" action=(format!("/requests/{}/approve", v.id)) {
                (layout::csrf(viewer))
                input type="text" name="comment" placeholder="Comment (optional)" maxlength="2000";
                button type="submit" class="approve" { "Approve" }
            }
            form.inline method="post" action=(format!("/requests/{}/deny", v.id)) {
                (layout::csrf(viewer))
                input type="text" name="comment" placeholder="Why not (optional)" maxlength="2000";
                button.danger type="submit" class="deny" { "Deny" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ActivateForm {
    csrf: String,
    #[serde(default)]
    public_key: String,
}

impl CsrfField for ActivateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Activates and shows the credential once. The page is never cached (`no-store`), and the
/// credential is not kept anywhere: reloading does not show it again.
pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted<ActivateForm>,
) -> PageResult {
    let a = state
        .broker
        .activate(&viewer.principal, parse_id(&id)?, opt(form.public_key))
        .await?;
    let c = crate::api::credential_view(&a.credential);
    let body = html! {
        div.card {
            p.notice { "Access to " (a.request.resource) " (" (a.request.profile) ") is active." }
            p { "Expires: " (layout::countdown(Some(c.expires_at), "/access")) }
            p { strong { "Your credential (" (c.kind) ") — shown once; copy it now:" } }
            pre.secret id="credential" { (c.secret) }
            p.muted { "Brevet does not keep it. If you lose it, issue a new one with `brevet credentials " (a.request.id) "`." }
            p { a href="/access" { "Go to my access" } }
        }
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        layout::page("Access granted", Some(&viewer), body),
    )
        .into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, .. }: Posted<CsrfForm>,
) -> PageResult {
    let r = state
        .broker
        .cancel(&viewer.principal, parse_id(&id)?)
        .await?;
    Ok(Redirect::to(&format!("/requests/{}", r.id)).into_response())
}

#[derive(Deserialize)]
pub struct DecideForm {
    csrf: String,
    #[serde(default)]
    comment: String,
}

impl CsrfField for DecideForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn decide(
    state: AppState,
    Posted { viewer, form }: Posted<DecideForm>,
    id: String,
    d: ApprovalDecision,
) -> PageResult {
    viewer.require(Role::Approver)?;
    state
        .broker
        .decide(&viewer.principal, parse_id(&id)?, d, opt(form.comment))
        .await?;
    Ok(Redirect::to("/approvals").into_response())
}

pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<DecideForm>,
) -> PageResult {
    decide(state, posted, id, ApprovalDecision::Approve).await
}

pub async fn deny(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<DecideForm>,
) -> PageResult {
    decide(state, posted, id, ApprovalDecision::Deny).await
}

pub async fn access(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(page): Query<PageQuery>,
) -> PageResult {
    let (rows, older) = views(
        &state,
        brevet_store::RequestFilter {
            requester: Some(viewer.principal.id.clone()),
            states: vec![
                RequestState::Approved,
                RequestState::Activating,
                RequestState::Active,
                RequestState::Revoking,
                RequestState::RevokeFailed,
            ],
            limit: Some(PORTAL_PAGE),
            after: page.after()?,
        },
        "/access",
    )
    .await?;
    let rows: Vec<_> = rows.into_iter().filter(|r| r.kind == "access").collect();
    let body = html! {
        @if rows.is_empty() {
            p id="no-access" { "You hold no access right now. " a href="/request" { "Request access" } }
        } @else {
            table id="grants" {
                thead { tr { th { "Resource" } th { "Profile" } th { "State" } th { "Time left" } th { "Actions" } } }
                tbody {
                    @for r in &rows {
                        tr data-grant=(r.id) {
                            td { a href=(format!("/requests/{}", r.id)) { (r.resource) } }
                            td { (r.profile) }
                            td { (layout::state_badge(&r.state.to_string())) }
                            td { (layout::countdown(r.expires_at, "/access")) }
                            td {
                                @if r.state == RequestState::Approved {
                                    a href=(format!("/requests/{}", r.id)) { "Activate…" }
                                }
                                @if r.state == RequestState::Active {
                                    form.inline method="post" action=(format!("/grants/{}/extend", r.id)) {
                                        (layout::csrf(&viewer))
                                        input type="text" name="duration" value="30m" size="5" aria-label="extend by";
                                        button.secondary type="submit" { "Extend" }
                                    }
                                    form.inline method="post" action=(format!("/grants/{}/revoke", r.id)) {
                                        (layout::csrf(&viewer))
                                        button.danger type="submit" { "Revoke now" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (older)
    };
    ok("My access", &viewer, body)
}

#[derive(Deserialize)]
pub struct ExtendForm {
    csrf: String,
    duration: String,
}

impl CsrfField for ExtendForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn extend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted<ExtendForm>,
) -> PageResult {
    let r = state
        .broker
        .extend(&viewer.principal, parse_id(&id)?, form.duration)
        .await?;
    Ok(Redirect::to(&format!("/requests/{}", r.id)).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, .. }: Posted<CsrfForm>,
) -> PageResult {
    state
        .broker
        .revoke(
            &viewer.principal,
            parse_id(&id)?,
            Some("revoked in the portal".into()),
        )
        .await?;
    Ok(Redirect::to("/access").into_response())
}

pub async fn approvals(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(page): Query<PageQuery>,
) -> PageResult {
    viewer.require(Role::Approver)?;
    let limit = Some(PORTAL_PAGE);
    let pending = state
        .broker
        .store()
        .list_requests(&brevet_store::RequestFilter {
            requester: None,
            states: vec![RequestState::Pending],
            limit,
            after: page.after()?,
        })
        .await
        .map_err(|e| PageError::from(crate::broker::BrokerError::from(e)))?;
    // Only what this approver may decide (policy, not their own), and has not decided yet.
    let theirs: Vec<RequestView> = request_views(
        &state,
        pending
            .iter()
            .filter(|r| state.broker.may_approve(&viewer.principal, r)),
    )
    .await?
    .into_iter()
    .filter(|v| {
        !v.approvals
            .iter()
            .any(|a| a == viewer.principal.id.as_str())
    })
    .collect();
    let older = older_link("/approvals", pending.len(), limit, pending.last());
    let body = html! {
        @if theirs.is_empty() {
            @if page.cursor.is_none() && (pending.len() as i64) < PORTAL_PAGE {
                p id="inbox-empty" { "Nothing waits for your decision." }
            } @else {
                p id="inbox-empty" { "Nothing on this page waits for your decision." }
            }
        }
        @for r in &theirs {
            div.card.pending data-request=(r.id) {
                p {
                    strong { (r.requester) } " asks for " strong { (r.profile) } " on " strong { (r.resource) }
                    " for " (r.duration) "."
                }
                p { "Reason: " (r.reason.clone().unwrap_or_else(|| "—".into()))
                    @if let Some(t) = &r.ticket { " · Ticket: " (t) } }
                p.muted { (r.approvals.len()) " of " (r.approvals_required) " approvals · "
                    a href=(format!("/requests/{}", r.id)) { "details" } }
                (decide_forms(&viewer, r))
            }
        }
        (older)
    };
    ok("To approve", &viewer, body)
}
