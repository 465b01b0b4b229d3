//! The DittoFS state the runtime template renders from, with every default applied: stores
//! (sized to their claims), shares with their NFS and SMB options, users, groups, grants and
//! quotas. Checked here, so a spec DittoFS would refuse fails at render with the field named.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ContextError, Database, Storage, invalid, wire_name};
use crate::crd::{DatabaseType, DittoServerSpec, LocalStoreSpec, MetadataStoreSpec, SecretKeyRef};
use crate::values::{RuntimeValues, Values};

/// Stores and shares with every default applied (from the spec, else `values.runtime`).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettings {
    pub operator_user: String,
    pub metadata_store: StoreSettings,
    pub local_store: StoreSettings,
    pub remote_store: Option<RemoteStoreSettings>,
    pub shares: Vec<ShareSettings>,
    pub delete_stores: Vec<String>,
    pub snapshot_policies: Vec<SnapshotPolicySettings>,
    pub users: Vec<UserSettings>,
    pub groups: Vec<GroupSettings>,
    pub delete_users: Vec<String>,
    pub delete_groups: Vec<String>,
}

/// `spec.users[]` with defaults; the password stays in its Secret.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserSettings {
    pub name: String,
    pub password: SecretKeyRef,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub groups: Vec<String>,
    pub role: String,
    pub enabled: bool,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    pub name: String,
    pub gid: Option<i64>,
}

/// One grant of `spec.shares[].permissions`: `kind` is `user` or `group`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrantSettings {
    pub kind: String,
    pub name: String,
    pub level: String,
}

