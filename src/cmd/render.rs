//! Reading a CR file for `render`: one DittoServer, plus any Secrets that stand in for the
//! cluster's (so a CR that references a PostgreSQL Secret can be rendered offline).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde_json::Value;

use crate::crd::DittoServer;
use crate::decide::{self, Cause, Decision, Hold, Mode};
use crate::discover::SecretsByName;
use crate::gather::Gathered;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

pub struct RenderInput {
    pub server: DittoServer,
    pub secrets: SecretsByName,
    /// PerconaPGClusters by name, standing in for the cluster's.
    pub percona: std::collections::BTreeMap<String, Value>,
}

pub fn parse(file: &str, text: &str) -> Result<RenderInput, InputError> {
    let fail = |message: String| InputError::Invalid { file: file.to_string(), message };
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| fail(format!("invalid YAML: {e}")))?;
    let mut server = None;
    let mut secrets = SecretsByName::new();
    let mut percona = std::collections::BTreeMap::new();
    for doc in documents.into_iter().filter(|d| !d.is_null()) {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "DittoServer" => {
                if server.is_some() {
                    return Err(fail("more than one DittoServer; render takes one".into()));
                }
                let cr: DittoServer =
                    serde_path_to_error::deserialize(&doc).map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?;
                // The types accept unknown fields (a newer CR must not wedge the watcher after a
                // rollback); a file is checked as strictly as `kubectl apply` would.
                let known = serde_json::to_value(&cr).expect("DittoServer serializes");
                if let Some(path) = crate::kinds::first_unknown_field(&doc, &known, String::new()) {
                    return Err(fail(format!("{path}: unknown field")));
                }
                server = Some(cr);
            }
            "Secret" => {
                let secret: Secret = serde_path_to_error::deserialize(&doc)
                    .map_err(|e| fail(format!("Secret {}: {}", e.path(), e.inner())))?;
                secrets.insert(secret.name_any(), secret);
            }
            "PerconaPGCluster" => {
                let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
                percona.insert(name, doc);
            }
            other => {
                return Err(fail(format!(
                    "unexpected kind {other:?}: expected a DittoServer and optionally Secrets and PerconaPGClusters"
                )));
            }
        }
    }
    let server = server.ok_or_else(|| fail("no DittoServer found".into()))?;
    validate(&server).map_err(fail)?;
    Ok(RenderInput { server, secrets, percona })
}

/// The admission checks the apiserver would make that rendering does not already make.
fn validate(server: &DittoServer) -> Result<(), String> {
    if server.metadata.name.as_deref().unwrap_or_default().is_empty() {
        return Err("metadata.name: required".into());
    }
    if let Some(r) = server.spec.replicas
        && !(0..=1).contains(&r)
    {
        return Err(format!("spec.replicas: must be 0 or 1, got {r}"));
    }
    Ok(())
}

/// `render`: one CR file, operator values and optional overrides → the manifests, no cluster.
/// Decided as a pass would be ([`Mode::Preview`]), so what holds the operator back fails here.
pub fn render_offline(
    file: &str,
    text: &str,
    values: crate::values::ValuesBuilder,
    sets: &[crate::overrides::Overrides],
) -> anyhow::Result<crate::render::Rendered> {
    let input = parse(file, text)?;
    let settings = crate::settings::Settings { values_builder: values, ..Default::default() };
    let effective = crate::overrides::layer(&settings, sets)?;
    let gathered = Gathered::from_file(&input.server, &input.secrets, &input.percona, effective);
    // DatabaseOnly: what the operator applies first for a cluster it creates, the cluster alone
    // (the renderer renders only it while the connection is unknown).
    let (effective, discovered) = match decide::decide(&input.server, &gathered, Mode::Preview) {
        Decision::Hold(hold) => return Err(held(file, &hold)),
        Decision::DatabaseOnly { effective, discovered, .. } | Decision::Apply { effective, discovered, .. } => {
            (effective, discovered)
        }
    };
    crate::render::Renderer::new(&effective.templates)
        .render(&input.server, &effective.values, &discovered)
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))
}

/// Why `file` cannot be rendered, in the words of what holds the pass back.
fn held(file: &str, hold: &Hold) -> anyhow::Error {
    match hold.cause {
        Cause::Templates => anyhow::anyhow!("template overrides ({}): {}", hold.reason, hold.message),
        Cause::Database => anyhow::anyhow!("{file}: database not ready ({}): {}", hold.reason, hold.message),
        _ => anyhow::anyhow!("{file}: {}", hold.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_field_names_file_and_field() {
        let err = parse(
            "cr.yaml",
            "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: a}\nspec:\n  storage: {}\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("cr.yaml: spec.storage"), "{err}");
        assert!(err.contains("metadataSize"), "{err}");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let err = parse(
            "cr.yaml",
            "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: a}\nspec:\n  storage: {metadataSize: 1Gi}\n  s3: {bucket: x}\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("s3"), "{err}");
    }

    #[test]
    fn secrets_come_along() {
        let input = parse(
            "cr.yaml",
            "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: a}\nspec:\n  storage: {metadataSize: 1Gi}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: pg}\nstringData: {host: db}\n",
        )
        .ok()
        .unwrap();
        assert!(input.secrets.contains_key("pg"));
    }
}
