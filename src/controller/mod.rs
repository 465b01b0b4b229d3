//! The reconcile of one DittoServer, as a pipeline:
//! gather → decide → render → plan → apply → status. Each step lives in its own file; this one
//! holds the [`Context`] they share, the error type and the driver.
//! See docs/architecture.md for the picture.

mod cleanup;
mod namespaces;
pub mod recorder;
mod report;
mod serving;
mod sync;
mod takeover;
mod watches;
mod writes;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use crate::apply;
use crate::cache::{Cache, Reads};
use crate::crd::{DittoServer, FIELD_MANAGER};
use crate::decide::{self, Decision, Mode};
use crate::gather::{Gathered, ReadError};
use crate::metrics::Metrics;
pub use crate::names::FINALIZER;
use crate::render::RenderMemo;
use crate::settings::Settings;
use recorder::Recorder;
pub use watches::run;

/// The longest one reconcile pass may take. Every request it makes has a deadline of its own
/// (the API server's is the client's read timeout; the DittoFS API is called from a task of its
/// own, not the pass); this one bounds their sum, so no worker is held for ever. A pass cut off
/// is retried on the error backoff.
pub const PASS_DEADLINE: Duration = Duration::from_secs(120);

pub struct Context {
    /// Requests of the passes (reads, applies, status writes), with a read timeout.
    pub client: Client,
    /// The watches' client: a watch may be quiet for minutes, so no read timeout.
    pub watch_client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// `/readyz`: the controller's cache is synced, or (leader election) this replica knows the Lease.
    pub ready: Arc<AtomicBool>,
    /// The checksum key of each namespace, read (or created) once. A cell per namespace: a slow
    /// read of one namespace's key holds that namespace's passes only.
    checksum_keys: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Vec<u8>>>>>,
    /// The DittoFS REST client, shared by every server (it counts its requests).
    pub http: crate::dittofs::api::HttpClient,
    /// The runtime steps' API tasks running at once.
    runtime_permits: Arc<tokio::sync::Semaphore>,
    /// Servers whose runtime step waits for a permit, woken in turn as tasks end: first tries
    /// ahead of retries. Only their keys wait, not their data.
    runtime_waiting: Mutex<std::collections::VecDeque<ObjectRef<DittoServer>>>,
    /// Wakes a DittoServer whose runtime task finished; set by each [`run`].
    wake: Mutex<Option<futures::channel::mpsc::UnboundedSender<ObjectRef<DittoServer>>>>,
    /// What the watches know (filled by [`run`]), so a quiet pass reads nothing from the API server.
    pub cache: Arc<Cache>,
    /// The last render of each DittoServer, reused while its inputs stay the same.
    renders: Arc<RenderMemo>,
    /// Renders running at once, on the blocking pool (one per core).
    render_permits: tokio::sync::Semaphore,
    /// What is kept of each DittoServer between passes, dropped in one place
    /// ([`Self::forget_server`]).
    memory: Mutex<HashMap<ObjectRef<DittoServer>, ServerMemory>>,
    /// The running controller's DittoServer store (each [`run`] sets its own, as leadership
    /// comes and goes): whether a server is still there.
    servers: std::sync::RwLock<Option<kube::runtime::reflector::Store<DittoServer>>>,
}

/// What the controller keeps of one DittoServer between passes.
#[derive(Default)]
struct ServerMemory {
    /// Consecutive failed passes, for the error backoff.
    failures: u32,
    /// The status last written, with the resourceVersion it was written over, until the watch
    /// shows the write.
    written_status: Option<(String, crate::crd::DittoServerStatus)>,
    /// The runtime step between passes (its token, failures, task in flight).
    runtime: serving::RuntimeSlot,
    /// Looked at for the earlier operator's adapter Services and found without any.
    earlier_checked: bool,
}

impl Context {
    pub fn new(client: Client, settings: Settings) -> Self {
        Self::with_metrics(client, settings, Arc::new(Metrics::new()))
    }

