//! Plan and apply: whether the cluster can take the rendered objects (a StorageClass, the CRD
//! of an optional kind, someone else's object in the way), the dry-run plan, and the writes the
//! mode allows.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::{Context, Error, Stop, writes};
use crate::apply;
use crate::conditions::{Decided, IN_SYNC};
use crate::crd::DittoServer;
use crate::decide::{self, Mode, Writes};
use crate::discover::Discovered;
use crate::gather::read_error;
use crate::health;
use crate::kinds::Kind;
use crate::names::{IMMUTABLE_CHANGE_ANNOTATION, RECREATE};
use crate::overrides::Effective;
use crate::render::{Renderer, Rendering};

/// What a pass that got as far as planning leaves for the status step.
pub struct Synced {
    /// TemplatesReady, ConfigReady, DatabaseReady (PostgreSQL only) and InSync.
    pub decided: Vec<Decided>,
    /// As it is after this pass's writes.
    pub stateful_set: Option<StatefulSet>,
    pub file_service: Option<Service>,
    /// The StorageClass the spec names, when it does not exist.
    pub missing_class: Option<String>,
    pub mode: Mode,
}

/// Plans `rendered` against the cluster and writes what differs, where `mode` allows.
/// `Stop::Held`: nothing can be applied, for a reason the hold names.
pub async fn sync(
    ctx: &Context,
    server: &DittoServer,
    mode: Mode,
    rendering: &Rendering,
    templates_ready: Decided,
) -> Result<Synced, Stop> {
    let rendered = &*rendering.rendered;
    let name = server.name_any();
    let namespace = server.namespace_or_default();
    let owner = server.controller_owner_ref(&()).expect("DittoServer has a uid once stored");
    let storage_class = server.spec.storage.storage_class_name.as_deref();
    let reads = ctx.reads();
    let missing_class =
        health::storage_class_missing(reads, storage_class).await.map_err(read_error("StorageClass"))?;
    // A template may render a kind whose CRD this cluster lacks (ServiceMonitor): say so, apply nothing.
    for kind in Kind::ALL {
        let Some(crd) = kind.optional_crd() else { continue };
        let Some((_, object)) = rendered.listing.iter().find(|(k, _)| k == kind) else { continue };
        let crds = ApiResource::erase::<CustomResourceDefinition>(&());
        if !reads.exists(&crds, "", crd).await.map_err(read_error("CustomResourceDefinition"))? {
            return Err(Stop::Held(decide::kind_not_installed(&format!("{}/{object}", kind.name()), crd)));
        }
    }
    let mut objects = rendered.objects.clone();
    let mut held_back = None;
    if let Some(missing) = &missing_class {
        let condition = health::storage_class_condition(missing);
        writes::publish(ctx, server, EventType::Warning, &condition.reason, &condition.message).await;
        // Claims of a missing class never bind: do not create the StatefulSet until the class exists.
        let sts = Kind::StatefulSet.resource();
        if !reads.exists(&sts, &namespace, &name).await.map_err(read_error("StatefulSet"))? {
            objects.retain(|o| o.managed_kind() != Kind::StatefulSet);
            held_back = Some(format!("StatefulSet/{name} is not created until StorageClass {missing:?} exists"));
        }
    }
    let planned = match &rendering.settled {
        // The objects are as this render's last plan applied them (the StatefulSet among them,
        // so none is held back): nothing to write, no object needed.
        Some(set) => apply::settled_plan(reads, &namespace, &name, set).await,
        None => apply::plan(reads, &namespace, &name, Some(&owner), &objects, true).await,
    };
    let plan = match planned {
        Ok(plan) => plan,
        Err(conflict @ apply::ApplyError::NotOwned { .. }) => {
            return Err(Stop::Held(decide::not_owned(templates_ready, conflict.to_string())));
        }
        Err(e) => return Err(e.into()),
    };
    // What a later pass over the same render can plan from, once it is in the cluster.
    let applied_set =
        if rendering.settled.is_none() && held_back.is_none() { plan.applied_set(&owner.uid) } else { None };
    let file_service = plan.live_file_service();
    let mut decided = vec![templates_ready, decide::config_ready(server, rendered)];
    decided.extend(decide::database_ready(server, rendered));
    let step = decide::writes(&plan, mode);
    decided.push(decide::in_sync(server, step, &plan, mode, held_back.as_deref()));
    for rejected in &plan.rejected {
        let note = format!("{} was refused by the API server: {}", rejected.reference, rejected.message);
        writes::publish(ctx, server, EventType::Warning, "ApplyRejected", &note).await;
    }
    if decide::stateful_set_to_recreate(server, &plan, mode).is_some() {
        recreate_stateful_set(ctx, server, &namespace).await?;
    }
    let stateful_set = match step {
        Writes::UpToDate => {
            ctx.metrics.applied(0, plan.objects.len());
            if let Some(set) = applied_set {
                rendering.note_applied(set);
            }
            plan.live_stateful_set()
        }
        Writes::HoldBack => {
            for change in plan.changes() {
                info!(object = %change.reference, action = ?change.action, diff = %change.text, "change held back");
            }
            plan.live_stateful_set()
        }
        Writes::Write => {
            for change in plan.changes() {
                info!(object = %change.reference, action = ?change.action, paths = ?change.paths, diff = %change.text, "applying change");
            }
            let skipped = plan.objects.len() - plan.changes().len().min(plan.objects.len());
            let outcome = writes::apply_plan(ctx, server, &namespace, plan).await?;
            if !outcome.rejected.is_empty() {
                // A create the API server refused: reported like a refused dry run.
                for rejected in &outcome.rejected {
                    let note = format!("{} was refused by the API server: {}", rejected.reference, rejected.message);
                    writes::publish(ctx, server, EventType::Warning, "ApplyRejected", &note).await;
                }
                let in_sync = decide::rejected_condition(server, &outcome.rejected, &outcome.held);
                decided.retain(|d| d.type_ != IN_SYNC);
                decided.extend(in_sync);
            } else if let Some(set) = applied_set {
                rendering.note_applied(set);
            }
            ctx.metrics.applied(outcome.applied.len(), skipped);
            info!(writes = outcome.applied.len(), checksum = %rendered.checksum, "reconciled");
            outcome.stateful_set
        }
    };
    Ok(Synced { decided, stateful_set, file_service, missing_class, mode })
}

