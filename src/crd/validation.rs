//! Admission validation added to the generated schema. Rules live in one table so a reader sees
//! every rejection the apiserver can make; each message names the field at fault.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::DittoServer;

/// A CEL rule placed at `path` (a dotted path below `spec`; "" = `spec`, "/" = the object root).
struct Rule {
    path: &'static str,
    rule: &'static str,
    message: &'static str,
    /// Field the rejection points at, relative to `path`.
    field_path: Option<&'static str>,
    reason: Option<&'static str>,
}

const fn rule(path: &'static str, rule: &'static str, message: &'static str) -> Rule {
    Rule { path, rule, message, field_path: None, reason: None }
}

const fn rule_at(path: &'static str, field_path: &'static str, rule: &'static str, message: &'static str) -> Rule {
    Rule { path, rule, message, field_path: Some(field_path), reason: None }
}

const fn immutable(path: &'static str, field_path: &'static str, rule: &'static str, message: &'static str) -> Rule {
    Rule { path, rule, message, field_path: Some(field_path), reason: Some("FieldValueForbidden") }
}

// Effective ports as CEL expressions; the literals are the shipped defaults (values/defaults.yaml).
macro_rules! api_port {
    () => {
        "(has(self.controlPlane) && has(self.controlPlane.port) ? self.controlPlane.port : 8080)"
    };
}
macro_rules! nfs_port {
    () => {
        "(has(self.nfsPort) ? self.nfsPort : 12049)"
    };
}
macro_rules! smb_port {
    () => {
        "(has(self.smb) && has(self.smb.port) ? self.smb.port : 12445)"
    };
}
macro_rules! metrics_port {
    () => {
        "(has(self.metrics) && has(self.metrics.port) ? self.metrics.port : 9090)"
    };
}
/// SELinux options Pod Security baseline allows: a container type of the standard set, no user,
/// no role.
macro_rules! selinux_allowed {
    () => {
        "!has(self.seLinuxOptions) || ((!has(self.seLinuxOptions.type) || self.seLinuxOptions.type in ['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']) && (!has(self.seLinuxOptions.user) || self.seLinuxOptions.user == '') && (!has(self.seLinuxOptions.role) || self.seLinuxOptions.role == ''))"
    };
}
macro_rules! smb_off {
    () => {
        "(has(self.smb) && has(self.smb.enabled) && !self.smb.enabled)"
    };
}
macro_rules! metrics_on {
    () => {
        "(has(self.metrics) && has(self.metrics.enabled) && self.metrics.enabled)"
    };
}
macro_rules! positive_quantity {
    () => {
        "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))"
    };
}
/// A CronJob schedule as Percona passes it on: five fields, or a macro.
macro_rules! cron {
    () => {
        "self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9*/,?LW#A-Za-z-]+( +[0-9*/,?LW#A-Za-z-]+){4})$')"
    };
}
macro_rules! positive_duration {
    () => {
        "self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')"
    };
}
/// A Kubernetes qualified name (label and annotation keys): `[prefix/]name`, the name at most 63
/// characters, the prefix a DNS subdomain.
macro_rules! qualified_name {
    ($k:literal) => {
        concat!(
            $k,
            ".matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && ",
            $k,
            ".size() <= 317"
        )
    };
}
macro_rules! same_optional {
    ($f:literal) => {
        concat!(
            "has(self.",
            $f,
            ") == has(oldSelf.",
            $f,
            ") && (!has(self.",
            $f,
            ") || self.",
            $f,
            " == oldSelf.",
            $f,
            ")"
        )
    };
}

