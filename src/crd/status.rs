//! `DittoServer` status: what the operator observed, in the shape `kubectl get/describe/wait` use.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator observed of the server: its phase, conditions, endpoints, database and what
/// DittoFS itself reports. Written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DittoServerStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Running`, `Stopped`, `Degraded` or `Deleting`: a summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The pods the StatefulSet wants (`spec.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The StatefulSet's Ready pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Checksum of the rendered config and the referenced Secrets' data (on the pod template too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Where clients reach the server, and who may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The control-plane database in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
    /// What DittoFS itself reports: the managed shares it exports and its adapters' live ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStatus>,
    /// `Ready`, `Available`, `Progressing`, `Degraded`, `ConfigReady`, `DatabaseReady`,
    /// `TemplatesReady`, `InSync` and `Serving`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Running,
    Stopped,
    Degraded,
    Deleting,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// `<name>-file.<namespace>.svc:<nfs port>` or the load balancer address once assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The DittoFS REST API inside the cluster: `<name>-api.<namespace>.svc:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Mount source of the first share over NFS, such as `demo-file.default.svc:/export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<String>,
    /// UNC path of the first share over SMB, such as `//demo-file.default.svc/export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smb: Option<String>,
    /// Who can reach NFS and SMB: what the file Service exposes, narrowed by the NetworkPolicies,
    /// such as `pods in namespace storage` or `LoadBalancer from 203.0.113.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    /// The spec's shares that DittoFS exports now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<String>,
    /// From `GET /api/v1/adapters` (`running`: listening and reported healthy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<AdapterStatus>,
    /// The spec's users that exist in DittoFS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// The spec's groups that exist in DittoFS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The spec's shares with a quota: the quota and what the share holds, as DittoFS reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// The share.
    pub share: String,
    /// The quota as DittoFS prints it, such as `10.00GiB`.
    pub quota: String,
    /// Bytes the share's files hold (the sum of their sizes).
    pub used_bytes: i64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterStatus {
    /// `nfs` or `smb`.
    #[serde(rename = "type")]
    pub adapter_type: String,
    /// The port DittoFS reports the adapter on.
    pub port: i32,
    /// Whether the adapter is turned on in DittoFS.
    pub enabled: bool,
    /// Listening and reported healthy.
    pub running: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// `sqlite`, `postgres` (external) or `percona`.
    pub kind: String,
    /// `host:port` of PostgreSQL; absent for SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The database was found ready when the configuration was rendered.
    pub ready: bool,
}

/// Conditions are a list-map keyed by `type` (the Kubernetes convention, so SSA clients merge
/// per type); the operator itself writes the whole list with a merge patch.
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}
