//! Live DittoFS state + the desired state → the calls that make them match. Pure, so every
//! rule is unit-tested without a server. Secret values reach request bodies only; what a user
//! reads (descriptions, problems) names secret-derived keys, never their values.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub mod access;

use super::api::{
    LiveAdapter, LiveGroup, LiveNetgroup, LivePermission, LiveQuota, LiveShare, LiveSnapshotPolicy, LiveStore,
    LiveUser, segment, share_path,
};
use crate::render::desired::{DesiredRuntime, DesiredStore, StoreKind, interval_seconds};
use access::ResolvedUser;

/// Config key under which the operator records a keyed digest of the store's Secret values:
/// DittoFS masks secrets on reads, so this is how a rotated Secret is noticed.
pub const CREDENTIALS_DIGEST_KEY: &str = "operator_credentials_digest";

/// An enabled adapter that is not healthy this long after its last restart is restarted again
/// (DittoFS never retries a listener that failed to bind, e.g. on a busy port).
pub const ADAPTER_RESTART_AFTER_SECONDS: i64 = 15;

/// What one server reports.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub adapters: Vec<LiveAdapter>,
    pub stores: BTreeMap<StoreKind, Vec<LiveStore>>,
    pub shares: Vec<LiveShare>,
    /// Read only when the spec declares policies.
    pub snapshot_policies: Vec<LiveSnapshotPolicy>,
    /// Settings of the adapters the spec sets any for, by type.
    pub adapter_settings: BTreeMap<String, Value>,
    /// Read only when the spec manages users.
    pub users: Vec<LiveUser>,
    /// Read only when the spec manages groups or users.
    pub groups: Vec<LiveGroup>,
    /// The grants of the shares that declare `permissions`, by share.
    pub permissions: BTreeMap<String, Vec<LivePermission>>,
    /// The per-share NFS config of the shares whose spec sets some, by share.
    pub nfs_exports: BTreeMap<String, Value>,
    /// The netgroups that hold shares' allowed clients, by name (absent: not made yet).
    pub netgroups: BTreeMap<String, LiveNetgroup>,
    /// The user, group and default-user quotas of the shares whose spec manages them, by share.
    pub quotas: BTreeMap<String, Vec<LiveQuota>>,
    /// When it was read (for the adapter restart rule).
    pub read_at: Option<k8s_openapi::jiff::Timestamp>,
}

impl Live {
    fn store(&self, kind: StoreKind, name: &str) -> Option<&LiveStore> {
        self.stores.get(&kind).and_then(|s| s.iter().find(|s| s.name == name))
    }

    fn store_name(&self, kind: StoreKind, id: &str) -> Option<&str> {
        self.stores.get(&kind).and_then(|s| s.iter().find(|s| s.id == id || s.name == id)).map(|s| s.name.as_str())
    }

    pub fn share(&self, name: &str) -> Option<&LiveShare> {
        self.shares.iter().find(|s| s.name == name)
    }
}

/// A desired store with its Secret values filled in.
#[derive(Clone)]
pub struct ResolvedStore {
    pub kind: StoreKind,
    pub desired: DesiredStore,
    /// `config` plus the Secret values and, when there are any, their digest.
    pub config: Map<String, Value>,
    /// Keys whose values came from Secrets: compared through the digest, never shown.
    pub secret_keys: Vec<String>,
}

impl std::fmt::Debug for ResolvedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config: BTreeMap<&String, &dyn std::fmt::Debug> = self
            .config
            .iter()
            .map(|(k, v)| {
                let shown: &dyn std::fmt::Debug = if self.secret_keys.contains(k) { &crate::redact::Hidden } else { v };
                (k, shown)
            })
            .collect();
        f.debug_struct("ResolvedStore")
            .field("kind", &self.kind)
            .field("desired", &self.desired)
            .field("config", &config)
            .field("secret_keys", &self.secret_keys)
            .finish()
    }
}

impl ResolvedStore {
    /// `secrets` maps (Secret, key) to the value found; `digest` keys the fingerprint.
    pub fn resolve(
        kind: StoreKind,
        desired: &DesiredStore,
        secrets: &BTreeMap<(String, String), String>,
        digest: impl Fn(&[u8]) -> String,
    ) -> Result<Self, String> {
        let mut config = desired.config.clone();
        let mut secret_keys = Vec::new();
        let mut material = Vec::new();
        for (key, reference) in &desired.secret_config {
            match secrets.get(&(reference.name.clone(), reference.key.clone())) {
                Some(value) => {
                    config.insert(key.clone(), Value::String(value.clone()));
                    secret_keys.push(key.clone());
                    material.extend_from_slice(key.as_bytes());
                    material.push(0);
                    material.extend_from_slice(value.as_bytes());
                    material.push(0);
                }
                None if reference.optional => {}
                None => {
                    return Err(format!(
                        "{} {}: Secret {:?} has no key {:?} (for {key})",
                        kind.label(),
                        desired.name,
                        reference.name,
                        reference.key
                    ));
                }
            }
        }
        if !secret_keys.is_empty() {
            config.insert(CREDENTIALS_DIGEST_KEY.into(), Value::String(digest(&material)));
        }
        Ok(Self { kind, desired: desired.clone(), config, secret_keys })
    }

    fn config_string(&self) -> String {
        Value::Object(self.config.clone()).to_string()
    }
}

/// One call to make, with a line a user reads in `diff`, the InSync condition and Events.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub description: String,
    pub method: &'static str,
    pub path: String,
    /// May hold secrets: sent, never shown.
    pub body: Option<Value>,
    /// What a failure is about, for the condition: "remote block store s3".
    pub subject: String,
    pub area: Area,
    /// DittoFS reads a store's credentials when it loads a share: a share in use only sees new
    /// ones after a restart.
    pub needs_restart: bool,
}

