//! `dittofs-operator report`: the tarball holds the DittoServer, its objects, Events and the
//! diff, and no value of any Secret of the namespace, even one a user pasted into an annotation.

mod support;

use std::collections::BTreeMap;
use std::io::Read as _;

use base64::Engine as _;
use dittofs_operator::cmd::report::{self, NOT_SECRET_KEYS, ReportArgs, SHORTEST_SCRUBBED};
use dittofs_operator::crd::DittoServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use support::*;

const PASSWORD: &str = "correct-horse-battery-staple";

fn unpack(path: &std::path::Path) -> BTreeMap<String, String> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name.split_once('/').unwrap().1.to_string(), text);
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_holds_the_server_and_no_secret_value() {
    let (client, ns) = setup("report").await;
    let operator = Operator::start(&client, &ns);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "team-users"},
        "stringData": {"alice": PASSWORD},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    let cr = format!(
        "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata:\n  name: demo\n  annotations:\n    note: \"alice's password is {PASSWORD}\"\nspec:\n  storage: {{metadataSize: 10Gi}}\n  users:\n    - {{name: alice, uid: 1001, passwordSecretRef: {{name: team-users, key: alice}}}}\n"
    );
    Api::<DittoServer>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &server(&ns, &cr))
        .await
        .unwrap();
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    eventually("the StatefulSet", DEADLINE, || async { statefulsets.get_opt("demo").await.unwrap() }).await;
    operator.quiescent().await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.tar.gz");
    let args = ReportArgs {
        name: "demo".into(),
        namespace: Some(ns.clone()),
        kubeconfig: Some(cluster().kubeconfig.clone()),
        output: Some(out.clone()),
        operator_namespace: "dittofs-system".into(),
        tail: 100,
        read: dittofs_operator::settings::ReadArgs {
            dittofs_api: dittofs_operator::settings::DittoApiArgs { dittofs_api: "off".into() },
            ..Default::default()
        },
    };
    assert_eq!(report::report(args).await.unwrap(), out);
    let files = unpack(&out);

    // What it holds.
    for name in [
        "dittoserver.yaml",
        "objects/statefulset-demo.yaml",
        "objects/configmap-demo-config.yaml",
        "objects/service-demo-api.yaml",
        "objects/secret-demo-jwt-secret.yaml",
        "objects/secret-demo-admin-bootstrap-credentials.yaml",
        "events.txt",
        "diff.txt",
        "notes.txt",
    ] {
        assert!(files.contains_key(name), "{name} missing from {:?}", files.keys().collect::<Vec<_>>());
    }
    assert!(files["dittoserver.yaml"].contains("kind: DittoServer"));
    assert!(!files["dittoserver.yaml"].contains("managedFields"));
    assert!(files["diff.txt"].contains("no difference"), "a settled server: {}", files["diff.txt"]);
    assert!(files["events.txt"].contains("DittoServer/demo"), "{}", files["events.txt"]);
    assert!(files["objects/secret-demo-jwt-secret.yaml"].contains("<masked>"));
    // Pods do not run on this control plane: their logs are a note, not a failure.
    assert!(files["notes.txt"].contains("operator's logs"), "{}", files["notes.txt"]);
    // The pasted password is scrubbed where it was pasted.
    assert!(files["dittoserver.yaml"].contains("alice's password is <masked>"), "{}", files["dittoserver.yaml"]);

    // No value of any Secret of the namespace, raw or base64, in any file.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    let mut checked = 0;
    for secret in &secrets.items {
        for (key, value) in secret.data.iter().flatten() {
            if NOT_SECRET_KEYS.contains(&key.as_str()) || value.0.len() < SHORTEST_SCRUBBED {
                continue;
            }
            let raw = String::from_utf8_lossy(&value.0).into_owned();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&value.0);
            for (name, text) in &files {
                assert!(!text.contains(&raw), "{}/{key} in {name}", secret.metadata.name.as_deref().unwrap());
                assert!(
                    !text.contains(&encoded),
                    "{}/{key} (base64) in {name}",
                    secret.metadata.name.as_deref().unwrap()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "the user's password and the generated credentials: {checked}");
    operator.shutdown().await;
}
