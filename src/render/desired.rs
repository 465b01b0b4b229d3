//! The runtime state a DittoServer asks for, as the runtime template renders it: adapters and
//! their settings, stores, shares, users and groups that live in DittoFS's control-plane
//! database, not in Kubernetes.
//! Parsed strictly (an unknown key in an override is an error) and checked for references
//! before anything reaches the server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// DittoFS's built-in groups: made at first start, never deleted, not the spec's business.
pub const SYSTEM_GROUPS: [&str; 3] = ["admins", "operators", "users"];

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredRuntime {
    #[serde(default)]
    pub adapters: Vec<DesiredAdapter>,
    #[serde(default)]
    pub metadata_stores: Vec<DesiredStore>,
    #[serde(default)]
    pub local_block_stores: Vec<DesiredStore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_block_stores: Vec<DesiredStore>,
    #[serde(default)]
    pub shares: Vec<DesiredShare>,
    /// At most one per share, set with `PUT /api/v1/shares/{name}/snapshot-policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_policies: Vec<DesiredSnapshotPolicy>,
    /// Stores to delete once no share uses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_stores: Vec<String>,
    /// Settings per adapter type, with DittoFS's own keys and values (`portmapper_enabled`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adapter_settings: BTreeMap<String, Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<DesiredUser>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<DesiredGroup>,
    /// Accounts to delete: the only users the operator deletes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_groups: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredUser {
    pub name: String,
    /// `user` or `operator`.
    #[serde(default = "user_role")]
    pub role: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Exactly these groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The password, read at apply time (never rendered).
    pub password_secret: SecretKeyName,
}

fn user_role() -> String {
    "user".into()
}

/// A Secret entry.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyName {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// A share permission for one user or one group.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredGrant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub level: String,
}

impl DesiredGrant {
    /// (`user` or `group`, name).
    pub fn grantee(&self) -> (&'static str, &str) {
        match (&self.user, &self.group) {
            (Some(user), _) => ("user", user),
            (None, Some(group)) => ("group", group),
            (None, None) => ("user", ""),
        }
    }
}

const LEVELS: [&str; 4] = ["none", "read", "read-write", "admin"];

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredAdapter {
    #[serde(rename = "type")]
    pub adapter_type: String,
    pub enabled: bool,
    pub port: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredStore {
    pub name: String,
    #[serde(rename = "type")]
    pub store_type: String,
    /// Sent as the store's config JSON.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Config keys whose values come from Secrets, added at apply time (never rendered); a value
    /// found replaces the same key of `config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_config: BTreeMap<String, SecretValueRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretValueRef {
    pub name: String,
    pub key: String,
    /// A missing Secret or key leaves the config key at its rendered value (or out) instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredShare {
    pub name: String,
    pub metadata_store: String,
    pub local_block_store: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_block_store: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    pub default_permission: String,
    /// Bytes; none: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// The share's only user and group grants; none: grants are not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<DesiredGrant>>,
    /// Per-share NFS config keys as DittoFS names them (`squash`, `netgroup`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub nfs_export: Map<String, Value>,
    /// The members of the netgroup `nfsExport.netgroup` names, kept by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<Vec<NetgroupMember>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_based_enumeration: Option<bool>,
    /// The share's only user, group and default-user quotas; none: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_quotas: Option<Vec<DesiredQuota>>,
}

/// One quota row: `scope` `user`, `group` (with the uid or gid) or `default-user`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredQuota {
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Said in plan lines: `alice`, `staff`, `every user`.
    pub who: String,
    pub limit_bytes: u64,
}

/// A netgroup member: `type` is `ip`, `cidr` or `hostname`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct NetgroupMember {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredSnapshotPolicy {
    pub share: String,
    /// A Go duration or `@hourly`, `@daily`, `@weekly`.
    pub interval: String,
    #[serde(default)]
    pub keep_last: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
}

fn enabled() -> bool {
    true
}

