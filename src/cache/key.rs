//! The cache's key of one object.

use std::collections::BTreeSet;
use std::sync::Mutex;

use compact_str::CompactString;
use kube::api::ApiResource;

/// One object: its API resource, namespace ("" when cluster-scoped) and name. The cache's map
/// holds one per object: the resource is interned (a handful of kinds), namespace and name are
/// one `namespace/name` string, held inline up to 24 bytes (no allocation for most keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub resource: &'static str,
    path: CompactString,
}

impl Key {
    pub fn new(resource: &ApiResource, namespace: &str, name: &str) -> Self {
        Self::in_resource(intern(resource_key(resource)), namespace, name)
    }

    /// The key of a managed object (no [`ApiResource`] built for it).
    pub fn of(kind: crate::kinds::Kind, namespace: &str, name: &str) -> Self {
        Self::in_resource(intern(format!("{}/{}", kind.group(), kind.plural())), namespace, name)
    }

    fn in_resource(resource: &'static str, namespace: &str, name: &str) -> Self {
        // Neither a namespace nor an object's name can hold a '/'.
        Self { resource, path: compact_str::format_compact!("{namespace}/{name}") }
    }

    pub fn namespace(&self) -> &str {
        self.path.split_once('/').map_or("", |(namespace, _)| namespace)
    }

    pub fn name(&self) -> &str {
        self.path.split_once('/').map_or(&*self.path, |(_, name)| name)
    }
}

/// One string per API resource for the life of the process: the resources the operator reads
/// are a fixed handful (its kinds, Pods, claims, CRDs), so what is leaked is bounded.
fn intern(resource: String) -> &'static str {
    static SEEN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().expect("intern lock");
    match seen.get(resource.as_str()) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(resource.into_boxed_str());
            seen.insert(leaked);
            leaked
        }
    }
}

pub(super) fn resource_key(resource: &ApiResource) -> String {
    format!("{}/{}", resource.group, resource.plural)
}
