//! Everything one pass reads before it decides, gathered once: by the controller and by `diff`
//! from the cluster, by `render` from its input file. The rule for a database that is not ready
//! yet ([`Gathered::database_gate`]) lives here, so all three follow it alike.
//!
//! Checks of whether the cluster can take the rendered objects (a StorageClass, the CRD of an
//! optional kind, someone else's object in the way) are not inputs to rendering: the controller's
//! sync step makes them after rendering.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, ApiResource};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::cache::Reads;
use crate::crd::DittoServer;
use crate::discover::{self, DiscoverError, Discovered, PostgresConnection, SecretsByName};
use crate::names::Names;
use crate::overrides::{self, Blocked, Effective};
use crate::percona::{self, NotReady, Target};
use crate::settings::Settings;
use crate::values::Values;

/// A read from the cluster failed; says what was being read.
#[derive(Debug, thiserror::Error)]
#[error("reading {what}: {source}")]
pub struct ReadError {
    pub what: String,
    #[source]
    pub source: kube::Error,
}

/// Wraps a failed read so the error names what was being read.
pub fn read_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReadError {
    let what = what.into();
    move |source| ReadError { what, source }
}

/// The Percona cluster a DittoServer's database lives in, and what was found of it.
#[derive(Clone)]
pub struct PerconaFound {
    pub target: Target,
    /// The connection and the password (for the checksum), or why the database is not ready.
    pub found: Result<(PostgresConnection, Vec<u8>), NotReady>,
    /// The cluster as found, for an operator-created one (its PostgreSQL version is kept).
    pub cluster: Option<Value>,
}

/// What one pass read, before any decision.
pub struct Gathered {
    /// The templates and values in effect, or why the overrides cannot be used (then nothing
    /// else is read).
    pub overrides: Result<Effective, Blocked>,
    /// The Secrets the DittoServer references, as found (absent ones are left out).
    pub secrets: SecretsByName,
    /// The Percona cluster, when the DittoServer uses one.
    pub percona: Option<PerconaFound>,
    /// The operator's checksum key (empty offline).
    pub checksum_key: Vec<u8>,
    /// This DittoServer's DittoFS has started before (its StatefulSet or metadata claim exists). Only looked at when the admin Secret the operator generates is missing: then a
    /// new password would not match the one DittoFS keeps.
    pub has_run: bool,
}

impl std::fmt::Debug for PerconaFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found = self.found.as_ref().map(|(connection, _password)| (connection, crate::redact::Hidden));
        f.debug_struct("PerconaFound")
            .field("target", &self.target)
            .field("found", &found)
            .field("cluster", &self.cluster.as_ref().map(|_| "…"))
            .finish()
    }
}

impl std::fmt::Debug for Gathered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathered")
            .field("overrides", &self.overrides)
            .field("secrets (names)", &crate::redact::keys(&self.secrets))
            .field("percona", &self.percona)
            .field("checksum_key", &crate::redact::Bytes(self.checksum_key.len()))
            .field("has_run", &self.has_run)
            .finish()
    }
}

