//! `deploy/` as users install it: `kubectl apply -k deploy/` is accepted by a real apiserver,
//! and the operator, running with exactly the ServiceAccount's RBAC (impersonated), can do its
//! whole job — leader election included — while being refused what it was not granted.

mod support;

use std::sync::Arc;

use dittofs_operator::controller::Context;
use dittofs_operator::crd::DittoServer;
use dittofs_operator::leader::{self, LeaseSettings};
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::*;

/// A client with exactly the RBAC of the operator's ServiceAccount in `namespace`.
async fn as_operator_in(namespace: &str) -> Client {
    as_the_operator(cluster(), namespace).await
}

async fn as_operator() -> Client {
    as_operator_in("dittofs-system").await
}

async fn kubectl_apply(dir: &str) -> String {
    apply_deploy(cluster(), dir).await
}

/// Whether `client` is refused `what`.
fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomization_installs_and_its_rbac_is_enough_and_no_more() {
    let admin = client().await;
    let applied = kubectl_apply("").await;
    for object in [
        "namespace/dittofs-system",
        "customresourcedefinition.apiextensions.k8s.io/dittoservers.dittofs.dittofs.com",
        "clusterrole.rbac.authorization.k8s.io/dittofs-operator",
        "deployment.apps/dittofs-operator",
        "validatingadmissionpolicy.admissionregistration.k8s.io/dittofs-operator-changes-only-its-own",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/dittofs-operator-changes-only-its-own",
    ] {
        assert!(applied.contains(object), "{object} not applied:\n{applied}");
    }
    install_crd(&admin).await;
    let ns = namespace(&admin, "rbac", &[]).await;

    // The operator as its ServiceAccount, on all namespaces, with leader election.
    let client = as_operator().await;
    let ctx = Arc::new(Context::new(client.clone(), Settings::for_tests(None)));
    let lease = LeaseSettings {
        name: "dittofs-operator".into(),
        namespace: "dittofs-system".into(),
        identity: "rbac-test".into(),
        duration_seconds: 15,
        grace_seconds: 5,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(leader::run(ctx.clone(), lease, async move {
        let _ = stopped.await;
    }));

    let servers: Api<DittoServer> = Api::namespaced(admin.clone(), &ns);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi, storageClassName: standard}\n  metrics: {enabled: true}\n";
    servers.create(&PostParams::default(), &server(&ns, cr)).await.unwrap();
    // StorageClass "standard" does not exist: reading it is allowed, and the StatefulSet is held back.
    eventually("Degraded=True StorageClassMissing", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "Degraded" && c.reason == "StorageClassMissing").then_some(())
    })
    .await;
    let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "standard"}, "provisioner": "example.com/none"}),
    )
    .unwrap();
    let _ = Api::<k8s_openapi::api::storage::v1::StorageClass>::all(admin.clone())
        .create(&PostParams::default(), &sc)
        .await;
    let sts: Api<StatefulSet> = Api::namespaced(admin.clone(), &ns);
    eventually("StatefulSet created once the class exists", DEADLINE, || async {
        sts.get_opt("demo").await.ok().flatten()
    })
    .await;
    eventually("in sync as the ServiceAccount", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True").then_some(())
    })
    .await;
    assert_eq!(
        ctx.metrics.reconciles_with("ReadFailed") + ctx.metrics.reconciles_with("ApplyFailed"),
        0,
        "no permission errors"
    );

    // Its own objects it may still delete: metrics off prunes the metrics Service.
    servers
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"metrics": {"enabled": false}}})),
        )
        .await
        .unwrap();
    let services = Api::<Service>::namespaced(admin.clone(), &ns);
    eventually("demo-metrics pruned as the ServiceAccount", DEADLINE, || async {
        services.get_opt("demo-metrics").await.ok()?.is_none().then_some(())
    })
    .await;

    // The ValidatingAdmissionPolicy: what is not its own it may not change, RBAC or not.
    let strangers: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let stranger: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "someone-elses"}})).unwrap();
    strangers.create(&PostParams::default(), &stranger).await.unwrap();
    let pods = Api::<Pod>::namespaced(admin.clone(), &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "someone-elses"},
        "spec": {"containers": [{"name": "c", "image": "example.com/app:1"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let as_sa_configmaps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let as_sa_pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let refusal = eventually("the policy refuses a stranger's ConfigMap", DEADLINE, || async {
        match as_sa_configmaps.delete("someone-elses", &Default::default()).await {
            Err(kube::Error::Api(status)) => Some(status.message),
            _ => None,
        }
    })
    .await;
    assert!(refusal.contains("may change only its own objects"), "{refusal}");
    let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"taken": "yes"}}}));
    match as_sa_configmaps.patch("someone-elses", &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(status)) => assert!(status.message.contains("its own objects"), "{}", status.message),
        other => panic!("patching a stranger's ConfigMap: {other:?}"),
    }
    match as_sa_pods.delete("someone-elses", &Default::default()).await {
        Err(kube::Error::Api(status)) => assert!(status.message.contains("its own objects"), "{}", status.message),
        other => panic!("deleting a stranger's pod: {other:?}"),
    }
    assert!(strangers.get_opt("someone-elses").await.unwrap().is_some());
    // The same request as an administrator is not the policy's business.
    strangers.delete("someone-elses", &Default::default()).await.unwrap();

    // Least privilege: what it was not granted is refused.
    forbidden("list nodes", Api::<Node>::all(client.clone()).list(&Default::default()).await);
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
    forbidden("delete a Secret", secrets.delete("demo-jwt-secret", &Default::default()).await);
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    forbidden("read a Lease in kube-system", leases.get_opt("kube-scheduler").await);
    let other = Api::<Lease>::namespaced(client.clone(), "dittofs-system");
    forbidden("read another Lease of its namespace", other.get_opt("someone-else").await);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// `deploy/namespaced/`: the operator watches only its own namespace with a Role, and does its