/// What a change touches, for the condition's reason when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Adapter,
    Store,
    Share,
    Access,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// What the operator will not do on its own, each with what the user can do.
    pub refused: Vec<String>,
    /// What is on the server, not in the spec, and left alone (users, groups), said in `diff`.
    pub kept: Vec<String>,
}

/// Adapter settings that DittoFS reads when the adapter starts: changing one restarts it.
const SETTINGS_READ_AT_START: &[&str] = &["portmapper_enabled", "portmapper_port", "udp_enabled"];

/// What the plan compares besides the live state: the stores and users with their Secret values,
/// and the accounts it must never touch.
#[derive(Debug, Default)]
pub struct Resolved<'a> {
    pub stores: &'a [ResolvedStore],
    pub users: &'a [ResolvedUser],
    /// The bootstrap admin and the operator's own account.
    pub protected_users: &'a [String],
}

impl Plan {
    pub fn descriptions(&self) -> Vec<String> {
        self.changes.iter().map(|c| c.description.clone()).collect()
    }
}

/// Config keys that say where a store's data is: changing one on a store that shares use points
/// it at other data (the files stay where they were, and the shares look empty).
const LOCATION_KEYS: &[&str] = &["bucket", "prefix", "endpoint", "region", "path", "database", "host", "port"];

/// Whether a location change of a store in use may be made (the DittoServer carries
/// `dittofs.dittofs.com/on-store-location-change: repoint`).
pub fn repoint_allowed(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(crate::names::STORE_LOCATION_ANNOTATION).map(String::as_str) == Some(crate::names::REPOINT)
}

