//! `/v1/catalog/…` and `/v1/profiles/…`: the permission catalogs and the neutral access
//! profiles, for any signed-in principal (requesters look up what a profile grants before they
//! ask).

use axum::{
    extract::{rejection::JsonRejection, rejection::QueryRejection, Path, Query, State},
    http::StatusCode,
    Json,
};
use brevet_wire::{CatalogEntry, CatalogHit, CompileBody, CompiledProfile, ProfileExplanation};
use serde::Deserialize;

use super::{ApiError, AppState, Caller, ErrorBody};
use crate::access::AccessError;

type ApiResult<T> = Result<T, ApiError>;

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound(_) | AccessError::UnknownProfile { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            AccessError::BadInput(_) | AccessError::Compile(_) => {
                ApiError::bad_request(e.to_string())
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words of the name (at most 12, split at white space).
    #[param(
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*([^\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+([\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+|$)){0,12}$"
    )]
    q: String,
    /// aws, gcp, azure or okta.
    #[param(pattern = "^(aws|gcp|azure|okta)$")]
    cloud: Option<String>,
    /// list, read, write, tagging (or tag) or permissions-management (any case; `_` or a space
    /// for the `-`).
    #[param(
        pattern = "^([Ll][Ii][Ss][Tt]|[Rr][Ee][Aa][Dd]|[Ww][Rr][Ii][Tt][Ee]|[Tt][Aa][Gg]([Gg][Ii][Nn][Gg])?|[Pp][Ee][Rr][Mm][Ii][Ss][Ss][Ii][Oo][Nn][Ss][- _][Mm][Aa][Nn][Aa][Gg][Ee][Mm][Ee][Nn][Tt])$"
    )]
    access: Option<String>,
    /// At most this many (1 to 200, default 20).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// Search permissions and precut roles by name, typo-tolerant.
#[utoipa::path(get, path = "/v1/catalog/search", params(SearchParams),
    responses((status = 200, body = Vec<CatalogHit>), (status = 400, description = "The query string is not valid", body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    _caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult<Json<Vec<CatalogHit>>> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    super::handlers::limit_within(p.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX)), 200)?;
    let hits = state.access.search(
        &p.q,
        p.cloud.as_deref(),
        p.access.as_deref(),
        p.limit.unwrap_or(20),
    )?;
    Ok(Json(hits))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EntryParams {
    /// aws, gcp, azure or okta (needed only when the name exists in several).
    #[param(pattern = "^(aws|gcp|azure|okta)$")]
    cloud: Option<String>,
}

/// One permission or precut role.
#[utoipa::path(get, path = "/v1/catalog/entries/{name}", params(("name" = String, Path), EntryParams),
    responses((status = 200, body = CatalogEntry), (status = 400, description = "The query string is not valid", body = ErrorBody), (status = 404, description = "No such permission or role", body = ErrorBody)))]
pub async fn entry(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
    params: Result<Query<EntryParams>, QueryRejection>,
) -> ApiResult<Json<CatalogEntry>> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(state.access.show(&name, p.cloud.as_deref())?))
}

/// Compile a neutral profile for a native resource.
#[utoipa::path(post, path = "/v1/profiles/{name}/compile", params(("name" = String, Path)), request_body = CompileBody,
    responses((status = 200, body = CompiledProfile), (status = 400, description = "The body is not valid, or the profile does not compile for this resource", body = ErrorBody), (status = 404, description = "No such profile", body = ErrorBody)))]
pub async fn compile(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
    b: Result<Json<CompileBody>, JsonRejection>,
) -> ApiResult<Json<CompiledProfile>> {
    let Json(b) = b.map_err(ApiError::from)?;
    Ok(Json(state.access.compile(&name, &b.resource)?))
}

/// A neutral profile in plain words, compiled for each cloud.
#[utoipa::path(get, path = "/v1/profiles/{name}/explain", params(("name" = String, Path)),
    responses((status = 200, body = ProfileExplanation), (status = 404, description = "No such profile", body = ErrorBody)))]
pub async fn explain(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ProfileExplanation>> {
    Ok(Json(state.access.explain(&name)?))
}
