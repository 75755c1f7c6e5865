//! Deep equilibrium layers: $z^* = f_\theta(z^*, x)$ found by a fixed-point solver, and four
//! ways to differentiate through it (McCallum, Arora & Foster, *Reversible Deep Equilibrium
//! Models*, arXiv:2509.12917; Bai, Kolter & Koltun, *Deep Equilibrium Models*, NeurIPS 2019).
//!
//! | solver | update | f evaluations |
//! |---|---|---|
//! | [`FixedPointSolver::Picard`] | $z \leftarrow f(z)$ | 1 per iteration (+1 for the last residual) |
//! | [`FixedPointSolver::Relaxed`] | $z \leftarrow (1-\beta)z + \beta f(z)$ | as Picard |
//! | [`FixedPointSolver::Anderson`] | Anderson mixing of the last $m$ iterates | as Picard |
//! | [`FixedPointSolver::Reversible`] | $y \leftarrow (1-\beta)y + \beta f(z)$, $z \leftarrow (1-\beta)z + \beta f(y)$ | 1 + 2 per iteration |
//!
//! The reversible iteration (McCallum, Arora & Foster 2025) has the exact inverse
//! $z_n = (z_{n+1} - \beta f(y_{n+1}))/(1-\beta)$, $y_n = (y_{n+1} - \beta f(z_n))/(1-\beta)$, so its
//! backward pass rebuilds the iterates instead of storing them.
//!
//! Stopping rule: stop at the first iterate with $\|z_n - f(z_n)\| < \text{tol}\,\|f(z_n)\| + 10^{-8}$
//! (2-norms over the whole batch), or after `max_steps` iterations.
//!
//! | backward ([`DeqBackward`]) | gradient | stored states |
//! |---|---|---|
//! | `Unrolled` | exact backprop through the iterations | every iterate |
//! | `Implicit` | implicit function theorem, $g = J^\top g + \partial L/\partial z^*$ solved iteratively | 1 |
//! | `Phantom` | backprop through $K$ relaxed steps from $z^*$ | $K + 1$ |
//! | `Reversible` | exact backprop through the reversible iteration, iterates rebuilt | 2 |
//!
//! # Example
//! ```
//! use revlib::deq::*;
//! # fn main() -> revlib::Result<()> {
//! let f = TanhMap::random(4, 0.6, 2, 0)?; // z, x in R^4, batch 2, Lipschitz 0.6
//! let x = vec![0.3; 8];
//! let opts = FixedPointOptions { tol: 1e-10, max_steps: 10, strict: false };
//! let fp = fixed_point(&f, &x, FixedPointSolver::Reversible { beta: 0.8 }, &opts, true)?;
//! let dz = vec![1.0; 8]; // dL/dz* for L = sum(z*)
//! let rev = backward(&f, &x, &fp, &dz, DeqBackward::Reversible)?;
//! let unrolled = backward(&f, &x, &fp, &dz, DeqBackward::Unrolled)?;
//! assert!(revlib::rel_err(&rev.d_theta, &unrolled.d_theta) < 1e-8);
//! assert_eq!(rev.stored_states, 2);
//! # Ok(()) }
//! ```

mod maps;
mod reversible;

pub use maps::TanhMap;
pub use reversible::{reversible_backward, reversible_pullback, reversible_solve, BackwardCost, OnHost, ReversibleSolve, StateMap};

/// The absolute part of the stopping rule $\|z - f(z)\| < \text{tol}\,\|f(z)\| + 10^{-8}$.
pub const RESIDUAL_FLOOR: f64 = 1e-8;

use crate::error::{check_len, Error, Result};

/// $f_\theta(z, x)$ with vector–Jacobian products; `z` and `x` have the same (flat, batched)
/// length.
pub trait FixedPointMap {
    /// Number of parameters θ.
    fn n_params(&self) -> usize;
    /// `out = f(z, x)`.
    fn eval(&self, z: &[f64], x: &[f64], out: &mut [f64]) -> Result<()>;
    /// `a_z = (∂f/∂z)ᵀ a` (overwritten), `a_theta += (∂f/∂θ)ᵀ a`, `a_x += (∂f/∂x)ᵀ a`.
    fn vjp(&self, z: &[f64], x: &[f64], a: &[f64], a_z: &mut [f64], a_theta: &mut [f64], a_x: &mut [f64]) -> Result<()>;
}

