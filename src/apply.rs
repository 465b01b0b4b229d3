//! Plan, then apply. Planning asks the server what each apply would store (server-side apply
//! with `dryRun=All`, same field manager) and compares it with the live object, so nothing is
//! written unless something differs and every change has a diff before it happens. It asks only
//! where the answer is not known already: a create is diffed against the rendered object, and an
//! object already shown to match at its live resourceVersion needs no dry run. Executing
//! the plan applies in order (ConfigMap → Secrets → Services → StatefulSet) and prunes what we
//! own but no longer render. Generated credentials are created once and never touched again.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PatchParams, PostParams, Preconditions};
use serde_json::Value;

use crate::cache::{self, Key, Need, Reads};
use crate::crd::FIELD_MANAGER;
use crate::diff::{self, Action, ObjectDiff};
use crate::kinds::{Kind, ManagedObject};
pub use crate::names::OWNER_ANNOTATION;
use crate::names::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY};
use crate::requests;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// Forced apply would take the object over from whoever made it: refuse.
    #[error(
        "{object} exists and is not controlled by this DittoServer; refusing to take it over (rename or delete it)"
    )]
    NotOwned { object: String },
}

impl ApplyError {
    fn new(action: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let object = object.into();
        move |source| Self::Api { action, object, source }
    }
}

/// Kinds a DittoServer owns without an owner reference, so that no garbage collection (not even
/// `kubectl delete --cascade=foreground`) can delete them: the finalizer decides their fate.
/// Ownership is the annotation [`OWNER_ANNOTATION`] instead.
pub const OWNED_BY_ANNOTATION: &[&str] = &["PerconaPGCluster"];

/// Whether `live` names `owner_uid` as its controller: a controller owner reference, or (for
/// kinds of [`OWNED_BY_ANNOTATION`] only) the owner annotation.
pub fn controlled_by(live: &Value, owner_uid: &str, kind: &str) -> bool {
    let by_reference = live
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid && r["controller"] == true));
    let by_annotation = OWNED_BY_ANNOTATION.contains(&kind) && owner_annotation(live) == Some(owner_uid);
    by_reference || by_annotation
}

/// The value of [`OWNER_ANNOTATION`] on `live`, if set.
fn owner_annotation(live: &Value) -> Option<&str> {
    live.pointer("/metadata/annotations")?.get(OWNER_ANNOTATION)?.as_str()
}

/// An object of [`OWNED_BY_ANNOTATION`] released by an earlier DittoServer of the same name
/// (orphaned on deletion): a DittoServer re-created with that name takes it back with its data.
fn released_for(live: &Value, cr_name: &str) -> bool {
    let label = |key: &str| live.pointer("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str);
    let has_controller = live
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true));
    label(LABEL_INSTANCE) == Some(cr_name)
        && label(LABEL_MANAGED_BY) == Some(MANAGED_BY)
        && owner_annotation(live).is_none()
        && !has_controller
}

/// One rendered object, what is live, and what applying it would change.
#[derive(Debug)]
pub struct PlannedObject {
    pub kind: Kind,
    pub name: String,
    /// What a write would send. `None` when a pass over a settled render planned from hashes
    /// (nothing to write, and the objects were not even read back).
    object: Option<ManagedObject>,
    pub live: Option<Value>,
    pub diff: ObjectDiff,
    /// [`hash_of`] what is applied (owner included; 0 for a create-only object): after the
    /// write, the cache knows this object needs nothing.
    applied: u64,
}

impl PlannedObject {
    fn new(object: ManagedObject, live: Option<Value>, diff: ObjectDiff, applied: u64) -> Self {
        let (kind, name) = (object.managed_kind(), object.name().to_string());
        Self { kind, name, object: Some(object), live, diff, applied }
    }

    fn is_file_service(&self) -> bool {
        is_file_service(self.kind, &self.name)
    }
}

/// A render's objects as its last plan applied them, by hash: a later pass over the same render
/// whose cache shows every one of them settled at its current resourceVersion plans from this
/// alone ([`settled_plan`]), without reading the objects back.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedSet {
    /// The DittoServer the objects were applied for (its uid is in their owner references).
    pub owner_uid: String,
    /// Kind, name and applied hash (0 for a create-only object: that it exists is enough).
    pub objects: Vec<(Kind, String, u64)>,
}

