//! Render time, `cargo bench --bench render` (under `cargo test --all-targets` each benchmark
//! runs once as a smoke test):
//! - `render_offline/<case>`: CR file → typed objects, as the `render` command does it (parse the
//!   file, build the values, both template passes, typed parsing, checksum);
//! - `render/<case>`: what a reconcile pays when a DittoServer's inputs changed: both template
//!   passes, typed parsing and checksum from inputs already gathered (the template environment
//!   is built once per template set);
//! - `render_unchanged/<case>`: what a reconcile pays when they did not and the objects are as
//!   its last plan applied them: the kept render is reused without its objects (the check
//!   against the cache, a lookup per object, is not part of it);
//! - `parse_json/<case>`: not the operator's code: serde_json parsing the same rendered objects
//!   from JSON text. The least a render whose inputs changed could cost while templates produce
//!   text, whatever the format (YAML parses several times slower).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use dittofs_operator::apply::AppliedSet;
use dittofs_operator::cmd::render as input;
use dittofs_operator::gather::Gathered;
use dittofs_operator::render::{RenderMemo, Renderer};
use dittofs_operator::{overrides, settings::Settings, values::ValuesBuilder};

const CASES: [&str; 3] = ["minimal-sqlite", "percona-operator-created-ready", "override-sidecar"];

fn case(name: &str) -> (String, Vec<overrides::Overrides>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(name);
    let input = std::fs::read_to_string(dir.join("input.yaml")).expect("golden input");
    let templates = dir.join("templates");
    let sets =
        if templates.is_dir() { vec![overrides::Overrides::from_dir(&templates).expect("overrides")] } else { vec![] };
    (input, sets)
}

fn render(c: &mut Criterion) {
    let mut offline = c.benchmark_group("render_offline");
    for name in CASES {
        let (input, sets) = case(name);
        offline.bench_function(name, |b| {
            b.iter(|| input::render_offline("input.yaml", &input, ValuesBuilder::new(), &sets).expect("renders"))
        });
    }
    offline.finish();

    let mut changed = c.benchmark_group("render");
    let mut unchanged_inputs = Vec::new();
    for name in CASES {
        let (text, sets) = case(name);
        let parsed = input::parse("input.yaml", &text).expect("input parses");
        let effective = overrides::layer(&Settings::default(), &sets).expect("overrides layer");
        let gathered = Gathered::from_file(&parsed.server, &parsed.secrets, &parsed.percona, effective.clone());
        let discovered = gathered.discover(&parsed.server, &effective.values, false).expect("discovers");
        changed.bench_function(name, |b| {
            b.iter(|| {
                Renderer::new(&effective.templates)
                    .render(&parsed.server, &effective.values, &discovered)
                    .expect("renders")
            })
        });
        unchanged_inputs.push((name, parsed, effective, discovered));
    }
    changed.finish();

    let mut parse = c.benchmark_group("parse_json");
    for (name, parsed, effective, discovered) in &unchanged_inputs {
        let rendered = Renderer::new(&effective.templates).render(&parsed.server, &effective.values, discovered);
        let texts: Vec<String> = rendered.expect("renders").objects.iter().map(|o| o.to_json().to_string()).collect();
        parse.bench_function(*name, |b| {
            b.iter(|| {
                texts.iter().map(|t| serde_json::from_str::<serde_json::Value>(t).expect("JSON")).collect::<Vec<_>>()
            })
        });
    }
    parse.finish();

    let mut unchanged = c.benchmark_group("render_unchanged");
    let memo = RenderMemo::default();
    for (name, parsed, effective, discovered) in &unchanged_inputs {
        let render = |settled: bool| {
            memo.render(&effective.templates, &parsed.server, &effective.values, discovered, |_| settled)
                .expect("renders")
        };
        // As the controller does once the first plan's objects are in the cluster.
        let first = render(false);
        let objects = first.rendered.listing.iter().map(|(kind, name)| (*kind, name.clone(), 0)).collect();
        first.note_applied(AppliedSet { owner_uid: String::new(), objects });
        unchanged.bench_function(*name, |b| b.iter(|| render(true)));
    }
    unchanged.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
