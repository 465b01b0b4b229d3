//! The status step: what the cluster says about the workload (Degraded), merged with what the
//! pass decided, written only when it differs; and when to look again. Also [`hold`], for a
//! pass that applies nothing.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::serving::RuntimeOutcome;
use super::sync::Synced;
use super::{Context, Error, writes};
use crate::apply;
use crate::conditions::{self, Decided, Workload};
use crate::crd::{DatabaseStatus, DittoServer, DittoServerStatus, Endpoints, RuntimeStatus};
use crate::decide::{self, Hold, Mode, Next, WAIT};
use crate::gather::read_error;
use crate::health;
use crate::percona;
use crate::render::Rendered;

/// Steady-state resync: catches drift nothing else would report.
const RESYNC: Duration = Duration::from_secs(300);

/// Observes the pod and claims, writes the status, and says when to look again.
pub async fn report(
    ctx: &Context,
    server: &DittoServer,
    rendered: &Rendered,
    synced: Synced,
    runtime: RuntimeOutcome,
    gathered_secrets: &crate::discover::SecretsByName,
) -> Result<Action, Error> {
    let Synced { mut decided, stateful_set, file_service, missing_class, mode } = synced;
    let workload = stateful_set.as_ref().map(|s| Workload::from_stateful_set(s, rendered.outline.replicas));
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let namespace = server.namespace_or_default();
    let update_revision =
        stateful_set.as_ref().and_then(|s| s.status.as_ref()).and_then(|s| s.update_revision.as_deref());
    let mut observed = match &missing_class {
        Some(missing) => health::Observed {
            degraded: health::storage_class_condition(missing),
            recheck_after: None,
            stuck_on_old_revision: None,
            foreign_pod: None,
        },
        None => health::observe(
            ctx.reads(),
            &namespace,
            &server.name_any(),
            now,
            ctx.settings.claim_pending_grace,
            update_revision,
            stateful_set.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.selector.match_labels.as_ref()),
        )
        .await
        .map_err(read_error("pod and claims"))?,
    };
    if let Some(stale) = &observed.stuck_on_old_revision {
        roll_forward(ctx, server, &namespace, stale, mode, &mut observed.degraded).await?;
    }
    if let Some(foreign) = &observed.foreign_pod {
        replace_foreign_pod(ctx, server, &namespace, foreign, mode, &mut observed.degraded).await?;
    }
    // The kubelet's words (a crash loop's last log lines) may hold what DittoFS printed; only a
    // Degraded message quotes them, so a quiet pass does not collect the values.
    if observed.degraded.status {
        let secret_values = crate::dittofs::session::values_of(gathered_secrets);
        observed.degraded.message = crate::dittofs::session::scrub_and_cut(&observed.degraded.message, &secret_values);
    }
    decided.push(observed.degraded);
    if !runtime.held.is_empty() {
        decide::with_runtime_pending(&mut decided, mode, &runtime.held);
    }
    // Until the pod is up, look again sooner: claim binding and crash loops show up over time.
    let settled = workload.as_ref().is_some_and(|w| w.ready >= w.desired && w.rolled_out) && missing_class.is_none();
    let serving = settled && runtime.condition.as_ref().is_none_or(|c| c.status);
    super::takeover::earlier_adapter_services(ctx, server, &mut decided, serving, mode).await?;
    decided.extend(runtime.condition);
    let live = Live { file_service: file_service.as_ref(), runtime: runtime.status };
    write(ctx, server, decided, workload, Some(rendered), live).await?;
    let next = if settled { RESYNC } else { WAIT };
    let next = runtime.retry.map_or(next, |retry| retry.min(next));
    Ok(Action::requeue(observed.recheck_after.map_or(next, |grace_over| grace_over.min(next))))
}

/// A pod stuck on a revision the StatefulSet no longer wants is never replaced by the
/// StatefulSet controller (it waits for the pod to become Ready): delete it, as the StatefulSet
/// documentation prescribes after a revert, so it comes back at the wanted revision. Its claims
/// stay. Held back like every write while paused or with `--dry-run`; the message says so.
async fn roll_forward(
    ctx: &Context,
    server: &DittoServer,
    namespace: &str,
    stale: &health::StalePod,
    mode: Mode,
    degraded: &mut Decided,
) -> Result<(), Error> {
    let what = format!(
        "pod {} is stuck on revision {} while the StatefulSet wants {}",
        stale.name, stale.revision, stale.wanted
    );
    if !mode.writes() {
        degraded.message.push_str(&format!(
            ". The {what}: delete the pod to roll forward (the operator does so once it may write)"
        ));
        return Ok(());
    }
    if !delete_pod(ctx, namespace, &stale.name, stale.uid.clone(), "deleting (roll forward)").await? {
        return Ok(());
    }
    let note = format!("Deleted the {what}; the StatefulSet re-creates it at {} (its claims stay)", stale.wanted);
    writes::publish(ctx, server, EventType::Normal, "RolledForward", &note).await;
    degraded.message.push_str(&format!(". {note}"));
    Ok(())
}

/// What the status reports beyond conditions, as observed this pass.
#[derive(Default)]
pub(super) struct Live<'a> {
    pub file_service: Option<&'a Service>,
    /// From the runtime step; `None` keeps what the status said (the API was not reached).
    pub runtime: Option<RuntimeStatus>,
}

