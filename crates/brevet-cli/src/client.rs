//! A small typed client for the Brevet API: answers are read into the wire types the server
//! writes (`brevet-wire`), never indexed as untyped JSON.

use anyhow::{anyhow, Context, Result};
use brevet_wire::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An error the server answered with; carries its code so callers can choose exit codes.
#[derive(Debug, thiserror::Error)]
#[error("{message} [{code}, HTTP {status}]")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// No body.
const NONE: Option<&()> = None;

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(150))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        read(self.send(Method::GET, path, NONE).await?).await
    }

    /// POST with a JSON body.
    pub async fn post<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> Result<T> {
        read(self.send(Method::POST, path, Some(body)).await?).await
    }

    /// POST without a body.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        read(self.send(Method::POST, path, NONE).await?).await
    }

    /// The raw answer of a successful call (for text and streams); a failure is an `ApiFailure`.
    pub async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach Brevet at {} (set BREVET_URL?)", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("error".to_owned(), format!("HTTP {status}")),
        };
        Err(anyhow!(ApiFailure {
            status,
            code,
            message
        }))
    }

    /// GET without a body, as text.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        self.send(Method::GET, path, NONE)
            .await?
            .text()
            .await
            .context("reading the server's answer")
    }

    /// One page of a list: its rows and, when the server's `Link` header names a next page, that
    /// page's cursor.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(Vec<T>, Option<String>)> {
        let resp = self.send(Method::GET, path, NONE).await?;
        let next = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_cursor);
        Ok((read(resp).await?, next))
    }

    /// The raw answer of a GET (for streams).
    pub async fn get_raw(&self, path: &str) -> Result<reqwest::Response> {
        self.send(Method::GET, path, NONE).await
    }
}

/// The `cursor` of a `Link: <PATH?…&cursor=C>; rel="next"` header. The server writes cursors
/// in URL-safe characters only, so the value is taken as it stands.
fn next_cursor(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
        .filter(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
        .map(str::to_owned)
}

/// Reads a successful answer into its wire type; a mismatch names the type it expected.
pub async fn read<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let bytes = resp.bytes().await.context("reading the server's answer")?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the server's answer is not a {} (is the server a different Brevet version?)",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("known answer")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::next_cursor;

    #[test]
    fn the_next_pages_cursor_is_read_from_the_link_header() {
        assert_eq!(
            next_cursor("</v1/grants?all=true&cursor=1733500000000.0193a1b2-c3d4>; rel=\"next\""),
            Some("1733500000000.0193a1b2-c3d4".into())
        );
        assert_eq!(next_cursor("</v1/grants?cursor=1.a>; rel=\"prev\""), None);
        assert_eq!(next_cursor("</v1/grants?all=true>; rel=\"next\""), None);
        assert_eq!(
            next_cursor("</v1/grants?cursor=1.a%0a>; rel=\"next\""),
            None
        );
        assert_eq!(next_cursor("garbage"), None);
    }
}
