//! What wakes a DittoServer up: its own watch, the kinds it owns (by owner reference, from the
//! table of kinds), the Secrets, Percona clusters and ConfigMaps it references, its pod and
//! claims, StorageClasses. Every watch is metadata-only: the mappers need names, labels and
//! owner references, and a cluster full of large Secrets must not fill the operator's memory
//! (the reconcile reads the few objects it needs). Every trigger counts in the queue-depth metric until its reconcile starts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::{Context, error_policy, namespaces, reconcile};
use crate::cache::{Cache, Meta};
use crate::crd::DittoServer;
use crate::discover;
use crate::kinds::{Kind, Watch};
use crate::metrics::Metrics;
use crate::names::LABEL_INSTANCE;
use crate::percona;

/// DittoServers in `namespace` for which `wanted` holds: the target of a watch mapper.
fn matching(
    store: &kube::runtime::reflector::Store<DittoServer>,
    namespace: Option<String>,
    wanted: impl Fn(&DittoServer) -> bool,
) -> Vec<ObjectRef<DittoServer>> {
    store
        .state()
        .into_iter()
        .filter(|cr| cr.namespace() == namespace && wanted(cr))
        .map(|cr| ObjectRef::from_obj(&*cr))
        .collect()
}

/// What each DittoServer reads by name (Secrets, its Percona cluster), worked out once per
/// generation as the DittoServer watch delivers it, and indexed by what is read: a Secret event
/// finds its readers without looking at every DittoServer (with N DittoServers and their N
/// Secrets, looking at every one would make the Secret watch O(N²)).
#[derive(Default)]
struct SecretReferences {
    index: std::sync::Mutex<ReferenceIndex>,
}

/// Something a DittoServer reads by name in its namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Read {
    Secret(String),
    /// The user Secrets of this Percona cluster (found by label: they have no owner reference).
    PerconaCluster(String),
}

/// Kept lean: one entry per DittoServer and one per thing read, the uid shared between them
/// (as `String`s and sets, a thousand DittoServers reading three Secrets each would hold 1.6 MiB).
#[derive(Default)]
struct ReferenceIndex {
    /// By the DittoServer's uid.
    by_server: HashMap<Arc<str>, References>,
    /// The uids of the DittoServers that read (namespace, what); most things have one reader.
    readers: HashMap<(Namespace, Read), Vec<Arc<str>>>,
    /// The uids a re-list of the DittoServers has delivered so far.
    relisted: Option<HashSet<Arc<str>>>,
}

/// A DittoServer's namespace (`None` only for a cluster-scoped test object).
type Namespace = Option<Box<str>>;

struct References {
    generation: Option<i64>,
    namespace: Namespace,
    name: Box<str>,
    reads: Box<[Read]>,
}

impl References {
    /// A reference to the DittoServer for the controller (whose queue ignores the extra fields
    /// of a reference made from the object).
    fn server(&self) -> ObjectRef<DittoServer> {
        let reference = ObjectRef::new(&self.name);
        match &self.namespace {
            Some(namespace) => reference.within(namespace),
            None => reference,
        }
    }
}

