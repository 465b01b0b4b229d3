//! The operator's memory does not grow with what it does not manage: 500 Secrets of 512 KiB
//! (Helm release Secrets are like this) in its namespace. Every watch is metadata-only, so the
//! process holds names and labels, not 250 MiB of data. Nor with what anyone writes into
//! metadata: 2,000 ConfigMaps with a 200 KiB owner annotation (its value is what the cache
//! reads). Prints the figures; holds the bound.

mod support;

use std::collections::BTreeMap;

use dittofs_operator::crd::DittoServer;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use support::*;

const SECRETS: usize = 500;
const SECRET_BYTES: usize = 512 * 1024;
/// The bound the issue sets for this cluster; the debug build runs here.
const RSS_BOUND_KIB: u64 = 64 * 1024;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Creates `count` objects made by `object`, eight at a time.
async fn create_all<K>(api: &Api<K>, count: usize, object: impl Fn(usize) -> K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(0..count)
        .map(|i| {
            let made = object(i);
            async move { api.create(&PostParams::default(), &made).await.expect("create") }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// Starts the operator binary on `ns`, creates DittoServer `demo`, waits for its StatefulSet and
/// returns the process's peak RSS in KiB.
async fn peak_rss_of_a_run(client: &kube::Client, ns: &str) -> u64 {
    let addr = format!("127.0.0.1:{}", free_port());
    let operator = operator_binary(ns, &addr);
    eventually("/readyz 200", DEADLINE, || async {
        (http(&addr, "GET", "/readyz", None).await.ok()?.0 == 200).then_some(())
    })
    .await;
    Api::<DittoServer>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &server(ns, "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n"))
        .await
        .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually("StatefulSet applied", DEADLINE, || async { sts.get_opt("demo").await.ok().flatten() }).await;
    // Every watch has listed what it watches (the objects above included) before the peak is read.
    eventually("every watch listed", DEADLINE, || async {
        let (_, body) = http(&addr, "GET", "/metrics", None).await.ok()?;
        body.lines().any(|l| l == "dittofs_operator_watches_listing 0").then_some(())
    })
    .await;
    peak_rss_kib(operator.0.id())
}

const CONFIG_MAPS: usize = 2000;
const ANNOTATION_BYTES: usize = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_beside_many_objects_with_large_owner_annotations() {
    let (client, ns) = setup("memory-annotations").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let started = std::time::Instant::now();
    create_all(&config_maps, CONFIG_MAPS, |i| {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("inflated-{i}"));
        let value: String = (0..ANNOTATION_BYTES).map(|b| (b'a' + ((b + i) % 26) as u8) as char).collect();
        cm.metadata.annotations = Some(BTreeMap::from([("dittofs.dittofs.com/owner-uid".to_string(), value)]));
        cm
    })
    .await;
    eprintln!(
        "{CONFIG_MAPS} ConfigMaps with {} KiB annotations created in {:?}",
        ANNOTATION_BYTES / 1024,
        started.elapsed()
    );
    let peak = peak_rss_of_a_run(&client, &ns).await;
    eprintln!(
        "operator peak RSS beside {CONFIG_MAPS} objects with 200 KiB owner annotations: {} MiB (bound {} MiB)",
        peak / 1024,
        RSS_BOUND_KIB / 1024
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB over {RSS_BOUND_KIB} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_beside_many_large_secrets() {
    let (client, ns) = setup("memory").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let started = std::time::Instant::now();
    create_all(&secrets, SECRETS, |i| {
        let mut secret = Secret::default();
        secret.metadata.name = Some(format!("release-{i}"));
        let payload: Vec<u8> = (0..SECRET_BYTES).map(|b| (b * 31 + i) as u8).collect();
        secret.data = Some(BTreeMap::from([("release".to_string(), ByteString(payload))]));
        secret
    })
    .await;
    eprintln!("{SECRETS} Secrets of {} KiB created in {:?}", SECRET_BYTES / 1024, started.elapsed());

    let peak = peak_rss_of_a_run(&client, &ns).await;
    eprintln!(
        "operator peak RSS beside {SECRETS} Secrets of 512 KiB: {} MiB (bound {} MiB)",
        peak / 1024,
        RSS_BOUND_KIB / 1024
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB over {RSS_BOUND_KIB} KiB");
}
