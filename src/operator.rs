//! The `run` process: logging, the health/metrics endpoint, leader election, signals, and a
//! bounded graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use kube::client::ClientBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::{self, Context};
use crate::leader::{self, LeaseSettings, STOP_TIMEOUT};
use crate::serve::{self, Health};
use crate::settings::{LogFormat, RunArgs, Settings, operator_namespace};

/// An API server that sends nothing for this long on a request of a pass has hung: the request
/// fails and the pass is retried. Watches use a client without it (they are quiet for minutes).
const API_SERVER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub fn run_blocking(args: RunArgs) -> anyhow::Result<()> {
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_current_span(true).with_env_filter(filter()).init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter()).init(),
    }
    anyhow::ensure!(
        args.lease_duration_seconds >= 3,
        "--lease-duration-seconds must be at least 3 (renewal happens a third of the duration before expiry)"
    );
    let settings = Settings::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let config = kube::Config::infer().await?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let counted = |config: kube::Config| -> anyhow::Result<Client> {
            Ok(ClientBuilder::try_from(config)?.with_layer(&metrics.counting_requests()).build())
        };
        let watch_client = counted(config.clone())?;
        let mut with_deadline = config;
        with_deadline.read_timeout = Some(API_SERVER_READ_TIMEOUT);
        // Count from the request, not from when a pooled connection went idle.
        with_deadline.reset_reader_on_write = true;
        let client = counted(with_deadline)?;
        let ctx = Arc::new(Context::with_metrics(client, settings, metrics.clone()).with_watch_client(watch_client));
        let (stop, stopping) = watch::channel(false);
        // Not ready until the controller's cache is synced or, with leader election, the Lease is
        // known; not ready again from the moment a shutdown is asked for.
        let stopping_flag = Arc::new(AtomicBool::new(false));
        let stopping_now = stopping_flag.clone();
        let stop = Arc::new(stop);
        let stop_on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            stopping_now.store(true, Ordering::SeqCst);
            let _ = stop_on_signal.send(true);
        });
        let alive = Arc::new(AtomicBool::new(true));
        let health = Health {
            metrics: ctx.metrics.clone(),
            ready: ctx.ready.clone(),
            stopping: stopping_flag.clone(),
            alive: alive.clone(),
        };
        let addr: SocketAddr = args.health_address.parse()?;
        let server = tokio::spawn(serve::serve(addr, health, wait(stopping.clone())));
        let lease = args.leader_elect.then(|| LeaseSettings {
            name: args.lease_name.clone(),
            namespace: operator_namespace(),
            identity: std::env::var("POD_NAME").unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id())),
            duration_seconds: args.lease_duration_seconds,
            grace_seconds: (args.lease_duration_seconds / 3).max(1),
        });
        let work = async {
            match lease {
                Some(lease) => leader::run(ctx.clone(), lease, wait(stopping.clone())).await,
                None => {
                    controller::run(ctx.clone(), wait(stopping.clone())).await;
                    Ok(())
                }
            }
        };
        // In-flight reconciles get STOP_TIMEOUT after the signal; then the process exits regardless.
        let deadline = async {
            wait(stopping.clone()).await;
            tokio::time::sleep(STOP_TIMEOUT).await;
        };
        let result = tokio::select! {
            result = work => result,
            _ = deadline => {
                warn!("shutdown took longer than {STOP_TIMEOUT:?}; exiting");
                Ok(())
            }
        };
        ctx.ready.store(false, Ordering::SeqCst);
        // Stopped without being asked (the lease manager failed, the controller ended): not
        // alive any more, and the process exits non-zero so the kubelet restarts it.
        let result = match result {
            Ok(()) if !stopping_flag.load(Ordering::SeqCst) => {
                Err(anyhow::anyhow!("the controller stopped unexpectedly"))
            }
            other => other,
        };
        if let Err(error) = &result {
            alive.store(false, Ordering::SeqCst);
            tracing::error!(error = %format!("{error:#}"), "stopping: the operator cannot go on");
            let _ = stop.send(true);
        }
        let _ = server.await;
        result
    })
}

/// Resolves once `stopping` turns true.
async fn wait(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "operator".into())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
}