impl SecretReferences {
    /// Follows the DittoServer watch. Returns the DittoServers it shows gone: deleted, or missing
    /// from a re-list (deleted while the watch was down).
    fn follow(&self, event: &watcher::Event<DittoServer>) -> Vec<ObjectRef<DittoServer>> {
        let mut index = self.index.lock().expect("references lock");
        match event {
            watcher::Event::Apply(cr) => index.note(cr),
            watcher::Event::InitApply(cr) => {
                index.note(cr);
                let uid = cr.metadata.uid.as_deref().unwrap_or_default();
                index.relisted.get_or_insert_default().insert(uid.into());
            }
            watcher::Event::Delete(cr) => {
                index.forget(cr.metadata.uid.as_deref().unwrap_or_default());
                return vec![ObjectRef::from_obj(cr)];
            }
            watcher::Event::Init => index.relisted = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let Some(relisted) = index.relisted.take() else { return Vec::new() };
                let gone: Vec<Arc<str>> =
                    index.by_server.keys().filter(|uid| !relisted.contains(*uid)).cloned().collect();
                return gone.iter().filter_map(|uid| index.forget(uid)).map(|gone| gone.server()).collect();
            }
        }
        Vec::new()
    }

    /// The DittoServers in `namespace` that read the Secret `name` (or, by `cluster`, the user
    /// Secret of the Percona cluster they connect to).
    fn readers(&self, namespace: Option<String>, name: &str, cluster: Option<String>) -> Vec<ObjectRef<DittoServer>> {
        let index = self.index.lock().expect("references lock");
        let mut reads = vec![Read::Secret(name.to_string())];
        reads.extend(cluster.map(Read::PerconaCluster));
        let namespace: Namespace = namespace.map(Into::into);
        let uids: HashSet<&Arc<str>> =
            reads.into_iter().filter_map(|read| index.readers.get(&(namespace.clone(), read))).flatten().collect();
        uids.into_iter().filter_map(|uid| index.by_server.get(uid)).map(References::server).collect()
    }
}

impl ReferenceIndex {
    fn note(&mut self, cr: &DittoServer) {
        let Some(uid) = cr.metadata.uid.as_deref() else { return };
        if self.by_server.get(uid).is_some_and(|known| known.generation == cr.metadata.generation) {
            return;
        }
        self.forget(uid);
        let uid: Arc<str> = uid.into();
        let server = cr.name_any();
        let namespace: Namespace = cr.metadata.namespace.as_deref().map(Into::into);
        let mut reads: Vec<Read> =
            discover::referenced_secret_names(&cr.spec, &server).into_iter().map(Read::Secret).collect();
        reads.extend(percona::target(&cr.spec, &server).map(|t| Read::PerconaCluster(t.cluster)));
        for read in &reads {
            let readers = self.readers.entry((namespace.clone(), read.clone())).or_default();
            if !readers.contains(&uid) {
                readers.push(uid.clone());
            }
        }
        let references =
            References { generation: cr.metadata.generation, namespace, name: server.into(), reads: reads.into() };
        self.by_server.insert(uid, references);
    }

    /// Drops what `uid` reads; returns its entry.
    fn forget(&mut self, uid: &str) -> Option<References> {
        let gone = self.by_server.remove(uid)?;
        for read in &gone.reads {
            let key = (gone.namespace.clone(), read.clone());
            if let Some(uids) = self.readers.get_mut(&key) {
                uids.retain(|reader| &**reader != uid);
                if uids.is_empty() {
                    self.readers.remove(&key);
                }
            }
        }
        Some(gone)
    }
}

/// `namespace/name`: a DittoServer's key in the queue-depth metric.
pub(super) fn queue_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// Wraps a watch mapper so every DittoServer it triggers counts as queued until its reconcile starts.
fn queued<K, I>(
    metrics: Arc<Metrics>,
    mapper: impl Fn(K) -> I + Send + Sync + 'static,
) -> impl Fn(K) -> Vec<ObjectRef<DittoServer>> + Send + Sync + 'static
where
    I: IntoIterator<Item = ObjectRef<DittoServer>>,
{
    move |object| {
        let targets: Vec<_> = mapper(object).into_iter().collect();
        for target in &targets {
            metrics.enqueued(queue_key(target.namespace.as_deref(), &target.name));
        }
        targets
    }
}

/// Objects per page of a list where streaming lists are refused: 25 objects of 256 KiB of
/// metadata are 6 MiB.
const LIST_PAGE: u32 = 25;

/// A watch that survives the API server. Errors are logged and retried with this watch's own
/// backoff, never handed to the controller: its one backoff covers every watch together, so one
/// failing watch would stall all of them. A 410 Gone (the resourceVersion expired, as after an
/// API server restart or an etcd compaction) starts the watch over with a fresh list: kube's
/// watcher retries a watch refused with 410 with the same resourceVersion forever.
fn resilient<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    resilient_or(api, config, None)
}

