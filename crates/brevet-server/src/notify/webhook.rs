//! Outbound webhooks: the event as JSON, signed with the webhook's secret (`Brevet-Signature`,
//! verified by receivers as described in docs/notifications.md).

use std::time::Duration;

use async_trait::async_trait;
use brevet_audit::AuditEvent;
use brevet_core::Request;
use brevet_store::Delivery;
use chrono::Utc;

use super::{
    event::{event_type, AUDIT_CHECKPOINT, GRANT_EXPIRING},
    settings::WebhookConfig,
    signature::webhook_signature,
    subscriber::{http_outcome, transport_error, DeliveryError, Subscriber},
};

pub struct Webhook {
    name: String,
    config: WebhookConfig,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(config: WebhookConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect would re-send the signed body somewhere the operator did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Brevet/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            name: format!("webhook:{}", config.name),
            config,
            http,
        })
    }
}

/// The exact bytes POSTed: the event payload with the delivery id added.
pub fn webhook_body(d: &Delivery) -> Vec<u8> {
    let mut body = d.payload.clone();
    if let Some(o) = body.as_object_mut() {
        o.insert("delivery_id".into(), d.id.clone().into());
    }
    body.to_string().into_bytes()
}

#[async_trait]
impl Subscriber for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, event: &AuditEvent) -> bool {
        self.config.events.wants(&event_type(&event.kind))
    }

    fn wants_expiring(&self, _grant: &Request) -> bool {
        self.config.events.wants(GRANT_EXPIRING)
    }

    fn wants_checkpoint(&self) -> bool {
        self.config.events.wants(AUDIT_CHECKPOINT)
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), DeliveryError> {
        let body = webhook_body(d);
        let signature = webhook_signature(
            self.config.secret.expose().as_bytes(),
            Utc::now().timestamp(),
            &body,
        );
        let resp = self
            .http
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Brevet-Signature", signature)
            .header("Brevet-Delivery", &d.id)
            .header("Brevet-Event", &d.event_type)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        http_outcome(resp).await.map(|_| ())
    }
}
