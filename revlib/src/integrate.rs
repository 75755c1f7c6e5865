//! Forward solves: time stepping (fixed grids or adaptive), output times, cost counters.

use crate::controller::{Attempt, ConstantController, ControllerMemory, PiController, StepSizeController};
use crate::error::{Error, Result};
use crate::field::{batch_size, Counted, OdeTerm, Term, VectorField};
use crate::solver::{Solver, Step};

/// How the step times are chosen.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Stepping {
    /// `n` equal steps on `[t0, t1]`.
    Fixed {
        /// Number of steps.
        n: usize,
    },
    /// Explicit step times, strictly increasing from `t0` to `t1` (both included).
    Grid(Vec<f64>),
    /// Adaptive steps from an embedded error estimate and a step-size controller.
    Adaptive(Adaptive),
    /// Steps of size `dt` from `t0` (the last one, and any that would pass an output time,
    /// shortened to land on it); needs no error estimate.
    Constant {
        /// Step size.
        dt: f64,
    },
}

/// Settings of adaptive stepping.
///
/// A step is accepted when the RMS over **all** components of the batch of
/// $e_i / (\text{atol} + \text{rtol}\max(|y_i|, |y_i'|))$ is at most 1: one step size is
/// shared by the whole batch; the [`controller`](Adaptive::controller) chooses the next step
/// (see [`crate::controller`]). Steps are clipped to land exactly on every output time (no
/// interpolation), so outputs are differentiated exactly like any step.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Adaptive {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// First step; `None` picks $0.01\,\|y_0\|/\|f(t_0, y_0)\|$ (Hairer's heuristic).
    pub dt0: Option<f64>,
    /// Maximum number of attempted (accepted + rejected) steps.
    pub max_steps: usize,
    /// The step-size controller.
    pub controller: PiController,
}

impl Adaptive {
    /// Default limit on attempted steps.
    pub const MAX_STEPS: usize = 100_000;
    /// Tolerances with `dt0 = None`, `max_steps = 100_000` and the default PI controller.
    pub fn new(rtol: f64, atol: f64) -> Self {
        Self { rtol, atol, dt0: None, max_steps: Self::MAX_STEPS, controller: PiController::default() }
    }
}

/// Which states a solve returns (and a loss may depend on).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// The reversible adjoint's **certificate of exactness**: the largest relative error of a
    /// carry it rebuilt against the carry it should equal — the initial carry, known from
    /// $y_0$, and each carry stored by [`Adjoint::ReversibleEvery`](crate::Adjoint::ReversibleEvery).
    /// Round-off level (≈ 1e-15) when the reconstruction, and so the gradient, is exact;
    /// 0 for the other strategies.
    #[cfg_attr(feature = "serde", serde(default))]
    pub reconstruction_error: f64,
}

/// The outputs of a forward solve.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    batch_size(field.dim(), y0.len())?;
    let counted = Counted::new(field);
    let term = OdeTerm(&counted);
    solve_term(&term, solver, y0, opts, &|| (counted.evals(), counted.vjps()))
}

