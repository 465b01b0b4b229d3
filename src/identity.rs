//! Directory-backed identity (LDAP, Kerberos, the machine account) as the spec asks for it,
//! read as the earlier operator read it. Rendering turns it into config, env and volumes;
//! discovery reads the Secret keys it names.

use serde::Serialize;

use crate::crd::DittoServerSpec;
use crate::crd::SecretKeyRef;

/// Directory-backed identity: what the config, the env and the volumes need.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub ldap: Option<crate::crd::LdapSpec>,
    pub ldap_bind_password: Option<SecretKeyRef>,
    /// `spec.identity.kerberos` when `enabled: true` (off otherwise, as the earlier operator read
    /// it), with its machine account only when that says `enabled: true` too.
    pub kerberos: Option<crate::crd::KerberosSpec>,
    pub kerberos_enabled: bool,
    /// `krb5Conf` as the earlier operator read it: a path in the pod (`/etc/krb5.conf`).
    pub krb5_conf_path: Option<String>,
    pub keytab: Option<SecretKeyRef>,
    pub krb5_conf: Option<SecretKeyRef>,
    pub machine_secret: Option<SecretKeyRef>,
    pub machine_keytab: Option<SecretKeyRef>,
}

impl Directory {
    pub fn of(spec: &DittoServerSpec) -> Self {
        let identity = spec.identity.clone().unwrap_or_default();
        let key = |r: &Option<crate::crd::SecretRef>, default: &str| {
            r.as_ref()
                .map(|r| SecretKeyRef { name: r.name.clone(), key: r.key.clone().unwrap_or_else(|| default.into()) })
        };
        let ldap_bind_password = identity.ldap.as_ref().and_then(|l| key(&l.bind_password_secret_ref, "password"));
        let mut kerberos = identity.kerberos.clone().filter(|k| k.enabled == Some(true));
        if let Some(k) = kerberos.as_mut() {
            k.machine_account = k.machine_account.take().filter(|m| m.enabled == Some(true));
        }
        let machine = kerberos.as_ref().and_then(|k| k.machine_account.clone());
        let krb5_conf_path = kerberos
            .as_ref()
            .and_then(|k| k.krb5_conf.clone())
            .filter(|c| k8s_path(c) && kerberos.as_ref().is_some_and(|k| k.krb5_conf_secret_ref.is_none()));
        Self {
            ldap_bind_password,
            krb5_conf_path,
            kerberos_enabled: kerberos.is_some(),
            keytab: kerberos.as_ref().and_then(|k| key(&k.keytab_secret_ref, "keytab")),
            krb5_conf: kerberos.as_ref().and_then(|k| key(&k.krb5_conf_secret_ref, "krb5.conf")),
            machine_secret: machine.as_ref().and_then(|m| key(&m.secret_ref, "password")),
            machine_keytab: machine.as_ref().and_then(|m| key(&m.keytab_secret_ref, "keytab")),
            ldap: identity.ldap,
            kerberos,
        }
    }

    /// Every Secret key DittoFS reads for identity (env vars and mounted files).
    pub fn secret_keys(&self) -> Vec<SecretKeyRef> {
        [&self.ldap_bind_password, &self.keytab, &self.krb5_conf, &self.machine_secret, &self.machine_keytab]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// A single absolute path, as the earlier operator's `krb5Conf` was, rather than a file's content.
fn k8s_path(text: &str) -> bool {
    text.starts_with('/') && !text.contains(['\n', ' ', '['])
}