/// [`resilient`], which switches to `fallback` for good if the API server refuses `config`
/// (a streaming list where the WatchList feature is off).
fn resilient_or<K>(
    api: Api<K>,
    config: watcher::Config,
    fallback: Option<watcher::Config>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let kind = api.resource_url().to_string();
    let start = move |config: &watcher::Config| watcher(api.clone(), config.clone()).default_backoff().boxed();
    let inner = start(&config);
    futures::stream::unfold((inner, config, fallback, start), move |(mut inner, mut config, mut fallback, start)| {
        let kind = kind.clone();
        async move {
            loop {
                match inner.next().await? {
                    Ok(event) => return Some((Ok(event), (inner, config, fallback, start))),
                    Err(error) => {
                        if refused(&error)
                            && let Some(next) = fallback.take()
                        {
                            warn!(watch = %kind, %error, "streaming list refused; listing in pages instead");
                            config = next;
                            inner = start(&config);
                            continue;
                        }
                        warn!(watch = %kind, %error, "watch failed; retrying");
                        if expired(&error) {
                            inner = start(&config);
                        }
                    }
                }
            }
        }
    })
}

/// The API server refused the request as such (400, 422): retrying it will not help.
fn refused(error: &watcher::Error) -> bool {
    let bad = |code: u16| code == 400 || code == 422;
    match error {
        watcher::Error::WatchError(status) => bad(status.code),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) | watcher::Error::InitialListFailed(e) => {
            matches!(e, kube::Error::Api(status) if bad(status.code))
        }
        watcher::Error::NoResourceVersion => false,
    }
}

/// A [`resilient`] metadata watch that also fills a store of the controller's cache, so the
/// reconcile reads what the watch already knows. Only complete watches (no label selector) are
/// registered: a store must know that a missing object does not exist.
fn cached(
    cache: &Arc<Cache>,
    api: Api<Meta>,
    resource: &ApiResource,
    namespace: Option<String>,
    name: Option<String>,
) -> impl Stream<Item = Result<Meta, watcher::Error>> + Send + use<> {
    let store = cache.register(resource, namespace, name.clone());
    // Whole kinds are listed as a stream of single objects: anyone can put 256 KiB of annotations
    // on each of thousands of objects, and one page of 500 would then be 100 MiB. Where streaming
    // lists are off, small pages.
    let (config, fallback) = match &name {
        Some(name) => (watcher::Config::default().fields(&format!("metadata.name={name}")), None),
        None => (watcher::Config::default().streaming_lists(), Some(watcher::Config::default().page_size(LIST_PAGE))),
    };
    let (cache, kind) = (cache.clone(), resource.clone());
    resilient_or(api, config, fallback)
        .inspect_ok(move |event| {
            store.apply(event);
            // What the operator kept of it must not outlive it.
            if let watcher::Event::Delete(gone) = event {
                cache.deleted(&kind, gone);
            }
        })
        .touched_objects()
}

/// Drops what nothing reads from a DittoServer before its store keeps it: managedFields (often
/// most of an object's metadata) and kubectl's last-applied-configuration annotation (a whole
/// copy of the object).
fn lighten(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The API server answered 410 Gone: the watch's resourceVersion is too old to resume from.
fn expired(error: &watcher::Error) -> bool {
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(status) if status.code == 410);
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) | watcher::Error::InitialListFailed(e) => {
            gone(e)
        }
        watcher::Error::NoResourceVersion => false,
    }
}

/// The DittoServer controlling `object` (its controller owner reference): what `owns` maps to.
fn controller_owner<K: Resource>(object: K) -> Option<ObjectRef<DittoServer>> {
    let meta = object.meta();
    let owner = meta.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true) && o.kind == DittoServer::kind(&()) && o.api_version == DittoServer::api_version(&())
    })?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref()?))
}

