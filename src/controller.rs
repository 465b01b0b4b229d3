//! The reconcile loop: dereference (Secrets) → render → apply → prune → status.
//! Everything a reconcile needs comes through one [`Context`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::apply::{self, Plan};
use crate::crd::{DatabaseStatus, DittoServer, DittoServerStatus, Endpoints, FIELD_MANAGER};
use crate::diff::Action as DiffAction;
use crate::discover::{self, DiscoverError, SecretsByName};
use crate::health;
use crate::metrics::Metrics;
use crate::overrides;
use crate::percona;
use crate::render::{Rendered, Renderer};
pub use crate::settings::{RunArgs, Settings, ValuesArgs};
use crate::status::{self, CONFIG_READY, DATABASE_READY, Decided, IN_SYNC, TEMPLATES_READY, Workload};

/// Steady-state resync: catches drift nothing else would report.
const RESYNC: Duration = Duration::from_secs(300);
/// Waiting on something outside our control (a Secret that does not exist yet).
const WAIT: Duration = Duration::from_secs(30);
/// `dittofs.dittofs.com/reconcile: paused` on a DittoServer holds its changes back.
pub const PAUSE_ANNOTATION: &str = "dittofs.dittofs.com/reconcile";

fn is_paused(server: &DittoServer) -> bool {
    server.annotations().get(PAUSE_ANNOTATION).map(String::as_str) == Some("paused")
}

/// `Kind/name (update: spec.x, spec.y)` for each pending change, for the InSync message.
fn pending_summary(plan: &Plan) -> String {
    plan.changes()
        .iter()
        .map(|d| {
            let action = format!("{:?}", d.action).to_lowercase();
            if d.paths.is_empty() {
                format!("{} ({action})", d.reference)
            } else {
                format!("{} ({action}: {})", d.reference, d.paths.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// `/readyz`: the controller's cache is synced, or (leader election) this replica knows the Lease.
    pub ready: Arc<AtomicBool>,
    /// Consecutive failures per CR, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DittoServer>, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics: Arc::new(Metrics::new()),
            ready: Arc::default(),
            failures: Mutex::default(),
        }
    }
}

/// Wraps a failed read so the error names what was being read.
fn read_error(what: &str) -> impl FnOnce(kube::Error) -> Error {
    let what = what.to_string();
    move |source| Error::Read { what, source }
}

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

/// `namespace/name`: a DittoServer's key in the queue-depth metric.
fn queue_key(namespace: Option<&str>, name: &str) -> String {
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

/// The DittoServer controlling `object` (its controller owner reference): what `owns` maps to.
fn controller_owner<K: Resource>(object: K) -> Option<ObjectRef<DittoServer>> {
    let meta = object.meta();
    let owner = meta.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true) && o.kind == DittoServer::kind(&()) && o.api_version == DittoServer::api_version(&())
    })?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref()?))
}

/// Held on every DittoServer so deletion waits for [`cleanup`].
pub const FINALIZER: &str = "dittofs.dittofs.com/finalizer";

/// Deletion: say so, leave data behind on purpose. Owner references let the garbage collector
/// remove the objects we own; PVCs (retained by the StatefulSet) and the generated credentials
/// (not owned) stay, so a DittoServer re-created with the same name finds its data.
async fn cleanup(server: &DittoServer, ctx: &Context) -> Result<Action, Error> {
    let name = server.name_any();
    if let Err(error) = settle_database(server, ctx).await {
        // The finalizer stays until the database's fate is settled; say why, on the CR and in an Event.
        let text = format!(
            "Cannot finish deleting: {error}. The finalizer {FINALIZER} stays until this succeeds (retrying with backoff)"
        );
        publish(ctx, server, EventType::Warning, "CleanupFailed", &text).await;
        report_deletion(ctx, server, Some(("CleanupFailed", &text))).await;
        return Err(error);
    }
    let note = format!(
        "Deleting {name}: owned objects are garbage-collected; PersistentVolumeClaims and generated credentials are kept"
    );
    publish(ctx, server, EventType::Normal, "Deleting", &note).await;
    report_deletion(ctx, server, None).await;
    Ok(Action::await_change())
}

