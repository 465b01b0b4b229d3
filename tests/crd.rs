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
