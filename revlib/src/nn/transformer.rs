//! The weight-tied transformer block of the RevDEQ language model, built from dfdx operations
//! (f32 inside, f64 at the interface), with causal self-attention written out (dfdx's
//! `MultiHeadAttention` takes no mask).
//!
//! Two variants ([`BlockKind`]):
//! - `Talk`: $f(z, x) = \mathrm{LN}_2(\varphi(\mathrm{LN}_1(\mathrm{SA}(z + x))))$, the block on the talk's slide,
//!   with $\varphi$ a two-layer GELU MLP of width $4d$;
//! - `PreLnResidual`: $z_1 = z + \mathrm{SA}(\mathrm{LN}_1(z + x))$, $f = z_1 + \varphi(\mathrm{LN}_2(z_1))$,
//!   the pre-LN residual form of the authors' code (methods.md §5.6; their MLP has one more layer).
//!
//! SA is causal multi-head attention with separate Q, K, V, O projections (no biases).

use crate::deq::FixedPointMap;
use crate::error::{check_len, Error, Result};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Which block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BlockKind {
    /// LN ∘ φ ∘ LN ∘ SA(z + x) (the talk's slide).
    Talk,
    /// z + SA(LN(z + x)), then + φ(LN(·)) (the authors' code).
    PreLnResidual,
}

/// Shape of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

type T1 = Tensor<(usize,), f32, Cpu>;
type T2 = Tensor<(usize, usize), f32, Cpu>;
type T3<T> = Tensor<(usize, usize, usize), f32, Cpu, T>;

/// The parameter tensors (f32), in layout order; rebuilt when the parameters change, not per call.
#[derive(Debug, Clone)]
struct Params {
    wq: T2,
    wk: T2,
    wv: T2,
    wo: T2,
    g1: T1,
    n1: T1,
    w1: T2,
    b1: T1,
    w2: T2,
    b2: T1,
    g2: T1,
    n2: T1,
}

/// A transformer block with flat f64 parameters (layout: Q, K, V, O as d × d (input-major),
/// LN₁ γ, β, W₁ (d × h), b₁, W₂ (h × d), b₂, LN₂ γ, β).
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    cfg: BlockConfig,
    theta: Vec<f64>,
    dev: Cpu,
    mask: T2,
    p: Params,
}

impl TransformerBlock {
    /// A block with N(0, 1/fan_in) weights (attention output and W₂ scaled by 1/2), LN β = 0,
    /// zero biases, LN₁ γ = 1 and LN₂ γ = 0.1 for the talk's block (1 for the residual one).
    ///
    /// # Errors
    /// Invalid configuration.
    pub fn new(cfg: BlockConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let (d, h) = (cfg.d_model, cfg.d_model * cfg.mlp_ratio);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut gauss = |n: usize, fan_in: usize, scale: f64| -> Vec<f64> {
            let sd = scale / (fan_in as f64).sqrt();
            (0..n).map(|_| { let v: f64 = StandardNormal.sample(&mut rng); sd * v }).collect::<Vec<f64>>()
        };
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
        // Lipschitz constant of f in z: starting it at `out_gain` < 1 starts the talk's block
        // as a contraction (the fixed-point solvers converge at initialisation).
        let out_gain = if cfg.kind == BlockKind::Talk { 0.1 } else { 1.0 };
        theta.extend(std::iter::repeat(out_gain).take(d).chain(std::iter::repeat(0.0).take(d)));
        let dev = Cpu::default();
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

    fn input(&self, v: &[f64], b: usize) -> T3<NoneTape> {
        self.dev.tensor_from_vec(v.iter().map(|&a| a as f32).collect(), (b, self.cfg.seq_len, self.cfg.d_model))
    }
}

/// The f32 parameter tensors of a block from its flat f64 parameters.
fn tensors(dev: &Cpu, cfg: &BlockConfig, theta: &[f64]) -> Params {
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

fn layer_norm<T: Tape<f32, Cpu> + Merge<T>>(h: T3<T>, g: &T1, b: &T1) -> T3<T> {
    let shape = *h.shape();
    h.normalize::<Axis<2>>(1e-5) * g.retaped::<T>().broadcast_like::<_, Axes2<0, 1>>(&shape) + b.retaped::<T>().broadcast_like::<_, Axes2<0, 1>>(&shape)
}

fn linear<T: Tape<f32, Cpu> + Merge<T>>(h: T3<T>, w: &T2, b: Option<&T1>) -> T3<T> {
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
fn attention<T: Tape<f32, Cpu> + Merge<T>>(u: T3<T>, p: &Params, heads: usize, mask: &T2) -> T3<T> {
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

fn mlp<T: Tape<f32, Cpu> + Merge<T>>(h: T3<T>, p: &Params) -> T3<T> {
    linear(linear(h, &p.w1, Some(&p.b1)).fast_gelu(), &p.w2, Some(&p.b2))
}

/// f(z, x) for the configured variant; the tape rides on `z`.
fn block_forward<T: Tape<f32, Cpu> + Merge<T>>(z: T3<T>, x: &T3<NoneTape>, p: &Params, cfg: &BlockConfig, mask: &T2) -> T3<T> {
    match cfg.kind {
        BlockKind::Talk => {
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

impl FixedPointMap for TransformerBlock {
    fn n_params(&self) -> usize {
        self.theta.len()
    }
    fn eval(&self, z: &[f64], x: &[f64], out: &mut [f64]) -> Result<()> {
        let b = self.batch(z.len())?;
        check_len("block x", z.len(), x.len())?;
        check_len("block output", z.len(), out.len())?;
        let y = block_forward(self.input(z, b), &self.input(x, b), &self.p, &self.cfg, &self.mask);
        for (o, v) in out.iter_mut().zip(y.as_vec()) {
            *o = v as f64;
        }
        Ok(())
    }
    fn vjp(&self, z: &[f64], x: &[f64], a: &[f64], a_z: &mut [f64], a_theta: &mut [f64], a_x: &mut [f64]) -> Result<()> {
        let b = self.batch(z.len())?;
        for (what, v) in [("block x", x.len()), ("block cotangent", a.len()), ("block a_z", a_z.len()), ("block a_x", a_x.len())] {
            check_len(what, z.len(), v)?;
        }
        check_len("block a_theta", self.theta.len(), a_theta.len())?;
        let p = &self.p;
        let zt = self.input(z, b);
        let xt = self.input(x, b);
        let y = block_forward(zt.trace(Gradients::leaky()), &xt, p, &self.cfg, &self.mask);
        let g = (y * self.input(a, b)).sum::<Rank0, _>().backward();
        for (dst, v) in a_z.iter_mut().zip(g.get(&zt).as_vec()) {
            *dst = v as f64;
        }
        for (dst, v) in a_x.iter_mut().zip(g.get(&xt).as_vec()) {
            *dst += v as f64;
        }
        let grads: [Vec<f32>; 12] = [
            g.get(&p.wq).as_vec(),
            g.get(&p.wk).as_vec(),
            g.get(&p.wv).as_vec(),
            g.get(&p.wo).as_vec(),
            g.get(&p.g1).as_vec(),
            g.get(&p.n1).as_vec(),
            g.get(&p.w1).as_vec(),
            g.get(&p.b1).as_vec(),
            g.get(&p.w2).as_vec(),
            g.get(&p.b2).as_vec(),
            g.get(&p.g2).as_vec(),
            g.get(&p.n2).as_vec(),
        ];
        for (dst, v) in a_theta.iter_mut().zip(grads.iter().flatten()) {
            *dst += *v as f64;
        }
        Ok(())
    }
}
