//! The stability module reads the recurrence off the solvers themselves; these tests tie it
//! to iterated solutions and to the closed forms.

use num_complex::Complex64 as C;
use revlib::prelude::*;
use revlib::stability::{amplification_matrix, eigenvalues, iterated_growth, real_stable_intervals, region, spectral_radius};

fn bases() -> Vec<ExplicitRk> {
    vec![ExplicitRk::euler(), ExplicitRk::midpoint(), ExplicitRk::ralston3(), ExplicitRk::rk4()]
}

fn schemes() -> Vec<Box<dyn Solver>> {
    let mut v: Vec<Box<dyn Solver>> = Vec::new();
    for b in bases() {
        v.push(Box::new(b.clone()));
        for l in [0.8, 0.999] {
            v.push(Box::new(Reversible::new(b.clone(), l).unwrap()));
        }
    }
    v.push(Box::new(ReversibleHeun));
    v.push(Box::new(AsyncLeapfrog::default()));
    v.push(Box::new(AsyncLeapfrog::new(0.9).unwrap()));
    v
}

#[test]
fn iterated_solver_grows_like_the_spectral_radius() {
    let ws = [C::new(-0.1, 0.5), C::new(-0.3, 0.0), C::new(-1.0, 1.0), C::new(-2.2, 0.0), C::new(0.0, 0.8), C::new(-0.05, 2.0), C::new(0.2, -0.4)];
    for s in schemes() {
        for &w in &ws {
            let rho = spectral_radius(&*s, w).unwrap();
            let g = iterated_growth(&*s, w, 3000).unwrap();
            assert!((g - rho).abs() < 5e-3 * rho.max(0.1), "{} at {w}: ρ = {rho}, iterated {g}", s.name());
        }
    }
}

#[test]
fn runge_kutta_radius_is_the_stability_function() {
    for b in bases() {
        for w in [C::new(-0.7, 0.3), C::new(-2.5, 0.0), C::new(0.1, 1.7)] {
            let (re, im) = b.tableau().stability_function((w.re, w.im));
            let rho = spectral_radius(&b, w).unwrap();
            assert!((rho - C::new(re, im).norm()).abs() < 1e-13, "{}", b.name());
        }
    }
}

#[test]
fn mcallum_foster_determinant_is_lambda_everywhere() {
    for b in bases() {
        for l in [0.3, 0.8, 0.999] {
            let s = Reversible::new(b.clone(), l).unwrap();
            for w in [C::new(-0.7, 0.3), C::new(-2.5, 0.0), C::new(0.4, 1.7), C::new(-3.0, -3.0)] {
                let (m, a) = amplification_matrix(&s, w).unwrap();
                assert_eq!(m, 2);
                let det = a[0] * a[3] - a[1] * a[2];
                assert!((det - C::new(l, 0.0)).norm() < 1e-12 * (1.0 + a.iter().map(|z| z.norm()).fold(0.0, f64::max).powi(2)), "{} w = {w}: det {det}", s.name());
            }
        }
    }
}

#[test]
fn reversible_heun_and_undamped_leapfrog_are_nowhere_strictly_stable() {
    for s in [Box::new(ReversibleHeun) as Box<dyn Solver>, Box::new(AsyncLeapfrog::default())] {
        let r = region(&*s, (-3.0, -1e-3), (-3.0, 3.0), 61, 61).unwrap();
        let min = r.rho.iter().flatten().fold(f64::INFINITY, |m, &v| m.min(v));
        assert!(min >= 1.0 - 1e-12, "{}: min ρ = {min}", s.name());
        // On the imaginary segment |w| < 1 they are marginally stable (ρ = 1).
        assert!((spectral_radius(&*s, C::new(0.0, 0.5)).unwrap() - 1.0).abs() < 1e-12);
    }
    // Damping (η < 1) makes ALF strictly stable somewhere: det = 1 - 2η.
    let damped = AsyncLeapfrog::new(0.9).unwrap();
    assert!(spectral_radius(&damped, C::new(-0.1, 0.5)).unwrap() < 1.0);
}

