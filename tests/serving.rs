//! The data path, end to end: the real `dfs` runs with what the operator renders, the operator
//! sets up its adapters, stores and shares through the REST API, and real clients use them —
//! Debian's libnfs-utils (NFS in userspace) and smbclient, and SeaweedFS as the S3 server of
//! a remote store. Installed or built by scripts/clients.sh and scripts/testbin.sh.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dittofs_operator::cmd::diff::{self, DiffArgs, OutputFormat};
use dittofs_operator::crd::DittoServer;
use dittofs_operator::settings::{DittoApiArgs, Settings};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::dfs::{AdminApi, fake_api, run_rendered_server, secret_value};
use support::*;

const LOCAL_API: &str = "http://127.0.0.1:{port}";
/// First contact includes dfs's own start-up and an adapter restart.
const SERVE_DEADLINE: Duration = Duration::from_secs(90);

fn start_operator(client: &Client, ns: &str) -> Operator {
    let mut settings = Settings::for_tests(Some(ns.to_string()));
    settings.dittofs_api = Some(LOCAL_API.into());
    Operator::start_with(client, settings)
}

async fn condition(client: &Client, ns: &str, name: &str, type_: &str) -> Option<Condition> {
    let server = Api::<DittoServer>::namespaced(client.clone(), ns).get(name).await.ok()?;
    server.status?.conditions.into_iter().find(|c| c.type_ == type_)
}

