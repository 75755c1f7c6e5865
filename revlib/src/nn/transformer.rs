//! The weight-tied transformer block of the RevDEQ language model, built from dfdx operations
//! (f32 inside, f64 at the interface), with causal self-attention written out (dfdx's
//! `MultiHeadAttention` takes no mask). Generic over the device ([`NnDevice`]).
//!
//! Two variants ([`BlockKind`]):
//! - `PostLn`: $f(z, x) = \mathrm{LN}_2(\varphi(\mathrm{LN}_1(\mathrm{SA}(z + x))))$, layer norms after
//!   attention and after the MLP and no residual connections — the block drawn in McCallum,
//!   Arora & Foster's talk on Reversible DEQs — with $\varphi$ a two-layer GELU MLP of width $4d$;
//! - `PreLnResidual`: $z_1 = z + \mathrm{SA}(\mathrm{LN}_1(z + x))$, $f = z_1 + \varphi(\mathrm{LN}_2(z_1))$,
//!   the pre-LN residual block of the authors' language-model code (arXiv:2509.12917; their MLP
//!   has one more layer).
//!
//! SA is causal multi-head attention with separate Q, K, V, O projections (no biases).

use super::{Cpu, NnDevice};
use crate::deq::{FixedPointMap, StateMap};
use crate::error::{check_len, Error, Result};
use dfdx::prelude::*;

/// Which block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BlockKind {
    /// LN ∘ φ ∘ LN ∘ SA(z + x): post-norm, no residual connections (the talk's slide).
    PostLn,
    /// z + SA(LN(z + x)), then + φ(LN(·)) (the authors' code).
    PreLnResidual,
}

/// Shape of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BlockConfig {
    /// Model width d.
    pub d_model: usize,
    /// Attention heads (d must be a multiple).
    pub heads: usize,
    /// Hidden width of φ is `mlp_ratio · d`.
    pub mlp_ratio: usize,
    /// Sequence length S (z and x are batches of S × d).
    pub seq_len: usize,
    /// Variant.
    pub kind: BlockKind,
}

impl BlockConfig {
    /// Number of parameters: Q, K, V, O ($4d^2$), two layer norms ($4d$), φ ($2dh + h + d$).
    pub fn n_params(&self) -> usize {
        let (d, h) = (self.d_model, self.d_model * self.mlp_ratio);
        4 * d * d + 4 * d + 2 * d * h + h + d
    }
    fn validate(&self) -> Result<()> {
        if self.d_model == 0 || self.heads == 0 || self.d_model % self.heads != 0 || self.seq_len == 0 || self.mlp_ratio == 0 {
            return Err(Error::InvalidArgument { name: "d_model", value: self.d_model as f64, expected: "positive, a multiple of heads, with seq_len and mlp_ratio positive" });
        }
        Ok(())
    }
}

type T1<D> = Tensor<(usize,), f32, D>;
type T2<D> = Tensor<(usize, usize), f32, D>;
/// A batch of sequences, B × S × d, on device `D` with tape `T`.
pub type Seq<D, T = NoneTape, E = f32> = Tensor<(usize, usize, usize), E, D, T>;
type T3<D, T> = Seq<D, T>;

/// The parameter tensors (f32), in layout order; rebuilt when the parameters change, not per call.
#[derive(Debug, Clone)]
struct Params<D: NnDevice> {
    wq: T2<D>,
    wk: T2<D>,
    wv: T2<D>,
    wo: T2<D>,
    g1: T1<D>,
    n1: T1<D>,
    w1: T2<D>,
    b1: T1<D>,
    w2: T2<D>,
    b2: T1<D>,
    g2: T1<D>,
    n2: T1<D>,
}

/// A transformer block with flat f64 parameters (layout: Q, K, V, O as d × d (input-major),
/// LN₁ γ, β, W₁ (d × h), b₁, W₂ (h × d), b₂, LN₂ γ, β).
#[derive(Debug, Clone)]
pub struct TransformerBlock<D: NnDevice = Cpu> {
    cfg: BlockConfig,
    theta: Vec<f64>,
    dev: D,
    mask: T2<D>,
    p: Params<D>,
}

