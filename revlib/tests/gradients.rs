//! Every exact strategy against full-storage backprop through the same discretisation;
//! full storage against finite differences; the continuous adjoint's inexactness.

mod common;
use common::*;
use revlib::adjoint::checkpoint::{online_recomputations, revolve_recomputations};
use revlib::prelude::*;
use revlib::solver::Step;

fn both(field: &dyn VectorField, solver: &dyn Solver, y0: &[f64], opts: &SolveOptions, loss: &dyn Loss, adj: Adjoint) -> (Gradient, Gradient) {
    let exact = Adjoint::FullStorage.gradient(field, solver, y0, opts, loss).unwrap();
    let other = adj.gradient(field, solver, y0, opts, loss).unwrap();
    (exact, other)
}

fn assert_same(a: &Gradient, b: &Gradient, tol: f64, what: &str) {
    let et = rel_err(&b.d_theta, &a.d_theta);
    let ey = rel_err(&b.d_y0, &a.d_y0);
    assert!(et <= tol && ey <= tol, "{what}: rel err θ {et:e}, y0 {ey:e}");
    assert_eq!(a.loss, b.loss, "{what}: forward passes differ");
}

/// Problems on which every reversible solver is stable: an MLP field on [0, 1] (N = 40) and
/// a coupled oscillator (purely oscillatory, |hα| < 1) on [0, 5].
fn problems() -> Vec<(Box<dyn VectorField>, Vec<f64>, f64, usize)> {
    vec![
        (Box::new(mlp(true, 3)), vec![0.5, -0.3, 1.0, 0.2], 1.0, 40),
        (Box::new(CoupledOscillator { k: 1.0, kc: 0.5 }), vec![1.0, 0.0, 0.0, 0.5], 5.0, 100),
    ]
}

#[test]
fn reversible_adjoint_equals_backprop_through_the_same_scheme_fixed_steps() {
    for (field, y0, t1, n) in problems() {
        for solver in reversible_solvers() {
            let final_only = SolveOptions::fixed(0.0, t1, n);
            let times: Vec<f64> = (1..=4).map(|k| t1 * k as f64 / 4.0).collect();
            let many = SolveOptions::fixed(0.0, t1, n).save_at(SaveAt::Times(times));
            let what = format!("{} / {}", field.name(), solver.name());
            let (a, b) = both(&*field, &*solver, &y0, &final_only, &HalfSquaredNorm, Adjoint::Reversible);
            assert_same(&a, &b, 1e-10, &what);
            let loss = many_times_loss(4, y0.len());
            let (a, b) = both(&*field, &*solver, &y0, &many, &loss, Adjoint::Reversible);
            assert_same(&a, &b, 1e-10, &what);
            let steps = SolveOptions::fixed(0.0, t1, n).save_at(SaveAt::Steps);
            let (a, b) = both(&*field, &*solver, &y0, &steps, &many_times_loss(n, y0.len()), Adjoint::Reversible);
            assert_same(&a, &b, 1e-10, &what);
        }
    }
}

#[test]
fn reversible_adjoint_equals_backprop_with_adaptive_steps() {
    let field = mlp(true, 5);
    let y0 = [0.4, -0.8];
    let solvers: Vec<Box<dyn Solver>> = vec![
        Box::new(Reversible::new(ExplicitRk::bosh3(), 0.999).unwrap()),
        Box::new(Reversible::new(ExplicitRk::dopri5(), 0.999).unwrap()),
        Box::new(Reversible::new(ExplicitRk::heun(), 0.999).unwrap()),
        Box::new(ReversibleHeun),
        Box::new(AsyncLeapfrog::default()),
    ];
    for solver in solvers {
        let ts = vec![0.25, 0.5, 1.0, 2.0, 4.0];
        let opts = SolveOptions::adaptive(0.0, 4.0, 1e-8, 1e-8).save_at(SaveAt::Times(ts.clone()));
        let loss = many_times_loss(ts.len(), 2);
        let (a, b) = both(&field, &*solver, &y0, &opts, &loss, Adjoint::Reversible);
        assert!(a.stats.accepted_steps > 2 * ts.len(), "{}", a.stats.accepted_steps);
        assert_eq!(a.stats.accepted_steps, b.stats.accepted_steps);
        assert_same(&a, &b, 1e-10, &solver.name());
        assert_eq!(b.ts, ts, "outputs land exactly on the requested times");
    }
}

