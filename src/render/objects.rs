//! Rendered YAML documents parsed into typed Kubernetes objects. A document that is not an
//! allowed kind, has a field its type does not know, or has a value of the wrong type is an
//! error naming the template and the line.

use serde_json::Value;

use crate::kinds::Kind;
use crate::kinds::ManagedObject;

use super::RenderError;

/// Splits a rendered template into documents and parses each; returns them in template order.
pub fn parse_documents(template: &str, rendered: &str) -> Result<Vec<ManagedObject>, RenderError> {
    let mut objects = Vec::new();
    for (start_line, text) in split_documents(rendered) {
        if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            continue;
        }
        let fail = |line: usize, message: String| RenderError::Object { template: template.to_string(), line, message };
        // No source snippet in the error: the text may be a rendered Secret.
        let options = serde_saphyr::options! { with_snippet: false };
        let value: Value = serde_saphyr::from_str_with_options(&text, options)
            .map_err(|e| fail(start_line, format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let object = match Kind::of(api_version, kind) {
            Some(known) => ManagedObject::parse(known, &value).map_err(|m| fail(line_of(&text, &m, start_line), m))?,
            None => {
                let allowed: Vec<String> =
                    Kind::ALL.iter().map(|k| format!("{} ({})", k.name(), k.api_version())).collect();
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

    /// A broken Secret is reported by template, line and field, never by quoting its values.
    #[test]
    fn a_broken_secret_is_reported_without_its_values() {
        let unclosed = "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  password: \"hunter2-SECRET\n  other: [\n";
        let not_base64 = "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n  password: hunter2-SECRET!\n";
        let wrong_type =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  password: [hunter2-SECRET]\n";
        for doc in [unclosed, not_base64, wrong_type] {
            let err = parse_documents("secret.yaml.j2", doc).unwrap_err().to_string();
            assert!(err.contains("secret.yaml.j2"), "{err}");
            assert!(!err.contains("hunter2"), "the error quotes the Secret: {err}");
        }
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
