//! The `DittoServer` custom resource: Rust types, and the CRD generated from them with the
//! admission rules (OpenAPI + CEL) that reject bad input before the operator sees it.

mod spec;
mod status;
mod validation;

pub use spec::{
    AdapterDiscoverySpec, AdminSpec, ApiServiceSpec, ControlPlaneSpec, DatabaseSpec, DatabaseType, DittoServer,
    DittoServerSpec, FileServiceSpec, GroupSpec, IdMap, IdentityQuota, IdentitySpec, JwtSpec, KerberosLevel,
    KerberosSpec, LdapSpec, LegacyCacheSpec, LocalStoreSpec, LocalStoreType, LogFormat, LogLevel, LoggingSpec,
    MachineAccountSpec, MetadataStoreSpec, MetadataStoreType, MetricsSpec, NetworkPolicySpec, NfsSpec, NfsVersion,
    PasswordSecretRef, PerconaBackupSpec, PerconaRef, PerconaSpec, PullPolicy, S3CredentialsRef, S3Spec, SecretRef,
    ServiceMonitorSpec, ServiceType, ShareGrant, ShareNfsSpec, SharePermission, ShareSmbSpec, ShareSpec, SmbDialect,
    SmbSigning, SmbSpec, SnapshotPolicySpec, SqliteSpec, Squash, StorageSpec, StoresSpec, TemplatesSpec, TrafficPolicy,
    UserRole, UserSpec,
};
pub use status::{AdapterStatus, DatabaseStatus, DittoServerStatus, Endpoints, Phase, QuotaStatus, RuntimeStatus};
pub use validation::{crd, crd_yaml};

impl DittoServer {
    /// Its namespace; `default` for a CR read from a file without one (a stored CR always has
    /// one). Every step reads it through here, so they agree.
    pub fn namespace_or_default(&self) -> String {
        kube::ResourceExt::namespace(self).unwrap_or_else(|| "default".into())
    }
}

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "dittofs-operator";
/// The API group, also the prefix of the operator's own annotations and finalizer.
pub const GROUP: &str = "dittofs.dittofs.com";

/// A key of a Secret, with the spec's default key applied: it reaches DittoFS as an environment
/// variable or a mounted file, and its value feeds the checksum.
#[derive(serde::Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CR stored by a newer operator (after a rollback, say) carries fields this build does not
    /// know: it still decodes, so one such CR cannot make every list and watch fail.
    #[test]
    fn a_cr_with_fields_from_a_newer_operator_still_decodes() {
        let stored = serde_json::json!({
            "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer",
            "metadata": {"name": "files", "namespace": "storage"},
            "spec": {"storage": {"metadataSize": "1Gi", "tier": "future"}, "someNewFeature": {"enabled": true}},
            "status": {"phase": "Running", "newCounter": 3}
        });
        let server: DittoServer = serde_json::from_value(stored).expect("decodes");
        assert_eq!(server.spec.storage.metadata_size, "1Gi");
    }
}
