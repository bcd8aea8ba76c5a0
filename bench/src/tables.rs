//! `ordo-bench tables`: regenerates the knob tables of docs/tuning.md in
//! one command. Each table sweeps one knob over the concurrencies 1, 64 and
//! 256, runs every configuration `--repeat` times (the repeats interleaved,
//! so a drift of the machine spreads over every value instead of favouring
//! one), and writes each figure as the range of the repeats, with the
//! knob's valid range. With `--write docs/tuning.md` the tables replace the
//! text between their markers:
//!
//! ```text
//! <!-- ordo-bench tables: fsync -->
//! ...
//! <!-- end of table -->
//! ```

use std::fmt::Write as _;
use std::path::Path;

use crate::report::RunResult;
use crate::spec::{Knobs, RunSpec};

/// One knob's table.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// The marker name and the ordo-bench flag swept.
    pub flag: &'static str,
    /// The values swept, as the flag takes them.
    pub values: &'static str,
    /// The `ordo.toml` key.
    pub key: &'static str,
    /// Its default, as [`crate::spec::knob_value`] writes it.
    pub default: &'static str,
    /// What the configuration accepts.
    pub valid: &'static str,
    /// Extra flags for every run of the table.
    pub extra: &'static [&'static str],
}

/// Every table of docs/tuning.md, in page order.
pub const TABLES: [Table; 8] = [
    Table {
        flag: "batch-entries-max",
        values: "64,512,4096",
        key: "raft.batch_entries_max",
        default: "4096",
        valid: "1 to 1,048,576 entries",
        extra: &[],
    },
    Table {
        flag: "batch-bytes-max",
        values: "16384,262144,1048576",
        key: "raft.batch_bytes_max",
        default: "1048576",
        valid: "1 B to 64 MiB (a batch's frame must fit 64 MiB); at most `uncommitted_bytes_max`",
        extra: &[],
    },
    Table {
        flag: "inflight-max",
        values: "1,4,64",
        key: "raft.inflight_messages_max",
        default: "64",
        valid: "at least 1",
        extra: &[],
    },
    Table {
        flag: "fsync",
        values: "always,group:100us,group:500us",
        key: "storage.fsync",
        default: "always",
        valid: "`always`, `group:<delay>` (any duration), or `none` (benchmarks only: not durable, not swept)",
        extra: &[],
    },
    Table {
        flag: "write-through",
        values: "on,off",
        key: "storage.write_through",
        default: "on",
        valid: "true or false; either way an acknowledged entry is on disk",
        extra: &[],
    },
    Table {
        flag: "batch-delay",
        values: "0,50us,200us",
        key: "runtime.batch_delay_us",
        default: "0us",
        valid: "0 to 100,000 µs",
        extra: &[],
    },
    Table {
        flag: "commit-notify-delay",
        values: "0,200us,1ms,5ms",
        key: "raft.commit_notify_delay_us",
        default: "1000us",
        valid: "0 to `heartbeat_interval_ms` × 1000 µs",
        extra: &[],
    },
    Table {
        flag: "shards",
        values: "1,2",
        key: "runtime.shards",
        default: "1",
        valid: "1 to 256",
        extra: &["--procs"],
    },
];

/// The concurrencies every table measures.
const CONCURRENCY: &str = "1,64,256";

impl Table {
    /// The ordo-bench arguments of the table's runs (what the page prints
    /// as the table's command).
    pub fn args(&self, duration: &str) -> Vec<String> {
        let mut args = vec![
            "--concurrency".into(),
            CONCURRENCY.into(),
            "--duration".into(),
            duration.into(),
            format!("--{}", self.flag),
            self.values.into(),
        ];
        args.extend(self.extra.iter().map(|s| s.to_string()));
        args
    }

    /// The runs of the table, in order.
    pub fn specs(&self, duration: &str) -> Result<Vec<RunSpec>, String> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            knobs: Knobs,
        }
        let mut argv = vec!["ordo-bench".to_string()];
        argv.extend(self.args(duration));
        let cli = <Cli as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.knobs.expand()
    }
}

/// The range of a figure over repeats: `1,234` or `1,200–1,300`.
fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let (low, high) = (grouped(min), grouped(max));
    if low == high {
        low
    } else {
        format!("{low}–{high}")
    }
}

