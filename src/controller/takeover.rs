//! What the earlier Go operator leaves behind after a takeover: one Service per adapter,
//! `<name>-adapter-nfs` and `<name>-adapter-smb`, controlled by the DittoServer and selecting the
//! earlier pod's labels. Clients may still use their addresses, and a LoadBalancer one keeps
//! billing. They are named in `InSync` until this operator's server serves; then, with the
//! re-creation opt-in the takeover needs anyway, they are deleted (uid precondition).
//! (The earlier NetworkPolicies carry the same names as this operator's and are updated in place.)

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use super::writes::{self, Deletable, Effect};
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
    let found: Vec<(String, Option<String>)> = earlier.iter().map(|s| (s.name_any(), s.uid())).collect();
    let writes_now = serving && opted_in && mode.writes();
    match decide_earlier(server, &found, writes_now) {
        Earlier::Remove(effects) => {
            writes::run(ctx, server, effects).await?;
            ctx.memory.lock().expect("memory lock").entry(key).or_default().earlier_checked = true;
        }
        Earlier::Remain(note) => {
            if let Some(in_sync) = decided.iter_mut().find(|d| d.type_ == IN_SYNC) {
                in_sync.message.push_str(&note);
            }
        }
    }
    Ok(())
}

/// What becomes of the earlier operator's Services found.
#[derive(Debug, PartialEq)]
enum Earlier {
    /// Deleted (exactly those found), then said in an Event.
    Remove(Vec<Effect>),
    /// Kept for now: said in `InSync`.
    Remain(String),
}

/// `found`: the earlier Services' names and uids. Deleted when this server serves and the
/// re-creation opt-in is set (`remove`), else named in `InSync` with what it takes.
fn decide_earlier(server: &DittoServer, found: &[(String, Option<String>)], remove: bool) -> Earlier {
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    if !remove {
        return Earlier::Remain(format!(
            ". The earlier operator's Services {} remain (clients may still use them; a LoadBalancer keeps its address): \
             they are deleted once this server serves, with the {}={} annotation",
            names.join(", "),
            crate::names::IMMUTABLE_CHANGE_ANNOTATION,
            crate::names::RECREATE
        ));
    }
    let namespace = server.namespace_or_default();
    let mut effects: Vec<Effect> = found
        .iter()
        .map(|(name, uid)| Effect::DeleteExactly {
            kind: Deletable::Service,
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
        })
        .collect();
    let note = format!(
        "Deleted the earlier operator's Services {} now that {} serves: clients use {}-file",
        names.join(", "),
        server.name_any(),
        server.name_any()
    );
    effects.push(Effect::Event { warning: false, reason: "EarlierServicesRemoved", note });
    Earlier::Remove(effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> DittoServer {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer",
            "metadata": {"name": "files", "namespace": "storage", "uid": "u-1"},
            "spec": {"storage": {"metadataSize": "1Gi"}},
        }))
        .expect("a DittoServer")
    }

    #[test]
    fn the_earlier_services_are_deleted_exactly_then_said_or_named_while_they_remain() {
        let found = [("files-adapter-nfs".to_string(), Some("s-1".to_string()))];
        let Earlier::Remove(effects) = decide_earlier(&server(), &found, true) else { panic!("removed") };
        assert_eq!(
            effects[0],
            Effect::DeleteExactly {
                kind: Deletable::Service,
                namespace: "storage".into(),
                name: "files-adapter-nfs".into(),
                uid: Some("s-1".into())
            }
        );
        assert!(
            matches!(&effects[1], Effect::Event { reason: "EarlierServicesRemoved", note, .. } if note.contains("files-adapter-nfs"))
        );
        assert_eq!(effects.len(), 2);
        let Earlier::Remain(note) = decide_earlier(&server(), &found, false) else { panic!("kept") };
        assert!(note.contains("files-adapter-nfs remain") && note.contains("recreate"), "{note}");
    }
}