impl AppliedSet {
    /// Whether the cache shows every object as this set applied it: settled at the version its
    /// store holds (or the operator's own write, not seen yet), a create-only one present.
    /// `false` where no ready store covers an object.
    pub fn is_settled(&self, cache: &cache::Cache, namespace: &str, owner_uid: &str) -> bool {
        self.owner_uid == owner_uid
            && self.objects.iter().all(|(kind, name, applied)| {
                let key = Key::of(*kind, namespace, name);
                match kind.create_only() {
                    true => cache.present(&key),
                    false => cache.settled_now(&key, *applied),
                }
            })
    }
}

/// An object we own that is no longer rendered.
#[derive(Debug)]
pub struct PlannedPrune {
    pub resource: ApiResource,
    pub name: String,
    pub diff: ObjectDiff,
    /// The resourceVersion the plan saw: the delete is of exactly that object, so one changed
    /// or re-created since (by someone else) is not deleted on a stale decision.
    pub version: Option<String>,
}

/// An object the API server refused (a 4xx on the dry run): invalid, immutable or forbidden.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub kind: Kind,
    pub reference: String,
    /// The API server's message.
    pub message: String,
}

impl Rejected {
    /// A StatefulSet change to a field that cannot change in place (selector, claim templates,
    /// serviceName, …): only re-creating the StatefulSet applies it.
    pub fn is_immutable_stateful_set(&self) -> bool {
        self.kind == Kind::StatefulSet && self.message.contains("updates to statefulset spec for fields other than")
    }
}

/// A 4xx that no retry fixes: the object itself is refused. Not: 404 (gone), 408/429 (load),
/// 409 (a conflict a later pass resolves).
fn refused(status: &kube::core::Status) -> bool {
    (400..500).contains(&status.code) && ![404, 408, 409, 429].contains(&status.code)
}

#[derive(Debug, Default)]
pub struct Plan {
    pub objects: Vec<PlannedObject>,
    pub prunes: Vec<PlannedPrune>,
    /// Objects released by an earlier DittoServer of the same name that this plan takes back.
    pub adopted: Vec<String>,
    /// Objects the API server refused; nothing is written for them.
    pub rejected: Vec<Rejected>,
    /// Objects ranked after a refused one, left as they are (they may consume it).
    pub held: Vec<String>,
}

impl Plan {
    /// Every diff with something to do, in apply order, prunes last.
    pub fn changes(&self) -> Vec<&ObjectDiff> {
        self.objects
            .iter()
            .map(|p| &p.diff)
            .chain(self.prunes.iter().map(|p| &p.diff))
            .filter(|d| d.action != Action::Unchanged)
            .collect()
    }

    pub fn in_sync(&self) -> bool {
        self.changes().is_empty() && self.rejected.is_empty()
    }

    /// The live StatefulSet (before any apply of this plan), for status.
    pub fn live_stateful_set(&self) -> Option<StatefulSet> {
        self.live_of("StatefulSet")
    }

    pub fn live_file_service(&self) -> Option<Service> {
        self.objects
            .iter()
            .filter(|p| p.is_file_service())
            .find_map(|p| p.live.clone().and_then(|v| serde_json::from_value(v).ok()))
    }

    fn live_of<K: serde::de::DeserializeOwned>(&self, kind: &str) -> Option<K> {
        self.objects
            .iter()
            .find(|p| p.kind.name() == kind)
            .and_then(|p| p.live.clone())
            .and_then(|v| serde_json::from_value(v).ok())
    }

    /// What this plan applies, for [`settled_plan`] to build on once it is in the cluster.
    /// `None` when the plan does not stand for the whole render in the cluster (something
    /// refused or held, an object adopted from an earlier DittoServer).
    pub fn applied_set(&self, owner_uid: &str) -> Option<AppliedSet> {
        if !self.rejected.is_empty() || !self.held.is_empty() || !self.adopted.is_empty() {
            return None;
        }
        let objects = self.objects.iter().map(|p| (p.kind, p.name.clone(), p.applied)).collect();
        Some(AppliedSet { owner_uid: owner_uid.to_string(), objects })
    }
}

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    /// Diffs of what was written, in order.
    pub applied: Vec<ObjectDiff>,
    pub stateful_set: Option<StatefulSet>,
    /// Creates the API server refused; nothing after them was written.
    pub rejected: Vec<Rejected>,
    /// Objects ranked after a refused create, left as they are.
    pub held: Vec<String>,
}

