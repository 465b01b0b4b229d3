//! PerconaPGCluster (pgv2.percona.com/v2) as DittoFS's control-plane database: which cluster a
//! DittoServer uses, whether it is ready, and the connection read from its user Secret's
//! discrete keys (never its URIs). Percona clusters accept TLS only, so `sslmode` is `require`.

use crate::cache::Reads;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::ApiResource;
use serde_json::Value;

use crate::crd::DittoServerSpec;
use crate::crd::SecretKeyRef;
use crate::discover::{Discovered, PinnedPostgres, PostgresConnection, SecretsByName};
use crate::kinds::Kind;

pub const CRD_NAME: &str = match Kind::PerconaPGCluster.optional_crd() {
    Some(name) => name,
    None => panic!("PerconaPGCluster is an optional kind"),
};
/// `spec.percona.enabled` with `deleteWithServer: true`: the cluster the operator created goes
/// with the server; otherwise it is kept when the server is deleted.
pub fn deleted_with_server(spec: &crate::crd::DittoServerSpec) -> bool {
    spec.percona.as_ref().is_some_and(|p| p.enabled && p.delete_with_server == Some(true))
}

/// Label Percona puts on user Secrets (they carry no owner reference).
pub const CLUSTER_LABEL: &str = "postgres-operator.crunchydata.com/cluster";

pub fn api_resource() -> ApiResource {
    Kind::PerconaPGCluster.resource()
}

/// The cluster a DittoServer's database lives in.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub cluster: String,
    pub user: Option<String>,
    pub database: Option<String>,
    /// `spec.percona.enabled`: the operator creates `<name>-postgres` itself.
    pub owned: bool,
}

pub fn target(spec: &DittoServerSpec, cr_name: &str) -> Option<Target> {
    if let Some(p) = spec.database.as_ref().and_then(|d| d.percona.as_ref()) {
        return Some(Target {
            cluster: p.cluster_name.clone(),
            user: p.user.clone(),
            database: p.database.clone(),
            owned: false,
        });
    }
    spec.percona.as_ref().filter(|p| p.enabled).map(|p| Target {
        cluster: crate::names::Names::for_cr(cr_name).percona_cluster,
        user: Some("dittofs".into()),
        // Unset: the user Secret's dbname, i.e. the database the template declared from values.
        database: p.database_name.clone(),
        owned: true,
    })
}

/// Why the database cannot be used yet; becomes `DatabaseReady=False` and holds the rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct NotReady {
    pub reason: &'static str,
    pub message: String,
}

fn not_ready(reason: &'static str, message: String) -> NotReady {
    NotReady { reason, message }
}

/// The user Secret's name: `users[].secretName`, else `<cluster>-pguser-<user>`; the user is the
/// one asked for, else the first declared, else the default user named after the cluster.
pub fn user_and_secret(target: &Target, cluster: &Value) -> (String, String) {
    let users = cluster.pointer("/spec/users").and_then(Value::as_array).cloned().unwrap_or_default();
    let user = target
        .user
        .clone()
        .or_else(|| users.first().and_then(|u| u["name"].as_str()).map(String::from))
        .unwrap_or_else(|| target.cluster.clone());
    let secret = users
        .iter()
        .find(|u| u["name"].as_str() == Some(user.as_str()))
        .and_then(|u| u["secretName"].as_str())
        .map(String::from)
        .unwrap_or_else(|| format!("{}-pguser-{user}", target.cluster));
    (user, secret)
}

