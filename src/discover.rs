//! Data found in the cluster (or, for `render`, in the input file) that rendering depends on:
//! the PostgreSQL connection, the referenced Secrets' data (for the checksum only) and the
//! operator-generated credentials. Never rendered into a ConfigMap except the non-secret
//! connection fields.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::crd::SecretKeyRef;

/// Where DittoFS's control-plane PostgreSQL is and how to log in; the password stays in its Secret.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConnection {
    pub host: String,
    pub port: i32,
    pub database: String,
    pub user: String,
    pub sslmode: String,
    pub password_secret: SecretKeyRef,
}

/// Values for the credentials Secrets the operator creates when the user references none.
#[derive(Serialize, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedCredentials {
    pub jwt_secret: Option<String>,
    pub admin_password: Option<String>,
    /// The password of the operator's DittoFS account (never in the checksum: DittoFS does not read it).
    pub operator_password: Option<String>,
    /// The API's CA and serving certificate (HTTPS by default).
    pub api_tls: Option<crate::api_tls::GeneratedTls>,
}

/// The PostgreSQL major version and image an existing operator-created cluster keeps.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PinnedPostgres {
    pub version: i32,
    pub image: String,
}

#[derive(Serialize, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Discovered {
    pub postgres: Option<PostgresConnection>,
    /// Set when the operator-created PerconaPGCluster exists with another major version than the
    /// values': it keeps its own.
    #[serde(skip)]
    pub pinned_postgres: Option<PinnedPostgres>,
    pub generated: GeneratedCredentials,
    /// Data of the Secret keys DittoFS consumes, by Secret name then key. Feeds the checksum;
    /// never serialized into the template context.
    #[serde(skip)]
    pub secret_data: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// The operator's key for the checksum (an HMAC), so the checksum cannot be used to test
    /// guesses of a Secret's value. Empty offline (`render`).
    #[serde(skip)]
    pub checksum_key: Vec<u8>,
}

impl std::fmt::Debug for GeneratedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCredentials")
            .field("jwt_secret", &crate::redact::hidden(&self.jwt_secret))
            .field("admin_password", &crate::redact::hidden(&self.admin_password))
            .field("operator_password", &crate::redact::hidden(&self.operator_password))
            .field("api_tls", &self.api_tls)
            .finish()
    }
}

impl std::fmt::Debug for Discovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret_keys: BTreeMap<&String, Vec<&String>> =
            self.secret_data.iter().map(|(name, data)| (name, crate::redact::keys(data))).collect();
        f.debug_struct("Discovered")
            .field("postgres", &self.postgres)
            .field("pinned_postgres", &self.pinned_postgres)
            .field("generated", &self.generated)
            .field("secret_data (keys)", &secret_keys)
            .field("checksum_key", &crate::redact::Bytes(self.checksum_key.len()))
            .finish()
    }
}

/// Secrets by name, as found in the cluster or in `render`'s input file.
pub type SecretsByName = BTreeMap<String, k8s_openapi::api::core::v1::Secret>;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A referenced Secret or key is missing; waiting for it may help.
    #[error("{field}: {message}")]
    Missing { field: String, message: String },
}

/// The admin credentials Secret the operator generates for this CR, unless it references its own.
pub fn generated_admin_secret(spec: &crate::crd::DittoServerSpec, cr_name: &str) -> Option<String> {
    let referenced = spec.identity.as_ref().and_then(|i| i.admin.as_ref()).and_then(|a| a.password_secret_ref.as_ref());
    referenced.is_none().then(|| crate::names::Names::for_cr(cr_name).admin_secret)
}

/// The Secret holding the API's generated certificate: HTTPS is the default, and the spec names
/// no certificate of its own (`controlPlane.certSecretName`) nor plain HTTP (`controlPlane.tls: false`).
pub fn generated_api_tls_secret(spec: &crate::crd::DittoServerSpec, cr_name: &str) -> Option<String> {
    let control_plane = spec.control_plane.as_deref();
    let own_certificate = control_plane.and_then(|c| c.cert_secret_name.as_ref()).is_some();
    let plain = control_plane.and_then(|c| c.tls) == Some(false);
    (!own_certificate && !plain).then(|| crate::names::Names::for_cr(cr_name).api_tls_secret)
}

