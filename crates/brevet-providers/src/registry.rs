//! How provider instances come from the config: one [`ProviderKind`] per provider folder, listed
//! once in [`builtin`]. The server reads only the keys every provider shares (`kind`, and a
//! resource's `tags`); each kind parses the rest of its own tables, with errors named by their
//! full path, and builds its instances. Adding a provider is its folder, a line here and a Cargo
//! feature — nothing in the server or CLI names it.

use std::sync::Arc;

use async_trait::async_trait;
use brevet_config::{ConfigError, ProviderTables};

use crate::{Provider, ProviderError};

/// A provider kind (`postgres`, `ssh`, `aws`, …): parses an instance's tables.
pub trait ProviderKind: Send + Sync {
    /// The `kind = "…"` value that selects it.
    fn kind(&self) -> &'static str;

    /// Parses and checks one instance's tables, at config load (no network; files the config
    /// names may be read). Every error names its field and the fix.
    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError>;
}

/// One configured instance, checked, ready to be built when the server starts.
#[async_trait]
pub trait ProviderSetup: Send + Sync + std::fmt::Debug {
    /// Builds the provider: clients, keys, connections.
    async fn build(&self, cx: BuildContext) -> Result<Arc<dyn Provider>, ProviderError>;
}

/// What the server gives a provider it builds.
pub struct BuildContext {
    /// The instance name (the resource-id prefix).
    pub name: String,
    /// Durable state the provider keeps in Brevet's store, scoped to this instance.
    pub state: Arc<dyn crate::state::ProviderState>,
}

/// Every provider kind compiled in (one Cargo feature each).
pub fn builtin() -> Vec<Box<dyn ProviderKind>> {
    vec![
        #[cfg(feature = "postgres")]
        Box::new(crate::postgres::Kind),
        #[cfg(feature = "ssh")]
        Box::new(crate::ssh::Kind),
        #[cfg(feature = "aws")]
        Box::new(crate::aws::Kind),
        #[cfg(feature = "gcp")]
        Box::new(crate::gcp::Kind),
        #[cfg(feature = "azure")]
        Box::new(crate::azure::Kind),
    ]
}

/// The kind named `kind`, or an error naming the field and the kinds there are.
pub fn lookup<'a>(
    kinds: &'a [Box<dyn ProviderKind>],
    kind: &str,
    field: &str,
) -> Result<&'a dyn ProviderKind, ConfigError> {
    kinds
        .iter()
        .find(|k| k.kind() == kind)
        .map(|k| k.as_ref())
        .ok_or_else(|| {
            brevet_config::field(
                field,
                format!(
                    "unknown provider kind `{kind}`; this build supports: {}",
                    kinds
                        .iter()
                        .map(|k| k.kind())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}