/// Waits until condition `type_` has `status` and `reason`; returns it.
async fn wait_condition(client: &Client, ns: &str, type_: &str, status: &str, reason: &str) -> Condition {
    let what = format!("{type_}={status} ({reason})");
    let deadline = tokio::time::Instant::now() + SERVE_DEADLINE;
    loop {
        let current = condition(client, ns, "demo", type_).await;
        if let Some(c) = &current
            && c.status == status
            && c.reason == reason
        {
            return c.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last: {current:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `Serving` is True and its message starts with `prefix` (a change shows in the message).
async fn wait_serving(client: &Client, ns: &str, prefix: &str) -> Condition {
    let deadline = tokio::time::Instant::now() + SERVE_DEADLINE;
    loop {
        let current = condition(client, ns, "demo", "Serving").await;
        if let Some(c) = &current
            && c.status == "True"
            && c.message.starts_with(prefix)
        {
            return c.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for Serving: {prefix}; last: {current:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Any change to the CR triggers a pass now, instead of at the next retry.
async fn poke(client: &Client, ns: &str) {
    let patch =
        json!({"metadata": {"annotations": {"test.dittofs.com/poke": format!("{:?}", std::time::Instant::now())}}});
    Api::<DittoServer>::namespaced(client.clone(), ns)
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn nfs_url(port: u16, path: &str) -> String {
    format!("nfs://127.0.0.1{path}?nfsport={port}&mountport={port}&version=3")
}

/// Writes `content` into the share over NFS, lists it, reads it back.
fn nfs_write_and_read(dir: &Path, port: u16, share: &str, file: &str, content: &[u8]) {
    let local = dir.join(file);
    std::fs::write(&local, content).unwrap();
    run("nfs-cp", &[local.to_str().unwrap(), &nfs_url(port, &format!("{share}/{file}"))]);
    let listing = run("nfs-ls", &[&nfs_url(port, share)]);
    assert!(listing.contains(file), "nfs-ls does not show {file}:\n{listing}");
    let back = dir.join(format!("{file}.back"));
    run("nfs-cp", &[&nfs_url(port, &format!("{share}/{file}")), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), content, "read back over NFS");
}

fn nfs_read(dir: &Path, port: u16, share: &str, file: &str) -> Vec<u8> {
    let back = dir.join(format!("{file}.again"));
    let _ = std::fs::remove_file(&back);
    run("nfs-cp", &[&nfs_url(port, &format!("{share}/{file}")), back.to_str().unwrap()]);
    std::fs::read(&back).unwrap()
}

fn smb_read(dir: &Path, port: u16, share: &str, password: &str, file: &str) -> Vec<u8> {
    let out = dir.join(format!("{file}.smb"));
    let command = format!("get {file} {}", out.display());
    run(
        "smbclient",
        &[&format!("//127.0.0.1{share}"), "-p", &port.to_string(), "-U", &format!("admin%{password}"), "-c", &command],
    );
    std::fs::read(&out).unwrap()
}

fn cr(api_port: u16, nfs_port: u16, smb_port: u16, extra: &str) -> String {
    format!(
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {{name: demo}}\nspec:\n  storage: {{metadataSize: 10Gi, contentSize: 10Gi}}\n  controlPlane: {{port: {api_port}}}\n  nfsPort: {nfs_port}\n  smb: {{port: {smb_port}}}\n  shutdownTimeout: 5s\n{extra}"
    )
}

/// `yaml` (from [`cr`]) with the API on plain HTTP, as a fake API speaks it (HTTPS is the default).
fn plain_http(yaml: &str, api_port: u16) -> String {
    yaml.replace(
        &format!("controlPlane: {{port: {api_port}}}"),
        &format!("controlPlane: {{port: {api_port}, tls: false}}"),
    )
}

fn diff_args(ns: &str) -> DiffArgs {
    DiffArgs {
        name: Some("demo".into()),
        file: None,
        namespace: Some(ns.to_string()),
        kubeconfig: Some(cluster().kubeconfig.clone()),
        output: OutputFormat::Text,
        read: dittofs_operator::settings::ReadArgs {
            dittofs_api: DittoApiArgs { dittofs_api: LOCAL_API.into() },
            ..Default::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_server_serves_a_share_over_nfs_and_smb_and_keeps_it() {
    clients_installed();
    let (client, ns) = setup("serve").await;
    let dir = tempfile::tempdir().unwrap();
    let (api_port, nfs_port, smb_port) = (free_port(), free_port(), free_port());
    let operator = start_operator(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr(api_port, nfs_port, smb_port, "")))
        .await
        .unwrap();

    // No pod yet: the condition says so, nothing is dialled, and nothing crashes.
    let waiting = wait_condition(&client, &ns, "Serving", "False", "PodNotReady").await;
    assert!(waiting.message.contains("demo-0"), "{}", waiting.message);
    assert_eq!(operator.ctx.http.counts.snapshot(), (0, 0), "the DittoFS API was dialled before the pod was Ready");
    operator.shutdown().await;

    // dfs starts with what was rendered; before the operator's first runtime pass, diff lists
    // what it would do to DittoFS (read only: nothing is created by looking).
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    // HTTPS by default, with the certificate the operator generated: plain HTTP gets no answer.
    let plain = http(&format!("127.0.0.1:{api_port}"), "GET", "/health", None).await;
    assert!(!matches!(plain, Ok((200, _))), "the API answered plain HTTP: {plain:?}");
    let preview = diff::preview(&client, &diff_args(&ns)).await.unwrap();
    assert_eq!(
        preview.runtime,
        [
            "adapter nfs settings: portmapper_enabled false → true, udp_enabled false → true".to_string(),
            format!("adapter nfs: port 12049 → {nfs_port}"),
            format!("adapter smb: port 1445 → {smb_port}"),
            "metadata store meta: create (badger)".to_string(),
            "local block store local: create (fs)".to_string(),
            "share /export: create".to_string(),
        ],
        "{}",
        dfs.log()
    );

    let operator = start_operator(&client, &ns);
    poke(&client, &ns).await;
    let serving = wait_condition(&client, &ns, "Serving", "True", "Serving").await;
    assert_eq!(
        serving.message,
        format!("Exports /export over NFS on port {nfs_port} and SMB on port {smb_port}"),
        "{}",
        dfs.log()
    );
    let status = Api::<DittoServer>::namespaced(client.clone(), &ns).get("demo").await.unwrap().status.unwrap();
    let runtime = status.runtime.clone().unwrap();
    assert_eq!(runtime.shares, ["/export"]);
    let ports: BTreeMap<String, (i32, bool)> =
        runtime.adapters.iter().map(|a| (a.adapter_type.clone(), (a.port, a.running))).collect();
    assert_eq!(ports["nfs"], (i32::from(nfs_port), true));
    assert_eq!(ports["smb"], (i32::from(smb_port), true));
    assert_eq!(status.endpoints.unwrap().nfs.unwrap(), format!("demo-file.{ns}.svc:/export"));
    assert!(diff::preview(&client, &diff_args(&ns)).await.unwrap().runtime.is_empty(), "diff: nothing left");

    // A quiet pass reads DittoFS and writes nothing to it.
    let before = (operator.ctx.http.counts.snapshot(), operator.ctx.metrics.reconciles_with("ok"));
    poke(&client, &ns).await;
    eventually("a pass after the poke", DEADLINE, || async {
        (operator.ctx.metrics.reconciles_with("ok") > before.1).then_some(())
    })
    .await;
    let (reads, writes) = operator.ctx.http.counts.snapshot();
    assert_eq!(writes, before.0.1, "a steady pass wrote to the DittoFS API");
    assert_eq!(reads - before.0.0, 6, "adapters, three store tables, shares, NFS settings");

    // Real clients: write and read over NFS, read the same file over SMB as the admin.
    let content: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    nfs_write_and_read(dir.path(), nfs_port, "/export", "hello.bin", &content);
    let password = secret_value(&client, &ns, "demo-admin-bootstrap-credentials", "password").await;
    assert_eq!(smb_read(dir.path(), smb_port, "/export", &password, "hello.bin"), content, "SMB reads the NFS file");

    // A restart keeps the share, the ports and the file (fs stores on the claims' directories).
    let dfs = dfs.restart(dir.path()).await;
    assert_eq!(nfs_read(dir.path(), nfs_port, "/export", "hello.bin"), content, "{}", dfs.log());
    poke(&client, &ns).await;
    wait_condition(&client, &ns, "Serving", "True", "Serving").await;

    // A snapshot policy reaches DittoFS, and drift made behind the operator's back is corrected.
    let api = Api::<DittoServer>::namespaced(client.clone(), &ns);
    let policy = json!({"spec": {"snapshotPolicies": [{"share": "/export", "interval": "@daily", "keepLast": 7, "ttl": "720h"}]}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&policy)).await.unwrap();
    let path = "/api/v1/shares/export/snapshot-policy";
    let admin = AdminApi::of(&client, &ns, dir.path(), api_port).await;
    let stored = eventually("the snapshot policy in DittoFS", SERVE_DEADLINE, || async {
        let (status, body) = admin.call("GET", path, None);
        (status == 200 && body["keep_last"] == 7).then_some(body)
    })
    .await;
    assert_eq!((stored["interval"].as_str(), stored["ttl"].as_str()), (Some("24h0m0s"), Some("720h0m0s")), "{stored}");
    let (status, _) = admin.call("PUT", path, Some(r#"{"interval":"1h","keep_last":1}"#));
    assert_eq!(status, 200);
    poke(&client, &ns).await;
    eventually("the policy corrected back", SERVE_DEADLINE, || async {
        let (_, body) = admin.call("GET", path, None);
        (body["keep_last"] == 7 && body["interval"] == "24h0m0s").then_some(())
    })
    .await;

    // Paused: a spec change is listed, not made.
    let patch = json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": "paused"}},
                       "spec": {"shares": [{"name": "/export"}, {"name": "/projects", "readOnly": true}]}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let held = wait_condition(&client, &ns, "Serving", "False", "ChangesHeld").await;
    assert!(held.message.contains("share /projects: create"), "{}", held.message);
    let in_sync = condition(&client, &ns, "demo", "InSync").await.unwrap();
    assert!(in_sync.message.contains("Pending in DittoFS: share /projects: create"), "{}", in_sync.message);

    // Resumed: made, and the second share serves too.
    let patch = json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": null}}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_serving(&client, &ns, "Exports /export, /projects over").await;
    let listing = run("nfs-ls", &[&nfs_url(nfs_port, "/projects")]);
    assert!(!listing.contains("hello.bin"), "{listing}");

    // Removing a share from the spec leaves it (and its files) on the server.
    let patch = json!({"spec": {"shares": [{"name": "/projects", "readOnly": true}], "snapshotPolicies": null}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_serving(&client, &ns, "Exports /projects over").await;
    assert_eq!(nfs_read(dir.path(), nfs_port, "/export", "hello.bin"), content, "the removed share still serves");

    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

/// The `s3` remote store's config as DittoFS reports it (secrets masked), read as the admin.
fn remote_store_config(api: &AdminApi) -> serde_json::Value {
    api.call("GET", "/api/v1/store/block/remote/s3", None).1["config"].clone()
}

/// Every Event of the namespace, as JSON text.
async fn events_text(client: &Client, ns: &str) -> String {
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    serde_json::to_string(&events.items).unwrap()
}

async fn put_keys(client: &Client, ns: &str, access: &str, secret: &str, endpoint: &str) {
    let keys: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3-keys"},
        "stringData": {"accessKeyId": access, "secretAccessKey": secret, "endpoint": endpoint},
    }))
    .unwrap();
    let params = PatchParams::apply("serving-test").force();
    Api::<Secret>::namespaced(client.clone(), ns).patch("s3-keys", &params, &Patch::Apply(&keys)).await.unwrap();
}

/// A pod Ready whose API does not answer yet is tried on the backoff schedule (5, 10, 20 s …),
/// not on every pass the operator's own writes trigger: an API that comes up about 30 s after
/// the objects is tried at most 4 times in all and serves within 10 s of coming up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_comes_up_late_is_tried_on_the_backoff_schedule() {
    clients_installed();
    let (client, ns) = setup("serve-late").await;
    let dir = tempfile::tempdir().unwrap();
    let (api_port, nfs_port, smb_port) = (free_port(), free_port(), free_port());
    let operator = start_operator(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr(api_port, nfs_port, smb_port, "")))
        .await
        .unwrap();
    let sts = eventually("StatefulSet", DEADLINE, || async {
        Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns)
            .get_opt("demo")
            .await
            .ok()
            .flatten()
    })
    .await;
    let objects_at = tokio::time::Instant::now();
    // The pod is Ready at once (its probe would not be, but a Ready pod whose API does not
    // answer is the case under test): the burst of passes after the create makes one attempt.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod_from_template(&sts)).await.unwrap();
    set_pod_ready(&client, &ns, "demo-0", true).await;
    let unreachable = wait_condition(&client, &ns, "Serving", "False", "ApiUnreachable").await;
    assert!(unreachable.message.contains(&format!("127.0.0.1:{api_port}")), "{}", unreachable.message);
    tokio::time::sleep_until(objects_at + Duration::from_secs(3)).await;
    assert_eq!(operator.ctx.http.counts.snapshot(), (1, 0), "attempts within the first 3 s");

    // dfs starts 28 s after the objects (about 29 s when its API answers).
    tokio::time::sleep_until(objects_at + Duration::from_secs(28)).await;
    let failed_attempts = operator.ctx.http.counts.snapshot().0;
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    let up_at = tokio::time::Instant::now();
    wait_serving(&client, &ns, "Exports /export").await;
    let served_after = up_at.elapsed();
    eprintln!(
        "late API: {failed_attempts} failed attempts before dfs started at 28 s; served {served_after:?} after its API answered, {:?} after the objects",
        objects_at.elapsed()
    );
    assert!(failed_attempts <= 3, "{failed_attempts} failed attempts in 28 s (5 s doubling: at 0, 5 and 15 s)");
    assert!(served_after <= Duration::from_secs(10), "served {served_after:?} after the API came up");
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

/// A DittoFS API that sends its headers and then nothing: the request deadline covers the body,
/// so the call ends at it (`ApiUnreachable`, said within seconds), and with a single worker
/// another DittoServer created meanwhile gets its objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_hangs_after_its_headers_holds_no_worker() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, ns) = setup("serve-hung").await;
    let api_port = fake_api(|mut socket| async move {
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{").await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(socket);
    })
    .await;
    let mut settings = Settings::for_tests(Some(ns.to_string()));
    settings.dittofs_api = Some(LOCAL_API.into());
    settings.dittofs_api_timeout = Duration::from_secs(2);
    settings.concurrency = 1;
    let operator = Operator::start_with(&client, settings);
    let servers = Api::<DittoServer>::namespaced(client.clone(), &ns);
    // The fake speaks plain HTTP: the spec says so (HTTPS is the default).
    let plain = plain_http(&cr(api_port, free_port(), free_port(), ""), api_port);
    servers.create(&PostParams::default(), &server(&ns, &plain)).await.unwrap();
    let statefulsets = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns);
    let sts = eventually("StatefulSet", DEADLINE, || async { statefulsets.get_opt("demo").await.ok().flatten() }).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod_from_template(&sts)).await.unwrap();
    set_pod_ready(&client, &ns, "demo-0", true).await;
    let unreachable = wait_condition(&client, &ns, "Serving", "False", "ApiUnreachable").await;
    assert!(unreachable.message.contains("no complete answer in 2s"), "{}", unreachable.message);

    // The one worker is free: another server's objects land while the hung one is retried.
    let other = cr(free_port(), free_port(), free_port(), "").replace("{name: demo}", "{name: other}");
    servers.create(&PostParams::default(), &server(&ns, &other)).await.unwrap();
    eventually("the other server's StatefulSet", DEADLINE, || async {
        statefulsets.get_opt("other").await.ok().flatten()
    })
    .await;
    assert!(operator.ctx.metrics.oldest_in_flight().is_none_or(|running| running < Duration::from_secs(10)));
    operator.shutdown().await;
}

/// A DittoFS API that accepts the connection and never answers is waited for off the reconcile
/// workers. With a single worker and a request deadline far longer than the test, the server
/// says `Connecting` while its API call hangs, and another DittoServer created meanwhile gets
/// its objects: the call is still open when they land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_never_answers_is_waited_for_off_the_workers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let (client, ns) = setup("serve-silent").await;
    // Requests received and never answered, whose connection is still open.
    let hanging = Arc::new(AtomicUsize::new(0));
    let counted = hanging.clone();
    let api_port = fake_api(move |mut socket| {
        let counted = counted.clone();
        async move {
            let mut request = [0u8; 4096];
            if socket.read(&mut request).await.unwrap_or(0) > 0 {
                counted.fetch_add(1, Ordering::SeqCst);
                // Read until the client gives up (it closes the connection).
                while socket.read(&mut request).await.unwrap_or(0) > 0 {}
                counted.fetch_sub(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let mut settings = Settings::for_tests(Some(ns.to_string()));
    settings.dittofs_api = Some(LOCAL_API.into());
    settings.dittofs_api_timeout = Duration::from_secs(3600);
    settings.concurrency = 1;
    let operator = Operator::start_with(&client, settings);
    let servers = Api::<DittoServer>::namespaced(client.clone(), &ns);
    let plain = plain_http(&cr(api_port, free_port(), free_port(), ""), api_port);
    servers.create(&PostParams::default(), &server(&ns, &plain)).await.unwrap();
    let statefulsets = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns);
    let sts = eventually("StatefulSet", DEADLINE, || async { statefulsets.get_opt("demo").await.ok().flatten() }).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod_from_template(&sts)).await.unwrap();
    set_pod_ready(&client, &ns, "demo-0", true).await;
    let connecting = wait_condition(&client, &ns, "Serving", "False", "Connecting").await;
    assert!(connecting.message.contains("reaching DittoFS's API"), "{}", connecting.message);
    eventually("the API call", DEADLINE, || async { (hanging.load(Ordering::SeqCst) > 0).then_some(()) }).await;

    // The one worker is free: another server's objects land while the call hangs.
    let other = cr(free_port(), free_port(), free_port(), "").replace("{name: demo}", "{name: other}");
    servers.create(&PostParams::default(), &server(&ns, &other)).await.unwrap();
    eventually("the other server's StatefulSet", DEADLINE, || async {
        statefulsets.get_opt("other").await.ok().flatten()
    })
    .await;
    assert!(hanging.load(Ordering::SeqCst) > 0, "the API call ended before the other server's objects landed");
    assert_eq!(condition(&client, &ns, "demo", "Serving").await.map(|c| c.reason).as_deref(), Some("Connecting"));
    assert!(operator.ctx.metrics.oldest_in_flight().is_none_or(|running| running < Duration::from_secs(10)));
    operator.shutdown().await;
}

/// With one runtime task at a time, a second server waits its turn by key (saying `Connecting`)
/// and the end of the first one's task wakes it: both try their API and say `ApiUnreachable`
/// well before any timed requeue (30 s) would have brought the second one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_waiting_for_a_runtime_task_is_woken_when_one_ends() {
    use tokio::io::AsyncReadExt;
    let (client, ns) = setup("serve-turns").await;
    let api_port = fake_api(|mut socket| async move {
        let mut request = [0u8; 4096];
        while socket.read(&mut request).await.unwrap_or(0) > 0 {}
    })
    .await;
    let mut settings = Settings::for_tests(Some(ns.to_string()));
    settings.dittofs_api = Some(LOCAL_API.into());
    settings.dittofs_api_timeout = Duration::from_secs(3);
    settings.dittofs_api_tasks = 1;
    let operator = Operator::start_with(&client, settings);
    let servers = Api::<DittoServer>::namespaced(client.clone(), &ns);
    let statefulsets = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    for name in ["demo", "second"] {
        let plain = plain_http(&cr(api_port, free_port(), free_port(), ""), api_port)
            .replace("{name: demo}", &format!("{{name: {name}}}"));
        servers.create(&PostParams::default(), &server(&ns, &plain)).await.unwrap();
    }
    for name in ["demo", "second"] {
        let sts =
            eventually("StatefulSet", DEADLINE, || async { statefulsets.get_opt(name).await.ok().flatten() }).await;
        pods.create(&PostParams::default(), &pod_from_template(&sts)).await.unwrap();
    }
    set_pod_ready(&client, &ns, "demo-0", true).await;
    set_pod_ready(&client, &ns, "second-0", true).await;
    let started = tokio::time::Instant::now();
    for name in ["demo", "second"] {
        eventually(&format!("{name}: Serving=False ApiUnreachable"), DEADLINE, || async {
            condition(&client, &ns, name, "Serving").await.filter(|c| c.reason == "ApiUnreachable")
        })
        .await;
    }
    // Two tries of 3 s one after the other, and no 30 s requeue in between.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_remote_store_holds_the_blocks_with_keys_from_a_secret() {
    clients_installed();
    let (client, ns) = setup("serve-s3").await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = start_script_server("s3.sh", &dir.path().join("s3"));
    let (api_port, nfs_port, smb_port) = (free_port(), free_port(), free_port());

    // Wrong keys first: the condition names the store, with the server's words and no key.
    let wrong_secret = "wrong-secret-key-not-in-any-message";
    put_keys(&client, &ns, "WRONGACCESSKEY", wrong_secret, &s3["S3_ENDPOINT"]).await;
    let spec = format!(
        "  storage: {{metadataSize: 10Gi, cacheSize: 10Gi}}\n  s3:\n    bucket: {}\n    prefix: ditto/\n    forcePathStyle: true\n    allowPrivateEndpoint: true\n    credentialsSecretRef: {{secretName: s3-keys}}\n",
        s3["S3_BUCKET"]
    );
    let yaml =
        cr(api_port, nfs_port, smb_port, "").replace("  storage: {metadataSize: 10Gi, contentSize: 10Gi}\n", &spec);
    let operator = start_operator(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &yaml))
        .await
        .unwrap();
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    poke(&client, &ns).await;
    // DittoFS keeps a store whose keys it cannot use, and reports it unhealthy.
    let unhealthy = wait_condition(&client, &ns, "Serving", "False", "StoreUnhealthy").await;
    assert!(unhealthy.message.starts_with("remote block store s3 is unhealthy: "), "{}", unhealthy.message);
    assert!(!unhealthy.message.contains(wrong_secret), "{}", unhealthy.message);
    assert!(!events_text(&client, &ns).await.contains(wrong_secret), "a key in an Event");

    // The right keys (the Secret changes; the operator watches it): the store's row is updated
    // and the pod restarted (DittoFS loads keys at start), which the test plays by restarting dfs.
    put_keys(&client, &ns, &s3["S3_ACCESS_KEY"], &s3["S3_SECRET_KEY"], &s3["S3_ENDPOINT"]).await;
    let admin = AdminApi::of(&client, &ns, dir.path(), api_port).await;
    eventually("the store to hold the right access key", SERVE_DEADLINE, || async {
        let config = remote_store_config(&admin);
        (config["access_key_id"] == s3["S3_ACCESS_KEY"].as_str()).then_some(())
    })
    .await;
    let dfs = dfs.restart(dir.path()).await;
    poke(&client, &ns).await;
    wait_serving(&client, &ns, "Exports /export over").await;

    // A file written over NFS ends up as objects in the bucket.
    let content: Vec<u8> =
        (0..(6u32 << 20) / 4).map(|i| i.wrapping_mul(2_654_435_761)).flat_map(|i| i.to_le_bytes()).collect();
    nfs_write_and_read(dir.path(), nfs_port, "/export", "big.bin", &content);
    let bucket_dir = format!("/buckets/{}/ditto", s3["S3_BUCKET"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let stored = bytes_under(&s3["S3_FILER"], &bucket_dir).await;
        if stored >= content.len() as u64 / 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {stored} bytes in the bucket; dfs log:\n{}", dfs.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Rotation: new keys in the Secret update the store (and restart the pod, which the test
    // plays by restarting dfs); the file is still there.
    put_keys(&client, &ns, &s3["S3_ACCESS_KEY_2"], &s3["S3_SECRET_KEY_2"], &s3["S3_ENDPOINT"]).await;
    eventually("the store to hold the new access key", SERVE_DEADLINE, || async {
        let config = remote_store_config(&admin);
        (config["access_key_id"] == s3["S3_ACCESS_KEY_2"].as_str()).then_some(())
    })
    .await;
    let secret = remote_store_config(&admin)["secret_access_key"].clone();
    assert_eq!(secret, "********", "DittoFS masks the key on reads");
    let dfs = dfs.restart(dir.path()).await;
    assert_eq!(nfs_read(dir.path(), nfs_port, "/export", "big.bin"), content, "{}", dfs.log());
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_metadata_on_the_tls_postgresql_survives_a_restart() {
    clients_installed();
    let (client, ns) = setup("serve-pg").await;
    let dir = tempfile::tempdir().unwrap();
    let pg = start_script_server("postgres.sh", &dir.path().join("pg"));
    let db: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"host": pg["PGHOST"], "port": pg["PGPORT"], "dbname": "dittofs", "user": "dittofs", "password": pg["PGPASSWORD"]},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &db).await.unwrap();

    let (api_port, nfs_port, smb_port) = (free_port(), free_port(), free_port());
    let extra = "  database:\n    postgresSecretRef: {name: db}\n  stores:\n    metadata: {type: postgres}\n";
    // The API on plain HTTP, asked for: it serves, and Serving says what that costs.
    let yaml = plain_http(&cr(api_port, nfs_port, smb_port, extra), api_port);
    let operator = start_operator(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &yaml))
        .await
        .unwrap();
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    poke(&client, &ns).await;
    let serving = wait_serving(&client, &ns, "Exports /export over").await;
    assert!(serving.message.ends_with("travel in clear"), "{}", serving.message);
    assert!(Api::<Secret>::namespaced(client.clone(), &ns).get_opt("demo-api-tls").await.unwrap().is_none());
    nfs_write_and_read(dir.path(), nfs_port, "/export", "notes.txt", b"metadata lives in PostgreSQL\n");

    // The file's metadata is in the second database (over TLS), and the password never left its Secret.
    let (count, stderr) = public_tables(&pg, "dittofs_metadata");
    assert!(count > 0, "no metadata tables: {stderr}");
    let status =
        serde_json::to_string(&Api::<DittoServer>::namespaced(client.clone(), &ns).get("demo").await.unwrap()).unwrap();
    assert!(!status.contains(&pg["PGPASSWORD"]));
    assert!(!events_text(&client, &ns).await.contains(&pg["PGPASSWORD"]));

    let dfs = dfs.restart(dir.path()).await;
    assert_eq!(
        nfs_read(dir.path(), nfs_port, "/export", "notes.txt"),
        b"metadata lives in PostgreSQL\n",
        "{}",
        dfs.log()
    );
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_and_a_refused_login_are_named_without_a_crash() {
    let (client, ns) = setup("serve-fail").await;
    let dir = tempfile::tempdir().unwrap();
    let (api_port, nfs_port) = (free_port(), free_port());
    // Another process holds the SMB port the spec asks for.
    let squatter = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let smb_port = squatter.local_addr().unwrap().port();
    let operator = start_operator(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr(api_port, nfs_port, smb_port, "")))
        .await
        .unwrap();
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    poke(&client, &ns).await;
    let busy = eventually("Serving names the SMB adapter", SERVE_DEADLINE, || async {
        let c = condition(&client, &ns, "demo", "Serving").await?;
        (c.status == "False" && c.message.contains("adapter smb")).then_some(c)
    })
    .await;
    assert!(
        ["AdapterNotRunning", "AdapterRejected"].contains(&busy.reason.as_str()),
        "{}: {}\n{}",
        busy.reason,
        busy.message,
        dfs.log()
    );
    assert!(busy.message.contains(&smb_port.to_string()), "{}", busy.message);
    // The port frees up: the next pass (the operator retries on its own) brings SMB up.
    drop(squatter);
    let serving = wait_condition(&client, &ns, "Serving", "True", "Serving").await;
    assert!(serving.message.contains(&format!("SMB on port {smb_port}")), "{}", serving.message);

    // Credentials the server no longer accepts: both the operator's own and the bootstrap admin's.
    operator.shutdown().await;
    let pod_uid = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns)
        .get("demo-0")
        .await
        .unwrap()
        .metadata
        .uid;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let wrong = json!({"stringData": {"password": "not-the-password-anymore"}});
    for name in ["demo-operator-credentials", "demo-admin-bootstrap-credentials"] {
        secrets.patch(name, &PatchParams::default(), &Patch::Merge(&wrong)).await.unwrap();
    }
    let operator = start_operator(&client, &ns);
    poke(&client, &ns).await;
    let refused = wait_condition(&client, &ns, "Serving", "False", "LoginRefused").await;
    assert!(refused.message.contains("demo-admin-bootstrap-credentials"), "{}", refused.message);
    assert!(!refused.message.contains("not-the-password-anymore"), "{}", refused.message);
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns);
    let uids: Vec<_> =
        pods.list(&Default::default()).await.unwrap().items.into_iter().map(|p| p.metadata.uid).collect();
    assert_eq!(uids, [pod_uid], "nothing restarted or created");
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

/// A CA, a server certificate for 127.0.0.1 and the API Service's name, and a client
/// certificate, all PEM (openssl).
fn certificates(dir: &Path, service_host: &str) -> BTreeMap<&'static str, String> {
    let d = dir.join("pki");
    std::fs::create_dir_all(&d).unwrap();
    let ssl = |args: &[&str]| run("openssl", args);
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dittofs-test-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]);
    for (name, usage, san) in [
        ("server", "serverAuth", format!("IP:127.0.0.1,DNS:{service_host}")),
        ("client", "clientAuth", "DNS:dittofs-operator".to_string()),
    ] {
        std::fs::write(d.join(format!("{name}.ext")), format!("subjectAltName={san}\nextendedKeyUsage={usage}\n"))
            .unwrap();
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &p(&format!("{name}.key")),
            "-out",
            &p(&format!("{name}.csr")),
        ]);
        ssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p(&format!("{name}.ext")),
            "-out",
            &p(&format!("{name}.crt")),
        ]);
    }
    ["ca.crt", "server.crt", "server.key", "client.crt", "client.key"]
        .into_iter()
        .map(|f| (f, std::fs::read_to_string(d.join(f)).unwrap()))
        .collect()
}

/// curl's exit code for an HTTPS GET of `/health` with the given extra args.
fn curl_health(api_port: u16, args: &[&str]) -> i32 {
    let url = format!("https://127.0.0.1:{api_port}/health");
    let mut all = vec!["-sS", "-o", "/dev/null", "--max-time", "5", "--fail"];
    all.extend_from_slice(args);
    all.push(&url);
    Command::new("curl").args(&all).status().unwrap().code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_https_with_client_certificates() {
    clients_installed();
    let (client, ns) = setup("serve-tls").await;
    let dir = tempfile::tempdir().unwrap();
    let (api_port, nfs_port, smb_port) = (free_port(), free_port(), free_port());
    let extra = "  shares: [{name: /export}]\n";
    let yaml = cr(api_port, nfs_port, smb_port, extra).replace(
        &format!("  controlPlane: {{port: {api_port}}}\n"),
        &format!("  controlPlane: {{port: {api_port}, tls: true, certSecretName: api-tls, clientCASecretName: api-clients}}\n"),
    );
    let operator = start_operator(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &yaml))
        .await
        .unwrap();

    // The certificate Secret does not exist yet: named on the CR, nothing attempted.
    let missing = wait_condition(&client, &ns, "Serving", "False", "TlsSecretInvalid").await;
    assert!(missing.message.starts_with("spec.controlPlane.certSecretName: Secret api-tls"), "{}", missing.message);

    let pem = certificates(dir.path(), &format!("demo-api.{ns}.svc"));
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    for (name, data) in [
        ("api-tls", json!({"tls.crt": pem["server.crt"], "tls.key": pem["server.key"], "ca.crt": pem["ca.crt"]})),
        ("api-clients", json!({"ca.crt": pem["ca.crt"], "tls.crt": pem["client.crt"], "tls.key": pem["client.key"]})),
    ] {
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }

    // dfs serves its API over HTTPS from the mounted Secret, requiring client certificates; the
    // operator's runtime step reaches it with the client certificate and sets up the share.
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    poke(&client, &ns).await;
    wait_serving(&client, &ns, "Exports /export over").await;
    let ca = dir.path().join("pki/ca.crt");
    let (cert, key) = (dir.path().join("pki/client.crt"), dir.path().join("pki/client.key"));
    let ca = ca.to_str().unwrap();
    assert_eq!(
        curl_health(api_port, &["--cacert", ca, "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]),
        0
    );
    assert_ne!(curl_health(api_port, &["--cacert", ca]), 0, "no client certificate, no answer\n{}", dfs.log());
    let plain = http(&format!("127.0.0.1:{api_port}"), "GET", "/health", None).await;
    assert!(!matches!(plain, Ok((200, _))), "plain HTTP is not served: {plain:?}");

    // The pod as rendered: HTTPS config, the Secrets mounted, TCP probes (HTTP probes cannot
    // present a client certificate).
    let sts =
        Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns).get("demo").await.unwrap();
    let container = sts.spec.unwrap().template.spec.unwrap().containers.remove(0);
    assert!(container.readiness_probe.unwrap().tcp_socket.is_some());
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

/// Runs a client that is expected to fail; returns what it said.
fn refused(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{program} {args:?} succeeded: {said}");
    said
}

fn smb_as(port: u16, user: &str, password: &str, command: &str) -> Vec<String> {
    vec![
        "//127.0.0.1/export".into(),
        "-p".into(),
        port.to_string(),
        "-U".into(),
        format!("{user}%{password}"),
        "-c".into(),
        command.into(),
    ]
}

/// `/export/<file>` as uid and gid over NFS; `""` names the share itself.
fn nfs_as(port: u16, uid: u32, gid: u32, file: &str) -> String {
    let path = if file.is_empty() { "/export".to_string() } else { format!("/export/{file}") };
    format!("nfs://127.0.0.1{path}?nfsport={port}&mountport={port}&version=3&uid={uid}&gid={gid}")
}

async fn put_passwords(client: &Client, ns: &str, alice: &str, bob: &str) {
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "users"}, "stringData": {"alice": alice, "bob": bob}}))
            .unwrap();
    let params = PatchParams::apply("serving-test").force();
    Api::<Secret>::namespaced(client.clone(), ns).patch("users", &params, &Patch::Apply(&secret)).await.unwrap();
}

