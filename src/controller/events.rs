//! Events on the DittoServer: what was written (Created, Updated with the changed paths,
//! Pruned, Adopted) and, from the other steps, why something is held back.

use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::Context;
use crate::apply::ApplyOutcome;
use crate::crd::DittoServer;
use crate::diff::Action as DiffAction;

/// One Normal Event per object taken back (Adopted), one for every object a pass created
/// (Created, all of them named: a new DittoServer costs one Event, not one per object), and one
/// per object updated (with the changed paths) or pruned.
pub async fn publish_outcome(ctx: &Context, server: &DittoServer, adopted: &[String], outcome: &ApplyOutcome) {
    for reference in adopted {
        let note = format!(
            "Adopted {reference}, kept by an earlier DittoServer named {}; on deletion it is {} (spec.percona.deleteWithServer)",
            server.name_any(),
            if crate::percona::deleted_with_server(&server.spec) { "deleted" } else { "kept again" }
        );
        publish(ctx, server, EventType::Normal, "Adopted", &note).await;
    }
    let created: Vec<&str> =
        outcome.applied.iter().filter(|c| c.action == DiffAction::Create).map(|c| c.reference.as_str()).collect();
    if !created.is_empty() {
        publish(ctx, server, EventType::Normal, "Created", &format!("Created {}", created.join(", "))).await;
    }
    for change in &outcome.applied {
        let (reason, note) = match change.action {
            DiffAction::Create => continue,
            DiffAction::Update => ("Updated", format!("Updated {}: {}", change.reference, change.paths.join(", "))),
            DiffAction::Prune => ("Pruned", format!("Deleted {}: no longer rendered", change.reference)),
            DiffAction::Unchanged => continue,
        };
        publish(ctx, server, EventType::Normal, reason, &note).await;
    }
}

pub async fn publish(ctx: &Context, server: &DittoServer, type_: EventType, reason: &str, note: &str) {
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
