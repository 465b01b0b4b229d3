//! The controller against a real kube-apiserver + etcd (tier `api`).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use dittofs_operator::controller::{self, Context};
use dittofs_operator::crd::DittoServer;
use dittofs_operator::settings::Settings;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::*;

const MINIMAL: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n";

async fn create(client: &Client, ns: &str, yaml: &str) -> DittoServer {
    let api: Api<DittoServer> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &server(ns, yaml)).await.expect("create DittoServer")
}

fn checksum(sts: &StatefulSet) -> String {
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()["dittofs.dittofs.com/config-checksum"]
        .clone()
}

async fn wait_for_sts(client: &Client, ns: &str, name: &str) -> StatefulSet {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually("StatefulSet created", DEADLINE, || async { api.get_opt(name).await.ok().flatten() }).await
}

/// resourceVersion of every object the operator manages for `demo`, by `Kind/name`.
async fn versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let selector = "app.kubernetes.io/instance=demo";
    let lp = kube::api::ListParams::default().labels(selector);
    let mut out = BTreeMap::new();
    for o in Api::<ConfigMap>::namespaced(client.clone(), ns).list(&lp).await.unwrap() {
        out.insert(format!("ConfigMap/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<Secret>::namespaced(client.clone(), ns).list(&lp).await.unwrap() {
        out.insert(format!("Secret/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<Service>::namespaced(client.clone(), ns).list(&lp).await.unwrap() {
        out.insert(format!("Service/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<StatefulSet>::namespaced(client.clone(), ns).list(&lp).await.unwrap() {
        out.insert(format!("StatefulSet/{}", o.name_any()), o.resource_version().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_yields_owned_objects_applied_by_the_operator() {
    let (client, ns) = setup("sample").await;
    let operator = Operator::start(&client, &ns);
    let cr = create(&client, &ns, MINIMAL).await;
    let uid = cr.uid().unwrap();
    let sts = wait_for_sts(&client, &ns, "demo").await;

    let owned =
        |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            let owner = meta.owner_references.as_ref().expect("owner references").first().expect("one owner").clone();
            assert_eq!(owner.uid, uid);
            assert_eq!(owner.controller, Some(true));
            assert!(
                meta.managed_fields.as_ref().unwrap().iter().any(
                    |m| m.manager.as_deref() == Some("dittofs-operator") && m.operation.as_deref() == Some("Apply")
                ),
                "applied with the dittofs-operator field manager"
            );
        };
    owned(&sts.metadata);
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("demo-config").await.unwrap();
    owned(&cm.metadata);
    assert!(cm.data.unwrap()["config.yaml"].contains("controlplane"));
    for svc in ["demo-headless", "demo-file", "demo-api"] {
        owned(&Api::<Service>::namespaced(client.clone(), &ns).get(svc).await.unwrap().metadata);
    }
    assert!(Api::<Service>::namespaced(client.clone(), &ns).get_opt("demo-metrics").await.unwrap().is_none());
    // Safe by default: the shares are reachable in the cluster only, and NetworkPolicies narrow
    // that to the namespace's pods (file ports) and the operator's pods (API port).
    let file = Api::<Service>::namespaced(client.clone(), &ns).get("demo-file").await.unwrap();
    assert_eq!(file.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    for name in ["demo-baseline", "demo-adapter-nfs", "demo-adapter-smb"] {
        owned(&policies.get(name).await.unwrap().metadata);
    }
    let baseline = policies.get("demo-baseline").await.unwrap().spec.unwrap();
    let api_rule = &baseline.ingress.unwrap()[0];
    let operator_peer = &api_rule.from.as_ref().unwrap()[0];
    assert_eq!(
        operator_peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        "dittofs-system"
    );
    assert_eq!(api_rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::String("api".into())));

    // Generated credentials: present, strong, and not owned (they outlive the CR like the PVCs).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let jwt = secrets.get("demo-jwt-secret").await.unwrap();
    assert!(jwt.owner_references().is_empty());
    assert!(jwt.data.unwrap()["jwt-secret"].0.len() >= 32);
    assert!(secrets.get("demo-admin-bootstrap-credentials").await.unwrap().owner_references().is_empty());

    // Status: observed, rendered, with endpoints. (Tier api has no StatefulSet controller: Pending.)
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let status = eventually("status written", DEADLINE, || async {
        servers.get("demo").await.ok()?.status.filter(|s| s.config_hash.is_some())
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.config_hash.as_deref(), Some(checksum(&sts).as_str()));
    let endpoints = status.endpoints.unwrap();
    assert_eq!(endpoints.file.as_deref(), Some(format!("demo-file.{ns}.svc:2049").as_str()));
    assert_eq!(endpoints.clients, Some(format!("pods in namespace {ns}")));
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    for t in ["Ready", "Available", "Progressing", "ConfigReady"] {
        assert!(types.contains(&t), "condition {t} in {types:?}");
    }
    let config_ready = status.conditions.iter().find(|c| c.type_ == "ConfigReady").unwrap();
    assert_eq!(config_ready.status, "True");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_change_updates_config_and_checksum_only() {
    let (client, ns) = setup("change").await;
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, MINIMAL).await;
    let before_sts = wait_for_sts(&client, &ns, "demo").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    eventually("status written", DEADLINE, || async { servers.get("demo").await.ok()?.status?.config_hash }).await;
    let before = versions(&client, &ns).await;

    servers
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "DEBUG"}}})))
        .await
        .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let after_sts = eventually("checksum changed", DEADLINE, || async {
        let sts = sts_api.get("demo").await.ok()?;
        (checksum(&sts) != checksum(&before_sts)).then_some(sts)
    })
    .await;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("demo-config").await.unwrap();
    assert!(cm.data.unwrap()["config.yaml"].contains("DEBUG"));
    let after = versions(&client, &ns).await;
    let changed: Vec<&String> = before.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert_eq!(
        changed,
        vec!["ConfigMap/demo-config", "StatefulSet/demo"],
        "only the config and the pod template change"
    );
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());

    // An edit that changes no rendered byte changes no checksum.
    servers
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "debug"}}})))
        .await
        .unwrap();
    let generation = servers.get("demo").await.unwrap().metadata.generation;
    eventually("edit observed", DEADLINE, || async {
        (servers.get("demo").await.ok()?.status?.observed_generation == generation).then_some(())
    })
    .await;
    assert_eq!(checksum(&sts_api.get("demo").await.unwrap()), checksum(&after_sts));
    operator.shutdown().await;
}