impl TransformerBlock<Cpu> {
    /// A block on the CPU; see [`on`](TransformerBlock::on).
    ///
    /// # Errors
    /// Invalid configuration.
    pub fn new(cfg: BlockConfig, seed: u64) -> Result<Self> {
        Self::on(Cpu::default(), cfg, seed)
    }
}

impl<D: NnDevice> TransformerBlock<D> {
    /// A block on device `dev` with N(0, 1/fan_in) weights (attention output and W₂ scaled by
    /// 1/2), LN β = 0, zero biases, LN₁ γ = 1 and LN₂ γ = 0.1 for the post-norm block (1 for the
    /// residual one). Parameters are drawn on the host from `seed`, so every device starts from
    /// the same ones.
    ///
    /// # Errors
    /// Invalid configuration.
    pub fn on(dev: D, cfg: BlockConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let (d, h) = (cfg.d_model, cfg.d_model * cfg.mlp_ratio);
        let mut rng = crate::rng::Rng::new(seed);
        let mut gauss = |n: usize, fan_in: usize, scale: f64| rng.normals(n, scale / (fan_in as f64).sqrt());
        let mut theta = Vec::with_capacity(cfg.n_params());
        for k in 0..4 {
            theta.extend(gauss(d * d, d, if k == 3 { 0.5 } else { 1.0 }));
        }
        theta.extend(std::iter::repeat(1.0).take(d).chain(std::iter::repeat(0.0).take(d)));
        theta.extend(gauss(d * h, d, 1.0));
        theta.extend(std::iter::repeat(0.0).take(h));
        theta.extend(gauss(h * d, h, 0.5));
        theta.extend(std::iter::repeat(0.0).take(d));
        // The last layer norm's gain sets the scale of z against the injected x, and so the
        // Lipschitz constant of f in z: starting it at `out_gain` < 1 starts the post-norm block
        // as a contraction (the fixed-point solvers converge at initialisation).
        let out_gain = if cfg.kind == BlockKind::PostLn { 0.1 } else { 1.0 };
        theta.extend(std::iter::repeat(out_gain).take(d).chain(std::iter::repeat(0.0).take(d)));
        let s = cfg.seq_len;
        // Position i attends to j ≤ i only.
        let mask: Vec<f32> = (0..s * s).map(|k| if k % s > k / s { -1e9 } else { 0.0 }).collect();
        let mask = dev.tensor_from_vec(mask, (s, s));
        let p = tensors(&dev, &cfg, &theta);
        Ok(Self { cfg, theta, dev, mask, p })
    }
    /// Configuration.
    pub fn config(&self) -> BlockConfig {
        self.cfg
    }
    /// Parameters.
    pub fn params(&self) -> &[f64] {
        &self.theta
    }
    /// Replace the parameters.
    ///
    /// # Errors
    /// Wrong length.
    pub fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("transformer block parameters", self.theta.len(), theta.len())?;
        self.theta.copy_from_slice(theta);
        self.p = tensors(&self.dev, &self.cfg, &self.theta);
        Ok(())
    }


    fn batch(&self, len: usize) -> Result<usize> {
        let per = self.cfg.seq_len * self.cfg.d_model;
        if len == 0 || len % per != 0 {
            return Err(Error::ShapeMismatch { what: "block input (a multiple of seq_len × d_model)", expected: per, found: len });
        }
        Ok(len / per)
    }

    fn input(&self, v: &[f64], b: usize) -> Seq<D> {
        self.dev.tensor_from_vec(v.iter().map(|&a| a as f32).collect(), (b, self.cfg.seq_len, self.cfg.d_model))
    }

    /// The device the block runs on.
    pub fn device(&self) -> &D {
        &self.dev
    }
}

