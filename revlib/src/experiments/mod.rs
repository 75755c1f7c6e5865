//! The talk's experiments (McCallum & Foster 2024, methods.md §4): training a neural ODE with
//! the reversible adjoint against recursive checkpointing on the white dwarf equation and on
//! Schmidt & Lipson's measured oscillator and double pendulum, and the runtime of one
//! gradient vs the number of steps.
//!
//! Each experiment has a grid of runs per [`Mode`]; the `revlib experiment` command runs a grid
//! with progress bars, one process per run (so its peak RSS is its own), appending one JSON
//! line per finished run to a results file and skipping runs already there (resume). The
//! notebooks run the quick grids themselves and load the files the command wrote.

pub mod data;
pub mod runtime;
pub mod train;

use crate::adjoint::Adjoint;
use crate::bench::Provenance;
use crate::error::{Error, Result};
use crate::notebook::Mode;
use std::io::Write;
use std::path::Path;
use train::{RunSpec, System};

/// The experiments the CLI knows.
pub const EXPERIMENTS: [&str; 3] = ["white-dwarf", "physical", "runtime"];

/// Checkpoint counts of the white dwarf table.
pub const WHITE_DWARF_CHECKPOINTS: [usize; 6] = [2, 4, 8, 16, 32, 44];

/// The white dwarf grid. Full: 4 solvers × (reversible + 6 checkpoint counts) × 3 seeds ×
/// 1000 steps, the talk's grid. Default: midpoint and RK4, c ∈ {4, 8, 44}, one seed, 200 steps.
/// Quick: midpoint, c ∈ {8, 44}, one seed, 20 steps.
pub fn white_dwarf_grid(mode: Mode) -> Vec<RunSpec> {
    let (solvers, cs, seeds, steps): (&[&str], &[usize], &[u64], usize) = match mode {
        Mode::Quick => (&["midpoint"], &[8, 44], &[0], 20),
        Mode::Default => (&["midpoint", "rk4"], &[4, 8, 44], &[0], 200),
        Mode::Full => (&["euler", "midpoint", "ralston3", "rk4"], &WHITE_DWARF_CHECKPOINTS, &[0, 1, 2], 1000),
    };
    grid(System::WhiteDwarf, solvers, cs, seeds, steps)
}

/// The oscillator and pendulum grid. Full (trimmed from the talk's 10 000 steps, 5 seeds and
/// c ∈ {2, …, 32} to fit about an hour on 2 cores): oscillator with the 4 solvers, pendulum with
/// Bosh3, c ∈ {4, 8, 16, 31/32}, 2 seeds, 2000 steps. Default: midpoint oscillator and Bosh3
/// pendulum, c ∈ {8, 31/32}, 1 seed, 100 steps. Quick: the same with c = 8 and 10 steps.
pub fn physical_grid(mode: Mode) -> Vec<RunSpec> {
    let (osc_solvers, cs, seeds, steps): (&[&str], &[usize], &[u64], usize) = match mode {
        Mode::Quick => (&["midpoint"], &[8], &[0], 10),
        Mode::Default => (&["midpoint"], &[8, 32], &[0], 100),
        Mode::Full => (&["euler", "midpoint", "ralston3", "rk4"], &[4, 8, 16, 32], &[0, 1], 2000),
    };
    // c(499) = 31 for the oscillator, 32 for the pendulum, as in the talk.
    let osc_cs: Vec<usize> = cs.iter().map(|&c| if c == 32 { 31 } else { c }).collect();
    let mut g = grid(System::Oscillator, osc_solvers, &osc_cs, seeds, steps);
    g.extend(grid(System::Pendulum, &["bosh3"], cs, seeds, steps));
    g
}

