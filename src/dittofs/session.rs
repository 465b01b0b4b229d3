//! Reaching one server's API as the operator: the URL, the operator's own account (created once
//! with the bootstrap admin), the live state, and the Secret values the stores need.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use serde_json::{Value, json};
use sha2::Sha256;

use super::api::{
    Api, ApiError, HttpClient, LiveAdapter, LiveGroup, LiveNetgroup, LivePermission, LiveQuota, LiveShare, LiveStore,
    LiveUser, TlsMaterial, segment, share_path,
};
use super::plan::access::ResolvedUser;
use super::plan::{self, Live, Plan, Resolved, ResolvedStore};
use crate::discover::SecretsByName;
use crate::render::Rendered;
use crate::render::desired::{DesiredRuntime, StoreKind};

/// Why the runtime cannot be read or set up, as a condition reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }

    fn unreachable(base: &str, error: &ApiError) -> Self {
        Self::new(
            "ApiUnreachable",
            format!(
                "The DittoFS API at {base} does not answer ({error}). It comes up with the pod; the operator retries. \
                 Out of the cluster, --dittofs-api says how to reach it"
            ),
        )
    }
}

/// `--dittofs-api` with `{name}`, `{namespace}` and `{port}` filled in.
pub fn api_url(template: &str, name: &str, namespace: &str, port: i32) -> String {
    template.replace("{name}", name).replace("{namespace}", namespace).replace("{port}", &port.to_string())
}

/// The API of the server `rendered` describes: its URL from `--dittofs-api` (HTTPS when the
/// spec serves the API over TLS) and a client that trusts its certificate and presents the
/// client certificate it requires.
pub async fn api_for(
    http: &HttpClient,
    template: &str,
    rendered: &Rendered,
    secrets: &Secrets<'_>,
) -> Result<Api, Problem> {
    let c = &rendered.outline;
    let mut base = api_url(template, &rendered.cr.name, &rendered.cr.namespace, c.ports.api);
    let Some(tls) = &c.api_tls else {
        return Ok(Api::new(http.clone(), base));
    };
    if let Some(rest) = base.strip_prefix("http://") {
        base = format!("https://{rest}");
    }
    let invalid = |message: String| Problem::new("TlsSecretInvalid", message);
    let cert = secrets.get(&tls.cert_secret).await?.and_then(|s| s.data).unwrap_or_default();
    if !cert.contains_key("tls.crt") || !cert.contains_key("tls.key") {
        let whose = match tls.generated {
            true => "the API's certificate, which the operator generates (it makes a new one on its next pass)",
            false => "spec.controlPlane.certSecretName",
        };
        return Err(invalid(format!(
            "{whose}: Secret {} is missing or lacks tls.crt and tls.key; the API cannot serve HTTPS",
            tls.cert_secret
        )));
    }
    let mut material = TlsMaterial { ca_pem: cert.get("ca.crt").map(|v| v.0.clone()), ..TlsMaterial::default() };
    if let Some(client_ca) = &tls.client_ca_secret {
        let data = secrets.get(client_ca).await?.and_then(|s| s.data).unwrap_or_default();
        if !data.contains_key("ca.crt") {
            return Err(invalid(format!(
                "spec.controlPlane.clientCASecretName: Secret {client_ca} is missing or lacks ca.crt"
            )));
        }
        material.client_cert_pem = data.get("tls.crt").map(|v| v.0.clone());
        material.client_key_pem = data.get("tls.key").map(|v| v.0.clone());
        if material.client_cert_pem.is_none() || material.client_key_pem.is_none() {
            return Err(invalid(format!(
                "spec.controlPlane.clientCASecretName: the API requires client certificates, and the operator presents the one in Secret {client_ca} (keys tls.crt and tls.key), which has none"
            )));
        }
    }
    let client = http.with_tls(&material).map_err(|e| invalid(format!("the API's certificates: {e}")))?;
    Ok(Api::new(client, base))
}

/// May the operator create its own account now (it may not while paused, with `--dry-run`, or in `diff`)?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountSetup {
    Allowed,
    /// Read only: fall back to the bootstrap admin when the operator's account does not exist yet.
    ReadOnly,
}

