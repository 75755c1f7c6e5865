//! Stochastic differential equations: the Brownian tree's statistics and replay, convergence
//! orders of the solvers on known SDEs, exact gradients through the discretisation, bad input.

use revlib::prelude::*;
use revlib::sde::{solve_sde, AdditiveNoise, Diffusion, LinearNoise, Sde, VirtualBrownianTree};
use revlib::Result;

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0))
}

/// Least-squares slope of log(err) against log(h).
fn slope(hs: &[f64], errs: &[f64]) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) = hs.iter().zip(errs).map(|(h, e)| (h.ln(), e.ln())).unzip();
    let (mx, my) = (x.iter().sum::<f64>() / x.len() as f64, y.iter().sum::<f64>() / y.len() as f64);
    x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum::<f64>() / x.iter().map(|a| (a - mx) * (a - mx)).sum::<f64>()
}

#[test]
fn brownian_increments_have_mean_zero_variance_t_minus_s_and_are_independent() -> Result<()> {
    let dim = 20_000;
    let w = VirtualBrownianTree::new(0.0, 2.0, dim, 1e-6, 3)?;
    let (mut a, mut b) = (vec![0.0; dim], vec![0.0; dim]);
    w.increment(0.3, 0.7, &mut a)?;
    w.increment(0.7, 1.9, &mut b)?;
    let ((ma, va), (mb, vb)) = (mean_var(&a), mean_var(&b));
    let se = |v: f64| (v / dim as f64).sqrt();
    assert!(ma.abs() < 4.0 * se(0.4) && mb.abs() < 4.0 * se(1.2), "means {ma} {mb}");
    // The sample variance's relative standard error is sqrt(2/dim) ≈ 1 %.
    assert!((va / 0.4 - 1.0).abs() < 0.05 && (vb / 1.2 - 1.0).abs() < 0.05, "variances {va} {vb}");
    let corr = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / ((dim as f64 - 1.0) * (va * vb).sqrt());
    assert!(corr.abs() < 4.0 / (dim as f64).sqrt(), "disjoint increments correlated: {corr}");
    Ok(())
}

#[test]
fn increments_add_up_and_replay_identically_backwards() -> Result<()> {
    let w = VirtualBrownianTree::new(-1.0, 3.0, 7, 1e-9, 11)?;
    let inc = |s: f64, t: f64| -> Result<Vec<f64>> {
        let mut o = vec![0.0; 7];
        w.increment(s, t, &mut o)?;
        Ok(o)
    };
    for (s, t, u) in [(-1.0, 0.2, 3.0), (0.123, 0.5, 2.9), (1.0, 1.0 + 1e-7, 1.0 + 3e-7), (2.5, 0.1, -0.7)] {
        let (su, st, tu) = (inc(s, u)?, inc(s, t)?, inc(t, u)?);
        let worst = su.iter().zip(st.iter().zip(&tu)).map(|(a, (b, c))| (a - (b + c)).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-12, "W({s},{u}) ≠ W({s},{t}) + W({t},{u}): {worst:e}");
    }
    // The backward pass asks for the increments in reverse order and reversed: exactly the
    // negatives of the forward ones, bit for bit, and a second tree from the seed agrees.
    let ts: Vec<f64> = (0..=64).map(|k| -1.0 + 4.0 * k as f64 / 64.0 + if k % 64 == 0 { 0.0 } else { 1e-3 * (k as f64).sin() }).collect();
    let forward: Vec<Vec<f64>> = ts.windows(2).map(|p| inc(p[0], p[1])).collect::<Result<_>>()?;
    let again = VirtualBrownianTree::new(-1.0, 3.0, 7, 1e-9, 11)?;
    for (k, p) in ts.windows(2).enumerate().rev() {
        let mut back = vec![0.0; 7];
        again.increment(p[1], p[0], &mut back)?;
        assert!(back.iter().zip(&forward[k]).all(|(b, f)| *b == -*f), "step {k}");
    }
    let other = VirtualBrownianTree::new(-1.0, 3.0, 7, 1e-9, 12)?;
    let mut o = vec![0.0; 7];
    other.increment(-1.0, 3.0, &mut o)?;
    assert!(o != inc(-1.0, 3.0)?, "another seed gave the same path");
    Ok(())
}