/// The f32 parameter tensors of a block from its flat f64 parameters.
fn tensors<D: NnDevice>(dev: &D, cfg: &BlockConfig, theta: &[f64]) -> Params<D> {
    let (d, h) = (cfg.d_model, cfg.d_model * cfg.mlp_ratio);
    let mut off = 0;
    let mut take = |shape: (usize, usize)| {
        let n = shape.0 * shape.1;
        let v: Vec<f32> = theta[off..off + n].iter().map(|&a| a as f32).collect();
        off += n;
        v
    };
    let wq = dev.tensor_from_vec(take((d, d)), (d, d));
    let wk = dev.tensor_from_vec(take((d, d)), (d, d));
    let wv = dev.tensor_from_vec(take((d, d)), (d, d));
    let wo = dev.tensor_from_vec(take((d, d)), (d, d));
    let g1 = dev.tensor_from_vec(take((d, 1)), (d,));
    let n1 = dev.tensor_from_vec(take((d, 1)), (d,));
    let w1 = dev.tensor_from_vec(take((d, h)), (d, h));
    let b1 = dev.tensor_from_vec(take((h, 1)), (h,));
    let w2 = dev.tensor_from_vec(take((h, d)), (h, d));
    let b2 = dev.tensor_from_vec(take((d, 1)), (d,));
    let g2 = dev.tensor_from_vec(take((d, 1)), (d,));
    let n2 = dev.tensor_from_vec(take((d, 1)), (d,));
    Params { wq, wk, wv, wo, g1, n1, w1, b1, w2, b2, g2, n2 }
}

fn layer_norm<D: NnDevice, T: Tape<f32, D> + Merge<T>>(h: T3<D, T>, g: &T1<D>, b: &T1<D>) -> T3<D, T> {
    let shape = *h.shape();
    h.normalize::<Axis<2>>(1e-5) * g.retaped::<T>().broadcast_like::<_, Axes2<0, 1>>(&shape) + b.retaped::<T>().broadcast_like::<_, Axes2<0, 1>>(&shape)
}

fn linear<D: NnDevice, T: Tape<f32, D> + Merge<T>>(h: T3<D, T>, w: &T2<D>, b: Option<&T1<D>>) -> T3<D, T> {
    let y = h.matmul(w.retaped::<T>());
    match b {
        Some(b) => {
            let shape = *y.shape();
            y + b.retaped::<T>().broadcast_like::<_, Axes2<0, 1>>(&shape)
        }
        None => y,
    }
}

/// Causal multi-head self-attention.
fn attention<D: NnDevice, T: Tape<f32, D> + Merge<T>>(u: T3<D, T>, p: &Params<D>, heads: usize, mask: &T2<D>) -> T3<D, T> {
    let (b, s, d) = *u.shape();
    let dh = d / heads;
    let q = linear(u.retaped::<T>(), &p.wq, None).reshape_like(&(b, s, heads, dh)).permute::<_, Axes4<0, 2, 1, 3>>();
    let k = linear(u.retaped::<T>(), &p.wk, None).reshape_like(&(b, s, heads, dh)).permute::<_, Axes4<0, 2, 3, 1>>();
    let v = linear(u, &p.wv, None).reshape_like(&(b, s, heads, dh)).permute::<_, Axes4<0, 2, 1, 3>>();
    let scores = q.matmul(k) * (1.0 / (dh as f32).sqrt()) + mask.retaped::<T>().broadcast_like::<_, Axes2<0, 1>>(&(b, heads, s, s));
    let att = scores.softmax::<Axis<3>>();
    let o = att.matmul(v).permute::<_, Axes4<0, 2, 1, 3>>().reshape_like(&(b, s, d));
    linear(o, &p.wo, None)
}

fn mlp<D: NnDevice, T: Tape<f32, D> + Merge<T>>(h: T3<D, T>, p: &Params<D>) -> T3<D, T> {
    linear(linear(h, &p.w1, Some(&p.b1)).fast_gelu(), &p.w2, Some(&p.b2))
}