pub fn plan(desired: &DesiredRuntime, resolved: &Resolved<'_>, live: &Live, repoint_allowed: bool) -> Plan {
    let stores = resolved.stores;
    let mut out = Plan::default();
    // Settings first: an adapter restarted below for a new port starts with them.
    let mut restart = plan_adapter_settings(desired, live, &mut out);
    for adapter in &desired.adapters {
        let t = &adapter.adapter_type;
        match live.adapters.iter().find(|a| &a.adapter_type == t) {
            None => out.changes.push(Change {
                description: format!(
                    "adapter {t}: create on port {}{}",
                    adapter.port,
                    if adapter.enabled { "" } else { " (disabled)" }
                ),
                method: "POST",
                path: "/api/v1/adapters".into(),
                body: Some(json!({"type": t, "enabled": adapter.enabled, "port": adapter.port})),
                subject: format!("adapter {t}"),
                area: Area::Adapter,
                needs_restart: false,
            }),
            Some(l) => {
                let mut what = Vec::new();
                let mut body = Map::new();
                if l.port != adapter.port {
                    what.push(format!("port {} → {}", l.port, adapter.port));
                    body.insert("port".into(), json!(adapter.port));
                }
                if l.enabled != adapter.enabled {
                    what.push(if adapter.enabled { "enable" } else { "disable" }.to_string());
                    body.insert("enabled".into(), json!(adapter.enabled));
                }
                let stuck = live.read_at.and_then(|now| l.seconds_since_change(now)).unwrap_or(0)
                    >= ADAPTER_RESTART_AFTER_SECONDS;
                if what.is_empty() && adapter.enabled && !l.healthy() && stuck {
                    // DittoFS keeps a listener whose address did not change: stop, then start.
                    for (step, enabled) in [("stop", false), ("start", true)] {
                        out.changes.push(Change {
                            description: format!("adapter {t}: restart, {step} (it reports {})", l.health()),
                            method: "PUT",
                            path: format!("/api/v1/adapters/{t}"),
                            body: Some(json!({"enabled": enabled})),
                            subject: format!("adapter {t}"),
                            area: Area::Adapter,
                            needs_restart: false,
                        });
                    }
                }
                if !what.is_empty() {
                    // Saved with a restart by DittoFS: the new settings are read then.
                    restart.retain(|a| a != t);
                    out.changes.push(Change {
                        description: format!("adapter {t}: {}", what.join(", ")),
                        method: "PUT",
                        path: format!("/api/v1/adapters/{t}"),
                        body: Some(Value::Object(body)),
                        subject: format!("adapter {t}"),
                        area: Area::Adapter,
                        needs_restart: false,
                    });
                }
            }
        }
    }

    for adapter in restart.drain(..) {
        let subject = format!("adapter {adapter}");
        for (step, enabled) in [("stop", false), ("start", true)] {
            out.changes.push(Change {
                description: format!("{subject}: restart, {step} (it reads the changed settings at start)"),
                method: "PUT",
                path: format!("/api/v1/adapters/{}", segment(&adapter)),
                body: Some(json!({"enabled": enabled})),
                subject: subject.clone(),
                area: Area::Adapter,
                needs_restart: false,
            });
        }
    }

    for store in stores {
        let label = format!("{} {}", store.kind.label(), store.desired.name);
        let route = store.kind.route();
        match live.store(store.kind, &store.desired.name) {
            None => out.changes.push(Change {
                description: format!("{label}: create ({})", store.desired.store_type),
                method: "POST",
                path: format!("/api/v1/{route}"),
                body: Some(json!({"name": store.desired.name, "type": store.desired.store_type, "config": store.config_string()})),
                subject: label,
                area: Area::Store,
                needs_restart: false,
            }),
            Some(l) if l.store_type != store.desired.store_type => out.refused.push(format!(
                "{label} is {} on the server but the spec asks for {}: DittoFS cannot change a store's type in place. \
                 Give the new store another name (the old one and its data stay), or delete the old one yourself",
                l.store_type, store.desired.store_type
            )),
            Some(l) => {
                let users: Vec<&str> = live
                    .shares
                    .iter()
                    .filter(|s| {
                        [Some(&s.metadata_store_id), Some(&s.local_block_store_id), s.remote_block_store_id.as_ref()]
                            .contains(&Some(&l.id))
                    })
                    .map(|s| s.name.as_str())
                    .collect();
                let in_use = !users.is_empty();
                let mut config = store.config.clone();
                if in_use && store.kind == StoreKind::Local {
                    // A local store in use stays where it is: its claim is still mounted (claims
                    // cannot be added or removed), and the files are there. Adding spec.s3 to a
                    // running server would otherwise move it from the content to the cache claim.
                    if let Some(path) = l.config.get("path").filter(|_| config.contains_key("path")) {
                        config.insert("path".into(), path.clone());
                    }
                }
                let store = &ResolvedStore { config, ..store.clone() };
                let moved: Vec<&str> = LOCATION_KEYS
                    .iter()
                    .copied()
                    .filter(|k| l.config.get(*k).is_some_and(|now| store.config.get(*k) != Some(now)))
                    .collect();
                if in_use && !moved.is_empty() && !repoint_allowed {
                    out.refused.push(format!(
                        "{label} holds the data of share {}: changing its {} would point it at other data (the files stay where they are, and the share would look empty). \
                         Move the data first, then annotate the DittoServer {}={}; or give the new location a store of another name",
                        users.join(", "),
                        moved.iter().map(|k| format!("{k} ({} → {})", shown(l.config.get(*k)), shown(store.config.get(*k)))).collect::<Vec<_>>().join(", "),
                        crate::names::STORE_LOCATION_ANNOTATION,
                        crate::names::REPOINT,
                    ));
                    continue;
                }
                let what = config_differences(store, &l.config);
                if !what.is_empty() {
                    // New credentials or a new location must reach the shares now: DittoFS
                    // reads them when it loads a share. A size limit can wait for the next load.
                    let credentials = store.config.get(CREDENTIALS_DIGEST_KEY) != l.config.get(CREDENTIALS_DIGEST_KEY);
                    let needs_restart = in_use && (credentials || !moved.is_empty());
                    let later = if in_use && !needs_restart { " (read when DittoFS next starts)" } else { "" };
                    out.changes.push(Change {
                        description: format!("{label}: {}{later}", what.join(", ")),
                        method: "PUT",
                        path: format!("/api/v1/{route}/{}", segment(&store.desired.name)),
                        body: Some(json!({"config": store.config_string()})),
                        subject: label,
                        area: Area::Store,
                        needs_restart,
                    });
                }
            }
        }
    }

    access::plan_accounts(desired, resolved.users, live, &mut out);

    for share in &desired.shares {
        let subject = format!("share {}", share.name);
        let path = format!("/api/v1/shares/{}", share_path(&share.name));
        let Some(l) = live.share(&share.name) else {
            let mut body = json!({
                "name": share.name,
                "metadata_store_id": share.metadata_store,
                "local_block_store": share.local_block_store,
                "read_only": share.read_only,
                "default_permission": share.default_permission,
            });
            if let Some(remote) = &share.remote_block_store {
                body["remote_block_store"] = json!(remote);
            }
            if let Some(quota) = share.quota_bytes {
                body["quota_bytes"] = json!(quota.to_string());
            }
            if let Some(abe) = share.access_based_enumeration {
                body["access_based_enumeration"] = json!(abe);
            }
            out.changes.push(Change {
                description: format!("{subject}: create"),
                method: "POST",
                path: "/api/v1/shares".into(),
                body: Some(body),
                subject,
                area: Area::Share,
                needs_restart: false,
            });
            continue;
        };
        let mut what = Vec::new();
        let mut body = Map::new();
        let mut compare = |field: &str, key: &str, live_value: Option<&str>, wanted: Option<&str>| {
            if live_value != wanted {
                what.push(format!("{field} {} → {}", live_value.unwrap_or("none"), wanted.unwrap_or("none")));
                body.insert(key.into(), json!(wanted.unwrap_or("")));
            }
        };
        compare(
            "metadata store",
            "metadata_store_id",
            live.store_name(StoreKind::Metadata, &l.metadata_store_id),
            Some(&share.metadata_store),
        );
        compare(
            "local block store",
            "local_block_store_id",
            live.store_name(StoreKind::Local, &l.local_block_store_id),
            Some(&share.local_block_store),
        );
        let live_remote = l.remote_block_store_id.as_deref().filter(|id| !id.is_empty());
        compare(
            "remote block store",
            "remote_block_store_id",
            live_remote.map(|id| live.store_name(StoreKind::Remote, id).unwrap_or(id)),
            share.remote_block_store.as_deref(),
        );
        if l.read_only != share.read_only {
            what.push(format!("read-only {} → {}", l.read_only, share.read_only));
            body.insert("read_only".into(), json!(share.read_only));
        }
        if l.default_permission != share.default_permission {
            what.push(format!("default permission {} → {}", l.default_permission, share.default_permission));
            body.insert("default_permission".into(), json!(share.default_permission));
        }
        if let Some(abe) = share.access_based_enumeration
            && abe != l.access_based_enumeration
        {
            what.push(format!("access-based enumeration {} → {abe}", l.access_based_enumeration));
            body.insert("access_based_enumeration".into(), json!(abe));
        }
        let live_quota = l.quota_bytes.as_deref().filter(|q| !q.is_empty());
        let wanted_quota = share.quota_bytes.map(crate::quantity::dittofs_bytes);
        if live_quota != wanted_quota.as_deref() {
            what.push(format!(
                "quota {} → {}",
                live_quota.unwrap_or("none"),
                wanted_quota.as_deref().unwrap_or("none")
            ));
            body.insert("quota_bytes".into(), json!(share.quota_bytes.unwrap_or(0).to_string()));
        }
        if !what.is_empty() {
            out.changes.push(Change {
                description: format!("{subject}: {}", what.join(", ")),
                method: "PUT",
                path,
                body: Some(Value::Object(body)),
                subject,
                area: Area::Share,
                needs_restart: false,
            });
        }
    }

    access::plan_grants(desired, live, &mut out);
    access::plan_quotas(desired, live, &mut out);
    plan_nfs_exports(desired, live, &mut out);

    for policy in &desired.snapshot_policies {
        // A policy may name a share the spec does not declare (one made with dfsctl): set when
        // DittoFS has it, reported when it does not.
        if !desired.shares.iter().any(|s| s.name == policy.share) && live.share(&policy.share).is_none() {
            out.refused.push(format!(
                "snapshot policy of {}: DittoFS has no share {} (neither spec.shares nor dfsctl made it): not set",
                policy.share, policy.share
            ));
            continue;
        }
        let live_policy = live.snapshot_policies.iter().find(|p| p.share == policy.share);
        let mut what = Vec::new();
        match live_policy {
            None => what.push("create".to_string()),
            Some(l) => {
                let seconds = |d: Option<&str>| d.filter(|d| !d.is_empty()).and_then(interval_seconds).unwrap_or(0.0);
                if seconds(Some(&l.interval)) != seconds(Some(&policy.interval)) {
                    what.push(format!("interval {} → {}", l.interval, policy.interval));
                }
                if l.keep_last != policy.keep_last {
                    what.push(format!("keep last {} → {}", l.keep_last, policy.keep_last));
                }
                if seconds(l.ttl.as_deref()) != seconds(policy.ttl.as_deref()) {
                    let shown = |t: Option<&str>| t.filter(|t| !t.is_empty()).unwrap_or("none").to_string();
                    what.push(format!("ttl {} → {}", shown(l.ttl.as_deref()), shown(policy.ttl.as_deref())));
                }
                if l.enabled != policy.enabled {
                    what.push(if policy.enabled { "enable" } else { "disable" }.to_string());
                }
                if l.name_prefix.as_deref().unwrap_or("") != policy.name_prefix.as_deref().unwrap_or("") {
                    what.push("name prefix".to_string());
                }
            }
        }
        if what.is_empty() {
            continue;
        }
        let mut body = json!({"interval": policy.interval, "keep_last": policy.keep_last, "enabled": policy.enabled});
        if let Some(ttl) = &policy.ttl {
            body["ttl"] = json!(ttl);
        }
        if let Some(prefix) = &policy.name_prefix {
            body["name_prefix"] = json!(prefix);
        }
        out.changes.push(Change {
            description: format!("snapshot policy of {}: {}", policy.share, what.join(", ")),
            method: "PUT",
            path: format!("/api/v1/shares/{}/snapshot-policy", share_path(&policy.share)),
            body: Some(body),
            subject: format!("snapshot policy of {}", policy.share),
            area: Area::Share,
            needs_restart: false,
        });
    }

    access::plan_deletions(desired, live, resolved.protected_users, &mut out);

    for name in &desired.delete_stores {
        for kind in StoreKind::ALL {
            let Some(l) = live.store(kind, name) else { continue };
            // Shares that will still use it once this plan has run.
            let users: Vec<&str> = live
                .shares
                .iter()
                .filter(|s| {
                    let wanted = desired.shares.iter().find(|d| d.name == s.name);
                    let live_ref = match kind {
                        StoreKind::Metadata => s.metadata_store_id == l.id,
                        StoreKind::Local => s.local_block_store_id == l.id,
                        StoreKind::Remote => s.remote_block_store_id.as_deref() == Some(l.id.as_str()),
                    };
                    let wanted_ref = wanted.is_some_and(|d| match kind {
                        StoreKind::Metadata => d.metadata_store == *name,
                        StoreKind::Local => d.local_block_store == *name,
                        StoreKind::Remote => d.remote_block_store.as_deref() == Some(name.as_str()),
                    });
                    if wanted.is_some() { wanted_ref } else { live_ref }
                })
                .map(|s| s.name.as_str())
                .collect();
            let label = format!("{} {name}", kind.label());
            if users.is_empty() {
                out.changes.push(Change {
                    description: format!("{label}: delete with its data (spec.stores.delete)"),
                    method: "DELETE",
                    path: format!("/api/v1/{}/{}", kind.route(), segment(name)),
                    body: None,
                    subject: label,
                    area: Area::Store,
                    needs_restart: false,
                });
            } else {
                out.refused.push(format!(
                    "{label} is listed in spec.stores.delete but share {} still uses it: not deleted",
                    users.join(", ")
                ));
            }
        }
    }
    out
}

