//! The committed CRD is what the binary generates, and its shape is the one kubectl users rely on.

use dittofs_operator::crd;

#[test]
fn committed_crd_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds/dittoservers.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == crd::crd_yaml(),
        "deploy/crds/dittoservers.yaml is stale: run `cargo run -- crd > deploy/crds/dittoservers.yaml`"
    );
}

#[test]
fn identity_matches_the_earlier_operator() {
    let crd = crd::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("dittoservers.dittofs.dittofs.com"));
    let names = &crd.spec.names;
    assert_eq!(names.kind, "DittoServer");
    assert_eq!(names.plural, "dittoservers");
    let mut short = names.short_names.clone().unwrap();
    short.sort();
    assert_eq!(short, ["ditto", "dittofs"]);
    assert_eq!(names.categories.clone().unwrap(), ["all", "dittofs-operator"]);
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> =
        version.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Ready", "Phase", "Replicas", "NFS", "SMB", "Clients", "Age"]);
}

#[test]
fn every_cel_rule_names_a_field() {
    let yaml = crd::crd_yaml();
    let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let mut messages = Vec::new();
    collect_messages(&value, &mut messages);
    assert!(messages.len() >= 20, "found {} rules", messages.len());
    for m in messages {
        assert!(m.starts_with("spec.") || m.starts_with("metadata."), "rule message does not name a field: {m}");
    }
}

fn collect_messages(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(rules) = map.get("x-kubernetes-validations").and_then(|r| r.as_array()) {
                out.extend(rules.iter().filter_map(|r| r["message"].as_str().map(String::from)));
            }
            map.values().for_each(|v| collect_messages(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_messages(v, out)),
        _ => {}
    }
}

/// `kubectl explain` has something to say at every level: the object, and every field of the
/// spec and the status.
#[test]
fn every_field_has_a_description() {
    let value: serde_json::Value = serde_saphyr::from_str(&crd::crd_yaml()).unwrap();
    let schema = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let top = schema["description"].as_str().unwrap_or_default();
    assert!(!top.is_empty() && !top.contains("Auto-generated"), "the object's description: {top:?}");
    let mut undescribed = Vec::new();
    let mut fields = 0;
    undescribed_fields(schema, "", &mut undescribed, &mut fields);
    assert!(fields > 400, "found {fields} fields");
    assert!(undescribed.is_empty(), "fields without a description: {undescribed:?}");
}

fn undescribed_fields(schema: &serde_json::Value, path: &str, out: &mut Vec<String>, fields: &mut usize) {
    if let Some(properties) = schema["properties"].as_object() {
        for (name, field) in properties {
            let here = format!("{path}.{name}");
            *fields += 1;
            if field["description"].as_str().is_none_or(str::is_empty) {
                out.push(here.clone());
            }
            undescribed_fields(field, &here, out, fields);
        }
    }
    if schema["items"].is_object() {
        undescribed_fields(&schema["items"], &format!("{path}[]"), out, fields);
    }
}
