//! A fused multilayer-perceptron vector field with a hand-written backward pass.
//!
//! dfdx evaluates an MLP op by op, with an allocation and a tape entry per op and a scalar
//! `f64::tanh` per element; on the small, wide-batch networks of neural ODEs that overhead
//! dominates (see `benchmarks/README.md`). [`Mlp`] runs each layer as one matrix product
//! (`matrixmultiply` for the hidden layers, plain kernels for the thin input and output layers;
//! see `kernels.rs`) plus a vectorised tanh, and computes
//! $a^\top\partial f/\partial y$ and $a^\top\partial f/\partial\theta$ in the same pass as the
//! forward evaluation. Its values and VJPs are tested against the dfdx implementation
//! ([`crate::nn::DfdxMlp`]) to round-off.

use super::kernels::{add_bias_tanh, gemm, View, ViewMut};
use super::{batch_size, with_scratch, VectorField};
use crate::error::{check_len, Error, Result};
use std::cell::Cell;

/// Shape of an [`Mlp`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

/// $f(t, y) = W_L \tanh(\cdots \tanh(W_1 x + b_1) \cdots) + b_L$ with $x = y$, or $x = (t, y)$ for a
/// time-dependent field.
///
/// Parameters are stored flat, layer after layer, each as the weight matrix $W$
/// (out × in, row-major) followed by the bias $b$. Initialisation is uniform in
/// $\pm 1/\sqrt{\text{in}}$ (PyTorch's and Equinox's default for linear layers), seeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    cfg: MlpConfig,
    theta: Vec<f64>,
    /// Each layer's weight matrix transposed (in × out, row-major), kept in step with `theta`:
    /// the forward product x Wᵀ then reads it in the layout its kernel wants, without a copy
    /// per evaluation.
    wt: Vec<Vec<f64>>,
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
        let mut rng = crate::rng::Rng::new(seed);
        let mut theta = Vec::with_capacity(cfg.n_params());
        for (i, o) in cfg.layer_sizes() {
            let bound = 1.0 / (i as f64).sqrt();
            for _ in 0..(i + 1) * o {
                theta.push(rng.uniform_in(-bound, bound));
            }
        }
        Ok(Self::with_theta(cfg, theta))
    }
    /// An MLP with the given flat parameters.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `theta.len() != cfg.n_params()`.
    pub fn from_params(cfg: MlpConfig, theta: Vec<f64>) -> Result<Self> {
        check_len("MLP parameters", cfg.n_params(), theta.len())?;
        Ok(Self::with_theta(cfg, theta))
    }
    fn with_theta(cfg: MlpConfig, theta: Vec<f64>) -> Self {
        let mut mlp = Self { cfg, theta, wt: cfg.layer_sizes().iter().map(|&(i, o)| vec![0.0; i * o]).collect() };
        mlp.transpose_weights();
        mlp
    }
    /// Refresh [`wt`](Mlp::wt) from `theta`.
    fn transpose_weights(&mut self) {
        let mut off = 0;
        for (&(i, o), wt) in self.cfg.layer_sizes().iter().zip(&mut self.wt) {
            let w = &self.theta[off..off + i * o];
            for (r, wrow) in w.chunks_exact(i).enumerate() {
                for (c, v) in wrow.iter().enumerate() {
                    wt[c * o + r] = *v;
                }
            }
            off += (i + 1) * o;
        }
    }
    /// The network's shape.
    pub fn config(&self) -> MlpConfig {
        self.cfg
    }
    /// The flat parameters (borrowed).
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    /// Length of the saved activations for a batch.
    fn acts_len(&self, batch: usize) -> usize {
        batch * self.cfg.layer_sizes().iter().map(|s| s.0).sum::<usize>()
    }

    /// Forward pass writing every layer's input (the activations) into `acts`, flat:
    /// `[x0 (batch × in0), h1 (batch × width), …]`, for the backward pass.
    fn forward(&self, t: f64, y: &[f64], batch: usize, acts: &mut [f64], out: &mut [f64]) {
        let d = self.cfg.dim;
        let sizes = self.cfg.layer_sizes();
        let d_in = sizes[0].0;
        let off_t = usize::from(self.cfg.time_input);
        for (row, ys) in acts[..batch * d_in].chunks_exact_mut(d_in).zip(y.chunks_exact(d)) {
            row[0] = t;
            row[off_t..].copy_from_slice(ys);
        }
        let mut off = 0; // parameter offset
        let mut a_off = 0; // offset of this layer's input in `acts`
        let last = sizes.len() - 1;
        for (l, &(i, o)) in sizes.iter().enumerate() {
            let b = &self.theta[off + i * o..off + (i + 1) * o];
            off += (i + 1) * o;
            let start = a_off + batch * i;
            let (inputs, rest) = acts.split_at_mut(start);
            let x = &inputs[a_off..];
            let dst: &mut [f64] = if l == last { &mut *out } else { &mut rest[..batch * o] };
            // dst (batch × o) = x (batch × i) · Wᵀ, then the bias (and tanh) added in one pass.
            gemm(View::rows(x, batch, i), View::rows(&self.wt[l], i, o), 0.0, ViewMut::rows(dst, batch, o));
            if l == last {
                for row in dst.chunks_exact_mut(o) {
                    for (v, bj) in row.iter_mut().zip(b) {
                        *v += bj;
                    }
                }
            } else {
                add_bias_tanh(dst, b);
            }
            a_off += batch * i;
        }
    }

    /// Forward pass over the batch, split in two halves run on two threads for large batches.
    fn forward_par(&self, t: f64, y: &[f64], batch: usize, acts: &mut [f64], out: &mut [f64]) {
        if !split_batch(batch) {
            return self.forward(t, y, batch, acts, out);
        }
        let (b1, d) = (batch / 2, self.cfg.dim);
        let (y1, y2) = y.split_at(b1 * d);
        let (o1, o2) = out.split_at_mut(b1 * d);
        let (a1, a2) = acts.split_at_mut(self.acts_len(b1));
        join(|| self.forward(t, y1, b1, a1, o1), || self.forward(t, y2, batch - b1, a2, o2));
    }

    /// Backward pass, split like [`forward_par`](Mlp::forward_par); the second half's
    /// parameter cotangent is accumulated separately and added.
    fn backward_par(&self, batch: usize, acts: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) {
        if !split_batch(batch) {
            return self.backward(batch, acts, a, a_y, a_theta);
        }
        let (b1, d) = (batch / 2, self.cfg.dim);
        let (c1, c2) = a.split_at(b1 * d);
        let (ay1, ay2) = a_y.split_at_mut(b1 * d);
        let (s1, s2) = acts.split_at(self.acts_len(b1));
        with_scratch(&THETA_HALF, a_theta.len(), |th2| {
            th2.fill(0.0);
            join(|| self.backward(b1, s1, c1, ay1, a_theta), || self.backward(batch - b1, s2, c2, ay2, th2));
            for (x, y) in a_theta.iter_mut().zip(th2.iter()) {
                *x += y;
            }
        });
    }

    /// Backward pass from the output cotangent `a`, given the activations of [`forward`]; the
    /// layers' cotangents pass through two buffers of this thread's scratch ([`with_scratch`](super::with_scratch)).
    fn backward(&self, batch: usize, acts: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) {
        let sizes = self.cfg.layer_sizes();
        let widest = sizes.iter().map(|&(i, o)| i.max(o)).max().unwrap_or(0);
        with_scratch(&WORK, 2 * batch * widest, |work| {
            let (mut gbuf, mut xbuf) = work.split_at_mut(batch * widest);
            let (mut off, mut a_off) = (self.theta.len(), self.acts_len(batch));
            for l in (0..sizes.len()).rev() {
                let (i, o) = sizes[l];
                off -= (i + 1) * o;
                a_off -= batch * i;
                let (w, gb) = (off, off + i * o);
                let x = &acts[a_off..a_off + batch * i];
                // The output layer's cotangent is `a`; every other one the previous x̄.
                let g: &[f64] = if l + 1 == sizes.len() { a } else { &gbuf[..batch * o] };
                // W̄ (o × i) += gᵀ (o × batch) · x (batch × i)
                gemm(View::rows(g, batch, o).t(), View::rows(x, batch, i), 1.0, ViewMut::rows(&mut a_theta[w..gb], o, i));
                let bbar = &mut a_theta[gb..gb + o];
                for row in g.chunks_exact(o) {
                    for (bb, gi) in bbar.iter_mut().zip(row) {
                        *bb += gi;
                    }
                }
                // x̄ (batch × i) = g (batch × o) · W (o × i)
                let xbar = &mut xbuf[..batch * i];
                gemm(View::rows(g, batch, o), View::rows(&self.theta[w..gb], o, i), 0.0, ViewMut::rows(xbar, batch, i));
                if l > 0 {
                    for (xb, h) in xbar.iter_mut().zip(x) {
                        *xb *= 1.0 - h * h;
                    }
                } else {
                    let d = self.cfg.dim;
                    let skip = usize::from(self.cfg.time_input);
                    for (ay, row) in a_y.chunks_exact_mut(d).zip(xbar.chunks_exact(i)) {
                        ay.copy_from_slice(&row[skip..]);
                    }
                }
                std::mem::swap(&mut gbuf, &mut xbuf);
            }
        });
    }

    fn check_vjp_args(&self, y_len: usize, a: &[f64], a_y: &[f64], a_theta: &[f64]) -> Result<usize> {
        let batch = batch_size(self.cfg.dim, y_len)?;
        check_len("VJP cotangent", y_len, a.len())?;
        check_len("VJP state cotangent output", y_len, a_y.len())?;
        check_len("VJP parameter cotangent output", self.theta.len(), a_theta.len())?;
        Ok(batch)
    }
}

