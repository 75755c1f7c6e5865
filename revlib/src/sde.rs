//! Stochastic differential equations in Stratonovich form,
//! $$dy = f_\theta(t, y)\,dt + g_\theta(t, y) \circ dW(t),$$
//! solved by the same solvers, and differentiated by the same gradient strategies, as ODEs.
//!
//! Every solver here is written against a [`Term`]: a vector field times a *control
//! increment*. For an ODE the control is time, $X(t_1) - X(t_0) = t_1 - t_0$; for the noise it is
//! the Brownian increment $W(t_1) - W(t_0)$. An SDE is the sum of the two terms
//! ([`SdeTerm`]), so Heun's method applied to it is the stochastic Heun method (a Stratonovich
//! solver), [`ReversibleHeun`](crate::ReversibleHeun) becomes the reversible Heun method of
//! Kidger et al. (2021), and [`Reversible`](crate::Reversible) the McCallum–Foster construction
//! on an SDE base method — whose convergence, unlike reversible Heun's, is not proved.
//!
//! The Brownian motion is a [`VirtualBrownianTree`] (Li et al. 2020; Kidger et al. 2021): any
//! increment over any interval, deterministic from a seed, in $O(1)$ memory, the same on the
//! backward pass as on the forward one. That is what makes the reversible adjoint exact for SDEs:
//! the backward pass rebuilds the states with exactly the noise the forward pass used.
//!
//! ```
//! use revlib::prelude::*;
//! use revlib::sde::{solve_sde, Diffusion, Sde, VirtualBrownianTree};
//! // Geometric Brownian motion dy = μ y dt + σ y ∘ dW, 1000 sample paths at once.
//! let (mu, sigma, paths) = (0.1, 0.4, 1000);
//! let w = VirtualBrownianTree::new(0.0, 1.0, paths, 1e-6, 7)?;
//! let (drift, diffusion) = (Linear::scalar(mu), Linear::scalar(sigma));
//! let sde = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&diffusion), path: &w };
//! let sol = solve_sde(&sde, &ExplicitRk::heun(), &vec![1.0; paths], &SolveOptions::fixed(0.0, 1.0, 256))?;
//! // Stratonovich GBM: y(1) = exp(μ + σ W(1)) exactly; Heun's strong error (order 1) is small.
//! let mut w1 = vec![0.0; paths];
//! w.value(1.0, &mut w1)?;
//! let err = sol.ys[0].iter().zip(&w1).map(|(y, w)| (y - (mu + sigma * w).exp()).abs()).sum::<f64>() / paths as f64;
//! assert!(err < 1e-3, "{err}");
//! # Ok::<(), revlib::Error>(())
//! ```
//!
//! # References
//! X. Li, T.-K. L. Wong, R. T. Q. Chen, D. Duvenaud, *Scalable gradients for stochastic
//! differential equations*, AISTATS 2020 (arXiv:2001.01328). P. Kidger, J. Foster, X. Li,
//! T. Lyons, *Efficient and accurate gradients for neural SDEs*, NeurIPS 2021 (arXiv:2105.13493).

use crate::adjoint::{Adjoint, Gradient, GradientChecks};
use crate::error::{Error, Result};
use crate::field::{batch_size, Counted, OdeTerm, Term, VectorField};
use crate::integrate::{Solution, SolveOptions};
use crate::loss::Loss;
use crate::rng::Rng;
use crate::solver::Solver;

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A Brownian motion $W$ on $[t_0, t_1]$ with independent coordinates, evaluated anywhere by
/// bisection on Brownian bridges: the root draws $W(t_1)$, each node of a binary tree over the
/// interval draws its midpoint's value given its two ends, and each node's normals come from a
/// seed derived from its position in the tree. A query walks from the root to an interval
/// shorter than `tol` and interpolates linearly inside it, so it costs
/// $O(\log_2((t_1 - t_0)/\mathrm{tol}))$ draws per coordinate and nothing is stored. Dyadic times
/// $t_0 + k(t_1 - t_0)/2^j$ with $2^{-j}(t_1 - t_0) \ge$ `tol` are nodes of the tree, so increments
/// between them are exact Brownian increments.
///
/// For a batch of $B$ samples with $m$ noise channels each, use dimension $B m$ (sample after
/// sample): every sample gets its own, independent Brownian motion.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualBrownianTree {
    t0: f64,
    t1: f64,
    tol: f64,
    dim: usize,
    seed: u64,
    w1: Vec<f64>,
}

