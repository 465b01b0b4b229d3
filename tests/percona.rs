//! Percona on the real apiserver with the real PerconaPGCluster CRD (fixture from Percona's
//! v3.0.0 release): a cluster still initializing gates the StatefulSet; ready renders the
//! config from the user Secret's keys; rotating the password rolls the pod; deleting the
//! cluster sets DatabaseReady=False.

mod support;

use dittofs_operator::crd::DittoServer;
use dittofs_operator::percona;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;

const OWNER: &str = dittofs_operator::apply::OWNER_ANNOTATION;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/percona");

/// Both CRDs installed and a fresh namespace: the client, the namespace, and the DittoServer and
/// PerconaPGCluster APIs in it.
async fn percona_setup(prefix: &str) -> (Client, String, Api<DittoServer>, Api<DynamicObject>) {
    let client = client().await;
    install_crd(&client).await;
    install_percona_crd(&client).await;
    let ns = namespace(&client, prefix, &[]).await;
    let servers = Api::namespaced(client.clone(), &ns);
    let clusters = Api::namespaced_with(client.clone(), &ns, &percona::api_resource());
    (client, ns, servers, clusters)
}

async fn database_ready(servers: &Api<DittoServer>, status: &str, reason: &str) -> Condition {
    eventually(&format!("DatabaseReady={status} ({reason})"), DEADLINE, || async {
        let conditions = servers.get("files").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "DatabaseReady" && c.status == status && c.reason == reason)
    })
    .await
}

