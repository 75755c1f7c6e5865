//! The perplexity study (methods.md §5.6, scaled down): explicit transformers, an implicit-gradient
//! DEQ and a RevDEQ trained on the same tokens, compared by test perplexity, function
//! evaluations per forward pass, time and memory.
//!
//! Training saves a checkpoint (parameters, Adam moments, step, loss curve) every
//! `checkpoint_every` steps; [`train_lm`] resumes from it, so an interrupted study continues
//! where it stopped (and a larger token budget continues a finished one).

use super::wikitext::Corpus;
use crate::error::{Error, Result};
use crate::nn::lm::{LanguageModel, LmConfig, LmKind, LmStats};
use crate::nn::transformer::{BlockConfig, BlockKind};
use crate::nn::{Adam, AdamConfig};
use crate::notebook::Mode;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;
use std::time::Instant;

/// Sizes of a study.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudyConfig {
    /// Vocabulary cap (most frequent training words; the rest is `<unk>`).
    pub max_vocab: usize,
    /// Width d of the single-block models.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Context length S.
    pub seq_len: usize,
    /// Windows per step.
    pub batch: usize,
    /// Training tokens per model (equal for all models).
    pub train_tokens: usize,
    /// Test tokens evaluated (0: the whole test split).
    pub eval_tokens: usize,
    /// Block variant.
    pub block: BlockKind,
    /// Adam learning rate.
    pub lr: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Seed.
    pub seed: u64,
}

impl StudyConfig {
    /// Quick: d = 32, S = 16, 8 windows, 8k training tokens, 4k test tokens, vocabulary 2000.
    /// Default: d = 64, S = 32, 16 windows, 100k tokens, 20k test tokens, vocabulary 4000.
    /// Full (about an hour on 2 cores): as default with 1M training tokens and the whole test split.
    pub fn for_mode(mode: Mode) -> Self {
        let base = Self { max_vocab: 4000, d_model: 64, heads: 4, seq_len: 32, batch: 16, train_tokens: 100_000, eval_tokens: 20_000, block: BlockKind::Talk, lr: 1e-3, checkpoint_every: 100, seed: 0 };
        match mode {
            Mode::Quick => Self { max_vocab: 2000, d_model: 32, seq_len: 16, batch: 8, train_tokens: 8_000, eval_tokens: 4_000, ..base },
            Mode::Default => base,
            Mode::Full => Self { train_tokens: 1_000_000, eval_tokens: 0, ..base },
        }
    }
    /// Optimiser steps per model.
    pub fn steps(&self) -> usize {
        (self.train_tokens / (self.batch * self.seq_len)).max(1)
    }
    fn block_config(&self, d_model: usize) -> BlockConfig {
        BlockConfig { d_model, heads: self.heads, mlp_ratio: 4, seq_len: self.seq_len, kind: self.block }
    }
}

/// One model of the study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// Name (`transformer_1`, `transformer_4`, `deq_implicit`, `revdeq`).
    pub name: String,
    /// Model width.
    pub d_model: usize,
    /// Transformer / DEQ / RevDEQ.
    pub kind: LmKind,
}

/// The study's models: a 1-layer transformer (the same parameters as the DEQs), a 4-layer
/// transformer narrowed to the same total parameter count (as close as a multiple of the head
/// count allows), a DEQ (Anderson forward and implicit backward, up to 30 iterations each,
/// tol 1e-3) and a RevDEQ (β = 0.5, at most 4 iterations, tol 1e-3).
pub fn study_models(cfg: &StudyConfig, vocab: usize) -> Vec<ModelSpec> {
    let target = LmConfig { vocab, block: cfg.block_config(cfg.d_model), kind: LmKind::Transformer { layers: 1 } }.n_params();
    let layers = 4;
    let d4 = (1..=cfg.d_model / cfg.heads)
        .map(|k| k * cfg.heads)
        .min_by_key(|&d| (LmConfig { vocab, block: cfg.block_config(d), kind: LmKind::Transformer { layers } }.n_params() as i64 - target as i64).abs())
        .unwrap_or(cfg.d_model);
    vec![
        ModelSpec { name: "transformer_1".into(), d_model: cfg.d_model, kind: LmKind::Transformer { layers: 1 } },
        ModelSpec { name: format!("transformer_{layers}"), d_model: d4, kind: LmKind::Transformer { layers } },
        ModelSpec { name: "deq_implicit".into(), d_model: cfg.d_model, kind: LmKind::implicit_deq(30) },
        ModelSpec { name: "revdeq".into(), d_model: cfg.d_model, kind: LmKind::rev_deq(0.5, 4) },
    ]
}

