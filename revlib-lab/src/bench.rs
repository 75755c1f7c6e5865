//! The gradient benchmark: one case per process, JSON lines.
//!
//! Problem: $y' = \mathrm{MLP}(y)$ with $D = 2$, two tanh hidden layers of width $W = 64$,
//! explicit midpoint on $[0, 1]$ with $N$ steps, loss $\tfrac12\|y(1)\|^2$ summed over a
//! batch of $B$ initial states. Each case runs in a fresh process (see the `revlib bench`
//! command) so that its peak RSS is its own.
//!
//! Roofline: every line carries the gradient's matrix-product FLOPs, counted from its own
//! evaluation counters ([`gradient_flops`]), and the GFLOP/s they were done at; [`gemm_rate`]
//! measures what this machine's GEMM reaches on the same shapes and on a large square product
//! (`revlib bench --peak`), the ceiling a gradient is judged against.

use revlib::adjoint::{checkpoint::revolve_recomputations, rel_err, Adjoint};
use crate::error::Result;
use revlib::field::{Mlp, MlpConfig};
use revlib::integrate::SolveOptions;
use revlib::loss::HalfSquaredNorm;
use revlib::solver::{ExplicitRk, Reversible, Solver};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

use crate::provenance::peak_rss_bytes;

/// One benchmark case.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Case {
    /// Gradient strategy.
    pub adjoint: Adjoint,
    /// Batch size B.
    pub batch: usize,
    /// Number of steps N.
    pub steps: usize,
}

/// State dimension and hidden width of the benchmark MLP (two hidden layers).
pub const DIM: usize = 2;
/// Hidden width of the benchmark MLP.
pub const WIDTH: usize = 64;

/// FLOPs of one evaluation of the benchmark MLP on a batch: its three matrix products
/// (B×D)(D×W), (B×W)(W×W), (B×W)(W×D), two FLOPs per multiply–add. Bias additions and tanh
/// (about 3 % of the products' FLOPs at W = 64) are not counted.
pub fn eval_flops(batch: usize) -> f64 {
    2.0 * batch as f64 * (DIM * WIDTH + WIDTH * WIDTH + WIDTH * DIM) as f64
}

/// Matrix-product FLOPs of a gradient from its counters: each field evaluation is one forward
/// pass ([`eval_flops`]); each VJP adds two products per layer (the cotangents of the layer's
/// input and of its weights), twice a forward pass. A VJP whose forward pass is recomputed
/// counts that pass among the evaluations (revlib's counters do).
pub fn gradient_flops(field_evals: usize, vjps: usize, batch: usize) -> f64 {
    (field_evals as f64 + 2.0 * vjps as f64) * eval_flops(batch)
}

/// GFLOP/s of `matrixmultiply::dgemm` on an (m×k)(k×n) product, timed for at least
/// `min_seconds` (median of the repeats), on `threads` threads at once (1 or 2; each its own
/// product on its own OS thread, so two threads measure the two cores together, as the MLP
/// splits a batch; the rates are summed).
pub fn gemm_rate(m: usize, k: usize, n: usize, threads: usize, min_seconds: f64) -> f64 {
    summed_over_threads(threads, || {
        let a: Vec<f64> = (0..m * k).map(|i| ((i % 13) as f64 - 6.0) * 0.01).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i % 7) as f64 - 3.0) * 0.01).collect();
        let mut c = vec![0.0; m * n];
        let mut gemm = || {
            // SAFETY: a is m×k, b is k×n and c is m×n, all row-major with the strides given.
            unsafe { matrixmultiply::dgemm(m, k, n, 1.0, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, 0.0, c.as_mut_ptr(), n as isize, 1) }
        };
        gemm();
        let reps = {
            let t = Instant::now();
            gemm();
            ((0.05 / t.elapsed().as_secs_f64().max(1e-9)).ceil() as usize).clamp(1, 100_000)
        };
        let rate = median_rate(min_seconds, 2.0 * (m * k * n * reps) as f64, || {
            for _ in 0..reps {
                gemm();
            }
        });
        std::hint::black_box(&c);
        rate
    })
}

