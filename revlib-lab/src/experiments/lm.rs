//! The perplexity study (the language-model experiment of McCallum, Arora & Foster,
//! arXiv:2509.12917, scaled down): explicit transformers, an implicit-gradient
//! DEQ and a RevDEQ trained on the same tokens, compared by test perplexity, function
//! evaluations per forward pass, time and memory.
//!
//! Training saves a checkpoint (parameters, Adam moments, step, loss curve) every
//! `checkpoint_every` steps; [`train_lm`] resumes from it, so an interrupted study continues
//! where it stopped (and a larger token budget continues a finished one).

use super::wikitext::Corpus;
use crate::error::{Error, Result};
use revlib::deq::FixedPointOptions;
use revlib::nn::lm::{LanguageModel, LmConfig, LmKind, LmStats};
use revlib::nn::transformer::{BlockConfig, BlockKind};
use revlib::nn::{Adam, AdamConfig, AnyDevice, DeviceKind, NnDevice};
use crate::notebook::Mode;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;
use std::time::Instant;

/// Sizes of a study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Seed of the corpus order and of models without a seed of their own.
    pub seed: u64,
    /// Seeds of the seeded families (the 1-layer transformer and the RevDEQ).
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Model families in the study (empty: all of [`study_models`]).
    #[serde(default)]
    pub models: Vec<String>,
    /// Iteration caps at which trained (Rev)DEQs are evaluated again ("is it an equilibrium?").
    #[serde(default)]
    pub sweep_iterations: Vec<usize>,
    /// Test tokens of that sweep.
    #[serde(default)]
    pub sweep_tokens: usize,
}

impl StudyConfig {
    /// Quick: d = 32, S = 16, 8 windows, 8k training tokens, 4k test tokens, vocabulary 2000,
    /// one seed, the 1-layer transformer, the implicit DEQ and the two RevDEQs.
    /// Default: d = 64, S = 32, 16 windows, 50k tokens, 20k test tokens, vocabulary 4000, one
    /// seed, every family but the 4-layer transformer.
    /// Full (about two hours on 2 cores with `--jobs 2`): 1M training tokens, the whole test
    /// split, every family, seeds 0, 1, 2 for the 1-layer transformer and the RevDEQ.
    pub fn for_mode(mode: Mode) -> Self {
        let base = Self {
            max_vocab: 4000,
            d_model: 64,
            heads: 4,
            seq_len: 32,
            batch: 16,
            train_tokens: 50_000,
            eval_tokens: 20_000,
            block: BlockKind::PostLn,
            lr: 1e-3,
            checkpoint_every: 100,
            seed: 0,
            seeds: vec![0],
            models: ["transformer_1", "transformer_9", "deq_implicit", "deq_phantom", "revdeq", "revdeq_unrolled"].map(String::from).to_vec(),
            sweep_iterations: vec![4, 8, 16, 32],
            sweep_tokens: 4_000,
        };
        match mode {
            Mode::Quick => Self {
                max_vocab: 2000,
                d_model: 32,
                seq_len: 16,
                batch: 8,
                train_tokens: 8_000,
                eval_tokens: 4_000,
                models: ["transformer_1", "deq_implicit", "revdeq", "revdeq_unrolled"].map(String::from).to_vec(),
                sweep_iterations: vec![4, 16],
                sweep_tokens: 1_000,
                ..base
            },
            Mode::Default => base,
            Mode::Full => Self { train_tokens: 1_000_000, eval_tokens: 0, seeds: vec![0, 1, 2], models: Vec::new(), sweep_tokens: 20_000, ..base },
        }
    }
    /// The fields that decide how a model trains (not how long, which models, or how it is
    /// evaluated): equal set-ups let a checkpoint resume.
    fn training_setup(&self) -> Self {
        Self { train_tokens: 0, eval_tokens: 0, seeds: Vec::new(), models: Vec::new(), sweep_iterations: Vec::new(), sweep_tokens: 0, ..self.clone() }
    }
    /// Check the sizes before any data is loaded or model built.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first size that is zero or inconsistent.
    pub fn validate(&self) -> Result<()> {
        let positive = [("d_model", self.d_model), ("heads", self.heads), ("seq_len", self.seq_len), ("batch", self.batch), ("checkpoint_every", self.checkpoint_every), ("max_vocab", self.max_vocab), ("train_tokens", self.train_tokens)];
        if let Some((name, v)) = positive.into_iter().find(|(_, v)| *v == 0) {
            return Err(Error::InvalidArgument { name, value: v as f64, expected: "at least 1" });
        }
        if self.d_model % self.heads != 0 {
            return Err(Error::InvalidArgument { name: "heads", value: self.heads as f64, expected: "a divisor of d_model" });
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::InvalidArgument { name: "lr", value: self.lr, expected: "finite and > 0" });
        }
        if let Some(&k) = self.sweep_iterations.iter().find(|&&k| k == 0) {
            return Err(Error::InvalidArgument { name: "sweep_iterations", value: k as f64, expected: "each at least 1" });
        }
        Ok(())
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
    /// Name, unique within a study: the model's [`family`](ModelSpec::family), then `_s<seed>`
    /// (e.g. `revdeq_s1`).
    pub name: String,
    /// The model without its seed (`transformer_1`, `revdeq`, …): runs of one family are
    /// summarised over seeds.
    #[serde(default)]
    pub family: String,
    /// Model width.
    pub d_model: usize,
    /// Transformer / DEQ / RevDEQ.
    pub kind: LmKind,
    /// Initialisation and data-order seed.
    #[serde(default)]
    pub seed: u64,
}

