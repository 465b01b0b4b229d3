//! The operator as a process, the way a Deployment runs it: `dittofs-operator run
//! --leader-elect` against the local apiserver. Ready once it knows the Lease, it reconciles,
//! logs JSON lines that name the DittoServer, and on SIGTERM stops within 10 s with exit 0,
//! releasing the Lease so a standby can take over at once.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_leads_reconciles_logs_json_and_stops_on_sigterm() {
    let (client, ns) = setup("process").await;
    let addr = format!("127.0.0.1:{}", free_port());
    let logs = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dittofs-operator"))
        .args(["run", "--namespace", &ns, "--leader-elect", "--health-address", &addr])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .env("POD_NAMESPACE", &ns)
        .env("POD_NAME", "operator-0")
        .env("RUST_LOG", "info")
        .stdout(logs.reopen().unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("operator binary starts");
    let mut operator = Running(child);

    eventually("/readyz 200", DEADLINE, || async {
        (http(&addr, "GET", "/readyz", None).await.ok()?.0 == 200).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = |lease: Option<Lease>| lease.and_then(|l| l.spec?.holder_identity);
    eventually("operator-0 holds the Lease", DEADLINE, || async {
        (holder(leases.get_opt("dittofs-operator").await.ok()?).as_deref() == Some("operator-0")).then_some(())
    })
    .await;

    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n"))
        .await
        .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("StatefulSet applied by the process", DEADLINE, || async { sts.get_opt("demo").await.ok().flatten() })
        .await;
    let (status, metrics) = http(&addr, "GET", "/metrics", None).await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("dittofs_operator_leader 1"), "{metrics}");

    let memory = std::fs::read_to_string(format!("/proc/{}/status", operator.0.id())).unwrap();
    let figure = |key: &str| memory.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_string();
    eprintln!("operator memory with one DittoServer: {} / {}", figure("VmRSS"), figure("VmHWM"));

    // SIGTERM, as the kubelet sends it.
    let pid = operator.0.id().to_string();
    let asked = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = eventually("the process exits", Duration::from_secs(12), || {
        let exited = operator.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let took = asked.elapsed();
    eprintln!("stopped {took:?} after SIGTERM");
    assert!(exit.success(), "exit status {exit}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}, over the 10 s bound");
    assert_eq!(holder(leases.get_opt("dittofs-operator").await.unwrap()), None, "Lease released on the way out");

    // Every line is JSON; the reconcile's lines carry the DittoServer and its namespace.
    let text = std::fs::read_to_string(logs.path()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let reconciled: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "reconciled").collect();
    assert!(!reconciled.is_empty(), "a `reconciled` line is logged:\n{text}");
    for line in reconciled {
        assert_eq!(line["span"]["dittoserver"], "demo", "{line}");
        assert_eq!(line["span"]["namespace"], ns.as_str(), "{line}");
    }
}

/// A Lease that cannot be taken (its namespace does not exist): the process must not stay up
/// doing nothing behind a healthy /healthz; it exits non-zero so the kubelet restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_election_that_fails_ends_the_process_non_zero() {
    let (_client, ns) = setup("no-lease").await;
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_dittofs-operator"))
        .args(["run", "--namespace", &ns, "--leader-elect", "--health-address", &addr])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .env("POD_NAMESPACE", format!("{ns}-missing"))
        .env("POD_NAME", "operator-0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("operator binary starts");
    let mut operator = Running(child);
    let exit = eventually("the process exits", DEADLINE, || {
        let exited = operator.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(exit.code(), Some(2), "exit status {exit}");
}