/// What a login did, for an Event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoggedIn {
    pub created_account: Option<String>,
}

/// Keys of credentials Secrets that name things rather than hold secrets: redacting their values
/// would blank ordinary words of a message (`admin`, a host name).
const NOT_SECRET_KEYS: &[&str] =
    &["username", "user", "host", "port", "dbname", "database", "endpoint", "ca.crt", "tls.crt"];

/// Adds the secret values of `secret` to `values` (once each).
fn remember_values(secret: &Secret, values: &mut Vec<String>) {
    let data = secret.data.iter().flatten().filter(|(key, _)| !NOT_SECRET_KEYS.contains(&key.as_str()));
    for value in data.filter_map(|(_, v)| std::str::from_utf8(&v.0).ok()) {
        // Shorter values would redact ordinary words; DittoFS's own minimum is 8.
        if value.len() >= 4 && !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
    }
}

/// Every secret value of the Secrets a pass gathered: what a message from outside the operator
/// (DittoFS's, the kubelet's) is scrubbed of before a condition or an Event carries it.
pub fn values_of(secrets: &SecretsByName) -> Vec<String> {
    let mut values = Vec::new();
    for secret in secrets.values() {
        remember_values(secret, &mut values);
    }
    values
}

/// The Secrets of one pass: those the gather step read, and those read since (created this pass).
/// It remembers every value it handed out, so whatever the pass reports can be scrubbed of them.
pub struct Secrets<'a> {
    client: &'a Client,
    namespace: &'a str,
    gathered: &'a SecretsByName,
    handed_out: std::sync::Mutex<Vec<String>>,
}

impl<'a> Secrets<'a> {
    pub fn new(client: &'a Client, namespace: &'a str, gathered: &'a SecretsByName) -> Self {
        Self { client, namespace, gathered, handed_out: std::sync::Mutex::default() }
    }

    pub async fn get(&self, name: &str) -> Result<Option<Secret>, Problem> {
        let found = match self.gathered.get(name) {
            Some(secret) => Some(secret.clone()),
            None => kube::Api::<Secret>::namespaced(self.client.clone(), self.namespace)
                .get_opt(name)
                .await
                .map_err(|e| Problem::new("SecretUnreadable", format!("reading Secret {name}: {e}")))?,
        };
        if let Some(secret) = &found {
            let mut handed_out = self.handed_out.lock().expect("secrets lock");
            remember_values(secret, &mut handed_out);
        }
        Ok(found)
    }

    /// Every value of every Secret this pass read so far.
    pub fn handed_out(&self) -> Vec<String> {
        self.handed_out.lock().expect("secrets lock").clone()
    }

    /// One value, `None` when the Secret or the key is missing.
    async fn value(&self, name: &str, key: &str) -> Result<Option<String>, Problem> {
        Ok(self
            .get(name)
            .await?
            .and_then(|s| s.data)
            .and_then(|d| d.get(key).map(|v| String::from_utf8_lossy(&v.0).into_owned())))
    }
}