/// `phase: Deleting`, Ready=False, and Degraded=True with `blocked`'s reason while cleanup cannot
/// finish. Best effort: the object may be gone from under us once the finalizer is removed.
async fn report_deletion(ctx: &Context, server: &DittoServer, blocked: Option<(&'static str, &str)>) {
    let mut decided = vec![Decided::new(
        status::READY,
        false,
        "Deleting",
        "The DittoServer is being deleted; PersistentVolumeClaims and generated credentials are kept",
    )];
    if let Some((reason, why)) = blocked {
        decided.push(Decided::new(status::DEGRADED, true, reason, why));
    }
    let previous = server.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = DittoServerStatus {
        phase: Some(crate::crd::Phase::Deleting),
        conditions: status::merge_keeping(&previous.conditions, &decided, server.metadata.generation, &now),
        ..previous.clone()
    };
    if !status::differs(Some(&previous), &new) {
        return;
    }
    let api: Api<DittoServer> = Api::namespaced(ctx.client.clone(), &server.namespace().unwrap_or_default());
    if let Err(error) =
        api.patch_status(&server.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": new }))).await
    {
        warn!(%error, "could not report phase Deleting");
    }
}

/// `spec.percona.enabled` with `deleteWithServer: true`: the created cluster goes with the server.
fn database_goes_with_server(server: &DittoServer) -> bool {
    server.spec.percona.as_ref().is_some_and(|p| p.enabled && p.delete_with_server == Some(true))
}

/// `<name>-postgres`, if the operator created it: deleted with the server only when
/// `spec.percona.deleteWithServer: true`; otherwise orphaned (owner annotation removed) and left
/// running — also when `spec.percona.enabled` was turned off meanwhile. It never has an owner
/// reference, so the garbage collector cannot delete it behind the finalizer's back.
async fn settle_database(server: &DittoServer, ctx: &Context) -> Result<(), Error> {
    let crd = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    if crd.get_metadata_opt(percona::CRD_NAME).await.map_err(read_error("CustomResourceDefinition"))?.is_none() {
        return Ok(());
    }
    let namespace = server.namespace().unwrap_or_default();
    let name = format!("{}-postgres", server.name_any());
    let clusters = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &namespace, &percona::api_resource());
    let Some(cluster) = clusters.get_opt(&name).await.map_err(read_error("PerconaPGCluster"))? else { return Ok(()) };
    let uid = server.uid().unwrap_or_default();
    let live = serde_json::to_value(&cluster).expect("objects serialize");
    if !apply::controlled_by(&live, &uid, "PerconaPGCluster") {
        return Ok(());
    }
    let reference = format!("PerconaPGCluster/{name}");
    if database_goes_with_server(server) {
        // Only the object just looked at: never a same-named cluster made meanwhile.
        let this_one = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions { uid: cluster.uid(), resource_version: None }),
            ..Default::default()
        };
        clusters.delete(&name, &this_one).await.map_err(|source| {
            Error::Apply(apply::ApplyError::Api { action: "deleting", object: reference.clone(), source })
        })?;
        publish(
            ctx,
            server,
            EventType::Normal,
            "PerconaDeleted",
            &format!("Deleted {reference} (spec.percona.deleteWithServer)"),
        )
        .await;
    } else {
        // Owner annotation (and an owner reference an earlier build set) removed: released, so a
        // DittoServer re-created with the same name takes it back. Others' owner references stay;
        // the resourceVersion makes the list replacement fail rather than drop a concurrent edit.
        let others: Vec<_> = cluster.owner_references().iter().filter(|o| o.uid != uid).cloned().collect();
        let orphan = json!({"metadata": {
            "resourceVersion": cluster.resource_version(),
            "ownerReferences": if others.is_empty() { serde_json::Value::Null } else { json!(others) },
            "annotations": {apply::OWNER_ANNOTATION: null},
        }});
        clusters.patch(&name, &PatchParams::default(), &Patch::Merge(orphan)).await.map_err(|source| {
            Error::Apply(apply::ApplyError::Api { action: "orphaning", object: reference.clone(), source })
        })?;
        publish(
            ctx,
            server,
            EventType::Normal,
            "PerconaOrphaned",
            &format!("Kept {reference}: it outlives the DittoServer (deleteWithServer is not true)"),
        )
        .await;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("writing status: {0}")]
    Status(kube::Error),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Apply(_) => "ApplyFailed",
            Self::Read { .. } => "ReadFailed",
            Self::Status(_) => "StatusFailed",
            Self::Finalizer(_) => "FinalizerFailed",
        }
    }
}

