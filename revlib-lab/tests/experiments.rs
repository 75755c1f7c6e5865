//! The experiment drivers of the checkpointing comparison: data loading, exactness of every
//! run's first gradient, agreement of final losses, counters, results files.
//!
//! Tests that read `../shared/data` fail when `REVLIB_REQUIRE_DATA=1` (set by `.ci/run`) and
//! the files are missing; without it they report the skip on stderr.

use revlib::adjoint::checkpoint::revolve_recomputations;
use revlib_lab::experiments::data::{data_dir, data_required, load_schmidt_lipson};
use revlib_lab::experiments::runtime::{runtime_case, sqrt_checkpoints};
use revlib_lab::experiments::train::{task_from, train, train_task, RunSpec, System};
use revlib_lab::experiments::{append_jsonl, physical_grid, published, published_value, read_jsonl, runtime_grid, white_dwarf_grid};
use revlib_lab::notebook::Mode;
use revlib::Adjoint;

fn spec(system: System, solver: &str, adjoint: Adjoint, steps: usize) -> RunSpec {
    RunSpec { system, solver: solver.into(), adjoint, seed: 0, train_steps: steps }
}

/// The Schmidt & Lipson directory, or `None` (skip) when it is absent and not required.
fn schmidt_lipson() -> Option<std::path::PathBuf> {
    let dir = data_dir().join("schmidt-lipson");
    if dir.join("real_double_pend_h_1.txt").exists() {
        return Some(dir);
    }
    assert!(!data_required(), "REVLIB_REQUIRE_DATA=1 but {} has no real_double_pend_h_1.txt", dir.display());
    eprintln!("skipped: {} not found (set REVLIB_DATA_DIR)", dir.display());
    None
}

#[test]
fn schmidt_lipson_files_load_as_documented() {
    let Some(dir) = schmidt_lipson() else { return };
    let pend = load_schmidt_lipson(&dir.join("real_double_pend_h_1.txt")).unwrap();
    assert_eq!(pend.iter().map(|t| t.t.len()).collect::<Vec<_>>(), vec![819, 701]);
    assert_eq!(pend[0].names, ["o1", "o2", "w1", "w2"]);
    assert!((pend[1].t[0] - 23.194).abs() < 1e-3 && (pend[1].t[700] - 31.634).abs() < 1e-3);
    // derivative columns dropped: 4 states per row, w1 = column 5 of the file
    assert_eq!(pend[0].states[0], vec![-1.1336150169372559, -1.3008047342300415, -0.53853881359100342, -6.1550583839416504]);
    let osc = load_schmidt_lipson(&dir.join("real_double_linear_h_1.txt")).unwrap();
    assert_eq!(osc.len(), 1);
    assert_eq!(osc[0].t.len(), 495);
    assert!((osc[0].t[0] - 0.033).abs() < 1e-12 && (osc[0].t[494] - 16.522).abs() < 1e-9);
    let (grid, s) = osc[0].resample(500, 3.0, 100.0).unwrap();
    assert_eq!(grid.len(), 500);
    assert_eq!(s[0], vec![0.0, -1.43, -1.4091579646402036, 0.40365967557297175]);
    assert!((grid[499] - 3.0).abs() < 1e-15);
    // a time between two samples is interpolated linearly: t = 0.034 (shifted 0.001) sits 1/34 of the way
    let (_, s2) = osc[0].resample(2, 0.034, 1.0).unwrap();
    assert!((s2[1][1] - (-143.0)).abs() < 1e-9);
    // the tasks read the measured files
    let t = task_from(&spec(System::Pendulum, "bosh3", Adjoint::Reversible, 1), dir.parent().unwrap(), true).unwrap();
    assert!(t.data_source.starts_with("measured"), "{}", t.data_source);
    assert_eq!(t.data_file.as_deref(), Some(dir.join("real_double_pend_h_1.txt").as_path()));
    let want = [-1.1336150169372559, -1.3008047342300415, -0.53853881359100342, -6.1550583839416504];
    assert!(t.y0.iter().zip(want).all(|(a, b)| (a - b / 10.0).abs() < 1e-15), "{:?}", t.y0);
}

