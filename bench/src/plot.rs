//! SVG plots of a sweep (plotters).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Plot size in pixels.
const SIZE: (u32, u32) = (900, 600);

fn drawing_error(path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot draw {}: {e}", path.display())
}

/// Throughput (x) against p99 latency (y, log scale), one line per series.
pub fn throughput_vs_p99(
    path: &Path,
    knob: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max) * 1.1;
    let y_min = points
        .clone()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        .max(1.0)
        * 0.8;
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.25;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| drawing_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("throughput against p99, by {knob}"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(|e| drawing_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("commits/s")
        .y_desc("p99 commit latency (µs)")
        .draw()
        .map_err(|e| drawing_error(path, e))?;
    for (i, (name, points)) in series.iter().enumerate() {
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
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| drawing_error(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| drawing_error(path, e))?;
    root.present().map_err(|e| drawing_error(path, e))
}

/// HdrHistogram's percentile distribution: latency (y) against
/// `1 / (1 - percentile)` on a log axis, so the tail gets room.
pub fn percentile_distribution(
    path: &Path,
    label: &str,
    histogram: &Histogram<u64>,
) -> Result<(), String> {
    let points: Vec<(f64, f64)> = histogram
        .iter_quantiles(2)
        .map(|v| {
            let q = v.quantile_iterated_to().min(0.999_999);
            (1.0 / (1.0 - q), v.value_iterated_to() as f64 / 1_000.0)
        })
        .collect();
    let x_max = points.iter().map(|p| p.0).fold(10.0, f64::max);
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| drawing_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("commit latency by percentile: {label}"),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)
        .map_err(|e| drawing_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (1/(1-p): 10 = p90, 100 = p99, 1000 = p99.9)")
        .y_desc("latency (µs)")
        .draw()
        .map_err(|e| drawing_error(path, e))?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(|e| drawing_error(path, e))?;
    root.present().map_err(|e| drawing_error(path, e))
}
