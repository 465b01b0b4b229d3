//! An object's content kept by resourceVersion, as much of it as later reads need ([`Need`]).

use std::sync::Arc;

use compact_str::CompactString;
use serde_json::Value;

use super::store::uid_or_marker;
use crate::names::{LABEL_INSTANCE, LABEL_MANAGED_BY, OWNER_ANNOTATION};

/// An object at one resourceVersion, as much of it as was kept: compact JSON, a third to a
/// fifth of the memory of a parsed value; reading it back costs microseconds. Of an object
/// written at [`Need::Metadata`], only its version: once the watch shows it, its store's
/// record answers such reads; until then its version tells it exists and whether it settled.
pub(super) struct Kept {
    pub(super) version: CompactString,
    pub(super) json: Option<Box<[u8]>>,
    pub(super) level: Need,
}

impl Kept {
    /// Its content, when it was kept and is at least `need`.
    pub(super) fn value(&self, need: Need) -> Option<Arc<Value>> {
        let json = self.json.as_ref().filter(|_| self.level >= need)?;
        Some(Arc::new(serde_json::from_slice(json).expect("kept JSON reads back")))
    }
}

/// How much of an object a read needs; each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Its name, version and whose it is ([`keep_ownership`]): what a plan reads when no dry run
    /// is needed.
    Metadata,
    /// Also its status, and of its spec the replicas and selector (the status step's view of a
    /// StatefulSet and of the file Service); of a Pod, its whole metadata and status, no spec
    /// (its health is read from them).
    Status,
    /// All of it (data, spec, status): for a diff. Of a Secret, its data with the metadata of
    /// [`Need::Metadata`]: it is read for its data and never diffed.
    Content,
}

/// Of an object's metadata, what planning and the status step read when no dry run is needed:
/// its name, version and generation, and whose it is (the controller owner's uid, the owner
/// annotation, the instance and managed-by labels; see `apply::controlled_by`). The rest of the
/// labels and annotations is most of a metadata object and nothing decides on it.
fn keep_ownership(meta: &mut serde_json::Map<String, Value>) {
    meta.retain(|k, _| {
        matches!(
            k.as_str(),
            "name" | "namespace" | "resourceVersion" | "generation" | "labels" | "annotations" | "ownerReferences"
        )
    });
    if let Some(Value::Object(labels)) = meta.get_mut("labels") {
        labels.retain(|k, _| k == LABEL_INSTANCE || k == LABEL_MANAGED_BY);
    }
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        annotations.retain(|k, _| k == OWNER_ANNOTATION);
        for value in annotations.values_mut() {
            *value = Value::from(&*uid_or_marker(value.as_str().unwrap_or_default()));
        }
    }
    if let Some(Value::Array(owners)) = meta.get_mut("ownerReferences") {
        owners.retain(|o| o["controller"] == true);
        for owner in owners.iter_mut().filter_map(Value::as_object_mut) {
            owner.retain(|k, _| k == "uid" || k == "controller");
            if let Some(uid) = owner.get_mut("uid") {
                *uid = Value::from(&*uid_or_marker(uid.as_str().unwrap_or_default()));
            }
        }
    }
}

/// Drops from an object what no read at `need` looks at (see [`Need`]).
pub(super) fn trim(object: &mut serde_json::Map<String, Value>, need: Need) {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let metadata_only = match (need, kind) {
        (Need::Metadata, _) => {
            object.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
            true
        }
        // A Pod is read for its health: its labels (the StatefulSet's selector) and status.
        (Need::Status, "Pod") => {
            object.remove("spec");
            false
        }
        (Need::Status, _) => {
            // The StatefulSet's replicas and selector; a Service's address is in its status.
            if let Some(Value::Object(spec)) = object.get_mut("spec") {
                spec.retain(|k, _| k == "replicas" || k == "selector");
            }
            true
        }
        // A Secret is read for its data (it is never diffed: created once, never updated).
        (Need::Content, "Secret") => true,
        (Need::Content, _) => false,
    };
    if metadata_only && let Some(Value::Object(meta)) = object.get_mut("metadata") {
        keep_ownership(meta);
    }
}
