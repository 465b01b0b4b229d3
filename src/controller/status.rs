//! The status step: what the cluster says about the workload (Degraded), merged with what the
//! pass decided, written only when it differs; and when to look again.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::decide::WAIT;
use super::sync::Synced;
use super::{Context, Error};
use crate::crd::{DatabaseStatus, DittoServer, DittoServerStatus, Endpoints};
use crate::gather::read_error;
use crate::health;
use crate::percona;
use crate::render::Rendered;
use crate::status::{self, Decided, Workload};

/// Steady-state resync: catches drift nothing else would report.
const RESYNC: Duration = Duration::from_secs(300);

/// Observes the pod and claims, writes the status, and says when to look again.
pub async fn report(ctx: &Context, server: &DittoServer, rendered: &Rendered, synced: Synced) -> Result<Action, Error> {
    let Synced { mut decided, stateful_set, file_service, missing_class } = synced;
    let workload = stateful_set.as_ref().map(|s| Workload::from_stateful_set(s, rendered.context.computed.replicas));
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let namespace = server.namespace().unwrap_or_else(|| "default".into());
    let observed = match &missing_class {
        Some(missing) => health::Observed { degraded: health::storage_class_condition(missing), recheck_after: None },
        None => health::observe(&ctx.client, &namespace, &server.name_any(), now, ctx.settings.claim_pending_grace)
            .await
            .map_err(read_error("pod and claims"))?,
    };
    decided.push(observed.degraded);
    // Until the pod is up, look again sooner: claim binding and crash loops show up over time.
    let settled = workload.as_ref().is_some_and(|w| w.ready >= w.desired && w.rolled_out) && missing_class.is_none();
    write(ctx, server, decided, workload, Some(rendered), file_service.as_ref()).await?;
    let next = if settled { RESYNC } else { WAIT };
    Ok(Action::requeue(observed.recheck_after.map_or(next, |grace_over| grace_over.min(next))))
}

pub(super) async fn write(
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