/// Logs `api` in as the operator's account, creating the account first when it is missing and
/// `setup` allows it. Tokens stay in memory; nothing here is logged.
pub async fn login(
    secrets: &Secrets<'_>,
    api: &mut Api,
    rendered: &Rendered,
    setup: AccountSetup,
) -> Result<LoggedIn, Problem> {
    let c = &rendered.outline;
    let secret = &c.names.operator_secret;
    let user = secrets.value(secret, "username").await?.unwrap_or_else(|| c.operator_user.clone());
    let password = secrets.value(secret, "password").await?;
    let refused = |e: &ApiError| matches!(e.status(), Some(401 | 403 | 404));
    if let Some(password) = &password {
        match api.login(&user, password).await {
            Ok(login) if login.user.must_change_password => {
                if setup == AccountSetup::ReadOnly {
                    return admin_login(secrets, api, rendered).await.map(|_| LoggedIn::default());
                }
                clear_password_change(api, password).await?;
                return Ok(LoggedIn::default());
            }
            Ok(login) if login.user.role != "admin" => {
                return Err(Problem::new(
                    "LoginRefused",
                    format!(
                        "DittoFS user {user} (Secret {secret}) has role {:?}; the operator needs role admin: \
                         `dfsctl user edit {user} --role admin`, or delete the Secret so the operator creates its own account",
                        login.user.role
                    ),
                ));
            }
            Ok(_) => return Ok(LoggedIn::default()),
            Err(e) if refused(&e) => {}
            Err(e @ ApiError::Unreachable(_)) => return Err(Problem::unreachable(&api.base, &e)),
            Err(e) => return Err(Problem::new("LoginFailed", format!("logging in as {user}: {e}"))),
        }
    }
    let admin = admin_login(secrets, api, rendered).await?;
    let Some(password) = password.filter(|_| setup == AccountSetup::Allowed) else {
        // Read only, or the Secret is not created yet: read as the bootstrap admin.
        *api = admin;
        return Ok(LoggedIn::default());
    };
    let body = json!({"username": user, "password": password, "role": "admin", "enabled": true,
                      "display_name": "dittofs-operator (Kubernetes)"});
    match admin.send("POST", "/api/v1/users", &body).await {
        Ok(_) => {}
        // It exists with another password (its Secret was re-created): reset it.
        Err(e) if e.status() == Some(409) => {
            admin
                .send("POST", &format!("/api/v1/users/{}/password", segment(&user)), &json!({"new_password": password}))
                .await
                .map_err(|e| {
                    Problem::new("LoginFailed", format!("resetting the password of DittoFS user {user}: {e}"))
                })?;
        }
        Err(e) => return Err(Problem::new("LoginFailed", format!("creating DittoFS user {user}: {e}"))),
    }
    let login = api
        .login(&user, &password)
        .await
        .map_err(|e| Problem::new("LoginFailed", format!("logging in as the new DittoFS user {user}: {e}")))?;
    if login.user.must_change_password {
        clear_password_change(api, &password).await?;
    }
    Ok(LoggedIn { created_account: Some(user) })
}

/// DittoFS makes every new admin-role account change its password first; the operator's
/// password is already a random secret, so it "changes" to the same one.
async fn clear_password_change(api: &mut Api, password: &str) -> Result<(), Problem> {
    let body = json!({"current_password": password, "new_password": password});
    let answer = api
        .send("POST", "/api/v1/users/me/password", &body)
        .await
        .map_err(|e| Problem::new("LoginFailed", format!("clearing the first-login password change: {e}")))?;
    let token = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v.get("access_token").and_then(Value::as_str).map(String::from));
    *api = api.clone().with_token(token);
    Ok(())
}

/// The bootstrap admin, with the password DittoFS was started with.
async fn admin_login(secrets: &Secrets<'_>, api: &Api, rendered: &Rendered) -> Result<Api, Problem> {
    let c = &rendered.outline;
    let reference = &c.admin_password;
    let password = secrets.value(&reference.name, &reference.key).await?.ok_or_else(|| {
        Problem::new(
            "LoginRefused",
            format!(
                "the operator's DittoFS account is not set up and Secret {} has no key {}",
                reference.name, reference.key
            ),
        )
    })?;
    let mut admin = api.clone().with_token(None);
    match admin.login("admin", &password).await {
        Ok(login) if login.user.must_change_password => Err(Problem::new(
            "LoginRefused",
            "the bootstrap admin must change its password before DittoFS accepts its calls: log in once with dfsctl and set the one in the admin Secret",
        )),
        Ok(_) => Ok(admin),
        Err(e @ ApiError::Unreachable(_)) => Err(Problem::unreachable(&api.base, &e)),
        Err(e) => Err(Problem::new(
            "LoginRefused",
            format!(
                "DittoFS refused the operator's account ({}) and the bootstrap admin (Secret {} key {}): {e}. \
                 If the admin password was changed in DittoFS, put the current one in that Secret",
                c.names.operator_secret, reference.name, reference.key
            ),
        )),
    }
}