const RULES: &[Rule] = &[
    // Names derived from the CR (`<name>-headless`, `<name>-postgres-pguser-…`) must stay valid DNS labels.
    rule(
        "/",
        "self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must be at most 40 characters of lower-case letters, digits and '-', starting with a letter (it prefixes Service and volume names)",
    ),
    // Ports the pod listens on must not collide.
    rule_at(
        "",
        ".nfsPort",
        concat!(nfs_port!(), " != ", api_port!()),
        "spec.nfsPort must differ from spec.controlPlane.port (default 8080)",
    ),
    rule_at(
        "",
        ".smb.port",
        concat!(smb_off!(), " || ", smb_port!(), " != ", api_port!()),
        "spec.smb.port must differ from spec.controlPlane.port (default 8080)",
    ),
    rule_at(
        "",
        ".smb.port",
        concat!(smb_off!(), " || ", smb_port!(), " != ", nfs_port!()),
        "spec.smb.port must differ from spec.nfsPort (default 12049)",
    ),
    rule_at(
        "",
        ".metrics.port",
        concat!(
            "!",
            metrics_on!(),
            " || (",
            metrics_port!(),
            " != ",
            api_port!(),
            " && ",
            metrics_port!(),
            " != ",
            nfs_port!(),
            ")"
        ),
        "spec.metrics.port must differ from spec.controlPlane.port and spec.nfsPort",
    ),
    rule_at(
        "",
        ".metrics.port",
        concat!("!", metrics_on!(), " || ", smb_off!(), " || ", metrics_port!(), " != ", smb_port!()),
        "spec.metrics.port must differ from spec.smb.port (default 12445)",
    ),
    rule_at(
        "",
        ".nfs.portmapper",
        concat!(
            "(has(self.nfs) && has(self.nfs.portmapper) && !self.nfs.portmapper) || !(10111 in [",
            api_port!(),
            ", ",
            nfs_port!(),
            ", ",
            smb_port!(),
            ", ",
            metrics_port!(),
            "])"
        ),
        "spec.nfs.portmapper (on by default) listens on pod port 10111: spec.controlPlane.port, spec.nfsPort, spec.smb.port and spec.metrics.port must use another, or set spec.nfs.portmapper: false",
    ),
    rule_at(
        "",
        ".adapterServices.smbPort",
        concat!(
            "!has(self.adapterServices) || ",
            smb_off!(),
            " || (has(self.adapterServices.nfsPort) ? self.adapterServices.nfsPort : 2049) != (has(self.adapterServices.smbPort) ? self.adapterServices.smbPort : 445)"
        ),
        "spec.adapterServices.smbPort must differ from spec.adapterServices.nfsPort",
    ),
    // One PostgreSQL source at most.
    rule_at(
        "",
        ".database",
        "[has(self.database) && has(self.database.postgresSecretRef), has(self.database) && has(self.database.percona), has(self.percona) && has(self.percona.enabled) && self.percona.enabled].filter(x, x).size() <= 1",
        "spec.database.postgresSecretRef, spec.database.percona and spec.percona.enabled are mutually exclusive: choose one PostgreSQL source",
    ),
    rule_at(
        "",
        ".database.type",
        "!(has(self.database) && has(self.database.type) && self.database.type == 'sqlite' && (has(self.database.postgresSecretRef) || has(self.database.percona) || (has(self.percona) && has(self.percona.enabled) && self.percona.enabled)))",
        "spec.database.type is sqlite but a PostgreSQL source is set; remove spec.database.type or set it to postgres",
    ),
    rule_at(
        "",
        ".database.type",
        "!(has(self.database) && has(self.database.type) && self.database.type == 'postgres') || has(self.database.postgresSecretRef) || has(self.database.percona) || (has(self.percona) && has(self.percona.enabled) && self.percona.enabled)",
        "spec.database.type postgres needs spec.database.postgresSecretRef, spec.database.percona or spec.percona.enabled",
    ),
    // Access: users, groups, share permissions and quotas.
    rule_at(
        "users.[]",
        ".uid",
        "((!has(self.uid) || self.uid != 0) && (!has(self.gid) || self.gid != 0)) || (has(self.allowRoot) && self.allowRoot)",
        "spec.users[].uid and gid 0 are root's: set allowRoot: true on the user to allow them",
    ),
    rule_at(
        "users.[]",
        ".name",
        "!(self.name in ['admin', 'dittofs-operator'])",
        "spec.users[].name: admin (the bootstrap admin) and dittofs-operator (the operator's own account) are not managed here",
    ),
    rule_at(
        "",
        ".users",
        "!has(self.users) || self.users.all(u, !has(u.groups) || u.groups.all(g, has(self.groups) && self.groups.exists(x, x.name == g)))",
        "spec.users[].groups must name groups of spec.groups",
    ),
    rule_at(
        "",
        ".deleteUsers",
        "!has(self.deleteUsers) || !self.deleteUsers.exists(d, d in ['admin', 'dittofs-operator'] || (has(self.users) && self.users.exists(u, u.name == d)))",
        "spec.deleteUsers must not name admin, dittofs-operator, or a user of spec.users",
    ),
    rule_at(
        "",
        ".deleteGroups",
        "!has(self.deleteGroups) || !self.deleteGroups.exists(d, d in ['admins', 'operators', 'users'] || (has(self.groups) && self.groups.exists(g, g.name == d)))",
        "spec.deleteGroups must not name a group of spec.groups, nor DittoFS's own admins, operators and users",
    ),
    rule_at(
        "shares.[].permissions.[]",
        ".user",
        "has(self.user) != has(self.group)",
        "spec.shares[].permissions[] names exactly one of user or group",
    ),
    rule(
        "shares.[].permissions",
        "self.all(a, self.filter(b, (has(a.user) && has(b.user) && a.user == b.user) || (has(a.group) && has(b.group) && a.group == b.group)).size() == 1)",
        "spec.shares[].permissions: a user or group is listed twice on the same share",
    ),
    rule_at(
        "",
        ".shares",
        "!has(self.shares) || self.shares.all(s, !has(s.permissions) || s.permissions.all(p, !has(p.user) || (has(self.users) && self.users.exists(u, u.name == p.user))))",
        "spec.shares[].permissions[].user must name a user of spec.users",
    ),
    rule_at(
        "",
        ".shares",
        "!has(self.shares) || self.shares.all(s, !has(s.permissions) || s.permissions.all(p, !has(p.group) || (has(self.groups) && self.groups.exists(g, g.name == p.group))))",
        "spec.shares[].permissions[].group must name a group of spec.groups",
    ),
    rule("shares.[].quota", positive_quantity!(), "spec.shares[].quota must be a positive quantity such as 10Gi"),
    rule(
        "shares.[].userQuota",
        positive_quantity!(),
        "spec.shares[].userQuota must be a positive quantity such as 10Gi",
    ),
    rule(
        "shares.[].quotas.[].limit",
        positive_quantity!(),
        "spec.shares[].quotas[].limit must be a positive quantity such as 10Gi",
    ),
    rule_at(
        "shares.[].quotas.[]",
        ".user",
        "has(self.user) != has(self.group)",
        "spec.shares[].quotas[] names exactly one of user or group",
    ),
    rule_at(
        "",
        ".shares",
        "!has(self.shares) || self.shares.all(s, !has(s.quotas) || s.quotas.all(q, (!has(q.user) || (has(self.users) && self.users.exists(u, u.name == q.user && has(u.uid)))) && (!has(q.group) || (has(self.groups) && self.groups.exists(g, g.name == q.group && has(g.gid))))))",
        "spec.shares[].quotas[] must name a user of spec.users with a uid, or a group of spec.groups with a gid",
    ),
    rule(
        "shares.[].nfs.allowedClients",
        "self.all(c, isCIDR(c) || isIP(c) || c.matches('^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?$'))",
        "spec.shares[].nfs.allowedClients: each must be an IP address, a CIDR such as 10.0.0.0/8, or a host name",
    ),
    rule(
        "stores.local.maxSize",
        positive_quantity!(),
        "spec.stores.local.maxSize must be a positive quantity such as 40Gi",
    ),
    // Adapter settings: the lowest offered is not above the highest (the spellings sort in order).
    rule(
        "nfs",
        "!has(self.minVersion) || !has(self.maxVersion) || self.minVersion <= self.maxVersion",
        "spec.nfs.minVersion must not be above spec.nfs.maxVersion",
    ),
    rule(
        "smb",
        "!has(self.minDialect) || !has(self.maxDialect) || self.minDialect <= self.maxDialect",
        "spec.smb.minDialect must not be above spec.smb.maxDialect",
    ),
    // The runtime: shares, stores, S3.
    rule_at(
        "",
        ".shares",
        "!has(self.shares) || has(self.s3) || !self.shares.exists(s, has(s.remote) && s.remote)",
        "spec.shares[].remote needs spec.s3 (the remote store)",
    ),
    rule_at(
        "",
        ".stores.metadata.type",
        "!(has(self.stores) && has(self.stores.metadata) && has(self.stores.metadata.type) && self.stores.metadata.type == 'postgres') || (has(self.database) && (has(self.database.postgresSecretRef) || has(self.database.percona))) || (has(self.percona) && has(self.percona.enabled) && self.percona.enabled)",
        "spec.stores.metadata.type postgres keeps file metadata on the DittoServer's PostgreSQL: set spec.database.postgresSecretRef, spec.database.percona or spec.percona.enabled",
    ),
    rule_at(
        "stores.metadata",
        ".database",
        "!has(self.database) || (has(self.type) && self.type == 'postgres')",
        "spec.stores.metadata.database is for type postgres only",
    ),
    rule(
        "stores.delete",
        "self.all(n, n.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'))",
        "spec.stores.delete lists store names (lower-case letters, digits and '-')",
    ),
    rule(
        "s3.credentialsSecretRef.secretName",
        "self.matches('^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')",
        "spec.s3.credentialsSecretRef.secretName must be a Secret name",
    ),
    // pgBackRest needs a bucket and an endpoint (Percona's schema requires them with a region).
    rule_at(
        "percona.backup",
        ".bucket",
        "!self.enabled || (has(self.bucket) && self.bucket != '')",
        "spec.percona.backup.bucket is required when spec.percona.backup.enabled is true",
    ),
    rule_at(
        "percona.backup",
        ".endpoint",
        "!self.enabled || (has(self.endpoint) && self.endpoint != '')",
        "spec.percona.backup.endpoint is required when spec.percona.backup.enabled is true",
    ),
    rule(
        "percona.backup.bucket",
        "self == '' || self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')",
        "spec.percona.backup.bucket must be an S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-')",
    ),
    rule(
        "percona.backup.endpoint",
        "self == '' || self.matches('^(https://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$')",
        "spec.percona.backup.endpoint must be an S3 host such as s3.eu-west-1.amazonaws.com or minio.example.com:9000 (pgBackRest speaks HTTPS only: no http://, no path)",
    ),
    rule(
        "percona.backup.fullSchedule",
        cron!(),
        "spec.percona.backup.fullSchedule must be a cron schedule of five fields such as '0 2 * * *', or @daily, @weekly",
    ),
    rule(
        "percona.backup.incrSchedule",
        cron!(),
        "spec.percona.backup.incrSchedule must be a cron schedule of five fields such as '0 * * * *', or @hourly, @daily",
    ),
    rule(
        "percona.backup.credentialsSecretRef.name",
        "self.matches('^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')",
        "spec.percona.backup.credentialsSecretRef.name must be a Secret name",
    ),
    rule(
        "snapshotPolicies.[].share",
        "self.matches('^/?[A-Za-z0-9][A-Za-z0-9._-]{0,62}$')",
        "spec.snapshotPolicies[].share must be a share name such as /export (any share DittoFS has: of spec.shares, or made with dfsctl)",
    ),
    rule(
        "snapshotPolicies.[].interval",
        concat!("self in ['@hourly', '@daily', '@weekly'] || (", positive_duration!(), ")"),
        "spec.snapshotPolicies[].interval must be a positive Go duration such as 6h, or @hourly, @daily, @weekly",
    ),
    rule(
        "snapshotPolicies.[].ttl",
        positive_duration!(),
        "spec.snapshotPolicies[].ttl must be a positive Go duration such as 720h",
    ),
    rule_at(
        "controlPlane",
        ".certSecretName",
        "!(has(self.tls) && !self.tls) || !has(self.certSecretName)",
        "spec.controlPlane.tls: false turns HTTPS off, and spec.controlPlane.certSecretName asks for it: set one",
    ),
    rule_at(
        "controlPlane",
        ".clientCASecretName",
        "!has(self.clientCASecretName) || has(self.certSecretName)",
        "spec.controlPlane.clientCASecretName needs spec.controlPlane.certSecretName (client certificates need HTTPS)",
    ),
    rule_at(
        "identity.ldap",
        ".url",
        "!self.url.startsWith('ldap://') || (has(self.startTLS) && self.startTLS) || (has(self.allowPlaintext) && self.allowPlaintext)",
        "spec.identity.ldap.url: ldap:// sends the bind password in clear; set startTLS (or allowPlaintext), or use ldaps://",
    ),
    rule_at(
        "identity.ldap",
        ".bindPasswordSecretRef",
        "(has(self.enabled) && !self.enabled) || has(self.bindPasswordSecretRef)",
        "spec.identity.ldap.bindPasswordSecretRef is required: DittoFS binds with it",
    ),
    rule_at(
        "identity.kerberos",
        ".keytabSecretRef",
        "!has(self.enabled) || !self.enabled || has(self.keytabSecretRef)",
        "spec.identity.kerberos.keytabSecretRef is required: DittoFS needs the service keytab",
    ),
    rule_at(
        "metrics",
        ".serviceMonitor",
        "!(has(self.serviceMonitor) && has(self.serviceMonitor.enabled) && self.serviceMonitor.enabled) || (has(self.enabled) && self.enabled)",
        "spec.metrics.serviceMonitor needs spec.metrics.enabled: true (it scrapes the metrics Service)",
    ),
    rule(
        "metrics.serviceMonitor.interval",
        positive_duration!(),
        "spec.metrics.serviceMonitor.interval must be a positive duration such as 30s",
    ),
    // Sizes.
    rule(
        "storage.metadataSize",
        positive_quantity!(),
        "spec.storage.metadataSize must be a positive quantity such as 10Gi",
    ),
    rule(
        "storage.contentSize",
        positive_quantity!(),
        "spec.storage.contentSize must be a positive quantity such as 100Gi",
    ),
    rule("storage.cacheSize", positive_quantity!(), "spec.storage.cacheSize must be a positive quantity such as 5Gi"),
    rule(
        "storage.controlPlaneSize",
        positive_quantity!(),
        "spec.storage.controlPlaneSize must be a positive quantity such as 1Gi",
    ),
    rule(
        "percona.storageSize",
        positive_quantity!(),
        "spec.percona.storageSize must be a positive quantity such as 10Gi",
    ),
    // Volume claims of a StatefulSet cannot change: reject the edit instead of failing every reconcile.
    immutable(
        "storage",
        ".metadataSize",
        "self.metadataSize == oldSelf.metadataSize",
        "spec.storage.metadataSize is immutable: it sizes an existing volume claim",
    ),
    immutable(
        "storage",
        ".controlPlaneSize",
        "self.controlPlaneSize == oldSelf.controlPlaneSize",
        "spec.storage.controlPlaneSize is immutable: it sizes an existing volume claim",
    ),
    immutable(
        "storage",
        ".contentSize",
        same_optional!("contentSize"),
        "spec.storage.contentSize is immutable: it cannot be added, removed or changed once the server exists",
    ),
    immutable(
        "storage",
        ".cacheSize",
        same_optional!("cacheSize"),
        "spec.storage.cacheSize is immutable: it cannot be added, removed or changed once the server exists",
    ),
    immutable(
        "storage",
        ".storageClassName",
        same_optional!("storageClassName"),
        "spec.storage.storageClassName is immutable: it cannot be added, removed or changed once the server exists",
    ),
    // Fields that say where data lives: on the claims, and fixed once the server exists.
    rule(
        "database.sqlite.path",
        "self.startsWith('/data/controlplane/') && !self.contains('..') && self.size() > 19",
        "spec.database.sqlite.path must be a file under /data/controlplane/ (the controlplane claim); elsewhere the database would be lost with the pod",
    ),
    immutable(
        "database.sqlite",
        ".path",
        same_optional!("path"),
        "spec.database.sqlite.path is immutable: the control-plane database already lives there",
    ),
    immutable(
        "percona",
        ".databaseName",
        same_optional!("databaseName"),
        "spec.percona.databaseName is immutable: DittoFS's data already lives in that database",
    ),
    // Durations parse the way DittoFS parses them (Go durations).
    // DittoFS may take 3 × shutdownTimeout + 5 s to stop; the pod's grace period follows it.
    rule(
        "shutdownTimeout",
        concat!(positive_duration!(), " && duration(self) <= duration('10m')"),
        "spec.shutdownTimeout must be a positive Go duration of at most 10m such as 30s",
    ),
    rule(
        "identity.jwt.accessTokenDuration",
        positive_duration!(),
        "spec.identity.jwt.accessTokenDuration must be a positive Go duration such as 15m",
    ),
    rule(
        "identity.jwt.refreshTokenDuration",
        positive_duration!(),
        "spec.identity.jwt.refreshTokenDuration must be a positive Go duration such as 168h",
    ),
    // The container and pod run unprivileged, as non-root, with a confined seccomp profile; the only
    // capability that may be added is NET_BIND_SERVICE (pod ports below 1024).
    rule_at(
        "securityContext",
        ".privileged",
        "!has(self.privileged) || !self.privileged",
        "spec.securityContext.privileged must not be true: DittoFS needs no privilege",
    ),
    rule_at(
        "securityContext",
        ".allowPrivilegeEscalation",
        "!has(self.allowPrivilegeEscalation) || !self.allowPrivilegeEscalation",
        "spec.securityContext.allowPrivilegeEscalation must not be true",
    ),
    rule_at(
        "securityContext",
        ".runAsUser",
        "!has(self.runAsUser) || self.runAsUser != 0",
        "spec.securityContext.runAsUser must not be 0 (root): DittoFS runs as uid 65532",
    ),
    rule_at(
        "securityContext",
        ".runAsNonRoot",
        "!has(self.runAsNonRoot) || self.runAsNonRoot",
        "spec.securityContext.runAsNonRoot must not be false",
    ),
    rule_at(
        "securityContext",
        ".seccompProfile.type",
        "!has(self.seccompProfile) || !has(self.seccompProfile.type) || self.seccompProfile.type != 'Unconfined'",
        "spec.securityContext.seccompProfile.type must not be Unconfined",
    ),
    rule_at(
        "securityContext",
        ".capabilities.add",
        "!has(self.capabilities) || !has(self.capabilities.add) || self.capabilities.add.all(c, c == 'NET_BIND_SERVICE')",
        "spec.securityContext.capabilities.add may only hold NET_BIND_SERVICE (to listen on a pod port below 1024); DittoFS needs no other capability, and drop: [ALL] is always kept",
    ),
    rule_at(
        "podSecurityContext",
        ".runAsUser",
        "!has(self.runAsUser) || self.runAsUser != 0",
        "spec.podSecurityContext.runAsUser must not be 0 (root): DittoFS runs as uid 65532",
    ),
    rule_at(
        "podSecurityContext",
        ".runAsNonRoot",
        "!has(self.runAsNonRoot) || self.runAsNonRoot",
        "spec.podSecurityContext.runAsNonRoot must not be false",
    ),
    rule_at(
        "podSecurityContext",
        ".seccompProfile.type",
        "!has(self.seccompProfile) || !has(self.seccompProfile.type) || self.seccompProfile.type != 'Unconfined'",
        "spec.podSecurityContext.seccompProfile.type must not be Unconfined",
    ),
    // The rest of Pod Security `restricted` (and `baseline`) for what the CR can set, so a
    // DittoServer is refused at admission rather than its pod by a namespace's enforcement.
    rule_at(
        "securityContext",
        ".seLinuxOptions",
        selinux_allowed!(),
        "spec.securityContext.seLinuxOptions: type may only be container_t, container_init_t, container_kvm_t or container_engine_t, and user and role must not be set (Pod Security baseline)",
    ),
    rule_at(
        "podSecurityContext",
        ".seLinuxOptions",
        selinux_allowed!(),
        "spec.podSecurityContext.seLinuxOptions: type may only be container_t, container_init_t, container_kvm_t or container_engine_t, and user and role must not be set (Pod Security baseline)",
    ),
    rule_at(
        "securityContext",
        ".appArmorProfile.type",
        "!has(self.appArmorProfile) || self.appArmorProfile.type != 'Unconfined'",
        "spec.securityContext.appArmorProfile.type must not be Unconfined (Pod Security baseline)",
    ),
    rule_at(
        "podSecurityContext",
        ".appArmorProfile.type",
        "!has(self.appArmorProfile) || self.appArmorProfile.type != 'Unconfined'",
        "spec.podSecurityContext.appArmorProfile.type must not be Unconfined (Pod Security baseline)",
    ),
    rule_at(
        "securityContext",
        ".procMount",
        "!has(self.procMount) || self.procMount == 'Default'",
        "spec.securityContext.procMount must be Default: an Unmasked /proc is refused (Pod Security baseline)",
    ),
    rule_at(
        "securityContext",
        ".windowsOptions.hostProcess",
        "!has(self.windowsOptions) || !has(self.windowsOptions.hostProcess) || !self.windowsOptions.hostProcess",
        "spec.securityContext.windowsOptions.hostProcess must not be true (Pod Security baseline)",
    ),
    rule_at(
        "podSecurityContext",
        ".windowsOptions.hostProcess",
        "!has(self.windowsOptions) || !has(self.windowsOptions.hostProcess) || !self.windowsOptions.hostProcess",
        "spec.podSecurityContext.windowsOptions.hostProcess must not be true (Pod Security baseline)",
    ),
    rule_at(
        "securityContext",
        ".runAsGroup",
        "!has(self.runAsGroup) || self.runAsGroup != 0",
        "spec.securityContext.runAsGroup must not be 0 (the root group): DittoFS runs as gid 65532",
    ),
    rule_at(
        "podSecurityContext",
        ".runAsGroup",
        "!has(self.runAsGroup) || self.runAsGroup != 0",
        "spec.podSecurityContext.runAsGroup must not be 0 (the root group): DittoFS runs as gid 65532",
    ),
    rule_at(
        "podSecurityContext",
        ".fsGroup",
        "!has(self.fsGroup) || self.fsGroup != 0",
        "spec.podSecurityContext.fsGroup must not be 0 (the root group): the claims would be group-owned by root",
    ),
    rule_at(
        "podSecurityContext",
        ".supplementalGroups",
        "!has(self.supplementalGroups) || self.supplementalGroups.all(g, g != 0)",
        "spec.podSecurityContext.supplementalGroups must not hold 0 (the root group)",
    ),
    rule_at(
        "podSecurityContext",
        ".sysctls",
        "!has(self.sysctls) || self.sysctls.all(s, s.name in ['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes'])",
        "spec.podSecurityContext.sysctls may only name the safe set of Pod Security baseline (kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, net.ipv4.ip_unprivileged_port_start, net.ipv4.tcp_syncookies, net.ipv4.ping_group_range, net.ipv4.ip_local_reserved_ports, net.ipv4.tcp_keepalive_time, net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl, net.ipv4.tcp_keepalive_probes)",
    ),
    rule(
        "podAnnotations",
        "self.all(k, !k.startsWith('container.apparmor.security.beta.kubernetes.io/') || self[k] == 'runtime/default' || self[k].startsWith('localhost/'))",
        "spec.podAnnotations: container.apparmor.security.beta.kubernetes.io/* may only be runtime/default or localhost/<profile>, not unconfined (Pod Security baseline)",
    ),
    rule(
        "priorityClassName",
        "self != 'system-node-critical' && self != 'system-cluster-critical'",
        "spec.priorityClassName must not be system-node-critical or system-cluster-critical: those classes are for the cluster's own components, and DittoFS would evict them under pressure",
    ),
    // Labels, annotations and quantities the API server would refuse later, on the StatefulSet.
    rule(
        "podLabels",
        concat!(
            "self.all(k, ",
            qualified_name!("k"),
            " && self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))"
        ),
        "spec.podLabels: keys must be qualified names ([prefix/]name, name at most 63 characters) and values at most 63 characters of letters, digits, '-', '_' and '.', starting and ending alphanumeric",
    ),
    rule(
        "podAnnotations",
        concat!("self.all(k, ", qualified_name!("k"), ")"),
        "spec.podAnnotations: keys must be qualified names ([prefix/]name, name at most 63 characters)",
    ),
    rule(
        "resources.limits",
        "self.all(k, isQuantity(string(self[k])))",
        "spec.resources.limits: every value must be a quantity such as 500m or 1Gi",
    ),
    rule(
        "resources.requests",
        "self.all(k, isQuantity(string(self[k])))",
        "spec.resources.requests: every value must be a quantity such as 500m or 1Gi",
    ),
    rule(
        "logging.output",
        "self in ['stdout', 'stderr'] || (self.startsWith('/') && !self.contains('..'))",
        "spec.logging.output must be stdout, stderr or an absolute file path (on a writable volume such as /tmp or a claim)",
    ),
    rule(
        "networkPolicy.fileClients.[].ipBlock",
        "isCIDR(self.cidr) && (!has(self.except) || self.except.all(e, isCIDR(e)))",
        "spec.networkPolicy.fileClients[].ipBlock: cidr and every except entry must be a CIDR such as 10.0.0.0/8",
    ),
    rule(
        "networkPolicy.apiClients.[].ipBlock",
        "isCIDR(self.cidr) && (!has(self.except) || self.except.all(e, isCIDR(e)))",
        "spec.networkPolicy.apiClients[].ipBlock: cidr and every except entry must be a CIDR such as 10.0.0.0/8",
    ),
    rule(
        "adapterServices.loadBalancerSourceRanges",
        "self.all(r, isCIDR(r))",
        "spec.adapterServices.loadBalancerSourceRanges: every entry must be a CIDR such as 203.0.113.0/24",
    ),
    rule("image", "self.size() > 0 && !self.contains(' ')", "spec.image must be a non-empty image reference"),
];

