//! Template overrides on a real apiserver: an override is applied through the diff path; a
//! broken one is reported (TemplatesReady=False + Warning Event) and changes nothing; fixing or
//! removing it recovers without restarting the operator.

mod support;

use std::collections::BTreeMap;

use dittofs_operator::crd::DittoServer;
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use serde_json::json;
use support::*;

const DEMO: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n";
const OVERRIDES: &str = "dittofs-operator-templates";

fn embedded(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").join(name)).unwrap()
}

fn with_sidecar() -> String {
    embedded("statefulset.yaml.j2").replace(
        "      volumes:\n",
        "        - name: \"sidecar\"\n          image: \"busybox:1.37\"\n          securityContext: {{ computed.securityContext | tojson }}\n      volumes:\n",
    )
}

async fn set_overrides(client: &Client, ns: &str, data: &[(&str, String)]) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": OVERRIDES, "namespace": ns},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(OVERRIDES, &PatchParams::apply("templates-test").force(), &Patch::Apply(&cm))
        .await
        .unwrap();
}

async fn templates_condition(servers: &Api<DittoServer>, status: &str, contains: &str) -> Condition {
    eventually(&format!("TemplatesReady={status} mentioning {contains:?}"), DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions
            .into_iter()
            .find(|c| c.type_ == "TemplatesReady" && c.status == status && c.message.contains(contains))
    })
    .await
}

async fn containers(client: &Client, ns: &str) -> Vec<String> {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns).get("demo").await.unwrap();
    sts.spec.unwrap().template.spec.unwrap().containers.into_iter().map(|c| c.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_applies_breaks_safely_and_recovers() {
    let (client, ns) = setup("overrides").await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, DEMO)).await.unwrap();
    templates_condition(&servers, "True", "embedded").await;

    // Adding an override applies it.
    set_overrides(&client, &ns, &[("statefulset.yaml.j2", with_sidecar())]).await;
    eventually("sidecar rolled out", DEADLINE, || async {
        (containers(&client, &ns).await == ["dittofs", "sidecar"]).then_some(())
    })
    .await;
    templates_condition(&servers, "True", "statefulset.yaml.j2").await;

    // Broken overrides: reported with the template (and line where there is one); nothing changes.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let broken: Vec<(&str, String, &str)> = vec![
        ("syntax error", "{% if %}\n".into(), "broken.yaml.j2, line 1"),
        (
            "undefined variable",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ cr.nam | quote }}}\n".into(),
            "broken.yaml.j2, line 3",
        ),
        ("invalid YAML", "apiVersion: v1\nkind: ConfigMap\nmetadata: [name: {{ cr.name }}\n".into(), "invalid YAML"),
        (
            "forbidden kind",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: {{ cr.name }}-x}\n".into(),
            "\"Role\"",
        ),
        (
            "another namespace",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ cr.name }}-x, namespace: kube-system}\n".into(),
            "kube-system",
        ),
        (
            "cluster-scoped kind",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: {{ cr.name }}-x}\n".into(),
            "\"Namespace\"",
        ),
        (
            "foreign name",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: someone-else}\n".into(),
            "not named after the DittoServer",
        ),
        (
            "endless loop",
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}\n".into(),
            "fuel",
        ),
        (
            "unknown field",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ cr.name }}-x}\ndatta: {}\n".into(),
            "datta",
        ),
    ];
    for (what, template, expected) in broken {
        let before_sts = sts_api.get("demo").await.unwrap().resource_version();
        let before_cm = cm_api.get("demo-config").await.unwrap().resource_version();
        set_overrides(&client, &ns, &[("statefulset.yaml.j2", with_sidecar()), ("broken.yaml.j2", template)]).await;
        let condition = templates_condition(&servers, "False", expected).await;
        assert_eq!(condition.reason, "TemplateInvalid", "{what}");
        assert_eq!(sts_api.get("demo").await.unwrap().resource_version(), before_sts, "{what}: StatefulSet untouched");
        assert_eq!(
            cm_api.get("demo-config").await.unwrap().resource_version(),
            before_cm,
            "{what}: ConfigMap untouched"
        );
        assert!(cm_api.get_opt("demo-x").await.unwrap().is_none(), "{what}: nothing created");
    }
    let warning = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("TemplateInvalid"));
    assert!(warning.is_some(), "a Warning Event reports the broken override");

    // A bad values.yaml is refused too.
    set_overrides(&client, &ns, &[("values.yaml", "ports: {apii: 1}".into())]).await;
    let condition = templates_condition(&servers, "False", "apii").await;
    assert_eq!(condition.reason, "OverrideInvalid");

    // Fixing it recovers without a restart; removing the ConfigMap returns to the embedded templates.
    set_overrides(
        &client,
        &ns,
        &[("statefulset.yaml.j2", with_sidecar()), ("values.yaml", "image: {tag: v0.29.1}".into())],
    )
    .await;
    eventually("override values applied", DEADLINE, || async {
        let sts = sts_api.get("demo").await.ok()?;
        (sts.spec?.template.spec?.containers[0].image.as_deref() == Some("marmos91c/dittofs:v0.29.1")).then_some(())
    })
    .await;
    cm_api.delete(OVERRIDES, &DeleteParams::default()).await.unwrap();
    eventually("back to the embedded templates", DEADLINE, || async {
        (containers(&client, &ns).await == ["dittofs"]).then_some(())
    })
    .await;
    templates_condition(&servers, "True", "embedded").await;
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_cr_overrides_need_the_operator_to_allow_them() {
    let (client, ns) = setup("nstemplates").await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "my-templates"},
        "data": {"statefulset.yaml.j2": with_sidecar()},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&PostParams::default(), &cm).await.unwrap();
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let cr =
        DEMO.replace("metadataSize: 10Gi}", "metadataSize: 10Gi}\n  templates: {configMapRef: {name: my-templates}}");
    servers.create(&PostParams::default(), &server(&ns, &cr)).await.unwrap();

    let operator = Operator::start(&client, &ns);
    let condition = templates_condition(&servers, "True", "ignored").await;
    assert!(condition.message.contains("--allow-namespace-templates"), "{}", condition.message);
    assert_eq!(containers(&client, &ns).await, ["dittofs"]);
    operator.shutdown().await;

    let settings = Settings { allow_namespace_templates: true, ..Settings::for_tests(Some(ns.clone())) };
    let operator = Operator::start_with(&client, settings);
    eventually("per-CR override applied", DEADLINE, || async {
        (containers(&client, &ns).await == ["dittofs", "sidecar"]).then_some(())
    })
    .await;
    templates_condition(&servers, "True", &format!("ConfigMap {ns}/my-templates")).await;
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_monitor_needs_its_crd() {
    // This test binary never installs the Prometheus Operator's CRDs.
    let (client, ns) = setup("servicemonitor").await;
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("golden/override-servicemonitor/templates/servicemonitor.yaml.j2"),
    )
    .unwrap();
    set_overrides(&client, &ns, &[("servicemonitor.yaml.j2", template)]).await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let cr = DEMO.replace("metadataSize: 10Gi}", "metadataSize: 10Gi}\n  metrics: {enabled: true}");
    servers.create(&PostParams::default(), &server(&ns, &cr)).await.unwrap();
    let condition = eventually("TemplatesReady=False KindNotInstalled", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "TemplatesReady" && c.reason == "KindNotInstalled")
    })
    .await;
    assert!(condition.message.contains("servicemonitors.monitoring.coreos.com"), "{}", condition.message);
    assert!(
        Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.unwrap().is_none(),
        "nothing applied"
    );
    operator.shutdown().await;
}
