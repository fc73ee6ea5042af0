//! The Brevet server: configuration, the broker (request → approval → grant → revocation), the
//! background scheduler and reconciler, and the HTTP API.

pub mod access;
pub mod analyzer;
pub mod api;
pub mod audit_anchor;
pub mod auth;
pub mod broker;
pub mod config;
pub mod limits;
pub mod notify;
pub mod oidc;
pub mod portal;
pub mod provider_state;
pub mod session;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;

use std::{collections::BTreeMap, sync::Arc};

use brevet_policy::{PolicyEngine, PolicySource};
use brevet_providers::Provider;
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
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
    #[error(transparent)]
    Audit(#[from] audit_anchor::AnchorError),
    #[error("single sign-on: {0}")]
    Oidc(oidc::OidcError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("background task `{task}` died ({cause}); the server stopped rather than run without it (nothing would expire). Restart it; the log above says why it died")]
    BackgroundDied { task: &'static str, cause: String },
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

/// Builds the provider instances named in the config, each with its own scope of state in
/// `store`, and runs their start-up work.
pub async fn build_providers(
    config: &Config,
    store: &Store,
) -> Result<BTreeMap<brevet_core::ProviderName, Arc<dyn Provider>>, StartError> {
    let mut all: BTreeMap<_, Arc<dyn Provider>> = BTreeMap::new();
    for (name, configured) in &config.providers {
        let err = |source| StartError::Provider {
            name: name.to_string(),
            source,
        };
        let cx = brevet_providers::registry::BuildContext {
            name: name.to_string(),
            state: Arc::new(provider_state::StoreState {
                store: store.clone(),
                provider: name.to_string(),
            }),
        };
        let p = configured.setup.build(cx).await.map_err(err)?;
        p.on_start().await.map_err(err)?;
        all.insert(name.clone(), p);
    }
    Ok(all)
}

/// Connects the store and builds the broker from a validated config.
pub async fn build_broker(config: &Config) -> Result<Arc<Broker>, StartError> {
    let policy = Arc::new(load_policy(config)?);
    let store = Store::connect(config.store_url.expose()).await?;
    let providers = build_providers(config, &store).await?;
    let revoke_rates = config
        .providers
        .iter()
        .filter_map(|(name, p)| Some((name.clone(), p.revoke_rate?)))
        .collect();
    Ok(Arc::new(
        Broker::new(
            store,
            policy,
            providers,
            config.resources.clone(),
            config.principals.clone(),
            config.server.clone(),
        )
        .with_revoke_rates(revoke_rates),
    ))
}

/// What [`serve`] runs, built from a validated config: the broker and everything around it
/// (sign-in, audit checkpoints, notifications) as the routes see them, and the routes themselves
/// (API, portal, notification callbacks). Nothing runs yet: no socket, no background work.
pub struct App {
    pub state: api::AppState,
    pub router: axum::Router,
    pub notifications: notify::Notifications,
}

/// Builds the [`App`] for `config`: connects the store, builds the providers and the broker.
pub async fn build_app(config: &Config) -> Result<App, StartError> {
    let broker = build_broker(config).await?;
    let auth = Arc::new(auth::SessionAuthenticator {
        tokens: auth::TokenAuthenticator::new(&config.principals),
        broker: broker.clone(),
    });
    let oidc = match &config.oidc {
        Some(c) => Some(Arc::new(
            oidc::Oidc::new(c.clone(), &config.server.public_url).map_err(StartError::Oidc)?,
        )),
        None => None,
    };
    let notifications = notify::Notifications::build(config, &broker)?;
    let anchor = Arc::new(audit_anchor::AuditAnchor::open(
        &config.audit,
        broker.store().clone(),
        Some(notifications.outbox.clone()),
    )?);
    for w in &config.access.warnings {
        tracing::warn!("{w}");
    }
    let state = api::AppState {
        broker,
        auth,
        oidc,
        anchor,
        access: Arc::new(config.access.clone()),
        analyzer: Arc::new(analyzer::Analyzer::new(config.analyzer.clone())),
    };
    // Applied per route (after routing), so the layer sees the route's template.
    let router = api::router(state.clone())
        .merge(portal::router(state.clone()))
        .merge(notifications.router())
        .layer(axum::middleware::from_fn(telemetry::http_layer));
    Ok(App {
        state,
        router,
        notifications,
    })
}

/// Runs the server until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.server.listen.to_string(),
            source,
        })?;
    let mut config = config;
    // Without server.public_url, links and the OIDC redirect use the address actually bound
    // (which differs from the configured one when it asks for port 0).
    if config.server.public_url == format!("http://{}", config.server.listen) {
        if let Ok(a) = listener.local_addr() {
            config.server.public_url = format!("http://{a}");
        }
    }
    let App {
        state,
        router: app,
        notifications,
    } = build_app(&config).await?;
    let (broker, anchor) = (state.broker.clone(), state.anchor.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = broker.spawn_background(stop_rx.clone());
    background.push(("audit checkpoints", anchor.spawn(stop_rx.clone())));
    background.push((
        "notification outbox",
        notifications.outbox.spawn(stop_rx.clone()),
    ));
    if let Some(after) = config.access.unload_after {
        background.push((
            "catalog release",
            access::spawn_release(config.access.catalog.clone(), after, stop_rx),
        ));
    }
    // Supervision: a background task that ends before shutdown has died (a panic, say). Serving
    // on without the scheduler would keep the API green while nothing expires, so the server
    // stops instead (fail closed) and says which task died.
    let (died_tx, mut died_rx) = tokio::sync::mpsc::channel::<(&'static str, String)>(4);
    let watched: Vec<_> = background
        .into_iter()
        .map(|(task, handle)| {
            let died = died_tx.clone();
            let stopping = stop_tx.subscribe();
            tokio::spawn(async move {
                // A task that returns has finished its work (the outbox with no subscribers
                // does at once); one that panics or is cancelled has died.
                let cause = match handle.await {
                    Ok(()) => return,
                    Err(e) if e.is_panic() => "it panicked".to_owned(),
                    Err(e) => e.to_string(),
                };
                if !*stopping.borrow() {
                    tracing::error!(task, %cause, "background task died");
                    let _ = died.send((task, cause)).await;
                }
            })
        })
        .collect();
    drop(died_tx);
    let died = Arc::new(std::sync::Mutex::new(None));
    let died_slot = died.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown => {}
            Some(d) = died_rx.recv() => {
                *died_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
            }
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, store = ?broker.store().backend(), policies = broker.policy().policy_count(), "brevet listening");
    // Printed on stdout so scripts and tests can wait for it.
    println!("brevet listening on http://{addr}");
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    let _ = stop_tx.send(true);
    for w in watched {
        let _ = w.await;
    }
    if let Some((task, cause)) = died.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(StartError::BackgroundDied { task, cause });
    }
    result.map_err(|source| StartError::Listen { addr, source })
}