/// Seconds of a snapshot interval as DittoFS reads it: a Go duration or a shorthand.
pub fn interval_seconds(text: &str) -> Option<f64> {
    match text.trim().to_lowercase().as_str() {
        "@hourly" => Some(3600.0),
        "@daily" => Some(86_400.0),
        "@weekly" => Some(604_800.0),
        other => crate::go_duration::seconds(other),
    }
}

/// The three store tables of DittoFS, each with its own routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreKind {
    Metadata,
    Local,
    Remote,
}

impl StoreKind {
    pub const ALL: [StoreKind; 3] = [StoreKind::Metadata, StoreKind::Local, StoreKind::Remote];

    /// The collection route under `/api/v1`.
    pub fn route(self) -> &'static str {
        match self {
            Self::Metadata => "store/metadata",
            Self::Local => "store/block/local",
            Self::Remote => "store/block/remote",
        }
    }

    /// As a user reads it in a condition: "metadata store meta".
    pub fn label(self) -> &'static str {
        match self {
            Self::Metadata => "metadata store",
            Self::Local => "local block store",
            Self::Remote => "remote block store",
        }
    }

    fn types(self) -> &'static [&'static str] {
        match self {
            Self::Metadata => &["badger", "memory", "postgres", "sqlite"],
            Self::Local => &["fs", "memory"],
            Self::Remote => &["s3", "memory"],
        }
    }
}

impl DesiredRuntime {
    pub fn stores(&self, kind: StoreKind) -> &[DesiredStore] {
        match kind {
            StoreKind::Metadata => &self.metadata_stores,
            StoreKind::Local => &self.local_block_stores,
            StoreKind::Remote => &self.remote_block_stores,
        }
    }