/// Runs the controller until `shutdown` resolves. Tests call this in-process.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let settings = ctx.settings.clone();
    /// An Api over the watched namespace, or all of them.
    fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = settings.namespace.clone();
    // Objects the operator manages (owned kinds, and the pod and claims by their labels).
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::render::LABEL_MANAGED_BY,
        crate::render::MANAGED_BY
    ));
    let (op_ns, op_name) = settings.templates_configmap.clone();
    let operator_templates = Api::<ConfigMap>::namespaced(client.clone(), &op_ns);
    let allow_namespace_templates = settings.allow_namespace_templates;
    let concurrency = settings.concurrency;
    let context = ctx;

    let metrics = context.metrics.clone();
    // Every trigger goes through `queued` so the queue-depth metric sees it: the DittoServer watch
    // by hand (kube's own would hide it), owned kinds by their controller owner reference.
    let (reader, writer) = reflector::store::<DittoServer>();
    let enqueue = metrics.clone();
    // Ready once the first list is in (kube's Store::wait_until_ready wakes only one waiter,
    // and the controller itself is already waiting on it).
    let ready = context.ready.clone();
    let events = watcher(scoped::<DittoServer>(&client, &ns), watcher::Config::default().any_semantic()).inspect_ok(
        move |event| {
            if matches!(event, watcher::Event::InitDone) {
                ready.store(true, Ordering::SeqCst);
            }
        },
    );
    let servers = reflector(writer, events)
        .applied_objects()
        .inspect_ok(move |cr| enqueue.enqueued(queue_key(cr.namespace().as_deref(), &cr.name_any())));
    let controller = Controller::for_stream(servers, reader);
    let store = controller.store();
    let (secret_store, template_store, namespace_store, percona_store, class_store) =
        (store.clone(), store.clone(), store.clone(), store.clone(), store);
    /// Metadata-only watch of a kind we own, mapped to its controlling DittoServer.
    macro_rules! owns {
        ($controller:expr, $kind:ty) => {
            $controller.watches_stream(
                watcher(scoped::<PartialObjectMeta<$kind>>(&client, &ns), managed.clone()).touched_objects(),
                queued(metrics.clone(), controller_owner),
            )
        };
    }
    let controller = controller.with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let controller = owns!(controller, ConfigMap);
    let controller = owns!(controller, Service);
    let controller = owns!(controller, NetworkPolicy);
    let controller = owns!(controller, PodDisruptionBudget);
    let controller = owns!(controller, StatefulSet);
    let mut controller = controller
        // Referenced Secrets have no owner reference to us: map them to the CRs that read them.
        .watches(
            scoped::<Secret>(&client, &ns),
            watcher::Config::default(),
            queued(metrics.clone(), move |secret: Secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                // Percona's user Secrets have no owner reference: find their cluster by label.
                let cluster = secret.labels().get(percona::CLUSTER_LABEL).cloned();
                matching(&secret_store, namespace, |cr| {
                    discover::referenced_secret_names(&cr.spec, &cr.name_any()).contains(&name)
                        || percona::target(&cr.spec, &cr.name_any())
                            .is_some_and(|t| Some(&t.cluster) == cluster.as_ref())
                })
            }),
        )
        // The pod and its claims: Degraded (crash loop, image pull, Pending claim) follows them.
        .watches(scoped::<Pod>(&client, &ns), managed.clone(), queued(metrics.clone(), by_instance::<Pod>))
        .watches(
            scoped::<PersistentVolumeClaim>(&client, &ns),
            managed,
            queued(metrics.clone(), by_instance::<PersistentVolumeClaim>),
        )
        // A StorageClass that appears (or goes) changes what the DittoServers naming it can do.
        .watches(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            queued(metrics.clone(), move |class: StorageClass| {
                let name = class.name_any();
                class_store
                    .state()
                    .into_iter()
                    .filter(|cr| cr.spec.storage.storage_class_name.as_deref() == Some(name.as_str()))
                    .map(|cr| ObjectRef::from_obj(&*cr))
                    .collect::<Vec<_>>()
            }),
        )
        // An edit of the operator-wide overrides re-renders every DittoServer.
        .watches(
            operator_templates,
            watcher::Config::default().fields(&format!("metadata.name={op_name}")),
            queued(metrics.clone(), move |_: ConfigMap| {
                template_store.state().into_iter().map(|cr| ObjectRef::from_obj(&*cr)).collect::<Vec<_>>()
            }),
        );
    // PerconaPGClusters, when their CRD is installed now (else DittoServers that need one say so).
    let percona_installed = Api::<CustomResourceDefinition>::all(client.clone())
        .get_metadata_opt(percona::CRD_NAME)
        .await
        .is_ok_and(|crd| crd.is_some());
    if percona_installed {
        let resource = percona::api_resource();
        let api = match &ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
            None => Api::<DynamicObject>::all_with(client.clone(), &resource),
        };
        controller = controller.watches_with(
            api,
            resource,
            watcher::Config::default(),
            queued(metrics.clone(), move |cluster: DynamicObject| {
                let namespace = cluster.namespace();
                let name = cluster.name_any();
                matching(&percona_store, namespace, |cr| {
                    percona::target(&cr.spec, &cr.name_any()).is_some_and(|t| t.cluster == name)
                })
            }),
        );
    } else {
        info!("PerconaPGCluster CRD not installed: DittoServers that use Percona will report it");
    }
    if allow_namespace_templates {
        controller = controller.watches(
            scoped::<ConfigMap>(&client, &ns),
            watcher::Config::default(),
            queued(metrics.clone(), move |cm: ConfigMap| {
                let namespace = cm.namespace();
                let name = cm.name_any();
                matching(&namespace_store, namespace, |cr| {
                    cr.spec.templates.as_ref().and_then(|t| t.config_map_ref.as_ref()).is_some_and(|r| r.name == name)
                })
            }),
        );
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
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
    metrics.queue_cleared();
    info!("controller stopped");
}

