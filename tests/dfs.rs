//! The real DittoFS server (`dfs` v0.29.0) run with exactly the config file and environment the
//! operator renders into the cluster (Secret references resolved from the cluster), against
//! SQLite and against a TLS-only PostgreSQL. Proves the wiring the earlier operator got wrong.

mod support;

use std::path::Path;
use std::process::Command;

use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::dfs::{Dfs, secret_value};
use support::*;

/// Renders through the operator, runs dfs, and checks it is ready and accepts the admin login.
async fn run_rendered_server(client: &Client, ns: &str, dir: &Path, api_port: u16) -> Dfs {
    let dfs = support::dfs::run_rendered_server(client, ns, "demo", dir, api_port).await;
    let addr = format!("127.0.0.1:{api_port}");
    // The generated admin password reached DittoFS (DITTOFS_ADMIN_INITIAL_PASSWORD), and the JWT key signs tokens.
    let password = secret_value(client, ns, "demo-admin-bootstrap-credentials", "password").await;
    let login = json!({"username": "admin", "password": password}).to_string();
    let (status, body) = http(&addr, "POST", "/api/v1/auth/login", Some(&login)).await.unwrap();
    assert_eq!(status, 200, "admin login failed: {body}\n{}", dfs.log());
    assert!(body.contains("access_token"), "{body}");
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
    let tables = Command::new(format!("{}/psql", pg["PG_BIN"]))
        .args(["-tAc", "select count(*) from information_schema.tables where table_schema = 'public'"])
        .env("PGHOST", &pg["PGHOST"])
        .env("PGPORT", &pg["PGPORT"])
        .env("PGDATABASE", "dittofs")
        .env("PGUSER", "dittofs")
        .env("PGPASSWORD", &pg["PGPASSWORD"])
        .env("PGSSLMODE", "require")
        .output()
        .unwrap();
    let count: u32 = String::from_utf8_lossy(&tables.stdout).trim().parse().unwrap_or(0);
    assert!(count > 0, "no tables migrated: {}", String::from_utf8_lossy(&tables.stderr));
    operator.shutdown().await;
    dfs.stop_within_grace(30);
}