/// Size limits keep CEL cost estimates bounded (unbounded strings can exceed the budget).
const MAX_LENGTHS: &[(&str, u64)] = &[
    ("storage.metadataSize", 32),
    ("storage.contentSize", 32),
    ("storage.cacheSize", 32),
    ("storage.controlPlaneSize", 32),
    ("storage.storageClassName", 253),
    ("percona.storageSize", 32),
    ("shutdownTimeout", 32),
    ("identity.jwt.accessTokenDuration", 32),
    ("identity.jwt.refreshTokenDuration", 32),
    ("logging.output", 64),
    ("database.sqlite.path", 256),
    ("percona.databaseName", 63),
    ("image", 512),
    ("s3.credentialsSecretRef.secretName", 253),
    ("s3.credentialsSecretRef.accessKeyIdKey", 253),
    ("s3.credentialsSecretRef.secretAccessKeyKey", 253),
    ("s3.credentialsSecretRef.endpointKey", 253),
    ("s3.region", 64),
    ("s3.endpoint", 512),
    ("s3.prefix", 512),
    ("stores.metadata.database", 63),
    ("stores.delete.[]", 63),
    ("snapshotPolicies.[].share", 64),
    ("snapshotPolicies.[].interval", 32),
    ("snapshotPolicies.[].ttl", 32),
    ("adapterDiscovery.pollingInterval", 32),
    ("identity.jwt.issuer", 253),
    ("controlPlane.certSecretName", 253),
    ("identity.ldap.url", 512),
    ("metrics.serviceMonitor.interval", 32),
    ("identity.kerberos.krb5Conf", 65536),
    ("controlPlane.clientCASecretName", 253),
    ("percona.backup.bucket", 63),
    ("percona.backup.endpoint", 260),
    ("percona.backup.region", 64),
    ("percona.backup.fullSchedule", 64),
    ("percona.backup.incrSchedule", 64),
    ("percona.backup.credentialsSecretRef.name", 253),
    ("users.[].name", 64),
    ("users.[].groups.[]", 64),
    ("users.[].passwordSecretRef.name", 253),
    ("users.[].passwordSecretRef.key", 253),
    ("groups.[].name", 64),
    ("deleteUsers.[]", 64),
    ("deleteGroups.[]", 64),
    ("shares.[].permissions.[].user", 64),
    ("shares.[].permissions.[].group", 64),
    ("shares.[].quota", 32),
    ("stores.local.maxSize", 32),
    ("shares.[].nfs.allowedClients.[]", 253),
    ("shares.[].userQuota", 32),
    ("shares.[].quotas.[].limit", 32),
    ("shares.[].quotas.[].user", 64),
    ("shares.[].quotas.[].group", 64),
];

