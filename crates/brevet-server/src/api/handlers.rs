use std::collections::BTreeSet;

use axum::{
    body::Body,
    extract::{rejection::JsonRejection, rejection::QueryRejection, Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use brevet_audit::{ExportFormat, VerifyReport};
use brevet_core::{ApprovalDecision, PrincipalId, RequestId, RequestState, Role};
use brevet_policy::Subject;
use futures::StreamExt;
use serde::Deserialize;

use super::{dto::*, ApiError, AppState, Caller, ErrorBody};
use crate::broker::AccessAsk;

type ApiResult<T> = Result<T, ApiError>;

fn parse_id(id: &str) -> ApiResult<RequestId> {
    id.parse()
        .map_err(|e: brevet_core::CoreError| ApiError::bad_request(e.to_string()))
}

pub(crate) async fn view(state: &AppState, r: &brevet_core::Request) -> ApiResult<RequestView> {
    Ok(RequestView::new(r, approvers(&decisions(state, r).await?)))
}

/// The decisions on `r`; none read for a request that needed no approval (most grants:
/// auto-approved), which cannot have any.
pub(crate) async fn decisions(
    state: &AppState,
    r: &brevet_core::Request,
) -> ApiResult<Vec<brevet_core::Approval>> {
    if !r.awaited_approval() {
        return Ok(Vec::new());
    }
    Ok(state
        .broker
        .store()
        .approvals(r.id)
        .await
        .map_err(crate::broker::BrokerError::from)?)
}

/// Who approved, from the decisions on a request.
pub(crate) fn approvers(decisions: &[brevet_core::Approval]) -> Vec<String> {
    decisions
        .iter()
        .filter(|a| a.decision == ApprovalDecision::Approve)
        .map(|a| a.approver.to_string())
        .collect()
}

/// [`view`] of a page of requests, reading their decisions in one go.
pub(crate) async fn views<'a>(
    state: &AppState,
    rs: impl Iterator<Item = &'a brevet_core::Request>,
) -> ApiResult<Vec<RequestView>> {
    let rs: Vec<&brevet_core::Request> = rs.collect();
    let awaited: Vec<RequestId> = rs
        .iter()
        .filter(|r| r.awaited_approval())
        .map(|r| r.id)
        .collect();
    let mut decisions = state
        .broker
        .store()
        .approvals_of(&awaited)
        .await
        .map_err(crate::broker::BrokerError::from)?;
    Ok(rs
        .into_iter()
        .map(|r| {
            let names = decisions
                .remove(&r.id)
                .map_or_else(Vec::new, |d| approvers(&d));
            RequestView::new(r, names)
        })
        .collect())
}

/// A list's `limit`, refused outside `1..=max` (as the OpenAPI document says) instead of being
/// quietly clamped, so a client asking for `-1` or `0` learns that it asked for nonsense.
pub(crate) fn limit_within(limit: Option<i64>, max: i64) -> ApiResult<Option<i64>> {
    match limit {
        Some(n) if !(1..=max).contains(&n) => Err(ApiError::bad_request(format!(
            "limit {n} is out of range: use 1 to {max}"
        ))),
        _ => Ok(limit),
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(t)| t).map_err(ApiError::from)
}

/// Who the caller is.
#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        id: caller.0.id.to_string(),
        groups: caller.0.groups.iter().cloned().collect(),
        roles: crate::auth::role_names(&caller.0).into_iter().collect(),
    })
}

/// What policy lets the caller ask for, with the limits that apply (the portal's request form).
#[utoipa::path(get, path = "/v1/eligible", responses((status = 200, body = [Eligible])))]
pub async fn eligible(State(state): State<AppState>, caller: Caller) -> Json<Vec<Eligible>> {
    Json(state.broker.eligible(&caller.0))
}

/// Ask for an access profile on a resource. Policy decides at once: refused, pending approval,
/// or approved automatically.
#[utoipa::path(post, path = "/v1/requests", request_body = CreateRequest,
    responses((status = 201, body = RequestView), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody), (status = 403, description = "The caller lacks the role, or policy refuses", body = ErrorBody), (status = 429, description = "Too many requests by this principal in the last minute", body = ErrorBody)))]