/// `12,345`: a figure rounded to a whole number with thousands grouped.
fn grouped(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Markdown of one table from its runs' results: `results[k]` holds
/// the repeats of run `k` of `specs`.
pub fn markdown(
    table: &Table,
    duration: &str,
    specs: &[RunSpec],
    results: &[Vec<RunResult>],
) -> String {
    let mut text = format!(
        "`ordo-bench {}` (each row: the range of {} runs; `{}` accepts {}; default in bold)\n\n",
        table.args(duration).join(" "),
        results.first().map_or(0, Vec::len),
        table.key,
        table.valid,
    );
    let _ = writeln!(
        text,
        "| {} | C | commits/s | p50 µs | p99 µs | p99.9 µs | CPU µs/commit |",
        table.flag
    );
    text += "|---|---:|---:|---:|---:|---:|---:|\n";
    for (spec, repeats) in specs.iter().zip(results) {
        let value = crate::spec::knob_value(spec, table.flag);
        let shown = if value == table.default {
            format!("**{value}**")
        } else {
            value
        };
        let column = |f: fn(&RunResult) -> f64| range(&repeats.iter().map(f).collect::<Vec<_>>());
        let cpu: Vec<f64> = repeats.iter().filter_map(|r| r.cpu_us_per_commit).collect();
        let _ = writeln!(
            text,
            "| {shown} | {} | {} | {} | {} | {} | {} |",
            spec.concurrency,
            column(|r| r.commits_per_s),
            column(|r| r.p50_us),
            column(|r| r.p99_us),
            column(|r| r.p999_us),
            if cpu.is_empty() {
                "n/a".to_string()
            } else {
                let (low, high) = (
                    cpu.iter().copied().fold(f64::MAX, f64::min),
                    cpu.iter().copied().fold(f64::MIN, f64::max),
                );
                if (high - low).abs() < 0.05 {
                    format!("{low:.1}")
                } else {
                    format!("{low:.1}–{high:.1}")
                }
            },
        );
    }
    text
}

/// The marker that opens a table's section in the page.
pub fn start_marker(flag: &str) -> String {
    format!("<!-- ordo-bench tables: {flag} -->")
}

/// The marker that closes every table's section.
pub const END_MARKER: &str = "<!-- end of table -->";

/// Replaces the section of `flag` in `page` by `table`. An error names the
/// missing marker.
pub fn replace_section(page: &str, flag: &str, table: &str) -> Result<String, String> {
    let start = start_marker(flag);
    let at = page
        .find(&start)
        .ok_or_else(|| format!("the page has no {start} marker"))?;
    let body = at + start.len();
    let end = page[body..]
        .find(END_MARKER)
        .map(|offset| body + offset)
        .ok_or_else(|| format!("no {END_MARKER} after {start}"))?;
    Ok(format!("{}\n{}{}", &page[..body], table, &page[end..]))
}

/// Writes every table into the page at `path` (the sections between the
/// markers), in one write once all are measured.
pub fn write_page(path: &Path, tables: &[(Table, String)]) -> Result<(), String> {
    let mut page = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for (table, text) in tables {
        page = replace_section(&page, table.flag, text)?;
    }
    std::fs::write(path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_expands_to_its_runs() {
        for table in TABLES {
            let specs = table.specs("3s").unwrap();
            let values = table.values.split(',').count();
            assert_eq!(specs.len(), values * 3, "{}", table.flag);
            let shown: Vec<String> = specs
                .iter()
                .map(|s| crate::spec::knob_value(s, table.flag))
                .collect();
            assert!(
                !shown.iter().any(String::is_empty),
                "{}: {shown:?}",
                table.flag
            );
        }
    }

    #[test]
    fn ranges_and_sections() {
        assert_eq!(range(&[1200.4, 1300.0, 1250.0]), "1,200–1,300");
        assert_eq!(range(&[99.6, 100.4]), "100");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        let page =
            "intro\n<!-- ordo-bench tables: fsync -->\nold table\n<!-- end of table -->\nafter\n";
        let new = replace_section(page, "fsync", "| new |\n").unwrap();
        assert_eq!(
            new,
            "intro\n<!-- ordo-bench tables: fsync -->\n| new |\n<!-- end of table -->\nafter\n"
        );
        assert!(
            replace_section(page, "shards", "x")
                .unwrap_err()
                .contains("shards")
        );
    }
}