    /// With `metrics` made beforehand (the clients count their requests in them).
    pub fn with_metrics(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let http = crate::dittofs::api::HttpClient::default().with_deadline(settings.dittofs_api_timeout);
        let api_tasks = settings.dittofs_api_tasks.max(1);
        Self {
            recorder: Recorder::new(client.clone(), FIELD_MANAGER.into(), std::env::var("POD_NAME").ok()),
            watch_client: client.clone(),
            client,
            settings,
            metrics: metrics.clone(),
            ready: Arc::default(),
            checksum_keys: Mutex::default(),
            http,
            runtime_permits: Arc::new(tokio::sync::Semaphore::new(api_tasks)),
            runtime_waiting: Mutex::default(),
            wake: Mutex::default(),
            cache: Arc::new(crate::cache::Cache::counting(metrics.watches_listing.clone())),
            renders: Arc::default(),
            render_permits: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)),
            memory: Mutex::default(),
            servers: std::sync::RwLock::default(),
        }
    }

    /// The same context with watches on `client` (one without a read timeout).
    pub fn with_watch_client(mut self, client: Client) -> Self {
        self.watch_client = client;
        self
    }

    /// Reads through the cache.
    pub fn reads(&self) -> Reads<'_> {
        Reads::cached(&self.client, &self.cache)
    }

    /// `server` as the API server stores it: with the status this operator last wrote, when the
    /// watch has not delivered that write yet. A pass can start before it does (another trigger
    /// came first); deciding from the older status would write the same status again.
    fn with_written_status(&self, server: Arc<DittoServer>) -> Arc<DittoServer> {
        let key = ObjectRef::from_obj(&*server);
        let mut memory = self.memory.lock().expect("memory lock");
        let Some(written) = memory.get_mut(&key).map(|m| &mut m.written_status) else { return server };
        match written {
            Some((base, status)) if server.metadata.resource_version.as_ref() == Some(base) => {
                let mut current = DittoServer::clone(&server);
                current.status = Some(status.clone());
                Arc::new(current)
            }
            Some(_) => {
                *written = None;
                server
            }
            None => server,
        }
    }

    /// Notes a status written over `server` (as this pass saw it), for [`Self::with_written_status`].
    fn wrote_status(&self, server: &DittoServer, status: crate::crd::DittoServerStatus) {
        if let Some(seen) = server.metadata.resource_version.clone() {
            let mut memory = self.memory.lock().expect("memory lock");
            memory.entry(ObjectRef::from_obj(server)).or_default().written_status = Some((seen, status));
        }
    }

    /// Drops what is kept in memory for a DittoServer that is gone (deleted, with or without
    /// the finalizer, or while the watch was down).
    fn forget_server(&self, server: &ObjectRef<DittoServer>) {
        self.renders.forget(server.namespace.as_deref().unwrap_or_default(), &server.name);
        self.memory.lock().expect("memory lock").remove(server);
    }

    /// Asks the running controller for a pass over `server` (its runtime task finished).
    fn wake(&self, server: ObjectRef<DittoServer>) {
        if let Some(wake) = self.wake.lock().expect("wake lock").as_ref() {
            self.metrics.enqueued(watches::queue_key(server.namespace.as_deref(), &server.name));
            // Closed: that controller stopped (leadership lost); the next one lists every server.
            let _ = wake.unbounded_send(server);
        }
    }

    /// The watch no longer shows `server`: deleted while its pass ran.
    fn is_gone(&self, server: &ObjectRef<DittoServer>) -> bool {
        self.servers.read().expect("servers lock").as_ref().is_some_and(|store| store.get(server).is_none())
    }

    async fn checksum_key(&self, namespace: &str) -> Result<Vec<u8>, Error> {
        let cell =
            self.checksum_keys.lock().expect("checksum keys lock").entry(namespace.to_string()).or_default().clone();
        let key = cell
            .get_or_try_init(|| async {
                // With --dry-run nothing is written, not even the key: without one, checksums are unkeyed.
                if self.settings.dry_run {
                    Ok::<_, ReadError>(
                        crate::gather::read_checksum_key(&self.client, namespace).await?.unwrap_or_default(),
                    )
                } else {
                    writes::ensure_checksum_key(&self.client, namespace).await
                }
            })
            .await?;
        Ok(key.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("writing status: {0}")]
    Status(kube::Error),
    #[error("the pass did not finish within {}s; it was cut off and is retried", .0.as_secs())]
    PassTimedOut(Duration),
}

impl Error {
    /// The metric label of a failed reconcile.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Apply(_) => "ApplyFailed",
            Self::Read(_) => "ReadFailed",
            Self::Status(_) => "StatusFailed",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::PassTimedOut(_) => "PassTimedOut",
        }
    }
}

/// How a step ends when the pass does not go on: held back (conditions and a Warning Event,
/// nothing more applied, look again later or on an edit) or failed (retried on the error
/// backoff). Each step returns `Result<_, Stop>`; the driver turns a hold into its report.
#[derive(Debug)]
pub enum Stop {
    Held(crate::decide::Hold),
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Self::Failed(error)
    }
}

impl From<apply::ApplyError> for Stop {
    fn from(error: apply::ApplyError) -> Self {
        Self::Failed(error.into())
    }
}

impl From<ReadError> for Stop {
    fn from(error: ReadError) -> Self {
        Self::Failed(error.into())
    }
}

pub fn error_policy(server: Arc<DittoServer>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*server);
    let attempt = {
        let mut memory = ctx.memory.lock().expect("memory lock");
        let failures = &mut memory.entry(key).or_default().failures;
        *failures += 1;
        *failures
    };
    let delay = crate::backoff::RECONCILE.delay(attempt);
    warn!(name = %server.name_any(), namespace = ?server.namespace(), %error, attempt, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(dittoserver = %server.name_any(), namespace = %server.namespace_or_default()))]
