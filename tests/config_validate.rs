//! Every golden case and sample renders a DittoFS config that the real `dfs config validate`
//! (v0.29.0) accepts with no unknown-key warning: the earlier operator's CRs (v0.4.1, v0.29)
//! and the cases using every drop-in field (TLS, LDAP, Kerberos, metrics token, snapshot
//! policies). Secrets arrive as env vars in the pod; stand-ins play them here.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use dittofs_operator::cmd::render as input;
use dittofs_operator::values::ValuesBuilder;
use support::testbin;

fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("golden"))
        .unwrap()
        .map(|e| e.unwrap().path().join("input.yaml"))
        .filter(|p| p.exists())
        .collect();
    files.extend(
        std::fs::read_dir(root.join("deploy/samples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml")),
    );
    files.sort();
    files
}

#[test]
fn every_rendered_config_validates_without_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in inputs() {
        let text = std::fs::read_to_string(&file).unwrap();
        // Cases with template overrides or values are about objects; the config comes from the
        // embedded template in all of them but the error cases, which do not render.
        let Ok(rendered) = input::render_offline("input.yaml", &text, ValuesBuilder::new(), &[]) else { continue };
        if rendered.config_yaml.is_empty() {
            continue; // only the database renders yet
        }
        let config = dir.path().join(format!("config-{checked}.yaml"));
        std::fs::write(&config, &rendered.config_yaml).unwrap();
        let out = Command::new(testbin().join("dfs"))
            .args(["config", "validate", "--config", config.to_str().unwrap()])
            .env_clear()
            .env("HOME", dir.path())
            .env("DITTOFS_CONTROLPLANE_SECRET", "0123456789012345678901234567890123456789")
            .env("DITTOFS_DATABASE_POSTGRES_PASSWORD", "stand-in")
            .env("DITTOFS_LDAP_BIND_PASSWORD", "stand-in")
            .env("DITTOFS_KERBEROS_MACHINE_ACCOUNT_SECRET", "stand-in")
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() || !said.contains("Validation: OK") || said.to_lowercase().contains("unknown") {
            failures.push(format!("{}:\n{said}", file.display()));
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} configs checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
