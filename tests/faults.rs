//! The fault suite, on the real local control plane (tier `api`): for each fault the operator
//! recovers without a restart of its own, deletes nothing it should not, and the DittoServer
//! converges again. Each test prints its time to recover; the deadlines only bound the wait.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dittofs_operator::controller::Context;
use dittofs_operator::crd::DittoServer;
use dittofs_operator::leader::{self, LeaseSettings};
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use support::*;

const DEMO: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n";
/// The tests of this file share one control plane: the one that restarts it runs alone, the
/// others (whose faults stay inside their namespace) together.
static CONTROL_PLANE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Bound on recovering from a fault (a restarted etcd or apiserver, the backoff after it).
const RECOVERY: Duration = Duration::from_secs(90);

/// `scripts/cluster.sh restart NAME`: stop a component, keep it down `down`, start it again.
async fn restart(component: &'static str, down: Duration) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(root.join("scripts/cluster.sh"))
            .args(["restart", component, "--dir"])
            .arg(&cluster().dir)
            .args(["--down", &down.as_secs_f32().to_string()])
            .env("DITTOFS_TESTBIN", testbin())
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "restarting {component} failed");
}

/// What must never change under a fault: the StatefulSet and the generated credentials.
async fn identity(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns).get("demo").await.unwrap();
    out.insert("StatefulSet/demo".into(), sts.uid().unwrap());
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    for name in ["demo-jwt-secret", "demo-admin-bootstrap-credentials"] {
        let secret = secrets.get(name).await.unwrap();
        out.insert(format!("Secret/{name}"), format!("{} {:?}", secret.uid().unwrap(), secret.data));
    }
    out
}

/// Waits until the DittoServer reports InSync=True for its current generation.
async fn in_sync(servers: &Api<DittoServer>, deadline: Duration) {
    eventually("InSync=True for the current generation", deadline, || async {
        let cr = servers.get("demo").await.ok()?;
        let status = cr.status?;
        let current = status.observed_generation == cr.metadata.generation;
        (current && status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True")).then_some(())
    })
    .await;
}

/// A settled `demo` with an in-process operator.
async fn settled(prefix: &str) -> (Client, String, Operator, Api<DittoServer>) {
    let (client, ns) = setup(prefix).await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, DEMO)).await.unwrap();
    in_sync(&servers, DEADLINE).await;
    (client, ns, operator, servers)
}