/// Runs the controller until `shutdown` resolves. Tests call this in-process.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let scope = Scope {
        client: ctx.watch_client.clone(),
        namespaces: ctx.settings.namespaces.clone(),
        cache: ctx.cache.clone(),
        metrics: ctx.metrics.clone(),
    };
    let (controller, secret_references) = servers(&ctx, &scope);
    let store = controller.store();
    let controller = watch_owned(controller, &scope);
    let controller = watch_referenced(controller, &scope, &ctx.settings, secret_references, store.clone());
    let mut controller = watch_optional_kinds(controller, &scope, store.clone()).await;
    if ctx.settings.allow_namespace_templates {
        controller = watch_namespace_templates(controller, &scope, store);
    }
    drive(controller, ctx, &scope, shutdown).await;
}

/// Where the watches look, and what they feed.
struct Scope {
    /// Without a read timeout: a watch may be quiet for minutes.
    client: Client,
    /// The watched namespaces; empty = all of them.
    namespaces: Vec<String>,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
}

impl Scope {
    /// The namespaces to watch one by one: `None` for all of them at once.
    fn each(&self) -> Vec<Option<String>> {
        match self.namespaces.as_slice() {
            [] => vec![None],
            namespaces => namespaces.iter().cloned().map(Some).collect(),
        }
    }

    /// An Api over one watched namespace, or all of them.
    fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// The same, metadata only, for a kind known by its API resource.
    fn api_dynamic(&self, namespace: Option<&str>, resource: &ApiResource) -> Api<PartialObjectMeta<DynamicObject>> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// Complete metadata watches of a kind in the watched namespaces, each feeding its own
    /// store of the cache (a store is complete for the namespace it watches), as one stream.
    fn kind(&self, resource: &ApiResource) -> impl Stream<Item = Result<Meta, watcher::Error>> + Send + 'static {
        let watches = self.each().into_iter().map(|namespace| {
            cached(&self.cache, self.api_dynamic(namespace.as_deref(), resource), resource, namespace, None).boxed()
        });
        futures::stream::select_all(watches)
    }
}

/// The controller over the DittoServer watch. Every trigger goes through `queued` so the
/// queue-depth metric sees it: the DittoServer watch by hand (kube's own would hide it).
fn servers(ctx: &Arc<Context>, scope: &Scope) -> (Controller<DittoServer>, Arc<SecretReferences>) {
    let (reader, writer) = reflector::store::<DittoServer>();
    let enqueue = scope.metrics.clone();
    // Ready once the first list is in (kube's Store::wait_until_ready wakes only one waiter,
    // and the controller itself is already waiting on it).
    let ready = ctx.ready.clone();
    let secret_references = Arc::new(SecretReferences::default());
    let references = secret_references.clone();
    let forget = ctx.clone();
    let watch = |namespace: Option<String>| {
        resilient(scope.api::<DittoServer>(namespace.as_deref()), watcher::Config::default().any_semantic()).boxed()
    };
    let mut watches: Vec<_> = scope.each().into_iter().map(watch).collect();
    let events =
        if watches.len() == 1 { watches.remove(0) } else { namespaces::merge(watches, reader.clone()).boxed() };
    let events = events.modify(|cr: &mut DittoServer| lighten(&mut cr.metadata)).inspect_ok(move |event| {
        for gone in references.follow(event) {
            forget.forget_server(&gone);
        }
        if matches!(event, watcher::Event::InitDone) {
            ready.store(true, Ordering::SeqCst);
        }
    });
    let servers = reflector(writer, events)
        .applied_objects()
        .inspect_ok(move |cr| enqueue.enqueued(queue_key(cr.namespace().as_deref(), &cr.name_any())));
    let controller = Controller::for_stream(servers, reader);
    *ctx.servers.write().expect("servers lock") = Some(controller.store());
    let mut controller =
        controller.with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency));
    // A runtime task that finished wakes its server (see controller/serving.rs).
    let (wake, woken) = futures::channel::mpsc::unbounded();
    *ctx.wake.lock().expect("wake lock") = Some(wake);
    controller = controller.reconcile_on(woken);
    (controller, secret_references)
}