/// RevDEQ relaxation β and iteration cap (the authors' language-model setting).
pub const REVDEQ_BETA: f64 = 0.5;
/// RevDEQ iteration cap.
pub const REVDEQ_MAX_ITERATIONS: usize = 4;
/// DEQ iteration cap (forward, and the implicit adjoint).
pub const DEQ_MAX_ITERATIONS: usize = 30;
/// Weight γ of the DEQ's Jacobian penalty.
pub const DEQ_JACOBIAN_PENALTY: f64 = 1.0;
/// Phantom-gradient steps and relaxation (the revdeq library's defaults).
pub const PHANTOM_STEPS: usize = 10;
/// Phantom-gradient relaxation.
pub const PHANTOM_BETA: f64 = 0.5;

/// The study's models, each family with its seeds ([`StudyConfig::seeds`] for the 1-layer
/// transformer and the RevDEQ, the first seed for the others):
/// - `transformer_1`: one block, the same parameters as every DEQ;
/// - `transformer_4`: four blocks narrowed to the same total parameter count (as close as a
///   multiple of the head count allows);
/// - `transformer_9`: nine blocks of the same width — compute-matched with the RevDEQ, which
///   evaluates its block 1 + 2 × 4 = 9 times per forward pass (at 4× … 9× the parameters);
/// - `deq_implicit`: Anderson forward (≤ 30 iterations, tol 1e-3), the implicit adjoint solved
///   by Anderson too, and the Jacobian penalty (γ = 1) — a DEQ as its authors train one;
/// - `deq_phantom`: Anderson forward, the phantom gradient (10 relaxed steps, β = 0.5);
/// - `revdeq`: the reversible iteration (β = 0.5, ≤ 4 iterations, tol 1e-3) with its exact
///   reversible backward (2 states held);
/// - `revdeq_unrolled`: the same iteration differentiated by storing every iterate — the same
///   gradient as `revdeq`, isolating what reversibility buys (memory, not accuracy).
pub fn study_models(cfg: &StudyConfig, vocab: usize) -> Vec<ModelSpec> {
    let target = LmConfig { vocab, block: cfg.block_config(cfg.d_model), kind: LmKind::Transformer { layers: 1 } }.n_params();
    let d4 = (1..=cfg.d_model / cfg.heads.max(1))
        .map(|k| k * cfg.heads)
        .min_by_key(|&d| (LmConfig { vocab, block: cfg.block_config(d), kind: LmKind::Transformer { layers: 4 } }.n_params() as i64 - target as i64).abs())
        .unwrap_or(cfg.d_model);
    let d = cfg.d_model;
    let families: Vec<(&str, usize, LmKind, bool)> = vec![
        ("transformer_1", d, LmKind::Transformer { layers: 1 }, true),
        ("transformer_4", d4, LmKind::Transformer { layers: 4 }, false),
        ("transformer_9", d, LmKind::Transformer { layers: 1 + 2 * REVDEQ_MAX_ITERATIONS }, false),
        ("deq_implicit", d, LmKind::implicit_deq(DEQ_MAX_ITERATIONS, DEQ_JACOBIAN_PENALTY), false),
        ("deq_phantom", d, LmKind::phantom_deq(DEQ_MAX_ITERATIONS, PHANTOM_STEPS, PHANTOM_BETA), false),
        ("revdeq", d, LmKind::rev_deq(REVDEQ_BETA, REVDEQ_MAX_ITERATIONS), true),
        ("revdeq_unrolled", d, LmKind::rev_deq_unrolled(REVDEQ_BETA, REVDEQ_MAX_ITERATIONS), false),
    ];
    let mut out = Vec::new();
    for (family, d_model, kind, seeded) in families {
        if !cfg.models.is_empty() && !cfg.models.iter().any(|m| m == family) {
            continue;
        }
        let seeds = if seeded { cfg.seeds.clone() } else { cfg.seeds.iter().take(1).copied().collect() };
        for seed in seeds {
            out.push(ModelSpec { name: format!("{family}_s{seed}"), family: family.into(), d_model, kind, seed });
        }
    }
    out
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
    /// The device the model ran on (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: String,
    /// The trained model evaluated with other iteration caps ((Rev)DEQs only).
    #[serde(default)]
    pub iteration_sweep: Vec<SweepPoint>,
    /// The Jacobian penalty's value at the last training step (0 when not used).
    #[serde(default)]
    pub jacobian_penalty: f64,
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

/// Train (or resume) one model on `device` and evaluate its test perplexity.
/// `progress(step, steps, loss)` is called after every step.
///
/// # Errors
/// Model errors, a device that cannot be opened, a corpus too small for one batch,
/// checkpoint I/O.
pub fn train_lm(corpus: &Corpus, cfg: &StudyConfig, spec: &ModelSpec, checkpoint: Option<&Path>, device: DeviceKind, progress: impl FnMut(usize, usize, f64)) -> Result<LmResult> {
    cfg.validate()?;
    let mut result = match AnyDevice::open(device, cfg.seed)? {
        AnyDevice::Cpu(dev) => train_on(dev, corpus, cfg, spec, checkpoint, progress)?,
        #[cfg(feature = "cuda")]
        AnyDevice::Cuda(dev, _) => train_on(dev, corpus, cfg, spec, checkpoint, progress)?,
    };
    result.device = device.name();
    Ok(result)
}

/// Train `specs` on the CPU from scratch, up to `jobs` models at once, each on a thread of its
/// own (one model trains on one core, so two jobs on two cores take half the time), and return
/// the results in the order of `specs`. Every model trains exactly as [`train_lm`] would alone:
/// its own device, seed and data order, so the numbers do not depend on `jobs`.
///
/// `train_sec` is each model's own wall time. The models share one process, so with `jobs > 1`
/// no process peak belongs to one model and `peak_rss_bytes` is `None` (`revlib lm-study` runs
/// each model in a process of its own and reports it).
///
/// # Errors
/// `jobs == 0`; otherwise the first failing model's error (by its place in `specs`), after
/// the models already running have finished; no further model starts once one has failed.
pub fn train_lms(corpus: &Corpus, cfg: &StudyConfig, specs: &[ModelSpec], jobs: usize) -> Result<Vec<LmResult>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if jobs == 0 {
        return Err(Error::InvalidArgument { name: "jobs", value: 0.0, expected: "at least 1" });
    }
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let worker = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(spec) = specs.get(i) else { break };
            let result = train_lm(corpus, cfg, spec, None, DeviceKind::Cpu, |_, _, _| {});
            failed.fetch_or(result.is_err(), Ordering::Relaxed);
            done.push((i, result));
        }
        done
    };
    let mut done: Vec<(usize, Result<LmResult>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(specs.len())).map(|_| scope.spawn(worker)).collect();
        // A panic in a model is a bug, not a failed run: pass it on as it is.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter()
        .map(|(_, r)| r.map(|r| LmResult { peak_rss_bytes: r.peak_rss_bytes.filter(|_| jobs == 1), ..r }))
        .collect()
}

