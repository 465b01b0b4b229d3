//! The runtime step, after the objects are applied: once the server's API answers, make its
//! adapters, stores and shares match the runtime template, with the same rules as objects
//! (plan, then write only when allowed; paused and `--dry-run` list instead). Failures become
//! the `Serving` condition, never a crashed reconcile; secrets stay in request bodies.
//!
//! The DittoFS API work runs in a task of its own, never on a reconcile worker: a pod whose API
//! is slow or silent (starting, or behind a NetworkPolicy) must not delay another server's
//! objects. A pass starts the task, reports what is known meanwhile, and the task's end wakes
//! the server; the pass after it reports what the task found.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info};

use super::{Context, writes};
use crate::backoff::{self, Due, RetryGate};
use crate::cache::Need;
use crate::conditions::{Decided, SERVING};
use crate::crd::{AdapterStatus, DittoServer, QuotaStatus, RuntimeStatus};
use crate::decide::Mode;
use crate::discover::SecretsByName;
use crate::dittofs::api::{Api, LiveAdapter};
use crate::dittofs::plan::{self, Area, Live};
use crate::dittofs::session::{self, AccountSetup, Problem, Secrets};
use crate::health;
use crate::render::Rendered;

/// What the step found and did, for the status step.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOutcome {
    /// `Serving`; `None` when there is no runtime step (stopped server, `--dittofs-api off`).
    pub condition: Option<Decided>,
    pub status: Option<RuntimeStatus>,
    /// Changes not made because the mode holds writes, for InSync.
    pub held: Vec<String>,
    /// When to look again, sooner than the resync.
    pub retry: Option<Duration>,
    /// This pass changed something in DittoFS.
    pub wrote: bool,
    /// Users' passwords DittoFS is known to have (name → keyed digest), for the slot to keep.
    pub passwords: Option<BTreeMap<String, String>>,
}

/// After a write, look again soon: an adapter restarts on its new port in the background, and
/// its health report right after the call may still describe the old listener.
const VERIFY_AFTER_WRITE: Duration = Duration::from_secs(5);
/// How long after a write the server is looked at every [`VERIFY_AFTER_WRITE`], whatever other
/// passes come in between (a later pass's requeue replaces an earlier one's): long enough for
/// an adapter that cannot bind to show it, and for the operator's restart of it (after 15 s).
const VERIFY_WINDOW: Duration = Duration::from_secs(30);
/// The longest one server's API work may take: every request has its own deadline
/// (`--dittofs-api-timeout`), and this bounds their sum.
pub const RUNTIME_DEADLINE: Duration = Duration::from_secs(120);

/// One DittoServer's runtime step, between passes: all the memory it keeps.
#[derive(Debug, Default)]
pub struct RuntimeSlot {
    /// The server's access token, in memory only (refreshed by logging in again when refused).
    token: Option<String>,
    /// Failures: when the API is tried next, and what it said last.
    gate: Option<RetryGate<Decided>>,
    /// When the step last changed something: looked at again soon for a while after.
    wrote_at: Option<Instant>,
    /// The inputs of the task in flight.
    running: Option<u64>,
    /// What the last task found, with its inputs, until a pass reports it.
    finished: Option<(u64, RuntimeOutcome)>,
    /// Changes the last reported outcome held back (paused, `--dry-run`), repeated meanwhile.
    held: Vec<String>,
    /// Users' passwords DittoFS has (name → keyed digest): not checked again by logging in.
    passwords: BTreeMap<String, String>,
}

