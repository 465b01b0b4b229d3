//! The stores the watches feed: of each object only what decisions read ([`Lean`]), indexed
//! by namespace and instance label.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::runtime::watcher;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;

use super::Meta;
use crate::names::{
    LABEL_INSTANCE, LABEL_MANAGED_BY, LIFECYCLE_ANNOTATION, LIFECYCLE_CREATE_ONLY, MANAGED_BY, OWNER_ANNOTATION,
};

/// What stands for an owner uid that is not shaped like one: it matches no DittoServer, as the
/// value it replaces did not either.
pub const NOT_A_UID: &str = "<not a uid>";

/// `value` when it is shaped like a Kubernetes uid (letters, digits and dashes, at most 64
/// characters; a real one is 36), else [`NOT_A_UID`]. The watches see every object of a kind in the cluster, and an annotation can
/// hold 256 KiB: keeping such values as given would let anyone who may create a ConfigMap fill
/// the operator's memory.
pub(super) fn uid_or_marker(value: &str) -> Box<str> {
    let shaped =
        !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if shaped { value.into() } else { NOT_A_UID.into() }
}

/// What a store keeps of one object: what the operator decides on from a watch, nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lean {
    pub version: CompactString,
    /// Its `app.kubernetes.io/instance` label: the DittoServer it belongs to.
    pub instance: Option<CompactString>,
    /// Labeled `app.kubernetes.io/managed-by: dittofs-operator`.
    pub managed_by_us: bool,
    /// The uid of its controller owner reference.
    pub controller_uid: Option<Box<str>>,
    /// Annotated as created once and never updated or pruned.
    pub create_only: bool,
    /// Its owner annotation (the uid of the DittoServer owning an object that cannot carry
    /// an owner reference).
    pub owner: Option<Box<str>>,
}

impl Lean {
    pub fn of(meta: &ObjectMeta) -> Self {
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key));
        let controller = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        Self {
            version: meta.resource_version.as_deref().unwrap_or_default().into(),
            instance: label(LABEL_INSTANCE).map(|i| i.as_str().into()),
            managed_by_us: label(LABEL_MANAGED_BY).is_some_and(|m| m == MANAGED_BY),
            controller_uid: controller.map(|o| uid_or_marker(&o.uid)),
            create_only: meta.annotations.as_ref().and_then(|a| a.get(LIFECYCLE_ANNOTATION)).map(String::as_str)
                == Some(LIFECYCLE_CREATE_ONLY),
            owner: meta.annotations.as_ref().and_then(|a| a.get(OWNER_ANNOTATION)).map(|o| uid_or_marker(o)),
        }
    }

    /// The object as a read at [`Need::Metadata`] sees it ([`keep_ownership`]'s view but for the
    /// generation, which only the status view needs): what the store holds is enough, so
    /// nothing of the object need be kept for it.
    pub(super) fn metadata_view(&self, resource: &ApiResource, namespace: &str, name: &str) -> Value {
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), name.into());
        if !namespace.is_empty() {
            meta.insert("namespace".into(), namespace.into());
        }
        meta.insert("resourceVersion".into(), self.version.as_str().into());
        let mut labels = serde_json::Map::new();
        if let Some(instance) = &self.instance {
            labels.insert(LABEL_INSTANCE.into(), instance.as_str().into());
        }
        if self.managed_by_us {
            labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        }
        if !labels.is_empty() {
            meta.insert("labels".into(), labels.into());
        }
        if let Some(owner) = &self.owner {
            meta.insert("annotations".into(), serde_json::json!({ OWNER_ANNOTATION: &**owner }));
        }
        if let Some(uid) = &self.controller_uid {
            meta.insert("ownerReferences".into(), serde_json::json!([{"uid": &**uid, "controller": true}]));
        }
        serde_json::json!({"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta})
    }

    /// Whether the object carries `labels`; `None` when the store cannot tell (a label it does
    /// not keep).
    pub(super) fn carries(&self, labels: &BTreeMap<String, String>) -> Option<bool> {
        let mut carries = true;
        for (key, value) in labels {
            carries &= match key.as_str() {
                LABEL_INSTANCE => self.instance.as_deref() == Some(value.as_str()),
                LABEL_MANAGED_BY if value == MANAGED_BY => self.managed_by_us,
                _ => return None,
            };
        }
        Some(carries)
    }
}