/// Decides readiness and the connection from what was found. Pure, for tests and `render`.
pub fn evaluate(
    target: &Target,
    namespace: &str,
    crd_installed: bool,
    cluster: Option<&Value>,
    secrets: &SecretsByName,
) -> Result<(PostgresConnection, Vec<u8>), NotReady> {
    let name = &target.cluster;
    if !crd_installed {
        return Err(not_ready(
            "PerconaNotInstalled",
            format!(
                "the PerconaPGCluster CRD ({CRD_NAME}) is not installed: install the Percona Operator for PostgreSQL"
            ),
        ));
    }
    let Some(cluster) = cluster else {
        let hint = if target.owned { " yet: the operator is creating it" } else { "" };
        return Err(not_ready(
            "PerconaClusterNotFound",
            format!("PerconaPGCluster {namespace}/{name} not found{hint}"),
        ));
    };
    let state = cluster.pointer("/status/state").and_then(Value::as_str).unwrap_or("");
    let generation = cluster.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let observed = cluster.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
    if state != "ready" {
        let state = if state.is_empty() { "not reported yet" } else { state };
        return Err(not_ready(
            "PerconaNotReady",
            format!("PerconaPGCluster {name} is {state} (status.state); waiting for ready"),
        ));
    }
    if observed < generation {
        return Err(not_ready(
            "PerconaNotReady",
            format!(
                "PerconaPGCluster {name}: its status (generation {observed}) has not caught up with its spec (generation {generation})"
            ),
        ));
    }
    let (user, secret_name) = user_and_secret(target, cluster);
    let Some(secret) = secrets.get(&secret_name) else {
        return Err(not_ready(
            "PerconaSecretMissing",
            format!("user Secret {secret_name} of PerconaPGCluster {name} not found"),
        ));
    };
    let mut data: std::collections::BTreeMap<String, Vec<u8>> =
        secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    // stringData exists only on objects not yet written (render's input file).
    data.extend(secret.string_data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
    let text =
        |key: &str| data.get(key).map(|v| String::from_utf8_lossy(v).trim().to_string()).filter(|v| !v.is_empty());
    let missing =
        |key: &str| not_ready("PerconaSecretIncomplete", format!("user Secret {secret_name} has no key {key:?}"));
    let host = text("host").ok_or_else(|| missing("host"))?;
    let port = text("port").ok_or_else(|| missing("port"))?;
    let port: i32 = port.parse().map_err(|_| {
        not_ready("PerconaSecretIncomplete", format!("key \"port\" of user Secret {secret_name} is not a port number"))
    })?;
    let database = target.database.clone().or_else(|| text("dbname")).ok_or_else(|| missing("dbname"))?;
    let password = data.get("password").cloned().ok_or_else(|| missing("password"))?;
    let connection = PostgresConnection {
        host,
        port,
        database,
        user: text("user").unwrap_or(user),
        sslmode: "require".into(),
        password_secret: SecretKeyRef { name: secret_name, key: "password".into() },
    };
    Ok((connection, password))
}

/// The PostgreSQL major version and image a live cluster runs, when its major version differs
/// from `default_version`: an operator upgrade with a newer default must not start a major
/// upgrade of an existing cluster (Percona does that only through its own procedure).
pub fn pinned_postgres(cluster: &Value, default_version: i32) -> Option<PinnedPostgres> {
    let version = cluster.pointer("/spec/postgresVersion").and_then(Value::as_i64)? as i32;
    let image = cluster.pointer("/spec/image").and_then(Value::as_str)?.to_string();
    (version != default_version).then_some(PinnedPostgres { version, image })
}

/// Reads the cluster and its user Secret from the API server, then [`evaluate`]s. Also returns
/// the cluster as found.
pub async fn resolve(
    reads: Reads<'_>,
    namespace: &str,
    target: &Target,
) -> Result<(Option<Value>, Result<(PostgresConnection, Vec<u8>), NotReady>), kube::Error> {
    let installed = reads.exists(&ApiResource::erase::<CustomResourceDefinition>(&()), "", CRD_NAME).await?;
    let cluster = if installed {
        reads.value(&api_resource(), namespace, &target.cluster).await?.map(|v| Value::clone(&v))
    } else {
        None
    };
    let mut secrets = SecretsByName::new();
    if let Some(cluster) = &cluster {
        let (_, secret_name) = user_and_secret(target, cluster);
        if let Some(secret) = reads.get::<Secret>(namespace, &secret_name).await? {
            secrets.insert(secret.name_any(), secret);
        }
    }
    let found = evaluate(target, namespace, installed, cluster.as_ref(), &secrets);
    Ok((cluster, found))
}

/// Puts a resolved connection into the discovered data (the password only feeds the checksum).
pub fn attach(discovered: &mut Discovered, connection: PostgresConnection, password: Vec<u8>) {
    let secret = connection.password_secret.clone();
    discovered.secret_data.entry(secret.name).or_default().insert(secret.key, password);
    discovered.postgres = Some(connection);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target { cluster: "cluster1".into(), user: None, database: None, owned: false }
    }

    fn fixture_secret() -> SecretsByName {
        let text = include_str!("../tests/fixtures/percona/pguser-secret.example.yaml");
        let secret: Secret = serde_saphyr::from_str(text).unwrap();
        SecretsByName::from([(secret.name_any(), secret)])
    }

    fn cluster(state: &str) -> Value {
        json!({"metadata": {"name": "cluster1", "generation": 1},
               "spec": {"users": [{"name": "app", "databases": ["app"]}]},
               "status": {"state": state, "observedGeneration": 1}})
    }

    #[test]
    fn ready_cluster_gives_a_tls_connection_from_the_discrete_keys() {
        let (c, password) = evaluate(&target(), "default", true, Some(&cluster("ready")), &fixture_secret()).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.database.as_str(), c.user.as_str()),
            ("cluster1-primary.default.svc", 5432, "app", "app")
        );
        assert_eq!(c.sslmode, "require");
        assert_eq!(c.password_secret, SecretKeyRef { name: "cluster1-pguser-app".into(), key: "password".into() });
        assert_eq!(
            password,
            b"Y:NTLyKXHRB4aQtac-+6UJ4>".to_vec(),
            "the password with its special characters, not a decoded URI"
        );
    }

    #[test]
    fn not_ready_states_say_why() {
        let secrets = fixture_secret();
        let reason = |crd, c: Option<&Value>| evaluate(&target(), "default", crd, c, &secrets).unwrap_err().reason;
        assert_eq!(reason(false, None), "PerconaNotInstalled");
        assert_eq!(reason(true, None), "PerconaClusterNotFound");
        assert_eq!(reason(true, Some(&cluster("initializing"))), "PerconaNotReady");
        let mut stale = cluster("ready");
        stale["metadata"]["generation"] = json!(2);
        assert_eq!(reason(true, Some(&stale)), "PerconaNotReady", "status older than the spec");
        assert_eq!(
            evaluate(&target(), "default", true, Some(&cluster("ready")), &SecretsByName::new()).unwrap_err().reason,
            "PerconaSecretMissing"
        );
    }

    #[test]
    fn default_user_is_named_after_the_cluster() {
        let bare = json!({"metadata": {"name": "pg"}, "spec": {}});
        let t = Target { cluster: "pg".into(), user: None, database: None, owned: false };
        assert_eq!(user_and_secret(&t, &bare), ("pg".to_string(), "pg-pguser-pg".to_string()));
        let custom = json!({"spec": {"users": [{"name": "x", "secretName": "my-secret"}]}});
        assert_eq!(user_and_secret(&t, &custom).1, "my-secret");
    }
}
