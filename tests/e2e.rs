//! End to end on the `full` tier (controller-manager, scheduler, kwok): a sample reaches
//! Ready with its pod Ready; a deleted pod is gone within its grace period and replaced;
//! replicas 0 stops it (phase Stopped) and 1 brings it back; deleting the DittoServer garbage-collects what it owned and keeps the data.

mod support;

use std::collections::BTreeMap;

use dittofs_operator::crd::{DittoServer, Phase};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_runs_ready_and_deletion_keeps_the_data() {
    let client = client_of(cluster_tier("full")).await;
    install_crd(&client).await;
    let ns = namespace(&client, "e2e", &[]).await;
    volumes_for(&client, &ns, &["controlplane-demo-0", "metadata-demo-0"]).await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/samples/minimal-sqlite.yaml"),
    )
    .unwrap();
    servers.create(&PostParams::default(), &server(&ns, &sample)).await.unwrap();

    let status = eventually("Ready=True and Running", std::time::Duration::from_secs(90), || async {
        let status = servers.get("demo").await.ok()?.status?;
        let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && status.phase == Some(Phase::Running)).then_some(status)
    })
    .await;
    assert_eq!(status.ready_replicas, Some(1));
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).get("demo-0").await.unwrap();
    let pod_ready = pod
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(pod_ready, "the pod itself reports Ready");

    // Deleting the pod (default grace: the rendered terminationGracePeriodSeconds) completes
    // within that period, and the StatefulSet brings the server back.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let grace = pod.spec.as_ref().unwrap().termination_grace_period_seconds.expect("grace period rendered");
    let old_uid = pod.uid();
    let asked = std::time::Instant::now();
    pods.delete("demo-0", &DeleteParams::default()).await.unwrap();
    let grace_period = std::time::Duration::from_secs(grace as u64);
    eventually("the deleted pod is gone", grace_period, || async {
        let now = pods.get_opt("demo-0").await.ok()?;
        (now.and_then(|p| p.uid()) != old_uid).then_some(())
    })
    .await;
    eprintln!("pod deleted in {:?} (grace period {grace}s)", asked.elapsed());
    // Read together: the status may still show the old pod for a moment (Ready, then False while
    // the StatefulSet counts the new pod, then Ready again), so one read must hold all of it.
    eventually("replacement pod Ready and the DittoServer Ready again", std::time::Duration::from_secs(90), || async {
        let pod = pods.get_opt("demo-0").await.ok()??;
        let pod_ready = pod.status?.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        let has = |type_: &str, status: &str, reason: &str| {
            conditions.iter().any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
        };
        let ready = conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            && has("Available", "True", "MinimumReplicasAvailable")
            && has("Progressing", "False", "ReconcileComplete");
        (pod.metadata.uid != old_uid && pod_ready && ready).then_some(())
    })
    .await;

    // Stopping on purpose (replicas 0) and starting again, as the kubelet and controllers see it.
    let replicas = |n: i32| Patch::Merge(json!({"spec": {"replicas": n}}));
    servers.patch("demo", &PatchParams::default(), &replicas(0)).await.unwrap();
    eventually("phase Stopped, Available=True (Stopped), pod gone", std::time::Duration::from_secs(60), || async {
        let status = servers.get("demo").await.ok()?.status?;
        let stopped =
            status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True" && c.reason == "Stopped");
        let gone = pods.get_opt("demo-0").await.ok()?.is_none();
        (status.phase == Some(Phase::Stopped) && stopped && gone).then_some(())
    })
    .await;
    servers.patch("demo", &PatchParams::default(), &replicas(1)).await.unwrap();
    eventually("Running and Ready again", std::time::Duration::from_secs(90), || async {
        let status = servers.get("demo").await.ok()?.status?;
        let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && status.phase == Some(Phase::Running)).then_some(())
    })
    .await;

    servers.delete("demo", &DeleteParams::default()).await.unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    eventually("owned objects garbage-collected", std::time::Duration::from_secs(60), || async {
        let gone = sts.get_opt("demo").await.ok()?.is_none()
            && cms.get_opt("demo-config").await.ok()?.is_none()
            && svcs.list(&Default::default()).await.ok()?.items.is_empty();
        gone.then_some(())
    })
    .await;
    let pvcs: BTreeMap<String, PersistentVolumeClaim> = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    assert!(
        pvcs.contains_key("controlplane-demo-0") && pvcs.contains_key("metadata-demo-0"),
        "PVCs kept: {:?}",
        pvcs.keys()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    assert!(secrets.get_opt("demo-jwt-secret").await.unwrap().is_some(), "credentials kept with the data");
    assert!(secrets.get_opt("demo-admin-bootstrap-credentials").await.unwrap().is_some());
    operator.shutdown().await;
}