#[test]
fn checkpointing_equals_backprop_and_recomputes_the_binomial_count() {
    let field = mlp(false, 7);
    let y0 = [0.3, 0.9, -0.2, 0.1];
    for (n, c) in [(60, 1), (60, 2), (60, 4), (61, 8), (100, 44), (5, 10)] {
        for solver in [Box::new(ExplicitRk::midpoint()) as Box<dyn Solver>, Box::new(Reversible::new(ExplicitRk::rk4(), 0.999).unwrap())] {
            let opts = SolveOptions::fixed(0.0, 1.0, n).save_at(SaveAt::Steps);
            let loss = many_times_loss(n, 4);
            let (a, b) = both(&field, &*solver, &y0, &opts, &loss, Adjoint::Checkpoint(c));
            assert_same(&a, &b, 1e-12, &format!("checkpoint_{c} N={n}"));
            assert_eq!(b.stats.recomputed_steps, revolve_recomputations(n, c), "N = {n}, c = {c}");
            assert!(b.stats.peak_stored_states <= c + 1, "{} > c + 1", b.stats.peak_stored_states);
            let (_, o) = both(&field, &*solver, &y0, &opts, &loss, Adjoint::CheckpointOnline(c));
            assert_same(&a, &o, 1e-12, &format!("online {c}"));
            assert_eq!(o.stats.recomputed_steps, online_recomputations(n, c));
            assert!(o.stats.peak_stored_states <= c + 1);
        }
    }
}

#[test]
fn online_checkpointing_with_adaptive_steps_matches_backprop() {
    let field = mlp(true, 11);
    let solver = ExplicitRk::bosh3();
    let y0 = [1.0, -1.0];
    let opts = SolveOptions::adaptive(0.0, 3.0, 1e-7, 1e-7).save_at(SaveAt::Steps);
    let sol = solve(&field, &solver, &y0, &opts).unwrap();
    let n = sol.stats.accepted_steps;
    let loss = many_times_loss(n, 2);
    for c in [2, 5, 12] {
        let (a, b) = both(&field, &solver, &y0, &opts, &loss, Adjoint::Checkpoint(c));
        assert_same(&a, &b, 1e-12, "adaptive checkpoint");
        assert_eq!(b.stats.recomputed_steps, online_recomputations(n, c));
        println!("adaptive N = {n}, c = {c}: online recomputes {} (offline optimum {})", b.stats.recomputed_steps, revolve_recomputations(n, c));
    }
}

