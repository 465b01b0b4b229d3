//! Who may use the shares: users, groups and per-share grants, planned like stores and shares.
//! Passwords reach request bodies only; what a user reads says "password", never the value.
//! Nothing the spec does not list is deleted: accounts not in the spec are kept and named.

use serde_json::{Value, json};

use super::{Area, Change, Edits, Live, Plan};
use crate::dittofs::api::{segment, share_path};
use crate::render::desired::{DesiredRuntime, DesiredUser, SYSTEM_GROUPS};

/// A desired user with its password read from its Secret.
#[derive(Clone)]
pub struct ResolvedUser {
    pub desired: DesiredUser,
    pub password: String,
    /// The account in DittoFS already has this password (checked by logging in as it, or
    /// remembered from the last time the operator set or checked it).
    pub password_current: bool,
}

impl std::fmt::Debug for ResolvedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedUser")
            .field("desired", &self.desired)
            .field("password", &crate::redact::Hidden)
            .field("password_current", &self.password_current)
            .finish()
    }
}

fn change(description: String, method: &'static str, path: String, body: Option<Value>, subject: String) -> Change {
    Change::call(method, path, body).about(Area::Access, subject, description)
}

/// Groups, then users (a user names its groups): created, or corrected where they differ.
pub fn plan_accounts(desired: &DesiredRuntime, users: &[ResolvedUser], live: &Live, out: &mut Plan) {
    for group in &desired.groups {
        let subject = format!("group {}", group.name);
        match live.groups.iter().find(|g| g.name == group.name) {
            None => {
                let mut body = json!({"name": group.name});
                if let Some(gid) = group.gid {
                    body["gid"] = json!(gid);
                }
                out.changes.push(change(
                    format!("{subject}: create"),
                    "POST",
                    "/api/v1/groups".into(),
                    Some(body),
                    subject,
                ));
            }
            Some(l) if group.gid.is_some() && l.gid != group.gid => out.changes.push(change(
                format!("{subject}: gid {} → {}", shown(l.gid), shown(group.gid)),
                "PUT",
                format!("/api/v1/groups/{}", segment(&group.name)),
                Some(json!({"gid": group.gid})),
                subject,
            )),
            Some(_) => {}
        }
    }
    for user in users {
        let d = &user.desired;
        let subject = format!("user {}", d.name);
        let path = format!("/api/v1/users/{}", segment(&d.name));
        let Some(l) = live.users.iter().find(|u| u.username == d.name) else {
            let mut body = json!({"username": d.name, "password": user.password, "role": d.role,
                                  "enabled": d.enabled, "groups": d.groups});
            if let Some(uid) = d.uid {
                body["uid"] = json!(uid);
            }
            if let Some(gid) = d.gid {
                body["gid"] = json!(gid);
            }
            out.changes.push(change(format!("{subject}: create"), "POST", "/api/v1/users".into(), Some(body), subject));
            continue;
        };
        let mut edits = Edits::default();
        edits.field("role", "role", &l.role, &d.role);
        edits.enabled(l.enabled, d.enabled);
        for (field, live_id, wanted) in [("uid", l.uid, d.uid), ("gid", l.gid, d.gid)] {
            if wanted.is_some() && live_id != wanted {
                edits.set(format!("{field} {} → {}", shown(live_id), shown(wanted)), field, json!(wanted));
            }
        }
        let mut live_groups = l.groups.clone().unwrap_or_default();
        live_groups.sort();
        let mut wanted_groups = d.groups.clone();
        wanted_groups.sort();
        if live_groups != wanted_groups {
            let line = format!("groups [{}] → [{}]", live_groups.join(", "), wanted_groups.join(", "));
            edits.set(line, "groups", json!(wanted_groups));
        }
        out.changes.extend(edits.put(path.clone(), Area::Access, &subject));
        if !user.password_current {
            out.changes.push(change(
                format!("{subject}: password set from Secret {}", d.password_secret.name),
                "POST",
                format!("{path}/password"),
                Some(json!({"new_password": user.password})),
                subject,
            ));
        }
    }
}

