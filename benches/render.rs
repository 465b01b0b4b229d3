//! Render time: CR file → typed objects, as `render` and every reconcile do it (parse, values,
//! two template passes, typed parsing, checksum). `cargo bench --bench render`; under
//! `cargo test --all-targets` each benchmark runs once as a smoke test.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use dittofs_operator::{input, overrides, values::ValuesBuilder};

fn case(name: &str) -> (String, Vec<overrides::Overrides>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(name);
    let input = std::fs::read_to_string(dir.join("input.yaml")).expect("golden input");
    let templates = dir.join("templates");
    let sets =
        if templates.is_dir() { vec![overrides::Overrides::from_dir(&templates).expect("overrides")] } else { vec![] };
    (input, sets)
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for name in ["minimal-sqlite", "percona-operator-created-ready", "override-sidecar"] {
        let (input, sets) = case(name);
        group.bench_function(name, |b| {
            b.iter(|| input::render_offline("input.yaml", &input, ValuesBuilder::new(), &sets).expect("renders"))
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
