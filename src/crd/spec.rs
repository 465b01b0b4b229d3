//! `DittoServer` spec. Field names follow the earlier Go operator wherever the meaning is the
//! same, so its users' CRs keep working. Defaults live in `values/defaults.yaml`, not here:
//! an unset field means "the operator's default".

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::DittoServerStatus;

/// The server wanted: image, storage, database, identity, adapters, shares, and who may reach them.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "dittofs.dittofs.com",
    version = "v1alpha1",
    kind = "DittoServer",
    plural = "dittoservers",
    singular = "dittoserver",
    shortname = "dittofs",
    shortname = "ditto",
    category = "all",
    category = "dittofs-operator",
    doc = "A DittoFS file server (NFS and SMB) that the operator deploys and runs: its pod, volumes, Services, configuration, and the adapters, stores and shares it serves.",
    namespaced,
    status = "DittoServerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas","description":"Ready replicas"}"#,
    printcolumn = r#"{"name":"NFS","type":"string","jsonPath":".status.endpoints.nfs","description":"mount source of the first share (NFS)"}"#,
    printcolumn = r#"{"name":"SMB","type":"string","jsonPath":".status.endpoints.smb","priority":1,"description":"UNC path of the first share (SMB)"}"#,
    printcolumn = r#"{"name":"Clients","type":"string","jsonPath":".status.endpoints.clients","description":"who can reach NFS and SMB"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DittoServerSpec {
    /// DittoFS container image. Default: the release pinned in the operator's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull policy of the DittoFS image. Default IfNotPresent (values `image.pullPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Secrets for pulling the DittoFS image from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// 0 stops the server, 1 runs it; DittoFS is single-instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: Option<i32>,
    /// The volume claims (sizes immutable once set): `metadataSize` is required.
    pub storage: StorageSpec,
    /// The control-plane database: SQLite on the controlplane claim (default), an external PostgreSQL, or a Percona cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Box<DatabaseSpec>>,
    /// A PerconaPGCluster `<name>-postgres` created and owned by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percona: Option<Box<PerconaSpec>>,
    /// DittoFS REST API: its port and TLS (HTTPS by default, with a certificate the operator generates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<Box<ControlPlaneSpec>>,
    /// NFS port inside the pod. Default 12049.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub nfs_port: Option<i32>,
    /// The SMB adapter: on by default, on `port` in the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smb: Option<Box<SmbSpec>>,
    /// The REST API Service `<name>-api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Box<ApiServiceSpec>>,
    /// The NFS/SMB Service `<name>-file`. ClusterIP unless `type` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_services: Option<Box<FileServiceSpec>>,
    /// Who may reach the server's pod: the NetworkPolicies `<name>-baseline` (the API port from
    /// the operator's pods only) and `<name>-adapter-nfs`/`-smb` (the file ports from
    /// `fileClients`). On by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<Box<NetworkPolicySpec>>,
    /// The JWT signing key, the bootstrap admin password, LDAP and Kerberos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Box<IdentitySpec>>,
    /// DittoFS's Prometheus metrics, a `<name>-metrics` Service and optionally a ServiceMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Box<MetricsSpec>>,
    /// DittoFS log level and format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Box<LoggingSpec>>,
    /// DittoFS `shutdown_timeout` (a Go duration such as `30s`); the pod's grace period derives from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<String>,
    /// Overrides the grace period derived from `shutdownTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Box<ResourceRequirements>>,
    /// Pod nodeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Box<Affinity>>,
    /// Pod priorityClassName; `system-node-critical` and `system-cluster-critical` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Annotations added to the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    /// Labels added to the pod template (the operator's own labels win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Container security context, merged over the operator's hardened defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Box<SecurityContext>>,
    /// Pod security context; replaces the operator's default when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<Box<PodSecurityContext>>,
    /// Per-CR template overrides (honoured only when the operator allows namespace templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Box<TemplatesSpec>>,
    /// Earlier Go operator only; no effect on DittoFS v0.29 (reported on the CR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Box<LegacyCacheSpec>>,
    /// The shares DittoFS exports over NFS and SMB, set up through its REST API.
    /// Default: one read-write share `/export`. Only these shares are managed: removing one
    /// from the list leaves it (and its files) on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "shares_schema")]
    pub shares: Option<Vec<ShareSpec>>,
    /// The stores the shares use. Default: a `badger` metadata store on the metadata claim and
    /// an `fs` local block store on the content claim (or the cache claim, else the metadata claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<Box<StoresSpec>>,
    /// A remote S3 block store (Cubbit DS3 by default) that every share uses unless it says
    /// `remote: false`; the local block store becomes its cache tier. Keys come only from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Scheduled snapshots of a share (one policy per share), set through DittoFS's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "snapshot_policies_schema")]
    pub snapshot_policies: Option<Vec<SnapshotPolicySpec>>,
    /// Earlier Go operator only (it polled the adapters' ports): the runtime step reads them on
    /// every pass, so this has no effect (reported on the CR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_discovery: Option<Box<AdapterDiscoverySpec>>,
    /// DittoFS accounts that clients log in with (SMB) or are known by their uid (NFS), made
    /// through its REST API with the password from a Secret. A rotated Secret sets the new
    /// password. Only these accounts are managed: removing one from the list leaves it on the
    /// server (`deleteUsers` deletes it). The bootstrap admin and the operator's own account
    /// cannot be declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "users_schema")]
    pub users: Option<Vec<UserSpec>>,
    /// DittoFS groups, for share permissions given to many users at once. Removing one from
    /// the list leaves it on the server (`deleteGroups` deletes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "groups_schema")]
    pub groups: Option<Vec<GroupSpec>>,
    /// Accounts to delete from DittoFS, by name: the only way the operator deletes a user.
    /// A name may not also be in `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub delete_users: Option<Vec<String>>,
    /// Groups to delete from DittoFS, by name. A name may not also be in `groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub delete_groups: Option<Vec<String>>,
    /// NFS adapter settings: the versions offered, and the portmapper (port 111) and UDP that
    /// clients without a port option need. Changed later, the NFS adapter restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<Box<NfsSpec>>,
}

