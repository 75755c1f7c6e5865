//! Algebraically reversible solvers: McCallum–Foster [`Reversible`], [`ReversibleHeun`] and the
//! asynchronous leapfrog [`AsyncLeapfrog`] (MALI).

use super::{BaseSolver, Cotangents, ExplicitRk, ReversibleSolver, Solver, Step};
use crate::error::{Error, Result};
use crate::field::{axpy, Term};

/// The McCallum–Foster reversible wrapper of a one-step method $\Psi$ (any [`BaseSolver`];
/// by default an explicit Runge–Kutta method).
///
/// Carry $(y_n, z_n)$ with $z_0 = y_0$; with coupling $\lambda \in (0, 1]$:
///
/// ```text
/// y_{n+1} = λ (y_n − z_n) + Ψ_{t_n → t_{n+1}}(z_n)
/// z_{n+1} = z_n + y_{n+1} − Ψ_{t_{n+1} → t_n}(y_{n+1})
/// ```
///
/// and the exact inverse
///
/// ```text
/// z_n = z_{n+1} − y_{n+1} + Ψ_{t_{n+1} → t_n}(y_{n+1})
/// y_n = (y_{n+1} − Ψ_{t_n → t_{n+1}}(z_n)) / λ + z_n
/// ```
///
/// Properties: keeps the base method's order; two base steps per step (FSAL reuse is not
/// possible, the two base steps start from different states); the linear recurrence on
/// $y' = \alpha y$ has determinant $\lambda$, so $\lambda < 1$ gives a genuine stability region
/// while the inverse divides by $\lambda$ (round-off grows like $\lambda^{-N}$ in the worst
/// case — use f64). With adaptive steps the error estimate is that of the forward base step
/// $\Psi_{t_n\to t_{n+1}}(z_n)$.
///
/// # Examples
/// Any [`BaseSolver`] can be wrapped, e.g. a hand-written forward Euler step:
/// ```
/// use revlib::prelude::*;
/// use revlib::solver::{BaseSolver, Cotangents, Step};
///
/// struct MyEuler;
/// impl BaseSolver for MyEuler {
///     type Saved = Vec<f64>; // the point the field was evaluated at (t, y)
///     fn name(&self) -> String { "MyEuler".into() }
///     fn order(&self) -> usize { 1 }
///     fn error_order(&self) -> Option<usize> { None }
///     fn advance(&self, s: Step, y: &[f64], out: &mut [f64], _err: Option<&mut [f64]>, saved: Option<&mut Vec<f64>>) -> revlib::Result<()> {
///         let mut k = vec![0.0; s.term.vf_len(y.len())];
///         match saved {
///             Some(v) => s.term.vf_save(s.t0, y, &mut k, v)?,
///             None => s.term.vf(s.t0, y, &mut k)?,
///         }
///         out.copy_from_slice(y);
///         s.term.prod_add(1.0, &k, s.t0, s.t1, out);
///         Ok(())
///     }
///     fn advance_vjp(&self, s: Step, saved: &Vec<f64>, out_bar: &[f64], bar: Cotangents) -> revlib::Result<()> {
///         let mut k_bar = vec![0.0; s.term.vf_len(out_bar.len())];
///         s.term.prod_transpose_add(1.0, out_bar, s.t0, s.t1, &mut k_bar);
///         s.term.vf_vjp_saved(saved, &k_bar, bar.input, bar.theta)?;
///         for (a, b) in bar.input.iter_mut().zip(out_bar) { *a += b; }
///         Ok(())
///     }
/// }
///
/// # fn main() -> revlib::Result<()> {
/// let field = Mlp::new(MlpConfig { dim: 2, width: 8, depth: 1, time_input: false }, 0)?;
/// let mine = Reversible::new(MyEuler, 0.9)?;
/// let builtin = Reversible::new(ExplicitRk::euler(), 0.9)?;
/// let opts = SolveOptions::fixed(0.0, 1.0, 20);
/// let a = Adjoint::Reversible.gradient(&field, &mine, &[1.0, 0.5], &opts, &HalfSquaredNorm)?;
/// let b = Adjoint::Reversible.gradient(&field, &builtin, &[1.0, 0.5], &opts, &HalfSquaredNorm)?;
/// assert!(rel_err(&a.d_theta, &b.d_theta) < 1e-12);
/// # Ok(()) }
/// ```
///
/// # References
/// S. McCallum, J. Foster, *Efficient, accurate and stable gradients for neural ODEs*,
/// arXiv:2410.11648 (2024).
#[derive(Debug, Clone, PartialEq)]
pub struct Reversible<B = ExplicitRk> {
    base: B,
    coupling: f64,
}

