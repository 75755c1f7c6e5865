//! Word-level language models around the transformer block: an explicit transformer, a DEQ
//! (Anderson forward, implicit backward) and a RevDEQ (reversible iteration, exact reversible
//! backward), sharing embedding, positional embedding and output head.
//!
//! Tokens → $x = E_w + P_{\text{pos}}$ → $z$ → logits $= z W_{\text{out}}$ → mean next-token NLL.
//! The explicit transformer stacks $L$ blocks with input injection, $z_{l+1} = f_l(z_l, x)$ from
//! $z_0 = 0$ (one layer is exactly one application of the DEQ's block); the (Rev)DEQ solves
//! $z = f(z, x)$ with one weight-tied block. Blocks run in f32, states and parameters are f64.

use super::transformer::{BlockConfig, TransformerBlock};
use crate::deq::{backward, fixed_point, DeqBackward, FixedPointMap, FixedPointOptions, FixedPointSolver};
use crate::error::{check_len, Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// How the hidden state is computed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LmKind {
    /// `layers` distinct blocks, backprop through all of them.
    Transformer {
        /// Number of blocks.
        layers: usize,
    },
    /// One weight-tied block solved to its fixed point.
    Deq {
        /// Forward solver.
        solver: FixedPointSolver,
        /// Stopping rule.
        opts: FixedPointOptions,
        /// How the gradient is computed.
        backward: DeqBackward,
    },
}

impl LmKind {
    /// A RevDEQ: reversible iteration with β, tol 1e-3, at most `max_steps` iterations, exact
    /// reversible backward.
    pub fn rev_deq(beta: f64, max_steps: usize) -> Self {
        LmKind::Deq { solver: FixedPointSolver::Reversible { beta }, opts: FixedPointOptions { tol: 1e-3, max_steps, strict: false }, backward: DeqBackward::Reversible }
    }
    /// A standard DEQ: Anderson forward and implicit backward, each up to `max_steps`
    /// iterations at tol 1e-3.
    pub fn implicit_deq(max_steps: usize) -> Self {
        LmKind::Deq {
            solver: FixedPointSolver::anderson(),
            opts: FixedPointOptions { tol: 1e-3, max_steps, strict: false },
            backward: DeqBackward::Implicit { tol: 1e-3, max_steps, strict: false },
        }
    }
}

/// Shape of a language model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmConfig {
    /// Vocabulary size (including `<unk>`, `<eos>`).
    pub vocab: usize,
    /// The block (its `seq_len` is the context length).
    pub block: BlockConfig,
    /// Transformer, DEQ or RevDEQ.
    pub kind: LmKind,
}

impl LmConfig {
    /// Total parameters: embedding, positions, blocks, head.
    pub fn n_params(&self) -> usize {
        let d = self.block.d_model;
        let layers = match self.kind {
            LmKind::Transformer { layers } => layers,
            LmKind::Deq { .. } => 1,
        };
        2 * self.vocab * d + self.block.seq_len * d + layers * self.block.n_params()
    }
}

/// Costs of one forward/backward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmStats {
    /// Block evaluations in the forward pass (NFE).
    pub forward_nfe: usize,
    /// Block evaluations in the backward pass.
    pub backward_nfe: usize,
    /// Block VJPs in the backward pass.
    pub backward_vjps: usize,
    /// Fixed-point iterations (layers for the transformer).
    pub iterations: usize,
    /// Final relative residual of the fixed point (0 for the transformer).
    pub residual: f64,
    /// Hidden-state tensors held for the backward pass (each B × S × d).
    pub stored_states: usize,
    /// The implicit adjoint iteration diverged and was cut short.
    pub adjoint_diverged: bool,
}

/// A language model with flat f64 parameters (embedding V × d, positions S × d, blocks, head d × V).
#[derive(Debug, Clone)]
pub struct LanguageModel {
    cfg: LmConfig,
    emb: Vec<f64>,
    pos: Vec<f64>,
    blocks: Vec<TransformerBlock>,
    head: Vec<f64>,
}