pub async fn create_request(
    State(state): State<AppState>,
    caller: Caller,
    b: Result<Json<CreateRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RequestView>)> {
    let principal = caller.require(Role::Requester)?;
    let b = body(b)?;
    let ask = AccessAsk {
        resource: b.resource,
        profile: b.profile,
        duration: b.duration,
        reason: b.reason,
        ticket: b.ticket,
    };
    let r = state.broker.create(principal, ask).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &r).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only requests waiting for approval (for approvers: others' requests they may decide).
    #[serde(default)]
    pending: bool,
    /// Everyone's requests (approvers and admins), not only the caller's.
    #[serde(default)]
    all: bool,
    /// At most this many, newest first (1 to 5000; default 500).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
    /// The next page: as the previous page's `Link` header gives it.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
}

/// List requests: your own, or (`all=true`) everyone's that you may see — all, for admins; for
/// approvers, those approval policy lets them decide.
#[utoipa::path(get, path = "/v1/requests", params(ListQuery), responses((status = 200, body = [RequestView], headers(("Link" = String, description = "When the page is full: `<PATH?QUERY&cursor=…>; rel=\"next\"`, the next page (RFC 8288); no header on the last page"))), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody)))]
pub async fn list_requests(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<(axum::http::HeaderMap, Json<Vec<RequestView>>)> {
    let Query(q) = q?;
    let page = super::paging::Page::read(q.limit, 500, 5000, q.cursor.as_deref())?;
    let everyone = q.all
        || (q.pending && (caller.0.has_role(Role::Approver) || caller.0.has_role(Role::Admin)));
    if everyone {
        caller.require(Role::Approver)?;
    }
    let filter = brevet_store::RequestFilter {
        requester: if everyone {
            None
        } else {
            Some(caller.0.id.clone())
        },
        states: if q.pending {
            vec![RequestState::Pending]
        } else {
            vec![]
        },
        limit: Some(page.limit),
        after: page.after.clone(),
    };
    let rows = state
        .broker
        .store()
        .list_requests(&filter)
        .await
        .map_err(crate::broker::BrokerError::from)?;
    let out = views(
        &state,
        rows.iter().filter(|r| state.broker.may_see(&caller.0, r)),
    )
    .await?;
    let next = page.next(&uri, rows.len(), rows.last().map(cursor_of));
    Ok((next, Json(out)))
}

fn cursor_of(r: &brevet_core::Request) -> brevet_store::PageCursor {
    brevet_store::PageCursor::new(r.created_at, r.id.to_string())
}

#[utoipa::path(get, path = "/v1/requests/{id}", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")),
    responses((status = 200, body = RequestView), (status = 400, description = "The id is not a UUID, or the body is not valid", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody)))]
pub async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestView>> {
    let r = state.broker.get_visible(&caller.0, parse_id(&id)?).await?;
    Ok(Json(view(&state, &r).await?))
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    d: ApprovalDecision,
    b: Option<Decision>,
) -> ApiResult<Json<RequestView>> {
    let principal = caller.require(Role::Approver)?;
    let comment = b.and_then(|b| b.comment);
    let r = state
        .broker
        .decide(principal, parse_id(&id)?, d, comment)
        .await?;
    Ok(Json(view(&state, &r).await?))
}

