//! `ordo-bench tune`: searches the speed knobs for a goal the user names,
//! on this machine and data directory, and ends with the `ordo.toml`
//! snippet to paste, the table of every trial and a plot of them.
//!
//! The search is coordinate descent: from the starting knobs (the command
//! line's first values), each knob in turn tries its candidates with the
//! others held, and a candidate replaces the current value when it beats
//! it by more than `--min-gain` (runs are noisy: a 2 % win of one run is
//! not a win). `--passes 2` walks the knobs again from the result. It
//! never touches durability: `fsync none` is not a candidate, and group
//! fsync still acknowledges only what is on disk.

use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use crate::plot;
use crate::report::{RunOutcome, RunResult};
use crate::spec::{RunSpec, knob_value};

/// A latency percentile a goal names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Percentile {
    /// Median.
    P50,
    /// 90th.
    P90,
    /// 99th.
    P99,
    /// 99.9th.
    P999,
}

impl Percentile {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "p50" => Some(Self::P50),
            "p90" => Some(Self::P90),
            "p99" => Some(Self::P99),
            "p999" | "p99.9" => Some(Self::P999),
            _ => None,
        }
    }

    /// The percentile's value in a run, µs.
    pub fn of(self, result: &RunResult) -> f64 {
        match self {
            Self::P50 => result.p50_us,
            Self::P90 => result.p90_us,
            Self::P99 => result.p99_us,
            Self::P999 => result.p999_us,
        }
    }

    /// `p99`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
            Self::P999 => "p99.9",
        }
    }
}

/// What `tune` optimises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The highest commits/s whose `percentile` stays under `bound_us`
    /// (`--goal "p99<2ms"`); concurrency is searched too.
    MaxThroughput {
        /// The percentile bounded.
        percentile: Percentile,
        /// Its bound, µs.
        bound_us: f64,
    },
    /// The lowest `percentile` at the load given (`--goal min:p50`, with
    /// `--rate R` for a fixed offered load or `--concurrency C`).
    MinLatency {
        /// The percentile minimised.
        percentile: Percentile,
    },
}

impl FromStr for Goal {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let wrong = || {
            format!(
                "--goal {text:?}: expected `<percentile><<latency>` (\"p99<2ms\": the most \
                 commits/s with p99 under 2 ms) or `min:<percentile>` (\"min:p50\": the lowest p50 \
                 at the given --rate or --concurrency); percentiles p50, p90, p99, p99.9"
            )
        };
        if let Some(name) = text.strip_prefix("min:") {
            let percentile = Percentile::parse(name.trim()).ok_or_else(wrong)?;
            return Ok(Self::MinLatency { percentile });
        }
        let (name, bound) = text.split_once('<').ok_or_else(wrong)?;
        let percentile = Percentile::parse(name.trim()).ok_or_else(wrong)?;
        let bound = humantime::parse_duration(bound.trim_start_matches('=').trim())
            .map_err(|e| format!("{}: {e}", wrong()))?;
        if bound.is_zero() {
            return Err(wrong());
        }
        Ok(Self::MaxThroughput {
            percentile,
            bound_us: bound.as_secs_f64() * 1e6,
        })
    }
}

impl Goal {
    /// The percentile the goal is about.
    pub fn percentile(&self) -> Percentile {
        match *self {
            Self::MaxThroughput { percentile, .. } | Self::MinLatency { percentile } => percentile,
        }
    }

    /// A run's score, higher is better; `None` when the run misses the
    /// goal's constraint (errors, latency over the bound, or an open loop
    /// that did not keep up with its offered rate).
    pub fn score(&self, spec: &RunSpec, result: &RunResult) -> Option<f64> {
        if result.errors > 0 || result.commits == 0 {
            return None;
        }
        if let Some(rate) = spec.rate
            && result.commits_per_s < 0.97 * rate as f64
        {
            return None;
        }
        match *self {
            Self::MaxThroughput {
                percentile,
                bound_us,
            } => (percentile.of(result) < bound_us).then_some(result.commits_per_s),
            Self::MinLatency { percentile } => Some(-percentile.of(result)),
        }
    }

