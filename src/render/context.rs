//! The one context every template sees: `cr`, `values`, `spec`, `discovered`, `computed`.
//! Decisions (defaults, derived ports, names, the grace period, the checksum) are made here in
//! Rust; templates only lay them out. `docs/templates.md` documents every key.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::crd::SecretKeyRef;
use crate::crd::{DatabaseType, DittoServer, DittoServerSpec, LogFormat, ServiceType, TrafficPolicy};
use crate::discover::{Discovered, PostgresConnection};
use crate::identity::Directory;
use crate::names::*;
use crate::values::{ProbeSet, Values, WaitForPostgresValues};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ContextError {
    ContextError::Invalid { field: field.into(), message: message.into() }
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct CrInfo {
    pub name: String,
    pub namespace: String,
    pub generation: Option<i64>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    pub api: i32,
    pub nfs: i32,
    pub smb: i32,
    pub metrics: i32,
    /// DittoFS's portmapper (TCP and UDP), when `nfs.portmapper` is on.
    pub portmapper: i32,
}

/// `spec.nfs` with defaults: the NFS adapter's settings, and what the pod and Service expose.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NfsSettings {
    pub portmapper: bool,
    pub udp: bool,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

/// `spec.smb`'s protocol settings; unset ones stay DittoFS's.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SmbSettings {
    pub min_dialect: Option<String>,
    pub max_dialect: Option<String>,
    pub signing: Option<String>,
    pub encryption: Option<bool>,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FileServiceSettings {
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub annotations: BTreeMap<String, String>,
    pub nfs_port: i32,
    pub smb_port: i32,
    pub portmapper_port: i32,
    pub load_balancer_class: Option<String>,
    pub load_balancer_source_ranges: Vec<String>,
    pub external_traffic_policy: Option<TrafficPolicy>,
}

/// One PersistentVolumeClaim template and where it is mounted.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub name: String,
    pub mount_path: String,
    pub size: String,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    pub claims: Vec<Claim>,
    pub storage_class_name: Option<String>,
    pub access_mode: String,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    #[serde(rename = "type")]
    pub db_type: DatabaseType,
    pub sqlite_path: String,
    pub postgres: Option<PostgresConnection>,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub jwt: SecretKeyRef,
    pub admin_password: SecretKeyRef,
    /// Values for the Secrets the operator creates; only for those it creates.
    pub generated_jwt_secret: Option<String>,
    pub generated_admin_password: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PerconaCluster {
    pub name: String,
    pub cr_version: String,
    pub image: String,
    pub postgres_version: i32,
    pub replicas: i32,
    pub storage_size: String,
    pub storage_class_name: Option<String>,
    pub database_name: String,
    pub user: String,
    /// pgBackRest to S3, when `spec.percona.backup.enabled`.
    pub backup: Option<PerconaBackup>,
}

/// The repository `repo1` of `spec.percona.backup`, defaults filled in.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PerconaBackup {
    pub image: String,
    pub bucket: String,
    /// Host[:port]: pgBackRest takes no scheme.
    pub endpoint: String,
    pub region: String,
    /// Where the repository lives in the bucket; the earlier operator's path, so its backups go on.
    pub path: String,
    pub full_schedule: String,
    pub incr_schedule: String,
    pub retention_days: i32,
    pub credentials_secret: Option<String>,
}

impl PerconaBackup {
    fn of(spec: &crate::crd::PerconaBackupSpec, values: &crate::values::PerconaBackupValues, cr_name: &str) -> Self {
        let endpoint = spec.endpoint.clone().unwrap_or_default();
        let endpoint = endpoint.strip_prefix("https://").unwrap_or(&endpoint).trim_end_matches('/').to_string();
        PerconaBackup {
            image: values.image.clone(),
            bucket: spec.bucket.clone().unwrap_or_default(),
            endpoint,
            region: spec.region.clone().unwrap_or_else(|| values.region.clone()),
            path: format!("/pgbackrest/{cr_name}/repo1"),
            full_schedule: spec.full_schedule.clone().unwrap_or_else(|| values.full_schedule.clone()),
            incr_schedule: spec.incr_schedule.clone().unwrap_or_else(|| values.incr_schedule.clone()),
            retention_days: spec.retention_days.unwrap_or(values.retention_days),
            credentials_secret: spec.credentials_secret_ref.as_ref().map(|r| r.name.clone()),
        }
    }
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Computed {
    pub names: Names,
    /// `app.kubernetes.io/*` labels (without component) plus the values' commonLabels.
    pub labels: BTreeMap<String, String>,
    pub selector_labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub image: String,
    pub image_pull_policy: String,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub replicas: i32,
    pub ports: Ports,
    pub smb_enabled: bool,
    pub nfs: NfsSettings,
    pub smb: SmbSettings,
    pub metrics_enabled: bool,
    pub metrics_path: String,
    /// `spec.metrics.bearerTokenSecret`, key defaulted (`token`).
    pub metrics_token: Option<SecretKeyRef>,
    /// `spec.metrics.serviceMonitor` when enabled (with metrics on).
    pub service_monitor: Option<crate::crd::ServiceMonitorSpec>,
    pub api_service: ServiceSettings,
    pub file_service: FileServiceSettings,
    pub network_policy: super::reach::NetworkPolicySettings,
    /// Who can reach the file ports, in a few words (`status.endpoints.clients`).
    pub clients: String,
    pub storage: Storage,
    pub database: Database,
    pub credentials: Credentials,
    pub jwt_access_token_duration: String,
    pub jwt_refresh_token_duration: String,
    pub log_level: String,
    pub log_format: String,
    /// `stdout` (default), `stderr` or a file path, as the earlier operator passed it on.
    pub log_output: String,
    pub shutdown_timeout: String,
    pub pre_stop_seconds: i64,
    pub termination_grace_period_seconds: i64,
    pub probes: ProbeSet,
    pub resources: ResourceRequirements,
    pub pod_security_context: PodSecurityContext,
    pub security_context: SecurityContext,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
    pub priority_class_name: Option<String>,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_annotations: BTreeMap<String, String>,
    pub tmp_size_limit: String,
    pub wait_for_postgres: WaitForPostgresValues,
    /// The PerconaPGCluster to create (`spec.percona.enabled`).
    pub percona: Option<PerconaCluster>,
    /// What the runtime template lays out: stores and shares set up over DittoFS's REST API.
    pub runtime: RuntimeSettings,
    /// HTTPS on the API (`spec.controlPlane.certSecretName`), optionally with client certificates.
    pub api_tls: Option<ApiTls>,
    /// LDAP and Kerberos (`spec.identity.ldap`, `.kerberos`), with their Secrets by reference.
    pub directory: Directory,
    /// Filled by the second render pass: the rendered DittoFS config file.
    pub config_yaml: String,
    /// Filled by the second render pass: SHA-256 of the config and the referenced Secrets' data.
    pub checksum: String,
}

/// What the steps after the apply (runtime step, REST session, status) read of [`Computed`]:
/// a render keeps this instead of the whole context (most of which only the templates read).
#[derive(Clone, Debug)]
pub struct Outline {
    pub names: Names,
    pub ports: Ports,
    pub replicas: i32,
    pub smb_enabled: bool,
    /// The file Service's NFS port (the address the status reports).
    pub nfs_port: i32,
    /// Who can reach the file ports, in a few words.
    pub clients: String,
    /// The PostgreSQL connection, when rendered against PostgreSQL.
    pub postgres: Option<PostgresConnection>,
    /// The user the operator creates in DittoFS for its REST calls.
    pub operator_user: String,
    pub admin_password: SecretKeyRef,
    pub api_tls: Option<ApiTls>,
}

impl Outline {
    pub fn of(computed: &Computed) -> Self {
        Self {
            names: computed.names.clone(),
            ports: computed.ports.clone(),
            replicas: computed.replicas,
            smb_enabled: computed.smb_enabled,
            nfs_port: computed.file_service.nfs_port,
            clients: computed.clients.clone(),
            postgres: computed.database.postgres.clone(),
            operator_user: computed.runtime.operator_user.clone(),
            admin_password: computed.credentials.admin_password.clone(),
            api_tls: computed.api_tls.clone(),
        }
    }
}

/// The API's certificate Secrets (mounted at /tls and /tls-client-ca).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiTls {
    pub cert_secret: String,
    pub client_ca_secret: Option<String>,
    /// The certificate is the operator's own (`<name>-api-tls`), not `spec.controlPlane.certSecretName`.
    pub generated: bool,
}