/// A change of `demo` that renders nothing new (an annotation): it only wakes the operator up.
async fn poke(servers: &Api<DittoServer>) {
    let annotation = json!({"metadata": {"annotations": {"example.com/poke": "1"}}});
    servers.patch("demo", &PatchParams::default(), &Patch::Merge(annotation)).await.unwrap();
}

/// Settled: every managed object of `demo` matches (InSync True).
async fn settled(servers: &Api<DittoServer>) {
    eventually("settled", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_of_unchanged_cr_writes_nothing() {
    let (client, ns) = setup("resync").await;
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, MINIMAL).await;
    wait_for_sts(&client, &ns, "demo").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    settled(&servers).await;
    operator.shutdown().await;

    let before = versions(&client, &ns).await;
    let cr_before = servers.get("demo").await.unwrap();
    let log = RequestLog::default();
    let counted = counting_client(log.clone()).await;
    let ctx = Arc::new(Context::new(counted, Settings::for_tests(Some(ns.clone()))));
    controller::reconcile(Arc::new(cr_before.clone()), ctx.clone()).await.expect("reconcile");
    log.take();
    let started = std::time::Instant::now();
    controller::reconcile(Arc::new(cr_before.clone()), ctx).await.expect("reconcile");
    let took = started.elapsed();
    assert_eq!(versions(&client, &ns).await, before, "no managed object was written");

    // What a steady-state reconcile costs: reads and server-side dry-runs only, never a write.
    let requests = log.take();
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| {
            let read = r.starts_with("GET ");
            let dry_run = r.starts_with("PATCH ") && r.contains("dryRun=All");
            !(read || dry_run)
        })
        .collect();
    assert!(writes.is_empty(), "a steady-state reconcile wrote: {writes:#?}");
    let dry_runs = requests.iter().filter(|r| r.starts_with("PATCH ")).count();
    eprintln!(
        "steady-state reconcile: {} requests ({dry_runs} dry-run applies, {} reads) in {took:?}",
        requests.len(),
        requests.len() - dry_runs
    );
    let cr_after = servers.get("demo").await.unwrap();
    assert_eq!(cr_after.resource_version(), cr_before.resource_version(), "status not rewritten");
}