    /// Every Secret the stores and users read, for fetching before planning.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = StoreKind::ALL
            .iter()
            .flat_map(|k| self.stores(*k))
            .flat_map(|s| s.secret_config.values().map(|r| r.name.clone()))
            .chain(self.users.iter().map(|u| u.password_secret.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Names, types and references that DittoFS would refuse, reported before any call.
    pub fn check(&self) -> Result<(), String> {
        let mut adapters: Vec<&str> = Vec::new();
        for adapter in &self.adapters {
            if !["nfs", "smb"].contains(&adapter.adapter_type.as_str()) {
                return Err(format!("adapters: unknown type {:?} (nfs or smb)", adapter.adapter_type));
            }
            if !(1..=65535).contains(&adapter.port) {
                return Err(format!("adapter {}: port {} is out of range", adapter.adapter_type, adapter.port));
            }
            if adapters.contains(&adapter.adapter_type.as_str()) {
                return Err(format!("adapter {} is listed twice", adapter.adapter_type));
            }
            adapters.push(&adapter.adapter_type);
        }
        for kind in StoreKind::ALL {
            let mut seen: Vec<&str> = Vec::new();
            for store in self.stores(kind) {
                if store.name.is_empty() || store.name.contains('/') {
                    return Err(format!("{} {:?}: not a valid name", kind.label(), store.name));
                }
                if !kind.types().contains(&store.store_type.as_str()) {
                    return Err(format!(
                        "{} {}: type {:?} is not one of {}",
                        kind.label(),
                        store.name,
                        store.store_type,
                        kind.types().join(", ")
                    ));
                }
                if seen.contains(&store.name.as_str()) {
                    return Err(format!("{} {} is listed twice", kind.label(), store.name));
                }
                seen.push(&store.name);
            }
        }
        let has = |kind: StoreKind, name: &str| self.stores(kind).iter().any(|s| s.name == name);
        let mut shares: Vec<&str> = Vec::new();
        for share in &self.shares {
            let valid = share.name.len() > 1
                && share.name.starts_with('/')
                && !share.name[1..].contains('/')
                && share.name[1..].chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !valid {
                return Err(format!("share {:?}: a share is one path segment such as /export", share.name));
            }
            if shares.contains(&share.name.as_str()) {
                return Err(format!("share {} is listed twice", share.name));
            }
            shares.push(&share.name);
            if !has(StoreKind::Metadata, &share.metadata_store) {
                return Err(format!("share {}: no metadata store {:?}", share.name, share.metadata_store));
            }
            if !has(StoreKind::Local, &share.local_block_store) {
                return Err(format!("share {}: no local block store {:?}", share.name, share.local_block_store));
            }
            if let Some(remote) = &share.remote_block_store
                && !has(StoreKind::Remote, remote)
            {
                return Err(format!("share {}: no remote block store {remote:?}", share.name));
            }
            if let Some(quota) = share.quota_bytes
                && quota == 0
            {
                return Err(format!("share {}: quotaBytes must be above 0 (leave it out for no quota)", share.name));
            }
            for quota in share.identity_quotas.iter().flatten() {
                let needs_id = quota.scope != "default-user";
                if !["user", "group", "default-user"].contains(&quota.scope.as_str())
                    || needs_id != quota.id.is_some()
                    || quota.limit_bytes == 0
                {
                    return Err(format!(
                        "share {}: quota of {} is not a user, group or default-user quota above 0",
                        share.name, quota.who
                    ));
                }
            }
            if share.allowed_clients.is_some() && !share.nfs_export.get("netgroup").is_some_and(Value::is_string) {
                return Err(format!(
                    "share {}: allowedClients needs nfsExport.netgroup, the netgroup to keep them in",
                    share.name
                ));
            }
            if let Some(member) =
                share.allowed_clients.iter().flatten().find(|m| !["ip", "cidr", "hostname"].contains(&m.kind.as_str()))
            {
                return Err(format!(
                    "share {}: allowed client type {:?} is not ip, cidr or hostname",
                    share.name, member.kind
                ));
            }
            if !LEVELS.contains(&share.default_permission.as_str()) {
                return Err(format!(
                    "share {}: defaultPermission {:?} is not none, read, read-write or admin",
                    share.name, share.default_permission
                ));
            }
        }
        let mut policies: Vec<&str> = Vec::new();
        for policy in &self.snapshot_policies {
            if !policy.share.starts_with('/') {
                return Err(format!("snapshot policy: {:?} is not a share name such as /export", policy.share));
            }
            if policies.contains(&policy.share.as_str()) {
                return Err(format!("snapshot policy of {} is listed twice", policy.share));
            }
            policies.push(&policy.share);
            if interval_seconds(&policy.interval).is_none() {
                return Err(format!(
                    "snapshot policy of {}: interval {:?} is not a duration",
                    policy.share, policy.interval
                ));
            }
            if policy.ttl.as_deref().is_some_and(|t| crate::go_duration::seconds(t).is_none()) {
                return Err(format!("snapshot policy of {}: ttl is not a duration", policy.share));
            }
        }
        for name in &self.delete_stores {
            if StoreKind::ALL.iter().any(|k| has(*k, name)) {
                return Err(format!("deleteStores: {name:?} is also declared"));
            }
        }
        for (adapter, settings) in &self.adapter_settings {
            if !adapters.contains(&adapter.as_str()) {
                return Err(format!("adapterSettings: no adapter {adapter:?} in adapters"));
            }
            if settings.is_empty() {
                return Err(format!("adapterSettings of {adapter}: empty"));
            }
        }
        self.check_access()
    }

    /// Users, groups and grants: names DittoFS takes, and references to declared ones only.
    fn check_access(&self) -> Result<(), String> {
        let valid = |name: &str| {
            !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !name.starts_with(['.', '-'])
        };
        let mut groups: Vec<&str> = Vec::new();
        for group in &self.groups {
            if !valid(&group.name) {
                return Err(format!("group {:?}: not a valid name", group.name));
            }
            if groups.contains(&group.name.as_str()) {
                return Err(format!("group {} is listed twice", group.name));
            }
            groups.push(&group.name);
        }
        let mut users: Vec<&str> = Vec::new();
        for user in &self.users {
            if !valid(&user.name) || user.name == "admin" {
                return Err(format!("user {:?}: not a valid name, or the bootstrap admin", user.name));
            }
            if users.contains(&user.name.as_str()) {
                return Err(format!("user {} is listed twice", user.name));
            }
            users.push(&user.name);
            if !["user", "operator"].contains(&user.role.as_str()) {
                return Err(format!("user {}: role {:?} is not user or operator", user.name, user.role));
            }
            if let Some(group) = user.groups.iter().find(|g| !groups.contains(&g.as_str())) {
                return Err(format!("user {}: no group {group:?}", user.name));
            }
        }
        for share in &self.shares {
            let mut seen: Vec<(&str, &str)> = Vec::new();
            for grant in share.permissions.iter().flatten() {
                let (kind, name) = grant.grantee();
                if grant.user.is_some() == grant.group.is_some() {
                    return Err(format!("share {}: a permission names exactly one of user or group", share.name));
                }
                let declared = if kind == "user" { &users } else { &groups };
                if !declared.contains(&name) {
                    return Err(format!("share {}: permission for {kind} {name:?}, which is not declared", share.name));
                }
                if !LEVELS.contains(&grant.level.as_str()) {
                    return Err(format!(
                        "share {}: permission {:?} of {kind} {name} is not none, read, read-write or admin",
                        share.name, grant.level
                    ));
                }
                if seen.contains(&(kind, name)) {
                    return Err(format!("share {}: {kind} {name} has two permissions", share.name));
                }
                seen.push((kind, name));
            }
        }
        if let Some(name) = self.delete_users.iter().find(|n| users.contains(&n.as_str()) || *n == "admin") {
            return Err(format!("deleteUsers: {name:?} is also declared, or the bootstrap admin"));
        }
        if let Some(name) =
            self.delete_groups.iter().find(|n| groups.contains(&n.as_str()) || SYSTEM_GROUPS.contains(&n.as_str()))
        {
            return Err(format!("deleteGroups: {name:?} is also declared, or one of DittoFS's own groups"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> DesiredRuntime {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const BASE: &str = "adapters: [{type: nfs, enabled: true, port: 12049}]\nmetadataStores: [{name: meta, type: badger, config: {path: /m}}]\nlocalBlockStores: [{name: local, type: fs, config: {path: /b}}]\n";

    #[test]
    fn a_share_must_name_declared_stores() {
        let ok = parse(&format!(
            "{BASE}shares: [{{name: /export, metadataStore: meta, localBlockStore: local, defaultPermission: read-write}}]\n"
        ));
        assert_eq!(ok.check(), Ok(()));
        let bad = parse(&format!(
            "{BASE}shares: [{{name: /export, metadataStore: nope, localBlockStore: local, defaultPermission: read-write}}]\n"
        ));
        assert_eq!(bad.check().unwrap_err(), "share /export: no metadata store \"nope\"");
    }

    #[test]
    fn unknown_keys_and_types_are_refused() {
        assert!(serde_saphyr::from_str::<DesiredRuntime>("shares: []\nextra: 1\n").is_err());
        let bad = parse("localBlockStores: [{name: x, type: s3}]\n");
        assert!(bad.check().unwrap_err().contains("type \"s3\" is not one of fs, memory"));
        let nested = parse(&format!(
            "{BASE}shares: [{{name: /a/b, metadataStore: meta, localBlockStore: local, defaultPermission: read}}]\n"
        ));
        assert!(nested.check().unwrap_err().contains("one path segment"));
    }

    #[test]
    fn a_declared_store_cannot_be_deleted() {
        let bad = parse(&format!("{BASE}deleteStores: [meta]\n"));
        assert_eq!(bad.check().unwrap_err(), "deleteStores: \"meta\" is also declared");
    }
}
