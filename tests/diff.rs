//! Diff before every change, against a real apiserver: no-op = nothing, an edit = exactly its
//! lines, Secret values never shown, server defaults never differences, paused CRs hold changes.

mod support;

use std::sync::Arc;

use dittofs_operator::cmd::diff::{self, DiffArgs, OutputFormat};
use dittofs_operator::controller::{self, Context};
use dittofs_operator::crd::DittoServer;
use dittofs_operator::diff::Action;
use dittofs_operator::settings::Settings;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::*;

const DEMO: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n";

fn args(ns: &str) -> DiffArgs {
    DiffArgs {
        name: Some("demo".into()),
        file: None,
        namespace: Some(ns.into()),
        kubeconfig: None,
        output: OutputFormat::Text,
        read: dittofs_operator::settings::ReadArgs {
            dittofs_api: dittofs_operator::settings::DittoApiArgs { dittofs_api: "off".into() },
            ..Default::default()
        },
    }
}

async fn running_demo(prefix: &str) -> (Client, String) {
    let (client, ns) = setup(prefix).await;
    let operator = Operator::start(&client, &ns);
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, DEMO))
        .await
        .unwrap();
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    eventually("in sync", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True").then_some(())
    })
    .await;
    operator.shutdown().await;
    (client, ns)
}