fn optional<T: Default>(b: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    match b {
        Ok(Json(t)) => Ok(t),
        // An empty body is fine for optional bodies; a malformed one is not.
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

/// Approve someone else's pending request (never your own).
#[utoipa::path(post, path = "/v1/requests/{id}/approve", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")), request_body = Decision,
    responses((status = 200, body = RequestView), (status = 400, description = "The id is not a UUID, or the body is not valid", body = ErrorBody), (status = 403, description = "The caller lacks the role, or policy refuses", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<Decision>, JsonRejection>,
) -> ApiResult<Json<RequestView>> {
    let b = optional(b)?;
    decide(state, caller, id, ApprovalDecision::Approve, Some(b)).await
}

/// Deny someone else's pending request; one denial ends it.
#[utoipa::path(post, path = "/v1/requests/{id}/deny", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")), request_body = Decision,
    responses((status = 200, body = RequestView), (status = 400, description = "The id is not a UUID, or the body is not valid", body = ErrorBody), (status = 403, description = "The caller lacks the role, or policy refuses", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody)))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<Decision>, JsonRejection>,
) -> ApiResult<Json<RequestView>> {
    let b = optional(b)?;
    decide(state, caller, id, ApprovalDecision::Deny, Some(b)).await
}

/// Withdraw your own request before it is activated.
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")),
    responses((status = 200, body = RequestView), (status = 400, description = "The id is not a UUID, or the body is not valid", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestView>> {
    let r = state.broker.cancel(&caller.0, parse_id(&id)?).await?;
    Ok(Json(view(&state, &r).await?))
}

/// Activate your approved request: access is created now and the duration starts now. The answer
/// carries the credential, once; Brevet does not store it.
#[utoipa::path(post, path = "/v1/requests/{id}/activate", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")), request_body = CredentialBody,
    responses((status = 200, body = ActivatedView), (status = 400, description = "The id is not a UUID, or the body is not valid (e.g. a public key this resource does not take)", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody), (status = 502, description = "A provider failed; the message names it", body = ErrorBody), (status = 504, description = "A provider did not answer in time", body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<CredentialBody>, JsonRejection>,
) -> ApiResult<Response> {
    let b = optional(b)?;
    let a = state
        .broker
        .activate(&caller.0, parse_id(&id)?, b.public_key)
        .await?;
    let out = ActivatedView {
        grant: view(&state, &a.request).await?,
        credential: credential_view(&a.credential),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(out)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantsQuery {
    /// Include ended grants, and (admins) everyone's.
    #[serde(default)]
    all: bool,
    /// At most this many, newest first (1 to 5000; default 500).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
    /// The next page: as the previous page's `Link` header gives it.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
}

/// Grants: requests that are, or were, activated.
#[utoipa::path(get, path = "/v1/grants", params(GrantsQuery), responses((status = 200, body = [RequestView], headers(("Link" = String, description = "When the page is full: `<PATH?QUERY&cursor=…>; rel=\"next\"`, the next page (RFC 8288); no header on the last page"))), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody)))]
pub async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    q: Result<Query<GrantsQuery>, QueryRejection>,
) -> ApiResult<(axum::http::HeaderMap, Json<Vec<RequestView>>)> {
    let Query(q) = q?;
    let page = super::paging::Page::read(q.limit, 500, 5000, q.cursor.as_deref())?;
    let mut states = vec![
        RequestState::Activating,
        RequestState::Active,
        RequestState::Revoking,
        RequestState::RevokeFailed,
    ];
    if q.all {
        states.push(RequestState::Revoked);
    }
    let filter = brevet_store::RequestFilter {
        requester: if q.all && caller.0.has_role(Role::Admin) {
            None
        } else {
            Some(caller.0.id.clone())
        },
        states,
        limit: Some(page.limit),
        after: page.after.clone(),
    };
    let rows = state
        .broker
        .store()
        .list_requests(&filter)
        .await
        .map_err(crate::broker::BrokerError::from)?;
    let out = views(
        &state,
        rows.iter()
            .filter(|r| matches!(r.kind, brevet_core::RequestKind::Access)),
    )
    .await?;
    let next = page.next(&uri, rows.len(), rows.last().map(cursor_of));
    Ok((next, Json(out)))
}

/// End a grant now (its owner or an admin). The answer shows the revocation evidence, or the
/// failure that is being retried.
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")), request_body = RevokeBody,
    responses((status = 200, body = RequestView), (status = 400, description = "The id is not a UUID, or the body is not valid", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<RevokeBody>, JsonRejection>,
) -> ApiResult<Json<RequestView>> {
    let b = optional(b)?;
    let r = state
        .broker
        .revoke(&caller.0, parse_id(&id)?, b.reason)
        .await?;
    Ok(Json(view(&state, &r).await?))
}

/// Ask to extend your active grant. Returns the extension request (approved at once if policy
/// needs no approvals).
#[utoipa::path(post, path = "/v1/grants/{id}/extend", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")), request_body = ExtendBody,
    responses((status = 201, body = RequestView), (status = 400, description = "The id is not a UUID, or the body is not valid", body = ErrorBody), (status = 403, description = "The caller lacks the role, or policy refuses", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody), (status = 429, description = "Too many requests by this principal in the last minute", body = ErrorBody)))]
pub async fn extend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<ExtendBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RequestView>)> {
    let b = body(b)?;
    let r = state
        .broker
        .extend(&caller.0, parse_id(&id)?, b.duration)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, &r).await?)))
}