/// A DittoFS account.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// Login name (SMB `-U name`).
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"))]
    pub name: String,
    /// The Secret entry holding the password (key default `password`). A new value is set
    /// on the account at the next pass.
    pub password_secret_ref: PasswordSecretRef,
    /// The Unix uid NFS clients present for this user (AUTH_SYS): a request with it gets this
    /// user's permissions. Unset: the account is for SMB only. 0 needs `allowRoot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967294u32))]
    pub uid: Option<i64>,
    /// The user's primary Unix gid. 0 needs `allowRoot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967294u32))]
    pub gid: Option<i64>,
    /// Groups of `spec.groups` the user belongs to (membership is set to exactly these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub groups: Option<Vec<String>>,
    /// `user` (default): file access only. `operator`: may also read the server's adapters
    /// through the API. Admin accounts are not declared here: DittoFS makes an admin change
    /// the password it was given, which a password kept in a Secret cannot follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<UserRole>,
    /// A disabled account cannot log in. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Allows uid or gid 0 (root) for this account. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_root: Option<bool>,
}

/// Where a user's password is: an entry of a Secret in the DittoServer's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretRef {
    /// The Secret's name.
    pub name: String,
    /// The entry. Default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    User,
    Operator,
}

/// A DittoFS group.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSpec {
    /// The group's name, as `spec.users[].groups` and share permissions name it.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"))]
    pub name: String,
    /// The Unix gid NFS clients present for members. Must not be 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967294u32))]
    pub gid: Option<i64>,
}

fn users_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_map(generator.subschema_for::<Vec<UserSpec>>(), "name", 64)
}

fn groups_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_map(generator.subschema_for::<Vec<GroupSpec>>(), "name", 64)
}

