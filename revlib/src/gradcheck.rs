//! Gradient checking: central finite differences against any gradient strategy, for any
//! vector field (including your own).

use crate::adjoint::Adjoint;
use crate::error::Result;
use crate::field::VectorField;
use crate::integrate::SolveOptions;
use crate::loss::Loss;
use crate::solver::Solver;

/// Outcome of [`gradcheck`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GradCheck {
    /// Indices of the parameters checked.
    pub theta_indices: Vec<usize>,
    /// Gradient-strategy values for those parameters.
    pub theta_grad: Vec<f64>,
    /// Central-difference values for those parameters.
    pub theta_fd: Vec<f64>,
    /// Gradient-strategy values for every component of `y0`.
    pub y0_grad: Vec<f64>,
    /// Central-difference values for every component of `y0`.
    pub y0_fd: Vec<f64>,
    /// $\max |g - g_{fd}| / \max |g_{fd}|$ over everything checked.
    pub max_rel_err: f64,
}

/// What [`gradcheck`] compares and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheckOptions {
    /// The gradient strategy checked.
    pub adjoint: Adjoint,
    /// Relative step $\epsilon$ of the central differences (scaled by $\max(|x|, 1)$).
    pub eps: f64,
    /// At most this many parameters are checked (evenly spread over θ).
    pub max_params: usize,
}

impl Default for GradCheckOptions {
    /// Full storage, ε = 1e-6, 16 parameters.
    fn default() -> Self {
        Self { adjoint: Adjoint::FullStorage, eps: 1e-6, max_params: 16 }
    }
}

/// Compare `check.adjoint`'s gradient with central differences
/// $(L(x + \epsilon) - L(x - \epsilon))/2\epsilon$ on up to `check.max_params` parameters (evenly
/// spread) and every component of `y0`. The field's parameters are restored before returning.
///
/// # Examples
/// ```
/// use revlib::prelude::*;
/// # fn main() -> revlib::Result<()> {
/// let mut field = Sir { b: 0.5, k: 0.1 };
/// let opts = SolveOptions::fixed(0.0, 10.0, 200);
/// let r = gradcheck(&mut field, &ExplicitRk::rk4(), &[0.99, 0.01, 0.0], &opts, &HalfSquaredNorm, &GradCheckOptions::default())?;
/// assert!(r.max_rel_err < 1e-6, "{}", r.max_rel_err);
/// # Ok(()) }
/// ```
///
/// # Errors
/// Whatever the solves return.
pub fn gradcheck(field: &mut dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, check: &GradCheckOptions) -> Result<GradCheck> {
    let GradCheckOptions { adjoint, eps, max_params } = *check;
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(crate::Error::InvalidArgument { name: "eps", value: eps, expected: "finite and > 0" });
    }
    let g = adjoint.gradient(field, solver, y0, opts, loss)?;
    let theta = field.params();
    let p = theta.len();
    let k = p.min(max_params);
    let theta_indices: Vec<usize> = (0..k).map(|j| j * p / k.max(1)).collect();
    let value = |field: &dyn VectorField, y: &[f64]| -> Result<f64> {
        let sol = crate::integrate::solve(field, solver, y, opts)?;
        Ok(loss.value_and_grad(&sol.ts, &sol.ys)?.0)
    };
    let mut theta_fd = Vec::with_capacity(k);
    for &j in &theta_indices {
        let h = eps * theta[j].abs().max(1.0);
        let mut th = theta.clone();
        th[j] = theta[j] + h;
        field.set_params(&th)?;
        let lp = value(field, y0);
        th[j] = theta[j] - h;
        field.set_params(&th)?;
        let lm = value(field, y0);
        field.set_params(&theta)?;
        theta_fd.push((lp? - lm?) / (2.0 * h));
    }
    let mut y0_fd = Vec::with_capacity(y0.len());
    for j in 0..y0.len() {
        let h = eps * y0[j].abs().max(1.0);
        let mut y = y0.to_vec();
        y[j] = y0[j] + h;
        let lp = value(field, &y)?;
        y[j] = y0[j] - h;
        let lm = value(field, &y)?;
        y0_fd.push((lp - lm) / (2.0 * h));
    }
    let theta_grad: Vec<f64> = theta_indices.iter().map(|&j| g.d_theta[j]).collect();
    let all_g: Vec<f64> = theta_grad.iter().chain(&g.d_y0).copied().collect();
    let all_fd: Vec<f64> = theta_fd.iter().chain(&y0_fd).copied().collect();
    let max_rel_err = crate::adjoint::rel_err(&all_g, &all_fd);
    Ok(GradCheck { theta_indices, theta_grad, theta_fd, y0_grad: g.d_y0, y0_fd, max_rel_err })
}
