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
use crate::field::Term;
use crate::tableau::ButcherTableau;

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
    /// Pull the carry cotangent back through [`init`](Solver::init): overwrites `y0_bar`,
    /// adds to `theta_bar`.
    fn init_vjp(&self, term: &dyn Term, t0: f64, y0: &[f64], carry_bar: &[f64], y0_bar: &mut [f64], theta_bar: &mut [f64]) -> Result<()>;
    /// One step from `t0` to `t1`: `out` receives the new carry; `err`, if given, an error
    /// estimate for the new state (length `n`).
    fn step(&self, term: &dyn Term, n: usize, t0: f64, t1: f64, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()>;
    /// VJP of [`step`](Solver::step) at `carry`: overwrites `carry_bar` with
    /// $(\partial\,\text{out}/\partial\,\text{carry})^\top \overline{\text{out}}$ and adds the
    /// parameter cotangent to `theta_bar`. The step times are treated as constants.
    #[allow(clippy::too_many_arguments)]
    fn step_vjp(&self, term: &dyn Term, n: usize, t0: f64, t1: f64, carry: &[f64], out_bar: &[f64], carry_bar: &mut [f64], theta_bar: &mut [f64]) -> Result<()>;
    /// `Some` for algebraically reversible solvers.
    fn as_reversible(&self) -> Option<&dyn ReversibleSolver> {
        None
    }
}

/// A solver whose step has an exact algebraic inverse.
#[doc(alias = "backward_step")]
pub trait ReversibleSolver: Solver {
    /// Reconstruct the carry at `t0` from the carry at `t1` (the inverse of
    /// [`Solver::step`] from `t0` to `t1`), exact up to floating-point round-off.
    fn reverse_step(&self, term: &dyn Term, n: usize, t0: f64, t1: f64, carry_out: &[f64], carry_in: &mut [f64]) -> Result<()>;
    /// Reconstruct the carry at `t0` **and** pull `out_bar` back through the step, sharing
    /// the vector-field evaluations of the reconstruction with the VJP. The default calls
    /// [`reverse_step`](ReversibleSolver::reverse_step) then [`Solver::step_vjp`].
    #[allow(clippy::too_many_arguments)]
    fn reverse_step_vjp(
        &self,
        term: &dyn Term,
        n: usize,
        t0: f64,
        t1: f64,
        carry_out: &[f64],
        out_bar: &[f64],
        carry_in: &mut [f64],
        carry_bar: &mut [f64],
        theta_bar: &mut [f64],
    ) -> Result<()> {
        self.reverse_step(term, n, t0, t1, carry_out, carry_in)?;
        self.step_vjp(term, n, t0, t1, carry_in, out_bar, carry_bar, theta_bar)
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

    /// Run the stages from `y` over `[t0, t1]` (either sign), writing $\Psi_{t_0\to t_1}(y)$
    /// to `out`, the error estimate to `err`, and into `keep` what each stage's VJP needs
    /// (see [`Term::vf_save`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        term: &dyn Term,
        t0: f64,
        t1: f64,
        y: &[f64],
        out: &mut [f64],
        err: Option<&mut [f64]>,
        mut keep: Option<&mut Vec<Vec<f64>>>,
    ) -> Result<()> {
        let tab = &self.tableau;
        let h = t1 - t0;
        let m = term.vf_len(y.len());
        let s = if err.is_some() { tab.stages() } else { tab.solution_stages() };
        let mut ks: Vec<Vec<f64>> = Vec::with_capacity(s);
        if let Some(k) = keep.as_deref_mut() {
            k.clear();
        }
        for i in 0..s {
            let mut yi = y.to_vec();
            for (j, &a) in tab.a_row(i).iter().enumerate() {
                if a != 0.0 {
                    term.prod_add(a, &ks[j], t0, t1, &mut yi);
                }
            }
            let mut k = vec![0.0; m];
            match keep.as_deref_mut() {
                Some(kp) => {
                    let mut saved = Vec::new();
                    term.vf_save(t0 + tab.c()[i] * h, &yi, &mut k, &mut saved)?;
                    kp.push(saved);
                }
                None => term.vf(t0 + tab.c()[i] * h, &yi, &mut k)?,
            }
            ks.push(k);
        }
        out.copy_from_slice(y);
        for (bi, k) in tab.b().iter().zip(&ks) {
            if *bi != 0.0 {
                term.prod_add(*bi, k, t0, t1, out);
            }
        }
        if let (Some(e), Some(w)) = (err, tab.b_err()) {
            e.fill(0.0);
            for (wi, k) in w.iter().zip(&ks) {
                if *wi != 0.0 {
                    term.prod_add(*wi, k, t0, t1, e);
                }
            }
        }
        Ok(())
    }