async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_shows_nothing_and_records_no_event() {
    let (client, ns) = running_demo("diffnoop").await;
    let changes = diff::changes(&client, &args(&ns)).await.unwrap();
    assert!(changes.is_empty(), "server defaults or generated fields showed as differences: {changes:#?}");

    // A resync of the unchanged CR: no write, no new Event.
    let before = events(&client, &ns).await.len();
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let cr = servers.get("demo").await.unwrap();
    let rv = cr.resource_version();
    let ctx = Arc::new(Context::new(client.clone(), Settings::for_tests(Some(ns.clone()))));
    controller::reconcile(Arc::new(cr), ctx).await.expect("reconcile");
    assert_eq!(servers.get("demo").await.unwrap().resource_version(), rv, "status untouched");
    assert_eq!(events(&client, &ns).await.len(), before, "no Event for a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_change_shows_exactly_the_image_lines_and_is_applied_with_an_event() {
    let (client, ns) = running_demo("diffimage").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"image": "marmos91c/dittofs:v0.29.1"}})))
        .await
        .unwrap();

    let changes = diff::changes(&client, &args(&ns)).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let sts = &changes[0];
    assert_eq!(sts.reference, "StatefulSet/demo");
    assert_eq!(sts.action, Action::Update);
    assert_eq!(sts.paths, ["spec.template.spec.containers[0].image"]);
    let text = sts.text.to_string();
    assert!(
        text.starts_with(&format!(
            "diff -u -N LIVE/apps.v1.StatefulSet.{ns}.demo MERGED/apps.v1.StatefulSet.{ns}.demo\n"
        )),
        "{text}"
    );
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++"))
        .collect();
    assert_eq!(changed.len(), 2, "{text}");
    assert!(changed[0].starts_with('-') && changed[0].ends_with("image: marmos91c/dittofs:v0.29.0"), "{text}");
    assert!(changed[1].starts_with('+') && changed[1].ends_with("image: marmos91c/dittofs:v0.29.1"), "{text}");
    let json = diff::to_json(&changes);
    assert!(json.contains("\"spec.template.spec.containers[0].image\""), "{json}");

    let operator = Operator::start(&client, &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("image applied", DEADLINE, || async {
        let sts = sts_api.get("demo").await.ok()?;
        (sts.spec?.template.spec?.containers[0].image.as_deref() == Some("marmos91c/dittofs:v0.29.1")).then_some(())
    })
    .await;
    let event = eventually("Updated event", DEADLINE, || async {
        events(&client, &ns).await.into_iter().find(|e| e.reason.as_deref() == Some("Updated"))
    })
    .await;
    assert!(event.note.unwrap().contains("StatefulSet/demo: spec.template.spec.containers[0].image"));
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_appear_in_a_diff() {
    let (client, ns) = running_demo("diffsecret").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let jwt = secrets.get("demo-jwt-secret").await.unwrap();
    let value = String::from_utf8(jwt.data.unwrap()["jwt-secret"].0.clone()).unwrap();
    // Delete it: the operator would re-create it, and the diff shows that with the value masked.
    secrets.delete("demo-jwt-secret", &Default::default()).await.unwrap();
    let changes = diff::changes(&client, &args(&ns)).await.unwrap();
    let secret = changes.iter().find(|c| c.reference == "Secret/demo-jwt-secret").expect("Secret re-created");
    assert_eq!(secret.action, Action::Create);
    let all: String = changes.iter().map(|c| c.text.to_string()).collect();
    assert!(all.contains("jwt-secret: \"*** (after)\""), "{all}");
    assert!(!all.contains(&value), "the old value leaked");
    assert!(!all.contains("generated-by-the-operator"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_cr_holds_its_change_and_reports_it_until_unpaused() {
    let (client, ns) = running_demo("diffpause").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let before = sts_api.get("demo").await.unwrap().resource_version();
    servers
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": "paused"}}, "spec": {"image": "marmos91c/dittofs:v0.29.1"}})),
        )
        .await
        .unwrap();
    let operator = Operator::start(&client, &ns);
    let condition = eventually("InSync=False", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "InSync" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason, "Paused");
    assert!(
        condition.message.contains("StatefulSet/demo (update: spec.template.spec.containers[0].image)"),
        "{}",
        condition.message
    );
    assert_eq!(sts_api.get("demo").await.unwrap().resource_version(), before, "nothing applied while paused");

    servers
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": null}}})),
        )
        .await
        .unwrap();
    eventually("applied after unpausing", DEADLINE, || async {
        let sts = sts_api.get("demo").await.ok()?;
        (sts.spec?.template.spec?.containers[0].image.as_deref() == Some("marmos91c/dittofs:v0.29.1")).then_some(())
    })
    .await;
    eventually("InSync=True", DEADLINE, || async {
        let status = servers.get("demo").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "InSync" && c.status == "True").then_some(())
    })
    .await;
    operator.shutdown().await;
}

fn run_diff(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dittofs-operator"))
        .arg("diff")
        .args(args)
        .arg("--kubeconfig")
        .arg(&cluster().kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_command_exit_codes() {
    let (client, ns) = running_demo("diffcli").await;
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || run_diff(&["demo", "-n", &ns])
    })
    .await
    .unwrap();
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");

    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "DEBUG"}}})))
        .await
        .unwrap();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || run_diff(&["demo", "-n", &ns])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains(&format!("--- LIVE/v1.ConfigMap.{ns}.demo-config")), "{stdout}");
    assert!(stdout.contains("+      level: \"DEBUG\""), "{stdout}");

    // -f: the file's spec against the cluster, as JSON for scripts.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cr.yaml");
    std::fs::write(&file, DEMO.replace("metadataSize: 10Gi}", "metadataSize: 10Gi}\n  smb: {enabled: false}")).unwrap();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || run_diff(&["-f", file.to_str().unwrap(), "-n", &ns, "-o", "json"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stderr}");
    let items: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let objects: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["object"].as_str().unwrap()).collect();
    assert!(objects.contains(&"Service/demo-file") && objects.contains(&"StatefulSet/demo"), "{stdout}");

    let (code, _, stderr) = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || run_diff(&["nothere", "-n", &ns])
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothere"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_operator_writes_nothing_and_reports_pending_changes() {
    let (client, ns) = setup("dryrun").await;
    let settings = Settings { dry_run: true, ..Settings::for_tests(Some(ns.clone())) };
    let operator = Operator::start_with(&client, settings);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, DEMO)).await.unwrap();
    let condition = eventually("InSync=False", DEADLINE, || async {
        servers
            .get("demo")
            .await
            .ok()?
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "InSync" && c.status == "False")
    })
    .await;
    operator.shutdown().await;
    assert_eq!(condition.reason, "DryRun");
    assert!(condition.message.contains("StatefulSet/demo (create)"), "{}", condition.message);
    assert!(condition.message.contains("ConfigMap/demo-config (create)"), "{}", condition.message);
    assert!(Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.unwrap().is_none());
    assert!(Api::<Secret>::namespaced(client.clone(), &ns).get_opt("demo-jwt-secret").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_cr_with_missing_credentials_settles() {
    let (client, ns) = running_demo("pausesettle").await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dittofs.dittofs.com/reconcile": "paused"}}})),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).delete("demo-jwt-secret", &Default::default()).await.unwrap();
    let ctx = Arc::new(Context::new(client.clone(), Settings::for_tests(Some(ns.clone()))));
    controller::reconcile(Arc::new(servers.get("demo").await.unwrap()), ctx.clone()).await.unwrap();
    let settled = servers.get("demo").await.unwrap();
    controller::reconcile(Arc::new(settled.clone()), ctx).await.unwrap();
    let again = servers.get("demo").await.unwrap();
    assert_eq!(again.resource_version(), settled.resource_version(), "a held-back pass writes the same status");
    assert!(Api::<Secret>::namespaced(client.clone(), &ns).get_opt("demo-jwt-secret").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_gets_an_event_with_its_own_paths() {
    let (client, ns) = running_demo("events").await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    for (patch, path) in [
        (json!({"spec": {"image": "marmos91c/dittofs:v0.29.1"}}), "spec.template.spec.containers[0].image"),
        (
            json!({"spec": {"adapterServices": {"annotations": {"team": "storage"}}}}),
            "Service/demo-file: metadata.annotations",
        ),
    ] {
        servers.patch("demo", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        eventually(&format!("an Updated event naming {path}"), DEADLINE, || async {
            events(&client, &ns)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Updated") && e.note.as_deref().is_some_and(|n| n.contains(path)))
        })
        .await;
    }
    operator.shutdown().await;
}
