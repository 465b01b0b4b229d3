//! What the earlier Go operator leaves behind after a takeover: one Service per adapter,
//! `<name>-adapter-nfs` and `<name>-adapter-smb`, controlled by the DittoServer and selecting the
//! earlier pod's labels. Clients may still use their addresses, and a LoadBalancer one keeps
//! billing. They are named in `InSync` until this operator's server serves; then, with the
//! re-creation opt-in the takeover needs anyway, they are deleted (uid precondition).
//! (The earlier NetworkPolicies carry the same names as this operator's and are updated in place.)

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::writes;
use super::{Context, Error};
use crate::conditions::{Decided, IN_SYNC};
use crate::crd::DittoServer;
use crate::decide::{self, Mode};
use crate::gather::read_error;

/// The label the earlier operator put on its adapter Services.
const EARLIER_ADAPTER_SERVICE: &str = "dittofs.io/adapter-service=true";

/// Looks for the earlier adapter Services when this pass shows a takeover (the StatefulSet
/// refused for its selector, or the re-creation opt-in), says so in `InSync`, and deletes them
/// once `serving` and opted in. A server found without them is not looked at again.
pub async fn earlier_adapter_services(
    ctx: &Context,
    server: &DittoServer,
    decided: &mut [Decided],
    serving: bool,
    mode: Mode,
) -> Result<(), Error> {
    let opted_in = decide::recreates_on_immutable_change(server);
    let refused = decided.iter().any(|d| d.type_ == IN_SYNC && d.reason == "ApplyRejected");
    let key = ObjectRef::from_obj(server);
    let checked = ctx.memory.lock().expect("memory lock").get(&key).is_some_and(|m| m.earlier_checked);
    if !(opted_in || refused) || checked {
        return Ok(());
    }
    let namespace = server.namespace_or_default();
    let uid = server.uid().unwrap_or_default();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{EARLIER_ADAPTER_SERVICE},instance={}", server.name_any());
    let found = services.list(&ListParams::default().labels(&selector)).await.map_err(read_error("Service"))?;
    let earlier: Vec<Service> = found
        .items
        .into_iter()
        .filter(|s| s.owner_references().iter().any(|r| r.controller == Some(true) && r.uid == uid))
        .collect();
    if earlier.is_empty() {
        ctx.memory.lock().expect("memory lock").entry(key).or_default().earlier_checked = true;
        return Ok(());
    }
    let names: Vec<String> = earlier.iter().map(|s| s.name_any()).collect();
    if serving && opted_in && mode.writes() {
        for service in &earlier {
            // Gone or replaced meanwhile: nothing of the earlier operator's left to remove.
            match writes::delete_exactly(&services, &service.name_any(), service.uid(), None).await {
                Ok(_) => {}
                Err(source) => {
                    let object = format!("Service/{}", service.name_any());
                    return Err(crate::apply::ApplyError::Api {
                        action: "deleting (earlier operator's)",
                        object,
                        source,
                    }
                    .into());
                }
            }
        }
        let note = format!(
            "Deleted the earlier operator's Services {} now that {} serves: clients use {}-file",
            names.join(", "),
            server.name_any(),
            server.name_any()
        );
        writes::publish(ctx, server, EventType::Normal, "EarlierServicesRemoved", &note).await;
        ctx.memory.lock().expect("memory lock").entry(key).or_default().earlier_checked = true;
        return Ok(());
    }
    if let Some(in_sync) = decided.iter_mut().find(|d| d.type_ == IN_SYNC) {
        in_sync.message.push_str(&format!(
            ". The earlier operator's Services {} remain (clients may still use them; a LoadBalancer keeps its address): \
             they are deleted once this server serves, with the {}={} annotation",
            names.join(", "),
            crate::names::IMMUTABLE_CHANGE_ANNOTATION,
            crate::names::RECREATE
        ));
    }
    Ok(())
}