    /// Pull `out_bar` back through the step whose stages were saved in `stages` by
    /// [`run`](ExplicitRk::run); overwrites `y_bar`, adds to `theta_bar`.
    pub(crate) fn vjp_stages(
        &self,
        term: &dyn Term,
        t0: f64,
        t1: f64,
        stages: &[Vec<f64>],
        out_bar: &[f64],
        y_bar: &mut [f64],
        theta_bar: &mut [f64],
    ) -> Result<()> {
        let tab = &self.tableau;
        let n = out_bar.len();
        let m = term.vf_len(n);
        let s = stages.len();
        y_bar.copy_from_slice(out_bar);
        let mut kbar: Vec<Vec<f64>> = (0..s)
            .map(|i| {
                let mut k = vec![0.0; m];
                if tab.b()[i] != 0.0 {
                    term.prod_transpose_add(tab.b()[i], out_bar, t0, t1, &mut k);
                }
                k
            })
            .collect();
        let mut ybar_i = vec![0.0; n];
        for i in (0..s).rev() {
            term.vf_vjp_saved(&stages[i], &kbar[i], &mut ybar_i, theta_bar)?;
            for (a, b) in y_bar.iter_mut().zip(&ybar_i) {
                *a += b;
            }
            for (j, &a) in tab.a_row(i).iter().enumerate() {
                if a != 0.0 {
                    term.prod_transpose_add(a, &ybar_i, t0, t1, &mut kbar[j]);
                }
            }
        }
        Ok(())
    }
}

impl Solver for ExplicitRk {
    fn name(&self) -> String {
        self.tableau.name().to_string()
    }
    fn order(&self) -> usize {
        self.tableau.order()
    }
    fn carry_len(&self, _term: &dyn Term, n: usize) -> usize {
        n
    }
    fn has_error_estimate(&self) -> bool {
        self.tableau.b_err().is_some()
    }
    fn error_order(&self) -> usize {
        self.tableau.embedded_order().unwrap_or(self.tableau.order())
    }
    fn init(&self, _term: &dyn Term, _t0: f64, y0: &[f64], carry: &mut [f64]) -> Result<()> {
        carry.copy_from_slice(y0);
        Ok(())
    }
    fn init_vjp(&self, _term: &dyn Term, _t0: f64, _y0: &[f64], carry_bar: &[f64], y0_bar: &mut [f64], _theta_bar: &mut [f64]) -> Result<()> {
        y0_bar.copy_from_slice(carry_bar);
        Ok(())
    }
    fn step(&self, term: &dyn Term, _n: usize, t0: f64, t1: f64, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()> {
        self.run(term, t0, t1, carry, out, err, None)
    }
    fn step_vjp(&self, term: &dyn Term, _n: usize, t0: f64, t1: f64, carry: &[f64], out_bar: &[f64], carry_bar: &mut [f64], theta_bar: &mut [f64]) -> Result<()> {
        let mut stages = Vec::new();
        let mut out = vec![0.0; carry.len()];
        self.run(term, t0, t1, carry, &mut out, None, Some(&mut stages))?;
        self.vjp_stages(term, t0, t1, &stages, out_bar, carry_bar, theta_bar)
    }
}
