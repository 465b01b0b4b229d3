//! What would change: live object vs. the server's dry-run of our apply, both normalised, as
//! changed field paths and a unified diff. Secret values are masked the way `kubectl diff`
//! masks them; the masked text is a [`MaskedDiff`], which nothing can turn back into an object.

use serde_json::{Map, Value};
use similar::TextDiff;

/// What happens to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Prune,
    Unchanged,
}

/// Unified diff text with Secret values masked. Display-only: there is deliberately no way to
/// get an object (or the unmasked values) back out of it, so it can never be applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskedDiff(String);

impl MaskedDiff {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for MaskedDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObjectDiff {
    /// `Kind/name`.
    pub reference: String,
    /// kubectl's file naming: `apps.v1.StatefulSet.<namespace>.<name>`.
    pub file_name: String,
    pub action: Action,
    /// Leaf field paths that differ, e.g. `spec.template.spec.containers[0].image`.
    pub paths: Vec<String>,
    pub text: MaskedDiff,
}

/// Fields the server owns or that say nothing about the desired state.
pub fn normalize(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            for key in ["managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink"] {
                meta.remove(key);
            }
            if meta.get("annotations").is_some_and(|a| a.as_object().is_some_and(Map::is_empty)) {
                meta.remove("annotations");
            }
        }
    }
    v
}

fn is_secret(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Secret") && v.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// Masks Secret values like `kubectl diff`: `***` where a key is the same on both sides,
/// `*** (before)` / `*** (after)` where it differs.
pub fn mask_secrets(secret: bool, live: Option<&Value>, merged: Option<&Value>) -> (Option<Value>, Option<Value>) {
    let mut live = live.cloned();
    let mut merged = merged.cloned();
    let secret = secret || live.as_ref().is_some_and(is_secret) || merged.as_ref().is_some_and(is_secret);
    if !secret {
        return (live, merged);
    }
    let values = |v: &Option<Value>| -> Map<String, Value> {
        let mut out = Map::new();
        for field in ["data", "stringData"] {
            if let Some(Value::Object(m)) = v.as_ref().and_then(|v| v.get(field)) {
                out.extend(m.clone());
            }
        }
        out
    };
    let (before, after) = (values(&live), values(&merged));
    let mask = |side: &mut Option<Value>, own: &Map<String, Value>, other: &Map<String, Value>, label: &str| {
        if let Some(Value::Object(obj)) = side.as_mut() {
            for field in ["data", "stringData"] {
                if let Some(Value::Object(m)) = obj.get_mut(field) {
                    for (key, value) in m.iter_mut() {
                        let same = other.get(key) == own.get(key);
                        *value = Value::String(if same { "***".into() } else { format!("*** ({label})") });
                    }
                }
            }
        }
    };
    mask(&mut live, &before, &after, "before");
    mask(&mut merged, &after, &before, "after");
    (live, merged)
}

/// Compares a live object (None = absent) with the merged result of applying ours
/// (None = it would be deleted).
pub fn compare(reference: &str, file_name: &str, live: Option<&Value>, merged: Option<&Value>) -> ObjectDiff {
    let live = live.map(normalize);
    let merged = merged.map(normalize);
    let action = match (&live, &merged) {
        (None, Some(_)) => Action::Create,
        (Some(_), None) => Action::Prune,
        (Some(a), Some(b)) if a == b => Action::Unchanged,
        (Some(_), Some(_)) => Action::Update,
        (None, None) => Action::Unchanged,
    };
    let mut paths = Vec::new();
    if action == Action::Update {
        changed_paths(live.as_ref().unwrap(), merged.as_ref().unwrap(), String::new(), &mut paths);
    }
    let text = if action == Action::Unchanged {
        MaskedDiff::default()
    } else {
        // The reference decides, not the body: list results carry no apiVersion/kind.
        let (before, after) = mask_secrets(reference.starts_with("Secret/"), live.as_ref(), merged.as_ref());
        unified(file_name, before.as_ref(), after.as_ref())
    };
    ObjectDiff { reference: reference.into(), file_name: file_name.into(), action, paths, text }
}

fn to_yaml(v: Option<&Value>) -> String {
    v.map(|v| serde_saphyr::to_string(v).expect("JSON values serialize to YAML")).unwrap_or_default()
}

fn unified(file_name: &str, before: Option<&Value>, after: Option<&Value>) -> MaskedDiff {
    let (old, new) = (to_yaml(before), to_yaml(after));
    let body = TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("LIVE/{file_name}"), &format!("MERGED/{file_name}"))
        .to_string();
    MaskedDiff(format!("diff -u -N LIVE/{file_name} MERGED/{file_name}\n{body}"))
}