/// With the controller's caches, a pass over a settled DittoServer asks the API server nothing:
/// its objects, Secrets and claims are read from what the watches keep, and no dry run is
/// repeated for a rendering already shown to match the live object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_pass_makes_no_api_request() {
    let (client, ns) = setup("quiet").await;
    let log = RequestLog::default();
    let counted = counting_client(log.clone()).await;
    let operator = Operator::start_with(&counted, Settings::for_tests(Some(ns.clone())));
    create(&client, &ns, MINIMAL).await;
    wait_for_sts(&client, &ns, "demo").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    settled(&servers).await;
    operator.quiescent().await;
    let converged = log.take();
    let before = operator.ctx.metrics.reconciles_with("ok");
    let (rendered, reused) =
        (operator.ctx.metrics.renders_with("rendered"), operator.ctx.metrics.renders_with("reused"));

    // A change of the CR that renders nothing new (an annotation) wakes it up.
    poke(&servers).await;
    eventually("a pass after the poke", DEADLINE, || async {
        (operator.ctx.metrics.reconciles_with("ok") > before).then_some(())
    })
    .await;
    let requests: Vec<String> = log.take().into_iter().filter(|r| !r.contains("watch=true")).collect();
    assert!(requests.is_empty(), "a quiet pass asked the API server: {requests:#?}");
    // Nor rendered: the kept render, planned from what its plan applied.
    assert_eq!(operator.ctx.metrics.renders_with("rendered"), rendered, "a quiet pass rendered");
    assert!(operator.ctx.metrics.renders_with("reused") > reused);
    for r in &converged {
        eprintln!("  {r}");
    }
    let writes = converged.iter().filter(|r| !r.starts_with("GET ") && !r.contains("dryRun")).count();
    let dry_runs = converged.iter().filter(|r| r.contains("dryRun")).count();
    eprintln!(
        "creating and settling one DittoServer: {} requests ({writes} writes, {dry_runs} dry runs, {} watch requests)",
        converged.len(),
        converged.iter().filter(|r| r.contains("watch=true")).count()
    );
    operator.shutdown().await;
}

