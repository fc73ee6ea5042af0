//! The extension point: a [`Subscriber`] says which events it wants and delivers one queued
//! delivery. Webhooks, the Slack app and email are subscribers.

use std::time::Duration;

use async_trait::async_trait;
use brevet_audit::AuditEvent;
use brevet_core::Request;
use brevet_store::Delivery;

/// Why an attempt failed. Every failure is retried (within the attempt limit); `retry_after`
/// is the receiver's own request to wait (HTTP `Retry-After`), honoured when longer than the
/// backoff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
        }
    }
}

#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Its name in the outbox (`deliveries.subscriber`): stable across restarts.
    fn name(&self) -> &str;

    /// Whether to queue a delivery of this audit event.
    fn wants(&self, event: &AuditEvent) -> bool;

    /// Whether to queue a `grant.expiring` notice about this active grant.
    fn wants_expiring(&self, _grant: &Request) -> bool {
        false
    }

    /// Whether to queue each signed audit checkpoint (`audit.checkpoint`).
    fn wants_checkpoint(&self) -> bool {
        false
    }

    /// One attempt. Must be idempotent enough to be retried: the outbox delivers at least once.
    async fn deliver(&self, delivery: &Delivery) -> Result<(), DeliveryError>;
}

/// Turns an HTTP answer into a delivery result: any 2xx is success; anything else is a failure
/// carrying the status, the start of the body, and `Retry-After` (in seconds) if given.
pub async fn http_outcome(resp: reqwest::Response) -> Result<reqwest::Response, DeliveryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let snippet: String = body.chars().take(200).collect();
    Err(DeliveryError {
        message: format!("HTTP {}: {}", status.as_u16(), snippet.trim()),
        retry_after,
    })
}

pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// A transport error as a short message (no URL: it could carry a token in its query).
pub fn transport_error(e: reqwest::Error) -> DeliveryError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    DeliveryError::new(format!("{what}: {}", e.without_url()))
}
