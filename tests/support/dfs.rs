//! The real DittoFS server (`dfs`) run the way the pod would run it: the rendered container's
//! command, args and environment (Secret references resolved from the cluster), its config
//! file, and the claims: a test directory bind-mounted on `/data` in a private mount namespace
//! (`unshare -m`, as root), so every path the operator renders or sends over the REST API means
//! what it means in the pod, and concurrent servers do not share files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Client;
use kube::api::Api;

use super::{DEADLINE, eventually, http, testbin};

/// The container's environment with every secretKeyRef resolved from the cluster.
pub async fn resolve_env(client: &Client, ns: &str, container: &Container) -> BTreeMap<String, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut env = BTreeMap::new();
    for var in container.env.clone().unwrap_or_default() {
        let value = match (var.value, var.value_from.and_then(|v| v.secret_key_ref)) {
            (Some(value), _) => Some(value),
            (None, Some(r)) => match secrets.get_opt(&r.name).await.unwrap() {
                Some(s) => s.data.unwrap_or_default().get(&r.key).map(|b| String::from_utf8(b.0.clone()).unwrap()),
                None if r.optional == Some(true) => None,
                None => panic!("{}: Secret {} missing", var.name, r.name),
            },
            (None, None) => None,
        };
        if let Some(value) = value {
            env.insert(var.name, value);
        }
    }
    env
}

/// A running dfs, killed when dropped.
pub struct Dfs {
    pub child: Child,
    pub log: PathBuf,
    /// Kept to start the same server again.
    launch: Launch,
    /// The pod object this process stands for (tier `api` has no kubelet): Ready while dfs is.
    pod: Option<PlayedPod>,
}

/// The pod `<name>-0` a test plays the kubelet for: created from the StatefulSet's template when
/// missing (also after the operator deleted it to restart DittoFS), Ready once dfs answers.
#[derive(Clone)]
struct PlayedPod {
    client: Client,
    namespace: String,
    stateful_set: String,
}

impl PlayedPod {
    async fn ready(&self, ready: bool) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = format!("{}-0", self.stateful_set);
        let exists = pods.get_opt(&name).await.unwrap().is_some_and(|p| p.metadata.deletion_timestamp.is_none());
        if !exists && ready {
            let sts = Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                .get(&self.stateful_set)
                .await
                .unwrap();
            pods.create(&Default::default(), &super::pod_from_template(&sts)).await.unwrap();
        }
        if exists || ready {
            super::set_pod_ready(&self.client, &self.namespace, &name, ready).await;
        }
    }
}

#[derive(Clone)]
struct Launch {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    api_port: u16,
    /// (directory with a Secret volume's files, where the container mounts it).
    secret_mounts: Vec<(PathBuf, String)>,
    /// The API serves HTTPS: readiness is a TCP check, as the kubelet's probe with mTLS.
    tls: bool,
}

impl Drop for Dfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dfs {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts dfs the way the pod would: the container's command and args, its config mounted at
    /// /config (here: a directory with the ConfigMap's `config.yaml`), its resolved environment.
    pub fn start(
        dir: &Path,
        container: &Container,
        config_yaml: &str,
        env: &BTreeMap<String, String>,
        api_port: u16,
        secret_mounts: Vec<(PathBuf, String)>,
    ) -> Dfs {
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        // The claims' mount points exist in the pod before dfs starts.
        for claim in ["controlplane", "store/metadata", "store/block", "cache"] {
            std::fs::create_dir_all(dir.join("data").join(claim)).unwrap();
        }
        std::fs::write(config_dir.join("config.yaml"), config_yaml).unwrap();
        assert_eq!(container.command.as_deref(), Some(&["/app/dfs".to_string()][..]));
        let args: Vec<String> = container
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| a.replace("/config/config.yaml", config_dir.join("config.yaml").to_str().unwrap()))
            .collect();
        let tls = config_yaml.contains("cert_file:");
        let launch = Launch { args, env: env.clone(), api_port, secret_mounts, tls };
        Self::spawn(dir, launch)
    }

    fn spawn(dir: &Path, launch: Launch) -> Dfs {
        let log = dir.join("dfs.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        // `/data` must exist as a mount point; in the namespace it is the test's directory. The
        // pod's Secret volumes are bind-mounted at their mount paths the same way.
        let mut script = r#"mkdir -p /data && mount --bind "$0" /data"#.to_string();
        for (source, target) in &launch.secret_mounts {
            script.push_str(&format!(" && mkdir -p {target} && mount --bind {} {target}", source.display()));
        }
        script.push_str(r#" && exec "$@""#);
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .arg(dir.join("data"))
            .arg(testbin().join("dfs"))
            .args(&launch.args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir)
            .envs(&launch.env)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("dfs starts");
        Dfs { child, log, launch, pod: None }
    }

    /// Polls `/health/ready` until 200 (over HTTPS: until the API port accepts connections).
    pub async fn wait_ready(&self) {
        let addr = format!("127.0.0.1:{}", self.launch.api_port);
        let tls = self.launch.tls;
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let up = if tls {
                    tokio::net::TcpStream::connect(&addr).await.is_ok()
                } else {
                    matches!(http(&addr, "GET", "/health/ready", None).await, Ok((200, _)))
                };
                if up {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "dfs never became ready; its log:\n{}", self.log());
    }

    /// SIGTERM, as the kubelet sends it: dfs must stop cleanly well within `grace_seconds`.
    pub fn stop_within_grace(mut self, grace_seconds: u64) {
        let pid = self.child.id();
        Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "dfs exited with {status}:\n{}", self.log());
                assert!(
                    started.elapsed() < Duration::from_secs(grace_seconds),
                    "stopped after {:?}",
                    started.elapsed()
                );
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(grace_seconds), "dfs still running after the grace period");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops cleanly and starts the same server again, on the same directories; its pod turns
    /// not Ready while it is down and Ready again once it answers, as the kubelet would show it.
    pub async fn restart(mut self, dir: &Path) -> Dfs {
        let launch = self.launch.clone();
        let pod = self.pod.take();
        if let Some(pod) = &pod {
            pod.ready(false).await;
        }
        self.stop_within_grace(60);
        let mut dfs = Self::spawn(dir, launch);
        dfs.wait_ready().await;
        if let Some(pod) = &pod {
            pod.ready(true).await;
        }
        dfs.pod = pod;
        dfs
    }
}

