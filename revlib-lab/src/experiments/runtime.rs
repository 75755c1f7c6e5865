//! Runtime and memory of one gradient vs the number of steps (the talk's runtime figure,
//! McCallum & Foster, arXiv:2410.11648, runtime experiment): $y' = \mathrm{MLP}(y)$ with a scalar state, one hidden layer of 10 tanh
//! units, the midpoint method with $\Delta t = 0.01$ on $[0, n\Delta t]$, loss
//! $\tfrac12 y(T)^2$ from $y_0 = 1$. `benchmarks/schedules.py` runs the same problem in diffrax.

use revlib::adjoint::Adjoint;
use crate::error::Result;
use revlib::field::{Mlp, MlpConfig};
use revlib::integrate::SolveOptions;
use revlib::loss::HalfSquaredNorm;
use std::time::Instant;

use super::train::run_solver;

/// The checkpoint count $c \approx \sqrt n$ of the talk's figure ($\lceil\sqrt n\rceil$).
pub fn sqrt_checkpoints(n: usize) -> usize {
    (n as f64).sqrt().ceil() as usize
}

/// One point of the runtime figure.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuntimeRecord {
    /// Number of steps.
    pub n: usize,
    /// Gradient strategy key.
    pub adjoint: String,
    /// Mean seconds per forward solve + backward pass, after one warm-up call.
    pub mean_sec: f64,
    /// Standard deviation of the repeats.
    pub std_sec: f64,
    /// Fastest repeat.
    #[serde(default)]
    pub min_sec: f64,
    /// Slowest repeat.
    #[serde(default)]
    pub max_sec: f64,
    /// Repeats timed.
    pub repeats: usize,
    /// Peak carries held.
    pub peak_stored_states: usize,
    /// Peak bytes held (carries and step times).
    pub peak_stored_bytes: usize,
    /// Steps recomputed.
    pub recomputed_steps: usize,
    /// Field evaluations (forward and backward).
    pub field_evals: usize,
    /// Peak RSS of the process, meaningful when the case had a process of its own.
    pub peak_rss_bytes: Option<u64>,
}

/// Time `repeats` gradients of the runtime problem with `n` steps.
///
/// # Errors
/// From the gradient computation.
pub fn runtime_case(n: usize, adjoint: Adjoint, repeats: usize, seed: u64) -> Result<RuntimeRecord> {
    let field = Mlp::new(MlpConfig { dim: 1, width: 10, depth: 1, time_input: false }, seed)?;
    let solver = run_solver("midpoint", adjoint)?;
    let opts = SolveOptions::fixed(0.0, 0.01 * n as f64, n);
    let y0 = [1.0];
    let warm = adjoint.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
    let mut times = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        adjoint.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let var = times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / times.len() as f64;
    Ok(RuntimeRecord {
        n,
        adjoint: adjoint.key(),
        mean_sec: mean,
        std_sec: var.sqrt(),
        min_sec: times.iter().copied().fold(f64::INFINITY, f64::min),
        max_sec: times.iter().copied().fold(0.0, f64::max),
        repeats: times.len(),
        peak_stored_states: warm.stats.peak_stored_states,
        peak_stored_bytes: warm.stats.peak_stored_bytes,
        recomputed_steps: warm.stats.recomputed_steps,
        field_evals: warm.stats.field_evals,
        peak_rss_bytes: crate::provenance::peak_rss_bytes(),
    })
}