/// The kinds we own, mapped to their controlling DittoServer. Not filtered by label: the store
/// must also show an object in the way that someone else made.
fn watch_owned(mut controller: Controller<DittoServer>, scope: &Scope) -> Controller<DittoServer> {
    for kind in Kind::ALL.iter().filter(|k| k.watch() == Watch::ByOwner) {
        let resource = kind.resource();
        controller = controller.watches_stream_with(
            scope.kind(&resource),
            queued(scope.metrics.clone(), controller_owner),
            resource,
        );
    }
    controller
}

/// What DittoServers read without owning it: Secrets, the pod and claims, StorageClasses, the
/// operator-wide override ConfigMap.
fn watch_referenced(
    controller: Controller<DittoServer>,
    scope: &Scope,
    settings: &crate::settings::Settings,
    secret_references: Arc<SecretReferences>,
    store: reflector::Store<DittoServer>,
) -> Controller<DittoServer> {
    let metrics = &scope.metrics;
    let (op_ns, op_name) = settings.templates_configmap.clone();
    let (template_store, class_store) = (store.clone(), store);
    let secrets = ApiResource::erase::<Secret>(&());
    let pods = ApiResource::erase::<Pod>(&());
    let claims = ApiResource::erase::<PersistentVolumeClaim>(&());
    let classes = ApiResource::erase::<StorageClass>(&());
    let config_maps = ApiResource::erase::<ConfigMap>(&());
    controller
        // Referenced Secrets have no owner reference to us: map them to the CRs that read them.
        .watches_stream_with(
            scope.kind(&secrets),
            queued(metrics.clone(), move |secret: Meta| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                // Percona's user Secrets have no owner reference: find their cluster by label.
                let cluster = secret.labels().get(percona::CLUSTER_LABEL).cloned();
                secret_references.readers(namespace, &name, cluster)
            }),
            secrets,
        )
        // The pod and its claims: Degraded (crash loop, image pull, Pending claim) follows them.
        .watches_stream_with(scope.kind(&pods), queued(metrics.clone(), by_instance::<Meta>), pods)
        .watches_stream_with(scope.kind(&claims), queued(metrics.clone(), by_instance::<Meta>), claims)
        // A StorageClass that appears (or goes) changes what the DittoServers naming it can do.
        .watches_stream_with(
            cached(&scope.cache, Api::all_with(scope.client.clone(), &classes), &classes, None, None),
            queued(metrics.clone(), move |class: Meta| {
                let name = class.name_any();
                class_store
                    .state()
                    .into_iter()
                    .filter(|cr| cr.spec.storage.storage_class_name.as_deref() == Some(name.as_str()))
                    .map(|cr| ObjectRef::from_obj(&*cr))
                    .collect::<Vec<_>>()
            }),
            classes.clone(),
        )
        // An edit of the operator-wide overrides re-renders every DittoServer.
        .watches_stream_with(
            cached(
                &scope.cache,
                Api::namespaced_with(scope.client.clone(), &op_ns, &config_maps),
                &config_maps,
                Some(op_ns.clone()),
                Some(op_name.clone()),
            ),
            queued(metrics.clone(), move |_: Meta| {
                template_store.state().into_iter().map(|cr| ObjectRef::from_obj(&*cr)).collect::<Vec<_>>()
            }),
            config_maps,
        )
}

