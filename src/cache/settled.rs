//! The settled-object ledger: (hash of what is applied, live resourceVersion) pairs proven to
//! need no write, so a later pass applying the same object onto the same version needs no
//! dry run.

use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::{Cache, Key};

impl Cache {
    /// Whether applying `applied` (hashed by [`hash_of`]) onto the live version `live_version`
    /// was already shown to change nothing.
    pub fn is_settled(&self, key: &Key, applied: u64, live_version: &str) -> bool {
        let objects = self.objects.lock().expect("cache lock");
        objects.get(key).and_then(|e| e.settled.as_ref()).is_some_and(|(h, v)| *h == applied && **v == *live_version)
    }

    /// Records that the object at `live_version` holds everything `applied` sets.
    pub fn settle(&self, key: Key, applied: u64, live_version: String) {
        self.objects.lock().expect("cache lock").entry(key).or_default().settled = Some((applied, live_version.into()));
    }

    /// Whether the object, at the version the cache knows it at, was shown to hold everything
    /// `applied` sets: no request.
    pub fn settled_now(&self, key: &Key, applied: u64) -> bool {
        self.current_version(key).is_some_and(|version| self.is_settled(key, applied, &version))
    }

    /// Whether the cache knows the object exists (its store, or the operator's own write).
    pub fn present(&self, key: &Key) -> bool {
        self.current_version(key).is_some()
    }
}

/// A hash of what would be applied: equal renderings, equal hashes.
pub fn hash_of(value: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(value).expect("JSON serializes").hash(&mut hasher);
    hasher.finish()
}