pub async fn runtime(
    ctx: &Arc<Context>,
    server: &DittoServer,
    rendered: &Arc<Rendered>,
    secrets: &SecretsByName,
    mode: Mode,
) -> RuntimeOutcome {
    let (Some(_), Some(template)) = (&rendered.runtime, &ctx.settings.dittofs_api) else {
        return RuntimeOutcome::default();
    };
    let c = &rendered.outline;
    if c.replicas == 0 {
        return RuntimeOutcome::default();
    }
    let namespace = rendered.cr.namespace.clone();
    let key = ObjectRef::from_obj(server);
    let reader = Secrets::new(&ctx.client, &namespace, secrets);
    // What the client needs (the API's TLS Secrets) is checked first: a missing one also keeps
    // the pod from starting, and is the thing to fix.
    let api = match session::api_for(&ctx.http, template, rendered, &reader).await {
        Ok(api) => api,
        Err(problem) => return failed(problem),
    };
    // The pod's readiness probe is the API's own: before the pod is Ready nothing answers, so
    // nothing is dialled. The pod watch wakes the server when that changes.
    let pod_name = format!("{}-0", c.names.stateful_set);
    let pod = match ctx.reads().get_as::<Pod>(&namespace, &pod_name, Need::Status).await {
        Ok(pod) => pod,
        Err(e) => {
            let message = format!("reading pod {pod_name}: {e}");
            return not_serving(Decided::new(SERVING, false, "PodUnreadable", message));
        }
    };
    let Some(ready_since) = pod.as_ref().and_then(health::ready_since) else {
        let message = format!(
            "Waiting for pod {pod_name} to be Ready: DittoFS's API answers once it is, and then the operator sets up its adapters, stores and shares"
        );
        return not_serving(Decided::new(SERVING, false, "PodNotReady", message));
    };
    let inputs = Inputs { server, rendered, secrets, mode, pod: &ready_since }.fingerprint();
    let (token, remembered, reported, permit) = {
        let mut memory = ctx.memory.lock().expect("memory lock");
        let slot = &mut memory.entry(key.clone()).or_default().runtime;
        // What a task found for these inputs: the news of this pass.
        if let Some((ran_with, outcome)) = slot.finished.take() {
            if ran_with == inputs {
                slot.held = outcome.held.clone();
                return outcome;
            }
            debug!("DittoFS API: the inputs changed while the last task ran; looking again");
        }
        if slot.running.is_some() {
            return in_flight(server, slot);
        }
        // After a failure, a pass woken by any other event before the next try is due reports
        // the last failure and neither dials nor counts.
        if let Due::In(wait) = RetryGate::due(slot.gate.as_ref(), Instant::now(), &ready_since) {
            debug!(?wait, "DittoFS API: next try not due yet");
            let last = slot.gate.as_ref().map(|g| g.last.clone());
            return RuntimeOutcome { condition: last, retry: Some(wait), ..RuntimeOutcome::default() };
        }
        // A task runs only with a permit: without one, the server waits its turn by key, and the
        // end of another task wakes it.
        let Ok(permit) = ctx.runtime_permits.clone().try_acquire_owned() else {
            let mut waiting = ctx.runtime_waiting.lock().expect("waiting lock");
            if !waiting.contains(&key) {
                match slot.gate {
                    None => waiting.push_front(key.clone()),
                    Some(_) => waiting.push_back(key.clone()),
                }
            }
            return in_flight(server, slot);
        };
        slot.running = Some(inputs);
        (slot.token.clone(), slot.passwords.clone(), in_flight(server, slot), permit)
    };
    let task = Task {
        ctx: ctx.clone(),
        key,
        inputs,
        server: server.clone(),
        rendered: rendered.clone(),
        secrets: secrets.clone(),
        handed_out: reader.handed_out(),
        mode,
        ready_since,
        remembered,
    };
    tokio::spawn(task.run(api.with_token(token), permit));
    reported
}

/// What a pass reports while the server's task runs: the stored `Serving`, unless it says the
/// pod is not Ready yet (it is now), and the changes last held back.
fn in_flight(server: &DittoServer, slot: &RuntimeSlot) -> RuntimeOutcome {
    let stored = server.status.as_ref().and_then(|s| Decided::stored(SERVING, &s.conditions));
    let condition = stored.filter(|c| c.reason != "PodNotReady").unwrap_or_else(|| {
        Decided::new(
            SERVING,
            false,
            "Connecting",
            "The pod is Ready: the operator is reaching DittoFS's API to set up its adapters, stores and shares",
        )
    });
    RuntimeOutcome { condition: Some(condition), held: slot.held.clone(), ..RuntimeOutcome::default() }
}

/// What a task's outcome depends on: the same inputs give the same outcome, so a pass reports a
/// finished task's outcome only when they are still its own.
struct Inputs<'a> {
    server: &'a DittoServer,
    rendered: &'a Rendered,
    secrets: &'a SecretsByName,
    mode: Mode,
    /// The Ready pod, [`health::ready_since`].
    pod: &'a str,
}

impl Inputs<'_> {
    fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.server.metadata.uid.hash(&mut hasher);
        self.server.metadata.generation.hash(&mut hasher);
        // Annotations steer the step (a repoint allowed, paused), and a touched one asks for a fresh look.
        self.server.metadata.annotations.hash(&mut hasher);
        self.rendered.checksum.hash(&mut hasher);
        serde_json::to_string(&self.rendered.runtime.as_deref()).unwrap_or_default().hash(&mut hasher);
        for (name, secret) in self.secrets {
            (name, &secret.metadata.resource_version).hash(&mut hasher);
        }
        format!("{:?}", self.mode).hash(&mut hasher);
        self.pod.hash(&mut hasher);
        hasher.finish()
    }
}

