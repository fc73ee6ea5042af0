//! The few Slack Web API calls Brevet makes (`chat.postMessage`, `chat.update`) and replies to an
//! interaction's `response_url`.

use std::time::Duration;

use brevet_providers::SecretText;
use serde_json::{json, Value};

use crate::notify::subscriber::{http_outcome, retry_after, transport_error, DeliveryError};

/// Where Slack's `response_url`s point.
const SLACK_HOOKS: &str = "https://hooks.slack.com/";

/// A `response_url` is followed only to Slack, or to the host `api_base` names (a stand-in or
/// a proxy in front of Slack): the payload is signed, but Brevet still never posts to an
/// arbitrary address it was handed.
fn response_url_allowed(api_base: &str, url: &str) -> bool {
    if url.starts_with(SLACK_HOOKS) {
        return true;
    }
    match (reqwest::Url::parse(api_base), reqwest::Url::parse(url)) {
        (Ok(base), Ok(u)) => u.origin() == base.origin() && matches!(u.scheme(), "https" | "http"),
        _ => false,
    }
}

pub struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: SecretText,
}

impl SlackApi {
    pub fn new(base: &str, token: SecretText, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Brevet/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Calls a Web API method with a JSON body. Slack answers HTTP 200 with `ok: false` for most
    /// failures, so `ok` decides; `ratelimited` (HTTP 429) carries `Retry-After`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, DeliveryError> {
        let resp = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(self.token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(transport_error)?;
        let resp = http_outcome(resp).await.map_err(|mut e| {
            e.message = format!("Slack {method}: {}", e.message);
            e
        })?;
        let wait = retry_after(resp.headers());
        let answer: Value = resp
            .json()
            .await
            .map_err(|e| DeliveryError::new(format!("Slack {method}: answer is not JSON: {e}")))?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        Err(DeliveryError {
            message: format!(
                "Slack {method}: {}",
                answer["error"].as_str().unwrap_or("unknown_error")
            ),
            retry_after: wait,
        })
    }

    /// Posts a message; returns the (channel id, ts) Slack gives it.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<(String, String), DeliveryError> {
        let mut body = json!({"channel": channel, "text": text, "unfurl_links": false});
        if let Some(b) = blocks {
            body["blocks"] = b.clone();
        }
        let answer = self.call("chat.postMessage", &body).await?;
        match (answer["channel"].as_str(), answer["ts"].as_str()) {
            (Some(c), Some(ts)) => Ok((c.to_owned(), ts.to_owned())),
            _ => Err(DeliveryError::new(
                "Slack chat.postMessage: answer has no channel and ts",
            )),
        }
    }

    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), DeliveryError> {
        self.call(
            "chat.update",
            &json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks}),
        )
        .await
        .map(|_| ())
    }

    /// An ephemeral reply to the user who clicked, through the interaction's `response_url`
    /// (which authenticates itself; no token is sent there).
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), DeliveryError> {
        if !response_url_allowed(&self.base, response_url) {
            return Err(DeliveryError::new(format!(
                "response_url {response_url:?} is neither Slack's ({SLACK_HOOKS}…) nor on the \
                 configured api_base's host; not followed"
            )));
        }
        let resp = self
            .http
            .post(response_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(
                json!({"response_type": "ephemeral", "replace_original": false, "text": text})
                    .to_string(),
            )
            .send()
            .await
            .map_err(transport_error)?;
        http_outcome(resp).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::response_url_allowed;

    #[test]
    fn response_urls_go_to_slack_or_the_configured_api_host_only() {
        let slack = "https://slack.com/api";
        assert!(response_url_allowed(
            slack,
            "https://hooks.slack.com/actions/T1/2/abc"
        ));
        for bad in [
            "https://hooks.slack.com.evil.example/actions/x",
            "http://hooks.slack.com/actions/x",
            "https://169.254.169.254/latest/meta-data",
            "https://slack.com.evil.example/api",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!response_url_allowed(slack, bad), "{bad}");
        }
        let stand_in = "http://127.0.0.1:4567/api";
        assert!(response_url_allowed(
            stand_in,
            "http://127.0.0.1:4567/response/1"
        ));
        assert!(!response_url_allowed(
            stand_in,
            "http://127.0.0.1:4568/response/1"
        ));
    }
}