/// Issue a fresh credential for your active grant (the previous one stops working).
#[utoipa::path(post, path = "/v1/grants/{id}/credentials", params(("id" = String, Path, format = Uuid, description = "The request's (or grant's) id, as `brevet requests` prints it")), request_body = CredentialBody,
    responses((status = 200, body = CredentialView), (status = 400, description = "The id is not a UUID, or the body is not valid (e.g. a public key this resource does not take)", body = ErrorBody), (status = 404, description = "No such request, or not one the caller may see", body = ErrorBody), (status = 409, description = "The request is not in a state that allows this", body = ErrorBody), (status = 502, description = "A provider failed; the message names it", body = ErrorBody), (status = 504, description = "A provider did not answer in time", body = ErrorBody)))]
pub async fn credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<CredentialBody>, JsonRejection>,
) -> ApiResult<Response> {
    let b = optional(b)?;
    let c = state
        .broker
        .reissue(&caller.0, parse_id(&id)?, b.public_key)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(credential_view(&c)),
    )
        .into_response())
}

/// Evaluate a request against policy without creating it (dry run).
#[utoipa::path(post, path = "/v1/policy/test", request_body = PolicyTestBody,
    responses((status = 200, body = PolicyTestView), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody), (status = 403, description = "Only admins may evaluate as someone else", body = ErrorBody)))]
pub async fn policy_test(
    State(state): State<AppState>,
    caller: Caller,
    b: Result<Json<PolicyTestBody>, JsonRejection>,
) -> ApiResult<Json<PolicyTestView>> {
    let b = body(b)?;
    if (b.principal.is_some() || b.groups.is_some()) && !caller.0.has_role(Role::Admin) {
        return Err(ApiError::forbidden(
            "only admins may evaluate policy as someone else",
        ));
    }
    let id = match &b.principal {
        Some(p) => PrincipalId::parse(p).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => caller.0.id.clone(),
    };
    let groups: BTreeSet<String> = match (&b.groups, &b.principal) {
        (Some(g), _) => g.iter().cloned().collect(),
        (None, Some(_)) => state.broker.principal_groups(&id),
        (None, None) => caller.0.groups.clone(),
    };
    let ask = AccessAsk {
        resource: b.resource,
        profile: b.profile,
        duration: b.duration,
        reason: b.reason,
        ticket: b.ticket,
    };
    let d = state.broker.evaluate(
        Subject {
            id: &id,
            groups: &groups,
        },
        &ask,
        false,
    )?;
    Ok(Json(policy_test_view(d)))
}