/// After a fault, a spec change must still reach the cluster: the watches are alive.
async fn a_change_still_lands(client: &Client, ns: &str, servers: &Api<DittoServer>, level: &str) -> Duration {
    let asked = Instant::now();
    let patch = json!({"spec": {"logging": {"level": level}}});
    eventually("the spec change is accepted", RECOVERY, || async {
        servers.patch("demo", &PatchParams::default(), &Patch::Merge(&patch)).await.ok()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    eventually(&format!("config follows logging.level {level}"), RECOVERY, || async {
        cms.get("demo-config").await.ok()?.data?.get("config.yaml")?.contains(level).then_some(())
    })
    .await;
    asked.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_the_control_plane_are_recovered_from() {
    let _alone = CONTROL_PLANE.write().await;
    // kube-apiserver restarted during a pass: a DittoServer created just before.
    let (client, ns) = setup("fault-apiserver").await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, DEMO)).await.unwrap();
    let fault = Instant::now();
    restart("kube-apiserver", Duration::from_secs(1)).await;
    in_sync(&servers, RECOVERY).await;
    eprintln!("fault kube-apiserver restarted during a pass: converged {:?} after the restart began", fault.elapsed());
    let before = identity(&client, &ns).await;
    let took = a_change_still_lands(&client, &ns, &servers, "DEBUG").await;
    eprintln!("fault kube-apiserver restarted: a later change landed in {took:?}");

    // etcd restarted under a running operator.
    let fault = Instant::now();
    restart("etcd", Duration::from_secs(2)).await;
    let took = a_change_still_lands(&client, &ns, &servers, "WARN").await;
    eprintln!(
        "fault etcd restarted (down 2 s): a change landed {:?} after the restart began ({took:?} after asking)",
        fault.elapsed()
    );

    // A watch expired (410 Gone): etcd compacted to its current revision and the apiserver
    // restarted, so its watch cache starts after every resourceVersion the operator holds.
    let etcd = std::fs::read_to_string(cluster().dir.join("env")).unwrap();
    let etcd = etcd.lines().find_map(|l| l.strip_prefix("DITTOFS_ETCD_URL=")).unwrap().to_string();
    let status: serde_json::Value = http_json(&format!("{etcd}/v3/maintenance/status"), "{}").await;
    let revision = status["header"]["revision"].as_str().unwrap().to_string();
    http_json(&format!("{etcd}/v3/kv/compaction"), &format!("{{\"revision\": \"{revision}\", \"physical\": true}}"))
        .await;
    let fault = Instant::now();
    restart("kube-apiserver", Duration::ZERO).await;
    let took = a_change_still_lands(&client, &ns, &servers, "ERROR").await;
    eprintln!(
        "fault watch expired (etcd compacted to {revision}, apiserver restarted): a change landed {:?} after the restart began ({took:?} after asking)",
        fault.elapsed()
    );

    in_sync(&servers, RECOVERY).await;
    assert_eq!(identity(&client, &ns).await, before, "nothing was re-created or regenerated");
    operator.shutdown().await;
}

/// POST to etcd's JSON gateway.
async fn http_json(url: &str, body: &str) -> serde_json::Value {
    let (url, body) = (url.to_string(), body.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "-X", "POST", &url, "-d", &body])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "POST {}: {}", "etcd", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Another field manager forces its own value onto a field the operator owns: the operator takes
/// it back once, and its own write does not start a loop (the next pass finds nothing to do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_competing_field_manager_is_overruled_once_without_a_loop() {
    let _shared = CONTROL_PLANE.read().await;
    let (client, ns, operator, _servers) = settled("fault-fight").await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let applies = || operator.ctx.metrics.encode();
    let done_before = done_applies(&applies());
    let before = identity(&client, &ns).await;
    let theirs = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "demo"},
        "spec": {"template": {"spec": {"containers": [{"name": "dittofs", "image": "example.com/other:1"}]}}}});
    let fault = Instant::now();
    sts.patch("demo", &PatchParams::apply("someone-else").force(), &Patch::Apply(&theirs)).await.unwrap();
    eventually("the operator's image is back", RECOVERY, || async {
        let s = sts.get("demo").await.ok()?;
        (s.spec?.template.spec?.containers[0].image.as_deref() == Some("marmos91c/dittofs:v0.29.0")).then_some(())
    })
    .await;
    eprintln!("fault competing field manager: field taken back in {:?}", fault.elapsed());
    eventually("the write is counted", RECOVERY, || async { (done_applies(&applies()) > done_before).then_some(()) })
        .await;
    // Its own write wakes the operator again (the StatefulSet changed): that pass, and any
    // after it, finds nothing to do.
    let passes = operator.ctx.metrics.reconciles_with("ok");
    eventually("a later pass", RECOVERY, || async {
        (operator.ctx.metrics.reconciles_with("ok") > passes).then_some(())
    })
    .await;
    assert_eq!(done_applies(&applies()), done_before + 1, "one write took the field back, no more");
    assert_eq!(identity(&client, &ns).await, before);
    operator.shutdown().await;
}

fn done_applies(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("dittofs_operator_applies_total{outcome=\"done\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn operator_process(ns: &str) -> Running {
    operator_binary(ns, &format!("127.0.0.1:{}", free_port()))
}

/// The operator process SIGKILLed in the middle of its first apply (the ConfigMap is written,
/// the StatefulSet not yet): a new process finishes the job; what was written is kept as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_during_apply_is_finished_by_the_next_one() {
    let _shared = CONTROL_PLANE.read().await;
    let (client, ns) = setup("fault-kill").await;
    let mut first = operator_process(&ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, DEMO)).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually("the first object is written", DEADLINE, || async { cms.get_opt("demo-config").await.ok().flatten() })
        .await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let killed = Instant::now();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let kept: Vec<_> = {
        let mut kept = Vec::new();
        for name in ["demo-jwt-secret", "demo-admin-bootstrap-credentials"] {
            kept.push(secrets.get_opt(name).await.unwrap().map(|s| (s.uid(), s.data)));
        }
        kept
    };
    let config_uid = cms.get("demo-config").await.unwrap().uid();

    let second = operator_process(&ns);
    in_sync(&servers, RECOVERY).await;
    eprintln!("fault operator killed during apply: converged {:?} after the kill", killed.elapsed());
    assert_eq!(cms.get("demo-config").await.unwrap().uid(), config_uid, "the written ConfigMap is kept");
    for (name, before) in ["demo-jwt-secret", "demo-admin-bootstrap-credentials"].iter().zip(kept) {
        if let Some(before) = before {
            let now = secrets.get(name).await.unwrap();
            assert_eq!((now.uid(), now.data), before, "{name} created by the killed process is kept, not regenerated");
        }
    }
    assert!(Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.unwrap().is_some());
    drop(second);
}