/// Each share's NFS export options: the netgroup of its allowed clients first (made, members added
/// and removed to match), then the per-share config that names it.
fn plan_nfs_exports(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    for share in &desired.shares {
        let subject = format!("share {}", share.name);
        let change = |description: String, method: &'static str, path: String, body: Option<Value>| Change {
            description,
            method,
            path,
            body,
            subject: subject.clone(),
            area: Area::Share,
            needs_restart: false,
        };
        if let (Some(clients), Some(Value::String(netgroup))) =
            (&share.allowed_clients, share.nfs_export.get("netgroup"))
        {
            let base = "/api/v1/adapters/nfs/netgroups";
            let current = live.netgroups.get(netgroup);
            if current.is_none() {
                out.changes.push(change(
                    format!("netgroup {netgroup}: create (the allowed clients of {})", share.name),
                    "POST",
                    base.into(),
                    Some(json!({"name": netgroup})),
                ));
            }
            let members = current.map(|n| n.members.as_slice()).unwrap_or_default();
            for client in clients {
                if !members.iter().any(|m| m.kind == client.kind && m.value == client.value) {
                    out.changes.push(change(
                        format!("netgroup {netgroup}: allow {} {}", client.kind, client.value),
                        "POST",
                        format!("{base}/{}/members", segment(netgroup)),
                        Some(json!({"type": client.kind, "value": client.value})),
                    ));
                }
            }
            for member in members {
                if !clients.iter().any(|c| c.kind == member.kind && c.value == member.value) {
                    out.changes.push(change(
                        format!("netgroup {netgroup}: remove {} {}", member.kind, member.value),
                        "DELETE",
                        format!("{base}/{}/members/{}", segment(netgroup), segment(&member.id)),
                        None,
                    ));
                }
            }
        }
        if share.nfs_export.is_empty() {
            continue;
        }
        let (changed, what) = changed_keys(&share.nfs_export, live.nfs_exports.get(&share.name));
        if changed.is_empty() {
            continue;
        }
        out.changes.push(change(
            format!("share {} NFS export: {}", share.name, what.join(", ")),
            "PATCH",
            format!("/api/v1/shares/{}/adapters/nfs/config", share_path(&share.name)),
            Some(Value::Object(changed)),
        ));
    }
}

