//! What the watches already know, kept for the reconcile, so a pass over an unchanged
//! DittoServer asks the API server nothing.
//!
//! - **Stores**: every watch of the controller is metadata-only, and its store keeps of each
//!   object only what decisions read ([`Lean`]: version, instance label, controller owner, the
//!   create-only annotation), a few hundred bytes instead of kube's whole metadata. A store whose
//!   watch has no label selector is complete for its scope: an object missing from it does not
//!   exist, without a request.
//! - **Objects by resourceVersion**: the content of an object (a Secret's data, a StatefulSet's
//!   status) is fetched once and reused for as long as the store shows the same
//!   resourceVersion. Objects the operator writes are kept from the write's response.
//! - **Dry-run results**: an object whose rendering and live resourceVersion are the ones a
//!   dry run (or the apply itself) already proved equal needs no new dry run.
//!
//! Without a cache (`diff`, a reconcile called outside the controller) every read goes to the
//! API server, as before.

mod content;
mod key;
mod reads;
mod settled;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use compact_str::CompactString;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;

use crate::names::LABEL_INSTANCE;
use crate::requests;
pub use content::Need;
use content::{Kept, trim};
pub use key::Key;
use key::resource_key;
pub use reads::Reads;
pub use settled::hash_of;
use store::Watched;
pub use store::{Lean, LeanStore, Listed, Lookup, NOT_A_UID};

/// A metadata object as the watches deliver it.
pub type Meta = PartialObjectMeta<DynamicObject>;

/// What the cache holds of one object: one map entry for both, as the two are about the same
/// objects (a key is most of an entry).
#[derive(Default)]
struct Entry {
    /// Its content, valid for the resourceVersion it holds.
    kept: Option<Kept>,
    /// (hash of the applied object, live resourceVersion) proven to need no write.
    settled: Option<(u64, CompactString)>,
}

#[derive(Default)]
pub struct Cache {
    watched: RwLock<HashMap<String, Vec<Watched>>>,
    objects: Mutex<HashMap<Key, Entry>>,
    /// Stores whose first list is not in yet (the metric `watches_listing`).
    listing: Gauge,
}

impl Cache {
    /// A cache that counts its stores still listing in `listing`.
    pub fn counting(listing: Gauge) -> Self {
        Self { listing, ..Self::default() }
    }

    /// Registers the store of a complete watch (no label selector) of `resource` in
    /// `namespace` (all when `None`), optionally of one `name`; the watch feeds it its events.
    pub fn register(&self, resource: &ApiResource, namespace: Option<String>, name: Option<String>) -> Arc<LeanStore> {
        self.listing.inc();
        let store = Arc::new(LeanStore { first_list: Some(self.listing.clone()), ..LeanStore::default() });
        let watched = Watched { store: store.clone(), namespace, name };
        self.watched.write().expect("cache lock").entry(resource_key(resource)).or_default().push(watched);
        store
    }

    /// What the stores know of one object.
    pub fn lookup(&self, resource: &ApiResource, namespace: &str, name: &str) -> Lookup {
        self.lookup_by(&resource_key(resource), namespace, name)
    }

    fn lookup_by(&self, resource: &str, namespace: &str, name: &str) -> Lookup {
        let watched = self.watched.read().expect("cache lock");
        let Some(stores) = watched.get(resource) else { return Lookup::Unknown };
        let Some(w) = stores.iter().find(|w| w.covers(namespace, name)) else { return Lookup::Unknown };
        match w.store.get(namespace, name) {
            Some(lean) => Lookup::Present(lean),
            None => Lookup::Absent,
        }
    }