#[test]
fn cost_counters_match_the_algorithms() {
    let field = mlp(false, 1);
    let y0 = [0.1, 0.2];
    let n = 25;
    let opts = SolveOptions::fixed(0.0, 1.0, n);
    let solver = Reversible::new(ExplicitRk::midpoint(), 0.999).unwrap();
    let full = Adjoint::FullStorage.gradient(&field, &solver, &y0, &opts, &HalfSquaredNorm).unwrap();
    // forward: 2 base steps × 2 stages; backward VJP recomputes both base steps' stages.
    assert_eq!(full.stats.field_evals, 4 * n + 4 * n);
    assert_eq!(full.stats.vjps, 4 * n);
    assert_eq!(full.stats.peak_stored_states, n + 1);
    let rev = Adjoint::Reversible.gradient(&field, &solver, &y0, &opts, &HalfSquaredNorm).unwrap();
    // the reconstruction's evaluations are shared with the VJP: no extra work.
    assert_eq!(rev.stats.field_evals, 4 * n + 4 * n);
    assert_eq!(rev.stats.vjps, 4 * n);
    assert_eq!(rev.stats.peak_stored_states, 1);
    // One carry (y, z) of two states; a uniform grid stores no step times.
    assert_eq!(rev.stats.peak_stored_bytes, 8 * 2 * 2);
    let rk = Adjoint::FullStorage.gradient(&field, &ExplicitRk::rk4(), &y0, &opts, &HalfSquaredNorm).unwrap();
    assert_eq!((rk.stats.field_evals, rk.stats.vjps), (8 * n, 4 * n));
    // Memory of the reversible adjoint does not grow with N.
    let long = Adjoint::Reversible.gradient(&field, &solver, &y0, &SolveOptions::fixed(0.0, 1.0, 10 * n), &HalfSquaredNorm).unwrap();
    assert_eq!((long.stats.peak_stored_states, long.stats.peak_stored_bytes), (1, 8 * 2 * 2));
    // With adaptive steps the accepted times are kept (N + 1 scalars), but still one carry.
    let sol = SolveOptions::adaptive(0.0, 1.0, 1e-6, 1e-6);
    let ad = Adjoint::Reversible.gradient(&field, &Reversible::new(ExplicitRk::bosh3(), 0.999).unwrap(), &y0, &sol, &HalfSquaredNorm).unwrap();
    assert_eq!(ad.stats.peak_stored_states, 1);
    assert_eq!(ad.stats.peak_stored_bytes, 8 * (2 * 2 + ad.stats.accepted_steps + 1));
}

#[test]
fn full_storage_agrees_with_finite_differences() {
    let y0s = [vec![0.99, 0.01, 0.0], vec![1.0, 0.0], vec![1.0, 0.2, 0.0, -0.1], vec![0.5, 0.1, 0.0, 0.0], vec![0.2, -0.4]];
    let mut fields: Vec<(Box<dyn VectorField>, f64)> = vec![
        (Box::new(Sir { b: 0.6, k: 0.1 }), 10.0),
        (Box::new(WhiteDwarf::default()), 3.0),
        (Box::new(CoupledOscillator { k: 1.0, kc: 0.3 }), 3.0),
        (Box::new(DoublePendulum { g_over_l: 9.81 }), 1.0),
        (Box::new(mlp(true, 2)), 1.0),
    ];
    let solvers: Vec<Box<dyn Solver>> = vec![Box::new(ExplicitRk::rk4()), Box::new(Reversible::new(ExplicitRk::midpoint(), 0.999).unwrap()), Box::new(ReversibleHeun), Box::new(AsyncLeapfrog::default())];
    for ((field, t1), y0) in fields.iter_mut().zip(&y0s) {
        for solver in &solvers {
            let opts = SolveOptions::fixed(0.0, *t1, 100).save_at(SaveAt::Times(vec![*t1 / 2.0, *t1]));
            let loss = many_times_loss(2, y0.len());
            let r = gradcheck(field.as_mut(), solver.as_ref(), y0, &opts, &loss, &GradCheckOptions { adjoint: Adjoint::FullStorage, eps: 1e-5, max_params: 12 }).unwrap();
            assert!(r.max_rel_err < 1e-6, "{} / {}: {:e}", field.name(), solver.name(), r.max_rel_err);
        }
    }
}

#[test]
fn continuous_adjoint_error_shrinks_with_the_step_at_the_solver_order() {
    let field = mlp(false, 4);
    let y0 = [0.7, -0.5];
    let mut errs = Vec::new();
    let hs: [f64; 4] = [1.0 / 10.0, 1.0 / 20.0, 1.0 / 40.0, 1.0 / 80.0];
    for &h in &hs {
        let n = (2.0 / h).round() as usize;
        let opts = SolveOptions::fixed(0.0, 2.0, n);
        let (a, b) = both(&field, &ExplicitRk::midpoint(), &y0, &opts, &HalfSquaredNorm, Adjoint::Backsolve);
        let e = rel_err(&b.d_theta, &a.d_theta);
        assert!(e > 1e-12, "the continuous adjoint is not exact: {e:e}");
        errs.push(e);
    }
    let p = slope(&hs, &errs);
    assert!((p - 2.0).abs() < 0.3, "errors {errs:?}, slope {p}");
}

