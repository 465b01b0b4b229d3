//! The operator's own HTTP endpoints: `/healthz` (the controller, or the leader election that
//! runs it, has not stopped by itself), `/readyz` (the controller's
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
                if h.alive.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "controller stopped")
                }
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