/// One server's API work, off the reconcile workers.
struct Task {
    ctx: Arc<Context>,
    key: ObjectRef<DittoServer>,
    inputs: u64,
    server: DittoServer,
    rendered: Arc<Rendered>,
    secrets: SecretsByName,
    /// Values the pass read before the task (the TLS Secrets), scrubbed from what DittoFS says.
    handed_out: Vec<String>,
    mode: Mode,
    ready_since: String,
    /// The slot's passwords when the task started.
    remembered: BTreeMap<String, String>,
}

impl Task {
    async fn run(self, mut api: Api, permit: tokio::sync::OwnedSemaphorePermit) {
        let ctx = &self.ctx;
        let Some(desired) = self.rendered.runtime.clone() else { return };
        let namespace = self.rendered.cr.namespace.clone();
        let secrets = Secrets::new(&ctx.client, &namespace, &self.secrets);
        let now = Instant::now();
        let work = pass(&self, &desired, &secrets, &mut api);
        let result = match tokio::time::timeout(RUNTIME_DEADLINE, work).await {
            Ok(result) => result,
            Err(_) => Err(Problem::new(
                "ApiUnreachable",
                format!(
                    "The DittoFS API at {} did not finish the operator's requests within {}s; the operator retries",
                    api.base,
                    RUNTIME_DEADLINE.as_secs()
                ),
            )),
        };
        let mut outcome = result.unwrap_or_else(failed);
        // Whatever DittoFS said (a login, a user call, a refused change) is scrubbed of every
        // credential this task read, its token included, and cut, before a condition carries it.
        let mut credentials = secrets.handed_out();
        credentials.extend(self.handed_out.iter().cloned());
        credentials.extend(api.token().map(str::to_string));
        if let Some(condition) = outcome.condition.as_mut() {
            condition.message = session::scrub_and_cut(&condition.message, &credentials);
        }
        let reported = 'report: {
            let mut memory = ctx.memory.lock().expect("memory lock");
            // Forgotten (the server was deleted) or replaced meanwhile: nothing to report.
            let slot = memory.get_mut(&self.key).map(|m| &mut m.runtime);
            let Some(slot) = slot.filter(|s| s.running == Some(self.inputs)) else {
                break 'report false;
            };
            slot.running = None;
            slot.token = api.token().map(str::to_string);
            if let Some(passwords) = outcome.passwords.take() {
                slot.passwords = passwords;
            }
            // Not serving (and not held on purpose): the next try is due one backoff interval later.
            match outcome.condition.clone().filter(|c| !c.status && outcome.held.is_empty()) {
                Some(failed) => {
                    // Counted from the failure: a try that waited out its deadline is not
                    // followed at once by the next.
                    let failed_at = Instant::now();
                    let gate =
                        RetryGate::failed(slot.gate.take(), backoff::RUNTIME, failed_at, &self.ready_since, failed);
                    let retry = gate.retry_in(Instant::now());
                    debug!(attempt = gate.failures(), ?retry, "DittoFS not serving yet; retrying");
                    slot.gate = Some(gate);
                    outcome.retry = Some(retry);
                }
                None => slot.gate = None,
            }
            if outcome.wrote {
                slot.wrote_at = Some(now);
            }
            match slot.wrote_at {
                Some(at) if now.duration_since(at) < VERIFY_WINDOW => {
                    outcome.retry = Some(outcome.retry.map_or(VERIFY_AFTER_WRITE, |r| r.min(VERIFY_AFTER_WRITE)));
                }
                Some(_) => slot.wrote_at = None,
                None => {}
            }
            slot.finished = Some((self.inputs, outcome));
            true
        };
        drop(permit);
        if reported {
            ctx.wake(self.key);
        }
        // The permit is free: the server waiting longest (a first try before any retry) takes it.
        let next = ctx.runtime_waiting.lock().expect("waiting lock").pop_front();
        if let Some(next) = next {
            ctx.wake(next);
        }
    }
}

fn not_serving(condition: Decided) -> RuntimeOutcome {
    RuntimeOutcome { condition: Some(condition), ..RuntimeOutcome::default() }
}

fn failed(problem: Problem) -> RuntimeOutcome {
    not_serving(Decided::new(SERVING, false, problem.reason, problem.message))
}