    /// The objects of `resource` in `namespace` carrying every label of `labels`, when a ready
    /// complete store covers the namespace and keeps those labels; `None` otherwise (then list
    /// from the API server). With an instance label among `labels`, only that instance's
    /// objects are looked at.
    pub fn list(
        &self,
        resource: &ApiResource,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<Vec<Listed>> {
        let watched = self.watched.read().expect("cache lock");
        let w = watched.get(&resource_key(resource))?.iter().find(|w| w.name.is_none() && w.covers(namespace, ""))?;
        let objects = w.store.objects.read().expect("store lock");
        let names: Vec<&str> = match labels.get(LABEL_INSTANCE) {
            Some(instance) => {
                let index_key = (namespace.into(), instance.as_str().into());
                objects.by_instance.get(&index_key).into_iter().flatten().map(|n| &**n).collect()
            }
            None => objects.by_name.keys().filter(|(ns, _)| &**ns == namespace).map(|(_, n)| &**n).collect(),
        };
        let mut found = Vec::new();
        for name in names {
            let Some(lean) = objects.by_name.get(&(namespace.into(), name.into())) else { continue };
            if lean.carries(labels)? {
                found.push(Listed { name: name.to_string(), lean: lean.clone() });
            }
        }
        Some(found)
    }

    /// The object's content: from the cache when its resourceVersion is the one the store shows,
    /// else read (and kept). `None`: it does not exist.
    pub async fn get(
        &self,
        client: &Client,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        need: Need,
    ) -> Result<Option<Arc<Value>>, kube::Error> {
        let key = Key::new(resource, namespace, name);
        let version = match self.lookup(resource, namespace, name) {
            // Written by the operator and not seen by the watch yet: the write's response is newer.
            Lookup::Absent => {
                let objects = self.objects.lock().expect("cache lock");
                match objects.get(&key).and_then(|e| e.kept.as_ref()) {
                    Some(kept) => match kept.value(need) {
                        Some(value) => return Ok(Some(value)),
                        None => Some(kept.version.clone()),
                    },
                    None => return Ok(None),
                }
            }
            Lookup::Present(lean) if need == Need::Metadata => {
                return Ok(Some(Arc::new(lean.metadata_view(resource, namespace, name))));
            }
            Lookup::Present(lean) => Some(lean.version),
            Lookup::Unknown => None,
        };
        if let Some(version) = &version
            && let Some(kept) = self.objects.lock().expect("cache lock").get(&key).and_then(|e| e.kept.as_ref())
            && kept.version == *version
            && let Some(value) = kept.value(need)
        {
            return Ok(Some(value));
        }
        let fetched = requests::get_opt(client, namespace, resource, name).await?;
        // All of it, as a later read may need more than this one; but a Pod is only ever read
        // for its health (and its spec is most of it).
        let level = if need == Need::Status && resource.kind == "Pod" { Need::Status } else { Need::Content };
        // Kept only where a store will say when it changes.
        Ok(match (fetched, version) {
            (Some(value), Some(_)) => Some(self.keep_as(key, value, level)),
            (fetched, _) => fetched.map(Arc::new),
        })
    }

    /// Keeps `value` (an object just read or written) for as long as its resourceVersion is current.
    pub fn keep(&self, key: Key, value: Value) -> Arc<Value> {
        self.keep_as(key, value, Need::Content)
    }

    /// Keeps what a later pass will need of `value` (see [`Need`]), so memory does not hold
    /// every object's content.
    pub fn keep_as(&self, key: Key, mut value: Value, need: Need) -> Arc<Value> {
        // Nothing the operator decides on is in managedFields, and they are often most of an object.
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        if let Value::Object(map) = &mut value {
            trim(map, need);
        }
        let version =
            value.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let json =
            (need > Need::Metadata).then(|| serde_json::to_vec(&value).expect("JSON serializes").into_boxed_slice());
        self.objects.lock().expect("cache lock").entry(key).or_default().kept =
            Some(Kept { version: version.into(), json, level: need });
        Arc::new(value)
    }

    /// The resourceVersion the cache knows an object at: its store's, or (written by the
    /// operator, not seen by the watch yet) the write's. `None`: absent, or no ready store covers it.
    fn current_version(&self, key: &Key) -> Option<CompactString> {
        match self.lookup_by(key.resource, key.namespace(), key.name()) {
            Lookup::Present(lean) => Some(lean.version),
            Lookup::Absent => self
                .objects
                .lock()
                .expect("cache lock")
                .get(key)
                .and_then(|e| e.kept.as_ref())
                .map(|k| k.version.clone()),
            Lookup::Unknown => None,
        }
    }

    /// Whether the operator wrote this object and the watch has not shown it yet.
    pub fn written_unseen(&self, resource: &ApiResource, namespace: &str, name: &str) -> bool {
        let objects = self.objects.lock().expect("cache lock");
        objects.get(&Key::new(resource, namespace, name)).is_some_and(|e| e.kept.is_some())
    }

    /// Forgets what was kept of a deleted object (the watch saw it go, or the operator deleted it).
    pub fn forget(&self, key: &Key) {
        self.objects.lock().expect("cache lock").remove(key);
    }

    /// The watch saw an object go: nothing of it stays.
    pub fn deleted(&self, resource: &ApiResource, meta: &Meta) {
        self.forget(&Key::new(resource, &meta.namespace().unwrap_or_default(), &meta.name_any()));
    }

    /// Drops what was kept of objects the stores no longer show (deleted meanwhile), so memory
    /// follows the cluster.
    pub fn sweep(&self) {
        let gone: Vec<Key> = {
            let objects = self.objects.lock().expect("cache lock");
            objects
                .keys()
                .filter(|k| matches!(self.lookup_by(k.resource, k.namespace(), k.name()), Lookup::Absent))
                .cloned()
                .collect()
        };
        for key in gone {
            self.forget(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;
    use store::uid_or_marker;

    fn config_map(name: &str, instance: &str, version: &str) -> Meta {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name, "namespace": "ns", "resourceVersion": version,
                "labels": crate::names::instance_labels(instance),
                "annotations": {"unread": "x".repeat(4096)},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u-1", "controller": true}],
            },
        }))
        .expect("metadata parses")
    }

