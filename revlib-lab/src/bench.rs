//! The gradient benchmark: one case per process, JSON lines.
//!
//! Problem: $y' = \mathrm{MLP}(y)$ with $D = 2$, two tanh hidden layers of width $W = 64$,
//! explicit midpoint on $[0, 1]$ with $N$ steps, loss $\tfrac12\|y(1)\|^2$ summed over a
//! batch of $B$ initial states. Each case runs in a fresh process (see the `revlib bench`
//! command) so that its peak RSS is its own.

use revlib::adjoint::{checkpoint::revolve_recomputations, rel_err, Adjoint};
use crate::error::Result;
use revlib::field::{Mlp, MlpConfig};
use revlib::integrate::SolveOptions;
use revlib::loss::HalfSquaredNorm;
use revlib::solver::{ExplicitRk, Reversible, Solver};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

use crate::provenance::peak_rss_bytes;

/// One benchmark case.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Case {
    /// Gradient strategy.
    pub adjoint: Adjoint,
    /// Batch size B.
    pub batch: usize,
    /// Number of steps N.
    pub steps: usize,
}

/// The benchmark field, initial states and solver for a case.
pub fn problem(case: &Case, seed: u64) -> Result<(Mlp, Vec<f64>, Box<dyn Solver>)> {
    let field = Mlp::new(MlpConfig { dim: 2, width: 64, depth: 2, time_input: false }, seed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    let y0: Vec<f64> = (0..2 * case.batch).map(|_| StandardNormal.sample(&mut rng)).collect();
    let solver: Box<dyn Solver> = match case.adjoint {
        Adjoint::Reversible => Box::new(Reversible::new(ExplicitRk::midpoint(), Reversible::DEFAULT_COUPLING)?),
        _ => Box::new(ExplicitRk::midpoint()),
    };
    Ok((field, y0, solver))
}

/// A rough prediction of a case's seconds per gradient from the measured full-storage time of
/// the same (B, N): the gradient costs about four forward steps per step, plus one per
/// recomputed step.
pub fn predict_seconds(case: &Case, full_storage_sec: f64) -> f64 {
    let per_step = full_storage_sec / (4.0 * case.steps as f64);
    match case.adjoint {
        Adjoint::Checkpoint(c) | Adjoint::CheckpointOnline(c) => full_storage_sec + per_step * revolve_recomputations(case.steps, c) as f64,
        _ => full_storage_sec,
    }
}

/// Run one case in this process and return its JSON line (without provenance).
pub fn run_case(case: &Case, seed: u64, min_seconds: f64) -> Result<serde_json::Value> {
    let (field, y0, solver) = problem(case, seed)?;
    let opts = SolveOptions::fixed(0.0, 1.0, case.steps);
    let t = Instant::now();
    let g = case.adjoint.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
    let first = t.elapsed().as_secs_f64();
    let reps = ((min_seconds / first.max(1e-9)).ceil() as usize).clamp(1, 20);
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        case.adjoint.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let rss = peak_rss_bytes();
    // Reference: full storage through the same discretisation (for `reversible`, through the
    // reversible scheme itself).
    let reference = Adjoint::FullStorage.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
    let mut all = g.d_theta.clone();
    all.extend_from_slice(&g.d_y0);
    let mut all_ref = reference.d_theta.clone();
    all_ref.extend_from_slice(&reference.d_y0);
    Ok(serde_json::json!({
        "adjoint": case.adjoint.key(),
        "B": case.batch,
        "D": 2,
        "W": 64,
        "N": case.steps,
        "solver": solver.name(),
        "sec_per_grad": times[times.len() / 2],
        "repeats": reps,
        "peak_stored_states": g.stats.peak_stored_states,
        "peak_stored_bytes": g.stats.peak_stored_bytes,
        "recomputed_steps": g.stats.recomputed_steps,
        "field_evals": g.stats.field_evals,
        "vjps": g.stats.vjps,
        "peak_rss_bytes": rss,
        "rel_grad_err": rel_err(&all, &all_ref),
    }))
}
