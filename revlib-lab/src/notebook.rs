//! Support for the notebooks and experiment drivers: run size (quick / default / full) and
//! results files with provenance.

use crate::provenance::Provenance;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// How big a run is. Notebooks read it from the `REVLIB_MODE` environment variable
/// (`quick`, `default` or `full`; unset means `default`). CI executes every notebook in
/// `quick` mode; the main job runs `default`; `full` reproduces the talk's scale from the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Small sizes, seconds per cell.
    Quick,
    /// The report's sizes (all notebooks in about 30 minutes on 2 cores).
    Default,
    /// The talk's sizes (CLI runs).
    Full,
}

impl Mode {
    /// Read `REVLIB_MODE`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for an unknown value.
    pub fn from_env() -> Result<Self> {
        match std::env::var("REVLIB_MODE") {
            Err(_) => Ok(Mode::Default),
            Ok(v) if v.is_empty() => Ok(Mode::Default),
            Ok(v) => Self::parse(&v),
        }
    }
    /// Parse `quick`, `default` or `full`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for another name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "quick" => Ok(Mode::Quick),
            "default" => Ok(Mode::Default),
            "full" => Ok(Mode::Full),
            other => Err(Error::UnknownName { what: "mode (REVLIB_MODE or --mode)", value: other.into(), expected: "quick, default, full".into() }),
        }
    }
    /// Pick a size by mode.
    pub fn pick<T>(self, quick: T, default: T, full: T) -> T {
        match self {
            Mode::Quick => quick,
            Mode::Default => default,
            Mode::Full => full,
        }
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        self.pick("quick", "default", "full")
    }
}

/// Directory for results and figures: `REVLIB_RESULTS` if set, else `../reports` (relative to
/// a notebook in `notebooks/`). Created if missing.
///
/// # Errors
/// [`Error::Io`] if it cannot be created.
pub fn results_dir() -> Result<PathBuf> {
    let dir = std::env::var("REVLIB_RESULTS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("../reports"));
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    Ok(dir)
}

/// A labelled curve $y(x)$: the unit of most notebook results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Abscissae.
    pub x: Vec<f64>,
    /// Ordinates.
    pub y: Vec<f64>,
}

impl Curve {
    /// A curve from its parts.
    pub fn new(label: &str, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self { label: label.into(), x, y }
    }
}

/// Write `value` as pretty JSON to `dir/name`, wrapped with provenance:
/// `{"provenance": …, "results": value}`.
///
/// # Errors
/// [`Error::Io`] on write failure.
pub fn write_results<T: serde::Serialize>(dir: &Path, name: &str, mode: Mode, seed: u64, value: &T) -> Result<PathBuf> {
    let path = dir.join(name);
    let doc = serde_json::json!({ "provenance": Provenance::collect(seed, mode.name()), "results": value });
    let text = serde_json::to_string_pretty(&doc).map_err(Error::json(&path))?;
    std::fs::write(&path, text).map_err(Error::io(&path))?;
    Ok(path)
}

/// A number with 3 significant digits (scientific notation outside [1e-3, 1e5)); whole
/// numbers below 1e9 print as integers.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    if x.fract() == 0.0 && x.abs() < 1e9 {
        return format!("{}", x as i64);
    }
    let a = x.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}
