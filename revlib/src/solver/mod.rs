//! One-step solvers: the generic explicit Runge–Kutta method and the algebraically
//! reversible solvers built on it.
//!
//! A solver advances a **carry**: the state $y$ (always the first `n` entries) followed by
//! whatever auxiliary state the method keeps — nothing for Runge–Kutta, the coupled state
//! $z$ for [`Reversible`], $(\hat y, f(\hat y))$ for [`ReversibleHeun`], the velocity $v$ for
//! [`AsyncLeapfrog`]. Gradient strategies only ever see carries, so every strategy works with
//! every solver; steps of either sign are allowed (`t1 < t0` steps backwards in time).

mod reversible;

pub use reversible::{AsyncLeapfrog, Reversible, ReversibleHeun};

use crate::error::Result;
use crate::field::{with_scratch, with_taken, Term};
use crate::tableau::ButcherTableau;

/// One step of a solve: the term stepped with, the length $n$ of the state (the first $n$
/// entries of a carry) and the interval $[t_0, t_1]$ (either sign: $t_1 < t_0$ steps backwards).
#[derive(Clone, Copy)]
pub struct Step<'a> {
    /// The term (vector field × control increment).
    pub term: &'a dyn Term,
    /// Length of the state $y$.
    pub n: usize,
    /// Start of the step.
    pub t0: f64,
    /// End of the step.
    pub t1: f64,
}

impl<'a> Step<'a> {
    /// The step from `t0` to `t1` of a state of length `n`.
    pub fn new(term: &'a dyn Term, n: usize, t0: f64, t1: f64) -> Self {
        Self { term, n, t0, t1 }
    }
    /// The same step taken backwards, from `t1` to `t0`.
    pub fn reversed(self) -> Self {
        Self { t0: self.t1, t1: self.t0, ..self }
    }
}

/// Where a vector–Jacobian product writes: the cotangent of its input (**overwritten**) and the
/// parameter cotangent (**added to**).
pub struct Cotangents<'a> {
    /// Cotangent of the input (a carry or a state).
    pub input: &'a mut [f64],
    /// Cotangent of the parameters $\theta$.
    pub theta: &'a mut [f64],
}

impl<'a> Cotangents<'a> {
    /// Both outputs.
    pub fn new(input: &'a mut [f64], theta: &'a mut [f64]) -> Self {
        Self { input, theta }
    }
    /// Reborrow (to pass on without giving the outputs away).
    pub fn reborrow(&mut self) -> Cotangents<'_> {
        Cotangents { input: self.input, theta: self.theta }
    }
}