/// An owned object edited behind the operator's back, while nothing else changed (the pass that
/// sees it would otherwise reuse its kept render), is put back as rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owned_object_edited_behind_the_operators_back_is_put_back() {
    let (client, ns) = setup("drift").await;
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, MINIMAL).await;
    wait_for_sts(&client, &ns, "demo").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    settled(&servers).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let rendered = config_maps.get("demo-config").await.unwrap().data.unwrap()["config.yaml"].clone();
    // Settled: a pass over it reuses the kept render.
    let reused = operator.ctx.metrics.renders_with("reused");
    poke(&servers).await;
    eventually("a pass reusing the kept render", DEADLINE, || async {
        (operator.ctx.metrics.renders_with("reused") > reused).then_some(())
    })
    .await;

    let edit = json!({"data": {"config.yaml": "logging: {level: DEBUG}\n"}});
    config_maps.patch("demo-config", &PatchParams::default(), &Patch::Merge(edit)).await.unwrap();
    eventually("the config put back", DEADLINE, || async {
        let data = config_maps.get("demo-config").await.ok()?.data?;
        (data["config.yaml"] == rendered).then_some(())
    })
    .await;
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_referenced_secret_rolls_the_pod() {
    let (client, ns) = setup("rotate").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut jwt = Secret::default();
    jwt.metadata.name = Some("my-jwt".into());
    jwt.data = Some(BTreeMap::from([("key".into(), ByteString(b"0123456789abcdef0123456789abcdef-one".to_vec()))]));
    secrets.create(&PostParams::default(), &jwt).await.unwrap();
    let operator = Operator::start(&client, &ns);
    create(
        &client,
        &ns,
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n  identity:\n    jwt:\n      secretRef: {name: my-jwt, key: key}\n",
    )
    .await;
    let before = checksum(&wait_for_sts(&client, &ns, "demo").await);
    assert!(
        secrets.get_opt("demo-jwt-secret").await.unwrap().is_none(),
        "no JWT Secret generated when one is referenced"
    );

    secrets
        .patch(
            "my-jwt",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"key": "0123456789abcdef0123456789abcdef-two"}})),
        )
        .await
        .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("checksum follows the rotated Secret", DEADLINE, || async {
        (checksum(&sts_api.get("demo").await.ok()?) != before).then_some(())
    })
    .await;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("demo-config").await.unwrap();
    assert!(!cm.data.unwrap()["config.yaml"].contains("abcdef"), "the key never reaches the ConfigMap");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_service_is_pruned_when_metrics_are_turned_off() {
    let (client, ns) = setup("prune").await;
    let operator = Operator::start(&client, &ns);
    create(
        &client,
        &ns,
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n  metrics: {enabled: true}\n",
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    eventually("metrics Service created", DEADLINE, || async { services.get_opt("demo-metrics").await.ok().flatten() })
        .await;
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"metrics": {"enabled": false}}})))
        .await
        .unwrap();
    eventually("metrics Service pruned", DEADLINE, || async {
        services.get_opt("demo-metrics").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(services.get_opt("demo-file").await.unwrap().is_some(), "other Services stay");
    operator.shutdown().await;
}

/// Creates DittoServer `demo` with `database` (a `spec.database` block): it must report
/// DatabaseReady=False with `reason` and apply no StatefulSet.
async fn held_for_the_database(client: &Client, ns: &str, database: &str, reason: &str) -> Condition {
    create(client, ns, &format!("{MINIMAL}{database}")).await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), ns);
    let condition = eventually(&format!("DatabaseReady=False {reason}"), DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "DatabaseReady" && c.status == "False" && c.reason == reason)
    })
    .await;
    assert!(Api::<StatefulSet>::namespaced(client.clone(), ns).get_opt("demo").await.unwrap().is_none());
    condition
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_postgres_secret_is_reported_and_nothing_is_applied() {
    let (client, ns) = setup("pgmissing").await;
    let operator = Operator::start(&client, &ns);
    let database = "  database:\n    postgresSecretRef: {name: db}\n";
    let condition = held_for_the_database(&client, &ns, database, "DatabaseSecretMissing").await;
    assert!(condition.message.contains("spec.database.postgresSecretRef"), "{}", condition.message);

    // The Secret appears: the watch on Secrets brings the server up with PostgreSQL.
    let mut db = Secret::default();
    db.metadata.name = Some("db".into());
    db.string_data = Some(BTreeMap::from([
        ("host".to_string(), "pg.example".to_string()),
        ("dbname".to_string(), "dittofs".to_string()),
        ("user".to_string(), "dittofs".to_string()),
        ("password".to_string(), "s3cr3t-value".to_string()),
    ]));
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &db).await.unwrap();
    wait_for_sts(&client, &ns, "demo").await;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("demo-config").await.unwrap();
    let config = &cm.data.unwrap()["config.yaml"];
    assert!(config.contains("pg.example") && config.contains("require"), "{config}");
    assert!(!config.contains("s3cr3t-value"), "password never in the ConfigMap");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_pod_is_admitted_by_pod_security_restricted() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "pss", &[("pod-security.kubernetes.io/enforce", "restricted")]).await;
    // With PostgreSQL, so the wait-for-postgres init container is checked too.
    let mut db = Secret::default();
    db.metadata.name = Some("db".into());
    db.string_data = Some(BTreeMap::from([
        ("host".to_string(), "pg.example".to_string()),
        ("dbname".to_string(), "dittofs".to_string()),
        ("user".to_string(), "dittofs".to_string()),
        ("password".to_string(), "secret-password".to_string()),
    ]));
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &db).await.unwrap();
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi, contentSize: 20Gi}\n  database:\n    postgresSecretRef: {name: db}\n").await;
    let sts = wait_for_sts(&client, &ns, "demo").await;
    operator.shutdown().await;
    let init = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().init_containers.clone().unwrap_or_default();
    assert_eq!(init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["wait-for-postgres"]);

    let spec = sts.spec.unwrap();
    let mut pod_spec = spec.template.spec.unwrap();
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.unwrap() {
        let name = claim.metadata.name.unwrap();
        volumes.push(
            serde_json::from_value(
                json!({"name": name, "persistentVolumeClaim": {"claimName": format!("{name}-demo-0")}}),
            )
            .unwrap(),
        );
    }
    let mut pod = Pod { spec: Some(pod_spec), ..Default::default() };
    pod.metadata.name = Some("demo-0".into());
    pod.metadata.labels = spec.template.metadata.unwrap().labels;
    let params = PostParams { dry_run: true, ..Default::default() };
    let result = Api::<Pod>::namespaced(client.clone(), &ns).create(&params, &pod).await;
    assert!(result.is_ok(), "restricted profile rejected the pod: {result:?}");

    // And the check is real: a privileged container is refused in the same namespace.
    let mut bad = pod.clone();
    bad.spec.as_mut().unwrap().containers[0].security_context.as_mut().unwrap().allow_privilege_escalation = Some(true);
    let err = Api::<Pod>::namespaced(client.clone(), &ns).create(&params, &bad).await.unwrap_err();
    assert!(err.to_string().contains("allowPrivilegeEscalation"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_object_of_someone_else_is_never_taken_over() {
    let (client, ns) = setup("adopt").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut theirs = ConfigMap::default();
    theirs.metadata.name = Some("demo-config".into());
    theirs.data = Some(BTreeMap::from([("owner".to_string(), "another team".to_string())]));
    cms.create(&PostParams::default(), &theirs).await.unwrap();
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, MINIMAL).await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let condition = eventually("InSync=False ObjectNotOwned", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "InSync" && c.reason == "ObjectNotOwned")
    })
    .await;
    assert!(condition.message.contains("ConfigMap/demo-config"), "{}", condition.message);
    let cm = cms.get("demo-config").await.unwrap();
    assert_eq!(cm.data.unwrap()["owner"], "another team", "their data untouched");
    assert!(cm.metadata.owner_references.is_none());
    assert!(Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.unwrap().is_none());
    operator.shutdown().await;
}

