//! The operator's own HTTP endpoints: `/healthz` (the controller, or the leader election that
//! runs it, has not stopped by itself, and no reconcile has outlived its deadline), `/readyz` (the controller's
//! cache is synced or, with leader election, the Lease could be read; a standby replica is ready
//! too; not while shutting down) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// A reconcile is cut off at [`crate::controller::PASS_DEADLINE`]; one still running well past
/// it means the cut did not happen (a worker blocked outside an await): the process is stuck,
/// and the kubelet had better restart it.
pub const STALLED_AFTER: std::time::Duration =
    crate::controller::PASS_DEADLINE.saturating_add(std::time::Duration::from_secs(60));

#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// Set once a shutdown is asked for; wins over `ready`.
    pub stopping: Arc<AtomicBool>,
    /// Cleared when the controller or the leader election stopped without being asked to: the
    /// process is about to exit non-zero, and a liveness probe must not say otherwise.
    pub alive: Arc<AtomicBool>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(h): State<Health>| async move {
                liveness(h.alive.load(Ordering::SeqCst), h.metrics.oldest_in_flight())
            }),
        )
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.stopping.load(Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, "stopping")
                } else if h.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], h.metrics.encode())
            }),
        )
        .with_state(health)
}

/// `/healthz`: the controller runs, and its oldest reconcile in flight (if any) is within
/// [`STALLED_AFTER`].
fn liveness(alive: bool, oldest_in_flight: Option<std::time::Duration>) -> (StatusCode, String) {
    if !alive {
        return (StatusCode::SERVICE_UNAVAILABLE, "controller stopped".into());
    }
    match oldest_in_flight.filter(|running| *running > STALLED_AFTER) {
        Some(running) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("controller stalled: a reconcile has run for {}s", running.as_secs()),
        ),
        None => (StatusCode::OK, "ok".into()),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(addr).await?, health, shutdown).await
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reconcile_past_its_deadline_makes_the_controller_unhealthy() {
        assert_eq!(liveness(true, None).0, StatusCode::OK);
        assert_eq!(liveness(true, Some(Duration::from_secs(5))).0, StatusCode::OK);
        let (code, text) = liveness(true, Some(STALLED_AFTER + Duration::from_secs(1)));
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text, "controller stalled: a reconcile has run for 181s");
        assert_eq!(liveness(false, None).1, "controller stopped");
    }
}
