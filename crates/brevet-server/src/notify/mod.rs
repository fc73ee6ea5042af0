//! Notifications, driven by the audit log: every state change already commits an audit event, so
//! the outbox (`outbox.rs`) tails the log from a durable cursor and queues a delivery for each
//! interested [`Subscriber`] — signed webhooks (`webhook.rs`), the Slack app (`slack/`), email
//! (`email.rs`) — then sends them with bounded, jittered retries. A decision never waits for a
//! notification, and a notification that fails stays visible (`GET /v1/deliveries`).

pub mod email;
pub mod event;
pub mod outbox;
pub mod settings;
pub mod signature;
pub mod slack;
pub mod subscriber;
pub mod webhook;

use std::{collections::BTreeMap, sync::Arc};

use axum::Router;
use brevet_core::{Principal, Role};

pub use outbox::Outbox;
pub(crate) use settings::parse_contact;
pub use settings::{NotifySettings, RawNotify};
pub use subscriber::{DeliveryError, Subscriber};

use crate::{
    broker::Broker,
    config::{Config, PrincipalConfig},
};

/// The configured principals as notifications need them: contacts, and who a Slack user is.
pub struct Directory {
    principals: BTreeMap<String, PrincipalConfig>,
    by_slack_user: BTreeMap<String, String>,
}

impl Directory {
    pub fn new(principals: &[PrincipalConfig]) -> Self {
        Self {
            principals: principals
                .iter()
                .map(|p| (p.id.to_string(), p.clone()))
                .collect(),
            by_slack_user: principals
                .iter()
                .filter_map(|p| Some((p.slack_user.clone()?, p.id.to_string())))
                .collect(),
        }
    }

    pub fn slack_user_of(&self, principal: &str) -> Option<&str> {
        self.principals.get(principal)?.slack_user.as_deref()
    }

    pub fn principal_by_slack_user(&self, slack_user: &str) -> Option<Principal> {
        Some(
            self.principals
                .get(self.by_slack_user.get(slack_user)?)?
                .principal(),
        )
    }

    /// Principals who may decide requests (role approver or admin).
    pub fn approvers(&self) -> impl Iterator<Item = &PrincipalConfig> {
        self.principals
            .values()
            .filter(|p| p.roles.contains(&Role::Approver) || p.roles.contains(&Role::Admin))
    }
}

/// Where a person decides a request in the portal.
pub fn portal_link(public_url: &str, request_id: &str) -> String {
    format!("{}/requests/{request_id}", public_url.trim_end_matches('/'))
}

#[derive(Debug, thiserror::Error)]
#[error("notify: {0}")]
pub struct NotifyError(String);

/// The running notification set-up: the outbox and, with Slack, the interactions route.
pub struct Notifications {
    pub outbox: Arc<Outbox>,
    interactions: Option<slack::interactions::InteractionState>,
}

impl Notifications {
    pub fn build(config: &Config, broker: &Arc<Broker>) -> Result<Self, NotifyError> {
        let n = &config.notify;
        let store = broker.store().clone();
        let directory = Arc::new(Directory::new(&config.principals));
        let http_error = |e: reqwest::Error| NotifyError(format!("cannot build HTTP client: {e}"));
        let mut subscribers: Vec<Arc<dyn Subscriber>> = Vec::new();
        for w in &n.webhooks {
            subscribers.push(Arc::new(
                webhook::Webhook::new(w.clone(), n.attempt_timeout).map_err(http_error)?,
            ));
        }
        if let Some(s) = &n.slack {
            let api = Arc::new(
                slack::api::SlackApi::new(&s.api_base, s.bot_token.clone(), n.attempt_timeout)
                    .map_err(http_error)?,
            );
            subscribers.push(Arc::new(slack::ApprovalChannel {
                api: api.clone(),
                store: store.clone(),
                channel: s.approver_channel.clone(),
            }));
            subscribers.push(Arc::new(slack::RequesterDm {
                api: api.clone(),
                store: store.clone(),
                directory: directory.clone(),
            }));
            subscribers.push(Arc::new(slack::InteractionReply { api }));
        }
        if let Some(e) = &n.email {
            subscribers.push(Arc::new(
                email::ApproverEmail::new(
                    e,
                    directory.clone(),
                    n.slack.is_some(),
                    &config.server.public_url,
                    n.attempt_timeout,
                    broker.clone(),
                )
                .map_err(NotifyError)?,
            ));
        }
        let outbox = Arc::new(Outbox::new(store, subscribers, n.clone()));
        let interactions = n
            .slack
            .as_ref()
            .map(|s| slack::interactions::InteractionState {
                broker: broker.clone(),
                directory,
                signing_secret: s.signing_secret.clone(),
                team_id: s.team_id.clone(),
                outbox: outbox.clone(),
                replays: Default::default(),
            });
        Ok(Self {
            outbox,
            interactions,
        })
    }

    /// Routes served outside `/v1`: `POST /slack/interactions` when Slack is configured.
    pub fn router(&self) -> Router {
        match &self.interactions {
            Some(state) => slack::interactions::router(state.clone()),
            None => Router::new(),
        }
    }
}
