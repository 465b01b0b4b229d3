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
mod runtime;

use crate::crd::{DatabaseType, DittoServer, DittoServerSpec, LogFormat, ServiceType, TrafficPolicy};
use crate::discover::{Discovered, PostgresConnection};
use crate::identity::Directory;
use crate::names::*;
use crate::values::{ProbeSet, Values, WaitForPostgresValues};
use runtime::RuntimeSettings;

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
        let namespace = cr.namespace_or_default();
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

    let (labels, selector_labels) = labels(name, values);

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

    let (image, image_pull_policy) = image(spec, values);

    let api = spec.service.clone().unwrap_or_default();
    let file_service = file_service(spec, values, smb_enabled)?;

    let network_policy = super::reach::network_policy(spec, values, &file_service);
    let clients = super::reach::clients(&file_service, &network_policy, namespace);

    let storage = storage(spec, values);
    let database = database(spec, values, discovered)?;
    let runtime = runtime::runtime(spec, values, &storage, &database)?;
    let credentials = credentials(spec, &names, discovered);

    let (log_level, log_format, log_output) = logging(spec, values);
    let (shutdown_timeout, termination_grace_period_seconds) = shutdown(spec, values)?;

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
        log_output,
        shutdown_timeout,
        pre_stop_seconds: values.grace_period.pre_stop_seconds,
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
        percona: percona_cluster(spec, values, discovered, name),
        runtime,
        directory: Directory::of(spec),
        api_tls: api_tls(spec, name),
        config_yaml: String::new(),
        checksum: String::new(),
    })
}

/// The common labels with the operator's, and the pod selector.
fn labels(name: &str, values: &Values) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
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
    (labels, selector_labels)
}

/// The image and its pull policy.
fn image(spec: &DittoServerSpec, values: &Values) -> (String, String) {
    // The earlier CRD stored its default into every CR; it means "unset", not a wish for latest.
    let image = spec
        .image
        .clone()
        .filter(|i| i != crate::names::EARLIER_DEFAULT_IMAGE)
        .unwrap_or_else(|| format!("{}:{}", values.image.repository, values.image.tag));
    let pull_policy = match spec.image_pull_policy {
        Some(p) => serde_json::to_value(p).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        None => values.image.pull_policy.clone(),
    };
    (image, pull_policy)
}

/// The Service clients mount through.
fn file_service(
    spec: &DittoServerSpec,
    values: &Values,
    smb_enabled: bool,
) -> Result<FileServiceSettings, ContextError> {
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
    Ok(file_service)
}

/// Log level, format and output.
fn logging(spec: &DittoServerSpec, values: &Values) -> (String, String, String) {
    let logging = spec.logging.clone().unwrap_or_default();
    let level = match logging.level {
        Some(level) => serde_json::to_value(level).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        None => values.logging.level.to_uppercase(),
    };
    let format = match logging.format {
        Some(LogFormat::Text) => "text".to_string(),
        Some(LogFormat::Json) => "json".to_string(),
        None => values.logging.format.clone(),
    };
    (level, format, logging.output.unwrap_or_else(|| "stdout".into()))
}

/// DittoFS's shutdown timeout, and the pod's grace period that leaves room for it.
fn shutdown(spec: &DittoServerSpec, values: &Values) -> Result<(String, i64), ContextError> {
    let shutdown_timeout = spec.shutdown_timeout.clone().unwrap_or_else(|| values.shutdown_timeout.clone());
    let shutdown_seconds = crate::go_duration::seconds(&shutdown_timeout).ok_or_else(|| {
        invalid("spec.shutdownTimeout", format!("{shutdown_timeout:?} is not a positive Go duration such as 30s"))
    })?;
    let grace = &values.grace_period;
    let termination_grace_period_seconds = spec.termination_grace_period_seconds.unwrap_or_else(|| {
        grace.pre_stop_seconds + grace.shutdown_multiplier * shutdown_seconds.ceil() as i64 + grace.margin_seconds
    });
    Ok((shutdown_timeout, termination_grace_period_seconds))
}

/// The PerconaPGCluster the operator creates (`spec.percona.enabled`).
fn percona_cluster(
    spec: &DittoServerSpec,
    values: &Values,
    discovered: &Discovered,
    name: &str,
) -> Option<PerconaCluster> {
    let p = spec.percona.as_ref().filter(|p| p.enabled)?;
    // An existing cluster keeps its major version (and the image that goes with it).
    let pinned = discovered.pinned_postgres.as_ref();
    Some(PerconaCluster {
        name: Names::for_cr(name).percona_cluster,
        cr_version: values.percona.cr_version.clone(),
        image: pinned.map_or_else(|| values.percona.image.clone(), |p| p.image.clone()),
        postgres_version: pinned.map_or(values.percona.postgres_version, |p| p.version),
        replicas: p.replicas.unwrap_or(values.percona.replicas),
        storage_size: p.storage_size.clone().unwrap_or_else(|| values.percona.storage_size.clone()),
        storage_class_name: p.storage_class_name.clone(),
        database_name: p.database_name.clone().unwrap_or_else(|| values.percona.database_name.clone()),
        user: "dittofs".into(),
        backup: p.backup.as_ref().filter(|b| b.enabled).map(|b| PerconaBackup::of(b, &values.percona.backup, name)),
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