/// GFLOP/s of independent fused multiply–adds held in vector registers, on `threads` threads at
/// once (1 or 2, summed as in [`gemm_rate`]): this CPU's f64 arithmetic limit, which no product
/// with loads and stores reaches. Uses AVX-512 or AVX2 + FMA when the CPU has them; elsewhere
/// plain multiplies and adds (two FLOPs each pair, still counted).
pub fn fma_rate(threads: usize, min_seconds: f64) -> f64 {
    summed_over_threads(threads, || {
        let iters = 1 << 16;
        let (run, chains): (fn(usize) -> f64, usize) = fma_kernel();
        run(iters);
        median_rate(min_seconds, 2.0 * (chains * FMA_LANES * iters) as f64, || {
            std::hint::black_box(run(std::hint::black_box(iters)));
        })
    })
}

/// `one()` on this thread, or (`threads >= 2`) on this and a second OS thread at once, whatever
/// rayon's pool size, the two rates summed.
fn summed_over_threads(threads: usize, one: impl Fn() -> f64 + Sync) -> f64 {
    if threads < 2 {
        return one();
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(&one);
        one() + other.join().unwrap_or(f64::NAN)
    })
}

/// The median GFLOP/s of `call` (doing `flops` each time) over at least 5 calls and
/// `min_seconds`.
fn median_rate(min_seconds: f64, flops: f64, mut call: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut rates = Vec::new();
    while rates.len() < 5 || start.elapsed().as_secs_f64() < min_seconds {
        let t = Instant::now();
        call();
        rates.push(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Lanes per chain in [`fma_rate`]: one AVX-512 register, two AVX2 registers.
const FMA_LANES: usize = 8;

/// `C` chains of `FMA_LANES` values, each step `v = v a + b`: enough independent chains to
/// cover the FMA latency on every port.
#[inline(always)]
fn fma_chains<const C: usize, const FUSED: bool>(iters: usize) -> f64 {
    let (a, b) = (std::hint::black_box(0.999_999_9), std::hint::black_box(1e-9));
    let mut acc = [[1.0f64; FMA_LANES]; C];
    for _ in 0..iters {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                *v = if FUSED { v.mul_add(a, b) } else { *v * a + b };
            }
        }
    }
    acc.iter().flatten().sum()
}

/// The best [`fma_chains`] for this CPU and its number of chains.
fn fma_kernel() -> (fn(usize) -> f64, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512(iters: usize) -> f64 {
            fma_chains::<12, true>(iters)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(iters: usize) -> f64 {
            fma_chains::<6, true>(iters)
        }
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx2") && has!("fma") {
            // SAFETY: the CPU has the features the function is compiled for (detected above).
            return (|i| unsafe { avx512(i) }, 12);
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: as above.
            return (|i| unsafe { avx2(i) }, 6);
        }
    }
    (fma_chains::<6, false>, 6)
}

