//! The transformer block (dfdx) and the language models around it: VJPs against finite
//! differences, causality, and the reversible backward (iterates on the device) against
//! unrolled backpropagation.
#![cfg(feature = "nn")]

use revlib::deq::{backward, fixed_point, DeqBackward, FixedPointMap, FixedPointOptions, FixedPointSolver};
use revlib::nn::lm::{LanguageModel, LmConfig, LmKind};
use revlib::nn::transformer::{BlockConfig, BlockKind, TransformerBlock};
use revlib::rel_err;

fn block(kind: BlockKind) -> TransformerBlock {
    TransformerBlock::new(BlockConfig { d_model: 8, heads: 2, mlp_ratio: 2, seq_len: 5, kind }, 3).unwrap()
}

fn wave(n: usize, f: f64) -> Vec<f64> {
    (0..n).map(|i| (i as f64 * f).sin()).collect()
}

#[test]
fn block_vjp_matches_finite_differences() {
    for kind in [BlockKind::PostLn, BlockKind::PreLnResidual] {
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
    let b = block(BlockKind::PostLn);
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
    let b = block(BlockKind::PostLn);
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
    let block = BlockConfig { d_model: 8, heads: 2, mlp_ratio: 2, seq_len: 4, kind: BlockKind::PostLn };
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
fn revdeq_on_device_states_equals_the_host_iteration() {
    // LmKind::rev_deq keeps the iterates on the model's device (reversible forward and
    // backward through `StateMap`); the same iteration with the unrolled backward runs on host
    // vectors through `FixedPointMap`. Same model, same tokens: same loss and gradient.
    let block = BlockConfig { d_model: 8, heads: 2, mlp_ratio: 2, seq_len: 4, kind: BlockKind::PostLn };
    let tokens: Vec<u32> = vec![1, 5, 2, 9, 3, 4, 0, 7, 7, 1];
    let opts = FixedPointOptions { tol: 1e-3, max_steps: 4, strict: false };
    let solver = FixedPointSolver::Reversible { beta: 0.5 };
    let device = LanguageModel::new(LmConfig { vocab: 10, block, kind: LmKind::Deq { solver, opts, backward: DeqBackward::Reversible, jacobian_penalty: 0.0 } }, 3).unwrap();
    let host = LanguageModel::new(LmConfig { vocab: 10, block, kind: LmKind::Deq { solver, opts, backward: DeqBackward::Unrolled, jacobian_penalty: 0.0 } }, 3).unwrap();
    let (l1, g1, s1) = device.loss_and_grad(&tokens).unwrap();
    let (l2, g2, s2) = host.loss_and_grad(&tokens).unwrap();
    assert_eq!(s1.iterations, s2.iterations);
    assert_eq!((s1.forward_nfe, s1.backward_nfe, s1.stored_states), (1 + 2 * s1.iterations, 2 * s1.iterations, 2));
    assert!((l1 - l2).abs() <= 1e-12 * l2.abs(), "loss {l1} vs {l2}");
    // The reversible backward rebuilds the iterates; rounded to f32 for the block they usually
    // match the stored ones exactly (then the gradients agree bit for bit), and otherwise
    // differ as bounded in the test above.
    assert!(s1.iterations > 0);
    let err = rel_err(&g1, &g2);
    assert!(err < 1e-6 * 16.0, "gradient rel. error {err:e}");
}
