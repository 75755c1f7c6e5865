//! The reversible fixed-point iteration and its exact backward pass, written once for any
//! state type: host vectors (through [`FixedPointMap`]) or tensors that stay on a device
//! (the dfdx transformer block, feature `nn`).

use super::{FixedPointMap, FixedPointOptions, FixedPointSolver};
use crate::error::{Error, Result};

/// A fixed-point map $f(z, x)$ on states of its own type, with what the reversible iteration
/// and its backward pass need: evaluation, VJP, linear combinations and norms.
pub trait StateMap {
    /// An iterate ($y_n$, $z_n$) or a cotangent.
    type State: Clone;
    /// The injected input $x$.
    type Input: ?Sized;
    /// Accumulated cotangents of the parameters and of $x$.
    type Grads;
    /// The zero state of the shape of `x`.
    fn zeros(&self, x: &Self::Input) -> Result<Self::State>;
    /// $f(z, x)$.
    fn eval(&self, z: &Self::State, x: &Self::Input) -> Result<Self::State>;
    /// Returns $(\partial f/\partial z)^\top a$ and adds $(\partial f/\partial(\theta, x))^\top a$ to `grads`.
    fn vjp(&self, z: &Self::State, x: &Self::Input, a: &Self::State, grads: &mut Self::Grads) -> Result<Self::State>;
    /// $a\,u + b\,v$.
    fn lincomb(&self, a: f64, u: &Self::State, b: f64, v: &Self::State) -> Result<Self::State>;
    /// $(\|u - v\|_2, \|v\|_2)$ over the whole batch.
    fn residual(&self, u: &Self::State, v: &Self::State) -> Result<(f64, f64)>;
    /// Whether every entry is finite.
    fn finite(&self, u: &Self::State) -> Result<bool>;
}

/// The result of [`reversible_solve`].
#[derive(Debug, Clone)]
pub struct ReversibleSolve<S> {
    /// $y_N$.
    pub y: S,
    /// $z_N$, the output.
    pub z: S,
    /// Iterations run, $N$.
    pub iterations: usize,
    /// Relative residual $\|z_n - f(z_n)\| / \|f(z_n)\|$, $n = 0 \dots N$.
    pub residuals: Vec<f64>,
    /// Whether the tolerance was met.
    pub converged: bool,
    /// Evaluations of f (1 + 2N).
    pub nfe: usize,
}

/// Evaluations and VJPs of a backward pass, and its certificate of exactness.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackwardCost {
    /// Evaluations of f.
    pub nfe: usize,
    /// VJPs of f.
    pub vjps: usize,
    /// $\|(\hat y_0, \hat z_0)\|_2 / \|z_N\|_2$: the rebuilt start of the iteration, which
    /// is known to be zero, relative to the output. Round-off size when the gradient is exact;
    /// large when the reconstruction lost the trajectory (β far from 1, many iterations).
    pub reconstruction_error: f64,
}

fn ensure_finite<M: StateMap>(m: &M, s: &M::State, iteration: usize, context: &str) -> Result<()> {
    if m.finite(s)? {
        Ok(())
    } else {
        Err(Error::NonFiniteIterate { iteration, context: context.into() })
    }
}

/// The reversible iteration from $y_0 = z_0 = 0$:
/// $y_{n+1} = (1-\beta) y_n + \beta f(z_n)$, $z_{n+1} = (1-\beta) z_n + \beta f(y_{n+1})$, stopping
/// at the first $z_n$ with $\|z_n - f(z_n)\| < \text{tol}\,\|f(z_n)\| + 10^{-8}$ or after
/// `max_steps`. `on_iterate(n, y_n, z_n)` sees every iterate (to keep a trajectory).
///
/// # Errors
/// β outside (0, 2) or equal to 1, a negative tolerance, [`Error::NonFiniteIterate`], and in
/// strict mode [`Error::NoConvergence`].
pub fn reversible_solve<M: StateMap>(m: &M, x: &M::Input, beta: f64, opts: &FixedPointOptions, mut on_iterate: impl FnMut(usize, &M::State, &M::State)) -> Result<ReversibleSolve<M::State>> {
    FixedPointSolver::Reversible { beta }.validate()?;
    if !(opts.tol >= 0.0) {
        return Err(Error::InvalidArgument { name: "tol", value: opts.tol, expected: "non-negative" });
    }
    let mut y = m.zeros(x)?;
    let mut z = y.clone();
    let mut fz = m.eval(&z, x)?;
    ensure_finite(m, &fz, 0, " (f(z0))")?;
    on_iterate(0, &y, &z);
    let (r, nf) = m.residual(&z, &fz)?;
    let mut residuals = vec![r / nf.max(1e-300)];
    let mut converged = r < opts.tol * nf + super::RESIDUAL_FLOOR;
    let (mut it, mut nfe) = (0, 1);
    while !converged && it < opts.max_steps {
        it += 1;
        y = m.lincomb(1.0 - beta, &y, beta, &fz)?;
        let fy = m.eval(&y, x)?;
        ensure_finite(m, &fy, it, " (f(y))")?;
        z = m.lincomb(1.0 - beta, &z, beta, &fy)?;
        ensure_finite(m, &z, it, "")?;
        fz = m.eval(&z, x)?;
        nfe += 2;
        ensure_finite(m, &fz, it, " (f(z))")?;
        on_iterate(it, &y, &z);
        let (r, nf) = m.residual(&z, &fz)?;
        residuals.push(r / nf.max(1e-300));
        converged = r < opts.tol * nf + super::RESIDUAL_FLOOR;
    }
    if !converged && opts.strict {
        return Err(Error::NoConvergence { iterations: it, residual: residuals[residuals.len() - 1], tol: opts.tol });
    }
    Ok(ReversibleSolve { y, z, iterations: it, residuals, converged, nfe })
}