/// Leaf paths where `a` and `b` differ, in document order.
pub fn changed_paths(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    let join = |key: &str| {
        if key.contains(['.', '/']) {
            format!("{path}[{key:?}]")
        } else if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => changed_paths(p, q, join(key), out),
                    _ => out.push(join(key)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                changed_paths(p, q, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(if path.is_empty() { "(root)".into() } else { path }),
        _ => {}
    }
}

/// `apps.v1.StatefulSet.ns.name`, the way kubectl names diff files.
pub fn file_name(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    format!("{}.{kind}.{namespace}.{name}", api_version.replace('/', "."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_fields_are_not_differences() {
        let live = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "5", "uid": "u", "managedFields": [1]}, "data": {"k": "v"}});
        let merged =
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "6"}, "data": {"k": "v"}});
        assert_eq!(compare("ConfigMap/a", "v1.ConfigMap.ns.a", Some(&live), Some(&merged)).action, Action::Unchanged);
    }

    #[test]
    fn image_change_shows_exactly_its_path_and_lines() {
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "x:1"}]}}}});
        let merged = json!({"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "x:2"}]}}}});
        let d = compare("StatefulSet/a", "f", Some(&live), Some(&merged));
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.paths, ["spec.template.spec.containers[0].image"]);
        let changed: Vec<&str> = d
            .text
            .as_str()
            .lines()
            .filter(|l| (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++"))
            .collect();
        assert_eq!(changed, ["-      - image: x:1", "+      - image: x:2"]);
    }

    #[test]
    fn secret_values_never_appear() {
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "c2FtZQ==", "b": "b2xk"}});
        let merged = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "c2FtZQ==", "b": "bmV3"}});
        let d = compare("Secret/s", "v1.Secret.ns.s", Some(&live), Some(&merged));
        let text = d.text.to_string();
        for secret in ["c2FtZQ==", "b2xk", "bmV3"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("*** (before)") && text.contains("*** (after)"), "{text}");
        assert_eq!(d.paths, ["data.b"], "paths name the key, never the value");
        let created = compare(
            "Secret/s",
            "v1.Secret.ns.s",
            None,
            Some(&json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"p": "hunter2"}})),
        );
        assert!(!created.text.to_string().contains("hunter2"));
        // A Secret from a list call has no apiVersion/kind: still masked.
        let listed = compare(
            "Secret/s",
            "v1.Secret.ns.s",
            Some(&json!({"metadata": {"name": "s"}, "data": {"t": "aHVudGVy"}})),
            None,
        );
        assert!(!listed.text.to_string().contains("aHVudGVy"), "{}", listed.text);
    }

    #[test]
    fn create_and_prune_show_the_whole_object() {
        let obj = json!({"kind": "Service", "metadata": {"name": "m"}, "spec": {"type": "ClusterIP"}});
        let created = compare("Service/m", "v1.Service.ns.m", None, Some(&obj));
        assert_eq!(created.action, Action::Create);
        assert!(created.text.as_str().contains("+  type: ClusterIP"), "{}", created.text);
        let pruned = compare("Service/m", "v1.Service.ns.m", Some(&obj), None);
        assert_eq!(pruned.action, Action::Prune);
        assert!(pruned.text.as_str().contains("-  type: ClusterIP"));
    }
}
