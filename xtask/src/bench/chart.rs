//! The SVG chart written beside each comparison's markdown table: per contender, the median
//! RPS and the median p99 as bars, with the spread of the rounds (lowest to highest) as
//! whiskers, so a reader sees at a glance which differences are larger than the noise.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::Sample;

/// One panel's figures per contender: (median, lowest round, highest round).
pub(super) type Spread = Vec<(f64, f64, f64)>;

/// The median, lowest and highest of each contender's `value` over its rounds.
pub(super) fn spread<T>(rounds: &[Vec<T>], value: impl Fn(&T) -> f64) -> Spread {
    rounds
        .iter()
        .map(|v| {
            let mut xs: Vec<f64> = v.iter().map(&value).collect();
            xs.sort_by(f64::total_cmp);
            let median = xs.get(xs.len() / 2).copied().unwrap_or(0.0);
            let low = xs.first().copied().unwrap_or(0.0);
            let high = xs.last().copied().unwrap_or(0.0);
            (median, low, high)
        })
        .collect()
}

/// Writes `path`: RPS above, p99 (ms) below, one horizontal bar per contender in `names`
/// order (names stay readable however long); `rounds[i]` holds contender i's rounds.
pub(super) fn write(
    path: &Path,
    title: &str,
    names: &[String],
    rounds: &[Vec<Sample>],
) -> Result<()> {
    write_panels(
        path,
        title,
        names,
        &[
            (
                "requests per second (bar: median; whiskers: lowest and highest round)",
                spread(rounds, |s| s.rps),
            ),
            (
                "p99 latency in ms (bar: median; whiskers: lowest and highest round)",
                spread(rounds, |s| s.p99_us / 1000.0),
            ),
        ],
    )
}

/// Writes `path` with one panel per (caption, figures), stacked.
pub(super) fn write_panels(
    path: &Path,
    title: &str,
    names: &[String],
    panels: &[(&str, Spread)],
) -> Result<()> {
    let rows = u32::try_from(names.len()).unwrap_or(16).clamp(1, 16);
    let panel_height = 70 + 34 * rows;
    let count = u32::try_from(panels.len()).unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (960, 40 + count * panel_height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(draw_error)?;
    for (area, (caption, values)) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        panel(area, caption, names, values)?;
    }
    root.present().map_err(draw_error)
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    names: &[String],
    values: &Spread,
) -> Result<()> {
    let right = values
        .iter()
        .map(|v| v.2)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.1;
    // The first contender is drawn on top: row `last - i` holds contender i.
    let last = names.len().saturating_sub(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 13))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(250)
        .build_cartesian_2d(0f64..right, (0..last).into_segmented())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(names.len().max(1))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(row) => names.get(last - row).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_style(("sans-serif", 12))
        .x_label_formatter(&|v| match right {
            r if r >= 100.0 => format!("{v:.0}"),
            r if r >= 10.0 => format!("{v:.1}"),
            _ => format!("{v:.2}"),
        })
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(
            Histogram::horizontal(&chart)
                .style(RGBColor(70, 110, 170).filled())
                .margin(6)
                .data(values.iter().enumerate().map(|(i, v)| (last - i, v.0))),
        )
        .map_err(draw_error)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, &(median, low, high))| {
            ErrorBar::new_horizontal(
                SegmentValue::CenterOf(last - i),
                low,
                median,
                high,
                BLACK.stroke_width(2),
                10,
            )
        }))
        .map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}
