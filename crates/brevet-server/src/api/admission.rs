//! Admission control for the API: at most `server.max_in_flight` requests are served at once;
//! one more waits up to `server.admission_wait` for a turn and is otherwise refused at once with
//! 503 and `Retry-After`. Past capacity, goodput stays at capacity and the excess is told to come
//! back, instead of every request queueing behind the store for seconds. The router applies it to
//! every route but health, metrics, the OpenAPI document, the kill switch (kill, unlock, locks),
//! revocation and providers' published documents (the SSH CA and KRL): an operator must be able
//! to cut someone off while the server is overloaded, and hosts must keep getting the list of
//! revoked certificates. A request that holds a permit
//! keeps it while it waits on providers, so a dead provider can fill the permits for up to about
//! three `provider_timeout`s; the exempt routes are not affected.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use super::ApiError;

pub(super) struct Admission {
    permits: Arc<Semaphore>,
    wait: Duration,
    broker: Arc<crate::broker::Broker>,
}

impl Admission {
    pub(super) fn new(broker: Arc<crate::broker::Broker>) -> Self {
        let settings = broker.settings();
        Self {
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            wait: settings.admission_wait,
            broker,
        }
    }
}

pub(super) async fn admit(
    State(admission): State<Arc<Admission>>,
    req: Request,
    next: Next,
) -> Response {
    let permit =
        tokio::time::timeout(admission.wait, admission.permits.clone().acquire_owned()).await;
    match permit {
        Ok(Ok(_permit)) => next.run(req).await,
        _ => {
            admission
                .broker
                .requests_shed
                .fetch_add(1, Ordering::Relaxed);
            let mut resp = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is at capacity (server.max_in_flight); retry in a second",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}
