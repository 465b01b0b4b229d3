//! `scripts/bench.sh` end to end with three DittoServers (debug binaries, a two-second quiet
//! period): the script works, and what it counts holds: requests within the budget of objects
//! × 1.2 + 2 per DittoServer (one status write and one Event each, no finalizer), none
//! while nothing changes; the Events in the namespace are the operator's `Created` ones, one per
//! DittoServer, and any the apiserver published itself. Times are printed, never asserted.

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn bench_script_counts_requests_within_budget_and_none_when_quiet() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `cargo test --all-targets` builds the examples next to the test binaries: target/debug/examples.
    let exe = std::env::current_exe().unwrap();
    let floor = exe.parent().unwrap().parent().unwrap().join("examples").join("apply_floor");
    if !floor.exists() {
        // Run alone (`cargo test --test bench_script`), cargo builds no example.
        let built = Command::new(env!("CARGO")).args(["build", "--example", "apply_floor"]).current_dir(root).status();
        assert!(built.is_ok_and(|s| s.success()) && floor.exists(), "{} not built", floor.display());
    }
    let out = Command::new(root.join("scripts/bench.sh"))
        .arg("3")
        .env("DITTOFS_OPERATOR_BIN", env!("CARGO_BIN_EXE_dittofs-operator"))
        .env("DITTOFS_FLOOR_BIN", &floor)
        .env("DITTOFS_TESTBIN", support::testbin())
        .env("BENCH_QUIET_SECONDS", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench.sh failed");
    let figure = |label: &str| -> u64 {
        let line = stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} line"));
        line[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let requests = figure("requests during convergence:");
    let budget_line = stdout.lines().find(|l| l.starts_with("requests during convergence:")).unwrap();
    let budget: u64 = budget_line.rsplit(' ').next().unwrap().trim_end_matches(')').parse().unwrap();
    assert!(requests > 0 && requests <= budget, "{requests} requests, budget {budget}");
    assert_eq!(figure("requests in the quiet 2 s:"), 0, "requests while nothing changed");
    let count = |what: &str| {
        stdout
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(what).filter(|rest| rest.starts_with(' ')))
            .and_then(|rest| rest.trim().parse::<u64>().ok())
    };
    // Besides its objects, each DittoServer costs one status write and one Event (no pod runs
    // here, so nothing changes the status a second time), and no finalizer patch: without
    // Percona it needs none.
    assert_eq!(count("PATCH dittoservers"), None, "PATCH dittoservers during convergence");
    assert_eq!(count("PATCH dittoservers/status"), Some(3), "PATCH dittoservers/status during convergence");
    // One `Created` Event per DittoServer, the probe's included, and no other Event of the
    // operator's. The apiserver may publish Events of its own in the namespace (its ClusterIP
    // repair loop, racing the Services' creation): `POST events` counts those too.
    assert_eq!(count("dittofs-operator Created"), Some(4), "Created Events (3 DittoServers and the probe)");
    let operators = stdout.lines().map(str::trim).filter(|l| l.starts_with("dittofs-operator ")).count();
    assert_eq!(operators, 1, "the operator published only Created Events");
    let foreign = figure("events in the namespace, not the operator's:");
    let posted = count("POST events").expect("POST events during convergence");
    assert!(
        (3..=3 + foreign).contains(&posted),
        "{posted} Events posted, {foreign} of them possibly not the operator's"
    );
    assert!(stdout.contains("floor"), "the floor ran");
    // Convergence is also given from when `kubectl create` returned, with how long the creates took.
    let after = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("after kubectl create returned:"))
        .expect("a convergence figure from the creates' return");
    let after_seconds: f64 = after.split_whitespace().next().unwrap().parse().unwrap();
    let creates_seconds: f64 =
        after.split("creates took ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().parse().unwrap();
    assert!(after_seconds >= 0.0 && creates_seconds > 0.0, "{after}");
}
