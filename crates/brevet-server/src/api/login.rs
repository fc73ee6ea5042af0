//! `brevet login`: the device authorization flow, run by the server on the CLI's behalf, and
//! sign-out for CLI sessions.

use axum::{
    extract::{rejection::JsonRejection, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::{ApiError, AppState, Caller};
use crate::{
    auth::hash_token,
    broker::BrokerError,
    oidc::DevicePoll,
    session::{self, SessionKind},
};

pub use brevet_wire::{DeviceLogin, DevicePollBody, LoginResult};

fn oidc(state: &AppState) -> Result<&crate::oidc::Oidc, ApiError> {
    state.oidc.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "single sign-on is not configured on this server; use an API token (BREVET_TOKEN)",
        )
    })
}

fn upstream(e: crate::oidc::OidcError) -> ApiError {
    match e {
        crate::oidc::OidcError::Rejected(_) | crate::oidc::OidcError::UnknownFlow => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
        }
        crate::oidc::OidcError::Provider { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "identity_provider", e.to_string())
        }
        crate::oidc::OidcError::Busy => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
        }
    }
}

/// Start a device sign-in (no token needed).
#[utoipa::path(post, path = "/v1/login/device", security(()),
    responses((status = 200, body = DeviceLogin), (status = 404, description = "Single sign-on is not configured", body = super::ErrorBody), (status = 502, description = "The identity provider failed", body = super::ErrorBody), (status = 503, description = "Busy, or the store cannot be reached", body = super::ErrorBody)))]
pub async fn device_start(
    State(state): State<AppState>,
    client: super::ClientIp,
) -> Result<Json<DeviceLogin>, ApiError> {
    let o = oidc(&state)?;
    let d = o.start_device(client.0).await.map_err(upstream)?;
    let login_id = hex::encode(rand::random::<[u8; 24]>());
    let flow = brevet_store::LoginFlow {
        id_hash: hex::encode(hash_token(&login_id)),
        kind: "device".into(),
        secret: d.device_code.clone(),
        nonce: String::new(),
        return_to: String::new(),
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(d.expires_in.min(1800) as i64),
    };
    state
        .broker
        .store()
        .create_login_flow(&flow)
        .await
        .map_err(BrokerError::from)?;
    Ok(Json(DeviceLogin {
        login_id,
        user_code: d.user_code,
        verification_uri: d.verification_uri,
        verification_uri_complete: d.verification_uri_complete,
        interval: d.interval.unwrap_or(5).max(1),
        expires_in: d.expires_in,
    }))
}

/// Poll a device sign-in: `pending` (202) until the user has signed in, then the session token.
#[utoipa::path(post, path = "/v1/login/device/poll", security(()), request_body = DevicePollBody,
    responses((status = 200, body = LoginResult), (status = 202, body = LoginResult), (status = 400, description = "The body is not valid", body = super::ErrorBody), (status = 401, description = "No such sign-in, or the identity provider refused it", body = super::ErrorBody), (status = 404, description = "Single sign-on is not configured", body = super::ErrorBody), (status = 502, description = "The identity provider failed", body = super::ErrorBody), (status = 503, description = "Busy, or the store cannot be reached", body = super::ErrorBody)))]
pub async fn device_poll(
    State(state): State<AppState>,
    b: Result<Json<DevicePollBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let o = oidc(&state)?;
    let Json(b) = b?;
    let id_hash = hex::encode(hash_token(&b.login_id));
    let store = state.broker.store();
    let flow = store
        .login_flow(&id_hash, chrono::Utc::now())
        .await
        .map_err(BrokerError::from)?
        .filter(|f| f.kind == "device")
        .ok_or_else(|| upstream(crate::oidc::OidcError::UnknownFlow))?;
    let pending = |status: &str| {
        (
            StatusCode::ACCEPTED,
            Json(LoginResult {
                status: status.into(),
                token: None,
                principal: None,
                groups: vec![],
                roles: vec![],
                expires_at: None,
            }),
        )
            .into_response()
    };
    let identity = match o.poll_device(&flow.secret).await {
        Ok(DevicePoll::Pending) => return Ok(pending("pending")),
        Ok(DevicePoll::SlowDown) => return Ok(pending("slow_down")),
        Ok(DevicePoll::Done(i)) => i,
        Err(e) => {
            // Denied or expired at the provider: this sign-in is over. A provider that cannot
            // be reached right now ends nothing; the CLI polls again.
            if matches!(e, crate::oidc::OidcError::Rejected(_)) {
                let _ = store.take_login_flow(&id_hash).await;
            }
            return Err(upstream(e));
        }
    };
    // Redeem once: a second poll that raced this one finds nothing.
    if !store
        .take_login_flow(&id_hash)
        .await
        .map_err(BrokerError::from)?
    {
        return Err(upstream(crate::oidc::OidcError::UnknownFlow));
    }
    // What the identity provider vouched for; the config is added by `session::start` and
    // again on every request.
    let principal = brevet_core::Principal {
        id: identity.principal,
        groups: identity.groups,
        roles: identity.roles,
    };
    let s = session::start(&state.broker, principal, SessionKind::Cli, "oidc_device").await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(LoginResult {
            status: "signed_in".into(),
            token: Some(s.token),
            principal: Some(s.principal.id.to_string()),
            groups: s.principal.groups.iter().cloned().collect(),
            roles: crate::auth::role_names(&s.principal).into_iter().collect(),
            expires_at: Some(s.expires_at),
        }),
    )
        .into_response())
}

/// End the session whose token authenticates this call (`brevet logout`).
#[utoipa::path(post, path = "/v1/logout",
    responses((status = 204, description = "Signed out"), (status = 400, description = "The token is a static API token from the config, not a session", body = super::ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if !token.starts_with("bvs_") {
        return Err(ApiError::bad_request(
            "this is a static API token from the config, not a session; it cannot be signed out (remove it from the config to retire it)",
        ));
    }
    session::end(&state.broker, token, &caller.0.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
