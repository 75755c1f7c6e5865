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
//! | [`Adjoint::Reversible`] | 1 (plus the $N+1$ step times) | reconstructs each step once | yes, to round-off — certified |
//! | [`Adjoint::ReversibleEvery`]`(K)` | $1 + \lfloor (N-1)/K \rfloor$ | as reversible, restarting from a stored carry every $K$ steps | yes, to round-off — certified |
//!
//! **Nothing silently wrong.** A non-finite loss, cotangent or gradient is
//! [`Error::NonFiniteGradient`] (naming the strategy and the step), never an `Ok` with NaNs.
//! The reversible adjoint rebuilds the initial carry, which is also known from $y_0$: the
//! relative difference, [`Stats::reconstruction_error`], is a **certificate of exactness**.
//! Above [`GradientChecks::reconstruction_tol`] the gradient is refused
//! ([`Error::InexactReconstruction`]) or returned with the certificate for the caller to judge
//! ([`OnInexact`]). Where plain reconstruction is inexact (small λ, very long solves),
//! [`Adjoint::ReversibleEvery`] buys exactness back with $O(N/K)$ stored carries.

pub mod checkpoint;
mod backsolve;

use crate::error::{Error, Result};
use crate::field::{batch_size, Counted, OdeTerm, Term, VectorField};
use crate::integrate::{forward, Forward, SolveOptions, Stats, StepTimes};
use crate::loss::Loss;
use crate::solver::{Cotangents, Solver, Step};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
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
    /// The reversible adjoint with a carry stored every `K` steps: reconstruction restarts from
    /// each stored carry, so round-off cannot accumulate over more than `K` steps (memory
    /// $O(N/K)$ carries).
    ReversibleEvery(usize),
}

/// What to do when the reversible adjoint's certificate exceeds its tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OnInexact {
    /// Return [`Error::InexactReconstruction`].
    Error,
    /// Return the gradient with the certificate in [`Stats::reconstruction_error`].
    Report,
}

/// Checks applied to every gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GradientChecks {
    /// Largest accepted reconstruction error (relative) of the reversible adjoint.
    pub reconstruction_tol: f64,
    /// What happens above it.
    pub on_inexact: OnInexact,
}

impl GradientChecks {
    /// The default tolerance. Exact reconstructions certify at round-off (1e-16 … 1e-12 in
    /// the tests); the inexact ones the tests construct (λ = 0.5 over 100 steps, λ = 0.7 over
    /// 1000) certify at 1e-6 and above.
    pub const DEFAULT_RECONSTRUCTION_TOL: f64 = 1e-8;
}

impl Default for GradientChecks {
    /// Tolerance [`DEFAULT_RECONSTRUCTION_TOL`](Self::DEFAULT_RECONSTRUCTION_TOL), refusing
    /// inexact gradients.
    fn default() -> Self {
        Self { reconstruction_tol: Self::DEFAULT_RECONSTRUCTION_TOL, on_inexact: OnInexact::Error }
    }
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
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// `checkpoint_online_<c>`, `backsolve`, `reversible`, `reversible_every_<K>`.
    pub fn key(&self) -> String {
        match self {
            Adjoint::FullStorage => "full_storage".into(),
            Adjoint::Checkpoint(c) => format!("checkpoint_{c}"),
            Adjoint::CheckpointOnline(c) => format!("checkpoint_online_{c}"),
            Adjoint::Backsolve => "backsolve".into(),
            Adjoint::Reversible => "reversible".into(),
            Adjoint::ReversibleEvery(k) => format!("reversible_every_{k}"),
        }
    }

    /// Parse a key written by [`key`](Adjoint::key).
    ///
    /// # Errors
    /// [`Error::Parse`] for an unknown key.
    pub fn from_key(key: &str) -> Result<Self> {
        let bad = || Error::Parse { what: "adjoint key", input: key.into(), expected: "full_storage, checkpoint_<c>, checkpoint_online_<c>, backsolve, reversible or reversible_every_<K>" };
        let num = |s: &str| s.parse::<usize>().map_err(|_| bad());
        match key {
            "full_storage" => Ok(Adjoint::FullStorage),
            "backsolve" => Ok(Adjoint::Backsolve),
            "reversible" => Ok(Adjoint::Reversible),
            k if k.starts_with("reversible_every_") => Ok(Adjoint::ReversibleEvery(num(&k[17..])?)),
            k if k.starts_with("checkpoint_online_") => Ok(Adjoint::CheckpointOnline(num(&k[18..])?)),
            k if k.starts_with("checkpoint_") => Ok(Adjoint::Checkpoint(num(&k[11..])?)),
            _ => Err(bad()),
        }
    }

    /// Loss and gradient of `loss(solve(field, solver, y0, opts))` with respect to the
    /// field's parameters and `y0`.
    ///
    /// With the default [`GradientChecks`]; see [`gradient_checked`](Self::gradient_checked).
    ///
    /// # Errors
    /// As [`gradient_checked`](Self::gradient_checked).
    pub fn gradient(&self, field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss) -> Result<Gradient> {
        self.gradient_checked(field, solver, y0, opts, loss, &GradientChecks::default())
    }