/// How much of an object a pass needs when no dry run is: the status step reads the
/// StatefulSet's status and the file Service's load balancer; of the rest, the metadata.
fn content_needed(kind: Kind, name: &str) -> Need {
    match kind {
        Kind::StatefulSet => Need::Status,
        Kind::Service if is_file_service(kind, name) => Need::Status,
        _ => Need::Metadata,
    }
}

/// The Service that carries the file protocols (`<name>-file`): the status reports its address.
fn is_file_service(kind: Kind, name: &str) -> bool {
    kind == Kind::Service && name.ends_with("-file")
}

/// Created once, then never updated, owned or pruned: every object of a create-only kind (Secrets).
pub fn is_create_only(object: &ManagedObject) -> bool {
    object.managed_kind().create_only()
}

fn api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Works out what applying `objects` would change, without writing anything.
/// `owner` is None when the DittoServer is not in the cluster (then nothing is pruned);
/// `prune` is false when `objects` is deliberately a subset of what the CR renders.
///
/// The API server is asked only where the cache cannot answer: an object that does not exist
/// is created as rendered (the whole object is the diff), and an object whose rendering and
/// live version were already shown to match needs no dry run.
pub async fn plan(
    reads: Reads<'_>,
    namespace: &str,
    cr_name: &str,
    owner: Option<&OwnerReference>,
    objects: &[ManagedObject],
    prune: bool,
) -> Result<Plan, ApplyError> {
    let mut plan = Plan::default();
    let mut refused_rank = None;
    for object in objects {
        if refused_rank.is_some_and(|rank| object.apply_rank() > rank) {
            plan.held.push(object.reference());
            continue;
        }
        let mut object = object.clone();
        let resource = object.managed_kind().resource();
        let name = object.name().to_string();
        let reference = object.reference();
        let file = diff::file_name(object.api_version(), object.kind(), namespace, &name);
        if is_create_only(&object) {
            // Existing credentials are never read, compared, rewritten or shown.
            let exists =
                reads.exists(&resource, namespace, &name).await.map_err(ApplyError::new("reading", &reference))?;
            let diff = match exists {
                true => diff::compare(&reference, &file, None, None),
                false => diff::compare(&reference, &file, None, Some(&object.to_json())),
            };
            plan.objects.push(PlannedObject::new(object, None, diff, 0));
            continue;
        }
        // The status step reads the StatefulSet and Services; for the rest the metadata tells
        // whether a dry run is needed, and the content is read only when it is.
        let need = content_needed(object.managed_kind(), &name);
        let mut live =
            reads.read(&resource, namespace, &name, need).await.map_err(ApplyError::new("reading", &reference))?;
        if let Some(owner) = owner {
            let by_annotation = OWNED_BY_ANNOTATION.contains(&object.kind());
            // `force` is only for objects we own (the brief's rule): never adopt a stranger's object.
            if let Some(l) = &live
                && !controlled_by(l, &owner.uid, object.kind())
            {
                if !(by_annotation && released_for(l, cr_name)) {
                    return Err(ApplyError::NotOwned { object: reference });
                }
                plan.adopted.push(reference.clone());
            }
            if by_annotation {
                object
                    .meta_mut()
                    .annotations
                    .get_or_insert_default()
                    .insert(OWNER_ANNOTATION.into(), owner.uid.clone());
            } else {
                object.meta_mut().owner_references = Some(vec![owner.clone()]);
            }
        }
        let body = object.to_json();
        let applied = cache::hash_of(&body);
        let key = Key::new(&resource, namespace, &name);
        let version_of = |l: &Value| l.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(String::from);
        let live_version = live.as_deref().and_then(version_of);
        let diff = match (&live, live_version) {
            // A create: the rendered object is the whole diff; the write itself is the check.
            (None, _) => diff::compare(&reference, &file, None, Some(&body)),
            (Some(_), Some(version)) if reads.is_settled(&key, applied, &version) => {
                diff::compare(&reference, &file, None, None)
            }
            (Some(_), _) => {
                if need < Need::Content {
                    live = reads
                        .read(&resource, namespace, &name, Need::Content)
                        .await
                        .map_err(ApplyError::new("reading", &reference))?;
                }
                let Some(l) = &live else {
                    // Deleted meanwhile: created as rendered.
                    let diff = diff::compare(&reference, &file, None, Some(&body));
                    plan.objects.push(PlannedObject::new(object, None, diff, applied));
                    continue;
                };
                let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
                let merged = match requests::apply(reads.client, namespace, &resource, &name, &params, &body).await {
                    Ok(merged) => merged,
                    Err(kube::Error::Api(status)) if refused(&status) => {
                        refused_rank = Some(object.apply_rank());
                        let message = status.message.clone();
                        plan.rejected.push(Rejected { kind: object.managed_kind(), reference, message });
                        continue;
                    }
                    Err(e) => return Err(ApplyError::new("dry-run applying", &reference)(e)),
                };
                let diff = diff::compare(&reference, &file, Some(l), Some(&merged));
                if diff.action == Action::Unchanged
                    && let Some(version) = version_of(l)
                {
                    reads.settle(key, applied, version);
                }
                diff
            }
        };
        plan.objects.push(PlannedObject::new(object, live.map(|l| Value::clone(&l)), diff, applied));
    }
    // Nothing is pruned while something is refused: the rendered set is not in the cluster yet.
    if let Some(owner) = owner.filter(|_| prune && plan.rejected.is_empty()) {
        let keep: BTreeSet<String> = objects.iter().map(ManagedObject::reference).collect();
        plan.prunes = plan_prunes(reads, namespace, cr_name, &owner.uid, &keep).await?;
    }
    Ok(plan)
}