#[test]
fn missing_data_falls_back_or_fails_when_required() {
    let empty = std::env::temp_dir().join("revlib-no-data-here");
    let s = spec(System::Oscillator, "midpoint", Adjoint::Reversible, 1);
    let t = task_from(&s, &empty, false).unwrap();
    assert!(t.data_source.starts_with("simulated"), "{}", t.data_source);
    assert_eq!(t.data_file, None);
    assert_eq!(t.data.1.len(), 500);
    let err = task_from(&s, &empty, true).err().expect("required data missing must be an error");
    assert!(err.to_string().contains("real_double_linear_h_1.txt"), "{err}");
}

#[test]
fn first_gradient_of_every_system_is_exact() {
    let dir = data_dir();
    for (system, solver) in [(System::WhiteDwarf, "ralston3"), (System::Oscillator, "rk4"), (System::Pendulum, "bosh3")] {
        for adjoint in [Adjoint::Reversible, Adjoint::Checkpoint(4)] {
            let s = spec(system, solver, adjoint, 2);
            let rec = train_task(&s, task_from(&s, &dir, data_required()).unwrap(), |_, _| {}).unwrap();
            assert!(rec.first_grad_rel_err < 1e-10, "{}: {}", s.key(), rec.first_grad_rel_err);
            assert!(rec.best_loss.is_finite() && rec.best_loss <= rec.losses[0]);
            if adjoint == Adjoint::Reversible {
                assert_eq!(rec.peak_stored_states, 1, "{}", s.key());
                assert_eq!(rec.recomputed_steps, 0.0);
            } else {
                assert!(rec.peak_stored_states <= 5, "{}: {}", s.key(), rec.peak_stored_states);
                assert!(rec.recomputed_steps > 0.0);
            }
        }
    }
}

#[test]
fn reversible_and_checkpointed_training_agree_to_two_digits() {
    let rev = train(&spec(System::WhiteDwarf, "midpoint", Adjoint::Reversible, 40), |_, _| {}).unwrap();
    let ck = train(&spec(System::WhiteDwarf, "midpoint", Adjoint::Checkpoint(8), 40), |_, _| {}).unwrap();
    let full = train(&spec(System::WhiteDwarf, "midpoint", Adjoint::FullStorage, 40), |_, _| {}).unwrap();
    // checkpointing is backprop through the same scheme: identical training
    assert_eq!(ck.losses, full.losses);
    // the reversible scheme (λ = 0.999) trains on its own data: equal to two significant digits
    let rel = (rev.best_loss - ck.best_loss).abs() / ck.best_loss;
    assert!(rel < 5e-3, "reversible {} vs checkpoint {}", rev.best_loss, ck.best_loss);
    assert!(rev.best_loss < 0.5 * rev.losses[0], "training must reduce the loss: {:?}", &rev.losses[..3]);
    assert_eq!(ck.recomputed_steps, revolve_recomputations(1000, 8) as f64);
    assert_eq!(rev.mean_accepted_steps, 1000.0);
}

#[test]
fn runtime_cases_report_their_costs() {
    let n = 200;
    let rev = runtime_case(n, Adjoint::Reversible, 1, 0).unwrap();
    assert_eq!(rev.peak_stored_states, 1);
    assert_eq!(rev.recomputed_steps, 0);
    // midpoint: 2 evaluations per base step; reversible = 2 base steps forward... counted, not assumed
    assert!(rev.field_evals > 2 * n);
    let c = sqrt_checkpoints(n);
    assert_eq!(c, 15);
    let ck = runtime_case(n, Adjoint::Checkpoint(c), 1, 0).unwrap();
    assert_eq!(ck.recomputed_steps, revolve_recomputations(n, c));
    assert!(ck.peak_stored_states <= c + 1);
    let full = runtime_case(n, Adjoint::FullStorage, 1, 0).unwrap();
    assert_eq!(full.peak_stored_states, n + 1);
    assert_eq!(full.peak_stored_bytes, 8 * (n + 1));
}

