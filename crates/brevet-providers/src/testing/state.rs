//! Provider state in memory, with the store's semantics (expiry, compare-and-set), for provider
//! tests that run without the server's store.

use std::{collections::BTreeMap, sync::Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    state::{ProviderState, Stored},
    ProviderError,
};

#[derive(Default)]
pub struct MemoryState(Mutex<BTreeMap<String, Stored>>);

impl MemoryState {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stored>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn live(s: &Stored) -> bool {
    s.expires_at.is_none_or(|t| t > Utc::now())
}

#[async_trait]
impl ProviderState for MemoryState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, ProviderError> {
        Ok(self.map().get(key).filter(|s| live(s)).cloned())
    }
    async fn put(
        &self,
        key: &str,
        value: &Value,
        expires_at: Option<DateTime<Utc>>,
        expected: Option<i64>,
    ) -> Result<bool, ProviderError> {
        let mut map = self.map();
        let current = map.get(key).filter(|s| live(s)).map(|s| s.version);
        let next = match (current, expected) {
            (None, None) => map.get(key).map_or(1, |s| s.version + 1),
            (Some(v), Some(e)) if v == e => v + 1,
            _ => return Ok(false),
        };
        map.insert(
            key.to_owned(),
            Stored {
                value: value.clone(),
                version: next,
                expires_at,
            },
        );
        Ok(true)
    }
    async fn delete(&self, key: &str) -> Result<(), ProviderError> {
        self.map().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Stored)>, ProviderError> {
        Ok(self
            .map()
            .iter()
            .filter(|(k, s)| k.starts_with(prefix) && live(s))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect())
    }
}
