//! What the watches already know, kept for the reconcile, so a pass over an unchanged
//! DittoServer asks the API server nothing.
//!
//! - **Metadata stores**: every watch of the controller is a metadata-only reflector. A store
//!   whose watch has no label selector is complete for its scope: an object missing from it
//!   does not exist, without a request.
//! - **Objects by resourceVersion**: the content of an object (a Secret's data, a StatefulSet's
//!   status) is fetched once and reused for as long as the store shows the same
//!   resourceVersion. Objects the operator writes are kept from the write's response.
//! - **Dry-run results**: an object whose rendering and live resourceVersion are the ones a
//!   dry run (or the apply itself) already proved equal needs no new dry run.
//!
//! Without a cache (`diff`, a reconcile called outside the controller) every read goes to the
//! API server, as before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::names::LABEL_INSTANCE;

/// A metadata object as the stores hold it.
pub type Meta = PartialObjectMeta<DynamicObject>;

/// One object: its API resource, namespace ("" when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: &ApiResource, namespace: &str, name: &str) -> Self {
        Self { resource: resource_key(resource), namespace: namespace.into(), name: name.into() }
    }
}

fn resource_key(resource: &ApiResource) -> String {
    format!("{}/{}", resource.group, resource.plural)
}

/// What a store says about one object.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// No complete, ready store covers it: ask the API server.
    Unknown,
    Absent,
    Present(Arc<Meta>),
}

struct Watched {
    store: Store<Meta>,
    ready: Arc<AtomicBool>,
    resource: ApiResource,
    /// The watch's namespace (`None`: every namespace, or a cluster-scoped kind).
    namespace: Option<String>,
    /// The watch's single object (a field selector on the name), if it watches one.
    name: Option<String>,
}

impl Watched {
    fn covers(&self, namespace: &str, name: &str) -> bool {
        self.ready.load(Ordering::SeqCst)
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}

/// An object at one resourceVersion, as much of it as was kept: compact JSON, a third to a
/// fifth of the memory of a parsed value; reading it back costs microseconds.
struct Kept {
    version: String,
    json: Box<[u8]>,
    level: Need,
}

impl Kept {
    fn value(&self) -> Arc<Value> {
        Arc::new(serde_json::from_slice(&self.json).expect("kept JSON reads back"))
    }
}

/// How much of an object a read needs; each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Its metadata: version, owner, labels (plan, when no dry run is needed).
    Metadata,
    /// Also its status and its spec without the pod template (the status step's view of a
    /// StatefulSet: the template is most of it).
    Status,
    /// All of it (data, spec, status): for a diff, a Secret's data.
    Content,
}

#[derive(Default)]
pub struct Cache {
    watched: RwLock<HashMap<String, Vec<Watched>>>,
    /// Object content by key, valid for the resourceVersion beside it.
    objects: Mutex<HashMap<Key, Kept>>,
    /// (hash of the applied object, live resourceVersion) proven to need no write.
    settled: Mutex<HashMap<Key, (u64, String)>>,
    /// Names of the watched objects by (resource, namespace, instance label), so listing one
    /// DittoServer's objects does not scan every object of the namespace. May hold names the
    /// store no longer has (or with another label now): [`Cache::list`] checks each in the store.
    by_instance: Mutex<HashMap<(String, String, String), BTreeSet<String>>>,
}

impl Cache {
    /// Registers a store fed by a complete watch (no label selector) of `resource` in
    /// `namespace` (all when `None`), optionally of one `name`. `ready` turns true once its first
    /// list is in.
    pub fn register(
        &self,
        resource: &ApiResource,
        namespace: Option<String>,
        name: Option<String>,
        store: Store<Meta>,
        ready: Arc<AtomicBool>,
    ) {
        let watched = Watched { store, ready, resource: resource.clone(), namespace, name };
        self.watched.write().expect("cache lock").entry(resource_key(resource)).or_default().push(watched);
    }