/// Secrets DittoFS reads besides the credentials (identity, the metrics token): in the checksum.
fn file_secret_names(spec: &crate::crd::DittoServerSpec) -> Vec<String> {
    let mut names: Vec<String> =
        crate::identity::Directory::of(spec).secret_keys().into_iter().map(|r| r.name).collect();
    names.extend(spec.metrics.as_ref().and_then(|m| m.bearer_token_secret.as_ref()).map(|r| r.name.clone()));
    names
}

/// Names of the Secrets a CR reads, for fetching before [`resolve`].
pub fn referenced_secret_names(spec: &crate::crd::DittoServerSpec, cr_name: &str) -> Vec<String> {
    let names = crate::names::Names::for_cr(cr_name);
    let identity = spec.identity.clone().unwrap_or_default();
    let mut out = vec![
        identity.jwt.and_then(|j| j.secret_ref).map(|r| r.name).unwrap_or(names.jwt_secret),
        identity.admin.and_then(|a| a.password_secret_ref).map(|r| r.name).unwrap_or(names.admin_secret),
    ];
    if let Some(r) = spec.database.as_ref().and_then(|d| d.postgres_secret_ref.as_ref()) {
        out.push(r.name.clone());
    }
    out.push(names.operator_secret);
    if let Some(s3) = &spec.s3 {
        out.push(s3.credentials_secret_ref.secret_name.clone());
    }
    out.extend(file_secret_names(spec));
    // The API's certificates: the operator verifies the server and presents its client certificate.
    if let Some(cp) = &spec.control_plane {
        out.extend(cp.cert_secret_name.iter().chain(cp.client_ca_secret_name.iter()).cloned());
    }
    out.extend(generated_api_tls_secret(spec, cr_name));
    out.extend(backup_secret_name(spec));
    // Users' passwords: a rotated one is set on the account at the next pass.
    out.extend(spec.users.iter().flatten().map(|u| u.password_secret_ref.name.clone()));
    out.sort();
    out.dedup();
    out
}

/// The Secret pgBackRest reads its S3 keys from, when the operator-created cluster backs up.
fn backup_secret_name(spec: &crate::crd::DittoServerSpec) -> Option<String> {
    let percona = spec.percona.as_ref().filter(|p| p.enabled)?;
    let backup = percona.backup.as_ref().filter(|b| b.enabled)?;
    backup.credentials_secret_ref.as_ref().map(|r| r.name.clone())
}

/// Builds the discovered data from the Secrets found. `generate` makes fresh credentials for
/// the operator-created Secrets that do not exist yet (the controller); without it they keep
/// offline stand-ins (`render`).
pub fn resolve(
    spec: &crate::crd::DittoServerSpec,
    cr_name: &str,
    namespace: &str,
    values: &crate::values::Values,
    secrets: &SecretsByName,
    generate: bool,
) -> Result<Discovered, DiscoverError> {
    let names = crate::names::Names::for_cr(cr_name);
    let identity = spec.identity.clone().unwrap_or_default();
    let mut discovered = Discovered::default();
    let jwt_ref = identity.jwt.and_then(|j| j.secret_ref);
    let admin_ref = identity.admin.and_then(|a| a.password_secret_ref);
    let consumed = [
        jwt_ref.as_ref().map(|r| r.name.clone()).unwrap_or(names.jwt_secret.clone()),
        admin_ref.as_ref().map(|r| r.name.clone()).unwrap_or(names.admin_secret.clone()),
    ];
    for name in consumed.into_iter().chain(file_secret_names(spec)) {
        if let Some(data) = secret_data(secrets, &name) {
            discovered.secret_data.insert(name.clone(), data);
        }
    }
    let references = References { jwt: jwt_ref.as_ref(), admin: admin_ref.as_ref() };
    generate_credentials(spec, cr_name, namespace, secrets, references, generate, &mut discovered)?;
    if generate {
        check_referenced_keys(spec, secrets, jwt_ref.as_ref(), &discovered)?;
    }
    if let Some(r) = spec.database.as_ref().and_then(|d| d.postgres_secret_ref.as_ref()) {
        let (connection, password) = postgres_connection(r, values, secrets)?;
        discovered.postgres = Some(connection);
        discovered.secret_data.insert(r.name.clone(), BTreeMap::from([("password".into(), password)]));
    }
    Ok(discovered)
}