/// The grants of every share that declares `permissions`: set where they differ, revoked where
/// the spec no longer lists them (grants to SIDs are left alone).
pub fn plan_grants(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    for share in &desired.shares {
        let Some(grants) = &share.permissions else { continue };
        let current = live.permissions.get(&share.name).map(Vec::as_slice).unwrap_or_default();
        let base = format!("/api/v1/shares/{}/permissions", share_path(&share.name));
        let subject = format!("share {}", share.name);
        for grant in grants {
            let (kind, name) = grant.grantee();
            let now = current.iter().find(|p| p.kind == kind && p.name == name);
            if now.is_some_and(|p| p.level == grant.level) {
                continue;
            }
            let was = now.map_or("unset", |p| p.level.as_str());
            out.changes.push(change(
                format!("{subject}: {kind} {name} {was} → {}", grant.level),
                "PUT",
                format!("{base}/{kind}s/{}", segment(name)),
                Some(json!({"level": grant.level})),
                subject.clone(),
            ));
        }
        for stale in current.iter().filter(|p| p.kind == "user" || p.kind == "group") {
            if grants.iter().any(|g| g.grantee() == (stale.kind.as_str(), stale.name.as_str())) {
                continue;
            }
            out.changes.push(change(
                format!("{subject}: revoke {} {} ({})", stale.kind, stale.name, stale.level),
                "DELETE",
                format!("{base}/{}s/{}", stale.kind, segment(&stale.name)),
                None,
                subject.clone(),
            ));
        }
    }
}

/// The user, group and default-user quotas of every share that manages them: set where they
/// differ, lifted where the spec no longer lists them.
pub fn plan_quotas(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    for share in &desired.shares {
        let Some(quotas) = &share.identity_quotas else { continue };
        let current = live.quotas.get(&share.name).map(Vec::as_slice).unwrap_or_default();
        let base = format!("/api/v1/shares/{}/quotas", share_path(&share.name));
        let subject = format!("share {}", share.name);
        let path = |scope: &str, id: Option<u32>| match id {
            Some(id) => format!("{base}/{scope}/{id}"),
            None => format!("{base}/{scope}"),
        };
        for quota in quotas {
            let now = current.iter().find(|q| q.scope == quota.scope && q.identity_id == quota.id);
            let was = now.and_then(|q| q.limit_bytes.as_deref()).filter(|l| !l.is_empty());
            let wanted = crate::quantity::dittofs_bytes(quota.limit_bytes);
            if was == Some(wanted.as_str()) {
                continue;
            }
            out.changes.push(change(
                format!("{subject}: quota of {} {} → {wanted}", quota.who, was.unwrap_or("none")),
                "PUT",
                path(&quota.scope, quota.id),
                Some(json!({"limit_bytes": quota.limit_bytes.to_string()})),
                subject.clone(),
            ));
        }
        for stale in current {
            if quotas.iter().any(|q| q.scope == stale.scope && q.id == stale.identity_id) {
                continue;
            }
            let who = match stale.identity_id {
                Some(id) => format!("{} {id}", stale.scope),
                None => stale.scope.clone(),
            };
            out.changes.push(change(
                format!("{subject}: lift the quota of {who}"),
                "DELETE",
                path(&stale.scope, stale.identity_id),
                None,
                subject.clone(),
            ));
        }
    }
}

/// Users and groups listed for deletion go (users first: a group may be theirs); the others not
/// in the spec are named as kept. The accounts in `protected` are neither.
pub fn plan_deletions(desired: &DesiredRuntime, live: &Live, protected: &[String], out: &mut Plan) {
    let managed = !desired.users.is_empty() || !desired.delete_users.is_empty();
    for user in &live.users {
        let name = &user.username;
        if protected.contains(name) || desired.users.iter().any(|u| &u.name == name) {
            continue;
        }
        if desired.delete_users.contains(name) {
            out.changes.push(change(
                format!("user {name}: delete (spec.deleteUsers)"),
                "DELETE",
                format!("/api/v1/users/{}", segment(name)),
                None,
                format!("user {name}"),
            ));
        } else if managed {
            out.kept
                .push(format!("user {name} is in DittoFS but not in spec.users: kept (spec.deleteUsers deletes it)"));
        }
    }
    let managed = !desired.groups.is_empty() || !desired.delete_groups.is_empty();
    for group in &live.groups {
        let name = &group.name;
        if SYSTEM_GROUPS.contains(&name.as_str()) || desired.groups.iter().any(|g| &g.name == name) {
            continue;
        }
        if desired.delete_groups.contains(name) {
            out.changes.push(change(
                format!("group {name}: delete (spec.deleteGroups)"),
                "DELETE",
                format!("/api/v1/groups/{}", segment(name)),
                None,
                format!("group {name}"),
            ));
        } else if managed {
            out.kept.push(format!(
                "group {name} is in DittoFS but not in spec.groups: kept (spec.deleteGroups deletes it)"
            ));
        }
    }
}

