//! `ordo-bench sweep`: every combination of the knob lists, one fresh
//! cluster per run; writes a Markdown table, a CSV and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use crate::plot;
use crate::report::{RunOutcome, RunResult};
use crate::spec::{Knobs, RunSpec, knob_value};

/// Runs drawn together in `percentiles.svg` (more would be unreadable;
/// each run also has its own plot under `hist/`).
const PERCENTILE_PLOT_RUNS_MAX: usize = 12;

/// Writes `runs.csv`, `table.md`, `throughput-p99[-<knob>].svg`,
/// `percentiles.svg` (every run's distribution in one plot, up to
/// [`PERCENTILE_PLOT_RUNS_MAX`] runs) and `hist/<label>.svg` for every run
/// into `out`; returns the table.
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
    for knob in knobs_or_all(&swept) {
        let name = match knob {
            Some(knob) => format!("throughput-p99-{knob}.svg"),
            None => "throughput-p99.svg".into(),
        };
        let series = series_by(runs, knob, &swept);
        let title = format!("throughput against p99, by {}", knob.unwrap_or("run"));
        let axes = plot::Axes {
            title: &title,
            x_desc: "commits/s",
            y_desc: "p99 commit latency (µs)",
            y_log: true,
        };
        plot::xy(&out.join(name), axes, &series)?;
    }
    for (_, outcome) in runs {
        let path = hist_dir.join(format!("{}.svg", outcome.result.label));
        let title = format!("commit latency by percentile: {}", outcome.result.label);
        plot::percentile_distribution(
            &path,
            &title,
            &[(outcome.result.label.clone(), &outcome.histogram)],
        )?;
    }
    if runs.iter().any(|(spec, _)| spec.rate.is_some()) {
        for knob in knobs_or_all(&swept) {
            let name = match knob {
                Some(knob) => format!("latency-rate-{knob}.svg"),
                None => "latency-rate.svg".into(),
            };
            let title = format!(
                "open loop: latency against offered load{}",
                knob.map_or(String::new(), |k| format!(", by {k}"))
            );
            let axes = plot::Axes {
                title: &title,
                x_desc: "offered proposals/s",
                y_desc: "commit latency from when due (µs)",
                y_log: true,
            };
            plot::xy(&out.join(name), axes, &rate_series(runs, knob))?;
        }
    }
    for (_, outcome) in runs {
        over_time(&out.join("time"), outcome)?;
    }
    let together: Vec<(String, &hdrhistogram::Histogram<u64>)> = runs
        .iter()
        .take(PERCENTILE_PLOT_RUNS_MAX)
        .map(|(spec, outcome)| (point_label(spec, None, &swept), &outcome.histogram))
        .collect();
    plot::percentile_distribution(
        &out.join("percentiles.svg"),
        "commit latency by percentile, every run",
        &together,
    )?;
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
/// rising), each point labelled with the knob values that tell it from the
/// other points of its series.
fn series_by(
    runs: &[(RunSpec, RunOutcome)],
    knob: Option<&str>,
    swept: &[&'static str],
) -> Vec<plot::Series> {
    let mut series: Vec<plot::Series> = Vec::new();
    for (spec, outcome) in runs {
        let name = knob.map_or_else(
            || "all runs".to_string(),
            |k| format!("{k} {}", knob_value(spec, k)),
        );
        let point = plot::Point {
            x: outcome.result.commits_per_s,
            y: outcome.result.p99_us,
            label: point_label(spec, knob, swept),
        };
        add_point(&mut series, name, point);
    }
    series
}

/// `time/<label>-commits.svg` and `time/<label>-rss.svg`: commits/s (over
/// spans of about a second) and resident memory over the measured window,
/// so a long run shows whether it stays flat.
pub fn over_time(dir: &Path, outcome: &RunOutcome) -> Result<(), String> {
    let timeline = &outcome.timeline;
    if timeline.len() < 3 {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let label = &outcome.result.label;
    let seconds = timeline.last().map_or(0.0, |s| s.0) - timeline[0].0;
    let buckets = (seconds.round() as usize).clamp(2, 600);
    let every = buckets.div_ceil(10);
    let commits: Vec<plot::Point> = crate::report::rates(timeline, buckets)
        .into_iter()
        .enumerate()
        .map(|(k, (t, rate))| plot::Point {
            x: t,
            y: rate,
            label: if k % every == 0 {
                plot::format_count(rate)
            } else {
                String::new()
            },
        })
        .collect();
    let rss: Vec<plot::Point> = timeline
        .iter()
        .enumerate()
        .map(|(k, &(t, _, mib))| plot::Point {
            x: t,
            y: mib,
            label: if k % (timeline.len().div_ceil(10)) == 0 {
                format!("{mib:.0}")
            } else {
                String::new()
            },
        })
        .collect();
    let title = format!("commits/s over the run: {label}");
    plot::xy(
        &dir.join(format!("{label}-commits.svg")),
        plot::Axes {
            title: &title,
            x_desc: "seconds into the measured window",
            y_desc: "commits/s",
            y_log: false,
        },
        &[plot::Series {
            name: "commits/s".into(),
            points: commits,
        }],
    )?;
    let title = format!("resident memory over the run: {label}");
    plot::xy(
        &dir.join(format!("{label}-rss.svg")),
        plot::Axes {
            title: &title,
            x_desc: "seconds into the measured window",
            y_desc: if outcome.result.procs {
                "largest node's resident memory (MiB)"
            } else {
                "resident memory of every node and the load (MiB)"
            },
            y_log: false,
        },
        &[plot::Series {
            name: "RSS MiB".into(),
            points: rss,
        }],
    )
}

/// Adds `point` to the series called `name`, which it starts if there is
/// none yet.
fn add_point(series: &mut Vec<plot::Series>, name: String, point: plot::Point) {
    match series.iter_mut().find(|s| s.name == name) {
        Some(line) => line.points.push(point),
        None => series.push(plot::Series {
            name,
            points: vec![point],
        }),
    }
}

/// Each swept knob, or one `None` (everything in one series) when none is.
fn knobs_or_all(swept: &[&'static str]) -> Vec<Option<&'static str>> {
    if swept.is_empty() {
        vec![None]
    } else {
        swept.iter().map(|&k| Some(k)).collect()
    }
}

/// Open-loop runs as latency against offered load: for each value of
/// `knob` (or all runs), one series per percentile (p50, p99, p99.9),
/// each point labelled with the throughput achieved.
fn rate_series(runs: &[(RunSpec, RunOutcome)], knob: Option<&str>) -> Vec<plot::Series> {
    let mut series: Vec<plot::Series> = Vec::new();
    for (spec, outcome) in runs {
        let Some(rate) = spec.rate else {
            continue;
        };
        let r = &outcome.result;
        let group = knob.map_or(String::new(), |k| format!("{k} {}, ", knob_value(spec, k)));
        for (percentile, latency) in [("p50", r.p50_us), ("p99", r.p99_us), ("p99.9", r.p999_us)] {
            let name = format!("{group}{percentile}");
            let point = plot::Point {
                x: rate as f64,
                y: latency,
                label: if percentile == "p50" {
                    format!("{}/s done", plot::format_count(r.commits_per_s))
                } else {
                    String::new()
                },
            };
            add_point(&mut series, name, point);
        }
    }
    series
}

/// `C=64` and the value of every swept knob but `except`:
/// `C=64, batch-delay 50us`.
fn point_label(spec: &RunSpec, except: Option<&str>, swept: &[&'static str]) -> String {
    let mut label = match spec.rate {
        Some(rate) => format!("{}/s offered", plot::format_count(rate as f64)),
        None => format!("C={}", spec.concurrency),
    };
    for &knob in swept {
        if Some(knob) != except {
            let _ = write!(label, ", {knob} {}", knob_value(spec, knob));
        }
    }
    label
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
    header += " load | commits/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | p50 / quorum floor | p99 / p99 quorum floor | CPU µs/commit | errors |";
    rule += "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
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
        let figure = |value: Option<f64>, decimals: usize| {
            value.map_or("n/a".to_string(), |v| format!("{v:.decimals$}"))
        };
        let _ = writeln!(
            text,
            " {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            spec.load_name(),
            r.commits_per_s,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            figure(r.p50_over_floor_quorum, 2),
            figure(r.p99_over_floor_quorum, 2),
            figure(r.cpu_us_per_commit, 1),
            r.errors
        );
    }
    if let Some((_, first)) = runs.first() {
        let _ = writeln!(
            text,
            "\nfloor (first run): fdatasync 4 KiB p50 {:.1} µs, loopback round trip p50 {:.1} µs, \
             quorum floor p50 {} µs, p99 {} µs",
            first.result.floor_fsync_us,
            first.result.floor_rtt_us,
            first
                .result
                .floor_quorum_us
                .map_or("n/a".to_string(), |v| format!("{v:.1}")),
            first
                .result
                .floor_quorum_p99_us
                .map_or("n/a".to_string(), |v| format!("{v:.1}")),
        );
    }
    text
}