/// A fixed-point solver.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FixedPointSolver {
    /// $z \leftarrow f(z)$.
    Picard,
    /// $z \leftarrow (1-\beta) z + \beta f(z)$, $\beta \in (0, 2)$.
    Relaxed {
        /// Relaxation.
        beta: f64,
    },
    /// Anderson acceleration: the next iterate mixes the last `m + 1` iterates with weights that
    /// minimise the mixed residual (ridge-regularised least squares), damped by β.
    Anderson {
        /// Memory.
        m: usize,
        /// Damping (1 = undamped).
        beta: f64,
        /// Ridge regularisation of the least-squares problem.
        ridge: f64,
    },
    /// The reversible iteration, $\beta \in (0, 2)$, $\beta \ne 1$.
    Reversible {
        /// Relaxation.
        beta: f64,
    },
}

impl Default for FixedPointSolver {
    /// Picard iteration.
    fn default() -> Self {
        FixedPointSolver::Picard
    }
}

impl FixedPointSolver {
    /// Anderson with m = 5, β = 1, ridge 1e-8.
    pub fn anderson() -> Self {
        FixedPointSolver::Anderson { m: 5, beta: 1.0, ridge: 1e-8 }
    }
    fn validate(&self) -> Result<()> {
        let check_beta = |beta: f64| {
            if beta > 0.0 && beta < 2.0 {
                Ok(())
            } else {
                Err(Error::InvalidArgument { name: "beta", value: beta, expected: "in (0, 2)" })
            }
        };
        match *self {
            FixedPointSolver::Picard => Ok(()),
            FixedPointSolver::Relaxed { beta } => check_beta(beta),
            FixedPointSolver::Anderson { m, beta, ridge } => {
                if m == 0 {
                    return Err(Error::InvalidArgument { name: "m", value: 0.0, expected: "Anderson memory of at least 1" });
                }
                if !(ridge >= 0.0) {
                    return Err(Error::InvalidArgument { name: "ridge", value: ridge, expected: "non-negative" });
                }
                check_beta(beta)
            }
            FixedPointSolver::Reversible { beta } => {
                check_beta(beta)?;
                if beta == 1.0 {
                    return Err(Error::InvalidArgument { name: "beta", value: beta, expected: "β ≠ 1: the reversible iteration's inverse divides by 1 − β" });
                }
                Ok(())
            }
        }
    }
}

/// Stopping rule of a fixed-point solve.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FixedPointOptions {
    /// Relative tolerance: stop when $\|z - f(z)\| < \text{tol}\,\|f(z)\| + 10^{-8}$.
    pub tol: f64,
    /// Maximum number of iterations.
    pub max_steps: usize,
    /// When true, stopping at `max_steps` above tolerance is [`Error::NoConvergence`]; when
    /// false it returns the last iterate (the RevDEQ language model's setting).
    pub strict: bool,
}

impl Default for FixedPointOptions {
    /// The language model's setting: tol 1e-3, at most 4 iterations, not strict.
    fn default() -> Self {
        Self { tol: 1e-3, max_steps: 4, strict: false }
    }
}

/// The result of a fixed-point solve.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FixedPoint {
    /// The solver used.
    pub solver: FixedPointSolver,
    /// The output iterate $z_N$.
    pub z: Vec<f64>,
    /// The reversible iteration's second state $y_N$ (empty for other solvers).
    pub y: Vec<f64>,
    /// Iterations run, $N$.
    pub iterations: usize,
    /// Relative residual $\|z_N - f(z_N)\| / \|f(z_N)\|$ after each iteration (index 0: $z_0$).
    pub residuals: Vec<f64>,
    /// Whether the tolerance was met.
    pub converged: bool,
    /// Evaluations of f actually run.
    pub nfe: usize,
    /// Every iterate, when kept (`keep = true`): $(y_n, z_n)$, $n = 0 \dots N$ ($y_n$ empty
    /// except for the reversible iteration).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub trajectory: Vec<(Vec<f64>, Vec<f64>)>,
}

