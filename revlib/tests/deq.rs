//! Fixed-point solvers and DEQ gradients: exactness of the reversible backward, the linear
//! convergence theorem, counters and errors.

use revlib::deq::*;
use revlib::{rel_err, Error};

fn exact(n: usize) -> FixedPointOptions {
    // tol = 0: run exactly n iterations (the residual never drops below 1e-8 this early).
    FixedPointOptions { tol: 0.0, max_steps: n, strict: false }
}

/// L(z) = Σ c_i z_i with fixed weights, so dL/dz = c.
fn weights(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7 % 5) as f64 - 2.0) * 0.3).collect()
}

#[test]
fn reversible_backward_equals_unrolled_backprop() {
    let f = TanhMap::random(6, 0.7, 3, 1).unwrap();
    let x: Vec<f64> = (0..f.len()).map(|i| (i as f64 * 0.37).sin()).collect();
    let c = weights(f.len());
    for beta in [0.5, 0.8, 1.2] {
        for n in [1, 4, 10] {
            let fp = fixed_point(&f, &x, FixedPointSolver::Reversible { beta }, &exact(n), true).unwrap();
            assert_eq!(fp.iterations, n);
            assert_eq!(fp.nfe, 1 + 2 * n);
            let rev = backward(&f, &x, &fp, &c, DeqBackward::Reversible).unwrap();
            let unr = backward(&f, &x, &fp, &c, DeqBackward::Unrolled).unwrap();
            let (et, ex) = (rel_err(&rev.d_theta, &unr.d_theta), rel_err(&rev.d_x, &unr.d_x));
            assert!(et < 1e-8 && ex < 1e-8, "β = {beta}, N = {n}: θ {et:e}, x {ex:e}");
            assert_eq!((rev.nfe, rev.vjps, rev.stored_states), (2 * n, 2 * n, 2));
            assert_eq!(unr.stored_states, 2 * (n + 1));
        }
    }
}

#[test]
fn unrolled_backprop_matches_finite_differences() {
    let mut f = TanhMap::random(3, 0.8, 2, 4).unwrap();
    let x = vec![0.2, -0.4, 0.9, 0.1, 0.5, -0.3];
    let c = weights(6);
    let theta = f.params().to_vec();
    for solver in [FixedPointSolver::Reversible { beta: 0.8 }, FixedPointSolver::Relaxed { beta: 0.7 }, FixedPointSolver::Picard] {
        f.set_params(&theta).unwrap();
        let fp = fixed_point(&f, &x, solver, &exact(6), true).unwrap();
        let g = backward(&f, &x, &fp, &c, DeqBackward::Unrolled).unwrap();
        for k in [0, 5, 9, 12, 20] {
            let mut loss = |d: f64| {
                let mut t = theta.clone();
                t[k] += d;
                f.set_params(&t).unwrap();
                let z = fixed_point(&f, &x, solver, &exact(6), false).unwrap().z;
                z.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>()
            };
            let fd = (loss(1e-6) - loss(-1e-6)) / 2e-6;
            assert!((fd - g.d_theta[k]).abs() < 1e-7 * (1.0 + fd.abs()), "{solver:?} θ[{k}]: fd {fd} vs {}", g.d_theta[k]);
        }
    }
}

#[test]
fn reverse_steps_undo_the_iteration() {
    let f = TanhMap::random(5, 0.9, 2, 7).unwrap();
    let x = vec![0.3; f.len()];
    for beta in [0.5, 1.5] {
        let fp = fixed_point(&f, &x, FixedPointSolver::Reversible { beta }, &exact(8), true).unwrap();
        let (mut y, mut z) = (fp.y.clone(), fp.z.clone());
        for k in (0..8).rev() {
            reverse_step(&f, &x, beta, &mut y, &mut z).unwrap();
            let (ty, tz) = &fp.trajectory[k];
            let err = y.iter().chain(&z).zip(ty.iter().chain(tz)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-9, "β = {beta}, back to n = {k}: {err:e}");
        }
    }
}

#[test]
fn reversible_iteration_converges_linearly_as_the_theorem_says() {
    // ‖z_n − z*‖ ≤ αⁿ ‖z*‖ with α = |1 − β| + βL, for β ∈ (0, 2/(L + 1)).
    for (seed, lip) in [(0u64, 0.3), (1, 0.6), (2, 0.9)] {
        let f = TanhMap::random(8, lip, 4, seed).unwrap();
        assert!((f.lipschitz() - lip).abs() < 1e-6);
        let x: Vec<f64> = (0..f.len()).map(|i| ((i * 13) % 7) as f64 / 7.0 - 0.5).collect();
        let zstar = fixed_point(&f, &x, FixedPointSolver::Picard, &FixedPointOptions { tol: 1e-15, max_steps: 10_000, strict: true }, false).unwrap().z;
        let nstar = zstar.iter().map(|a| a * a).sum::<f64>().sqrt();
        let bmax = 2.0 / (lip + 1.0);
        for frac in [0.2, 0.5, 0.9, 0.99] {
            let beta = frac * bmax;
            if (beta - 1.0).abs() < 1e-9 {
                continue;
            }
            let alpha = (1.0 - beta).abs() + beta * lip;
            let fp = fixed_point(&f, &x, FixedPointSolver::Reversible { beta }, &exact(30), true).unwrap();
            for (n, (_, z)) in fp.trajectory.iter().enumerate() {
                let e = z.iter().zip(&zstar).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                assert!(e <= alpha.powi(n as i32) * nstar * (1.0 + 1e-9) + 1e-13, "L = {lip}, β = {beta}, n = {n}: {e} > {}", alpha.powi(n as i32) * nstar);
            }
        }
    }
}