/// Bounds that keep CEL cost estimates within budget and refuse absurd values: (path, keyword,
/// value). Paths as in [`RULES`], `[]` for list items, `*` for map values.
const BOUNDS: &[(&str, &str, u64)] = &[
    ("securityContext.capabilities.add", "maxItems", 16),
    ("securityContext.capabilities.add.[]", "maxLength", 64),
    ("podSecurityContext.supplementalGroups", "maxItems", 64),
    ("podSecurityContext.sysctls", "maxItems", 32),
    ("podSecurityContext.sysctls.[].name", "maxLength", 253),
    ("podSecurityContext.sysctls.[].value", "maxLength", 1024),
    ("securityContext.seLinuxOptions.type", "maxLength", 253),
    ("securityContext.seLinuxOptions.user", "maxLength", 253),
    ("securityContext.seLinuxOptions.role", "maxLength", 253),
    ("podSecurityContext.seLinuxOptions.type", "maxLength", 253),
    ("podSecurityContext.seLinuxOptions.user", "maxLength", 253),
    ("podSecurityContext.seLinuxOptions.role", "maxLength", 253),
    ("podLabels", "maxProperties", 64),
    ("podLabels.*", "maxLength", 63),
    ("podAnnotations", "maxProperties", 64),
    ("podAnnotations.*", "maxLength", 65536),
    ("resources.limits", "maxProperties", 8),
    ("resources.requests", "maxProperties", 8),
    ("terminationGracePeriodSeconds", "maximum", 3600),
    ("networkPolicy.fileClients", "maxItems", 64),
    ("networkPolicy.fileClients.[].ipBlock.cidr", "maxLength", 43),
    ("networkPolicy.fileClients.[].ipBlock.except", "maxItems", 64),
    ("networkPolicy.fileClients.[].ipBlock.except.[]", "maxLength", 43),
    ("networkPolicy.apiClients", "maxItems", 64),
    ("networkPolicy.apiClients.[].ipBlock.cidr", "maxLength", 43),
    ("networkPolicy.apiClients.[].ipBlock.except", "maxItems", 64),
    ("networkPolicy.apiClients.[].ipBlock.except.[]", "maxLength", 43),
    ("adapterServices.loadBalancerSourceRanges", "maxItems", 64),
    ("adapterServices.loadBalancerSourceRanges.[]", "maxLength", 43),
];