/// The DittoServer a pod or claim belongs to, by its `app.kubernetes.io/instance` label.
fn by_instance<K: kube::Resource>(object: K) -> Option<ObjectRef<DittoServer>> {
    let instance = object.meta().labels.as_ref()?.get(crate::render::LABEL_INSTANCE)?.clone();
    Some(ObjectRef::new(&instance).within(object.meta().namespace.as_deref()?))
}

pub fn error_policy(server: Arc<DittoServer>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*server);
    let attempt = {
        let mut failures = ctx.failures.lock().expect("failures lock");
        let count = failures.entry(key).or_insert(0);
        *count += 1;
        *count
    };
    // 1 s, 2 s, 4 s … capped at 5 minutes.
    let delay = Duration::from_secs(1u64 << (attempt - 1).min(9)).min(Duration::from_secs(300));
    warn!(name = %server.name_any(), namespace = ?server.namespace(), %error, attempt, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(dittoserver = %server.name_any(), namespace = %server.namespace().unwrap_or_default()))]
pub async fn reconcile(server: Arc<DittoServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let _in_flight = ctx.metrics.started(&queue_key(server.namespace().as_deref(), &server.name_any()));
    let result = if ctx.settings.dry_run {
        // Observe-only: not even a finalizer is added, nor removed.
        if server.meta().deletion_timestamp.is_some() {
            if server.finalizers().iter().any(|f| f == FINALIZER) {
                let why = format!(
                    "The operator runs with --dry-run: cleanup and removing the finalizer {FINALIZER} are held back until an operator without --dry-run runs"
                );
                report_deletion(&ctx, &server, Some(("CleanupHeldBack", &why))).await;
            }
            Ok(Action::await_change())
        } else {
            reconcile_inner(&server, &ctx).await
        }
    } else {
        let api: Api<DittoServer> = Api::namespaced(ctx.client.clone(), &server.namespace().unwrap_or_default());
        finalizer(&api, FINALIZER, server.clone(), |event| async {
            match event {
                FinalizerEvent::Apply(server) => reconcile_inner(&server, &ctx).await,
                FinalizerEvent::Cleanup(server) => cleanup(&server, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
    };
    ctx.metrics.finished(result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.reason()), started.elapsed());
    let action = result?;
    ctx.failures.lock().expect("failures lock").remove(&ObjectRef::from_obj(&*server));
    Ok(action)
}

async fn reconcile_inner(server: &DittoServer, ctx: &Context) -> Result<Action, Error> {
    let name = server.name_any();
    let namespace = server.namespace().unwrap_or_else(|| "default".into());

    let effective = match overrides::resolve(&ctx.client, &ctx.settings, server)
        .await
        .map_err(|source| Error::Read { what: "template override ConfigMaps".into(), source })?
    {
        Ok(effective) => effective,
        Err(blocked) => {
            let decided = vec![Decided::new(TEMPLATES_READY, false, blocked.reason, blocked.message.clone())];
            return hold(ctx, server, decided, blocked.reason, &blocked.message).await;
        }
    };
    let templates_ready = Decided::new(
        TEMPLATES_READY,
        true,
        if effective.origins.is_empty() { "Embedded" } else { "OverridesApplied" },
        effective.describe(),
    );

    let secrets = fetch_secrets(&ctx.client, server, &namespace).await?;
    // Fresh credentials only when they will be created now: held-back passes must stay deterministic.
    let generate = !(is_paused(server) || ctx.settings.dry_run);
    let discovered = match discover::resolve(&server.spec, &name, &effective.values, &secrets, generate) {
        Ok(d) => d,
        Err(DiscoverError::Missing { field, message }) => {
            let reason = if field.starts_with("spec.database") { "DatabaseSecretMissing" } else { "SecretMissing" };
            let text = format!("{field}: {message}");
            let mut decided = vec![templates_ready, Decided::new(CONFIG_READY, false, reason, text.clone())];
            if field.starts_with("spec.database") {
                decided.push(Decided::new(DATABASE_READY, false, reason, text.clone()));
            }
            hold(ctx, server, decided, reason, &text).await?;
            return Ok(Action::requeue(WAIT));
        }
    };

    let mut discovered = discovered;
    if let Some(target) = percona::target(&server.spec, &name) {
        match percona::resolve(&ctx.client, &namespace, &target)
            .await
            .map_err(|source| Error::Read { what: format!("PerconaPGCluster/{}", target.cluster), source })?
        {
            Ok((connection, password)) => percona::attach(&mut discovered, connection, password),
            Err(not_ready) => {
                // The cluster the operator creates: create or update it now, and only it.
                let mut blocked = None;
                if target.owned
                    && not_ready.reason != "PerconaNotInstalled"
                    && !is_paused(server)
                    && !ctx.settings.dry_run
                {
                    blocked = apply_database_only(ctx, server, &effective, &discovered).await?.err();
                }
                // Never roll the server to a config that cannot start: hold everything else until ready.
                let mut decided =
                    vec![Decided::new(DATABASE_READY, false, not_ready.reason, not_ready.message.clone())];
                let (reason, text) = match blocked {
                    // The cluster itself could not be applied: that is the news.
                    Some(problem) => {
                        let said = (problem.reason, problem.message.clone());
                        if problem.type_ != TEMPLATES_READY {
                            decided.push(templates_ready);
                        }
                        decided.push(problem);
                        said
                    }
                    None => {
                        decided.push(templates_ready);
                        (not_ready.reason, not_ready.message.clone())
                    }
                };
                hold(ctx, server, decided, reason, &text).await?;
                return Ok(Action::requeue(WAIT));
            }
        }
    }

    let rendered = match Renderer::new(&effective.templates).render(server, &effective.values, &discovered) {
        Ok(r) => r,
        Err(error) => {
            let failure = render_failure(&error);
            let (reason, text) = (failure.reason, failure.message.clone());
            // A template failure replaces TemplatesReady; a spec error leaves it True.
            let decided = if failure.type_ == CONFIG_READY { vec![templates_ready, failure] } else { vec![failure] };
            // A bad spec or template does not fix itself: wait for an edit (watched).
            return hold(ctx, server, decided, reason, &text).await;
        }
    };

    let owner = server.controller_owner_ref(&()).expect("DittoServer has a uid once stored");
    let storage_class = server.spec.storage.storage_class_name.as_deref();
    let missing_class =
        health::storage_class_missing(&ctx.client, storage_class).await.map_err(read_error("StorageClass"))?;
    // A template may render a kind whose CRD this cluster lacks (ServiceMonitor): say so, apply nothing.
    for (kind, crd_name) in crate::render::OPTIONAL_KINDS {
        let Some(object) = rendered.objects.iter().find(|o| o.kind() == *kind) else { continue };
        let crds = Api::<CustomResourceDefinition>::all(ctx.client.clone());
        if crds.get_metadata_opt(crd_name).await.map_err(read_error("CustomResourceDefinition"))?.is_none() {
            let text = format!("{} is rendered but its CRD {crd_name} is not installed", object.reference());
            let decided = vec![Decided::new(TEMPLATES_READY, false, "KindNotInstalled", text.clone())];
            return hold(ctx, server, decided, "KindNotInstalled", &text).await;
        }
    }
    let mut objects = rendered.objects.clone();
    let mut held_back = None;
    if let Some(missing) = &missing_class {
        let condition = health::storage_class_condition(missing);
        publish(ctx, server, EventType::Warning, condition.reason, &condition.message).await;
        // Claims of a missing class never bind: do not create the StatefulSet until the class exists.
        let sts_api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &namespace);
        if sts_api.get_metadata_opt(&name).await.map_err(read_error("StatefulSet"))?.is_none() {
            objects.retain(|o| o.kind() != "StatefulSet");
            held_back = Some(format!("StatefulSet/{name} is not created until StorageClass {missing:?} exists"));
        }
    }
    let plan = match apply::plan(&ctx.client, &namespace, &name, Some(&owner), &objects, true).await {
        Ok(plan) => plan,
        Err(conflict @ apply::ApplyError::NotOwned { .. }) => {
            // Someone else's object has the name we render: say so, touch nothing, look again later.
            let text = conflict.to_string();
            let decided = vec![templates_ready, Decided::new(IN_SYNC, false, "ObjectNotOwned", text.clone())];
            hold(ctx, server, decided, "ObjectNotOwned", &text).await?;
            return Ok(Action::requeue(WAIT));
        }
        Err(e) => return Err(e.into()),
    };
    let paused = is_paused(server);
    let file_service = plan.live_file_service();
    let mut decided =
        vec![templates_ready, Decided::new(CONFIG_READY, true, "Rendered", config_message(server, &rendered))];
    if let Some(pg) = &rendered.context.computed.database.postgres {
        let (reason, source) = match percona::target(&server.spec, &name) {
            Some(t) => ("PerconaReady", format!("PerconaPGCluster {} is ready", t.cluster)),
            None => ("SecretResolved", "external PostgreSQL".to_string()),
        };
        let message = format!("{source}: {}:{} database {} (sslmode {})", pg.host, pg.port, pg.database, pg.sslmode);
        decided.push(Decided::new(DATABASE_READY, true, reason, message));
    }
    let stateful_set = if plan.in_sync() {
        ctx.metrics.applied(0, plan.objects.len());
        decided.push(match &held_back {
            Some(why) => Decided::new(IN_SYNC, false, "HeldBack", why.clone()),
            None => Decided::new(IN_SYNC, true, "InSync", "Every managed object matches the rendered templates"),
        });
        plan.live_stateful_set()
    } else if paused || ctx.settings.dry_run {
        let why =
            if paused { format!("{PAUSE_ANNOTATION}: paused") } else { "the operator runs with --dry-run".into() };
        let pending = pending_summary(&plan);
        for change in plan.changes() {
            info!(object = %change.reference, action = ?change.action, diff = %change.text, "change held back");
        }
        decided.push(Decided::new(
            IN_SYNC,
            false,
            if paused { "Paused" } else { "DryRun" },
            format!("Not applied because {why}. Pending: {pending}"),
        ));
        plan.live_stateful_set()
    } else {
        for change in plan.changes() {
            info!(object = %change.reference, action = ?change.action, paths = ?change.paths, diff = %change.text, "applying change");
        }
        let skipped = plan.objects.len() - plan.changes().len().min(plan.objects.len());
        let outcome = execute_and_publish(ctx, server, &namespace, plan).await?;
        ctx.metrics.applied(outcome.applied.len(), skipped);
        info!(writes = outcome.applied.len(), checksum = %rendered.checksum, "reconciled");
        decided.push(match &held_back {
            Some(why) => Decided::new(IN_SYNC, false, "HeldBack", why.clone()),
            None => Decided::new(IN_SYNC, true, "Applied", "Every managed object matches the rendered templates"),
        });
        outcome.stateful_set
    };

    let workload = stateful_set.as_ref().map(|s| Workload::from_stateful_set(s, rendered.context.computed.replicas));
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let observed = match &missing_class {
        Some(missing) => health::Observed { degraded: health::storage_class_condition(missing), recheck_after: None },
        None => health::observe(&ctx.client, &namespace, &name, now, ctx.settings.claim_pending_grace)
            .await
            .map_err(read_error("pod and claims"))?,
    };
    decided.push(observed.degraded);
    // Until the pod is up, look again sooner: claim binding and crash loops show up over time.
    let settled = workload.as_ref().is_some_and(|w| w.ready >= w.desired && w.rolled_out) && missing_class.is_none();
    write_status(ctx, server, decided, workload, Some(&rendered), file_service.as_ref()).await?;
    let next = if settled { RESYNC } else { WAIT };
    Ok(Action::requeue(observed.recheck_after.map_or(next, |grace_over| grace_over.min(next))))
}

/// The condition a failed render sets: `ConfigReady` for a spec error, else `TemplatesReady` (a
/// shipped or overridden template failed; nothing is applied, objects stay as they are).
fn render_failure(error: &crate::render::RenderError) -> Decided {
    if error.is_spec_error() {
        Decided::new(CONFIG_READY, false, "InvalidSpec", error.to_string())
    } else {
        Decided::new(TEMPLATES_READY, false, "TemplateInvalid", error.to_string())
    }
}

/// Applies just the PerconaPGCluster of `spec.percona.enabled` while it is not ready yet.
/// `Ok(Err(condition))`: it could not be applied for a reason an edit must fix (a broken
/// template, someone else's object in the way); the caller reports it and holds.
async fn apply_database_only(
    ctx: &Context,
    server: &DittoServer,
    effective: &overrides::Effective,
    discovered: &crate::discover::Discovered,
) -> Result<Result<(), Decided>, Error> {
    let rendered = match Renderer::new(&effective.templates).render(server, &effective.values, discovered) {
        Ok(r) => r,
        Err(error) => return Ok(Err(render_failure(&error))),
    };
    let namespace = server.namespace().unwrap_or_default();
    let owner = server.controller_owner_ref(&()).expect("DittoServer has a uid once stored");
    let plan =
        match apply::plan(&ctx.client, &namespace, &server.name_any(), Some(&owner), &rendered.objects, false).await {
            Ok(plan) => plan,
            Err(conflict @ apply::ApplyError::NotOwned { .. }) => {
                return Ok(Err(Decided::new(IN_SYNC, false, "ObjectNotOwned", conflict.to_string())));
            }
            Err(error) => return Err(error.into()),
        };
    execute_and_publish(ctx, server, &namespace, plan).await?;
    Ok(Ok(()))
}

/// Nothing can be applied: report why (Warning Event, conditions) and leave every object as it is.
async fn hold(
    ctx: &Context,
    server: &DittoServer,
    decided: Vec<Decided>,
    reason: &str,
    text: &str,
) -> Result<Action, Error> {
    publish(ctx, server, EventType::Warning, reason, text).await;
    let name = server.name_any();
    let existing: Option<StatefulSet> =
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &server.namespace().unwrap_or_default())
            .get_opt(&name)
            .await
            .map_err(|source| Error::Read { what: format!("StatefulSet/{name}"), source })?;
    let workload =
        existing.map(|s| Workload::from_stateful_set(&s, s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1)));
    write_status(ctx, server, decided, workload, None, None).await?;
    Ok(Action::await_change())
}