/// Pull the cotangents $(\bar y_{n+1}, \bar z_{n+1})$ back through one reversible iteration,
/// given $y_{n+1}$ and $z_n$; returns $(\bar y_n, \bar z_n)$ (two VJPs).
pub fn reversible_pullback<M: StateMap>(m: &M, x: &M::Input, beta: f64, y1: &M::State, z0: &M::State, bars: (M::State, M::State), grads: &mut M::Grads) -> Result<(M::State, M::State)> {
    let (ybar, zbar) = bars;
    // z_{n+1} = (1-β) z_n + β f(y_{n+1})
    let a = m.lincomb(beta, &zbar, 0.0, &zbar)?;
    let jy = m.vjp(y1, x, &a, grads)?;
    let ybar = m.lincomb(1.0, &ybar, 1.0, &jy)?;
    let zbar = m.lincomb(1.0 - beta, &zbar, 0.0, &zbar)?;
    // y_{n+1} = (1-β) y_n + β f(z_n)
    let a = m.lincomb(beta, &ybar, 0.0, &ybar)?;
    let jz = m.vjp(z0, x, &a, grads)?;
    Ok((m.lincomb(1.0 - beta, &ybar, 0.0, &ybar)?, m.lincomb(1.0, &zbar, 1.0, &jz)?))
}

/// Exact backpropagation through the reversible iteration of `fp` with the iterates rebuilt
/// backwards: $z_n = (z_{n+1} - \beta f(y_{n+1}))/(1-\beta)$, $y_n = (y_{n+1} - \beta f(z_n))/(1-\beta)$.
/// Two states are held whatever $N$. Parameter and input cotangents are added to `grads`.
///
/// The rebuilt $(y_0, z_0)$ should be zero: [`BackwardCost::reconstruction_error`] says how far
/// it is, relative to $\|z_N\|$.
///
/// # Errors
/// [`Error::NonFiniteIterate`] if the reconstruction blows up; evaluation errors.
pub fn reversible_backward<M: StateMap>(m: &M, x: &M::Input, fp: &ReversibleSolve<M::State>, beta: f64, dz: M::State, grads: &mut M::Grads) -> Result<BackwardCost> {
    let (mut y, mut z) = (fp.y.clone(), fp.z.clone());
    let mut bars = (m.zeros(x)?, dz);
    let mut cost = BackwardCost::default();
    for k in (0..fp.iterations).rev() {
        // Rebuild z_k from (y_{k+1}, z_{k+1}), keeping y_{k+1} for the pullback.
        let fy = m.eval(&y, x)?;
        z = m.lincomb(1.0 / (1.0 - beta), &z, -beta / (1.0 - beta), &fy)?;
        cost.nfe += 1;
        ensure_finite(m, &z, k, " during reversible reconstruction")?;
        bars = reversible_pullback(m, x, beta, &y, &z, bars, grads)?;
        cost.vjps += 2;
        // Then y_k from (y_{k+1}, z_k).
        let fz = m.eval(&z, x)?;
        y = m.lincomb(1.0 / (1.0 - beta), &y, -beta / (1.0 - beta), &fz)?;
        cost.nfe += 1;
        ensure_finite(m, &y, k, " during reversible reconstruction")?;
    }
    let zeros = m.zeros(x)?;
    let (ny, _) = m.residual(&y, &zeros)?;
    let (nz, _) = m.residual(&z, &zeros)?;
    let (nout, _) = m.residual(&fp.z, &zeros)?;
    let rebuilt = ny.hypot(nz);
    cost.reconstruction_error = if nout > 0.0 { rebuilt / nout } else { rebuilt };
    Ok(cost)
}

/// A [`FixedPointMap`] on host vectors as a [`StateMap`]; its gradients are $(\bar\theta, \bar x)$.
pub struct OnHost<'a>(pub &'a dyn FixedPointMap);

impl StateMap for OnHost<'_> {
    type State = Vec<f64>;
    type Input = [f64];
    type Grads = (Vec<f64>, Vec<f64>);
    fn zeros(&self, x: &[f64]) -> Result<Vec<f64>> {
        Ok(vec![0.0; x.len()])
    }
    fn eval(&self, z: &Vec<f64>, x: &[f64]) -> Result<Vec<f64>> {
        let mut out = vec![0.0; x.len()];
        self.0.eval(z, x, &mut out)?;
        Ok(out)
    }
    fn vjp(&self, z: &Vec<f64>, x: &[f64], a: &Vec<f64>, grads: &mut Self::Grads) -> Result<Vec<f64>> {
        let mut a_z = vec![0.0; x.len()];
        self.0.vjp(z, x, a, &mut a_z, &mut grads.0, &mut grads.1)?;
        Ok(a_z)
    }
    fn lincomb(&self, a: f64, u: &Vec<f64>, b: f64, v: &Vec<f64>) -> Result<Vec<f64>> {
        Ok(u.iter().zip(v).map(|(p, q)| a * p + b * q).collect())
    }
    fn residual(&self, u: &Vec<f64>, v: &Vec<f64>) -> Result<(f64, f64)> {
        Ok(super::residual(u, v))
    }
    fn finite(&self, u: &Vec<f64>) -> Result<bool> {
        Ok(u.iter().all(|v| v.is_finite()))
    }
}