impl VirtualBrownianTree {
    /// A Brownian motion of dimension `dim` on `[t0, t1]`, resolved to `tol`, from `seed`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `t0 < t1` (both finite), `0 < tol` (finite) and `dim ≥ 1`.
    pub fn new(t0: f64, t1: f64, dim: usize, tol: f64, seed: u64) -> Result<Self> {
        if !(t0.is_finite() && t1.is_finite() && t1 > t0) {
            return Err(Error::InvalidArgument { name: "t1", value: t1, expected: "finite and > t0 (the Brownian path's interval)" });
        }
        if !(tol > 0.0 && tol.is_finite()) {
            return Err(Error::InvalidArgument { name: "tol", value: tol, expected: "> 0 and finite" });
        }
        if dim == 0 {
            return Err(Error::InvalidArgument { name: "dim", value: 0.0, expected: "≥ 1" });
        }
        let mut rng = Rng::new(mix(seed ^ 0x5DEE_CE66_D1CE_4E5B));
        let scale = (t1 - t0).sqrt();
        let w1 = (0..dim).map(|_| scale * rng.normal()).collect();
        Ok(Self { t0, t1, tol, dim, seed, w1 })
    }
    /// Number of coordinates.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Start of the interval ($W(t_0) = 0$).
    pub fn t0(&self) -> f64 {
        self.t0
    }
    /// End of the interval.
    pub fn t1(&self) -> f64 {
        self.t1
    }
    /// Resolution of the tree.
    pub fn tol(&self) -> f64 {
        self.tol
    }

    fn check_time(&self, t: f64) -> Result<()> {
        // A few ulps of slack: step times computed as t0 + k h may round past t1.
        let slack = 4.0 * f64::EPSILON * self.t0.abs().max(self.t1.abs()).max(1.0);
        if !(t >= self.t0 - slack && t <= self.t1 + slack) {
            return Err(Error::InvalidArgument { name: "Brownian query time t", value: t, expected: "inside the path's interval [t0, t1]" });
        }
        Ok(())
    }

    /// $W(t)$ into `out` (length [`dim`](Self::dim)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `t` outside `[t0, t1]`; [`Error::ShapeMismatch`] for `out`.
    pub fn value(&self, t: f64, out: &mut [f64]) -> Result<()> {
        self.check_time(t)?;
        if out.len() != self.dim {
            return Err(Error::ShapeMismatch { what: "Brownian value", expected: self.dim, found: out.len() });
        }
        let t = t.clamp(self.t0, self.t1);
        let (mut a, mut b) = (self.t0, self.t1);
        let mut wa = vec![0.0; self.dim];
        let mut wb = self.w1.clone();
        let mut node = mix(self.seed);
        while b - a > self.tol && t != a && t != b {
            let m = 0.5 * (a + b);
            // W(m) given W(a), W(b): mean (W(a) + W(b))/2, variance (b − a)/4.
            let sd = (0.25 * (b - a)).sqrt();
            let mut rng = Rng::new(node);
            let left = t <= m;
            for (wa_i, wb_i) in wa.iter_mut().zip(wb.iter_mut()) {
                let wm = 0.5 * (*wa_i + *wb_i) + sd * rng.normal();
                if left {
                    *wb_i = wm;
                } else {
                    *wa_i = wm;
                }
            }
            if left {
                b = m;
            } else {
                a = m;
            }
            node = mix(node.wrapping_mul(2).wrapping_add(1 + u64::from(!left)));
        }
        if t == a {
            out.copy_from_slice(&wa);
        } else if t == b {
            out.copy_from_slice(&wb);
        } else {
            let s = (t - a) / (b - a);
            for ((o, x), y) in out.iter_mut().zip(&wa).zip(&wb) {
                *o = x + s * (y - x);
            }
        }
        Ok(())
    }

