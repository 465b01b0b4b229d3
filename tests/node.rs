//! On a real node (tier `node`: kubelet, containerd, runc, CNI, kube-proxy, CoreDNS, the
//! local-path provisioner): the operator runs from its own image as `deploy/`'s Deployment (two
//! replicas, leader election), each DittoServer is a real DittoFS pod, and real clients reach
//! it through its Services. What a user's cluster does that the other tiers only imitate: the
//! pod's security settings and probes, claims mounted with fsGroup, rolls, restarts, the
//! operator reaching `<name>-api.<namespace>.svc` through cluster DNS.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// A pod's start on this node plus the operator's first runtime pass, with room for a Lease
/// takeover (15 s) in a test that kills the leader meanwhile.
const NODE_DEADLINE: Duration = Duration::from_secs(180);

fn node() -> &'static TestCluster {
    cluster_tier("node")
}

fn kubectl(args: &[&str]) -> String {
    let mut all = vec!["--kubeconfig", node().kubeconfig.to_str().unwrap()];
    all.extend_from_slice(args);
    run(testbin().join("kubectl").to_str().unwrap(), &all)
}

/// The operator's image (`DITTOFS_IMAGE_ARCHIVE` from scripts/test.sh, else scripts/image.sh)
/// imported into the node's containerd, and `deploy/` applied with two test flags
/// (`tests/fixtures/operator-under-test`), once per test binary.
fn operator_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let archive = match std::env::var_os("DITTOFS_IMAGE_ARCHIVE") {
            Some(path) => PathBuf::from(path),
            None => {
                let out = run("bash", &[root().join("scripts/image.sh").to_str().unwrap()]);
                root().join(out.lines().last().unwrap().trim())
            }
        };
        let ctr = node().env()["DITTOFS_CTR"].clone();
        run(&ctr, &["images", "import", archive.to_str().unwrap()]);
        let install = root().join("tests/fixtures/operator-under-test");
        kubectl(&["apply", "--server-side", "-k", install.to_str().unwrap()]);
        let crd = "crd/dittoservers.dittofs.dittofs.com";
        for _ in 0..100 {
            let established = Command::new(testbin().join("kubectl"))
                .args(["--kubeconfig", node().kubeconfig.to_str().unwrap()])
                .args(["wait", "--for=condition=Established", crd, "--timeout=30s"])
                .output()
                .unwrap();
            if established.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        kubectl(&["-n", "dittofs-system", "rollout", "status", "deployment/dittofs-operator", "--timeout=180s"]);
    });
}

async fn setup_node(prefix: &str) -> (Client, String) {
    operator_installed();
    let client = client_of(node()).await;
    let ns = namespace(&client, prefix, &[]).await;
    (client, ns)
}

/// The tests' DittoServer. It asks for little CPU: the default request (250m) of nine servers at
/// once is more than this 2-core node can schedule.
const CR: &str = "apiVersion: dittofs.dittofs.com/v1alpha1
kind: DittoServer
metadata: {name: files}
spec:
  storage: {metadataSize: 1Gi, contentSize: 1Gi}
  adapterServices: {type: ClusterIP}
  shutdownTimeout: 5s
  resources: {requests: {cpu: 20m, memory: 64Mi}, limits: {memory: 1Gi}}
";

async fn create(client: &Client, ns: &str, yaml: &str) {
    Api::<DittoServer>::namespaced(client.clone(), ns).create(&PostParams::default(), &server(ns, yaml)).await.unwrap();
}

async fn condition(client: &Client, ns: &str, type_: &str) -> Option<Condition> {
    let server = Api::<DittoServer>::namespaced(client.clone(), ns).get_opt("files").await.ok()??;
    server.status?.conditions.into_iter().find(|c| c.type_ == type_)
}

