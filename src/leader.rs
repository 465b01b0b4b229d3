//! Leader election on a Lease (kube-lease-manager): only the leader runs the controller, so
//! only one replica ever writes. A standby takes over when the leader's lease expires (crash)
//! or at once when the leader releases it (graceful shutdown).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::controller::{self, Context};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// Seconds a lease holds without renewal; a crashed leader is replaced within this.
    pub duration_seconds: u64,
    /// Renewal margin before expiry (must be below the duration).
    pub grace_seconds: u64,
}

/// How long a stopping controller may finish in-flight reconciles.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the controller whenever this replica holds the lease, until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    lease: LeaseSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_parameters(
            LeaseParams::new(&lease.identity, lease.duration_seconds, lease.grace_seconds)
                .with_field_manager(format!("dittofs-operator-lease-{}", lease.identity)),
        )
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    // The Lease could be read or created: this replica knows its role (leader or standby).
    ctx.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::pin!(shutdown);
    loop {
        info!(identity = %lease.identity, lease = %lease.name, "waiting for leadership");
        while !*leading.borrow_and_update() {
            tokio::select! {
                _ = &mut shutdown => return release(leading, task).await,
                changed = leading.changed() => if changed.is_err() { anyhow::bail!("lease manager stopped") },
            }
        }
        info!(identity = %lease.identity, "leading: starting the controller");
        ctx.metrics.leader.set(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let controller = controller::run(ctx.clone(), async move {
            let _ = stopped.await;
        });
        tokio::pin!(controller);
        let mut unconfirmed_lease = false;
        let shutting_down = tokio::select! {
            _ = &mut controller => false,
            _ = &mut shutdown => true,
            _ = lost(&mut leading) => {
                warn!(identity = %lease.identity, "lost leadership: stopping the controller");
                false
            }
            _ = unconfirmed(&ctx.client, &lease) => {
                warn!(identity = %lease.identity, "cannot confirm the Lease: stepping down, another replica may lead");
                unconfirmed_lease = true;
                false
            }
        };
        let _ = stop.send(());
        if tokio::time::timeout(STOP_TIMEOUT, &mut controller).await.is_err() {
            warn!("controller did not stop within {STOP_TIMEOUT:?}");
        }
        // A controller cut off by the timeout did not clear its queue: nothing waits here now.
        ctx.metrics.queue_cleared();
        ctx.metrics.leader.set(0);
        if shutting_down {
            return release(leading, task).await;
        }
        if unconfirmed_lease {
            // The lease manager may still say "leading": lead again only once the Lease is seen
            // renewed by this replica, or after the manager has changed its mind.
            tokio::select! {
                _ = &mut shutdown => return release(leading, task).await,
                _ = reconfirmed(&ctx.client, &lease) => {}
                changed = leading.changed() => if changed.is_err() { anyhow::bail!("lease manager stopped") },
            }
        }
    }
}

/// How often a leader confirms that it still holds the Lease.
fn confirm_period(lease: &LeaseSettings) -> Duration {
    Duration::from_secs(lease.grace_seconds.max(1))
}

/// Whether the Lease, as read now, is held by this replica and was renewed within its duration.
async fn held_by_us(client: &Client, lease: &LeaseSettings) -> Option<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
    let read = tokio::time::timeout(confirm_period(lease), api.get(&lease.name)).await.ok()?.ok()?;
    let spec = read.spec?;
    let ours = spec.holder_identity.as_deref() == Some(lease.identity.as_str());
    let renewed = spec.renew_time.map(|t| t.0.as_second()).unwrap_or(0);
    let fresh = k8s_openapi::jiff::Timestamp::now().as_second() - renewed <= lease.duration_seconds as i64;
    Some(ours && fresh)
}

/// Resolves when this leader cannot confirm, for a lease duration less one renewal margin, that
/// it still holds the Lease (cut off from the API server, say), or sees another holder. Like
/// client-go's renew deadline: kube-lease-manager keeps saying "leading" while it cannot reach
/// the API server, and a standby takes over once the Lease expires; stepping down first means
/// two replicas never reconcile at once when the partition heals.
async fn unconfirmed(client: &Client, lease: &LeaseSettings) {
    let deadline = Duration::from_secs(lease.duration_seconds.saturating_sub(lease.grace_seconds).max(1));
    let mut confirmed = Instant::now();
    loop {
        tokio::time::sleep(confirm_period(lease)).await;
        match held_by_us(client, lease).await {
            Some(true) => confirmed = Instant::now(),
            Some(false) => return,
            None if confirmed.elapsed() >= deadline => return,
            None => {}
        }
    }
}

/// Resolves once the Lease is seen held and freshly renewed by this replica again.
async fn reconfirmed(client: &Client, lease: &LeaseSettings) {
    loop {
        tokio::time::sleep(confirm_period(lease)).await;
        if held_by_us(client, lease).await == Some(true) {
            info!(identity = %lease.identity, "the Lease is ours again");
            return;
        }
    }
}

async fn lost(leading: &mut watch::Receiver<bool>) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            return;
        }
    }
}

/// Dropping the receiver makes the lease manager release the lease, so a standby takes over now.
async fn release(
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> anyhow::Result<()> {
    drop(leading);
    match tokio::time::timeout(STOP_TIMEOUT, task).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("releasing the lease took over {STOP_TIMEOUT:?}"),
    }
}
