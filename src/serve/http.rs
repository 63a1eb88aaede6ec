//! The controller's HTTP side: `GET /healthz`, `GET /readyz`, `GET /metrics`, and
//! `POST /reconcile` behind a bearer token.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::metrics::{CONTENT_TYPE, Metrics};
use super::status::Status;
use crate::secrets::SecretValue;

/// What the handlers share with the loop.
#[derive(Debug, Clone)]
pub struct Shared {
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
    /// Wakes the loop for a reconcile now.
    pub trigger: Arc<Notify>,
    /// `VAPICTL_SERVE_TOKEN`; without it `POST /reconcile` is refused.
    pub token: Option<SecretValue>,
}

/// The routes (paths are a contract: probes and scrape configs name them).
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/reconcile", post(reconcile))
        .with_state(shared)
}

async fn healthz(State(s): State<Shared>) -> Response {
    if s.status.is_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop has stopped\n",
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Shared>) -> Response {
    match s.status.readiness(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.metrics.encode()).into_response()
}

async fn reconcile(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let Some(expected) = &s.token else {
        return (
            StatusCode::FORBIDDEN,
            "POST /reconcile is disabled: set `VAPICTL_SERVE_TOKEN` on the controller and send it as `Authorization: Bearer <token>`\n",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.as_bytes(), expected.expose().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token equal to `VAPICTL_SERVE_TOKEN` is required\n",
        )
            .into_response();
    }
    if !s.status.is_leading() {
        // Only the leader reconciles; a webhook that reached a follower is told so, rather than
        // accepted and silently dropped.
        return (
            StatusCode::CONFLICT,
            "this replica is not the leader; the leader reconciles on its interval (send the trigger to the leader, or retry)\n",
        )
            .into_response();
    }
    s.trigger.notify_one();
    (StatusCode::ACCEPTED, "reconcile triggered\n").into_response()
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secre", b"secret"));
        assert!(!same(b"secrets", b"secret"));
        assert!(!same(b"", b"secret"));
        assert!(!same(b"Secret", b"secret"));
    }
}
