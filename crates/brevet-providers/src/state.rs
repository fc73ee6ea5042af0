//! Durable state a provider keeps in Brevet's store, scoped to its instance (as Vault scopes a
//! secrets engine's storage to its mount): JSON values under keys, each with an optional expiry
//! and a version for compare-and-set. A provider that needs state (SSH's certificate ledger, a
//! cloud policy's etag, a custom role's last use) adds no table, store module or adapter.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::ProviderError;

/// One live entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub value: Value,
    /// Changes on every write; pass it back to [`ProviderState::put`] to write only if nobody
    /// else has since.
    pub version: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ProviderState: Send + Sync {
    /// The entry under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Stored>, ProviderError>;

    /// Writes `value` under `key` if its version is still `expected` (`None`: only if there is
    /// no live entry). Returns whether it wrote: `false` means someone else wrote first — read
    /// again and retry.
    async fn put(
        &self,
        key: &str,
        value: &Value,
        expires_at: Option<DateTime<Utc>>,
        expected: Option<i64>,
    ) -> Result<bool, ProviderError>;

    async fn delete(&self, key: &str) -> Result<(), ProviderError>;

    /// Live entries whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Stored)>, ProviderError>;
}
