//! Forward solves: time stepping (fixed grids or adaptive), output times, cost counters.

use crate::error::{Error, Result};
use crate::field::{batch_size, Counted, OdeTerm, Term, VectorField};
use crate::solver::Solver;

/// How the step times are chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Stepping {
    /// `n` equal steps on `[t0, t1]`.
    Fixed {
        /// Number of steps.
        n: usize,
    },
    /// Explicit step times, strictly increasing from `t0` to `t1` (both included).
    Grid(Vec<f64>),
    /// Adaptive steps from an embedded error estimate and a PI controller.
    Adaptive(Adaptive),
}

/// Settings of the adaptive step-size controller.
///
/// A step is accepted when the RMS over **all** components of the batch of
/// $e_i / (\text{atol} + \text{rtol}\max(|y_i|, |y_i'|))$ is at most 1: one step size is
/// shared by the whole batch. The PI controller proposes
/// $h' = h \cdot \mathrm{clamp}(0.9\, \epsilon_n^{-0.7/k}\, \epsilon_{n-1}^{0.4/k},\ 0.2,\ 10)$
/// with $k$ = the error estimate's order + 1. Steps are clipped to land exactly on every
/// output time (no interpolation), so outputs are differentiated exactly like any step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adaptive {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// First step; `None` picks $0.01\,\|y_0\|/\|f(t_0, y_0)\|$ (Hairer's heuristic).
    pub dt0: Option<f64>,
    /// Maximum number of attempted (accepted + rejected) steps.
    pub max_steps: usize,
}

impl Adaptive {
    /// Tolerances with `dt0 = None` and `max_steps = 100_000`.
    pub fn new(rtol: f64, atol: f64) -> Self {
        Self { rtol, atol, dt0: None, max_steps: 100_000 }
    }
}

/// Which states a solve returns (and a loss may depend on).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SaveAt {
    /// Only $y(t_1)$.
    Final,
    /// The state after every (accepted) step, $t_0$ excluded.
    Steps,
    /// Given times in $[t_0, t_1]$, strictly increasing. With a fixed grid each must be a node
    /// of the grid (matched to 1e-9 of a step); with adaptive steps the steps are clipped to
    /// hit them.
    Times(Vec<f64>),
}

/// Everything that defines a solve except the field, solver and initial state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SolveOptions {
    /// Initial time.
    pub t0: f64,
    /// Final time ($t_1 > t_0$).
    pub t1: f64,
    /// Step selection.
    pub stepping: Stepping,
    /// Output times.
    pub save_at: SaveAt,
}

impl SolveOptions {
    /// `n` fixed steps on `[t0, t1]`, saving the final state.
    pub fn fixed(t0: f64, t1: f64, n: usize) -> Self {
        Self { t0, t1, stepping: Stepping::Fixed { n }, save_at: SaveAt::Final }
    }
    /// Adaptive steps on `[t0, t1]` with the given tolerances, saving the final state.
    pub fn adaptive(t0: f64, t1: f64, rtol: f64, atol: f64) -> Self {
        Self { t0, t1, stepping: Stepping::Adaptive(Adaptive::new(rtol, atol)), save_at: SaveAt::Final }
    }
    /// Replace the output times.
    pub fn save_at(mut self, save_at: SaveAt) -> Self {
        self.save_at = save_at;
        self
    }
}

/// Cost of a solve or a gradient, read by tests, benchmarks and notebooks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Vector-field evaluations (including those inside the backward pass).
    pub field_evals: usize,
    /// Vector–Jacobian products of the vector field.
    pub vjps: usize,
    /// Accepted steps of the forward solve.
    pub accepted_steps: usize,
    /// Rejected step attempts (adaptive only).
    pub rejected_steps: usize,
    /// Steps recomputed during the backward pass (checkpointing only).
    pub recomputed_steps: usize,
    /// Most solver carries held at once for the backward pass (checkpoints, tape, and the
    /// carry the backward pass starts from); single-step working buffers are not counted.
    pub peak_stored_states: usize,
    /// Bytes of those carries plus the stored step times.
    pub peak_stored_bytes: usize,
}

/// The outputs of a forward solve.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Solution {
    /// Output times.
    pub ts: Vec<f64>,
    /// States at the output times (each a batch, flat).
    pub ys: Vec<Vec<f64>>,
    /// Accepted step times $t_0, \dots, t_N$.
    pub step_times: Vec<f64>,
    /// Cost counters.
    pub stats: Stats,
}