    /// How far a run is from meeting a throughput goal's bound (its
    /// percentile over the bound; lower is nearer), so that a search whose
    /// start misses the goal still walks towards it. `None` for other
    /// goals, or a run with errors.
    fn miss(&self, result: &RunResult) -> Option<f64> {
        match *self {
            Self::MaxThroughput {
                percentile,
                bound_us,
            } if result.errors == 0 => Some(percentile.of(result) / bound_us),
            _ => None,
        }
    }

    /// Whether `score` beats `best` by more than `min_gain` (a fraction).
    fn beats(&self, score: f64, best: Option<f64>, min_gain: f64) -> bool {
        match best {
            None => true,
            // Throughput: higher by the gain; latency (negated): lower by it.
            Some(best) => score > best + best.abs() * min_gain,
        }
    }
}

/// One knob `tune` searches, and its candidates.
pub struct Dimension {
    /// The ordo-bench flag.
    pub name: &'static str,
    /// Candidates, as the flag takes them.
    pub values: Vec<&'static str>,
    apply: fn(&mut RunSpec, &str),
}

/// The knobs searched, in order: the ones that move throughput and
/// latency most first.
pub fn dimensions(goal: &Goal, open_loop: bool) -> Vec<Dimension> {
    let mut dims = Vec::new();
    if matches!(goal, Goal::MaxThroughput { .. }) && !open_loop {
        dims.push(Dimension {
            name: "concurrency",
            values: vec!["16", "64", "256", "1024"],
            apply: |s, v| {
                s.concurrency = v.parse().expect("a candidate");
                s.connections = crate::spec::connections_for(0, s.concurrency);
            },
        });
    }
    dims.extend([
        Dimension {
            name: "fsync",
            values: vec!["always", "group:100us", "group:500us"],
            apply: |s, v| s.fsync = v.into(),
        },
        Dimension {
            name: "write-through",
            values: vec!["on", "off"],
            apply: |s, v| s.write_through = v == "on",
        },
        Dimension {
            name: "batch-delay",
            values: vec!["0", "50", "200"],
            apply: |s, v| s.batch_delay_us = v.parse().expect("a candidate"),
        },
        Dimension {
            name: "commit-notify-delay",
            values: vec!["0", "1000"],
            apply: |s, v| s.commit_notify_delay_us = v.parse().expect("a candidate"),
        },
        Dimension {
            name: "inflight-max",
            values: vec!["16", "64", "256"],
            apply: |s, v| s.inflight_max = v.parse().expect("a candidate"),
        },
        Dimension {
            name: "batch-entries-max",
            values: vec!["256", "4096"],
            apply: |s, v| s.batch_entries_max = v.parse().expect("a candidate"),
        },
        Dimension {
            name: "shards",
            values: vec!["1", "2"],
            apply: |s, v| s.shards = v.parse().expect("a candidate"),
        },
    ]);
    dims
}

/// One run of the search.
pub struct Trial {
    /// What ran.
    pub spec: RunSpec,
    /// What it measured.
    pub outcome: RunOutcome,
    /// The knob this trial changed from the best so far (`start` for the
    /// first).
    pub changed: String,
    /// Its score (`None`: missed the goal).
    pub score: Option<f64>,
}

/// The result of a search.
pub struct Tuned {
    /// Every trial, in order.
    pub trials: Vec<Trial>,
    /// Index of the chosen trial in `trials` (`None`: no trial met the
    /// goal).
    pub best: Option<usize>,
}