    /// Loss and gradient of `loss(solve(field, solver, y0, opts))` with respect to the
    /// field's parameters and `y0`, with the reversible adjoint's certificate judged by `checks`.
    ///
    /// # Errors
    /// Everything [`solve`](crate::solve) returns, plus [`Error::NotReversible`] for the
    /// reversible adjoint with a non-reversible solver, [`Error::InvalidArgument`] for zero
    /// checkpoints (or `K = 0`), [`Error::NonFiniteState`] if a backward reconstruction blows
    /// up, [`Error::NonFiniteGradient`] for a non-finite loss, cotangent or gradient, and
    /// [`Error::InexactReconstruction`] when the certificate exceeds the tolerance (with
    /// [`OnInexact::Error`]).
    pub fn gradient_checked(&self, field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, checks: &GradientChecks) -> Result<Gradient> {
        batch_size(field.dim(), y0.len())?;
        let counted = Counted::new(field);
        let term = OdeTerm(&counted);
        self.gradient_of_term(&term, solver, y0, opts, loss, checks, &|| (counted.evals(), counted.vjps()))
    }

    /// The gradient through a solve with any term (an ODE's, an SDE's); `counts` reads
    /// (evaluations, VJPs) afterwards.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gradient_of_term(&self, term: &dyn Term, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, checks: &GradientChecks, counts: &dyn Fn() -> (usize, usize)) -> Result<Gradient> {
        if !(checks.reconstruction_tol >= 0.0) {
            return Err(Error::InvalidArgument { name: "reconstruction_tol", value: checks.reconstruction_tol, expected: "≥ 0 (infinity disables the check)" });
        }
        let mut store = Store::default();
        let p = Problem { term, solver, y0, opts, loss, strategy: *self };
        let (fwd, d_y0, d_theta, value) = match *self {
            Adjoint::FullStorage => full_storage(&p, &mut store)?,
            Adjoint::Checkpoint(c) => checkpoint::gradient(&p, c, false, &mut store)?,
            Adjoint::CheckpointOnline(c) => checkpoint::gradient(&p, c, true, &mut store)?,
            Adjoint::Backsolve => backsolve::gradient(&p, &mut store)?,
            Adjoint::Reversible => reversible(&p, None, &mut store)?,
            Adjoint::ReversibleEvery(k) => reversible(&p, Some(k), &mut store)?,
        };
        if !(d_y0.iter().chain(&d_theta).all(|v| v.is_finite())) {
            return Err(Error::NonFiniteGradient { strategy: self.key(), what: "gradient", step: 0, t: opts.t0 });
        }
        let (cert, at) = store.reconstruction_error;
        if cert > checks.reconstruction_tol && checks.on_inexact == OnInexact::Error {
            return Err(Error::InexactReconstruction { error: cert, tol: checks.reconstruction_tol, step: at });
        }
        let carry_len = solver.carry_len(term, y0.len());
        let (field_evals, vjps) = counts();
        let stats = Stats {
            field_evals,
            vjps,
            accepted_steps: fwd.times.len() - 1,
            rejected_steps: fwd.rejected,
            recomputed_steps: store.recomputed,
            peak_stored_states: store.peak,
            peak_stored_bytes: 8 * (store.peak * carry_len + fwd.times.stored_len()),
            reconstruction_error: cert,
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
    /// The reversible adjoint's certificate: the largest relative error of a rebuilt carry,
    /// and the step of that carry.
    reconstruction_error: (f64, usize),
}

impl Store {
    /// Record a rebuilt carry's relative error at `step`, keeping the largest.
    fn certify(&mut self, error: f64, step: usize) {
        if error > self.reconstruction_error.0 {
            self.reconstruction_error = (error, step);
        }
    }

    pub(crate) fn hold(&mut self, k: usize) {
        self.live += k;
        self.peak = self.peak.max(self.live);
    }
    pub(crate) fn release(&mut self, k: usize) {
        self.live -= k.min(self.live);
    }
}

/// What every strategy differentiates: `loss(solve(term, solver, y0, opts))`.
pub(crate) struct Problem<'a> {
    pub(crate) term: &'a dyn Term,
    pub(crate) solver: &'a dyn Solver,
    pub(crate) y0: &'a [f64],
    pub(crate) opts: &'a SolveOptions,
    pub(crate) loss: &'a dyn Loss,
    /// The strategy, named in errors.
    pub(crate) strategy: Adjoint,
}

/// A strategy's result: the forward solve, $\partial L/\partial y_0$, $\partial L/\partial\theta$, $L$.
type Parts = (Forward, Vec<f64>, Vec<f64>, f64);

