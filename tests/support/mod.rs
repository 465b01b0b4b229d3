//! A real kube-apiserver + etcd for integration tests, started once per test binary by
//! `scripts/cluster.sh` and stopped by its watchdog when the test binary exits. Each test
//! gets its own namespace and its own in-process operator watching only that namespace.

#![allow(dead_code)]

pub mod dfs;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use dittofs_operator::controller;
use dittofs_operator::crd::DittoServer;
use dittofs_operator::settings::Settings;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub struct TestCluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl TestCluster {
    /// What `scripts/cluster.sh` wrote to `DIR/env` (`DITTOFS_CTR`, `DITTOFS_NODE_IP`, ...).
    pub fn env(&self) -> std::collections::BTreeMap<String, String> {
        std::fs::read_to_string(self.dir.join("env"))
            .expect("DIR/env")
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();

/// The shared control plane of this test binary (tier `api`: etcd + kube-apiserver).
pub fn cluster() -> &'static TestCluster {
    cluster_tier("api")
}

/// The shared control plane of this test binary in the given tier (`api`; `full`: with
/// controller-manager, scheduler and kwok, so StatefulSets get Ready pods; `node`: with a real
/// kubelet, see scripts/node/README.md). One per binary.
pub fn cluster_tier(tier: &'static str) -> &'static TestCluster {
    CLUSTER.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("dittofs-it-{}", std::process::id()));
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/cluster.sh"))
            .args(["start", "--tier", tier, "--dir"])
            .arg(&dir)
            .args(["--owner-pid", &std::process::id().to_string()])
            // One node tier per machine: wait while the previous test binary's is stopping.
            .env("DITTOFS_NODE_LOCK_WAIT", "180")
            .status()
            .expect("running scripts/cluster.sh");
        assert!(
            status.success(),
            "could not start the local control plane; build it with `scripts/testbin.sh` and see the log above"
        );
        TestCluster { kubeconfig: dir.join("kubeconfig"), dir }
    })
}

pub async fn client() -> Client {
    client_of(cluster()).await
}

