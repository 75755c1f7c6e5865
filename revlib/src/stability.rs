//! Linear stability of one-step and reversible solvers on the test equation $y' = \alpha y$.
//!
//! The recurrence is **taken from the solver itself**: with step $h = 1$ and $w = h\alpha$, the
//! complex test equation is run as the real 2-D system
//! $\begin{pmatrix}\mathrm{Re}\,w & -\mathrm{Im}\,w\\ \mathrm{Im}\,w & \mathrm{Re}\,w\end{pmatrix}$
//! ([`Linear::complex`]); one step of the solver is linear in its carry, so stepping each
//! basis vector gives the amplification matrix, read back as a complex $m \times m$ matrix
//! $M(w)$ ($m = 1$ for Runge–Kutta, 2 for [`Reversible`](crate::Reversible) and
//! [`AsyncLeapfrog`](crate::AsyncLeapfrog), 3 for [`ReversibleHeun`](crate::ReversibleHeun)).
//! The scheme is stable at $w$ when the spectral radius $\rho(M(w)) < 1$.
//!
//! For the McCallum–Foster scheme $\det M = \lambda$ for every $w$ (so $\lambda < 1$ is what
//! opens a region of strict stability); reversible Heun and undamped ALF have $|\det M| = 1$,
//! so they are never strictly stable (at best marginally, on a segment of the imaginary axis).

use crate::error::{Error, Result};
use crate::field::{Linear, OdeTerm};
use crate::solver::{Solver, Step};
use num_complex::Complex64 as C;

/// The complex type of this module (re-exported so notebooks need no extra dependency).
pub use num_complex::Complex64;

/// The complex amplification matrix $M(w)$ of one step of `solver` with $h = 1$ on
/// $y' = w\,y$, row-major, with its size $m$.
///
/// # Errors
/// Whatever the solver's step returns (e.g. a non-finite value for huge $|w|$).
pub fn amplification_matrix(solver: &dyn Solver, w: C) -> Result<(usize, Vec<C>)> {
    let field = Linear::complex(w.re, w.im);
    let term = OdeTerm(&field);
    let len = solver.carry_len(&term, 2);
    if len % 2 != 0 {
        return Err(Error::Unsupported(format!("carry of {} is not a whole number of complex states", solver.name())));
    }
    let m = len / 2;
    let mut mat = vec![C::new(0.0, 0.0); m * m];
    let mut e = vec![0.0; len];
    let mut out = vec![0.0; len];
    for j in 0..m {
        e.fill(0.0);
        e[2 * j] = 1.0; // the complex number 1 in slot j
        solver.step(Step::new(&term, 2, 0.0, 1.0), &e, &mut out, None)?;
        for i in 0..m {
            mat[i * m + j] = C::new(out[2 * i], out[2 * i + 1]);
        }
    }
    Ok((m, mat))
}

/// Eigenvalues of a complex $m \times m$ matrix ($m \le 4$): characteristic polynomial by
/// Faddeev–LeVerrier, roots by Durand–Kerner iteration.
pub fn eigenvalues(m: usize, a: &[C]) -> Vec<C> {
    let zero = C::new(0.0, 0.0);
    if m == 1 {
        return vec![a[0]];
    }
    // Faddeev–LeVerrier: p(μ) = μ^m + c1 μ^{m-1} + … + cm.
    let mul = |x: &[C], y: &[C]| -> Vec<C> {
        let mut r = vec![zero; m * m];
        for i in 0..m {
            for k in 0..m {
                for j in 0..m {
                    r[i * m + j] += x[i * m + k] * y[k * m + j];
                }
            }
        }
        r
    };
    let mut coeffs = vec![C::new(1.0, 0.0)];
    let mut mk = vec![zero; m * m]; // M_0 = 0
    for k in 1..=m {
        let mut next = mul(a, &mk);
        let c_prev = coeffs[k - 1];
        for i in 0..m {
            next[i * m + i] += c_prev;
        }
        mk = next;
        let am = mul(a, &mk);
        let tr: C = (0..m).map(|i| am[i * m + i]).sum();
        coeffs.push(-tr / k as f64);
    }
    // Durand–Kerner on the monic polynomial.
    let eval = |z: C| coeffs.iter().fold(zero, |acc, c| acc * z + c);
    let mut roots: Vec<C> = (0..m).map(|k| C::new(0.4, 0.9).powu(k as u32)).collect();
    for _ in 0..500 {
        let mut delta: f64 = 0.0;
        for i in 0..m {
            let mut den = C::new(1.0, 0.0);
            for j in 0..m {
                if j != i {
                    den *= roots[i] - roots[j];
                }
            }
            if den.norm() == 0.0 {
                den = C::new(1e-300, 0.0);
            }
            let step = eval(roots[i]) / den;
            roots[i] -= step;
            delta = delta.max(step.norm());
        }
        if delta < 1e-15 {
            break;
        }
    }
    roots
}

/// Spectral radius $\rho(M(w))$ of the solver's recurrence.
///
/// # Errors
/// As [`amplification_matrix`].
pub fn spectral_radius(solver: &dyn Solver, w: C) -> Result<f64> {
    let (m, a) = amplification_matrix(solver, w)?;
    Ok(eigenvalues(m, &a).iter().map(|z| z.norm()).fold(0.0, f64::max))
}