#[test]
fn grids_match_their_documentation() {
    assert_eq!(white_dwarf_grid(Mode::Full).len(), 4 * 3 * 7);
    assert!(white_dwarf_grid(Mode::Full).iter().all(|s| s.train_steps == 1000));
    assert!(physical_grid(Mode::Quick).iter().any(|s| s.system == System::Pendulum && s.solver == "bosh3"));
    assert!(physical_grid(Mode::Full).iter().any(|s| s.adjoint == Adjoint::Checkpoint(31) && s.system == System::Oscillator));
    let full = physical_grid(Mode::Full);
    let runs = |system: System, solver: &str, adjoint: Adjoint| full.iter().filter(|s| s.system == system && s.solver == solver && s.adjoint == adjoint).count();
    // The talk's five seeds and c = 2 for the pendulum and the midpoint oscillator; two seeds for
    // the other oscillator solvers (the documented trim).
    assert_eq!(runs(System::Pendulum, "bosh3", Adjoint::Checkpoint(2)), 5);
    assert_eq!(runs(System::Pendulum, "bosh3", Adjoint::Reversible), 5);
    assert_eq!(runs(System::Oscillator, "midpoint", Adjoint::Checkpoint(31)), 5);
    assert_eq!(runs(System::Oscillator, "rk4", Adjoint::Checkpoint(2)), 2);
    assert_eq!(full.len(), 6 * 5 + 3 * 6 * 2 + 6 * 5);
    let rt = runtime_grid(Mode::Default);
    assert!(rt.contains(&(1000, Adjoint::Checkpoint(32))) && rt.contains(&(100, Adjoint::Checkpoint(2))));
    assert!(rt.contains(&(1000, Adjoint::CheckpointOnline(44))) && rt.contains(&(100, Adjoint::Checkpoint(44))));
}

#[test]
fn verdicts_need_a_gap_beyond_the_spread() {
    use revlib_lab::experiments::separated;
    use std::cmp::Ordering::*;
    assert_eq!(separated(&[1.0, 1.1, 0.9], &[2.0, 2.2, 1.8]), Some(Less));
    assert_eq!(separated(&[2.0, 2.2, 1.8], &[1.0, 1.1, 0.9]), Some(Greater));
    // Means differ by 0.3, spreads add to about 0.57: no verdict.
    assert_eq!(separated(&[1.0, 1.4, 0.6], &[1.3, 1.5, 1.1]), None);
    // One sample has no spread: no verdict, however far apart.
    assert_eq!(separated(&[1.0], &[5.0, 5.1]), None);
}

#[test]
fn published_numbers_load_with_their_source() {
    let (source, recs) = published().unwrap();
    assert!(source.contains("reversible-solvers") && !source.contains("shared/"));
    assert_eq!(published_value(&recs, "white_dwarf", "midpoint", "reversible", "runtime"), Some((1.74, Some(0.39))));
    assert_eq!(published_value(&recs, "runtime_mlp_1_10_1", "midpoint", "checkpoint_2", "sec_per_grad_n1000"), Some((15.04, None)));
    assert_eq!(recs.iter().filter(|r| r.system == "pendulum" && r.metric == "runtime").count(), 6);
}

#[test]
fn results_files_append_and_resume() {
    let path = std::env::temp_dir().join(format!("revlib-results-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    assert!(read_jsonl::<RunSpec>(&path).unwrap().is_empty());
    let prov = revlib_lab::provenance::Provenance::collect(0, "quick");
    let a = spec(System::WhiteDwarf, "rk4", Adjoint::Checkpoint(44), 3);
    let b = spec(System::Pendulum, "bosh3", Adjoint::Reversible, 3);
    append_jsonl(&path, &a, &prov).unwrap();
    append_jsonl(&path, &b, &prov).unwrap();
    let back: Vec<RunSpec> = read_jsonl(&path).unwrap();
    assert_eq!(back, vec![a, b]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"adjoint\":\"checkpoint_44\"") && text.contains("\"provenance\""));
    std::fs::write(&path, format!("{text}not json\n")).unwrap();
    let err = read_jsonl::<RunSpec>(&path).unwrap_err().to_string();
    assert!(err.contains(".jsonl:3:"), "{err}");
    std::fs::remove_file(&path).unwrap();
}
