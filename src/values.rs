//! Operator-level values: `values/defaults.yaml` (embedded) ← `--values` files ← `--set key=value`
//! ← the operator-wide override ConfigMap's `values.yaml` ← a DittoServer's own override
//! ConfigMap's `values.yaml` (see `overrides`). Merged as YAML trees, then read into typed
//! [`Values`] so a misspelt key is an error, not a silently ignored setting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements, SecurityContext};
use rust_embed::RustEmbed;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crd::ServiceType;

#[derive(RustEmbed)]
#[folder = "values/"]
struct EmbeddedValues;

#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("{source_name}: invalid YAML: {message}")]
    Yaml { source_name: String, message: String },
    #[error("{source_name}: {path}: {message}")]
    Field { source_name: String, path: String, message: String },
    #[error("--set {0}: expected key=value with a dotted key such as ports.api=8081")]
    BadSet(String),
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Values {
    pub image: ImageValues,
    pub replicas: i32,
    pub ports: PortValues,
    pub api_service: ApiServiceValues,
    pub file_service: FileServiceValues,
    pub smb: SmbValues,
    pub nfs: NfsValues,
    pub network_policy: NetworkPolicyValues,
    pub metrics: MetricsValues,
    pub storage: StorageValues,
    pub database: DatabaseValues,
    pub jwt: JwtValues,
    pub logging: LoggingValues,
    pub shutdown_timeout: String,
    pub grace_period: GracePeriodValues,
    pub probes: ProbeSet,
    pub resources: ResourceRequirements,
    pub pod_security_context: PodSecurityContext,
    pub security_context: SecurityContext,
    pub tmp_volume: TmpVolumeValues,
    pub percona: PerconaValues,
    pub wait_for_postgres: WaitForPostgresValues,
    pub runtime: RuntimeValues,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
}

