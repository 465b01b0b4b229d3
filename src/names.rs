//! The names the operator gives and looks for: object names per DittoServer, labels,
//! annotations and the finalizer. A leaf module: everything else imports it, it imports nothing.

/// Label keys shared by every object and pod.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "dittofs-operator";

/// Pod-template annotation carrying the config checksum.
pub const CHECKSUM_ANNOTATION: &str = "dittofs.dittofs.com/config-checksum";
/// Marks objects created once and then left alone (generated credentials).
pub const LIFECYCLE_ANNOTATION: &str = "dittofs.dittofs.com/lifecycle";
pub const LIFECYCLE_CREATE_ONLY: &str = "create-only";
/// The uid of the DittoServer owning an object that carries no owner reference on purpose
/// (the PerconaPGCluster: no garbage collection may delete it).
pub const OWNER_ANNOTATION: &str = "dittofs.dittofs.com/owner-uid";
/// `dittofs.dittofs.com/reconcile: paused` on a DittoServer holds its changes back.
pub const PAUSE_ANNOTATION: &str = "dittofs.dittofs.com/reconcile";
pub const PAUSED: &str = "paused";
/// `dittofs.dittofs.com/on-immutable-change: recreate` on a DittoServer lets the operator
/// re-create its StatefulSet when a change touches an immutable field: deleted with
/// `--cascade=orphan` semantics (the pod and every claim stay), then created anew.
pub const IMMUTABLE_CHANGE_ANNOTATION: &str = "dittofs.dittofs.com/on-immutable-change";
pub const RECREATE: &str = "recreate";
/// `dittofs.dittofs.com/on-store-location-change: repoint` on a DittoServer lets the runtime
/// step point a store that shares use at another bucket, prefix, endpoint, region, path or
/// database (after the user has moved the data there). Without it such a change is refused.
pub const STORE_LOCATION_ANNOTATION: &str = "dittofs.dittofs.com/on-store-location-change";
pub const REPOINT: &str = "repoint";
/// Held on every DittoServer so deletion waits for the operator's cleanup.
pub const FINALIZER: &str = "dittofs.dittofs.com/finalizer";

/// Stand-ins for generated credentials when rendering without a cluster.
pub const OFFLINE_GENERATED: &str = "<generated-by-the-operator-on-create>";

/// The `label=value,…` selector of the objects managed for the DittoServer `cr_name`.
pub fn instance_selector(cr_name: &str) -> String {
    format!("{LABEL_INSTANCE}={cr_name},{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// The labels of [`instance_selector`], as a map.
pub fn instance_labels(cr_name: &str) -> std::collections::BTreeMap<String, String> {
    [(LABEL_INSTANCE.to_string(), cr_name.to_string()), (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into()
}

/// The names of the objects made for one DittoServer.
#[derive(serde::Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    pub config_map: String,
    pub stateful_set: String,
    pub headless_service: String,
    pub file_service: String,
    pub api_service: String,
    pub metrics_service: String,
    pub jwt_secret: String,
    pub admin_secret: String,
    /// The operator's own DittoFS account (`username`, `password`); created once, kept.
    pub operator_secret: String,
    /// The API's CA and serving certificate, generated once unless the spec names its own.
    pub api_tls_secret: String,
    /// NetworkPolicies: the pod's baseline (API and metrics ports) and one per file adapter.
    pub baseline_network_policy: String,
    pub nfs_network_policy: String,
    pub smb_network_policy: String,
    /// The PerconaPGCluster the operator creates for `spec.percona.enabled` (templates see it
    /// as `computed.percona.name`).
    #[serde(skip)]
    pub percona_cluster: String,
}

impl Names {
    /// `Kind/name` of the objects no template may leave out and pruning never deletes: the
    /// workload and its config.
    pub fn core_objects(&self) -> [String; 2] {
        [format!("StatefulSet/{}", self.stateful_set), format!("ConfigMap/{}", self.config_map)]
    }

    pub fn for_cr(name: &str) -> Self {
        Self {
            config_map: format!("{name}-config"),
            stateful_set: name.to_string(),
            headless_service: format!("{name}-headless"),
            file_service: format!("{name}-file"),
            api_service: format!("{name}-api"),
            metrics_service: format!("{name}-metrics"),
            jwt_secret: format!("{name}-jwt-secret"),
            admin_secret: format!("{name}-admin-bootstrap-credentials"),
            operator_secret: format!("{name}-operator-credentials"),
            api_tls_secret: format!("{name}-api-tls"),
            baseline_network_policy: format!("{name}-baseline"),
            nfs_network_policy: format!("{name}-adapter-nfs"),
            smb_network_policy: format!("{name}-adapter-smb"),
            percona_cluster: format!("{name}-postgres"),
        }
    }

    /// What follows a DittoServer's name in the names of its objects (`-config`, `-api`, …;
    /// not the StatefulSet's, which is the name itself).
    pub fn suffixes() -> [&'static str; 13] {
        [
            "-config",
            "-headless",
            "-file",
            "-api",
            "-metrics",
            "-jwt-secret",
            "-admin-bootstrap-credentials",
            "-operator-credentials",
            "-api-tls",
            "-baseline",
            "-adapter-nfs",
            "-adapter-smb",
            "-postgres",
        ]
    }
}

/// `spec.image` as the earlier operator's CRD defaulted it, stored in CRs it admitted: treated as
/// unset (the operator's pinned release), and said so in `ConfigReady`. `docker.io/marmos91c/dittofs:latest`
/// still asks for latest.
pub const EARLIER_DEFAULT_IMAGE: &str = "marmos91c/dittofs:latest";

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn every_name_but_the_statefulsets_ends_in_a_listed_suffix() {
        let n = Names::for_cr("x");
        let names = [
            &n.config_map,
            &n.headless_service,
            &n.file_service,
            &n.api_service,
            &n.metrics_service,
            &n.jwt_secret,
            &n.admin_secret,
            &n.operator_secret,
            &n.api_tls_secret,
            &n.baseline_network_policy,
            &n.nfs_network_policy,
            &n.smb_network_policy,
            &n.percona_cluster,
        ];
        let suffixes: Vec<String> = names.iter().map(|name| name.strip_prefix('x').unwrap().to_string()).collect();
        assert_eq!(suffixes, Names::suffixes());
    }
}