/// whole job there (leader election included) as that ServiceAccount; other namespaces are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_install_works_in_its_namespace_and_no_further() {
    let admin = client().await;
    let applied = kubectl_apply("namespaced").await;
    for object in
        ["namespace/dittofs", "role.rbac.authorization.k8s.io/dittofs-operator", "deployment.apps/dittofs-operator"]
    {
        assert!(applied.contains(object), "{object} not applied:\n{applied}");
    }
    assert!(
        !applied.contains("clusterrole.rbac.authorization.k8s.io/dittofs-operator "),
        "no cluster-wide role:\n{applied}"
    );

    let client = as_operator_in("dittofs").await;
    let ctx = Arc::new(Context::new(client.clone(), Settings::for_tests(Some("dittofs".into()))));
    let lease = LeaseSettings {
        name: "dittofs-operator".into(),
        namespace: "dittofs".into(),
        identity: "namespaced-test".into(),
        duration_seconds: 15,
        grace_seconds: 5,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(leader::run(ctx.clone(), lease, async move {
        let _ = stopped.await;
    }));
    let servers: Api<DittoServer> = Api::namespaced(admin.clone(), "dittofs");
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: scoped}\nspec:\n  storage: {metadataSize: 10Gi}\n";
    servers.create(&PostParams::default(), &server("dittofs", cr)).await.unwrap();
    eventually("in sync as the namespaced ServiceAccount", DEADLINE, || async {
        let status = servers.get("scoped").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True").then_some(())
    })
    .await;
    assert!(Api::<StatefulSet>::namespaced(admin.clone(), "dittofs").get_opt("scoped").await.unwrap().is_some());
    assert_eq!(
        ctx.metrics.reconciles_with("ReadFailed") + ctx.metrics.reconciles_with("ApplyFailed"),
        0,
        "no permission errors"
    );
    forbidden(
        "list DittoServers in another namespace",
        Api::<DittoServer>::namespaced(client.clone(), "default").list(&Default::default()).await,
    );
    forbidden(
        "list DittoServers cluster-wide",
        Api::<DittoServer>::all(client.clone()).list(&Default::default()).await,
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