fn shown(id: Option<u32>) -> String {
    id.map_or("unset".into(), |i| i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dittofs::api::{LiveGroup, LivePermission, LiveQuota, LiveUser};

    fn desired(yaml: &str) -> DesiredRuntime {
        let d: DesiredRuntime = serde_saphyr::from_str(yaml).unwrap();
        d.check().unwrap();
        d
    }

    const WANTED: &str = r#"
metadataStores: [{name: meta, type: memory}]
localBlockStores: [{name: local, type: memory}]
shares:
  - name: /export
    metadataStore: meta
    localBlockStore: local
    defaultPermission: read
    permissions:
      - {user: alice, level: read-write}
      - {group: staff, level: read}
groups: [{name: staff, gid: 2000}]
users:
  - {name: alice, uid: 1001, gid: 2000, groups: [staff], passwordSecret: {name: alice, key: password}}
"#;

    fn resolved(d: &DesiredRuntime, current: bool) -> Vec<ResolvedUser> {
        d.users
            .iter()
            .map(|u| ResolvedUser { desired: u.clone(), password: "s3cret-pw".into(), password_current: current })
            .collect()
    }

    fn plan_all(d: &DesiredRuntime, users: &[ResolvedUser], live: &Live) -> Plan {
        let mut out = Plan::default();
        plan_accounts(d, users, live, &mut out);
        plan_grants(d, live, &mut out);
        plan_quotas(d, live, &mut out);
        plan_deletions(d, live, &["admin".into(), "dittofs-operator".into()], &mut out);
        out
    }

    fn configured() -> Live {
        let mut live = Live {
            users: vec![
                LiveUser { username: "admin".into(), role: "admin".into(), enabled: true, ..Default::default() },
                LiveUser {
                    username: "alice".into(),
                    role: "user".into(),
                    uid: Some(1001),
                    gid: Some(2000),
                    groups: Some(vec!["staff".into()]),
                    enabled: true,
                },
            ],
            groups: vec![LiveGroup { name: "staff".into(), gid: Some(2000) }],
            ..Live::default()
        };
        live.permissions.insert(
            "/export".into(),
            vec![
                LivePermission { kind: "user".into(), name: "alice".into(), level: "read-write".into() },
                LivePermission { kind: "group".into(), name: "staff".into(), level: "read".into() },
            ],
        );
        live
    }

    #[test]
    fn a_first_pass_creates_the_group_then_the_user_then_the_grants() {
        let d = desired(WANTED);
        let plan = plan_all(&d, &resolved(&d, false), &Live::default());
        assert_eq!(
            plan.descriptions(),
            [
                "group staff: create",
                "user alice: create",
                "share /export: user alice unset → read-write",
                "share /export: group staff unset → read",
            ]
        );
        assert_eq!(plan.changes[1].body.as_ref().unwrap()["password"], "s3cret-pw", "the password goes in the body");
        assert_eq!(plan.changes[2].path, "/api/v1/shares/export/permissions/users/alice");
        assert_eq!(plan.changes[3].path, "/api/v1/shares/export/permissions/groups/staff");
        assert!(!format!("{:?}", resolved(&d, false)).contains("s3cret"), "Debug hides the password");
        assert!(plan.descriptions().iter().all(|d| !d.contains("s3cret")));
    }

    #[test]
    fn a_configured_server_needs_nothing_and_a_rotated_password_is_set() {
        let d = desired(WANTED);
        assert_eq!(plan_all(&d, &resolved(&d, true), &configured()), Plan::default());
        let rotated = plan_all(&d, &resolved(&d, false), &configured());
        assert_eq!(rotated.descriptions(), ["user alice: password set from Secret alice"]);
        assert_eq!(rotated.changes[0].path, "/api/v1/users/alice/password");
    }

    #[test]
    fn drift_is_corrected_and_stale_grants_revoked() {
        let d = desired(WANTED);
        let mut live = configured();
        live.users[1].groups = None;
        live.users[1].enabled = false;
        live.permissions.get_mut("/export").unwrap()[0].level = "admin".into();
        live.permissions.get_mut("/export").unwrap().push(LivePermission {
            kind: "user".into(),
            name: "mallory".into(),
            level: "read-write".into(),
        });
        live.permissions.get_mut("/export").unwrap().push(LivePermission {
            kind: "sid".into(),
            name: "S-1-5-21-1".into(),
            level: "read".into(),
        });
        assert_eq!(
            plan_all(&d, &resolved(&d, true), &live).descriptions(),
            [
                "user alice: enable, groups [] → [staff]",
                "share /export: user alice admin → read-write",
                "share /export: revoke user mallory (read-write)",
            ]
        );
    }

    #[test]
    fn accounts_not_in_the_spec_are_kept_unless_listed() {
        let mut d = desired(WANTED);
        let mut live = configured();
        live.users.push(LiveUser { username: "bob".into(), role: "user".into(), enabled: true, ..Default::default() });
        live.users.push(LiveUser { username: "dittofs-operator".into(), role: "admin".into(), ..Default::default() });
        live.groups.push(LiveGroup { name: "old".into(), gid: None });
        live.groups.push(LiveGroup { name: "users".into(), gid: Some(1000) });
        let plan = plan_all(&d, &resolved(&d, true), &live);
        assert!(plan.changes.is_empty(), "{:?}", plan.descriptions());
        assert_eq!(
            plan.kept,
            [
                "user bob is in DittoFS but not in spec.users: kept (spec.deleteUsers deletes it)",
                "group old is in DittoFS but not in spec.groups: kept (spec.deleteGroups deletes it)",
            ]
        );
        d.delete_users = vec!["bob".into()];
        d.delete_groups = vec!["old".into()];
        let plan = plan_all(&d, &resolved(&d, true), &live);
        assert_eq!(
            plan.descriptions(),
            ["user bob: delete (spec.deleteUsers)", "group old: delete (spec.deleteGroups)"]
        );
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn user_and_group_quotas_are_set_corrected_and_lifted() {
        let d = desired(&WANTED.replace(
            "    defaultPermission: read\n",
            "    defaultPermission: read\n    identityQuotas:\n      - {scope: default-user, who: every user, limitBytes: 1073741824}\n      - {scope: user, id: 1001, who: alice, limitBytes: 2147483648}\n",
        ));
        let mut live = configured();
        live.quotas.insert("/export".into(), Vec::new());
        let p = plan_all(&d, &resolved(&d, true), &live);
        assert_eq!(
            p.descriptions(),
            ["share /export: quota of every user none → 1.00GiB", "share /export: quota of alice none → 2.00GiB"]
        );
        assert_eq!(p.changes[0].path, "/api/v1/shares/export/quotas/default-user");
        assert_eq!(p.changes[1].path, "/api/v1/shares/export/quotas/user/1001");
        assert_eq!(p.changes[1].body, Some(json!({"limit_bytes": "2147483648"})));
        let row = |scope: &str, id: Option<u32>, limit: &str| LiveQuota {
            scope: scope.into(),
            identity_id: id,
            limit_bytes: Some(limit.into()),
            used_bytes: 0,
        };
        live.quotas.insert(
            "/export".into(),
            vec![
                row("default-user", None, "1.00GiB"),
                row("user", Some(1001), "5.00GiB"),
                row("group", Some(2000), "1.00GiB"),
            ],
        );
        assert_eq!(
            plan_all(&d, &resolved(&d, true), &live).descriptions(),
            ["share /export: quota of alice 5.00GiB → 2.00GiB", "share /export: lift the quota of group 2000"]
        );
    }

    #[test]
    fn a_share_without_permissions_keeps_its_grants() {
        let d = desired(&WANTED.replace(
            "    permissions:\n      - {user: alice, level: read-write}\n      - {group: staff, level: read}\n",
            "",
        ));
        let mut live = configured();
        live.permissions.get_mut("/export").unwrap()[0].level = "admin".into();
        assert_eq!(plan_all(&d, &resolved(&d, true), &live), Plan::default());
    }
}