impl LanguageModel {
    /// A model with N(0, 0.02²)-ish embeddings and N(0, 1/d) head.
    ///
    /// # Errors
    /// Invalid block configuration, zero layers or vocabulary.
    pub fn new(cfg: LmConfig, seed: u64) -> Result<Self> {
        if cfg.vocab < 2 {
            return Err(Error::InvalidArgument { name: "vocab", value: cfg.vocab as f64, expected: "at least 2" });
        }
        let layers = match cfg.kind {
            LmKind::Transformer { layers } if layers == 0 => return Err(Error::InvalidArgument { name: "layers", value: 0.0, expected: "at least 1" }),
            LmKind::Transformer { layers } => layers,
            LmKind::Deq { .. } => 1,
        };
        let d = cfg.block.d_model;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut gauss = |n: usize, sd: f64| (0..n).map(|_| { let v: f64 = StandardNormal.sample(&mut rng); sd * v }).collect::<Vec<f64>>();
        let emb = gauss(cfg.vocab * d, 0.1);
        let pos = gauss(cfg.block.seq_len * d, 0.1);
        let head = gauss(d * cfg.vocab, 1.0 / (d as f64).sqrt());
        let blocks = (0..layers).map(|l| TransformerBlock::new(cfg.block, seed.wrapping_mul(31).wrapping_add(l as u64 + 1))).collect::<Result<Vec<_>>>()?;
        Ok(Self { cfg, emb, pos, blocks, head })
    }
    /// Configuration.
    pub fn config(&self) -> LmConfig {
        self.cfg
    }
    /// All parameters, flat: embedding, positions, blocks, head.
    pub fn params(&self) -> Vec<f64> {
        let mut p = self.emb.clone();
        p.extend_from_slice(&self.pos);
        for b in &self.blocks {
            p.extend_from_slice(b.params());
        }
        p.extend_from_slice(&self.head);
        p
    }
    /// Replace all parameters.
    ///
    /// # Errors
    /// Wrong length.
    pub fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("language model parameters", self.cfg.n_params(), theta.len())?;
        let (e, rest) = theta.split_at(self.emb.len());
        let (p, mut rest) = rest.split_at(self.pos.len());
        self.emb.copy_from_slice(e);
        self.pos.copy_from_slice(p);
        for b in &mut self.blocks {
            let (bp, r) = rest.split_at(b.params().len());
            b.set_params(bp)?;
            rest = r;
        }
        self.head.copy_from_slice(rest);
        Ok(())
    }

    /// `tokens` holds `batch` windows of S + 1 ids; returns (inputs x, targets).
    fn embed(&self, tokens: &[u32]) -> Result<(Vec<f64>, Vec<usize>, Vec<usize>)> {
        let s = self.cfg.block.seq_len;
        let d = self.cfg.block.d_model;
        if tokens.is_empty() || tokens.len() % (s + 1) != 0 {
            return Err(Error::ShapeMismatch { what: "token windows (a multiple of seq_len + 1)", expected: s + 1, found: tokens.len() });
        }
        let mut x = Vec::with_capacity(tokens.len() / (s + 1) * s * d);
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for w in tokens.chunks_exact(s + 1) {
            for (i, &t) in w[..s].iter().enumerate() {
                let t = t as usize;
                if t >= self.cfg.vocab || w[i + 1] as usize >= self.cfg.vocab {
                    return Err(Error::InvalidArgument { name: "token id", value: t.max(w[i + 1] as usize) as f64, expected: "below the vocabulary size" });
                }
                x.extend(self.emb[t * d..(t + 1) * d].iter().zip(&self.pos[i * d..(i + 1) * d]).map(|(a, b)| a + b));
                inputs.push(t);
                targets.push(w[i + 1] as usize);
            }
        }
        Ok((x, inputs, targets))
    }

    /// Mean NLL of the targets and, with `grad`, its gradient w.r.t. z and the head. Written
    /// out in f32 with `sgemm` (dfdx's generic log-softmax over a B·S × V tensor cost ten
    /// times more than the three products).
    fn head_loss(&self, z: &[f64], targets: &[usize], grad: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let (n, d, v) = (targets.len(), self.cfg.block.d_model, self.cfg.vocab);
        let zf: Vec<f32> = z.iter().map(|&a| a as f32).collect();
        let wf: Vec<f32> = self.head.iter().map(|&a| a as f32).collect();
        let mut logits = vec![0f32; n * v];
        sgemm(n, d, v, &zf, (d as isize, 1), &wf, (v as isize, 1), &mut logits, 0.0);
        let mut loss = 0f64;
        for (row, &t) in logits.chunks_exact_mut(v).zip(targets) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let target_logit = row[t] - m;
            let mut sum = 0f32;
            for a in row.iter_mut() {
                *a = (*a - m).exp();
                sum += *a;
            }
            loss += f64::from(sum.ln()) - f64::from(target_logit);
            if grad {
                // softmax − one-hot, scaled by 1/n: dL/dlogits
                let inv = 1.0 / (sum * n as f32);
                row.iter_mut().for_each(|a| *a *= inv);
                row[t] -= 1.0 / n as f32;
            }
        }
        let loss = loss / n as f64;
        if !grad {
            return (loss, Vec::new(), Vec::new());
        }
        let mut dz = vec![0f32; n * d];
        sgemm(n, v, d, &logits, (v as isize, 1), &wf, (1, v as isize), &mut dz, 0.0);
        let mut dw = vec![0f32; d * v];
        sgemm(d, n, v, &zf, (1, d as isize), &logits, (v as isize, 1), &mut dw, 0.0);
        (loss, dz.into_iter().map(f64::from).collect(), dw.into_iter().map(f64::from).collect())
    }

    /// The hidden states: (z, stats, per-layer inputs for the transformer's backward, fixed point).
    fn hidden(&self, x: &[f64], keep: bool) -> Result<(Vec<f64>, LmStats, Vec<Vec<f64>>, Option<crate::deq::FixedPoint>)> {
        match self.cfg.kind {
            LmKind::Transformer { .. } => {
                let mut z = vec![0.0; x.len()];
                let mut inputs = Vec::new();
                for b in &self.blocks {
                    let mut next = vec![0.0; x.len()];
                    b.eval(&z, x, &mut next)?;
                    if keep {
                        inputs.push(std::mem::replace(&mut z, next));
                    } else {
                        z = next;
                    }
                }
                let stats = LmStats { forward_nfe: self.blocks.len(), iterations: self.blocks.len(), stored_states: inputs.len() + 1, ..LmStats::default() };
                Ok((z, stats, inputs, None))
            }
            LmKind::Deq { solver, opts, backward } => {
                let fp = fixed_point(&self.blocks[0], x, solver, &opts, keep && backward == DeqBackward::Unrolled)?;
                let stats = LmStats { forward_nfe: fp.nfe, iterations: fp.iterations, residual: fp.residual(), ..LmStats::default() };
                Ok((fp.z.clone(), stats, Vec::new(), Some(fp)))
            }
        }
    }

    /// Mean next-token NLL of `tokens` (windows of S + 1) and the forward costs.
    ///
    /// # Errors
    /// Shape errors, token ids out of range, non-finite iterates.
    pub fn loss(&self, tokens: &[u32]) -> Result<(f64, LmStats)> {
        let (x, _, targets) = self.embed(tokens)?;
        let (z, stats, _, _) = self.hidden(&x, false)?;
        Ok((self.head_loss(&z, &targets, false).0, stats))
    }

    /// Mean next-token NLL and its gradient with respect to [`params`](Self::params).
    ///
    /// # Errors
    /// As [`loss`](Self::loss), plus backward failures (e.g. a non-converging implicit adjoint).
    pub fn loss_and_grad(&self, tokens: &[u32]) -> Result<(f64, Vec<f64>, LmStats)> {
        let (x, inputs, targets) = self.embed(tokens)?;
        let (z, mut stats, layer_inputs, fp) = self.hidden(&x, true)?;
        let (loss, dz, dhead) = self.head_loss(&z, &targets, true);
        let mut dx = vec![0.0; x.len()];
        let mut dblocks: Vec<Vec<f64>> = self.blocks.iter().map(|b| vec![0.0; b.params().len()]).collect();
        match (self.cfg.kind, fp) {
            (LmKind::Deq { backward: method, .. }, Some(fp)) => {
                let g = backward(&self.blocks[0], &x, &fp, &dz, method)?;
                dx = g.d_x;
                dblocks[0] = g.d_theta;
                stats.backward_nfe = g.nfe;
                stats.backward_vjps = g.vjps;
                stats.stored_states = g.stored_states;
                stats.adjoint_diverged = g.diverged;
            }
            _ => {
                let mut zbar = dz;
                let mut a_z = vec![0.0; x.len()];
                for (l, zin) in layer_inputs.iter().enumerate().rev() {
                    self.blocks[l].vjp(zin, &x, &zbar, &mut a_z, &mut dblocks[l], &mut dx)?;
                    std::mem::swap(&mut zbar, &mut a_z);
                    stats.backward_vjps += 1;
                }
            }
        }
        let d = self.cfg.block.d_model;
        let s = self.cfg.block.seq_len;
        let mut demb = vec![0.0; self.emb.len()];
        let mut dpos = vec![0.0; self.pos.len()];
        for (k, &t) in inputs.iter().enumerate() {
            let g = &dx[k * d..(k + 1) * d];
            demb[t * d..(t + 1) * d].iter_mut().zip(g).for_each(|(a, b)| *a += b);
            let i = k % s;
            dpos[i * d..(i + 1) * d].iter_mut().zip(g).for_each(|(a, b)| *a += b);
        }
        let mut grad = demb;
        grad.extend(dpos);
        for db in dblocks {
            grad.extend(db);
        }
        grad.extend(dhead);
        Ok((loss, grad, stats))
    }
}

/// `c = beta c + a b` for row-major `c` (m × n), with (row, column) strides for a (m × k) and b (k × n).
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], sa: (isize, isize), b: &[f32], sb: (isize, isize), c: &mut [f32], beta: f32) {
    // SAFETY: the strides address only elements of a (m·k), b (k·n) and c (m·n), whose lengths
    // the callers set from the same m, k, n.
    unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), sa.0, sa.1, b.as_ptr(), sb.0, sb.1, beta, c.as_mut_ptr(), n as isize, 1) }
}