/// The plan of a render whose objects the cache showed settled ([`AppliedSet::is_settled`]):
/// every object unchanged, no object read back, only what the status step reads (the
/// StatefulSet, the file Service) read from the cache; prunes planned as [`plan`] does.
pub async fn settled_plan(
    reads: Reads<'_>,
    namespace: &str,
    cr_name: &str,
    set: &AppliedSet,
) -> Result<Plan, ApplyError> {
    let mut plan = Plan::default();
    let mut keep = BTreeSet::new();
    for (kind, name, applied) in &set.objects {
        let reference = format!("{}/{name}", kind.name());
        let need = content_needed(*kind, name);
        let live = match need {
            Need::Metadata => None,
            need => reads
                .read(&kind.resource(), namespace, name, need)
                .await
                .map_err(ApplyError::new("reading", &reference))?
                .map(|l| Value::clone(&l)),
        };
        let file = diff::file_name(kind.api_version(), kind.name(), namespace, name);
        let diff = diff::compare(&reference, &file, None, None);
        plan.objects.push(PlannedObject {
            kind: *kind,
            name: name.clone(),
            object: None,
            live,
            diff,
            applied: *applied,
        });
        keep.insert(reference);
    }
    plan.prunes = plan_prunes(reads, namespace, cr_name, &set.owner_uid, &keep).await?;
    Ok(plan)
}