/// The CRDs of optional kinds, and the kinds themselves when installed now: ServiceMonitors the
/// DittoServers own, PerconaPGClusters they reference.
async fn watch_optional_kinds(
    mut controller: Controller<DittoServer>,
    scope: &Scope,
    store: reflector::Store<DittoServer>,
) -> Controller<DittoServer> {
    let client = &scope.client;
    // Each CRD by name (the only ones the operator may read): whether they are installed is
    // then known without a request.
    let crds = ApiResource::erase::<CustomResourceDefinition>(&());
    for crd in Kind::ALL.iter().filter_map(|k| k.optional_crd()) {
        let api = Api::all_with(client.clone(), &crds);
        controller = controller.watches_stream_with(
            cached(&scope.cache, api, &crds, None, Some(crd.to_string())),
            |_: Meta| None::<ObjectRef<DittoServer>>,
            crds.clone(),
        );
    }
    let installed = |crd: &'static str| async move {
        Api::<CustomResourceDefinition>::all(client.clone()).get_metadata_opt(crd).await.is_ok_and(|c| c.is_some())
    };
    for kind in Kind::ALL.iter().filter(|k| k.watch() == Watch::Elsewhere && k.prunable()) {
        let Some(crd) = kind.optional_crd() else { continue };
        if installed(crd).await {
            let resource = kind.resource();
            controller = controller.watches_stream_with(
                scope.kind(&resource),
                queued(scope.metrics.clone(), controller_owner),
                resource,
            );
        }
    }
    if installed(percona::CRD_NAME).await {
        let resource = percona::api_resource();
        controller = controller.watches_stream_with(
            scope.kind(&resource),
            queued(scope.metrics.clone(), move |cluster: Meta| {
                let namespace = cluster.namespace();
                let name = cluster.name_any();
                matching(&store, namespace, |cr| {
                    percona::target(&cr.spec, &cr.name_any()).is_some_and(|t| t.cluster == name)
                })
            }),
            resource,
        );
    } else {
        info!("PerconaPGCluster CRD not installed: DittoServers that use Percona will report it");
    }
    controller
}

/// ConfigMaps named by `spec.templates.configMapRef` (with `--allow-namespace-templates`).
/// They are watched as an owned kind already; this maps them by reference.
fn watch_namespace_templates(
    controller: Controller<DittoServer>,
    scope: &Scope,
    store: reflector::Store<DittoServer>,
) -> Controller<DittoServer> {
    let config_maps = ApiResource::erase::<ConfigMap>(&());
    let watches = scope.each().into_iter().map(|namespace| {
        resilient(scope.api_dynamic(namespace.as_deref(), &config_maps), watcher::Config::default())
            .touched_objects()
            .boxed()
    });
    controller.watches_stream_with(
        futures::stream::select_all(watches),
        queued(scope.metrics.clone(), move |cm: Meta| {
            let namespace = cm.namespace();
            let name = cm.name_any();
            matching(&store, namespace, |cr| {
                cr.spec.templates.as_ref().and_then(|t| t.config_map_ref.as_ref()).is_some_and(|r| r.name == name)
            })
        }),
        config_maps,
    )
}

/// Runs the controller until `shutdown`, sweeping the cache of deleted objects meanwhile.
async fn drive(
    controller: Controller<DittoServer>,
    ctx: Arc<Context>,
    scope: &Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // What was kept of deleted objects goes (in memory only: no request).
    let cache = scope.cache.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            cache.sweep();
        }
    });
    let metrics = scope.metrics.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let metrics = metrics.clone();
            async move {
                match result {
                    // Deleted before its turn: it no longer waits.
                    Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                        metrics.dequeued(&queue_key(gone.namespace.as_deref(), &gone.name))
                    }
                    Err(error) => warn!(%error, "reconcile failed"),
                    Ok(_) => {}
                }
            }
        })
        .await;
    sweeper.abort();
    metrics.queue_cleared();
    info!("controller stopped");
}

