//! Gradients that would lie are errors or carry a certificate: non-finite losses, cotangents
//! and gradients under every strategy; the reversible adjoint's reconstruction certificate
//! (ODE and RevDEQ) against the true gradient error; the hybrid that restores exactness.

mod common;
use common::*;
use revlib::deq::{backward, fixed_point, DeqBackward, FixedPointOptions, FixedPointSolver, TanhMap};
use revlib::prelude::*;

/// A field that is `inner` except that its VJP returns NaN for times after `t_bad`.
struct NanVjp<F> {
    inner: F,
    t_bad: f64,
}

impl<F: VectorField> VectorField for NanVjp<F> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn n_params(&self) -> usize {
        self.inner.n_params()
    }
    fn params(&self) -> Vec<f64> {
        self.inner.params()
    }
    fn set_params(&mut self, theta: &[f64]) -> revlib::Result<()> {
        self.inner.set_params(theta)
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> revlib::Result<()> {
        self.inner.eval(t, y, out)
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> revlib::Result<()> {
        self.inner.vjp(t, y, a, a_y, a_theta)?;
        if t > self.t_bad {
            a_y[0] = f64::NAN;
        }
        Ok(())
    }
}

fn strategies() -> [Adjoint; 5] {
    [Adjoint::FullStorage, Adjoint::Checkpoint(4), Adjoint::Backsolve, Adjoint::Reversible, Adjoint::ReversibleEvery(10)]
}

#[test]
fn a_nan_in_a_vjp_is_an_error_naming_the_strategy_and_the_step() {
    let field = NanVjp { inner: mlp(true, 3), t_bad: 0.5 };
    let solver = Reversible::new(ExplicitRk::midpoint(), 0.999).unwrap();
    let opts = SolveOptions::fixed(0.0, 1.0, 40);
    for adj in strategies() {
        match adj.gradient(&field, &solver, &[0.5, -0.3], &opts, &HalfSquaredNorm) {
            Err(Error::NonFiniteGradient { strategy, step, t, .. }) => {
                assert_eq!(strategy, adj.key());
                // The first NaN appears in the backward pass of a step that starts after t = 0.5.
                assert!((20..40).contains(&step) && t >= 0.5, "{strategy}: step {step}, t {t}");
            }
            other => panic!("{}: expected NonFiniteGradient, got {other:?}", adj.key()),
        }
    }
}

#[test]
fn an_overflowing_loss_is_an_error() {
    let field = mlp(true, 3);
    let solver = Reversible::new(ExplicitRk::midpoint(), 0.999).unwrap();
    let opts = SolveOptions::fixed(0.0, 1.0, 10);
    for adj in strategies() {
        // Finite states, but ½‖y‖² overflows to infinity.
        match adj.gradient(&field, &solver, &[1e200, 1e200], &opts, &HalfSquaredNorm) {
            Err(Error::NonFiniteGradient { what: "loss", step: 10, .. }) | Err(Error::NonFiniteState { .. }) => {}
            other => panic!("{}: expected a non-finite loss error, got {other:?}", adj.key()),
        }
    }
}

/// $y' = -k\,(y - \cos t)$: forwards the state relaxes onto cos t; backwards in time any
/// deviation from it grows by $1 + kh$ per Euler step.
struct Tracking {
    k: f64,
}

impl VectorField for Tracking {
    fn dim(&self) -> usize {
        1
    }
    fn n_params(&self) -> usize {
        1
    }
    fn params(&self) -> Vec<f64> {
        vec![self.k]
    }
    fn set_params(&mut self, theta: &[f64]) -> revlib::Result<()> {
        self.k = theta[0];
        Ok(())
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> revlib::Result<()> {
        for (o, v) in out.iter_mut().zip(y) {
            *o = -self.k * (v - t.cos());
        }
        Ok(())
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> revlib::Result<()> {
        for ((ay, v), ai) in a_y.iter_mut().zip(y).zip(a) {
            *ay = -self.k * ai;
            a_theta[0] -= ai * (v - t.cos());
        }
        Ok(())
    }
}

#[test]
fn a_diverging_backsolve_is_an_error_not_nan() {
    // Stable forwards with Euler at kh = 0.2; the continuous adjoint re-solves the state
    // backwards, where the O(h) tracking error grows by 1.2 per step: 1.2^5000 overflows.
    let field = Tracking { k: 200.0 };
    let opts = SolveOptions::fixed(0.0, 5.0, 5000);
    match Adjoint::Backsolve.gradient(&field, &ExplicitRk::euler(), &[1.0], &opts, &HalfSquaredNorm) {
        Err(Error::NonFiniteGradient { strategy, what: "cotangent", step, .. }) => {
            assert_eq!(strategy, "backsolve");
            assert!(step < 5000 - 1000, "1.2^k passes 1e308 after ~3900 steps, not at step {step}");
        }
        other => panic!("expected NonFiniteGradient, got {other:?}"),
    }
    // The exact strategies differentiate the stable forward pass: finite, and equal.
    let a = Adjoint::FullStorage.gradient(&field, &ExplicitRk::euler(), &[1.0], &opts, &HalfSquaredNorm).unwrap();
    let b = Adjoint::Checkpoint(8).gradient(&field, &ExplicitRk::euler(), &[1.0], &opts, &HalfSquaredNorm).unwrap();
    assert!(a.d_theta[0].is_finite() && rel_err(&b.d_theta, &a.d_theta) < 1e-12);
}

/// Reversible midpoint on a neural field over [0, 1] with `n` steps: (gradient error against
/// full storage, certificate), with the certificate reported rather than refused.
fn certificate_and_error(lambda: f64, n: usize, adj: Adjoint) -> (f64, f64) {
    let field = mlp(true, 3);
    let solver = Reversible::new(ExplicitRk::midpoint(), lambda).unwrap();
    let y0 = [0.5, -0.3];
    let opts = SolveOptions::fixed(0.0, 1.0, n);
    let report = GradientChecks { on_inexact: OnInexact::Report, ..GradientChecks::default() };
    let exact = Adjoint::FullStorage.gradient(&field, &solver, &y0, &opts, &HalfSquaredNorm).unwrap();
    let g = adj.gradient_checked(&field, &solver, &y0, &opts, &HalfSquaredNorm, &report).unwrap();
    let err = rel_err(&g.d_theta, &exact.d_theta).max(rel_err(&g.d_y0, &exact.d_y0));
    (err, g.stats.reconstruction_error)
}

#[test]
fn the_certificate_is_tiny_when_the_gradient_is_exact_and_large_when_it_is_not() {
    let mut seen_inexact = false;
    for lambda in [0.3, 0.5, 0.7, 0.9, 0.99, 0.999] {
        let (err, cert) = certificate_and_error(lambda, 200, Adjoint::Reversible);
        eprintln!("λ = {lambda}: gradient error {err:.1e}, certificate {cert:.1e}");
        if cert <= GradientChecks::DEFAULT_RECONSTRUCTION_TOL {
            assert!(err < 1e-6, "λ = {lambda}: certified ({cert:e}) but the gradient is off by {err:e}");
        }
        if err > 1e-6 {
            seen_inexact = true;
            assert!(cert > GradientChecks::DEFAULT_RECONSTRUCTION_TOL, "λ = {lambda}: gradient off by {err:e}, certificate only {cert:e}");
        }
    }
    let (err, cert) = certificate_and_error(0.999, 200, Adjoint::Reversible);
    assert!(cert < 1e-13 && err < 1e-12, "λ = 0.999: certificate {cert:e}, error {err:e}");
    assert!(seen_inexact, "the sweep must include an inexact reconstruction");
    // By default an inexact reconstruction is refused, with the numbers.
    let field = mlp(true, 3);
    let solver = Reversible::new(ExplicitRk::midpoint(), 0.3).unwrap();
    match Adjoint::Reversible.gradient(&field, &solver, &[0.5, -0.3], &SolveOptions::fixed(0.0, 1.0, 200), &HalfSquaredNorm) {
        Err(Error::InexactReconstruction { error, tol, step: 0 }) => assert!(error > tol && tol == GradientChecks::DEFAULT_RECONSTRUCTION_TOL),
        other => panic!("expected InexactReconstruction, got {other:?}"),
    }
}

#[test]
fn storing_a_carry_every_k_steps_buys_exactness_back() {
    let (err, cert) = certificate_and_error(0.3, 200, Adjoint::Reversible);
    assert!(err > 1e-3 && cert > 1e-3, "plain reversible at λ = 0.3 should fail: error {err:e}, certificate {cert:e}");
    let (err, cert) = certificate_and_error(0.3, 200, Adjoint::ReversibleEvery(5));
    assert!(err <= 1e-10 && cert <= 1e-10, "hybrid K = 5: error {err:e}, certificate {cert:e}");
    // Memory: the working carry plus the carries at steps K, 2K, … below N.
    let field = mlp(true, 3);
    let solver = Reversible::new(ExplicitRk::midpoint(), 0.3).unwrap();
    let g = Adjoint::ReversibleEvery(5).gradient(&field, &solver, &[0.5, -0.3], &SolveOptions::fixed(0.0, 1.0, 200), &HalfSquaredNorm).unwrap();
    assert_eq!(g.stats.peak_stored_states, 1 + (200 - 1) / 5);
    assert_eq!(Adjoint::from_key("reversible_every_5").unwrap(), Adjoint::ReversibleEvery(5));
    assert!(Adjoint::ReversibleEvery(0).gradient(&field, &solver, &[0.5, -0.3], &SolveOptions::fixed(0.0, 1.0, 10), &HalfSquaredNorm).is_err());
}

#[test]
fn the_revdeq_backward_certifies_its_reconstruction() {
    let f = TanhMap::random(6, 0.8, 1, 11).unwrap();
    let x: Vec<f64> = (0..6).map(|i| 0.3 * (i as f64) - 0.7).collect();
    let dz = vec![1.0; 6];
    let cert = |beta: f64, iters: usize| {
        let opts = FixedPointOptions { tol: 0.0, max_steps: iters, strict: false };
        let fp = fixed_point(&f, &x, FixedPointSolver::Reversible { beta }, &opts, false).unwrap();
        let exact = backward(&f, &x, &fixed_point(&f, &x, FixedPointSolver::Reversible { beta }, &opts, true).unwrap(), &dz, DeqBackward::Unrolled).unwrap();
        let g = backward(&f, &x, &fp, &dz, DeqBackward::Reversible).unwrap();
        (rel_err(&g.d_theta, &exact.d_theta), g.reconstruction_error)
    };
    let (err, c) = cert(0.5, 10);
    assert!(c < 1e-12 && err < 1e-10, "β = 0.5, 10 iterations: certificate {c:e}, error {err:e}");
    // β = 0.5 divides by 1 − β = 0.5 twice per iteration: round-off grows ~4× per iteration.
    let (err, c) = cert(0.5, 40);
    assert!(c > 1e-6, "β = 0.5, 40 iterations: certificate {c:e} (error {err:e})");
}

// Validation up front: bad input is an error naming the argument, never a panic or a hang.

#[test]
fn non_finite_output_times_are_refused() {
    let f = revlib::field::Linear::scalar(-1.0);
    for bad in [vec![f64::NAN], vec![0.5, f64::NAN], vec![f64::INFINITY]] {
        let opts = SolveOptions::fixed(0.0, 1.0, 10).save_at(SaveAt::Times(bad.clone()));
        let err = solve(&f, &ExplicitRk::midpoint(), &[1.0], &opts).unwrap_err();
        assert!(matches!(err, Error::InvalidTimeGrid { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn a_tableau_claiming_an_unverifiable_order_is_refused_at_once() {
    let t = std::time::Instant::now();
    let err = revlib::tableau::ButcherTableau::new("claims 40", vec![vec![0.0]], vec![1.0], vec![0.0], None, 40, 0).unwrap_err();
    assert!(err.to_string().contains("checked up to 8"), "{err}");
    assert!(t.elapsed().as_secs_f64() < 1.0);
}

#[test]
fn stable_interval_search_refuses_a_tolerance_that_would_never_stop() {
    let s = ExplicitRk::euler();
    for (lo, samples, tol) in [(-3.0, 100, 0.0), (-3.0, 100, -1e-3), (-3.0, 100, f64::NAN), (-3.0, 0, 1e-6), (1.0, 100, 1e-6)] {
        let err = revlib::stability::real_stable_intervals(&s, lo, samples, tol).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{lo} {samples} {tol}: {err}");
    }
}
