//! Authentication behind one seam: [`Authenticator`]. A bearer token is either a static API
//! token from the config (automation) or a session token minted at sign-in (`brevet login`
//! through OIDC, or the portal). Sessions live in the store, hashed, and end at sign-out, expiry
//! or the kill switch.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use axum::http::HeaderMap;
use brevet_core::Principal;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::PrincipalConfig;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing credentials: send `Authorization: Bearer <token>` (the CLI reads BREVET_TOKEN)"
    )]
    Missing,
    #[error("invalid or expired token; sign in again with `brevet login`")]
    Invalid,
    #[error("sessions cannot be checked right now (storage unavailable); try again")]
    Unavailable,
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError>;
}

/// Bearer tokens configured per principal, stored as SHA-256 hashes (tokens are long random
/// strings, so a fast hash suffices) and looked up by the presented token's hash.
///
/// The lookup is a hash map keyed by digest, not a constant-time comparison against every entry:
/// with thousands of principals the scan was a third of the CPU of an auto-approved grant. What
/// a lookup's timing could reveal is how the *presented* token's digest relates to stored
/// digests (and the map's hasher is randomly keyed per process); learning bits of a stored
/// SHA-256 digest does not help find a token that hashes to it, which is why session tokens are
/// looked up by hash in the store's index too. The entry found is still compared in constant
/// time.
pub struct TokenAuthenticator {
    entries: HashMap<[u8; 32], Principal>,
}

impl TokenAuthenticator {
    pub fn new(principals: &[PrincipalConfig]) -> Self {
        // As before, when two principals share a token the later one in the config wins.
        let entries = principals
            .iter()
            .filter_map(|p| p.token_sha256.map(|h| (h, p.principal())))
            .collect();
        Self { entries }
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[async_trait]
impl Authenticator for TokenAuthenticator {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Invalid)?;
        let presented = hash_token(token);
        match self.entries.get_key_value(&presented) {
            Some((hash, principal)) if bool::from(hash.ct_eq(&presented)) => Ok(principal.clone()),
            _ => Err(AuthError::Invalid),
        }
    }
}

/// Static tokens first, then sign-in sessions (CLI and portal alike).
pub struct SessionAuthenticator {
    pub tokens: TokenAuthenticator,
    /// Sessions are in its store; its config is merged into every session on every request.
    pub broker: std::sync::Arc<crate::broker::Broker>,
}

/// A new random session token (256 bits, hex) and the hash that is stored.
pub fn new_session_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("bvs_{}", hex::encode(bytes));
    let hash = hex::encode(hash_token(&token));
    (token, hash)
}

#[async_trait]
impl Authenticator for SessionAuthenticator {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match self.tokens.authenticate(headers).await {
            Err(AuthError::Invalid) => {}
            other => return other,
        }
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(AuthError::Invalid)?;
        if !token.starts_with("bvs_") {
            return Err(AuthError::Invalid);
        }
        // The lookup is by hash, so the database compares digests, never the token itself.
        let hash = hex::encode(hash_token(token));
        let session = self
            .broker
            .store()
            .session(&hash, chrono::Utc::now())
            .await
            .map_err(|_| AuthError::Unavailable)?
            .ok_or(AuthError::Invalid)?;
        // Portal sessions travel in a cookie and are CSRF-checked there; only CLI sessions
        // are bearer tokens.
        if session.kind != "cli" {
            return Err(AuthError::Invalid);
        }
        crate::session::principal_of(&self.broker, &session).ok_or(AuthError::Invalid)
    }
}

/// Roles as strings for API answers.
pub fn role_names(p: &Principal) -> BTreeSet<String> {
    p.roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect()
}