impl Reversible {
    /// Default coupling $\lambda = 0.999$ (the authors' default).
    pub const DEFAULT_COUPLING: f64 = 0.999;
}

impl<B: BaseSolver> Reversible<B> {

    /// Wrap `base` with coupling `lambda`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless $0 < \lambda \le 1$.
    pub fn new(base: B, lambda: f64) -> Result<Self> {
        if !(lambda > 0.0 && lambda <= 1.0) {
            return Err(Error::InvalidArgument { name: "coupling λ", value: lambda, expected: "0 < λ ≤ 1" });
        }
        Ok(Self { base, coupling: lambda })
    }
    /// Wrap `base` with the default coupling 0.999.
    pub fn with_default(base: B) -> Self {
        Self { base, coupling: Reversible::DEFAULT_COUPLING }
    }
    /// The coupling $\lambda$.
    pub fn coupling(&self) -> f64 {
        self.coupling
    }
    /// The base method.
    pub fn base(&self) -> &B {
        &self.base
    }

    /// Pull `(ȳ_{n+1}, z̄_{n+1})` back through one step given what both base steps saved:
    /// `fwd` from $\Psi_{t_n \to t_{n+1}}(z_n)$, `bwd` from $\Psi_{t_{n+1} \to t_n}(y_{n+1})$.
    fn pullback(&self, s: Step, fwd: &B::Saved, bwd: &B::Saved, out_bar: &[f64], bar: Cotangents) -> Result<()> {
        let (n, lam) = (s.n, self.coupling);
        let (ybar1, zbar1) = out_bar.split_at(n);
        // z_{n+1} = z_n + y_{n+1} − Ψ_b(y_{n+1}): the VJP of Ψ_b with −z̄ returns
        // −z̄ − J_incᵀ z̄ (identity path included), so ȳ_{n+1} = ȳ1 − J_incᵀ z̄1 = ȳ1 + z̄1 + that.
        let neg_zbar: Vec<f64> = zbar1.iter().map(|v| -v).collect();
        let mut tmp = vec![0.0; n];
        self.base.advance_vjp(s.reversed(), bwd, &neg_zbar, Cotangents::new(&mut tmp, bar.theta))?;
        let ytot: Vec<f64> = ybar1.iter().zip(zbar1).zip(&tmp).map(|((y, z), t)| y + z + t).collect();
        // y_{n+1} = λ (y_n − z_n) + Ψ_f(z_n)
        let (ybar, zbar) = bar.input.split_at_mut(n);
        self.base.advance_vjp(s, fwd, &ytot, Cotangents::new(zbar, bar.theta))?;
        for ((zb, z1), yt) in zbar.iter_mut().zip(zbar1).zip(&ytot) {
            *zb += z1 - lam * yt;
        }
        for (yb, yt) in ybar.iter_mut().zip(&ytot) {
            *yb = lam * yt;
        }
        Ok(())
    }

    /// The inverse step, saving what the base steps' VJPs need when asked.
    fn reconstruct(&self, s: Step, carry_out: &[f64], carry_in: &mut [f64], saved: Option<(&mut B::Saved, &mut B::Saved)>) -> Result<()> {
        let (y1, z1) = carry_out.split_at(s.n);
        let (y, z) = carry_in.split_at_mut(s.n);
        let (fwd, bwd) = match saved {
            Some((f, b)) => (Some(f), Some(b)),
            None => (None, None),
        };
        let mut tmp = vec![0.0; s.n];
        self.base.advance(s.reversed(), y1, &mut tmp, None, bwd)?;
        for (((zi, z1i), y1i), ti) in z.iter_mut().zip(z1).zip(y1).zip(&tmp) {
            *zi = z1i - y1i + ti;
        }
        self.base.advance(s, z, &mut tmp, None, fwd)?;
        let inv = 1.0 / self.coupling;
        for (((yi, y1i), ti), zi) in y.iter_mut().zip(y1).zip(&tmp).zip(z.iter()) {
            *yi = (y1i - ti) * inv + zi;
        }
        Ok(())
    }
}