#[test]
fn brownian_and_sde_bad_input_are_clear_errors() -> Result<()> {
    for (t1, tol, dim) in [(1.0, 1e-6, 3), (-2.0, 1e-6, 3), (f64::NAN, 1e-6, 3), (2.0, 0.0, 3), (2.0, -1e-3, 3), (2.0, f64::INFINITY, 3), (2.0, 1e-6, 0)] {
        let e = VirtualBrownianTree::new(1.0, t1, dim, tol, 0).expect_err("bad Brownian tree accepted");
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    }
    let w = VirtualBrownianTree::new(0.0, 1.0, 2, 1e-6, 0)?;
    let mut out = vec![0.0; 2];
    let e = w.value(1.5, &mut out).expect_err("query outside [t0, t1]");
    assert!(e.to_string().contains("1.5"), "{e}");
    assert!(w.increment(-0.25, 0.5, &mut out).is_err());
    assert!(matches!(w.value(0.5, &mut [0.0; 3]), Err(Error::ShapeMismatch { .. })));

    let (drift, g) = (Linear::scalar(0.1), Linear::scalar(0.3));
    let sde = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&g), path: &w };
    let heun = ExplicitRk::heun();
    // Noise of the wrong shape: the path has 2 coordinates, the batch 3 samples.
    assert!(matches!(solve_sde(&sde, &heun, &[1.0; 3], &SolveOptions::fixed(0.0, 1.0, 10)), Err(Error::ShapeMismatch { .. })));
    let g2 = Linear::new(2, vec![0.1, 0.0, 0.0, 0.1])?;
    let wrong = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&g2), path: &w };
    assert!(matches!(solve_sde(&wrong, &heun, &[1.0; 2], &SolveOptions::fixed(0.0, 1.0, 10)), Err(Error::ShapeMismatch { .. })));
    // A solve past the path's interval is refused before it starts, naming the time.
    let e = solve_sde(&sde, &heun, &[1.0; 2], &SolveOptions::fixed(0.0, 2.0, 10)).expect_err("solve past the path");
    assert!(e.to_string().contains('2'), "{e}");
    let e = Adjoint::Reversible.sde_gradient(&sde, &ReversibleHeun, &[1.0; 2], &SolveOptions::fixed(0.0, 2.0, 10), &HalfSquaredNorm, &GradientChecks::default());
    assert!(e.is_err());
    // Zero and negative steps.
    for dt in [0.0, -0.1] {
        let o = SolveOptions { t0: 0.0, t1: 1.0, stepping: Stepping::Constant { dt }, save_at: SaveAt::Final };
        assert!(matches!(solve_sde(&sde, &heun, &[1.0; 2], &o), Err(Error::InvalidArgument { name: "dt", .. })));
    }
    assert!(solve_sde(&sde, &heun, &[1.0; 2], &SolveOptions::fixed(1.0, 0.0, 10)).is_err());
    assert!(LinearNoise::new(2, vec![1.0; 6]).is_err());
    Ok(())
}

fn fmt(errs: &[f64]) -> String {
    errs.iter().map(|e| format!("{e:.1e}")).collect::<Vec<_>>().join(", ")
}