/// The DittoServer a pod or claim belongs to, by its `app.kubernetes.io/instance` label.
fn by_instance<K: kube::Resource>(object: K) -> Option<ObjectRef<DittoServer>> {
    let instance = object.meta().labels.as_ref()?.get(LABEL_INSTANCE)?.clone();
    Some(ObjectRef::new(&instance).within(object.meta().namespace.as_deref()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API server without streaming lists (WatchList off) refuses `sendInitialEvents`: the
    /// watch lists in pages instead, and its store fills.
    #[tokio::test]
    async fn a_refused_streaming_list_falls_back_to_pages() {
        let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = asked.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let query = request.uri().query().unwrap_or_default().to_string();
            log.lock().unwrap().push(query.clone());
            async move {
                let (code, body) = if query.contains("sendInitialEvents=true") {
                    (
                        422,
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled","reason":"Invalid","code":422}"#,
                    )
                } else if query.contains("watch=true") {
                    futures::future::pending::<()>().await;
                    unreachable!()
                } else {
                    (
                        200,
                        r#"{"apiVersion":"v1","kind":"ConfigMapList","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"a","namespace":"ns","resourceVersion":"7"}}]}"#,
                    )
                };
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let client = Client::new(service, "ns");
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        let config = watcher::Config::default().streaming_lists();
        let mut events = resilient_or(api, config, Some(watcher::Config::default().page_size(LIST_PAGE))).boxed();
        let mut listed = Vec::new();
        let deadline = std::time::Duration::from_secs(10);
        while let Ok(Some(event)) = tokio::time::timeout(deadline, events.next()).await {
            match event.expect("resilient yields no errors") {
                watcher::Event::InitApply(cm) => listed.push(cm.name_any()),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert_eq!(listed, ["a"]);
        let asked = asked.lock().unwrap().clone();
        assert!(asked[0].contains("sendInitialEvents=true"), "{asked:?}");
        assert!(asked.iter().any(|q| q.contains("limit=25") && !q.contains("watch")), "{asked:?}");
    }

    fn server(name: &str, generation: i64, postgres_secret: Option<&str>) -> DittoServer {
        let mut spec = serde_json::json!({"storage": {"metadataSize": "1Gi"}});
        if let Some(secret) = postgres_secret {
            spec["database"] = serde_json::json!({"type": "postgres", "postgresSecretRef": {"name": secret}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": generation},
            "spec": spec,
        }))
        .expect("DittoServer parses")
    }

    fn readers(references: &SecretReferences, secret: &str) -> Vec<String> {
        let mut names: Vec<String> =
            references.readers(Some("ns".into()), secret, None).into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn a_secret_event_finds_its_readers_through_the_index_kept_from_the_dittoserver_watch() {
        use watcher::Event;
        let references = SecretReferences::default();
        references.follow(&Event::Apply(server("a", 1, Some("pg"))));
        references.follow(&Event::Apply(server("b", 1, None)));
        assert_eq!(readers(&references, "pg"), ["a"]);
        assert!(references.readers(Some("other".into()), "pg", None).is_empty(), "another namespace");
        // A new generation that references it too; the same generation again changes nothing.
        references.follow(&Event::Apply(server("b", 2, Some("pg"))));
        references.follow(&Event::Apply(server("b", 2, None)));
        assert_eq!(readers(&references, "pg"), ["a", "b"]);
        // What the watch shows gone is reported, for the controller to drop what it keeps of it.
        let gone = references.follow(&Event::Delete(server("a", 1, Some("pg"))));
        assert_eq!(gone, [ObjectRef::new("a").within("ns")]);
        assert_eq!(readers(&references, "pg"), ["b"]);
        // A re-list: b no longer reads it, and c, deleted while the watch was down, goes.
        assert!(references.follow(&Event::Apply(server("c", 1, Some("pg")))).is_empty());
        references.follow(&Event::Init);
        assert!(references.follow(&Event::InitApply(server("b", 3, None))).is_empty());
        let gone = references.follow(&Event::InitDone);
        assert_eq!(gone, [ObjectRef::new("c").within("ns")]);
        assert!(readers(&references, "pg").is_empty());
        assert_eq!(references.index.lock().unwrap().by_server.len(), 1);
        assert!(references.index.lock().unwrap().readers.values().all(|uids| !uids.is_empty()));
    }

    #[test]
    fn stores_keep_no_managed_fields_nor_last_applied_configuration() {
        let mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(serde_json::json!({
                "name": "creds",
                "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"c2VjcmV0\"}}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            }))
            .unwrap();
        lighten(&mut meta);
        assert_eq!(meta.managed_fields, None);
        assert_eq!(meta.annotations, Some([("keep".to_string(), "me".to_string())].into()));
        let mut only_last_applied = meta.clone();
        only_last_applied.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
        lighten(&mut only_last_applied);
        assert_eq!(only_last_applied.annotations, None);
    }
}