/// Verify the audit chain (admins): against its head, and against the latest checkpoint this
/// server signed (so events removed from the end with the head set back are found too).
#[utoipa::path(get, path = "/v1/audit/verify", responses((status = 200, body = VerifyReport), (status = 409, description = "The latest checkpoint cannot be trusted (bad key or file)", body = ErrorBody)))]
pub async fn audit_verify(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<VerifyReport>> {
    caller.require(Role::Admin)?;
    Ok(Json(state.anchor.verify_log().await.map_err(anchor_error)?))
}

fn anchor_error(e: crate::audit_anchor::AnchorError) -> ApiError {
    use crate::audit_anchor::AnchorError;
    match e {
        AnchorError::Store(s) => crate::broker::BrokerError::from(s).into(),
        AnchorError::Broken(_) => {
            ApiError::new(StatusCode::CONFLICT, "audit_tampered", e.to_string())
        }
        AnchorError::Key { .. } | AnchorError::File { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "audit_checkpoint_untrusted",
            e.to_string(),
        ),
    }
}

/// The latest signed audit checkpoint and the public key that verifies it (admins).
#[utoipa::path(get, path = "/v1/audit/checkpoint", responses((status = 200, body = CheckpointView), (status = 409, description = "The checkpoint cannot be trusted (bad key or file)", body = ErrorBody)))]
pub async fn audit_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CheckpointView>> {
    caller.require(Role::Admin)?;
    Ok(Json(CheckpointView {
        public_key: state.anchor.public_key().to_string(),
        checkpoint: state.anchor.latest().map_err(anchor_error)?,
    }))
}

/// Sign the current head now, if it moved since the last checkpoint, and publish it (admins).
/// Refused (409) when the log does not extend the last checkpoint.
#[utoipa::path(post, path = "/v1/audit/checkpoint", responses((status = 200, body = CheckpointView), (status = 409, description = "The log does not extend the last checkpoint, or the checkpoint cannot be trusted", body = ErrorBody)))]
pub async fn audit_checkpoint_now(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CheckpointView>> {
    caller.require(Role::Admin)?;
    Ok(Json(CheckpointView {
        public_key: state.anchor.public_key().to_string(),
        checkpoint: state.anchor.checkpoint().await.map_err(anchor_error)?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `jsonl` (default) or `csv`.
    #[param(pattern = "^(jsonl|csv)$")]
    format: Option<String>,
}

/// Stream every audit event (admins).
#[utoipa::path(get, path = "/v1/audit/export", params(ExportQuery), responses((status = 200, description = "JSON lines (`format=jsonl`) or CSV (`format=csv`)", content((String = "application/x-ndjson"), (String = "text/csv"))), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody)))]
pub async fn audit_export(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let Query(q) = q?;
    let format: ExportFormat = q
        .format
        .as_deref()
        .unwrap_or("jsonl")
        .parse()
        .map_err(ApiError::bad_request)?;
    let store = state.broker.store().clone();
    let pages = futures::stream::unfold(Some(0i64), move |after| {
        let store = store.clone();
        async move {
            let after = after?;
            match store.audit_page(after, 500).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.seq);
                    Some((Ok(page), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let header_line = futures::stream::iter(match format {
        ExportFormat::Csv => vec![Ok::<_, std::io::Error>(
            brevet_audit::csv_header().into_bytes(),
        )],
        ExportFormat::Jsonl => vec![],
    });
    let rows = pages.map(move |page| {
        let page = page?;
        let mut out = Vec::new();
        for e in &page {
            match format {
                ExportFormat::Jsonl => {
                    out.extend(serde_json::to_vec(e).map_err(std::io::Error::other)?);
                    out.push(b'\n');
                }
                ExportFormat::Csv => out.extend(brevet_audit::write_csv_row(e)?),
            }
        }
        Ok(out)
    });
    let content_type = match format {
        ExportFormat::Jsonl => "application/x-ndjson",
        ExportFormat::Csv => "text/csv",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(header_line.chain(rows)),
    )
        .into_response())
}

/// Run a reconciliation pass now (admins).
#[utoipa::path(post, path = "/v1/reconcile", responses((status = 200, body = ReconcileReport)))]
pub async fn reconcile(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ReconcileReport>> {
    caller.require(Role::Admin)?;
    Ok(Json(state.broker.reconcile().await?))
}

/// Prometheus metrics (what each means: docs/observability.md): requests by state, pending and
/// overdue revocations per provider, scheduler lag, latency histograms of activation, revocation,
/// provider calls, audit appends and HTTP routes, provider call counts, errors and retries,
/// lease takeovers and notification deliveries. Open, unless
/// `server.metrics_token` is set; then that token, not a user's.
#[utoipa::path(get, path = "/metrics", security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String), (status = 401, description = "`server.metrics_token` is set and was not sent", body = ErrorBody), (status = 503, description = "The store cannot be reached", body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    // Optionally behind its own token (`server.metrics_token`), compared in constant time, so a
    // scraper needs no user token and the counts are not open to anyone who can reach Brevet.
    if let Some(expected) = state.broker.settings().metrics_token_sha256 {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| crate::auth::hash_token(t.trim()));
        let ok = presented
            .is_some_and(|p| bool::from(subtle::ConstantTimeEq::ct_eq(&p[..], &expected[..])));
        if !ok {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "/metrics needs `Authorization: Bearer <server.metrics_token>`",
            ));
        }
    }
    let out = crate::telemetry::render(&state.broker).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// The kill switch (admins): lock a principal (or everyone), cancel their open requests, revoke all
/// their grants on every provider in parallel, and report what took effect.
#[utoipa::path(post, path = "/v1/kill", request_body = KillBody,
    responses((status = 200, body = KillReport), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody)))]
pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    b: Result<Json<KillBody>, JsonRejection>,
) -> ApiResult<Json<KillReport>> {
    let admin = caller.require(Role::Admin)?;
    let b = body(b)?;
    let target = match (b.principal, b.all) {
        (Some(p), false) => crate::broker::KillTarget::Principal(
            PrincipalId::parse(&p).map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        (None, true) => crate::broker::KillTarget::Everyone,
        _ => {
            return Err(ApiError::bad_request(
                "name exactly one target: a principal, or all = true",
            ))
        }
    };
    Ok(Json(state.broker.kill(admin, target, b.reason).await?))
}

/// Lift a kill-switch lock (admins).
#[utoipa::path(post, path = "/v1/unlock", request_body = UnlockBody,
    responses((status = 200, body = [LockView]), (status = 400, description = "The input is not valid; the message says what is wrong", body = ErrorBody), (status = 404, description = "That principal is not locked", body = ErrorBody)))]
pub async fn unlock(
    State(state): State<AppState>,
    caller: Caller,
    b: Result<Json<UnlockBody>, JsonRejection>,
) -> ApiResult<Json<Vec<LockView>>> {
    let admin = caller.require(Role::Admin)?;
    let b = body(b)?;
    if !state.broker.unlock(admin, &b.principal).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "`{}` is not locked; `brevet locks` lists the locks",
                b.principal
            ),
        ));
    }
    locks(State(state), caller).await
}