#[test]
fn implicit_and_phantom_gradients_approach_the_exact_one() {
    let f = TanhMap::random(6, 0.5, 2, 3).unwrap();
    let x: Vec<f64> = (0..f.len()).map(|i| (i as f64).cos()).collect();
    let c = weights(f.len());
    let tight = FixedPointOptions { tol: 1e-14, max_steps: 200, strict: true };
    let fp = fixed_point(&f, &x, FixedPointSolver::Relaxed { beta: 0.9 }, &tight, true).unwrap();
    let exact_g = backward(&f, &x, &fp, &c, DeqBackward::Unrolled).unwrap();
    let imp = backward(&f, &x, &fp, &c, DeqBackward::Implicit { tol: 1e-12, max_steps: 200, strict: true, solver: FixedPointSolver::Picard }).unwrap();
    // The stopping rule's absolute 1e-8 floor ends the forward solve at a residual ~1e-8, so the
    // unrolled gradient (through those iterations) and the implicit one (at z*) differ at that level.
    assert!(rel_err(&imp.d_theta, &exact_g.d_theta) < 1e-6, "{}", rel_err(&imp.d_theta, &exact_g.d_theta));
    assert_eq!(imp.stored_states, 1);
    let errs: Vec<f64> = [1, 3, 10, 40]
        .iter()
        .map(|&k| rel_err(&backward(&f, &x, &fp, &c, DeqBackward::Phantom { k, beta: 0.8 }).unwrap().d_theta, &exact_g.d_theta))
        .collect();
    assert!(errs.windows(2).all(|w| w[1] < w[0]) && errs[3] < 1e-6, "{errs:?}");
    // Anderson needs fewer iterations than Picard on a slowly contracting map.
    let slow = TanhMap::random(8, 0.95, 2, 5).unwrap();
    let xs = vec![0.4; slow.len()];
    let o = FixedPointOptions { tol: 1e-10, max_steps: 2000, strict: true };
    let pic = fixed_point(&slow, &xs, FixedPointSolver::Picard, &o, false).unwrap();
    let and = fixed_point(&slow, &xs, FixedPointSolver::anderson(), &o, false).unwrap();
    assert!(and.iterations * 2 < pic.iterations, "Anderson {} vs Picard {}", and.iterations, pic.iterations);
    assert_eq!(pic.nfe, pic.iterations + 1);
    assert!(rel_err(&and.z, &pic.z) < 1e-6); // both stop at the 1e-8 residual floor
}

#[test]
fn bad_input_gives_clear_errors() {
    let f = TanhMap::random(3, 0.99, 1, 0).unwrap();
    let x = vec![0.5; 3];
    let o = FixedPointOptions::default();
    for beta in [1.0, 0.0, 2.0, -0.5, 2.5] {
        let e = fixed_point(&f, &x, FixedPointSolver::Reversible { beta }, &o, false).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { name: "beta", .. }), "{e}");
    }
    let e = fixed_point(&f, &[f64::NAN, 0.0, 0.0], FixedPointSolver::Picard, &o, false).unwrap_err();
    assert!(matches!(e, Error::NonFiniteIterate { iteration: 0, .. }), "{e}");
    let strict = FixedPointOptions { tol: 1e-12, max_steps: 3, strict: true };
    match fixed_point(&f, &x, FixedPointSolver::Picard, &strict, false).unwrap_err() {
        Error::NoConvergence { iterations: 3, residual, .. } => assert!(residual > 1e-12 && residual.is_finite()),
        other => panic!("{other}"),
    }
    let fp = fixed_point(&f, &x, FixedPointSolver::Picard, &o, false).unwrap();
    assert!(matches!(backward(&f, &x, &fp, &x, DeqBackward::Reversible), Err(Error::NotReversible { .. })));
    assert!(matches!(backward(&f, &x, &fp, &x, DeqBackward::Unrolled), Err(Error::Unsupported(_))));
    assert!(matches!(backward(&f, &x, &fp, &[1.0], DeqBackward::Reversible), Err(Error::ShapeMismatch { .. })));
    let e = backward(&f, &x, &fp, &x, DeqBackward::Implicit { tol: 1e-30, max_steps: 2, strict: true, solver: FixedPointSolver::Picard }).unwrap_err();
    assert!(matches!(e, Error::NoConvergence { iterations: 2, .. }), "{e}");
    // An expanding map: the implicit adjoint iteration diverges; strict mode says so, the
    // truncated mode stops at the last finite iterate and flags it.
    let grow = TanhMap::random(4, 3.0, 1, 2).unwrap();
    let xg = vec![0.01; 4];
    let fp = fixed_point(&grow, &xg, FixedPointSolver::Picard, &FixedPointOptions { tol: 1e-3, max_steps: 5, strict: false }, false).unwrap();
    let e = backward(&grow, &xg, &fp, &[1.0; 4], DeqBackward::Implicit { tol: 1e-8, max_steps: 500, strict: true, solver: FixedPointSolver::Picard }).unwrap_err();
    assert!(matches!(e, Error::NonFiniteIterate { .. } | Error::NoConvergence { .. }), "{e}");
    let g = backward(&grow, &xg, &fp, &[1.0; 4], DeqBackward::Implicit { tol: 1e-8, max_steps: 500, strict: false, solver: FixedPointSolver::Picard }).unwrap();
    assert!(g.diverged && g.d_theta.iter().all(|v| v.is_finite()), "{g:?}");
}