/// Without an operator-created PerconaPGCluster, owner references clean up everything: no
/// finalizer, so deleting needs no operator (nor holds a namespace's deletion once it is gone).
/// (That credentials outlive it is tests/e2e.rs's: this control plane has no garbage collector.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_percona_no_finalizer_holds_the_deletion() {
    let (client, ns) = setup("nofinalizer").await;
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, MINIMAL).await;
    wait_for_sts(&client, &ns, "demo").await;
    operator.shutdown().await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    assert!(servers.get("demo").await.unwrap().finalizers().is_empty(), "no finalizer");

    servers.delete("demo", &Default::default()).await.unwrap();
    assert!(servers.get_opt("demo").await.unwrap().is_none(), "deleted at once, with no operator running");
}

/// With `spec.percona.enabled` the finalizer guards the cluster the operator creates (which has
/// no owner reference). This binary has no Percona CRD: the server is held, but the finalizer
/// is added, and the deletion runs through the cleanup. (That it comes before the cluster is
/// tests/percona.rs's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_percona_the_deletion_waits_for_the_operator() {
    use k8s_openapi::api::events::v1::Event;
    let (client, ns) = setup("finalizer").await;
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, &format!("{MINIMAL}  percona: {{enabled: true}}\n")).await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    eventually("finalizer added", DEADLINE, || async {
        let cr = servers.get("demo").await.ok()?;
        cr.finalizers().iter().any(|f| f == "dittofs.dittofs.com/finalizer").then_some(())
    })
    .await;
    // Turning Percona off keeps the finalizer: the cluster it may have made outlives the setting.
    let off = serde_json::json!({"spec": {"percona": {"enabled": false}}});
    servers.patch("demo", &PatchParams::default(), &Patch::Merge(&off)).await.unwrap();
    eventually("the pass over enabled: false done", DEADLINE, || async {
        let cr = servers.get("demo").await.ok()?;
        (cr.status?.observed_generation == cr.metadata.generation).then_some(())
    })
    .await;
    operator.shutdown().await;
    assert!(servers.get("demo").await.unwrap().finalizers().iter().any(|f| f == controller::FINALIZER));

    // Without the operator the deletion waits (the finalizer holds it) ...
    servers.delete("demo", &Default::default()).await.unwrap();
    let held = servers.get("demo").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());

    // ... an operator in --dry-run says why it waits, and leaves the finalizer ...
    let observer = Operator::start_with(&client, Settings { dry_run: true, ..Settings::for_tests(Some(ns.clone())) });
    let waiting = eventually("Degraded=True CleanupHeldBack, phase Deleting", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        let found = status.conditions.into_iter().find(|c| c.type_ == "Degraded" && c.reason == "CleanupHeldBack")?;
        (status.phase == Some(dittofs_operator::crd::Phase::Deleting)).then_some(found)
    })
    .await;
    assert!(waiting.message.contains("--dry-run"), "{}", waiting.message);
    observer.shutdown().await;
    assert!(servers.get("demo").await.unwrap().finalizers().iter().any(|f| f == controller::FINALIZER));

    // ... and completes once the operator runs.
    let operator = Operator::start(&client, &ns);
    eventually("DittoServer deleted", DEADLINE, || async {
        servers.get_opt("demo").await.ok()?.is_none().then_some(())
    })
    .await;
    let events = Api::<Event>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap().items;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("Deleting")), "a Deleting Event is recorded");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percona_without_its_crd_is_reported_and_the_rest_keeps_working() {
    // This test binary never installs the Percona CRD.
    let (client, ns) = setup("nopercona").await;
    let operator = Operator::start(&client, &ns);
    let database = "  database:\n    percona: {clusterName: pg}\n";
    let condition = held_for_the_database(&client, &ns, database, "PerconaNotInstalled").await;
    assert!(condition.message.contains("perconapgclusters.pgv2.percona.com"), "{}", condition.message);
    // Another DittoServer in the same operator is unaffected.
    create(&client, &ns, &MINIMAL.replace("name: demo", "name: other")).await;
    wait_for_sts(&client, &ns, "other").await;
    operator.shutdown().await;
}

