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

/// A path inside this repository, found from where revlib-lab was compiled rather than from the
/// working directory, so a notebook reads the same files whichever directory its kernel runs in.
///
/// ```
/// let p = revlib_lab::notebook::repo_path("results/full");
/// assert!(p.is_absolute() && p.ends_with("results/full"));
/// assert!(revlib_lab::notebook::repo_path("Cargo.toml").exists());
/// ```
pub fn repo_path(relative: &str) -> PathBuf {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab.parent().unwrap_or(lab).join(relative)
}

/// Directory for results and figures: `REVLIB_RESULTS` if set, else the repository's
/// `reports/`. Created if missing.
///
/// # Errors
/// [`Error::Io`] if it cannot be created.
pub fn results_dir() -> Result<PathBuf> {
    let dir = std::env::var("REVLIB_RESULTS").map(PathBuf::from).unwrap_or_else(|_| repo_path("reports"));
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

/// A notebook's headline results for the report's front page: one small table of numbers the
/// notebook computed, and the external data files it read. [`Headline::write`] stores it as
/// `<notebook>_headline.json` next to the other results; `notebooks/run.py` builds the index
/// page from these files (and adds the files' SHA-256).
///
/// ```
/// use revlib_lab::notebook::{Headline, Mode};
/// let mut h = Headline::new("Gradient error at the finest step", &["strategy", "relative error"]);
/// h.row(["backsolve".to_string(), "3.1e-8".to_string()])?;
/// assert!(h.row(["too short".to_string()]).is_err());
/// assert!(h.to_string().contains("backsolve  3.1e-8"));
/// # Ok::<(), revlib_lab::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Headline {
    /// What the table shows, in a sentence.
    pub caption: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of formatted cells, one per column.
    pub rows: Vec<Vec<String>>,
    /// External data files the notebook read (empty: generated data only).
    pub data_files: Vec<PathBuf>,
    /// Where the data came from, in words (e.g. "generated", or the loader's description).
    pub data: String,
}

impl Headline {
    /// An empty table with these columns; data "generated in the notebook" until
    /// [`Headline::data_from`] says otherwise.
    pub fn new(caption: &str, columns: &[&str]) -> Self {
        Self { caption: caption.into(), columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new(), data_files: Vec::new(), data: "generated in the notebook (no external files)".into() }
    }

    /// Append a row.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it does not have one cell per column.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) -> Result<&mut Self> {
        let cells: Vec<String> = cells.into_iter().collect();
        if cells.len() != self.columns.len() {
            return Err(Error::InvalidArgument { name: "headline row length", value: cells.len() as f64, expected: "one cell per column" });
        }
        self.rows.push(cells);
        Ok(self)
    }

    /// Record the external data: a description and the files read.
    ///
    /// # Errors
    /// [`Error::Io`] if a file does not exist (a headline never cites data it did not read).
    pub fn data_from(&mut self, description: &str, files: &[PathBuf]) -> Result<&mut Self> {
        for f in files {
            std::fs::metadata(f).map_err(Error::io(f))?;
        }
        self.data = description.into();
        self.data_files = files.iter().map(|f| f.canonicalize().unwrap_or_else(|_| f.clone())).collect();
        Ok(self)
    }

    /// Write `dir/<notebook>_headline.json` with provenance ([`write_results`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty table; [`Error::Io`] on write failure.
    pub fn write(&self, dir: &Path, notebook: &str, mode: Mode) -> Result<PathBuf> {
        if self.rows.is_empty() {
            return Err(Error::InvalidArgument { name: "headline rows", value: 0.0, expected: "at least one row" });
        }
        write_results(dir, &format!("{notebook}_headline.json"), mode, 0, self)
    }
}

impl std::fmt::Display for Headline {
    /// The caption, then the table as aligned plain text (what the notebook prints).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = |k: usize| self.rows.iter().map(|r| r[k].chars().count()).chain([self.columns[k].chars().count()]).max().unwrap_or(0);
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |cells: &[String]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
        writeln!(f, "{}", self.caption)?;
        writeln!(f, "{}", line(&self.columns).trim_end())?;
        for r in &self.rows {
            writeln!(f, "{}", line(r).trim_end())?;
        }
        writeln!(f, "data: {}", self.data)
    }
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