    /// $W(t) - W(s)$ into `out`, for any order of `s` and `t` (a backward step asks for the
    /// negative of its forward step's increment, and gets exactly that).
    ///
    /// # Errors
    /// As [`value`](Self::value).
    pub fn increment(&self, s: f64, t: f64, out: &mut [f64]) -> Result<()> {
        let mut ws = vec![0.0; self.dim];
        self.value(t, out)?;
        self.value(s, &mut ws)?;
        for (o, w) in out.iter_mut().zip(&ws) {
            *o -= w;
        }
        Ok(())
    }
}

/// A matrix-valued diffusion for general (non-diagonal) noise: for each sample of a batch, the
/// $d \times m$ matrix $g(t, y)$, stored row-major (`out[(b d + i) m + k]` $= g_{ik}$ of sample $b$).
pub trait MatrixField: Sync {
    /// State dimension $d$.
    fn dim(&self) -> usize;
    /// Number of noise channels $m$.
    fn noise_dim(&self) -> usize;
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// $g(t, y)$ for a batch (`y.len() = B d`, `out.len() = B d m`).
    ///
    /// # Errors
    /// Shape mismatches; what the model returns.
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()>;
    /// The VJP with a cotangent `a` of $g$'s shape: overwrites `a_y`, adds to `a_theta`.
    ///
    /// # Errors
    /// As [`eval`](Self::eval).
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()>;
}

/// Linear multiplicative noise $g(y) = [B_1 y, \dots, B_m y]$ with $d \times d$ matrices $B_k$
/// (the parameters, $B_k$ after $B_{k-1}$, row-major). The noise is commutative exactly when
/// the $B_k$ commute; otherwise solvers converge only at strong order ½.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearNoise {
    d: usize,
    mats: Vec<f64>,
}

impl LinearNoise {
    /// From `m` matrices of size `d × d`, concatenated row-major.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `mats.len()` is a positive multiple of `d²`.
    pub fn new(d: usize, mats: Vec<f64>) -> Result<Self> {
        if d == 0 || mats.is_empty() || mats.len() % (d * d) != 0 {
            return Err(Error::ShapeMismatch { what: "noise matrices (a multiple of d²)", expected: d * d, found: mats.len() });
        }
        Ok(Self { d, mats })
    }
}

impl MatrixField for LinearNoise {
    fn dim(&self) -> usize {
        self.d
    }
    fn noise_dim(&self) -> usize {
        self.mats.len() / (self.d * self.d)
    }
    fn n_params(&self) -> usize {
        self.mats.len()
    }
    fn eval(&self, _t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        let (d, m) = (self.d, self.noise_dim());
        let batch = batch_size(d, y.len())?;
        if out.len() != batch * d * m {
            return Err(Error::ShapeMismatch { what: "diffusion output (B d m)", expected: batch * d * m, found: out.len() });
        }
        for (ys, gs) in y.chunks(d).zip(out.chunks_mut(d * m)) {
            for i in 0..d {
                for k in 0..m {
                    let row = &self.mats[k * d * d + i * d..k * d * d + (i + 1) * d];
                    gs[i * m + k] = row.iter().zip(ys).map(|(b, y)| b * y).sum();
                }
            }
        }
        Ok(())
    }
    fn vjp(&self, _t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        let (d, m) = (self.d, self.noise_dim());
        let batch = batch_size(d, y.len())?;
        if a.len() != batch * d * m || a_y.len() != y.len() || a_theta.len() != self.mats.len() {
            return Err(Error::ShapeMismatch { what: "diffusion VJP", expected: batch * d * m, found: a.len() });
        }
        a_y.fill(0.0);
        for ((ys, as_), ay) in y.chunks(d).zip(a.chunks(d * m)).zip(a_y.chunks_mut(d)) {
            for i in 0..d {
                for k in 0..m {
                    let aik = as_[i * m + k];
                    let base = k * d * d + i * d;
                    for j in 0..d {
                        ay[j] += aik * self.mats[base + j];
                        a_theta[base + j] += aik * ys[j];
                    }
                }
            }
        }
        Ok(())
    }
}