/// Solve $y' = f(t, y)$ from `y0` (a batch, flat) with `solver`.
///
/// # Errors
/// Shape mismatches, invalid grids or output times, [`Error::NonFiniteState`] (with the time
/// and step), and in adaptive mode [`Error::StepSizeUnderflow`], [`Error::MaxStepsExceeded`],
/// [`Error::NoErrorEstimate`].
pub fn solve(field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions) -> Result<Solution> {
    crate::field::on_pool(|| solve_here(field, solver, y0, opts))
}

fn solve_here(field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions) -> Result<Solution> {
    batch_size(field.dim(), y0.len())?;
    let counted = Counted::new(field);
    let term = OdeTerm(&counted);
    let fwd = forward(&term, solver, y0, opts, |_, _| Ok(()))?;
    let stats = Stats {
        field_evals: counted.evals(),
        vjps: counted.vjps(),
        accepted_steps: fwd.times.len() - 1,
        rejected_steps: fwd.rejected,
        ..Stats::default()
    };
    Ok(Solution { ts: fwd.out_times, ys: fwd.outputs, step_times: fwd.times.to_vec(), stats })
}

/// The accepted step times $t_0, \dots, t_N$: computed on demand for a uniform grid (so a
/// fixed-step solve keeps O(1) memory in $N$), stored otherwise.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepTimes {
    Uniform { t0: f64, t1: f64, n: usize },
    Stored(Vec<f64>),
}

impl StepTimes {
    /// Number of nodes, $N + 1$.
    pub(crate) fn len(&self) -> usize {
        match self {
            StepTimes::Uniform { n, .. } => n + 1,
            StepTimes::Stored(v) => v.len(),
        }
    }
    /// Node $t_k$.
    pub(crate) fn at(&self, k: usize) -> f64 {
        match self {
            StepTimes::Uniform { t0, t1, n } => {
                if k == *n {
                    *t1
                } else {
                    t0 + (t1 - t0) * (k as f64 / *n as f64)
                }
            }
            StepTimes::Stored(v) => v[k],
        }
    }
    /// Number of times held in memory.
    pub(crate) fn stored_len(&self) -> usize {
        match self {
            StepTimes::Uniform { .. } => 0,
            StepTimes::Stored(v) => v.len(),
        }
    }
    pub(crate) fn to_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|k| self.at(k)).collect()
    }
}

/// Result of the shared forward driver.
pub(crate) struct Forward {
    /// Accepted nodes $t_0..t_N$.
    pub times: StepTimes,
    pub out_times: Vec<f64>,
    pub outputs: Vec<Vec<f64>>,
    /// Node index of each output.
    pub out_nodes: Vec<usize>,
    pub final_carry: Vec<f64>,
    pub rejected: usize,
}

fn check_interval(opts: &SolveOptions) -> Result<()> {
    if !(opts.t0.is_finite() && opts.t1.is_finite()) || opts.t1 <= opts.t0 {
        return Err(Error::InvalidTimeGrid { reason: "need finite t0 < t1", index: 1, t: opts.t1 });
    }
    Ok(())
}

fn check_increasing(ts: &[f64], what: &'static str) -> Result<()> {
    if ts.is_empty() {
        return Err(Error::InvalidTimeGrid { reason: what, index: 0, t: f64::NAN });
    }
    for (i, w) in ts.windows(2).enumerate() {
        if !(w[1] > w[0]) {
            return Err(Error::InvalidTimeGrid { reason: "times must be strictly increasing", index: i + 1, t: w[1] });
        }
    }
    Ok(())
}

/// The step grid of a fixed-step solve (`None` for adaptive stepping).
pub(crate) fn fixed_grid(opts: &SolveOptions) -> Result<Option<StepTimes>> {
    check_interval(opts)?;
    match &opts.stepping {
        Stepping::Fixed { n } => {
            if *n == 0 {
                return Err(Error::InvalidTimeGrid { reason: "need at least one step (n = 0)", index: 0, t: opts.t0 });
            }
            Ok(Some(StepTimes::Uniform { t0: opts.t0, t1: opts.t1, n: *n }))
        }
        Stepping::Grid(g) => {
            check_increasing(g, "empty step grid")?;
            if g.len() < 2 {
                return Err(Error::InvalidTimeGrid { reason: "a step grid needs at least two times", index: 0, t: g[0] });
            }
            if g[0] != opts.t0 || g[g.len() - 1] != opts.t1 {
                return Err(Error::InvalidTimeGrid { reason: "step grid must start at t0 and end at t1", index: 0, t: g[0] });
            }
            Ok(Some(StepTimes::Stored(g.clone())))
        }
        Stepping::Adaptive(_) => Ok(None),
    }
}