/// The checksum is an HMAC keyed by a Secret the operator creates once per namespace: a
/// restarted operator (a new process, a new replica) finds the same key, so no pod rolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checksum_key_is_created_once_and_survives_a_restart() {
    let (client, ns) = setup("checksumkey").await;
    let operator = Operator::start(&client, &ns);
    create(&client, &ns, MINIMAL).await;
    let first = checksum(&wait_for_sts(&client, &ns, "demo").await);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key =
        secrets.get("dittofs-operator-checksum-key").await.expect("key Secret created in the DittoServer's namespace");
    assert_eq!(key.data.unwrap()["key"].0.len(), 32);
    operator.shutdown().await;

    let restarted = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})))
        .await
        .unwrap();
    eventually("reconciled by the restarted operator", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        let generation = servers.get("demo").await.ok()?.metadata.generation;
        (status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True")
            && status.observed_generation == generation)
            .then_some(())
    })
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert_eq!(checksum(&sts.get("demo").await.unwrap()), first, "same key, same checksum: no roll");
    restarted.shutdown().await;
}

/// Repeats of an Event on the same object fold into that Event's series (one object, its count
/// raised); another Event on it is an object of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_is_counted_in_one_series() {
    use dittofs_operator::controller::recorder::Recorder;
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType};

    let (client, ns) = setup("events").await;
    let recorder = Recorder::new(client.clone(), "dittofs-operator".into(), None);
    let regarding = ObjectReference {
        api_version: Some("dittofs.dittofs.com/v1alpha1".into()),
        kind: Some("DittoServer".into()),
        name: Some("demo".into()),
        namespace: Some(ns.clone()),
        uid: Some("0b5e0c1e-uid".into()),
        ..Default::default()
    };
    let event = |reason: &str, action: &str| Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(format!("{reason} {action}")),
        action: action.into(),
        secondary: None,
    };
    for _ in 0..3 {
        recorder.publish(&event("Held", "Reconcile-a"), &regarding).await.unwrap();
    }
    recorder.publish(&event("Held", "Reconcile-b"), &regarding).await.unwrap();

    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    let mut listed = events.list(&Default::default()).await.unwrap().items;
    listed.sort_by_key(|e| e.action.clone());
    let seen: Vec<_> = listed
        .iter()
        .map(|e| (e.action.as_deref().unwrap(), e.series.as_ref().map(|s| s.count), e.type_.as_deref().unwrap()))
        .collect();
    assert_eq!(seen, vec![("Reconcile-a", Some(3), "Warning"), ("Reconcile-b", None, "Warning")]);
    assert_eq!(listed[0].regarding.as_ref().and_then(|r| r.uid.as_deref()), Some("0b5e0c1e-uid"));
    assert_eq!(recorder.series_kept(), 2);
}