pub async fn reconcile(server: Arc<DittoServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let server = ctx.with_written_status(server);
    let _in_flight = ctx.metrics.started(&watches::queue_key(server.namespace().as_deref(), &server.name_any()));
    let pass = async {
        if ctx.settings.dry_run {
            // Observe-only: not even a finalizer is added, nor removed.
            match server.meta().deletion_timestamp {
                Some(_) => cleanup::held_back(&server, &ctx).await,
                None => apply_pass(&server, &ctx).await,
            }
        } else {
            let api: Api<DittoServer> = Api::namespaced(ctx.client.clone(), &server.namespace_or_default());
            with_finalizer(&api, server.clone(), &ctx).await
        }
    };
    let result = tokio::time::timeout(PASS_DEADLINE, pass).await.unwrap_or(Err(Error::PassTimedOut(PASS_DEADLINE)));
    ctx.metrics.finished(result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.reason()), started.elapsed());
    // Deleted while this pass ran: what the pass kept would outlive the watch's forgetting it.
    let reference = ObjectRef::from_obj(&*server);
    if ctx.is_gone(&reference) {
        ctx.forget_server(&reference);
        return Ok(Action::await_change());
    }
    let action = result?;
    if let Some(memory) = ctx.memory.lock().expect("memory lock").get_mut(&reference) {
        memory.failures = 0;
    }
    Ok(action)
}

/// The finalizer guards only what owner references cannot clean up: the PerconaPGCluster the
/// operator creates (see [`cleanup::needs_finalizer`]). A DittoServer without one is applied
/// without a finalizer, and its deletion waits for nothing. One that needs it goes through
/// kube's `finalizer()`, which adds it in a pass of its own and applies in the next, once the
/// watch shows it: applying in the same pass would leave later passes, started from a store
/// that does not show the finalizer yet, trying to add it again.
async fn with_finalizer(api: &Api<DittoServer>, server: Arc<DittoServer>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let has_finalizer = server.finalizers().iter().any(|f| f == FINALIZER);
    if !has_finalizer && !cleanup::needs_finalizer(&server) {
        return match server.meta().deletion_timestamp {
            // Being deleted (someone else's finalizer holds it), and nothing of ours to clean up.
            Some(_) => Ok(Action::await_change()),
            None => apply_pass(&server, ctx).await,
        };
    }
    finalizer(api, FINALIZER, server, |event| async {
        match event {
            FinalizerEvent::Apply(server) => apply_pass(&server, ctx).await,
            FinalizerEvent::Cleanup(server) => cleanup::cleanup(&server, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// One pass over a DittoServer that exists: the pipeline, with a hold reported.
async fn apply_pass(server: &DittoServer, ctx: &Arc<Context>) -> Result<Action, Error> {
    match pipeline(server, ctx).await {
        Ok(action) => Ok(action),
        Err(Stop::Held(hold)) => report::hold(ctx, server, hold).await,
        Err(Stop::Failed(error)) => Err(error),
    }
}

/// gather → decide → render → sync (plan and apply) → serving → report.
async fn pipeline(server: &DittoServer, ctx: &Arc<Context>) -> Result<Action, Stop> {
    let mode = Mode::of(server, ctx.settings.dry_run);
    let key = ctx.checksum_key(&server.namespace_or_default()).await?;
    let gathered = Gathered::from_cluster(ctx.reads(), &ctx.settings, server, key).await?;
    let (effective, discovered, templates_ready) = match decide::decide(server, &gathered, mode) {
        Decision::Hold(hold) => return Err(Stop::Held(hold)),
        Decision::DatabaseOnly { effective, discovered, templates_ready, not_ready } => {
            let blocked = sync::apply_database_only(ctx, server, effective, &discovered).await?;
            return Err(Stop::Held(decide::database_hold(templates_ready, &not_ready, blocked)));
        }
        Decision::Apply { effective, discovered, templates_ready } => (effective, discovered, templates_ready),
    };
    let (namespace, uid) = (server.namespace_or_default(), server.uid().unwrap_or_default());
    let cache = ctx.cache.clone();
    let settled = move |set: &apply::AppliedSet| set.is_settled(&cache, &namespace, &uid);
    let rendering = ctx.renders.render_off_the_workers(
        &ctx.render_permits,
        effective.templates.clone(),
        server.clone(),
        effective.values.clone(),
        discovered,
        settled,
    );
    let rendering = match rendering.await {
        Ok(rendering) => {
            ctx.metrics.rendered(rendering.settled.is_some());
            rendering
        }
        Err(error) => return Err(Stop::Held(decide::render_failed(templates_ready, &error))),
    };
    let synced = sync::sync(ctx, server, mode, &rendering, templates_ready).await?;
    let rendered = &rendering.rendered;
    let outcome = serving::runtime(ctx, server, rendered, &gathered.secrets, synced.mode).await;
    Ok(report::report(ctx, server, rendered, synced, outcome, &gathered.secrets).await?)
}