/// Plays Percona: once the cluster's spec asks for `replicas`, report it `ready` at the generation
/// that carries that spec (Percona's observedGeneration follows the generation it reconciled).
async fn percona_observes_spec(clusters: &Api<DynamicObject>, name: &str, replicas: i64) {
    let generation = eventually(&format!("{name} asks for {replicas} replicas"), DEADLINE, || async {
        let c = serde_json::to_value(clusters.get(name).await.ok()?).ok()?;
        (c["spec"]["instances"][0]["replicas"] == replicas).then(|| c["metadata"]["generation"].clone())
    })
    .await;
    let status = json!({"status": {"state": "ready", "observedGeneration": generation}});
    clusters.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

fn checksum(sts: &StatefulSet) -> String {
    sts.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()
        ["dittofs.dittofs.com/config-checksum"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percona_cluster_gates_renders_rotates_and_disappears() {
    let client = client().await;
    install_crd(&client).await;
    install_percona_crd(&client).await;
    let ns = namespace(&client, "percona", &[]).await;
    let operator = Operator::start(&client, &ns);

    // The cluster exists but is still initializing.
    let mut cluster: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{FIXTURES}/perconapgcluster.example.yaml")).unwrap())
            .unwrap();
    cluster.as_object_mut().unwrap().remove("status");
    cluster["metadata"] = json!({"name": "cluster1", "namespace": ns});
    let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &percona::api_resource());
    let object: DynamicObject = serde_json::from_value(cluster).unwrap();
    clusters.create(&PostParams::default(), &object).await.expect("the fixture cluster is valid for the real CRD");
    let set_state = |state: &'static str| json!({"status": {"state": state, "observedGeneration": 1}});
    clusters.patch_status("cluster1", &PatchParams::default(), &Patch::Merge(set_state("initializing"))).await.unwrap();

    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  storage: {metadataSize: 10Gi}\n  database:\n    percona: {clusterName: cluster1, user: app}\n";
    servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    let condition = database_ready(&servers, "False", "PerconaNotReady").await;
    assert!(condition.message.contains("initializing"), "{}", condition.message);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(sts_api.get_opt("files").await.unwrap().is_none(), "no StatefulSet while the database is not ready");

    // Ready, with its user Secret (found by name and label: Percona sets no owner reference).
    let mut secret: Secret =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{FIXTURES}/pguser-secret.example.yaml")).unwrap())
            .unwrap();
    secret.metadata.namespace = Some(ns.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    clusters.patch_status("cluster1", &PatchParams::default(), &Patch::Merge(set_state("ready"))).await.unwrap();
    let sts =
        eventually("StatefulSet once ready", DEADLINE, || async { sts_api.get_opt("files").await.ok().flatten() })
            .await;
    database_ready(&servers, "True", "PerconaReady").await;
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("files-config").await.unwrap().data.unwrap()
        ["config.yaml"]
        .clone();
    for line in [
        "type: \"postgres\"",
        "host: \"cluster1-primary.default.svc\"",
        "port: 5432",
        "database: \"app\"",
        "user: \"app\"",
        "sslmode: \"require\"",
    ] {
        assert!(config.contains(line), "{line} missing from\n{config}");
    }
    assert!(!config.contains("NTLyKX"), "the password never reaches the ConfigMap");
    let status = servers.get("files").await.unwrap().status.unwrap();
    assert_eq!(status.database.unwrap().kind, "percona");

    // Rotating the password rolls the pod.
    let before = checksum(&sts);
    secrets
        .patch(
            "cluster1-pguser-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "rotated-password-0123456789"}})),
        )
        .await
        .unwrap();
    eventually("checksum follows the password", DEADLINE, || async {
        (checksum(&sts_api.get("files").await.ok()?) != before).then_some(())
    })
    .await;

    // The cluster goes away: DatabaseReady says so; the running StatefulSet is left as it is.
    clusters.delete("cluster1", &DeleteParams::default()).await.unwrap();
    let condition = database_ready(&servers, "False", "PerconaClusterNotFound").await;
    assert!(condition.message.contains("cluster1"), "{}", condition.message);
    assert!(sts_api.get_opt("files").await.unwrap().is_some());
    operator.shutdown().await;
}

async fn cluster_named(clusters: &Api<DynamicObject>, name: &str) -> Value {
    eventually(&format!("PerconaPGCluster {name}"), DEADLINE, || async {
        clusters.get_opt(name).await.ok().flatten().map(|c| serde_json::to_value(c).unwrap())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_created_cluster_follows_the_spec_and_outlives_the_server_unless_asked() {
    let (client, ns, servers, clusters) = percona_setup("percona-owned").await;
    let operator = Operator::start(&client, &ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona: {enabled: true, replicas: 1, storageSize: 5Gi}\n";
    let created = servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();

    // Created from values and spec, owned by the DittoServer, accepted by Percona's real schema.
    // Owned through an annotation, never an owner reference: no garbage collection can delete it.
    let cluster = cluster_named(&clusters, "files-postgres").await;
    // The finalizer that settles the cluster's fate on deletion was there before it.
    let finalizers = servers.get("files").await.unwrap().metadata.finalizers.unwrap_or_default();
    assert_eq!(finalizers, [dittofs_operator::controller::FINALIZER], "finalizer before the cluster");
    assert_eq!(cluster["metadata"]["annotations"][OWNER], json!(created.metadata.uid));
    assert!(cluster["metadata"]["ownerReferences"].is_null(), "{}", cluster["metadata"]);
    assert_eq!(cluster["spec"]["crVersion"], "3.0.0");
    assert_eq!(cluster["spec"]["instances"][0]["replicas"], 1);
    assert_eq!(cluster["spec"]["instances"][0]["dataVolumeClaimSpec"]["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(cluster["spec"]["users"][0], json!({"name": "dittofs", "databases": ["dittofs"]}));
    assert_eq!(cluster["spec"]["backups"]["enabled"], false);
    database_ready(&servers, "False", "PerconaNotReady").await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(sts_api.get_opt("files").await.unwrap().is_none());

    // Later changes propagate.
    servers
        .patch("files", &PatchParams::default(), &Patch::Merge(json!({"spec": {"percona": {"replicas": 2}}})))
        .await
        .unwrap();
    eventually("replicas propagate", DEADLINE, || async {
        let c = serde_json::to_value(clusters.get("files-postgres").await.ok()?).ok()?;
        (c["spec"]["instances"][0]["replicas"] == 2).then_some(())
    })
    .await;

    // Ready with its user Secret: the server rolls out against it.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "files-postgres-pguser-dittofs", "labels": {percona::CLUSTER_LABEL: "files-postgres"}},
        "stringData": {"host": "files-postgres-primary.svc", "port": "5432", "user": "dittofs", "dbname": "dittofs", "password": "p4ss:w0rd+"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    percona_observes_spec(&clusters, "files-postgres", 2).await;
    eventually("StatefulSet once the cluster is ready", DEADLINE, || async {
        sts_api.get_opt("files").await.ok().flatten()
    })
    .await;
    database_ready(&servers, "True", "PerconaReady").await;

    // Deleting the server keeps the database (deleteWithServer unset): orphaned, not deleted.
    servers.delete("files", &DeleteParams::default()).await.unwrap();
    eventually("DittoServer gone", DEADLINE, || async { servers.get_opt("files").await.ok()?.is_none().then_some(()) })
        .await;
    let kept = serde_json::to_value(clusters.get("files-postgres").await.expect("cluster kept")).unwrap();
    assert!(kept["metadata"]["annotations"][OWNER].is_null(), "orphaned: {}", kept["metadata"]);

    // Tier api has no garbage collector: remove what the old DittoServer owned, as it would.
    collect_garbage(&client, &ns, created.metadata.uid.as_deref().unwrap()).await;
    // A DittoServer re-created with the same name takes its database back, data and all.
    let again = servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    eventually("orphaned cluster adopted", DEADLINE, || async {
        let c = serde_json::to_value(clusters.get("files-postgres").await.ok()?).ok()?;
        (c["metadata"]["annotations"][OWNER] == json!(again.metadata.uid)).then_some(())
    })
    .await;
    // The re-created CR asks for one replica again: a new generation that Percona must observe
    // before the database counts as ready.
    percona_observes_spec(&clusters, "files-postgres", 1).await;
    database_ready(&servers, "True", "PerconaReady").await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    let adopted = eventually("Adopted Event", DEADLINE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("Adopted"))
    })
    .await;
    let note = adopted.note.unwrap_or_default();
    assert!(note.contains("PerconaPGCluster/files-postgres") && note.contains("kept again"), "{note}");
    servers.delete("files", &DeleteParams::default()).await.unwrap();
    eventually("DittoServer gone again", DEADLINE, || async {
        servers.get_opt("files").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(clusters.get_opt("files-postgres").await.unwrap().is_some(), "orphaned again, not deleted");

    // Someone else's cluster of that name is never taken over.
    let stranger = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: other}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona: {enabled: true}\n";
    let foreign: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "pgv2.percona.com/v2", "kind": "PerconaPGCluster",
        "metadata": {"name": "other-postgres"},
        "spec": cluster["spec"].clone()
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &foreign).await.unwrap();
    servers.create(&PostParams::default(), &server(&ns, stranger)).await.unwrap();
    let in_sync = eventually("InSync=False ObjectNotOwned", DEADLINE, || async {
        let conditions = servers.get("other").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "InSync" && c.reason == "ObjectNotOwned")
    })
    .await;
    assert!(in_sync.message.contains("PerconaPGCluster/other-postgres"), "{}", in_sync.message);
    let untouched = serde_json::to_value(clusters.get("other-postgres").await.unwrap()).unwrap();
    assert!(untouched["metadata"]["annotations"][OWNER].is_null(), "{}", untouched["metadata"]);

    // Nor one that looks like ours but belongs to another DittoServer (its owner annotation).
    let lookalike: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "pgv2.percona.com/v2", "kind": "PerconaPGCluster",
        "metadata": {"name": "third-postgres",
            "labels": {"app.kubernetes.io/instance": "third", "app.kubernetes.io/managed-by": "dittofs-operator"},
            "annotations": {OWNER: "uid-of-another-dittoserver"}},
        "spec": cluster["spec"].clone()
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &lookalike).await.unwrap();
    servers
        .create(&PostParams::default(), &server(&ns, &stranger.replace("name: other", "name: third")))
        .await
        .unwrap();
    eventually("InSync=False ObjectNotOwned for the lookalike", DEADLINE, || async {
        let conditions = servers.get("third").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "InSync" && c.reason == "ObjectNotOwned")
    })
    .await;
    let kept = serde_json::to_value(clusters.get("third-postgres").await.unwrap()).unwrap();
    assert_eq!(kept["metadata"]["annotations"][OWNER], "uid-of-another-dittoserver");

    // With deleteWithServer: true it goes with the server.
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: scratch}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona: {enabled: true, deleteWithServer: true}\n";
    servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    cluster_named(&clusters, "scratch-postgres").await;
    servers.delete("scratch", &DeleteParams::default()).await.unwrap();
    eventually("cluster deleted with the server", DEADLINE, || async {
        clusters.get_opt("scratch-postgres").await.ok()?.is_none().then_some(())
    })
    .await;
    operator.shutdown().await;
}

/// A ValidatingAdmissionPolicy refusing to delete PerconaPGClusters in `ns`: a real apiserver
/// fault for the finalizer's cleanup. Returns the binding's name (delete it to lift the refusal).
async fn refuse_cluster_deletion(client: &Client, ns: &str) -> String {
    use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
    let name = format!("refuse-pg-delete-{ns}");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["pgv2.percona.com"], "apiVersions": ["*"],
                "operations": ["DELETE"], "resources": ["perconapgclusters"]}]},
            "validations": [{"expression": "false", "message": "test policy: PerconaPGCluster deletion refused"}]
        }
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone()).create(&PostParams::default(), &policy).await.unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_that_cannot_finish_is_reported_and_keeps_the_finalizer() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
    let (client, ns, servers, clusters) = percona_setup("percona-cleanup").await;
    let operator = Operator::start(&client, &ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona: {enabled: true, deleteWithServer: true}\n";
    servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    cluster_named(&clusters, "files-postgres").await;

    let binding = refuse_cluster_deletion(&client, &ns).await;
    // Policies take effect once the apiserver has loaded them: probe with a dry-run delete.
    let dry_run = DeleteParams { dry_run: true, ..DeleteParams::default() };
    eventually("deletion policy in effect", DEADLINE, || async {
        clusters.delete("files-postgres", &dry_run).await.is_err().then_some(())
    })
    .await;

    servers.delete("files", &DeleteParams::default()).await.unwrap();
    let degraded = eventually("Degraded=True CleanupFailed", DEADLINE, || async {
        let status = servers.get("files").await.ok()?.status?;
        let found = status.conditions.into_iter().find(|c| c.type_ == "Degraded" && c.reason == "CleanupFailed")?;
        (status.phase == Some(dittofs_operator::crd::Phase::Deleting)).then_some(found)
    })
    .await;
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("files-postgres") && degraded.message.contains("deletion refused"),
        "the condition names the object and the apiserver's reason: {}",
        degraded.message
    );
    let stuck = servers.get("files").await.unwrap();
    assert!(stuck.finalizers().iter().any(|f| f == dittofs_operator::controller::FINALIZER), "finalizer kept");
    assert!(clusters.get_opt("files-postgres").await.unwrap().is_some(), "the database is still there");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    eventually("Warning Event CleanupFailed", DEADLINE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.iter().any(|e| e.reason.as_deref() == Some("CleanupFailed")).then_some(())
    })
    .await;

    // The cause goes away: cleanup completes on the next retry and the DittoServer is gone.
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(&binding, &DeleteParams::default())
        .await
        .unwrap();
    Api::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy>::all(client.clone())
        .delete(&binding, &DeleteParams::default())
        .await
        .unwrap();
    // The next retry comes with the backoff reached meanwhile (up to 32 s after a few failures).
    eventually("DittoServer gone", std::time::Duration::from_secs(90), || async {
        servers.get_opt("files").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(clusters.get_opt("files-postgres").await.unwrap().is_none(), "deleted as deleteWithServer asks");
    operator.shutdown().await;
}

/// Deletes the ConfigMaps, Services and StatefulSets `owner_uid` controls (tier api has no
/// garbage collector).
async fn collect_garbage(client: &Client, ns: &str, owner_uid: &str) {
    async fn sweep<K>(api: Api<K>, owner_uid: &str)
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        for item in api.list(&Default::default()).await.unwrap().items {
            if item.owner_references().iter().any(|o| o.uid == owner_uid) {
                api.delete(&item.name_any(), &DeleteParams::default()).await.unwrap();
            }
        }
    }
    sweep(Api::<ConfigMap>::namespaced(client.clone(), ns), owner_uid).await;
    sweep(Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns), owner_uid).await;
    sweep(Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(client.clone(), ns), owner_uid).await;
    sweep(Api::<StatefulSet>::namespaced(client.clone(), ns), owner_uid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_before_the_database_is_ready_shows_what_the_operator_would_apply() {
    use dittofs_operator::cmd::diff::{self, DiffArgs, OutputFormat};
    use dittofs_operator::diff::Action;
    let (client, ns, servers, _) = percona_setup("percona-diff").await;
    let args = |name: &str| DiffArgs {
        name: Some(name.into()),
        file: None,
        namespace: Some(ns.clone()),
        kubeconfig: None,
        output: OutputFormat::Json,
        read: dittofs_operator::settings::ReadArgs {
            dittofs_api: dittofs_operator::settings::DittoApiArgs { dittofs_api: "off".into() },
            ..Default::default()
        },
    };
    // No operator runs: the diff says what one would do now.
    let created = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona: {enabled: true}\n";
    servers.create(&PostParams::default(), &server(&ns, created)).await.unwrap();
    let changes = diff::changes(&client, &args("files")).await.expect("diff works before the cluster exists");
    let planned: Vec<_> = changes.iter().map(|c| (c.reference.as_str(), c.action)).collect();
    assert_eq!(
        planned,
        vec![("PerconaPGCluster/files-postgres", Action::Create)],
        "only the cluster, until it is ready"
    );

    let existing = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: other}\nspec:\n  storage: {metadataSize: 10Gi}\n  database:\n    percona: {clusterName: cluster1}\n";
    servers.create(&PostParams::default(), &server(&ns, existing)).await.unwrap();
    let changes =
        diff::changes(&client, &args("other")).await.expect("diff works while an existing cluster is missing");
    assert!(changes.is_empty(), "nothing is applied until the existing cluster is ready: {changes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_reference_from_an_earlier_build_is_dropped_by_the_next_apply() {
    let (client, ns, servers, clusters) = percona_setup("percona-legacy").await;
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona: {enabled: true}\n";
    let created = servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();

    // What the earlier build applied: the cluster with a controller owner reference, same field manager.
    let rendered = dittofs_operator::cmd::render::render_offline(
        "files.yaml",
        cr,
        dittofs_operator::values::ValuesBuilder::new(),
        &[],
    )
    .unwrap();
    let cluster = rendered.objects.iter().find(|o| o.kind() == "PerconaPGCluster").unwrap();
    let mut legacy = cluster.to_json();
    legacy["metadata"]["namespace"] = json!(ns);
    legacy["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": "files",
        "uid": created.metadata.uid, "controller": true, "blockOwnerDeletion": true
    }]);
    clusters
        .patch(
            "files-postgres",
            &PatchParams::apply(dittofs_operator::crd::FIELD_MANAGER).force(),
            &Patch::Apply(&legacy),
        )
        .await
        .unwrap();

    let operator = Operator::start(&client, &ns);
    let migrated = eventually("owner reference replaced by the owner annotation", DEADLINE, || async {
        let c = serde_json::to_value(clusters.get("files-postgres").await.ok()?).ok()?;
        (c["metadata"]["ownerReferences"].is_null()
            && c["metadata"]["annotations"][OWNER] == json!(created.metadata.uid))
        .then_some(c)
    })
    .await;
    assert_eq!(migrated["metadata"]["name"], "files-postgres");
    operator.shutdown().await;
}