/// A list whose items are keyed by `key`: the apiserver refuses two items with the same key.
fn list_map(mut schema: schemars::Schema, key: &str, max_items: u32) -> schemars::Schema {
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert("x-kubernetes-list-map-keys".into(), serde_json::json!([key]));
    obj.insert("maxItems".into(), max_items.into());
    schema
}

/// NFS adapter settings, sent to DittoFS's settings endpoint.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NfsSpec {
    /// Lowest NFS version offered: `3` (default), `4.0` or `4.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<NfsVersion>,
    /// Highest NFS version offered: `3`, `4.0` or `4.1` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<NfsVersion>,
    /// DittoFS's portmapper on pod port 10111, Service port 111 (TCP and UDP): clients that
    /// give no port (`mount -t nfs host:/export`, `nfs://host/export`, `rpcinfo`) find NFS
    /// through it. Default true, as the earlier operator did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portmapper: Option<bool>,
    /// MOUNT and the lock manager (NLM, NSM) over UDP on the NFS port, for NFSv3 locking from
    /// macOS and BSD clients. Default true, as the earlier operator did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum NfsVersion {
    #[serde(rename = "3")]
    V3,
    #[serde(rename = "4.0")]
    V40,
    #[serde(rename = "4.1")]
    V41,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterDiscoverySpec {
    /// Earlier Go operator only; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPolicySpec {
    /// A share of `spec.shares` (`/export` or `export`).
    #[schemars(regex(pattern = r"^/?[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"))]
    pub share: String,
    /// How often: a Go duration (`6h`) or `@hourly`, `@daily`, `@weekly`.
    pub interval: String,
    /// Snapshots kept by count; 0 or unset = no count bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_last: Option<i32>,
    /// Snapshots kept by age (a Go duration); unset = no age bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Prefix of the snapshots' names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{0,64}$"))]
    pub name_prefix: Option<String>,
}

fn snapshot_policies_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<SnapshotPolicySpec>>();
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["share"]));
    obj.insert("maxItems".into(), 64.into());
    schema
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareSpec {
    /// The export path, one segment: `/export`, `/projects`.
    #[schemars(regex(pattern = r"^/[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"))]
    pub name: String,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// What any authenticated client may do; default `read-write` (DittoFS itself defaults to `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_permission: Option<SharePermission>,
    /// Use the `spec.s3` remote store. Default: true when `spec.s3` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<bool>,
    /// Who may do what on this share, above `defaultPermission`: each entry names one user or
    /// one group of the spec. When set, these are the share's only grants (others are
    /// revoked); unset, grants made with `dfsctl` are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub permissions: Option<Vec<ShareGrant>>,
    /// The most the share may hold (a quantity such as `10Gi`): a write past it fails over NFS
    /// and SMB. Unset: no quota. Removing it lifts the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// The most each user may own on this share, unless `quotas` gives them their own (a
    /// quantity; counted by file owner uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_quota: Option<String>,
    /// Per-user and per-group quotas on this share, for users and groups of the spec with a uid
    /// or gid. With `userQuota` or this list set, these are the share's only user and group
    /// quotas (others are lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub quotas: Option<Vec<IdentityQuota>>,
    /// NFS export options of this share. Unset fields keep DittoFS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<ShareNfsSpec>,
    /// SMB options of this share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smb: Option<ShareSmbSpec>,
}

/// The most one user's or one group's files may hold on a share.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityQuota {
    /// A user of `spec.users` with a `uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A group of `spec.groups` with a `gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A quantity such as `20Gi`.
    pub limit: String,
}