/// Ready at the DittoServer's current generation: the pod runs the current spec and serves.
async fn wait_ready(client: &Client, ns: &str) {
    let servers = Api::<DittoServer>::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    loop {
        let server = servers.get("files").await.unwrap();
        let generation = server.metadata.generation;
        let status = server.status.unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        if ready.is_some_and(|c| c.status == "True" && c.observed_generation == generation) {
            eprintln!(
                "{ns}: Ready at generation {generation:?} after {:?}",
                NODE_DEADLINE - (deadline - tokio::time::Instant::now())
            );
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let pods = kubectl(&["-n", ns, "get", "pods", "-o", "wide"]);
            let describe = Command::new(testbin().join("kubectl"))
                .args(["--kubeconfig", node().kubeconfig.to_str().unwrap(), "-n", ns, "describe", "pod", "files-0"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("files not Ready at generation {generation:?}: {:#?}\n{pods}\n{describe}", status.conditions);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until a condition of `files` satisfies `wanted`; on timeout, shows every condition and
/// the pods, so a failure says what the operator reported instead.
async fn wait_condition(client: &Client, ns: &str, what: &str, wanted: impl Fn(&Condition) -> bool) -> Condition {
    let servers = Api::<DittoServer>::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    loop {
        let conditions = servers.get_opt("files").await.ok().flatten().and_then(|s| s.status).map(|s| s.conditions);
        if let Some(found) = conditions.iter().flatten().find(|c| wanted(c)) {
            return found.clone();
        }
        if tokio::time::Instant::now() > deadline {
            let pods = kubectl(&["-n", ns, "get", "pods", "-o", "wide"]);
            panic!("timed out waiting for {what}: {conditions:#?}\n{pods}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The file Service's ClusterIP, once NFS answers there. Ready says the pod serves; the Service
/// routes to it only after kube-proxy has synced the new endpoints, a moment later (under load,
/// long enough for a first `nfs-cp` to be refused: seen 2026-12-07), and a client's mount would
/// retry the same way.
async fn file_ip(client: &Client, ns: &str) -> String {
    let service = Api::<Service>::namespaced(client.clone(), ns).get("files-file").await.unwrap();
    let ip = service.spec.unwrap().cluster_ip.unwrap();
    let export = nfs_url(&ip, "");
    eventually("NFS answering on the file Service", NODE_DEADLINE, || async {
        let listed = Command::new("timeout").args(["10", "nfs-ls", &export]).output().ok()?;
        listed.status.success().then_some(())
    })
    .await;
    ip
}

/// Seconds one `nfs-cp` may take (`timeout`): files here are at most a few MiB, and a client
/// whose server went away mid-copy may never return.
const NFS_CP_TIMEOUT: &str = "60";

fn nfs_url(ip: &str, path: &str) -> String {
    format!("nfs://{ip}/export{path}?nfsport=2049&mountport=2049&version=3")
}

/// Writes `content` as `/export/<file>` over NFS through the file Service.
fn nfs_write(dir: &Path, ip: &str, file: &str, content: &[u8]) {
    let local = dir.join(file);
    std::fs::write(&local, content).unwrap();
    run("timeout", &[NFS_CP_TIMEOUT, "nfs-cp", local.to_str().unwrap(), &nfs_url(ip, &format!("/{file}"))]);
}

/// Reads `/export/<file>` over NFS through the file Service.
fn nfs_read(dir: &Path, ip: &str, file: &str) -> Vec<u8> {
    let back = dir.join(format!("{file}.nfs"));
    let _ = std::fs::remove_file(&back);
    run("timeout", &[NFS_CP_TIMEOUT, "nfs-cp", &nfs_url(ip, &format!("/{file}")), back.to_str().unwrap()]);
    std::fs::read(&back).unwrap()
}

/// [`nfs_read`], retried for a while: right after a roll the Service may still route to the pod
/// that went (kube-proxy syncs its rules a moment after the endpoints change), as an NFS client
/// with a hard mount would retry.
async fn nfs_read_soon(dir: &Path, ip: &str, file: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let back = dir.join(format!("{file}.nfs"));
        let _ = std::fs::remove_file(&back);
        let out = Command::new("timeout")
            .args([NFS_CP_TIMEOUT, "nfs-cp"])
            .arg(nfs_url(ip, &format!("/{file}")))
            .arg(&back)
            .output()
            .unwrap();
        if out.status.success() {
            return std::fs::read(&back).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "nfs-cp {file}: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads `/export/<file>` over SMB (port 445 of the file Service) as the bootstrap admin.
async fn smb_read(client: &Client, ns: &str, dir: &Path, ip: &str, file: &str) -> Vec<u8> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns).get("files-admin-bootstrap-credentials").await.unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let out = dir.join(format!("{file}.smb"));
    let command = format!("get {file} {}", out.display());
    run("smbclient", &[&format!("//{ip}/export"), "-p", "445", "-U", &format!("admin%{password}"), "-c", &command]);
    std::fs::read(&out).unwrap()
}

async fn pod_uid(pods: &Api<Pod>) -> Option<String> {
    pods.get_opt("files-0").await.ok()?.and_then(|p| p.metadata.uid)
}

/// Waits until `files-0` is a pod other than `before` and Ready.
async fn new_pod_ready(pods: &Api<Pod>, before: &str) {
    eventually("a new pod files-0, Ready", NODE_DEADLINE, || async {
        let pod = pods.get_opt("files-0").await.ok()??;
        (pod.metadata.uid.as_deref() != Some(before)).then_some(())?;
        dittofs_operator::health::ready_since(&pod).map(|_| ())
    })
    .await;
}

/// Events the operator published with `reason`, counting each repeat of a series.
async fn events_with(client: &Client, ns: &str, reason: &str) -> i32 {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns);
    let list = events.list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum()
}

fn content(seed: u32, len: u32) -> Vec<u8> {
    (0..len / 4).map(|i| i.wrapping_mul(2_654_435_761) ^ seed).flat_map(u32::to_le_bytes).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pod_serves_through_its_services_and_a_deleted_pod_comes_back_with_its_files() {
    clients_installed();
    let (client, ns) = setup_node("node-serve").await;
    let dir = tempfile::tempdir().unwrap();
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let serving = condition(&client, &ns, "Serving").await.unwrap();
    assert_eq!(serving.message, "Exports /export over NFS on port 12049 and SMB on port 12445");

    // The pod as the kubelet runs it: the restricted settings, the claims with fsGroup.
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).get("files-0").await.unwrap();
    let id = kubectl(&[
        "-n",
        &ns,
        "exec",
        "files-0",
        "-c",
        "dittofs",
        "--",
        "/bin/sh",
        "-c",
        "id -u; id -g; stat -c %g /data/store/metadata; touch /probe 2>&1 || true",
    ]);
    let lines: Vec<&str> = id.lines().collect();
    assert_eq!(&lines[..3], ["65532", "65532", "65532"], "uid, gid, the claim's group (fsGroup): {id}");
    assert!(lines[3].contains("Read-only file system"), "root filesystem writable: {id}");
    assert!(pod.status.unwrap().container_statuses.unwrap()[0].ready);

    // NFS and SMB through the file Service's ClusterIP (2049 and 445 onto the pod's ports).
    let ip = file_ip(&client, &ns).await;
    let data = content(1, 1 << 20);
    nfs_write(dir.path(), &ip, "hello.bin", &data);
    assert_eq!(nfs_read(dir.path(), &ip, "hello.bin"), data, "read back over NFS");
    assert_eq!(smb_read(&client, &ns, dir.path(), &ip, "hello.bin").await, data, "read over SMB");

    // The pod deleted: the StatefulSet re-creates it on the same claims, the file is there, and
    // the runtime step finds nothing to change.
    let updates = events_with(&client, &ns, "RuntimeUpdated").await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let before = pod_uid(&pods).await.unwrap();
    pods.delete("files-0", &DeleteParams::default()).await.unwrap();
    // A pod being deleted is not Ready: the operator says so (its preStop hook takes seconds).
    eventually("Serving False while the pod goes", NODE_DEADLINE, || async {
        condition(&client, &ns, "Serving").await.filter(|c| c.status == "False").map(|_| ())
    })
    .await;
    new_pod_ready(&pods, &before).await;
    wait_ready(&client, &ns).await;
    assert_eq!(nfs_read_soon(dir.path(), &ip, "hello.bin").await, data, "the file after the pod was re-created");
    assert_eq!(events_with(&client, &ns, "RuntimeUpdated").await, updates, "the runtime step changed something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_rolls_the_pod_once_and_the_files_stay() {
    clients_installed();
    let (client, ns) = setup_node("node-roll").await;
    let dir = tempfile::tempdir().unwrap();
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    let data = content(2, 300_000);
    nfs_write(dir.path(), &ip, "before-roll.bin", &data);

    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let first = pod_uid(&pods).await.unwrap();
    let patch = json!({"spec": {"logging": {"level": "DEBUG"}}});
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("files", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // Every pod seen until the server is Ready at the new generation, its config rolled out.
    let mut seen = BTreeSet::from([first.clone()]);
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    loop {
        if let Some(uid) = pod_uid(&pods).await {
            seen.insert(uid);
        }
        let config = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("files-config").await.unwrap();
        let rolled = config.data.unwrap()["config.yaml"].contains("DEBUG");
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns).get("files").await.unwrap();
        let status = sts.status.unwrap_or_default();
        let settled = status.current_revision.is_some() && status.current_revision == status.update_revision;
        let ready = condition(&client, &ns, "Ready").await.is_some_and(|c| c.status == "True");
        if rolled && settled && ready && seen.len() > 1 && status.ready_replicas == Some(1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no roll: {seen:?} {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_ready(&client, &ns).await;
    if let Some(uid) = pod_uid(&pods).await {
        seen.insert(uid);
    }
    assert_eq!(seen.len(), 2, "exactly one roll (one new pod): {seen:?}");
    assert_eq!(nfs_read_soon(dir.path(), &ip, "before-roll.bin").await, data, "the file after the roll");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_to_zero_and_back_the_claims_and_files_stay() {
    clients_installed();
    let (client, ns) = setup_node("node-scale").await;
    let dir = tempfile::tempdir().unwrap();
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    let data = content(3, 200_000);
    nfs_write(dir.path(), &ip, "kept.bin", &data);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    let uids = |list: Vec<PersistentVolumeClaim>| -> BTreeSet<String> {
        list.into_iter().filter_map(|c| c.metadata.uid).collect()
    };
    let before = uids(claims.list(&Default::default()).await.unwrap().items);
    assert_eq!(before.len(), 3, "controlplane, metadata, content");

    let servers = Api::<DittoServer>::namespaced(client.clone(), &ns);
    servers.patch("files", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}}))).await.unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    eventually("the pod gone", NODE_DEADLINE, || async { pod_uid(&pods).await.is_none().then_some(()) }).await;
    eventually("phase Stopped", NODE_DEADLINE, || async {
        let phase = servers.get("files").await.ok()?.status?.phase?;
        (phase == dittofs_operator::crd::Phase::Stopped).then_some(())
    })
    .await;
    assert_eq!(uids(claims.list(&Default::default()).await.unwrap().items), before, "claims kept at 0");

    servers.patch("files", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
    wait_ready(&client, &ns).await;
    assert_eq!(uids(claims.list(&Default::default()).await.unwrap().items), before, "the same claims");
    assert_eq!(nfs_read_soon(dir.path(), &ip, "kept.bin").await, data, "the file after 0 and back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_dittoserver_leaves_its_claims_and_a_new_one_serves_the_old_files() {
    clients_installed();
    let (client, ns) = setup_node("node-recreate").await;
    let dir = tempfile::tempdir().unwrap();
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    let data = content(4, 200_000);
    nfs_write(dir.path(), &ip, "survivor.bin", &data);

    let servers = Api::<DittoServer>::namespaced(client.clone(), &ns);
    servers.delete("files", &DeleteParams::default()).await.unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    eventually("the DittoServer and its pod gone", NODE_DEADLINE, || async {
        let gone = servers.get_opt("files").await.ok()?.is_none() && pod_uid(&pods).await.is_none();
        gone.then_some(())
    })
    .await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    assert_eq!(claims.items.len(), 3, "every claim kept");

    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    assert_eq!(nfs_read_soon(dir.path(), &ip, "survivor.bin").await, data, "the re-created server serves the old file");
}

/// Kills the operator pod holding the Lease (no grace); returns the next holder once there is one.
async fn kill_the_leader(client: &Client) -> (String, String) {
    let leases = Api::<Lease>::namespaced(client.clone(), "dittofs-system");
    let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity);
    let leader = holder(leases.get("dittofs-operator").await.unwrap()).expect("a leader");
    let operator_pods = Api::<Pod>::namespaced(client.clone(), "dittofs-system");
    // Another test may have killed it a moment ago (404): the takeover is under way all the same.
    match operator_pods.delete(&leader, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => panic!("deleting the leader {leader}: {e}"),
    }
    let next = eventually("another replica holds the Lease", NODE_DEADLINE, || async {
        holder(leases.get("dittofs-operator").await.ok()?).filter(|h| *h != leader)
    })
    .await;
    (leader, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_operator_takes_over_when_the_leader_pod_is_killed() {
    let (client, ns) = setup_node("node-leader").await;
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;

    let (leader, next) = kill_the_leader(&client).await;
    assert_ne!(next, leader);

    // A change after the takeover lands.
    let patch = json!({"spec": {"logging": {"level": "WARN"}}});
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("files", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the new config rendered by the new leader", NODE_DEADLINE, || async {
        let config = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("files-config").await.ok()?;
        config.data?.get("config.yaml")?.contains("WARN").then_some(())
    })
    .await;
    wait_ready(&client, &ns).await;
    kubectl(&["-n", "dittofs-system", "rollout", "status", "deployment/dittofs-operator", "--timeout=180s"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_is_not_on_the_node_is_named_in_the_status() {
    let (client, ns) = setup_node("node-image").await;
    let yaml = format!("{CR}  image: marmos91c/dittofs:v0.0.0-not-imported\n  imagePullPolicy: Never\n");
    create(&client, &ns, &yaml).await;
    let degraded = eventually("Degraded names the image", NODE_DEADLINE, || async {
        condition(&client, &ns, "Degraded").await.filter(|c| c.status == "True")
    })
    .await;
    assert_eq!(degraded.reason, "ImagePullFailed", "{}", degraded.message);
    assert!(degraded.message.contains("marmos91c/dittofs:v0.0.0-not-imported"), "{}", degraded.message);
    assert!(degraded.message.contains("ErrImageNeverPull"), "{}", degraded.message);
    let ready = condition(&client, &ns, "Ready").await.unwrap();
    assert_eq!(ready.status, "False");

    // Back to the imported image: the pod is replaced and serves.
    let patch = json!({"spec": {"image": null, "imagePullPolicy": null}});
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("files", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_ready(&client, &ns).await;
}

/// `kubectl delete pod` while a client writes: the pod ends within its grace period (5 s preStop,
/// then DittoFS's own shutdown), and every file whose write the server acknowledged is there
/// after the StatefulSet brings the pod back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_a_client_writes_stops_within_its_grace_and_keeps_what_was_acknowledged() {
    clients_installed();
    let (client, ns) = setup_node("node-graceful").await;
    let dir = tempfile::tempdir().unwrap();
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let pod = pods.get("files-0").await.unwrap();
    let grace = pod.spec.unwrap().termination_grace_period_seconds.unwrap();
    assert_eq!(grace, 30, "5 + 3 × 5 + 10 s for shutdownTimeout 5s");
    let before = pod.metadata.uid.unwrap();

    // The client writes one file after another until the server stops answering.
    let writer = {
        let (dir, ip) = (dir.path().to_path_buf(), ip.clone());
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for i in 0..10_000u32 {
                let name = format!("w{i:05}.bin");
                let local = dir.join(&name);
                std::fs::write(&local, content(i, 64 * 1024)).unwrap();
                // A write cut by the pod's end is not acknowledged; libnfs may then spin without
                // end (seen 2026-12-07: 3 min of CPU), so each copy has a deadline.
                let out = Command::new("timeout")
                    .args([NFS_CP_TIMEOUT, "nfs-cp"])
                    .arg(&local)
                    .arg(nfs_url(&ip, &format!("/{name}")))
                    .output()
                    .unwrap();
                if !out.status.success() {
                    break;
                }
                acknowledged.push((name, i));
            }
            acknowledged
        })
    };
    // Some writes land before the delete.
    eventually("a first acknowledged write", NODE_DEADLINE, || async {
        dir.path().join("w00003.bin").exists().then_some(())
    })
    .await;
    let started = tokio::time::Instant::now();
    pods.delete("files-0", &DeleteParams::default()).await.unwrap();
    eventually("the old pod gone", Duration::from_secs(grace as u64 + 30), || async {
        let uid = pod_uid(&pods).await;
        (uid.as_deref() != Some(before.as_str())).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(grace as u64), "the pod took {took:?} to stop, over its {grace} s grace period");
    let acknowledged = writer.join().unwrap();
    assert!(acknowledged.len() >= 3, "only {} writes before the delete", acknowledged.len());

    new_pod_ready(&pods, &before).await;
    wait_ready(&client, &ns).await;
    for (name, seed) in &acknowledged {
        assert_eq!(nfs_read_soon(dir.path(), &ip, name).await, content(*seed, 64 * 1024), "{name} after the restart");
    }
    eprintln!("{ns}: the pod stopped {took:?} after the delete; {} acknowledged writes read back", acknowledged.len());
}

/// The Percona path on a real pod: the cluster is ready and its user Secret points at a
/// PostgreSQL (TLS only) on the node's address, which is down when the pod starts. The
/// `wait-for-postgres` init container holds DittoFS back until it answers; then DittoFS migrates
/// its control plane there and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_percona_the_init_container_waits_for_postgresql_then_dittofs_serves() {
    clients_installed();
    let (client, ns) = setup_node("node-percona").await;
    let dir = tempfile::tempdir().unwrap();
    install_percona_crd(&client).await;
    let node_ip = node().env()["DITTOFS_NODE_IP"].clone();
    let pg_dir = dir.path().join("pg");
    let pg = start_script_server_with("postgres.sh", &pg_dir, &["--listen", &node_ip]);
    let postgres = |command: &str| {
        run("bash", &[root().join("scripts/postgres.sh").to_str().unwrap(), command, "--dir", pg_dir.to_str().unwrap()])
    };
    postgres("pause");

    // A ready cluster "db" and the user Secret Percona would write for it.
    let clusters: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &dittofs_operator::percona::api_resource());
    let fixture = std::fs::read_to_string(root().join("tests/fixtures/percona/perconapgcluster.example.yaml")).unwrap();
    let mut cluster: serde_json::Value = serde_saphyr::from_str(&fixture).unwrap();
    cluster.as_object_mut().unwrap().remove("status");
    cluster["metadata"] = json!({"name": "db", "namespace": ns});
    clusters.create(&PostParams::default(), &serde_json::from_value(cluster).unwrap()).await.unwrap();
    let ready = json!({"status": {"state": "ready", "observedGeneration": 1}});
    clusters.patch_status("db", &PatchParams::default(), &Patch::Merge(ready)).await.unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db-pguser-dittofs", "labels": {
            "postgres-operator.crunchydata.com/cluster": "db", "postgres-operator.crunchydata.com/pguser": "dittofs"}},
        "stringData": {"host": node_ip, "port": pg["PGPORT"], "user": "dittofs", "dbname": "dittofs",
            "password": pg["PGPASSWORD"]}
    }))
    .unwrap();
    Api::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    let yaml = format!("{CR}  database:\n    percona: {{clusterName: db, user: dittofs}}\n");
    create(&client, &ns, &yaml).await;

    // The init container runs and waits; DittoFS has not started.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    eventually("wait-for-postgres running, dittofs not started", NODE_DEADLINE, || async {
        let status = pods.get_opt("files-0").await.ok()??.status?;
        let init = status.init_container_statuses?.into_iter().find(|c| c.name == "wait-for-postgres")?;
        let waiting = status.container_statuses?.into_iter().find(|c| c.name == "dittofs")?.state?.waiting?;
        (init.state?.running.is_some() && waiting.reason.as_deref() == Some("PodInitializing")).then_some(())
    })
    .await;
    let logs = kubectl(&["-n", &ns, "logs", "files-0", "-c", "wait-for-postgres"]);
    assert!(logs.contains("no response"), "pg_isready's answer while PostgreSQL is down: {logs}");
    assert_eq!(condition(&client, &ns, "Ready").await.map(|c| c.status).as_deref(), Some("False"));

    postgres("resume");
    wait_ready(&client, &ns).await;
    let (tables, error) = public_tables(&pg, "dittofs");
    assert!(tables > 0, "DittoFS migrated its control plane into PostgreSQL: {error}");
    let ip = file_ip(&client, &ns).await;
    let data = content(7, 100_000);
    nfs_write(dir.path(), &ip, "on-postgres.bin", &data);
    assert_eq!(nfs_read(dir.path(), &ip, "on-postgres.bin"), data);
}

/// An S3 remote store on a real pod: SeaweedFS on the node's address, keys from a Secret. A file
/// written over NFS ends up as objects in the bucket; new keys in the Secret update the store,
/// and the operator restarts the pod (DittoFS loads keys at start), which the StatefulSet brings
/// back with the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_on_a_real_pod_holds_the_blocks_and_new_keys_restart_the_pod() {
    clients_installed();
    let (client, ns) = setup_node("node-s3").await;
    let dir = tempfile::tempdir().unwrap();
    let node_ip = node().env()["DITTOFS_NODE_IP"].clone();
    let s3 = start_script_server_with("s3.sh", &dir.path().join("s3"), &["--listen", &node_ip]);
    let keys = |access: &str, secret: &str| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "s3-keys"},
            "stringData": {"accessKeyId": access, "secretAccessKey": secret, "endpoint": s3["S3_ENDPOINT"]}}))
        .unwrap()
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let apply = PatchParams::apply("node-test").force();
    secrets.patch("s3-keys", &apply, &Patch::Apply(keys(&s3["S3_ACCESS_KEY"], &s3["S3_SECRET_KEY"]))).await.unwrap();
    let yaml = CR.replace(
        "  storage: {metadataSize: 1Gi, contentSize: 1Gi}\n",
        "  storage: {metadataSize: 1Gi, cacheSize: 1Gi}\n",
    ) + &format!(
        "  s3:\n    bucket: {}\n    prefix: ditto/\n    forcePathStyle: true\n    allowPrivateEndpoint: true\n    credentialsSecretRef: {{secretName: s3-keys}}\n",
        s3["S3_BUCKET"]
    );
    create(&client, &ns, &yaml).await;
    wait_ready(&client, &ns).await;

    let ip = file_ip(&client, &ns).await;
    let data = content(8, 6 << 20);
    nfs_write(dir.path(), &ip, "big.bin", &data);
    let bucket_dir = format!("/buckets/{}/ditto", s3["S3_BUCKET"]);
    eventually("the blocks in the bucket", NODE_DEADLINE, || async {
        (bytes_under(&s3["S3_FILER"], &bucket_dir).await >= data.len() as u64 / 2).then_some(())
    })
    .await;

    // Rotation: the store gets the new keys and the pod is restarted by the operator.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let before = pod_uid(&pods).await.unwrap();
    secrets
        .patch("s3-keys", &apply, &Patch::Apply(keys(&s3["S3_ACCESS_KEY_2"], &s3["S3_SECRET_KEY_2"])))
        .await
        .unwrap();
    new_pod_ready(&pods, &before).await;
    assert_eq!(events_with(&client, &ns, "Restarted").await, 1, "one restart for the new keys");
    eventually("Serving with the new keys", NODE_DEADLINE, || async {
        condition(&client, &ns, "Serving").await.filter(|c| c.status == "True").map(|_| ())
    })
    .await;
    assert_eq!(nfs_read_soon(dir.path(), &ip, "big.bin").await, data, "the file after the restart");
}