/// f(z, x) for the configured variant; the tape rides on `z`.
fn block_forward<D: NnDevice, T: Tape<f32, D> + Merge<T>>(z: T3<D, T>, x: &Seq<D>, p: &Params<D>, cfg: &BlockConfig, mask: &T2<D>) -> T3<D, T> {
    match cfg.kind {
        BlockKind::PostLn => {
            let u = z + x.retaped::<T>();
            layer_norm(mlp(layer_norm(attention(u, p, cfg.heads, mask), &p.g1, &p.n1), p), &p.g2, &p.n2)
        }
        BlockKind::PreLnResidual => {
            let u = z.retaped::<T>() + x.retaped::<T>();
            let z1 = z + attention(layer_norm(u, &p.g1, &p.n1), p, cfg.heads, mask);
            let m = mlp(layer_norm(z1.retaped::<T>(), &p.g2, &p.n2), p);
            z1 + m
        }
    }
}

/// A flat f64 vector on the device.
type Flat<D> = Tensor<(usize,), f64, D>;

/// Parameter and input cotangents of a [`TransformerBlock`] accumulated on its device (f64),
/// brought to the host once, by [`into_host`](BlockGrads::into_host).
#[derive(Debug, Clone)]
pub struct BlockGrads<D: NnDevice> {
    params: Vec<Flat<D>>,
    x: Seq<D, NoneTape, f64>,
}

impl<D: NnDevice> BlockGrads<D> {
    /// `(∂/∂θ in the block's layout, ∂/∂x)` on the host.
    pub fn into_host(self) -> (Vec<f64>, Vec<f64>) {
        (self.params.iter().flat_map(|t| t.as_vec()).collect(), self.x.as_vec())
    }
}

impl<D: NnDevice> TransformerBlock<D> {
    /// Upload a host batch of sequences (f64) as a state on the device.
    ///
    /// # Errors
    /// A length that is not a multiple of S × d.
    pub fn state(&self, v: &[f64]) -> Result<Seq<D, NoneTape, f64>> {
        let b = self.batch(v.len())?;
        Ok(self.dev.tensor_from_vec(v.to_vec(), (b, self.cfg.seq_len, self.cfg.d_model)))
    }
    /// Upload the injected input x (the block computes in f32).
    ///
    /// # Errors
    /// A length that is not a multiple of S × d.
    pub fn injection(&self, v: &[f64]) -> Result<Seq<D>> {
        let b = self.batch(v.len())?;
        Ok(self.input(v, b))
    }
    /// Zeroed cotangent accumulators for inputs shaped like `x`.
    pub fn zero_grads(&self, x: &Seq<D>) -> BlockGrads<D> {
        let p = &self.p;
        let sizes = [p.wq.shape().num_elements(), p.wk.shape().num_elements(), p.wv.shape().num_elements(), p.wo.shape().num_elements(), p.g1.shape().0, p.n1.shape().0, p.w1.shape().num_elements(), p.b1.shape().0, p.w2.shape().num_elements(), p.b2.shape().0, p.g2.shape().0, p.n2.shape().0];
        BlockGrads { params: sizes.iter().map(|&n| self.dev.zeros_like(&(n,))).collect(), x: self.dev.zeros_like(x.shape()) }
    }
}

fn flat<D: NnDevice, S: Shape>(t: Tensor<S, f32, D>) -> Flat<D> {
    let n = t.shape().num_elements();
    t.to_dtype::<f64>().reshape_like(&(n,))
}

