//! Deletion, behind the finalizer: settle the fate of the Percona database the operator
//! created (deleted only with `deleteWithServer: true`, else orphaned), say so, and leave every
//! PersistentVolumeClaim and generated credential behind on purpose.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::warn;

use super::writes::{self, Deleted, publish};
use super::{Context, Error};
use crate::apply;
use crate::conditions::{self, Decided};
use crate::crd::{DittoServer, DittoServerStatus};
use crate::gather::read_error;
use crate::names::{FINALIZER, Names};
use crate::percona;

/// A deleted DittoServer while the operator runs with `--dry-run`: cleanup and removing the
/// finalizer are held back; say so on the CR.
pub async fn held_back(server: &DittoServer, ctx: &Context) -> Result<Action, Error> {
    if server.finalizers().iter().any(|f| f == FINALIZER) {
        let why = format!(
            "The operator runs with --dry-run: cleanup and removing the finalizer {FINALIZER} are held back until an operator without --dry-run runs"
        );
        report_deletion(ctx, server, Some(("CleanupHeldBack", &why))).await;
    }
    Ok(Action::await_change())
}

/// Deletion: say so, leave data behind on purpose. Owner references let the garbage collector
/// remove the objects we own; PVCs (retained by the StatefulSet) and the generated credentials
/// (not owned) stay, so a DittoServer re-created with the same name finds its data.
pub async fn cleanup(server: &DittoServer, ctx: &Context) -> Result<Action, Error> {
    let name = server.name_any();
    if let Err(error) = settle_database(server, ctx).await {
        // The finalizer stays until the database's fate is settled; say why, on the CR and in an Event.
        let text = format!(
            "Cannot finish deleting: {error}. The finalizer {FINALIZER} stays until this succeeds (retrying with backoff)"
        );
        publish(ctx, server, EventType::Warning, "CleanupFailed", &text).await;
        report_deletion(ctx, server, Some(("CleanupFailed", &text))).await;
        return Err(error);
    }
    let note = format!(
        "Deleting {name}: owned objects are garbage-collected; PersistentVolumeClaims and generated credentials are kept"
    );
    publish(ctx, server, EventType::Normal, "Deleting", &note).await;
    report_deletion(ctx, server, None).await;
    Ok(Action::await_change())
}

/// `phase: Deleting`, Ready=False, and Degraded=True with `blocked`'s reason while cleanup cannot
/// finish. Best effort: the object may be gone from under us once the finalizer is removed.
async fn report_deletion(ctx: &Context, server: &DittoServer, blocked: Option<(&'static str, &str)>) {
    let mut decided = vec![Decided::new(
        conditions::READY,
        false,
        "Deleting",
        "The DittoServer is being deleted; PersistentVolumeClaims and generated credentials are kept",
    )];
    if let Some((reason, why)) = blocked {
        decided.push(Decided::new(conditions::DEGRADED, true, reason, why));
    }
    let previous = server.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = DittoServerStatus {
        phase: Some(crate::crd::Phase::Deleting),
        conditions: conditions::merge_keeping(&previous.conditions, &decided, server.metadata.generation, &now),
        ..previous.clone()
    };
    if !conditions::differs(Some(&previous), &new) {
        return;
    }
    if let Err(error) = writes::status(&ctx.client, server, &new).await {
        warn!(%error, "could not report phase Deleting");
    }
}

/// Whether the DittoServer needs the finalizer: only for the PerconaPGCluster the operator creates
/// for it (`spec.percona.enabled`), which has no owner reference (see [`settle_database`]). Once
/// added, the finalizer stays until deletion: the cluster outlives `enabled` turned off.
pub(super) fn needs_finalizer(server: &DittoServer) -> bool {
    server.spec.percona.as_ref().is_some_and(|p| p.enabled)
}

/// `<name>-postgres`, if the operator created it: deleted with the server only when
/// `spec.percona.deleteWithServer: true`; otherwise orphaned (owner annotation removed) and left
/// running — also when `spec.percona.enabled` was turned off meanwhile. It never has an owner
/// reference, so the garbage collector cannot delete it behind the finalizer's back.
async fn settle_database(server: &DittoServer, ctx: &Context) -> Result<(), Error> {
    let crd = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    if crd.get_metadata_opt(percona::CRD_NAME).await.map_err(read_error("CustomResourceDefinition"))?.is_none() {
        return Ok(());
    }
    let namespace = server.namespace_or_default();
    let name = Names::for_cr(&server.name_any()).percona_cluster;
    let clusters = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &namespace, &percona::api_resource());
    let Some(cluster) = clusters.get_opt(&name).await.map_err(read_error("PerconaPGCluster"))? else { return Ok(()) };
    let uid = server.uid().unwrap_or_default();
    let live = serde_json::to_value(&cluster).expect("objects serialize");
    if !apply::controlled_by(&live, &uid, "PerconaPGCluster") {
        return Ok(());
    }
    let reference = format!("PerconaPGCluster/{name}");
    if percona::deleted_with_server(&server.spec) {
        // Only the object just looked at: never a same-named cluster made meanwhile.
        let deleted = writes::delete_exactly(&clusters, &name, cluster.uid(), None).await.map_err(|source| {
            Error::Apply(apply::ApplyError::Api { action: "deleting", object: reference.clone(), source })
        })?;
        if deleted == Deleted::Replaced {
            // Another cluster of that name was made meanwhile: not this DittoServer's to delete.
            return Ok(());
        }
        publish(
            ctx,
            server,
            EventType::Normal,
            "PerconaDeleted",
            &format!("Deleted {reference} (spec.percona.deleteWithServer)"),
        )
        .await;
    } else {
        // Owner annotation (and an owner reference an earlier build set) removed: released, so a
        // DittoServer re-created with the same name takes it back. Others' owner references stay;
        // the resourceVersion makes the list replacement fail rather than drop a concurrent edit.
        let others: Vec<_> = cluster.owner_references().iter().filter(|o| o.uid != uid).cloned().collect();
        let orphan = json!({"metadata": {
            "resourceVersion": cluster.resource_version(),
            "ownerReferences": if others.is_empty() { serde_json::Value::Null } else { json!(others) },
            "annotations": {apply::OWNER_ANNOTATION: null},
        }});
        writes::merge_patch(&clusters, &name, orphan).await.map_err(|source| {
            Error::Apply(apply::ApplyError::Api { action: "orphaning", object: reference.clone(), source })
        })?;
        publish(
            ctx,
            server,
            EventType::Normal,
            "PerconaOrphaned",
            &format!("Kept {reference}: it outlives the DittoServer (deleteWithServer is not true)"),
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(spec: &str) -> DittoServer {
        let yaml = format!(
            "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {{name: files}}\nspec:\n  storage: {{metadataSize: 1Gi}}\n{spec}"
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    #[test]
    fn only_a_server_whose_percona_cluster_the_operator_creates_needs_the_finalizer() {
        assert!(needs_finalizer(&server("  percona: {enabled: true}\n")));
        assert!(!needs_finalizer(&server("")));
        assert!(!needs_finalizer(&server("  percona: {enabled: false}\n")));
        // A cluster someone else runs is not ours to settle.
        assert!(!needs_finalizer(&server("  database:\n    percona: {clusterName: pg}\n")));
        assert!(!needs_finalizer(&server("  database:\n    postgresSecretRef: {name: db}\n")));
    }
}