    /// What the stores know of one object.
    pub fn lookup(&self, resource: &ApiResource, namespace: &str, name: &str) -> Lookup {
        self.lookup_by(&resource_key(resource), namespace, name)
    }

    fn lookup_by(&self, resource: &str, namespace: &str, name: &str) -> Lookup {
        let watched = self.watched.read().expect("cache lock");
        let Some(stores) = watched.get(resource) else { return Lookup::Unknown };
        let Some(w) = stores.iter().find(|w| w.covers(namespace, name)) else { return Lookup::Unknown };
        let key = ObjectRef::new_with(name, w.resource.clone()).within(namespace);
        match w.store.get(&key) {
            Some(meta) => Lookup::Present(meta),
            None => Lookup::Absent,
        }
    }

    /// The objects of `resource` in `namespace` carrying every label of `labels`, when a ready
    /// complete store covers the namespace; `None` otherwise (then list from the API server).
    /// With an instance label among `labels`, only that instance's objects are looked at.
    pub fn list(
        &self,
        resource: &ApiResource,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<Vec<Arc<Meta>>> {
        let watched = self.watched.read().expect("cache lock");
        let resource_key = resource_key(resource);
        let w = watched.get(&resource_key)?.iter().find(|w| w.name.is_none() && w.covers(namespace, ""))?;
        let wanted = |m: &Arc<Meta>| {
            m.namespace().as_deref() == Some(namespace) && labels.iter().all(|(k, v)| m.labels().get(k) == Some(v))
        };
        let Some(instance) = labels.get(LABEL_INSTANCE) else {
            return Some(w.store.state().into_iter().filter(wanted).collect());
        };
        let index = self.by_instance.lock().expect("cache lock");
        let names = index.get(&(resource_key, namespace.to_string(), instance.clone()));
        Some(
            names
                .into_iter()
                .flatten()
                .filter_map(|name| w.store.get(&ObjectRef::new_with(name, w.resource.clone()).within(namespace)))
                .filter(wanted)
                .collect(),
        )
    }

    /// Notes a watched object (as the watch delivers it) in the instance index.
    pub fn index(&self, resource: &ApiResource, meta: &Meta) {
        let Some(instance) = meta.labels().get(LABEL_INSTANCE) else { return };
        let key = (resource_key(resource), meta.namespace().unwrap_or_default(), instance.clone());
        self.by_instance.lock().expect("cache lock").entry(key).or_default().insert(meta.name_any());
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
        let enough = |k: &Kept| k.level >= need;
        let version = match self.lookup(resource, namespace, name) {
            // Written by the operator and not seen by the watch yet: the write's response is newer.
            Lookup::Absent => {
                let objects = self.objects.lock().expect("cache lock");
                match objects.get(&key) {
                    Some(kept) if enough(kept) => return Ok(Some(kept.value())),
                    Some(kept) => Some(kept.version.clone()),
                    None => return Ok(None),
                }
            }
            Lookup::Present(meta) => meta.resource_version(),
            Lookup::Unknown => None,
        };
        if let Some(version) = &version
            && let Some(kept) = self.objects.lock().expect("cache lock").get(&key)
            && kept.version == *version
            && enough(kept)
        {
            return Ok(Some(kept.value()));
        }
        let fetched = fetch(client, resource, namespace, name).await?;
        // Kept only where a store will say when it changes.
        Ok(match (fetched, version) {
            (Some(value), Some(_)) => Some(self.keep(key, value)),
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
            match need {
                Need::Metadata => map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata")),
                Need::Status => {
                    if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("template");
                    }
                }
                Need::Content => {}
            }
        }
        let version =
            value.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let json = serde_json::to_vec(&value).expect("JSON serializes").into_boxed_slice();
        self.objects.lock().expect("cache lock").insert(key, Kept { version, json, level: need });
        Arc::new(value)
    }

    /// Whether applying `applied` (hashed by [`hash_of`]) onto the live version `live_version`
    /// was already shown to change nothing.
    pub fn is_settled(&self, key: &Key, applied: u64, live_version: &str) -> bool {
        self.settled.lock().expect("cache lock").get(key).is_some_and(|(h, v)| *h == applied && v == live_version)
    }

    /// Records that the object at `live_version` holds everything `applied` sets.
    pub fn settle(&self, key: Key, applied: u64, live_version: String) {
        self.settled.lock().expect("cache lock").insert(key, (applied, live_version));
    }

    /// Whether the operator wrote this object and the watch has not shown it yet.
    pub fn written_unseen(&self, resource: &ApiResource, namespace: &str, name: &str) -> bool {
        self.objects.lock().expect("cache lock").contains_key(&Key::new(resource, namespace, name))
    }

    /// Forgets what was kept of a deleted object (the watch saw it go, or the operator deleted it).
    pub fn forget(&self, key: &Key) {
        self.objects.lock().expect("cache lock").remove(key);
        self.settled.lock().expect("cache lock").remove(key);
    }

    /// The watch saw an object go: nothing of it stays.
    pub fn deleted(&self, resource: &ApiResource, meta: &Meta) {
        let (namespace, name) = (meta.namespace().unwrap_or_default(), meta.name_any());
        self.forget(&Key::new(resource, &namespace, &name));
        // (Under the label it has now; one it had before stays until the sweep.)
        if let Some(instance) = meta.labels().get(LABEL_INSTANCE) {
            let key = (resource_key(resource), namespace, instance.clone());
            let mut index = self.by_instance.lock().expect("cache lock");
            if let Some(names) = index.get_mut(&key) {
                names.remove(&name);
                if names.is_empty() {
                    index.remove(&key);
                }
            }
        }
    }

    /// Drops what was kept of objects the stores no longer show (deleted meanwhile), so memory
    /// follows the cluster.
    pub fn sweep(&self) {
        let gone: Vec<Key> = {
            let objects = self.objects.lock().expect("cache lock");
            let settled = self.settled.lock().expect("cache lock");
            objects
                .keys()
                .chain(settled.keys())
                .filter(|k| matches!(self.lookup_by(&k.resource, &k.namespace, &k.name), Lookup::Absent))
                .cloned()
                .collect()
        };
        for key in gone {
            self.forget(&key);
        }
        // Deletions a re-list skipped over (no Delete event) leave names in the index.
        let mut index = self.by_instance.lock().expect("cache lock");
        index.retain(|(resource, namespace, _), names| {
            names.retain(|name| !matches!(self.lookup_by(resource, namespace, name), Lookup::Absent));
            !names.is_empty()
        });
    }
}

/// A hash of what would be applied: equal renderings, equal hashes.
pub fn hash_of(value: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(value).expect("JSON serializes").hash(&mut hasher);
    hasher.finish()
}

async fn fetch(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, kube::Error> {
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, resource)
    };
    Ok(api.get_opt(name).await?.map(|o| serde_json::to_value(o).expect("objects serialize")))
}