/// A DittoFS that cannot log into its PostgreSQL exits at start; the kubelet restarts it, and the
/// status says the pod crash-loops with the container's last words (the end of its log), never a
/// password. Pointing the spec at the right Secret makes a new revision; the StatefulSet
/// controller does not replace a pod that never turned Ready, so the operator deletes it, and the
/// new pod serves with its file metadata in PostgreSQL, kept across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_server_is_named_with_its_last_words_and_a_fixed_spec_rolls_it_forward() {
    clients_installed();
    let (client, ns) = setup_node("node-crash").await;
    let dir = tempfile::tempdir().unwrap();
    let node_ip = node().env()["DITTOFS_NODE_IP"].clone();
    let pg = start_script_server_with("postgres.sh", &dir.path().join("pg"), &["--listen", &node_ip]);
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let wrong_password = "not-the-password-of-dittofs";
    for (name, password) in [("db-wrong", wrong_password), ("db", pg["PGPASSWORD"].as_str())] {
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {
            "host": node_ip, "port": pg["PGPORT"], "dbname": "dittofs", "user": "dittofs", "password": password}}))
        .unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }
    let database = "  database:\n    postgresSecretRef: {name: db-wrong}\n  stores:\n    metadata: {type: postgres}\n";
    create(&client, &ns, &format!("{CR}{database}")).await;

    let degraded = wait_condition(&client, &ns, "Degraded: the pod crash-loops", |c| {
        c.type_ == "Degraded" && c.status == "True" && c.reason == "PodCrashLooping"
    })
    .await;
    assert!(degraded.message.contains("Last exit: code 1"), "{}", degraded.message);
    assert!(degraded.message.contains("failed to initialize control plane store"), "{}", degraded.message);
    for password in [wrong_password, pg["PGPASSWORD"].as_str()] {
        assert!(!degraded.message.contains(password), "a password in the status: {}", degraded.message);
    }
    assert_eq!(condition(&client, &ns, "Ready").await.map(|c| c.status).as_deref(), Some("False"));

    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let stuck = pod_uid(&pods).await.unwrap();
    let patch = json!({"spec": {"database": {"postgresSecretRef": {"name": "db"}}}});
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("files", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    new_pod_ready(&pods, &stuck).await;
    wait_ready(&client, &ns).await;
    assert_eq!(events_with(&client, &ns, "RolledForward").await, 1, "the operator deleted the stuck pod once");

    let ip = file_ip(&client, &ns).await;
    let data = content(9, 100_000);
    nfs_write(dir.path(), &ip, "on-postgres.bin", &data);
    let (tables, error) = public_tables(&pg, "dittofs_metadata");
    assert!(tables > 0, "file metadata in PostgreSQL: {error}");
    let before = pod_uid(&pods).await.unwrap();
    pods.delete("files-0", &DeleteParams::default()).await.unwrap();
    new_pod_ready(&pods, &before).await;
    wait_ready(&client, &ns).await;
    assert_eq!(nfs_read_soon(dir.path(), &ip, "on-postgres.bin").await, data, "the file after the pod was re-created");
}

