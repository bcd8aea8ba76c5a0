//! SVG plots of runs and sweeps (plotters), made to be read: both axes
//! carry their values (1-2-5 ticks, also on log axes, where plotters alone
//! labels only powers of ten), every point says which knob value it was
//! measured at, and percentile axes say p50, p90, p99, p99.9.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// An axis whose ticks are exactly `ticks` (plotters' own choice on a log
/// axis is powers of ten only, so a range within one decade had none).
struct Ticked<R> {
    inner: R,
    ticks: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }

    fn axis_pixel_range(&self, limit: (i32, i32)) -> std::ops::Range<i32> {
        self.inner.axis_pixel_range(limit)
    }
}

/// A linear axis over `[min, max]` ticked at `ticks`.
fn linear_axis(min: f64, max: f64, ticks: Vec<f64>) -> Ticked<RangedCoordf64> {
    Ticked {
        inner: (min..max).into(),
        ticks,
    }
}

/// A log axis over `[min, max]` ticked at `ticks`.
fn log_axis(min: f64, max: f64, ticks: Vec<f64>) -> Ticked<LogCoord<f64>> {
    Ticked {
        inner: (min..max).log_scale().into(),
        ticks,
    }
}

/// Plot size in pixels.
const SIZE: (u32, u32) = (960, 640);

fn drawing_error(path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot draw {}: {e}", path.display())
}

/// One measured point and the knob values it was measured at.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Horizontal value.
    pub x: f64,
    /// Vertical value.
    pub y: f64,
    /// What the point is (`"C=64"`, `"batch 128"`), drawn beside it.
    pub label: String,
}

/// A line of points, with its name in the legend.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<Point>,
}

/// What the axes of an [`xy`] plot say.
#[derive(Clone, Copy, Debug)]
pub struct Axes<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Horizontal axis description.
    pub x_desc: &'a str,
    /// Vertical axis description.
    pub y_desc: &'a str,
    /// The vertical axis is logarithmic (latency), else linear.
    pub y_log: bool,
}

/// Latency (y) against throughput or offered load (x), one line per
/// series, every point labelled.
pub fn xy(path: &Path, axes: Axes<'_>, series: &[Series]) -> Result<(), String> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.x).fold(1.0, f64::max) * 1.12;
    let y_low = points().map(|p| p.y).fold(f64::MAX, f64::min).max(1e-3);
    let y_high = points().map(|p| p.y).fold(1e-3, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| drawing_error(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(axes.title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80);
    let x_range = linear_axis(0.0, x_max, linear_ticks(x_max));
    if axes.y_log {
        let (y_min, y_max) = (y_low * 0.8, y_high * 1.25);
        let y_range = log_axis(y_min, y_max, log_ticks(y_min, y_max));
        let mut chart = builder
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| drawing_error(path, e))?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .x_label_formatter(&|v| format_count(*v))
            .y_label_formatter(&|v| format_latency(*v))
            .draw()
            .map_err(|e| drawing_error(path, e))?;
        draw_series(path, &mut chart, series)
    } else {
        let y_max = y_high * 1.15;
        let y_range = linear_axis(0.0, y_max, linear_ticks(y_max));
        let mut chart = builder
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| drawing_error(path, e))?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .x_label_formatter(&|v| format_count(*v))
            .y_label_formatter(&|v| format_count(*v))
            .draw()
            .map_err(|e| drawing_error(path, e))?;
        draw_series(path, &mut chart, series)
    }?;
    root.present().map_err(|e| drawing_error(path, e))
}

/// Lines, labelled points and the legend of [`xy`].
fn draw_series<'a, X, Y>(
    path: &Path,
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, line) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let xy = || line.points.iter().map(|p| (p.x, p.y));
        chart
            .draw_series(LineSeries::new(xy(), color.stroke_width(2)))
            .map_err(|e| drawing_error(path, e))?
            .label(line.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new((p.x, p.y), 4, color.filled())),
            )
            .map_err(|e| drawing_error(path, e))?;
        // Labels only where there is one (a long run labels every tenth
        // point, not thousands of empty texts).
        chart
            .draw_series(line.points.iter().filter(|p| !p.label.is_empty()).map(|p| {
                EmptyElement::at((p.x, p.y))
                    + Text::new(p.label.clone(), (6, -16), ("sans-serif", 13).into_font())
            }))
            .map_err(|e| drawing_error(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| drawing_error(path, e))
}

