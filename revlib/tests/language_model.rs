//! The transformer block (dfdx), the language models around it, and the WikiText loader.
//!
//! The WikiText test fails when `REVLIB_REQUIRE_DATA=1` (set by `.ci/run`) and the files are
//! missing; otherwise it reports the skip.

use revlib::deq::{backward, fixed_point, DeqBackward, FixedPointMap, FixedPointOptions, FixedPointSolver};
use revlib::experiments::data::{data_dir, data_required};
use revlib::experiments::lm::{study_models, train_lm, StudyConfig};
use revlib::experiments::wikitext::{build_corpus, generated_corpus, load_wikitext};
use revlib::nn::lm::{LanguageModel, LmConfig, LmKind};
use revlib::nn::transformer::{BlockConfig, BlockKind, TransformerBlock};
use revlib::notebook::Mode;
use revlib::rel_err;

fn block(kind: BlockKind) -> TransformerBlock {
    TransformerBlock::new(BlockConfig { d_model: 8, heads: 2, mlp_ratio: 2, seq_len: 5, kind }, 3).unwrap()
}

fn wave(n: usize, f: f64) -> Vec<f64> {
    (0..n).map(|i| (i as f64 * f).sin()).collect()
}

#[test]
fn block_vjp_matches_finite_differences() {
    for kind in [BlockKind::Talk, BlockKind::PreLnResidual] {
        let mut b = block(kind);
        let n = 2 * 5 * 8;
        let (z, x, a) = (wave(n, 0.7), wave(n, 1.3), wave(n, 0.29));
        let mut a_z = vec![0.0; n];
        let mut a_x = vec![0.0; n];
        let mut a_t = vec![0.0; b.n_params()];
        b.vjp(&z, &x, &a, &mut a_z, &mut a_t, &mut a_x).unwrap();
        let dot = |b: &TransformerBlock, z: &[f64], x: &[f64]| {
            let mut out = vec![0.0; n];
            b.eval(z, x, &mut out).unwrap();
            out.iter().zip(&a).map(|(o, c)| o * c).sum::<f64>()
        };
        let h = 1e-2; // the block computes in f32
        for k in [0, 17, 45, 79] {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[k] += h;
            zm[k] -= h;
            let fd = (dot(&b, &zp, &x) - dot(&b, &zm, &x)) / (2.0 * h);
            assert!((fd - a_z[k]).abs() < 2e-2 * (1.0 + fd.abs()), "{kind:?} z[{k}]: fd {fd} vs {}", a_z[k]);
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += h;
            xm[k] -= h;
            let fd = (dot(&b, &z, &xp) - dot(&b, &z, &xm)) / (2.0 * h);
            assert!((fd - a_x[k]).abs() < 2e-2 * (1.0 + fd.abs()), "{kind:?} x[{k}]: fd {fd} vs {}", a_x[k]);
        }
        let theta = b.params().to_vec();
        for k in [0, 70, 200, 300, b.n_params() - 1] {
            let mut tp = theta.clone();
            tp[k] += h;
            b.set_params(&tp).unwrap();
            let up = dot(&b, &z, &x);
            tp[k] -= 2.0 * h;
            b.set_params(&tp).unwrap();
            let fd = (up - dot(&b, &z, &x)) / (2.0 * h);
            b.set_params(&theta).unwrap();
            assert!((fd - a_t[k]).abs() < 2e-2 * (1.0 + fd.abs()), "{kind:?} θ[{k}]: fd {fd} vs {}", a_t[k]);
        }
    }
}

#[test]
fn attention_is_causal() {
    let b = block(BlockKind::Talk);
    let n = 5 * 8;
    let (z, x) = (wave(n, 0.4), wave(n, 0.9));
    let mut base = vec![0.0; n];
    b.eval(&z, &x, &mut base).unwrap();
    let mut x2 = x.clone();
    for v in &mut x2[4 * 8..] {
        *v += 1.0; // change the last position only
    }
    let mut out = vec![0.0; n];
    b.eval(&z, &x2, &mut out).unwrap();
    assert_eq!(base[..4 * 8], out[..4 * 8], "earlier positions must not see the last one");
    assert_ne!(base[4 * 8..], out[4 * 8..]);
}

#[test]
fn reversible_backward_through_the_block_equals_unrolled() {
    let b = block(BlockKind::Talk);
    let n = 3 * 5 * 8;
    let (x, c) = (wave(n, 0.5), wave(n, 0.11));
    for beta in [0.5, 0.8] {
        let fp = fixed_point(&b, &x, FixedPointSolver::Reversible { beta }, &FixedPointOptions { tol: 0.0, max_steps: 4, strict: false }, true).unwrap();
        let rev = backward(&b, &x, &fp, &c, DeqBackward::Reversible).unwrap();
        let unr = backward(&b, &x, &fp, &c, DeqBackward::Unrolled).unwrap();
        // f runs in f32: a reconstructed input that rounds to a different f32 changes f by ~1e-7,
        // and each reverse step amplifies that by 1/|1 − β| (4 steps: 16× at β = 0.5, 625× at 0.8).
        let bound = 1e-6 * (1.0 - beta).abs().powi(-4);
        let (et, ex) = (rel_err(&rev.d_theta, &unr.d_theta), rel_err(&rev.d_x, &unr.d_x));
        assert!(et < bound && ex < bound, "β = {beta}: θ {et:e}, x {ex:e} (bound {bound:e})");
    }
}

