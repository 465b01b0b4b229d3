//! Stores: created, their config corrected (credentials through a keyed digest), a location
//! change of a store in use refused unless allowed, and deleted only when the spec lists them
//! and no share will use them.

use serde_json::{Value, json};

use super::{Area, CREDENTIALS_DIGEST_KEY, Change, Live, Plan, ResolvedStore, shown};
use crate::dittofs::api::{LiveStore, segment};
use crate::render::desired::{DesiredRuntime, StoreKind};

/// Config keys that say where a store's data is: changing one on a store that shares use points
/// it at other data (the files stay where they were, and the shares look empty).
const LOCATION_KEYS: &[&str] = &["bucket", "prefix", "endpoint", "region", "path", "database", "host", "port"];

pub(super) fn plan_stores(stores: &[ResolvedStore], live: &Live, repoint_allowed: bool, out: &mut Plan) {
    for store in stores {
        let label = format!("{} {}", store.kind.label(), store.desired.name);
        match live.store(store.kind, &store.desired.name) {
            None => out.changes.push(
                Change::call(
                    "POST",
                    format!("/api/v1/{}", store.kind.route()),
                    Some(json!({"name": store.desired.name, "type": store.desired.store_type, "config": store.config_string()})),
                )
                .about(Area::Store, &label, format!("{label}: create ({})", store.desired.store_type)),
            ),
            Some(l) if l.store_type != store.desired.store_type => out.refused.push(format!(
                "{label} is {} on the server but the spec asks for {}: DittoFS cannot change a store's type in place. \
                 Give the new store another name (the old one and its data stay), or delete the old one yourself",
                l.store_type, store.desired.store_type
            )),
            Some(l) => plan_store_update(store, l, &label, live, repoint_allowed, out),
        }
    }
}

/// A store the server has, of the type the spec asks for.
fn plan_store_update(
    store: &ResolvedStore,
    l: &LiveStore,
    label: &str,
    live: &Live,
    repoint_allowed: bool,
    out: &mut Plan,
) {
    let users: Vec<&str> = live
        .shares
        .iter()
        .filter(|s| {
            [Some(&s.metadata_store_id), Some(&s.local_block_store_id), s.remote_block_store_id.as_ref()]
                .contains(&Some(&l.id))
        })
        .map(|s| s.name.as_str())
        .collect();
    let in_use = !users.is_empty();
    let mut config = store.config.clone();
    if in_use && store.kind == StoreKind::Local {
        // A local store in use stays where it is: its claim is still mounted (claims cannot be
        // added or removed), and the files are there. Adding spec.s3 to a running server would
        // otherwise move it from the content to the cache claim.
        if let Some(path) = l.config.get("path").filter(|_| config.contains_key("path")) {
            config.insert("path".into(), path.clone());
        }
    }
    let store = &ResolvedStore { config, ..store.clone() };
    let moved: Vec<&str> = LOCATION_KEYS
        .iter()
        .copied()
        .filter(|k| l.config.get(*k).is_some_and(|now| store.config.get(*k) != Some(now)))
        .collect();
    if in_use && !moved.is_empty() && !repoint_allowed {
        out.refused.push(format!(
            "{label} holds the data of share {}: changing its {} would point it at other data (the files stay where they are, and the share would look empty). \
             Move the data first, then annotate the DittoServer {}={}; or give the new location a store of another name",
            users.join(", "),
            moved.iter().map(|k| format!("{k} ({} → {})", shown(l.config.get(*k)), shown(store.config.get(*k)))).collect::<Vec<_>>().join(", "),
            crate::names::STORE_LOCATION_ANNOTATION,
            crate::names::REPOINT,
        ));
        return;
    }
    let what = config_differences(store, &l.config);
    if what.is_empty() {
        return;
    }
    // New credentials or a new location must reach the shares now: DittoFS reads them when it
    // loads a share. A size limit can wait for the next load.
    let credentials = store.config.get(CREDENTIALS_DIGEST_KEY) != l.config.get(CREDENTIALS_DIGEST_KEY);
    let needs_restart = in_use && (credentials || !moved.is_empty());
    let later = if in_use && !needs_restart { " (read when DittoFS next starts)" } else { "" };
    out.changes.push(
        Change::call(
            "PUT",
            format!("/api/v1/{}/{}", store.kind.route(), segment(&store.desired.name)),
            Some(json!({"config": store.config_string()})),
        )
        .about(Area::Store, label, format!("{label}: {}{later}", what.join(", ")))
        .needing_restart(needs_restart),
    );
}

/// Keys of the desired config that the server holds differently; secret keys compare through
/// the digest and are reported as "credentials".
fn config_differences(store: &ResolvedStore, live: &Value) -> Vec<String> {
    let mut what = Vec::new();
    for (key, wanted) in &store.config {
        if store.secret_keys.contains(key) {
            continue;
        }
        let current = live.get(key);
        if current == Some(wanted) {
            continue;
        }
        if key == CREDENTIALS_DIGEST_KEY {
            what.push(format!("credentials ({}) changed", store.secret_keys.join(", ")));
        } else {
            what.push(format!("{key} {} → {}", shown(current), shown(Some(wanted))));
        }
    }
    what
}

/// `spec.stores.delete`: each store named there, of any kind, deleted with its data unless a
/// share will still use it once the plan has run.
pub(super) fn plan_store_deletions(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    for name in &desired.delete_stores {
        for kind in StoreKind::ALL {
            let Some(l) = live.store(kind, name) else { continue };
            // Shares that will still use it once this plan has run.
            let users: Vec<&str> = live
                .shares
                .iter()
                .filter(|s| {
                    let wanted = desired.shares.iter().find(|d| d.name == s.name);
                    let live_ref = match kind {
                        StoreKind::Metadata => s.metadata_store_id == l.id,
                        StoreKind::Local => s.local_block_store_id == l.id,
                        StoreKind::Remote => s.remote_block_store_id.as_deref() == Some(l.id.as_str()),
                    };
                    let wanted_ref = wanted.is_some_and(|d| match kind {
                        StoreKind::Metadata => d.metadata_store == *name,
                        StoreKind::Local => d.local_block_store == *name,
                        StoreKind::Remote => d.remote_block_store.as_deref() == Some(name.as_str()),
                    });
                    if wanted.is_some() { wanted_ref } else { live_ref }
                })
                .map(|s| s.name.as_str())
                .collect();
            let label = format!("{} {name}", kind.label());
            if users.is_empty() {
                out.changes.push(
                    Change::call("DELETE", format!("/api/v1/{}/{}", kind.route(), segment(name)), None).about(
                        Area::Store,
                        &label,
                        format!("{label}: delete with its data (spec.stores.delete)"),
                    ),
                );
            } else {
                out.refused.push(format!(
                    "{label} is listed in spec.stores.delete but share {} still uses it: not deleted",
                    users.join(", ")
                ));
            }
        }
    }
}
