//! The binary as a user runs it.

mod support;

use std::process::Command;

fn operator(args: &[&str]) -> (i32, String, String) {
    operator_in(None, args)
}

/// The binary run as in a pod of `namespace` (`POD_NAMESPACE`), or outside any pod.
fn operator_in(namespace: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dittofs-operator"));
    command.args(args).env_remove("POD_NAMESPACE");
    if let Some(namespace) = namespace {
        command.env("POD_NAMESPACE", namespace);
    }
    let out = command.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn render_prints_the_golden_manifests() {
    let input = root().join("golden/minimal-sqlite/input.yaml");
    let (code, stdout, stderr) = operator(&["render", "-f", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, std::fs::read_to_string(root().join("golden/minimal-sqlite/expected.yaml")).unwrap());
}

#[test]
fn render_with_values_and_set() {
    let input = root().join("golden/minimal-sqlite/input.yaml");
    let values = root().join("golden/values-override/values.yaml");
    let (code, stdout, stderr) = operator(&[
        "render",
        "-f",
        input.to_str().unwrap(),
        "--values",
        values.to_str().unwrap(),
        "--set",
        "image.tag=v0.29.2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("marmos91c/dittofs:v0.29.2"), "--set wins over --values");
    assert!(stdout.contains("cost-center: platform"), "values file applied");
}

/// In a pod, the operator admits its own namespace to each server's API port; a value wins.
#[test]
fn the_operators_namespace_is_the_one_its_network_policy_admits() {
    let input = root().join("golden/minimal-sqlite/input.yaml");
    let input = input.to_str().unwrap();
    let peer = |ns: &str| format!("kubernetes.io/metadata.name: {ns}\n      podSelector:");
    let (code, stdout, stderr) = operator_in(Some("storage-ops"), &["render", "-f", input]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&peer("storage-ops")), "{stdout}");
    let set = ["render", "-f", input, "--set", "networkPolicy.operator.namespace=platform"];
    let (code, stdout, stderr) = operator_in(Some("storage-ops"), &set);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&peer("platform")), "--set wins: {stdout}");
}

#[test]
fn bad_cr_names_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: x}\nspec:\n  storage: {metadataSize: 1Gi}\n  replicas: many\n").unwrap();
    let (code, stdout, stderr) = operator(&["render", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("bad.yaml") && stderr.contains("spec.replicas"), "{stderr}");
}

#[test]
fn bad_values_name_the_key() {
    let input = root().join("golden/minimal-sqlite/input.yaml");
    let (code, _, stderr) = operator(&["render", "-f", input.to_str().unwrap(), "--set", "ports.apii=1"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("apii"), "{stderr}");
}

#[test]
fn crd_templates_and_version() {
    let (code, stdout, _) = operator(&["crd"]);
    assert_eq!(code, 0);
    assert!(
        stdout == std::fs::read_to_string(root().join("deploy/crds/dittoservers.yaml")).unwrap(),
        "crd output differs from deploy/crds/dittoservers.yaml"
    );
    let (code, stdout, _) = operator(&["templates", "list"]);
    assert_eq!(code, 0);
    assert!(stdout.lines().any(|l| l == "statefulset.yaml.j2"), "{stdout}");
    let (code, stdout, _) = operator(&["templates", "show", "statefulset.yaml.j2"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, std::fs::read_to_string(root().join("templates/statefulset.yaml.j2")).unwrap());
    let (code, _, stderr) = operator(&["templates", "show", "nope.j2"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("templates list"), "{stderr}");
    let (code, stdout, _) = operator(&["version"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("marmos91c/dittofs:v0.29.0"), "{stdout}");
}

/// Installed as `kubectl-dittofs` on the PATH, kubectl runs it as the plugin `kubectl dittofs`.
#[test]
fn kubectl_runs_it_as_the_dittofs_plugin() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dittofs-operator"), dir.path().join("kubectl-dittofs")).unwrap();
    let kubectl = support::testbin().join("kubectl");
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let plugins = Command::new(&kubectl).args(["plugin", "list"]).env("PATH", &path).output().unwrap();
    assert!(String::from_utf8_lossy(&plugins.stdout).contains("kubectl-dittofs"), "{plugins:?}");
    let input = root().join("golden/minimal-sqlite/input.yaml");
    let out = Command::new(&kubectl)
        .args(["dittofs", "render", "-f", input.to_str().unwrap()])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(root().join("golden/minimal-sqlite/expected.yaml")).unwrap()
    );
    let help = Command::new(&kubectl).args(["dittofs", "--help"]).env("PATH", &path).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: kubectl dittofs <COMMAND>"), "{help}");
    assert!(help.contains("report") && help.contains("diff"), "{help}");
}
