//! The certificate authority and serving certificate the operator makes once per DittoServer,
//! so its REST API speaks HTTPS by default: the operator sends DittoFS the admin and operator
//! passwords, tokens, S3 keys and the PostgreSQL password, and only a pod holding the key can
//! answer as the server.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// How long the generated certificates are valid. Nothing renews them: deleting the Secret makes
/// the operator generate a new pair (DittoFS reloads its certificate when the mounted files change).
const VALIDITY_DAYS: i64 = 3650;

/// PEM of a fresh CA, a serving certificate it signed, and that certificate's key.
#[derive(serde::Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedTls")
            .field("key_pem", &crate::redact::hidden(&Some(&self.key_pem)))
            .finish_non_exhaustive()
    }
}

/// The names the API is dialled by: its Service in every DNS form, the pod through the headless
/// Service, and loopback (a `kubectl port-forward`).
pub fn subject_alt_names(cr_name: &str, namespace: &str) -> Vec<String> {
    let names = crate::names::Names::for_cr(cr_name);
    let api = &names.api_service;
    let headless = &names.headless_service;
    vec![
        api.clone(),
        format!("{api}.{namespace}"),
        format!("{api}.{namespace}.svc"),
        format!("{api}.{namespace}.svc.cluster.local"),
        format!("{cr_name}-0.{headless}.{namespace}.svc"),
        format!("{cr_name}-0.{headless}.{namespace}.svc.cluster.local"),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ]
}

/// A CA that may sign only end-entity certificates, and the API's serving certificate (ECDSA P-256).
pub fn generate(cr_name: &str, namespace: &str) -> Result<GeneratedTls, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, format!("{cr_name}.{namespace} DittoFS API CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(subject_alt_names(cr_name, namespace))?;
    serving.distinguished_name.push(DnType::CommonName, crate::names::Names::for_cr(cr_name).api_service);
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut serving);
    let cert_pem = serving.signed_by(&key, &issuer)?.pem();
    Ok(GeneratedTls { ca_pem, cert_pem, key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the operator's client does with it: trust the CA, dial the Service's name.
    #[test]
    fn the_serving_certificate_verifies_against_its_ca_for_the_service_name() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        let tls = generate("files", "storage").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from_pem_slice(tls.ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider).build().unwrap();
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for name in ["files-api.storage.svc", "127.0.0.1", "files-0.files-headless.storage.svc"] {
            let server = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(&cert, &[], &server, &[], now).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls_pki_types::ServerName::try_from("files-api.other.svc").unwrap();
        assert!(verifier.verify_server_cert(&cert, &[], &other, &[], now).is_err(), "another namespace's name");
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"), "Debug shows no key");
    }
}