/// `spec.snapshotPolicies[]` with the share name normalized (`/export`).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPolicySettings {
    pub share: String,
    pub interval: String,
    pub keep_last: i32,
    pub ttl: Option<String>,
    pub enabled: bool,
    pub name_prefix: Option<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    pub name: String,
    #[serde(rename = "type")]
    pub store_type: String,
    /// Directory on a claim (`badger`, `fs`).
    pub path: Option<String>,
    /// `postgres` metadata: the database on the DittoServer's PostgreSQL.
    pub database: Option<String>,
    /// `fs` local store: the bytes it may hold (DittoFS's `max_size`).
    pub max_size: Option<u64>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStoreSettings {
    pub name: String,
    pub bucket: String,
    pub region: String,
    /// From the spec or the values; the Secret's endpoint key, when present, wins.
    pub endpoint: String,
    pub prefix: Option<String>,
    pub force_path_style: bool,
    pub allow_private_endpoint: bool,
    pub access_key_id: SecretKeyRef,
    pub secret_access_key: SecretKeyRef,
    pub endpoint_from_secret: SecretKeyRef,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShareSettings {
    pub name: String,
    pub read_only: bool,
    pub default_permission: String,
    pub remote: bool,
    /// `None`: the share's grants are not managed.
    pub permissions: Option<Vec<GrantSettings>>,
    pub quota_bytes: Option<u64>,
    /// DittoFS's per-share NFS config keys the spec sets (`squash`, `netgroup`, ...).
    pub nfs_export: BTreeMap<String, serde_json::Value>,
    /// `nfs.allowedClients` as netgroup members (`type`: `ip`, `cidr`, `hostname`).
    pub allowed_clients: Option<Vec<ClientSettings>>,
    pub access_based_enumeration: Option<bool>,
    /// `userQuota` and `quotas`; `None`: the share's user and group quotas are not managed.
    pub identity_quotas: Option<Vec<IdentityQuotaSettings>>,
}

/// One row of DittoFS's per-share quotas: `scope` `user`, `group` or `default-user`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityQuotaSettings {
    pub scope: String,
    /// The uid or gid; none for `default-user`.
    pub id: Option<i64>,
    /// Who, for people: `alice`, `staff`, `every user`.
    pub who: String,
    pub limit_bytes: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSettings {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

pub(super) fn runtime(
    spec: &DittoServerSpec,
    values: &Values,
    storage: &Storage,
    database: &Database,
) -> Result<RuntimeSettings, ContextError> {
    let v = &values.runtime;
    let stores = spec.stores.clone().unwrap_or_default();
    let metadata_store = metadata_store(v, storage, database, stores.metadata.unwrap_or_default())?;
    let local_store = local_store(spec, v, storage, stores.local.unwrap_or_default())?;
    let remote_store = remote_store(spec, v);
    let names = [&metadata_store.name, &local_store.name];
    if let Some(remote) = &remote_store
        && names.contains(&&remote.name)
    {
        return Err(invalid("spec.s3.name", format!("{:?} is already the name of another store", remote.name)));
    }
    let shares = shares(spec, v, remote_store.is_some())?;
    let mut managed: Vec<&String> = vec![&metadata_store.name, &local_store.name];
    managed.extend(remote_store.as_ref().map(|r| &r.name));
    let delete_stores = stores.delete.unwrap_or_default();
    if let Some((i, name)) = delete_stores.iter().enumerate().find(|(_, n)| managed.contains(n)) {
        return Err(invalid(&format!("spec.stores.delete[{i}]"), format!("{name:?} is a store this spec uses")));
    }
    let snapshot_policies = snapshot_policies(spec)?;
    let (users, groups) = access(spec, v)?;
    Ok(RuntimeSettings {
        users,
        groups,
        delete_users: spec.delete_users.clone().unwrap_or_default(),
        delete_groups: spec.delete_groups.clone().unwrap_or_default(),
        operator_user: v.operator_user.clone(),
        metadata_store,
        local_store,
        remote_store,
        shares,
        delete_stores,
        snapshot_policies,
    })
}

/// The metadata store: on its claim (badger), in memory, or on the DittoServer's PostgreSQL.
fn metadata_store(
    v: &RuntimeValues,
    storage: &Storage,
    database: &Database,
    metadata: MetadataStoreSpec,
) -> Result<StoreSettings, ContextError> {
    let claim = |name: &str| storage.claims.iter().find(|c| c.name == name).map(|c| c.mount_path.clone());
    let metadata_name = metadata.name.unwrap_or_else(|| v.metadata_store.clone());
    let metadata_type = metadata.store_type.map_or_else(|| v.metadata_store_type.clone(), |t| wire_name(&t));
    if metadata_type == "postgres" && database.db_type != DatabaseType::Postgres {
        return Err(invalid(
            "spec.stores.metadata.type",
            "postgres keeps file metadata on the DittoServer's PostgreSQL: set spec.database.postgresSecretRef, spec.database.percona or spec.percona",
        ));
    }
    let metadata_store = StoreSettings {
        path: (metadata_type == "badger").then(|| format!("{}/{metadata_name}", claim("metadata").unwrap_or_default())),
        database: (metadata_type == "postgres")
            .then(|| metadata.database.clone().unwrap_or_else(|| v.postgres_metadata_database.clone())),
        name: metadata_name,
        store_type: metadata_type,
        max_size: None,
    };
    if let (Some(db), Some(pg)) = (&metadata_store.database, &database.postgres)
        && *db == pg.database
    {
        return Err(invalid(
            "spec.stores.metadata.database",
            format!("{db:?} is the control-plane database; file metadata needs another (both have a `shares` table)"),
        ));
    }

    Ok(metadata_store)
}

/// The local block store: the files themselves, or the cache in front of S3; sized to its claim.
fn local_store(
    spec: &DittoServerSpec,
    v: &RuntimeValues,
    storage: &Storage,
    local: LocalStoreSpec,
) -> Result<StoreSettings, ContextError> {
    let local_name = local.name.unwrap_or_else(|| v.local_store.clone());
    let local_type = local.store_type.map_or_else(|| v.local_store_type.clone(), |t| wire_name(&t));
    // With a remote store the local store is a cache tier: the cache claim first. Without one
    // it holds the files: the content claim first. The metadata claim always exists.
    let candidates: &[&str] =
        if spec.s3.is_some() { &["cache", "content", "metadata"] } else { &["content", "cache", "metadata"] };
    let block_claim = candidates.iter().find_map(|c| storage.claims.iter().find(|claim| claim.name == *c));
    let block_root = block_claim.map(|c| c.mount_path.clone()).unwrap_or_default();
    let max_size = match (&local.max_size, block_claim) {
        _ if local_type != "fs" => None,
        (Some(size), _) => Some(crate::quantity::bytes(size).filter(|b| *b > 0).ok_or_else(|| {
            invalid("spec.stores.local.maxSize", format!("{size:?} is not a positive size such as 40Gi"))
        })?),
        // A share of the claim, so blocks never fill it: more headroom when the metadata store
        // (and its compactions) live there too.
        (None, Some(claim)) => crate::quantity::bytes(&claim.size).map(|bytes| {
            let percent = if claim.name == "metadata" {
                v.local_store_share_of_metadata_claim
            } else {
                v.local_store_share_of_claim
            };
            u64::try_from(u128::from(bytes) * u128::from(percent) / 100).unwrap_or(bytes)
        }),
        (None, None) => None,
    };
    let local_store = StoreSettings {
        path: (local_type == "fs").then(|| format!("{block_root}/{local_name}")),
        name: local_name,
        store_type: local_type,
        database: None,
        max_size,
    };

    Ok(local_store)
}

/// The S3 store (`spec.s3`), its keys read from the Secret.
fn remote_store(spec: &DittoServerSpec, v: &RuntimeValues) -> Option<RemoteStoreSettings> {
    spec.s3.as_ref().map(|s3| {
        let r = &s3.credentials_secret_ref;
        let key = |k: &Option<String>, default: &str| SecretKeyRef {
            name: r.secret_name.clone(),
            key: k.clone().unwrap_or_else(|| default.to_string()),
        };
        RemoteStoreSettings {
            name: s3.name.clone().unwrap_or_else(|| v.remote_store.clone()),
            bucket: s3.bucket.clone(),
            region: s3.region.clone().unwrap_or_else(|| v.s3.region.clone()),
            endpoint: s3.endpoint.clone().unwrap_or_else(|| v.s3.endpoint.clone()),
            prefix: s3.prefix.clone(),
            force_path_style: s3.force_path_style.unwrap_or(false),
            allow_private_endpoint: s3.allow_private_endpoint.unwrap_or(false),
            access_key_id: key(&r.access_key_id_key, &v.s3.access_key_id_key),
            secret_access_key: key(&r.secret_access_key_key, &v.s3.secret_access_key_key),
            endpoint_from_secret: key(&r.endpoint_key, &v.s3.endpoint_key),
        }
    })
}

/// The spec's shares, or the one default share.
fn shares(spec: &DittoServerSpec, v: &RuntimeValues, has_remote: bool) -> Result<Vec<ShareSettings>, ContextError> {
    Ok(match &spec.shares {
        Some(shares) => shares
            .iter()
            .enumerate()
            .map(|(i, share)| {
                let remote = share.remote.unwrap_or(has_remote);
                if remote && !has_remote {
                    return Err(invalid(&format!("spec.shares[{i}].remote"), "needs spec.s3"));
                }
                let quota_bytes = match &share.quota {
                    Some(quota) => Some(crate::quantity::bytes(quota).filter(|b| *b > 0).ok_or_else(|| {
                        invalid(
                            &format!("spec.shares[{i}].quota"),
                            format!("{quota:?} is not a positive size such as 10Gi"),
                        )
                    })?),
                    None => None,
                };
                let permissions = match &share.permissions {
                    Some(grants) => Some(
                        grants
                            .iter()
                            .enumerate()
                            .map(|(j, g)| {
                                grant(spec, g).map_err(|m| invalid(&format!("spec.shares[{i}].permissions[{j}]"), m))
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    None => None,
                };
                let (nfs_export, allowed_clients) = share_nfs(share, i)?;
                let identity_quotas = identity_quotas(spec, share, i)?;
                Ok(ShareSettings {
                    name: share.name.clone(),
                    read_only: share.read_only.unwrap_or(false),
                    default_permission: share
                        .default_permission
                        .map_or_else(|| v.default_permission.clone(), |p| wire_name(&p)),
                    remote,
                    permissions,
                    quota_bytes,
                    nfs_export,
                    allowed_clients,
                    access_based_enumeration: share.smb.as_ref().and_then(|s| s.access_based_enumeration),
                    identity_quotas,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![ShareSettings {
            name: v.default_share.clone(),
            read_only: false,
            default_permission: v.default_permission.clone(),
            remote: has_remote,
            permissions: None,
            quota_bytes: None,
            nfs_export: BTreeMap::new(),
            allowed_clients: None,
            access_based_enumeration: None,
            identity_quotas: None,
        }],
    })
}

/// `spec.snapshotPolicies`, their share names made absolute.
fn snapshot_policies(spec: &DittoServerSpec) -> Result<Vec<SnapshotPolicySettings>, ContextError> {
    let mut snapshot_policies = Vec::new();
    for (i, p) in spec.snapshot_policies.iter().flatten().enumerate() {
        // Any share DittoFS has, as the earlier operator allowed (one made with dfsctl, say).
        let share = if p.share.starts_with('/') { p.share.clone() } else { format!("/{}", p.share) };
        if share.len() < 2 || share[1..].contains('/') {
            return Err(invalid(
                &format!("spec.snapshotPolicies[{i}].share"),
                format!("{share:?} is not a share name"),
            ));
        }
        snapshot_policies.push(SnapshotPolicySettings {
            share,
            interval: p.interval.clone(),
            keep_last: p.keep_last.unwrap_or(0),
            ttl: p.ttl.clone(),
            enabled: p.enabled.unwrap_or(true),
            name_prefix: p.name_prefix.clone(),
        });
    }
    Ok(snapshot_policies)
}

/// `userQuota` and `quotas` of `spec.shares[i]` as DittoFS's quota rows, by uid and gid.
fn identity_quotas(
    spec: &DittoServerSpec,
    share: &crate::crd::ShareSpec,
    i: usize,
) -> Result<Option<Vec<IdentityQuotaSettings>>, ContextError> {
    if share.user_quota.is_none() && share.quotas.is_none() {
        return Ok(None);
    }
    let size = |field: String, text: &str| {
        crate::quantity::bytes(text)
            .filter(|b| *b > 0)
            .ok_or_else(|| invalid(&field, format!("{text:?} is not a positive size such as 10Gi")))
    };
    let mut rows = Vec::new();
    if let Some(limit) = &share.user_quota {
        let limit_bytes = size(format!("spec.shares[{i}].userQuota"), limit)?;
        rows.push(IdentityQuotaSettings {
            scope: "default-user".into(),
            id: None,
            who: "every user".into(),
            limit_bytes,
        });
    }
    for (j, q) in share.quotas.iter().flatten().enumerate() {
        let field = format!("spec.shares[{i}].quotas[{j}]");
        let (scope, name, id) = match (&q.user, &q.group) {
            (Some(user), None) => {
                let found = spec.users.iter().flatten().find(|u| &u.name == user);
                ("user", user, found.and_then(|u| u.uid))
            }
            (None, Some(group)) => {
                let found = spec.groups.iter().flatten().find(|g| &g.name == group);
                ("group", group, found.and_then(|g| g.gid))
            }
            _ => return Err(invalid(&field, "names exactly one of user or group")),
        };
        let id = id.ok_or_else(|| {
            invalid(
                &field,
                format!(
                    "{scope} {name:?} is not in spec.{scope}s with a {}",
                    if scope == "user" { "uid" } else { "gid" }
                ),
            )
        })?;
        let limit_bytes = size(format!("{field}.limit"), &q.limit)?;
        rows.push(IdentityQuotaSettings { scope: scope.into(), id: Some(id), who: name.clone(), limit_bytes });
    }
    Ok(Some(rows))
}

/// `spec.shares[i].nfs` as DittoFS's per-share NFS config, and its allowed clients as the members
/// of the netgroup `clients-<share>` the config names.
#[allow(clippy::type_complexity)]
fn share_nfs(
    share: &crate::crd::ShareSpec,
    i: usize,
) -> Result<(BTreeMap<String, serde_json::Value>, Option<Vec<ClientSettings>>), ContextError> {
    let mut config = BTreeMap::new();
    let Some(nfs) = &share.nfs else { return Ok((config, None)) };
    let mut set = |key: &str, value: Option<serde_json::Value>| {
        if let Some(value) = value {
            config.insert(key.to_string(), value);
        }
    };
    set("squash", nfs.squash.map(|s| serde_json::json!(wire_name(&s))));
    set("anonymous_uid", nfs.anonymous_uid.map(|u| serde_json::json!(u)));
    set("anonymous_gid", nfs.anonymous_gid.map(|g| serde_json::json!(g)));
    set("allow_auth_sys", nfs.allow_auth_sys.map(|b| serde_json::json!(b)));
    set("require_kerberos", nfs.require_kerberos.map(|b| serde_json::json!(b)));
    set("min_kerberos_level", nfs.min_kerberos_level.map(|l| serde_json::json!(wire_name(&l))));
    let Some(clients) = &nfs.allowed_clients else { return Ok((config, None)) };
    let mut members = Vec::new();
    for (j, client) in clients.iter().enumerate() {
        let kind = if client.contains('/') {
            client.parse::<ipnet_like::Cidr>().map(|_| "cidr")
        } else if client.parse::<std::net::IpAddr>().is_ok() {
            Ok("ip")
        } else if !client.is_empty() && client.len() <= 253 && client.split('.').all(host_label) {
            Ok("hostname")
        } else {
            Err(())
        };
        let kind = kind.map_err(|_| {
            invalid(
                &format!("spec.shares[{i}].nfs.allowedClients[{j}]"),
                format!("{client:?} is not an IP address, a CIDR or a host name"),
            )
        })?;
        members.push(ClientSettings { kind: kind.into(), value: client.clone() });
    }
    config.insert("netgroup".into(), serde_json::json!(format!("clients-{}", &share.name[1..])));
    Ok((config, Some(members)))
}

fn host_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// CIDR parsing without a crate: an address, `/`, a prefix length no longer than it.
mod ipnet_like {
    pub struct Cidr;

    impl std::str::FromStr for Cidr {
        type Err = ();
        fn from_str(text: &str) -> Result<Self, ()> {
            let (address, prefix) = text.split_once('/').ok_or(())?;
            let address: std::net::IpAddr = address.parse().map_err(|_| ())?;
            let prefix: u8 = prefix.parse().map_err(|_| ())?;
            let most = if address.is_ipv4() { 32 } else { 128 };
            if prefix <= most { Ok(Cidr) } else { Err(()) }
        }
    }
}

/// One share grant, naming a declared user or group.
fn grant(spec: &DittoServerSpec, g: &crate::crd::ShareGrant) -> Result<GrantSettings, String> {
    let (kind, name, declared) = match (&g.user, &g.group) {
        (Some(user), None) => ("user", user, spec.users.iter().flatten().any(|u| &u.name == user)),
        (None, Some(group)) => ("group", group, spec.groups.iter().flatten().any(|x| &x.name == group)),
        _ => return Err("names exactly one of user or group".into()),
    };
    if !declared {
        return Err(format!("{kind} {name:?} is not in spec.{kind}s"));
    }
    Ok(GrantSettings { kind: kind.into(), name: name.clone(), level: wire_name(&g.level) })
}

/// `spec.users` and `spec.groups` with defaults. The CRD's rules refuse the same mistakes; these
/// checks hold for a values override of the operator's account name too.
fn access(
    spec: &DittoServerSpec,
    v: &crate::values::RuntimeValues,
) -> Result<(Vec<UserSettings>, Vec<GroupSettings>), ContextError> {
    let groups: Vec<GroupSettings> =
        spec.groups.iter().flatten().map(|g| GroupSettings { name: g.name.clone(), gid: g.gid }).collect();
    let mut users = Vec::new();
    for (i, u) in spec.users.iter().flatten().enumerate() {
        if u.name == v.operator_user || u.name == "admin" {
            return Err(invalid(
                &format!("spec.users[{i}].name"),
                format!("{:?} is the operator's own account or the bootstrap admin, not managed here", u.name),
            ));
        }
        if let Some(g) = u.groups.iter().flatten().find(|g| !groups.iter().any(|x| &x.name == *g)) {
            return Err(invalid(&format!("spec.users[{i}].groups"), format!("{g:?} is not a group of spec.groups")));
        }
        users.push(UserSettings {
            name: u.name.clone(),
            password: SecretKeyRef {
                name: u.password_secret_ref.name.clone(),
                key: u.password_secret_ref.key.clone().unwrap_or_else(|| "password".into()),
            },
            uid: u.uid,
            gid: u.gid,
            groups: u.groups.clone().unwrap_or_default(),
            role: u.role.map_or_else(|| "user".into(), |r| wire_name(&r)),
            enabled: u.enabled.unwrap_or(true),
        });
    }
    if let Some((i, name)) = spec
        .delete_users
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, n)| **n == v.operator_user || *n == "admin" || users.iter().any(|u| &u.name == *n))
    {
        return Err(invalid(
            &format!("spec.deleteUsers[{i}]"),
            format!("{name:?} is the operator's account, the bootstrap admin, or a user of spec.users"),
        ));
    }
    if let Some((i, name)) = spec.delete_groups.iter().flatten().enumerate().find(|(_, n)| {
        groups.iter().any(|g| &g.name == *n) || crate::render::desired::SYSTEM_GROUPS.contains(&n.as_str())
    }) {
        return Err(invalid(
            &format!("spec.deleteGroups[{i}]"),
            format!("{name:?} is a group of spec.groups or one of DittoFS's own"),
        ));
    }
    Ok((users, groups))
}