/// The reads of one pass: through the controller's cache when there is one, else straight from
/// the API server (`diff`, tests calling a reconcile directly).
#[derive(Clone, Copy)]
pub struct Reads<'a> {
    pub client: &'a Client,
    pub cache: Option<&'a Cache>,
}

impl<'a> Reads<'a> {
    pub fn direct(client: &'a Client) -> Self {
        Self { client, cache: None }
    }

    pub fn cached(client: &'a Client, cache: &'a Cache) -> Self {
        Self { client, cache: Some(cache) }
    }

    /// One object's content, or `None` when it does not exist.
    pub async fn value(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Value>>, kube::Error> {
        self.read(resource, namespace, name, Need::Content).await
    }

    /// One object, as much of it as `need` says (its content, or at least its metadata).
    pub async fn read(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        need: Need,
    ) -> Result<Option<Arc<Value>>, kube::Error> {
        match self.cache {
            Some(cache) => cache.get(self.client, resource, namespace, name, need).await,
            None => Ok(fetch(self.client, resource, namespace, name).await?.map(Arc::new)),
        }
    }

    /// One typed object, or `None` when it does not exist.
    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let resource = ApiResource::erase::<K>(&());
        let Some(value) = self.value(&resource, namespace, name).await? else { return Ok(None) };
        serde_json::from_value(Value::clone(&value)).map(Some).map_err(kube::Error::SerdeError)
    }