/// Everything the plan compares: adapters and their live ports, the three store tables, shares,
/// and what else the spec declares: adapter settings, snapshot policies, users, groups, grants
/// (the default spec reads 6 times: those five and the NFS settings).
pub async fn read_live(api: &Api, desired: &DesiredRuntime) -> Result<Live, ApiError> {
    let adapters: Vec<LiveAdapter> = api.get("/api/v1/adapters").await?;
    let mut stores = BTreeMap::new();
    for kind in StoreKind::ALL {
        let rows: Vec<LiveStore> = api.get(&format!("/api/v1/{}", kind.route())).await?;
        stores.insert(kind, rows);
    }
    let shares: Vec<LiveShare> = api.get("/api/v1/shares").await?;
    let snapshot_policies =
        if desired.snapshot_policies.is_empty() { Vec::new() } else { api.get("/api/v1/snapshot-policies").await? };
    let mut adapter_settings = BTreeMap::new();
    for adapter in desired.adapter_settings.keys() {
        // An adapter not created yet has no settings row; the plan creates it first.
        if adapters.iter().any(|a| &a.adapter_type == adapter) {
            let settings: Value = api.get(&format!("/api/v1/adapters/{}/settings", segment(adapter))).await?;
            adapter_settings.insert(adapter.clone(), settings);
        }
    }
    let users: Vec<LiveUser> = if desired.users.is_empty() && desired.delete_users.is_empty() {
        Vec::new()
    } else {
        api.get("/api/v1/users").await?
    };
    let uses_groups = !desired.groups.is_empty() || !desired.delete_groups.is_empty();
    let groups: Vec<LiveGroup> = if uses_groups { api.get("/api/v1/groups").await? } else { Vec::new() };
    let mut permissions = BTreeMap::new();
    for share in desired.shares.iter().filter(|s| s.permissions.is_some()) {
        if shares.iter().any(|l| l.name == share.name) {
            let path = format!("/api/v1/shares/{}/permissions", share_path(&share.name));
            let rows: Option<Vec<LivePermission>> = api.get(&path).await?;
            permissions.insert(share.name.clone(), rows.unwrap_or_default());
        }
    }
    let mut quotas = BTreeMap::new();
    for share in desired.shares.iter().filter(|s| s.identity_quotas.is_some()) {
        if shares.iter().any(|l| l.name == share.name) {
            let path = format!("/api/v1/shares/{}/quotas", share_path(&share.name));
            let rows: Option<Vec<LiveQuota>> = api.get(&path).await?;
            quotas.insert(share.name.clone(), rows.unwrap_or_default());
        }
    }
    let mut nfs_exports = BTreeMap::new();
    let mut netgroups = BTreeMap::new();
    for share in desired.shares.iter().filter(|s| !s.nfs_export.is_empty()) {
        if shares.iter().any(|l| l.name == share.name) {
            let path = format!("/api/v1/shares/{}/adapters/nfs/config", share_path(&share.name));
            nfs_exports.insert(share.name.clone(), api.get::<Value>(&path).await?);
        }
        if let (Some(_), Some(Value::String(name))) = (&share.allowed_clients, share.nfs_export.get("netgroup")) {
            let path = format!("/api/v1/adapters/nfs/netgroups/{}", segment(name));
            match api.get::<LiveNetgroup>(&path).await {
                Ok(found) => {
                    netgroups.insert(name.clone(), found);
                }
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Live {
        adapters,
        stores,
        shares,
        snapshot_policies,
        adapter_settings,
        users,
        groups,
        permissions,
        nfs_exports,
        netgroups,
        quotas,
        read_at: Some(k8s_openapi::jiff::Timestamp::now()),
    })
}

/// What a runtime pass would do, with what it needs to say it safely.
#[derive(Debug)]
pub struct Planned {
    pub plan: Plan,
    /// Secret values the plan's bodies may hold: scrubbed from whatever DittoFS answers.
    pub secret_values: Vec<String>,
    /// Every desired user's password: name → keyed digest. DittoFS has them all once the plan
    /// has run.
    pub passwords: BTreeMap<String, String>,
    /// Those DittoFS has already.
    pub passwords_current: BTreeMap<String, String>,
}

/// What a runtime plan is made against.
pub struct PlanInputs<'a> {
    pub rendered: &'a Rendered,
    pub desired: &'a DesiredRuntime,
    pub live: &'a Live,
    /// The operator's checksum key, which keys the digests of Secret values.
    pub digest_key: &'a [u8],
    /// Users' passwords known to be set (name → digest): not checked again.
    pub remembered: &'a BTreeMap<String, String>,
    pub repoint_allowed: bool,
}

/// The plan against the live state: store and user Secrets read, user passwords checked
/// (remembered ones are not checked again), and the accounts never touched set aside.
pub async fn plan_against(secrets: &Secrets<'_>, api: &Api, inputs: PlanInputs<'_>) -> Result<Planned, Problem> {
    let PlanInputs { rendered, desired, live, digest_key, remembered, repoint_allowed } = inputs;
    let (stores, mut secret_values) = resolve_stores(secrets, desired, digest_key).await?;
    let (users, passwords) = resolve_users(secrets, api, desired, live, digest_key, remembered).await?;
    secret_values.extend(users.iter().map(|u| u.password.clone()));
    let passwords_current = users
        .iter()
        .filter(|u| u.password_current)
        .filter_map(|u| passwords.get(&u.desired.name).map(|d| (u.desired.name.clone(), d.clone())))
        .collect();
    let protected = vec!["admin".to_string(), rendered.outline.operator_user.clone()];
    let resolved = Resolved { stores: &stores, users: &users, protected_users: &protected };
    let plan = plan::plan(desired, &resolved, live, repoint_allowed);
    Ok(Planned { plan, secret_values, passwords, passwords_current })
}

/// The desired users with their passwords, each marked current when DittoFS already has it:
/// remembered from an earlier pass, or checked by logging in as the user (a refused login means
/// the Secret was rotated, or the password was changed behind the operator's back).
async fn resolve_users(
    secrets: &Secrets<'_>,
    api: &Api,
    desired: &DesiredRuntime,
    live: &Live,
    digest_key: &[u8],
    remembered: &BTreeMap<String, String>,
) -> Result<(Vec<ResolvedUser>, BTreeMap<String, String>), Problem> {
    let mut users = Vec::new();
    let mut passwords = BTreeMap::new();
    for user in &desired.users {
        let reference = &user.password_secret;
        let password = secrets.value(&reference.name, &reference.key).await?.ok_or_else(|| {
            Problem::new(
                "SecretMissing",
                format!(
                    "user {}: Secret {:?} has no key {:?} (its password)",
                    user.name, reference.name, reference.key
                ),
            )
        })?;
        let digest = keyed_digest(digest_key, format!("{}\0{password}", user.name).as_bytes());
        let exists = live.users.iter().any(|u| u.username == user.name);
        let password_current = exists
            && (remembered.get(&user.name) == Some(&digest) || {
                let mut probe = api.clone().with_token(None);
                match probe.login(&user.name, &password).await {
                    Ok(_) => true,
                    Err(e) if e.status() == Some(401) => false,
                    // A disabled account cannot log in, so its password cannot be checked: it is
                    // checked (and set if it differs) at the first pass after it is enabled.
                    Err(e) if e.status() == Some(403) => true,
                    Err(e @ ApiError::Unreachable(_)) => return Err(Problem::unreachable(&api.base, &e)),
                    Err(e) => {
                        return Err(Problem::new(
                            "ApiError",
                            format!("checking the password of user {}: {e}", user.name),
                        ));
                    }
                }
            });
        passwords.insert(user.name.clone(), digest);
        users.push(ResolvedUser { desired: user.clone(), password, password_current });
    }
    Ok((users, passwords))
}

/// A digest of secret material keyed with the operator's checksum key: equal inputs compare
/// equal, and the digest says nothing about the value.
fn keyed_digest(key: &[u8], material: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(material);
    mac.finalize().into_bytes().iter().take(12).map(|b| format!("{b:02x}")).collect::<String>()
}

/// Is the server answering? `GET /health/ready` (no login).
pub async fn ready(api: &Api) -> Result<(), Problem> {
    match api.get::<Value>("/health/ready").await {
        Ok(_) => Ok(()),
        Err(e) => Err(Problem::unreachable(&api.base, &e)),
    }
}

/// Logs in when there is no token, and reads; a refused token (expired) logs in again once.
pub async fn login_and_read(
    secrets: &Secrets<'_>,
    api: &mut Api,
    rendered: &Rendered,
    desired: &DesiredRuntime,
    setup: AccountSetup,
) -> Result<(Live, LoggedIn), Problem> {
    let mut logged_in = LoggedIn::default();
    if api.token().is_none() {
        logged_in = login(secrets, api, rendered, setup).await?;
    }
    match read_live(api, desired).await {
        Ok(live) => Ok((live, logged_in)),
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            *api = api.clone().with_token(None);
            let logged_in = login(secrets, api, rendered, setup).await?;
            let live = read_live(api, desired).await.map_err(|e| read_problem(&api.base, &e))?;
            Ok((live, logged_in))
        }
        Err(e) => Err(read_problem(&api.base, &e)),
    }
}

