//! Admission: invalid DittoServers are rejected by the apiserver (OpenAPI schema + CEL) with a
//! message naming the field; CRs written for the earlier Go operator are accepted.

mod support;

use dittofs_operator::crd::DittoServer;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

fn cr(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "metadata": {"name": name}, "spec": spec})
}

fn with(base: Value, patch: Value) -> Value {
    let mut merged = base;
    merge(&mut merged, patch);
    merged
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Server-side apply with strict field validation, as `kubectl apply --server-side` does.
async fn apply(api: &Api<DittoServer>, object: &Value) -> Result<(), String> {
    let name = object["metadata"]["name"].as_str().unwrap();
    let params = PatchParams::apply("admission-test").validation_strict();
    api.patch(name, &params, &Patch::Apply(object)).await.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_servers_are_rejected_naming_the_field() {
    let (client, ns) = setup("admission").await;
    let api: Api<DittoServer> = Api::namespaced(client, &ns);
    let base = json!({"storage": {"metadataSize": "10Gi"}});

    // (spec overlay, text the rejection must contain)
    let cases: Vec<(Value, &str)> = vec![
        (json!({"replicas": 2}), "spec.replicas"),
        (json!({"replicas": -1}), "spec.replicas"),
        (json!({"storage": {"metadataSize": "0"}}), "spec.storage.metadataSize"),
        (json!({"storage": {"metadataSize": "lots"}}), "spec.storage.metadataSize"),
        (json!({"storage": {"metadataSize": "10Gi", "contentSize": "-5Gi"}}), "spec.storage.contentSize"),
        (json!({"storage": {"metadataSize": "10Gi", "cacheSize": "abc"}}), "spec.storage.cacheSize"),
        (json!({"storage": {"metadataSize": "10Gi", "controlPlaneSize": "0Mi"}}), "spec.storage.controlPlaneSize"),
        (json!({"controlPlane": {"port": 0}}), "spec.controlPlane.port"),
        (json!({"controlPlane": {"port": 70000}}), "spec.controlPlane.port"),
        (json!({"nfsPort": 8080}), "spec.nfsPort"),
        (json!({"smb": {"port": 12049}}), "spec.smb.port"),
        (json!({"smb": {"port": 8080}}), "spec.smb.port"),
        (json!({"metrics": {"enabled": true, "port": 8080}}), "spec.metrics.port"),
        (json!({"metrics": {"enabled": true, "port": 12445}}), "spec.metrics.port"),
        (json!({"metrics": {"path": "metrics"}}), "spec.metrics.path"),
        (json!({"service": {"type": "ExternalName"}}), "spec.service.type"),
        (json!({"adapterServices": {"type": "Ingress"}}), "spec.adapterServices.type"),
        (json!({"adapterServices": {"nfsPort": 445, "smbPort": 445}}), "spec.adapterServices.smbPort"),
        (
            json!({"adapterServices": {"loadBalancerSourceRanges": ["office"]}}),
            "spec.adapterServices.loadBalancerSourceRanges",
        ),
        (
            json!({"networkPolicy": {"fileClients": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}}),
            "spec.networkPolicy.fileClients[].ipBlock",
        ),
        (
            json!({"networkPolicy": {"fileClients": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["ten"]}}]}}),
            "spec.networkPolicy.fileClients[].ipBlock",
        ),
        (
            json!({"networkPolicy": {"apiClients": [{"ipBlock": {"cidr": "laptop"}}]}}),
            "spec.networkPolicy.apiClients[].ipBlock",
        ),
        (json!({"networkPolicy": {"enabled": "yes"}}), "spec.networkPolicy.enabled"),
        (json!({"database": {"type": "mysql"}}), "spec.database.type"),
        (json!({"database": {"postgresSecretRef": {"name": "a"}}, "percona": {"enabled": true}}), "spec.database"),
        (json!({"database": {"postgresSecretRef": {"name": "a"}, "percona": {"clusterName": "pg"}}}), "spec.database"),
        (json!({"database": {"type": "postgres"}}), "spec.database.type"),
        (json!({"database": {"type": "sqlite", "postgresSecretRef": {"name": "a"}}}), "spec.database.type"),
        (json!({"shutdownTimeout": "30"}), "spec.shutdownTimeout"),
        (json!({"shutdownTimeout": "1d"}), "spec.shutdownTimeout"),
        (json!({"identity": {"jwt": {"accessTokenDuration": "soon"}}}), "spec.identity.jwt.accessTokenDuration"),
        (json!({"logging": {"level": "TRACE"}}), "spec.logging.level"),
        (json!({"logging": {"format": "xml"}}), "spec.logging.format"),
        (json!({"logging": {"output": "logs/dfs.log"}}), "spec.logging.output"),
        (json!({"percona": {"enabled": true, "replicas": 9}}), "spec.percona.replicas"),
        (json!({"percona": {"enabled": true, "storageSize": "big"}}), "spec.percona.storageSize"),
        (json!({"imagePullPolicy": "Sometimes"}), "spec.imagePullPolicy"),
        (json!({"terminationGracePeriodSeconds": 0}), "spec.terminationGracePeriodSeconds"),
        (json!({"database": {"sqlite": {"path": "/tmp/cp.db"}}}), "spec.database.sqlite.path"),
        (json!({"shares": [{"name": "export"}]}), "spec.shares[0].name"),
        (json!({"shares": [{"name": "/a/b"}]}), "spec.shares[0].name"),
        (json!({"shares": [{"name": "/a"}, {"name": "/a"}]}), "spec.shares: duplicate entries"),
        (json!({"shares": [{"name": "/a", "defaultPermission": "write"}]}), "spec.shares[0].defaultPermission"),
        (json!({"shares": [{"name": "/a", "remote": true}]}), "spec.shares"),
        (json!({"stores": {"metadata": {"type": "postgres"}}}), "spec.stores.metadata.type"),
        (json!({"stores": {"metadata": {"type": "sqlite"}}}), "spec.stores.metadata.type"),
        (json!({"stores": {"metadata": {"database": "meta"}}}), "spec.stores.metadata.database"),
        (json!({"stores": {"local": {"type": "s3"}}}), "spec.stores.local.type"),
        (json!({"stores": {"delete": ["Old Store"]}}), "spec.stores.delete"),
        (json!({"s3": {"bucket": "b"}}), "spec.s3.credentialsSecretRef"),
        (json!({"snapshotPolicies": [{"share": "/a/b", "interval": "1h"}]}), "spec.snapshotPolicies[0].share"),
        (json!({"snapshotPolicies": [{"share": "/export", "interval": "daily"}]}), "spec.snapshotPolicies[0].interval"),
        (
            json!({"snapshotPolicies": [{"share": "/export", "interval": "1h", "ttl": "30d"}]}),
            "spec.snapshotPolicies[0].ttl",
        ),
        (
            json!({"snapshotPolicies": [{"share": "/export", "interval": "1h", "namePrefix": "a b"}]}),
            "spec.snapshotPolicies[0].namePrefix",
        ),
        (
            json!({"s3": {"bucket": "bucket", "endpoint": "s3.cubbit.eu", "credentialsSecretRef": {"secretName": "s3"}}}),
            "spec.s3.endpoint",
        ),
        (json!({"database": {"sqlite": {"path": "/data/controlplane/../x.db"}}}), "spec.database.sqlite.path"),
        (json!({"terminationGracePeriodSeconds": 86400}), "spec.terminationGracePeriodSeconds"),
        (json!({"shutdownTimeout": "2h"}), "spec.shutdownTimeout"),
        // Hardening: no privilege, no root, no unconfined seccomp, no capability but NET_BIND_SERVICE.
        (json!({"securityContext": {"privileged": true}}), "spec.securityContext.privileged"),
        (
            json!({"securityContext": {"allowPrivilegeEscalation": true}}),
            "spec.securityContext.allowPrivilegeEscalation",
        ),
        (json!({"securityContext": {"runAsUser": 0}}), "spec.securityContext.runAsUser"),
        (json!({"securityContext": {"runAsNonRoot": false}}), "spec.securityContext.runAsNonRoot"),
        (
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
            "spec.securityContext.seccompProfile.type",
        ),
        (json!({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}), "spec.securityContext.capabilities.add"),
        (json!({"podSecurityContext": {"runAsUser": 0}}), "spec.podSecurityContext.runAsUser"),
        (json!({"podSecurityContext": {"runAsNonRoot": false}}), "spec.podSecurityContext.runAsNonRoot"),
        (
            json!({"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}}),
            "spec.podSecurityContext.seccompProfile.type",
        ),
        // The rest of Pod Security restricted/baseline, each naming its field.
        (json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}), "spec.securityContext.seLinuxOptions"),
        (
            json!({"podSecurityContext": {"seLinuxOptions": {"user": "system_u"}}}),
            "spec.podSecurityContext.seLinuxOptions",
        ),
        (
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
            "spec.securityContext.appArmorProfile.type",
        ),
        (
            json!({"podSecurityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
            "spec.podSecurityContext.appArmorProfile.type",
        ),
        (
            json!({"podAnnotations": {"container.apparmor.security.beta.kubernetes.io/dittofs": "unconfined"}}),
            "spec.podAnnotations",
        ),
        (json!({"securityContext": {"procMount": "Unmasked"}}), "spec.securityContext.procMount"),
        (
            json!({"securityContext": {"windowsOptions": {"hostProcess": true}}}),
            "spec.securityContext.windowsOptions.hostProcess",
        ),
        (json!({"securityContext": {"runAsGroup": 0}}), "spec.securityContext.runAsGroup"),
        (json!({"podSecurityContext": {"runAsGroup": 0}}), "spec.podSecurityContext.runAsGroup"),
        (json!({"podSecurityContext": {"fsGroup": 0}}), "spec.podSecurityContext.fsGroup"),
        (
            json!({"podSecurityContext": {"supplementalGroups": [65532, 0]}}),
            "spec.podSecurityContext.supplementalGroups",
        ),
        (
            json!({"podSecurityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}}),
            "spec.podSecurityContext.sysctls",
        ),
        (json!({"priorityClassName": "system-node-critical"}), "spec.priorityClassName"),
        (json!({"priorityClassName": "system-cluster-critical"}), "spec.priorityClassName"),
        // What the StatefulSet would be refused for later.
        (json!({"podLabels": {"bad key!": "x"}}), "spec.podLabels"),
        (json!({"podLabels": {"team": "not a valid value"}}), "spec.podLabels"),
        (json!({"podAnnotations": {"-leading-dash": "x"}}), "spec.podAnnotations"),
        (json!({"resources": {"limits": {"cpu": "banana"}}}), "spec.resources.limits"),
        (json!({"resources": {"requests": {"memory": "1 Gi"}}}), "spec.resources.requests"),
        (json!({"controlPlane": {"tls": false, "certSecretName": "api-tls"}}), "spec.controlPlane.tls"),
        (json!({"controlPlane": {"clientCASecretName": "ca"}}), "spec.controlPlane.clientCASecretName"),
        // An S3 store without its credentials Secret.
        (json!({"s3": {"bucket": "x"}}), "spec.s3"),
        (json!({"identity": {"ldap": {"enabled": true}}}), "spec.identity.ldap"),
        (
            json!({"identity": {"ldap": {"url": "ldap://dc:389", "baseDN": "DC=x", "bindDN": "CN=y", "bindPasswordSecretRef": {"name": "p"}}}}),
            "spec.identity.ldap.url",
        ),
        (
            json!({"identity": {"ldap": {"url": "ldaps://dc:636", "baseDN": "DC=x", "bindDN": "CN=y"}}}),
            "spec.identity.ldap.bindPasswordSecretRef",
        ),
        (
            json!({"identity": {"kerberos": {"enabled": true, "servicePrincipal": "nfs/x@Y"}}}),
            "spec.identity.kerberos.keytabSecretRef",
        ),
        (json!({"metrics": {"serviceMonitor": {"enabled": true}}}), "spec.metrics.serviceMonitor"),
        (
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true, "interval": "often"}}}),
            "spec.metrics.serviceMonitor.interval",
        ),
        (
            json!({"percona": {"enabled": true, "backup": {"enabled": true, "endpoint": "s3.example.com"}}}),
            "spec.percona.backup.bucket",
        ),
        (
            json!({"percona": {"enabled": true, "backup": {"enabled": true, "bucket": "b1"}}}),
            "spec.percona.backup.endpoint",
        ),
        (
            json!({"percona": {"enabled": true, "backup": {"enabled": true, "bucket": "bkp", "endpoint": "http://minio:9000"}}}),
            "spec.percona.backup.endpoint",
        ),
        (json!({"percona": {"backup": {"bucket": "Upper_Case"}}}), "spec.percona.backup.bucket"),
        (json!({"percona": {"backup": {"fullSchedule": "daily at two"}}}), "spec.percona.backup.fullSchedule"),
        (json!({"percona": {"backup": {"incrSchedule": "0 * * *"}}}), "spec.percona.backup.incrSchedule"),
        (json!({"percona": {"backup": {"retentionDays": 0}}}), "spec.percona.backup.retentionDays"),
        // Access: users, groups, grants and quotas.
        (
            json!({"users": [{"name": "alice", "passwordSecretRef": {"name": "p"}}, {"name": "alice", "passwordSecretRef": {"name": "q"}}]}),
            "spec.users: duplicate entries for key [name=\"alice\"]",
        ),
        (
            json!({"groups": [{"name": "staff"}, {"name": "staff"}]}),
            "spec.groups: duplicate entries for key [name=\"staff\"]",
        ),
        (json!({"users": [{"name": "root", "uid": 0, "passwordSecretRef": {"name": "p"}}]}), "spec.users[0].uid"),
        (json!({"users": [{"name": "wheel", "gid": 0, "passwordSecretRef": {"name": "p"}}]}), "spec.users[0].uid"),
        (json!({"users": [{"name": "admin", "passwordSecretRef": {"name": "p"}}]}), "spec.users[0].name"),
        (
            json!({"users": [{"name": "alice", "role": "admin", "passwordSecretRef": {"name": "p"}}]}),
            "spec.users[0].role",
        ),
        (json!({"users": [{"name": "alice"}]}), "spec.users[0].passwordSecretRef"),
        (json!({"users": [{"name": "al ice", "passwordSecretRef": {"name": "p"}}]}), "spec.users[0].name"),
        (json!({"users": [{"name": "alice", "groups": ["staff"], "passwordSecretRef": {"name": "p"}}]}), "spec.users"),
        (json!({"groups": [{"name": "staff", "gid": 0}]}), "spec.groups[0].gid"),
        (
            json!({"shares": [{"name": "/export", "permissions": [{"user": "mallory", "level": "read"}]}]}),
            "spec.shares[].permissions[].user must name a user of spec.users",
        ),
        (
            json!({"shares": [{"name": "/export", "permissions": [{"group": "nobody", "level": "read"}]}]}),
            "spec.shares[].permissions[].group must name a group of spec.groups",
        ),
        (
            json!({"users": [{"name": "alice", "passwordSecretRef": {"name": "p"}}], "groups": [{"name": "staff"}],
                   "shares": [{"name": "/export", "permissions": [{"user": "alice", "group": "staff", "level": "read"}]}]}),
            "spec.shares[0].permissions[0].user",
        ),
        (
            json!({"users": [{"name": "alice", "passwordSecretRef": {"name": "p"}}],
                   "shares": [{"name": "/export", "permissions": [{"user": "alice", "level": "read"}, {"user": "alice", "level": "admin"}]}]}),
            "spec.shares[0].permissions",
        ),
        (
            json!({"users": [{"name": "alice", "passwordSecretRef": {"name": "p"}}],
                   "shares": [{"name": "/export", "permissions": [{"user": "alice", "level": "all"}]}]}),
            "spec.shares[0].permissions[0].level",
        ),
        (json!({"shares": [{"name": "/export", "quota": "-1Gi"}]}), "spec.shares[0].quota"),
        (json!({"shares": [{"name": "/export", "userQuota": "-5Gi"}]}), "spec.shares[0].userQuota"),
        (
            json!({"users": [{"name": "alice", "passwordSecretRef": {"name": "p"}}],
                   "shares": [{"name": "/export", "quotas": [{"user": "alice", "limit": "1Gi"}]}]}),
            "spec.shares[].quotas[] must name a user of spec.users with a uid",
        ),
        (
            json!({"users": [{"name": "alice", "uid": 1001, "passwordSecretRef": {"name": "p"}}],
                   "shares": [{"name": "/export", "quotas": [{"user": "alice", "limit": "-1"}]}]}),
            "spec.shares[0].quotas[0].limit",
        ),
        (
            json!({"shares": [{"name": "/export", "nfs": {"allowedClients": ["10.0.0.0/33"]}}]}),
            "spec.shares[0].nfs.allowedClients",
        ),
        (json!({"shares": [{"name": "/export", "nfs": {"squash": "everyone"}}]}), "spec.shares[0].nfs.squash"),
        (
            json!({"shares": [{"name": "/export", "nfs": {"minKerberosLevel": "krb9"}}]}),
            "spec.shares[0].nfs.minKerberosLevel",
        ),
        (json!({"shares": [{"name": "/export", "quota": "0"}]}), "spec.shares[0].quota"),
        (json!({"shares": [{"name": "/export", "quota": "lots"}]}), "spec.shares[0].quota"),
        (json!({"deleteUsers": ["admin"]}), "spec.deleteUsers"),
        (
            json!({"users": [{"name": "alice", "passwordSecretRef": {"name": "p"}}], "deleteUsers": ["alice"]}),
            "spec.deleteUsers",
        ),
        (json!({"groups": [{"name": "staff"}], "deleteGroups": ["staff"]}), "spec.deleteGroups"),
        (json!({"deleteGroups": ["users"]}), "spec.deleteGroups"),
        // Adapter settings.
        (json!({"nfs": {"minVersion": "4.1", "maxVersion": "3"}}), "spec.nfs.minVersion"),
        (json!({"nfs": {"maxVersion": "4.2"}}), "spec.nfs.maxVersion"),
        (json!({"smb": {"minDialect": "SMB3.1.1", "maxDialect": "SMB2.0"}}), "spec.smb.minDialect"),
        (json!({"smb": {"signing": "sometimes"}}), "spec.smb.signing"),
        (json!({"nfsPort": 10111}), "spec.nfs.portmapper"),
        // Fields of the earlier operator that this one does not implement yet: refused, never dropped.
        (json!({"smb": {"maxConnections": 10}}), "spec.smb.maxConnections"),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (i, (overlay, field)) in cases.iter().enumerate() {
        let object = cr(&format!("bad-{i}"), with(base.clone(), overlay.clone()));
        match apply(&api, &object).await {
            Ok(()) => failures.push(format!("case {i} ({overlay}) was accepted")),
            Err(message) if !message.contains(field) => {
                failures.push(format!("case {i} ({overlay}): message does not name {field}: {message}"))
            }
            Err(_) => {}
        }
    }
    // Missing required field and a bad name.
    let missing = cr("no-storage", json!({"storage": {}}));
    match apply(&api, &missing).await {
        Err(m) if m.contains("spec.storage.metadataSize") => {}
        other => failures.push(format!("missing metadataSize: {other:?}")),
    }
    match apply(&api, &cr("1starts-with-digit", base.clone())).await {
        Err(m) if m.contains("metadata.name") => {}
        other => failures.push(format!("bad name: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_hardening_labels_and_quantities_are_accepted() {
    let (client, ns) = setup("admission-ok").await;
    let api: Api<DittoServer> = Api::namespaced(client, &ns);
    let spec = json!({
        "storage": {"metadataSize": "10Gi"},
        "securityContext": {"runAsUser": 65532, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
        "podSecurityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"},
            "seLinuxOptions": {"type": "container_t", "level": "s0:c123,c456"}, "appArmorProfile": {"type": "RuntimeDefault"},
            "fsGroup": 65532, "supplementalGroups": [65532, 1000],
            "sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "600"}]},
        "podLabels": {"team": "storage", "example.com/tier": "gold_1.0"},
        "podAnnotations": {"example.com/note": "any text at all: yes",
            "container.apparmor.security.beta.kubernetes.io/dittofs": "runtime/default"},
        "priorityClassName": "high-priority",
        "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "500m", "memory": 1073741824}},
        "shutdownTimeout": "10m",
        "terminationGracePeriodSeconds": 3600,
        "adapterServices": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/24", "2001:db8::/32"]},
        "networkPolicy": {"fileClients": [
            {"namespaceSelector": {"matchLabels": {"team": "media"}}, "podSelector": {"matchLabels": {"app": "render"}}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
        ], "apiClients": [{"podSelector": {"matchLabels": {"app": "dfsctl"}}}]},
        "groups": [{"name": "staff", "gid": 2000}, {"name": "auditors"}],
        "users": [
            {"name": "alice", "uid": 1001, "gid": 2000, "groups": ["staff"], "passwordSecretRef": {"name": "users", "key": "alice"}},
            {"name": "root", "uid": 0, "allowRoot": true, "role": "operator", "passwordSecretRef": {"name": "root"}}
        ],
        "deleteUsers": ["k8s-operator"],
        "deleteGroups": ["old"],
        "shares": [{"name": "/export", "quota": "1.5Ti", "userQuota": "10Gi",
            "quotas": [{"user": "alice", "limit": "20Gi"}],
            "nfs": {"squash": "root_to_guest", "anonymousUid": 65534, "allowedClients": ["10.0.0.0/8", "192.0.2.1", "host-1.example.com"],
                    "requireKerberos": false, "minKerberosLevel": "krb5i", "allowAuthSys": true},
            "smb": {"accessBasedEnumeration": true},
            "permissions": [
            {"user": "alice", "level": "read-write"}, {"group": "auditors", "level": "read"}, {"user": "root", "level": "none"}
        ]}],
        "nfs": {"minVersion": "3", "maxVersion": "4.0", "portmapper": false, "udp": false},
        "smb": {"minDialect": "SMB2.1", "maxDialect": "SMB3.0.2", "signing": "required", "encryption": true}
    });
    apply(&api, &cr("hardened", spec)).await.expect("a valid spec is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_is_immutable_once_set() {
    let (client, ns) = setup("immutable").await;
    let api: Api<DittoServer> = Api::namespaced(client, &ns);
    let original = cr("fixed", json!({"storage": {"metadataSize": "10Gi", "storageClassName": "fast"}}));
    apply(&api, &original).await.expect("create");
    for (overlay, field) in [
        (json!({"storage": {"metadataSize": "20Gi"}}), "spec.storage.metadataSize"),
        (json!({"storage": {"storageClassName": "slow"}}), "spec.storage.storageClassName"),
        (json!({"storage": {"contentSize": "5Gi"}}), "spec.storage.contentSize"),
        (json!({"storage": {"controlPlaneSize": "2Gi"}}), "spec.storage.controlPlaneSize"),
    ] {
        let edited = with(original.clone(), json!({"spec": overlay}));
        let err = apply(&api, &edited).await.expect_err("immutable field edited");
        assert!(err.contains(field) && err.contains("immutable"), "{err}");
    }
    // Other edits still go through.
    apply(&api, &with(original.clone(), json!({"spec": {"replicas": 0}}))).await.expect("replicas edit");

    // Where the data lives is fixed too.
    let located = cr(
        "located",
        json!({"storage": {"metadataSize": "10Gi"}, "database": {"sqlite": {"path": "/data/controlplane/cp.db"}}}),
    );
    apply(&api, &located).await.expect("create");
    let moved =
        with(located.clone(), json!({"spec": {"database": {"sqlite": {"path": "/data/controlplane/other.db"}}}}));
    let err = apply(&api, &moved).await.expect_err("sqlite path edited");
    assert!(err.contains("spec.database.sqlite.path") && err.contains("immutable"), "{err}");
    let percona =
        cr("pg", json!({"storage": {"metadataSize": "10Gi"}, "percona": {"enabled": true, "databaseName": "files"}}));
    apply(&api, &percona).await.expect("create");
    let renamed = with(percona.clone(), json!({"spec": {"percona": {"databaseName": "other"}}}));
    let err = apply(&api, &renamed).await.expect_err("databaseName edited");
    assert!(err.contains("spec.percona.databaseName") && err.contains("immutable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_go_operator_crs_and_one_with_every_drop_in_field_are_accepted() {
    let (client, ns) = setup("compat").await;
    let api: Api<DittoServer> = Api::namespaced(client, &ns);
    for case in ["go-operator-v0.4.1", "go-operator-v0.29", "go-operator-v0.29-meanings", "every-drop-in-field"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(case).join("input.yaml");
        // The DittoServer is the first document; the others are what render reads from the cluster.
        let text = std::fs::read_to_string(path).unwrap();
        let first = text.split("\n---\n").next().unwrap();
        let mut object: Value = serde_saphyr::from_str(first).unwrap();
        object["metadata"].as_object_mut().unwrap().remove("namespace");
        apply(&api, &object).await.unwrap_or_else(|e| panic!("{case} rejected: {e}"));
    }
}
