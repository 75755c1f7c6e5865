//! External data: where it lives, the Schmidt & Lipson (2009) file format, and resampling.
//!
//! The measurements are not part of revlib. Get them from the supplementary material of
//! M. Schmidt and H. Lipson, "Distilling Free-Form Natural Laws from Experimental Data",
//! *Science* 324 (2009), doi:10.1126/science.1165893 (a byte-identical copy lives in the
//! `data/schmidt-lipson-exp-data/` folder of erwincoumans/tiny-differentiable-simulator), and
//! put them in `<data dir>/schmidt-lipson/` — or run `make data`, which fetches them (and
//! WikiText-2) with SHA-256 checks into `data/external/`. See [`data_dir_for`] for the order in
//! which the directories are tried.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Environment variable naming the external data directory (it holds `schmidt-lipson/` and
/// `wikitext-2/`).
pub const DATA_DIR_VAR: &str = "REVLIB_DATA_DIR";
/// When this environment variable is `1`, a missing data file is an error instead of a
/// fallback to generated data (CI sets it, so missing data cannot pass silently).
pub const REQUIRE_DATA_VAR: &str = "REVLIB_REQUIRE_DATA";

/// The external data directory: `$REVLIB_DATA_DIR` if set, else `../shared/data` next to the
/// workspace revlib was built from (where the project's tests and benchmarks find it).
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_VAR) {
        Some(d) => PathBuf::from(d),
        None => {
            let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
            d.canonicalize().unwrap_or(d)
        }
    }
}

/// Where `make data` puts the data sets it fetches: `data/external/` in this repository.
pub fn fetched_dir() -> PathBuf {
    crate::notebook::repo_path("data/external")
}

/// The directory that holds the data set `name` (`wikitext-2`, `schmidt-lipson`) as a
/// sub-folder: [`fetched_dir`] when `make data` fetched it there, else [`data_dir`].
pub fn data_dir_for(name: &str) -> PathBuf {
    let fetched = fetched_dir();
    if fetched.join(name).is_dir() {
        fetched
    } else {
        data_dir()
    }
}

/// Whether missing data must be an error (`REVLIB_REQUIRE_DATA=1`).
pub fn data_required() -> bool {
    std::env::var(REQUIRE_DATA_VAR).is_ok_and(|v| v == "1")
}

/// One trial of a Schmidt & Lipson file: times and states (rows), with the state column names
/// from the header.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    /// Trial id (first column).
    pub id: i64,
    /// Times (second column), strictly increasing.
    pub t: Vec<f64>,
    /// State rows (the columns the header names; derivative columns dropped).
    pub states: Vec<Vec<f64>>,
    /// State names from the header, e.g. `["o1", "o2", "w1", "w2"]`.
    pub names: Vec<String>,
}

impl Trial {
    /// The trial shifted to start at t = 0 and linearly interpolated onto `n` equally spaced
    /// points of `[0, t_end]`, each state divided by `scale`. Returns `(grid, states)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `n < 2`, `t_end` is not positive, or the trial is shorter
    /// than `t_end`.
    pub fn resample(&self, n: usize, t_end: f64, scale: f64) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        if n < 2 {
            return Err(Error::InvalidArgument { name: "n", value: n as f64, expected: "at least 2 points" });
        }
        if self.t.len() < 2 || self.states.len() != self.t.len() {
            return Err(Error::InvalidArgument { name: "trial length", value: self.t.len() as f64, expected: "at least 2 times, one state per time" });
        }
        let t0 = self.t[0];
        let span = self.t[self.t.len() - 1] - t0;
        if !(t_end > 0.0 && t_end <= span) {
            return Err(Error::InvalidArgument { name: "t_end", value: t_end, expected: "in (0, duration of the trial]" });
        }
        let grid: Vec<f64> = (0..n).map(|i| t_end * i as f64 / (n - 1) as f64).collect();
        let mut k = 0;
        let states = grid
            .iter()
            .map(|&g| {
                while k + 2 < self.t.len() && self.t[k + 1] - t0 < g {
                    k += 1;
                }
                let (ta, tb) = (self.t[k] - t0, self.t[k + 1] - t0);
                let w = ((g - ta) / (tb - ta)).clamp(0.0, 1.0);
                self.states[k].iter().zip(&self.states[k + 1]).map(|(a, b)| ((1.0 - w) * a + w * b) / scale).collect()
            })
            .collect();
        Ok((grid, states))
    }
}

/// Read a Schmidt & Lipson file: a header line naming the state variables (`% x1 x2 v1 v2`;
/// the leading `trial` and `t` columns are not named), then rows `trial t state… [derivatives…]`.
/// Rows are grouped by trial, in file order.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Parse`] on a malformed row or a trial whose times do not
/// increase (with the line number), or an empty file.
pub fn load_schmidt_lipson(path: &Path) -> Result<Vec<Trial>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let bad = |line: usize, reason: String| Error::Parse { path: path.to_path_buf(), line, reason };
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let names: Vec<String> = header.trim_start_matches('%').split_whitespace().map(str::to_string).collect();
    if names.is_empty() {
        return Err(bad(1, format!("`{header}` names no state (expected e.g. `% x1 x2 v1 v2`)")));
    }
    let d = names.len();
    let mut trials: Vec<Trial> = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(i + 2, format!("`{line}` is not all numbers")))?;
        if row.len() < 2 + d {
            return Err(bad(i + 2, format!("{} columns, expected trial, t and {d} states", row.len())));
        }
        if let Some(x) = row.iter().find(|x| !x.is_finite()) {
            return Err(bad(i + 2, format!("non-finite value {x}")));
        }
        if row[0].fract() != 0.0 || row[0].abs() > 2f64.powi(53) {
            return Err(bad(i + 2, format!("trial id {} is not an integer", row[0])));
        }
        let id = row[0] as i64;
        let tr = match trials.last_mut() {
            Some(tr) if tr.id == id => tr,
            _ => {
                trials.push(Trial { id, t: Vec::new(), states: Vec::new(), names: names.clone() });
                let k = trials.len() - 1;
                &mut trials[k]
            }
        };
        if tr.t.last().is_some_and(|&last| row[1] <= last) {
            return Err(bad(i + 2, format!("t = {} after {} (times must increase within a trial)", row[1], tr.t[tr.t.len() - 1])));
        }
        tr.t.push(row[1]);
        tr.states.push(row[2..2 + d].to_vec());
    }
    if trials.iter().all(|t| t.t.len() < 2) {
        return Err(bad(0, "fewer than two rows in every trial".into()));
    }
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resamples_a_small_file() {
        let dir = std::env::temp_dir().join(format!("revlib-sl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.txt");
        std::fs::write(&p, "% a b\r\n0 1.0 0 10 99\r\n0 2.0 2 20 99\r\n0 3.0 4 40 99\r\n1 0.0 7 7 7\r\n1 1.0 7 7 7\r\n").unwrap();
        let trials = load_schmidt_lipson(&p).unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].states, vec![vec![0.0, 10.0], vec![2.0, 20.0], vec![4.0, 40.0]]);
        let (grid, s) = trials[0].resample(5, 2.0, 2.0).unwrap();
        assert_eq!(grid, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(s[1], vec![0.5, 7.5]);
        assert_eq!(s[3], vec![1.5, 15.0]);
        assert!(trials[0].resample(5, 2.5, 1.0).is_err());
        std::fs::write(&p, "% a\n0 1.0 0\n0 1.0 1\n").unwrap();
        let err = load_schmidt_lipson(&p).unwrap_err().to_string();
        assert!(err.contains(":3: t = 1 after 1"), "{err}");
    }
}