fn train_on<D: NnDevice>(dev: D, corpus: &Corpus, cfg: &StudyConfig, spec: &ModelSpec, checkpoint: Option<&Path>, mut progress: impl FnMut(usize, usize, f64)) -> Result<LmResult> {
    let vocab = corpus.vocab.len();
    let lm_cfg = LmConfig { vocab, block: cfg.block_config(spec.d_model), kind: spec.kind };
    let mut model = LanguageModel::on(dev, lm_cfg, spec.seed)?;
    let mut theta = model.params();
    let mut opt = Adam::new(theta.len(), AdamConfig { lr: cfg.lr, ..Default::default() })?;
    let train_w = windows(&corpus.train, cfg.seq_len);
    if train_w.len() < cfg.batch {
        return Err(Error::InvalidArgument { name: "train tokens", value: corpus.train.len() as f64, expected: "enough for one batch of windows" });
    }
    let steps = cfg.steps();
    let log_every = (steps / 200).max(1);
    let (mut step, mut losses, mut train_sec) = (0, Vec::new(), 0.0);
    if let Some(path) = checkpoint.filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let ck: Checkpoint = serde_json::from_str(&text).map_err(Error::json(path))?;
        // A checkpoint of the same model and training set-up resumes; the token budget may differ
        // (so a finished study can be extended), and so may what the study evaluates.
        if ck.spec == *spec && ck.config.training_setup() == cfg.training_setup() {
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
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(spec.seed.wrapping_add(epoch as u64)));
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
                let ck = Checkpoint { spec: spec.clone(), config: cfg.clone(), step, params: theta.clone(), adam_t: t, adam_m: m, adam_v: v, losses: losses.clone(), train_sec };
                // Synced and renamed into place (a crash leaves the previous checkpoint), and
                // bit-exact: serde_json's `float_roundtrip` parses every f64 back to itself.
                let text = serde_json::to_string(&ck).map_err(Error::json(path))?;
                crate::results::write_atomic(path, text.as_bytes())?;
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
    let test = evaluate(&model, &corpus.test, cfg.eval_tokens, cfg)?;
    let eval_sec = t.elapsed().as_secs_f64();
    // Is it an equilibrium? The trained (Rev)DEQ evaluated with other iteration caps.
    let mut iteration_sweep = Vec::new();
    if let LmKind::Deq { opts, .. } = spec.kind {
        for &k in &cfg.sweep_iterations {
            model.set_fixed_point_options(FixedPointOptions { max_steps: k, ..opts })?;
            let e = evaluate(&model, &corpus.test, cfg.sweep_tokens, cfg)?;
            iteration_sweep.push(SweepPoint { max_iterations: k, test_ppl: e.ppl, residual: e.residual, forward_nfe: e.nfe, test_tokens: e.tokens });
        }
        model.set_fixed_point_options(opts)?;
    }
    Ok(LmResult {
        name: spec.name.clone(),
        spec: spec.clone(),
        config: cfg.clone(),
        params: lm_cfg.n_params(),
        train_tokens: steps * cfg.batch * cfg.seq_len,
        steps,
        test_ppl: test.ppl,
        test_tokens: test.tokens,
        forward_nfe: test.nfe,
        test_residual: test.residual,
        backward_evals: last_stats.backward_nfe + last_stats.backward_vjps,
        stored_states: last_stats.stored_states,
        adjoint_divergences: divergences,
        losses,
        log_every,
        train_sec,
        eval_sec,
        peak_rss_bytes: crate::provenance::peak_rss_bytes(),
        corpus: corpus.source.clone(),
        vocab,
        test_unk_fraction: corpus.test_unk_fraction,
        device: String::new(),
        iteration_sweep,
        jacobian_penalty: last_stats.jacobian_penalty,
    })
}

