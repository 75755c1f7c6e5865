//! Word-level language models around the transformer block: an explicit transformer, a DEQ
//! (Anderson forward, implicit backward) and a RevDEQ (reversible iteration, exact reversible
//! backward), sharing embedding, positional embedding and output head.
//!
//! Tokens → $x = E_w + P_{\text{pos}}$ → $z$ → logits $= z W_{\text{out}}$ → mean next-token NLL.
//! The explicit transformer stacks $L$ blocks with input injection, $z_{l+1} = f_l(z_l, x)$ from
//! $z_0 = 0$ (one layer is exactly one application of the DEQ's block); the (Rev)DEQ solves
//! $z = f(z, x)$ with one weight-tied block. Blocks run in f32, states and parameters are f64.
//!
//! The hidden states of the transformer and of the RevDEQ (reversible iteration with the
//! reversible backward) stay on the model's device from the embedding to the output head:
//! $x$ goes up once, $z^*$ and the gradients come back once per pass. The DEQ's Anderson and
//! implicit solvers (and unrolled or phantom backward passes) run on host vectors, uploading
//! each block evaluation.

use super::transformer::{BlockConfig, BlockGrads, Seq, TransformerBlock};
use super::{Cpu, NnDevice};
use crate::deq::{backward, fixed_point, jacobian_penalty, reversible_backward, reversible_solve, DeqBackward, FixedPoint, FixedPointOptions, FixedPointSolver, ReversibleSolve, StateMap};
use crate::error::{check_len, Error, Result};

/// How the hidden state is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
        /// Weight γ of the Jacobian penalty γ‖J_f(z*)ᵀε‖²/n added to the training loss (0: none;
        /// see [`jacobian_penalty`]). Applies to the host-vector
        /// solvers (not the device-resident RevDEQ, which needs no stabiliser).
        #[cfg_attr(feature = "serde", serde(default))]
        jacobian_penalty: f64,
    },
}

impl LmKind {
    /// A RevDEQ: reversible iteration with β, tol 1e-3, at most `max_steps` iterations, exact
    /// reversible backward.
    pub fn rev_deq(beta: f64, max_steps: usize) -> Self {
        LmKind::Deq { solver: FixedPointSolver::Reversible { beta }, opts: Self::lm_opts(max_steps), backward: DeqBackward::Reversible, jacobian_penalty: 0.0 }
    }
    /// The RevDEQ's forward iteration differentiated by ordinary backpropagation through the
    /// stored iterates: the same gradient as [`rev_deq`](Self::rev_deq), with $2(N+1)$ states
    /// held instead of 2.
    pub fn rev_deq_unrolled(beta: f64, max_steps: usize) -> Self {
        LmKind::Deq { solver: FixedPointSolver::Reversible { beta }, opts: Self::lm_opts(max_steps), backward: DeqBackward::Unrolled, jacobian_penalty: 0.0 }
    }
    /// A standard DEQ as its authors train it: Anderson forward, the implicit adjoint solved by
    /// Anderson too (each up to `max_steps` iterations at tol 1e-3), and the Jacobian penalty
    /// with weight γ (0 for none).
    pub fn implicit_deq(max_steps: usize, jacobian_penalty: f64) -> Self {
        LmKind::Deq {
            solver: FixedPointSolver::anderson(),
            opts: Self::lm_opts(max_steps),
            backward: DeqBackward::Implicit { tol: 1e-3, max_steps, strict: false, solver: FixedPointSolver::anderson() },
            jacobian_penalty,
        }
    }
    /// A DEQ with the phantom gradient: Anderson forward (up to `max_steps` iterations), then
    /// backpropagation through `k` relaxed steps (β) from the fixed point.
    pub fn phantom_deq(max_steps: usize, k: usize, beta: f64) -> Self {
        LmKind::Deq { solver: FixedPointSolver::anderson(), opts: Self::lm_opts(max_steps), backward: DeqBackward::Phantom { k, beta }, jacobian_penalty: 0.0 }
    }
    /// The language models' stopping rule: tol 1e-3, at most `max_steps`, not strict.
    fn lm_opts(max_steps: usize) -> FixedPointOptions {
        FixedPointOptions { tol: 1e-3, max_steps, strict: false }
    }
}

/// Shape of a language model.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// The Jacobian penalty's value R (0 when not used).
    #[cfg_attr(feature = "serde", serde(default))]
    pub jacobian_penalty: f64,
    /// The reversible backward's certificate of exactness (see
    /// [`BackwardCost::reconstruction_error`](crate::deq::BackwardCost::reconstruction_error));
    /// 0 for the other models.
    #[cfg_attr(feature = "serde", serde(default))]
    pub reconstruction_error: f64,
}

/// A language model with flat f64 parameters (embedding V × d, positions S × d, blocks, head d × V).
#[derive(Debug, Clone)]
pub struct LanguageModel<D: NnDevice = Cpu> {
    cfg: LmConfig,
    emb: Vec<f64>,
    pos: Vec<f64>,
    blocks: Vec<TransformerBlock<D>>,
    head: Vec<f64>,
}