/// Renders through the operator and runs dfs with exactly what the pod would get; waits until ready.
pub async fn run_rendered_server(client: &Client, ns: &str, name: &str, dir: &Path, api_port: u16) -> Dfs {
    let sts = eventually("StatefulSet", DEADLINE, || async {
        Api::<StatefulSet>::namespaced(client.clone(), ns).get_opt(name).await.ok().flatten()
    })
    .await;
    let config = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(&format!("{name}-config"))
        .await
        .unwrap()
        .data
        .unwrap()["config.yaml"]
        .clone();
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let container = pod.containers.iter().find(|c| c.name == "dittofs").unwrap().clone();
    let env = resolve_env(client, ns, &container).await;
    // Secret volumes, as the kubelet projects them: each item (or every key) a file.
    let mut secret_mounts = Vec::new();
    for mount in container.volume_mounts.clone().unwrap_or_default() {
        // Claims come from the volumeClaimTemplates: they are under /data already.
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name);
        let Some(source) = volume.and_then(|v| v.secret.as_ref()) else { continue };
        let name = source.secret_name.clone().unwrap();
        let data = Api::<Secret>::namespaced(client.clone(), ns).get(&name).await.unwrap().data.unwrap_or_default();
        let target = dir.join("secret-volumes").join(&mount.name);
        std::fs::create_dir_all(&target).unwrap();
        let items: Vec<(String, String)> = match &source.items {
            Some(items) => items.iter().map(|i| (i.key.clone(), i.path.clone())).collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in items {
            std::fs::write(target.join(path), &data[&key].0).unwrap();
        }
        secret_mounts.push((target, mount.mount_path.clone()));
    }
    let mut dfs = Dfs::start(dir, &container, &config, &env, api_port, secret_mounts);
    dfs.wait_ready().await;
    let pod = PlayedPod { client: client.clone(), namespace: ns.to_string(), stateful_set: name.to_string() };
    pod.ready(true).await;
    dfs.pod = Some(pod);
    dfs
}

/// A key of a Secret in the cluster, as text.
pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), ns).get(name).await.unwrap();
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

/// The DittoFS API as the bootstrap admin sees it: over HTTPS (the default), trusting the CA the
/// operator generated in `demo-api-tls`, on 127.0.0.1 (a name its certificate carries).
pub struct AdminApi {
    port: u16,
    password: String,
    ca: std::path::PathBuf,
}

impl AdminApi {
    pub async fn of(client: &Client, ns: &str, dir: &Path, port: u16) -> Self {
        let ca = dir.join("api-ca.crt");
        std::fs::write(&ca, secret_value(client, ns, "demo-api-tls", "ca.crt").await).unwrap();
        let password = secret_value(client, ns, "demo-admin-bootstrap-credentials", "password").await;
        Self { port, password, ca }
    }

    /// The admin's login: status and body (the tokens).
    pub fn login(&self) -> (u16, serde_json::Value) {
        let login = serde_json::json!({"username": "admin", "password": self.password}).to_string();
        self.curl("POST", "/api/v1/auth/login", None, Some(&login))
    }

    /// One call: status and JSON body. curl verifies the server against the CA.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let (_, answer) = self.login();
        let token = answer["access_token"].as_str().expect("logged in").to_string();
        self.curl(method, path, Some(&token), body)
    }

    fn curl(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        let mut args = vec!["-sS", "--max-time", "20", "--cacert", self.ca.to_str().unwrap(), "-X", method];
        args.extend(["-H", "Content-Type: application/json", "-w", "\n%{http_code}"]);
        let bearer = token.map(|t| format!("Authorization: Bearer {t}"));
        if let Some(bearer) = &bearer {
            args.extend(["-H", bearer.as_str()]);
        }
        if let Some(body) = body {
            args.extend(["--data", body]);
        }
        args.push(&url);
        let out = super::run("curl", &args);
        let (body, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (status.parse().unwrap_or(0), serde_json::from_str(body).unwrap_or_default())
    }
}

/// A stand-in for DittoFS's API on a free loopback port, for the fault tests: every connection
/// goes to `serve` (which may hang, or never answer). Returns the port.
pub async fn fake_api<F, Fut>(serve: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    port
}
