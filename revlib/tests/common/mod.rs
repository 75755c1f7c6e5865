//! Shared test problems and helpers.
#![allow(dead_code)]

use revlib::prelude::*;

/// Small neural field used across gradient tests.
pub fn mlp(time_input: bool, seed: u64) -> Mlp {
    Mlp::new(MlpConfig { dim: 2, width: 16, depth: 2, time_input }, seed).unwrap()
}

/// Every explicit RK method.
pub fn all_rk() -> Vec<ExplicitRk> {
    ButcherTableau::all().into_iter().map(ExplicitRk::new).collect()
}

/// The reversible solvers under test, with names.
pub fn reversible_solvers() -> Vec<Box<dyn Solver>> {
    vec![
        Box::new(Reversible::new(ExplicitRk::euler(), 0.999).unwrap()),
        Box::new(Reversible::new(ExplicitRk::midpoint(), 0.999).unwrap()),
        Box::new(Reversible::new(ExplicitRk::ralston3(), 0.9).unwrap()),
        Box::new(Reversible::new(ExplicitRk::rk4(), 0.999).unwrap()),
        Box::new(Reversible::new(ExplicitRk::bosh3(), 0.999).unwrap()),
        Box::new(Reversible::new(ExplicitRk::dopri5(), 0.999).unwrap()),
        Box::new(ReversibleHeun),
        Box::new(AsyncLeapfrog::default()),
    ]
}

/// Losses: final state only, and the state at several times (MSE to a target).
pub fn many_times_loss(n_out: usize, len: usize) -> Mse {
    Mse { targets: (0..n_out).map(|k| (0..len).map(|i| 0.1 * (k as f64) - 0.05 * i as f64).collect()).collect() }
}

/// Least-squares slope of log(err) against log(h).
pub fn slope(hs: &[f64], errs: &[f64]) -> f64 {
    let xs: Vec<f64> = hs.iter().map(|h| h.ln()).collect();
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}
