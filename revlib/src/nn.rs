//! The dfdx backend: an MLP vector field whose VJPs come from dfdx's tape, and Adam/AdamW
//! updates of flat parameter vectors through dfdx's kernel.
//!
//! Every dfdx call in revlib lives in this module, so a later backend change touches one file.

pub mod lm;
pub mod transformer;

use crate::error::{check_len, Error, Result};
use crate::field::{batch_size, Mlp, MlpConfig, VectorField};
use dfdx::prelude::*;

fn backend<E: std::fmt::Debug>(e: E) -> Error {
    Error::Backend(format!("{e:?}"))
}

/// An MLP vector field evaluated op by op with dfdx, gradients from dfdx's reverse-mode tape.
///
/// Same parameter layout and initialisation as [`Mlp`] (which is the fast path); this one is
/// the reference the fused implementation is tested against, and the template for fields
/// built from arbitrary dfdx graphs.
#[derive(Debug, Clone)]
pub struct DfdxMlp {
    /// Shape and parameters (shared layout with the fused implementation).
    inner: Mlp,
    dev: Cpu,
}

type Mat = Tensor<(usize, usize), f64, Cpu>;
type Vector = Tensor<(usize,), f64, Cpu>;

impl DfdxMlp {
    /// The dfdx twin of `Mlp::new(cfg, seed)` (identical parameters).
    ///
    /// # Errors
    /// As [`Mlp::new`].
    pub fn new(cfg: MlpConfig, seed: u64) -> Result<Self> {
        Ok(Self { inner: Mlp::new(cfg, seed)?, dev: Cpu::default() })
    }

    /// Parameter tensors `(Wᵀ (in × out), b (out))` of each layer.
    fn tensors(&self) -> Vec<(Mat, Vector)> {
        let theta = self.inner.theta();
        let mut off = 0;
        let mut out = Vec::new();
        for (i, o) in self.inner.config().layer_sizes() {
            let w = &theta[off..off + i * o];
            let mut wt = vec![0.0; i * o];
            for r in 0..o {
                for c in 0..i {
                    wt[c * o + r] = w[r * i + c];
                }
            }
            let b = theta[off + i * o..off + (i + 1) * o].to_vec();
            off += (i + 1) * o;
            out.push((self.dev.tensor_from_vec(wt, (i, o)), self.dev.tensor_from_vec(b, (o,))));
        }
        out
    }

    fn input(&self, t: f64, y: &[f64], batch: usize) -> Mat {
        let cfg = self.inner.config();
        let d = cfg.dim;
        let d_in = d + usize::from(cfg.time_input);
        let mut x = Vec::with_capacity(batch * d_in);
        for row in y.chunks_exact(d) {
            if cfg.time_input {
                x.push(t);
            }
            x.extend_from_slice(row);
        }
        self.dev.tensor_from_vec(x, (batch, d_in))
    }
}

/// `x · Wᵀ + b` then tanh on hidden layers, generic over the tape. Parameters are
/// re-taped with the input's tape type so that their gradients are recorded.
fn mlp_forward<T: Tape<f64, Cpu> + Merge<T> + Default>(x: Tensor<(usize, usize), f64, Cpu, T>, layers: &[(Mat, Vector)]) -> Tensor<(usize, usize), f64, Cpu, T> {
    let mut h = x;
    for (l, (wt, b)) in layers.iter().enumerate() {
        let shape = (h.shape().0, wt.shape().1);
        let z = h.matmul(wt.retaped::<T>()) + b.retaped::<T>().broadcast_like::<_, Axis<0>>(&shape);
        h = if l + 1 < layers.len() { z.tanh() } else { z };
    }
    h
}

