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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;

use crate::names::{
    LABEL_INSTANCE, LABEL_MANAGED_BY, LIFECYCLE_ANNOTATION, LIFECYCLE_CREATE_ONLY, MANAGED_BY, OWNER_ANNOTATION,
};
use crate::requests;

/// A metadata object as the watches deliver it.
pub type Meta = PartialObjectMeta<DynamicObject>;

/// One object: its API resource, namespace ("" when cluster-scoped) and name. The cache's map
/// holds one per object: the resource is interned (a handful of kinds), namespace and name are
/// one `namespace/name` string, held inline up to 24 bytes (no allocation for most keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub resource: &'static str,
    path: CompactString,
}

impl Key {
    pub fn new(resource: &ApiResource, namespace: &str, name: &str) -> Self {
        Self::in_resource(intern(resource_key(resource)), namespace, name)
    }

    /// The key of a managed object (no [`ApiResource`] built for it).
    pub fn of(kind: crate::kinds::Kind, namespace: &str, name: &str) -> Self {
        Self::in_resource(intern(format!("{}/{}", kind.group(), kind.plural())), namespace, name)
    }

    fn in_resource(resource: &'static str, namespace: &str, name: &str) -> Self {
        // Neither a namespace nor an object's name can hold a '/'.
        Self { resource, path: compact_str::format_compact!("{namespace}/{name}") }
    }

    pub fn namespace(&self) -> &str {
        self.path.split_once('/').map_or("", |(namespace, _)| namespace)
    }

    pub fn name(&self) -> &str {
        self.path.split_once('/').map_or(&*self.path, |(_, name)| name)
    }
}

/// One string per API resource for the life of the process: the resources the operator reads
/// are a fixed handful (its kinds, Pods, claims, CRDs), so what is leaked is bounded.
fn intern(resource: String) -> &'static str {
    static SEEN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().expect("intern lock");
    match seen.get(resource.as_str()) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(resource.into_boxed_str());
            seen.insert(leaked);
            leaked
        }
    }
}

/// Of an object's metadata, what planning and the status step read when no dry run is needed:
/// its name, version and generation, and whose it is (the controller owner's uid, the owner
/// annotation, the instance and managed-by labels; see `apply::controlled_by`). The rest of the
/// labels and annotations is most of a metadata object and nothing decides on it.
fn keep_ownership(meta: &mut serde_json::Map<String, Value>) {
    meta.retain(|k, _| {
        matches!(
            k.as_str(),
            "name" | "namespace" | "resourceVersion" | "generation" | "labels" | "annotations" | "ownerReferences"
        )
    });
    if let Some(Value::Object(labels)) = meta.get_mut("labels") {
        labels.retain(|k, _| k == LABEL_INSTANCE || k == LABEL_MANAGED_BY);
    }
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        annotations.retain(|k, _| k == OWNER_ANNOTATION);
        for value in annotations.values_mut() {
            *value = Value::from(&*uid_or_marker(value.as_str().unwrap_or_default()));
        }
    }
    if let Some(Value::Array(owners)) = meta.get_mut("ownerReferences") {
        owners.retain(|o| o["controller"] == true);
        for owner in owners.iter_mut().filter_map(Value::as_object_mut) {
            owner.retain(|k, _| k == "uid" || k == "controller");
            if let Some(uid) = owner.get_mut("uid") {
                *uid = Value::from(&*uid_or_marker(uid.as_str().unwrap_or_default()));
            }
        }
    }
}

/// What stands for an owner uid that is not shaped like one: it matches no DittoServer, as the
/// value it replaces did not either.
pub const NOT_A_UID: &str = "<not a uid>";

/// `value` when it is shaped like a Kubernetes uid (letters, digits and dashes, at most 64
/// characters; a real one is 36), else [`NOT_A_UID`]. The watches see every object of a kind in the cluster, and an annotation can
/// hold 256 KiB: keeping such values as given would let anyone who may create a ConfigMap fill
/// the operator's memory.
fn uid_or_marker(value: &str) -> Box<str> {
    let shaped =
        !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if shaped { value.into() } else { NOT_A_UID.into() }
}