/// Strong error E|y_N − y_ref| over a batch of paths, for N = 2^k, k ∈ `ks`.
fn strong_errors(sde: &Sde, solver: &dyn Solver, y0: &[f64], ks: &[u32], reference: &dyn Fn() -> Result<Vec<f64>>) -> Result<(Vec<f64>, Vec<f64>)> {
    let exact = reference()?;
    let d = sde.drift.dim();
    let mut errs = Vec::new();
    for &k in ks {
        let y = solve_sde(sde, solver, y0, &SolveOptions::fixed(0.0, 1.0, 1 << k))?.ys.remove(0);
        let per_path: Vec<f64> = y.chunks(d).zip(exact.chunks(d)).map(|(a, b)| a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt()).collect();
        errs.push(per_path.iter().sum::<f64>() / per_path.len() as f64);
    }
    Ok((ks.iter().map(|&k| 1.0 / (1u64 << k) as f64).collect(), errs))
}

#[test]
fn strong_orders_on_geometric_brownian_motion_and_on_non_commutative_noise() -> Result<()> {
    let (mu, sigma, paths) = (0.2, 0.5, 400);
    let w = VirtualBrownianTree::new(0.0, 1.0, paths, 1.0 / (1u64 << 14) as f64, 5)?;
    let (drift, g) = (Linear::scalar(mu), Linear::scalar(sigma));
    let gbm = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&g), path: &w };
    // Stratonovich GBM: y(1) = y0 exp(μ + σ W(1)).
    let exact = || -> Result<Vec<f64>> {
        let mut w1 = vec![0.0; paths];
        w.value(1.0, &mut w1)?;
        Ok(w1.iter().map(|v| (mu + sigma * v).exp()).collect())
    };
    let y0 = vec![1.0; paths];
    let ks = [3, 4, 5, 6, 7, 8];
    let mut report = Vec::new();
    for (name, solver, lo, hi) in [
        ("Heun", Box::new(ExplicitRk::heun()) as Box<dyn Solver>, 0.8, 1.3),
        ("reversible Heun", Box::new(ReversibleHeun), 0.4, 1.3),
        ("McCallum–Foster(Heun, λ = 0.999)", Box::new(Reversible::new(ExplicitRk::heun(), 0.999)?), 0.4, 1.3),
    ] {
        let (hs, errs) = strong_errors(&gbm, solver.as_ref(), &y0, &ks, &exact)?;
        let p = slope(&hs, &errs);
        report.push(format!("GBM {name}: strong order {p:.2} (errors {})", fmt(&errs)));
        assert!(p > lo && p < hi, "{}", report.last().map_or("", String::as_str));
    }
    // Non-commuting noise matrices: only strong order ½ is possible with increments alone.
    // Reference: Heun with 2^13 steps on the same Brownian sample.
    let d = 2;
    let drift2 = Linear::new(d, vec![-0.5, 0.3, -0.3, -0.5])?;
    let noise = LinearNoise::new(d, vec![0.0, 0.6, 0.0, 0.0, /* B2 */ 0.0, 0.0, 0.6, 0.0])?;
    let w2 = VirtualBrownianTree::new(0.0, 1.0, 2 * paths, 1.0 / (1u64 << 13) as f64, 6)?;
    let general = Sde { drift: &drift2, diffusion: Diffusion::General(&noise), path: &w2 };
    let y02: Vec<f64> = (0..paths).flat_map(|_| [1.0, 0.5]).collect();
    let reference = || -> Result<Vec<f64>> { Ok(solve_sde(&general, &ExplicitRk::heun(), &y02, &SolveOptions::fixed(0.0, 1.0, 1 << 13))?.ys.remove(0)) };
    let (hs, errs) = strong_errors(&general, &ExplicitRk::heun(), &y02, &ks, &reference)?;
    let p = slope(&hs, &errs);
    report.push(format!("non-commutative noise, Heun: strong order {p:.2} (errors {})", fmt(&errs)));
    println!("{}", report.join("\n"));
    assert!(p > 0.3 && p < 0.75, "{}", report.join("\n"));
    Ok(())
}