const ACCESS: &str = "  nfs: {portmapper: false}
  groups: [{name: readers, gid: 3000}]
  users:
    - {name: alice, uid: 1001, gid: 1001, passwordSecretRef: {name: users, key: alice}}
    - {name: bob, uid: 1002, gid: 3000, groups: [readers], passwordSecretRef: {name: users, key: bob}}
  shares:
    - name: /export
      defaultPermission: none
      quota: 2Mi
      permissions:
        - {user: alice, level: read-write}
        - {group: readers, level: read}
";

/// Users, groups, grants and a quota declared in the CR, used by real clients: alice writes over
/// SMB with her own password and over NFS with her uid; bob, in a read-only group, reads and
/// cannot write either way; the quota stops a write; a rotated password is set; a user taken out
/// of the spec stays (and `diff` names it) until `deleteUsers` lists it. No password shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_users_groups_permissions_and_a_quota_hold_over_smb_and_nfs() {
    clients_installed();
    let (client, ns) = setup("access").await;
    let dir = tempfile::tempdir().unwrap();
    let (api_port, nfs_port, smb_port) = (free_port(), free_port(), free_port());
    let (alice_pw, bob_pw) = ("alice-first-password-1", "bob-only-reads-password-2");
    put_passwords(&client, &ns, alice_pw, bob_pw).await;
    let operator = start_operator(&client, &ns);
    let api = Api::<DittoServer>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &server(&ns, &cr(api_port, nfs_port, smb_port, ACCESS))).await.unwrap();
    let dfs = run_rendered_server(&client, &ns, "demo", dir.path(), api_port).await;
    poke(&client, &ns).await;
    wait_condition(&client, &ns, "Serving", "True", "Serving").await;
    let runtime = api.get("demo").await.unwrap().status.unwrap().runtime.unwrap();
    assert_eq!(
        (&runtime.users, &runtime.groups),
        (&vec!["alice".to_string(), "bob".into()], &vec!["readers".to_string()])
    );
    assert_eq!(runtime.quotas.len(), 1, "{:?}", runtime.quotas);
    assert_eq!((runtime.quotas[0].share.as_str(), runtime.quotas[0].quota.as_str()), ("/export", "2.00MiB"));

    // alice: read-write, over SMB with her password and over NFS with her uid.
    let one_mib: Vec<u8> = content_of(1 << 20, 7);
    std::fs::write(dir.path().join("a.bin"), &one_mib).unwrap();
    let put = format!("put {} a.bin", dir.path().join("a.bin").display());
    let smb = |user: &str, password: &str, command: &str| smb_as(smb_port, user, password, command);
    run("smbclient", &smb("alice", alice_pw, &put).iter().map(String::as_str).collect::<Vec<_>>());
    let half = dir.path().join("half.bin");
    std::fs::write(&half, &one_mib[..512 * 1024]).unwrap();
    run("nfs-cp", &[half.to_str().unwrap(), &nfs_as(nfs_port, 1001, 1001, "half.bin")]);

    // bob (group readers: read): reads both ways, writes neither way.
    let got = dir.path().join("a.bob");
    let get = format!("get a.bin {}", got.display());
    run("smbclient", &smb("bob", bob_pw, &get).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(std::fs::read(&got).unwrap(), one_mib, "bob reads alice's file over SMB");
    let said = refused(
        "smbclient",
        &smb("bob", bob_pw, &format!("put {} b.bin", dir.path().join("a.bin").display()))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(said.contains("NT_STATUS_ACCESS_DENIED") || said.contains("NT_STATUS_MEDIA_WRITE_PROTECTED"), "{said}");
    // Over NFS the file's own mode applies too: alice's SMB file is readable by others.
    let back = dir.path().join("a.nfs-bob");
    run("nfs-cp", &[&nfs_as(nfs_port, 1002, 3000, "a.bin"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), one_mib, "bob reads over NFS");
    refused("nfs-cp", &[half.to_str().unwrap(), &nfs_as(nfs_port, 1002, 3000, "bob.bin")]);
    // An unknown uid gets the share's default: none. (alice's uid lists it.)
    let said = refused("nfs-ls", &[&nfs_as(nfs_port, 4242, 4242, "")]);
    assert!(said.contains("ACCES") || said.contains("PERM"), "{said}");
    run("nfs-ls", &[&nfs_as(nfs_port, 1001, 1001, "")]);

    // The quota (2 MiB, 1.5 MiB used): another MiB is refused over NFS and over SMB.
    refused("nfs-cp", &[dir.path().join("a.bin").to_str().unwrap(), &nfs_as(nfs_port, 1001, 1001, "over.bin")]);
    refused(
        "smbclient",
        &smb("alice", alice_pw, &format!("put {} over2.bin", dir.path().join("a.bin").display()))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    // A user quota: alice owns 1.5 MiB, so with 1 MiB for her a small write is refused though the
    // share has room; lifted, it goes through.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, &one_mib[..64 * 1024]).unwrap();
    let alice_quota = json!({"spec": {"shares": [{"name": "/export", "defaultPermission": "none", "quota": "2Mi",
        "quotas": [{"user": "alice", "limit": "1Mi"}],
        "permissions": [{"user": "alice", "level": "read-write"}, {"group": "readers", "level": "read"}]}]}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&alice_quota)).await.unwrap();
    let admin = AdminApi::of(&client, &ns, dir.path(), api_port).await;
    eventually("alice's quota in DittoFS", SERVE_DEADLINE, || async {
        let (_, rows) = admin.call("GET", "/api/v1/shares/export/quotas", None);
        rows.as_array().is_some_and(|r| r.iter().any(|q| q["identity_id"] == 1001)).then_some(())
    })
    .await;
    refused("nfs-cp", &[small.to_str().unwrap(), &nfs_as(nfs_port, 1001, 1001, "small.bin")]);
    let put_small = format!("put {} small-smb.bin", small.display());
    refused("smbclient", &smb("alice", alice_pw, &put_small).iter().map(String::as_str).collect::<Vec<_>>());
    let lifted = json!({"spec": {"shares": [{"name": "/export", "defaultPermission": "none", "quota": "2Mi", "quotas": [],
        "permissions": [{"user": "alice", "level": "read-write"}, {"group": "readers", "level": "read"}]}]}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&lifted)).await.unwrap();
    eventually("alice's quota lifted", SERVE_DEADLINE, || async {
        let (_, rows) = admin.call("GET", "/api/v1/shares/export/quotas", None);
        rows.as_array().is_none_or(|r| r.is_empty()).then_some(())
    })
    .await;
    run("nfs-cp", &[small.to_str().unwrap(), &nfs_as(nfs_port, 1001, 1001, "small-again.bin")]);

    // Allowed clients: only 192.0.2.1 may mount, so this machine is refused; then it is allowed.
    let clients = |allowed: &str| {
        json!({"spec": {"shares": [{"name": "/export", "defaultPermission": "none", "quota": "2Mi",
            "nfs": {"allowedClients": [allowed]},
            "permissions": [{"user": "alice", "level": "read-write"}, {"group": "readers", "level": "read"}]}]}})
    };
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&clients("192.0.2.1"))).await.unwrap();
    let said = eventually("this machine refused by the share's allowed clients", SERVE_DEADLINE, || async {
        let out = Command::new("nfs-ls").arg(nfs_as(nfs_port, 1001, 1001, "")).output().unwrap();
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await;
    assert!(said.contains("MNT3ERR_ACCES"), "{said}");
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&clients("127.0.0.1"))).await.unwrap();
    eventually("this machine allowed", SERVE_DEADLINE, || async {
        let out = Command::new("nfs-ls").arg(nfs_as(nfs_port, 1001, 1001, "")).output().unwrap();
        out.status.success().then_some(())
    })
    .await;

    // A rotated password: the new one logs in, the old one no longer does.
    let alice_new = "alice-rotated-password-3";
    put_passwords(&client, &ns, alice_new, bob_pw).await;
    let ls = |user: &str, password: &str| smb(user, password, "ls");
    eventually("alice's new password accepted", SERVE_DEADLINE, || async {
        let args = ls("alice", alice_new);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Command::new("smbclient").args(&args).output().unwrap().status.success().then_some(())
    })
    .await;
    refused("smbclient", &ls("alice", alice_pw).iter().map(String::as_str).collect::<Vec<_>>());

    // bob out of the spec: kept, named by diff; then listed for deletion: gone.
    let without_bob = json!({"spec": {
        "users": [{"name": "alice", "uid": 1001, "gid": 1001, "passwordSecretRef": {"name": "users", "key": "alice"}}],
        "shares": [{"name": "/export", "defaultPermission": "none", "quota": "2Mi",
                    "permissions": [{"user": "alice", "level": "read-write"}, {"group": "readers", "level": "read"}]}]}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&without_bob)).await.unwrap();
    eventually("bob no longer in status.runtime.users", SERVE_DEADLINE, || async {
        let users = api.get("demo").await.ok()?.status?.runtime?.users;
        (users == ["alice"]).then_some(())
    })
    .await;
    assert_eq!(admin.call("GET", "/api/v1/users/bob", None).0, 200, "bob is kept");
    let preview = diff::preview(&client, &diff_args(&ns)).await.unwrap();
    assert!(preview.runtime.is_empty(), "{:?}", preview.runtime);
    assert_eq!(preview.kept, ["user bob is in DittoFS but not in spec.users: kept (spec.deleteUsers deletes it)"]);
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"deleteUsers": ["bob"]}})))
        .await
        .unwrap();
    eventually("bob deleted", SERVE_DEADLINE, || async {
        (admin.call("GET", "/api/v1/users/bob", None).0 == 404).then_some(())
    })
    .await;

    // No password anywhere a user reads.
    let status = serde_json::to_string(&api.get("demo").await.unwrap().status).unwrap();
    let events = events_text(&client, &ns).await;
    for password in [alice_pw, alice_new, bob_pw] {
        assert!(!status.contains(password) && !events.contains(password), "a password shows");
    }
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

fn content_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}
