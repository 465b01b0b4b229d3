//! The real DittoFS server (`dfs` v0.29.0) run with exactly the config file and environment the
//! operator renders into the cluster (Secret references resolved from the cluster), against
//! SQLite and against a TLS-only PostgreSQL. Proves the wiring the earlier operator got wrong.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::dfs::{AdminApi, Dfs};
use support::*;

/// Renders through the operator, runs dfs, and checks it is ready and accepts the admin login.
async fn run_rendered_server(client: &Client, ns: &str, dir: &Path, api_port: u16) -> Dfs {
    let dfs = support::dfs::run_rendered_server(client, ns, "demo", dir, api_port).await;
    // The generated admin password reached DittoFS (DITTOFS_ADMIN_INITIAL_PASSWORD), and the JWT
    // key signs tokens; over HTTPS with the operator's generated certificate (the default).
    let (status, body) = AdminApi::of(client, ns, dir, api_port).await.login();
    assert_eq!(status, 200, "admin login failed: {body}\n{}", dfs.log());
    assert!(body["access_token"].is_string(), "{body}");
    dfs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfs_runs_with_the_rendered_sqlite_config() {
    let (client, ns) = setup("dfs-sqlite").await;
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let operator = Operator::start(&client, &ns);
    let cr = format!(
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {{name: demo}}\nspec:\n  storage: {{metadataSize: 10Gi}}\n  controlPlane: {{port: {api_port}}}\n  database:\n    sqlite: {{path: /data/controlplane/controlplane.db}}\n  shutdownTimeout: 5s\n"
    );
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr))
        .await
        .unwrap();
    let dfs = run_rendered_server(&client, &ns, dir.path(), api_port).await;
    assert!(
        dir.path().join("data/controlplane/controlplane.db").exists(),
        "the control plane lives at the rendered path, on the controlplane claim"
    );
    operator.shutdown().await;
    // Grace period rendered for shutdownTimeout 5s: 5 + 3 × 5 + 10 = 30 s.
    dfs.stop_within_grace(30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfs_connects_migrates_and_serves_on_tls_postgres() {
    let (client, ns) = setup("dfs-postgres").await;
    let dir = tempfile::tempdir().unwrap();
    // A TLS-only PostgreSQL (plain connections are refused), stopped when this test binary exits.
    let pg = start_script_server("postgres.sh", &dir.path().join("pg"));

    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"host": pg["PGHOST"], "port": pg["PGPORT"], "dbname": "dittofs", "user": "dittofs", "password": pg["PGPASSWORD"]},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    let api_port = free_port();
    let operator = Operator::start(&client, &ns);
    let cr = format!(
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {{name: demo}}\nspec:\n  storage: {{metadataSize: 10Gi}}\n  controlPlane: {{port: {api_port}}}\n  database:\n    postgresSecretRef: {{name: db}}\n  shutdownTimeout: 5s\n"
    );
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr))
        .await
        .unwrap();

    // The init container's own check, run as rendered (pg_isready against the rendered host and port).
    let sts = eventually("StatefulSet", DEADLINE, || async {
        Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.ok().flatten()
    })
    .await;
    let init = sts.spec.unwrap().template.spec.unwrap().init_containers.unwrap().remove(0);
    assert_eq!(init.name, "wait-for-postgres");
    let init_env = support::dfs::resolve_env(&client, &ns, &init).await;
    let mut script = init.command.unwrap();
    script.extend(init.args.unwrap());
    let status = Command::new(&script[0])
        .args(&script[1..])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", pg["PG_BIN"]))
        .envs(&init_env)
        .status()
        .unwrap();
    assert!(status.success(), "wait-for-postgres failed against a ready server");

    let dfs = run_rendered_server(&client, &ns, dir.path(), api_port).await;
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("demo-config").await.unwrap().data.unwrap()
        ["config.yaml"]
        .clone();
    assert!(config.contains("sslmode: \"require\""), "{config}");
    assert!(!config.contains(&pg["PGPASSWORD"]), "the password never reaches the ConfigMap");

    // DittoFS migrated its schema into PostgreSQL (over TLS: plain connections are refused).
    let (count, stderr) = public_tables(&pg, "dittofs");
    assert!(count > 0, "no tables migrated: {stderr}");
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}