/// Deletes exactly the pod observed (uid precondition); `false` when it is gone or replaced
/// meanwhile, so there is nothing left to do.
async fn delete_pod(
    ctx: &Context,
    namespace: &str,
    name: &str,
    uid: Option<String>,
    action: &'static str,
) -> Result<bool, Error> {
    match writes::delete_exactly(&Api::<Pod>::namespaced(ctx.client.clone(), namespace), name, uid, None).await {
        Ok(deleted) => Ok(deleted == writes::Deleted::Done),
        Err(source) => Err(apply::ApplyError::Api { action, object: format!("Pod/{name}"), source }.into()),
    }
}

/// A pod `<name>-0` left by an earlier StatefulSet with another selector (after a re-create,
/// such as taking over the earlier Go operator's `app=dittofs-server` StatefulSet) blocks the
/// new StatefulSet, which can neither adopt it nor create its own: delete it. Its claims have
/// the names the new StatefulSet uses, so the new pod mounts the same data. Held back while
/// paused or with `--dry-run`.
async fn replace_foreign_pod(
    ctx: &Context,
    server: &DittoServer,
    namespace: &str,
    foreign: &health::ForeignPod,
    mode: Mode,
    degraded: &mut Decided,
) -> Result<(), Error> {
    let what = format!(
        "pod {} lacks the StatefulSet's labels ({}): it was left by an earlier StatefulSet and blocks the new pod",
        foreign.name,
        foreign.missing.join(", ")
    );
    if !mode.writes() {
        degraded.message.push_str(&format!(". The {what}: delete it (the operator does so once it may write)"));
        return Ok(());
    }
    if !delete_pod(ctx, namespace, &foreign.name, foreign.uid.clone(), "deleting (foreign pod)").await? {
        return Ok(());
    }
    let note = format!("Deleted the {what}; the StatefulSet creates its own with the same claims");
    writes::publish(ctx, server, EventType::Normal, "ReplacedForeignPod", &note).await;
    Ok(())
}

pub(super) async fn write(
    ctx: &Context,
    server: &DittoServer,
    mut decided: Vec<Decided>,
    workload: Option<Workload>,
    rendered: Option<&Rendered>,
    live: Live<'_>,
) -> Result<(), Error> {
    if let Some(w) = &workload {
        decided.extend(conditions::workload_conditions(w));
    }
    decided.push(conditions::ready_condition(&decided));
    let previous = server.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = server.metadata.generation;
    let new = DittoServerStatus {
        observed_generation: generation,
        phase: Some(conditions::phase(&decided, workload.as_ref(), false)),
        replicas: workload.as_ref().map(|w| w.desired),
        ready_replicas: workload.as_ref().map(|w| w.ready),
        config_hash: rendered.map(|r| r.checksum.clone()).or(previous.config_hash.clone()),
        endpoints: rendered.map(|r| endpoints(r, live.file_service)).or(previous.endpoints.clone()),
        database: rendered.map(|r| database_status(r, server)).or(previous.database.clone()),
        runtime: live.runtime.or(previous.runtime.clone()),
        conditions: conditions::merge(&previous.conditions, &decided, generation, &now),
    };
    if !conditions::differs(server.status.as_ref(), &new) {
        return Ok(());
    }
    writes::status(&ctx.client, server, &new).await.map_err(Error::Status)?;
    ctx.wrote_status(server, new);
    Ok(())
}

fn endpoints(rendered: &Rendered, file_service: Option<&Service>) -> Endpoints {
    let c = &rendered.outline;
    let ns = &rendered.cr.namespace;
    let lb = file_service
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
    let host = lb.unwrap_or_else(|| format!("{}.{ns}.svc", c.names.file_service));
    let first_share = rendered.runtime.as_ref().and_then(|r| r.shares.first()).map(|s| s.name.clone());
    Endpoints {
        file: Some(format!("{host}:{}", c.nfs_port)),
        api: Some(format!("{}.{ns}.svc:{}", c.names.api_service, c.ports.api)),
        nfs: first_share.as_ref().map(|share| format!("{host}:{share}")),
        smb: first_share.as_ref().filter(|_| c.smb_enabled).map(|share| format!("//{host}{share}")),
        clients: Some(c.clients.clone()),
    }
}

fn database_status(rendered: &Rendered, server: &DittoServer) -> DatabaseStatus {
    let percona = percona::target(&server.spec, &rendered.cr.name).is_some();
    match &rendered.outline.postgres {
        Some(pg) => DatabaseStatus {
            kind: if percona { "percona" } else { "postgres" }.into(),
            host: Some(format!("{}:{}", pg.host, pg.port)),
            ready: true,
        },
        None => DatabaseStatus { kind: "sqlite".into(), host: None, ready: true },
    }
}

/// Nothing (more) is applied: report why (Warning Event, conditions) and leave every object as it is.
pub async fn hold(ctx: &Context, server: &DittoServer, hold: Hold) -> Result<Action, Error> {
    writes::publish(ctx, server, EventType::Warning, &hold.reason, &hold.message).await;
    let name = server.name_any();
    let existing: Option<StatefulSet> = ctx
        .reads()
        .get(&server.namespace_or_default(), &name)
        .await
        .map_err(read_error(format!("StatefulSet/{name}")))?;
    let workload =
        existing.map(|s| Workload::from_stateful_set(&s, s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1)));
    write(ctx, server, hold.decided, workload, None, Live::default()).await?;
    Ok(match hold.next {
        Next::Change => Action::await_change(),
        Next::Wait => Action::requeue(WAIT),
    })
}