/// A one-step method on a carry, with the vector–Jacobian product of its step.
pub trait Solver: Sync {
    /// Name used in tables and benchmark keys.
    fn name(&self) -> String;
    /// Classical order of convergence.
    fn order(&self) -> usize;
    /// Length of the carry for a state of length `n`.
    fn carry_len(&self, term: &dyn Term, n: usize) -> usize;
    /// Whether [`step`](Solver::step) can return an error estimate (needed for adaptive steps).
    fn has_error_estimate(&self) -> bool;
    /// Order $q$ of the error estimate's underlying solution (the estimate is $O(h^{q+1})$),
    /// used by the step-size controller.
    fn error_order(&self) -> usize;
    /// Fill `carry` (length [`carry_len`](Solver::carry_len)) from the initial state.
    fn init(&self, term: &dyn Term, t0: f64, y0: &[f64], carry: &mut [f64]) -> Result<()>;
    /// Pull the carry cotangent back through [`init`](Solver::init) onto $y_0$ and $\theta$.
    fn init_vjp(&self, term: &dyn Term, t0: f64, y0: &[f64], carry_bar: &[f64], bar: Cotangents) -> Result<()>;
    /// One step: `out` receives the new carry; `err`, if given, an error estimate for the new
    /// state (length `n`).
    fn step(&self, s: Step, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()>;
    /// VJP of [`step`](Solver::step) at `carry`: $(\partial\,\text{out}/\partial\,\text{carry})^\top
    /// \overline{\text{out}}$ into `bar.input`, the parameter cotangent added to `bar.theta`. The
    /// step times are treated as constants.
    fn step_vjp(&self, s: Step, carry: &[f64], out_bar: &[f64], bar: Cotangents) -> Result<()>;
    /// `Some` for algebraically reversible solvers.
    fn as_reversible(&self) -> Option<&dyn ReversibleSolver> {
        None
    }
}

/// A solver whose step has an exact algebraic inverse.
#[doc(alias = "backward_step")]
pub trait ReversibleSolver: Solver {
    /// Reconstruct the carry at `s.t0` from the carry at `s.t1` (the inverse of
    /// [`Solver::step`] over `s`), exact up to floating-point round-off.
    fn reverse_step(&self, s: Step, carry_out: &[f64], carry_in: &mut [f64]) -> Result<()>;
    /// Reconstruct the carry at `s.t0` **and** pull `out_bar` back through the step, sharing
    /// the vector-field evaluations of the reconstruction with the VJP. The default calls
    /// [`reverse_step`](ReversibleSolver::reverse_step) then [`Solver::step_vjp`].
    fn reverse_step_vjp(&self, s: Step, carry_out: &[f64], out_bar: &[f64], carry_in: &mut [f64], bar: Cotangents) -> Result<()> {
        self.reverse_step(s, carry_out, carry_in)?;
        self.step_vjp(s, carry_in, out_bar, bar)
    }
}

/// A one-step method $\Psi_{t_0 \to t_1}$ on the state alone (no auxiliary carry) that can step
/// in either direction: the base method that [`Reversible`] makes algebraically reversible.
///
/// [`ExplicitRk`] implements it; so can a user's own method (or, later, a stochastic step)
/// to be wrapped by [`Reversible`].
pub trait BaseSolver: Sync {
    /// What [`advance_vjp`](BaseSolver::advance_vjp) needs from the forward step (for Runge–Kutta
    /// methods, what each stage's VJP needs).
    type Saved: Default + Send;
    /// Name used in tables.
    fn name(&self) -> String;
    /// Classical order.
    fn order(&self) -> usize;
    /// Order of the embedded solution behind the error estimate, if the method has one.
    fn error_order(&self) -> Option<usize>;
    /// $\Psi_{t_0 \to t_1}(y)$ into `out`; the error estimate into `err` if asked; what the VJP
    /// needs into `saved` if given.
    fn advance(&self, s: Step, y: &[f64], out: &mut [f64], err: Option<&mut [f64]>, saved: Option<&mut Self::Saved>) -> Result<()>;
    /// Pull `out_bar` back through the step that filled `saved`: $J_\Psi^\top \overline{\text{out}}$
    /// into `bar.input`, the parameter cotangent added to `bar.theta`.
    fn advance_vjp(&self, s: Step, saved: &Self::Saved, out_bar: &[f64], bar: Cotangents) -> Result<()>;
    /// Run `f` with two `Saved` buffers for one step's VJP ([`Reversible`]'s two base steps).
    /// The default makes fresh ones; a method whose saved data is large (an MLP's activations,
    /// hundreds of kB at batch 256) keeps them between calls on this thread, so that a sweep
    /// of many steps allocates, zeroes and page-faults them once instead of at every step.
    fn with_saved<R>(&self, f: impl FnOnce(&mut Self::Saved, &mut Self::Saved) -> R) -> R {
        f(&mut Self::Saved::default(), &mut Self::Saved::default())
    }
}

/// An explicit Runge–Kutta method driven by a [`ButcherTableau`].
///
/// Cost per step: $s$ vector-field evaluations (fewer with fixed steps when trailing stages
/// serve only the error estimate); the VJP recomputes the $s$ stages, saving what each
/// stage's VJP needs (for an MLP its activations), and takes $s$ VJPs from those.
/// Memory: $O(s)$ vectors of working space.
///
/// # Examples
/// ```
/// use revlib::prelude::*;
/// # fn main() -> revlib::Result<()> {
/// let field = Linear::scalar(-1.0);
/// let opts = SolveOptions::fixed(0.0, 1.0, 100).save_at(SaveAt::Final);
/// let sol = solve(&field, &ExplicitRk::rk4(), &[1.0], &opts)?;
/// assert!((sol.ys[0][0] - (-1.0f64).exp()).abs() < 1e-9);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitRk {
    tableau: ButcherTableau,
}

