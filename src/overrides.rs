//! Template overrides: ConfigMaps (or, for `render`, a directory) whose keys are template names
//! (`statefulset.yaml.j2`, …) that replace or add to the embedded templates, and `values.yaml`
//! layered over the operator values. Operator-wide first, then the DittoServer's own (only with
//! `--allow-namespace-templates`). What they render is checked like the shipped templates.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cache::Reads;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use crate::crd::DittoServer;
use crate::render::TemplateSource;
use crate::settings::Settings;
use crate::values::{Values, ValuesError};

pub const VALUES_KEY: &str = "values.yaml";
/// The most an override set may hold, templates and values together: generous for templates
/// (the shipped ones total about 20 KiB), small enough that parsing them stays cheap.
pub const MAX_OVERRIDE_BYTES: usize = 256 * 1024;
/// The most templates an override set may hold (the shipped set has 14).
pub const MAX_OVERRIDE_TEMPLATES: usize = 32;

/// One set of overrides and where it came from (`ConfigMap ns/name` or a directory).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub origin: String,
    pub templates: BTreeMap<String, String>,
    pub values_yaml: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("{origin}: key {key:?} is neither a template name (ending in .j2) nor {VALUES_KEY}")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: {bytes} bytes of overrides are over the limit of {MAX_OVERRIDE_BYTES} bytes")]
    TooLarge { origin: String, bytes: usize },
    #[error("{origin}: {count} templates are over the limit of {MAX_OVERRIDE_TEMPLATES}")]
    TooMany { origin: String, count: usize },
    #[error(transparent)]
    Values(#[from] ValuesError),
}

impl Overrides {
    pub fn from_entries(origin: &str, entries: BTreeMap<String, String>) -> Result<Self, OverrideError> {
        let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_OVERRIDE_BYTES {
            return Err(OverrideError::TooLarge { origin: origin.to_string(), bytes });
        }
        let count = entries.keys().filter(|k| k.ends_with(".j2")).count();
        if count > MAX_OVERRIDE_TEMPLATES {
            return Err(OverrideError::TooMany { origin: origin.to_string(), count });
        }
        let mut overrides = Self { origin: origin.to_string(), ..Default::default() };
        for (key, text) in entries {
            if key == VALUES_KEY {
                overrides.values_yaml = Some(text);
            } else if key.ends_with(".j2") {
                overrides.templates.insert(key, text);
            } else {
                return Err(OverrideError::UnknownKey { origin: origin.to_string(), key });
            }
        }
        Ok(overrides)
    }

    pub fn from_config_map(config_map: &ConfigMap) -> Result<Self, OverrideError> {
        let origin = format!("ConfigMap {}/{}", config_map.namespace().unwrap_or_default(), config_map.name_any());
        Self::from_entries(&origin, config_map.data.clone().unwrap_or_default())
    }

    /// Every regular file in `dir`, named like the ConfigMap keys (`render --templates DIR`).
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut entries = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.is_file() {
                let name = path.file_name().expect("file name").to_string_lossy().to_string();
                entries.insert(name, std::fs::read_to_string(&path)?);
            }
        }
        Ok(Self::from_entries(&format!("directory {}", dir.display()), entries)?)
    }
}

/// The templates and values one DittoServer renders with.
#[derive(Clone, Debug)]
pub struct Effective {
    pub templates: TemplateSource,
    pub values: Values,
    /// Override sets in effect, in layering order.
    pub origins: Vec<String>,
    /// Why a per-CR override is not honoured, when it is not.
    pub ignored: Option<String>,
}

impl Effective {
    /// For the TemplatesReady condition.
    pub fn describe(&self) -> String {
        let mut text = if self.origins.is_empty() {
            "Using the embedded templates".to_string()
        } else {
            let names: Vec<&str> = self.templates.overrides().keys().map(String::as_str).collect();
            let what = if names.is_empty() { "values.yaml".to_string() } else { names.join(", ") };
            format!("Using overrides from {} ({what})", self.origins.join(", then "))
        };
        if let Some(ignored) = &self.ignored {
            text.push_str(&format!(". {ignored}"));
        }
        text
    }
}

/// Layers `sets` over the operator's templates and values.
pub fn layer(settings: &Settings, sets: &[Overrides]) -> Result<Effective, OverrideError> {
    let mut templates = settings.templates.overrides().clone();
    let mut values = settings.values_builder.clone();
    for set in sets {
        templates.extend(set.templates.clone());
        if let Some(text) = &set.values_yaml {
            values = values.layer_yaml(&format!("{} key {VALUES_KEY}", set.origin), text)?;
        }
    }
    Ok(Effective {
        templates: TemplateSource::with_overrides(templates),
        values: values.build()?,
        origins: sets.iter().map(|s| s.origin.clone()).collect(),
        ignored: None,
    })
}