fn read_problem(base: &str, error: &ApiError) -> Problem {
    match error {
        ApiError::Unreachable(_) => Problem::unreachable(base, error),
        other => Problem::new("ApiError", format!("reading DittoFS's state: {other}")),
    }
}

/// The desired stores with their Secret values; also returns those values, so messages can be
/// scrubbed of them.
pub async fn resolve_stores(
    secrets: &Secrets<'_>,
    desired: &DesiredRuntime,
    digest_key: &[u8],
) -> Result<(Vec<ResolvedStore>, Vec<String>), Problem> {
    let mut values = BTreeMap::new();
    for name in desired.secret_names() {
        let secret = secrets.get(&name).await?;
        for (key, value) in secret.and_then(|s| s.data).unwrap_or_default() {
            values.insert((name.clone(), key), String::from_utf8_lossy(&value.0).into_owned());
        }
    }
    let digest = |material: &[u8]| keyed_digest(digest_key, material);
    let mut stores = Vec::new();
    for kind in StoreKind::ALL {
        for store in desired.stores(kind) {
            stores.push(
                ResolvedStore::resolve(kind, store, &values, digest).map_err(|m| Problem::new("SecretMissing", m))?,
            );
        }
    }
    let secrets = values.into_values().filter(|v| v.len() >= 4).collect();
    Ok((stores, secrets))
}

