//! Signing in to the portal (OIDC authorization code + PKCE, or an API token) and out.

use axum::{
    extract::{rejection::FormRejection, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
    Form,
};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{cookie, layout, CsrfForm, PageError, PageResult, Posted, SESSION_COOKIE};
use crate::{
    api::AppState,
    auth::hash_token,
    session::{self, SessionKind},
};

/// Binds the token sign-in form to the browser that opened it.
const LOGIN_COOKIE: &str = "brevet_login";
/// Binds an OIDC sign-in to the browser that started it (a cookie of its own, so opening the
/// sign-in page in another tab meanwhile does not break it).
const OIDC_COOKIE: &str = "brevet_oidc";

/// A cookie removal that matches the cookie's own `Path=/` (without it, browsers would look for
/// the cookie under the request's directory and keep the real one).
fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build(name).path("/").build()
}

/// A new sign-in in this browser replaces the session it had: that one ends now, audited,
/// instead of staying valid until it expires.
async fn end_previous(state: &AppState, jar: &CookieJar) {
    let Some(old) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return;
    };
    let id_hash = hex::encode(hash_token(&old));
    if let Ok(Some(s)) = state
        .broker
        .store()
        .session(&id_hash, chrono::Utc::now())
        .await
    {
        if let Ok(p) = brevet_core::PrincipalId::parse(&s.principal) {
            if let Err(e) = session::end(&state.broker, &old, &p).await {
                tracing::warn!(error = %e, "could not end the session a new sign-in replaces");
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    error: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    jar: CookieJar,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> impl IntoResponse {
    // A pre-session CSRF token for the token form (double submit: cookie and field must match).
    let pre = hex::encode(rand::random::<[u8; 16]>());
    let jar = jar.add(cookie(&state, LOGIN_COOKIE, format!("form:{pre}")));
    // Only known codes are shown, so a crafted link cannot put its own words on this page.
    let error = q
        .ok()
        .and_then(|Query(q)| q.error)
        .and_then(|e| match e.as_str() {
            "bad_token" => Some("That token is not valid."),
            _ => None,
        });
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        @if let Some(oidc) = &state.oidc {
            div.card {
                p { "Sign in with your organisation's account." }
                // A link, not a form: CSP `form-action 'self'` would block the redirect to the provider.
                a.button href="/auth/oidc/start" id="sso" { (oidc.button()) }
            }
        }
        div.card {
            form method="post" action="/login/token" {
                input type="hidden" name="csrf" value=(pre);
                label for="token" { @if state.oidc.is_some() { "Or sign in with an API token" } @else { "Sign in with an API token" } }
                input type="password" id="token" name="token" autocomplete="off";
                " "
                button.secondary type="submit" { "Sign in" }
            }
        }
    };
    (jar, layout::page("Sign in", None, body))
}

#[derive(Deserialize)]
pub struct TokenForm {
    csrf: String,
    token: String,
}

pub async fn with_token(
    State(state): State<AppState>,
    jar: CookieJar,
    form: Result<Form<TokenForm>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let expected = jar
        .get(LOGIN_COOKIE)
        .and_then(|c| c.value().strip_prefix("form:").map(str::to_owned))
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This sign-in form has expired or did not come from Brevet (CSRF check failed). Reload the page and try again.",
        ));
    }
    if form.token.trim().starts_with("bvs_") {
        // A CLI session stays a CLI session: it must not become a fresh browser session.
        return Ok(Redirect::to("/login?error=bad_token").into_response());
    }
    let mut headers = axum::http::HeaderMap::new();
    let value = format!("Bearer {}", form.token.trim());
    headers.insert(
        axum::http::header::AUTHORIZATION,
        value
            .parse()
            .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, "That token is not valid."))?,
    );
    let principal = match state.auth.authenticate(&headers).await {
        Ok(p) => p,
        Err(_) => return Ok(Redirect::to("/login?error=bad_token").into_response()),
    };
    end_previous(&state, &jar).await;
    // The token names a configured principal: the config alone says what they may do, on
    // every request, so the session itself carries no groups or roles.
    let identity = brevet_core::Principal {
        id: principal.id,
        groups: Default::default(),
        roles: Default::default(),
    };
    let s = session::start(&state.broker, identity, SessionKind::Browser, "api_token").await?;
    let jar = jar
        .remove(removal(LOGIN_COOKIE))
        .add(cookie(&state, SESSION_COOKIE, s.token));
    Ok((jar, Redirect::to("/access")).into_response())
}