/// How NFS clients are trusted on one share.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareNfsSpec {
    /// Who is mapped to the anonymous user: `root_to_guest` (DittoFS's default), `none`,
    /// `root_to_admin`, `all_to_guest`, `all_to_admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squash: Option<Squash>,
    /// The uid squashed requests get. DittoFS's default 65534.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967294u32))]
    pub anonymous_uid: Option<i64>,
    /// The gid squashed requests get. DittoFS's default 65534.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967294u32))]
    pub anonymous_gid: Option<i64>,
    /// The only clients that may mount the share: IP addresses, CIDRs or host names. The
    /// operator keeps them as a DittoFS netgroup `clients-<share>`. Unset: any client that
    /// reaches the port (see `spec.networkPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub allowed_clients: Option<Vec<String>>,
    /// Accept AUTH_SYS (uid/gid sent by the client). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_auth_sys: Option<bool>,
    /// Refuse clients that do not authenticate with Kerberos. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_kerberos: Option<bool>,
    /// The least Kerberos protection accepted: `krb5` (authentication), `krb5i` (integrity),
    /// `krb5p` (privacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kerberos_level: Option<KerberosLevel>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Squash {
    None,
    RootToGuest,
    RootToAdmin,
    AllToGuest,
    AllToAdmin,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KerberosLevel {
    Krb5,
    Krb5i,
    Krb5p,
}

/// SMB options of one share.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareSmbSpec {
    /// List only the files and folders a user may open. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_based_enumeration: Option<bool>,
}

/// One user's or one group's permission on a share.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareGrant {
    /// A user of `spec.users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A group of `spec.groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `none` (denied, even when the default allows), `read`, `read-write` or `admin`.
    pub level: SharePermission,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SharePermission {
    None,
    Read,
    ReadWrite,
    Admin,
}

