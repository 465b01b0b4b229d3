//! Where templates come from: the ones embedded in the binary, optionally overridden by name.

use std::collections::BTreeMap;

use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct Embedded;

/// Rendered first, into a string: the DittoFS config file (not an object).
pub const CONFIG_TEMPLATE: &str = "dittofs-config.yaml.j2";

/// Rendered after the config, into the runtime state set up over DittoFS's REST API (not an object).
pub const RUNTIME_TEMPLATE: &str = "dittofs-runtime.yaml.j2";

/// The embedded templates plus overrides that replace them by name (or add new ones).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateSource {
    overrides: BTreeMap<String, String>,
}

impl TemplateSource {
    pub fn embedded() -> Self {
        Self::default()
    }

    pub fn with_overrides(overrides: BTreeMap<String, String>) -> Self {
        Self { overrides }
    }

    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(text) = self.overrides.get(name) {
            return Some(text.clone());
        }
        Embedded::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned())
    }

    /// Every template name, sorted: embedded and overrides.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Embedded::iter().map(|n| n.to_string()).collect();
        names.extend(self.overrides.keys().filter(|k| k.ends_with(".j2")).cloned());
        names.sort();
        names.dedup();
        names
    }

    pub fn embedded_names() -> Vec<String> {
        let mut names: Vec<String> = Embedded::iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    /// Templates that each render Kubernetes objects (helpers start with `_`).
    pub fn object_templates(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| !n.starts_with('_') && n != CONFIG_TEMPLATE && n != RUNTIME_TEMPLATE)
            .collect()
    }

    /// Tells template sets apart: equal overrides, equal fingerprints (0 for the embedded set).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        if self.overrides.is_empty() {
            return 0;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.overrides.hash(&mut hasher);
        hasher.finish() | 1
    }
}