/// Additive diagonal noise $g(t, y) = \sigma$, one $\sigma_i$ per coordinate (the parameters): with
/// a linear drift, an Ornstein–Uhlenbeck process. Use it as [`Diffusion::Diagonal`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdditiveNoise {
    sigma: Vec<f64>,
}

impl AdditiveNoise {
    /// Noise of size `sigma[i]` on coordinate `i`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for an empty `sigma`, [`Error::InvalidArgument`] for a non-finite entry.
    pub fn new(sigma: Vec<f64>) -> Result<Self> {
        if sigma.is_empty() {
            return Err(Error::ShapeMismatch { what: "noise sizes σ (one per coordinate)", expected: 1, found: 0 });
        }
        if let Some(v) = sigma.iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument { name: "σ", value: *v, expected: "finite" });
        }
        Ok(Self { sigma })
    }
}

impl VectorField for AdditiveNoise {
    fn dim(&self) -> usize {
        self.sigma.len()
    }
    fn n_params(&self) -> usize {
        self.sigma.len()
    }
    fn params(&self) -> Vec<f64> {
        self.sigma.clone()
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.sigma.len() {
            return Err(Error::ShapeMismatch { what: "parameters of AdditiveNoise", expected: self.sigma.len(), found: theta.len() });
        }
        self.sigma.copy_from_slice(theta);
        Ok(())
    }
    fn eval(&self, _t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        batch_size(self.sigma.len(), y.len())?;
        for o in out.chunks_mut(self.sigma.len()) {
            o.copy_from_slice(&self.sigma);
        }
        Ok(())
    }
    fn vjp(&self, _t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        batch_size(self.sigma.len(), y.len())?;
        a_y.fill(0.0);
        for ab in a.chunks(self.sigma.len()) {
            for (t, ai) in a_theta.iter_mut().zip(ab) {
                *t += ai;
            }
        }
        Ok(())
    }
    fn name(&self) -> String {
        "additive noise".into()
    }
}

/// The diffusion of an SDE.
#[derive(Clone, Copy)]
pub enum Diffusion<'a> {
    /// Diagonal noise: $g(t, y)$ is a vector field of the state's shape and
    /// $g \circ dW$ multiplies coordinate by coordinate ($m = d$).
    Diagonal(&'a dyn VectorField),
    /// General noise: $g(t, y)$ is a $d \times m$ matrix per sample.
    General(&'a dyn MatrixField),
}

impl Diffusion<'_> {
    fn dim(&self) -> usize {
        match self {
            Diffusion::Diagonal(g) => g.dim(),
            Diffusion::General(g) => g.dim(),
        }
    }
    fn noise_dim(&self) -> usize {
        match self {
            Diffusion::Diagonal(g) => g.dim(),
            Diffusion::General(g) => g.noise_dim(),
        }
    }
    fn n_params(&self) -> usize {
        match self {
            Diffusion::Diagonal(g) => g.n_params(),
            Diffusion::General(g) => g.n_params(),
        }
    }
}

/// The noise term $g(t, y) \circ dW$: the diffusion times the path's increment.
pub struct NoiseTerm<'a> {
    diffusion: Diffusion<'a>,
    path: &'a VirtualBrownianTree,
    /// The last increment asked for: a step asks for the same one at every stage.
    last: std::sync::Mutex<Option<(f64, f64, Vec<f64>)>>,
}

impl<'a> NoiseTerm<'a> {
    /// The term of `diffusion` driven by `path`. The path's dimension must be the batch size
    /// times the number of noise channels, which [`Sde`]'s solvers check.
    pub fn new(diffusion: Diffusion<'a>, path: &'a VirtualBrownianTree) -> Self {
        Self { diffusion, path, last: std::sync::Mutex::new(None) }
    }
    /// The increment over `[t0, t1]`; NaN where the path cannot answer, so that a solver stops
    /// with a non-finite state (naming the time and step) instead of using a wrong increment.
    /// `check_interval` refuses such intervals before any solve starts.
    fn dw(&self, t0: f64, t1: f64) -> Vec<f64> {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((a, b, dw)) = last.as_ref() {
            if *a == t0 && *b == t1 {
                return dw.clone();
            }
        }
        let mut dw = vec![0.0; self.path.dim()];
        if self.path.increment(t0, t1, &mut dw).is_err() {
            dw.fill(f64::NAN);
        }
        *last = Some((t0, t1, dw.clone()));
        dw
    }
}

