//! A fused multilayer-perceptron vector field with a hand-written backward pass.
//!
//! dfdx evaluates an MLP op by op, with an allocation and a tape entry per op and a scalar
//! `f64::tanh` per element; on the small, wide-batch networks of neural ODEs that overhead
//! dominates (see `benchmarks/README.md`). [`Mlp`] runs each layer as one GEMM
//! (`matrixmultiply`) plus a vectorisable [`tanh_inplace`], and computes
//! $a^\top\partial f/\partial y$ and $a^\top\partial f/\partial\theta$ in the same pass as the
//! forward evaluation. Its values and VJPs are tested against the dfdx implementation
//! ([`crate::nn::DfdxMlp`]) to round-off.

use super::{batch_size, VectorField};
use crate::error::{check_len, Error, Result};
use rand::{Rng, SeedableRng};

/// Shape of an [`Mlp`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MlpConfig {
    /// State dimension $D$ (input and output of the field).
    pub dim: usize,
    /// Width of each hidden layer.
    pub width: usize,
    /// Number of hidden (tanh) layers.
    pub depth: usize,
    /// Whether $t$ is fed as an extra input (a "time-dependent" field).
    pub time_input: bool,
}

impl MlpConfig {
    /// Input and output sizes of every affine layer.
    pub fn layer_sizes(&self) -> Vec<(usize, usize)> {
        let d_in = self.dim + usize::from(self.time_input);
        let mut sizes = Vec::with_capacity(self.depth + 1);
        let mut prev = d_in;
        for _ in 0..self.depth {
            sizes.push((prev, self.width));
            prev = self.width;
        }
        sizes.push((prev, self.dim));
        sizes
    }
    /// Number of parameters: $\sum_l (\text{in}_l + 1)\,\text{out}_l$.
    pub fn n_params(&self) -> usize {
        self.layer_sizes().iter().map(|(i, o)| (i + 1) * o).sum()
    }
}

/// $f(t, y) = W_L \tanh(\cdots \tanh(W_1 [t,] y + b_1) \cdots) + b_L$.
///
/// Parameters are stored flat, layer after layer, each as the weight matrix $W$
/// (out × in, row-major) followed by the bias $b$. Initialisation is uniform in
/// $\pm 1/\sqrt{\text{in}}$ (PyTorch's and Equinox's default for linear layers), seeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    cfg: MlpConfig,
    theta: Vec<f64>,
}