thread_local! {
    /// This thread's buffer for a forward pass's activations.
    static ACTS: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
    /// This thread's buffer for a backward pass's cotangents.
    static WORK: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
    /// This thread's buffer for the second half's parameter cotangent in a split backward pass.
    static THETA_HALF: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
}

/// Batches at least this large are split over two threads, the caller's and a helper (feature
/// `parallel`), when rayon's global pool has at least two threads: `RAYON_NUM_THREADS=1` gives a
/// single-threaded run.
pub const PAR_MIN_BATCH: usize = 64;

/// Whether a batch is split over two threads.
fn split_batch(batch: usize) -> bool {
    cfg!(feature = "parallel") && batch >= PAR_MIN_BATCH && threads() >= 2
}

fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "parallel"))]
    return 1;
}

/// Run two closures, on two threads with feature `parallel` ([`team::join`](super::team::join)).
fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    #[cfg(feature = "parallel")]
    super::team::join(a, b);
    #[cfg(not(feature = "parallel"))]
    {
        a();
        b();
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
        self.transpose_weights();
        Ok(())
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        let batch = batch_size(self.cfg.dim, y.len())?;
        check_len("vector-field output", y.len(), out.len())?;
        with_scratch(&ACTS, self.acts_len(batch), |acts| self.forward_par(t, y, batch, acts, out));
        Ok(())
    }
    fn eval_save(&self, t: f64, y: &[f64], out: &mut [f64], saved: &mut Vec<f64>) -> Result<()> {
        let batch = batch_size(self.cfg.dim, y.len())?;
        check_len("vector-field output", y.len(), out.len())?;
        // Every entry is written by the forward pass; only a longer buffer needs filling first.
        saved.resize(self.acts_len(batch), 0.0);
        self.forward_par(t, y, batch, saved, out);
        Ok(())
    }
    fn vjp_saved(&self, saved: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        let batch = self.check_vjp_args(a.len(), a, a_y, a_theta)?;
        check_len("saved MLP activations", self.acts_len(batch), saved.len())?;
        self.backward_par(batch, saved, a, a_y, a_theta);
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
        let batch = self.check_vjp_args(y.len(), a, a_y, a_theta)?;
        check_len("vector-field output", y.len(), out.len())?;
        with_scratch(&ACTS, self.acts_len(batch), |acts| {
            self.forward_par(t, y, batch, acts, out);
            self.backward_par(batch, acts, a, a_y, a_theta);
        });
        Ok(())
    }
    fn name(&self) -> String {
        let c = self.cfg;
        format!("MLP {}{}→{}×{} tanh→{}", if c.time_input { "(t, y) " } else { "" }, c.dim, c.width, c.depth, c.dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_params_refreshes_the_transposed_weights() {
        let cfg = MlpConfig { dim: 3, width: 40, depth: 2, time_input: true };
        let mut m = Mlp::new(cfg, 1).unwrap();
        let theta: Vec<f64> = (0..cfg.n_params()).map(|i| ((i * 37 % 101) as f64 / 101.0) - 0.5).collect();
        m.set_params(&theta).unwrap();
        let fresh = Mlp::from_params(cfg, theta).unwrap();
        let y: Vec<f64> = (0..3 * 70).map(|i| (i as f64 * 0.3).sin()).collect();
        let (mut a, mut b) = (vec![0.0; y.len()], vec![0.0; y.len()]);
        m.eval(0.4, &y, &mut a).unwrap();
        fresh.eval(0.4, &y, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(m, fresh);
    }

    #[test]
    fn mlp_config_counts_parameters() {
        let c = MlpConfig { dim: 2, width: 64, depth: 2, time_input: false };
        assert_eq!(c.n_params(), 3 * 64 + 65 * 64 + 65 * 2);
        let c = MlpConfig { dim: 2, width: 10, depth: 1, time_input: true };
        assert_eq!(c.layer_sizes(), vec![(3, 10), (10, 2)]);
    }
}