impl Term for NoiseTerm<'_> {
    fn vf_len(&self, state_len: usize) -> usize {
        match self.diffusion {
            Diffusion::Diagonal(_) => state_len,
            Diffusion::General(g) => state_len * g.noise_dim(),
        }
    }
    fn n_params(&self) -> usize {
        self.diffusion.n_params()
    }
    fn vf(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        match self.diffusion {
            Diffusion::Diagonal(g) => g.eval(t, y, out),
            Diffusion::General(g) => g.eval(t, y, out),
        }
    }
    fn vf_vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        match self.diffusion {
            Diffusion::Diagonal(g) => g.vjp(t, y, a, a_y, a_theta),
            Diffusion::General(g) => g.vjp(t, y, a, a_y, a_theta),
        }
    }
    fn prod_add(&self, scale: f64, vf: &[f64], t0: f64, t1: f64, out: &mut [f64]) {
        let dw = self.dw(t0, t1);
        match self.diffusion {
            Diffusion::Diagonal(_) => {
                for ((o, g), w) in out.iter_mut().zip(vf).zip(&dw) {
                    *o += scale * g * w;
                }
            }
            Diffusion::General(g) => {
                let m = g.noise_dim();
                for (i, o) in out.iter_mut().enumerate() {
                    let b = i / g.dim();
                    let row = &vf[i * m..(i + 1) * m];
                    *o += scale * row.iter().zip(&dw[b * m..(b + 1) * m]).map(|(g, w)| g * w).sum::<f64>();
                }
            }
        }
    }
    fn prod_transpose_add(&self, scale: f64, a: &[f64], t0: f64, t1: f64, out_vf: &mut [f64]) {
        let dw = self.dw(t0, t1);
        match self.diffusion {
            Diffusion::Diagonal(_) => {
                for ((o, ai), w) in out_vf.iter_mut().zip(a).zip(&dw) {
                    *o += scale * ai * w;
                }
            }
            Diffusion::General(g) => {
                let m = g.noise_dim();
                for (i, ai) in a.iter().enumerate() {
                    let b = i / g.dim();
                    for k in 0..m {
                        out_vf[i * m + k] += scale * ai * dw[b * m + k];
                    }
                }
            }
        }
    }
    fn check_interval(&self, t0: f64, t1: f64) -> Result<()> {
        self.path.check_time(t0)?;
        self.path.check_time(t1)
    }
}

/// The sum of a drift term and a noise term: what a solver steps an SDE with. The vector-field
/// value is the drift's followed by the diffusion's, and the parameters are the drift's
/// followed by the diffusion's.
pub struct SdeTerm<'a> {
    drift: &'a dyn Term,
    noise: &'a dyn Term,
}

impl<'a> SdeTerm<'a> {
    /// `drift` (an ODE term) plus `noise`.
    pub fn new(drift: &'a dyn Term, noise: &'a dyn Term) -> Self {
        Self { drift, noise }
    }
}

impl Term for SdeTerm<'_> {
    fn vf_len(&self, state_len: usize) -> usize {
        self.drift.vf_len(state_len) + self.noise.vf_len(state_len)
    }
    fn n_params(&self) -> usize {
        self.drift.n_params() + self.noise.n_params()
    }
    fn vf(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        let (f, g) = out.split_at_mut(self.drift.vf_len(y.len()));
        self.drift.vf(t, y, f)?;
        self.noise.vf(t, y, g)
    }
    fn vf_vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        let (af, ag) = a.split_at(self.drift.vf_len(y.len()));
        let (tf, tg) = a_theta.split_at_mut(self.drift.n_params());
        self.drift.vf_vjp(t, y, af, a_y, tf)?;
        let mut from_noise = vec![0.0; y.len()];
        self.noise.vf_vjp(t, y, ag, &mut from_noise, tg)?;
        for (o, v) in a_y.iter_mut().zip(&from_noise) {
            *o += v;
        }
        Ok(())
    }
    fn prod_add(&self, scale: f64, vf: &[f64], t0: f64, t1: f64, out: &mut [f64]) {
        let (f, g) = vf.split_at(self.drift.vf_len(out.len()));
        self.drift.prod_add(scale, f, t0, t1, out);
        self.noise.prod_add(scale, g, t0, t1, out);
    }
    fn prod_transpose_add(&self, scale: f64, a: &[f64], t0: f64, t1: f64, out_vf: &mut [f64]) {
        let (f, g) = out_vf.split_at_mut(self.drift.vf_len(a.len()));
        self.drift.prod_transpose_add(scale, a, t0, t1, f);
        self.noise.prod_transpose_add(scale, a, t0, t1, g);
    }
    fn check_interval(&self, t0: f64, t1: f64) -> Result<()> {
        self.drift.check_interval(t0, t1)?;
        self.noise.check_interval(t0, t1)
    }
}

