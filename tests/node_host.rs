//! The node tier leaves the host as it found it: after `scripts/cluster.sh stop`, no process
//! of the tier, no mount under its directory, no bridge, the same iptables rules and chains, the
//! same sysctls, no cgroup of its own, no path it created outside its directory. Checked around
//! a start that ran a pod on a claim (mounts, a network namespace, Service rules).

use std::path::{Path, PathBuf};
use std::process::Command;

const LOCK: &str = "/run/dittofs-node-tier.lock";
const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sh(script: &str) -> String {
    let out = Command::new("bash").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the tier may change on the host, as text to compare.
fn host_state() -> Vec<(String, String)> {
    let mut state = vec![
        ("links".to_string(), sh("ip -o link show | sed 's/^[0-9]*: //; s/ state .*//' | sort")),
        ("routes".to_string(), sh("ip route show table all | sort")),
        // Rules and chains without their packet counters.
        ("iptables".to_string(), sh("iptables-save | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]//' || true")),
        ("ip6tables".to_string(), sh("ip6tables-save | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]//' || true")),
        (
            "paths".to_string(),
            sh("ls -d /var/lib/kubelet /var/log/containers /var/lib/cni /run/containerd 2>/dev/null || true"),
        ),
        (
            "cgroups".to_string(),
            sh("ls -d /sys/fs/cgroup/*/dittofs-node-tier /sys/fs/cgroup/dittofs-node-tier 2>/dev/null || true"),
        ),
        (
            "processes".to_string(),
            sh(
                "ps -eo comm= | grep -E '^(kubelet|containerd|kube-proxy|coredns|local-path-pro|pause|dfs)' | sort || true",
            ),
        ),
    ];
    for sysctl in SYSCTLS {
        let value = std::fs::read_to_string(Path::new("/proc/sys").join(sysctl)).unwrap_or_default();
        state.push((sysctl.to_string(), value));
    }
    state
}

#[test]
fn stopping_the_node_tier_leaves_the_host_as_it_was() {
    let testbin = match std::env::var("DITTOFS_TESTBIN") {
        Ok(dir) => dir,
        Err(_) => sh(&format!("{}/scripts/testbin.sh --node | tail -n 1", root().display())).trim().to_string(),
    };
    // Another node tier (a test binary's, stopping) holds the machine's lock until it is gone.
    sh(&format!("touch {LOCK}; flock -w 240 {LOCK} true"));
    let before = host_state();

    let dir = tempfile::tempdir().unwrap();
    let tier = dir.path().join("tier");
    let cluster = root().join("scripts/cluster.sh");
    let start = Command::new("bash")
        .arg(&cluster)
        .args(["start", "--tier", "node", "--dir"])
        .arg(&tier)
        .args(["--owner-pid", &std::process::id().to_string()])
        .env("DITTOFS_TESTBIN", &testbin)
        .env("DITTOFS_NODE_LOCK_WAIT", "240")
        .status()
        .unwrap();
    assert!(start.success(), "the node tier did not start");

    // A pod on a claim and behind a Service: mounts, a network namespace, kube-proxy rules.
    let kubectl = format!("{testbin}/kubectl --kubeconfig {}/kubeconfig", tier.display());
    let busybox = sh(&format!(". {}/env; echo $DITTOFS_BUSYBOX_IMAGE", tier.display())).trim().to_string();
    let manifest = format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sleeper, labels: {{app: sleeper}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleeper
      image: {busybox}
      imagePullPolicy: Never
      command: [sleep, "3600"]
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: sleeper}}
spec:
  selector: {{app: sleeper}}
  ports: [{{port: 80}}]
"#
    );
    let manifest_file = dir.path().join("sleeper.yaml");
    std::fs::write(&manifest_file, manifest).unwrap();
    sh(&format!("{kubectl} apply -f {}", manifest_file.display()));
    sh(&format!("{kubectl} wait --for=condition=Ready pod/sleeper --timeout=120s"));
    let during = host_state();
    assert_ne!(during, before, "the tier changed nothing on the host: this test would not see a leak");
    let tier_mounts = sh(&format!("grep -c ' {}' /proc/mounts || true", tier.display())).trim().parse::<u32>().unwrap();
    assert!(tier_mounts > 0, "no mount under the tier's directory while it runs");

    let stop = Command::new("bash").arg(&cluster).args(["stop", "--dir"]).arg(&tier).status().unwrap();
    assert!(stop.success(), "stop failed");
    assert!(!tier.exists(), "the tier's directory is left");
    let mounts = sh(&format!("grep ' {}' /proc/mounts || true", dir.path().display()));
    assert_eq!(mounts, "", "mounts left under the tier's directory");
    let after = host_state();
    for ((what, was), (_, is)) in before.iter().zip(&after) {
        assert_eq!(is, was, "{what} differs after stop");
    }
}
