//! The HTTP JSON API under `/v1`, with its OpenAPI document at `/v1/openapi.json`.

mod admission;
mod catalog;
mod deliveries;
mod dto;
mod error;
pub(crate) mod handlers;
mod login;
mod paging;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRequestParts, State},
    http::request::Parts,
    routing::{get, post},
    Json, Router,
};
use brevet_core::{Principal, Role};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer, trace::TraceLayer};
use utoipa::OpenApi;

pub use deliveries::DeliveryView;
pub use dto::*;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use login::{DeviceLogin, DevicePollBody, LoginResult};

use crate::{auth::Authenticator, broker::Broker};

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub auth: Arc<dyn Authenticator>,
    /// Single sign-on, when `[oidc]` is configured.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Signed audit checkpoints: what `audit verify` holds the chain to.
    pub anchor: Arc<crate::audit_anchor::AuditAnchor>,
    /// The permission catalog and the neutral access profiles.
    pub access: Arc<crate::access::AccessLanguage>,
    /// The identity analyzer over the configured IAM exports.
    pub analyzer: Arc<crate::analyzer::Analyzer>,
}

/// The authenticated caller of a route. Every route that changes or reads data takes one.
pub struct Caller(pub Principal);

impl Caller {
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        if self.0.has_role(role) || self.0.has_role(Role::Admin) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the `{}` role, which `{}` does not have",
                format!("{role:?}").to_lowercase(),
                self.0.id
            )))
        }
    }
}

/// The client's address, for per-client limits: from `server.client_ip_header` when a reverse
/// proxy in front sets it (the last entry of a list, the one that proxy added), else the
/// connection's peer. Never used to authenticate anyone.
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let forwarded = state
            .broker
            .settings()
            .client_ip_header
            .as_ref()
            .and_then(|h| parts.headers.get_all(h).iter().next_back())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(
            forwarded
                .or(peer)
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        ))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = state.auth.authenticate(&parts.headers).await?;
        // The kill switch is checked here, once, for every route and every kind of token, so no
        // handler can forget it: a locked caller can do nothing, admins included (an admin is
        // spared only by the everyone-lock). Storage trouble refuses too (fail closed).
        state
            .broker
            .ensure_caller_unlocked(&principal, "caller")
            .await?;
        Ok(Caller(principal))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Brevet", description = "Just-in-time privileged access broker"),
    paths(
        health,
        handlers::metrics,
        handlers::whoami,
        handlers::eligible,
        handlers::create_request,
        handlers::list_requests,
        handlers::get_request,
        handlers::approve,
        handlers::deny,
        handlers::cancel,
        handlers::activate,
        handlers::list_grants,
        handlers::revoke,
        handlers::extend,
        handlers::credentials,
        handlers::policy_test,
        handlers::audit_verify,
        handlers::audit_checkpoint,
        handlers::audit_checkpoint_now,
        handlers::audit_export,
        handlers::reconcile,
        handlers::kill,
        handlers::unlock,
        handlers::locks,
        handlers::provider_document,
        handlers::kind_document,
        catalog::search,
        catalog::entry,
        catalog::compile,
        catalog::explain,
        deliveries::list_deliveries,
        login::device_start,
        login::device_poll,
        login::logout,
    ),
    components(schemas(DeviceLogin, DevicePollBody, LoginResult, crate::broker::Eligible, DeliveryView, CredentialBody, KillBody, UnlockBody, LockView, crate::broker::KillReport, crate::broker::KillOutcome, ErrorBody, ErrorDetail, CheckpointView, brevet_audit::Checkpoint, RequestView, CredentialView, ActivatedView, WhoAmI, PolicyTestView, CreateRequest, Decision, RevokeBody, ExtendBody, PolicyTestBody)),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The answers every route can give besides its own, added here so that no route's list can
