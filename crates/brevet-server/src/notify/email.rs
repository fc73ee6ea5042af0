//! Email over SMTP for approvers who are not on Slack: a pending request is mailed to every
//! approver (role approver or admin) with an `email` whom approval policy lets decide it, except
//! the requester, and — when the Slack app is configured — except those who have a `slack_user`
//! and see it there.

use std::sync::Arc;

use async_trait::async_trait;
use brevet_audit::AuditEvent;
use brevet_store::Delivery;
use lettre::{
    message::{header::ContentType, Mailbox},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};

use super::{
    settings::EmailConfig,
    subscriber::{DeliveryError, Subscriber},
    Directory,
};

pub const EMAIL: &str = "email";

pub struct ApproverEmail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    directory: Arc<Directory>,
    skip_slack_users: bool,
    public_url: String,
    broker: Arc<crate::broker::Broker>,
}

impl ApproverEmail {
    pub fn new(
        config: &EmailConfig,
        directory: Arc<Directory>,
        skip_slack_users: bool,
        public_url: &str,
        timeout: std::time::Duration,
        broker: Arc<crate::broker::Broker>,
    ) -> Result<Self, String> {
        // The URL may hold a password: report the error without it.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose())
            .map_err(|e| format!("notify.email.smtp_url is not a usable SMTP URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from: config.from.clone(),
            directory,
            skip_slack_users,
            public_url: public_url.trim_end_matches('/').to_owned(),
            broker,
        })
    }

    /// Approvers with an address, except the requester (and Slack users when Slack is on);
    /// with the request at hand, only those approval policy lets decide it.
    fn recipients(&self, requester: &str, request: Option<&brevet_core::Request>) -> Vec<Mailbox> {
        self.directory
            .approvers()
            .filter(|p| p.id.as_str() != requester)
            .filter(|p| !(self.skip_slack_users && p.slack_user.is_some()))
            .filter(|p| request.is_none_or(|r| self.broker.may_approve(&p.principal(), r)))
            .filter_map(|p| {
                let address = p.email.as_deref()?.parse().ok()?;
                Some(Mailbox::new(Some(p.id.to_string()), address))
            })
            .collect()
    }
}

fn pending_creation(e: &AuditEvent) -> Option<serde_json::Value> {
    let data = e.data_json();
    (e.kind == "request_created" && data["state"] == "pending").then_some(data)
}

#[async_trait]
impl Subscriber for ApproverEmail {
    fn name(&self) -> &str {
        EMAIL
    }

    fn wants(&self, e: &AuditEvent) -> bool {
        pending_creation(e).is_some_and(|data| {
            !self
                .recipients(data["requester"].as_str().unwrap_or_default(), None)
                .is_empty()
        })
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), DeliveryError> {
        let data = &d.payload["data"];
        let id = d.request_id.as_deref().unwrap_or("-");
        let s = |k: &str| data[k].as_str().unwrap_or("-").to_owned();
        let requester = s("requester");
        let request = match d.request_id.as_deref().and_then(|i| i.parse().ok()) {
            Some(rid) => self
                .broker
                .store()
                .get_request(rid)
                .await
                .map_err(|e| DeliveryError::new(format!("cannot read the request: {e}")))?,
            None => None,
        };
        // Decided, expired or withdrawn meanwhile: nothing to ask anyone.
        if request
            .as_ref()
            .is_some_and(|r| r.state != brevet_core::RequestState::Pending)
        {
            return Ok(());
        }
        let to = self.recipients(&requester, request.as_ref());
        if to.is_empty() {
            return Ok(());
        }
        let mut body = format!(
            "{requester} asks for {} on {} for {}.\n\n",
            s("profile"),
            s("resource"),
            s("duration")
        );
        if let Some(reason) = data["reason"].as_str() {
            body += &format!("Reason: {reason}\n");
        }
        if let Some(ticket) = data["ticket"].as_str() {
            body += &format!("Ticket: {ticket}\n");
        }
        // One link or command per line: short lines stay readable in any mail client.
        body += &format!(
            "Approvals needed: {}\n\nDecide in the portal:\n{}\n\nor with the CLI:\nbrevet approve {id}\nbrevet deny {id}\n",
            data["approvals_required"],
            super::portal_link(&self.public_url, id)
        );
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(format!(
                "[Brevet] Approval needed: {requester} asks for {} on {}",
                s("profile"),
                s("resource")
            ))
            .header(ContentType::TEXT_PLAIN);
        for m in to {
            message = message.to(m);
        }
        let message = message
            .body(body)
            .map_err(|e| DeliveryError::new(format!("cannot build the email: {e}")))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::new(format!("SMTP: {e}")))
    }
}