/// The Secrets a DittoServer reads, as they are now (absent ones are left out).
pub async fn fetch_secrets(client: &Client, server: &DittoServer, namespace: &str) -> Result<SecretsByName, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = SecretsByName::new();
    for name in discover::referenced_secret_names(&server.spec, &server.name_any()) {
        let secret =
            api.get_opt(&name).await.map_err(|source| Error::Read { what: format!("Secret/{name}"), source })?;
        if let Some(secret) = secret {
            secrets.insert(name, secret);
        }
    }
    Ok(secrets)
}

/// Says what was rendered, and which legacy fields have no effect (never silently ignored).
fn config_message(server: &DittoServer, rendered: &Rendered) -> String {
    let mut ignored = Vec::new();
    let spec = &server.spec;
    if let Some(cache) = &spec.cache {
        if cache.path.is_some() {
            ignored.push("spec.cache.path");
        }
        if cache.size.is_some() {
            ignored.push("spec.cache.size");
        }
    }
    if let Some(identity) = &spec.identity {
        if identity.identity_type.is_some() {
            ignored.push("spec.identity.type");
        }
        if identity.admin.as_ref().is_some_and(|a| a.username.is_some()) {
            ignored.push("spec.identity.admin.username");
        }
        let optional_set = |r: Option<&crate::crd::SecretRef>| r.is_some_and(|r| r.optional.is_some());
        if optional_set(identity.jwt.as_ref().and_then(|j| j.secret_ref.as_ref())) {
            ignored.push("spec.identity.jwt.secretRef.optional (the key is required)");
        }
        if optional_set(identity.admin.as_ref().and_then(|a| a.password_secret_ref.as_ref())) {
            ignored.push("spec.identity.admin.passwordSecretRef.optional (always optional)");
        }
    }
    if let Some(db) = &spec.database
        && db.postgres_secret_ref.as_ref().is_some_and(|r| r.key.is_some() || r.optional.is_some())
    {
        ignored.push("spec.database.postgresSecretRef.key/optional (fixed keys are read)");
    }
    let short = &rendered.checksum[..12];
    let mut message = format!("Rendered {} objects; config checksum {short}", rendered.objects.len());
    if !ignored.is_empty() {
        message.push_str(&format!(". Ignored (no effect on DittoFS v0.29): {}", ignored.join(", ")));
    }
    message
}

