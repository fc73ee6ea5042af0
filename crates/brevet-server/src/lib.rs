//! The Brevet server: configuration, the broker (request → approval → grant → revocation), the
//! background scheduler and reconciler, and the HTTP API.

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;

use std::{collections::BTreeMap, sync::Arc};

use brevet_policy::{PolicyEngine, PolicySource};
use brevet_providers::{postgres::PostgresProvider, Provider};
use brevet_store::Store;
use tokio::sync::watch;

pub use broker::{AccessAsk, Broker, BrokerError};
pub use config::{Config, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] brevet_policy::PolicyError),
    #[error(transparent)]
    Store(#[from] brevet_store::StoreError),
    #[error("provider `{name}`: {source}")]
    Provider {
        name: String,
        source: brevet_providers::ProviderError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub fn load_policy(config: &Config) -> Result<PolicyEngine, brevet_policy::PolicyError> {
    let sources: Vec<PolicySource> = config
        .policy_files
        .iter()
        .map(|(name, text)| PolicySource {
            name: name.clone(),
            text: text.clone(),
        })
        .collect();
    PolicyEngine::load(&sources, config.policy_defaults)
}

/// Builds the provider instances named in the config.
pub fn build_providers(
    config: &Config,
) -> Result<BTreeMap<brevet_core::ProviderName, Arc<dyn Provider>>, StartError> {
    let mut out: BTreeMap<_, Arc<dyn Provider>> = BTreeMap::new();
    for (name, pc) in &config.providers {
        let p: Arc<dyn Provider> = match pc {
            config::ProviderConfig::Postgres(c) => Arc::new(
                PostgresProvider::new(name.as_str(), c.clone()).map_err(|source| {
                    StartError::Provider {
                        name: name.to_string(),
                        source,
                    }
                })?,
            ),
        };
        out.insert(name.clone(), p);
    }
    Ok(out)
}

/// Builds a broker from a validated config (connecting to the store and running migrations).
pub async fn build_broker(
    config: &Config,
    providers: BTreeMap<brevet_core::ProviderName, Arc<dyn Provider>>,
) -> Result<Arc<Broker>, StartError> {
    let policy = Arc::new(load_policy(config)?);
    let store = Store::connect(config.store_url.expose()).await?;
    Ok(Arc::new(Broker::new(
        store,
        policy,
        providers,
        config.resources.clone(),
        config.principals.clone(),
        config.server.clone(),
    )))
}

/// Runs the server until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let providers = build_providers(&config)?;
    let broker = build_broker(&config, providers).await?;
    let auth = Arc::new(auth::TokenAuthenticator::new(&config.principals));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.server.listen.to_string(),
            source,
        })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = broker.spawn_background(stop_rx);
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, store = ?broker.store().backend(), policies = broker.policy().policy_count(), "brevet listening");
    // Printed on stdout so scripts and tests can wait for it.
    println!("brevet listening on http://{addr}");
    let app = api::router(api::AppState { broker, auth });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = background.await;
    result.map_err(|source| StartError::Listen { addr, source })
}