#[test]
fn the_weak_error_on_the_mean_of_geometric_brownian_motion_is_small() -> Result<()> {
    let (mu, sigma, paths, t1) = (0.2, 0.5, 4000, 1.0);
    let w = VirtualBrownianTree::new(0.0, t1, paths, 1.0 / 256.0, 9)?;
    let (drift, g) = (Linear::scalar(mu), Linear::scalar(sigma));
    let sde = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&g), path: &w };
    let y = solve_sde(&sde, &ExplicitRk::heun(), &vec![1.0; paths], &SolveOptions::fixed(0.0, t1, 64))?.ys.remove(0);
    let (m, v) = mean_var(&y);
    // Stratonovich GBM: E y(T) = exp((μ + σ²/2) T).
    let exact = ((mu + 0.5 * sigma * sigma) * t1).exp();
    let se = (v / paths as f64).sqrt();
    assert!((m - exact).abs() < 4.0 * se, "mean {m} vs {exact} (standard error {se})");
    // Explicit Euler converges to the Itô solution instead, whose mean is exp(μ T): a test that
    // tells the two calculi apart.
    let e = solve_sde(&sde, &ExplicitRk::euler(), &vec![1.0; paths], &SolveOptions::fixed(0.0, t1, 256))?.ys.remove(0);
    let (me, ve) = mean_var(&e);
    assert!((me - (mu * t1).exp()).abs() < 4.0 * (ve / paths as f64).sqrt() + 0.01, "Euler mean {me}");
    Ok(())
}

#[test]
fn gradients_through_the_sde_discretisation_are_exact_for_every_strategy() -> Result<()> {
    let batch = 6;
    let drift = Mlp::new(MlpConfig { dim: 2, width: 8, depth: 1, time_input: false }, 1)?;
    let diffusion = Mlp::new(MlpConfig { dim: 2, width: 8, depth: 1, time_input: false }, 2)?;
    let w = VirtualBrownianTree::new(0.0, 1.0, 2 * batch, 1e-6, 4)?;
    let sde = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&diffusion), path: &w };
    let y0: Vec<f64> = (0..2 * batch).map(|i| (0.7 * i as f64).sin()).collect();
    let opts = SolveOptions::fixed(0.0, 1.0, 200);
    let checks = GradientChecks::default();
    for solver in [Box::new(ReversibleHeun) as Box<dyn Solver>, Box::new(Reversible::new(ExplicitRk::heun(), 0.999)?)] {
        let reference = Adjoint::FullStorage.sde_gradient(&sde, solver.as_ref(), &y0, &opts, &HalfSquaredNorm, &checks)?;
        assert_eq!(reference.d_theta.len(), drift.n_params() + diffusion.n_params());
        for adjoint in [Adjoint::Checkpoint(8), Adjoint::CheckpointOnline(8), Adjoint::Reversible] {
            let g = adjoint.sde_gradient(&sde, solver.as_ref(), &y0, &opts, &HalfSquaredNorm, &checks)?;
            let (et, ey) = (rel_err(&g.d_theta, &reference.d_theta), rel_err(&g.d_y0, &reference.d_y0));
            assert!(et <= 1e-10 && ey <= 1e-10, "{} with {}: {et:e} {ey:e}", adjoint.key(), solver.name());
            assert_eq!(g.loss, reference.loss);
        }
        let rev = Adjoint::Reversible.sde_gradient(&sde, solver.as_ref(), &y0, &opts, &HalfSquaredNorm, &checks)?;
        assert_eq!(rev.stats.peak_stored_states, 1, "the reversible adjoint holds one carry");
        assert!(rev.stats.reconstruction_error < 1e-12);
    }
    // Full storage itself against central differences of the loss in y0 and in one diffusion
    // parameter (the term's VJP is new code; the strategies above agree with it, so check it).
    let heun = ReversibleHeun;
    let g = Adjoint::FullStorage.sde_gradient(&sde, &heun, &y0, &opts, &HalfSquaredNorm, &checks)?;
    let loss_at = |y: &[f64], diff: &Mlp| -> Result<f64> {
        let s = Sde { drift: &drift, diffusion: Diffusion::Diagonal(diff), path: &w };
        let out = solve_sde(&s, &heun, y, &opts)?.ys.remove(0);
        Ok(0.5 * out.iter().map(|v| v * v).sum::<f64>())
    };
    let eps = 1e-6;
    for i in [0, 5, 11] {
        let (mut up, mut dn) = (y0.clone(), y0.clone());
        up[i] += eps;
        dn[i] -= eps;
        let fd = (loss_at(&up, &diffusion)? - loss_at(&dn, &diffusion)?) / (2.0 * eps);
        assert!((fd - g.d_y0[i]).abs() <= 1e-6 * (1.0 + fd.abs()), "dL/dy0[{i}]: {fd} vs {}", g.d_y0[i]);
    }
    let k = drift.n_params() + 3; // a diffusion parameter
    let theta = diffusion.params();
    let shifted = |delta: f64| -> Result<f64> {
        let mut d = diffusion.clone();
        let mut th = theta.clone();
        th[3] += delta;
        d.set_params(&th)?;
        loss_at(&y0, &d)
    };
    let fd = (shifted(eps)? - shifted(-eps)?) / (2.0 * eps);
    assert!((fd - g.d_theta[k]).abs() <= 1e-6 * (1.0 + fd.abs()), "dL/dθ[{k}]: {fd} vs {}", g.d_theta[k]);
    Ok(())
}

