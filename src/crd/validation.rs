//! Admission validation added to the generated schema. Rules live in one table so a reader sees
//! every rejection the apiserver can make; each message names the field at fault.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::DittoServer;

/// A CEL rule placed at `path` (a dotted path below `spec`; "" = `spec`, "/" = the object root).
struct Rule {
    path: &'static str,
    rule: &'static str,
    message: &'static str,
    /// Field the rejection points at, relative to `path`.
    field_path: Option<&'static str>,
    reason: Option<&'static str>,
}

const fn rule(path: &'static str, rule: &'static str, message: &'static str) -> Rule {
    Rule { path, rule, message, field_path: None, reason: None }
}

const fn rule_at(path: &'static str, field_path: &'static str, rule: &'static str, message: &'static str) -> Rule {
    Rule { path, rule, message, field_path: Some(field_path), reason: None }
}

const fn immutable(path: &'static str, field_path: &'static str, rule: &'static str, message: &'static str) -> Rule {
    Rule { path, rule, message, field_path: Some(field_path), reason: Some("FieldValueForbidden") }
}

// Effective ports as CEL expressions; the literals are the shipped defaults (values/defaults.yaml).
macro_rules! api_port {
    () => {
        "(has(self.controlPlane) && has(self.controlPlane.port) ? self.controlPlane.port : 8080)"
    };
}
macro_rules! nfs_port {
    () => {
        "(has(self.nfsPort) ? self.nfsPort : 12049)"
    };
}
macro_rules! smb_port {
    () => {
        "(has(self.smb) && has(self.smb.port) ? self.smb.port : 12445)"
    };
}
macro_rules! metrics_port {
    () => {
        "(has(self.metrics) && has(self.metrics.port) ? self.metrics.port : 9090)"
    };
}
macro_rules! smb_off {
    () => {
        "(has(self.smb) && has(self.smb.enabled) && !self.smb.enabled)"
    };
}
macro_rules! metrics_on {
    () => {
        "(has(self.metrics) && has(self.metrics.enabled) && self.metrics.enabled)"
    };
}
macro_rules! positive_quantity {
    () => {
        "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))"
    };
}
macro_rules! positive_duration {
    () => {
        "self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')"
    };
}
macro_rules! same_optional {
    ($f:literal) => {
        concat!(
            "has(self.",
            $f,
            ") == has(oldSelf.",
            $f,
            ") && (!has(self.",
            $f,
            ") || self.",
            $f,
            " == oldSelf.",
            $f,
            ")"
        )
    };
}

const RULES: &[Rule] = &[
    // Names derived from the CR (`<name>-headless`, `<name>-postgres-pguser-…`) must stay valid DNS labels.
    rule(
        "/",
        "self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must be at most 40 characters of lower-case letters, digits and '-', starting with a letter (it prefixes Service and volume names)",
    ),
    // Ports the pod listens on must not collide.
    rule_at(
        "",
        ".nfsPort",
        concat!(nfs_port!(), " != ", api_port!()),
        "spec.nfsPort must differ from spec.controlPlane.port (default 8080)",
    ),
    rule_at(
        "",
        ".smb.port",
        concat!(smb_off!(), " || ", smb_port!(), " != ", api_port!()),
        "spec.smb.port must differ from spec.controlPlane.port (default 8080)",
    ),
    rule_at(
        "",
        ".smb.port",
        concat!(smb_off!(), " || ", smb_port!(), " != ", nfs_port!()),
        "spec.smb.port must differ from spec.nfsPort (default 12049)",
    ),
    rule_at(
        "",
        ".metrics.port",
        concat!(
            "!",
            metrics_on!(),
            " || (",
            metrics_port!(),
            " != ",
            api_port!(),
            " && ",
            metrics_port!(),
            " != ",
            nfs_port!(),
            ")"
        ),
        "spec.metrics.port must differ from spec.controlPlane.port and spec.nfsPort",
    ),
    rule_at(
        "",
        ".metrics.port",
        concat!("!", metrics_on!(), " || ", smb_off!(), " || ", metrics_port!(), " != ", smb_port!()),
        "spec.metrics.port must differ from spec.smb.port (default 12445)",
    ),
    rule_at(
        "",
        ".adapterServices.smbPort",
        concat!(
            "!has(self.adapterServices) || ",
            smb_off!(),
            " || (has(self.adapterServices.nfsPort) ? self.adapterServices.nfsPort : 2049) != (has(self.adapterServices.smbPort) ? self.adapterServices.smbPort : 445)"
        ),
        "spec.adapterServices.smbPort must differ from spec.adapterServices.nfsPort",
    ),
    // One PostgreSQL source at most.
    rule_at(
        "",
        ".database",
        "[has(self.database) && has(self.database.postgresSecretRef), has(self.database) && has(self.database.percona), has(self.percona) && has(self.percona.enabled) && self.percona.enabled].filter(x, x).size() <= 1",
        "spec.database.postgresSecretRef, spec.database.percona and spec.percona.enabled are mutually exclusive: choose one PostgreSQL source",
    ),
    rule_at(
        "",
        ".database.type",
        "!(has(self.database) && has(self.database.type) && self.database.type == 'sqlite' && (has(self.database.postgresSecretRef) || has(self.database.percona) || (has(self.percona) && has(self.percona.enabled) && self.percona.enabled)))",
        "spec.database.type is sqlite but a PostgreSQL source is set; remove spec.database.type or set it to postgres",
    ),
    rule_at(
        "",
        ".database.type",
        "!(has(self.database) && has(self.database.type) && self.database.type == 'postgres') || has(self.database.postgresSecretRef) || has(self.database.percona) || (has(self.percona) && has(self.percona.enabled) && self.percona.enabled)",
        "spec.database.type postgres needs spec.database.postgresSecretRef, spec.database.percona or spec.percona.enabled",
    ),
    // Sizes.
    rule(
        "storage.metadataSize",
        positive_quantity!(),
        "spec.storage.metadataSize must be a positive quantity such as 10Gi",
    ),
    rule(
        "storage.contentSize",
        positive_quantity!(),
        "spec.storage.contentSize must be a positive quantity such as 100Gi",
    ),
    rule("storage.cacheSize", positive_quantity!(), "spec.storage.cacheSize must be a positive quantity such as 5Gi"),
    rule(
        "storage.controlPlaneSize",
        positive_quantity!(),
        "spec.storage.controlPlaneSize must be a positive quantity such as 1Gi",
    ),
    rule(
        "percona.storageSize",
        positive_quantity!(),
        "spec.percona.storageSize must be a positive quantity such as 10Gi",
    ),
    // Volume claims of a StatefulSet cannot change: reject the edit instead of failing every reconcile.
    immutable(
        "storage",
        ".metadataSize",
        "self.metadataSize == oldSelf.metadataSize",
        "spec.storage.metadataSize is immutable: it sizes an existing volume claim",
    ),
    immutable(
        "storage",
        ".controlPlaneSize",
        "self.controlPlaneSize == oldSelf.controlPlaneSize",
        "spec.storage.controlPlaneSize is immutable: it sizes an existing volume claim",
    ),
    immutable(
        "storage",
        ".contentSize",
        same_optional!("contentSize"),
        "spec.storage.contentSize is immutable: it cannot be added, removed or changed once the server exists",
    ),
    immutable(
        "storage",
        ".cacheSize",
        same_optional!("cacheSize"),
        "spec.storage.cacheSize is immutable: it cannot be added, removed or changed once the server exists",
    ),
    immutable(
        "storage",
        ".storageClassName",
        same_optional!("storageClassName"),
        "spec.storage.storageClassName is immutable: it cannot be added, removed or changed once the server exists",
    ),
    // Durations parse the way DittoFS parses them (Go durations).
    rule("shutdownTimeout", positive_duration!(), "spec.shutdownTimeout must be a positive Go duration such as 30s"),
    rule(
        "identity.jwt.accessTokenDuration",
        positive_duration!(),
        "spec.identity.jwt.accessTokenDuration must be a positive Go duration such as 15m",
    ),
    rule(
        "identity.jwt.refreshTokenDuration",
        positive_duration!(),
        "spec.identity.jwt.refreshTokenDuration must be a positive Go duration such as 168h",
    ),
    rule("logging.output", "self == 'stdout'", "spec.logging.output: only stdout is supported in a pod"),
    rule("image", "self.size() > 0 && !self.contains(' ')", "spec.image must be a non-empty image reference"),
];

