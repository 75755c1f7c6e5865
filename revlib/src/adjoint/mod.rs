//! Gradient strategies ("adjoints"): how a solve is differentiated.
//!
//! All strategies differentiate the same loss of the same outputs and return the gradient
//! with respect to the parameters $\theta$ and the initial state $y_0$. With adaptive steps
//! the accepted step times are treated as constants (no gradient flows through the
//! step-size controller), identically for every strategy.
//!
//! | strategy | stored carries | recomputation | exact? |
//! |---|---|---|---|
//! | [`Adjoint::FullStorage`] | $N+1$ | none | yes (discretise-then-optimise) |
//! | [`Adjoint::Checkpoint`] | $\le c + 1$ | binomial: $rN - \binom{c+r}{c+1} - (N-1)$ steps | yes |
//! | [`Adjoint::CheckpointOnline`] | $\le c + 1$ | stride doubling, see [`checkpoint`] | yes |
//! | [`Adjoint::Backsolve`] | 1 | solves the adjoint ODE backwards | no (optimise-then-discretise) |
//! | [`Adjoint::Reversible`] | 1 (plus the $N+1$ step times) | reconstructs each step once | yes, to round-off |

pub mod checkpoint;
mod backsolve;

use crate::error::{Error, Result};
use crate::field::{batch_size, Counted, OdeTerm, Term, VectorField};
use crate::integrate::{forward, Forward, SolveOptions, Stats, StepTimes};
use crate::loss::Loss;
use crate::solver::Solver;

/// A gradient strategy. The same call differentiates the same loss in different ways.
///
/// # Examples
/// ```
/// use revlib::prelude::*;
/// # fn main() -> revlib::Result<()> {
/// let field = Mlp::new(MlpConfig { dim: 2, width: 16, depth: 2, time_input: false }, 0)?;
/// let solver = Reversible::new(ExplicitRk::midpoint(), 0.999)?;
/// let opts = SolveOptions::fixed(0.0, 1.0, 50);
/// let y0 = [1.0, 0.5];
/// let exact = Adjoint::FullStorage.gradient(&field, &solver, &y0, &opts, &HalfSquaredNorm)?;
/// let rev = Adjoint::Reversible.gradient(&field, &solver, &y0, &opts, &HalfSquaredNorm)?;
/// let err = rel_err(&rev.d_theta, &exact.d_theta);
/// assert!(err < 1e-10, "{err}");
/// assert_eq!(rev.stats.peak_stored_states, 1);
/// # Ok(()) }
/// ```
///
/// In JSON an adjoint is its [`key`](Adjoint::key), e.g. `"checkpoint_8"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Adjoint {
    /// Backpropagation through every step, all carries stored.
    #[doc(alias = "RecursiveCheckpointAdjoint")]
    FullStorage,
    /// Binomial (revolve) checkpointing with `c` checkpoints, `c` counting the initial state.
    /// Offline schedule when the number of steps is known (fixed grids); with adaptive
    /// steps it falls back to [`Adjoint::CheckpointOnline`].
    Checkpoint(usize),
    /// Online checkpointing with `c` checkpoints for an unknown number of steps.
    CheckpointOnline(usize),
    /// The continuous adjoint: the adjoint ODE solved backwards with the same solver.
    #[doc(alias = "continuous adjoint")]
    #[doc(alias = "optimise-then-discretise")]
    #[doc(alias = "BacksolveAdjoint")]
    Backsolve,
    /// The reversible adjoint: reconstruct every step exactly with the solver's inverse.
    #[doc(alias = "ReversibleAdjoint")]
    Reversible,
}

impl From<Adjoint> for String {
    fn from(a: Adjoint) -> String {
        a.key()
    }
}

impl TryFrom<String> for Adjoint {
    type Error = Error;
    fn try_from(key: String) -> Result<Self> {
        Adjoint::from_key(&key)
    }
}

/// The result of a gradient computation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gradient {
    /// Loss value.
    pub loss: f64,
    /// $\partial L/\partial y_0$ (same shape as `y0`).
    pub d_y0: Vec<f64>,
    /// $\partial L/\partial\theta$.
    pub d_theta: Vec<f64>,
    /// Output times of the forward solve.
    pub ts: Vec<f64>,
    /// Outputs of the forward solve.
    pub ys: Vec<Vec<f64>>,
    /// Cost counters of forward and backward passes together.
    pub stats: Stats,
}

