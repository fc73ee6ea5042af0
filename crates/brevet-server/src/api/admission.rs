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
//!
//! New work yields to work already under way: a new request (`POST /v1/requests`) may hold at
//! most three quarters of the permits, so the steps that finish requests already made
//! (activations, approvals) always find room. Otherwise, past capacity, new requests would take
//! the permits their own activations need, and each refused activation would waste the request
//! (and its commit) made before it: goodput would fall below capacity instead of staying there.

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
    /// What new requests must hold besides a permit: three quarters of `permits`.
    new_work: Arc<Semaphore>,
    wait: Duration,
    /// Counts a refusal (the broker's `requests_shed`, shown in `/metrics`).
    shed: Box<dyn Fn() + Send + Sync>,
}

impl Admission {
    pub(super) fn new(broker: Arc<crate::broker::Broker>) -> Self {
        let settings = broker.settings();
        let (max, wait) = (settings.max_in_flight, settings.admission_wait);
        Self::with_limits(
            max,
            wait,
            Box::new(move || {
                broker.requests_shed.fetch_add(1, Ordering::Relaxed);
            }),
        )
    }

    fn with_limits(max: usize, wait: Duration, shed: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            new_work: Arc::new(Semaphore::new((max - max / 4).max(1))),
            wait,
            shed,
        }
    }
}

pub(super) async fn admit(
    State(admission): State<Arc<Admission>>,
    req: Request,
    next: Next,
) -> Response {
    let new_work = req.method() == axum::http::Method::POST && req.uri().path() == "/v1/requests";
    let permits = async {
        let gate = match new_work {
            true => Some(admission.new_work.clone().acquire_owned().await?),
            false => None,
        };
        let permit = admission.permits.clone().acquire_owned().await?;
        Ok::<_, tokio::sync::AcquireError>((gate, permit))
    };
    match tokio::time::timeout(admission.wait, permits).await {
        Ok(Ok(_permits)) => next.run(req).await,
        _ => {
            (admission.shed)();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::{body::Body, routing::post, Router};
    use tower::ServiceExt;

    use super::*;

    /// A router whose two routes hold their permit until `go` is notified, behind admission
    /// control with 4 permits and a 50 ms wait.
    fn app(go: Arc<tokio::sync::Semaphore>, shed: Arc<AtomicUsize>) -> Router {
        let held = |go: Arc<tokio::sync::Semaphore>| async move {
            let _ = go.acquire().await;
            "done"
        };
        let admission = Arc::new(Admission::with_limits(
            4,
            Duration::from_millis(50),
            Box::new(move || {
                shed.fetch_add(1, Ordering::Relaxed);
            }),
        ));
        let (a, b) = (go.clone(), go);
        Router::new()
            .route("/v1/requests", post(move || held(a.clone())))
            .route("/v1/requests/{id}/activate", post(move || held(b.clone())))
            .layer(axum::middleware::from_fn_with_state(admission, admit))
    }

    fn post_to(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::post(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn new_requests_leave_room_for_work_under_way_and_the_excess_is_refused_fast() {
        let go = Arc::new(tokio::sync::Semaphore::new(0));
        let shed = Arc::new(AtomicUsize::new(0));
        let app = app(go.clone(), shed.clone());
        // Three new requests take three of the four permits and hang.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(tokio::spawn(app.clone().oneshot(post_to("/v1/requests"))));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A fourth new request finds no room for new work: refused after the wait, with
        // Retry-After, although one permit is free.
        let refused = tokio::time::timeout(
            Duration::from_secs(1),
            app.clone().oneshot(post_to("/v1/requests")),
        )
        .await
        .expect("refused at once, not admitted")
        .unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert_eq!(shed.load(Ordering::Relaxed), 1);
        // An activation (work under way) takes the last permit.
        let activation = tokio::spawn(app.clone().oneshot(post_to("/v1/requests/x/activate")));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Now every permit is taken: another activation is refused fast too.
        let refused = tokio::time::timeout(
            Duration::from_secs(1),
            app.clone().oneshot(post_to("/v1/requests/y/activate")),
        )
        .await
        .expect("refused at once, not admitted")
        .unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.load(Ordering::Relaxed), 2);
        // Everyone held finishes once let go.
        go.add_permits(100);
        assert_eq!(activation.await.unwrap().unwrap().status(), StatusCode::OK);
        for h in held {
            assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
        }
    }
}