/// `spec.percona.backup` reaches the cluster in the shape Percona's v3.0.0 schema (with its CEL
/// rules) accepts; without the credentials Secret nothing is applied and the field is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_reach_the_cluster_as_perconas_schema_accepts_them() {
    let (client, ns, servers, clusters) = percona_setup("percona-backup").await;
    let _operator = Operator::start(&client, &ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files}\nspec:\n  storage: {metadataSize: 10Gi}\n  percona:\n    enabled: true\n    backup: {enabled: true, credentialsSecretRef: {name: files-backup}, bucket: backups, endpoint: 'https://s3.example.com:9000', retentionDays: 30}\n";
    servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();

    let held = eventually("ConfigReady names the backup Secret", DEADLINE, || async {
        let conditions = servers.get("files").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "ConfigReady" && c.reason == "SecretMissing")
    })
    .await;
    assert!(held.message.contains("spec.percona.backup.credentialsSecretRef"), "{}", held.message);
    assert!(clusters.get_opt("files-postgres").await.unwrap().is_none(), "nothing applied while held");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let keys = json!({"metadata": {"name": "files-backup"},
        "stringData": {"s3.conf": "[global]\nrepo1-s3-key=AKIA-not-real\nrepo1-s3-key-secret=not-real-either\n"}});
    secrets.create(&PostParams::default(), &serde_json::from_value(keys).unwrap()).await.unwrap();

    let cluster = cluster_named(&clusters, "files-postgres").await;
    let backups = &cluster["spec"]["backups"];
    assert_eq!(backups["enabled"], true);
    let pgbackrest = &backups["pgbackrest"];
    assert_eq!(pgbackrest["configuration"], json!([{"secret": {"name": "files-backup"}}]));
    assert_eq!(
        pgbackrest["repos"],
        json!([{"name": "repo1",
            "s3": {"bucket": "backups", "endpoint": "s3.example.com:9000", "region": "eu-west-1"},
            "schedules": {"full": "0 2 * * *", "incremental": "0 * * * *"}}])
    );
    assert_eq!(pgbackrest["global"]["repo1-path"], "/pgbackrest/files/repo1");
    assert_eq!(pgbackrest["global"]["repo1-retention-full-type"], "time");
    assert_eq!(pgbackrest["global"]["repo1-retention-full"], "30");
    assert!(pgbackrest["image"].as_str().unwrap().starts_with("docker.io/percona/percona-pgbackrest:"));
    let text = serde_json::to_string(&cluster).unwrap();
    assert!(!text.contains("not-real"), "no key in the cluster");

    // Turned off: the repository goes and Percona's rule (enabled false, or a repository) holds.
    servers
        .patch(
            "files",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"percona": {"backup": {"enabled": false}}}})),
        )
        .await
        .unwrap();
    eventually("backups off", DEADLINE, || async {
        let c = serde_json::to_value(clusters.get("files-postgres").await.ok()?).ok()?;
        (c["spec"]["backups"] == json!({"enabled": false})).then_some(())
    })
    .await;
}