fn resource_key(resource: &ApiResource) -> String {
    format!("{}/{}", resource.group, resource.plural)
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
    fn metadata_view(&self, resource: &ApiResource, namespace: &str, name: &str) -> Value {
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
    fn carries(&self, labels: &BTreeMap<String, String>) -> Option<bool> {
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
struct Objects {
    by_name: HashMap<Pair, Lean>,
    /// Names by (namespace, instance label).
    by_instance: HashMap<Pair, BTreeSet<CompactString>>,
}

/// A namespace and a name (of an object, or of a DittoServer instance); inline up to 24 bytes each.
type Pair = (CompactString, CompactString);

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
    objects: RwLock<Objects>,
    /// A (re-)list in progress: its objects replace the store's when it is complete.
    listing: Mutex<Option<Objects>>,
    /// The first list is in.
    ready: AtomicBool,
    /// Counts this store while its first list is not in.
    first_list: Option<Gauge>,
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

    fn get(&self, namespace: &str, name: &str) -> Option<Lean> {
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

struct Watched {
    store: Arc<LeanStore>,
    /// The watch's namespace (`None`: every namespace, or a cluster-scoped kind).
    namespace: Option<String>,
    /// The watch's single object (a field selector on the name), if it watches one.
    name: Option<String>,
}

impl Watched {
    fn covers(&self, namespace: &str, name: &str) -> bool {
        self.store.ready.load(Ordering::SeqCst)
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}

/// An object at one resourceVersion, as much of it as was kept: compact JSON, a third to a
/// fifth of the memory of a parsed value; reading it back costs microseconds. Of an object
/// written at [`Need::Metadata`], only its version: once the watch shows it, its store's
/// record answers such reads; until then its version tells it exists and whether it settled.
struct Kept {
    version: CompactString,
    json: Option<Box<[u8]>>,
    level: Need,
}

impl Kept {
    /// Its content, when it was kept and is at least `need`.
    fn value(&self, need: Need) -> Option<Arc<Value>> {
        let json = self.json.as_ref().filter(|_| self.level >= need)?;
        Some(Arc::new(serde_json::from_slice(json).expect("kept JSON reads back")))
    }
}

/// How much of an object a read needs; each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Its name, version and whose it is ([`keep_ownership`]): what a plan reads when no dry run
    /// is needed.
    Metadata,
    /// Also its status, and of its spec the replicas and selector (the status step's view of a
    /// StatefulSet and of the file Service); of a Pod, its whole metadata and status, no spec
    /// (its health is read from them).
    Status,
    /// All of it (data, spec, status): for a diff. Of a Secret, its data with the metadata of
    /// [`Need::Metadata`]: it is read for its data and never diffed.
    Content,
}

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

    /// Whether applying `applied` (hashed by [`hash_of`]) onto the live version `live_version`
    /// was already shown to change nothing.
    pub fn is_settled(&self, key: &Key, applied: u64, live_version: &str) -> bool {
        let objects = self.objects.lock().expect("cache lock");
        objects.get(key).and_then(|e| e.settled.as_ref()).is_some_and(|(h, v)| *h == applied && **v == *live_version)
    }

    /// Records that the object at `live_version` holds everything `applied` sets.
    pub fn settle(&self, key: Key, applied: u64, live_version: String) {
        self.objects.lock().expect("cache lock").entry(key).or_default().settled = Some((applied, live_version.into()));
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

    /// Whether the object, at the version the cache knows it at, was shown to hold everything
    /// `applied` sets: no request.
    pub fn settled_now(&self, key: &Key, applied: u64) -> bool {
        self.current_version(key).is_some_and(|version| self.is_settled(key, applied, &version))
    }

    /// Whether the cache knows the object exists (its store, or the operator's own write).
    pub fn present(&self, key: &Key) -> bool {
        self.current_version(key).is_some()
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

/// Drops from an object what no read at `need` looks at (see [`Need`]).
fn trim(object: &mut serde_json::Map<String, Value>, need: Need) {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let metadata_only = match (need, kind) {
        (Need::Metadata, _) => {
            object.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
            true
        }
        // A Pod is read for its health: its labels (the StatefulSet's selector) and status.
        (Need::Status, "Pod") => {
            object.remove("spec");
            false
        }
        (Need::Status, _) => {
            // The StatefulSet's replicas and selector; a Service's address is in its status.
            if let Some(Value::Object(spec)) = object.get_mut("spec") {
                spec.retain(|k, _| k == "replicas" || k == "selector");
            }
            true
        }
        // A Secret is read for its data (it is never diffed: created once, never updated).
        (Need::Content, "Secret") => true,
        (Need::Content, _) => false,
    };
    if metadata_only && let Some(Value::Object(meta)) = object.get_mut("metadata") {
        keep_ownership(meta);
    }
}

/// A hash of what would be applied: equal renderings, equal hashes.
pub fn hash_of(value: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(value).expect("JSON serializes").hash(&mut hasher);
    hasher.finish()
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
            None => Ok(requests::get_opt(self.client, namespace, resource, name).await?.map(Arc::new)),
        }
    }

    /// One typed object, or `None` when it does not exist.
    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        self.get_as(namespace, name, Need::Content).await
    }

    /// One typed object, as much of it as `need` says, or `None` when it does not exist.
    pub async fn get_as<K>(&self, namespace: &str, name: &str, need: Need) -> Result<Option<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let resource = ApiResource::erase::<K>(&());
        let Some(value) = self.read(&resource, namespace, name, need).await? else { return Ok(None) };
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
            for listed in found {
                if let Some(object) = self.get::<K>(namespace, &listed.name).await? {
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
    use watcher::Event;

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