/// One object a store lists: its name and what the store keeps of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub lean: Lean,
}

/// The objects of one watch by namespace and name, with the names of each DittoServer's objects
/// by its instance label (so listing one DittoServer's objects does not scan the namespace).
#[derive(Default)]
pub(super) struct Objects {
    pub(super) by_name: HashMap<Pair, Lean>,
    /// Names by (namespace, instance label).
    pub(super) by_instance: HashMap<Pair, BTreeSet<CompactString>>,
}

/// A namespace and a name (of an object, or of a DittoServer instance); inline up to 24 bytes each.
pub(super) type Pair = (CompactString, CompactString);

impl Objects {
    fn insert(&mut self, meta: &ObjectMeta) {
        let key: Pair =
            (meta.namespace.as_deref().unwrap_or_default().into(), meta.name.as_deref().unwrap_or_default().into());
        let lean = Lean::of(meta);
        if let Some(instance) = &lean.instance {
            self.by_instance.entry((key.0.clone(), instance.clone())).or_default().insert(key.1.clone());
        }
        if let Some(old) = self.by_name.insert(key.clone(), lean) {
            self.unindex(&key, &old);
        }
    }

    fn remove(&mut self, meta: &ObjectMeta) {
        let key: Pair =
            (meta.namespace.as_deref().unwrap_or_default().into(), meta.name.as_deref().unwrap_or_default().into());
        if let Some(old) = self.by_name.remove(&key) {
            self.unindex(&key, &old);
        }
    }

    /// Drops `key` from the index under `old`'s instance, unless it is still there under it.
    fn unindex(&mut self, key: &Pair, old: &Lean) {
        let Some(instance) = &old.instance else { return };
        if self.by_name.get(key).is_some_and(|now| now.instance.as_ref() == Some(instance)) {
            return;
        }
        let index_key = (key.0.clone(), instance.clone());
        if let Some(names) = self.by_instance.get_mut(&index_key) {
            names.remove(&key.1);
            if names.is_empty() {
                self.by_instance.remove(&index_key);
            }
        }
    }
}

/// A store fed by one watch's events: what it keeps of each object ([`Lean`]).
#[derive(Default)]
pub struct LeanStore {
    pub(super) objects: RwLock<Objects>,
    /// A (re-)list in progress: its objects replace the store's when it is complete.
    pub(super) listing: Mutex<Option<Objects>>,
    /// The first list is in.
    pub(super) ready: AtomicBool,
    /// Counts this store while its first list is not in.
    pub(super) first_list: Option<Gauge>,
}

impl LeanStore {
    /// Follows one watch event.
    pub fn apply(&self, event: &watcher::Event<Meta>) {
        match event {
            watcher::Event::Apply(meta) => self.objects.write().expect("store lock").insert(&meta.metadata),
            watcher::Event::Delete(meta) => self.objects.write().expect("store lock").remove(&meta.metadata),
            watcher::Event::Init => *self.listing.lock().expect("store lock") = Some(Objects::default()),
            watcher::Event::InitApply(meta) => {
                self.listing.lock().expect("store lock").get_or_insert_default().insert(&meta.metadata)
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.listing.lock().expect("store lock").take() {
                    *self.objects.write().expect("store lock") = listed;
                }
                if !self.ready.swap(true, Ordering::SeqCst)
                    && let Some(listing) = &self.first_list
                {
                    listing.dec();
                }
            }
        }
    }

    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<Lean> {
        // (A lookup by borrowed strings would need a custom key type; these are short.)
        self.objects.read().expect("store lock").by_name.get(&(namespace.into(), name.into())).cloned()
    }
}

/// What a store says about one object.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// No complete, ready store covers it: ask the API server.
    Unknown,
    Absent,
    Present(Lean),
}

pub(super) struct Watched {
    pub(super) store: Arc<LeanStore>,
    /// The watch's namespace (`None`: every namespace, or a cluster-scoped kind).
    pub(super) namespace: Option<String>,
    /// The watch's single object (a field selector on the name), if it watches one.
    pub(super) name: Option<String>,
}

impl Watched {
    pub(super) fn covers(&self, namespace: &str, name: &str) -> bool {
        self.store.ready.load(Ordering::SeqCst)
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}