/// Real stable intervals from the closed form: for real w, both roots of μ² − Tμ + λ lie in
/// the unit disc iff −2(1+λ) < (1 − R(−w))(R(w) − λ) < 0 (Jury), R from the tableau.
fn jury_intervals(b: &ExplicitRk, l: f64, lo: f64, samples: usize, tol: f64) -> Vec<(f64, f64)> {
    let r = |x: f64| b.tableau().stability_function((x, 0.0)).0;
    let ok = |x: f64| {
        let g = (1.0 - r(-x)) * (r(x) - l);
        g > -2.0 * (1.0 + l) && g < 0.0
    };
    let mut xs: Vec<f64> = (0..samples).map(|k| lo * (1.0 - k as f64 / samples as f64)).collect();
    xs.push(-1e-12); // resolve intervals ending at 0 narrower than the sample spacing
    let mut out = Vec::new();
    let mut start = if ok(xs[0]) { Some(lo) } else { None };
    for k in 1..xs.len() {
        if ok(xs[k]) != ok(xs[k - 1]) {
            let (mut a, mut c) = (xs[k - 1], xs[k]);
            let fa = ok(a);
            while c - a > tol {
                let m = 0.5 * (a + c);
                if ok(m) == fa {
                    a = m
                } else {
                    c = m
                }
            }
            let e = 0.5 * (a + c);
            if fa {
                if let Some(s) = start.take() {
                    out.push((s, e));
                }
            } else {
                start = Some(e);
            }
        }
    }
    if let Some(s) = start {
        out.push((s, 0.0));
    }
    out
}

#[test]
fn real_axis_intervals_match_the_jury_criterion() {
    for b in bases() {
        for l in [0.8, 0.999] {
            let s = Reversible::new(b.clone(), l).unwrap();
            let ours = real_stable_intervals(&s, -3.5, 3500, 1e-10).unwrap();
            let jury = jury_intervals(&b, l, -3.5, 3500, 1e-10);
            assert_eq!(ours.len(), jury.len(), "{}: {ours:?} vs {jury:?}", s.name());
            for (a, c) in ours.iter().zip(&jury) {
                assert!((a.0 - c.0).abs() < 1e-8 && (a.1 - c.1).abs() < 1e-8, "{}: {ours:?} vs {jury:?}", s.name());
            }
        }
    }
    // Euler's interval is (λ - 1, 0) exactly.
    let e = real_stable_intervals(&Reversible::new(ExplicitRk::euler(), 0.8).unwrap(), -3.0, 3000, 1e-12).unwrap();
    assert_eq!(e.len(), 1);
    assert!((e[0].0 + 0.2).abs() < 1e-10 && e[0].1 == 0.0, "{e:?}");
}

#[test]
fn small_coupling_enlarges_the_stable_region() {
    // The talk: "decreasing λ increases the stability region" (h = 1, Re w in [-3, 0]).
    for b in bases() {
        let mut prev = 0.0;
        for l in [0.999, 0.9, 0.8, 0.6] {
            let s = Reversible::new(b.clone(), l).unwrap();
            let f = region(&s, (-3.0, 0.0), (-3.0, 3.0), 81, 81).unwrap().stable_fraction();
            println!("{} λ = {l}: stable fraction {f:.4}", b.name());
            assert!(f >= prev, "{}: λ = {l} gives {f} < {prev}", b.name());
            prev = f;
        }
        // w = -0.1 + 0.5i is stable for all four bases at λ = 0.8 (off the real axis the region is
        // wider than its real-axis slice).
        let s = Reversible::new(b.clone(), 0.8).unwrap();
        assert!(spectral_radius(&s, C::new(-0.1, 0.5)).unwrap() < 1.0, "{}", b.name());
    }
}

#[test]
fn eigenvalues_of_known_matrices() {
    let z = |a: f64, b: f64| C::new(a, b);
    let ev = eigenvalues(2, &[z(2.0, 0.0), z(1.0, 0.0), z(0.0, 0.0), z(3.0, 0.0)]);
    let mut re: Vec<f64> = ev.iter().map(|e| e.re).collect();
    re.sort_by(f64::total_cmp);
    assert!((re[0] - 2.0).abs() < 1e-12 && (re[1] - 3.0).abs() < 1e-12);
    let ev = eigenvalues(3, &[z(0.0, 0.0), z(-1.0, 0.0), z(0.0, 0.0), z(1.0, 0.0), z(0.0, 0.0), z(0.0, 0.0), z(0.0, 0.0), z(0.0, 0.0), z(0.5, 0.5)]);
    let mut mods: Vec<f64> = ev.iter().map(|e| e.norm()).collect();
    mods.sort_by(f64::total_cmp);
    assert!((mods[0] - 0.5f64.sqrt()).abs() < 1e-12 && (mods[2] - 1.0).abs() < 1e-12, "{ev:?}");
}