/// Deletes the StatefulSet with orphan propagation, so its pod and every claim stay; the watch
/// on it brings the next pass, which creates it with the new immutable fields. Only the object
/// just read (uid precondition) is deleted.
async fn recreate_stateful_set(ctx: &Context, server: &DittoServer, namespace: &str) -> Result<(), Error> {
    let name = server.name_any();
    let api = Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace);
    let Some(live) = api.get_metadata_opt(&name).await.map_err(read_error(format!("StatefulSet/{name}")))? else {
        return Ok(());
    };
    let reference = format!("StatefulSet/{name}");
    let deleted =
        writes::delete_exactly(&api, &name, live.uid(), Some(PropagationPolicy::Orphan)).await.map_err(|source| {
            apply::ApplyError::Api { action: "deleting (orphan) to re-create", object: reference.clone(), source }
        })?;
    if deleted != writes::Deleted::Done {
        // Gone or replaced meanwhile: the next pass looks again.
        return Ok(());
    }
    let note = format!(
        "Deleted {reference} with --cascade=orphan to re-create it with its new immutable fields ({IMMUTABLE_CHANGE_ANNOTATION}={RECREATE}); its pod and claims stay"
    );
    writes::publish(ctx, server, EventType::Normal, "Recreating", &note).await;
    Ok(())
}

/// Applies just the PerconaPGCluster of `spec.percona.enabled` while it is not ready yet.
/// `Ok(Some(condition))`: it could not be applied for a reason an edit must fix (a broken
/// template, someone else's object in the way); the caller reports it and holds.
pub async fn apply_database_only(
    ctx: &Context,
    server: &DittoServer,
    effective: &Effective,
    discovered: &Discovered,
) -> Result<Option<Decided>, Error> {
    // While the connection is unknown the renderer renders only the database.
    let rendered = match Renderer::new(&effective.templates).render(server, &effective.values, discovered) {
        Ok(r) => r,
        Err(error) => return Ok(Some(decide::render_failure(&error))),
    };
    let namespace = server.namespace_or_default();
    let owner = server.controller_owner_ref(&()).expect("DittoServer has a uid once stored");
    let plan =
        match apply::plan(ctx.reads(), &namespace, &server.name_any(), Some(&owner), &rendered.objects, false).await {
            Ok(plan) => plan,
            Err(conflict @ apply::ApplyError::NotOwned { .. }) => {
                return Ok(Some(Decided::new(IN_SYNC, false, "ObjectNotOwned", conflict.to_string())));
            }
            Err(error) => return Err(error.into()),
        };
    writes::apply_plan(ctx, server, &namespace, plan).await?;
    Ok(None)
}
