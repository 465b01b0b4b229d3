//! Two operator replicas against one apiserver: only the lease holder reconciles (writes);
//! when it dies without releasing the lease, the other takes over within the lease duration.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dittofs_operator::controller::Context;
use dittofs_operator::crd::DittoServer;
use dittofs_operator::leader::{self, LeaseSettings};
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const LEASE_SECONDS: u64 = 4;

fn lease(ns: &str, identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "dittofs-operator".into(),
        namespace: ns.into(),
        identity: identity.into(),
        duration_seconds: LEASE_SECONDS,
        grace_seconds: 1,
    }
}

/// A replica on its own runtime, so that dropping the runtime kills it like a crashed pod:
/// nothing gets to release the lease.
struct Replica {
    ctx: Arc<Context>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    fn start(ns: &str, identity: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ctx = runtime.block_on(async {
            let client = client().await;
            Arc::new(Context::new(client, Settings::for_tests(Some(ns.to_string()))))
        });
        let lease = lease(ns, identity);
        let task_ctx = ctx.clone();
        runtime.spawn(async move { leader::run(task_ctx, lease, std::future::pending()).await });
        Self { ctx, runtime: Some(runtime) }
    }

    fn leading(&self) -> bool {
        self.ctx.metrics.leader.get() == 1
    }

    fn reconciles(&self) -> u64 {
        self.ctx.metrics.reconciles_with("ok")
    }

    fn kill(mut self) {
        self.runtime.take().unwrap().shutdown_background();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let (client, ns) = setup("leader").await;
    let ns2 = ns.clone();
    let a = tokio::task::spawn_blocking(move || Replica::start(&ns2, "replica-a")).await.unwrap();
    eventually("replica-a leads", DEADLINE, || async { a.leading().then_some(()) }).await;
    let ns2 = ns.clone();
    let b = tokio::task::spawn_blocking(move || Replica::start(&ns2, "replica-b")).await.unwrap();

    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers
        .create(&PostParams::default(), &server(&ns, "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n"))
        .await
        .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("StatefulSet created by the leader", DEADLINE, || async { sts.get_opt("demo").await.ok().flatten() })
        .await;
    eventually("the leader's reconcile finished", DEADLINE, || async { (a.reconciles() > 0).then_some(()) }).await;
    assert!(!b.leading(), "one leader at a time");
    assert!(b.ctx.ready.load(std::sync::atomic::Ordering::SeqCst), "a standby that knows the Lease is ready");
    assert_eq!(b.reconciles(), 0, "the standby never reconciles, so never writes");

    // The leader dies without releasing its lease.
    let killed = Instant::now();
    tokio::task::spawn_blocking(move || a.kill()).await.unwrap();
    eventually("replica-b takes over", Duration::from_secs(LEASE_SECONDS * 3), || async { b.leading().then_some(()) })
        .await;
    let took = killed.elapsed();
    eprintln!("standby took over {took:?} after the leader died (lease {LEASE_SECONDS}s)");
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2),
        "takeover took {took:?}, more than the {LEASE_SECONDS}s lease (+2 s of polling)"
    );

    // The new leader does the work.
    servers
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"image": "marmos91c/dittofs:v0.29.1"}})))
        .await
        .unwrap();
    eventually("the new leader applies changes", DEADLINE, || async {
        let s = sts.get("demo").await.ok()?;
        (s.spec?.template.spec?.containers[0].image.as_deref() == Some("marmos91c/dittofs:v0.29.1")).then_some(())
    })
    .await;
    eventually("the new leader's reconcile finished", DEADLINE, || async { (b.reconciles() > 0).then_some(()) }).await;
    tokio::task::spawn_blocking(move || drop(b)).await.unwrap();
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints() {
    use dittofs_operator::serve::{Health, serve_on};
    let (client, ns) = setup("metrics").await;
    let operator = Operator::start(&client, &ns);
    let ready = operator.ctx.ready.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let health = Health {
        metrics: operator.ctx.metrics.clone(),
        ready: ready.clone(),
        stopping: stopping.clone(),
        alive: alive.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = tokio::spawn(serve_on(listener, health, async move {
        let _ = stopped.await;
    }));
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n"))
        .await
        .unwrap();
    eventually("objects applied", DEADLINE, || async {
        operator.ctx.metrics.encode().contains("dittofs_operator_applies_total{outcome=\"done\"}").then_some(())
    })
    .await;

    assert_eq!(get(addr, "/healthz").await, (200, "ok".to_string()));
    eventually("/readyz once the cache is synced", DEADLINE, || async {
        (get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    // Settled: nothing waits for a reconcile any more.
    eventually("queue drained", DEADLINE, || async {
        operator.ctx.metrics.encode().contains("dittofs_operator_queue_depth 0").then_some(())
    })
    .await;
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "dittofs_operator_reconciles_total{result=\"ok\"}",
        "dittofs_operator_reconcile_duration_seconds_bucket",
        "dittofs_operator_applies_total{outcome=\"done\"}",
        "dittofs_operator_reconciles_in_flight",
        "dittofs_operator_queue_depth",
    ] {
        assert!(body.contains(series), "missing {series} in\n{body}");
    }
    alive.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(addr, "/healthz").await, (503, "controller stopped".to_string()));
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(addr, "/readyz").await, (503, "stopping".to_string()), "a shutdown wins over ready");
    let _ = stop.send(());
    endpoint.await.unwrap().unwrap();
    operator.shutdown().await;
}