/// Size limits keep CEL cost estimates bounded (unbounded strings can exceed the budget).
const MAX_LENGTHS: &[(&str, u64)] = &[
    ("storage.metadataSize", 32),
    ("storage.contentSize", 32),
    ("storage.cacheSize", 32),
    ("storage.controlPlaneSize", 32),
    ("storage.storageClassName", 253),
    ("percona.storageSize", 32),
    ("shutdownTimeout", 32),
    ("identity.jwt.accessTokenDuration", 32),
    ("identity.jwt.refreshTokenDuration", 32),
    ("logging.output", 64),
    ("image", 512),
];

/// The CRD as installed: generated schema plus the admission rules above.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(DittoServer::crd()).expect("CRD serializes");
    let root = &mut value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    // Lower-case log levels were accepted by the earlier operator; DittoFS ignores case.
    *schema_at(root, "logging.level").get_mut("enum").expect("level enum") =
        json!(["DEBUG", "INFO", "WARN", "ERROR", "debug", "info", "warn", "error"]);
    for (path, max) in MAX_LENGTHS {
        schema_at(root, path).insert("maxLength".into(), json!(max));
    }
    for r in RULES {
        let mut entry = json!({ "rule": r.rule, "message": r.message });
        if let Some(field_path) = r.field_path {
            entry["fieldPath"] = json!(field_path);
        }
        if let Some(reason) = r.reason {
            entry["reason"] = json!(reason);
        }
        let target = if r.path == "/" { root.as_object_mut().expect("root") } else { schema_at(root, r.path) };
        let list = target.entry("x-kubernetes-validations").or_insert_with(|| json!([]));
        list.as_array_mut().expect("validations list").push(entry);
    }
    serde_json::from_value(value).expect("CRD with rules deserializes")
}

/// The CRD as committed under `deploy/crds/`.
pub fn crd_yaml() -> String {
    let body = serde_saphyr::to_string(&crd()).expect("CRD serializes to YAML");
    format!("# Generated by `dittofs-operator crd`; do not edit.\n{body}")
}

/// The schema object of a field below `spec` ("" = spec itself).
fn schema_at<'a>(root: &'a mut Value, path: &str) -> &'a mut serde_json::Map<String, Value> {
    let mut node = &mut root["properties"]["spec"];
    for part in path.split('.').filter(|p| !p.is_empty()) {
        node = node
            .get_mut("properties")
            .and_then(|p| p.get_mut(part))
            .unwrap_or_else(|| panic!("CRD schema has no field spec.{path}"));
    }
    node.as_object_mut().unwrap_or_else(|| panic!("spec.{path} is not an object schema"))
}
