//! The talk's experiments (McCallum & Foster, arXiv:2410.11648): training a neural ODE with
//! the reversible adjoint against recursive checkpointing on the white dwarf equation and on
//! Schmidt & Lipson's measured oscillator and double pendulum, and the runtime of one
//! gradient vs the number of steps.
//!
//! Each experiment has a grid of runs per [`Mode`]; the `revlib experiment` command runs a grid
//! with progress bars, one process per run (so its peak RSS is its own), appending one JSON
//! line per finished run to a results file and skipping runs already there (resume). The
//! notebooks run the quick grids themselves and load the files the command wrote.

pub mod data;
pub mod lm;
pub mod runtime;
pub mod train;
pub mod wikitext;

pub use crate::results::{append_jsonl, append_jsonl_unique, read_jsonl};

use revlib::Adjoint;
use crate::error::{Error, Result};
use crate::notebook::Mode;
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

/// The talk's checkpoint counts for the oscillator and pendulum (c(499) = 31 for the
/// oscillator, 32 for the pendulum).
pub const PHYSICAL_CHECKPOINTS: [usize; 5] = [2, 4, 8, 16, 32];

/// The oscillator and pendulum grid. Full: the talk's 10 000 training steps and checkpoint
/// counts c ∈ {2, 4, 8, 16, 31/32}; the pendulum (Bosh3) and the midpoint oscillator with the
/// talk's 5 seeds; the Euler, Ralston3 and RK4 oscillators with 2 seeds (the one trim, to fit
/// about two hours on 2 cores with `--jobs 2`). Default: midpoint oscillator and Bosh3
/// pendulum, c ∈ {8, 31/32}, 1 seed, 100 steps. Quick: the same with c = 8 and 10 steps.
pub fn physical_grid(mode: Mode) -> Vec<RunSpec> {
    // c(499) = 31 for the oscillator, 32 for the pendulum, as in the talk.
    let osc = |cs: &[usize]| -> Vec<usize> { cs.iter().map(|&c| if c == 32 { 31 } else { c }).collect() };
    match mode {
        Mode::Quick => {
            let mut g = grid(System::Oscillator, &["midpoint"], &[8], &[0], 10);
            g.extend(grid(System::Pendulum, &["bosh3"], &[8], &[0], 10));
            g
        }
        Mode::Default => {
            let mut g = grid(System::Oscillator, &["midpoint"], &osc(&[8, 32]), &[0], 100);
            g.extend(grid(System::Pendulum, &["bosh3"], &[8, 32], &[0], 100));
            g
        }
        Mode::Full => {
            let five = [0, 1, 2, 3, 4];
            let mut g = grid(System::Oscillator, &["midpoint"], &osc(&PHYSICAL_CHECKPOINTS), &five, 10_000);
            g.extend(grid(System::Oscillator, &["euler", "ralston3", "rk4"], &osc(&PHYSICAL_CHECKPOINTS), &[0, 1], 10_000));
            g.extend(grid(System::Pendulum, &["bosh3"], &PHYSICAL_CHECKPOINTS, &five, 10_000));
            g
        }
    }
}

/// The runtime grid: numbers of steps and strategies (reversible, full storage, and
/// checkpointing with c ∈ {2, 4, 8, ⌈√n⌉, 44}, with the offline revolve schedule and — in
/// default and full mode — the online one that adaptive steps need, as diffrax uses).
pub fn runtime_grid(mode: Mode) -> Vec<(usize, Adjoint)> {
    let ns: &[usize] = mode.pick(&[100, 200, 500], &[100, 200, 400, 600, 800, 1000, 2000], &[100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 2000, 5000, 10000]);
    let mut out = Vec::new();
    for &n in ns {
        let mut cs = vec![2, 4, 8, runtime::sqrt_checkpoints(n), 44];
        cs.sort_unstable();
        cs.dedup();
        out.push((n, Adjoint::Reversible));
        out.push((n, Adjoint::FullStorage));
        out.extend(cs.iter().map(|&c| (n, Adjoint::Checkpoint(c))));
        if mode != Mode::Quick {
            out.extend(cs.iter().map(|&c| (n, Adjoint::CheckpointOnline(c))));
        }
    }
    out
}

/// Which of two measured quantities is smaller, claimed only where the measurements allow it:
/// `Some(Less)` when `a` is below `b` by more than the sum of their spreads, `Some(Greater)` for
/// the reverse, `None` ("no verdict") otherwise. The spreads are sample standard deviations
/// (divisor n − 1) over seeds or repeats, each from at least two samples: with two to five seeds
/// the population standard deviation of the authors' tables would understate them.
pub fn separated(a: &[f64], b: &[f64]) -> Option<std::cmp::Ordering> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let sample = |xs: &[f64]| {
        let (m, s) = mean_std(xs);
        let n = xs.len() as f64;
        (m, s * (n / (n - 1.0)).sqrt())
    };
    let ((ma, sa), (mb, sb)) = (sample(a), sample(b));
    if (ma - mb).abs() > sa + sb {
        ma.partial_cmp(&mb)
    } else {
        None
    }
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
/// [`Error::Json`] if the embedded file does not parse (a build defect).
pub fn published() -> Result<(String, Vec<Published>)> {
    parse_published(include_str!("../../../data/published/mccallum-foster-2024.json"), "data/published/mccallum-foster-2024.json")
}

/// `(source, records)` of a published-numbers file (`{"source": …, "records": [...]}`).
pub(crate) fn parse_published<T: serde::de::DeserializeOwned>(text: &str, path: &str) -> Result<(String, Vec<T>)> {
    let io = |e: serde_json::Error| Error::Json { path: path.into(), source: e };
    let doc: serde_json::Value = serde_json::from_str(text).map_err(io)?;
    let records = serde_json::from_value(doc["records"].clone()).map_err(io)?;
    Ok((doc["source"].as_str().unwrap_or("").to_string(), records))
}

/// The published number for (experiment system, solver, adjoint, metric), if any.
pub fn published_value(records: &[Published], system: &str, solver: &str, adjoint: &str, metric: &str) -> Option<(f64, Option<f64>)> {
    records.iter().find(|r| r.system == system && r.solver == solver && r.adjoint == adjoint && r.metric == metric).map(|r| (r.mean, r.std))
}

/// Mean and population standard deviation (the authors' tables use the population std).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    (m, (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt())
}

