//! Keyset pagination for the API's lists (`/v1/requests`, `/v1/grants`, `/v1/deliveries`):
//! newest first, at most `limit` rows a page, and — when a page is full — the next page's address
//! in a `Link: <…>; rel="next"` header (RFC 8288), the same query with a `cursor` added. A cursor
//! names the last row listed (its creation time and id), so pages neither repeat nor skip rows
//! when new ones are added meanwhile; the bodies stay plain JSON arrays.

use axum::http::{header, HeaderMap, HeaderValue, Uri};
use brevet_store::PageCursor;

use super::ApiError;

/// What a list call asked for: how many at most, and after which row.
pub(crate) struct Page {
    pub limit: i64,
    pub after: Option<PageCursor>,
}

impl Page {
    /// `limit` within 1..=`max` (`default` when absent) and `cursor` as this server wrote it.
    pub fn read(
        limit: Option<i64>,
        default: i64,
        max: i64,
        cursor: Option<&str>,
    ) -> Result<Page, ApiError> {
        let limit = super::handlers::limit_within(limit, max)?.unwrap_or(default);
        let after = match cursor {
            None => None,
            Some(c) => Some(PageCursor::parse(c).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "cursor `{}` is not one this server gave; use the `Link` header of the previous page, or leave cursor out for the first page",
                    c.chars().take(80).collect::<String>()
                ))
            })?),
        };
        Ok(Page { limit, after })
    }

    /// The `Link` header to the next page when `listed` rows (before any filtering by who may
    /// see them) filled this one; the cursor is the last of them.
    pub fn next(&self, uri: &Uri, listed: usize, last: Option<PageCursor>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let (true, Some(last)) = (listed as i64 >= self.limit, last) else {
            return headers;
        };
        let mut pairs: Vec<(String, String)> = uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        pairs.retain(|(k, _)| k != "cursor");
        pairs.push(("cursor".into(), last.to_string()));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!("<{}?{query}>; rel=\"next\"", uri.path())) {
            headers.insert(header::LINK, v);
        }
        headers
    }
}