impl FixedPoint {
    /// Final relative residual.
    pub fn residual(&self) -> f64 {
        self.residuals.last().copied().unwrap_or(f64::NAN)
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn residual(z: &[f64], fz: &[f64]) -> (f64, f64) {
    let r = z.iter().zip(fz).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    (r, norm(fz))
}

fn check_finite(v: &[f64], iteration: usize, context: &str) -> Result<()> {
    if v.iter().all(|a| a.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFiniteIterate { iteration, context: context.into() })
    }
}

/// Solve $z = f(z, x)$ from $z_0 = 0$ (and $y_0 = 0$ for the reversible iteration). With `keep`,
/// every iterate is stored (needed by [`DeqBackward::Unrolled`]).
///
/// # Errors
/// Invalid β / m / ridge, shape mismatches, [`Error::NonFiniteIterate`], and in strict mode
/// [`Error::NoConvergence`] with the residual.
pub fn fixed_point(f: &dyn FixedPointMap, x: &[f64], solver: FixedPointSolver, opts: &FixedPointOptions, keep: bool) -> Result<FixedPoint> {
    solver.validate()?;
    if !(opts.tol >= 0.0) {
        return Err(Error::InvalidArgument { name: "tol", value: opts.tol, expected: "non-negative" });
    }
    if let FixedPointSolver::Reversible { beta } = solver {
        let mut trajectory = Vec::new();
        let r = reversible_solve(&OnHost(f), x, beta, opts, |_, y, z| {
            if keep {
                trajectory.push((y.clone(), z.clone()));
            }
        })?;
        return Ok(FixedPoint { solver, z: r.z, y: r.y, iterations: r.iterations, residuals: r.residuals, converged: r.converged, nfe: r.nfe, trajectory });
    }
    let n = x.len();
    let mut z = vec![0.0; n];
    let mut fz = vec![0.0; n];
    f.eval(&z, x, &mut fz)?;
    let mut nfe = 1;
    check_finite(&fz, 0, " (f(z0))")?;
    let mut trajectory = Vec::new();
    if keep {
        trajectory.push((Vec::new(), z.clone()));
    }
    let (r, nf) = residual(&z, &fz);
    let mut residuals = vec![r / nf.max(1e-300)];
    let mut converged = r < opts.tol * nf + RESIDUAL_FLOOR;
    let mut anderson = match solver {
        FixedPointSolver::Anderson { m, beta, ridge } => Some(Anderson::new(m, beta, ridge)),
        _ => None,
    };
    let mut it = 0;
    while !converged && it < opts.max_steps {
        it += 1;
        match solver {
            FixedPointSolver::Picard => z.copy_from_slice(&fz),
            FixedPointSolver::Relaxed { beta } => z.iter_mut().zip(&fz).for_each(|(a, b)| *a = (1.0 - beta) * *a + beta * b),
            FixedPointSolver::Anderson { .. } => {
                if let Some(a) = anderson.as_mut() {
                    z = a.next(&z, &fz);
                }
            }
            FixedPointSolver::Reversible { .. } => unreachable!("solved by reversible_solve above"),
        }
        check_finite(&z, it, "")?;
        f.eval(&z, x, &mut fz)?;
        nfe += 1;
        check_finite(&fz, it, " (f(z))")?;
        if keep {
            trajectory.push((Vec::new(), z.clone()));
        }
        let (r, nf) = residual(&z, &fz);
        residuals.push(r / nf.max(1e-300));
        converged = r < opts.tol * nf + RESIDUAL_FLOOR;
    }
    if !converged && opts.strict {
        return Err(Error::NoConvergence { iterations: it, residual: residuals[residuals.len() - 1], tol: opts.tol });
    }
    Ok(FixedPoint { solver, z, y: Vec::new(), iterations: it, residuals, converged, nfe, trajectory })
}

/// Anderson mixing: from the last $m + 1$ iterates $z_k$ and their images $f(z_k)$, the next
/// iterate $(1-\beta)\sum_k \alpha_k z_k + \beta \sum_k \alpha_k f(z_k)$ with the weights of
/// [`anderson_weights`].
struct Anderson {
    m: usize,
    beta: f64,
    ridge: f64,
    zs: Vec<Vec<f64>>,
    fs: Vec<Vec<f64>>,
}

impl Anderson {
    fn new(m: usize, beta: f64, ridge: f64) -> Self {
        Self { m, beta, ridge, zs: Vec::new(), fs: Vec::new() }
    }
    /// Record $(z, f(z))$ and return the next iterate.
    fn next(&mut self, z: &[f64], fz: &[f64]) -> Vec<f64> {
        self.zs.push(z.to_vec());
        self.fs.push(fz.to_vec());
        if self.zs.len() > self.m + 1 {
            self.zs.remove(0);
            self.fs.remove(0);
        }
        let w = anderson_weights(&self.zs, &self.fs, self.ridge);
        (0..z.len())
            .map(|i| {
                let (mut zi, mut fi) = (0.0, 0.0);
                for (k, wk) in w.iter().enumerate() {
                    zi += wk * self.zs[k][i];
                    fi += wk * self.fs[k][i];
                }
                (1.0 - self.beta) * zi + self.beta * fi
            })
            .collect()
    }
}

/// Weights $\alpha$ (summing to 1) minimising $\|\sum_k \alpha_k g_k\|^2 + \text{ridge}\,\max_k\|g_k\|^2\,\|\alpha\|^2$, $g_k = f(z_k) - z_k$,
/// by the normal equations with a Lagrange multiplier (at most m + 1 unknowns).
fn anderson_weights(zs: &[Vec<f64>], fs: &[Vec<f64>], ridge: f64) -> Vec<f64> {
    let k = zs.len();
    if k == 1 {
        return vec![1.0];
    }
    let g: Vec<Vec<f64>> = zs.iter().zip(fs).map(|(z, f)| f.iter().zip(z).map(|(a, b)| a - b).collect()).collect();
    // [G^T G + ridge I, 1; 1^T, 0] [α; μ] = [0; 1]
    let dim = k + 1;
    let mut a = vec![vec![0.0; dim + 1]; dim];
    for i in 0..k {
        for j in 0..k {
            a[i][j] = g[i].iter().zip(&g[j]).map(|(p, q)| p * q).sum::<f64>();
        }
        a[i][k] = 1.0;
        a[k][i] = 1.0;
    }
    a[k][dim] = 1.0;
    // Scale the Gram block to unit size (the residuals shrink as the iteration converges), then
    // add the ridge relative to that scale.
    let scale = (0..k).map(|i| a[i][i]).fold(0.0, f64::max).max(1e-300);
    for (i, row) in a.iter_mut().take(k).enumerate() {
        for v in row.iter_mut().take(k) {
            *v /= scale;
        }
        row[i] += ridge;
    }
    match solve_dense(a) {
        Some(sol) if sol[..k].iter().all(|w| w.is_finite()) => sol[..k].to_vec(),
        _ => {
            // Degenerate history: fall back to the newest iterate (a Picard step).
            let mut w = vec![0.0; k];
            w[k - 1] = 1.0;
            w
        }
    }
}

/// Gaussian elimination with partial pivoting on an augmented matrix.
fn solve_dense(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = a.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        for r in col + 1..n {
            let factor = a[r][col] / a[col][col];
            for c in col..=n {
                a[r][c] -= factor * a[col][c];
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (a[r][n] - s) / a[r][r];
    }
    Some(x)
}

/// One step back of the reversible iteration: from $(y_{n+1}, z_{n+1})$ to $(y_n, z_n)$
/// (two evaluations of f).
///
/// # Errors
/// β = 1 or outside (0, 2), shape mismatches, evaluation errors.
pub fn reverse_step(f: &dyn FixedPointMap, x: &[f64], beta: f64, y: &mut [f64], z: &mut [f64]) -> Result<()> {
    FixedPointSolver::Reversible { beta }.validate()?;
    check_len("reversible state y", x.len(), y.len())?;
    check_len("reversible state z", x.len(), z.len())?;
    let mut tmp = vec![0.0; x.len()];
    f.eval(y, x, &mut tmp)?;
    z.iter_mut().zip(&tmp).for_each(|(a, b)| *a = (*a - beta * b) / (1.0 - beta));
    f.eval(z, x, &mut tmp)?;
    y.iter_mut().zip(&tmp).for_each(|(a, b)| *a = (*a - beta * b) / (1.0 - beta));
    Ok(())
}

/// How to differentiate through a fixed-point solve.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeqBackward {
    /// Backpropagation through every stored iterate (Picard, Relaxed or Reversible forward,
    /// solved with `keep = true`).
    Unrolled,
    /// The implicit function theorem: $g = J_f(z^*)^\top g + \partial L/\partial z^*$ by
    /// fixed-point iteration, then $\bar\theta = (\partial f/\partial\theta)^\top g$.
    Implicit {
        /// Relative tolerance on the adjoint iteration.
        tol: f64,
        /// Maximum adjoint iterations.
        max_steps: usize,
        /// When true, not converging within `max_steps` is [`Error::NoConvergence`]; when
        /// false the last adjoint iterate is used (truncated implicit gradient, as DEQ training
        /// does).
        strict: bool,
        /// How the (linear) adjoint fixed point is iterated: [`FixedPointSolver::Picard`],
        /// `Relaxed` or `Anderson` (as DEQ implementations solve it with the forward's solver).
        #[cfg_attr(feature = "serde", serde(default))]
        solver: FixedPointSolver,
    },
    /// Phantom gradient: backprop through `k` relaxed steps $z \leftarrow (1-\beta)z + \beta f(z)$
    /// started at $z^*$.
    Phantom {
        /// Unrolled steps.
        k: usize,
        /// Relaxation.
        beta: f64,
    },
    /// Exact backprop through the reversible iteration with the iterates rebuilt backwards.
    Reversible,
}

/// The gradient of a loss of $z^*$ with respect to θ and x.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeqGradient {
    /// $\partial L/\partial\theta$.
    pub d_theta: Vec<f64>,
    /// $\partial L/\partial x$.
    pub d_x: Vec<f64>,
    /// Evaluations of f in the backward pass.
    pub nfe: usize,
    /// VJPs of f in the backward pass.
    pub vjps: usize,
    /// Peak number of state vectors held by the backward method (the trajectory for
    /// `Unrolled`).
    pub stored_states: usize,
    /// Adjoint iterations (implicit) or unrolled steps.
    pub iterations: usize,
    /// The implicit adjoint iteration diverged and was cut short (non-strict mode only).
    pub diverged: bool,
    /// The reversible backward's certificate, [`BackwardCost::reconstruction_error`] (0 for
    /// the other methods, which do not rebuild the iterates).
    pub reconstruction_error: f64,
}

