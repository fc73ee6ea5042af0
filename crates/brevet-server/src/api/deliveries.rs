//! `GET /v1/deliveries`: the notification outbox, for admins — what was sent where, what is
//! still being retried and why, what was given up.

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    Json,
};
use brevet_core::Role;
use brevet_store::{DeliveryFilter, DeliveryState};

use serde::Deserialize;

use super::{ApiError, AppState, Caller};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state: `pending`, `delivered` or `failed` (empty: any).
    #[param(pattern = "^(pending|delivered|failed)?$")]
    state: Option<String>,
    /// Only this subscriber, e.g. `webhook:siem`, `slack:channel`, `email`.
    subscriber: Option<String>,
    /// Only deliveries about this request.
    request: Option<String>,
    /// At most this many, newest first (1 to 5000; default 200).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
    /// The next page: as the previous page's `Link` header gives it.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
}

pub use brevet_wire::DeliveryView;

/// Notification deliveries, newest first (admins).
#[utoipa::path(get, path = "/v1/deliveries", params(DeliveriesQuery),
    responses((status = 200, body = [DeliveryView], headers(("Link" = String, description = "When the page is full: `<PATH?QUERY&cursor=…>; rel=\"next\"`, the next page (RFC 8288); no header on the last page"))), (status = 400, description = "The query string is not valid", body = super::ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<(axum::http::HeaderMap, Json<Vec<DeliveryView>>), ApiError> {
    caller.require(Role::Admin)?;
    let Query(q) = q?;
    let page = super::paging::Page::read(q.limit, 200, 5000, q.cursor.as_deref())?;
    let wanted = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{s}` is not a delivery state; use pending, delivered or failed"
            ))
        })?),
    };
    let rows = state
        .broker
        .store()
        .list_deliveries(&DeliveryFilter {
            state: wanted,
            subscriber: q.subscriber,
            request_id: q.request,
            limit: Some(page.limit),
            after: page.after.clone(),
        })
        .await
        .map_err(crate::broker::BrokerError::from)?;
    let next = page.next(
        &uri,
        rows.len(),
        rows.last()
            .map(|d| brevet_store::PageCursor::new(d.created_at, d.id.clone())),
    );
    let body = Json(
        rows.into_iter()
            .map(|d| DeliveryView {
                id: d.id,
                subscriber: d.subscriber,
                event_type: d.event_type,
                request_id: d.request_id,
                state: d.state.as_str().to_owned(),
                attempts: d.attempts,
                last_error: d.last_error,
                next_attempt_at: d.next_attempt_at,
                created_at: d.created_at,
                updated_at: d.updated_at,
                delivered_at: d.delivered_at,
            })
            .collect(),
    );
    Ok((next, body))
}