impl VectorField for DfdxMlp {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn n_params(&self) -> usize {
        self.inner.n_params()
    }
    fn params(&self) -> Vec<f64> {
        self.inner.params()
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        self.inner.set_params(theta)
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        let batch = batch_size(self.dim(), y.len())?;
        check_len("vector-field output", y.len(), out.len())?;
        let f = mlp_forward(self.input(t, y, batch), &self.tensors());
        out.copy_from_slice(&f.as_vec());
        Ok(())
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        let cfg = self.inner.config();
        let batch = batch_size(cfg.dim, y.len())?;
        check_len("VJP cotangent", y.len(), a.len())?;
        check_len("VJP state cotangent output", y.len(), a_y.len())?;
        check_len("VJP parameter cotangent output", self.n_params(), a_theta.len())?;
        let x = self.input(t, y, batch);
        let layers = self.tensors();
        let f = mlp_forward(x.trace(Gradients::leaky()), &layers);
        let at = self.dev.tensor_from_vec(a.to_vec(), (batch, cfg.dim));
        let g = (f * at).sum::<Rank0, _>().backward();
        let xb = g.get(&x).as_vec();
        let d_in = xb.len() / batch;
        let off = d_in - cfg.dim;
        for (dst, row) in a_y.chunks_exact_mut(cfg.dim).zip(xb.chunks_exact(d_in)) {
            dst.copy_from_slice(&row[off..]);
        }
        let mut p = 0;
        for ((i, o), (wt, b)) in cfg.layer_sizes().into_iter().zip(&layers) {
            let wg = g.get(wt).as_vec();
            for r in 0..o {
                for c in 0..i {
                    a_theta[p + r * i + c] += wg[c * o + r];
                }
            }
            for (dst, v) in a_theta[p + i * o..p + (i + 1) * o].iter_mut().zip(g.get(b).as_vec()) {
                *dst += v;
            }
            p += (i + 1) * o;
        }
        Ok(())
    }
    fn name(&self) -> String {
        format!("dfdx {}", self.inner.name())
    }
}

/// Adam / AdamW hyper-parameters (dfdx's `AdamConfig`).
pub use dfdx::optim::{AdamConfig, WeightDecay};

/// Adam (or AdamW, with `weight_decay: Some(WeightDecay::Decoupled(λ))`) on a flat parameter
/// vector, using dfdx's update kernel.
///
/// # Examples
/// ```
/// use revlib::prelude::*;
/// use revlib::nn::WeightDecay;
/// # fn main() -> revlib::Result<()> {
/// let cfg = AdamConfig { lr: 1e-2, weight_decay: Some(WeightDecay::Decoupled(1e-5)), ..Default::default() };
/// let mut opt = Adam::new(2, cfg)?;
/// let mut theta = vec![1.0, -1.0];
/// opt.step(&mut theta, &[0.5, -0.5])?;
/// assert!(theta[0] < 1.0 && theta[1] > -1.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Adam {
    cfg: AdamConfig,
    t: i32,
    m: <Cpu as Storage<f64>>::Vec,
    v: <Cpu as Storage<f64>>::Vec,
    dev: Cpu,
}

impl Adam {
    /// An optimiser for `n` parameters.
    ///
    /// # Errors
    /// [`Error::Backend`] if dfdx cannot allocate the moment buffers.
    pub fn new(n: usize, cfg: AdamConfig) -> Result<Self> {
        let dev = Cpu::default();
        let m = dev.try_alloc_len(n).map_err(backend)?;
        let v = dev.try_alloc_len(n).map_err(backend)?;
        Ok(Self { cfg, t: 0, m, v, dev })
    }

    /// The optimiser's state (step count, first and second moments), for checkpoints.
    pub fn state(&self) -> (i32, Vec<f64>, Vec<f64>) {
        (self.t, self.m.iter().copied().collect(), self.v.iter().copied().collect())
    }

    /// Restore a state written by [`state`](Self::state).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the moments' lengths differ from the optimiser's.
    pub fn set_state(&mut self, t: i32, m: &[f64], v: &[f64]) -> Result<()> {
        check_len("Adam first moment", self.m.len(), m.len())?;
        check_len("Adam second moment", self.v.len(), v.len())?;
        self.t = t;
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        Ok(())
    }

    /// One update `theta ← theta − step(grad)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the lengths differ from the optimiser's.
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64]) -> Result<()> {
        let n = self.m.len();
        check_len("Adam parameters", n, theta.len())?;
        check_len("Adam gradient", n, grad.len())?;
        self.t += 1;
        let mut p = self.dev.tensor_from_vec(theta.to_vec(), (n,));
        let mut g = self.dev.try_alloc_len(n).map_err(backend)?;
        g.copy_from_slice(grad);
        self.cfg.try_update(self.t, &mut p, &mut self.m, &mut self.v, &g).map_err(backend)?;
        theta.copy_from_slice(&p.as_vec());
        Ok(())
    }
}