/// A Secret's data, with `stringData` (only on objects not yet written: render's input file).
fn secret_data(secrets: &SecretsByName, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    secrets.get(name).map(|s| {
        let mut data: BTreeMap<String, Vec<u8>> =
            s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        for (k, v) in s.string_data.clone().unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        data
    })
}

/// The credentials Secrets the spec references instead of letting the operator generate them.
#[derive(Clone, Copy)]
struct References<'a> {
    jwt: Option<&'a crate::crd::SecretRef>,
    admin: Option<&'a crate::crd::SecretRef>,
}

/// Credentials the operator creates: a fresh value when creating now, a visible stand-in when
/// only rendering or holding back, nothing when the Secret exists (never rewritten).
fn generate_credentials(
    spec: &crate::crd::DittoServerSpec,
    cr_name: &str,
    namespace: &str,
    secrets: &SecretsByName,
    references: References<'_>,
    generate: bool,
    discovered: &mut Discovered,
) -> Result<(), DiscoverError> {
    let names = crate::names::Names::for_cr(cr_name);
    let fresh = |len: usize| if generate { random_token(len) } else { crate::names::OFFLINE_GENERATED.to_string() };
    if references.jwt.is_none() && !secrets.contains_key(&names.jwt_secret) {
        let value = fresh(48);
        if generate {
            let data = BTreeMap::from([("jwt-secret".into(), value.clone().into_bytes())]);
            discovered.secret_data.insert(names.jwt_secret.clone(), data);
        }
        discovered.generated.jwt_secret = Some(value);
    }
    if references.admin.is_none() && !secrets.contains_key(&names.admin_secret) {
        let value = fresh(24);
        if generate {
            let data = BTreeMap::from([
                ("password".into(), value.clone().into_bytes()),
                ("username".into(), b"admin".to_vec()),
            ]);
            discovered.secret_data.insert(names.admin_secret.clone(), data);
        }
        discovered.generated.admin_password = Some(value);
    }
    if !secrets.contains_key(&names.operator_secret) {
        discovered.generated.operator_password = Some(fresh(32));
    }
    if let Some(name) = generated_api_tls_secret(spec, cr_name).filter(|n| !secrets.contains_key(n)) {
        discovered.generated.api_tls = Some(match generate {
            true => crate::api_tls::generate(cr_name, namespace).map_err(|e| DiscoverError::Missing {
                field: "spec.controlPlane".into(),
                message: format!("generating the API's certificate for Secret {name}: {e}"),
            })?,
            false => crate::api_tls::GeneratedTls {
                ca_pem: crate::names::OFFLINE_GENERATED.into(),
                cert_pem: crate::names::OFFLINE_GENERATED.into(),
                key_pem: crate::names::OFFLINE_GENERATED.into(),
            },
        });
    }
    Ok(())
}

