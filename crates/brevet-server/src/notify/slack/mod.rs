//! The Slack app: an approval message per pending request in the approvers' channel (updated as
//! approvals come in, buttons removed once decided), direct messages to requesters, and the
//! interactions endpoint that turns button clicks into decisions (`interactions.rs`).

pub mod api;
pub mod blocks;
pub mod interactions;

use std::sync::Arc;

use async_trait::async_trait;
use brevet_audit::AuditEvent;
use brevet_core::{Request, RequestId};
use brevet_store::{Delivery, DeliveryFilter, DeliveryState, Store};

use super::{
    subscriber::{DeliveryError, Subscriber},
    Directory,
};
use api::SlackApi;

pub const CHANNEL: &str = "slack:channel";
pub const DM: &str = "slack:dm";
pub const RESPONSE: &str = "slack:response";

fn request_id(d: &Delivery) -> Result<RequestId, DeliveryError> {
    d.request_id
        .as_deref()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DeliveryError::new("delivery has no request id"))
}

async fn load(store: &Store, id: RequestId) -> Result<Option<Request>, DeliveryError> {
    store
        .get_request(id)
        .await
        .map_err(|e| DeliveryError::new(format!("store: {e}")))
}

fn data_str<'a>(data: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(|v| v.as_str())
}

/// The approval message in the approvers' channel.
pub struct ApprovalChannel {
    pub api: Arc<SlackApi>,
    pub store: Store,
    pub channel: String,
}

#[async_trait]
impl Subscriber for ApprovalChannel {
    fn name(&self) -> &str {
        CHANNEL
    }

    fn wants(&self, e: &AuditEvent) -> bool {
        if e.request_id.is_none() {
            return false;
        }
        let data = e.data_json();
        // Requests approved by policy at once never had a message to post or update.
        let never_pending = data.get("auto_approved_by_policy").is_some()
            || data.get("approvals_required").and_then(|v| v.as_u64()) == Some(0);
        match e.kind.as_str() {
            "request_created" => data_str(&data, "state") == Some("pending"),
            "approval_recorded" | "request_approved" | "request_denied" | "request_expired"
            | "request_cancelled" => !never_pending,
            _ => false,
        }
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), DeliveryError> {
        let id = request_id(d)?;
        let Some(r) = load(&self.store, id).await? else {
            return Ok(());
        };
        let approvals = self
            .store
            .approvals(id)
            .await
            .map_err(|e| DeliveryError::new(format!("store: {e}")))?;
        let (text, blocks) = blocks::approval_message(&r, &approvals);
        let posted = self
            .store
            .slack_message(&id.to_string())
            .await
            .map_err(|e| DeliveryError::new(format!("store: {e}")))?;
        match posted {
            Some((channel, ts)) => self.api.update(&channel, &ts, &text, &blocks).await,
            None if d.event_type == "request.created" => {
                let (channel, ts) = self
                    .api
                    .post_message(&self.channel, &text, Some(&blocks))
                    .await?;
                // If this write is lost the retry posts again: at least once, never silently none.
                self.store
                    .save_slack_message(&id.to_string(), &channel, &ts)
                    .await
                    .map_err(|e| DeliveryError::new(format!("store: {e}")))
            }
            None => {
                // An update that overtook the post: wait for the post if it is still to come.
                let outstanding = self
                    .store
                    .list_deliveries(&DeliveryFilter {
                        state: Some(DeliveryState::Pending),
                        subscriber: Some(CHANNEL.into()),
                        request_id: Some(id.to_string()),
                        limit: Some(50),
                        after: None,
                    })
                    .await
                    .map_err(|e| DeliveryError::new(format!("store: {e}")))?
                    .iter()
                    .any(|x| x.event_type == "request.created" && x.id != d.id);
                if outstanding {
                    Err(DeliveryError::new(
                        "the approval message is not posted yet; updating it after",
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Direct messages to the requester: approved, denied, access ended, access ending soon.
pub struct RequesterDm {
    pub api: Arc<SlackApi>,
    pub store: Store,
    pub directory: Arc<Directory>,
}

#[async_trait]
impl Subscriber for RequesterDm {
    fn name(&self) -> &str {
        DM
    }

    fn wants(&self, e: &AuditEvent) -> bool {
        let data = e.data_json();
        let relevant = match e.kind.as_str() {
            "request_approved" => data.get("auto_approved_by_policy").is_none(),
            "request_denied" | "grant_revoked" => true,
            _ => false,
        };
        relevant
            && data_str(&data, "requester")
                .is_some_and(|p| self.directory.slack_user_of(p).is_some())
    }

    fn wants_expiring(&self, grant: &Request) -> bool {
        self.directory
            .slack_user_of(grant.requester.as_str())
            .is_some()
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), DeliveryError> {
        let id = request_id(d)?;
        let Some(r) = load(&self.store, id).await? else {
            return Ok(());
        };
        let Some(user) = self.directory.slack_user_of(r.requester.as_str()) else {
            return Ok(());
        };
        let actor = d.payload["actor"].as_str().unwrap_or("system");
        let Some(text) = blocks::requester_message(&d.event_type, actor, &r) else {
            return Ok(());
        };
        self.api.post_message(user, &text, None).await.map(|_| ())
    }
}

/// Ephemeral replies to a user whose click was refused, through the interaction's response_url.
pub struct InteractionReply {
    pub api: Arc<SlackApi>,
}

#[async_trait]
impl Subscriber for InteractionReply {
    fn name(&self) -> &str {
        RESPONSE
    }

    fn wants(&self, _: &AuditEvent) -> bool {
        false
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), DeliveryError> {
        let (Some(url), Some(text)) = (
            d.payload["response_url"].as_str(),
            d.payload["text"].as_str(),
        ) else {
            return Err(DeliveryError::new("reply has no response_url or text"));
        };
        self.api.respond(url, text).await
    }
}