/// Claims of a StorageClass that no provisioner serves stay Pending: once the grace is over (20 s
/// in the test install) the status names every claim, and the server is not Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_cannot_bind_are_named_in_the_status() {
    let (client, ns) = setup_node("node-claims").await;
    let class = format!("nobody-provisions-{ns}");
    let storage_class: StorageClass = serde_json::from_value(json!({"metadata": {"name": class},
        "provisioner": "example.com/nobody", "volumeBindingMode": "Immediate"}))
    .unwrap();
    let classes = Api::<StorageClass>::all(client.clone());
    classes.create(&PostParams::default(), &storage_class).await.unwrap();
    let storage = format!("{{metadataSize: 1Gi, contentSize: 1Gi, storageClassName: {class}}}");
    create(&client, &ns, &CR.replace("{metadataSize: 1Gi, contentSize: 1Gi}", &storage)).await;

    // Each claim is named once it has been Pending for the grace; they are made moments apart,
    // so the first message may name only the first.
    let names = ["controlplane-files-0", "metadata-files-0", "content-files-0"];
    wait_condition(&client, &ns, "Degraded naming every Pending claim", |c| {
        c.type_ == "Degraded"
            && c.status == "True"
            && c.reason == "VolumeClaimPending"
            && names.iter().all(|name| c.message.contains(name))
    })
    .await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    let mut found: Vec<String> = claims.items.into_iter().filter_map(|c| c.metadata.name).collect();
    found.sort();
    assert_eq!(
        found,
        ["content-files-0", "controlplane-files-0", "metadata-files-0"],
        "the claims named are all there are"
    );
    assert_eq!(condition(&client, &ns, "Ready").await.map(|c| c.status).as_deref(), Some("False"));
    Api::<DittoServer>::namespaced(client.clone(), &ns).delete("files", &DeleteParams::default()).await.unwrap();
    classes.delete(&class, &DeleteParams::default()).await.unwrap();
}