/// Solve with any term (an ODE's, an SDE's); `counts` reads (evaluations, VJPs) afterwards.
pub(crate) fn solve_term(term: &dyn Term, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, counts: &dyn Fn() -> (usize, usize)) -> Result<Solution> {
    let fwd = forward(term, solver, y0, opts, |_, _| Ok(()))?;
    let (field_evals, vjps) = counts();
    let stats = Stats {
        field_evals,
        vjps,
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
    if let Some((i, &t)) = ts.iter().enumerate().find(|(_, t)| !t.is_finite()) {
        return Err(Error::InvalidTimeGrid { reason: "times must be finite", index: i, t });
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
            // Steps shorter than a few ulps of t would give repeated or unordered times.
            let resolution = 4.0 * f64::EPSILON * opts.t0.abs().max(opts.t1.abs()).max(f64::MIN_POSITIVE);
            if (opts.t1 - opts.t0) / *n as f64 <= resolution {
                return Err(Error::InvalidArgument { name: "n", value: *n as f64, expected: "steps longer than the spacing of f64 at t0 and t1 (fewer steps)" });
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
        Stepping::Adaptive(_) | Stepping::Constant { .. } => Ok(None),
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
    hook: impl FnMut(usize, &[f64]) -> Result<()>,
) -> Result<Forward> {
    term.check_interval(opts.t0, opts.t1)?;
    let n = y0.len();
    let clen = solver.carry_len(term, n);
    let mut run = Run {
        term,
        solver,
        n,
        carry: vec![0.0; clen],
        next: vec![0.0; clen],
        out: Forward { times: StepTimes::Stored(vec![opts.t0]), out_times: vec![], outputs: vec![], out_nodes: vec![], final_carry: vec![], rejected: 0 },
        hook,
    };
    solver.init(term, opts.t0, y0, &mut run.carry)?;
    check_finite(&run.carry, opts.t0, 0)?;
    let want = output_times(opts)?;
    match (fixed_grid(opts)?, &opts.stepping) {
        (Some(grid), _) => run.on_grid(grid, want.as_deref(), opts)?,
        (None, Stepping::Adaptive(ad)) => {
            ad.check()?;
            let h0 = match ad.dt0 {
                Some(h) if h > 0.0 && h.is_finite() => h,
                Some(h) => return Err(Error::InvalidArgument { name: "dt0", value: h, expected: "finite and > 0" }),
                None => run.initial_step(opts.t0, ad)?,
            };
            run.controlled(opts, want.as_deref(), &ad.controller, Some(ad), h0, ad.max_steps)?;
        }
        (None, Stepping::Constant { dt }) => {
            if !(*dt > 0.0 && dt.is_finite()) {
                return Err(Error::InvalidArgument { name: "dt", value: *dt, expected: "finite and > 0" });
            }
            let max_steps = ((opts.t1 - opts.t0) / dt).ceil() as usize + want.as_ref().map_or(0, Vec::len) + 1;
            run.controlled(opts, want.as_deref(), &ConstantController, None, *dt, max_steps)?;
        }
        (None, _) => unreachable!("fixed_grid returns a grid for Fixed and Grid stepping"),
    }
    run.out.final_carry = run.carry;
    Ok(run.out)
}

impl Adaptive {
    fn check(&self) -> Result<()> {
        for (name, v) in [("rtol", self.rtol), ("atol", self.atol)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::InvalidArgument { name, value: v, expected: "finite and ≥ 0" });
            }
        }
        if self.rtol == 0.0 && self.atol == 0.0 {
            return Err(Error::InvalidArgument { name: "rtol + atol", value: 0.0, expected: "> 0" });
        }
        Ok(())
    }
    /// The scaled RMS norm of `v` for states `y0 → y1`.
    fn rms(&self, v: &[f64], y0: &[f64], y1: &[f64]) -> f64 {
        let sum: f64 = v.iter().enumerate().map(|(i, e)| (e / (self.atol + self.rtol * y0[i].abs().max(y1[i].abs()))).powi(2)).sum();
        (sum / v.len() as f64).sqrt()
    }
}

/// State of one forward solve.
struct Run<'a, H> {
    term: &'a dyn Term,
    solver: &'a dyn Solver,
    n: usize,
    carry: Vec<f64>,
    next: Vec<f64>,
    out: Forward,
    hook: H,
}