pub async fn oidc_start(
    State(state): State<AppState>,
    client: crate::api::ClientIp,
    jar: CookieJar,
) -> PageResult {
    let Some(oidc) = &state.oidc else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured; add an [oidc] section to the config.",
        ));
    };
    let start = oidc.start_browser(client.0).await.map_err(|e| match e {
        crate::oidc::OidcError::Busy => {
            PageError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        e => PageError::new(StatusCode::BAD_GATEWAY, e.to_string()),
    })?;
    let flow = brevet_store::LoginFlow {
        id_hash: hex::encode(hash_token(&start.state)),
        kind: "browser".into(),
        secret: start.verifier,
        nonce: start.nonce,
        return_to: "/access".into(),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(10),
    };
    state
        .broker
        .store()
        .create_login_flow(&flow)
        .await
        .map_err(|e| PageError::from(crate::broker::BrokerError::from(e)))?;
    let jar = jar.add(cookie(&state, OIDC_COOKIE, start.state));
    Ok((jar, Redirect::to(&start.redirect)).into_response())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn oidc_callback(
    State(state): State<AppState>,
    jar: CookieJar,
    q: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Some(oidc) = &state.oidc else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured.",
        ));
    };
    let Query(q) =
        q.map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("Bad callback: {e}")))?;
    if let Some(e) = q.error {
        // Only the standard error code is shown, in Brevet's words: the description is text
        // anyone can put into a link to this page.
        tracing::info!(error = %e, description = ?q.error_description, "the identity provider refused a sign-in");
        let what = match e.as_str() {
            "access_denied" => "you, or the identity provider, declined the sign-in",
            "login_required" | "interaction_required" | "consent_required" => {
                "the identity provider needs you to sign in there first"
            }
            "temporarily_unavailable" | "server_error" => {
                "the identity provider is unavailable right now"
            }
            _ => "the identity provider refused the request",
        };
        return Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            format!("Sign-in did not complete: {what}. Start again from /login."),
        ));
    }
    let (Some(code), Some(st)) = (q.code, q.state) else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "The callback is missing `code` or `state`; start signing in again from /login.",
        ));
    };
    // The state must be the one this browser started with (login CSRF), and unused.
    let bound = jar
        .get(OIDC_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if bound.is_empty() || !bool::from(bound.as_bytes().ct_eq(st.as_bytes())) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This sign-in was not started in this browser; start again from /login.",
        ));
    }
    let store = state.broker.store();
    let id_hash = hex::encode(hash_token(&st));
    let flow = store
        .login_flow(&id_hash, chrono::Utc::now())
        .await
        .map_err(|e| PageError::from(crate::broker::BrokerError::from(e)))?
        .filter(|f| f.kind == "browser");
    let Some(flow) = flow else {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This sign-in has expired or was already used; start again from /login.",
        ));
    };
    if !store
        .take_login_flow(&id_hash)
        .await
        .map_err(|e| PageError::from(crate::broker::BrokerError::from(e)))?
    {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This sign-in was already used; start again from /login.",
        ));
    }
    let identity = oidc
        .finish_browser(&code, &flow.secret, &flow.nonce)
        .await
        .map_err(|e| {
            // The reason only: never the code, tokens or claims.
            tracing::warn!(error = %e, "OIDC sign-in refused");
            PageError::new(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
    // What the identity provider vouched for; the config is added by `session::start` and
    // again on every request.
    let principal = brevet_core::Principal {
        id: identity.principal,
        groups: identity.groups,
        roles: identity.roles,
    };
    end_previous(&state, &jar).await;
    let s = session::start(&state.broker, principal, SessionKind::Browser, "oidc").await?;
    let jar = jar
        .remove(removal(OIDC_COOKIE))
        .remove(removal(LOGIN_COOKIE))
        .add(cookie(&state, SESSION_COOKIE, s.token));
    Ok((jar, Redirect::to(&flow.return_to)).into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    Posted { viewer, .. }: Posted<CsrfForm>,
) -> PageResult {
    session::end(&state.broker, &viewer.token, &viewer.principal.id).await?;
    let jar = jar.remove(removal(SESSION_COOKIE));
    Ok((jar, Redirect::to("/login")).into_response())
}