/// The percentiles marked on a percentile axis, as `1 / (1 - q)`.
const PERCENTILE_TICKS: [(f64, &str); 6] = [
    (2.0, "p50"),
    (10.0, "p90"),
    (100.0, "p99"),
    (1_000.0, "p99.9"),
    (10_000.0, "p99.99"),
    (100_000.0, "p99.999"),
];

/// HdrHistogram's percentile distribution of one or more runs: latency (y,
/// log) against the percentile (x, as `1 / (1 - q)` on a log axis so the
/// tail gets room, labelled p50, p90, p99, p99.9 ...).
pub fn percentile_distribution(
    path: &Path,
    title: &str,
    runs: &[(String, &Histogram<u64>)],
) -> Result<(), String> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|(name, histogram)| {
            let points = histogram
                .iter_quantiles(2)
                .map(|v| {
                    let q = v.quantile_iterated_to().min(0.999_999);
                    (
                        1.0 / (1.0 - q),
                        v.value_iterated_to().max(1) as f64 / 1_000.0,
                    )
                })
                .filter(|&(x, _)| x >= 1.5)
                .collect();
            (name.clone(), points)
        })
        .collect();
    let all = || lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = all().map(|p| p.0).fold(100.0, f64::max) * 1.2;
    let y_min = all().map(|p| p.1).fold(f64::MAX, f64::min).max(1e-3) * 0.8;
    let y_max = all().map(|p| p.1).fold(1e-3, f64::max) * 1.25;
    let x_ticks: Vec<f64> = PERCENTILE_TICKS
        .iter()
        .map(|&(x, _)| x)
        .filter(|&x| x <= x_max)
        .collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| drawing_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            log_axis(1.5, x_max, x_ticks),
            log_axis(y_min, y_max, log_ticks(y_min, y_max)),
        )
        .map_err(|e| drawing_error(path, e))?;
    chart
        .configure_mesh()
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .x_desc("percentile")
        .y_desc("commit latency (µs)")
        .x_label_formatter(&|v| percentile_name(*v))
        .y_label_formatter(&|v| format_latency(*v))
        .draw()
        .map_err(|e| drawing_error(path, e))?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| drawing_error(path, e))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| drawing_error(path, e))?;
    root.present().map_err(|e| drawing_error(path, e))
}

/// `p50`, `p99.9`: the name of a percentile axis position.
fn percentile_name(x: f64) -> String {
    PERCENTILE_TICKS
        .iter()
        .find(|(tick, _)| (tick - x).abs() < 1e-6 * tick)
        .map_or_else(
            || format!("p{}", trim(100.0 * (1.0 - 1.0 / x))),
            |(_, name)| name.to_string(),
        )
}

/// Ticks at 0 and steps of 1, 2 or 5 × 10^k up to `max`, four to ten of
/// them.
pub fn linear_ticks(max: f64) -> Vec<f64> {
    if max.is_nan() || max <= 0.0 {
        return vec![0.0];
    }
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&step| max / step <= 10.0)
        .unwrap_or(10.0 * magnitude);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|&v| v <= max * (1.0 + 1e-9))
        .collect()
}

/// Ticks for a log axis over `[min, max]`: 1, 2 and 5 × 10^k, or every
/// integer multiple of 10^k when that would give fewer than three.
pub fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    if !(min > 0.0 && max > min) {
        return vec![min.max(1e-3)];
    }
    let in_range = |multiples: &[f64]| -> Vec<f64> {
        let low = min.log10().floor() as i32;
        let high = max.log10().ceil() as i32;
        let mut ticks = Vec::new();
        for k in low..=high {
            for m in multiples {
                let v = m * 10f64.powi(k);
                if v >= min && v <= max {
                    ticks.push(v);
                }
            }
        }
        ticks
    };
    let ticks = in_range(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    let ticks = in_range(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if ticks.len() >= 2 {
        return ticks;
    }
    vec![min, (min * max).sqrt(), max]
}

/// `1.2M`, `350K`, `64`: a count or a rate on an axis.
pub fn format_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}K", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// A latency in µs on an axis: `250`, `1,500`, `0.5`.
pub fn format_latency(v: f64) -> String {
    if v >= 1_000.0 {
        let whole = v.round() as u64;
        let (thousands, rest) = (whole / 1_000, whole % 1_000);
        format!("{thousands},{rest:03}")
    } else {
        trim(v)
    }
}