/// What the backward pass needs from the forward pass.
enum Hidden<D: NnDevice> {
    /// Explicit layers: each block's input state, on the device.
    Layers { x: Seq<D>, inputs: Vec<Seq<D, dfdx::tensor::NoneTape, f64>> },
    /// The reversible iteration, on the device.
    Reversible { x: Seq<D>, solve: ReversibleSolve<Seq<D, dfdx::tensor::NoneTape, f64>>, beta: f64 },
    /// Any other fixed-point solve, on host vectors.
    Host { fp: FixedPoint, method: DeqBackward },
}

impl LanguageModel<Cpu> {
    /// A model on the CPU; see [`on`](LanguageModel::on).
    ///
    /// # Errors
    /// Invalid block configuration, zero layers or vocabulary.
    pub fn new(cfg: LmConfig, seed: u64) -> Result<Self> {
        Self::on(Cpu::default(), cfg, seed)
    }
}

impl<D: NnDevice> LanguageModel<D> {
    /// A model on device `dev` with N(0, 0.1²) embeddings and an N(0, 1/d) head; parameters are
    /// drawn on the host from `seed`, so every device starts from the same ones.
    ///
    /// # Errors
    /// Invalid block configuration, zero layers or vocabulary.
    pub fn on(dev: D, cfg: LmConfig, seed: u64) -> Result<Self> {
        if cfg.vocab < 2 {
            return Err(Error::InvalidArgument { name: "vocab", value: cfg.vocab as f64, expected: "at least 2" });
        }
        let layers = match cfg.kind {
            LmKind::Transformer { layers } if layers == 0 => return Err(Error::InvalidArgument { name: "layers", value: 0.0, expected: "at least 1" }),
            LmKind::Transformer { layers } => layers,
            LmKind::Deq { .. } => 1,
        };
        let d = cfg.block.d_model;
        let mut rng = crate::rng::Rng::new(seed);
        let mut gauss = |n: usize, sd: f64| rng.normals(n, sd);
        let emb = gauss(cfg.vocab * d, 0.1);
        let pos = gauss(cfg.block.seq_len * d, 0.1);
        let head = gauss(d * cfg.vocab, 1.0 / (d as f64).sqrt());
        let blocks = (0..layers).map(|l| TransformerBlock::on(dev.clone(), cfg.block, seed.wrapping_mul(31).wrapping_add(l as u64 + 1))).collect::<Result<Vec<_>>>()?;
        Ok(Self { cfg, emb, pos, blocks, head })
    }
    /// Configuration.
    pub fn config(&self) -> LmConfig {
        self.cfg
    }
    /// Change the fixed-point stopping rule of a (Rev)DEQ (e.g. to evaluate a trained model
    /// with more iterations than it was trained with).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an explicit transformer.
    pub fn set_fixed_point_options(&mut self, new: FixedPointOptions) -> Result<()> {
        match &mut self.cfg.kind {
            LmKind::Deq { opts, .. } => {
                *opts = new;
                Ok(())
            }
            LmKind::Transformer { .. } => Err(Error::Unsupported("fixed-point options of an explicit transformer".into())),
        }
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
        sgemm(Mat32::rows(&zf, n, d), Mat32::rows(&wf, d, v), &mut logits);
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
        sgemm(Mat32::rows(&logits, n, v), Mat32::rows(&wf, d, v).t(), &mut dz);
        let mut dw = vec![0f32; d * v];
        sgemm(Mat32::rows(&zf, n, d).t(), Mat32::rows(&logits, n, v), &mut dw);
        (loss, dz.into_iter().map(f64::from).collect(), dw.into_iter().map(f64::from).collect())
    }

    /// The hidden state $z$ (host), the forward costs, and what the backward pass needs.
    fn hidden(&self, x: &[f64], keep: bool) -> Result<(Vec<f64>, LmStats, Hidden<D>)> {
        match self.cfg.kind {
            LmKind::Transformer { .. } => {
                let xd = self.blocks[0].injection(x)?;
                let mut z = StateMap::zeros(&self.blocks[0], &xd)?;
                let mut inputs = Vec::new();
                for b in &self.blocks {
                    let next = StateMap::eval(b, &z, &xd)?;
                    if keep {
                        inputs.push(std::mem::replace(&mut z, next));
                    } else {
                        z = next;
                    }
                }
                let stats = LmStats { forward_nfe: self.blocks.len(), iterations: self.blocks.len(), stored_states: inputs.len() + 1, ..LmStats::default() };
                Ok((z.as_vec(), stats, Hidden::Layers { x: xd, inputs }))
            }
            LmKind::Deq { solver: FixedPointSolver::Reversible { beta }, opts, backward: DeqBackward::Reversible, .. } => {
                let block = &self.blocks[0];
                let xd = block.injection(x)?;
                let solve = reversible_solve(block, &xd, beta, &opts, |_, _, _| {})?;
                let residual = solve.residuals.last().copied().unwrap_or(f64::NAN);
                let stats = LmStats { forward_nfe: solve.nfe, iterations: solve.iterations, residual, ..LmStats::default() };
                Ok((solve.z.as_vec(), stats, Hidden::Reversible { x: xd, solve, beta }))
            }
            LmKind::Deq { solver, opts, backward, .. } => {
                let fp = fixed_point(&self.blocks[0], x, solver, &opts, keep && backward == DeqBackward::Unrolled)?;
                let stats = LmStats { forward_nfe: fp.nfe, iterations: fp.iterations, residual: fp.residual(), ..LmStats::default() };
                Ok((fp.z.clone(), stats, Hidden::Host { fp, method: backward }))
            }
        }
    }

