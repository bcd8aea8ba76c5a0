//! `ordo-bench sweep`: every combination of the knob lists, one fresh
//! cluster per run; writes a Markdown table, a CSV and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use crate::plot;
use crate::report::{RunOutcome, RunResult};
use crate::spec::{Knobs, RunSpec, knob_value};

/// Writes `runs.csv`, `table.md`, `throughput-p99[-<knob>].svg` and
/// `hist/<label>.svg` for every run into `out`; returns the table.
pub fn write_outputs(
    out: &Path,
    knobs: &Knobs,
    runs: &[(RunSpec, RunOutcome)],
) -> Result<String, String> {
    let hist_dir = out.join("hist");
    std::fs::create_dir_all(&hist_dir).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write_csv(&out.join("runs.csv"), runs)?;
    let table = table(knobs, runs);
    write("table.md", &table)?;
    let swept = knobs.swept();
    let series_knobs: Vec<Option<&str>> = if swept.is_empty() {
        vec![None]
    } else {
        swept.iter().map(|&k| Some(k)).collect()
    };
    for knob in series_knobs {
        let name = match knob {
            Some(knob) => format!("throughput-p99-{knob}.svg"),
            None => "throughput-p99.svg".into(),
        };
        let series = series_by(runs, knob);
        plot::throughput_vs_p99(&out.join(name), knob.unwrap_or("run"), &series)?;
    }
    for (_, outcome) in runs {
        let path = hist_dir.join(format!("{}.svg", outcome.result.label));
        plot::percentile_distribution(&path, &outcome.result.label, &outcome.histogram)?;
    }
    Ok(table)
}

/// `runs.csv`: a header, then one record per run (the csv crate quotes a
/// label that holds a comma or a quote).
fn write_csv(path: &Path, runs: &[(RunSpec, RunOutcome)]) -> Result<(), String> {
    let error = |e: csv::Error| format!("cannot write {}: {e}", path.display());
    let mut writer = csv::Writer::from_path(path).map_err(error)?;
    writer.write_record(RunResult::CSV_COLUMNS).map_err(error)?;
    for (_, outcome) in runs {
        writer
            .write_record(outcome.result.csv_record())
            .map_err(error)?;
    }
    writer
        .flush()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Points `(commits/s, p99 µs)` grouped by the value of `knob` (one series
/// for everything when `None`), each series in run order (concurrency
/// rising).
fn series_by(runs: &[(RunSpec, RunOutcome)], knob: Option<&str>) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (spec, outcome) in runs {
        let name = knob.map_or_else(
            || "all runs".to_string(),
            |k| format!("{k} {}", knob_value(spec, k)),
        );
        let point = (outcome.result.commits_per_s, outcome.result.p99_us);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(point),
            None => series.push((name, vec![point])),
        }
    }
    series
}

/// A Markdown table of the runs: the swept knobs, then the figures.
pub fn table(knobs: &Knobs, runs: &[(RunSpec, RunOutcome)]) -> String {
    let swept = knobs.swept();
    let mut text = String::new();
    let mut header = String::from("|");
    let mut rule = String::from("|");
    for knob in &swept {
        let _ = write!(header, " {knob} |");
        rule += "---|";
    }
    header +=
        " C | commits/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | p50 / floor | errors |";
    rule += "---:|---:|---:|---:|---:|---:|---:|---:|---:|";
    text += &header;
    text.push('\n');
    text += &rule;
    text.push('\n');
    for (spec, outcome) in runs {
        let r = &outcome.result;
        text.push('|');
        for knob in &swept {
            let _ = write!(text, " {} |", knob_value(spec, knob));
        }
        let _ = writeln!(
            text,
            " {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            r.concurrency,
            r.commits_per_s,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.p50_over_floor,
            r.errors
        );
    }
    if let Some((_, first)) = runs.first() {
        let _ = writeln!(
            text,
            "\nfloor (first run): fdatasync 4 KiB p50 {:.1} µs, loopback round trip p50 {:.1} µs",
            first.result.floor_fsync_us, first.result.floor_rtt_us
        );
    }
    text
}