/// The outcome of training one model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LmResult {
    /// Model name.
    pub name: String,
    /// Its specification.
    pub spec: ModelSpec,
    /// Study sizes.
    pub config: StudyConfig,
    /// Parameters.
    pub params: usize,
    /// Training tokens seen.
    pub train_tokens: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Test perplexity, exp(mean NLL).
    pub test_ppl: f64,
    /// Test tokens evaluated.
    pub test_tokens: usize,
    /// Block evaluations per forward pass (mean over test batches).
    pub forward_nfe: f64,
    /// Mean final relative residual of the fixed point on the test batches.
    pub test_residual: f64,
    /// Block evaluations + VJPs per training step in the backward pass (last step).
    pub backward_evals: usize,
    /// Hidden states held for the backward pass (each batch × S × d).
    pub stored_states: usize,
    /// Training steps whose implicit adjoint iteration diverged and was cut short (the
    /// implicit DEQ only; counted since the last resume).
    #[serde(default)]
    pub adjoint_divergences: usize,
    /// Training loss every `log_every` steps.
    pub losses: Vec<f64>,
    /// Steps between entries of `losses`.
    pub log_every: usize,
    /// Training wall time (seconds; accumulated across resumes).
    pub train_sec: f64,
    /// Test evaluation wall time (seconds).
    pub eval_sec: f64,
    /// Peak RSS of the process (bytes).
    pub peak_rss_bytes: Option<u64>,
    /// Where the text came from.
    pub corpus: String,
    /// Vocabulary size.
    pub vocab: usize,
    /// Fraction of test tokens that are `<unk>`.
    pub test_unk_fraction: f64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    spec: ModelSpec,
    config: StudyConfig,
    step: usize,
    params: Vec<f64>,
    adam_t: i32,
    adam_m: Vec<f64>,
    adam_v: Vec<f64>,
    losses: Vec<f64>,
    train_sec: f64,
}

/// Windows of S + 1 tokens starting every S tokens.
fn windows(tokens: &[u32], s: usize) -> Vec<&[u32]> {
    (0..tokens.len().saturating_sub(1) / s).map(|i| &tokens[i * s..i * s + s + 1]).collect()
}