/// Test perplexity, mean block evaluations and mean final residual over test batches.
struct Evaluation {
    ppl: f64,
    tokens: usize,
    nfe: f64,
    residual: f64,
}

/// Evaluate `model` on the first `max_tokens` tokens of `test` (0: all of it).
fn evaluate<D: NnDevice>(model: &LanguageModel<D>, test: &[u32], max_tokens: usize, cfg: &StudyConfig) -> Result<Evaluation> {
    let mut test = test;
    if max_tokens > 0 && test.len() > max_tokens + 1 {
        test = &test[..max_tokens + 1];
    }
    let (mut nll, mut count, mut nfe, mut res, mut batches) = (0.0, 0usize, 0.0, 0.0, 0usize);
    for chunk in windows(test, cfg.seq_len).chunks(cfg.batch) {
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
    Ok(Evaluation { ppl: (nll / count as f64).exp(), tokens: count, nfe: nfe / batches as f64, residual: res / batches as f64 })
}

/// A trained (Rev)DEQ evaluated with another iteration cap.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    /// Iteration cap.
    pub max_iterations: usize,
    /// Test perplexity.
    pub test_ppl: f64,
    /// Mean final relative residual ‖z − f(z)‖/‖f(z)‖.
    pub residual: f64,
    /// Mean block evaluations per forward pass.
    pub forward_nfe: f64,
    /// Test tokens evaluated.
    pub test_tokens: usize,
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
/// [`Error::Json`] if the embedded file does not parse (a build defect).
pub fn published_lm() -> Result<(String, Vec<PublishedLm>)> {
    super::parse_published(include_str!("../../../data/published/revdeq-2025.json"), "data/published/revdeq-2025.json")
}
