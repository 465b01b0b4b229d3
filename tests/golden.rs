//! Golden files: every case under `golden/<case>/` renders `input.yaml` (a DittoServer, plus
//! Secrets standing in for the cluster's) with optional `values.yaml`, and must match
//! `expected.yaml` byte for byte; every sample in `deploy/samples/` must match
//! `golden/samples/<sample>.expected.yaml`. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them.

use std::path::{Path, PathBuf};

use dittofs_operator::cmd::render as input;
use dittofs_operator::{discover, overrides, render, values::ValuesBuilder};

fn render_file(input_path: &Path, case_dir: Option<&Path>) -> Result<String, String> {
    let text = std::fs::read_to_string(input_path).map_err(|e| e.to_string())?;
    let mut values = ValuesBuilder::new();
    let mut sets = Vec::new();
    if let Some(dir) = case_dir {
        let values_path = dir.join("values.yaml");
        if values_path.exists() {
            let text = std::fs::read_to_string(&values_path).map_err(|e| e.to_string())?;
            values = values.layer_yaml("values.yaml", &text).map_err(|e| e.to_string())?;
        }
        if dir.join("templates").is_dir() {
            sets.push(overrides::Overrides::from_dir(&dir.join("templates")).map_err(|e| e.to_string())?);
        }
    }
    let rendered = input::render_offline("input.yaml", &text, values, &sets).map_err(|e| format!("{e:#}"))?;
    Ok(rendered.to_yaml())
}

fn render_case(dir: &Path) -> String {
    render_file(&dir.join("input.yaml"), Some(dir)).unwrap_or_else(|error| format!("# render error\n{error}\n"))
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("golden/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("input.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Compares (or, with UPDATE_GOLDEN=1, rewrites) one expected file; returns a drift report.
fn check(case: &str, output: &str, expected_path: &Path) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(expected_path, output).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    (expected != output).then(|| {
        let diff = similar::TextDiff::from_lines(&expected, output)
            .unified_diff()
            .context_radius(3)
            .header("expected", "rendered")
            .to_string();
        format!("golden case {case} drifted:\n{diff}")
    })
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{}\nRun `UPDATE_GOLDEN=1 cargo test --test golden` if the change is intended, and review the diff.",
        failures.join("\n")
    );
}

#[test]
fn golden_renderings_match() {
    let cases = cases();
    assert!(cases.len() >= 10, "expected at least 10 golden cases, found {}", cases.len());
    let failures = cases
        .iter()
        .filter_map(|dir| {
            let case = dir.file_name().unwrap().to_string_lossy().to_string();
            check(&case, &render_case(dir), &dir.join("expected.yaml"))
        })
        .collect();
    report(failures);
}

#[test]
fn samples_match_golden() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut samples: Vec<PathBuf> =
        std::fs::read_dir(root.join("deploy/samples")).unwrap().map(|e| e.unwrap().path()).collect();
    samples.sort();
    assert!(samples.len() >= 3);
    std::fs::create_dir_all(root.join("golden/samples")).unwrap();
    let failures = samples
        .iter()
        .filter_map(|sample| {
            let stem = sample.file_stem().unwrap().to_string_lossy().to_string();
            let output = render_file(sample, None).unwrap_or_else(|e| panic!("{stem}: {e}"));
            check(&stem, &output, &root.join("golden/samples").join(format!("{stem}.expected.yaml")))
        })
        .collect();
    report(failures);
}

#[test]
fn rendering_is_deterministic() {
    for dir in cases() {
        assert_eq!(render_case(&dir), render_case(&dir), "{}", dir.display());
    }
}

#[test]
fn no_secret_value_reaches_any_output() {
    for dir in cases() {
        let output = render_case(&dir);
        assert!(!output.contains("not-in-any-output"), "{}: a Secret value was rendered", dir.display());
    }
}

/// Diff output: `golden/diff/<case>/live.yaml` (objects as a cluster returns them) against the
/// rendering of `input.yaml`, must match `expected.diff`.
#[test]
fn diff_output_matches_golden() {
    use dittofs_operator::diff;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/diff");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 2);
    let mut failures = Vec::new();
    for dir in cases {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let live: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(dir.join("live.yaml")).unwrap()).unwrap();
        let text = std::fs::read_to_string(dir.join("input.yaml")).unwrap();
        let parsed = input::parse("input.yaml", &text).unwrap();
        let values = ValuesBuilder::new().build().unwrap();
        let discovered =
            discover::resolve(&parsed.server.spec, "demo", "default", &values, &parsed.secrets, false).unwrap();
        let source = render::TemplateSource::embedded();
        let rendered = render::Renderer::new(&source).render(&parsed.server, &values, &discovered).unwrap();
        let mut output = String::new();
        for object in rendered.objects.iter().filter(|o| o.kind() != "Secret") {
            let current = live.iter().find(|l| l["kind"] == object.kind() && l["metadata"]["name"] == object.name());
            let file = diff::file_name(object.api_version(), object.kind(), "default", object.name());
            let d = diff::compare(&object.reference(), &file, current, Some(&object.to_json()));
            if d.action != diff::Action::Unchanged {
                output.push_str(&format!("# {} {:?}: {}\n{}", d.reference, d.action, d.paths.join(", "), d.text));
            }
        }
        failures.extend(check(&format!("diff/{case}"), &output, &dir.join("expected.diff")));
    }
    report(failures);
}