impl Mlp {
    /// A randomly initialised MLP.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `dim` or (with `depth > 0`) `width` is zero.
    pub fn new(cfg: MlpConfig, seed: u64) -> Result<Self> {
        if cfg.dim == 0 {
            return Err(Error::InvalidArgument { name: "dim", value: 0.0, expected: "at least 1" });
        }
        if cfg.depth > 0 && cfg.width == 0 {
            return Err(Error::InvalidArgument { name: "width", value: 0.0, expected: "at least 1" });
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut theta = Vec::with_capacity(cfg.n_params());
        for (i, o) in cfg.layer_sizes() {
            let bound = 1.0 / (i as f64).sqrt();
            for _ in 0..(i + 1) * o {
                theta.push(rng.gen_range(-bound..bound));
            }
        }
        Ok(Self { cfg, theta })
    }
    /// An MLP with the given flat parameters.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `theta.len() != cfg.n_params()`.
    pub fn from_params(cfg: MlpConfig, theta: Vec<f64>) -> Result<Self> {
        check_len("MLP parameters", cfg.n_params(), theta.len())?;
        Ok(Self { cfg, theta })
    }
    /// The network's shape.
    pub fn config(&self) -> MlpConfig {
        self.cfg
    }

    /// Forward pass keeping every layer's input (activations), for the backward pass.
    fn forward(&self, t: f64, y: &[f64], batch: usize, acts: &mut Vec<Vec<f64>>, out: &mut [f64]) {
        let d = self.cfg.dim;
        let sizes = self.cfg.layer_sizes();
        let d_in = sizes[0].0;
        let mut x0 = vec![0.0; batch * d_in];
        for (row, ys) in x0.chunks_exact_mut(d_in).zip(y.chunks_exact(d)) {
            let off = usize::from(self.cfg.time_input);
            row[0] = t;
            row[off..].copy_from_slice(ys);
        }
        acts.clear();
        acts.push(x0);
        let mut off = 0;
        let last = sizes.len() - 1;
        for (l, &(i, o)) in sizes.iter().enumerate() {
            let w = &self.theta[off..off + i * o];
            let b = &self.theta[off + i * o..off + (i + 1) * o];
            off += (i + 1) * o;
            let x = &acts[l];
            let mut z = if l == last { Vec::new() } else { vec![0.0; batch * o] };
            let dst: &mut [f64] = if l == last { &mut *out } else { &mut z };
            for row in dst.chunks_exact_mut(o) {
                row.copy_from_slice(b);
            }
            // dst (batch × o) += x (batch × i) · Wᵀ
            gemm(batch, i, o, x, (i, 1), w, (1, i), 1.0, dst, (o, 1));
            if l != last {
                tanh_inplace(&mut z);
                acts.push(z);
            }
        }
    }

    /// Backward pass from the output cotangent `a`, given the activations of [`forward`].
    fn backward(&self, batch: usize, acts: &[Vec<f64>], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) {
        let sizes = self.cfg.layer_sizes();
        // Parameter offsets of each layer.
        let mut offs = Vec::with_capacity(sizes.len());
        let mut off = 0;
        for &(i, o) in &sizes {
            offs.push(off);
            off += (i + 1) * o;
        }
        let mut g = a.to_vec();
        for l in (0..sizes.len()).rev() {
            let (i, o) = sizes[l];
            let (w, gb) = (offs[l], offs[l] + i * o);
            let x = &acts[l];
            // W̄ (o × i) += gᵀ (o × batch) · x (batch × i)
            gemm(o, batch, i, &g, (1, o), x, (i, 1), 1.0, &mut a_theta[w..gb], (i, 1));
            let bbar = &mut a_theta[gb..gb + o];
            for row in g.chunks_exact(o) {
                for (bb, gi) in bbar.iter_mut().zip(row) {
                    *bb += gi;
                }
            }
            // x̄ (batch × i) = g (batch × o) · W (o × i)
            let mut xbar = vec![0.0; batch * i];
            gemm(batch, o, i, &g, (o, 1), &self.theta[w..gb], (i, 1), 0.0, &mut xbar, (i, 1));
            if l > 0 {
                for (xb, h) in xbar.iter_mut().zip(x) {
                    *xb *= 1.0 - h * h;
                }
            } else {
                let d = self.cfg.dim;
                let off = usize::from(self.cfg.time_input);
                for (ay, row) in a_y.chunks_exact_mut(d).zip(xbar.chunks_exact(i)) {
                    ay.copy_from_slice(&row[off..]);
                }
            }
            g = xbar;
        }
    }
}

/// `c = alpha_c * c + a · b` with explicit (row, column) strides, via `matrixmultiply::dgemm`.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    (rsa, csa): (usize, usize),
    b: &[f64],
    (rsb, csb): (usize, usize),
    beta: f64,
    c: &mut [f64],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // Invariant: callers pass slices that cover the strided extents (checked in debug builds).
    debug_assert!(k == 0 || a.len() > (m - 1) * rsa + (k - 1) * csa);
    debug_assert!(k == 0 || b.len() > (k - 1) * rsb + (n - 1) * csb);
    debug_assert!(c.len() > (m - 1) * rsc + (n - 1) * csc);
    // SAFETY: the asserted extents above hold for every call site in this module (shapes are
    // derived from the same MlpConfig and checked batch size), so every index dgemm touches
    // is inside the slices; `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

impl VectorField for Mlp {
    fn dim(&self) -> usize {
        self.cfg.dim
    }
    fn n_params(&self) -> usize {
        self.theta.len()
    }
    fn params(&self) -> Vec<f64> {
        self.theta.clone()
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("MLP parameters", self.theta.len(), theta.len())?;
        self.theta.copy_from_slice(theta);
        Ok(())
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        let batch = batch_size(self.cfg.dim, y.len())?;
        check_len("vector-field output", y.len(), out.len())?;
        let mut acts = Vec::new();
        self.forward(t, y, batch, &mut acts, out);
        Ok(())
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        let mut out = vec![0.0; y.len()];
        self.eval_and_vjp(t, y, a, &mut out, a_y, a_theta)
    }
    fn eval_and_vjp(
        &self,
        t: f64,
        y: &[f64],
        a: &[f64],
        out: &mut [f64],
        a_y: &mut [f64],
        a_theta: &mut [f64],
    ) -> Result<()> {
        let batch = batch_size(self.cfg.dim, y.len())?;
        check_len("vector-field output", y.len(), out.len())?;
        check_len("VJP cotangent", y.len(), a.len())?;
        check_len("VJP state cotangent output", y.len(), a_y.len())?;
        check_len("VJP parameter cotangent output", self.theta.len(), a_theta.len())?;
        let mut acts = Vec::new();
        self.forward(t, y, batch, &mut acts, out);
        self.backward(batch, &acts, a, a_y, a_theta);
        Ok(())
    }
    fn name(&self) -> String {
        let c = self.cfg;
        format!("MLP {}{}→{}×{} tanh→{}", if c.time_input { "(t, y) " } else { "" }, c.dim, c.width, c.depth, c.dim)
    }
}

/// In-place hyperbolic tangent, accurate to a few ulp and written so the compiler vectorises it.
///
/// For $|x| \le 1/8$ a degree-15 odd Taylor polynomial; otherwise
/// $\tanh|x| = (1 - e)/(1 + e)$ with $e = e^{-2|x|}$ from a range-reduced degree-13 polynomial
/// for $\exp$ (argument clamped to $|x| \le 22$, where $\tanh$ rounds to ±1).
pub fn tanh_inplace(xs: &mut [f64]) {
    for x in xs.iter_mut() {
        *x = tanh1(*x);
    }
}

#[inline(always)]
fn tanh1(x: f64) -> f64 {
    let ax = x.abs().min(22.0);
    // exp(-2ax) by range reduction: -2ax = k ln2 + r, |r| <= ln2/2.
    let v = -2.0 * ax;
    let k = (v * std::f64::consts::LOG2_E).round();
    let r = (v - k * 6.931_471_803_691_238_164_9e-1) - k * 1.908_214_929_270_587_700_0e-10;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // k in [-64, 0]: build 2^k from its exponent bits (no subnormals).
    let scale = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    let e = p * scale;
    let big = (1.0 - e) / (1.0 + e);
    // Small |x|: odd Taylor series of tanh up to x^15.
    let x2 = ax * ax;
    let mut q = -929_569.0 / 638_512_875.0;
    for c in [21_844.0 / 6_081_075.0, -1_382.0 / 155_925.0, 62.0 / 2_835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0, 1.0] {
        q = q * x2 + c;
    }
    let small = ax * q;
    let t = if ax <= 0.125 { small } else { big };
    t.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_std_to_a_few_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -30.0;
        while x < 30.0 {
            let mut v = [x];
            tanh_inplace(&mut v);
            let e = x.tanh();
            let err = (v[0] - e).abs() / e.abs().max(f64::MIN_POSITIVE);
            worst = worst.max(err);
            x += 0.000_731;
        }
        assert!(worst < 2e-15, "worst relative error {worst:e}");
        let mut tiny = [1e-300, -1e-12, 0.0, 0.125, -0.125000001];
        let expect: Vec<f64> = tiny.iter().map(|v: &f64| v.tanh()).collect();
        tanh_inplace(&mut tiny);
        for (a, b) in tiny.iter().zip(expect) {
            assert!((a - b).abs() <= 2e-16 * b.abs());
        }
    }

    #[test]
    fn mlp_config_counts_parameters() {
        let c = MlpConfig { dim: 2, width: 64, depth: 2, time_input: false };
        assert_eq!(c.n_params(), 3 * 64 + 65 * 64 + 65 * 2);
        let c = MlpConfig { dim: 2, width: 10, depth: 1, time_input: true };
        assert_eq!(c.layer_sizes(), vec![(3, 10), (10, 2)]);
    }
}