/// The CRD as installed: generated schema plus the admission rules above.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(DittoServer::crd()).expect("CRD serializes");
    let root = &mut value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    // Lower-case log levels were accepted by the earlier operator; DittoFS ignores case.
    *schema_at(root, "logging.level").get_mut("enum").expect("level enum") =
        json!(["DEBUG", "INFO", "WARN", "ERROR", "debug", "info", "warn", "error"]);
    for (path, max) in MAX_LENGTHS {
        schema_at(root, path).insert("maxLength".into(), json!(max));
    }
    for (path, keyword, bound) in BOUNDS {
        schema_at(root, path).insert((*keyword).into(), json!(bound));
    }
    for r in RULES {
        let mut entry = json!({ "rule": r.rule, "message": r.message });
        if let Some(field_path) = r.field_path {
            entry["fieldPath"] = json!(field_path);
        }
        if let Some(reason) = r.reason {
            entry["reason"] = json!(reason);
        }
        let target = if r.path == "/" { root.as_object_mut().expect("root") } else { schema_at(root, r.path) };
        let list = target.entry("x-kubernetes-validations").or_insert_with(|| json!([]));
        list.as_array_mut().expect("validations list").push(entry);
    }
    serde_json::from_value(value).expect("CRD with rules deserializes")
}

/// The CRD as committed under `deploy/crds/`.
pub fn crd_yaml() -> String {
    let body = serde_saphyr::to_string(&crd()).expect("CRD serializes to YAML");
    format!("# Generated by `dittofs-operator crd`; do not edit.\n{body}")
}

/// The schema object of a field below `spec` ("" = spec itself).
fn schema_at<'a>(root: &'a mut Value, path: &str) -> &'a mut serde_json::Map<String, Value> {
    let mut node = &mut root["properties"]["spec"];
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let next = match part {
            "[]" => node.get_mut("items"),
            "*" => node.get_mut("additionalProperties"),
            _ => node.get_mut("properties").and_then(|p| p.get_mut(part)),
        };
        node = next.unwrap_or_else(|| panic!("CRD schema has no field spec.{path}"));
    }
    node.as_object_mut().unwrap_or_else(|| panic!("spec.{path} is not an object schema"))
}