/// Credentials the server no longer accepts (the operator's own and the bootstrap admin's, both
/// changed in their Secrets): the status names the Secret, never a password; DittoFS keeps serving
/// files; putting the passwords back makes the server Serving again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_server_refuses_are_named_and_the_files_are_still_served() {
    clients_installed();
    let (client, ns) = setup_node("node-login").await;
    let dir = tempfile::tempdir().unwrap();
    create(&client, &ns, CR).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    let data = content(10, 100_000);
    nfs_write(dir.path(), &ip, "before.bin", &data);

    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let names = ["files-operator-credentials", "files-admin-bootstrap-credentials"];
    let mut originals = Vec::new();
    for name in names {
        let password = secrets.get(name).await.unwrap().data.unwrap()["password"].0.clone();
        originals.push(String::from_utf8(password).unwrap());
    }
    let wrong = "not-the-password-anymore";
    for name in names {
        let patch = json!({"stringData": {"password": wrong}});
        secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    // The operator keeps its DittoFS session (a token valid across DittoFS restarts) and logs in
    // only when it has none or it is refused: an operator restart makes it log in again.
    kill_the_leader(&client).await;
    let refused = wait_condition(&client, &ns, "Serving False LoginRefused", |c| {
        c.type_ == "Serving" && c.status == "False" && c.reason == "LoginRefused"
    })
    .await;
    assert!(refused.message.contains("files-admin-bootstrap-credentials"), "{}", refused.message);
    for password in originals.iter().map(String::as_str).chain([wrong]) {
        assert!(!refused.message.contains(password), "a password in the status: {}", refused.message);
    }
    assert_eq!(nfs_read_soon(dir.path(), &ip, "before.bin").await, data, "DittoFS still serves the file");

    for (name, password) in names.iter().zip(&originals) {
        let patch = json!({"stringData": {"password": password}});
        secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    wait_condition(&client, &ns, "Serving again with the old passwords", |c| {
        c.type_ == "Serving" && c.status == "True"
    })
    .await;
}

/// A sidecar that holds the SMB port inside the pod (a template override of this server's
/// StatefulSet): the status names the SMB adapter and its port, NFS keeps serving, and without
/// the override the pod rolls and serves SMB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_inside_the_pod_is_named_and_nfs_still_serves() {
    clients_installed();
    let (client, ns) = setup_node("node-port").await;
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(root().join("templates/statefulset.yaml.j2")).unwrap();
    // A native sidecar (busybox's httpd): the kubelet starts it, and waits for its port, before
    // DittoFS.
    let busybox = node().env()["DITTOFS_BUSYBOX_IMAGE"].clone();
    let squatter = String::from("      initContainers:\n        - name: squatter\n")
        + &format!("          image: {busybox:?}\n          imagePullPolicy: Never\n")
        + concat!(
            "          restartPolicy: Always\n",
            "          command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"12445\"]\n",
            "          startupProbe: {tcpSocket: {port: 12445}, periodSeconds: 1}\n",
            "          resources: {requests: {cpu: 5m, memory: 8Mi}}\n",
            "          securityContext: {{ computed.securityContext | tojson }}\n",
        );
    assert!(template.contains("\n      containers:\n"));
    let template = template.replacen("\n      containers:\n", &format!("\n{squatter}      containers:\n"), 1);
    let overrides: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "squat"},
        "data": {"statefulset.yaml.j2": template}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&PostParams::default(), &overrides).await.unwrap();
    create(&client, &ns, &format!("{CR}  templates: {{configMapRef: {{name: squat}}}}\n")).await;

    let busy = wait_condition(&client, &ns, "Serving names the SMB adapter", |c| {
        c.type_ == "Serving" && c.status == "False" && c.message.contains("adapter smb")
    })
    .await;
    assert!(
        ["AdapterNotRunning", "AdapterRejected"].contains(&busy.reason.as_str()),
        "{}: {}",
        busy.reason,
        busy.message
    );
    assert!(busy.message.contains("12445"), "{}", busy.message);
    let ip = file_ip(&client, &ns).await;
    let data = content(11, 100_000);
    nfs_write(dir.path(), &ip, "still.bin", &data);
    assert_eq!(nfs_read(dir.path(), &ip, "still.bin"), data, "NFS serves while SMB cannot");

    let patch = json!({"spec": {"templates": null}});
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("files", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let serving = wait_condition(&client, &ns, "Serving with SMB once the sidecar is gone", |c| {
        c.type_ == "Serving" && c.status == "True"
    })
    .await;
    assert!(serving.message.contains("SMB on port 12445"), "{}", serving.message);
    assert_eq!(smb_read(&client, &ns, dir.path(), &ip, "still.bin").await, data, "read over SMB");
}