/// Defaults of what the operator sets up through DittoFS's REST API.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeValues {
    pub operator_user: String,
    /// Percent of its claim the `fs` local store may fill (`max_size`), and of the metadata
    /// claim when it lives there (next to the metadata store).
    pub local_store_share_of_claim: u8,
    pub local_store_share_of_metadata_claim: u8,
    pub default_share: String,
    pub default_permission: String,
    pub metadata_store: String,
    pub metadata_store_type: String,
    pub local_store: String,
    pub local_store_type: String,
    pub remote_store: String,
    pub postgres_metadata_database: String,
    pub s3: S3Values,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Values {
    pub region: String,
    pub endpoint: String,
    pub access_key_id_key: String,
    pub secret_access_key_key: String,
    pub endpoint_key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageValues {
    pub repository: String,
    pub tag: String,
    pub pull_policy: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortValues {
    pub api: i32,
    pub nfs: i32,
    pub smb: i32,
    pub metrics: i32,
    pub portmapper: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServiceValues {
    #[serde(rename = "type")]
    pub service_type: ServiceType,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileServiceValues {
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub nfs_port: i32,
    pub smb_port: i32,
    pub portmapper_port: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyValues {
    pub enabled: bool,
    pub operator: OperatorPods,
}

/// The operator's pods, as a NetworkPolicy peer admitted to each server's API port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorPods {
    pub namespace: String,
    pub pod_labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmbValues {
    pub enabled: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NfsValues {
    pub portmapper: bool,
    pub udp: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsValues {
    pub enabled: bool,
    pub path: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageValues {
    pub access_mode: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseValues {
    pub sqlite: SqliteValues,
    pub postgres: PostgresValues,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqliteValues {
    pub path: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresValues {
    pub port: i32,
    pub sslmode: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtValues {
    pub access_token_duration: String,
    pub refresh_token_duration: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingValues {
    pub level: String,
    pub format: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GracePeriodValues {
    pub pre_stop_seconds: i64,
    pub shutdown_multiplier: i64,
    pub margin_seconds: i64,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeSet {
    pub startup: ProbeValues,
    pub liveness: ProbeValues,
    pub readiness: ProbeValues,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeValues {
    pub path: String,
    pub initial_delay_seconds: i32,
    pub period_seconds: i32,
    pub timeout_seconds: i32,
    pub failure_threshold: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TmpVolumeValues {
    pub size_limit: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerconaValues {
    pub cr_version: String,
    pub image: String,
    pub postgres_version: i32,
    pub replicas: i32,
    pub storage_size: String,
    pub database_name: String,
    pub backup: PerconaBackupValues,
}

/// Defaults of `spec.percona.backup` (the earlier operator's) and pgBackRest's image.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerconaBackupValues {
    pub image: String,
    pub region: String,
    pub full_schedule: String,
    pub incr_schedule: String,
    pub retention_days: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitForPostgresValues {
    pub image: String,
    pub timeout_seconds: i64,
    pub resources: ResourceRequirements,
}

/// A YAML tree being layered; turned into [`Values`] by [`ValuesBuilder::build`].
#[derive(Clone, Debug)]
pub struct ValuesBuilder {
    tree: Value,
    sources: Vec<String>,
}

impl Default for ValuesBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ValuesBuilder {
    /// Starts from the embedded `values/defaults.yaml`.
    pub fn new() -> Self {
        let file = EmbeddedValues::get("defaults.yaml").expect("values/defaults.yaml is embedded");
        let text = std::str::from_utf8(&file.data).expect("defaults.yaml is UTF-8");
        let tree = parse_yaml("values/defaults.yaml", text).expect("embedded defaults parse");
        Self { tree, sources: vec!["values/defaults.yaml".into()] }
    }

    /// Layers a YAML document over what is there (maps merge key by key; anything else replaces).
    pub fn layer_yaml(mut self, source_name: &str, text: &str) -> Result<Self, ValuesError> {
        let overlay = parse_yaml(source_name, text)?;
        if !overlay.is_null() && !overlay.is_object() {
            return Err(ValuesError::Field {
                source_name: source_name.into(),
                path: "(root)".into(),
                message: "values must be a mapping".into(),
            });
        }
        deep_merge(&mut self.tree, overlay);
        self.sources.push(source_name.into());
        // Check now, so the error names the file that introduced the problem.
        self.build_from(source_name)?;
        Ok(self)
    }

    /// Applies `key.path=value`; the value is read as a YAML scalar (`8081` is a number).
    pub fn set(mut self, assignment: &str) -> Result<Self, ValuesError> {
        let (key, raw) = assignment.split_once('=').ok_or_else(|| ValuesError::BadSet(assignment.into()))?;
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(ValuesError::BadSet(assignment.into()));
        }
        let value = parse_yaml(&format!("--set {key}"), raw)?;
        let mut node = &mut self.tree;
        for part in key.split('.') {
            if !node.is_object() {
                *node = Value::Object(Default::default());
            }
            node = node.as_object_mut().expect("object").entry(part).or_insert(Value::Null);
        }
        *node = value;
        self.build_from(&format!("--set {assignment}"))?;
        Ok(self)
    }

    pub fn build(&self) -> Result<Values, ValuesError> {
        self.build_from(self.sources.last().map(String::as_str).unwrap_or("values"))
    }

    fn build_from(&self, source_name: &str) -> Result<Values, ValuesError> {
        serde_path_to_error::deserialize(&self.tree).map_err(|e| ValuesError::Field {
            source_name: source_name.into(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

fn parse_yaml(source_name: &str, text: &str) -> Result<Value, ValuesError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str(text)
        .map_err(|e| ValuesError::Yaml { source_name: source_name.into(), message: e.to_string() })
}

fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                deep_merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (_, Value::Null) => {}
        (base, overlay) => *base = overlay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_pin_a_release() {
        let values = ValuesBuilder::new().build().unwrap();
        assert_eq!(values.image.repository, "marmos91c/dittofs");
        assert_ne!(values.image.tag, "latest");
        assert_eq!(values.ports.api, 8080);
        assert_eq!(values.ports.smb, 12445);
    }

    #[test]
    fn files_merge_map_by_map() {
        let values = ValuesBuilder::new()
            .layer_yaml("a.yaml", "ports: {api: 9000}\nlogging: {level: DEBUG}")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(values.ports.api, 9000);
        assert_eq!(values.ports.nfs, 12049, "sibling keys survive a partial override");
        assert_eq!(values.logging.level, "DEBUG");
        assert_eq!(values.logging.format, "json");
    }

    #[test]
    fn set_parses_scalars_and_wins_over_files() {
        let values = ValuesBuilder::new()
            .layer_yaml("a.yaml", "ports: {api: 9000}")
            .unwrap()
            .set("ports.api=9100")
            .unwrap()
            .set("image.tag=v0.29.1")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(values.ports.api, 9100);
        assert_eq!(values.image.tag, "v0.29.1");
    }

    #[test]
    fn unknown_key_names_the_path_and_source() {
        let err = ValuesBuilder::new().layer_yaml("ops.yaml", "ports: {apii: 1}").unwrap_err().to_string();
        assert!(err.contains("ops.yaml"), "{err}");
        assert!(err.contains("ports"), "{err}");
        assert!(err.contains("apii"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_path() {
        let err = ValuesBuilder::new().set("ports.api=eighty").unwrap_err().to_string();
        assert!(err.contains("ports.api"), "{err}");
    }

    #[test]
    fn malformed_set_is_rejected() {
        assert!(matches!(ValuesBuilder::new().set("noequals"), Err(ValuesError::BadSet(_))));
        assert!(matches!(ValuesBuilder::new().set("a..b=1"), Err(ValuesError::BadSet(_))));
    }
}
