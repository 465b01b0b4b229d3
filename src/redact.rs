//! `Debug` for types that hold a password, a token or a key: it shows that a value is there,
//! never the value, so a `?value` in a log line or a panic message cannot leak it.

use std::collections::BTreeMap;
use std::fmt;

/// Prints `<redacted>`: stands in for a secret in a `Debug` impl.
pub struct Hidden;

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `Some(<redacted>)` or `None`.
pub fn hidden<T>(value: &Option<T>) -> Option<Hidden> {
    value.as_ref().map(|_| Hidden)
}

/// The keys of a map whose values are secret.
pub fn keys<K, V>(map: &BTreeMap<K, V>) -> Vec<&K> {
    map.keys().collect()
}

/// `<redacted: N bytes>` for key material.
pub struct Bytes(pub usize);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted: {} bytes>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::discover::{Discovered, GeneratedCredentials};
    use crate::dittofs::api::{Api, HttpClient, TlsMaterial};

    #[test]
    fn the_debug_of_what_holds_a_secret_shows_none_of_it() {
        let generated = GeneratedCredentials {
            jwt_secret: Some("jwt-SECRET-1".into()),
            admin_password: Some("admin-SECRET-2".into()),
            operator_password: None,
            api_tls: Some(crate::api_tls::GeneratedTls {
                ca_pem: "ca".into(),
                cert_pem: "cert".into(),
                key_pem: "key-SECRET-7".into(),
            }),
        };
        let mut discovered = Discovered { generated, checksum_key: b"key-SECRET-3".to_vec(), ..Default::default() };
        discovered.secret_data.insert("db".into(), [("password".to_string(), b"pg-SECRET-4".to_vec())].into());
        let api = Api::new(HttpClient::default(), "http://demo-api:8080").with_token(Some("token-SECRET-5".into()));
        let tls = TlsMaterial { client_key_pem: Some(b"key-SECRET-6".to_vec()), ..Default::default() };
        let printed = format!("{discovered:?} {api:?} {tls:?} {:#?}", discovered.generated);
        assert!(!printed.contains("SECRET"), "{printed}");
        for shown in
            ["password", "db", "<redacted>", "<redacted: 12 bytes>", "http://demo-api:8080", "operator_password: None"]
        {
            assert!(printed.contains(shown), "{shown} not in {printed}");
        }
    }
}