/// The benchmark field, initial states and solver for a case.
pub fn problem(case: &Case, seed: u64) -> Result<(Mlp, Vec<f64>, Box<dyn Solver>)> {
    let field = Mlp::new(MlpConfig { dim: DIM, width: WIDTH, depth: 2, time_input: false }, seed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    let y0: Vec<f64> = (0..2 * case.batch).map(|_| StandardNormal.sample(&mut rng)).collect();
    let solver: Box<dyn Solver> = match case.adjoint {
        Adjoint::Reversible | Adjoint::ReversibleEvery(_) => Box::new(Reversible::new(ExplicitRk::midpoint(), Reversible::DEFAULT_COUPLING)?),
        _ => Box::new(ExplicitRk::midpoint()),
    };
    Ok((field, y0, solver))
}

/// A rough prediction of a case's seconds per gradient from the measured full-storage time of
/// the same (B, N): the gradient costs about four forward steps per step, plus one per
/// recomputed step.
pub fn predict_seconds(case: &Case, full_storage_sec: f64) -> f64 {
    let per_step = full_storage_sec / (4.0 * case.steps as f64);
    match case.adjoint {
        Adjoint::Checkpoint(c) | Adjoint::CheckpointOnline(c) => full_storage_sec + per_step * revolve_recomputations(case.steps, c) as f64,
        _ => full_storage_sec,
    }
}

/// Run one case in this process and return its JSON line (without provenance).
pub fn run_case(case: &Case, seed: u64, min_seconds: f64) -> Result<serde_json::Value> {
    let (field, y0, solver) = problem(case, seed)?;
    let opts = SolveOptions::fixed(0.0, 1.0, case.steps);
    let t = Instant::now();
    let g = case.adjoint.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
    let first = t.elapsed().as_secs_f64();
    let reps = ((min_seconds / first.max(1e-9)).ceil() as usize).clamp(1, 500);
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        case.adjoint.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let rss = peak_rss_bytes();
    // Reference: full storage through the same discretisation (for `reversible`, through the
    // reversible scheme itself).
    let reference = Adjoint::FullStorage.gradient(&field, solver.as_ref(), &y0, &opts, &HalfSquaredNorm)?;
    let mut all = g.d_theta.clone();
    all.extend_from_slice(&g.d_y0);
    let mut all_ref = reference.d_theta.clone();
    all_ref.extend_from_slice(&reference.d_y0);
    let flops = gradient_flops(g.stats.field_evals, g.stats.vjps, case.batch);
    Ok(serde_json::json!({
        "adjoint": case.adjoint.key(),
        "B": case.batch,
        "D": DIM,
        "W": WIDTH,
        "N": case.steps,
        "solver": solver.name(),
        "sec_per_grad": times[times.len() / 2],
        "min_sec": times[0],
        "repeats": reps,
        "peak_stored_states": g.stats.peak_stored_states,
        "peak_stored_bytes": g.stats.peak_stored_bytes,
        "recomputed_steps": g.stats.recomputed_steps,
        "field_evals": g.stats.field_evals,
        "vjps": g.stats.vjps,
        "evals_per_step": g.stats.field_evals as f64 / case.steps as f64,
        "vjps_per_step": g.stats.vjps as f64 / case.steps as f64,
        "gemm_flops": flops,
        "gflops_per_sec": flops / times[times.len() / 2] / 1e9,
        "peak_rss_bytes": rss,
        "rel_grad_err": rel_err(&all, &all_ref),
    }))
}

/// A strategy's time as a multiple of full storage's, measured in one process by alternating the
/// two gradients (after a warm-up of each) for at least `min_seconds` and at least 5 rounds:
/// the median of the per-round ratios, and the number of rounds. Alternating cancels what a
/// busy machine does to both alike (frequency, other tenants), which separate processes timed
/// one after the other do not.
///
/// # Errors
/// From the gradients.
pub fn paired_ratio(case: &Case, seed: u64, min_seconds: f64) -> Result<(f64, usize)> {
    let full = Case { adjoint: Adjoint::FullStorage, ..*case };
    let (field, y0, solver) = problem(case, seed)?;
    let (field_f, y0_f, solver_f) = problem(&full, seed)?;
    let opts = SolveOptions::fixed(0.0, 1.0, case.steps);
    let time = |a: Adjoint, f: &Mlp, y: &[f64], s: &dyn Solver| -> Result<f64> {
        let t = Instant::now();
        a.gradient(f, s, y, &opts, &HalfSquaredNorm)?;
        Ok(t.elapsed().as_secs_f64())
    };
    time(Adjoint::FullStorage, &field_f, &y0_f, solver_f.as_ref())?;
    time(case.adjoint, &field, &y0, solver.as_ref())?;
    let start = Instant::now();
    let mut ratios = Vec::new();
    while ratios.len() < 5 || (start.elapsed().as_secs_f64() < min_seconds && ratios.len() < 500) {
        let f = time(Adjoint::FullStorage, &field_f, &y0_f, solver_f.as_ref())?;
        let c = time(case.adjoint, &field, &y0, solver.as_ref())?;
        ratios.push(c / f.max(1e-12));
    }
    ratios.sort_by(f64::total_cmp);
    Ok((ratios[ratios.len() / 2], ratios.len()))
}

/// A case of a benchmark line: (B, N, strategy key).
pub type CaseKey = (usize, usize, String);

/// Each strategy's time as a multiple of full storage's at the same (B, N), from benchmark
/// lines: the in-process `paired_ratio` when the line has one ([`paired_ratio`], `revlib bench
/// --paired`), else the ratio of the fastest repeats of the two separate processes (skipped
/// cases and cases without a full-storage line are left out). Ratios survive a machine that is
/// uniformly slower, absolute times do not.
pub fn time_ratios(lines: &[serde_json::Value]) -> Vec<(CaseKey, f64)> {
    let key = |v: &serde_json::Value| -> Option<CaseKey> { Some((v["B"].as_u64()? as usize, v["N"].as_u64()? as usize, v["adjoint"].as_str()?.to_string())) };
    let secs = |v: &serde_json::Value| v["min_sec"].as_f64().or_else(|| v["sec_per_grad"].as_f64());
    let full: Vec<(CaseKey, f64)> = lines.iter().filter_map(|v| Some((key(v)?, secs(v)?))).filter(|(k, _)| k.2 == "full_storage").collect();
    lines
        .iter()
        .filter_map(|v| {
            let k = key(v)?;
            if let (Some(r), true) = (v["paired_ratio"].as_f64(), k.2 != "full_storage") {
                return Some((k, r));
            }
            let sec = secs(v)?;
            let (_, f) = full.iter().find(|(fk, _)| fk.0 == k.0 && fk.1 == k.1)?;
            (k.2 != "full_storage" && *f > 0.0).then(|| (k, sec / f))
        })
        .collect()
}

/// A strategy slower, relative to full storage, than in the baseline by more than the tolerance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Regression {
    /// The case.
    pub case: CaseKey,
    /// Time ÷ full storage in the baseline.
    pub baseline: f64,
    /// Time ÷ full storage now.
    pub now: f64,
}