    /// Whether an object exists (its metadata, from a store when one covers it).
    pub async fn exists(&self, resource: &ApiResource, namespace: &str, name: &str) -> Result<bool, kube::Error> {
        if let Some(cache) = self.cache {
            match cache.lookup(resource, namespace, name) {
                Lookup::Absent => return Ok(cache.written_unseen(resource, namespace, name)),
                Lookup::Present(_) => return Ok(true),
                Lookup::Unknown => {}
            }
        }
        let api: Api<PartialObjectMeta<DynamicObject>> = if namespace.is_empty() {
            Api::all_with(self.client.clone(), resource)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, resource)
        };
        Ok(api.get_metadata_opt(name).await?.is_some())
    }

    /// Typed objects of `namespace` carrying every label of `labels`.
    pub async fn list<K>(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Result<Vec<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let resource = ApiResource::erase::<K>(&());
        if let Some(found) = self.cache.and_then(|c| c.list(&resource, namespace, labels)) {
            let mut out = Vec::new();
            for meta in found {
                if let Some(object) = self.get::<K>(namespace, &meta.name_any()).await? {
                    out.push(object);
                }
            }
            return Ok(out);
        }
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = kube::api::ListParams::default().labels(&selector.join(","));
        Ok(Api::<K>::namespaced(self.client.clone(), namespace).list(&params).await?.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn config_map(name: &str, instance: &str) -> Meta {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "labels": crate::names::instance_labels(instance)},
        }))
        .expect("metadata parses")
    }

    fn names(found: Option<Vec<Arc<Meta>>>) -> Vec<String> {
        let mut names: Vec<String> = found.expect("covered").iter().map(|m| m.name_any()).collect();
        names.sort();
        names
    }

    #[test]
    fn listing_by_instance_looks_only_at_that_instances_objects_and_trusts_the_store() {
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let cache = Cache::default();
        let mut writer = Writer::new(resource.clone());
        cache.register(&resource, Some("ns".into()), None, writer.as_reader(), Arc::new(AtomicBool::new(true)));
        let seen = |writer: &mut Writer<Meta>, event: Event<Meta>| {
            if let Event::Apply(meta) = &event {
                cache.index(&resource, meta);
            }
            writer.apply_watcher_event(&event);
        };
        for (name, instance) in [("a-config", "a"), ("a-extra", "a"), ("b-config", "b")] {
            seen(&mut writer, Event::Apply(config_map(name, instance)));
        }
        let a = crate::names::instance_labels("a");
        assert_eq!(names(cache.list(&resource, "ns", &a)), ["a-config", "a-extra"]);
        assert!(cache.list(&resource, "other", &a).is_none(), "another namespace: not covered");

        // Relabeled: the index still names it under "a", the store says otherwise.
        seen(&mut writer, Event::Apply(config_map("a-extra", "b")));
        assert_eq!(names(cache.list(&resource, "ns", &a)), ["a-config"]);
        assert_eq!(names(cache.list(&resource, "ns", &crate::names::instance_labels("b"))), ["a-extra", "b-config"]);

        // Gone without a Delete event (a re-list skipped it): not listed, and the sweep drops it.
        writer.apply_watcher_event(&Event::Delete(config_map("a-config", "a")));
        assert!(names(cache.list(&resource, "ns", &a)).is_empty());
        cache.sweep();
        assert!(!cache.by_instance.lock().unwrap().values().flatten().any(|n| n == "a-config"));
        assert!(cache.by_instance.lock().unwrap().values().flatten().any(|n| n == "b-config"));
    }
}