impl Adjoint {
    /// The key used in benchmarks and tables: `full_storage`, `checkpoint_<c>`,
    /// `checkpoint_online_<c>`, `backsolve`, `reversible`.
    pub fn key(&self) -> String {
        match self {
            Adjoint::FullStorage => "full_storage".into(),
            Adjoint::Checkpoint(c) => format!("checkpoint_{c}"),
            Adjoint::CheckpointOnline(c) => format!("checkpoint_online_{c}"),
            Adjoint::Backsolve => "backsolve".into(),
            Adjoint::Reversible => "reversible".into(),
        }
    }

    /// Parse a key written by [`key`](Adjoint::key).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an unknown key.
    pub fn from_key(key: &str) -> Result<Self> {
        let num = |s: &str| s.parse::<usize>().map_err(|_| Error::Unsupported(format!("unknown adjoint key `{key}`")));
        match key {
            "full_storage" => Ok(Adjoint::FullStorage),
            "backsolve" => Ok(Adjoint::Backsolve),
            "reversible" => Ok(Adjoint::Reversible),
            k if k.starts_with("checkpoint_online_") => Ok(Adjoint::CheckpointOnline(num(&k[18..])?)),
            k if k.starts_with("checkpoint_") => Ok(Adjoint::Checkpoint(num(&k[11..])?)),
            _ => Err(Error::Unsupported(format!("unknown adjoint key `{key}`"))),
        }
    }

    /// Loss and gradient of `loss(solve(field, solver, y0, opts))` with respect to the
    /// field's parameters and `y0`.
    ///
    /// # Errors
    /// Everything [`solve`](crate::solve) returns, plus [`Error::NotReversible`] for the
    /// reversible adjoint with a non-reversible solver, [`Error::InvalidArgument`] for zero
    /// checkpoints, and [`Error::NonFiniteState`] if a backward reconstruction blows up.
    pub fn gradient(&self, field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss) -> Result<Gradient> {
        crate::field::on_pool(|| self.gradient_here(field, solver, y0, opts, loss))
    }

    fn gradient_here(&self, field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss) -> Result<Gradient> {
        batch_size(field.dim(), y0.len())?;
        let counted = Counted::new(field);
        let term = OdeTerm(&counted);
        let mut store = Store::default();
        let (fwd, d_y0, d_theta, value) = match *self {
            Adjoint::FullStorage => full_storage(&term, solver, y0, opts, loss, &mut store)?,
            Adjoint::Checkpoint(c) | Adjoint::CheckpointOnline(c) => {
                checkpoint::gradient(&term, solver, y0, opts, loss, c, matches!(self, Adjoint::CheckpointOnline(_)), &mut store)?
            }
            Adjoint::Backsolve => backsolve::gradient(&term, solver, y0, opts, loss, &mut store)?,
            Adjoint::Reversible => reversible(&term, solver, y0, opts, loss, &mut store)?,
        };
        let carry_len = solver.carry_len(&term, y0.len());
        let stats = Stats {
            field_evals: counted.evals(),
            vjps: counted.vjps(),
            accepted_steps: fwd.times.len() - 1,
            rejected_steps: fwd.rejected,
            recomputed_steps: store.recomputed,
            peak_stored_states: store.peak,
            peak_stored_bytes: 8 * (store.peak * carry_len + fwd.times.stored_len()),
        };
        Ok(Gradient { loss: value, d_y0, d_theta, ts: fwd.out_times, ys: fwd.outputs, stats })
    }
}

/// Counts carries held for the backward pass and steps recomputed.
#[derive(Default)]
pub(crate) struct Store {
    live: usize,
    peak: usize,
    recomputed: usize,
}

impl Store {
    pub(crate) fn hold(&mut self, k: usize) {
        self.live += k;
        self.peak = self.peak.max(self.live);
    }
    pub(crate) fn release(&mut self, k: usize) {
        self.live -= k.min(self.live);
    }
}

type Parts = (Forward, Vec<f64>, Vec<f64>, f64);

/// The backward sweep shared by the exact strategies: the carry cotangent, the parameter
/// cotangent, and the output cotangents waiting at their nodes.
pub(crate) struct Backward<'a> {
    term: &'a dyn Term,
    solver: &'a dyn Solver,
    n: usize,
    times: &'a StepTimes,
    /// (node, cotangent) sorted by node; consumed from the back.
    pending: Vec<(usize, Vec<f64>)>,
    pub(crate) bar: Vec<f64>,
    pub(crate) theta_bar: Vec<f64>,
    scratch: Vec<f64>,
}