/// A keytab in MIT's format (v0x502) with one aes256 key for `service/host@REALM`: enough for
/// DittoFS to load at start (tickets are never presented here).
fn keytab(principal: &str) -> Vec<u8> {
    let (name, realm) = principal.split_once('@').unwrap();
    let counted = |b: &[u8]| [&(b.len() as u16).to_be_bytes()[..], b].concat();
    let components: Vec<&str> = name.split('/').collect();
    let mut entry = (components.len() as u16).to_be_bytes().to_vec();
    entry.extend(counted(realm.as_bytes()));
    for c in &components {
        entry.extend(counted(c.as_bytes()));
    }
    entry.extend(1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
    entry.extend(0u32.to_be_bytes()); // timestamp
    entry.push(1); // key version
    entry.extend(18u16.to_be_bytes()); // aes256-cts-hmac-sha1-96
    entry.extend(counted(&[7u8; 32]));
    let mut out = vec![0x05, 0x02];
    out.extend((entry.len() as i32).to_be_bytes());
    out.extend(entry);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfs_starts_with_ldap_and_kerberos_from_secrets() {
    let (client, ns) = setup("dfs-identity").await;
    let dir = tempfile::tempdir().unwrap();
    let principal = "nfs/files.corp.example.com@CORP.EXAMPLE.COM";
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let ldap: Secret = serde_json::from_value(
        json!({"metadata": {"name": "corp-ldap"}, "stringData": {"password": "bind-pw-never-in-config"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &ldap).await.unwrap();
    let mut kerberos = Secret::default();
    kerberos.metadata.name = Some("corp-kerberos".into());
    kerberos.data = Some(BTreeMap::from([
        ("keytab".to_string(), k8s_openapi::ByteString(keytab(principal))),
        (
            "krb5.conf".to_string(),
            k8s_openapi::ByteString(b"[libdefaults]\n  default_realm = CORP.EXAMPLE.COM\n".to_vec()),
        ),
    ]));
    secrets.create(&PostParams::default(), &kerberos).await.unwrap();

    let token: Secret = serde_json::from_value(
        json!({"metadata": {"name": "metrics-token"}, "stringData": {"token": "scrape-me-please"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &token).await.unwrap();
    let (api_port, metrics_port) = (free_port(), free_port());
    let operator = Operator::start(&client, &ns);
    let cr = format!(
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {{name: demo}}\nspec:\n  storage: {{metadataSize: 10Gi}}\n  controlPlane: {{port: {api_port}}}\n  metrics: {{enabled: true, port: {metrics_port}, bearerTokenSecret: {{name: metrics-token}}}}\n  shutdownTimeout: 5s\n  identity:\n    ldap:\n      enabled: true\n      url: ldap://127.0.0.1:1\n      allowPlaintext: true\n      baseDN: DC=corp,DC=example,DC=com\n      bindDN: CN=dittofs,DC=corp,DC=example,DC=com\n      bindPasswordSecretRef: {{name: corp-ldap}}\n    kerberos:\n      enabled: true\n      servicePrincipal: {principal}\n      keytabSecretRef: {{name: corp-kerberos}}\n      krb5ConfSecretRef: {{name: corp-kerberos}}\n"
    );
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr))
        .await
        .unwrap();

    // The rendered config validates with no unknown key, and holds no password.
    let config = eventually("the config", DEADLINE, || async {
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt("demo-config")
            .await
            .ok()
            .flatten()?
            .data?
            .get("config.yaml")
            .cloned()
    })
    .await;
    assert!(!config.contains("bind-pw-never-in-config"));
    std::fs::write(dir.path().join("validate.yaml"), &config).unwrap();
    // With the container's environment, Secrets resolved: the bind password arrives there.
    let sts = eventually("StatefulSet", DEADLINE, || async {
        Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt("demo").await.ok().flatten()
    })
    .await;
    let container = sts.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let env = support::dfs::resolve_env(&client, &ns, &container).await;
    assert_eq!(env.get("DITTOFS_LDAP_BIND_PASSWORD").map(String::as_str), Some("bind-pw-never-in-config"));
    let out = Command::new(testbin().join("dfs"))
        .args(["config", "validate", "--config", dir.path().join("validate.yaml").to_str().unwrap()])
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("Validation: OK"), "{said}");
    assert!(!said.to_lowercase().contains("unknown"), "{said}");

    // dfs starts with the bind password in its env and the keytab and krb5.conf mounted as files.
    let dfs = run_rendered_server(&client, &ns, dir.path(), api_port).await;
    let log = dfs.log();
    assert!(log.contains("LDAP identity provider enabled"), "{log}");
    assert!(!log.contains("Failed to initialize Kerberos provider"), "{log}");
    assert!(!log.contains("bind-pw-never-in-config"), "the bind password is not logged");
    // The metrics endpoint wants the token from the mounted Secret.
    let scrape = |token: Option<&'static str>| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(format!("127.0.0.1:{metrics_port}")).await.unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: x\r\n{auth}\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0)
    };
    assert_eq!(scrape(Some("scrape-me-please")).await, 200, "{}", dfs.log());
    assert_eq!(scrape(None).await, 401);
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}