/// The runtime grid: numbers of steps and strategies (reversible, full storage, and
/// checkpointing with c ∈ {2, 4, 8, ⌈√n⌉}).
pub fn runtime_grid(mode: Mode) -> Vec<(usize, Adjoint)> {
    let ns: &[usize] = mode.pick(&[100, 200, 500], &[100, 200, 400, 600, 800, 1000, 2000], &[100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 2000, 5000, 10000]);
    let mut out = Vec::new();
    for &n in ns {
        let mut cs = vec![2, 4, 8, runtime::sqrt_checkpoints(n)];
        cs.dedup();
        out.push((n, Adjoint::Reversible));
        out.push((n, Adjoint::FullStorage));
        out.extend(cs.into_iter().map(|c| (n, Adjoint::Checkpoint(c))));
    }
    out
}

fn grid(system: System, solvers: &[&str], cs: &[usize], seeds: &[u64], train_steps: usize) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for s in solvers {
        for &seed in seeds {
            let adjoints = std::iter::once(Adjoint::Reversible).chain(cs.iter().map(|&c| Adjoint::Checkpoint(c)));
            for adjoint in adjoints {
                out.push(RunSpec { system, solver: s.to_string(), adjoint, seed, train_steps });
            }
        }
    }
    out
}

/// Read a JSON-lines results file (missing file: no records). Lines that do not parse as `T`
/// are an error with their line number.
///
/// # Errors
/// [`Error::Io`] on a read failure or a malformed line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { path: path.display().to_string(), reason: e.to_string() }),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::Io { path: path.display().to_string(), reason: format!("line {}: {e}", i + 1) }))
        .collect()
}

/// Append one record, with provenance, as a JSON line (and flush it, so an interrupted run
/// loses at most the run in progress).
///
/// # Errors
/// [`Error::Io`] on a write failure.
pub fn append_jsonl<T: serde::Serialize>(path: &Path, record: &T, provenance: &Provenance) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), reason: e.to_string() };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut v = serde_json::to_value(record).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })?;
    v["provenance"] = serde_json::to_value(provenance).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    writeln!(f, "{v}").map_err(io)?;
    f.flush().map_err(io)
}

/// A number the authors published (one row of `data/published/mccallum-foster-2024.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    /// `white_dwarf`, `physical` or `runtime`.
    pub experiment: String,
    /// `white_dwarf`, `oscillator`, `pendulum`, `runtime_mlp_1_10_1`.
    pub system: String,
    /// Base solver.
    pub solver: String,
    /// Adjoint key (`reversible`, `checkpoint_<c>`, `checkpoint_sqrt`).
    pub adjoint: String,
    /// `runtime`, `best_loss`, `mean_accepted_steps`, `sec_per_grad_n<n>`.
    pub metric: String,
    /// Mean over seeds.
    pub mean: f64,
    /// Standard deviation over seeds, where published.
    pub std: Option<f64>,
    /// Unit.
    pub unit: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// The published numbers of the ODE experiments, with their source
/// (`data/published/mccallum-foster-2024.json`, compiled into revlib).
///
/// # Errors
/// [`Error::Io`] if the embedded file does not parse (a build defect).
pub fn published() -> Result<(String, Vec<Published>)> {
    let text = include_str!("../../../data/published/mccallum-foster-2024.json");
    let io = |e: serde_json::Error| Error::Io { path: "data/published/mccallum-foster-2024.json".into(), reason: e.to_string() };
    let doc: serde_json::Value = serde_json::from_str(text).map_err(io)?;
    let records = serde_json::from_value(doc["records"].clone()).map_err(io)?;
    Ok((doc["source"].as_str().unwrap_or("").to_string(), records))
}

/// The published number for (experiment system, solver, adjoint, metric), if any.
pub fn published_value(records: &[Published], system: &str, solver: &str, adjoint: &str, metric: &str) -> Option<(f64, Option<f64>)> {
    records.iter().find(|r| r.system == system && r.solver == solver && r.adjoint == adjoint && r.metric == metric).map(|r| (r.mean, r.std))
}