impl ExplicitRk {
    /// A method from any validated tableau.
    pub fn new(tableau: ButcherTableau) -> Self {
        Self { tableau }
    }
    /// Forward Euler (order 1).
    pub fn euler() -> Self {
        Self::new(ButcherTableau::euler())
    }
    /// Explicit midpoint (order 2).
    pub fn midpoint() -> Self {
        Self::new(ButcherTableau::midpoint())
    }
    /// Heun 2(1).
    pub fn heun() -> Self {
        Self::new(ButcherTableau::heun())
    }
    /// Ralston's third-order method.
    pub fn ralston3() -> Self {
        Self::new(ButcherTableau::ralston3())
    }
    /// Classical RK4.
    pub fn rk4() -> Self {
        Self::new(ButcherTableau::rk4())
    }
    /// Bogacki–Shampine 3(2).
    pub fn bosh3() -> Self {
        Self::new(ButcherTableau::bosh3())
    }
    /// Dormand–Prince 5(4).
    pub fn dopri5() -> Self {
        Self::new(ButcherTableau::dopri5())
    }
    /// The tableau.
    pub fn tableau(&self) -> &ButcherTableau {
        &self.tableau
    }
}

/// What the VJP of an explicit Runge–Kutta step needs: per stage, what the term saved (for an
/// MLP, its activations).
pub type RkStages = Vec<Vec<f64>>;

thread_local! {
    /// This thread's stage buffers for [`ExplicitRk::with_saved`], kept between steps.
    static STAGES: std::cell::Cell<(RkStages, RkStages)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
    /// This thread's working space for a step's stages and their cotangents.
    static RK_WORK: std::cell::Cell<Vec<f64>> = const { std::cell::Cell::new(Vec::new()) };
}