/// The outcome of comparing a run with a baseline.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Cases whose time ÷ full storage grew by more than the tolerance.
    pub regressions: Vec<Regression>,
    /// Baseline cases this run did not measure (a check that skips them would be vacuous).
    pub missing: Vec<CaseKey>,
}

impl Comparison {
    /// No regression and nothing missing.
    pub fn passed(&self) -> bool {
        self.regressions.is_empty() && self.missing.is_empty()
    }
}

/// Compare the ratios of `current` with those of `baseline`: every case of the baseline must be
/// measured now, and none may have grown by more than `tolerance` (0.2 = 20 %).
pub fn compare(baseline: &[serde_json::Value], current: &[serde_json::Value], tolerance: f64) -> Comparison {
    let now = time_ratios(current);
    let mut out = Comparison::default();
    for (case, base) in time_ratios(baseline) {
        match now.iter().find(|(k, _)| *k == case) {
            None => out.missing.push(case),
            Some((_, r)) if *r > base * (1.0 + tolerance) => out.regressions.push(Regression { case, baseline: base, now: *r }),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flops_follow_the_counters() {
        // B = 256: 2 · 256 · (128 + 4096 + 128) = 2 228 224 FLOPs per evaluation.
        assert_eq!(eval_flops(256), 2_228_224.0);
        // Full storage with midpoint, N = 1000: 2000 forward evaluations, 2000 recomputed in the
        // VJPs, 2000 VJPs: 8000 forward-pass equivalents.
        assert_eq!(gradient_flops(4000, 2000, 256), 8000.0 * 2_228_224.0);
        // The counters of a real gradient give the same count as its evaluations say.
        let case = Case { adjoint: Adjoint::FullStorage, batch: 4, steps: 10 };
        let line = run_case(&case, 0, 0.0).expect("a small gradient");
        let (evals, vjps) = (line["field_evals"].as_u64().unwrap_or(0) as usize, line["vjps"].as_u64().unwrap_or(0) as usize);
        assert_eq!((evals, vjps), (40, 20), "midpoint full storage: 4 evaluations and 2 VJPs per step");
        assert_eq!(line["gemm_flops"].as_f64(), Some(gradient_flops(evals, vjps, 4)));
        assert_eq!(line["evals_per_step"].as_f64(), Some(4.0));
        assert!(line["gflops_per_sec"].as_f64().is_some_and(|r| r > 0.0));
    }

    #[test]
    fn both_reversible_strategies_run_the_reversible_scheme() {
        for adjoint in [Adjoint::Reversible, Adjoint::ReversibleEvery(3)] {
            let line = run_case(&Case { adjoint, batch: 4, steps: 10 }, 0, 0.0).expect("a small reversible gradient");
            assert!(line["solver"].as_str().is_some_and(|s| s.starts_with("ReversibleMidpoint")), "{adjoint:?}: {}", line["solver"]);
            assert!(line["rel_grad_err"].as_f64().is_some_and(|e| e < 1e-12), "{adjoint:?}: {}", line["rel_grad_err"]);
        }
    }

    #[test]
    fn gemm_and_fma_rates_are_positive_rates() {
        let r = gemm_rate(32, 32, 32, 1, 0.0);
        assert!(r.is_finite() && r > 0.01, "{r}");
        let f = fma_rate(1, 0.0);
        assert!(f.is_finite() && f > 0.01, "{f}");
    }

    fn line(adjoint: &str, b: usize, n: usize, sec: f64) -> serde_json::Value {
        json!({"adjoint": adjoint, "B": b, "N": n, "sec_per_grad": sec})
    }

    #[test]
    fn ratios_are_taken_against_full_storage_of_the_same_case() {
        let lines = vec![line("full_storage", 16, 200, 0.5), line("reversible", 16, 200, 1.0), line("full_storage", 1, 200, 0.1), line("reversible", 1, 200, 0.15),
            json!({"adjoint": "checkpoint_2", "B": 16, "N": 200, "skipped": "too slow"})];
        let r = time_ratios(&lines);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0.clone(), r[1].0.clone()), ((16, 200, "reversible".to_string()), (1, 200, "reversible".to_string())));
        assert!((r[0].1 - 2.0).abs() < 1e-12 && (r[1].1 - 1.5).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn a_uniformly_slower_machine_is_not_a_regression_but_a_slower_strategy_is() {
        let base = vec![line("full_storage", 16, 200, 0.5), line("reversible", 16, 200, 1.0), line("checkpoint_8", 16, 200, 0.8)];
        let slower_machine: Vec<_> = base.iter().map(|v| { let mut v = v.clone(); v["sec_per_grad"] = json!(v["sec_per_grad"].as_f64().unwrap() * 3.0); v }).collect();
        assert!(compare(&base, &slower_machine, 0.2).passed());
        // Reversible 25 % slower relative to full storage: flagged; checkpoint 10 % slower: within tolerance.
        let now = vec![line("full_storage", 16, 200, 0.5), line("reversible", 16, 200, 1.25), line("checkpoint_8", 16, 200, 0.88)];
        let c = compare(&base, &now, 0.2);
        let r = &c.regressions;
        assert!(!c.passed() && c.missing.is_empty());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].case.2, "reversible");
        assert!((r[0].now - 2.5).abs() < 1e-12 && (r[0].baseline - 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_baseline_case_that_was_not_measured_fails_the_check() {
        let base = vec![line("full_storage", 16, 200, 0.5), line("reversible", 16, 200, 1.0)];
        let now = vec![line("full_storage", 16, 200, 0.5)];
        let c = compare(&base, &now, 0.2);
        assert!(!c.passed() && c.regressions.is_empty());
        assert_eq!(c.missing, vec![(16, 200, "reversible".to_string())]);
    }
}
