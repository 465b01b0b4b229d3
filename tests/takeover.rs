//! Taking over a server the earlier Go operator created. Its StatefulSet selects
//! `app=dittofs-server,instance=<name>`, which is immutable, so the takeover re-creates the
//! StatefulSet (opt-in annotation), replaces the pod left by the old one, and must keep every
//! claim — so every file. Tier `full`: the garbage collector, the StatefulSet controller and
//! kwok's pods.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// One adapter Service of the earlier operator (`service_reconciler.go` at v0.29.0): labels
/// `app`, `instance`, `dittofs.io/adapter-service`, `dittofs.io/adapter-type`, a controller
/// reference to the DittoServer, the earlier pod's selector.
fn earlier_adapter_service(server: &DittoServer, adapter: &str) -> Service {
    let port = if adapter == "nfs" { 12049 } else { 12445 };
    serde_json::from_value(json!({
        "metadata": {"name": format!("files-adapter-{adapter}"),
            "labels": {"app": "dittofs-server", "instance": "files", "dittofs.io/adapter-service": "true",
                       "dittofs.io/adapter-type": adapter},
            "ownerReferences": [{"apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": "files",
                "uid": server.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"selector": {"app": "dittofs-server", "instance": "files"},
                 "ports": [{"name": format!("adapter-{adapter}"), "port": port, "targetPort": port, "protocol": "TCP"}]}
    }))
    .unwrap()
}

/// The StatefulSet of the earlier operator (v0.29.0): its selector and pod labels, claim
/// templates `metadata`, `content`, `controlplane`, and a controller reference to the DittoServer.
fn earlier_stateful_set(server: &DittoServer) -> StatefulSet {
    let claim = |name: &str| {
        json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
               "resources": {"requests": {"storage": "1Gi"}}}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": "files", "ownerReferences": [{
            "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": "files",
            "uid": server.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "replicas": 1,
            "serviceName": "files-headless",
            "selector": {"matchLabels": {"app": "dittofs-server", "instance": "files"}},
            "template": {
                "metadata": {"labels": {"app": "dittofs-server", "instance": "files"}},
                "spec": {"containers": [{"name": "dittofs", "image": "marmos91c/dittofs:v0.29.0",
                    "command": ["/app/dfs"], "args": ["start", "--foreground", "--config", "/config/config.yaml"],
                    "volumeMounts": [
                        {"name": "metadata", "mountPath": "/data/store/metadata"},
                        {"name": "content", "mountPath": "/data/store/block"},
                        {"name": "controlplane", "mountPath": "/data/controlplane"}]}]}
            },
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "volumeClaimTemplates": [claim("metadata"), claim("content"), claim("controlplane")]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_the_earlier_operator_is_taken_over_with_its_claims() {
    let client = client_of(cluster_tier("full")).await;
    install_crd(&client).await;
    let ns = namespace(&client, "takeover", &[]).await;
    let claim_names = ["metadata-files-0", "content-files-0", "controlplane-files-0"];
    volumes_for(&client, &ns, &claim_names).await;

    // What the earlier operator left running: its CR (accepted as is), its StatefulSet, its pod and claims.
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  image: marmos91c/dittofs:v0.29.0\n  storage: {metadataSize: 1Gi, contentSize: 1Gi}\n  shutdownTimeout: 5s\n";
    let created = servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    // Its generated Secrets (same names and keys as here): kept, never generated again.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, data) in [
        ("files-jwt-secret", json!({"jwt-secret": "an-earlier-operator-jwt-key-of-44-characters"})),
        ("files-admin-bootstrap-credentials", json!({"username": "admin", "password": "earlier-admin-pw"})),
    ] {
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let old = sts_api.create(&PostParams::default(), &earlier_stateful_set(&created)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let old_pod = eventually("the earlier operator's pod runs", DEADLINE, || async {
        let pod = pods.get_opt("files-0").await.ok()??;
        let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(pod)
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let bound = || async {
        let list = claims.list(&Default::default()).await.ok()?;
        let bound: BTreeMap<String, Option<String>> = list
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .map(|c| (c.name_any(), c.uid()))
            .collect();
        (bound.len() == claim_names.len()).then_some(bound)
    };
    let claims_before = eventually("the three claims bound", DEADLINE, bound).await;
    // Its per-adapter Services, as its adapter reconciler made them.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for adapter in ["nfs", "smb"] {
        services.create(&PostParams::default(), &earlier_adapter_service(&created, adapter)).await.unwrap();
    }

    // This operator starts, installed from deploy/ and acting as its ServiceAccount: its RBAC and
    // the admission policy that confines it to its own objects (the earlier operator's are
    // controlled by the DittoServer, its pod labelled app=dittofs-server). The selector cannot
    // change in place, so it says so and how.
    apply_deploy(cluster_tier("full"), "").await;
    let operator = Operator::start(&as_the_operator(cluster_tier("full"), "dittofs-system").await, &ns);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let rejected = loop {
        let conditions = servers.get("files").await.unwrap().status.map(|s| s.conditions).unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| c.type_ == "InSync" && c.reason == "ApplyRejected") {
            break c.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no InSync ApplyRejected; conditions: {conditions:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(rejected.message.contains("StatefulSet/files"), "{}", rejected.message);
    assert!(rejected.message.contains("dittofs.dittofs.com/on-immutable-change=recreate"), "{}", rejected.message);
    assert!(
        rejected.message.contains("The earlier operator's Services files-adapter-nfs, files-adapter-smb remain"),
        "{}",
        rejected.message
    );
    assert_eq!(sts_api.get("files").await.unwrap().uid(), old.uid(), "nothing re-created without the opt-in");

    // The opt-in: re-created with this operator's selector, the old pod replaced, same claims.
    let opt_in = json!({"metadata": {"annotations": {"dittofs.dittofs.com/on-immutable-change": "recreate"}}});
    servers.patch("files", &PatchParams::default(), &Patch::Merge(&opt_in)).await.unwrap();
    let new = eventually("the StatefulSet re-created", DEADLINE, || async {
        let sts = sts_api.get_opt("files").await.ok().flatten()?;
        (sts.uid() != old.uid()).then_some(sts)
    })
    .await;
    let selector = new.spec.as_ref().unwrap().selector.match_labels.clone().unwrap();
    assert_eq!(selector.get("app.kubernetes.io/instance").map(String::as_str), Some("files"));
    let new_pod = eventually("the new pod runs", Duration::from_secs(60), || async {
        let pod = pods.get_opt("files-0").await.ok()??;
        let ours = pod.labels().get("app.kubernetes.io/instance").map(String::as_str) == Some("files");
        let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ours && ready && pod.uid() != old_pod.uid()).then_some(pod)
    })
    .await;
    let mounted: Vec<String> = new_pod
        .spec
        .unwrap()
        .volumes
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect();
    for claim in claim_names {
        assert!(mounted.contains(&claim.to_string()), "the new pod mounts {claim}: {mounted:?}");
    }
    let claims_after = eventually("the claims still bound", DEADLINE, bound).await;
    assert_eq!(claims_after, claims_before, "every claim is the same one: the data stays");
    eventually("Ready", Duration::from_secs(60), || async {
        let conditions = servers.get("files").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    let reasons: Vec<String> =
        events.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r == "Recreating"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "ReplacedForeignPod"), "{reasons:?}");
    // Once the new server serves, the earlier adapter Services go.
    eventually("the earlier adapter Services deleted", DEADLINE, || async {
        let left = services.list(&Default::default()).await.ok()?.items;
        left.iter().all(|s| !s.name_any().contains("-adapter-")).then_some(())
    })
    .await;
    let reasons: Vec<String> =
        events.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r == "EarlierServicesRemoved"), "{reasons:?}");
    let kept = secrets.get("files-admin-bootstrap-credentials").await.unwrap().data.unwrap();
    assert_eq!(kept["password"].0, b"earlier-admin-pw", "the earlier admin password is kept");
    operator.shutdown().await;
}