/// The block as a map on device states: iterates stay on the device (f64, converted to f32 for
/// the block's arithmetic); only the norms of the stopping rule come back to the host.
impl<D: NnDevice> StateMap for TransformerBlock<D> {
    type State = Seq<D, NoneTape, f64>;
    type Input = Seq<D>;
    type Grads = BlockGrads<D>;
    fn zeros(&self, x: &Seq<D>) -> Result<Self::State> {
        Ok(self.dev.zeros_like(x.shape()))
    }
    fn eval(&self, z: &Self::State, x: &Seq<D>) -> Result<Self::State> {
        check_shape("block state", x.shape(), z.shape())?;
        Ok(block_forward(z.clone().to_dtype::<f32>(), x, &self.p, &self.cfg, &self.mask).to_dtype::<f64>())
    }
    fn vjp(&self, z: &Self::State, x: &Seq<D>, a: &Self::State, grads: &mut BlockGrads<D>) -> Result<Self::State> {
        check_shape("block state", x.shape(), z.shape())?;
        check_shape("block cotangent", x.shape(), a.shape())?;
        let p = &self.p;
        let z32 = z.clone().to_dtype::<f32>();
        let y = block_forward(z32.trace(Gradients::leaky()), x, p, &self.cfg, &self.mask);
        let g = (y * a.clone().to_dtype::<f32>()).sum::<Rank0, _>().backward();
        let params = [flat(g.get(&p.wq)), flat(g.get(&p.wk)), flat(g.get(&p.wv)), flat(g.get(&p.wo)), flat(g.get(&p.g1)), flat(g.get(&p.n1)), flat(g.get(&p.w1)), flat(g.get(&p.b1)), flat(g.get(&p.w2)), flat(g.get(&p.b2)), flat(g.get(&p.g2)), flat(g.get(&p.n2))];
        for (acc, gp) in grads.params.iter_mut().zip(params) {
            *acc = acc.clone() + gp;
        }
        grads.x = grads.x.clone() + g.get(x).to_dtype::<f64>();
        Ok(g.get(&z32).to_dtype::<f64>())
    }
    fn lincomb(&self, a: f64, u: &Self::State, b: f64, v: &Self::State) -> Result<Self::State> {
        Ok(u.clone() * a + v.clone() * b)
    }
    fn residual(&self, u: &Self::State, v: &Self::State) -> Result<(f64, f64)> {
        let d = scalar((u.clone() - v.clone()).square().sum::<Rank0, _>());
        let n = scalar(v.clone().square().sum::<Rank0, _>());
        Ok((d.sqrt(), n.sqrt()))
    }
    fn finite(&self, u: &Self::State) -> Result<bool> {
        // A sum of magnitudes is finite exactly when every entry is (short of overflowing
        // f64 in the sum itself).
        Ok(scalar(u.clone().abs().sum::<Rank0, _>()).is_finite())
    }
}

/// The value of a rank-0 tensor on the host.
fn scalar<D: NnDevice>(t: Tensor<(), f64, D>) -> f64 {
    t.as_vec().first().copied().unwrap_or(f64::NAN)
}

fn check_shape(what: &'static str, expected: &(usize, usize, usize), found: &(usize, usize, usize)) -> Result<()> {
    check_len(what, expected.0 * expected.1 * expected.2, found.0 * found.1 * found.2)
}

/// The block on host vectors (each call uploads its inputs and downloads its outputs; the
/// reversible DEQ keeps its iterates on the device through [`StateMap`] instead).
impl<D: NnDevice> FixedPointMap for TransformerBlock<D> {
    fn n_params(&self) -> usize {
        self.theta.len()
    }
    fn eval(&self, z: &[f64], x: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("block x", z.len(), x.len())?;
        check_len("block output", z.len(), out.len())?;
        let y = StateMap::eval(self, &self.state(z)?, &self.injection(x)?)?;
        out.copy_from_slice(&y.as_vec());
        Ok(())
    }
    fn vjp(&self, z: &[f64], x: &[f64], a: &[f64], a_z: &mut [f64], a_theta: &mut [f64], a_x: &mut [f64]) -> Result<()> {
        for (what, v) in [("block x", x.len()), ("block cotangent", a.len()), ("block a_z", a_z.len()), ("block a_x", a_x.len())] {
            check_len(what, z.len(), v)?;
        }
        check_len("block a_theta", self.theta.len(), a_theta.len())?;
        let xt = self.injection(x)?;
        let mut grads = self.zero_grads(&xt);
        let az = StateMap::vjp(self, &self.state(z)?, &xt, &self.state(a)?, &mut grads)?;
        a_z.copy_from_slice(&az.as_vec());
        let (gt, gx) = grads.into_host();
        a_theta.iter_mut().zip(gt).for_each(|(d, v)| *d += v);
        a_x.iter_mut().zip(gx).for_each(|(d, v)| *d += v);
        Ok(())
    }
}