/// At most two decimals, without trailing zeros.
fn trim(v: f64) -> String {
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text elements of an SVG file.
    fn texts(path: &Path) -> Vec<String> {
        let svg = std::fs::read_to_string(path).unwrap();
        svg.split("<text")
            .skip(1)
            .filter_map(|rest| {
                let body = rest.split_once('>')?.1;
                Some(body.split_once("</text>")?.0.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            linear_ticks(230_000.0),
            vec![0.0, 50_000.0, 100_000.0, 150_000.0, 200_000.0]
        );
        assert_eq!(
            log_ticks(180.0, 6_000.0),
            vec![200.0, 500.0, 1_000.0, 2_000.0, 5_000.0]
        );
        // A narrow range still gets ticks.
        let narrow = log_ticks(300.0, 700.0);
        assert!(narrow.len() >= 3, "{narrow:?}");
        assert_eq!(format_count(226_067.0), "226.07K");
        assert_eq!(format_latency(1_500.0), "1,500");
        assert_eq!(percentile_name(1_000.0), "p99.9");
    }

    /// Every plot kind has values on both axes and labels on its points:
    /// the throughput-p99 plot of a sweep once had none on its latency
    /// axis.
    #[test]
    fn every_plot_kind_has_tick_labels_on_both_axes_and_labelled_points() {
        let dir = tempfile::tempdir().unwrap();
        // Latency against throughput, two series over a narrow latency
        // range (less than a decade, where plotters alone drew no ticks).
        let series = vec![
            Series {
                name: "fsync always".into(),
                points: vec![
                    Point {
                        x: 2_500.0,
                        y: 380.0,
                        label: "C=1".into(),
                    },
                    Point {
                        x: 150_000.0,
                        y: 650.0,
                        label: "C=64".into(),
                    },
                ],
            },
            Series {
                name: "fsync group:200us".into(),
                points: vec![
                    Point {
                        x: 2_300.0,
                        y: 420.0,
                        label: "C=1".into(),
                    },
                    Point {
                        x: 160_000.0,
                        y: 700.0,
                        label: "C=64".into(),
                    },
                ],
            },
        ];
        let path = dir.path().join("xy.svg");
        let axes = Axes {
            title: "throughput against p99, by fsync",
            x_desc: "commits/s",
            y_desc: "p99 commit latency (µs)",
            y_log: true,
        };
        xy(&path, axes, &series).unwrap();
        let text = texts(&path);
        for expected in [
            "400",
            "500",
            "600",
            "700",
            "40K",
            "100K",
            "160K",
            "C=1",
            "C=64",
            "fsync always",
            "fsync group:200us",
            "commits/s",
        ] {
            assert!(
                text.iter().any(|t| t == expected),
                "{expected} missing from {text:?}"
            );
        }
        // Linear vertical axis.
        let path = dir.path().join("xy-linear.svg");
        xy(
            &path,
            Axes {
                y_log: false,
                ..axes
            },
            &series,
        )
        .unwrap();
        let text = texts(&path);
        for expected in ["0", "200", "400", "600", "C=64"] {
            assert!(
                text.iter().any(|t| t == expected),
                "{expected} missing from {text:?}"
            );
        }
        // Percentile distribution of two runs.
        let mut fast = crate::floor::new_histogram();
        let mut slow = crate::floor::new_histogram();
        for i in 0..100_000u64 {
            fast.record(300_000 + (i % 1000) * 400).unwrap();
            slow.record(600_000 + (i % 1000) * 3_000).unwrap();
        }
        let path = dir.path().join("percentiles.svg");
        percentile_distribution(
            &path,
            "commit latency by percentile",
            &[("C=1".into(), &fast), ("C=64".into(), &slow)],
        )
        .unwrap();
        let text = texts(&path);
        for expected in [
            "p50", "p90", "p99", "p99.9", "500", "1,000", "2,000", "C=1", "C=64",
        ] {
            assert!(
                text.iter().any(|t| t == expected),
                "{expected} missing from {text:?}"
            );
        }
    }
}
