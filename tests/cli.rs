//! The binary as a user runs it.

use std::process::Command;

fn operator(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dittofs-operator")).args(args).output().expect("binary runs");
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