/// Requested output times (for `Steps`, `None`: every node).
fn output_times(opts: &SolveOptions) -> Result<Option<Vec<f64>>> {
    match &opts.save_at {
        SaveAt::Final => Ok(Some(vec![opts.t1])),
        SaveAt::Steps => Ok(None),
        SaveAt::Times(ts) => {
            check_increasing(ts, "empty list of output times")?;
            for (i, &t) in ts.iter().enumerate() {
                if t < opts.t0 || t > opts.t1 {
                    return Err(Error::InvalidTimeGrid { reason: "output time outside [t0, t1]", index: i, t });
                }
            }
            Ok(Some(ts.clone()))
        }
    }
}

fn check_finite(carry: &[f64], t: f64, step: usize) -> Result<()> {
    if carry.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFiniteState { t, step, context: String::new() })
    }
}

/// The shared forward driver. `hook(n, carry_n)` is called with the carry at node `n` just
/// before it is overwritten by accepted step `n` (so a strategy can keep it).
pub(crate) fn forward(
    term: &dyn Term,
    solver: &dyn Solver,
    y0: &[f64],
    opts: &SolveOptions,
    mut hook: impl FnMut(usize, &[f64]) -> Result<()>,
) -> Result<Forward> {
    let n = y0.len();
    let clen = solver.carry_len(term, n);
    let mut carry = vec![0.0; clen];
    let mut next = vec![0.0; clen];
    solver.init(term, opts.t0, y0, &mut carry)?;
    check_finite(&carry, opts.t0, 0)?;
    let want = output_times(opts)?;
    let mut out = Forward { times: StepTimes::Stored(vec![opts.t0]), out_times: vec![], outputs: vec![], out_nodes: vec![], final_carry: vec![], rejected: 0 };
    let mut save = |out: &mut Forward, node: usize, t: f64, carry: &[f64]| {
        out.out_times.push(t);
        out.outputs.push(carry[..n].to_vec());
        out.out_nodes.push(node);
    };
    if let Some(grid) = fixed_grid(opts)? {
        // Map output times to nodes.
        let mut node_of = Vec::new();
        if let Some(ts) = &want {
            let tol = 1e-9 * (opts.t1 - opts.t0) / (grid.len() - 1) as f64;
            let mut j = 0;
            for (i, &t) in ts.iter().enumerate() {
                while j < grid.len() && grid.at(j) < t - tol {
                    j += 1;
                }
                if j == grid.len() || (grid.at(j) - t).abs() > tol {
                    return Err(Error::InvalidTimeGrid { reason: "output time is not a node of the fixed step grid", index: i, t });
                }
                node_of.push(j);
            }
        }
        let mut k = 0;
        let mut take = |out: &mut Forward, node: usize, carry: &[f64]| match &want {
            None => {
                if node > 0 {
                    save(out, node, grid.at(node), carry);
                }
            }
            Some(_) => {
                while k < node_of.len() && node_of[k] == node {
                    save(out, node, grid.at(node), carry);
                    k += 1;
                }
            }
        };
        take(&mut out, 0, &carry);
        for i in 0..grid.len() - 1 {
            solver.step(term, n, grid.at(i), grid.at(i + 1), &carry, &mut next, None)?;
            check_finite(&next, grid.at(i + 1), i + 1)?;
            hook(i, &carry)?;
            std::mem::swap(&mut carry, &mut next);
            take(&mut out, i + 1, &carry);
        }
        out.times = grid;
    } else {
        let Stepping::Adaptive(ad) = &opts.stepping else { unreachable!("fixed_grid returned None") };
        adaptive_loop(term, solver, n, opts, ad, want, &mut carry, &mut next, &mut out, &mut save, &mut hook)?;
    }
    out.final_carry = carry;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn adaptive_loop(
    term: &dyn Term,
    solver: &dyn Solver,
    n: usize,
    opts: &SolveOptions,
    ad: &Adaptive,
    want: Option<Vec<f64>>,
    carry: &mut Vec<f64>,
    next: &mut Vec<f64>,
    out: &mut Forward,
    save: &mut impl FnMut(&mut Forward, usize, f64, &[f64]),
    hook: &mut impl FnMut(usize, &[f64]) -> Result<()>,
) -> Result<()> {
    if !solver.has_error_estimate() {
        return Err(Error::NoErrorEstimate { solver: solver.name() });
    }
    for (name, v) in [("rtol", ad.rtol), ("atol", ad.atol)] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(Error::InvalidArgument { name, value: v, expected: "finite and ≥ 0" });
        }
    }
    if ad.rtol == 0.0 && ad.atol == 0.0 {
        return Err(Error::InvalidArgument { name: "rtol + atol", value: 0.0, expected: "> 0" });
    }
    let (t0, t1) = (opts.t0, opts.t1);
    let scale = |y0: &[f64], y1: &[f64], i: usize| ad.atol + ad.rtol * y0[i].abs().max(y1[i].abs());
    let rms = |v: &[f64], y0: &[f64], y1: &[f64]| (v.iter().enumerate().map(|(i, e)| (e / scale(y0, y1, i)).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let mut h = match ad.dt0 {
        Some(h) if h > 0.0 && h.is_finite() => h,
        Some(h) => return Err(Error::InvalidArgument { name: "dt0", value: h, expected: "finite and > 0" }),
        None => {
            let mut f0 = vec![0.0; term.vf_len(n)];
            term.vf(t0, &carry[..n], &mut f0)?;
            let d0 = rms(&carry[..n], &carry[..n], &carry[..n]);
            let d1 = if f0.len() == n { rms(&f0, &carry[..n], &carry[..n]) } else { 0.0 };
            if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 }
        }
    };
    h = h.min(t1 - t0);
    // Output times still to hit (for Steps: none to hit, save every node).
    let targets: Vec<f64> = want.clone().unwrap_or_default();
    let mut k = 0;
    if want.is_some() {
        while k < targets.len() && targets[k] == t0 {
            save(out, 0, t0, carry);
            k += 1;
        }
    }
    let q = (solver.error_order() + 1) as f64;
    let mut err = vec![0.0; n];
    let mut prev_err: f64 = 1.0;
    let mut t = t0;
    let mut attempts = 0;
    while t < t1 {
        if attempts >= ad.max_steps {
            return Err(Error::MaxStepsExceeded { t, t1, max_steps: ad.max_steps });
        }
        attempts += 1;
        let stop = if k < targets.len() { targets[k] } else { t1 };
        let mut tn = t + h;
        if tn >= stop - 1e-12 * h.abs().max(stop.abs() * f64::EPSILON) {
            tn = stop;
        }
        let dt = tn - t;
        if !(dt > 4.0 * f64::EPSILON * t.abs().max(1.0)) {
            return Err(Error::StepSizeUnderflow { t, step: out.times.len() - 1, dt });
        }
        solver.step(term, n, t, tn, carry, next, Some(&mut err))?;
        let finite = next.iter().all(|v| v.is_finite());
        let e = if finite { rms(&err, &carry[..n], &next[..n]) } else { f64::INFINITY };
        if e <= 1.0 {
            hook(out.times.len() - 1, carry)?;
            std::mem::swap(carry, next);
            t = tn;
            if let StepTimes::Stored(v) = &mut out.times {
                v.push(t);
            }
            let node = out.times.len() - 1;
            if want.is_none() {
                save(out, node, t, carry);
            } else if k < targets.len() && t == targets[k] {
                save(out, node, t, carry);
                k += 1;
            }
            let e = e.max(1e-10);
            let fac = (0.9 * e.powf(-0.7 / q) * prev_err.powf(0.4 / q)).clamp(0.2, 10.0);
            prev_err = e;
            // After a step clipped to an output time, continue from the unclipped proposal.
            h = dt.max(h) * fac;
        } else {
            out.rejected += 1;
            let fac = if e.is_finite() { (0.9 * e.powf(-1.0 / q)).clamp(0.2, 1.0) } else { 0.2 };
            h = dt * fac;
        }
    }
    Ok(())
}