pub async fn client_of(cluster: &TestCluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

/// Installs (server-side applies) the CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = dittofs_operator::crd::crd();
    crds.patch("dittoservers.dittofs.dittofs.com", &PatchParams::apply("dittofs-tests").force(), &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    eventually("CRD established", Duration::from_secs(20), || async {
        let crd = crds.get("dittoservers.dittofs.dittofs.com").await.ok()?;
        let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
        if !established {
            return None;
        }
        // Established can precede discovery by a moment: list once through the typed API.
        let api: Api<DittoServer> = Api::all(client.clone());
        api.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
}

/// A fresh namespace; `labels` lets a test ask for Pod Security enforcement.
pub async fn namespace(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("{prefix}-{}-{n}", std::process::id());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    ns.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

/// Installs Percona's PerconaPGCluster CRD (the fixture from its v3.0.0 release) and waits
/// until it is served.
pub async fn install_percona_crd(client: &Client) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/percona");
    let text = std::fs::read_to_string(fixtures.join("perconapgclusters.crd.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = dittofs_operator::percona::CRD_NAME;
    crds.patch(name, &PatchParams::apply("percona-tests").force(), &Patch::Apply(&crd)).await.unwrap();
    eventually("Percona CRD established", DEADLINE, || async {
        let crd = crds.get(name).await.ok()?;
        crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
}

/// Everything a test needs: a client, a namespace with the CRD installed.
pub async fn setup(prefix: &str) -> (Client, String) {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix, &[]).await;
    (client, ns)
}

/// The operator running in-process on one namespace; stops when dropped.
pub struct Operator {
    pub ctx: std::sync::Arc<controller::Context>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    pub fn start(client: &Client, namespace: &str) -> Self {
        Self::start_with(client, Settings::for_tests(Some(namespace.to_string())))
    }

    pub fn start_with(client: &Client, settings: Settings) -> Self {
        let ctx = std::sync::Arc::new(controller::Context::new(client.clone(), settings));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx.clone(), async move {
            let _ = stopped.await;
        }));
        Self { ctx, stop: Some(stop), task: Some(task) }
    }

    /// Waits until a pass has reused the kept render and no pass is queued or running: where a
    /// test of a quiet pass starts. The passes that a creation's own watch events trigger may
    /// still render while the caches catch up with what was applied; once one reused the
    /// render, every cached object was as applied, and a pass renders again only on a change.
    pub async fn quiescent(&self) {
        let metrics = &self.ctx.metrics;
        eventually("a pass reusing the kept render, nothing queued or running", DEADLINE, || async {
            let idle = metrics.in_flight.get() == 0 && metrics.queue_depth.get() == 0;
            (metrics.renders_with("reused") > 0 && idle).then_some(())
        })
        .await;
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` every 100 ms until it yields a value; panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A DittoServer from YAML, in `namespace`.
pub fn server(namespace: &str, yaml: &str) -> DittoServer {
    let mut cr: DittoServer = serde_saphyr::from_str(yaml).expect("test CR parses");
    cr.metadata.namespace = Some(namespace.to_string());
    cr
}

/// A tiny HTTP/1.0 client for loopback endpoints (status, body).
pub async fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

/// Runs `scripts/<script> start --dir DIR --owner-pid <this process>` (a throw-away server that
/// stops with this test binary) and returns the `KEY=VALUE` lines it prints.
pub fn start_script_server(script: &str, dir: &Path) -> std::collections::BTreeMap<String, String> {
    start_script_server_with(script, dir, &[])
}

/// [`start_script_server`] with more arguments after `start` (`--listen ADDR`).
pub fn start_script_server_with(
    script: &str,
    dir: &Path,
    extra: &[&str],
) -> std::collections::BTreeMap<String, String> {
    let out = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script))
        .args(["start", "--dir", dir.to_str().unwrap(), "--owner-pid", &std::process::id().to_string()])
        .args(extra)
        .env("DITTOFS_TESTBIN", testbin())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Tables in the `public` schema of `database` on `scripts/postgres.sh`'s server (over TLS), with
/// psql's stderr when the query fails.
pub fn public_tables(pg: &std::collections::BTreeMap<String, String>, database: &str) -> (u32, String) {
    let out = std::process::Command::new(format!("{}/psql", pg["PG_BIN"]))
        .args(["-tAc", "select count(*) from information_schema.tables where table_schema = 'public'"])
        .env("PGHOST", &pg["PGHOST"])
        .env("PGPORT", &pg["PGPORT"])
        .env("PGDATABASE", database)
        .env("PGUSER", "dittofs")
        .env("PGPASSWORD", &pg["PGPASSWORD"])
        .env("PGSSLMODE", "require")
        .output()
        .unwrap();
    let count = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (count, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Bytes of every object under `path` of the filer (the bucket's directory tree), walked over
/// its HTTP listing API.
pub async fn bytes_under(filer: &str, path: &str) -> u64 {
    let addr = filer.trim_start_matches("http://");
    let mut total = 0;
    let mut dirs = vec![path.to_string()];
    while let Some(dir) = dirs.pop() {
        let url = format!("{}/?limit=10000", dir.trim_end_matches('/'));
        let Ok((200, body)) = http_accept_json(addr, &url).await else { continue };
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        for entry in listing["Entries"].as_array().cloned().unwrap_or_default() {
            let full = entry["FullPath"].as_str().unwrap_or_default().to_string();
            // os.ModeDir is the top bit of Go's FileMode.
            if entry["Mode"].as_u64().unwrap_or(0) & (1 << 31) != 0 {
                dirs.push(full);
            } else {
                total += entry["FileSize"].as_u64().unwrap_or(0);
            }
        }
    }
    total
}

async fn http_accept_json(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

/// Runs `program` and returns its stdout; panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The real NFS and SMB clients (`scripts/clients.sh`: Debian's libnfs-utils and smbclient).
pub fn clients_installed() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/clients.sh");
    let out = std::process::Command::new("bash").arg(script).output().unwrap();
    assert!(out.status.success(), "scripts/clients.sh: {}", String::from_utf8_lossy(&out.stderr));
}

/// The cached control-plane binaries directory (`scripts/testbin.sh`).
pub fn testbin() -> PathBuf {
    match std::env::var_os("DITTOFS_TESTBIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let out = std::process::Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbin.sh"))
                .output()
                .expect("scripts/testbin.sh");
            PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().expect("testbin dir").trim())
        }
    }
}

/// The repository checkout (scripts, deploy/, docs).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port free on 127.0.0.1 now, below the ephemeral range (32768+: where the kernel takes
/// clients' source ports, which could take it before the test's server binds it) and below
/// scripts/cluster.sh's 20000–31999; never one this process was given before (the kernel's
/// port 0 handed out the same port twice in a row, 2026-12-07: a test's SMB port equal to its
/// API port).
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for attempt in 0u64.. {
        let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
        let port = 14000 + (random % 6000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && GIVEN.lock().unwrap().insert(port) {
            return port;
        }
        assert!(attempt < 10_000, "no free port in 14000–19999");
    }
    unreachable!()
}

/// Every request a client made, as `METHOD path?query`: what a reconcile costs the API server.
#[derive(Clone, Default)]
pub struct RequestLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl RequestLog {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A client of the test cluster that records each request in `log`.
pub async fn counting_client(log: RequestLog) -> Client {
    let kubeconfig = Kubeconfig::read_from(&cluster().kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    let layer = tower::layer::layer_fn(move |inner| Counting { inner, log: log.clone() });
    kube::client::ClientBuilder::try_from(config).expect("client").with_layer(&layer).build()
}

#[derive(Clone)]
struct Counting<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<http::Request<B>> for Counting<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        self.log.0.lock().unwrap().push(format!("{} {}", request.method(), request.uri()));
        self.inner.call(request)
    }
}

/// The pod `<sts>-0` as the StatefulSet controller would create it from its template (tier `api`
/// has none): its labels and containers; volumes other than the template's own (the claims)
/// are left out, and so are their mounts.
pub fn pod_from_template(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> k8s_openapi::api::core::v1::Pod {
    let template = sts.spec.clone().unwrap().template;
    let mut pod = k8s_openapi::api::core::v1::Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        ..Default::default()
    };
    pod.metadata.name = Some(format!("{}-0", sts.metadata.name.as_deref().unwrap()));
    let spec = pod.spec.as_mut().unwrap();
    let volumes: Vec<String> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect();
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        c.volume_mounts.get_or_insert_with(Vec::new).retain(|m| volumes.contains(&m.name));
    }
    pod
}

/// Plays the kubelet's part for a pod: its `Ready` condition turns `ready`, now (unchanged
/// when it already is, as the kubelet keeps its transition time).
pub async fn set_pod_ready(client: &Client, ns: &str, pod: &str, ready: bool) {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let current = pods.get(pod).await.unwrap().status.and_then(|s| s.conditions).unwrap_or_default();
    if current.iter().any(|c| c.type_ == "Ready" && c.status == status) {
        return;
    }
    let patch = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": status, "lastTransitionTime": now}]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

/// kwok has no provisioner: one pre-bound PV per claim the StatefulSet will make.
pub async fn volumes_for(client: &Client, ns: &str, claims: &[&str]) {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let pvs: kube::api::Api<PersistentVolume> = kube::api::Api::all(client.clone());
    for claim in claims {
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{ns}-{claim}")},
            "spec": {
                "capacity": {"storage": "100Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": "/nonexistent"},
                "claimRef": {"namespace": ns, "name": claim}
            }
        }))
        .unwrap();
        pvs.create(&Default::default(), &pv).await.unwrap();
    }
}

/// A child process killed (and reaped) if the test fails before it has stopped it.
pub struct Running(pub std::process::Child);

/// The operator binary, `run` on `namespace` as if in a pod of it, its health endpoints on
/// `health` (`ADDR:PORT`); stopped when dropped.
pub fn operator_binary(namespace: &str, health: &str) -> Running {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dittofs-operator"))
        .args(["run", "--namespace", namespace, "--health-address", health])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .env("POD_NAMESPACE", namespace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("operator binary starts");
    Running(child)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client of `cluster` with exactly the RBAC of the operator's ServiceAccount in `namespace`
/// (impersonated), so admission sees the operator as it runs in a pod.
pub async fn as_the_operator(cluster: &TestCluster, namespace: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:dittofs-operator"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]);
    Client::try_from(config).unwrap()
}

/// `kubectl apply --server-side -k deploy/<dir>` on `cluster`; the objects it reports.
pub async fn apply_deploy(cluster: &'static TestCluster, dir: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(dir);
    let kubectl = testbin().join("kubectl");
    let apply = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .args(["apply", "--server-side", "-k"])
            .arg(root)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(apply.status.success(), "kubectl apply -k deploy/{dir}: {}", String::from_utf8_lossy(&apply.stderr));
    String::from_utf8_lossy(&apply.stdout).to_string()
}