/// Run `n` steps of `h` forwards, then `n` exact inverse steps, and return |y_rec - y0|.
fn round_trip_error(solver: &dyn Solver, field: &dyn VectorField, y0: &[f64], h: f64, n: usize) -> f64 {
    use revlib::field::OdeTerm;
    let term = OdeTerm(field);
    let rev = solver.as_reversible().unwrap();
    let len = solver.carry_len(&term, y0.len());
    let (mut c, mut next) = (vec![0.0; len], vec![0.0; len]);
    solver.init(&term, 0.0, y0, &mut c).unwrap();
    for i in 0..n {
        solver.step(Step::new(&term, y0.len(), i as f64 * h, (i + 1) as f64 * h), &c, &mut next, None).unwrap();
        std::mem::swap(&mut c, &mut next);
    }
    for i in (0..n).rev() {
        rev.reverse_step(Step::new(&term, y0.len(), i as f64 * h, (i + 1) as f64 * h), &c, &mut next).unwrap();
        std::mem::swap(&mut c, &mut next);
    }
    c[..y0.len()].iter().zip(y0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

#[test]
fn reversible_heun_and_leapfrog_amplify_round_off_on_dissipative_problems() {
    // y' = -y with h = 0.3: the parasitic mode of reversible Heun / ALF (η = 1) is multiplied
    // by |w - sqrt(w² + 1)| ≈ 1.34 per reconstructed step, so round-off grows geometrically.
    let field = Linear::scalar(-1.0);
    for solver in [Box::new(ReversibleHeun) as Box<dyn Solver>, Box::new(AsyncLeapfrog::default())] {
        let short = round_trip_error(&*solver, &field, &[0.7], 0.3, 10);
        let long = round_trip_error(&*solver, &field, &[0.7], 0.3, 120);
        println!("{}: round trip error {short:e} (10 steps) -> {long:e} (120 steps)", solver.name());
        assert!(short < 1e-12 && long > 1e-3, "{}: {short:e} -> {long:e}", solver.name());
    }
}

#[test]
fn reversible_heun_and_leapfrog_are_unstable_forward_where_mcallum_foster_is_stable() {
    // Same problem and steps (w = hα = -0.3): the exact solution decays to e^{-36}. The
    // classical schemes' recurrences have determinant -1, so one eigenvalue leaves the unit
    // disc; McCallum–Foster Euler with λ = 0.5 is stable on the real interval (λ - 1, 0).
    let field = Linear::scalar(-1.0);
    let opts = SolveOptions::fixed(0.0, 36.0, 120);
    for solver in [Box::new(ReversibleHeun) as Box<dyn Solver>, Box::new(AsyncLeapfrog::default())] {
        let y = solve(&field, &*solver, &[0.7], &opts).unwrap().ys[0][0];
        assert!(y.abs() > 1.0, "{}: |y_N| = {y:e}", solver.name());
    }
    let mf = Reversible::new(ExplicitRk::euler(), 0.5).unwrap();
    let y = solve(&field, &mf, &[0.7], &opts).unwrap().ys[0][0];
    assert!(y.abs() < 1e-6, "{y:e}");
}

#[test]
#[cfg(feature = "nn")]
fn mlp_fast_path_matches_dfdx() {
    // Batch 4 (plain loops), batch 100 (GEMM, split over two threads), width 40 (GEMM).
    for (time_input, batch, width) in [(false, 4, 8), (true, 4, 8), (true, 100, 8), (false, 100, 40)] {
        let cfg = MlpConfig { dim: 3, width, depth: 2, time_input };
        let fast = Mlp::new(cfg, 9).unwrap();
        let slow = DfdxMlp::new(cfg, 9).unwrap();
        let len = 3 * batch;
        let y: Vec<f64> = (0..len).map(|i| (i as f64 * 0.37).sin()).collect();
        let a: Vec<f64> = (0..len).map(|i| (i as f64 * 0.11).cos()).collect();
        let (mut f1, mut f2) = (vec![0.0; len], vec![0.0; len]);
        fast.eval(0.3, &y, &mut f1).unwrap();
        slow.eval(0.3, &y, &mut f2).unwrap();
        assert!(rel_err(&f1, &f2) < 1e-13);
        let (mut ay1, mut ay2) = (vec![0.0; len], vec![0.0; len]);
        let (mut at1, mut at2) = (vec![0.0; cfg.n_params()], vec![0.0; cfg.n_params()]);
        fast.vjp(0.3, &y, &a, &mut ay1, &mut at1).unwrap();
        slow.vjp(0.3, &y, &a, &mut ay2, &mut at2).unwrap();
        assert!(rel_err(&ay1, &ay2) < 1e-13 && rel_err(&at1, &at2) < 1e-13);
        // The saved-activation path gives the same VJP.
        let (mut saved, mut f3, mut ay3, mut at3) = (Vec::new(), vec![0.0; len], vec![0.0; len], vec![0.0; cfg.n_params()]);
        fast.eval_save(0.3, &y, &mut f3, &mut saved).unwrap();
        fast.vjp_saved(&saved, &a, &mut ay3, &mut at3).unwrap();
        assert_eq!((f3, ay3, at3), (f1.clone(), ay1.clone(), at1.clone()));
    }
}

#[test]
fn closed_form_vjps_match_finite_differences_of_the_field() {
    let fields: Vec<(Box<dyn VectorField>, Vec<f64>)> = vec![
        (Box::new(Linear::new(2, vec![0.3, -1.0, 0.7, 0.1]).unwrap()), vec![0.4, -0.2, 1.0, 0.5]),
        (Box::new(Sir { b: 0.5, k: 0.2 }), vec![0.8, 0.15, 0.05]),
        (Box::new(WhiteDwarf::default()), vec![0.9, -0.1]),
        (Box::new(CoupledOscillator { k: 1.2, kc: 0.4 }), vec![0.1, -0.3, 0.5, 0.2]),
        (Box::new(DoublePendulum { g_over_l: 5.0 }), vec![0.7, -1.1, 0.4, 2.0]),
        (Box::new(mlp(true, 8)), vec![0.2, 0.9]),
    ];
    for (mut f, y) in fields {
        let n = y.len();
        let a: Vec<f64> = (0..n).map(|i| 1.0 - 0.3 * i as f64).collect();
        let mut ay = vec![0.0; n];
        let mut at = vec![0.0; f.n_params()];
        f.vjp(0.7, &y, &a, &mut ay, &mut at).unwrap();
        let dot = |f: &dyn VectorField, y: &[f64]| {
            let mut o = vec![0.0; n];
            f.eval(0.7, y, &mut o).unwrap();
            o.iter().zip(&a).map(|(x, w)| x * w).sum::<f64>()
        };
        let h = 1e-6;
        for i in 0..n {
            let (mut p, mut m) = (y.clone(), y.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (dot(&*f, &p) - dot(&*f, &m)) / (2.0 * h);
            assert!((fd - ay[i]).abs() < 1e-7 * (1.0 + fd.abs()), "{} ∂y{i}: {fd} vs {}", f.name(), ay[i]);
        }
        let theta = f.params();
        for j in 0..theta.len() {
            let mut th = theta.clone();
            th[j] += h;
            f.set_params(&th).unwrap();
            let lp = dot(&*f, &y);
            th[j] -= 2.0 * h;
            f.set_params(&th).unwrap();
            let lm = dot(&*f, &y);
            f.set_params(&theta).unwrap();
            let fd = (lp - lm) / (2.0 * h);
            assert!((fd - at[j]).abs() < 1e-7 * (1.0 + fd.abs()), "{} ∂θ{j}: {fd} vs {}", f.name(), at[j]);
        }
    }
}