    /// Mean next-token NLL of `tokens` (windows of S + 1) and the forward costs.
    ///
    /// # Errors
    /// Shape errors, token ids out of range, non-finite iterates.
    pub fn loss(&self, tokens: &[u32]) -> Result<(f64, LmStats)> {
        let (x, _, targets) = self.embed(tokens)?;
        let (z, stats, _) = self.hidden(&x, false)?;
        Ok((self.head_loss(&z, &targets, false).0, stats))
    }

    /// Mean next-token NLL and its gradient with respect to [`params`](Self::params).
    ///
    /// # Errors
    /// As [`loss`](Self::loss), plus backward failures (e.g. a non-converging implicit adjoint).
    pub fn loss_and_grad(&self, tokens: &[u32]) -> Result<(f64, Vec<f64>, LmStats)> {
        let (x, inputs, targets) = self.embed(tokens)?;
        let (z, mut stats, hidden) = self.hidden(&x, true)?;
        let (loss, dz, dhead) = self.head_loss(&z, &targets, true);
        let mut dx = vec![0.0; x.len()];
        let mut dblocks: Vec<Vec<f64>> = self.blocks.iter().map(|b| vec![0.0; b.params().len()]).collect();
        let add = |dst: &mut Vec<f64>, src: Vec<f64>| dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
        match hidden {
            Hidden::Layers { x: xd, inputs: layer_inputs } => {
                let mut zbar = self.blocks[0].state(&dz)?;
                for (l, zin) in layer_inputs.iter().enumerate().rev() {
                    let mut grads: BlockGrads<D> = self.blocks[l].zero_grads(&xd);
                    zbar = StateMap::vjp(&self.blocks[l], zin, &xd, &zbar, &mut grads)?;
                    stats.backward_vjps += 1;
                    let (gt, gx) = grads.into_host();
                    add(&mut dblocks[l], gt);
                    add(&mut dx, gx);
                }
            }
            Hidden::Reversible { x: xd, solve, beta } => {
                let block = &self.blocks[0];
                let mut grads = block.zero_grads(&xd);
                let cost = reversible_backward(block, &xd, &solve, beta, block.state(&dz)?, &mut grads)?;
                (dblocks[0], dx) = grads.into_host();
                stats.backward_nfe = cost.nfe;
                stats.backward_vjps = cost.vjps;
                stats.reconstruction_error = cost.reconstruction_error;
                stats.stored_states = 2;
            }
            Hidden::Host { fp, method } => {
                let g = backward(&self.blocks[0], &x, &fp, &dz, method)?;
                dx = g.d_x;
                dblocks[0] = g.d_theta;
                stats.backward_nfe = g.nfe;
                stats.backward_vjps = g.vjps;
                stats.reconstruction_error = g.reconstruction_error;
                stats.stored_states = g.stored_states;
                stats.adjoint_diverged = g.diverged;
                if let LmKind::Deq { jacobian_penalty: gamma, .. } = self.cfg.kind {
                    if gamma > 0.0 {
                        // A Gaussian probe, reproducible from the batch's tokens.
                        let seed = tokens.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3));
                        let probe = crate::rng::Rng::new(seed).normals(x.len(), 1.0);
                        let jp = jacobian_penalty(&self.blocks[0], &fp.z, &x, &probe)?;
                        add(&mut dblocks[0], jp.d_theta.iter().map(|v| gamma * v).collect());
                        add(&mut dx, jp.d_x.iter().map(|v| gamma * v).collect());
                        stats.backward_vjps += jp.vjps;
                        stats.jacobian_penalty = jp.value;
                    }
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

/// A strided f32 matrix: element $(i, j)$ at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct Mat32<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl<'a> Mat32<'a> {
    /// A row-major `rows × cols` matrix.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix data shorter than its shape");
        Self { data, rows, cols, rs: cols as isize, cs: 1 }
    }
    /// The transpose (no copy).
    fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }
}

/// `c = a b` for row-major `c` (m × n).
fn sgemm(a: Mat32, b: Mat32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && c.len() >= m * n, "sgemm shapes do not match");
    // SAFETY: `Mat32::rows` and the assertion above make every strided index lie inside a
    // (m·k), b (k·n) and c (m·n); c does not alias a or b (distinct borrows).
    unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a.data.as_ptr(), a.rs, a.cs, b.data.as_ptr(), b.rs, b.cs, 0.0, c.as_mut_ptr(), n as isize, 1) }
}
