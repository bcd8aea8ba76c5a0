//! ordo-bench runs end to end: short runs of the default TCP mode and the
//! engine-only mode commit, report every `--json` field and write a sweep's
//! files. Behaviour only: the figures are measured, never asserted
//! (docs/benchmarks.md).

use std::time::Duration;

use clap::Parser;
use ordo_bench::run::run_one;
use ordo_bench::spec::Knobs;
use ordo_bench::sweep;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    knobs: Knobs,
}

fn knobs(args: &[&str]) -> Knobs {
    let mut argv = vec!["ordo-bench"];
    argv.extend_from_slice(args);
    TestCli::try_parse_from(argv).expect("valid flags").knobs
}

/// The `--json` contract of docs/benchmarks.md.
const JSON_FIELDS: &[&str] = &[
    "nodes",
    "concurrency",
    "payload_bytes",
    "fsync",
    "storage",
    "transport",
    "duration_s",
    "commits",
    "commits_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "floor_fsync_us",
    "floor_rtt_us",
    "errors",
];

#[test]
fn tcp_and_engine_only_runs_commit_and_sweep_writes_its_files() {
    // Under target/ rather than /tmp, which may be tmpfs (refused for disk runs).
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = data.path().to_str().unwrap();
    let knobs = knobs(&[
        "--duration",
        "700ms",
        "--warmup",
        "200ms",
        "--concurrency",
        "1,8",
        "--transport",
        "tcp,inproc",
        "--storage",
        "disk",
        "--data-dir",
        data_dir,
    ]);
    let specs = knobs.expand().unwrap();
    assert_eq!(specs.len(), 4);
    let mut runs = Vec::new();
    for spec in specs {
        let outcome = run_one(&spec, false).unwrap();
        let r = &outcome.result;
        assert!(r.commits > 0, "{}", r.summary());
        assert_eq!(r.errors, 0, "{}", r.summary());
        assert_eq!(r.concurrency, spec.concurrency);
        assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        assert!(r.floor_fsync_us > 0.0 && r.floor_rtt_us > 0.0);
        assert!(r.floor_dsync_us.is_some_and(|us| us > 0.0));
        assert_eq!(outcome.histogram.len(), r.commits);
        let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        for field in JSON_FIELDS {
            assert!(json.get(field).is_some(), "--json lacks {field}: {json}");
        }
        runs.push((spec, outcome));
    }
    // Each run's cluster directory is gone; only what the user asked for
    // stays.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);

    let out = tempfile::tempdir().unwrap();
    let table = sweep::write_outputs(out.path(), &knobs, &runs).unwrap();
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| tcp") || l.starts_with("| inproc"))
            .count(),
        4
    );
    let csv = std::fs::read_to_string(out.path().join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    for file in ["table.md", "throughput-p99-transport.svg"] {
        let text = std::fs::read_to_string(out.path().join(file)).unwrap();
        assert!(!text.is_empty(), "{file}");
    }
    let plots = std::fs::read_dir(out.path().join("hist")).unwrap().count();
    assert_eq!(plots, 4);
}

#[test]
fn bad_knobs_are_named() {
    let error = knobs(&["--nodes", "0"]).expand().unwrap_err();
    assert!(error.contains("--nodes"), "{error}");
    let error = knobs(&["--fsync", "sometimes"]).expand().unwrap_err();
    assert!(error.contains("--fsync"), "{error}");
    let error = knobs(&["--procs", "--transport", "inproc"])
        .expand()
        .unwrap_err();
    assert!(error.contains("--procs"), "{error}");
    let mut argv = vec!["ordo-bench", "--duration", "5h"];
    assert!(TestCli::try_parse_from(&argv).is_err());
    argv[2] = "10";
    let parsed = TestCli::try_parse_from(&argv).unwrap();
    assert_eq!(parsed.knobs.duration, Duration::from_secs(10));
}
