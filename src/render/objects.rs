//! Rendered YAML documents parsed into typed Kubernetes objects. A document that is not an
//! allowed kind, has a field its type does not know, or has a value of the wrong type is an
//! error naming the template and the line.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::RenderError;

/// Declares the kinds a template may produce: (variant, type, apiVersion, kind, apply rank).
/// Everything else, cluster-scoped kinds included, is refused when parsing.
macro_rules! managed_kinds {
    ($(($variant:ident, $ty:ty, $api_version:literal, $kind:literal, $rank:literal)),+ $(,)?) => {
        /// One object the operator manages, in a type the API server's schema matches.
        #[derive(Clone, Debug, PartialEq)]
        pub enum ManagedObject {
            $($variant(Box<$ty>),)+
        }

        /// `apiVersion` and `kind` of every kind a template may produce, in apply order.
        pub const ALLOWED_KINDS: &[(&str, &str)] = &[$(($api_version, $kind)),+];

        impl ManagedObject {
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => $kind,)+ }
            }

            pub fn api_version(&self) -> &'static str {
                match self { $(Self::$variant(_) => $api_version,)+ }
            }

            /// Apply order: configuration before what consumes it, the workload last.
            pub fn apply_rank(&self) -> u8 {
                match self { $(Self::$variant(_) => $rank,)+ }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self { $(Self::$variant(o) => &o.metadata,)+ }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Self::$variant(o) => &mut o.metadata,)+ }
            }

            pub fn to_json(&self) -> Value {
                match self { $(Self::$variant(o) => serde_json::to_value(o),)+ }.expect("typed objects serialize")
            }

            pub fn to_yaml(&self) -> String {
                match self { $(Self::$variant(o) => serde_saphyr::to_string(o),)+ }.expect("typed objects serialize to YAML")
            }

            /// Parses a document of a known kind; None for any other kind.
            fn parse(api_version: &str, kind: &str, value: &Value) -> Option<Result<Self, String>> {
                match (api_version, kind) {
                    $(($api_version, $kind) => Some(typed::<$ty>(value).map(|o| Self::$variant(Box::new(o)))),)+
                    _ => None,
                }
            }
        }
    };
}

managed_kinds! {
    (ConfigMap, ConfigMap, "v1", "ConfigMap", 1),
    (Secret, Secret, "v1", "Secret", 2),
    (Service, Service, "v1", "Service", 3),
    (NetworkPolicy, NetworkPolicy, "networking.k8s.io/v1", "NetworkPolicy", 3),
    (PodDisruptionBudget, PodDisruptionBudget, "policy/v1", "PodDisruptionBudget", 3),
    (StatefulSet, StatefulSet, "apps/v1", "StatefulSet", 4),
    // The database comes first. No Rust type exists for it: parsed as a generic object.
    (PerconaPGCluster, kube::api::DynamicObject, "pgv2.percona.com/v2", "PerconaPGCluster", 0),
    // Prometheus Operator; applied only where its CRD is installed.
    (ServiceMonitor, kube::api::DynamicObject, "monitoring.coreos.com/v1", "ServiceMonitor", 3),
}

/// Kinds defined by CustomResourceDefinitions that may be absent: (kind, CRD name).
pub const OPTIONAL_KINDS: &[(&str, &str)] = &[
    ("PerconaPGCluster", "perconapgclusters.pgv2.percona.com"),
    ("ServiceMonitor", "servicemonitors.monitoring.coreos.com"),
];

impl ManagedObject {
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// `Kind/name`, as kubectl prints it.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
}

/// Splits a rendered template into documents and parses each; returns them in template order.
pub fn parse_documents(template: &str, rendered: &str) -> Result<Vec<ManagedObject>, RenderError> {
    let mut objects = Vec::new();
    for (start_line, text) in split_documents(rendered) {
        if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            continue;
        }
        let fail = |line: usize, message: String| RenderError::Object { template: template.to_string(), line, message };
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| fail(start_line, format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let object = match ManagedObject::parse(api_version, kind, &value) {
            Some(parsed) => parsed.map_err(|m| fail(line_of(&text, &m, start_line), m))?,
            None => {
                let allowed: Vec<String> = ALLOWED_KINDS.iter().map(|(v, k)| format!("{k} ({v})")).collect();
                return Err(fail(
                    start_line,
                    format!(
                        "kind {kind:?} (apiVersion {api_version:?}) is not allowed; templates may produce {}",
                        allowed.join(", ")
                    ),
                ));
            }
        };
        objects.push(object);
    }
    Ok(objects)
}

/// Documents with the 1-based line in `rendered` where each starts.
fn split_documents(rendered: &str) -> Vec<(usize, String)> {
    let mut docs = vec![(1, String::new())];
    for (i, line) in rendered.lines().enumerate() {
        if line.trim_end() == "---" {
            docs.push((i + 2, String::new()));
        } else {
            let doc = &mut docs.last_mut().expect("one document").1;
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs
}

/// Parses into `K`, then rejects any field that `K` does not know (k8s-openapi ignores them).
fn typed<K: DeserializeOwned + Serialize>(value: &Value) -> Result<K, String> {
    let object: K =
        serde_path_to_error::deserialize(value.clone()).map_err(|e| format!("field {}: {}", e.path(), e.inner()))?;
    let round_trip = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    if let Some(path) = first_unknown_field(value, &round_trip, String::new()) {
        return Err(format!("field {path}: unknown field"));
    }
    Ok(object)
}

fn first_unknown_field(original: &Value, known: &Value, path: String) -> Option<String> {
    match (original, known) {
        (Value::Object(o), Value::Object(k)) => o.iter().find_map(|(key, value)| {
            let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            match k.get(key) {
                None if value.is_null() => None,
                None => Some(here),
                Some(known) => first_unknown_field(value, known, here),
            }
        }),
        (Value::Array(o), Value::Array(k)) => {
            o.iter().zip(k).enumerate().find_map(|(i, (o, k))| first_unknown_field(o, k, format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// Best effort: the line of the last path segment named in `message`, else the document start.
fn line_of(text: &str, message: &str, start_line: usize) -> usize {
    let key = message
        .strip_prefix("field ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|path| path.rsplit('.').next())
        .map(|k| k.split('[').next().unwrap_or(k).to_string());
    key.and_then(|key| {
        text.lines().position(|l| l.trim_start().trim_start_matches("- ").starts_with(&format!("{key}:")))
    })
    .map(|offset| start_line + offset)
    .unwrap_or(start_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labelz: {a: b}\n";
        let err = parse_documents("t.yaml.j2", doc).unwrap_err().to_string();
        assert!(err.contains("t.yaml.j2"), "{err}");
        assert!(err.contains("metadata.labelz"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let doc = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - port: eighty\n";
        let err = parse_documents("svc.yaml.j2", doc).unwrap_err().to_string();
        assert!(err.contains("spec.ports[0].port"), "{err}");
    }

    #[test]
    fn foreign_kind_is_refused() {
        let doc = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n";
        let err = parse_documents("evil.yaml.j2", doc).unwrap_err().to_string();
        assert!(err.contains("ClusterRole"), "{err}");
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let doc = "# nothing\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let objects = parse_documents("t", doc).unwrap();
        assert_eq!(objects.iter().map(ManagedObject::name).collect::<Vec<_>>(), ["a", "b"]);
    }
}