async fn pass(
    task: &Task,
    desired: &crate::render::DesiredRuntime,
    secrets: &Secrets<'_>,
    api: &mut Api,
) -> Result<RuntimeOutcome, Problem> {
    let (ctx, server, rendered, mode) = (&*task.ctx, &task.server, &*task.rendered, task.mode);
    let namespace = &rendered.cr.namespace;
    if api.token().is_none() {
        session::ready(api).await?;
    }
    let setup = if mode.writes() { AccountSetup::Allowed } else { AccountSetup::ReadOnly };
    let (mut live, logged_in) = session::login_and_read(secrets, api, rendered, desired, setup).await?;
    if let Some(user) = logged_in.created_account {
        let note = format!(
            "Created DittoFS account {user} (role admin) with the bootstrap admin; its password is in Secret {}",
            rendered.outline.names.operator_secret
        );
        writes::publish(ctx, server, EventType::Normal, "OperatorAccountCreated", &note).await;
    }
    let digest_key = ctx.checksum_key(namespace).await.map_err(|e| Problem::new("SecretUnreadable", e.to_string()))?;
    let repoint = plan::repoint_allowed(server.annotations());
    let inputs = session::PlanInputs {
        rendered,
        desired,
        live: &live,
        digest_key: &digest_key,
        remembered: &task.remembered,
        repoint_allowed: repoint,
    };
    let session::Planned { plan: planned, secret_values, passwords, passwords_current } =
        session::plan_against(secrets, api, inputs).await?;

    if !planned.changes.is_empty() && !mode.writes() {
        let held = planned.descriptions();
        let why = if mode == Mode::Paused { "Paused" } else { "DryRun" };
        let message = format!("DittoFS changes not made ({why}): {}", held.join("; "));
        return Ok(RuntimeOutcome {
            condition: Some(Decided::new(SERVING, false, "ChangesHeld", message)),
            status: Some(status(desired, &live)),
            held,
            retry: None,
            wrote: false,
            passwords: Some(passwords_current),
        });
    }

    let mut applied = Vec::new();
    for change in &planned.changes {
        let result = match &change.body {
            Some(body) => api.send(change.method, &change.path, body).await.map(|_| ()),
            None => api.send(change.method, &change.path, &serde_json::Value::Null).await.map(|_| ()),
        };
        if let Err(error) = result {
            let reason = match (&error, change.area) {
                (crate::dittofs::api::ApiError::Unreachable(_), _) => "ApiUnreachable",
                (_, Area::Adapter) => "AdapterRejected",
                (_, Area::Store) => "StoreRejected",
                (_, Area::Share) => "ShareRejected",
                (_, Area::Access) => "AccessRejected",
            };
            let mut known = secrets.handed_out();
            known.extend(secret_values.iter().cloned());
            known.extend(api.token().map(str::to_string));
            let detail = session::scrub_and_cut(&error.to_string(), &known);
            let message = format!(
                "{}: DittoFS refused \"{}\": {detail}{}",
                change.subject,
                change.description,
                if applied.is_empty() { String::new() } else { format!(". Done before it: {}", applied.join("; ")) }
            );
            writes::publish(ctx, server, EventType::Warning, reason, &message).await;
            return Err(Problem::new(reason, message));
        }
        applied.push(change.description.clone());
    }
    if planned.changes.iter().any(|c| c.needs_restart) {
        restart(ctx, server, rendered).await?;
    }
    if !applied.is_empty() {
        info!(changes = ?applied, "DittoFS runtime updated");
        writes::publish(ctx, server, EventType::Normal, "RuntimeUpdated", &format!("DittoFS: {}", applied.join("; ")))
            .await;
        live = session::read_live(api, desired)
            .await
            .map_err(|e| Problem::new("ApiError", format!("reading DittoFS's state: {e}")))?;
    }

    let mut condition = serving(desired, &live, &planned.refused, &secret_values);
    if condition.status && rendered.outline.api_tls.is_none() {
        condition.message.push_str(PLAIN_HTTP);
    }
    Ok(RuntimeOutcome {
        // The look again after a write comes from `runtime`'s verify window.
        retry: None,
        wrote: !applied.is_empty(),
        condition: Some(condition),
        status: Some(status(desired, &live)),
        held: Vec::new(),
        passwords: Some(passwords),
    })
}