/// Runs the search from `start`; `run` measures one spec (a real run, or
/// a model in tests).
pub fn search(
    start: RunSpec,
    goal: &Goal,
    passes: usize,
    min_gain: f64,
    mut run: impl FnMut(&RunSpec) -> Result<RunOutcome, String>,
    mut report: impl FnMut(&Trial),
) -> Result<Tuned, String> {
    let mut trials: Vec<Trial> = Vec::new();
    let mut measure = |trials: &mut Vec<Trial>, spec: RunSpec, changed: String| {
        let outcome = run(&spec)?;
        let score = goal.score(&spec, &outcome.result);
        let trial = Trial {
            spec,
            outcome,
            changed,
            score,
        };
        report(&trial);
        trials.push(trial);
        Ok::<usize, String>(trials.len() - 1)
    };
    let dims = dimensions(goal, start.rate.is_some());
    let mut best = measure(&mut trials, start, "start".into())?;
    let mut best_score = trials[best].score;
    for _ in 0..passes.max(1) {
        for dim in &dims {
            let current = knob_text(&trials[best].spec, dim.name);
            for &value in &dim.values {
                if value == current {
                    continue;
                }
                let mut spec = trials[best].spec.clone();
                (dim.apply)(&mut spec, value);
                let index = measure(&mut trials, spec, format!("{} {value}", dim.name))?;
                if let Some(score) = trials[index].score {
                    if goal.beats(score, best_score, min_gain) {
                        best = index;
                        best_score = Some(score);
                    }
                } else if best_score.is_none()
                    && let (Some(miss), Some(best_miss)) = (
                        goal.miss(&trials[index].outcome.result),
                        goal.miss(&trials[best].outcome.result),
                    )
                    && miss < best_miss * (1.0 - min_gain)
                {
                    // Nothing meets the goal yet: walk towards it.
                    best = index;
                }
            }
        }
    }
    Ok(Tuned {
        best: best_score.map(|_| best),
        trials,
    })
}

/// A knob's value in `spec` as its candidates spell it.
fn knob_text(spec: &RunSpec, knob: &str) -> String {
    match knob {
        "concurrency" => spec.concurrency.to_string(),
        "batch-delay" => spec.batch_delay_us.to_string(),
        "commit-notify-delay" => spec.commit_notify_delay_us.to_string(),
        other => knob_value(spec, other),
    }
}

/// The `ordo.toml` lines that give a node `spec`'s knobs.
pub fn snippet(spec: &RunSpec) -> String {
    let core = spec.core_config();
    format!(
        "[raft]\n\
         batch_entries_max = {}\n\
         batch_bytes_max = {}\n\
         inflight_messages_max = {}\n\
         inflight_bytes_max = {}\n\
         append_bytes_max = {}\n\
         commit_notify_delay_us = {}\n\
         \n\
         [runtime]\n\
         batch_delay_us = {}\n\
         shards = {}\n\
         turn_events_max = {}\n\
         \n\
         [storage]\n\
         fsync = \"{}\"\n\
         write_through = {}\n",
        core.batch_entries_max,
        core.batch_bytes_max,
        core.inflight_messages_max,
        core.inflight_bytes_max,
        core.append_bytes_max,
        core.commit_notify_delay_us,
        spec.batch_delay_us,
        spec.shards,
        spec.turn_events_max,
        spec.fsync,
        spec.write_through,
    )
}

/// The trials as a Markdown table, the chosen one marked.
pub fn table(goal: &Goal, tuned: &Tuned) -> String {
    let name = goal.percentile().name();
    let mut text = format!(
        "| # | changed | load | fsync | write-through | batch-delay µs | commit-notify µs | inflight | batch entries | shards | commits/s | p50 µs | {name} µs | CPU µs/commit | meets goal | chosen |\n\
         |---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    );
    for (i, trial) in tuned.trials.iter().enumerate() {
        let (s, r) = (&trial.spec, &trial.outcome.result);
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {} |",
            i + 1,
            trial.changed,
            s.load_name(),
            s.fsync,
            if s.write_through { "on" } else { "off" },
            s.batch_delay_us,
            s.commit_notify_delay_us,
            s.inflight_max,
            s.batch_entries_max,
            s.shards,
            r.commits_per_s,
            r.p50_us,
            goal.percentile().of(r),
            r.cpu_us_per_commit
                .map_or("n/a".into(), |v| format!("{v:.1}")),
            if trial.score.is_some() { "yes" } else { "no" },
            if tuned.best == Some(i) {
                "**chosen**"
            } else {
                ""
            },
        );
    }
    text
}