/// The keys of `wanted` that `current` holds differently (a PATCH body), each also as a line
/// a person reads: `squash "root_to_guest" → "all_to_guest"`.
fn changed_keys(wanted: &Map<String, Value>, current: Option<&Value>) -> (Map<String, Value>, Vec<String>) {
    let now = |key: &str| current.and_then(|c| c.get(key));
    let changed: Map<String, Value> =
        wanted.iter().filter(|(k, v)| now(k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let what = changed.iter().map(|(k, v)| format!("{k} {} → {v}", shown(now(k)))).collect();
    (changed, what)
}

/// Adapter settings that differ: one PATCH per adapter. Returns the running adapters that must
/// restart (stop, start) to read a changed setting DittoFS reads only at start. An adapter not
/// created yet gets its settings at the next pass.
fn plan_adapter_settings(desired: &DesiredRuntime, live: &Live, out: &mut Plan) -> Vec<String> {
    let mut restart = Vec::new();
    for (adapter, wanted) in &desired.adapter_settings {
        let Some(current) = live.adapter_settings.get(adapter) else { continue };
        let (changed, what) = changed_keys(wanted, Some(current));
        if changed.is_empty() {
            continue;
        }
        let subject = format!("adapter {adapter}");
        out.changes.push(Change {
            description: format!("{subject} settings: {}", what.join(", ")),
            method: "PATCH",
            path: format!("/api/v1/adapters/{}/settings", segment(adapter)),
            body: Some(Value::Object(changed.clone())),
            subject: subject.clone(),
            area: Area::Adapter,
            needs_restart: false,
        });
        let running = live.adapters.iter().any(|a| &a.adapter_type == adapter && a.enabled);
        if running && changed.keys().any(|k| SETTINGS_READ_AT_START.contains(&k.as_str())) {
            restart.push(adapter.clone());
        }
    }
    restart
}

/// Keys of the desired config that the server holds differently; secret keys compare through
/// the digest and are reported as "credentials".
fn config_differences(store: &ResolvedStore, live: &Value) -> Vec<String> {
    let mut what = Vec::new();
    for (key, wanted) in &store.config {
        if store.secret_keys.contains(key) {
            continue;
        }
        let current = live.get(key);
        if current == Some(wanted) {
            continue;
        }
        if key == CREDENTIALS_DIGEST_KEY {
            what.push(format!("credentials ({}) changed", store.secret_keys.join(", ")));
        } else {
            what.push(format!("{key} {} → {}", shown(current), shown(Some(wanted))));
        }
    }
    what
}

fn shown(value: Option<&Value>) -> String {
    value.map_or("unset".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dittofs::api::LiveNetgroupMember;

    fn desired(yaml: &str) -> DesiredRuntime {
        let d: DesiredRuntime = serde_saphyr::from_str(yaml).unwrap();
        d.check().unwrap();
        d
    }

    fn with(stores: &[ResolvedStore]) -> Resolved<'_> {
        Resolved { stores, ..Resolved::default() }
    }

    fn resolve_all(d: &DesiredRuntime, secrets: &[(&str, &str, &str)]) -> Vec<ResolvedStore> {
        let secrets: BTreeMap<(String, String), String> =
            secrets.iter().map(|(s, k, v)| ((s.to_string(), k.to_string()), v.to_string())).collect();
        StoreKind::ALL
            .iter()
            .flat_map(|k| d.stores(*k).iter().map(move |s| (*k, s)))
            .map(|(k, s)| ResolvedStore::resolve(k, s, &secrets, |m| format!("{:x}", m.len())).unwrap())
            .collect()
    }

    const WANTED: &str = r#"
adapters:
  - {type: nfs, enabled: true, port: 12049}
  - {type: smb, enabled: true, port: 12445}
metadataStores: [{name: meta, type: badger, config: {path: /data/store/metadata/meta}}]
localBlockStores: [{name: local, type: fs, config: {path: /data/cache/local}}]
remoteBlockStores:
  - name: s3
    type: s3
    config: {bucket: b, region: eu-west-1, endpoint: "https://s3.cubbit.eu"}
    secretConfig:
      access_key_id: {name: s3, key: accessKeyId}
      secret_access_key: {name: s3, key: secretAccessKey}
shares:
  - {name: /export, metadataStore: meta, localBlockStore: local, remoteBlockStore: s3, readOnly: false, defaultPermission: read-write}
"#;

    fn first_boot() -> Live {
        let adapter = |t: &str, port| LiveAdapter {
            adapter_type: t.into(),
            port,
            enabled: true,
            running: true,
            updated_at: Some("2026-01-01T00:00:00Z".into()),
            status: json!({"status": "healthy"}),
        };
        Live {
            adapters: vec![adapter("nfs", 12049), adapter("smb", 1445)],
            read_at: Some("2026-01-01T00:01:00Z".parse().unwrap()),
            ..Live::default()
        }
    }

    fn store(id: &str, name: &str, t: &str, config: Value) -> LiveStore {
        LiveStore {
            id: id.into(),
            name: name.into(),
            store_type: t.into(),
            config,
            status: json!({"status": "healthy"}),
        }
    }

    /// The state after the plan of a first boot has run, as DittoFS reports it (secrets masked).
    fn configured(digest: &str) -> Live {
        let mut live = first_boot();
        live.adapters[1].port = 12445;
        live.stores.insert(
            StoreKind::Metadata,
            vec![store("m1", "meta", "badger", json!({"path": "/data/store/metadata/meta"}))],
        );
        live.stores.insert(StoreKind::Local, vec![store("l1", "local", "fs", json!({"path": "/data/cache/local"}))]);
        live.stores.insert(
            StoreKind::Remote,
            vec![store(
                "r1",
                "s3",
                "s3",
                json!({"bucket": "b", "region": "eu-west-1", "endpoint": "https://s3.cubbit.eu", "access_key_id": "AK",
                       "secret_access_key": "********", CREDENTIALS_DIGEST_KEY: digest}),
            )],
        );
        live.shares = vec![LiveShare {
            id: "s1".into(),
            name: "/export".into(),
            metadata_store_id: "m1".into(),
            local_block_store_id: "l1".into(),
            remote_block_store_id: Some("r1".into()),
            read_only: false,
            default_permission: "read-write".into(),
            enabled: true,
            quota_bytes: None,
            used_bytes: Some(0),
            access_based_enumeration: false,
        }];
        live
    }

    #[test]
    fn a_first_boot_gets_stores_a_share_and_the_smb_port() {
        let d = desired(WANTED);
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let plan = plan(&d, &with(&stores), &first_boot(), false);
        assert_eq!(
            plan.descriptions(),
            [
                "adapter smb: port 1445 → 12445",
                "metadata store meta: create (badger)",
                "local block store local: create (fs)",
                "remote block store s3: create (s3)",
                "share /export: create",
            ]
        );
        assert!(plan.refused.is_empty());
        // The key reaches the request body (a JSON string, as DittoFS wants it) and nothing a user reads.
        let remote = &plan.changes[3];
        let config = remote.body.as_ref().unwrap()["config"].as_str().unwrap();
        assert!(config.contains("\"secret_access_key\":\"SECRET\""), "{config}");
        assert!(plan.descriptions().iter().all(|d| !d.contains("SECRET")));
    }

    #[test]
    fn a_configured_server_needs_nothing() {
        let d = desired(WANTED);
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        assert_eq!(plan(&d, &with(&stores), &configured(&digest), false), Plan::default());
    }

    #[test]
    fn a_rotated_secret_updates_the_store_without_showing_it() {
        let d = desired(WANTED);
        let old = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = old[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let new = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "ROTATED-LONGER")]);
        let plan = plan(&d, &with(&new), &configured(&digest), false);
        assert_eq!(
            plan.descriptions(),
            ["remote block store s3: credentials (access_key_id, secret_access_key) changed"]
        );
        assert_eq!(plan.changes[0].method, "PUT");
        assert!(plan.changes[0].needs_restart, "share /export uses it: DittoFS loads keys at start");
        assert!(plan.changes[0].body.as_ref().unwrap()["config"].as_str().unwrap().contains("ROTATED-LONGER"));
    }

    #[test]
    fn share_changes_name_the_field() {
        let d = desired(&WANTED.replace("readOnly: false", "readOnly: true"));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let plan = plan(&d, &with(&stores), &configured(&digest), false);
        assert_eq!(plan.descriptions(), ["share /export: read-only false → true"]);
        assert_eq!(plan.changes[0].path, "/api/v1/shares/export");
        assert_eq!(plan.changes[0].body, Some(json!({"read_only": true})));
    }

    #[test]
    fn a_store_in_use_is_pointed_at_other_data_only_with_the_annotation() {
        let d = desired(&WANTED.replace("bucket: b,", "bucket: other,"));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let refused = plan(&d, &with(&stores), &configured(&digest), false);
        assert!(refused.changes.is_empty(), "{:?}", refused.descriptions());
        assert!(
            refused.refused[0].starts_with(
                "remote block store s3 holds the data of share /export: changing its bucket (\"b\" → \"other\")"
            ),
            "{}",
            refused.refused[0]
        );
        assert!(refused.refused[0].contains("dittofs.dittofs.com/on-store-location-change=repoint"));
        let allowed = plan(&d, &with(&stores), &configured(&digest), true);
        assert_eq!(allowed.descriptions(), ["remote block store s3: bucket \"b\" → \"other\""]);
        assert!(allowed.changes[0].needs_restart);
    }

    #[test]
    fn a_local_store_in_use_stays_where_its_files_are() {
        // As when spec.s3 is added to a server with a content and a cache claim.
        let d =
            desired(&WANTED.replace("config: {path: /data/cache/local}", "config: {path: /data/store/block/local}"));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        assert_eq!(plan(&d, &with(&stores), &configured(&digest), false), Plan::default());
        assert_eq!(plan(&d, &with(&stores), &configured(&digest), true), Plan::default());
    }

    #[test]
    fn a_size_limit_on_a_store_in_use_is_saved_without_a_restart() {
        let d =
            desired(&WANTED.replace(
                "config: {path: /data/cache/local}",
                "config: {path: /data/cache/local, max_size: 1073741824}",
            ));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let p = plan(&d, &with(&stores), &configured(&digest), false);
        assert_eq!(
            p.descriptions(),
            ["local block store local: max_size unset → 1073741824 (read when DittoFS next starts)"]
        );
        assert!(!p.changes[0].needs_restart);
    }

    #[test]
    fn a_type_change_is_refused_and_nothing_is_deleted() {
        let d = desired(&WANTED.replace(
            "{name: meta, type: badger, config: {path: /data/store/metadata/meta}}",
            "{name: meta, type: memory}",
        ));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let plan = plan(&d, &with(&stores), &configured(&digest), false);
        assert!(plan.changes.is_empty(), "{:?}", plan.descriptions());
        assert!(
            plan.refused[0].starts_with("metadata store meta is badger on the server but the spec asks for memory")
        );
    }

    #[test]
    fn stores_are_deleted_only_when_listed_and_unused() {
        let mut d = desired(WANTED);
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        live.stores.get_mut(&StoreKind::Local).unwrap().push(store("l2", "old", "fs", json!({"path": "/x"})));
        assert_eq!(plan(&d, &with(&stores), &live, false), Plan::default(), "an unlisted store is left alone");

        d.delete_stores = vec!["old".into()];
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(p.descriptions(), ["local block store old: delete with its data (spec.stores.delete)"]);
        assert_eq!(p.changes[0].path, "/api/v1/store/block/local/old");

        live.shares[0].local_block_store_id = "l2".into();
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(
            p.descriptions(),
            [
                "share /export: local block store old → local",
                "local block store old: delete with its data (spec.stores.delete)"
            ],
            "moving the share away frees the store in the same pass"
        );
    }

    #[test]
    fn an_adapter_that_never_started_is_restarted_but_not_at_once() {
        let d = desired(WANTED);
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        live.adapters[1].status = json!({"status": "unknown", "message": "SMB adapter has not started yet"});
        live.adapters[1].updated_at = Some("2026-01-01T00:00:50Z".into());
        assert_eq!(plan(&d, &with(&stores), &live, false), Plan::default(), "10 s after a restart: still starting");
        live.adapters[1].updated_at = Some("2026-01-01T00:00:30Z".into());
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(
            p.descriptions(),
            [
                "adapter smb: restart, stop (it reports unknown: SMB adapter has not started yet)",
                "adapter smb: restart, start (it reports unknown: SMB adapter has not started yet)"
            ]
        );
        assert_eq!(p.changes[0].body, Some(json!({"enabled": false})));
        assert_eq!(p.changes[1].body, Some(json!({"enabled": true})));
    }

    #[test]
    fn snapshot_policies_are_created_then_kept_and_drift_is_corrected() {
        let d = desired(&format!(
            "{WANTED}snapshotPolicies:\n  - {{share: /export, interval: \"@hourly\", keepLast: 24, ttl: 168h, enabled: true}}\n"
        ));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(p.descriptions(), ["snapshot policy of /export: create"]);
        assert_eq!(p.changes[0].path, "/api/v1/shares/export/snapshot-policy");
        assert_eq!(
            p.changes[0].body,
            Some(json!({"interval": "@hourly", "keep_last": 24, "ttl": "168h", "enabled": true}))
        );
        // As DittoFS reports it back: Go's duration spelling compares equal.
        live.snapshot_policies = vec![LiveSnapshotPolicy {
            share: "/export".into(),
            enabled: true,
            interval: "1h0m0s".into(),
            keep_last: 24,
            ttl: Some("168h0m0s".into()),
            name_prefix: None,
        }];
        assert_eq!(plan(&d, &with(&stores), &live, false), Plan::default());
        live.snapshot_policies[0].keep_last = 3;
        live.snapshot_policies[0].enabled = false;
        assert_eq!(
            plan(&d, &with(&stores), &live, false).descriptions(),
            ["snapshot policy of /export: keep last 3 → 24, enable"]
        );
    }

    #[test]
    fn adapter_settings_are_patched_and_read_at_start_ones_restart_the_adapter_once() {
        let d = desired(&format!(
            "{WANTED}adapterSettings:\n  nfs: {{portmapper_enabled: true, portmapper_port: 10111, udp_enabled: true, max_version: \"4.1\"}}\n"
        ));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        live.adapter_settings.insert(
            "nfs".into(),
            json!({"portmapper_enabled": false, "portmapper_port": 10111, "udp_enabled": false, "max_version": "4.1"}),
        );
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(
            p.descriptions(),
            [
                "adapter nfs settings: portmapper_enabled false → true, udp_enabled false → true",
                "adapter nfs: restart, stop (it reads the changed settings at start)",
                "adapter nfs: restart, start (it reads the changed settings at start)",
            ]
        );
        assert_eq!((p.changes[0].method, p.changes[0].path.as_str()), ("PATCH", "/api/v1/adapters/nfs/settings"));
        assert_eq!(p.changes[0].body, Some(json!({"portmapper_enabled": true, "udp_enabled": true})));

        // A port change restarts the adapter anyway: no second restart.
        live.adapters[0].port = 2049;
        assert_eq!(
            plan(&d, &with(&stores), &live, false).descriptions(),
            [
                "adapter nfs settings: portmapper_enabled false → true, udp_enabled false → true",
                "adapter nfs: port 2049 → 12049",
            ]
        );
        // Only a setting read live: no restart.
        live.adapters[0].port = 12049;
        live.adapter_settings.insert(
            "nfs".into(),
            json!({"portmapper_enabled": true, "portmapper_port": 10111, "udp_enabled": true, "max_version": "3"}),
        );
        assert_eq!(
            plan(&d, &with(&stores), &live, false).descriptions(),
            ["adapter nfs settings: max_version \"3\" → \"4.1\""]
        );
    }

    #[test]
    fn a_share_quota_is_set_changed_and_lifted() {
        let d = desired(
            &WANTED
                .replace("defaultPermission: read-write}", "defaultPermission: read-write, quotaBytes: 10737418240}"),
        );
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(p.descriptions(), ["share /export: quota none → 10.00GiB"]);
        assert_eq!(p.changes[0].body, Some(json!({"quota_bytes": "10737418240"})));
        live.shares[0].quota_bytes = Some("10.00GiB".into());
        assert_eq!(plan(&d, &with(&stores), &live, false), Plan::default());
        let lifted = desired(WANTED);
        let p = plan(&lifted, &with(&stores), &live, false);
        assert_eq!(p.descriptions(), ["share /export: quota 10.00GiB → none"]);
        assert_eq!(p.changes[0].body, Some(json!({"quota_bytes": "0"})));
    }

    #[test]
    fn a_policy_on_a_share_made_with_dfsctl_is_set_and_one_on_no_share_is_reported() {
        let d = desired(&format!("{WANTED}snapshotPolicies:\n  - {{share: /legacy, interval: 24h, keepLast: 7}}\n"));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        let missing = plan(&d, &with(&stores), &live, false);
        assert!(missing.changes.is_empty(), "{:?}", missing.descriptions());
        assert_eq!(
            missing.refused,
            [
                "snapshot policy of /legacy: DittoFS has no share /legacy (neither spec.shares nor dfsctl made it): not set"
            ]
        );
        let mut made = live.shares[0].clone();
        made.name = "/legacy".into();
        live.shares.push(made);
        let set = plan(&d, &with(&stores), &live, false);
        assert_eq!(set.descriptions(), ["snapshot policy of /legacy: create"]);
        assert!(set.refused.is_empty());
    }

    #[test]
    fn nfs_export_options_keep_their_netgroup_of_allowed_clients() {
        let d = desired(&WANTED.replace(
            "defaultPermission: read-write}",
            "defaultPermission: read-write, nfsExport: {squash: all_to_guest, netgroup: clients-export}, \
             allowedClients: [{type: cidr, value: 10.0.0.0/8}, {type: ip, value: 192.0.2.7}], accessBasedEnumeration: true}",
        ));
        let stores = resolve_all(&d, &[("s3", "accessKeyId", "AK"), ("s3", "secretAccessKey", "SECRET")]);
        let digest = stores[2].config[CREDENTIALS_DIGEST_KEY].as_str().unwrap().to_string();
        let mut live = configured(&digest);
        live.nfs_exports.insert("/export".into(), json!({"squash": "root_to_guest", "netgroup": ""}));
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(
            p.descriptions(),
            [
                "share /export: access-based enumeration false → true",
                "netgroup clients-export: create (the allowed clients of /export)",
                "netgroup clients-export: allow cidr 10.0.0.0/8",
                "netgroup clients-export: allow ip 192.0.2.7",
                "share /export NFS export: netgroup \"\" → \"clients-export\", squash \"root_to_guest\" → \"all_to_guest\"",
            ]
        );
        assert_eq!(p.changes[4].path, "/api/v1/shares/export/adapters/nfs/config");
        assert_eq!(p.changes[4].method, "PATCH");

        // As DittoFS has it afterwards, with a member added behind the operator's back.
        live.shares[0].access_based_enumeration = true;
        live.nfs_exports.insert("/export".into(), json!({"squash": "all_to_guest", "netgroup": "clients-export"}));
        let member = |id: &str, kind: &str, value: &str| LiveNetgroupMember {
            id: id.into(),
            kind: kind.into(),
            value: value.into(),
        };
        live.netgroups.insert(
            "clients-export".into(),
            LiveNetgroup {
                name: "clients-export".into(),
                members: vec![
                    member("m1", "cidr", "10.0.0.0/8"),
                    member("m2", "ip", "192.0.2.7"),
                    member("m3", "ip", "203.0.113.9"),
                ],
            },
        );
        let p = plan(&d, &with(&stores), &live, false);
        assert_eq!(p.descriptions(), ["netgroup clients-export: remove ip 203.0.113.9"]);
        assert_eq!(p.changes[0].path, "/api/v1/adapters/nfs/netgroups/clients-export/members/m3");
        live.netgroups.get_mut("clients-export").unwrap().members.pop();
        assert_eq!(plan(&d, &with(&stores), &live, false), Plan::default());
    }

    #[test]
    fn a_missing_secret_key_names_the_store_and_key() {
        let d = desired(WANTED);
        let remote = &d.remote_block_stores[0];
        let err = ResolvedStore::resolve(StoreKind::Remote, remote, &BTreeMap::new(), |_| String::new()).unwrap_err();
        assert_eq!(err, "remote block store s3: Secret \"s3\" has no key \"accessKeyId\" (for access_key_id)");
    }
}