/// Pull `dz` $= \partial L/\partial z^*$ back through the fixed-point solve `fp`.
///
/// # Errors
/// [`Error::Unsupported`] for `Unrolled` without a kept trajectory or with Anderson;
/// [`Error::NotReversible`] for `Reversible` with another solver; [`Error::NoConvergence`] when
/// the implicit adjoint iteration does not converge; [`Error::NonFiniteIterate`] if the
/// reconstruction blows up.
pub fn backward(f: &dyn FixedPointMap, x: &[f64], fp: &FixedPoint, dz: &[f64], method: DeqBackward) -> Result<DeqGradient> {
    let n = x.len();
    check_len("dL/dz*", n, dz.len())?;
    check_len("fixed point", n, fp.z.len())?;
    let mut g = DeqGradient { d_theta: vec![0.0; f.n_params()], d_x: vec![0.0; n], nfe: 0, vjps: 0, stored_states: 0, iterations: 0, diverged: false, reconstruction_error: 0.0 };
    let mut a_z = vec![0.0; n];
    match method {
        DeqBackward::Unrolled => {
            if fp.trajectory.len() != fp.iterations + 1 {
                return Err(Error::Unsupported("unrolled backward needs the trajectory: solve with keep = true".into()));
            }
            g.stored_states = fp.trajectory.iter().map(|(y, _)| if y.is_empty() { 1 } else { 2 }).sum();
            g.iterations = fp.iterations;
            match fp.solver {
                FixedPointSolver::Picard | FixedPointSolver::Relaxed { .. } => {
                    let beta = if let FixedPointSolver::Relaxed { beta } = fp.solver { beta } else { 1.0 };
                    let mut zbar = dz.to_vec();
                    for k in (0..fp.iterations).rev() {
                        let a: Vec<f64> = zbar.iter().map(|v| beta * v).collect();
                        f.vjp(&fp.trajectory[k].1, x, &a, &mut a_z, &mut g.d_theta, &mut g.d_x)?;
                        g.vjps += 1;
                        zbar.iter_mut().zip(&a_z).for_each(|(zb, az)| *zb = (1.0 - beta) * *zb + az);
                    }
                }
                FixedPointSolver::Reversible { beta } => {
                    let mut bars = (vec![0.0; n], dz.to_vec());
                    let mut grads = (std::mem::take(&mut g.d_theta), std::mem::take(&mut g.d_x));
                    for k in (0..fp.iterations).rev() {
                        let (y1, _) = &fp.trajectory[k + 1];
                        let (_, z0) = &fp.trajectory[k];
                        bars = reversible_pullback(&OnHost(f), x, beta, y1, z0, bars, &mut grads)?;
                        g.vjps += 2;
                    }
                    (g.d_theta, g.d_x) = grads;
                }
                FixedPointSolver::Anderson { .. } => return Err(Error::Unsupported("unrolled backward through Anderson mixing (use Implicit or Phantom)".into())),
            }
        }
        DeqBackward::Reversible => {
            let FixedPointSolver::Reversible { beta } = fp.solver else {
                return Err(Error::NotReversible { solver: format!("{:?}", fp.solver) });
            };
            g.stored_states = 2;
            g.iterations = fp.iterations;
            let solve = ReversibleSolve { y: fp.y.clone(), z: fp.z.clone(), iterations: fp.iterations, residuals: Vec::new(), converged: fp.converged, nfe: 0 };
            let mut grads = (std::mem::take(&mut g.d_theta), std::mem::take(&mut g.d_x));
            let cost = reversible_backward(&OnHost(f), x, &solve, beta, dz.to_vec(), &mut grads)?;
            (g.d_theta, g.d_x) = grads;
            (g.nfe, g.vjps, g.reconstruction_error) = (cost.nfe, cost.vjps, cost.reconstruction_error);
        }
        DeqBackward::Implicit { tol, max_steps, strict, solver } => {
            solver.validate()?;
            let mut anderson = match solver {
                FixedPointSolver::Anderson { m, beta, ridge } => Some(Anderson::new(m, beta, ridge)),
                FixedPointSolver::Reversible { .. } => return Err(Error::Unsupported("the reversible iteration for the implicit adjoint (use Picard, Relaxed or Anderson)".into())),
                _ => None,
            };
            g.stored_states = 1;
            let mut gv = dz.to_vec();
            let mut dummy_t = vec![0.0; f.n_params()];
            let mut dummy_x = vec![0.0; n];
            let mut converged = false;
            let mut res = f64::INFINITY;
            for it in 1..=max_steps {
                f.vjp(&fp.z, x, &gv, &mut a_z, &mut dummy_t, &mut dummy_x)?;
                g.vjps += 1;
                // The adjoint map g ↦ Jᵀg + ∂L/∂z*, and the solver's next iterate from it.
                let image: Vec<f64> = a_z.iter().zip(dz).map(|(a, d)| a + d).collect();
                let next = match (&mut anderson, solver) {
                    (Some(a), _) => a.next(&gv, &image),
                    (None, FixedPointSolver::Relaxed { beta }) => gv.iter().zip(&image).map(|(p, q)| (1.0 - beta) * p + beta * q).collect(),
                    _ => image.clone(),
                };
                // A diverging adjoint iteration (the Jacobian's spectral radius above 1): strict
                // mode reports it; otherwise the last finite iterate is used and flagged.
                let blown = next.iter().any(|v| !v.is_finite()) || norm(&next) > 1e6 * norm(dz).max(1e-300);
                if blown {
                    if strict {
                        return Err(Error::NonFiniteIterate { iteration: it, context: " in the implicit adjoint iteration (diverging)".into() });
                    }
                    g.diverged = true;
                    break;
                }
                // Residual of the adjoint equation at the current iterate: ‖g − (Jᵀg + ∂L/∂z*)‖.
                let (r, nn) = residual(&gv, &image);
                gv = next;
                g.iterations = it;
                res = r / nn.max(1e-300);
                if r < tol * nn + 1e-12 {
                    converged = true;
                    break;
                }
            }
            if !converged && strict {
                return Err(Error::NoConvergence { iterations: g.iterations, residual: res, tol });
            }
            f.vjp(&fp.z, x, &gv, &mut a_z, &mut g.d_theta, &mut g.d_x)?;
            g.vjps += 1;
        }
        DeqBackward::Phantom { k, beta } => {
            FixedPointSolver::Relaxed { beta }.validate()?;
            let mut states = vec![fp.z.clone()];
            let mut fz = vec![0.0; n];
            for _ in 0..k {
                let z = &states[states.len() - 1];
                f.eval(z, x, &mut fz)?;
                g.nfe += 1;
                let next = z.iter().zip(&fz).map(|(a, b)| (1.0 - beta) * a + beta * b).collect();
                states.push(next);
            }
            g.stored_states = k + 1;
            g.iterations = k;
            let mut zbar = dz.to_vec();
            for s in states[..k].iter().rev() {
                let a: Vec<f64> = zbar.iter().map(|v| beta * v).collect();
                f.vjp(s, x, &a, &mut a_z, &mut g.d_theta, &mut g.d_x)?;
                g.vjps += 1;
                zbar.iter_mut().zip(&a_z).for_each(|(zb, az)| *zb = (1.0 - beta) * *zb + az);
            }
        }
    }
    Ok(g)
}

