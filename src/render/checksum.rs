//! The pod-template checksum: what DittoFS reads at start. A real change to any of it rolls the
//! pod; nothing else does (not the CR's generation, not an unrelated key of a user Secret).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::context::Computed;
use super::filters::hex;
use crate::crd::SecretKeyRef;
use crate::discover::Discovered;

/// HMAC-SHA-256, keyed with the operator's checksum key, over the rendered config and the data
/// of every Secret key DittoFS consumes. Keyed, because the checksum is readable (status, pod
/// template) by users who may not read the Secrets: a plain hash would let them test guesses.
pub fn checksum(config_yaml: &str, computed: &Computed, discovered: &Discovered) -> String {
    let mut hasher = Hmac::<Sha256>::new_from_slice(&discovered.checksum_key).expect("HMAC takes a key of any length");
    hasher.update(b"config.yaml\0");
    hasher.update(config_yaml.as_bytes());
    for reference in consumed_secret_keys(computed) {
        hasher.update(b"\0secret\0");
        hasher.update(reference.name.as_bytes());
        hasher.update(b"\0");
        hasher.update(reference.key.as_bytes());
        hasher.update(b"\0");
        match discovered.secret_data.get(&reference.name).and_then(|d| d.get(&reference.key)) {
            Some(value) => {
                hasher.update(b"value\0");
                hasher.update(value);
            }
            None => hasher.update(b"absent"),
        }
    }
    hex(&hasher.finalize().into_bytes())
}

/// First 12 hex digits of SHA-256: a stable short identifier for a text.
pub fn short_digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))[..12].to_string()
}

/// Every (Secret, key) the pod reads, sorted and without duplicates.
pub fn consumed_secret_keys(computed: &Computed) -> Vec<SecretKeyRef> {
    let mut refs = vec![computed.credentials.jwt.clone(), computed.credentials.admin_password.clone()];
    if let Some(pg) = &computed.database.postgres {
        refs.push(pg.password_secret.clone());
    }
    refs.extend(computed.directory.secret_keys());
    refs.extend(computed.metrics_token.clone());
    refs.sort();
    refs.dedup();
    refs
}