/// Train (or resume) one model and evaluate its test perplexity. `progress(step, steps, loss)`
/// is called after every step.
///
/// # Errors
/// Model errors, a corpus too small for one batch, checkpoint I/O.
pub fn train_lm(corpus: &Corpus, cfg: &StudyConfig, spec: &ModelSpec, checkpoint: Option<&Path>, mut progress: impl FnMut(usize, usize, f64)) -> Result<LmResult> {
    let vocab = corpus.vocab.len();
    let lm_cfg = LmConfig { vocab, block: cfg.block_config(spec.d_model), kind: spec.kind };
    let mut model = LanguageModel::new(lm_cfg, cfg.seed)?;
    let mut theta = model.params();
    let mut opt = Adam::new(theta.len(), AdamConfig { lr: cfg.lr, ..Default::default() })?;
    let train_w = windows(&corpus.train, cfg.seq_len);
    if train_w.len() < cfg.batch {
        return Err(Error::InvalidArgument { name: "train tokens", value: corpus.train.len() as f64, expected: "enough for one batch of windows" });
    }
    let steps = cfg.steps();
    let log_every = (steps / 200).max(1);
    let (mut step, mut losses, mut train_sec) = (0, Vec::new(), 0.0);
    let io = |p: &Path, e: String| Error::Io { path: p.display().to_string(), reason: e };
    if let Some(path) = checkpoint.filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e.to_string()))?;
        let ck: Checkpoint = serde_json::from_str(&text).map_err(|e| io(path, e.to_string()))?;
        // A checkpoint of the same model and sizes resumes; only the token budget may differ
        // (so a finished study can be extended).
        if ck.spec == *spec && (StudyConfig { train_tokens: cfg.train_tokens, ..ck.config }) == *cfg {
            model.set_params(&ck.params)?;
            theta = ck.params;
            opt.set_state(ck.adam_t, &ck.adam_m, &ck.adam_v)?;
            (step, losses, train_sec) = (ck.step, ck.losses, ck.train_sec);
        }
    }
    let per_epoch = train_w.len() / cfg.batch;
    let mut epoch_seen = None;
    let mut last_stats: Option<LmStats> = None;
    let mut order: Vec<usize> = Vec::new();
    let mut batch = Vec::with_capacity(cfg.batch * (cfg.seq_len + 1));
    let mut clock = Instant::now();
    let mut divergences = 0;
    while step < steps {
        let epoch = step / per_epoch;
        if epoch_seen != Some(epoch) {
            order = (0..train_w.len()).collect();
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64)));
            epoch_seen = Some(epoch);
        }
        let k = step % per_epoch;
        batch.clear();
        for &w in &order[k * cfg.batch..(k + 1) * cfg.batch] {
            batch.extend_from_slice(train_w[w]);
        }
        let (loss, mut grad, stats) = model.loss_and_grad(&batch)?;
        // Clip the global gradient norm at 1 (the implicit DEQ's truncated adjoint can be large).
        let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        if norm > 1.0 {
            grad.iter_mut().for_each(|g| *g /= norm);
        }
        opt.step(&mut theta, &grad)?;
        model.set_params(&theta)?;
        if step % log_every == 0 {
            losses.push(loss);
        }
        divergences += usize::from(stats.adjoint_diverged);
        last_stats = Some(stats);
        step += 1;
        progress(step, steps, loss);
        if let Some(path) = checkpoint {
            if step % cfg.checkpoint_every == 0 || step == steps {
                train_sec += clock.elapsed().as_secs_f64();
                clock = Instant::now();
                let (t, m, v) = opt.state();
                let ck = Checkpoint { spec: spec.clone(), config: *cfg, step, params: theta.clone(), adam_t: t, adam_m: m, adam_v: v, losses: losses.clone(), train_sec };
                let tmp = path.with_extension("tmp");
                let text = serde_json::to_string(&ck).map_err(|e| io(path, e.to_string()))?;
                std::fs::write(&tmp, text).map_err(|e| io(&tmp, e.to_string()))?;
                std::fs::rename(&tmp, path).map_err(|e| io(path, e.to_string()))?;
            }
        }
    }
    if checkpoint.is_none() {
        train_sec += clock.elapsed().as_secs_f64();
    }
    // Backward costs from the last step (one extra gradient only when a finished run was resumed).
    let last_stats = match last_stats {
        Some(st) => st,
        None => model.loss_and_grad(train_w[0])?.2,
    };
    let t = Instant::now();
    let mut test = &corpus.test[..];
    if cfg.eval_tokens > 0 && test.len() > cfg.eval_tokens + 1 {
        test = &test[..cfg.eval_tokens + 1];
    }
    let test_w = windows(test, cfg.seq_len);
    let (mut nll, mut count, mut nfe, mut res, mut batches) = (0.0, 0usize, 0.0, 0.0, 0usize);
    for chunk in test_w.chunks(cfg.batch) {
        let toks: Vec<u32> = chunk.iter().flat_map(|w| w.iter().copied()).collect();
        let (l, st) = model.loss(&toks)?;
        nll += l * (chunk.len() * cfg.seq_len) as f64;
        count += chunk.len() * cfg.seq_len;
        nfe += st.forward_nfe as f64;
        res += st.residual;
        batches += 1;
    }
    if count == 0 {
        return Err(Error::InvalidArgument { name: "test tokens", value: test.len() as f64, expected: "at least one window" });
    }
    Ok(LmResult {
        name: spec.name.clone(),
        spec: spec.clone(),
        config: *cfg,
        params: lm_cfg.n_params(),
        train_tokens: steps * cfg.batch * cfg.seq_len,
        steps,
        test_ppl: (nll / count as f64).exp(),
        test_tokens: count,
        forward_nfe: nfe / batches as f64,
        test_residual: res / batches as f64,
        backward_evals: last_stats.backward_nfe + last_stats.backward_vjps,
        stored_states: last_stats.stored_states,
        adjoint_divergences: divergences,
        losses,
        log_every,
        train_sec,
        eval_sec: t.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::bench::peak_rss_bytes(),
        corpus: corpus.source.clone(),
        vocab,
        test_unk_fraction: corpus.test_unk_fraction,
    })
}

/// A row of the talk's WikiText-103 table (`data/published/revdeq-2025.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishedLm {
    /// Model name.
    pub model: String,
    /// Parameters in millions.
    pub params_millions: f64,
    /// Function evaluations per forward pass (DEQs only).
    pub function_evaluations: Option<f64>,
    /// Test perplexity.
    pub test_ppl: f64,
    /// Where the row comes from.
    pub reference: String,
}

/// The talk's perplexity table with its source.
///
/// # Errors
/// [`Error::Io`] if the embedded file does not parse (a build defect).
pub fn published_lm() -> Result<(String, Vec<PublishedLm>)> {
    super::parse_published(include_str!("../../../data/published/revdeq-2025.json"), "data/published/revdeq-2025.json")
}