/// The backward sweep shared by the exact strategies: the carry cotangent, the parameter
/// cotangent, and the output cotangents waiting at their nodes.
pub(crate) struct Backward<'a> {
    term: &'a dyn Term,
    solver: &'a dyn Solver,
    strategy: Adjoint,
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
    pub(crate) fn new(p: &Problem<'a>, fwd: &'a Forward) -> Result<(Self, f64)> {
        let (term, solver, n) = (p.term, p.solver, p.y0.len());
        let (value, cots) = p.loss.value_and_grad(&fwd.out_times, &fwd.outputs)?;
        let steps = fwd.times.len() - 1;
        if !value.is_finite() || cots.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::NonFiniteGradient { strategy: p.strategy.key(), what: "loss", step: steps, t: fwd.times.at(steps) });
        }
        let clen = solver.carry_len(term, n);
        let mut pending: Vec<(usize, Vec<f64>)> = fwd.out_nodes.iter().copied().zip(cots).collect();
        pending.sort_by_key(|p| p.0);
        let mut b = Self {
            term,
            solver,
            strategy: p.strategy,
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
        self.solver.step_vjp(Step::new(self.term, self.n, t0, t1), carry_i, &self.bar, Cotangents::new(&mut self.scratch, &mut self.theta_bar))?;
        self.finish_step(i)
    }

    /// After `scratch` received the cotangent of node `i`: make it current, check it, absorb
    /// the output cotangents at node `i`.
    pub(crate) fn finish_step(&mut self, i: usize) -> Result<()> {
        std::mem::swap(&mut self.bar, &mut self.scratch);
        if !self.bar.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteGradient { strategy: self.strategy.key(), what: "cotangent", step: i, t: self.times.at(i) });
        }
        self.absorb(i);
        Ok(())
    }

    /// Pull back through `init` and return `(d_y0, d_theta)`.
    pub(crate) fn finish(mut self, t0: f64, y0: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut d_y0 = vec![0.0; self.n];
        self.solver.init_vjp(self.term, t0, y0, &self.bar, Cotangents::new(&mut d_y0, &mut self.theta_bar))?;
        Ok((d_y0, self.theta_bar))
    }
}

fn full_storage(p: &Problem, store: &mut Store) -> Result<Parts> {
    let Problem { term, solver, y0, opts, .. } = *p;
    let mut tape: Vec<Vec<f64>> = Vec::new();
    let fwd = forward(term, solver, y0, opts, |_, c| {
        tape.push(c.to_vec());
        Ok(())
    })?;
    store.hold(tape.len() + 1);
    let (mut bw, value) = Backward::new(p, &fwd)?;
    for i in (0..tape.len()).rev() {
        bw.step(i, &tape[i])?;
    }
    let (d_y0, d_theta) = bw.finish(opts.t0, y0)?;
    Ok((fwd, d_y0, d_theta, value))
}

/// The reversible adjoint; with `every = Some(K)` a carry is stored every K steps and the
/// reconstruction restarts from it. The certificate compares each rebuilt carry with the one it
/// should equal (stored, or the initial carry from `y0`).
fn reversible(p: &Problem, every: Option<usize>, store: &mut Store) -> Result<Parts> {
    let Problem { term, solver, y0, opts, .. } = *p;
    let rev = solver.as_reversible().ok_or_else(|| Error::NotReversible { solver: solver.name() })?;
    if every == Some(0) {
        return Err(Error::InvalidArgument { name: "K (steps between stored carries)", value: 0.0, expected: "at least 1" });
    }
    let mut stored: Vec<(usize, Vec<f64>)> = Vec::new();
    let fwd = forward(term, solver, y0, opts, |i, c| {
        if every.is_some_and(|k| i > 0 && i % k == 0) {
            stored.push((i, c.to_vec()));
        }
        Ok(())
    })?;
    store.hold(1 + stored.len());
    let n = y0.len();
    let (mut bw, value) = Backward::new(p, &fwd)?;
    let mut carry = fwd.final_carry.clone();
    let mut prev = vec![0.0; carry.len()];
    for i in (0..fwd.times.len() - 1).rev() {
        let (t0, t1) = (fwd.times.at(i), fwd.times.at(i + 1));
        rev.reverse_step_vjp(Step::new(term, n, t0, t1), &carry, &bw.bar, &mut prev, Cotangents::new(&mut bw.scratch, &mut bw.theta_bar))?;
        if !prev.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteState { t: t0, step: i, context: " during reversible reconstruction".into() });
        }
        bw.finish_step(i)?;
        if stored.last().is_some_and(|(k, _)| *k == i) {
            if let Some((_, c)) = stored.pop() {
                store.certify(rel_dist(&prev, &c), i);
                prev = c;
            }
        }
        std::mem::swap(&mut carry, &mut prev);
    }
    let mut initial = vec![0.0; carry.len()];
    solver.init(term, opts.t0, y0, &mut initial)?;
    store.certify(rel_dist(&carry, &initial), 0);
    let (d_y0, d_theta) = bw.finish(opts.t0, y0)?;
    Ok((fwd, d_y0, d_theta, value))
}

/// $\|a - b\|_2 / \|b\|_2$ ($\|a - b\|_2$ when $b = 0$).
pub(crate) fn rel_dist(a: &[f64], b: &[f64]) -> f64 {
    let d = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if nb > 0.0 {
        d / nb
    } else {
        d
    }
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