/// Stores and shares with every default applied (from the spec, else `values.runtime`).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettings {
    pub operator_user: String,
    pub metadata_store: StoreSettings,
    pub local_store: StoreSettings,
    pub remote_store: Option<RemoteStoreSettings>,
    pub shares: Vec<ShareSettings>,
    pub delete_stores: Vec<String>,
    pub snapshot_policies: Vec<SnapshotPolicySettings>,
    pub users: Vec<UserSettings>,
    pub groups: Vec<GroupSettings>,
    pub delete_users: Vec<String>,
    pub delete_groups: Vec<String>,
}

/// `spec.users[]` with defaults; the password stays in its Secret.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserSettings {
    pub name: String,
    pub password: SecretKeyRef,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub groups: Vec<String>,
    pub role: String,
    pub enabled: bool,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    pub name: String,
    pub gid: Option<i64>,
}

/// One grant of `spec.shares[].permissions`: `kind` is `user` or `group`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrantSettings {
    pub kind: String,
    pub name: String,
    pub level: String,
}

/// `spec.snapshotPolicies[]` with the share name normalized (`/export`).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPolicySettings {
    pub share: String,
    pub interval: String,
    pub keep_last: i32,
    pub ttl: Option<String>,
    pub enabled: bool,
    pub name_prefix: Option<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    pub name: String,
    #[serde(rename = "type")]
    pub store_type: String,
    /// Directory on a claim (`badger`, `fs`).
    pub path: Option<String>,
    /// `postgres` metadata: the database on the DittoServer's PostgreSQL.
    pub database: Option<String>,
    /// `fs` local store: the bytes it may hold (DittoFS's `max_size`).
    pub max_size: Option<u64>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStoreSettings {
    pub name: String,
    pub bucket: String,
    pub region: String,
    /// From the spec or the values; the Secret's endpoint key, when present, wins.
    pub endpoint: String,
    pub prefix: Option<String>,
    pub force_path_style: bool,
    pub allow_private_endpoint: bool,
    pub access_key_id: SecretKeyRef,
    pub secret_access_key: SecretKeyRef,
    pub endpoint_from_secret: SecretKeyRef,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShareSettings {
    pub name: String,
    pub read_only: bool,
    pub default_permission: String,
    pub remote: bool,
    /// `None`: the share's grants are not managed.
    pub permissions: Option<Vec<GrantSettings>>,
    pub quota_bytes: Option<u64>,
    /// DittoFS's per-share NFS config keys the spec sets (`squash`, `netgroup`, ...).
    pub nfs_export: BTreeMap<String, serde_json::Value>,
    /// `nfs.allowedClients` as netgroup members (`type`: `ip`, `cidr`, `hostname`).
    pub allowed_clients: Option<Vec<ClientSettings>>,
    pub access_based_enumeration: Option<bool>,
    /// `userQuota` and `quotas`; `None`: the share's user and group quotas are not managed.
    pub identity_quotas: Option<Vec<IdentityQuotaSettings>>,
}

/// One row of DittoFS's per-share quotas: `scope` `user`, `group` or `default-user`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityQuotaSettings {
    pub scope: String,
    /// The uid or gid; none for `default-user`.
    pub id: Option<i64>,
    /// Who, for people: `alice`, `staff`, `every user`.
    pub who: String,
    pub limit_bytes: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSettings {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct RenderContext {
    pub cr: CrInfo,
    pub values: Values,
    pub spec: DittoServerSpec,
    pub discovered: Discovered,
    pub computed: Computed,
}

impl RenderContext {
    pub fn build(cr: &DittoServer, values: &Values, discovered: &Discovered) -> Result<Self, ContextError> {
        let name = cr.name_any();
        let namespace = cr.namespace().unwrap_or_else(|| "default".into());
        let computed = compute(&name, &namespace, &cr.spec, values, discovered)?;
        Ok(Self {
            cr: CrInfo { name, namespace, generation: cr.metadata.generation },
            values: values.clone(),
            spec: cr.spec.clone(),
            discovered: discovered.clone(),
            computed,
        })
    }
}

fn compute(
    name: &str,
    namespace: &str,
    spec: &DittoServerSpec,
    values: &Values,
    discovered: &Discovered,
) -> Result<Computed, ContextError> {
    let names = Names::for_cr(name);
    let percona_cluster = names.percona_cluster.clone();

    let mut labels = values.common_labels.clone();
    labels.insert(LABEL_NAME.into(), "dittofs".into());
    labels.insert(LABEL_INSTANCE.into(), name.into());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    labels.insert(LABEL_PART_OF.into(), "dittofs".into());
    let selector_labels = BTreeMap::from([
        (LABEL_NAME.to_string(), "dittofs".to_string()),
        (LABEL_INSTANCE.to_string(), name.to_string()),
        (LABEL_COMPONENT.to_string(), "file-server".to_string()),
    ]);

    let ports = Ports {
        api: spec.control_plane.as_ref().and_then(|c| c.port).unwrap_or(values.ports.api),
        nfs: spec.nfs_port.unwrap_or(values.ports.nfs),
        smb: spec.smb.as_ref().and_then(|s| s.port).unwrap_or(values.ports.smb),
        metrics: spec.metrics.as_ref().and_then(|m| m.port).unwrap_or(values.ports.metrics),
        portmapper: values.ports.portmapper,
    };
    let smb_enabled = spec.smb.as_ref().and_then(|s| s.enabled).unwrap_or(values.smb.enabled);
    let metrics_enabled = spec.metrics.as_ref().and_then(|m| m.enabled).unwrap_or(values.metrics.enabled);
    let nfs_spec = spec.nfs.clone().unwrap_or_default();
    let nfs = NfsSettings {
        portmapper: nfs_spec.portmapper.unwrap_or(values.nfs.portmapper),
        udp: nfs_spec.udp.unwrap_or(values.nfs.udp),
        min_version: nfs_spec.min_version.map(|v| wire_name(&v)),
        max_version: nfs_spec.max_version.map(|v| wire_name(&v)),
    };
    let smb_spec = spec.smb.clone().unwrap_or_default();
    let smb = SmbSettings {
        min_dialect: smb_spec.min_dialect.map(|d| wire_name(&d)),
        max_dialect: smb_spec.max_dialect.map(|d| wire_name(&d)),
        signing: smb_spec.signing.map(|s| wire_name(&s)),
        encryption: smb_spec.encryption,
    };
    check_distinct_ports(&ports, smb_enabled, metrics_enabled, nfs.portmapper)?;

    // The earlier CRD stored its default into every CR; it means "unset", not a wish for latest.
    let image = spec
        .image
        .clone()
        .filter(|i| i != crate::names::EARLIER_DEFAULT_IMAGE)
        .unwrap_or_else(|| format!("{}:{}", values.image.repository, values.image.tag));
    let image_pull_policy = match spec.image_pull_policy {
        Some(p) => serde_json::to_value(p).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        None => values.image.pull_policy.clone(),
    };

    let api = spec.service.clone().unwrap_or_default();
    let file = spec.adapter_services.clone().unwrap_or_default();
    let file_service = FileServiceSettings {
        service_type: file.service_type.unwrap_or(values.file_service.service_type),
        annotations: file.annotations.unwrap_or_default(),
        nfs_port: file.nfs_port.unwrap_or(values.file_service.nfs_port),
        smb_port: file.smb_port.unwrap_or(values.file_service.smb_port),
        portmapper_port: values.file_service.portmapper_port,
        load_balancer_class: file.load_balancer_class,
        load_balancer_source_ranges: file.load_balancer_source_ranges.unwrap_or_default(),
        external_traffic_policy: file.external_traffic_policy,
    };
    if smb_enabled && file_service.nfs_port == file_service.smb_port {
        return Err(invalid("spec.adapterServices.smbPort", "must differ from spec.adapterServices.nfsPort"));
    }

    let network_policy = super::reach::network_policy(spec, values, &file_service);
    let clients = super::reach::clients(&file_service, &network_policy, namespace);

    let storage = storage(spec, values);
    let database = database(spec, values, discovered)?;
    let runtime = runtime(spec, values, &storage, &database)?;
    let credentials = credentials(spec, &names, discovered);

    let logging = spec.logging.clone().unwrap_or_default();
    let log_level = match logging.level {
        Some(level) => serde_json::to_value(level).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        None => values.logging.level.to_uppercase(),
    };
    let log_format = match logging.format {
        Some(LogFormat::Text) => "text".to_string(),
        Some(LogFormat::Json) => "json".to_string(),
        None => values.logging.format.clone(),
    };

    let shutdown_timeout = spec.shutdown_timeout.clone().unwrap_or_else(|| values.shutdown_timeout.clone());
    let shutdown_seconds = crate::go_duration::seconds(&shutdown_timeout).ok_or_else(|| {
        invalid("spec.shutdownTimeout", format!("{shutdown_timeout:?} is not a positive Go duration such as 30s"))
    })?;
    let grace = &values.grace_period;
    let termination_grace_period_seconds = spec.termination_grace_period_seconds.unwrap_or_else(|| {
        grace.pre_stop_seconds + grace.shutdown_multiplier * shutdown_seconds.ceil() as i64 + grace.margin_seconds
    });

    let jwt = spec.identity.as_ref().and_then(|i| i.jwt.clone()).unwrap_or_default();

    let mut pod_labels = spec.pod_labels.clone().unwrap_or_default();
    pod_labels.extend(labels.clone());
    pod_labels.extend(selector_labels.clone());

    Ok(Computed {
        names,
        labels,
        selector_labels,
        annotations: values.common_annotations.clone(),
        image,
        image_pull_policy,
        image_pull_secrets: spec.image_pull_secrets.clone().unwrap_or_default(),
        replicas: spec.replicas.unwrap_or(values.replicas),
        ports,
        smb_enabled,
        nfs,
        smb,
        metrics_enabled,
        metrics_token: spec
            .metrics
            .as_ref()
            .and_then(|m| m.bearer_token_secret.as_ref())
            .filter(|_| metrics_enabled)
            .map(|r| SecretKeyRef { name: r.name.clone(), key: r.key.clone().unwrap_or_else(|| "token".into()) }),
        service_monitor: spec
            .metrics
            .as_ref()
            .and_then(|m| m.service_monitor.clone())
            .filter(|s| metrics_enabled && s.enabled == Some(true)),
        metrics_path: spec.metrics.as_ref().and_then(|m| m.path.clone()).unwrap_or_else(|| values.metrics.path.clone()),
        api_service: ServiceSettings {
            service_type: api.service_type.unwrap_or(values.api_service.service_type),
            annotations: api.annotations.unwrap_or_default(),
        },
        network_policy,
        clients,
        file_service,
        storage,
        database,
        credentials,
        jwt_access_token_duration: jwt
            .access_token_duration
            .unwrap_or_else(|| values.jwt.access_token_duration.clone()),
        jwt_refresh_token_duration: jwt
            .refresh_token_duration
            .unwrap_or_else(|| values.jwt.refresh_token_duration.clone()),
        log_level,
        log_format,
        log_output: logging.output.clone().unwrap_or_else(|| "stdout".into()),
        shutdown_timeout,
        pre_stop_seconds: grace.pre_stop_seconds,
        termination_grace_period_seconds,
        probes: values.probes.clone(),
        resources: spec.resources.as_deref().cloned().unwrap_or_else(|| values.resources.clone()),
        pod_security_context: merge_pod_security(spec.pod_security_context.as_deref(), &values.pod_security_context),
        security_context: harden(spec.security_context.as_deref().cloned(), &values.security_context),
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        tolerations: spec.tolerations.clone().unwrap_or_default(),
        affinity: spec.affinity.as_deref().cloned(),
        priority_class_name: spec.priority_class_name.clone(),
        pod_labels,
        pod_annotations: spec.pod_annotations.clone().unwrap_or_default(),
        tmp_size_limit: values.tmp_volume.size_limit.clone(),
        wait_for_postgres: values.wait_for_postgres.clone(),
        percona: spec.percona.as_ref().filter(|p| p.enabled).map(|p| PerconaCluster {
            name: percona_cluster,
            cr_version: values.percona.cr_version.clone(),
            // An existing cluster keeps its major version (and the image that goes with it).
            image: discovered
                .pinned_postgres
                .as_ref()
                .map_or_else(|| values.percona.image.clone(), |p| p.image.clone()),
            postgres_version: discovered
                .pinned_postgres
                .as_ref()
                .map_or(values.percona.postgres_version, |p| p.version),
            replicas: p.replicas.unwrap_or(values.percona.replicas),
            storage_size: p.storage_size.clone().unwrap_or_else(|| values.percona.storage_size.clone()),
            storage_class_name: p.storage_class_name.clone(),
            database_name: p.database_name.clone().unwrap_or_else(|| values.percona.database_name.clone()),
            user: "dittofs".into(),
            backup: p.backup.as_ref().filter(|b| b.enabled).map(|b| PerconaBackup::of(b, &values.percona.backup, name)),
        }),
        runtime,
        directory: Directory::of(spec),
        api_tls: api_tls(spec, name),
        config_yaml: String::new(),
        checksum: String::new(),
    })
}

/// HTTPS unless the spec asks for plain HTTP: with the spec's certificate, else the operator's.
fn api_tls(spec: &DittoServerSpec, name: &str) -> Option<ApiTls> {
    let control_plane = spec.control_plane.as_deref();
    if let Some(cert) = control_plane.and_then(|c| c.cert_secret_name.clone()) {
        let client_ca_secret = control_plane.and_then(|c| c.client_ca_secret_name.clone());
        return Some(ApiTls { cert_secret: cert, client_ca_secret, generated: false });
    }
    crate::discover::generated_api_tls_secret(spec, name).map(|cert_secret| ApiTls {
        cert_secret,
        client_ca_secret: None,
        generated: true,
    })
}

fn runtime(
    spec: &DittoServerSpec,
    values: &Values,
    storage: &Storage,
    database: &Database,
) -> Result<RuntimeSettings, ContextError> {
    let v = &values.runtime;
    let stores = spec.stores.clone().unwrap_or_default();
    let claim = |name: &str| storage.claims.iter().find(|c| c.name == name).map(|c| c.mount_path.clone());

    let metadata = stores.metadata.unwrap_or_default();
    let metadata_name = metadata.name.unwrap_or_else(|| v.metadata_store.clone());
    let metadata_type = metadata.store_type.map_or_else(|| v.metadata_store_type.clone(), |t| wire_name(&t));
    if metadata_type == "postgres" && database.db_type != DatabaseType::Postgres {
        return Err(invalid(
            "spec.stores.metadata.type",
            "postgres keeps file metadata on the DittoServer's PostgreSQL: set spec.database.postgresSecretRef, spec.database.percona or spec.percona",
        ));
    }
    let metadata_store = StoreSettings {
        path: (metadata_type == "badger").then(|| format!("{}/{metadata_name}", claim("metadata").unwrap_or_default())),
        database: (metadata_type == "postgres")
            .then(|| metadata.database.clone().unwrap_or_else(|| v.postgres_metadata_database.clone())),
        name: metadata_name,
        store_type: metadata_type,
        max_size: None,
    };
    if let (Some(db), Some(pg)) = (&metadata_store.database, &database.postgres)
        && *db == pg.database
    {
        return Err(invalid(
            "spec.stores.metadata.database",
            format!("{db:?} is the control-plane database; file metadata needs another (both have a `shares` table)"),
        ));
    }

    let local = stores.local.unwrap_or_default();
    let local_name = local.name.unwrap_or_else(|| v.local_store.clone());
    let local_type = local.store_type.map_or_else(|| v.local_store_type.clone(), |t| wire_name(&t));
    // With a remote store the local store is a cache tier: the cache claim first. Without one
    // it holds the files: the content claim first. The metadata claim always exists.
    let candidates: &[&str] =
        if spec.s3.is_some() { &["cache", "content", "metadata"] } else { &["content", "cache", "metadata"] };
    let block_claim = candidates.iter().find_map(|c| storage.claims.iter().find(|claim| claim.name == *c));
    let block_root = block_claim.map(|c| c.mount_path.clone()).unwrap_or_default();
    let max_size = match (&local.max_size, block_claim) {
        _ if local_type != "fs" => None,
        (Some(size), _) => Some(crate::quantity::bytes(size).filter(|b| *b > 0).ok_or_else(|| {
            invalid("spec.stores.local.maxSize", format!("{size:?} is not a positive size such as 40Gi"))
        })?),
        // A share of the claim, so blocks never fill it: more headroom when the metadata store
        // (and its compactions) live there too.
        (None, Some(claim)) => crate::quantity::bytes(&claim.size).map(|bytes| {
            let percent = if claim.name == "metadata" {
                v.local_store_share_of_metadata_claim
            } else {
                v.local_store_share_of_claim
            };
            u64::try_from(u128::from(bytes) * u128::from(percent) / 100).unwrap_or(bytes)
        }),
        (None, None) => None,
    };
    let local_store = StoreSettings {
        path: (local_type == "fs").then(|| format!("{block_root}/{local_name}")),
        name: local_name,
        store_type: local_type,
        database: None,
        max_size,
    };

    let remote_store = spec.s3.as_ref().map(|s3| {
        let r = &s3.credentials_secret_ref;
        let key = |k: &Option<String>, default: &str| SecretKeyRef {
            name: r.secret_name.clone(),
            key: k.clone().unwrap_or_else(|| default.to_string()),
        };
        RemoteStoreSettings {
            name: s3.name.clone().unwrap_or_else(|| v.remote_store.clone()),
            bucket: s3.bucket.clone(),
            region: s3.region.clone().unwrap_or_else(|| v.s3.region.clone()),
            endpoint: s3.endpoint.clone().unwrap_or_else(|| v.s3.endpoint.clone()),
            prefix: s3.prefix.clone(),
            force_path_style: s3.force_path_style.unwrap_or(false),
            allow_private_endpoint: s3.allow_private_endpoint.unwrap_or(false),
            access_key_id: key(&r.access_key_id_key, &v.s3.access_key_id_key),
            secret_access_key: key(&r.secret_access_key_key, &v.s3.secret_access_key_key),
            endpoint_from_secret: key(&r.endpoint_key, &v.s3.endpoint_key),
        }
    });
    let names = [&metadata_store.name, &local_store.name];
    if let Some(remote) = &remote_store
        && names.contains(&&remote.name)
    {
        return Err(invalid("spec.s3.name", format!("{:?} is already the name of another store", remote.name)));
    }

    let shares = match &spec.shares {
        Some(shares) => shares
            .iter()
            .enumerate()
            .map(|(i, share)| {
                let remote = share.remote.unwrap_or(remote_store.is_some());
                if remote && remote_store.is_none() {
                    return Err(invalid(&format!("spec.shares[{i}].remote"), "needs spec.s3"));
                }
                let quota_bytes = match &share.quota {
                    Some(quota) => Some(crate::quantity::bytes(quota).filter(|b| *b > 0).ok_or_else(|| {
                        invalid(
                            &format!("spec.shares[{i}].quota"),
                            format!("{quota:?} is not a positive size such as 10Gi"),
                        )
                    })?),
                    None => None,
                };
                let permissions = match &share.permissions {
                    Some(grants) => Some(
                        grants
                            .iter()
                            .enumerate()
                            .map(|(j, g)| {
                                grant(spec, g).map_err(|m| invalid(&format!("spec.shares[{i}].permissions[{j}]"), m))
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    None => None,
                };
                let (nfs_export, allowed_clients) = share_nfs(share, i)?;
                let identity_quotas = identity_quotas(spec, share, i)?;
                Ok(ShareSettings {
                    name: share.name.clone(),
                    read_only: share.read_only.unwrap_or(false),
                    default_permission: share
                        .default_permission
                        .map_or_else(|| v.default_permission.clone(), |p| wire_name(&p)),
                    remote,
                    permissions,
                    quota_bytes,
                    nfs_export,
                    allowed_clients,
                    access_based_enumeration: share.smb.as_ref().and_then(|s| s.access_based_enumeration),
                    identity_quotas,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![ShareSettings {
            name: v.default_share.clone(),
            read_only: false,
            default_permission: v.default_permission.clone(),
            remote: remote_store.is_some(),
            permissions: None,
            quota_bytes: None,
            nfs_export: BTreeMap::new(),
            allowed_clients: None,
            access_based_enumeration: None,
            identity_quotas: None,
        }],
    };
    let mut managed: Vec<&String> = vec![&metadata_store.name, &local_store.name];
    managed.extend(remote_store.as_ref().map(|r| &r.name));
    let delete_stores = stores.delete.unwrap_or_default();
    if let Some((i, name)) = delete_stores.iter().enumerate().find(|(_, n)| managed.contains(n)) {
        return Err(invalid(&format!("spec.stores.delete[{i}]"), format!("{name:?} is a store this spec uses")));
    }
    let mut snapshot_policies = Vec::new();
    for (i, p) in spec.snapshot_policies.iter().flatten().enumerate() {
        // Any share DittoFS has, as the earlier operator allowed (one made with dfsctl, say).
        let share = if p.share.starts_with('/') { p.share.clone() } else { format!("/{}", p.share) };
        if share.len() < 2 || share[1..].contains('/') {
            return Err(invalid(
                &format!("spec.snapshotPolicies[{i}].share"),
                format!("{share:?} is not a share name"),
            ));
        }
        snapshot_policies.push(SnapshotPolicySettings {
            share,
            interval: p.interval.clone(),
            keep_last: p.keep_last.unwrap_or(0),
            ttl: p.ttl.clone(),
            enabled: p.enabled.unwrap_or(true),
            name_prefix: p.name_prefix.clone(),
        });
    }
    let (users, groups) = access(spec, v)?;
    Ok(RuntimeSettings {
        users,
        groups,
        delete_users: spec.delete_users.clone().unwrap_or_default(),
        delete_groups: spec.delete_groups.clone().unwrap_or_default(),
        operator_user: v.operator_user.clone(),
        metadata_store,
        local_store,
        remote_store,
        shares,
        delete_stores,
        snapshot_policies,
    })
}

/// `userQuota` and `quotas` of `spec.shares[i]` as DittoFS's quota rows, by uid and gid.
fn identity_quotas(
    spec: &DittoServerSpec,
    share: &crate::crd::ShareSpec,
    i: usize,
) -> Result<Option<Vec<IdentityQuotaSettings>>, ContextError> {
    if share.user_quota.is_none() && share.quotas.is_none() {
        return Ok(None);
    }
    let size = |field: String, text: &str| {
        crate::quantity::bytes(text)
            .filter(|b| *b > 0)
            .ok_or_else(|| invalid(&field, format!("{text:?} is not a positive size such as 10Gi")))
    };
    let mut rows = Vec::new();
    if let Some(limit) = &share.user_quota {
        let limit_bytes = size(format!("spec.shares[{i}].userQuota"), limit)?;
        rows.push(IdentityQuotaSettings {
            scope: "default-user".into(),
            id: None,
            who: "every user".into(),
            limit_bytes,
        });
    }
    for (j, q) in share.quotas.iter().flatten().enumerate() {
        let field = format!("spec.shares[{i}].quotas[{j}]");
        let (scope, name, id) = match (&q.user, &q.group) {
            (Some(user), None) => {
                let found = spec.users.iter().flatten().find(|u| &u.name == user);
                ("user", user, found.and_then(|u| u.uid))
            }
            (None, Some(group)) => {
                let found = spec.groups.iter().flatten().find(|g| &g.name == group);
                ("group", group, found.and_then(|g| g.gid))
            }
            _ => return Err(invalid(&field, "names exactly one of user or group")),
        };
        let id = id.ok_or_else(|| {
            invalid(
                &field,
                format!(
                    "{scope} {name:?} is not in spec.{scope}s with a {}",
                    if scope == "user" { "uid" } else { "gid" }
                ),
            )
        })?;
        let limit_bytes = size(format!("{field}.limit"), &q.limit)?;
        rows.push(IdentityQuotaSettings { scope: scope.into(), id: Some(id), who: name.clone(), limit_bytes });
    }
    Ok(Some(rows))
}

/// `spec.shares[i].nfs` as DittoFS's per-share NFS config, and its allowed clients as the members
/// of the netgroup `clients-<share>` the config names.
#[allow(clippy::type_complexity)]
fn share_nfs(
    share: &crate::crd::ShareSpec,
    i: usize,
) -> Result<(BTreeMap<String, serde_json::Value>, Option<Vec<ClientSettings>>), ContextError> {
    let mut config = BTreeMap::new();
    let Some(nfs) = &share.nfs else { return Ok((config, None)) };
    let mut set = |key: &str, value: Option<serde_json::Value>| {
        if let Some(value) = value {
            config.insert(key.to_string(), value);
        }
    };
    set("squash", nfs.squash.map(|s| serde_json::json!(wire_name(&s))));
    set("anonymous_uid", nfs.anonymous_uid.map(|u| serde_json::json!(u)));
    set("anonymous_gid", nfs.anonymous_gid.map(|g| serde_json::json!(g)));
    set("allow_auth_sys", nfs.allow_auth_sys.map(|b| serde_json::json!(b)));
    set("require_kerberos", nfs.require_kerberos.map(|b| serde_json::json!(b)));
    set("min_kerberos_level", nfs.min_kerberos_level.map(|l| serde_json::json!(wire_name(&l))));
    let Some(clients) = &nfs.allowed_clients else { return Ok((config, None)) };
    let mut members = Vec::new();
    for (j, client) in clients.iter().enumerate() {
        let kind = if client.contains('/') {
            client.parse::<ipnet_like::Cidr>().map(|_| "cidr")
        } else if client.parse::<std::net::IpAddr>().is_ok() {
            Ok("ip")
        } else if !client.is_empty() && client.len() <= 253 && client.split('.').all(host_label) {
            Ok("hostname")
        } else {
            Err(())
        };
        let kind = kind.map_err(|_| {
            invalid(
                &format!("spec.shares[{i}].nfs.allowedClients[{j}]"),
                format!("{client:?} is not an IP address, a CIDR or a host name"),
            )
        })?;
        members.push(ClientSettings { kind: kind.into(), value: client.clone() });
    }
    config.insert("netgroup".into(), serde_json::json!(format!("clients-{}", &share.name[1..])));
    Ok((config, Some(members)))
}

fn host_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// CIDR parsing without a crate: an address, `/`, a prefix length no longer than it.
mod ipnet_like {
    pub struct Cidr;

    impl std::str::FromStr for Cidr {
        type Err = ();
        fn from_str(text: &str) -> Result<Self, ()> {
            let (address, prefix) = text.split_once('/').ok_or(())?;
            let address: std::net::IpAddr = address.parse().map_err(|_| ())?;
            let prefix: u8 = prefix.parse().map_err(|_| ())?;
            let most = if address.is_ipv4() { 32 } else { 128 };
            if prefix <= most { Ok(Cidr) } else { Err(()) }
        }
    }
}

/// One share grant, naming a declared user or group.
fn grant(spec: &DittoServerSpec, g: &crate::crd::ShareGrant) -> Result<GrantSettings, String> {
    let (kind, name, declared) = match (&g.user, &g.group) {
        (Some(user), None) => ("user", user, spec.users.iter().flatten().any(|u| &u.name == user)),
        (None, Some(group)) => ("group", group, spec.groups.iter().flatten().any(|x| &x.name == group)),
        _ => return Err("names exactly one of user or group".into()),
    };
    if !declared {
        return Err(format!("{kind} {name:?} is not in spec.{kind}s"));
    }
    Ok(GrantSettings { kind: kind.into(), name: name.clone(), level: wire_name(&g.level) })
}

/// `spec.users` and `spec.groups` with defaults. The CRD's rules refuse the same mistakes; these
/// checks hold for a values override of the operator's account name too.
fn access(
    spec: &DittoServerSpec,
    v: &crate::values::RuntimeValues,
) -> Result<(Vec<UserSettings>, Vec<GroupSettings>), ContextError> {
    let groups: Vec<GroupSettings> =
        spec.groups.iter().flatten().map(|g| GroupSettings { name: g.name.clone(), gid: g.gid }).collect();
    let mut users = Vec::new();
    for (i, u) in spec.users.iter().flatten().enumerate() {
        if u.name == v.operator_user || u.name == "admin" {
            return Err(invalid(
                &format!("spec.users[{i}].name"),
                format!("{:?} is the operator's own account or the bootstrap admin, not managed here", u.name),
            ));
        }
        if let Some(g) = u.groups.iter().flatten().find(|g| !groups.iter().any(|x| &x.name == *g)) {
            return Err(invalid(&format!("spec.users[{i}].groups"), format!("{g:?} is not a group of spec.groups")));
        }
        users.push(UserSettings {
            name: u.name.clone(),
            password: SecretKeyRef {
                name: u.password_secret_ref.name.clone(),
                key: u.password_secret_ref.key.clone().unwrap_or_else(|| "password".into()),
            },
            uid: u.uid,
            gid: u.gid,
            groups: u.groups.clone().unwrap_or_default(),
            role: u.role.map_or_else(|| "user".into(), |r| wire_name(&r)),
            enabled: u.enabled.unwrap_or(true),
        });
    }
    if let Some((i, name)) = spec
        .delete_users
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, n)| **n == v.operator_user || *n == "admin" || users.iter().any(|u| &u.name == *n))
    {
        return Err(invalid(
            &format!("spec.deleteUsers[{i}]"),
            format!("{name:?} is the operator's account, the bootstrap admin, or a user of spec.users"),
        ));
    }
    if let Some((i, name)) = spec.delete_groups.iter().flatten().enumerate().find(|(_, n)| {
        groups.iter().any(|g| &g.name == *n) || crate::render::desired::SYSTEM_GROUPS.contains(&n.as_str())
    }) {
        return Err(invalid(
            &format!("spec.deleteGroups[{i}]"),
            format!("{name:?} is a group of spec.groups or one of DittoFS's own"),
        ));
    }
    Ok((users, groups))
}

/// An enum's spelling in the CR (`read-write`, `badger`).
fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// The operator-level defaults may move ports the CRD's CEL rules assume, so check again here.
fn check_distinct_ports(ports: &Ports, smb: bool, metrics: bool, portmapper: bool) -> Result<(), ContextError> {
    let mut used: Vec<(&str, i32)> = vec![("spec.controlPlane.port", ports.api), ("spec.nfsPort", ports.nfs)];
    if portmapper {
        used.push(("spec.nfs.portmapper (pod port)", ports.portmapper));
    }
    if smb {
        used.push(("spec.smb.port", ports.smb));
    }
    if metrics {
        used.push(("spec.metrics.port", ports.metrics));
    }
    for (i, (field, port)) in used.iter().enumerate() {
        if let Some((other, _)) = used[..i].iter().find(|(_, p)| p == port) {
            return Err(invalid(field, format!("port {port} is already used by {other}")));
        }
    }
    Ok(())
}

fn storage(spec: &DittoServerSpec, values: &Values) -> Storage {
    let s = &spec.storage;
    let mut claims = vec![
        Claim {
            name: "controlplane".into(),
            mount_path: "/data/controlplane".into(),
            size: s.control_plane_size.clone(),
        },
        Claim { name: "metadata".into(), mount_path: "/data/store/metadata".into(), size: s.metadata_size.clone() },
    ];
    if let Some(size) = &s.content_size {
        claims.push(Claim { name: "content".into(), mount_path: "/data/store/block".into(), size: size.clone() });
    }
    if let Some(size) = &s.cache_size {
        claims.push(Claim { name: "cache".into(), mount_path: "/data/cache".into(), size: size.clone() });
    }
    Storage {
        claims,
        storage_class_name: s.storage_class_name.clone(),
        access_mode: values.storage.access_mode.clone(),
    }
}

fn database(spec: &DittoServerSpec, values: &Values, discovered: &Discovered) -> Result<Database, ContextError> {
    let db = spec.database.clone().unwrap_or_default();
    let sqlite_path = db.sqlite.and_then(|s| s.path).unwrap_or_else(|| values.database.sqlite.path.clone());
    let wants_postgres = db.postgres_secret_ref.is_some()
        || db.percona.is_some()
        || spec.percona.as_ref().is_some_and(|p| p.enabled)
        || db.db_type == Some(DatabaseType::Postgres);
    if !wants_postgres {
        return Ok(Database { db_type: DatabaseType::Sqlite, sqlite_path, postgres: None });
    }
    // The operator-created cluster may not exist yet: only its own template renders then.
    if discovered.postgres.is_none() && !spec.percona.as_ref().is_some_and(|p| p.enabled) {
        return Err(invalid(
            "spec.database",
            "PostgreSQL connection not resolved yet (its Secret or cluster is not available)",
        ));
    }
    Ok(Database { db_type: DatabaseType::Postgres, sqlite_path, postgres: discovered.postgres.clone() })
}

fn credentials(spec: &DittoServerSpec, names: &Names, discovered: &Discovered) -> Credentials {
    let identity = spec.identity.clone().unwrap_or_default();
    let jwt_ref = identity.jwt.and_then(|j| j.secret_ref);
    let admin_ref = identity.admin.and_then(|a| a.password_secret_ref);
    Credentials {
        jwt: match &jwt_ref {
            Some(r) => SecretKeyRef { name: r.name.clone(), key: r.key.clone().unwrap_or_else(|| "jwt-secret".into()) },
            None => SecretKeyRef { name: names.jwt_secret.clone(), key: "jwt-secret".into() },
        },
        admin_password: match &admin_ref {
            Some(r) => SecretKeyRef { name: r.name.clone(), key: r.key.clone().unwrap_or_else(|| "password".into()) },
            None => SecretKeyRef { name: names.admin_secret.clone(), key: "password".into() },
        },
        // Only when the operator creates the Secret now: an existing one is never re-rendered.
        generated_jwt_secret: if jwt_ref.is_none() { discovered.generated.jwt_secret.clone() } else { None },
        generated_admin_password: if admin_ref.is_none() { discovered.generated.admin_password.clone() } else { None },
    }
}

/// The user's container securityContext with the hardened defaults filled in where unset.
fn harden(user: Option<SecurityContext>, defaults: &SecurityContext) -> SecurityContext {
    let Some(mut sc) = user else {
        return defaults.clone();
    };
    sc.allow_privilege_escalation = sc.allow_privilege_escalation.or(defaults.allow_privilege_escalation);
    sc.run_as_non_root = sc.run_as_non_root.or(defaults.run_as_non_root);
    sc.read_only_root_filesystem = sc.read_only_root_filesystem.or(defaults.read_only_root_filesystem);
    sc.capabilities = sc.capabilities.or_else(|| defaults.capabilities.clone());
    // Whatever is added (admission allows NET_BIND_SERVICE only), everything else stays dropped.
    let capabilities = sc.capabilities.get_or_insert_default();
    let drop = capabilities.drop.get_or_insert_default();
    if !drop.iter().any(|c| c == "ALL") {
        drop.insert(0, "ALL".into());
    }
    sc.seccomp_profile = sc.seccomp_profile.or_else(|| defaults.seccomp_profile.clone());
    sc
}

/// The user's pod security context over the defaults, field by field: a field the user sets wins
/// (whole, as `seccompProfile`), one left unset keeps the default. Setting `fsGroup` alone no
/// longer drops `runAsNonRoot` and the seccomp profile.
fn merge_pod_security(user: Option<&PodSecurityContext>, defaults: &PodSecurityContext) -> PodSecurityContext {
    let Some(user) = user else {
        return defaults.clone();
    };
    let mut merged = serde_json::to_value(defaults).expect("a PodSecurityContext serializes");
    let (Value::Object(merged_fields), Value::Object(user_fields)) =
        (&mut merged, serde_json::to_value(user).expect("a PodSecurityContext serializes"))
    else {
        return user.clone();
    };
    merged_fields.extend(user_fields.into_iter().filter(|(_, v)| !v.is_null()));
    serde_json::from_value(merged).expect("merged fields of two PodSecurityContexts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_cr() {
        let names = Names::for_cr("demo");
        assert_eq!(names.config_map, "demo-config");
        assert_eq!(names.headless_service, "demo-headless");
        assert_eq!(names.file_service, "demo-file");
        assert_eq!(names.api_service, "demo-api");
        assert_eq!(names.metrics_service, "demo-metrics");
        assert_eq!(names.stateful_set, "demo");
        assert_eq!(names.jwt_secret, "demo-jwt-secret");
        assert_eq!(names.admin_secret, "demo-admin-bootstrap-credentials");
    }

    #[test]
    fn clashing_ports_name_the_field() {
        let ports = Ports { api: 8080, nfs: 8080, smb: 12445, metrics: 9090, portmapper: 10111 };
        let err = check_distinct_ports(&ports, true, false, true).unwrap_err().to_string();
        assert!(err.starts_with("spec.nfsPort"), "{err}");
        let ports = Ports { api: 8080, nfs: 12049, smb: 12445, metrics: 12445, portmapper: 10111 };
        assert!(check_distinct_ports(&ports, false, true, true).is_ok(), "SMB off frees its port");
        assert!(
            check_distinct_ports(&ports, true, true, true).unwrap_err().to_string().starts_with("spec.metrics.port")
        );
        let ports = Ports { api: 10111, nfs: 12049, smb: 12445, metrics: 9090, portmapper: 10111 };
        assert!(check_distinct_ports(&ports, true, false, false).is_ok(), "no portmapper frees 10111");
        assert!(
            check_distinct_ports(&ports, true, false, true).unwrap_err().to_string().contains("spec.nfs.portmapper")
        );
    }

    #[test]
    fn user_security_context_cannot_drop_hardening_by_omission() {
        let defaults = crate::values::ValuesBuilder::new().build().unwrap().security_context;
        let user = SecurityContext { run_as_user: Some(1000), ..Default::default() };
        let sc = harden(Some(user), &defaults);
        assert_eq!(sc.run_as_user, Some(1000));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), vec!["ALL".to_string()]);
    }

    #[test]
    fn a_pod_security_context_merges_over_the_defaults_field_by_field() {
        let defaults = crate::values::ValuesBuilder::new().build().unwrap().pod_security_context;
        let user = PodSecurityContext { fs_group: Some(2000), ..Default::default() };
        let merged = merge_pod_security(Some(&user), &defaults);
        assert_eq!(merged.fs_group, Some(2000), "the user's field wins");
        assert_eq!(merged.run_as_non_root, Some(true), "a field left unset keeps the default");
        assert_eq!(merged.run_as_user, Some(65532));
        assert_eq!(merged.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(merge_pod_security(None, &defaults), defaults);
    }

    #[test]
    fn added_capabilities_never_lose_drop_all() {
        let defaults = crate::values::ValuesBuilder::new().build().unwrap().security_context;
        let capabilities = k8s_openapi::api::core::v1::Capabilities {
            add: Some(vec!["NET_BIND_SERVICE".into()]),
            drop: Some(vec!["NET_RAW".into()]),
        };
        let user = SecurityContext { capabilities: Some(capabilities), ..Default::default() };
        let caps = harden(Some(user), &defaults).capabilities.unwrap();
        assert_eq!(caps.add.unwrap(), ["NET_BIND_SERVICE"]);
        assert_eq!(caps.drop.unwrap(), ["ALL", "NET_RAW"]);
    }
}
