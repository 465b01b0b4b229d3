//! Condition transitions that depend on the cluster: Degraded from a missing StorageClass, from
//! a crash-looping pod and from a claim left Pending, with Ready and the phase following.

mod support;

use std::time::Duration;

use dittofs_operator::crd::{DittoServer, Phase};
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

async fn condition(servers: &Api<DittoServer>, type_: &str, status: &str, reason: &str) -> Condition {
    eventually(&format!("{type_}={status} ({reason})"), DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == type_ && c.status == status && c.reason == reason)
    })
    .await
}

/// Creates DittoServer `demo` and waits for the StatefulSet the operator applies for it.
async fn demo_with_stateful_set(client: &kube::Client, ns: &str) -> (Api<DittoServer>, StatefulSet) {
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n";
    servers.create(&PostParams::default(), &server(ns, cr)).await.unwrap();
    let sts = eventually("StatefulSet", DEADLINE, || async {
        Api::<StatefulSet>::namespaced(client.clone(), ns).get_opt("demo").await.ok().flatten()
    })
    .await;
    (servers, sts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_storage_class_is_reported_before_the_stateful_set_exists() {
    let (client, ns) = setup("storageclass").await;
    let class = format!("fast-{ns}");
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let cr = format!(
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {{name: demo}}\nspec:\n  storage: {{metadataSize: 10Gi, storageClassName: {class}}}\n"
    );
    servers.create(&PostParams::default(), &server(&ns, &cr)).await.unwrap();
    let degraded = condition(&servers, "Degraded", "True", "StorageClassMissing").await;
    assert!(degraded.message.contains(&class), "{}", degraded.message);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(sts.get_opt("demo").await.unwrap().is_none(), "no StatefulSet while its class is missing");
    let ready = condition(&servers, "Ready", "False", "ConditionsNotMet").await;
    assert!(ready.message.contains("StorageClassMissing"), "{}", ready.message);
    condition(&servers, "InSync", "False", "HeldBack").await;

    let sc: StorageClass =
        serde_json::from_value(json!({"metadata": {"name": class}, "provisioner": "example.com/none"})).unwrap();
    Api::<StorageClass>::all(client.clone()).create(&PostParams::default(), &sc).await.unwrap();
    eventually("StatefulSet created once the class exists", DEADLINE, || async {
        sts.get_opt("demo").await.ok().flatten()
    })
    .await;
    condition(&servers, "Degraded", "False", "AsExpected").await;
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_pod_degrades_the_server_until_it_recovers() {
    let (client, ns) = setup("crashloop").await;
    let operator = Operator::start(&client, &ns);
    let (servers, sts) = demo_with_stateful_set(&client, &ns).await;
    condition(&servers, "Degraded", "False", "AsExpected").await;

    // Tier api has no kubelet: play its part for the pod the StatefulSet would run.
    let pod = pod_from_template(&sts);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let waiting = |reason: &str, restarts: i32| {
        json!({"status": {"containerStatuses": [{"name": "dittofs", "image": "marmos91c/dittofs:v0.29.0", "imageID": "",
            "ready": false, "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": "back-off restarting"}}}]}})
    };
    pods.patch_status("demo-0", &PatchParams::default(), &Patch::Merge(waiting("CrashLoopBackOff", 5))).await.unwrap();
    let degraded = condition(&servers, "Degraded", "True", "PodCrashLooping").await;
    assert!(degraded.message.contains("restarts: 5"), "{}", degraded.message);

    // Its last words quote a credential (a server that logs its config, say): the condition
    // carries them scrubbed.
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .get("demo-admin-bootstrap-credentials")
        .await
        .unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let said = json!({"status": {"containerStatuses": [{"name": "dittofs", "image": "marmos91c/dittofs:v0.29.0", "imageID": "",
        "ready": false, "restartCount": 6, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": format!("admin password {password} refused")}}}]}});
    pods.patch_status("demo-0", &PatchParams::default(), &Patch::Merge(said)).await.unwrap();
    let degraded = eventually("the last words in Degraded", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "Degraded" && c.message.contains("Last exit: code 1"))
    })
    .await;
    assert!(degraded.message.contains("admin password"), "{}", degraded.message);
    assert!(!degraded.message.contains(&password), "a credential in Degraded: {}", degraded.message);
    eventually("phase Degraded", DEADLINE, || async {
        (servers.get("demo").await.ok()?.status?.phase == Some(Phase::Degraded)).then_some(())
    })
    .await;

    let running = json!({"status": {"containerStatuses": [{"name": "dittofs", "image": "marmos91c/dittofs:v0.29.0", "imageID": "",
        "ready": true, "restartCount": 5, "state": {"running": {}}}]}});
    pods.patch_status("demo-0", &PatchParams::default(), &Patch::Merge(running)).await.unwrap();
    condition(&servers, "Degraded", "False", "AsExpected").await;
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_pending_beyond_its_grace_degrades_the_server_until_it_binds() {
    let (client, ns) = setup("claimpending").await;
    let grace = Duration::from_secs(3);
    let settings = Settings { claim_pending_grace: grace, ..Settings::for_tests(Some(ns.clone())) };
    let operator = Operator::start_with(&client, settings);
    let (servers, sts) = demo_with_stateful_set(&client, &ns).await;

    // Tier api has no StatefulSet controller: create the claim it would, from its template.
    let template = sts.spec.unwrap().volume_claim_templates.unwrap().remove(0);
    let mut claim =
        PersistentVolumeClaim { metadata: template.metadata.clone(), spec: template.spec, ..Default::default() };
    claim.metadata.name = Some(format!("{}-demo-0", template.metadata.name.unwrap()));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim = claims.create(&PostParams::default(), &claim).await.unwrap();
    let claim_name = claim.metadata.name.clone().unwrap();
    let phase = |phase: &str| json!({"status": {"phase": phase}});
    claims.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(phase("Pending"))).await.unwrap();

    let degraded = condition(&servers, "Degraded", "True", "VolumeClaimPending").await;
    assert!(degraded.message.contains(&claim_name), "{}", degraded.message);
    let created = claim.metadata.creation_timestamp.unwrap().0.as_second();
    let reported = degraded.last_transition_time.0.as_second();
    assert!(
        reported - created >= grace.as_secs() as i64 - 1,
        "reported {}s after the claim was created, before its {grace:?} grace",
        reported - created
    );
    // Looked at again when the grace ran out, not at the next 30 s pass.
    assert!(
        reported - created <= grace.as_secs() as i64 + 10,
        "reported {}s after the claim was created: the recheck at the end of the grace did not happen",
        reported - created
    );
    let ready = condition(&servers, "Ready", "False", "ConditionsNotMet").await;
    assert!(ready.message.contains("VolumeClaimPending"), "{}", ready.message);

    claims.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(phase("Bound"))).await.unwrap();
    condition(&servers, "Degraded", "False", "AsExpected").await;
    operator.shutdown().await;
}

/// A pod crash-looping on a revision the StatefulSet no longer wants (the CR was reverted) is
/// never replaced by the StatefulSet controller: the operator deletes it so the StatefulSet
/// re-creates it at the wanted revision; paused, it only says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_stuck_on_an_old_revision_is_rolled_forward() {
    let (client, ns) = setup("rollforward").await;
    let operator = Operator::start(&client, &ns);
    let (servers, sts) = demo_with_stateful_set(&client, &ns).await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    // Tier api has no StatefulSet controller or kubelet: play both.
    let revisions = json!({"status": {"replicas": 1, "currentRevision": "demo-bad", "updateRevision": "demo-good",
        "observedGeneration": sts.metadata.generation}});
    sts_api.patch_status("demo", &PatchParams::default(), &Patch::Merge(revisions)).await.unwrap();
    // Paused with a pending change, so the status shows when the operator has seen the pause.
    let paused = json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": "paused"}},
        "spec": {"logging": {"level": "DEBUG"}}});
    servers.patch("demo", &PatchParams::default(), &Patch::Merge(paused)).await.unwrap();
    condition(&servers, "InSync", "False", "Paused").await;
    let mut pod = pod_from_template(&sts);
    pod.metadata.labels.get_or_insert_default().insert("controller-revision-hash".into(), "demo-bad".into());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let crash = json!({"status": {"containerStatuses": [{"name": "dittofs", "image": "marmos91c/dittofs:v0.29.0", "imageID": "",
        "ready": false, "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}]}});
    pods.patch_status("demo-0", &PatchParams::default(), &Patch::Merge(crash)).await.unwrap();

    // Paused: the operator says what to do and deletes nothing.
    let degraded = eventually("Degraded names the stale pod", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "Degraded" && c.message.contains("stuck on revision demo-bad"))
    })
    .await;
    assert!(degraded.message.contains("delete the pod to roll forward"), "{}", degraded.message);
    assert_eq!(pods.get("demo-0").await.unwrap().metadata.uid, created.metadata.uid);

    // Unpaused: deleted, so the StatefulSet can bring it back at demo-good.
    servers
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": null}}})),
        )
        .await
        .unwrap();
    eventually("the stale pod is deleted", DEADLINE, || async {
        pods.get_opt("demo-0").await.ok()?.is_none().then_some(())
    })
    .await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    let rolled = eventually("RolledForward Event", DEADLINE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("RolledForward"))
    })
    .await;
    assert!(rolled.note.unwrap_or_default().contains("re-creates it at demo-good"));
    operator.shutdown().await;
}
