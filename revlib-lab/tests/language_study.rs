//! The WikiText loader and the perplexity study's driver (training, checkpoints, resume).
//!
//! The WikiText test fails when `REVLIB_REQUIRE_DATA=1` (set by `.ci/run`) and the files are
//! missing; otherwise it reports the skip.

use revlib_lab::experiments::data::{data_dir, data_required};
use revlib_lab::experiments::lm::{study_models, train_lm, train_lms, StudyConfig};
use revlib_lab::Error;
use revlib_lab::experiments::wikitext::{build_corpus, generated_corpus, load_wikitext};
use revlib::nn::DeviceKind;
use revlib_lab::notebook::Mode;
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
    assert_eq!(c.files.len(), 3);
    assert!(c.files.iter().zip(["train", "valid", "test"]).all(|(f, split)| f.starts_with(&dir) && f.to_string_lossy().contains(split)), "{:?}", c.files);
    assert!(c.test_unk_fraction > 0.026 && c.test_unk_fraction < 0.5, "{}", c.test_unk_fraction);
}

/// Four quick-mode models at a size that trains in well under a second each.
fn tiny_study() -> StudyConfig {
    StudyConfig { max_vocab: 64, d_model: 8, heads: 2, seq_len: 8, batch: 4, train_tokens: 8 * 4 * 6, eval_tokens: 200, checkpoint_every: 3, sweep_tokens: 100, ..StudyConfig::for_mode(Mode::Quick) }
}

#[test]
fn a_tiny_study_trains_resumes_and_reports() {
    let corpus = generated_corpus(4000, 1).unwrap();
    let cfg = tiny_study();
    let models = study_models(&cfg, corpus.vocab.len());
    assert_eq!(models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["transformer_1_s0", "deq_implicit_s0", "revdeq_s0", "revdeq_unrolled_s0"]);
    let all = study_models(&StudyConfig { models: Vec::new(), seeds: vec![0, 1, 2], ..cfg.clone() }, corpus.vocab.len());
    let count = |family: &str| all.iter().filter(|m| m.family == family).count();
    assert_eq!((all.len(), count("transformer_1"), count("revdeq"), count("deq_implicit")), (11, 3, 3, 1));
    let rev = &models[2];
    let ck = std::env::temp_dir().join(format!("revlib-lm-ck-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&ck);
    let whole = train_lm(&corpus, &cfg, rev, None, DeviceKind::Cpu, |_, _, _| {}).unwrap();
    // Interrupt after 3 steps (the checkpoint), then resume: same parameters, same perplexity.
    let half = StudyConfig { train_tokens: 8 * 4 * 3, ..cfg.clone() };
    train_lm(&corpus, &half, rev, Some(&ck), DeviceKind::Cpu, |_, _, _| {}).unwrap();
    let mut seen = Vec::new();
    let resumed = train_lm(&corpus, &cfg, rev, Some(&ck), DeviceKind::Cpu, |s, _, _| seen.push(s)).unwrap();
    assert_eq!(seen, [4, 5, 6], "resumed at step 3");
    assert!((resumed.test_ppl - whole.test_ppl).abs() < 1e-9 * whole.test_ppl, "{} vs {}", resumed.test_ppl, whole.test_ppl);
    assert!(whole.test_ppl.is_finite() && whole.test_ppl < corpus.vocab.len() as f64 * 2.0);
    // 1 + 2 per iteration, at most 4 iterations
    assert!(whole.forward_nfe >= 3.0 && whole.forward_nfe <= 9.0, "{}", whole.forward_nfe);
    assert_eq!(whole.stored_states, 2);
    // The iteration sweep: one point per cap, each within its NFE budget.
    assert_eq!(whole.iteration_sweep.iter().map(|p| p.max_iterations).collect::<Vec<_>>(), cfg.sweep_iterations);
    for p in &whole.iteration_sweep {
        assert!(p.forward_nfe <= (1 + 2 * p.max_iterations) as f64 && p.test_ppl.is_finite() && p.test_tokens > 0, "{p:?}");
    }
    // Unrolled backprop through the same iteration: the same model trains to the same numbers
    // (the gradients agree to round-off), holding 2(N + 1) states instead of 2.
    let unrolled = train_lm(&corpus, &cfg, &models[3], None, DeviceKind::Cpu, |_, _, _| {}).unwrap();
    assert!((unrolled.test_ppl - whole.test_ppl).abs() < 1e-6 * whole.test_ppl, "{} vs {}", unrolled.test_ppl, whole.test_ppl);
    assert!(unrolled.stored_states > whole.stored_states);
    std::fs::remove_file(&ck).unwrap();
}

#[test]
fn models_trained_two_at_a_time_match_one_at_a_time() {
    let corpus = generated_corpus(4000, 1).unwrap();
    let cfg = tiny_study();
    let models = study_models(&cfg, corpus.vocab.len());
    let together = train_lms(&corpus, &cfg, &models, 2).unwrap();
    assert_eq!(together.len(), models.len());
    for (spec, r) in models.iter().zip(&together) {
        let alone = train_lm(&corpus, &cfg, spec, None, DeviceKind::Cpu, |_, _, _| {}).unwrap();
        assert_eq!(r.name, spec.name, "results in the order of the specs");
        assert_eq!((r.losses.clone(), r.test_ppl.to_bits()), (alone.losses, alone.test_ppl.to_bits()), "{}", r.name);
        assert!(r.peak_rss_bytes.is_none() && alone.peak_rss_bytes.is_some(), "{}: a shared process's peak is no model's own", r.name);
    }
    assert!(matches!(train_lms(&corpus, &cfg, &models, 0), Err(Error::InvalidArgument { name: "jobs", .. })));
    // A set-up every model rejects: the error comes back, not a partial list.
    let bad = StudyConfig { batch: 0, ..cfg };
    assert!(matches!(train_lms(&corpus, &bad, &models, 2), Err(Error::InvalidArgument { name: "batch", .. })));
}

#[test]
fn the_talks_perplexity_table_loads_with_its_source() {
    let (source, rows) = revlib_lab::experiments::lm::published_lm().unwrap();
    assert!(source.contains("2509.12917") && !source.contains("shared/"));
    assert_eq!(rows.len(), 7);
    let best = rows.iter().min_by(|a, b| a.test_ppl.total_cmp(&b.test_ppl)).unwrap();
    assert_eq!((best.model.as_str(), best.params_millions, best.function_evaluations, best.test_ppl), ("RevDEQ", 169.0, Some(8.0), 20.7));
}