#[test]
fn anderson_solves_the_implicit_adjoint_faster_and_to_the_same_gradient() {
    // The slowly contracting map on which Anderson also beats Picard forward (test above).
    let f = TanhMap::random(8, 0.95, 2, 5).unwrap();
    let x = vec![0.4; f.len()];
    let c = weights(f.len());
    let fp = fixed_point(&f, &x, FixedPointSolver::anderson(), &FixedPointOptions { tol: 1e-13, max_steps: 500, strict: true }, false).unwrap();
    let adjoint = |solver| backward(&f, &x, &fp, &c, DeqBackward::Implicit { tol: 1e-11, max_steps: 2000, strict: true, solver }).unwrap();
    let (pic, and) = (adjoint(FixedPointSolver::Picard), adjoint(FixedPointSolver::anderson()));
    let e = rel_err(&and.d_theta, &pic.d_theta);
    assert!(e < 1e-9, "Anderson vs Picard adjoint: {e:e}");
    assert!(2 * and.iterations < pic.iterations, "Anderson {} vs Picard {} adjoint iterations", and.iterations, pic.iterations);
    eprintln!("adjoint iterations: Anderson {}, Picard {}", and.iterations, pic.iterations);
    let bad = backward(&f, &x, &fp, &c, DeqBackward::Implicit { tol: 1e-8, max_steps: 10, strict: true, solver: FixedPointSolver::Reversible { beta: 0.5 } });
    assert!(matches!(bad, Err(revlib::Error::Unsupported(_))));
}

#[test]
fn jacobian_penalty_and_its_gradient_match_finite_differences() {
    let mut f = TanhMap::random(5, 0.7, 3, 11).unwrap();
    let n = f.len();
    let z: Vec<f64> = (0..n).map(|i| (0.7 * i as f64).cos()).collect();
    let x: Vec<f64> = (0..n).map(|i| (0.2 * i as f64).sin()).collect();
    let probe: Vec<f64> = (0..n).map(|i| (1.3 * i as f64).sin() + 0.1).collect();
    let jp = jacobian_penalty(&f, &z, &x, &probe).unwrap();
    // The value against an explicit J^T ε built from central differences of f in z.
    let penalty = |f: &TanhMap, x: &[f64]| {
        let (mut u, mut t, mut gx) = (vec![0.0; n], vec![0.0; f.n_params()], vec![0.0; n]);
        f.vjp(&z, x, &probe, &mut u, &mut t, &mut gx).unwrap();
        u.iter().map(|v| v * v).sum::<f64>() / n as f64
    };
    assert!((jp.value - penalty(&f, &x)).abs() <= 1e-15 * jp.value);
    let theta = f.params().to_vec();
    let h = 1e-6;
    for k in [0, 7, 26, theta.len() - 1] {
        let mut t = theta.clone();
        t[k] += h;
        f.set_params(&t).unwrap();
        let up = penalty(&f, &x);
        t[k] -= 2.0 * h;
        f.set_params(&t).unwrap();
        let fd = (up - penalty(&f, &x)) / (2.0 * h);
        f.set_params(&theta).unwrap();
        assert!((fd - jp.d_theta[k]).abs() < 1e-6 * (fd.abs() + 1e-3), "θ[{k}]: fd {fd} vs {}", jp.d_theta[k]);
    }
    for k in [0, n / 2, n - 1] {
        let mut xp = x.clone();
        xp[k] += h;
        let up = penalty(&f, &xp);
        xp[k] -= 2.0 * h;
        let fd = (up - penalty(&f, &xp)) / (2.0 * h);
        assert!((fd - jp.d_x[k]).abs() < 1e-6 * (fd.abs() + 1e-3), "x[{k}]: fd {fd} vs {}", jp.d_x[k]);
    }
}