/// Writes `tune.md` (goal, chosen knobs, snippet, table), `tuned.toml`
/// (the snippet) and `tune.svg` (every trial, commits/s against the goal's
/// percentile, the chosen one apart) into `out`.
pub fn write_outputs(
    out: &Path,
    goal_text: &str,
    goal: &Goal,
    tuned: &Tuned,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let mut text = format!("# ordo-bench tune --goal \"{goal_text}\"\n\n");
    match tuned.best {
        Some(best) => {
            let trial = &tuned.trials[best];
            let _ = writeln!(
                text,
                "Chosen: trial {} ({}), {:.0} commits/s, p50 {:.1} µs, {} {:.1} µs.\n",
                best + 1,
                trial.spec.load_name(),
                trial.outcome.result.commits_per_s,
                trial.outcome.result.p50_us,
                goal.percentile().name(),
                goal.percentile().of(&trial.outcome.result)
            );
            let snippet = snippet(&trial.spec);
            let _ = writeln!(text, "```toml\n{snippet}```\n");
            write("tuned.toml", &snippet)?;
        }
        None => text += "No trial met the goal.\n\n",
    }
    text += &table(goal, tuned);
    write("tune.md", &text)?;
    let percentile = goal.percentile();
    let point = |i: usize, trial: &Trial| plot::Point {
        x: trial.outcome.result.commits_per_s,
        y: percentile.of(&trial.outcome.result).max(1e-3),
        label: format!("#{} {}", i + 1, trial.changed),
    };
    let mut series = vec![
        plot::Series {
            name: "meets the goal".into(),
            points: Vec::new(),
        },
        plot::Series {
            name: "misses it".into(),
            points: Vec::new(),
        },
    ];
    for (i, trial) in tuned.trials.iter().enumerate() {
        let k = usize::from(trial.score.is_none());
        series[k].points.push(point(i, trial));
    }
    for line in &mut series {
        line.points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    if let Some(best) = tuned.best {
        series.push(plot::Series {
            name: "chosen".into(),
            points: vec![point(best, &tuned.trials[best])],
        });
    }
    series.retain(|line| !line.points.is_empty());
    let title = format!("tune --goal \"{goal_text}\": every trial");
    let y_desc = format!("{} commit latency (µs)", percentile.name());
    plot::xy(
        &out.join("tune.svg"),
        plot::Axes {
            title: &title,
            x_desc: "commits/s",
            y_desc: &y_desc,
            y_log: true,
        },
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_parse_and_refuse_what_they_cannot_mean() {
        assert_eq!(
            "p99<2ms".parse::<Goal>(),
            Ok(Goal::MaxThroughput {
                percentile: Percentile::P99,
                bound_us: 2_000.0
            })
        );
        assert_eq!(
            " p99.9 <= 500us ".parse::<Goal>(),
            Ok(Goal::MaxThroughput {
                percentile: Percentile::P999,
                bound_us: 500.0
            })
        );
        assert_eq!(
            "min:p50".parse::<Goal>(),
            Ok(Goal::MinLatency {
                percentile: Percentile::P50
            })
        );
        for wrong in ["fast", "p98<1ms", "p99<", "p99<0ms", "min:p42", "p99>1ms"] {
            let error = wrong.parse::<Goal>().unwrap_err();
            assert!(error.contains("--goal"), "{wrong}: {error}");
        }
    }

    /// The search against a model of the machine: throughput grows with
    /// concurrency until p99 crosses the bound, group fsync adds
    /// throughput and latency. It finds the best point that meets the
    /// goal, never one that misses it.
    #[test]
    fn the_search_keeps_the_best_run_that_meets_the_goal() {
        let goal: Goal = "p99<2ms".parse().unwrap();
        let start = knobs_spec();
        let model = |spec: &RunSpec| -> Result<RunOutcome, String> {
            let c = spec.concurrency as f64;
            let group = spec.fsync != "always";
            let throughput = c.min(300.0) * 1_000.0 * if group { 1.3 } else { 1.0 };
            let p99 = 300.0 + c * 6.0 + if group { 100.0 } else { 0.0 };
            Ok(outcome(spec, throughput, p99))
        };
        let tuned = search(start, &goal, 1, 0.03, model, |_| {}).unwrap();
        let best = &tuned.trials[tuned.best.expect("a trial meets the goal")];
        assert_eq!(best.spec.concurrency, 256);
        assert_eq!(best.spec.fsync, "group:100us");
        assert!(best.outcome.result.p99_us < 2_000.0);
        for trial in &tuned.trials {
            if let Some(score) = trial.score {
                assert!(score <= best.score.unwrap());
            }
        }
        // The snippet is valid ordo.toml for the chosen knobs.
        #[derive(serde::Deserialize)]
        struct Sections {
            raft: ordo_engine::core::CoreConfig,
            runtime: ordo_engine::node::RuntimeConfig,
            storage: ordo_engine::node::StorageConfig,
        }
        let parsed: Sections = toml::from_str(&snippet(&best.spec)).unwrap();
        assert_eq!(parsed.raft, best.spec.core_config());
        assert_eq!(parsed.storage.fsync, "group:100us");
        assert_eq!(parsed.runtime.batch_delay_us, best.spec.batch_delay_us);
        let dir = tempfile::tempdir().unwrap();
        write_outputs(dir.path(), "p99<2ms", &goal, &tuned).unwrap();
        let md = std::fs::read_to_string(dir.path().join("tune.md")).unwrap();
        assert!(md.contains("**chosen**") && md.contains("[raft]"), "{md}");
        assert!(dir.path().join("tune.svg").exists());
        assert!(dir.path().join("tuned.toml").exists());
    }

    /// A start that misses the goal walks towards it: the search keeps
    /// the nearest miss until a trial meets the goal.
    #[test]
    fn a_start_that_misses_walks_towards_the_goal() {
        let goal: Goal = "p99<350us".parse().unwrap();
        let mut start = knobs_spec();
        start.concurrency = 64;
        let model = |spec: &RunSpec| -> Result<RunOutcome, String> {
            let c = spec.concurrency as f64;
            let shards = spec.shards as f64;
            Ok(outcome(spec, c * 1_000.0, 300.0 + c * 6.0 / shards))
        };
        let tuned = search(start, &goal, 1, 0.03, model, |_| {}).unwrap();
        let best = &tuned.trials[tuned.best.expect("a trial meets the goal")];
        assert_eq!((best.spec.concurrency, best.spec.shards), (16, 2));
    }

    fn knobs_spec() -> RunSpec {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            knobs: crate::spec::Knobs,
        }
        let cli = <Cli as clap::Parser>::parse_from([
            "ordo-bench",
            "--storage",
            "memory",
            "--concurrency",
            "16",
        ]);
        cli.knobs.expand().unwrap().remove(0)
    }

    fn outcome(spec: &RunSpec, commits_per_s: f64, p99_us: f64) -> RunOutcome {
        let mut tally = crate::load::Tally {
            commits: (commits_per_s * spec.duration.as_secs_f64()) as u64,
            ..Default::default()
        };
        for _ in 0..98 {
            tally.histogram.record((p99_us * 500.0) as u64).unwrap();
        }
        for _ in 0..2 {
            tally.histogram.record((p99_us * 1_000.0) as u64).unwrap();
        }
        let result = RunResult::new(
            spec,
            crate::floor::Floor::default(),
            &tally,
            crate::report::Memory::default(),
        );
        RunOutcome {
            result,
            histogram: tally.histogram,
            timeline: Vec::new(),
        }
    }
}
