//! Live DittoFS state + the desired state → the calls that make them match. Pure, so every
//! rule is unit-tested without a server. Secret values reach request bodies only; what a user
//! reads (descriptions, problems) names secret-derived keys, never their values.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub mod access;
mod adapters;
mod shares;
mod stores;

use super::api::{
    LiveAdapter, LiveGroup, LiveNetgroup, LivePermission, LiveQuota, LiveShare, LiveSnapshotPolicy, LiveStore, LiveUser,
};
use crate::render::desired::{DesiredRuntime, DesiredStore, StoreKind};
use access::ResolvedUser;

/// Config key under which the operator records a keyed digest of the store's Secret values:
/// DittoFS masks secrets on reads, so this is how a rotated Secret is noticed.
pub const CREDENTIALS_DIGEST_KEY: &str = "operator_credentials_digest";

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
/// Built as `Change::call(method, path, body).about(area, subject, description)`.
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

/// A request not yet said what it is about: see [`Change::call`].
pub struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Change {
    /// `method path` with `body` (which may hold secrets: sent, never shown).
    pub fn call(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Call {
        Call { method, path: path.into(), body }
    }

    /// DittoFS must restart for the change to reach the shares in use.
    pub fn needing_restart(mut self, needs_restart: bool) -> Self {
        self.needs_restart = needs_restart;
        self
    }
}

impl Call {
    /// The change: what it touches, its subject ("adapter nfs") and the line a person reads.
    pub fn about(self, area: Area, subject: impl Into<String>, description: impl Into<String>) -> Change {
        Change {
            description: description.into(),
            method: self.method,
            path: self.path,
            body: self.body,
            subject: subject.into(),
            area,
            needs_restart: false,
        }
    }
}

/// The fields of one object the server holds differently: a line a person reads for each
/// (`port 12049 → 2049`, `enable`) and the body of the request that sets them.
#[derive(Default)]
struct Edits {
    what: Vec<String>,
    body: Map<String, Value>,
}

impl Edits {
    /// Sets `key` to `value`, said as `line`.
    fn set(&mut self, line: String, key: &str, value: Value) {
        self.what.push(line);
        self.body.insert(key.into(), value);
    }

    /// `key` to `wanted` where the server holds `live`, said as `label live → wanted`.
    fn field<T: PartialEq + std::fmt::Display + serde::Serialize>(
        &mut self,
        label: &str,
        key: &str,
        live: T,
        wanted: T,
    ) {
        if live != wanted {
            self.set(format!("{label} {live} → {wanted}"), key, serde_json::json!(wanted));
        }
    }

    /// `enabled`, said as `enable` or `disable`.
    fn enabled(&mut self, live: bool, wanted: bool) {
        if live != wanted {
            self.set(if wanted { "enable" } else { "disable" }.into(), "enabled", Value::Bool(wanted));
        }
    }

    fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    /// The PUT that makes them, described as `subject: what, what`; none when nothing differs.
    fn put(self, path: String, area: Area, subject: &str) -> Option<Change> {
        (!self.is_empty()).then(|| {
            Change::call("PUT", path, Some(Value::Object(self.body))).about(
                area,
                subject,
                format!("{subject}: {}", self.what.join(", ")),
            )
        })
    }
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

/// Whether a location change of a store in use may be made (the DittoServer carries
/// `dittofs.dittofs.com/on-store-location-change: repoint`).
pub fn repoint_allowed(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(crate::names::STORE_LOCATION_ANNOTATION).map(String::as_str) == Some(crate::names::REPOINT)
}

/// The calls that make `live` match `desired`, in the order DittoFS needs them: adapter settings
/// and adapters, stores, accounts, shares, grants and quotas, NFS exports, snapshot policies,
/// then the deletions the spec lists.
pub fn plan(desired: &DesiredRuntime, resolved: &Resolved<'_>, live: &Live, repoint_allowed: bool) -> Plan {
    let mut out = Plan::default();
    adapters::plan_adapters(desired, live, &mut out);
    stores::plan_stores(resolved.stores, live, repoint_allowed, &mut out);
    access::plan_accounts(desired, resolved.users, live, &mut out);
    shares::plan_shares(desired, live, &mut out);
    access::plan_grants(desired, live, &mut out);
    access::plan_quotas(desired, live, &mut out);
    shares::plan_nfs_exports(desired, live, &mut out);
    shares::plan_snapshot_policies(desired, live, &mut out);
    access::plan_deletions(desired, live, resolved.protected_users, &mut out);
    stores::plan_store_deletions(desired, live, &mut out);
    out
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

fn shown(value: Option<&Value>) -> String {
    value.map_or("unset".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dittofs::api::LiveNetgroupMember;
    use serde_json::json;

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
