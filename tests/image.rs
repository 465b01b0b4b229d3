//! The operator's image as a cluster would run it: `scripts/image.sh`'s OCI archive is unpacked
//! and checked (user, entrypoint, nothing but the binary), then its binary runs with exactly the
//! args and env of `deploy/operator/operator.yaml`'s container, configured as a kubelet would
//! configure it: as uid/gid 65532, a ServiceAccount token from the apiserver's TokenRequest and
//! the cluster CA at the in-cluster paths (a private mount namespace), `KUBERNETES_SERVICE_*`,
//! and only the RBAC of `deploy/`. It must lead, reconcile, answer its probes on the ports the
//! Deployment probes, and stop within its grace period.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use support::*;

/// `DITTOFS_IMAGE_ARCHIVE` (set by scripts/test.sh), else a fresh `scripts/image.sh` build.
fn archive() -> PathBuf {
    if let Some(path) = std::env::var_os("DITTOFS_IMAGE_ARCHIVE") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash").arg(root().join("scripts/image.sh")).output().unwrap();
    assert!(out.status.success(), "scripts/image.sh: {}", String::from_utf8_lossy(&out.stderr));
    root().join(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim())
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an ELF64 little-endian executable names a dynamic loader (a `PT_INTERP` program header).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| u32::from_le_bytes(elf[phoff + i * size..phoff + i * size + 4].try_into().unwrap()) == 3)
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The Deployment's operator container, as `kubectl apply -k deploy/` creates it.
fn deployment() -> Deployment {
    let text = std::fs::read_to_string(root().join("deploy/operator/operator.yaml")).unwrap();
    text.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
        .find(|v| v["kind"] == "Deployment")
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_in_cluster_with_the_deployments_args_token_and_rbac() {
    // 1. The image: an OCI layout, one layer with only the binary, non-root, the binary as entrypoint.
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    run("tar", &["-xf", archive().to_str().unwrap(), "-C", oci.to_str().unwrap()], dir.path());
    assert_eq!(json(&oci.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    let index = json(&oci.join("index.json"));
    let deployment = deployment();
    let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
    let container = pod.containers[0].clone();
    let reference = &index["manifests"][0]["annotations"]["io.containerd.image.name"];
    assert_eq!(reference.as_str(), container.image.as_deref(), "the archive is the image deploy/ pins");
    assert!(!container.image.as_deref().unwrap().contains("marmos91c/"), "not the earlier operator's repository");
    let version = env!("CARGO_PKG_VERSION");
    assert!(container.image.as_deref().unwrap().ends_with(&format!(":v{version}")));
    let manifest = json(&blob(&oci, index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/dittofs-operator"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let layer = blob(&oci, layers[0]["digest"].as_str().unwrap());
    let listing = run("tar", &["-tzf", layer.to_str().unwrap()], dir.path());
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["dittofs-operator"], "no shell, no libc: only the binary");
    run("tar", &["-xzf", layer.to_str().unwrap(), "-C", rootfs.to_str().unwrap()], dir.path());
    let binary = rootfs.join("dittofs-operator");
    assert!(!has_interpreter(&std::fs::read(&binary).unwrap()), "a static binary: no dynamic loader to find");

    // 2. deploy/ as a user installs it, and what a kubelet gives the pod: a token and the CA.
    let client = client().await;
    let kubectl = testbin().join("kubectl");
    let kubeconfig = cluster().kubeconfig.to_str().unwrap().to_string();
    let kc = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", &kubeconfig];
        all.extend_from_slice(args);
        run(kubectl.to_str().unwrap(), &all, dir.path())
    };
    kc(&["apply", "--server-side", "-k", root().join("deploy").to_str().unwrap()]);
    kc(&["wait", "--for=condition=Established", "crd/dittoservers.dittofs.dittofs.com", "--timeout=30s"]);
    let operator_ns = deployment.metadata.namespace.clone().unwrap();
    let token = kc(&["create", "token", "dittofs-operator", "-n", &operator_ns, "--duration=1h"]);
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), token.trim()).unwrap();
    std::fs::copy(cluster().dir.join("ca.crt"), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), &operator_ns).unwrap();
    // The container runs as 65532: its files must be readable by it, as a kubelet makes them.
    run("chmod", &["-R", "a+rX", dir.path().to_str().unwrap()], dir.path());
    // `server: https://HOST:PORT` of the kubeconfig: what KUBERNETES_SERVICE_{HOST,PORT} point at in a pod.
    let (host, port) = {
        let text = std::fs::read_to_string(&cluster().kubeconfig).unwrap();
        let line = text.lines().find(|l| l.trim_start().starts_with("server:")).unwrap();
        let address = line.trim_start().trim_start_matches("server:").trim().trim_start_matches("https://").to_string();
        let (host, port) = address.rsplit_once(':').unwrap();
        (host.to_string(), port.trim_end_matches('/').to_string())
    };

    // 3. The container's env, fieldRefs resolved as the kubelet would for a pod of this Deployment.
    let pod_name = "dittofs-operator-5d4f8b7c9-x2x7q";
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container.env.clone().unwrap_or_default() {
        let value = match (var.value, var.value_from.and_then(|v| v.field_ref)) {
            (Some(v), _) => v,
            (None, Some(f)) if f.field_path == "metadata.name" => pod_name.to_string(),
            (None, Some(f)) if f.field_path == "metadata.namespace" => operator_ns.clone(),
            other => panic!("{}: no kubelet stand-in for {other:?}", var.name),
        };
        env.insert(var.name, value);
    }
    env.insert("KUBERNETES_SERVICE_HOST".into(), host);
    env.insert("KUBERNETES_SERVICE_PORT".into(), port);
    let user = pod.security_context.as_ref().unwrap();
    let (uid, gid) = (user.run_as_user.unwrap(), user.run_as_group.unwrap());
    let script = r#"mkdir -p /var/run/secrets/kubernetes.io/serviceaccount && mount --bind "$0" /var/run/secrets/kubernetes.io/serviceaccount && exec "$@""#;
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", script])
        .arg(&sa)
        .args(["setpriv", &format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"])
        .arg(&binary)
        .args(container.args.clone().unwrap_or_default())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(&env)
        .current_dir("/")
        .stdout(std::fs::File::create(dir.path().join("operator.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("operator.err")).unwrap());
    let mut operator = Running(command.spawn().unwrap());
    let log = || {
        std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("operator.err")).unwrap_or_default()
    };

    // 4. It answers the probes on the Deployment's port, leads, and reconciles.
    let port = container.ports.as_ref().unwrap()[0].container_port;
    let probe = |probe: Option<k8s_openapi::api::core::v1::Probe>| probe.unwrap().http_get.unwrap().path.unwrap();
    let (liveness, readiness) = (probe(container.liveness_probe.clone()), probe(container.readiness_probe.clone()));
    let addr = format!("127.0.0.1:{port}");
    for path in [&liveness, &readiness] {
        eventually(&format!("{path} answers 200"), DEADLINE, || async {
            matches!(http(&addr, "GET", path, None).await, Ok((200, _))).then_some(())
        })
        .await;
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &operator_ns);
    eventually("the Lease names this pod", DEADLINE, || async {
        let lease = leases.get_opt("dittofs-operator").await.ok()??;
        (lease.spec?.holder_identity.as_deref() == Some(pod_name)).then_some(())
    })
    .await;
    let ns = namespace(&client, "image", &[]).await;
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 1Gi}\n";
    Api::<DittoServer>::namespaced(client.clone(), &ns).create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    eventually("the StatefulSet of the DittoServer", DEADLINE, || async {
        Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.ok().flatten()
    })
    .await;
    let ready = eventually("ConfigReady on the DittoServer", DEADLINE, || async {
        let s = Api::<DittoServer>::namespaced(client.clone(), &ns).get("demo").await.ok()?;
        s.status?.conditions.into_iter().find(|c| c.type_ == "ConfigReady" && c.status == "True")
    })
    .await;
    assert_eq!(ready.reason, "Rendered", "{}", log());
    let metrics = http(&addr, "GET", "/metrics", None).await.unwrap().1;
    assert!(metrics.contains("dittofs_operator_reconciles_total"), "{metrics}");

    // 5. SIGTERM, as the kubelet sends it: a clean exit within the grace period.
    let grace = pod.termination_grace_period_seconds.unwrap();
    let pid = operator.0.id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = operator.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(grace as u64), "still running after {grace} s:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit {status}:\n{}", log());
    assert!(!log().contains(token.trim()), "the token is never logged");
}