/// $\rho(M(w))$ on a grid of $w$: `re.len()` columns × `im.len()` rows.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Region {
    /// Real parts of the grid.
    pub re: Vec<f64>,
    /// Imaginary parts of the grid.
    pub im: Vec<f64>,
    /// `rho[i][j]` at `w = re[j] + i im[i]`.
    pub rho: Vec<Vec<f64>>,
}

impl Region {
    /// Fraction of the grid points with $\rho < 1$.
    pub fn stable_fraction(&self) -> f64 {
        let total = (self.re.len() * self.im.len()).max(1) as f64;
        self.rho.iter().flatten().filter(|&&r| r < 1.0).count() as f64 / total
    }
}

/// Sample $\rho(M(w))$ on an evenly spaced grid of `n_re` × `n_im` points.
///
/// # Errors
/// As [`amplification_matrix`]; [`Error::InvalidArgument`] for fewer than 2 points an axis.
pub fn region(solver: &dyn Solver, re: (f64, f64), im: (f64, f64), n_re: usize, n_im: usize) -> Result<Region> {
    if n_re < 2 || n_im < 2 {
        return Err(Error::InvalidArgument { name: "grid points per axis", value: n_re.min(n_im) as f64, expected: "at least 2" });
    }
    let lin = |(a, b): (f64, f64), n: usize| -> Vec<f64> { (0..n).map(|k| a + (b - a) * k as f64 / (n - 1) as f64).collect() };
    let (res, ims) = (lin(re, n_re), lin(im, n_im));
    let rho = ims.iter().map(|&y| res.iter().map(|&x| spectral_radius(solver, C::new(x, y))).collect::<Result<Vec<f64>>>()).collect::<Result<_>>()?;
    Ok(Region { re: res, im: ims, rho })
}

/// Stable intervals of the negative real axis within `[lo, 0)`: scan `samples` points for
/// sign changes of $\rho - 1$ and refine each end by bisection to `tol`.
///
/// # Errors
/// As [`amplification_matrix`].
pub fn real_stable_intervals(solver: &dyn Solver, lo: f64, samples: usize, tol: f64) -> Result<Vec<(f64, f64)>> {
    if !(lo < 0.0 && lo.is_finite()) {
        return Err(Error::InvalidArgument { name: "lo", value: lo, expected: "finite and < 0" });
    }
    if samples == 0 {
        return Err(Error::InvalidArgument { name: "samples", value: 0.0, expected: "at least 1" });
    }
    if !(tol > 0.0 && tol.is_finite()) {
        return Err(Error::InvalidArgument { name: "tol", value: tol, expected: "finite and > 0 (bisection stops at this width)" });
    }
    let stable = |x: f64| -> Result<bool> { Ok(spectral_radius(solver, C::new(x, 0.0))? < 1.0) };
    let xs: Vec<f64> = (0..=samples).map(|k| lo * (1.0 - k as f64 / samples as f64)).collect();
    // xs runs from lo up to 0; the point 0 itself is excluded (ρ(0) = 1 for consistent schemes).
    let mut flags = Vec::with_capacity(xs.len());
    for &x in &xs[..samples] {
        flags.push(stable(x)?);
    }
    flags.push(stable(-tol.max(1e-12))?);
    let bisect = |mut a: f64, mut b: f64, fa: bool| -> Result<f64> {
        while (b - a).abs() > tol {
            let m = 0.5 * (a + b);
            if stable(m)? == fa {
                a = m;
            } else {
                b = m;
            }
        }
        Ok(0.5 * (a + b))
    };
    let mut out = Vec::new();
    let mut start: Option<f64> = if flags[0] { Some(lo) } else { None };
    for k in 1..flags.len() {
        let (a, b) = (xs[k - 1], if k == samples { -tol.max(1e-12) } else { xs[k] });
        if flags[k] != flags[k - 1] {
            let edge = bisect(a, b, flags[k - 1])?;
            if flags[k] {
                start = Some(edge);
            } else if let Some(s) = start.take() {
                out.push((s, edge));
            }
        }
    }
    if let Some(s) = start {
        out.push((s, 0.0));
    }
    Ok(out)
}

/// Growth rate of the actual iterated solver: $\|c_n\|^{1/n}$ after `n` steps from a generic
/// carry, on $y' = w y$ with $h = 1$ (tends to $\rho(M(w))$).
///
/// # Errors
/// As the solver's step.
pub fn iterated_growth(solver: &dyn Solver, w: C, n: usize) -> Result<f64> {
    let field = Linear::complex(w.re, w.im);
    let term = OdeTerm(&field);
    let len = solver.carry_len(&term, 2);
    let mut c: Vec<f64> = (0..len).map(|i| 1.0 + 0.37 * i as f64).collect();
    let norm0 = c.iter().map(|v| v * v).sum::<f64>().sqrt();
    c.iter_mut().for_each(|v| *v /= norm0);
    let mut next = vec![0.0; len];
    let mut log_norm = 0.0;
    for _ in 0..n {
        solver.step(Step::new(&term, 2, 0.0, 1.0), &c, &mut next, None)?;
        let norm = next.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Ok(if norm == 0.0 { 0.0 } else { f64::INFINITY });
        }
        log_norm += norm.ln();
        for (ci, ni) in c.iter_mut().zip(&next) {
            *ci = ni / norm;
        }
    }
    Ok((log_norm / n as f64).exp())
}