async fn write_status(
    ctx: &Context,
    server: &DittoServer,
    mut decided: Vec<Decided>,
    workload: Option<Workload>,
    rendered: Option<&Rendered>,
    file_service: Option<&Service>,
) -> Result<(), Error> {
    if let Some(w) = &workload {
        decided.extend(status::workload_conditions(w));
    }
    decided.push(status::ready_condition(&decided));
    let previous = server.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = server.metadata.generation;
    let new = DittoServerStatus {
        observed_generation: generation,
        phase: Some(status::phase(&decided, workload.as_ref(), false)),
        replicas: workload.as_ref().map(|w| w.desired),
        ready_replicas: workload.as_ref().map(|w| w.ready),
        config_hash: rendered.map(|r| r.checksum.clone()).or(previous.config_hash.clone()),
        endpoints: rendered.map(|r| endpoints(r, file_service)).or(previous.endpoints.clone()),
        database: rendered.map(database_status).or(previous.database.clone()),
        conditions: status::merge(&previous.conditions, &decided, generation, &now),
    };
    if !status::differs(server.status.as_ref(), &new) {
        return Ok(());
    }
    let api: Api<DittoServer> = Api::namespaced(ctx.client.clone(), &server.namespace().unwrap_or_default());
    api.patch_status(&server.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": new })))
        .await
        .map_err(Error::Status)?;
    Ok(())
}

fn endpoints(rendered: &Rendered, file_service: Option<&Service>) -> Endpoints {
    let c = &rendered.context.computed;
    let ns = &rendered.context.cr.namespace;
    let lb = file_service
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
    Endpoints {
        file: Some(format!(
            "{}:{}",
            lb.unwrap_or_else(|| format!("{}.{ns}.svc", c.names.file_service)),
            c.file_service.nfs_port
        )),
        api: Some(format!("{}.{ns}.svc:{}", c.names.api_service, c.ports.api)),
    }
}

fn database_status(rendered: &Rendered) -> DatabaseStatus {
    let spec = &rendered.context.spec;
    let percona = percona::target(spec, &rendered.context.cr.name).is_some();
    match &rendered.context.computed.database.postgres {
        Some(pg) => DatabaseStatus {
            kind: if percona { "percona" } else { "postgres" }.into(),
            host: Some(format!("{}:{}", pg.host, pg.port)),
            ready: true,
        },
        None => DatabaseStatus { kind: "sqlite".into(), host: None, ready: true },
    }
}

/// Writes `plan`, then one Normal Event per object taken back (Adopted) and per object written:
/// Created, Updated (with the changed paths) or Pruned.
async fn execute_and_publish(
    ctx: &Context,
    server: &DittoServer,
    namespace: &str,
    plan: Plan,
) -> Result<apply::ApplyOutcome, Error> {
    let adopted = plan.adopted.clone();
    let outcome = apply::execute(&ctx.client, namespace, plan).await?;
    for reference in &adopted {
        let note = format!(
            "Adopted {reference}, kept by an earlier DittoServer named {}; on deletion it is {} (spec.percona.deleteWithServer)",
            server.name_any(),
            if database_goes_with_server(server) { "deleted" } else { "kept again" }
        );
        publish(ctx, server, EventType::Normal, "Adopted", &note).await;
    }
    for change in &outcome.applied {
        let (reason, note) = match change.action {
            DiffAction::Create => ("Created", format!("Created {}", change.reference)),
            DiffAction::Update => ("Updated", format!("Updated {}: {}", change.reference, change.paths.join(", "))),
            DiffAction::Prune => ("Pruned", format!("Deleted {}: no longer rendered", change.reference)),
            DiffAction::Unchanged => continue,
        };
        publish(ctx, server, EventType::Normal, reason, &note).await;
    }
    Ok(outcome)
}

async fn publish(ctx: &Context, server: &DittoServer, type_: EventType, reason: &str, note: &str) {
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
