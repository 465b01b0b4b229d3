//! Every write the controller makes to the API server, in one file: the objects of a plan
//! (through [`crate::apply::execute`]) with the Events that say what was written, deletes of
//! exactly the object a pass looked at, status and metadata patches, the checksum key, and
//! Events. What the operator may change in a cluster can be read here.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::warn;

use super::{Context, Error};
use crate::apply::{self, ApplyOutcome, Plan};
use crate::crd::{DittoServer, DittoServerStatus};
use crate::diff::Action as DiffAction;
use crate::gather::{CHECKSUM_KEY_SECRET, ReadError, read_checksum_key};

/// What a delete of exactly one object found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Done,
    /// Already gone (404).
    Gone,
    /// Replaced by another object of the same name meanwhile (409 on the uid precondition):
    /// left alone.
    Replaced,
}

/// Deletes `name` only if it is still the object with `uid`, the one the pass looked at; with
/// `Orphan` propagation its dependents stay.
pub async fn delete_exactly<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
    propagation: Option<PropagationPolicy>,
) -> Result<Deleted, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid, resource_version: None }),
        propagation_policy: propagation,
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(Deleted::Done),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Deleted::Gone),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Deleted::Replaced),
        Err(e) => Err(e),
    }
}

/// A write a step decided, for [`run`] to make: the step's decision stays a plain value that a
/// unit test can look at.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Delete exactly this object (uid precondition); one gone or replaced meanwhile is left.
    DeleteExactly { kind: Deletable, namespace: String, name: String, uid: Option<String> },
    /// A Normal or Warning Event on the DittoServer.
    Event { warning: bool, reason: &'static str, note: String },
}

/// Makes `effects` in order; the first failed delete ends the run.
pub async fn run(ctx: &Context, server: &DittoServer, effects: Vec<Effect>) -> Result<(), Error> {
    for effect in effects {
        match effect {
            Effect::DeleteExactly { kind, namespace, name, uid } => {
                let api: Api<kube::api::DynamicObject> =
                    Api::namespaced_with(ctx.client.clone(), &namespace, &kind.resource());
                delete_exactly(&api, &name, uid, None).await.map_err(|source| apply::ApplyError::Api {
                    action: "deleting",
                    object: format!("{}/{name}", kind.resource().kind),
                    source,
                })?;
            }
            Effect::Event { warning, reason, note } => {
                let type_ = if warning { EventType::Warning } else { EventType::Normal };
                publish(ctx, server, type_, reason, &note).await;
            }
        }
    }
    Ok(())
}

/// The kinds an [`Effect`] deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletable {
    Service,
}

impl Deletable {
    fn resource(self) -> kube::api::ApiResource {
        match self {
            Self::Service => kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        }
    }
}

/// A JSON merge patch of one object (its metadata, say); a `resourceVersion` in `patch` makes
/// it fail rather than overwrite a concurrent edit.
pub async fn merge_patch<K>(api: &Api<K>, name: &str, patch: Value) -> Result<K, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await
}

/// The DittoServer's status subresource, replaced by `status` (a merge patch of `.status`).
pub async fn status(client: &Client, server: &DittoServer, status: &DittoServerStatus) -> Result<(), kube::Error> {
    let namespace = server.namespace_or_default();
    let patch = Patch::Merge(json!({ "status": status }));
    crate::requests::patch_status::<DittoServer>(
        client,
        &namespace,
        &server.name_any(),
        &PatchParams::default(),
        &patch,
    )
    .await
}

/// Writes `plan`, then the Events that say what was written.
pub async fn apply_plan(
    ctx: &Context,
    server: &DittoServer,
    namespace: &str,
    plan: Plan,
) -> Result<ApplyOutcome, Error> {
    let adopted = plan.adopted.clone();
    let outcome = apply::execute(ctx.reads(), namespace, plan).await?;
    publish_outcome(ctx, server, &adopted, &outcome).await;
    Ok(outcome)
}

/// The checksum key of `namespace`: read, or created once (32 random bytes) when there is none.
/// Every replica and every restart reads the same key, so checksums stay stable and no pod rolls.
pub async fn ensure_checksum_key(client: &Client, namespace: &str) -> Result<Vec<u8>, ReadError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("Secret {namespace}/{CHECKSUM_KEY_SECRET}");
    if let Some(key) = read_checksum_key(client, namespace).await? {
        return Ok(key);
    }
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    match api.create(&PostParams::default(), &crate::gather::checksum_key_secret(&key)).await {
        Ok(_) => Ok(key),
        // Another replica made it first: use theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => read_checksum_key(client, namespace)
            .await?
            .ok_or_else(|| ReadError { what, source: kube::Error::Api(status) }),
        Err(source) => Err(ReadError { what, source }),
    }
}

/// One Event on the DittoServer. A failure is logged, never fails the pass.
pub async fn publish(ctx: &Context, server: &DittoServer, type_: EventType, reason: &str, note: &str) {
    // kube's recorder folds Events with the same (reason, action) into one series and keeps the
    // first note: key the action on the note, so identical Events fold and different ones do not.
    let digest = crate::render::short_digest(note);
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: format!("Reconcile-{digest}"),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &server.object_ref(&())).await {
        warn!(%error, reason, "could not publish event");
    }
}

/// One Normal Event per object taken back (Adopted), one for every object a pass created
/// (Created, all of them named: a new DittoServer costs one Event, not one per object), and one
/// per object updated (with the changed paths) or pruned.
pub async fn publish_outcome(ctx: &Context, server: &DittoServer, adopted: &[String], outcome: &ApplyOutcome) {
    for reference in adopted {
        let note = format!(
            "Adopted {reference}, kept by an earlier DittoServer named {}; on deletion it is {} (spec.percona.deleteWithServer)",
            server.name_any(),
            if crate::percona::deleted_with_server(&server.spec) { "deleted" } else { "kept again" }
        );
        publish(ctx, server, EventType::Normal, "Adopted", &note).await;
    }
    let created: Vec<&str> =
        outcome.applied.iter().filter(|c| c.action == DiffAction::Create).map(|c| c.reference.as_str()).collect();
    if !created.is_empty() {
        publish(ctx, server, EventType::Normal, "Created", &format!("Created {}", created.join(", "))).await;
    }
    for change in &outcome.applied {
        let (reason, note) = match change.action {
            DiffAction::Create => continue,
            DiffAction::Update => ("Updated", format!("Updated {}: {}", change.reference, change.paths.join(", "))),
            DiffAction::Prune => ("Pruned", format!("Deleted {}: no longer rendered", change.reference)),
            DiffAction::Unchanged => continue,
        };
        publish(ctx, server, EventType::Normal, reason, &note).await;
    }
}
