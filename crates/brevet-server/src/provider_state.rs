//! Provider-scoped state in Brevet's store: what a provider's `BuildContext` carries. Each
//! instance sees only its own keys.

use async_trait::async_trait;
use brevet_providers::{
    state::{ProviderState, Stored},
    ProviderError,
};
use brevet_store::{StateEntry, Store};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub struct StoreState {
    pub store: Store,
    /// The provider instance's name: the scope of every key.
    pub provider: String,
}

fn err(e: brevet_store::StoreError) -> ProviderError {
    ProviderError::Unreachable(format!("provider state in Brevet's store: {e}"))
}

fn stored(e: StateEntry) -> Result<Stored, ProviderError> {
    Ok(Stored {
        value: serde_json::from_str(&e.value).map_err(|x| {
            ProviderError::Target(format!("provider state `{}` is not JSON: {x}", e.key))
        })?,
        version: e.version,
        expires_at: e.expires_at,
    })
}

#[async_trait]
impl ProviderState for StoreState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, ProviderError> {
        self.store
            .state_get(&self.provider, key, Utc::now())
            .await
            .map_err(err)?
            .map(stored)
            .transpose()
    }

    async fn put(
        &self,
        key: &str,
        value: &Value,
        expires_at: Option<DateTime<Utc>>,
        expected: Option<i64>,
    ) -> Result<bool, ProviderError> {
        self.store
            .state_put(
                &self.provider,
                key,
                &value.to_string(),
                expires_at,
                expected,
                Utc::now(),
            )
            .await
            .map_err(err)
    }

    async fn delete(&self, key: &str) -> Result<(), ProviderError> {
        self.store
            .state_delete(&self.provider, key)
            .await
            .map_err(err)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Stored)>, ProviderError> {
        self.store
            .state_list(&self.provider, prefix, Utc::now())
            .await
            .map_err(err)?
            .into_iter()
            .map(|e| Ok((e.key.clone(), stored(e)?)))
            .collect()
    }
}