async fn plan_prunes(
    reads: Reads<'_>,
    namespace: &str,
    cr_name: &str,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<PlannedPrune>, ApplyError> {
    let labels = crate::names::instance_labels(cr_name);
    let core_objects = crate::names::Names::for_cr(cr_name).core_objects();
    let mut prunes = Vec::new();
    // Never PersistentVolumeClaims (not a managed kind), never a PerconaPGCluster (not prunable).
    for kind in Kind::ALL.iter().filter(|k| k.prunable()) {
        let resource = kind.resource();
        // A kind whose CRD is not installed has nothing to prune (known from the cache, when it is).
        if kind.optional_crd().is_some_and(|crd| reads.crd_absent(crd)) {
            continue;
        }
        let listed = reads.list_meta(&resource, namespace, &labels).await;
        // A kind whose CRD is not installed (None) has nothing to prune.
        let Some(candidates) = listed.map_err(ApplyError::new("listing", resource.kind.clone()))? else { continue };
        for cache::Listed { name, lean } in candidates {
            let reference = format!("{}/{name}", resource.kind);
            let controlled = lean.controller_uid.as_deref() == Some(owner_uid);
            let create_only = lean.create_only;
            // The workload and its config are never pruned while the DittoServer exists, whatever
            // was rendered (the renderer refuses a set without them; this holds if that ever slips).
            let core = core_objects.contains(&reference);
            if keep.contains(&reference) || !controlled || create_only || core {
                continue;
            }
            // The whole object is the diff of a prune.
            let Some(live) =
                reads.value(&resource, namespace, &name).await.map_err(ApplyError::new("reading", &reference))?
            else {
                continue;
            };
            let mut live = Value::clone(&live);
            live["apiVersion"] = Value::from(resource.api_version.clone());
            live["kind"] = Value::from(resource.kind.clone());
            let version = live.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            let file = diff::file_name(&resource.api_version, &resource.kind, namespace, &name);
            let diff = diff::compare(&reference, &file, Some(&live), None);
            prunes.push(PlannedPrune { resource: resource.clone(), name, diff, version });
        }
    }
    Ok(prunes)
}

/// Writes what the plan says differs; nothing else. A create the API server refuses (there
/// was no dry run before it) ends the writes like a refused dry run would: the objects ranked
/// after it are left alone, nothing is pruned, and the outcome lists it.
pub async fn execute(reads: Reads<'_>, namespace: &str, plan: Plan) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome { stateful_set: plan.live_stateful_set(), ..Default::default() };
    let mut refused_rank = None;
    for planned in plan.objects {
        // (An unchanged object may not even be at hand: a settled plan holds none.)
        let Some(object) = planned.object.filter(|_| planned.diff.action != Action::Unchanged) else { continue };
        if refused_rank.is_some_and(|rank| object.apply_rank() > rank) {
            outcome.held.push(object.reference());
            continue;
        }
        let resource = object.managed_kind().resource();
        let reference = object.reference();
        let name = object.name().to_string();
        if is_create_only(&object) {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            match requests::create(reads.client, namespace, &resource, &params, &object.to_json()).await {
                // Kept: the next pass reads the new credentials from the cache, not the API server.
                Ok(created) => reads.keep_written(Key::new(&resource, namespace, &name), created, Need::Content),
                // Created meanwhile by someone else: keep theirs.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(ApplyError::new("creating", reference)(e)),
            }
        } else {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let live =
                match requests::apply(reads.client, namespace, &resource, &name, &params, &object.to_json()).await {
                    Ok(live) => live,
                    Err(kube::Error::Api(status)) if planned.diff.action == Action::Create && refused(&status) => {
                        refused_rank = Some(object.apply_rank());
                        let message = status.message.clone();
                        outcome.rejected.push(Rejected { kind: object.managed_kind(), reference, message });
                        continue;
                    }
                    Err(e) => return Err(ApplyError::new("applying", &reference)(e)),
                };
            let key = Key::new(&resource, namespace, &name);
            let version = live.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
            reads.settle(key.clone(), planned.applied, version.to_string());
            reads.keep_written(key, live.clone(), content_needed(planned.kind, &planned.name));
            if object.kind() == "StatefulSet" {
                outcome.stateful_set = serde_json::from_value(live).ok();
            }
        }
        outcome.applied.push(planned.diff);
    }
    if refused_rank.is_some() {
        return Ok(outcome);
    }
    for prune in plan.prunes {
        let api = api(reads.client, namespace, &prune.resource);
        let exactly = Preconditions { uid: None, resource_version: prune.version.clone() };
        let params = DeleteParams { preconditions: Some(exactly), ..DeleteParams::background() };
        match api.delete(&prune.name, &params).await {
            Ok(_) => outcome.applied.push(prune.diff),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(ApplyError::new("pruning", prune.diff.reference.clone())(e)),
        }
        reads.forget(&Key::new(&prune.resource, namespace, &prune.name));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;
    use crate::cache::{Cache, Meta};

    fn owned(uid: &str, controller: bool) -> Value {
        json!({"metadata": {"ownerReferences": [{"uid": uid, "controller": controller}]}})
    }

    #[test]
    fn only_a_controller_owner_reference_or_a_percona_annotation_makes_an_object_ours() {
        assert!(controlled_by(&owned("u-1", true), "u-1", "ConfigMap"));
        assert!(!controlled_by(&owned("u-1", false), "u-1", "ConfigMap"), "not the controller");
        assert!(!controlled_by(&owned("u-2", true), "u-1", "ConfigMap"), "another DittoServer's");
        let annotated = json!({"metadata": {"annotations": {OWNER_ANNOTATION: "u-1"}}});
        assert!(controlled_by(&annotated, "u-1", "PerconaPGCluster"));
        assert!(!controlled_by(&annotated, "u-1", "ConfigMap"), "the annotation counts only where no reference can");
    }

    #[test]
    fn a_released_object_is_ours_by_label_with_neither_owner_nor_controller() {
        let labels = json!({LABEL_INSTANCE: "files", LABEL_MANAGED_BY: MANAGED_BY});
        let released = json!({"metadata": {"labels": labels}});
        assert!(released_for(&released, "files"));
        assert!(!released_for(&released, "other"), "another DittoServer's name");
        let still_owned = json!({"metadata": {"labels": labels, "annotations": {OWNER_ANNOTATION: "u-1"}}});
        assert!(!released_for(&still_owned, "files"));
        let controlled = json!({"metadata": {"labels": labels, "ownerReferences": [{"uid": "u", "controller": true}]}});
        assert!(!released_for(&controlled, "files"));
    }

    #[test]
    fn a_refusal_is_a_4xx_that_no_retry_fixes() {
        let status = |code: u16| kube::core::Status { code, ..Default::default() };
        assert!(refused(&status(422)));
        assert!(refused(&status(403)));
        for retried in [404, 408, 409, 429, 500, 503] {
            assert!(!refused(&status(retried)), "{retried}");
        }
    }

    #[test]
    fn the_status_step_keeps_the_workload_and_file_service_the_rest_by_metadata() {
        assert_eq!(content_needed(Kind::StatefulSet, "files"), Need::Status);
        assert_eq!(content_needed(Kind::Service, "files-file"), Need::Status);
        assert_eq!(content_needed(Kind::Service, "files-api"), Need::Metadata);
        assert_eq!(content_needed(Kind::ConfigMap, "files-config"), Need::Metadata);
    }

    fn planned(kind: Kind, name: &str, applied: u64) -> PlannedObject {
        let reference = format!("{}/{name}", kind.name());
        let diff = diff::compare(&reference, "f", None, None);
        PlannedObject { kind, name: name.into(), object: None, live: None, diff, applied }
    }

    #[test]
    fn only_a_plan_that_stands_for_the_whole_render_is_remembered() {
        let mut plan = Plan { objects: vec![planned(Kind::ConfigMap, "files-config", 7)], ..Plan::default() };
        let set = plan.applied_set("u-1").expect("a whole plan");
        assert_eq!(set.objects, [(Kind::ConfigMap, "files-config".to_string(), 7)]);
        plan.held.push("StatefulSet/files".into());
        assert_eq!(plan.applied_set("u-1"), None, "held objects are not in the cluster as rendered");
        plan.held.clear();
        plan.adopted.push("PerconaPGCluster/files-postgres".into());
        assert_eq!(plan.applied_set("u-1"), None, "an adoption is written by this plan");
    }

    fn config_map(version: &str) -> Meta {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "files-config", "namespace": "ns", "resourceVersion": version},
        }))
        .expect("metadata parses")
    }

    #[test]
    fn an_applied_set_is_settled_while_the_store_shows_the_version_it_was_applied_at() {
        let cache = Cache::default();
        let set = AppliedSet { owner_uid: "u-1".into(), objects: vec![(Kind::ConfigMap, "files-config".into(), 7)] };
        assert!(!set.is_settled(&cache, "ns", "u-1"), "no store covers it: unknown, so not settled");
        let store = cache.register(&Kind::ConfigMap.resource(), None, None);
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(config_map("5")));
        store.apply(&Event::InitDone);
        let key = Key::of(Kind::ConfigMap, "ns", "files-config");
        assert!(!set.is_settled(&cache, "ns", "u-1"), "never applied");
        cache.settle(key.clone(), 7, "5".into());
        assert!(set.is_settled(&cache, "ns", "u-1"));
        assert!(!set.is_settled(&cache, "ns", "u-2"), "applied for another DittoServer");
        cache.settle(key, 8, "5".into());
        assert!(!set.is_settled(&cache, "ns", "u-1"), "settled for another rendering");
        store.apply(&Event::Apply(config_map("6")));
        assert!(!set.is_settled(&cache, "ns", "u-1"), "someone changed it since");
    }
}