/// A Stratonovich SDE $dy = f(t, y)\,dt + g(t, y) \circ dW$ driven by one Brownian sample.
#[derive(Clone, Copy)]
pub struct Sde<'a> {
    /// The drift $f$.
    pub drift: &'a dyn VectorField,
    /// The diffusion $g$.
    pub diffusion: Diffusion<'a>,
    /// The Brownian motion: dimension (batch size) × (noise channels).
    pub path: &'a VirtualBrownianTree,
}

impl Sde<'_> {
    /// Check the shapes for a state `y0` and return the batch size.
    fn batch(&self, y0_len: usize) -> Result<usize> {
        let d = self.drift.dim();
        if self.diffusion.dim() != d {
            return Err(Error::ShapeMismatch { what: "diffusion dimension (the drift's)", expected: d, found: self.diffusion.dim() });
        }
        let batch = batch_size(d, y0_len)?;
        let want = batch * self.diffusion.noise_dim();
        if self.path.dim() != want {
            return Err(Error::ShapeMismatch { what: "Brownian path dimension (batch × noise channels)", expected: want, found: self.path.dim() });
        }
        Ok(batch)
    }

    /// Check the shapes for a state of length `y0_len`, then run `f` with the SDE's term and a
    /// reader of the drift's (evaluations, VJPs).
    fn with_term<R>(&self, y0_len: usize, f: impl FnOnce(&dyn Term, &dyn Fn() -> (usize, usize)) -> Result<R>) -> Result<R> {
        self.batch(y0_len)?;
        let counted = Counted::new(self.drift);
        let (drift, noise) = (OdeTerm(&counted), NoiseTerm::new(self.diffusion, self.path));
        let term = SdeTerm::new(&drift, &noise);
        f(&term, &|| (counted.evals(), counted.vjps()))
    }
}

/// Solve an SDE from `y0` (a batch, flat) with `solver` on its Brownian sample. The solver sees
/// the sum of the drift and noise terms, so a method's behaviour on SDEs follows from how it
/// uses its term: Heun's method is the stochastic Heun method (Stratonovich; strong order 1 for
/// commutative noise, ½ in general); explicit Euler is *not* a Stratonovich solver (it converges
/// to the Itô solution). `field_evals` in the statistics counts the drift's evaluations.
///
/// # Errors
/// Shape mismatches (the diffusion's dimension, the path's dimension), a solve interval outside
/// the path's, and everything [`solve`](crate::solve) returns.
pub fn solve_sde(sde: &Sde, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions) -> Result<Solution> {
    sde.with_term(y0.len(), |term, counts| crate::integrate::solve_term(term, solver, y0, opts, counts))
}

impl Adjoint {
    /// Loss and gradient of `loss(solve_sde(sde, solver, y0, opts))` with respect to the drift's
    /// parameters followed by the diffusion's (`d_theta`) and `y0`, through the discretisation
    /// and on the Brownian sample of `sde` — the same numbers backpropagation through the stored
    /// steps gives, for every exact strategy.
    ///
    /// # Errors
    /// As [`solve_sde`] and [`Adjoint::gradient_checked`].
    pub fn sde_gradient(&self, sde: &Sde, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, checks: &GradientChecks) -> Result<Gradient> {
        sde.with_term(y0.len(), |term, counts| self.gradient_of_term(term, solver, y0, opts, loss, checks, counts))
    }
}