/// What a client that knows only the host and the export path does: it asks the portmapper on
/// port 111 of the file Service, which names the NFS and MOUNT ports, and reads the share. And a
/// user declared in the CR logs in over SMB with the password from its Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_no_port_finds_nfs_through_the_portmapper_and_a_declared_user_logs_in_over_smb() {
    clients_installed();
    let (client, ns) = setup_node("node-access").await;
    let dir = tempfile::tempdir().unwrap();
    let password = "alice-password-on-a-real-pod";
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "users"}, "stringData": {"alice": password}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    let cr = format!(
        "{CR}  users: [{{name: alice, uid: 1001, gid: 1001, passwordSecretRef: {{name: users, key: alice}}}}]
  shares: [{{name: /export, permissions: [{{user: alice, level: read-write}}]}}]
"
    );
    create(&client, &ns, &cr).await;
    wait_ready(&client, &ns).await;
    let ip = file_ip(&client, &ns).await;
    let data = content(3, 256 << 10);
    nfs_write(dir.path(), &ip, "found.bin", &data);

    // The portmapper, through the Service's port 111, names NFS (100003) on TCP, and MOUNT
    // (100005) on TCP and UDP. `rpcinfo -s` (rpcbind's DUMP): `-p` fails against DittoFS v0.29,
    // whose GETADDR answers with the caller's address instead of its own.
    let programs = eventually("the portmapper answering on port 111", NODE_DEADLINE, || async {
        let out = Command::new("rpcinfo").args(["-s", &ip]).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    let netids = |program: &str| {
        programs
            .lines()
            .find(|l| l.split_whitespace().next() == Some(program))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    assert!(netids("100003").contains("tcp"), "rpcinfo -s {ip}: no NFS over TCP:\n{programs}");
    assert!(netids("100005").contains("udp,tcp"), "rpcinfo -s {ip}: no MOUNT over UDP and TCP:\n{programs}");
    // No port given: libnfs asks the portmapper, then mounts and reads.
    let listing = run("timeout", &[NFS_CP_TIMEOUT, "nfs-ls", &format!("nfs://{ip}/export")]);
    assert!(listing.contains("found.bin"), "nfs-ls through the portmapper: {listing}");
    let back = dir.path().join("found.back");
    run("timeout", &[NFS_CP_TIMEOUT, "nfs-cp", &format!("nfs://{ip}/export/found.bin"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data, "read through the portmapper");

    // alice, declared in the CR, writes and reads with her own password (the NFS file above is
    // nobody's, mode 0660: not hers to read).
    let upload = dir.path().join("alice.bin");
    std::fs::write(&upload, &data).unwrap();
    let out = dir.path().join("alice.back");
    let command = format!("put {} alice.bin; get alice.bin {}", upload.display(), out.display());
    run("smbclient", &[&format!("//{ip}/export"), "-p", "445", "-U", &format!("alice%{password}"), "-c", &command]);
    assert_eq!(std::fs::read(&out).unwrap(), data, "alice writes and reads over SMB");
    let status =
        serde_json::to_string(&Api::<DittoServer>::namespaced(client.clone(), &ns).get("files").await.unwrap().status)
            .unwrap();
    assert!(status.contains("\"users\":[\"alice\"]") && !status.contains(password), "{status}");
}