/// A server's words with any Secret value it may echo replaced.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_string(), |m, s| m.replace(s.as_str(), "<redacted>"))
}

/// How much of a message about DittoFS a condition or an Event carries: a server's error can be
/// a page of HTML or a stack; its start says what went wrong.
pub const MESSAGE_LIMIT: usize = 1024;

/// `message` scrubbed of `secrets` and cut to [`MESSAGE_LIMIT`] bytes (at a character boundary).
pub fn scrub_and_cut(message: &str, secrets: &[String]) -> String {
    let mut scrubbed = scrub(message, secrets);
    if scrubbed.len() > MESSAGE_LIMIT {
        let mut end = MESSAGE_LIMIT;
        while !scrubbed.is_char_boundary(end) {
            end -= 1;
        }
        scrubbed.truncate(end);
        scrubbed.push('…');
    }
    scrubbed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_scrubbed_of_every_credential_and_cut() {
        let credentials = vec!["hunter2-password".to_string(), "eyJhbGciOi.token".to_string()];
        let said = "login as admin with hunter2-password refused (token eyJhbGciOi.token expired)";
        assert_eq!(
            scrub_and_cut(said, &credentials),
            "login as admin with <redacted> refused (token <redacted> expired)"
        );
        let page = format!("<html>{}</html> hunter2-password", "é".repeat(2000));
        let cut = scrub_and_cut(&page, &credentials);
        assert!(cut.len() <= MESSAGE_LIMIT + '…'.len_utf8() && cut.ends_with('…'), "{} bytes", cut.len());
        assert!(!cut.contains("hunter2"));
    }
}