impl<B: BaseSolver> Solver for Reversible<B> {
    fn name(&self) -> String {
        format!("Reversible{}(λ={})", self.base.name(), self.coupling)
    }
    fn order(&self) -> usize {
        self.base.order()
    }
    fn carry_len(&self, _term: &dyn Term, n: usize) -> usize {
        2 * n
    }
    fn has_error_estimate(&self) -> bool {
        self.base.error_order().is_some()
    }
    fn error_order(&self) -> usize {
        self.base.error_order().unwrap_or(self.base.order())
    }
    fn init(&self, _term: &dyn Term, _t0: f64, y0: &[f64], carry: &mut [f64]) -> Result<()> {
        let n = y0.len();
        carry[..n].copy_from_slice(y0);
        carry[n..].copy_from_slice(y0);
        Ok(())
    }
    fn init_vjp(&self, _term: &dyn Term, _t0: f64, y0: &[f64], carry_bar: &[f64], bar: Cotangents) -> Result<()> {
        let n = y0.len();
        for (i, v) in bar.input.iter_mut().enumerate() {
            *v = carry_bar[i] + carry_bar[n + i];
        }
        Ok(())
    }
    fn step(&self, s: Step, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()> {
        let (y, z) = carry.split_at(s.n);
        let (y1, z1) = out.split_at_mut(s.n);
        self.base.advance(s, z, y1, err, None)?;
        for ((o, yi), zi) in y1.iter_mut().zip(y).zip(z) {
            *o += self.coupling * (yi - zi);
        }
        let mut back = vec![0.0; s.n];
        self.base.advance(s.reversed(), y1, &mut back, None, None)?;
        for (((o, zi), yi), bi) in z1.iter_mut().zip(z).zip(y1.iter()).zip(&back) {
            *o = zi + yi - bi;
        }
        Ok(())
    }
    fn step_vjp(&self, s: Step, carry: &[f64], out_bar: &[f64], bar: Cotangents) -> Result<()> {
        let (y, z) = carry.split_at(s.n);
        self.base.with_saved(|fwd, bwd| {
            let mut y1 = vec![0.0; s.n];
            self.base.advance(s, z, &mut y1, None, Some(&mut *fwd))?;
            for ((o, yi), zi) in y1.iter_mut().zip(y).zip(z) {
                *o += self.coupling * (yi - zi);
            }
            let mut back = vec![0.0; s.n];
            self.base.advance(s.reversed(), &y1, &mut back, None, Some(&mut *bwd))?;
            self.pullback(s, fwd, bwd, out_bar, bar)
        })
    }
    fn as_reversible(&self) -> Option<&dyn ReversibleSolver> {
        Some(self)
    }
}

impl<B: BaseSolver> ReversibleSolver for Reversible<B> {
    fn reverse_step(&self, s: Step, carry_out: &[f64], carry_in: &mut [f64]) -> Result<()> {
        self.reconstruct(s, carry_out, carry_in, None)
    }
    fn reverse_step_vjp(&self, s: Step, carry_out: &[f64], out_bar: &[f64], carry_in: &mut [f64], bar: Cotangents) -> Result<()> {
        self.base.with_saved(|fwd, bwd| {
            self.reconstruct(s, carry_out, carry_in, Some((&mut *fwd, &mut *bwd)))?;
            self.pullback(s, fwd, bwd, out_bar, bar)
        })
    }
}

/// Reversible Heun (Kidger, Foster, Li & Lyons 2021), second order, one vector-field
/// evaluation per step.
///
/// Carry $(y_n, \hat y_n, F_n = f(t_n, \hat y_n))$ with $\hat y_0 = y_0$:
///
/// ```text
/// ŷ_{n+1} = 2 y_n − ŷ_n + F_n Δt,   F_{n+1} = f(t_{n+1}, ŷ_{n+1}),   y_{n+1} = y_n + ½ (F_n + F_{n+1}) Δt
/// inverse: ŷ_n = 2 y_{n+1} − ŷ_{n+1} − F_{n+1} Δt,  F_n = f(t_n, ŷ_n),  y_n = y_{n+1} − ½ (F_n + F_{n+1}) Δt
/// ```
///
/// Error estimate $\tfrac12 (F_{n+1} - F_n)\Delta t$. On $y' = \alpha y$ its recurrence has
/// determinant $-1$: it is stable only on the imaginary segment $[-i, i]$, so on dissipative
/// problems one mode grows and reconstruction amplifies round-off.
///
/// # References
/// P. Kidger, J. Foster, X. Li, T. Lyons, *Efficient and accurate gradients for neural SDEs*,
/// NeurIPS 2021, arXiv:2105.13493.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReversibleHeun;

impl Solver for ReversibleHeun {
    fn name(&self) -> String {
        "ReversibleHeun".into()
    }
    fn order(&self) -> usize {
        2
    }
    fn carry_len(&self, term: &dyn Term, n: usize) -> usize {
        2 * n + term.vf_len(n)
    }
    fn has_error_estimate(&self) -> bool {
        true
    }
    fn error_order(&self) -> usize {
        1
    }
    fn init(&self, term: &dyn Term, t0: f64, y0: &[f64], carry: &mut [f64]) -> Result<()> {
        let n = y0.len();
        carry[..n].copy_from_slice(y0);
        carry[n..2 * n].copy_from_slice(y0);
        term.vf(t0, y0, &mut carry[2 * n..])
    }
    fn init_vjp(&self, term: &dyn Term, t0: f64, y0: &[f64], carry_bar: &[f64], bar: Cotangents) -> Result<()> {
        let (y0_bar, theta_bar) = (bar.input, bar.theta);
        let n = y0.len();
        term.vf_vjp(t0, y0, &carry_bar[2 * n..], y0_bar, theta_bar)?;
        for (i, v) in y0_bar.iter_mut().enumerate() {
            *v += carry_bar[i] + carry_bar[n + i];
        }
        Ok(())
    }
    fn step(&self, s: Step, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()> {
        let Step { term, n, t0, t1 } = s;
        let (y, rest) = carry.split_at(n);
        let (yh, f0) = rest.split_at(n);
        let (y1, rest1) = out.split_at_mut(n);
        let (yh1, f1) = rest1.split_at_mut(n);
        for ((o, yi), yhi) in yh1.iter_mut().zip(y).zip(yh) {
            *o = 2.0 * yi - yhi;
        }
        term.prod_add(1.0, f0, t0, t1, yh1);
        term.vf(t1, yh1, f1)?;
        y1.copy_from_slice(y);
        term.prod_add(0.5, f0, t0, t1, y1);
        term.prod_add(0.5, f1, t0, t1, y1);
        if let Some(e) = err {
            e.fill(0.0);
            term.prod_add(0.5, f1, t0, t1, e);
            term.prod_add(-0.5, f0, t0, t1, e);
        }
        Ok(())
    }
    fn step_vjp(&self, s: Step, carry: &[f64], out_bar: &[f64], bar: Cotangents) -> Result<()> {
        let Step { term, n, t0, t1 } = s;
        let (carry_bar, theta_bar) = (bar.input, bar.theta);
        let (y, rest) = carry.split_at(n);
        let (yh, f0) = rest.split_at(n);
        let mut yh1: Vec<f64> = y.iter().zip(yh).map(|(a, b)| 2.0 * a - b).collect();
        term.prod_add(1.0, f0, t0, t1, &mut yh1);
        let (yb1, rest) = out_bar.split_at(n);
        let (yhb1, fb1) = rest.split_at(n);
        let mut ftot = fb1.to_vec();
        term.prod_transpose_add(0.5, yb1, t0, t1, &mut ftot);
        let mut yh_tot = vec![0.0; n];
        term.vf_vjp(t1, &yh1, &ftot, &mut yh_tot, theta_bar)?;
        axpy(1.0, yhb1, &mut yh_tot);
        let (yb, rest) = carry_bar.split_at_mut(n);
        let (yhb, fb) = rest.split_at_mut(n);
        for ((o, a), b) in yb.iter_mut().zip(yb1).zip(&yh_tot) {
            *o = a + 2.0 * b;
        }
        for (o, b) in yhb.iter_mut().zip(&yh_tot) {
            *o = -b;
        }
        fb.fill(0.0);
        term.prod_transpose_add(1.0, &yh_tot, t0, t1, fb);
        term.prod_transpose_add(0.5, yb1, t0, t1, fb);
        Ok(())
    }
    fn as_reversible(&self) -> Option<&dyn ReversibleSolver> {
        Some(self)
    }
}

impl ReversibleSolver for ReversibleHeun {
    fn reverse_step(&self, s: Step, carry_out: &[f64], carry_in: &mut [f64]) -> Result<()> {
        let Step { term, n, t0, t1 } = s;
        let (y1, rest1) = carry_out.split_at(n);
        let (yh1, f1) = rest1.split_at(n);
        let (y, rest) = carry_in.split_at_mut(n);
        let (yh, f0) = rest.split_at_mut(n);
        for ((o, a), b) in yh.iter_mut().zip(y1).zip(yh1) {
            *o = 2.0 * a - b;
        }
        term.prod_add(-1.0, f1, t0, t1, yh);
        term.vf(t0, yh, f0)?;
        y.copy_from_slice(y1);
        term.prod_add(-0.5, f0, t0, t1, y);
        term.prod_add(-0.5, f1, t0, t1, y);
        Ok(())
    }
}

/// The asynchronous leapfrog method (ALF) of MALI, with damping $\eta$.
///
/// Carry $(y_n, v_n)$ with $v_0 = f(t_0, y_0)$; step of size $h$:
///
/// ```text
/// y_mid = y + (h/2) v,   u = f(t + h/2, y_mid),   v' = v + 2η (u − v),   y' = y_mid + (h/2) v'
/// inverse: y_mid = y' − (h/2) v',  u = f(t + h/2, y_mid),  v = (2η u − v') / (2η − 1),  y = y_mid − (h/2) v
/// ```
///
/// One evaluation per step, second order. $\eta = 1$ is the undamped scheme of MALI and the
/// talk (determinant $-1$ on $y' = \alpha y$: not A-stable); $\eta \ne 1/2$ is needed for the
/// inverse. Error estimate $(u - v)\,h$.
///
/// # References
/// J. Zhuang, N. Dvornek, S. Tatikonda, J. Duncan, *MALI: a memory efficient and reverse
/// accurate integrator for neural ODEs*, ICLR 2021, arXiv:2102.04668.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AsyncLeapfrog {
    damping: f64,
}

impl Default for AsyncLeapfrog {
    fn default() -> Self {
        Self { damping: 1.0 }
    }
}

impl AsyncLeapfrog {
    /// ALF with damping $\eta$.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless $0 < \eta \le 1$ and $\eta \ne 1/2$.
    pub fn new(damping: f64) -> Result<Self> {
        if !(damping > 0.0 && damping <= 1.0) || damping == 0.5 {
            return Err(Error::InvalidArgument { name: "damping η", value: damping, expected: "0 < η ≤ 1 and η ≠ 1/2" });
        }
        Ok(Self { damping })
    }
    /// The damping $\eta$.
    pub fn damping(&self) -> f64 {
        self.damping
    }
}

impl Solver for AsyncLeapfrog {
    fn name(&self) -> String {
        format!("AsyncLeapfrog(η={})", self.damping)
    }
    fn order(&self) -> usize {
        2
    }
    fn carry_len(&self, term: &dyn Term, n: usize) -> usize {
        n + term.vf_len(n)
    }
    fn has_error_estimate(&self) -> bool {
        true
    }
    fn error_order(&self) -> usize {
        1
    }
    fn init(&self, term: &dyn Term, t0: f64, y0: &[f64], carry: &mut [f64]) -> Result<()> {
        let n = y0.len();
        carry[..n].copy_from_slice(y0);
        term.vf(t0, y0, &mut carry[n..])
    }
    fn init_vjp(&self, term: &dyn Term, t0: f64, y0: &[f64], carry_bar: &[f64], bar: Cotangents) -> Result<()> {
        let (y0_bar, theta_bar) = (bar.input, bar.theta);
        let n = y0.len();
        term.vf_vjp(t0, y0, &carry_bar[n..], y0_bar, theta_bar)?;
        axpy(1.0, &carry_bar[..n], y0_bar);
        Ok(())
    }
    fn step(&self, s: Step, carry: &[f64], out: &mut [f64], err: Option<&mut [f64]>) -> Result<()> {
        let Step { term, n, t0, t1 } = s;
        let (y, v) = carry.split_at(n);
        let (y1, v1) = out.split_at_mut(n);
        let tm = 0.5 * (t0 + t1);
        let mut ymid = y.to_vec();
        term.prod_add(0.5, v, t0, t1, &mut ymid);
        let mut u = vec![0.0; v.len()];
        term.vf(tm, &ymid, &mut u)?;
        let eta2 = 2.0 * self.damping;
        for ((o, vi), ui) in v1.iter_mut().zip(v).zip(&u) {
            *o = vi + eta2 * (ui - vi);
        }
        y1.copy_from_slice(&ymid);
        term.prod_add(0.5, v1, t0, t1, y1);
        if let Some(e) = err {
            e.fill(0.0);
            let d: Vec<f64> = u.iter().zip(v).map(|(a, b)| a - b).collect();
            term.prod_add(1.0, &d, t0, t1, e);
        }
        Ok(())
    }
    fn step_vjp(&self, s: Step, carry: &[f64], out_bar: &[f64], bar: Cotangents) -> Result<()> {
        let Step { term, n, t0, t1 } = s;
        let (carry_bar, theta_bar) = (bar.input, bar.theta);
        let (y, v) = carry.split_at(n);
        let tm = 0.5 * (t0 + t1);
        let mut ymid = y.to_vec();
        term.prod_add(0.5, v, t0, t1, &mut ymid);
        let (yb1, vb1) = out_bar.split_at(n);
        let mut vtot = vb1.to_vec();
        term.prod_transpose_add(0.5, yb1, t0, t1, &mut vtot);
        let eta2 = 2.0 * self.damping;
        let ubar: Vec<f64> = vtot.iter().map(|x| eta2 * x).collect();
        let (yb, vb) = carry_bar.split_at_mut(n);
        term.vf_vjp(tm, &ymid, &ubar, yb, theta_bar)?;
        axpy(1.0, yb1, yb);
        for (o, x) in vb.iter_mut().zip(&vtot) {
            *o = (1.0 - eta2) * x;
        }
        let ymid_bar = yb.to_vec();
        term.prod_transpose_add(0.5, &ymid_bar, t0, t1, vb);
        Ok(())
    }
    fn as_reversible(&self) -> Option<&dyn ReversibleSolver> {
        Some(self)
    }
}

impl ReversibleSolver for AsyncLeapfrog {
    fn reverse_step(&self, s: Step, carry_out: &[f64], carry_in: &mut [f64]) -> Result<()> {
        let Step { term, n, t0, t1 } = s;
        let (y1, v1) = carry_out.split_at(n);
        let (y, v) = carry_in.split_at_mut(n);
        let tm = 0.5 * (t0 + t1);
        let mut ymid = y1.to_vec();
        term.prod_add(-0.5, v1, t0, t1, &mut ymid);
        let mut u = vec![0.0; v.len()];
        term.vf(tm, &ymid, &mut u)?;
        let eta2 = 2.0 * self.damping;
        for ((o, ui), v1i) in v.iter_mut().zip(&u).zip(v1) {
            *o = (eta2 * ui - v1i) / (eta2 - 1.0);
        }
        y.copy_from_slice(&ymid);
        term.prod_add(-0.5, v, t0, t1, y);
        Ok(())
    }
}