/// Current kill-switch locks (admins).
#[utoipa::path(get, path = "/v1/locks", responses((status = 200, body = [LockView])))]
pub async fn locks(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<LockView>>> {
    caller.require(Role::Admin)?;
    let locks = state.broker.locks().await?;
    Ok(Json(
        locks
            .into_iter()
            .map(|l| LockView {
                principal: l.principal,
                reason: l.reason,
                locked_by: l.locked_by,
                locked_at: l.locked_at,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    /// Which provider instance of the kind (needed only when several are configured).
    provider: Option<String>,
}

fn document_response(content_type: &'static str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

/// A document a provider instance publishes (the SSH provider: `ca`, its user CA's public key
/// line for sshd's `TrustedUserCAKeys`, and `krl`, the OpenSSH KRL for `RevokedKeys`). Public;
/// no token needed.
#[utoipa::path(get, path = "/v1/providers/{name}/{document}", security(()), params(("name" = String, Path, description = "Provider instance"), ("document" = String, Path, description = "Document name")),
    responses((status = 200, description = "The document, in its own content type"), (status = 404, description = "No such provider instance, or it publishes no such document", body = ErrorBody), (status = 502, description = "The provider failed to produce the document", body = ErrorBody), (status = 503, description = "The store cannot be reached", body = ErrorBody)))]
pub async fn provider_document(
    State(state): State<AppState>,
    Path((name, document)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (content_type, bytes) = state
        .broker
        .provider_document(crate::broker::DocumentOwner::Instance(&name), &document)
        .await?;
    Ok(document_response(content_type, bytes))
}

/// The same, by provider kind: `/v1/ssh/ca` and `/v1/ssh/krl` (the paths hosts are configured
/// with) serve the one SSH provider's, or the one `?provider=` names. Public; no token needed.
#[utoipa::path(get, path = "/v1/{kind}/{document}", security(()), params(("kind" = String, Path, description = "Provider kind, e.g. ssh"), ("document" = String, Path, description = "Document name, e.g. krl"), DocumentQuery),
    responses((status = 200, description = "The document, in its own content type"), (status = 400, description = "The query string is not valid, or several instances of the kind are configured and `provider` names none", body = ErrorBody), (status = 404, description = "No such provider, or it publishes no such document", body = ErrorBody), (status = 502, description = "The provider failed to produce the document", body = ErrorBody), (status = 503, description = "The store cannot be reached", body = ErrorBody)))]
pub async fn kind_document(
    State(state): State<AppState>,
    Path((kind, document)): Path<(String, String)>,
    q: Result<Query<DocumentQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q?;
    let (content_type, bytes) = state
        .broker
        .provider_document(
            crate::broker::DocumentOwner::Kind {
                kind: &kind,
                instance: q.provider.as_deref(),
            },
            &document,
        )
        .await?;
    Ok(document_response(content_type, bytes))
}
