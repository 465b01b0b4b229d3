//! Golden files: every case under `golden/<case>/` renders `input.yaml` (a DittoServer, plus
//! Secrets standing in for the cluster's) with optional `values.yaml`, and must match
//! `expected.yaml` byte for byte. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them.

use std::path::{Path, PathBuf};

use dittofs_operator::{discover, input, render, values::ValuesBuilder};

fn render_case(dir: &Path) -> Result<String, String> {
    let input_path = dir.join("input.yaml");
    let text = std::fs::read_to_string(&input_path).map_err(|e| e.to_string())?;
    let parsed = input::parse("input.yaml", &text).map_err(|e| e.to_string())?;
    let mut builder = ValuesBuilder::new();
    let values_path = dir.join("values.yaml");
    if values_path.exists() {
        let text = std::fs::read_to_string(&values_path).map_err(|e| e.to_string())?;
        builder = builder
            .layer_yaml("values.yaml", &text)
            .map_err(|e| e.to_string())?;
    }
    let values = builder.build().map_err(|e| e.to_string())?;
    let name = parsed.server.metadata.name.clone().unwrap_or_default();
    let discovered = discover::resolve(&parsed.server.spec, &name, &values, &parsed.secrets, false)
        .map_err(|e| e.to_string())?;
    let source = render::TemplateSource::embedded();
    let rendered = render::Renderer::new(&source)
        .render(&parsed.server, &values, &discovered)
        .map_err(|e| e.to_string())?;
    Ok(rendered.to_yaml())
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

#[test]
fn golden_renderings_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(
        cases.len() >= 10,
        "expected at least 10 golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let output = match render_case(dir) {
            Ok(yaml) => yaml,
            Err(error) => format!("# render error\n{error}\n"),
        };
        let expected_path = dir.join("expected.yaml");
        if update {
            std::fs::write(&expected_path, &output).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != output {
            let diff = similar::TextDiff::from_lines(&expected, &output)
                .unified_diff()
                .context_radius(3)
                .header("expected.yaml", "rendered")
                .to_string();
            failures.push(format!("golden case {case} drifted:\n{diff}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nRun `UPDATE_GOLDEN=1 cargo test --test golden` if the change is intended.",
        failures.join("\n")
    );
}

#[test]
fn rendering_is_deterministic() {
    for dir in cases() {
        assert_eq!(render_case(&dir), render_case(&dir), "{}", dir.display());
    }
}
