//! `POST /slack/interactions`: Approve/Deny clicks from the approval message. The signature is
//! checked before anything of the body is read; the Slack user must map to a configured
//! principal; the decision goes through `Broker::decide`, exactly like the API (policy, no
//! self-approval, N-of-M). The message itself is updated by the outbox from the decision's audit
//! events; a refused click gets an ephemeral reply saying why.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use brevet_core::{ApprovalDecision, RequestId, Role};
use brevet_providers::SecretText;
use brevet_store::NewDelivery;
use serde::Deserialize;
use serde_json::json;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};
use tracing::Instrument;

use super::{
    blocks::{APPROVE, DENY},
    RESPONSE,
};
use crate::{
    broker::Broker,
    notify::{
        outbox::Outbox,
        signature::{verify_slack, ReplayGuard},
        Directory,
    },
};

#[derive(Clone)]
pub struct InteractionState {
    pub broker: Arc<Broker>,
    pub directory: Arc<Directory>,
    pub signing_secret: SecretText,
    /// The only workspace clicks are taken from, when configured.
    pub team_id: Option<String>,
    pub outbox: Arc<Outbox>,
    pub replays: Arc<ReplayGuard>,
}

pub fn router(state: InteractionState) -> Router {
    Router::new()
        .route("/slack/interactions", post(interaction))
        .layer(RequestBodyLimitLayer::new(256 * 1024))
        // Slack gives up after three seconds; never hold a connection much longer.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        ))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: SlackUser,
    #[serde(default)]
    team: Option<SlackTeam>,
    #[serde(default)]
    actions: Vec<Action>,
    response_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SlackTeam {
    id: String,
}

#[derive(Debug, Deserialize)]
struct SlackUser {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
}

/// Slack's interaction JSON, from the form field `payload` of a (verified) body.
fn parse_payload(body: &[u8]) -> Option<Payload> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == "payload"))
        .and_then(|(_, v)| serde_json::from_str::<Payload>(&v).ok())
}

/// The Approve or Deny button the click was on, if it was on one of Brevet's.
fn clicked(payload: &Payload) -> Option<(&Action, ApprovalDecision)> {
    payload
        .actions
        .iter()
        .find_map(|a| match a.action_id.as_str() {
            APPROVE => Some((a, ApprovalDecision::Approve)),
            DENY => Some((a, ApprovalDecision::Deny)),
            _ => None,
        })
}

/// The request a button names (its `value`).
fn request_of(value: Option<&str>) -> Option<RequestId> {
    value.and_then(|v| v.parse().ok())
}

/// What the handler reads from a body whose signature verified.
#[doc(hidden)]
#[derive(Debug)]
pub struct Click {
    /// The interaction's `type` (only `block_actions` is acted on).
    pub kind: String,
    /// For a click on Approve or Deny: the decision, and the request the button names.
    pub button: Option<(ApprovalDecision, Option<RequestId>)>,
}

/// The fuzz target's entry point (`fuzz/fuzz_targets/slack_interaction.rs`): the body read as
/// the handler reads it once the signature is checked.
#[doc(hidden)]
pub fn read_click(body: &[u8]) -> Option<Click> {
    let payload = parse_payload(body)?;
    let button = clicked(&payload).map(|(a, d)| (d, request_of(a.value.as_deref())));
    Some(Click {
        kind: payload.kind,
        button,
    })
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn interaction(
    State(state): State<InteractionState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = verify_slack(
        state.signing_secret.expose().as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now,
    ) {
        tracing::warn!(reason = %e, "refused a Slack interaction");
        return refuse(StatusCode::UNAUTHORIZED, "invalid Slack signature");
    }
    // Verified above, so both headers are present and the timestamp parses.
    let signed_at = header("x-slack-request-timestamp")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(now);
    if !state.replays.first_use(
        header("x-slack-signature").unwrap_or_default(),
        signed_at,
        now,
    ) {
        tracing::warn!("refused a replayed Slack interaction");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this Slack request was already received (replay)",
        );
    }
    let Some(payload) = parse_payload(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected a form field `payload` with Slack's interaction JSON",
        );
    };
    if payload.kind != "block_actions" {
        return StatusCode::OK.into_response();
    }
    if let Some(want) = &state.team_id {
        let team = payload.team.as_ref().map(|t| t.id.as_str());
        if team != Some(want.as_str()) {
            tracing::warn!(team = ?team, slack_user = %payload.user.id, "refused a Slack click from another workspace");
            if let Some(url) = &payload.response_url {
                reply(
                    &state,
                    url,
                    ":no_entry: this Slack workspace is not the one Brevet takes approvals from",
                )
                .await;
            }
            return StatusCode::OK.into_response();
        }
    }
    let Some((action, decision)) = clicked(&payload) else {
        return StatusCode::OK.into_response();
    };
    let span = tracing::info_span!("slack_interaction", slack_user = %payload.user.id, action = %action.action_id);
    let outcome = decide(&state, &payload.user.id, action.value.as_deref(), decision)
        .instrument(span)
        .await;
    if let Err(why) = outcome {
        tracing::info!(slack_user = %payload.user.id, %why, "Slack action refused");
        if let Some(url) = &payload.response_url {
            reply(&state, url, &format!(":no_entry: {why}")).await;
        }
    }
    // Slack only needs to know the click arrived; what happened shows in the message.
    StatusCode::OK.into_response()
}

async fn decide(
    state: &InteractionState,
    slack_user: &str,
    value: Option<&str>,
    decision: ApprovalDecision,
) -> Result<(), String> {
    let principal = state.directory.principal_by_slack_user(slack_user).ok_or_else(|| {
        "your Slack account is not linked to a Brevet principal; ask a Brevet admin to set `slack_user` for you".to_owned()
    })?;
    if !(principal.has_role(Role::Approver) || principal.has_role(Role::Admin)) {
        return Err(format!("`{}` is not an approver in Brevet", principal.id));
    }
    let id: RequestId =
        request_of(value).ok_or_else(|| "this button does not name a request".to_owned())?;
    let r = state
        .broker
        .decide(&principal, id, decision, None)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(request_id = %r.id, approver = %principal.id, state = %r.state, "decision from Slack recorded");
    state.outbox.wake();
    Ok(())
}

/// Queues the ephemeral reply in the outbox, so it is retried like any other delivery.
async fn reply(state: &InteractionState, response_url: &str, text: &str) {
    let queued = state
        .broker
        .store()
        .enqueue_delivery(&NewDelivery {
            subscriber: RESPONSE.into(),
            event_key: format!("reply:{}", uuid::Uuid::new_v4()),
            event_type: "slack.reply".into(),
            request_id: None,
            payload: json!({"response_url": response_url, "text": text}),
        })
        .await;
    match queued {
        Ok(_) => state.outbox.wake_worker(),
        Err(e) => tracing::warn!(error = %e, "cannot queue the reply to a refused Slack action"),
    }
}
