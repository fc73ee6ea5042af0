//! The web portal: server-rendered HTML (maud escapes every interpolated value), served by the
//! same binary. Sessions are cookies holding a random token whose hash is in the store;
//! every state-changing form carries the session's CSRF token; responses carry a strict
//! Content-Security-Policy (scripts and styles only from `/static`, no inline code).
//! The portal calls the same broker operations as the JSON API, so the same policy applies.

mod admin;
mod analyzer;
mod layout;
mod login;
mod pages;

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use brevet_core::{Principal, Role};
use subtle::ConstantTimeEq;

use crate::{api::AppState, auth::hash_token, broker::BrokerError};

pub(crate) const SESSION_COOKIE: &str = "brevet_session";

/// A state-changing form from someone signed in: the session (`viewer`) and the `form`, whose
/// `csrf` field has already been checked against the session in constant time. Every POST page
/// that needs a session takes this, so none can forget the check. A missing session redirects
/// to sign-in, a malformed form is a 400, and a wrong token a 403, in that order.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

/// A form that carries the session's CSRF token.
pub trait CsrfField {
    fn csrf(&self) -> &str;
}

/// A form with nothing but the CSRF token (cancel, revoke, sign out).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl<T> FromRequest<AppState> for Posted<T>
where
    T: serde::de::DeserializeOwned + CsrfField + Send,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), state).await?;
        viewer.check_csrf(form.csrf())?;
        Ok(Self { viewer, form })
    }
}

/// Someone signed in to the portal.
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
    pub token: String,
}

impl Viewer {
    /// Refuses a form whose CSRF token is not this session's (constant-time compare).
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from Brevet (CSRF check failed). Reload the page and try again.",
            ))
        }
    }

    pub fn require(&self, role: Role) -> Result<(), PageError> {
        if self.principal.has_role(role) || self.principal.has_role(Role::Admin) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "This page needs the `{}` role, which `{}` does not have.",
                    format!("{role:?}").to_lowercase(),
                    self.principal.id
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
            return Err(PageError::SignIn);
        };
        let session = state
            .broker
            .store()
            .session(&hex::encode(hash_token(&token)), chrono::Utc::now())
            .await
            .map_err(|e| PageError::from(BrokerError::from(e)))?;
        let Some(session) = session.filter(|s| s.kind == "browser") else {
            return Err(PageError::SignIn);
        };
        let principal =
            crate::session::principal_of(&state.broker, &session).ok_or(PageError::SignIn)?;
        // Same check as the API's `Caller`: every page, every action, whatever the role.
        state
            .broker
            .ensure_caller_unlocked(&principal, "caller")
            .await?;
        Ok(Viewer {
            principal,
            csrf: session.csrf,
            token,
        })
    }
}

/// A failed page: rendered as an HTML error page (or a redirect to sign in).
pub enum PageError {
    SignIn,
    Shown { status: StatusCode, message: String },
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Shown {
            status,
            message: message.into(),
        }
    }
}

impl From<BrokerError> for PageError {
    fn from(e: BrokerError) -> Self {
        let api = crate::api::ApiError::from(e);
        Self::new(api.status(), api.message())
    }
}

impl From<crate::api::ApiError> for PageError {
    fn from(api: crate::api::ApiError) -> Self {
        Self::new(api.status(), api.message())
    }
}

impl From<axum::extract::rejection::FormRejection> for PageError {
    fn from(e: axum::extract::rejection::FormRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("The form was not valid: {}", e.body_text()),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/login").into_response(),
            PageError::Shown { status, message } => {
                (status, layout::error_page(status, &message)).into_response()
            }
        }
    }
}

pub type PageResult = Result<Response, PageError>;

/// A portal cookie: HttpOnly, SameSite=Lax (sent on the identity provider's redirect back),
/// Secure whenever Brevet is served over HTTPS, for the whole site.
pub(crate) fn cookie(state: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.broker.settings().secure_cookies())
        .path("/")
        .build()
}

async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

async fn home(viewer: Result<Viewer, PageError>) -> Redirect {
    match viewer {
        Ok(_) => Redirect::to("/access"),
        Err(_) => Redirect::to("/login"),
    }
}

async fn static_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/portal.css"),
    )
        .into_response()
}

async fn static_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/portal.js"),
    )
        .into_response()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/static/portal.css", get(static_css))
        .route("/static/portal.js", get(static_js))
        .route("/login", get(login::page))
        .route("/login/token", post(login::with_token))
        .route("/auth/oidc/start", get(login::oidc_start))
        .route("/auth/oidc/callback", get(login::oidc_callback))
        .route("/logout", post(login::logout))
        .route("/request", get(pages::request_form).post(pages::create))
        .route("/requests", get(pages::my_requests))
        .route("/requests/{id}", get(pages::request_page))
        .route("/requests/{id}/activate", post(pages::activate))
        .route("/requests/{id}/cancel", post(pages::cancel))
        .route("/requests/{id}/approve", post(pages::approve))
        .route("/requests/{id}/deny", post(pages::deny))
        .route("/access", get(pages::access))
        .route("/grants/{id}/revoke", post(pages::revoke))
        .route("/grants/{id}/extend", post(pages::extend))
        .route("/approvals", get(pages::approvals))
        .route("/admin/kill", get(admin::kill_page).post(admin::kill))
        .route("/admin/unlock", post(admin::unlock))
        .route("/admin/audit", get(admin::audit))
        .route("/analyzer", get(analyzer::overview))
        .route("/analyzer/findings/{id}", get(analyzer::finding))
        .route("/analyzer/report.html", get(analyzer::report))
        .route("/analyzer/upload/remove", post(analyzer::remove_upload))
        .layer(middleware::from_fn(security_headers))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(crate::api::request_span),
        )
        .with_state(state.clone())
        .merge(upload_router(state))
}

/// The one portal route with a large body: IAM exports for the analyzer, bounded by
/// `[analyzer] max_upload_mib` instead of the 64 KiB every other form gets.
fn upload_router(state: AppState) -> Router {
    let max = state.analyzer.settings().max_upload();
    Router::new()
        .route("/analyzer/upload", post(analyzer::upload))
        .layer(axum::extract::DefaultBodyLimit::max(max))
        .layer(middleware::from_fn(security_headers))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(crate::api::request_span),
        )
        .with_state(state)
}
