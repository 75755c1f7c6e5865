//! Figures for the notebooks (feature `plot`): plotly.rs charts that render in JupyterLab and,
//! in exported HTML reports, offline.
//!
//! [`show`] emits one evcxr output with two representations: the plotly JSON MIME type
//! (drawn interactively by JupyterLab) and an HTML `div` + `Plotly.newPlot` script (what
//! nbconvert's HTML export keeps; the report builder embeds plotly.js once per page).
//! [`save_html`] writes a standalone page with plotly.js embedded, for `reports/figures/`.

use crate::error::{Error, Result};
pub use plotly;
use plotly::common::{Mode as PlotMode, Title};
use plotly::layout::{Axis, AxisType, Layout};
use plotly::{HeatMap, Plot, Scatter};
use std::path::Path;

/// Display a figure in a notebook cell. evcxr keeps one rich output per cell (the last), so
/// show one figure per cell.
pub fn show(plot: &Plot) {
    // evcxr may link a fresh copy of revlib into each cell, so a counter alone is not unique:
    // add the clock.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let id = format!("revlib-fig-{nanos:x}-{}", FIGURE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    println!(
        "EVCXR_BEGIN_CONTENT application/vnd.plotly.v1+json\n{}\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
        plot.to_json(),
        plot.to_inline_html(Some(&id))
    );
}

static FIGURE_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Write a standalone HTML page with the figure and plotly.js embedded (works offline).
///
/// # Errors
/// [`Error::Io`] on write failure.
pub fn save_html(plot: &Plot, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    std::fs::write(path, plot.to_html()).map_err(Error::io(path))
}

/// The `<script>` tags with plotly.js (and MathJax) for embedding once in a report page.
pub fn plotly_js() -> String {
    Plot::offline_js_sources()
}

/// One named series of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// x values.
    pub x: Vec<f64>,
    /// y values.
    pub y: Vec<f64>,
    /// Draw markers as well as lines.
    pub markers: bool,
}

impl From<&crate::notebook::Curve> for Series {
    fn from(c: &crate::notebook::Curve) -> Self {
        Series::points(&c.label, c.x.clone(), c.y.clone())
    }
}

impl Series {
    /// A line series.
    pub fn line(name: &str, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self { name: name.into(), x, y, markers: false }
    }
    /// A line-and-marker series.
    pub fn points(name: &str, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self { name: name.into(), x, y, markers: true }
    }
}

/// The layout every chart shares: a title, labelled axes (each linear or logarithmic), 420 px high.
fn chart_layout(title: &str, x_label: &str, y_label: &str, log_x: bool, log_y: bool) -> Layout {
    let axis = |label: &str, log: bool| {
        let a = Axis::new().title(Title::with_text(label));
        if log {
            a.type_(AxisType::Log)
        } else {
            a
        }
    };
    Layout::new().title(Title::with_text(title)).x_axis(axis(x_label, log_x)).y_axis(axis(y_label, log_y)).height(420)
}

/// A line chart with optional logarithmic axes.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: Vec<Series>, log_x: bool, log_y: bool) -> Plot {
    let mut plot = Plot::new();
    for s in series {
        let mode = if s.markers { PlotMode::LinesMarkers } else { PlotMode::Lines };
        plot.add_trace(Scatter::new(s.x, s.y).name(&s.name).mode(mode));
    }
    plot.set_layout(chart_layout(title, x_label, y_label, log_x, log_y));
    plot
}

/// A heat map of `z[i][j]` at `(x[j], y[i])`.
pub fn heatmap(title: &str, x_label: &str, y_label: &str, x: Vec<f64>, y: Vec<f64>, z: Vec<Vec<f64>>) -> Plot {
    let mut plot = Plot::new();
    plot.add_trace(HeatMap::new(x, y, z));
    plot.set_layout(chart_layout(title, x_label, y_label, false, false));
    plot
}

/// A scatter of labelled points (one marker and its label per point), for trade-offs such as
/// stable fraction against gradient error, one point per parameter value.
pub fn scatter_chart(title: &str, x_label: &str, y_label: &str, points: &[(String, f64, f64)], log_x: bool, log_y: bool) -> Plot {
    use plotly::common::Position;
    let mut plot = Plot::new();
    let trace = Scatter::new(points.iter().map(|p| p.1).collect(), points.iter().map(|p| p.2).collect())
        .mode(PlotMode::MarkersText)
        .text_array(points.iter().map(|p| p.0.clone()).collect())
        .text_position(Position::TopCenter)
        .show_legend(false);
    plot.add_trace(trace);
    plot.set_layout(chart_layout(title, x_label, y_label, log_x, log_y));
    plot
}

/// A map of categories over a grid (e.g. where a base method, its reversible version, both or
/// neither are stable): `z[i][j]` indexes `categories`, each drawn in its own colour and named
/// on the colour bar (a categorical legend, not a continuous scale).
pub fn category_map(title: &str, x_label: &str, y_label: &str, x: Vec<f64>, y: Vec<f64>, z: Vec<Vec<usize>>, categories: &[(&str, &str)]) -> Plot {
    use plotly::common::{ColorBar, ColorScale, ColorScaleElement};
    let k = categories.len().max(1) as f64;
    // Each category owns the band [i/k, (i+1)/k] of the colour scale: two stops per colour.
    let scale: Vec<ColorScaleElement> = categories
        .iter()
        .enumerate()
        .flat_map(|(i, (_, colour))| [ColorScaleElement(i as f64 / k, colour.to_string()), ColorScaleElement((i + 1) as f64 / k, colour.to_string())])
        .collect();
    let zf: Vec<Vec<f64>> = z.iter().map(|row| row.iter().map(|&c| c as f64).collect()).collect();
    let bar = ColorBar::new()
        .tick_vals((0..categories.len()).map(|i| i as f64 * (k - 1.0) / k + (k - 1.0) / (2.0 * k)).collect())
        .tick_text(categories.iter().map(|(name, _)| name.to_string()).collect());
    let mut plot = Plot::new();
    plot.add_trace(HeatMap::new(x, y, zf).color_scale(ColorScale::Vector(scale)).zmin(0.0).zmax(k - 1.0).color_bar(bar));
    plot.set_layout(chart_layout(title, x_label, y_label, false, false));
    plot
}

/// Keep at most `max` evenly spaced points of a series (so committed outputs stay small).
pub fn decimate(x: &[f64], y: &[f64], max: usize) -> (Vec<f64>, Vec<f64>) {
    if x.len() <= max || max < 2 {
        return (x.to_vec(), y.to_vec());
    }
    let idx: Vec<usize> = (0..max).map(|k| k * (x.len() - 1) / (max - 1)).collect();
    (idx.iter().map(|&i| x[i]).collect(), idx.iter().map(|&i| y[i]).collect())
}