/// A TCP proxy to the apiserver that can be cut: every connection dropped, new ones refused.
struct Partition {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Partition {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let cut_flag = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if cut_flag.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let cut_flag = cut_flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let watch_cut = async {
                        while !cut_flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = watch_cut => {} }
                });
            }
        });
        Self { addr, cut }
    }

    fn set(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

/// A client that reaches the apiserver through `proxy`.
async fn client_through(proxy: std::net::SocketAddr) -> Client {
    let kubeconfig = Kubeconfig::read_from(&cluster().kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.cluster_url = format!("https://{proxy}").parse().unwrap();
    Client::try_from(config).unwrap()
}

/// Two replicas; the leader is cut off from the apiserver: its lease expires, the standby takes
/// over and does the work, and the old leader, healed, stays a standby and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_stays_out_when_healed() {
    let _shared = CONTROL_PLANE.read().await;
    let (client, ns) = setup("fault-partition").await;
    let api_url = std::fs::read_to_string(cluster().dir.join("env")).unwrap();
    let api_url = api_url.lines().find_map(|l| l.strip_prefix("DITTOFS_APISERVER_URL=https://")).unwrap().to_string();
    let partition = Partition::start(api_url.parse().unwrap()).await;
    let lease_seconds = 4;
    let lease = |identity: &str| LeaseSettings {
        name: "dittofs-operator".into(),
        namespace: ns.clone(),
        identity: identity.into(),
        duration_seconds: lease_seconds,
        grace_seconds: 1,
    };
    let a = Arc::new(Context::new(client_through(partition.addr).await, Settings::for_tests(Some(ns.clone()))));
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let task_a = tokio::spawn(leader::run(a.clone(), lease("replica-a"), async move {
        let _ = stopped_a.await;
    }));
    eventually("replica-a leads", DEADLINE, || async { (a.metrics.leader.get() == 1).then_some(()) }).await;
    let b = Arc::new(Context::new(client.clone(), Settings::for_tests(Some(ns.clone()))));
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let task_b = tokio::spawn(leader::run(b.clone(), lease("replica-b"), async move {
        let _ = stopped_b.await;
    }));
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, DEMO)).await.unwrap();
    in_sync(&servers, DEADLINE).await;
    assert_eq!(b.metrics.reconciles_with("ok"), 0, "the standby did nothing");

    let fault = Instant::now();
    partition.set(true);
    eventually("replica-b takes over", RECOVERY, || async { (b.metrics.leader.get() == 1).then_some(()) }).await;
    eprintln!(
        "fault leader partitioned: the standby leads {:?} after the cut (lease {lease_seconds}s)",
        fault.elapsed()
    );
    eventually("replica-a knows it lost the lease", RECOVERY, || async { (a.metrics.leader.get() == 0).then_some(()) })
        .await;
    let took = a_change_still_lands(&client, &ns, &servers, "DEBUG").await;
    eprintln!("fault leader partitioned: a change landed through the new leader in {took:?}");

    // Healed: the old leader stays a standby; only replica-b reconciles.
    partition.set(false);
    let a_reconciles = a.metrics.reconciles_with("ok") + a.metrics.reconciles_with("ApplyFailed");
    a_change_still_lands(&client, &ns, &servers, "WARN").await;
    assert_eq!(a.metrics.leader.get(), 0, "the healed replica does not lead");
    assert_eq!(
        a.metrics.reconciles_with("ok") + a.metrics.reconciles_with("ApplyFailed"),
        a_reconciles,
        "the healed replica did not reconcile"
    );
    let _ = stop_b.send(());
    let _ = stop_a.send(());
    let _ = task_b.await;
    let _ = task_a.await;
}