fn shares_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<ShareSpec>>();
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["name"]));
    obj.insert("maxItems".into(), 64.into());
    schema
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoresSpec {
    /// The metadata store: `badger` on the metadata claim (default), or `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataStoreSpec>,
    /// The local block store (with a remote store: its cache tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalStoreSpec>,
    /// Stores to delete, with the data they hold, once no share uses them. The only way the
    /// operator ever deletes a store: removing one from the spec leaves it on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub delete: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetadataStoreType {
    Badger,
    Memory,
    Postgres,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataStoreSpec {
    /// Store name in DittoFS. Default `meta`. A new name makes a new store; the old one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: Option<String>,
    /// `badger` (default, on the metadata claim), `memory` (lost on restart) or `postgres`
    /// (on the DittoServer's PostgreSQL, `spec.database`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub store_type: Option<MetadataStoreType>,
    /// `postgres` only: the database for file metadata, on the same server and with the same
    /// user as the control plane. It must exist, and differ from the control-plane database
    /// (both have a `shares` table). Default `dittofs_metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LocalStoreType {
    Fs,
    Memory,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalStoreSpec {
    /// Store name in DittoFS. Default `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: Option<String>,
    /// `fs` (default, on a claim) or `memory` (lost on restart).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub store_type: Option<LocalStoreType>,
    /// The most the `fs` store may hold on its claim (a quantity such as `40Gi`): past it a
    /// write fails (no remote store) or waits for blocks to reach S3 and be evicted (with
    /// `spec.s3`). Default: 90 % of the claim it lives on, 50 % when it shares the metadata
    /// claim, so the claim never fills up. Applies when DittoFS next loads the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
}

/// The earlier operator's shape, plus what an S3 store needs.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Store name in DittoFS. Default `s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: Option<String>,
    /// The bucket; it must exist (DittoFS does not create it).
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Default eu-west-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Default: the Secret's `endpointKey` when present, else the operator's default
    /// (Cubbit DS3, https://s3.cubbit.eu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    /// Key prefix inside the bucket, such as `dittofs/`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Path-style URLs (MinIO, SeaweedFS). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// Allow an endpoint on a private or loopback address (an in-cluster S3). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_private_endpoint: Option<bool>,
    /// The Secret holding the access key, the secret key and optionally the endpoint.
    pub credentials_secret_ref: S3CredentialsRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    /// A Secret in the DittoServer's namespace.
    pub secret_name: String,
    /// Default `accessKeyId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_key: Option<String>,
    /// Default `secretAccessKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_key: Option<String>,
    /// Default `endpoint`; optional in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// PVC `metadata` at /data/store/metadata. Immutable.
    pub metadata_size: String,
    /// PVC `content` at /data/store/block (local block store and its journal). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<String>,
    /// PVC `cache` at /data/cache (write-back cache that must survive restarts). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<String>,
    /// PVC `controlplane` at /data/controlplane (SQLite control-plane DB). Immutable.
    #[serde(default = "default_control_plane_size")]
    #[schemars(default = "default_control_plane_size")]
    pub control_plane_size: String,
    /// StorageClass of every PVC; unset = the cluster default. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// In the schema (not only in values) because it shapes an immutable volume claim.
fn default_control_plane_size() -> String {
    "1Gi".to_string()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseType {
    Sqlite,
    Postgres,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// `sqlite` (default) or `postgres`; derived when a PostgreSQL source is given.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub db_type: Option<DatabaseType>,
    /// Where the SQLite file lives (default on the controlplane claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSpec>,
    /// External PostgreSQL: a Secret with keys host, port, database (or dbname), user,
    /// password and optional sslmode. `key` is accepted for earlier CRs and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_secret_ref: Option<SecretRef>,
    /// An existing PerconaPGCluster in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percona: Option<PerconaRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteSpec {
    /// The SQLite file, under `/data/controlplane/` (the controlplane claim). Default
    /// `/data/controlplane/controlplane.db`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A Secret in the CR's namespace; `key` picks one entry where one is needed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name, in the DittoServer's namespace.
    pub name: String,
    /// The entry to read; each field that refers to a Secret says its default key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Earlier Go operator only; no effect: a Secret the spec names must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerconaRef {
    /// An existing PerconaPGCluster in the DittoServer's namespace.
    pub cluster_name: String,
    /// Default: the cluster's default user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The database to use. Default: the user Secret's `dbname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerconaSpec {
    /// Create and own the PerconaPGCluster `<name>-postgres` and use it as the control-plane database.
    #[serde(default)]
    pub enabled: bool,
    /// Delete the created cluster with the DittoServer; otherwise it is orphaned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_with_server: Option<bool>,
    /// PostgreSQL instances. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i32>,
    /// Volume size of each instance. Default 10Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_size: Option<String>,
    /// StorageClass of the instances' volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// The database DittoFS uses (user `dittofs`). Default dittofs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// pgBackRest backups of the cluster to S3 (Percona's `backups.pgbackrest`, repository `repo1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PerconaBackupSpec>,
}

/// The earlier operator's `percona.backup`: one S3 repository `repo1` with full and incremental
/// schedules. Here `retentionDays` is applied too (it was ignored there).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerconaBackupSpec {
    /// Render the pgBackRest repository and schedules. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// A Secret projected into pgBackRest's `conf.d`: a key such as `s3.conf` holding
    /// `[global]` `repo1-s3-key=` and `repo1-s3-key-secret=`. Without it pgBackRest takes the
    /// pod's own credentials (`repo1-s3-key-type: auto`, an IAM role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectReference>,
    /// The S3 bucket of repository `repo1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The S3 host (`s3.eu-west-1.amazonaws.com`, `host:port`); an `https://` prefix is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Default `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Cron schedule of full backups. Default `0 2 * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_schedule: Option<String>,
    /// Cron schedule of incremental backups. Default `0 * * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incr_schedule: Option<String>,
    /// Full backups are kept this many days (pgBackRest `repo1-retention-full-type: time`). Default 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub retention_days: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSpec {
    /// REST API port. Default 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// HTTPS on the API. Default true: with `certSecretName`, else with a CA and certificate the
    /// operator generates once (Secret `<name>-api-tls`). `false` is plain HTTP: the passwords,
    /// tokens and keys the operator sends DittoFS then travel in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`; `ca.crt` to verify it) served by the
    /// API, mounted at /tls. DittoFS reloads it when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_name: Option<String>,
    /// Require client certificates signed by this Secret's `ca.crt` (mTLS), mounted at
    /// /tls-client-ca. The operator then presents the client certificate in the same Secret's
    /// `tls.crt` and `tls.key`; the probes become TCP checks.
    #[serde(default, rename = "clientCASecretName", skip_serializing_if = "Option::is_none")]
    pub client_ca_secret_name: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmbSpec {
    /// Default true (DittoFS starts SMB itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// SMB port inside the pod. Default 12445.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Lowest SMB dialect offered. Default `SMB2.0` (DittoFS's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_dialect: Option<SmbDialect>,
    /// Highest SMB dialect offered. Default `SMB3.1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dialect: Option<SmbDialect>,
    /// Message signing: `required` refuses clients that do not sign, `enabled` signs when the
    /// client asks, `disabled` never signs. Unset: DittoFS's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SmbSigning>,
    /// Encrypt SMB 3 sessions. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum SmbDialect {
    #[serde(rename = "SMB2.0")]
    Smb20,
    #[serde(rename = "SMB2.1")]
    Smb21,
    #[serde(rename = "SMB3.0")]
    Smb30,
    #[serde(rename = "SMB3.0.2")]
    Smb302,
    #[serde(rename = "SMB3.1.1")]
    Smb311,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmbSigning {
    Disabled,
    Enabled,
    Required,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiServiceSpec {
    /// Default ClusterIP.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// Service annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileServiceSpec {
    /// Default ClusterIP (reachable inside the cluster only). The earlier Go operator defaulted
    /// to LoadBalancer: a migrated CR that relied on it sets `LoadBalancer` here.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// Service annotations (load-balancer settings, external-dns, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Used only with `type: LoadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Client CIDRs the load balancer admits (only with `type: LoadBalancer`). Without them, any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// Used only when `type` is not ClusterIP; `Local` keeps the client address and the node hop out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// Service port for NFS. Default 2049.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub nfs_port: Option<i32>,
    /// Service port for SMB. Default 445.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub smb_port: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Default true. false renders no NetworkPolicy: whoever reaches the pod reaches every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Who may reach NFS and SMB (NetworkPolicy peers). Default: the pods of the DittoServer's
    /// namespace when the file Service is ClusterIP; any address when it is a LoadBalancer or
    /// NodePort (then `adapterServices.loadBalancerSourceRanges` is the filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_clients: Option<Vec<NetworkPolicyPeer>>,
    /// Who besides the operator may reach the REST API port (`dfsctl` users, say). Default: nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_clients: Option<Vec<NetworkPolicyPeer>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// Earlier Go operator only (`memory`); no effect.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    /// The JWT signing key from a Secret (else generated into `<name>-jwt-secret`) and token lifetimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// The bootstrap admin: its password from a Secret, else generated into `<name>-admin-bootstrap-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// Users and groups from an LDAP directory (Active Directory or RFC 2307).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapSpec>,
    /// Kerberos authentication for NFS (RPCSEC_GSS) and SMB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kerberos: Option<KerberosSpec>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdMap {
    Rfc2307,
    Rid,
}

/// The earlier operator's `identity.ldap`, rendered into DittoFS's `ldap:` section.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LdapSpec {
    /// Default true (the section is there to be used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `ldaps://host:636` or `ldap://host:389` (then `startTLS` or `allowPlaintext`).
    #[schemars(regex(pattern = r"^ldaps?://"))]
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default, rename = "startTLS", skip_serializing_if = "Option::is_none")]
    pub start_tls: Option<bool>,
    /// Allow an `ldap://` connection without TLS (the bind password then travels in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plaintext: Option<bool>,
    /// Where users and groups are searched, such as `DC=example,DC=com`.
    #[serde(rename = "baseDN")]
    pub base_dn: String,
    /// The account DittoFS binds as to search the directory.
    #[serde(rename = "bindDN")]
    pub bind_dn: String,
    /// The bind password (key `password` unless `key` says otherwise); reaches DittoFS as
    /// `DITTOFS_LDAP_BIND_PASSWORD`, and a change rolls the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_secret_ref: Option<SecretRef>,
    /// Default `sAMAccountName` (DittoFS's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_attr: Option<String>,
    /// The directory's realm, such as `EXAMPLE.COM` (DittoFS's `ldap.realm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// `rfc2307` (uidNumber/gidNumber, DittoFS's default) or `rid` (from Windows SIDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idmap: Option<IdMap>,
    /// Resolve group membership through nested groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_groups: Option<bool>,
    /// A CA file inside the pod (mount it with a template override); default the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_file: Option<String>,
    /// Accept any certificate from the directory server. Not for production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// The earlier operator's `identity.kerberos`, rendered into DittoFS's `kerberos:` section.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KerberosSpec {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Such as `nfs/files.example.com@EXAMPLE.COM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal: Option<String>,
    /// The Kerberos realm, such as `EXAMPLE.COM`. Default: taken from the service principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// The domain's NetBIOS name, such as `EXAMPLE` (SMB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netbios_domain: Option<String>,
    /// The domain's DNS name, such as `example.com`. Default: the realm in lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    /// The service keytab (key `keytab` unless `key` says otherwise), mounted at /kerberos/dittofs.keytab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keytab_secret_ref: Option<SecretRef>,
    /// krb5.conf from a Secret (key `krb5.conf`), mounted at /kerberos-krb5/krb5.conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb5_conf_secret_ref: Option<SecretRef>,
    /// krb5.conf inline (not secret: it goes into the config ConfigMap); `krb5ConfSecretRef` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb5_conf: Option<String>,
    /// A computer account in the domain, for NETLOGON pass-through authentication of SMB users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_account: Option<MachineAccountSpec>,
}

/// A computer account in the domain, for NETLOGON pass-through authentication of SMB users.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineAccountSpec {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The computer account's name, such as `DITTOFS$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// The account's password (key `password` unless `key` says otherwise):
    /// `DITTOFS_KERBEROS_MACHINE_ACCOUNT_SECRET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Its keytab (key `keytab`), mounted at /kerberos-machine/machine.keytab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keytab_secret_ref: Option<SecretRef>,
    /// The domain controllers to reach, such as `dc1.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc_address: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Secret key holding the JWT signing key (>= 32 characters). Generated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Earlier Go operator (v0.4.1 schema default `dittofs`) only: DittoFS's issuer is fixed; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// How long an API access token lasts, a Go duration. Default `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_duration: Option<String>,
    /// How long a refresh token lasts, a Go duration. Default `168h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_duration: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminSpec {
    /// Earlier Go operator only: DittoFS always bootstraps the user `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret key with the initial admin password (cleartext). Generated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Serve DittoFS's metrics and create the `<name>-metrics` Service. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Default 9090.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Default /metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Require this Bearer token on the metrics endpoint (key `token` unless `key` says
    /// otherwise): mounted at /metrics-token/token, `metrics.auth: token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretRef>,
    /// A Prometheus Operator ServiceMonitor `<name>-metrics` (needs its CRD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor. Default false; needs `metrics.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Scrape interval, such as `30s`. Default: Prometheus's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Labels on the ServiceMonitor (for a Prometheus `serviceMonitorSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    #[serde(alias = "debug")]
    Debug,
    #[serde(alias = "info")]
    Info,
    #[serde(alias = "warn")]
    Warn,
    #[serde(alias = "error")]
    Error,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// DEBUG, INFO (default), WARN or ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// `json` (default) or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// Always stdout in a pod; accepted for earlier CRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplatesSpec {
    /// A ConfigMap of template overrides in this namespace (honoured only when the operator runs with --allow-namespace-templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectReference>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyCacheSpec {
    /// Earlier Go operator only; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Earlier Go operator only; no effect (the cache claim is `storage.cacheSize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}
