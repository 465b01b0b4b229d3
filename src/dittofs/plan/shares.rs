//! Shares: created or corrected (stores, read-only, default permission, access-based
//! enumeration, quota), their NFS export options and allowed clients, and snapshot policies.

use serde_json::{Value, json};

use super::{Area, Change, Edits, Live, Plan, changed_keys};
use crate::dittofs::api::{LiveShare, segment, share_path};
use crate::render::desired::{DesiredRuntime, DesiredShare, StoreKind, interval_seconds};

pub(super) fn plan_shares(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    for share in &desired.shares {
        let subject = format!("share {}", share.name);
        match live.share(&share.name) {
            None => out.changes.push(Change::call("POST", "/api/v1/shares", Some(create_body(share))).about(
                Area::Share,
                &subject,
                format!("{subject}: create"),
            )),
            Some(l) => {
                let path = format!("/api/v1/shares/{}", share_path(&share.name));
                out.changes.extend(share_differences(share, l, live).put(path, Area::Share, &subject));
            }
        }
    }
}

fn create_body(share: &DesiredShare) -> Value {
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
    body
}

/// What differs on a share the server has.
fn share_differences(share: &DesiredShare, l: &LiveShare, live: &Live) -> Edits {
    let mut edits = Edits::default();
    let mut compare = |field: &str, key: &str, live_value: Option<&str>, wanted: Option<&str>| {
        if live_value != wanted {
            let line = format!("{field} {} → {}", live_value.unwrap_or("none"), wanted.unwrap_or("none"));
            edits.set(line, key, json!(wanted.unwrap_or("")));
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
    edits.field("read-only", "read_only", l.read_only, share.read_only);
    edits.field("default permission", "default_permission", &l.default_permission, &share.default_permission);
    if let Some(abe) = share.access_based_enumeration {
        edits.field("access-based enumeration", "access_based_enumeration", l.access_based_enumeration, abe);
    }
    let live_quota = l.quota_bytes.as_deref().filter(|q| !q.is_empty());
    let wanted_quota = share.quota_bytes.map(crate::quantity::dittofs_bytes);
    if live_quota != wanted_quota.as_deref() {
        let line = format!("quota {} → {}", live_quota.unwrap_or("none"), wanted_quota.as_deref().unwrap_or("none"));
        edits.set(line, "quota_bytes", json!(share.quota_bytes.unwrap_or(0).to_string()));
    }
    edits
}

/// Each share's NFS export options: the netgroup of its allowed clients first (made, members added
/// and removed to match), then the per-share config that names it.
pub(super) fn plan_nfs_exports(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    for share in &desired.shares {
        let subject = format!("share {}", share.name);
        let change = |description: String, method: &'static str, path: String, body: Option<Value>| {
            Change::call(method, path, body).about(Area::Share, &subject, description)
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

pub(super) fn plan_snapshot_policies(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
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
        let subject = format!("snapshot policy of {}", policy.share);
        out.changes.push(
            Change::call("PUT", format!("/api/v1/shares/{}/snapshot-policy", share_path(&policy.share)), Some(body))
                .about(Area::Share, &subject, format!("{subject}: {}", what.join(", "))),
        );
    }
}