#[test]
fn with_additive_noise_reversible_heun_converges_at_strong_order_one() -> Result<()> {
    // Ornstein–Uhlenbeck dy = −y dt + 0.5 dW (Itô and Stratonovich coincide); reference: Heun
    // with 2^13 steps on the same Brownian sample.
    let paths = 400;
    let w = VirtualBrownianTree::new(0.0, 1.0, paths, 1.0 / (1u64 << 13) as f64, 8)?;
    let (drift, g) = (Linear::scalar(-1.0), AdditiveNoise::new(vec![0.5])?);
    let ou = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&g), path: &w };
    let y0 = vec![1.0; paths];
    let reference = || -> Result<Vec<f64>> { Ok(solve_sde(&ou, &ExplicitRk::heun(), &y0, &SolveOptions::fixed(0.0, 1.0, 1 << 13))?.ys.remove(0)) };
    let mut report = Vec::new();
    for (name, solver) in [("Heun", Box::new(ExplicitRk::heun()) as Box<dyn Solver>), ("reversible Heun", Box::new(ReversibleHeun))] {
        let (hs, errs) = strong_errors(&ou, solver.as_ref(), &y0, &[3, 4, 5, 6, 7, 8], &reference)?;
        let p = slope(&hs, &errs);
        report.push(format!("OU {name}: strong order {p:.2} (errors {})", fmt(&errs)));
        assert!(p > 0.8 && p < 2.3, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
    // The noise size is a parameter: its gradient through the solve equals central differences.
    let opts = SolveOptions::fixed(0.0, 1.0, 64);
    let gr = Adjoint::Reversible.sde_gradient(&ou, &ReversibleHeun, &y0, &opts, &HalfSquaredNorm, &GradientChecks::default())?;
    let loss = |s: f64| -> Result<f64> {
        let g = AdditiveNoise::new(vec![s])?;
        let sde = Sde { drift: &drift, diffusion: Diffusion::Diagonal(&g), path: &w };
        Ok(0.5 * solve_sde(&sde, &ReversibleHeun, &y0, &opts)?.ys[0].iter().map(|v| v * v).sum::<f64>())
    };
    let fd = (loss(0.5 + 1e-6)? - loss(0.5 - 1e-6)?) / 2e-6;
    let k = drift.n_params();
    assert!((gr.d_theta[k] - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "dL/dσ {} vs {fd}", gr.d_theta[k]);
    assert!(AdditiveNoise::new(vec![]).is_err() && AdditiveNoise::new(vec![f64::NAN]).is_err());
    Ok(())
}
