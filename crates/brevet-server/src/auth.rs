//! Authentication behind one seam: [`Authenticator`]. Static API tokens now; OIDC plugs in here.

use std::collections::BTreeSet;

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
    #[error("invalid token")]
    Invalid,
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError>;
}

/// Bearer tokens configured per principal, stored as SHA-256 hashes (tokens are long random
/// strings, so a fast hash suffices) and compared in constant time against every entry.
pub struct TokenAuthenticator {
    entries: Vec<([u8; 32], Principal)>,
}

impl TokenAuthenticator {
    pub fn new(principals: &[PrincipalConfig]) -> Self {
        let entries = principals
            .iter()
            .filter_map(|p| {
                p.token_sha256.map(|h| {
                    (
                        h,
                        Principal {
                            id: p.id.clone(),
                            groups: p.groups.clone(),
                            roles: p.roles.clone(),
                        },
                    )
                })
            })
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
        // Look at every entry whatever matches, so timing reveals nothing about which one did.
        let mut found: Option<&Principal> = None;
        for (hash, principal) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(principal);
            }
        }
        found.cloned().ok_or(AuthError::Invalid)
    }
}

/// Roles as strings for API answers.
pub fn role_names(p: &Principal) -> BTreeSet<String> {
    p.roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect()
}