/// The referenced Secrets hold the keys DittoFS needs: without them it cannot bind to the
/// directory, accept tickets, back up, or start.
fn check_referenced_keys(
    spec: &crate::crd::DittoServerSpec,
    secrets: &SecretsByName,
    jwt_ref: Option<&crate::crd::SecretRef>,
    discovered: &Discovered,
) -> Result<(), DiscoverError> {
    let directory = crate::identity::Directory::of(spec);
    // The directory's Secrets must hold their keys: DittoFS cannot bind or accept tickets without them.
    let fields = [
        (&directory.ldap_bind_password, "spec.identity.ldap.bindPasswordSecretRef"),
        (&directory.keytab, "spec.identity.kerberos.keytabSecretRef"),
        (&directory.krb5_conf, "spec.identity.kerberos.krb5ConfSecretRef"),
        (&directory.machine_secret, "spec.identity.kerberos.machineAccount.secretRef"),
        (&directory.machine_keytab, "spec.identity.kerberos.machineAccount.keytabSecretRef"),
    ];
    for (reference, field) in fields {
        if let Some(r) = reference
            && !discovered.secret_data.get(&r.name).is_some_and(|d| d.contains_key(&r.key))
        {
            return Err(DiscoverError::Missing {
                field: field.into(),
                message: format!("Secret {:?} with key {:?} not found", r.name, r.key),
            });
        }
    }
    // pgBackRest reads every `*.conf` file of the projected Secret; without one it has no keys.
    if let Some(name) = backup_secret_name(spec) {
        let has_conf = secrets.get(&name).map(|s| {
            s.data
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .chain(s.string_data.iter().flatten().map(|(k, _)| k))
                .any(|k| k.ends_with(".conf"))
        });
        let message = match has_conf {
            None => Some(format!("Secret {name:?} not found")),
            Some(false) => Some(format!(
                "Secret {name:?} has no key ending in .conf (pgBackRest reads conf.d/*.conf; Percona's convention is s3.conf with [global] repo1-s3-key and repo1-s3-key-secret)"
            )),
            Some(true) => None,
        };
        if let Some(message) = message {
            return Err(DiscoverError::Missing { field: "spec.percona.backup.credentialsSecretRef".into(), message });
        }
    }
    // A user-referenced JWT Secret must exist: DittoFS cannot start without the key.
    if let Some(r) = &jwt_ref {
        let key = r.key.clone().unwrap_or_else(|| "jwt-secret".into());
        let value = discovered.secret_data.get(&r.name).and_then(|d| d.get(&key));
        match value {
            None => {
                return Err(DiscoverError::Missing {
                    field: "spec.identity.jwt.secretRef".into(),
                    message: format!("Secret {:?} with key {key:?} not found", r.name),
                });
            }
            Some(v) if v.len() < 32 => {
                return Err(DiscoverError::Missing {
                    field: "spec.identity.jwt.secretRef".into(),
                    message: format!(
                        "key {key:?} of Secret {:?} is shorter than the 32 characters DittoFS requires",
                        r.name
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `spec.database.postgresSecretRef`: the connection, and the password for the checksum.
fn postgres_connection(
    r: &crate::crd::SecretRef,
    values: &crate::values::Values,
    secrets: &SecretsByName,
) -> Result<(PostgresConnection, Vec<u8>), DiscoverError> {
    let field = "spec.database.postgresSecretRef";
    let data = secret_data(secrets, &r.name).ok_or_else(|| DiscoverError::Missing {
        field: field.into(),
        message: format!("Secret {:?} not found", r.name),
    })?;
    let text = |key: &str| data.get(key).map(|v| String::from_utf8_lossy(v).trim().to_string());
    let required = |key: &str| {
        text(key).filter(|v| !v.is_empty()).ok_or_else(|| DiscoverError::Missing {
            field: field.into(),
            message: format!("Secret {:?} has no key {key:?}", r.name),
        })
    };
    let database = text("database").or_else(|| text("dbname")).filter(|v| !v.is_empty()).ok_or_else(|| {
        DiscoverError::Missing {
            field: field.into(),
            message: format!("Secret {:?} has neither key \"database\" nor \"dbname\"", r.name),
        }
    })?;
    let port = match text("port") {
        Some(p) => p.parse().map_err(|_| DiscoverError::Missing {
            field: field.into(),
            message: format!("key \"port\" of Secret {:?} is not a port number", r.name),
        })?,
        None => values.database.postgres.port,
    };
    if !data.contains_key("password") {
        return Err(DiscoverError::Missing {
            field: field.into(),
            message: format!("Secret {:?} has no key \"password\"", r.name),
        });
    }
    let connection = PostgresConnection {
        host: required("host")?,
        port,
        database,
        user: required("user")?,
        sslmode: text("sslmode").filter(|v| !v.is_empty()).unwrap_or_else(|| values.database.postgres.sslmode.clone()),
        password_secret: SecretKeyRef { name: r.name.clone(), key: "password".into() },
    };
    Ok((connection, data["password"].clone()))
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}
