//! `--namespace team-a,team-b`: the operator watching a list of namespaces, with the RBAC the
//! chart's `watchNamespaces` gives it. In a test binary of
//! its own, so that no other test's operator (watching every namespace) serves the DittoServers.

mod support;

use dittofs_operator::crd::DittoServer;
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::*;

/// `--namespace team-a,team-b` (the chart's `watchNamespaces`): with deploy/namespaced/'s Role
/// and RoleBinding copied into each watched namespace, its own namespace's Role cut to the Lease
/// and the template ConfigMap, and nothing cluster-wide, the operator serves DittoServers in
/// both and leaves a third namespace alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_namespaces_is_served_with_a_role_in_each() {
    let admin = client().await;
    apply_deploy(cluster(), "namespaced").await;
    let role = Api::<Role>::namespaced(admin.clone(), "dittofs").get("dittofs-operator").await.unwrap();
    let binding = Api::<RoleBinding>::namespaced(admin.clone(), "dittofs").get("dittofs-operator").await.unwrap();
    let mut watched = Vec::new();
    for team in ["team-a", "team-b"] {
        let ns = namespace(&admin, team, &[]).await;
        let meta = |name: &Option<String>| kube::api::ObjectMeta {
            name: name.clone(),
            namespace: Some(ns.clone()),
            ..Default::default()
        };
        let role = Role { metadata: meta(&role.metadata.name), ..role.clone() };
        let binding = RoleBinding { metadata: meta(&binding.metadata.name), ..binding.clone() };
        Api::<Role>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &role).await.unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &binding).await.unwrap();
        watched.push(ns);
    }
    let unwatched = namespace(&admin, "team-c", &[]).await;
    // In its own namespace, as the chart leaves it: only the Lease's rules and the named read of
    // the template ConfigMap (the rules with resourceNames).
    let own: Vec<_> = role
        .rules
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|rule| {
            rule.resource_names.is_some() || rule.api_groups.iter().flatten().any(|g| g == "coordination.k8s.io")
        })
        .collect();
    assert_eq!(own.len(), 3, "the Lease's create, get/patch, and the template ConfigMap: {own:?}");
    let roles: Api<Role> = Api::namespaced(admin.clone(), "dittofs");
    roles
        .patch("dittofs-operator", &PatchParams::default(), &Patch::Merge(serde_json::json!({"rules": own})))
        .await
        .unwrap();

    let client = as_the_operator(cluster(), "dittofs").await;
    let settings = Settings {
        namespaces: watched.clone(),
        templates_configmap: ("dittofs".into(), "dittofs-operator-templates".into()),
        ..Settings::for_tests(None)
    };
    let operator = Operator::start_with(&client, settings);
    let cr = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: team}\nspec:\n  storage: {metadataSize: 10Gi}\n";
    for ns in watched.iter().chain([&unwatched]) {
        Api::<DittoServer>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &server(ns, cr))
            .await
            .unwrap();
    }
    for ns in &watched {
        let servers: Api<DittoServer> = Api::namespaced(admin.clone(), ns);
        eventually(&format!("team in {ns} in sync"), DEADLINE, || async {
            let status = servers.get("team").await.ok()?.status?;
            status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True").then_some(())
        })
        .await;
        assert!(Api::<StatefulSet>::namespaced(admin.clone(), ns).get_opt("team").await.unwrap().is_some());
    }
    assert!(operator.ctx.ready.load(std::sync::atomic::Ordering::SeqCst), "ready once every namespace's list is in");
    let outside = Api::<DittoServer>::namespaced(admin.clone(), &unwatched).get("team").await.unwrap();
    assert!(outside.status.is_none(), "a namespace not in the list is left alone: {:?}", outside.status);
    assert!(Api::<StatefulSet>::namespaced(admin.clone(), &unwatched).get_opt("team").await.unwrap().is_none());
    assert_eq!(
        operator.ctx.metrics.reconciles_with("ReadFailed") + operator.ctx.metrics.reconciles_with("ApplyFailed"),
        0,
        "no permission errors"
    );
    // A change in one watched namespace reaches its DittoServer only.
    let servers: Api<DittoServer> = Api::namespaced(admin.clone(), &watched[1]);
    servers
        .patch(
            "team",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"logging": {"level": "DEBUG"}}})),
        )
        .await
        .unwrap();
    eventually("the second namespace's change reconciled", DEADLINE, || async {
        let server = servers.get("team").await.ok()?;
        (server.status?.observed_generation == server.metadata.generation).then_some(())
    })
    .await;
    operator.shutdown().await;
}
