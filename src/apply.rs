//! Server-side apply of rendered objects in order, then pruning of what we own but no longer
//! render. One field manager; `force` only on objects the CR owns. Generated credentials are
//! created once and never touched again.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::FIELD_MANAGER;
use crate::render::{
    LABEL_INSTANCE, LABEL_MANAGED_BY, LIFECYCLE_ANNOTATION, LIFECYCLE_CREATE_ONLY, MANAGED_BY,
    ManagedObject,
};

#[derive(Debug, thiserror::Error)]
#[error("{action} {object}: {source}")]
pub struct ApplyError {
    pub action: &'static str,
    pub object: String,
    #[source]
    pub source: kube::Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    /// `Kind/name` and what happened to it, in apply order.
    pub changes: Vec<(String, Change)>,
    pub pruned: Vec<String>,
    pub stateful_set: Option<StatefulSet>,
    pub file_service: Option<Service>,
}

impl ApplyOutcome {
    pub fn writes(&self) -> usize {
        self.changes
            .iter()
            .filter(|(_, c)| *c != Change::Unchanged)
            .count()
            + self.pruned.len()
    }
}

pub fn is_create_only(object: &ManagedObject) -> bool {
    object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(LIFECYCLE_ANNOTATION))
        .map(String::as_str)
        == Some(LIFECYCLE_CREATE_ONLY)
}

/// Applies `objects` (already in apply order) in `namespace`, owned by `owner`.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    owner: &OwnerReference,
    objects: &[ManagedObject],
) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome::default();
    for object in objects {
        let reference = object.reference();
        let change = if is_create_only(object) {
            match object {
                ManagedObject::Secret(s) => {
                    create_if_absent(Api::namespaced(client.clone(), namespace), s).await
                }
                other => apply_owned(client, namespace, owner, other, &mut outcome).await,
            }
        } else {
            apply_owned(client, namespace, owner, object, &mut outcome).await
        }
        .map_err(|source| ApplyError {
            action: "applying",
            object: reference.clone(),
            source,
        })?;
        outcome.changes.push((reference, change));
    }
    Ok(outcome)
}

async fn apply_owned(
    client: &Client,
    namespace: &str,
    owner: &OwnerReference,
    object: &ManagedObject,
    outcome: &mut ApplyOutcome,
) -> Result<Change, kube::Error> {
    let mut object = object.clone();
    object.meta_mut().owner_references = Some(vec![owner.clone()]);
    match object {
        ManagedObject::ConfigMap(o) => Ok(ssa(
            Api::<ConfigMap>::namespaced(client.clone(), namespace),
            &o,
        )
        .await?
        .1),
        ManagedObject::Secret(o) => Ok(ssa(
            Api::<Secret>::namespaced(client.clone(), namespace),
            &o,
        )
        .await?
        .1),
        ManagedObject::Service(o) => {
            let (live, change) =
                ssa(Api::<Service>::namespaced(client.clone(), namespace), &o).await?;
            if live
                .labels()
                .get(crate::render::LABEL_COMPONENT)
                .map(String::as_str)
                == Some("file-server")
                && live.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) != Some("None")
            {
                outcome.file_service = Some(live);
            }
            Ok(change)
        }
        ManagedObject::StatefulSet(o) => {
            let (live, change) = ssa(
                Api::<StatefulSet>::namespaced(client.clone(), namespace),
                &*o,
            )
            .await?;
            outcome.stateful_set = Some(live);
            Ok(change)
        }
    }
}

/// Server-side apply; `Unchanged` when the apiserver kept the resourceVersion (a no-op apply).
async fn ssa<K>(api: Api<K>, object: &K) -> Result<(K, Change), kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    let before = api.get_opt(&name).await?.and_then(|o| o.resource_version());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let live = api.patch(&name, &params, &Patch::Apply(object)).await?;
    let change = match before {
        None => Change::Created,
        Some(rv) if Some(rv.clone()) == live.resource_version() => Change::Unchanged,
        Some(_) => Change::Updated,
    };
    Ok((live, change))
}

async fn create_if_absent(api: Api<Secret>, secret: &Secret) -> Result<Change, kube::Error> {
    if api.get_metadata_opt(&secret.name_any()).await?.is_some() {
        return Ok(Change::Unchanged);
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, secret).await {
        Ok(_) => Ok(Change::Created),
        // Created by a concurrent reconcile: keep the one that exists.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Change::Unchanged),
        Err(e) => Err(e),
    }
}

/// Deletes objects labelled as this CR's, controlled by it, that were not rendered this time
/// (for example the metrics Service after metrics are turned off). Never PVCs, never
/// create-only credentials.
pub async fn prune(
    client: &Client,
    namespace: &str,
    cr_name: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, ApplyError> {
    let selector = format!("{LABEL_INSTANCE}={cr_name},{LABEL_MANAGED_BY}={MANAGED_BY}");
    let mut pruned = Vec::new();
    pruned.extend(prune_kind::<ConfigMap>(client, namespace, &selector, owner_uid, keep).await?);
    pruned.extend(prune_kind::<Secret>(client, namespace, &selector, owner_uid, keep).await?);
    pruned.extend(prune_kind::<Service>(client, namespace, &selector, owner_uid, keep).await?);
    pruned.extend(prune_kind::<StatefulSet>(client, namespace, &selector, owner_uid, keep).await?);
    Ok(pruned)
}

async fn prune_kind<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let kind = K::kind(&()).to_string();
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|source| ApplyError {
            action: "listing",
            object: kind.clone(),
            source,
        })?;
    let mut pruned = Vec::new();
    for item in list.items {
        let reference = format!("{kind}/{}", item.name_any());
        let controlled = item
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == owner_uid);
        let create_only = item
            .annotations()
            .get(LIFECYCLE_ANNOTATION)
            .map(String::as_str)
            == Some(LIFECYCLE_CREATE_ONLY);
        if keep.contains(&reference) || !controlled || create_only {
            continue;
        }
        match api
            .delete(&item.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => pruned.push(reference),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(ApplyError {
                    action: "pruning",
                    object: reference,
                    source,
                });
            }
        }
    }
    Ok(pruned)
}