impl BaseSolver for ExplicitRk {
    type Saved = RkStages;
    fn name(&self) -> String {
        self.tableau.name().to_string()
    }
    fn order(&self) -> usize {
        self.tableau.order()
    }
    fn error_order(&self) -> Option<usize> {
        self.tableau.b_err().map(|_| self.tableau.embedded_order().unwrap_or(self.tableau.order()))
    }
    /// Runs the stages (fewer without `err` when trailing stages serve only the error estimate).
    fn advance(&self, s: Step, y: &[f64], out: &mut [f64], err: Option<&mut [f64]>, mut saved: Option<&mut RkStages>) -> Result<()> {
        let (tab, term, (t0, t1)) = (&self.tableau, s.term, (s.t0, s.t1));
        let h = t1 - t0;
        let m = term.vf_len(y.len());
        let stages = if err.is_some() { tab.stages() } else { tab.solution_stages() };
        // One saved entry per stage, reusing the vectors of an earlier step (each `vf_save`
        // overwrites its entry).
        if let Some(kp) = saved.as_deref_mut() {
            kp.resize_with(stages, Vec::new);
        }
        // The stages k_1..k_s, then the stage state, in this thread's working space.
        with_scratch(&RK_WORK, stages * m + y.len(), |work| {
            let (ks, yi) = work.split_at_mut(stages * m);
            for i in 0..stages {
                yi.copy_from_slice(y);
                let (done, rest) = ks.split_at_mut(i * m);
                for (j, &a) in tab.a_row(i).iter().enumerate() {
                    if a != 0.0 {
                        term.prod_add(a, &done[j * m..(j + 1) * m], t0, t1, yi);
                    }
                }
                let k = &mut rest[..m];
                k.fill(0.0);
                match saved.as_deref_mut() {
                    Some(kp) => term.vf_save(t0 + tab.c()[i] * h, yi, k, &mut kp[i])?,
                    None => term.vf(t0 + tab.c()[i] * h, yi, k)?,
                }
            }
            out.copy_from_slice(y);
            for (bi, k) in tab.b().iter().zip(ks.chunks_exact(m)) {
                if *bi != 0.0 {
                    term.prod_add(*bi, k, t0, t1, out);
                }
            }
            if let (Some(e), Some(w)) = (err, tab.b_err()) {
                e.fill(0.0);
                for (wi, k) in w.iter().zip(ks.chunks_exact(m)) {
                    if *wi != 0.0 {
                        term.prod_add(*wi, k, t0, t1, e);
                    }
                }
            }
            Ok(())
        })
    }
    fn advance_vjp(&self, s: Step, stages: &RkStages, out_bar: &[f64], bar: Cotangents) -> Result<()> {
        let (tab, term, (t0, t1)) = (&self.tableau, s.term, (s.t0, s.t1));
        let n = out_bar.len();
        let m = term.vf_len(n);
        let y_bar = bar.input;
        y_bar.copy_from_slice(out_bar);
        // The stages' cotangents, then one stage state's, in this thread's working space.
        with_scratch(&RK_WORK, stages.len() * m + n, |work| {
            let (kbar, ybar_i) = work.split_at_mut(stages.len() * m);
            for (i, k) in kbar.chunks_exact_mut(m).enumerate() {
                k.fill(0.0);
                if tab.b()[i] != 0.0 {
                    term.prod_transpose_add(tab.b()[i], out_bar, t0, t1, k);
                }
            }
            for i in (0..stages.len()).rev() {
                term.vf_vjp_saved(&stages[i], &kbar[i * m..(i + 1) * m], ybar_i, bar.theta)?;
                for (a, b) in y_bar.iter_mut().zip(ybar_i.iter()) {
                    *a += b;
                }
                for (j, &a) in tab.a_row(i).iter().enumerate() {
                    if a != 0.0 {
                        term.prod_transpose_add(a, ybar_i, t0, t1, &mut kbar[j * m..(j + 1) * m]);
                    }
                }
            }
            Ok(())
        })
    }
    fn with_saved<R>(&self, f: impl FnOnce(&mut RkStages, &mut RkStages) -> R) -> R {
        with_taken(&STAGES, |(a, b)| f(a, b))
    }
}

impl Solver for ExplicitRk {
    fn name(&self) -> String {
        BaseSolver::name(self)
    }
    fn order(&self) -> usize {
        BaseSolver::order(self)
    }
    fn carry_len(&self, _term: &dyn Term, n: usize) -> usize {
        n
    }
    fn has_error_estimate(&self) -> bool {
        self.tableau.b_err().is_some()
    }
    fn error_order(&self) -> usize {
        BaseSolver::error_order(self).unwrap_or(self.tableau.order())
    }
    fn init(&self, _term: &dyn Term, _t0: f64, y0: &[f64], carry: &mut [f64]) -> Result<()> {
        carry.copy_from_slice(y0);
        Ok(())
    }
    fn init_vjp(&self, _term: &dyn Term, _t0: f64, _y0: &[f64], carry_bar: &[f64], bar: Cotangents) -> Result<()> {
        bar.input.copy_from_slice(carry_bar);
        Ok(())
    }
    fn step(&self, s: Step, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()> {
        self.advance(s, carry, out, err, None)
    }
    fn step_vjp(&self, s: Step, carry: &[f64], out_bar: &[f64], bar: Cotangents) -> Result<()> {
        let mut out = vec![0.0; carry.len()];
        self.with_saved(|stages, _| {
            self.advance(s, carry, &mut out, None, Some(&mut *stages))?;
            self.advance_vjp(s, stages, out_bar, bar)
        })
    }
}