/// DittoFS loads a store's credentials with the shares at start: after new ones are saved,
/// the pod is deleted so the StatefulSet starts it again (its claims stay). Exactly the pod this
/// pass talked to (uid precondition): one already replaced loads the new credentials anyway.
async fn restart(ctx: &Context, server: &DittoServer, rendered: &Rendered) -> Result<(), Problem> {
    let pod = format!("{}-0", rendered.outline.names.stateful_set);
    let namespace = &rendered.cr.namespace;
    // The pod the pass found Ready, as the pod watch keeps it (no request).
    let uid = match ctx.reads().get_as::<Pod>(namespace, &pod, Need::Status).await {
        Ok(Some(found)) => found.metadata.uid,
        Ok(None) => return Ok(()),
        Err(e) => return Err(Problem::new("RestartFailed", format!("reading pod {pod}: {e}"))),
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(ctx.client.clone(), namespace);
    match writes::delete_exactly(&pods, &pod, uid, None).await {
        Ok(writes::Deleted::Done) => {}
        Ok(writes::Deleted::Gone | writes::Deleted::Replaced) => return Ok(()),
        Err(e) => {
            return Err(Problem::new(
                "RestartFailed",
                format!("deleting pod {pod} to load new store credentials: {e}"),
            ));
        }
    }
    let note = format!("Restarted pod {pod}: DittoFS loads store credentials at start, and they changed");
    writes::publish(ctx, server, EventType::Normal, "Restarted", &note).await;
    Ok(())
}

/// Said on `Serving` when the spec turned HTTPS off: what that costs.
const PLAIN_HTTP: &str = "; the API is plain HTTP (spec.controlPlane.tls: false): the passwords, tokens and keys the operator sends DittoFS travel in clear";

/// `Serving` from what the server reports after this pass.
fn serving(desired: &crate::render::DesiredRuntime, live: &Live, refused: &[String], secrets: &[String]) -> Decided {
    if !refused.is_empty() {
        return Decided::new(SERVING, false, "ChangeRefused", refused.join("; "));
    }
    for kind in crate::render::StoreKind::ALL {
        for store in desired.stores(kind) {
            let unhealthy = live
                .stores
                .get(&kind)
                .and_then(|rows| rows.iter().find(|s| s.name == store.name))
                .and_then(|s| s.unhealthy());
            if let Some(why) = unhealthy {
                let message = format!(
                    "{} {} is {}: check its settings and credentials (shares on it are not served)",
                    kind.label(),
                    store.name,
                    session::scrub(&why, secrets)
                );
                return Decided::new(SERVING, false, "StoreUnhealthy", message);
            }
        }
    }
    for adapter in desired.adapters.iter().filter(|a| a.enabled) {
        let found = live.adapters.iter().find(|l| l.adapter_type == adapter.adapter_type);
        if let Some(l) = found.filter(|l| !l.healthy()) {
            let message = format!(
                "adapter {} on port {} is not serving (DittoFS reports {}). If this lasts, another process holds the port (see the DittoFS log); the operator restarts the adapter with backoff",
                adapter.adapter_type,
                adapter.port,
                l.health()
            );
            return Decided::new(SERVING, false, "AdapterNotRunning", message);
        }
    }
    let missing: Vec<&str> =
        desired.shares.iter().filter(|s| live.share(&s.name).is_none()).map(|s| s.name.as_str()).collect();
    if !missing.is_empty() {
        return Decided::new(SERVING, false, "ShareMissing", format!("not exported yet: {}", missing.join(", ")));
    }
    let shares: Vec<&str> = desired.shares.iter().map(|s| s.name.as_str()).collect();
    let ports: Vec<String> = live
        .adapters
        .iter()
        .filter(|a| a.healthy())
        .map(|a| format!("{} on port {}", a.adapter_type.to_uppercase(), a.port))
        .collect();
    Decided::new(SERVING, true, "Serving", format!("Exports {} over {}", shares.join(", "), ports.join(" and ")))
}

fn status(desired: &crate::render::DesiredRuntime, live: &Live) -> RuntimeStatus {
    RuntimeStatus {
        shares: desired.shares.iter().filter(|s| live.share(&s.name).is_some()).map(|s| s.name.clone()).collect(),
        adapters: live.adapters.iter().map(adapter_status).collect(),
        users: desired
            .users
            .iter()
            .filter(|u| live.users.iter().any(|l| l.username == u.name))
            .map(|u| u.name.clone())
            .collect(),
        groups: desired
            .groups
            .iter()
            .filter(|g| live.groups.iter().any(|l| l.name == g.name))
            .map(|g| g.name.clone())
            .collect(),
        quotas: desired
            .shares
            .iter()
            .filter_map(|s| live.share(&s.name))
            .filter_map(|l| {
                let quota = l.quota_bytes.clone().filter(|q| !q.is_empty())?;
                Some(QuotaStatus { share: l.name.clone(), quota, used_bytes: l.used_bytes.unwrap_or(0) })
            })
            .collect(),
    }
}

fn adapter_status(a: &LiveAdapter) -> AdapterStatus {
    AdapterStatus { adapter_type: a.adapter_type.clone(), port: a.port, enabled: a.enabled, running: a.healthy() }
}