/// Why overrides cannot be used for a DittoServer right now (nothing is applied meanwhile).
#[derive(Debug)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
}

/// Reads the override ConfigMaps that apply to `server` and layers them.
pub async fn resolve(
    reads: Reads<'_>,
    settings: &Settings,
    server: &DittoServer,
) -> Result<Result<Effective, Blocked>, kube::Error> {
    let mut sets = Vec::new();
    let (op_ns, op_name) = &settings.templates_configmap;
    if let Some(cm) = reads.get::<ConfigMap>(op_ns, op_name).await? {
        match Overrides::from_config_map(&cm) {
            Ok(set) => sets.push(set),
            Err(e) => return Ok(Err(Blocked { reason: "OverrideInvalid", message: e.to_string() })),
        }
    }
    let mut ignored = None;
    if let Some(reference) = server.spec.templates.as_ref().and_then(|t| t.config_map_ref.as_ref()) {
        if settings.allow_namespace_templates {
            let ns = server.namespace_or_default();
            match reads.get::<ConfigMap>(&ns, &reference.name).await? {
                Some(cm) => match Overrides::from_config_map(&cm) {
                    Ok(set) => sets.push(set),
                    Err(e) => return Ok(Err(Blocked { reason: "OverrideInvalid", message: e.to_string() })),
                },
                None => {
                    return Ok(Err(Blocked {
                        reason: "ConfigMapNotFound",
                        message: format!("spec.templates.configMapRef: ConfigMap {ns}/{} not found", reference.name),
                    }));
                }
            }
        } else {
            ignored = Some(format!(
                "spec.templates.configMapRef ({}) is ignored: the operator runs without --allow-namespace-templates",
                reference.name
            ));
        }
    }
    Ok(match layer(settings, &sets) {
        Ok(mut effective) => {
            effective.ignored = ignored;
            Ok(effective)
        }
        Err(e) => Err(Blocked { reason: "OverrideInvalid", message: e.to_string() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keys_sort_into_templates_and_values() {
        let set = Overrides::from_entries("t", entries(&[("a.yaml.j2", "x"), ("values.yaml", "replicas: 0")])).unwrap();
        assert_eq!(set.templates.keys().collect::<Vec<_>>(), ["a.yaml.j2"]);
        assert_eq!(set.values_yaml.as_deref(), Some("replicas: 0"));
        assert!(matches!(
            Overrides::from_entries("t", entries(&[("README", "x")])),
            Err(OverrideError::UnknownKey { .. })
        ));
    }

    #[test]
    fn an_oversized_set_is_refused_naming_its_origin() {
        let big = "#".repeat(MAX_OVERRIDE_BYTES);
        let err = Overrides::from_entries("ConfigMap ops/t", entries(&[("a.yaml.j2", &big)])).unwrap_err().to_string();
        assert!(err.starts_with("ConfigMap ops/t:") && err.contains("over the limit"), "{err}");
    }

    #[test]
    fn too_many_templates_are_refused_naming_their_origin() {
        let names: Vec<String> = (0..=MAX_OVERRIDE_TEMPLATES).map(|i| format!("t{i}.yaml.j2")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
        let err = Overrides::from_entries("ConfigMap ops/t", entries(&many)).unwrap_err().to_string();
        assert_eq!(err, "ConfigMap ops/t: 33 templates are over the limit of 32");
    }

    #[test]
    fn later_sets_win() {
        let settings = Settings::default();
        let a = Overrides::from_entries("A", entries(&[("x.j2", "a"), ("values.yaml", "image: {tag: v1}")])).unwrap();
        let b = Overrides::from_entries("B", entries(&[("x.j2", "b"), ("values.yaml", "image: {tag: v2}")])).unwrap();
        let effective = layer(&settings, &[a, b]).unwrap();
        assert_eq!(effective.templates.get("x.j2").as_deref(), Some("b"));
        assert_eq!(effective.values.image.tag, "v2");
        assert!(effective.describe().contains("A, then B"), "{}", effective.describe());
    }

    #[test]
    fn bad_values_name_the_configmap() {
        let settings = Settings::default();
        let a = Overrides::from_entries("ConfigMap ops/t", entries(&[("values.yaml", "ports: {apii: 1}")])).unwrap();
        let err = layer(&settings, &[a]).unwrap_err().to_string();
        assert!(err.contains("ConfigMap ops/t") && err.contains("apii"), "{err}");
    }
}