/// The Jacobian penalty of a fixed-point map at $(z, x)$ and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct JacobianPenalty {
    /// $R = \|J_f(z)^\top \epsilon\|^2 / n$ for the probe ε ($n$ = its length).
    pub value: f64,
    /// $\partial R/\partial\theta$ at fixed $z$.
    pub d_theta: Vec<f64>,
    /// $\partial R/\partial x$ at fixed $z$.
    pub d_x: Vec<f64>,
    /// VJPs of f taken (3).
    pub vjps: usize,
}

/// Relative step of the central difference in [`jacobian_penalty`].
pub const JACOBIAN_PENALTY_FD_STEP: f64 = 1e-3;

/// The Jacobian regulariser of Bai, Koltun & Kolter (*Stabilizing equilibrium models by
/// Jacobian regularization*, ICML 2021): with a Gaussian probe ε, $R = \|J_f(z)^\top\epsilon\|^2/n$
/// is an unbiased estimate of $\|J_f\|_F^2/n$; penalising it keeps $f$ a contraction near its
/// fixed point, so forward and adjoint iterations converge.
///
/// With $u = J^\top\epsilon$ held fixed, $\partial R/\partial\theta = \tfrac2n\,\partial_\theta(\epsilon^\top J u)$, and
/// $\epsilon^\top J u$ is the derivative of $\epsilon^\top f$ along $u$, so the gradient is a central
/// difference of two parameter VJPs at $z \pm h u$ (three VJPs in all, no second-order
/// derivatives of f needed); $h$ = [`JACOBIAN_PENALTY_FD_STEP`] × RMS(z) / RMS(u). $z$ is a
/// constant (the fixed point), as in the regulariser's usual use.
///
/// # Errors
/// Shape mismatches; evaluation errors.
pub fn jacobian_penalty(f: &dyn FixedPointMap, z: &[f64], x: &[f64], probe: &[f64]) -> Result<JacobianPenalty> {
    let n = x.len();
    check_len("fixed point", n, z.len())?;
    check_len("Jacobian probe", n, probe.len())?;
    let (mut u, mut dt, mut dx) = (vec![0.0; n], vec![0.0; f.n_params()], vec![0.0; n]);
    f.vjp(z, x, probe, &mut u, &mut dt, &mut dx)?;
    let value = u.iter().map(|v| v * v).sum::<f64>() / n as f64;
    let rms = |v: &[f64]| (v.iter().map(|a| a * a).sum::<f64>() / n as f64).sqrt();
    let (ru, rz) = (rms(&u), rms(z).max(1.0));
    let mut d_theta = vec![0.0; f.n_params()];
    let mut d_x = vec![0.0; n];
    if ru > 0.0 {
        let h = JACOBIAN_PENALTY_FD_STEP * rz / ru;
        let mut a_z = vec![0.0; n];
        for (sign, scale) in [(1.0, 1.0), (-1.0, -1.0)] {
            let zs: Vec<f64> = z.iter().zip(&u).map(|(p, q)| p + sign * h * q).collect();
            let (mut gt, mut gx) = (vec![0.0; f.n_params()], vec![0.0; n]);
            f.vjp(&zs, x, probe, &mut a_z, &mut gt, &mut gx)?;
            let c = scale * 2.0 / (n as f64 * 2.0 * h);
            d_theta.iter_mut().zip(&gt).for_each(|(d, g)| *d += c * g);
            d_x.iter_mut().zip(&gx).for_each(|(d, g)| *d += c * g);
        }
    }
    Ok(JacobianPenalty { value, d_theta, d_x, vjps: 3 })
}