/// forget them: a route that takes a user's bearer token (one whose `security` is the
/// document's default) answers 401 without a valid token, 403 when the caller is locked by the
/// kill switch (or lacks the role), and 503 when the store or the identity provider cannot be
/// reached or the server is at capacity; every route answers 408 when it takes longer than the
/// router's timeout, and every route with a body 413 past the body limit.
struct CommonResponses;
impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{path::Operation, ContentBuilder, Ref, Response, ResponseBuilder};
        let error = |description: &str| -> Response {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let bare = |description: &str| ResponseBuilder::new().description(description).build();
        let add = |op: &mut Operation| {
            let responses = &mut op.responses.responses;
            let mut put = |code: &str, r: Response| {
                responses.entry(code.to_owned()).or_insert(r.into());
            };
            if op.security.is_none() {
                put("401", error("No valid bearer token was sent"));
                put(
                    "403",
                    error("The caller is locked by the kill switch, or lacks the role"),
                );
                put(
                    "503",
                    error("The store or the identity provider cannot be reached, or the server is at capacity (`Retry-After`)"),
                );
            }
            put(
                "408",
                bare("The request took longer than the server's timeout"),
            );
            if op.request_body.is_some() {
                put("413", bare("The body is over the 64 KiB limit"));
            }
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add(op);
            }
        }
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Healthy only if the store answers and the scheduler is making progress: an API that answers
/// while nothing expires must not look green to a load balancer or an alert.
#[utoipa::path(get, path = "/v1/health", security(()),
    responses((status = 200, description = "`status`, and when the scheduler and the reconciler last made progress", body = Object), (status = 503, description = "The store cannot be reached, or the scheduler is stalled", body = ErrorBody)))]
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .broker
        .store()
        .ping()
        .await
        .map_err(|e| ApiError::from(crate::broker::BrokerError::from(e)))?;
    let hb = &state.broker.heartbeat;
    state
        .broker
        .scheduler_health(chrono::Utc::now())
        .map_err(|m| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "scheduler_stalled",
                m,
            )
        })?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "scheduler_last_progress": hb.scheduler_at(),
        "reconciler_last_pass": hb.reconciler_at(),
    })))
}

pub fn router(state: AppState) -> Router {
    let admission = Arc::new(admission::Admission::new(state.broker.clone()));
    // Never held back by admission control: what keeps access from outliving its grant (the
    // kill switch, revocation, the documents hosts fetch such as the SSH KRL) and what
    // operators watch.
    let always = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/kill", post(handlers::kill))
        .route("/v1/unlock", post(handlers::unlock))
        .route("/v1/locks", get(handlers::locks))
        .route("/v1/grants/{id}/revoke", post(handlers::revoke))
        .route(
            "/v1/providers/{name}/{document}",
            get(handlers::provider_document),
        )
        .route("/v1/{kind}/{document}", get(handlers::kind_document));
    let admitted = Router::new()
        .route("/v1/whoami", get(handlers::whoami))
        .route("/v1/eligible", get(handlers::eligible))
        .route("/v1/login/device", post(login::device_start))
        .route("/v1/login/device/poll", post(login::device_poll))
        .route("/v1/logout", post(login::logout))
        .route(
            "/v1/requests",
            post(handlers::create_request).get(handlers::list_requests),
        )
        .route("/v1/requests/{id}", get(handlers::get_request))
        .route("/v1/requests/{id}/approve", post(handlers::approve))
        .route("/v1/requests/{id}/deny", post(handlers::deny))
        .route("/v1/requests/{id}/cancel", post(handlers::cancel))
        .route("/v1/requests/{id}/activate", post(handlers::activate))
        .route("/v1/grants", get(handlers::list_grants))
        .route("/v1/grants/{id}/extend", post(handlers::extend))
        .route("/v1/grants/{id}/credentials", post(handlers::credentials))
        .route("/v1/policy/test", post(handlers::policy_test))
        .route("/v1/catalog/search", get(catalog::search))
        .route("/v1/catalog/entries/{name}", get(catalog::entry))
        .route("/v1/profiles/{name}/compile", post(catalog::compile))
        .route("/v1/profiles/{name}/explain", get(catalog::explain))
        .route("/v1/audit/verify", get(handlers::audit_verify))
        .route(
            "/v1/audit/checkpoint",
            get(handlers::audit_checkpoint).post(handlers::audit_checkpoint_now),
        )
        .route("/v1/audit/export", get(handlers::audit_export))
        .route("/v1/reconcile", post(handlers::reconcile))
        .route("/v1/deliveries", get(deliveries::list_deliveries))
        .layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ));
    Router::new()
        .merge(always)
        .merge(admitted)
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see /v1/openapi.json",
            )
        })
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(120),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of one HTTP request: method and path, never the query string (the sign-in callback
/// carries the authorization code and state there, the audit page people's names). At `info`, so
/// an exported trace starts at the API call; probes and scrapes (health, metrics) are at `trace`,
/// below what is logged or exported, so they are not a trace every few seconds.
pub(crate) fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let path = req.uri().path();
    if matches!(path, "/v1/health" | "/metrics") {
        return tracing::trace_span!("request", method = %req.method(), path);
    }
    tracing::info_span!("request", method = %req.method(), path)
}
