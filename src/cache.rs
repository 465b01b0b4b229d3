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

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::Value;

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

/// An object at one resourceVersion, as much of it as was kept.
struct Kept {
    version: String,
    value: Arc<Value>,
    level: Need,
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
    pub fn list(
        &self,
        resource: &ApiResource,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<Vec<Arc<Meta>>> {
        let watched = self.watched.read().expect("cache lock");
        let w = watched.get(&resource_key(resource))?.iter().find(|w| w.name.is_none() && w.covers(namespace, ""))?;
        Some(
            w.store
                .state()
                .into_iter()
                .filter(|m| m.namespace().as_deref() == Some(namespace))
                .filter(|m| labels.iter().all(|(k, v)| m.labels().get(k) == Some(v)))
                .collect(),
        )
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
                    Some(kept) if enough(kept) => return Ok(Some(kept.value.clone())),
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
            return Ok(Some(kept.value.clone()));
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
        let value = Arc::new(value);
        let kept = Kept { version, value: value.clone(), level: need };
        self.objects.lock().expect("cache lock").insert(key, kept);
        value
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
