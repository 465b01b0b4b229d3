//! Failures the operator must surface on the DittoServer, not only in its log. Tier `full`:
//! re-creating a StatefulSet with orphan propagation needs the garbage collector.

mod support;

use std::collections::BTreeMap;

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::*;

const MINIMAL: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo}\nspec:\n  storage: {metadataSize: 10Gi}\n";

async fn in_sync(servers: &Api<DittoServer>, reason: &str) -> Condition {
    eventually(&format!("InSync {reason}"), DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "InSync" && c.reason == reason)
    })
    .await
}

/// InSync True: just applied, or found in sync by the pass after (which may follow at once).
async fn back_in_sync(servers: &Api<DittoServer>) -> Condition {
    eventually("InSync True", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "InSync" && c.status == "True")
    })
    .await
}

async fn event(client: &Client, ns: &str, reason: &str) -> Event {
    let events = Api::<Event>::namespaced(client.clone(), ns);
    eventually(&format!("{reason} Event"), DEADLINE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some(reason))
    })
    .await
}

fn access_modes(sts: &StatefulSet) -> Vec<String> {
    let claims = sts.spec.as_ref().unwrap().volume_claim_templates.clone().unwrap_or_default();
    claims[0].spec.as_ref().unwrap().access_modes.clone().unwrap_or_default()
}

/// An operator-values change that reaches the StatefulSet's claim templates (immutable): the
/// refusal is on the CR with the API server's words and the way out; what comes before the
/// StatefulSet still applies; with the opt-in annotation the StatefulSet is re-created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statefulset_is_reported_the_rest_applies_and_the_opt_in_recreates_it() {
    let client = client_of(cluster_tier("full")).await;
    install_crd(&client).await;
    let ns = namespace(&client, "rejected", &[]).await;
    volumes_for(&client, &ns, &["controlplane-demo-0", "metadata-demo-0"]).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, MINIMAL)).await.unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let first = eventually("StatefulSet", DEADLINE, || async { sts_api.get_opt("demo").await.ok().flatten() }).await;
    assert_eq!(access_modes(&first), ["ReadWriteOnce"]);
    back_in_sync(&servers).await;
    let claim_uids = eventually("claims bound", DEADLINE, || async {
        let list = claims.list(&Default::default()).await.ok()?;
        let bound =
            list.items.iter().filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).count();
        (bound == 2).then(|| list.items.iter().map(|c| (c.name_any(), c.uid())).collect::<BTreeMap<_, _>>())
    })
    .await;

    // The operator-wide values move the claims to another access mode, and the CR changes its log level.
    let mut overrides = ConfigMap::default();
    overrides.metadata.name = Some("dittofs-operator-templates".into());
    overrides.data = Some(BTreeMap::from([("values.yaml".into(), "storage: {accessMode: ReadWriteOncePod}\n".into())]));
    Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&PostParams::default(), &overrides).await.unwrap();
    servers
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "DEBUG"}}})))
        .await
        .unwrap();

    let rejected = in_sync(&servers, "ApplyRejected").await;
    assert_eq!(rejected.status, "False");
    assert!(rejected.message.contains("StatefulSet/demo was refused by the API server"), "{}", rejected.message);
    assert!(rejected.message.contains("Forbidden"), "the apiserver's words: {}", rejected.message);
    assert!(rejected.message.contains("dittofs.dittofs.com/on-immutable-change=recreate"), "{}", rejected.message);
    let warning = event(&client, &ns, "ApplyRejected").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    // The ConfigMap comes before the StatefulSet: it still follows the CR.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually("config follows the CR", DEADLINE, || async {
        cms.get("demo-config").await.ok()?.data?.get("config.yaml")?.contains("DEBUG").then_some(())
    })
    .await;
    let kept = sts_api.get("demo").await.unwrap();
    assert_eq!(kept.uid(), first.uid(), "not re-created without the opt-in");
    assert_eq!(access_modes(&kept), ["ReadWriteOnce"]);

    // Opted in: deleted with orphan propagation and created anew with the new claim templates.
    servers
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"dittofs.dittofs.com/on-immutable-change": "recreate"}}}),
            ),
        )
        .await
        .unwrap();
    let recreated = eventually("StatefulSet re-created", DEADLINE, || async {
        let sts = sts_api.get_opt("demo").await.ok().flatten()?;
        (sts.uid() != first.uid()).then_some(sts)
    })
    .await;
    assert_eq!(access_modes(&recreated), ["ReadWriteOncePod"]);
    let note = event(&client, &ns, "Recreating").await.note.unwrap_or_default();
    assert!(note.contains("--cascade=orphan") && note.contains("StatefulSet/demo"), "{note}");
    back_in_sync(&servers).await;
    // Every claim, and so the data, is the same one.
    let after = claims.list(&Default::default()).await.unwrap();
    let after: BTreeMap<_, _> = after.items.iter().map(|c| (c.name_any(), c.uid())).collect();
    assert_eq!(after, claim_uids);
    operator.shutdown().await;
}

/// The generated admin Secret deleted after the server has run: a new password would not work
/// (DittoFS keeps the first one), so the operator says what to do instead of generating one, and
/// picks up the Secret once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_admin_secret_is_reported_not_generated_again() {
    let client = client_of(cluster_tier("full")).await;
    install_crd(&client).await;
    let ns = namespace(&client, "lost-admin", &[]).await;
    let operator = Operator::start(&client, &ns);
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &server(&ns, MINIMAL)).await.unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("StatefulSet", DEADLINE, || async { sts_api.get_opt("demo").await.ok().flatten() }).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let original = secrets.get("demo-admin-bootstrap-credentials").await.unwrap();
    secrets.delete("demo-admin-bootstrap-credentials", &Default::default()).await.unwrap();

    let missing = eventually("ConfigReady=False SecretMissing", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "ConfigReady" && c.reason == "SecretMissing")
    })
    .await;
    assert!(missing.message.contains("Secret demo-admin-bootstrap-credentials is missing"), "{}", missing.message);
    assert!(missing.message.contains("Re-create the Secret"), "{}", missing.message);
    assert!(secrets.get_opt("demo-admin-bootstrap-credentials").await.unwrap().is_none(), "not generated again");

    // Put back with the password DittoFS started with: the server is in order again.
    let mut restored = Secret::default();
    restored.metadata.name = Some("demo-admin-bootstrap-credentials".into());
    restored.data = original.data.clone();
    secrets.create(&PostParams::default(), &restored).await.unwrap();
    eventually("ConfigReady=True", DEADLINE, || async {
        let conditions = servers.get("demo").await.ok()?.status?.conditions;
        conditions.into_iter().find(|c| c.type_ == "ConfigReady" && c.status == "True")
    })
    .await;
    let kept = secrets.get("demo-admin-bootstrap-credentials").await.unwrap();
    assert_eq!(kept.data, original.data, "the operator does not rewrite it");
    operator.shutdown().await;
}