impl<'a> Backward<'a> {
    /// Start the sweep at node N with the loss cotangents of `fwd`'s outputs.
    pub(crate) fn new(term: &'a dyn Term, solver: &'a dyn Solver, n: usize, fwd: &'a Forward, loss: &dyn Loss) -> Result<(Self, f64)> {
        let (value, cots) = loss.value_and_grad(&fwd.out_times, &fwd.outputs)?;
        let clen = solver.carry_len(term, n);
        let mut pending: Vec<(usize, Vec<f64>)> = fwd.out_nodes.iter().copied().zip(cots).collect();
        pending.sort_by_key(|p| p.0);
        let mut b = Self {
            term,
            solver,
            n,
            times: &fwd.times,
            pending,
            bar: vec![0.0; clen],
            theta_bar: vec![0.0; term.n_params()],
            scratch: vec![0.0; clen],
        };
        b.absorb(fwd.times.len() - 1);
        Ok((b, value))
    }

    /// The output cotangents not yet absorbed, sorted by node.
    pub(crate) fn into_pending(self) -> Vec<(usize, Vec<f64>)> {
        self.pending
    }

    /// Add the output cotangents waiting at `node` to the state part of the carry cotangent.
    fn absorb(&mut self, node: usize) {
        while let Some((k, _)) = self.pending.last() {
            if *k != node {
                break;
            }
            if let Some((_, c)) = self.pending.pop() {
                for (b, v) in self.bar[..self.n].iter_mut().zip(&c) {
                    *b += v;
                }
            }
        }
    }

    /// Pull the cotangent back through step `i` (from node `i + 1` to node `i`).
    pub(crate) fn step(&mut self, i: usize, carry_i: &[f64]) -> Result<()> {
        let (t0, t1) = (self.times.at(i), self.times.at(i + 1));
        self.solver.step_vjp(self.term, self.n, t0, t1, carry_i, &self.bar, &mut self.scratch, &mut self.theta_bar)?;
        std::mem::swap(&mut self.bar, &mut self.scratch);
        self.absorb(i);
        Ok(())
    }

    /// Pull back through `init` and return `(d_y0, d_theta)`.
    pub(crate) fn finish(mut self, t0: f64, y0: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut d_y0 = vec![0.0; self.n];
        self.solver.init_vjp(self.term, t0, y0, &self.bar, &mut d_y0, &mut self.theta_bar)?;
        Ok((d_y0, self.theta_bar))
    }
}

fn full_storage(term: &dyn Term, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, store: &mut Store) -> Result<Parts> {
    let mut tape: Vec<Vec<f64>> = Vec::new();
    let fwd = forward(term, solver, y0, opts, |_, c| {
        tape.push(c.to_vec());
        Ok(())
    })?;
    store.hold(tape.len() + 1);
    let (mut bw, value) = Backward::new(term, solver, y0.len(), &fwd, loss)?;
    for i in (0..tape.len()).rev() {
        bw.step(i, &tape[i])?;
    }
    let (d_y0, d_theta) = bw.finish(opts.t0, y0)?;
    Ok((fwd, d_y0, d_theta, value))
}

fn reversible(term: &dyn Term, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, store: &mut Store) -> Result<Parts> {
    let rev = solver.as_reversible().ok_or_else(|| Error::NotReversible { solver: solver.name() })?;
    let fwd = forward(term, solver, y0, opts, |_, _| Ok(()))?;
    store.hold(1);
    let n = y0.len();
    let (mut bw, value) = Backward::new(term, solver, n, &fwd, loss)?;
    let mut carry = fwd.final_carry.clone();
    let mut prev = vec![0.0; carry.len()];
    for i in (0..fwd.times.len() - 1).rev() {
        let (t0, t1) = (fwd.times.at(i), fwd.times.at(i + 1));
        rev.reverse_step_vjp(term, n, t0, t1, &carry, &bw.bar, &mut prev, &mut bw.scratch, &mut bw.theta_bar)?;
        if !prev.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteState { t: t0, step: i, context: " during reversible reconstruction".into() });
        }
        std::mem::swap(&mut bw.bar, &mut bw.scratch);
        bw.absorb(i);
        std::mem::swap(&mut carry, &mut prev);
    }
    let (d_y0, d_theta) = bw.finish(opts.t0, y0)?;
    Ok((fwd, d_y0, d_theta, value))
}

/// Largest relative difference $\max_i |a_i - b_i| / \max_i |b_i|$ (0 for two zero vectors).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}