impl<H: FnMut(usize, &[f64]) -> Result<()>> Run<'_, H> {
    fn save(&mut self, node: usize, t: f64) {
        self.out.out_times.push(t);
        self.out.outputs.push(self.carry[..self.n].to_vec());
        self.out.out_nodes.push(node);
    }

    /// Accept the step just taken into `next`, ending at `t` (node `node`).
    fn accept(&mut self, node: usize) -> Result<()> {
        (self.hook)(node - 1, &self.carry)?;
        std::mem::swap(&mut self.carry, &mut self.next);
        Ok(())
    }

    /// Steps on a fixed grid; output times must be nodes of the grid.
    fn on_grid(&mut self, grid: StepTimes, want: Option<&[f64]>, opts: &SolveOptions) -> Result<()> {
        // Node of each output time (None: every node but t0).
        let mut node_of = Vec::new();
        if let Some(ts) = want {
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
        for node in 0..grid.len() {
            if node > 0 {
                let s = Step::new(self.term, self.n, grid.at(node - 1), grid.at(node));
                self.solver.step(s, &self.carry, &mut self.next, None)?;
                check_finite(&self.next, s.t1, node)?;
                self.accept(node)?;
            }
            if want.is_none() {
                if node > 0 {
                    self.save(node, grid.at(node));
                }
            } else {
                while k < node_of.len() && node_of[k] == node {
                    self.save(node, grid.at(node));
                    k += 1;
                }
            }
        }
        self.out.times = grid;
        Ok(())
    }

    /// Hairer's first-step heuristic $0.01\,\|y_0\|/\|f(t_0, y_0)\|$ in the scaled norm.
    fn initial_step(&self, t0: f64, ad: &Adaptive) -> Result<f64> {
        let y = &self.carry[..self.n];
        let mut f0 = vec![0.0; self.term.vf_len(self.n)];
        self.term.vf(t0, y, &mut f0)?;
        let d0 = ad.rms(y, y, y);
        let d1 = if f0.len() == self.n { ad.rms(&f0, y, y) } else { 0.0 };
        Ok(if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 })
    }

    /// Steps chosen by a controller (with tolerances `tol` when it reads error estimates),
    /// clipped to land on every output time and on $t_1$.
    fn controlled(&mut self, opts: &SolveOptions, want: Option<&[f64]>, ctl: &dyn StepSizeController, tol: Option<&Adaptive>, h0: f64, max_steps: usize) -> Result<()> {
        let needs_err = ctl.needs_error_estimate();
        if needs_err && !self.solver.has_error_estimate() {
            return Err(Error::NoErrorEstimate { solver: self.solver.name() });
        }
        let (t0, t1) = (opts.t0, opts.t1);
        let mut h = h0.min(t1 - t0);
        // Output times still to hit (None: save every node).
        let targets = want.unwrap_or(&[]);
        let mut k = 0;
        if want.is_some() {
            while k < targets.len() && targets[k] == t0 {
                self.save(0, t0);
                k += 1;
            }
        }
        let order = self.solver.error_order() + 1;
        let mut err = vec![0.0; self.n];
        let mut memory = ControllerMemory::default();
        let mut t = t0;
        // Proposals are measured from an anchor while the step size stays the same, so constant
        // steps do not accumulate round-off in t (the PI controller changes h every step, so
        // its anchor is always the current time).
        let mut anchor = (t0, 0usize);
        let mut attempts = 0;
        while t < t1 {
            if attempts >= max_steps {
                return Err(Error::MaxStepsExceeded { t, t1, max_steps });
            }
            attempts += 1;
            let stop = if k < targets.len() { targets[k] } else { t1 };
            let mut tn = anchor.0 + (anchor.1 + 1) as f64 * h;
            let clipped = tn >= stop - 1e-9 * h;
            if clipped {
                tn = stop;
            }
            let dt = tn - t;
            let node = self.out.times.len();
            if !(dt > 4.0 * f64::EPSILON * t.abs().max(1.0)) {
                return Err(Error::StepSizeUnderflow { t, step: node - 1, dt });
            }
            let s = Step::new(self.term, self.n, t, tn);
            self.solver.step(s, &self.carry, &mut self.next, needs_err.then_some(&mut err[..]))?;
            let finite = self.next.iter().all(|v| v.is_finite());
            let e = match (finite, tol) {
                (false, _) => f64::INFINITY,
                (true, Some(ad)) if needs_err => ad.rms(&err, &self.carry[..self.n], &self.next[..self.n]),
                _ => 0.0,
            };
            if !finite && !needs_err {
                return Err(Error::NonFiniteState { t: tn, step: node, context: String::new() });
            }
            let d = ctl.decide(Attempt { h: dt, err: e, order }, &mut memory);
            if d.accept {
                self.accept(node)?;
                t = tn;
                if let StepTimes::Stored(v) = &mut self.out.times {
                    v.push(t);
                }
                if want.is_none() {
                    self.save(node, t);
                } else if k < targets.len() && t == targets[k] {
                    self.save(node, t);
                    k += 1;
                }
                // After a step clipped to an output time, continue from the unclipped proposal.
                let next = if d.next_h == dt { h.max(dt) } else { d.next_h * (h / dt).max(1.0) };
                anchor = if next == h && !clipped { (anchor.0, anchor.1 + 1) } else { (t, 0) };
                h = next;
            } else {
                self.out.rejected += 1;
                h = d.next_h;
                anchor = (t, 0);
            }
        }
        Ok(())
    }
}