/// What the database lets this pass do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DatabaseGate<'a> {
    /// No Percona cluster, or a ready one: render and apply everything.
    Open,
    /// The cluster the operator creates is not ready: apply only it, hold the rest.
    DatabaseOnly(&'a NotReady),
    /// Not ready, and nothing the operator could apply helps: hold everything.
    Closed(&'a NotReady),
}

impl Gathered {
    /// Reads the override ConfigMaps, the referenced Secrets and the Percona cluster.
    pub async fn from_cluster(
        reads: Reads<'_>,
        settings: &Settings,
        server: &DittoServer,
        checksum_key: Vec<u8>,
    ) -> Result<Self, ReadError> {
        let namespace = server.namespace_or_default();
        let overrides =
            overrides::resolve(reads, settings, server).await.map_err(read_error("template override ConfigMaps"))?;
        if overrides.is_err() {
            return Ok(Self { overrides, secrets: SecretsByName::new(), percona: None, checksum_key, has_run: false });
        }
        let secrets = fetch_secrets(reads, server, &namespace).await?;
        let percona = match percona::target(&server.spec, &server.name_any()) {
            Some(target) => {
                let (cluster, found) = percona::resolve(reads, &namespace, &target)
                    .await
                    .map_err(read_error(format!("PerconaPGCluster/{}", target.cluster)))?;
                let cluster = cluster.filter(|_| target.owned);
                Some(PerconaFound { target, found, cluster })
            }
            None => None,
        };
        let admin_missing = discover::generated_admin_secret(&server.spec, &server.name_any())
            .is_some_and(|name| !secrets.contains_key(&name));
        let has_run = admin_missing && has_run(reads, server, &namespace).await?;
        Ok(Self { overrides, secrets, percona, checksum_key, has_run })
    }

    /// `render`'s input file stands in for the cluster: its Secrets and PerconaPGClusters (by name).
    pub fn from_file(
        server: &DittoServer,
        secrets: &SecretsByName,
        clusters: &std::collections::BTreeMap<String, Value>,
        effective: Effective,
    ) -> Self {
        let namespace = server.namespace_or_default();
        let percona = percona::target(&server.spec, &server.name_any()).map(|target| {
            let cluster = clusters.get(&target.cluster);
            let found = percona::evaluate(&target, &namespace, true, cluster, secrets);
            let cluster = cluster.filter(|_| target.owned).cloned();
            PerconaFound { target, found, cluster }
        });
        Self { overrides: Ok(effective), secrets: secrets.clone(), percona, checksum_key: Vec::new(), has_run: false }
    }

    /// The discovered data rendering needs, with the database's connection once it is ready.
    /// `generate` makes fresh credentials for the Secrets the operator creates (only when they
    /// will be created now: a held-back pass must stay deterministic).
    pub fn discover(&self, server: &DittoServer, values: &Values, generate: bool) -> Result<Discovered, DiscoverError> {
        let mut discovered = discover::resolve(
            &server.spec,
            &server.name_any(),
            &server.namespace_or_default(),
            values,
            &self.secrets,
            generate,
        )?;
        discovered.checksum_key = self.checksum_key.clone();
        if let Some(PerconaFound { found: Ok((connection, password)), .. }) = &self.percona {
            percona::attach(&mut discovered, connection.clone(), password.clone());
        }
        if let Some(PerconaFound { cluster: Some(cluster), .. }) = &self.percona {
            discovered.pinned_postgres = percona::pinned_postgres(cluster, values.percona.postgres_version);
        }
        Ok(discovered)
    }

    /// The one rule for a database that is not ready: the cluster the operator creates (where
    /// its CRD is installed) is applied alone; anything else holds.
    pub fn database_gate(&self) -> DatabaseGate<'_> {
        match &self.percona {
            None | Some(PerconaFound { found: Ok(_), .. }) => DatabaseGate::Open,
            Some(PerconaFound { target, found: Err(not_ready), .. }) => {
                if target.owned && not_ready.reason != "PerconaNotInstalled" {
                    DatabaseGate::DatabaseOnly(not_ready)
                } else {
                    DatabaseGate::Closed(not_ready)
                }
            }
        }
    }
}

/// Whether DittoFS has started for this DittoServer before: its StatefulSet or its metadata
/// claim exists (a DittoServer re-created with the same name finds its kept claims). Not the
/// status: a paused or `--dry-run` pass reports a checksum without anything having run.
async fn has_run(reads: Reads<'_>, server: &DittoServer, namespace: &str) -> Result<bool, ReadError> {
    let names = Names::for_cr(&server.name_any());
    let sts = ApiResource::erase::<StatefulSet>(&());
    if reads.exists(&sts, namespace, &names.stateful_set).await.map_err(read_error("StatefulSet"))? {
        return Ok(true);
    }
    let claim = format!("metadata-{}-0", names.stateful_set);
    let claims = ApiResource::erase::<PersistentVolumeClaim>(&());
    reads.exists(&claims, namespace, &claim).await.map_err(read_error(format!("PersistentVolumeClaim/{claim}")))
}

/// The Secret holding the operator's checksum key, one in each namespace with DittoServers:
/// whoever may read it may read the Secrets the checksum covers anyway.
pub const CHECKSUM_KEY_SECRET: &str = "dittofs-operator-checksum-key";
const CHECKSUM_KEY: &str = "key";

/// The Secret that holds a namespace's checksum key (created by the controller's writes).
pub fn checksum_key_secret(key: &[u8]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(CHECKSUM_KEY_SECRET.into());
    secret.metadata.labels =
        Some([(crate::names::LABEL_MANAGED_BY.to_string(), crate::names::MANAGED_BY.to_string())].into());
    secret.data = Some([(CHECKSUM_KEY.to_string(), k8s_openapi::ByteString(key.to_vec()))].into());
    secret
}

/// The operator's checksum key, if it exists (`diff` only reads it).
pub async fn read_checksum_key(client: &Client, namespace: &str) -> Result<Option<Vec<u8>>, ReadError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(CHECKSUM_KEY_SECRET)
        .await
        .map_err(read_error(format!("Secret {namespace}/{CHECKSUM_KEY_SECRET}")))?;
    Ok(secret.and_then(|s| s.data?.remove(CHECKSUM_KEY)).map(|b| b.0).filter(|k| !k.is_empty()))
}

/// The Secrets a DittoServer reads, as they are now (absent ones are left out).
pub async fn fetch_secrets(
    reads: Reads<'_>,
    server: &DittoServer,
    namespace: &str,
) -> Result<SecretsByName, ReadError> {
    let mut secrets = SecretsByName::new();
    for name in discover::referenced_secret_names(&server.spec, &server.name_any()) {
        if let Some(secret) =
            reads.get::<Secret>(namespace, &name).await.map_err(read_error(format!("Secret/{name}")))?
        {
            secrets.insert(name, secret);
        }
    }
    Ok(secrets)
}