    fn names(found: Option<Vec<Listed>>) -> Vec<String> {
        let mut names: Vec<String> = found.expect("covered").into_iter().map(|l| l.name).collect();
        names.sort();
        names
    }

    #[test]
    fn a_managed_objects_key_is_its_resources() {
        for kind in crate::kinds::Kind::ALL {
            assert_eq!(Key::of(*kind, "ns", "a"), Key::new(&kind.resource(), "ns", "a"), "{kind:?}");
        }
        let key = Key::of(crate::kinds::Kind::ConfigMap, "ns", "a-config");
        assert_eq!((key.namespace(), key.name()), ("ns", "a-config"));
        let cluster_scoped = Key::new(&ApiResource::erase::<k8s_openapi::api::storage::v1::StorageClass>(&()), "", "x");
        assert_eq!((cluster_scoped.namespace(), cluster_scoped.name()), ("", "x"));
        assert_ne!(
            Key::of(crate::kinds::Kind::ConfigMap, "a", "b-c"),
            Key::of(crate::kinds::Kind::ConfigMap, "a-b", "c")
        );
    }

    #[test]
    fn a_store_keeps_what_decisions_read_and_lists_one_instance_from_its_index() {
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let cache = Cache::default();
        let store = cache.register(&resource, Some("ns".into()), None);
        assert!(matches!(cache.lookup(&resource, "ns", "a-config"), Lookup::Unknown), "not listed yet");
        store.apply(&Event::Init);
        for (name, instance) in [("a-config", "a"), ("a-extra", "a"), ("b-config", "b")] {
            store.apply(&Event::InitApply(config_map(name, instance, "1")));
        }
        assert!(matches!(cache.lookup(&resource, "ns", "a-config"), Lookup::Unknown), "list not complete yet");
        store.apply(&Event::InitDone);
        let Lookup::Present(lean) = cache.lookup(&resource, "ns", "a-config") else { panic!("listed") };
        let expected = Lean {
            version: "1".into(),
            instance: Some("a".into()),
            managed_by_us: true,
            controller_uid: Some("u-1".into()),
            create_only: false,
            owner: None,
        };
        assert_eq!(lean, expected, "only what decisions read, not the annotation");
        let a = crate::names::instance_labels("a");
        assert_eq!(names(cache.list(&resource, "ns", &a)), ["a-config", "a-extra"]);
        assert!(cache.list(&resource, "other", &a).is_none(), "another namespace: not covered");
        let unknown_label = [("team".to_string(), "x".to_string())].into();
        assert!(cache.list(&resource, "ns", &unknown_label).is_none(), "a label the store does not keep");

        // Relabeled: listed under its new instance only.
        store.apply(&Event::Apply(config_map("a-extra", "b", "2")));
        assert_eq!(names(cache.list(&resource, "ns", &a)), ["a-config"]);
        assert_eq!(names(cache.list(&resource, "ns", &crate::names::instance_labels("b"))), ["a-extra", "b-config"]);

        // Deleted; then a re-list that no longer has "b-config" (its delete was missed).
        store.apply(&Event::Delete(config_map("a-config", "a", "1")));
        assert!(names(cache.list(&resource, "ns", &a)).is_empty());
        assert!(matches!(cache.lookup(&resource, "ns", "a-config"), Lookup::Absent));
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(config_map("a-extra", "b", "2")));
        assert_eq!(names(cache.list(&resource, "ns", &crate::names::instance_labels("b"))), ["a-extra", "b-config"]);
        store.apply(&Event::InitDone);
        assert_eq!(names(cache.list(&resource, "ns", &crate::names::instance_labels("b"))), ["a-extra"]);
    }
    #[test]
    fn kept_metadata_holds_whose_it_is_and_nothing_else() {
        let live = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "a-config", "namespace": "ns", "resourceVersion": "7", "uid": "c-1",
                "labels": {"app.kubernetes.io/instance": "a", "app.kubernetes.io/managed-by": "dittofs-operator",
                           "app.kubernetes.io/name": "dittofs", "team": "x"},
                "annotations": {crate::names::OWNER_ANNOTATION: "u-1", "note": "long text"},
                "ownerReferences": [
                    {"apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": "a", "uid": "u-1",
                     "controller": true, "blockOwnerDeletion": true},
                    {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "o-1"}
                ],
                "managedFields": [{"manager": "x"}]
            },
            "data": {"config.yaml": "big"}
        });
        let cache = Cache::default();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let kept = cache.keep_as(Key::new(&resource, "ns", "a-config"), live.clone(), Need::Metadata);
        let expected = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "a-config", "namespace": "ns", "resourceVersion": "7",
                "labels": {"app.kubernetes.io/instance": "a", "app.kubernetes.io/managed-by": "dittofs-operator"},
                "annotations": {crate::names::OWNER_ANNOTATION: "u-1"},
                "ownerReferences": [{"uid": "u-1", "controller": true}]
            }
        });
        assert_eq!(*kept, expected);
        // Once the watch shows it, a metadata read is answered from the store's record, the same view.
        let lean = Lean::of(&serde_json::from_value(live["metadata"].clone()).expect("metadata"));
        assert_eq!(lean.metadata_view(&resource, "ns", "a-config"), expected);
        assert!(crate::apply::controlled_by(&kept, "u-1", "ConfigMap"));
        assert!(crate::apply::controlled_by(&kept, "u-1", "PerconaPGCluster"), "by the annotation too");
        assert!(!crate::apply::controlled_by(&kept, "o-1", "ConfigMap"));
    }

    /// Owner values that are not uid-shaped (anyone may write 256 KiB into an annotation of an
    /// object the watches see) are kept as a marker of a few bytes, in the store and in a kept
    /// object alike; they match no DittoServer, as before.
    #[test]
    fn an_owner_value_not_shaped_like_a_uid_is_kept_as_a_marker() {
        let huge = "x".repeat(200 * 1024);
        let live = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "filler", "namespace": "ns", "resourceVersion": "3",
                "annotations": {crate::names::OWNER_ANNOTATION: huge},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": huge, "controller": true}],
            },
        });
        let lean = Lean::of(&serde_json::from_value(live["metadata"].clone()).expect("metadata"));
        assert_eq!(lean.owner.as_deref(), Some(NOT_A_UID));
        assert_eq!(lean.controller_uid.as_deref(), Some(NOT_A_UID));
        let cache = Cache::default();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let kept = cache.keep_as(Key::new(&resource, "ns", "filler"), live, Need::Metadata);
        assert!(serde_json::to_string(&*kept).expect("JSON").len() < 1024, "{kept}");
        assert_eq!(kept["metadata"]["annotations"][crate::names::OWNER_ANNOTATION], NOT_A_UID);
        assert_eq!(kept["metadata"]["ownerReferences"][0]["uid"], NOT_A_UID);
        assert!(!crate::apply::controlled_by(&kept, &huge, "ConfigMap"));
        assert_eq!(&*uid_or_marker("0b7e4c2a-5d3f-4e8a-9c1b-2f6d8e0a4b3c"), "0b7e4c2a-5d3f-4e8a-9c1b-2f6d8e0a4b3c");
    }

    #[test]
    fn the_status_view_holds_what_the_status_step_reads_and_a_secret_its_data() {
        use k8s_openapi::api::apps::v1::StatefulSet;
        use k8s_openapi::api::core::v1::{Secret, Service};
        let meta = serde_json::json!({
            "name": "a", "namespace": "ns", "resourceVersion": "9", "generation": 3, "uid": "s-1",
            "labels": {"app.kubernetes.io/instance": "a", "team": "x"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
            "ownerReferences": [{"apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": "a",
                                 "uid": "u-1", "controller": true}]
        });
        let cache = Cache::default();
        let resource = ApiResource::erase::<StatefulSet>(&());
        let sts = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}}, "serviceName": "a",
                     "template": {"spec": {"containers": [{"name": "dfs", "image": "x"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
            "status": {"replicas": 1, "readyReplicas": 1, "observedGeneration": 3, "updateRevision": "a-1"}
        });
        let kept = cache.keep_as(Key::new(&resource, "ns", "a"), sts, Need::Status);
        let typed: StatefulSet = serde_json::from_value(Value::clone(&kept)).expect("still a StatefulSet");
        assert_eq!(typed.metadata.generation, Some(3), "rolled out is judged against the generation");
        let spec = typed.spec.expect("spec");
        assert_eq!((spec.replicas, spec.selector.match_labels.map(|l| l.len())), (Some(1), Some(1)));
        assert!(spec.template.spec.is_none() && spec.volume_claim_templates.is_none() && spec.service_name.is_none());
        assert_eq!(typed.status.and_then(|s| s.update_revision).as_deref(), Some("a-1"));
        assert!(typed.metadata.annotations.is_none_or(|a| a.is_empty()));
        assert!(crate::apply::controlled_by(&kept, "u-1", "StatefulSet"));

        let service = serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "LoadBalancer", "ports": [{"port": 2049}], "selector": {"app": "a"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}
        });
        let kept = cache.keep_as(Key::new(&ApiResource::erase::<Service>(&()), "ns", "a-file"), service, Need::Status);
        let typed: Service = serde_json::from_value(Value::clone(&kept)).expect("still a Service");
        let ingress = typed.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).unwrap_or_default();
        assert_eq!(ingress.first().and_then(|i| i.ip.as_deref()), Some("10.0.0.9"), "its address stays");

        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": {"password": "cHc="}
        });
        let kept = cache.keep(Key::new(&ApiResource::erase::<Secret>(&()), "ns", "a-admin"), secret);
        let typed: Secret = serde_json::from_value(Value::clone(&kept)).expect("still a Secret");
        assert_eq!(typed.data.expect("data")["password"].0, b"pw");
        assert!(typed.metadata.annotations.is_none_or(|a| a.is_empty()), "no copy of the data in an annotation");
    }

    #[test]
    fn one_entry_holds_what_was_kept_and_what_was_settled_of_an_object() {
        let cache = Cache::default();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let key = Key::new(&resource, "ns", "a-config");
        cache.settle(key.clone(), 1, "5".into());
        assert!(cache.is_settled(&key, 1, "5"));
        assert!(!cache.written_unseen(&resource, "ns", "a-config"), "settled is not kept content");
        let live = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "a-config", "namespace": "ns", "resourceVersion": "5"}});
        cache.keep_as(key.clone(), live, Need::Metadata);
        assert!(cache.written_unseen(&resource, "ns", "a-config"));
        assert!(cache.is_settled(&key, 1, "5"), "keeping content leaves the settled pair");
        assert!(!cache.is_settled(&key, 2, "5") && !cache.is_settled(&key, 1, "6"));
        cache.forget(&key);
        assert!(!cache.written_unseen(&resource, "ns", "a-config") && !cache.is_settled(&key, 1, "5"));
        assert!(std::ptr::eq(key.resource, Key::of(crate::kinds::Kind::ConfigMap, "x", "y").resource), "interned");
    }
}