#[test]
fn language_model_gradients_match_finite_differences() {
    let block = BlockConfig { d_model: 8, heads: 2, mlp_ratio: 2, seq_len: 4, kind: BlockKind::Talk };
    let tokens: Vec<u32> = vec![1, 5, 2, 9, 3, 4, 0, 7, 7, 1];
    for kind in [LmKind::Transformer { layers: 2 }, LmKind::rev_deq(0.5, 3)] {
        let mut m = LanguageModel::new(LmConfig { vocab: 10, block, kind }, 1).unwrap();
        let (loss, g, stats) = m.loss_and_grad(&tokens).unwrap();
        assert!((loss - 10f64.ln()).abs() < 1.0, "initial loss {loss} should be near ln V");
        let theta = m.params();
        assert_eq!(theta.len(), m.config().n_params());
        let h = 1e-3;
        // embedding of token 1, a position, a block weight, the head
        for k in [8, 80 + 3, 80 + 32 + 10, theta.len() - 3] {
            let mut t = theta.clone();
            t[k] += h;
            m.set_params(&t).unwrap();
            let up = m.loss(&tokens).unwrap().0;
            t[k] -= 2.0 * h;
            m.set_params(&t).unwrap();
            let fd = (up - m.loss(&tokens).unwrap().0) / (2.0 * h);
            m.set_params(&theta).unwrap();
            assert!((fd - g[k]).abs() < 2e-2 * (fd.abs() + 1e-2), "{kind:?} θ[{k}]: fd {fd} vs {}", g[k]);
        }
        if let LmKind::Deq { .. } = kind {
            assert_eq!(stats.forward_nfe, 1 + 2 * stats.iterations);
            assert_eq!(stats.stored_states, 2);
        }
    }
}

#[test]
fn corpus_vocabulary_is_capped_by_frequency() {
    let w = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let c = build_corpus(&w("a b a c a b <eos>"), &w("a z <eos>"), &w("b q"), 4, "t".into()).unwrap();
    assert_eq!(c.vocab, ["<unk>", "<eos>", "a", "b"]);
    assert_eq!(c.train, [2, 3, 2, 0, 2, 3, 1]);
    assert_eq!(c.valid, [2, 0, 1]);
    assert_eq!(c.test_unk_fraction, 0.5);
    let g = generated_corpus(5000, 0).unwrap();
    assert!(g.train.len() >= 5000 && g.vocab.len() < 64 && g.source.contains("generated"));
}

#[test]
fn wikitext2_loads_with_the_standard_token_counts() {
    let dir = data_dir().join("wikitext-2");
    if !dir.join("train.txt").exists() && !dir.join("wiki.train.tokens").exists() {
        assert!(!data_required(), "REVLIB_REQUIRE_DATA=1 but {} has no WikiText-2", dir.display());
        eprintln!("skipped: {} not found", dir.display());
        return;
    }
    let c = load_wikitext(&dir, 4000).unwrap();
    // The standard word-level counts (one <eos> per line): 2,088,628 / 217,646 / 245,569.
    assert_eq!((c.train.len(), c.valid.len(), c.test.len()), (2_088_628, 217_646, 245_569));
    assert_eq!(c.vocab.len(), 4000);
    assert_eq!(c.vocab[2], "the");
    assert!(c.test_unk_fraction > 0.026 && c.test_unk_fraction < 0.5, "{}", c.test_unk_fraction);
}

#[test]
fn a_tiny_study_trains_resumes_and_reports() {
    let corpus = generated_corpus(4000, 1).unwrap();
    let cfg = StudyConfig { max_vocab: 64, d_model: 8, heads: 2, seq_len: 8, batch: 4, train_tokens: 8 * 4 * 6, eval_tokens: 200, checkpoint_every: 3, ..StudyConfig::for_mode(Mode::Quick) };
    let models = study_models(&cfg, corpus.vocab.len());
    assert_eq!(models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["transformer_1", "transformer_4", "deq_implicit", "revdeq"]);
    let rev = &models[3];
    let ck = std::env::temp_dir().join(format!("revlib-lm-ck-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&ck);
    let whole = train_lm(&corpus, &cfg, rev, None, |_, _, _| {}).unwrap();
    // Interrupt after 3 steps (the checkpoint), then resume: same parameters, same perplexity.
    let half = StudyConfig { train_tokens: 8 * 4 * 3, ..cfg };
    train_lm(&corpus, &half, rev, Some(&ck), |_, _, _| {}).unwrap();
    let mut seen = Vec::new();
    let resumed = train_lm(&corpus, &cfg, rev, Some(&ck), |s, _, _| seen.push(s)).unwrap();
    assert_eq!(seen, [4, 5, 6], "resumed at step 3");
    assert!((resumed.test_ppl - whole.test_ppl).abs() < 1e-9 * whole.test_ppl, "{} vs {}", resumed.test_ppl, whole.test_ppl);
    assert!(whole.test_ppl.is_finite() && whole.test_ppl < corpus.vocab.len() as f64 * 2.0);
    // 1 + 2 per iteration, at most 4 iterations
    assert!(whole.forward_nfe >= 3.0 && whole.forward_nfe <= 9.0, "{}", whole.forward_nfe);
    assert_eq!(whole.stored_states, 2);
    std::fs::remove_file(&ck).unwrap();
}

#[test]
fn the_talks_perplexity_table_loads_with_its_source() {
    let (source, rows) = revlib::experiments::lm::published_lm().unwrap();
    assert!(source.contains("talk-transcript"));
    assert_eq!(rows.len(), 7);
    let best = rows.iter().min_by(|a, b| a.test_ppl.total_cmp(&b.test_ppl)).unwrap();
    assert_eq!((best.model.as_str(), best.params_millions, best.function_evaluations, best.test_ppl), ("RevDEQ", 169.0, Some(8.0), 20.7));
}
