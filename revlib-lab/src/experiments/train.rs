//! Training drivers for the McCallum–Foster experiments (arXiv:2410.11648, the experiments of its second version): a neural ODE
//! with a one-hidden-layer tanh MLP fitted by AdamW to a trajectory, differentiated by the
//! reversible adjoint or by checkpointing, with time, memory and an exactness check recorded.

use super::data::{data_dir_for, data_required, load_schmidt_lipson};
use revlib::adjoint::{rel_err, Adjoint};
use crate::error::{Error, Result};
use revlib::field::{CoupledOscillator, DoublePendulum, Mlp, MlpConfig, VectorField, WhiteDwarf};
use revlib::integrate::{solve, Adaptive, SaveAt, SolveOptions, Stepping};
use revlib::loss::{InterpMse, Loss, Mse};
use revlib::nn::{Adam, AdamConfig, WeightDecay};
use revlib::solver::{ExplicitRk, Reversible, Solver};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The systems of the talk's experiment tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// Chandrasekhar's white dwarf equation, data from the true ODE (arXiv:2410.11648).
    WhiteDwarf,
    /// Two coupled oscillators, Schmidt & Lipson's `real_double_linear_h_1.txt` (§4.3).
    Oscillator,
    /// Double pendulum, Schmidt & Lipson's `real_double_pend_h_1.txt`, adaptive Bosh3 (§4.3).
    Pendulum,
}

impl System {
    /// `white_dwarf`, `oscillator`, `pendulum`.
    pub fn key(&self) -> &'static str {
        match self {
            System::WhiteDwarf => "white_dwarf",
            System::Oscillator => "oscillator",
            System::Pendulum => "pendulum",
        }
    }
}

/// An explicit Runge–Kutta method by name: `euler`, `midpoint`, `heun`, `ralston3`, `rk4`,
/// `bosh3`, `dopri5`.
///
/// # Errors
/// [`Error::UnknownName`] for another name.
pub fn base_solver(name: &str) -> Result<ExplicitRk> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "euler" => ExplicitRk::euler(),
        "midpoint" => ExplicitRk::midpoint(),
        "heun" => ExplicitRk::heun(),
        "ralston3" | "rk3" => ExplicitRk::ralston3(),
        "rk4" => ExplicitRk::rk4(),
        "bosh3" => ExplicitRk::bosh3(),
        "dopri5" => ExplicitRk::dopri5(),
        _ => return Err(Error::UnknownName { what: "solver", value: name.into(), expected: "euler, midpoint, heun, ralston3, rk4, bosh3, dopri5".into() }),
    })
}

/// The solver a run steps with: the base method for checkpointing and full storage, the
/// McCallum–Foster `Reversible(base, 0.999)` for the reversible adjoint.
pub fn run_solver(base: &str, adjoint: Adjoint) -> Result<Box<dyn Solver>> {
    let b = base_solver(base)?;
    Ok(match adjoint {
        Adjoint::Reversible => Box::new(Reversible::new(b, Reversible::DEFAULT_COUPLING)?),
        _ => Box::new(b),
    })
}

/// One training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    /// The system.
    pub system: System,
    /// Base Runge–Kutta method (`midpoint`, …).
    pub solver: String,
    /// Gradient strategy.
    pub adjoint: Adjoint,
    /// Seed of the network initialisation.
    pub seed: u64,
    /// Optimiser steps.
    pub train_steps: usize,
}

impl RunSpec {
    /// A unique key (used to resume a results file).
    pub fn key(&self) -> String {
        format!("{}/{}/{}/seed{}/steps{}", self.system.key(), self.solver, self.adjoint.key(), self.seed, self.train_steps)
    }
}

/// A neural-ODE fitting problem: initial network, initial state, solve options and loss.
pub struct Task {
    /// The network before training.
    pub field: Mlp,
    /// Initial state.
    pub y0: Vec<f64>,
    /// Time grid / controller and output times.
    pub opts: SolveOptions,
    /// Loss of the outputs against the data.
    pub loss: Box<dyn Loss>,
    /// The solver the run steps with.
    pub solver: Box<dyn Solver>,
    /// Where the data came from (a file path, or "simulated …").
    pub data_source: String,
    /// The measurements file read, if any (`None` for simulated data).
    pub data_file: Option<PathBuf>,
    /// Data times (including t0) and states, for plotting.
    pub data: (Vec<f64>, Vec<Vec<f64>>),
}

/// White dwarf constants of the experiment: C, interval, steps.
const WD: (f64, f64, usize) = (0.001, 5.0, 1000);

/// Build the task of a run, reading measured data from [`data_dir_for`]`("schmidt-lipson")` (see [`task_from`]).
///
/// # Errors
/// As [`task_from`].
pub fn task(spec: &RunSpec) -> Result<Task> {
    task_from(spec, &data_dir_for("schmidt-lipson"), data_required())
}

/// Build the task of a run. Measured data are read from `<dir>/schmidt-lipson/`; when the file
/// is missing, the trajectory is simulated from the physical equations instead, unless
/// `required` (then the missing file is an error).
///
/// # Errors
/// Unknown solver names, unreadable data, or a missing file when data are required.
pub fn task_from(spec: &RunSpec, dir: &Path, required: bool) -> Result<Task> {
    let solver = run_solver(&spec.solver, spec.adjoint)?;
    let mlp = |dim: usize, time_input: bool| Mlp::new(MlpConfig { dim, width: 10, depth: 1, time_input }, spec.seed);
    match spec.system {
        System::WhiteDwarf => {
            let (c, t1, n) = WD;
            let opts = SolveOptions::fixed(0.0, t1, n).save_at(SaveAt::Steps);
            let y0 = vec![1.0, 0.0];
            // Data from the true ODE with the same solver and steps as the model (as the authors do).
            let truth = solve(&WhiteDwarf { c, t_offset: 0.5 }, solver.as_ref(), &y0, &opts)?;
            let mut data_t = vec![0.0];
            data_t.extend_from_slice(&truth.ts);
            let mut data_y = vec![y0.clone()];
            data_y.extend(truth.ys.iter().cloned());
            Ok(Task {
                field: mlp(2, true)?,
                loss: Box::new(Mse { targets: truth.ys }),
                y0,
                opts,
                solver,
                data_source: format!("simulated: white dwarf C = {c}, {} on [0, {t1}], {n} steps", spec.solver),
                data_file: None,
                data: (data_t, data_y),
            })
        }
        System::Oscillator | System::Pendulum => {
            let osc = spec.system == System::Oscillator;
            let (file, t_end, scale) = if osc { ("real_double_linear_h_1.txt", 3.0, 100.0) } else { ("real_double_pend_h_1.txt", 2.0, 10.0) };
            let (grid, states, source, data_file) = measured_or_simulated(dir, required, file, t_end, scale, osc)?;
            let y0 = states[0].clone();
            let targets = states[1..].to_vec();
            let dt = grid[1];
            let opts = if osc {
                SolveOptions::fixed(0.0, t_end, grid.len() - 1).save_at(SaveAt::Steps)
            } else {
                let mut a = Adaptive::new(1e-6, 1e-6);
                a.dt0 = Some(dt);
                a.max_steps = 1000;
                SolveOptions { t0: 0.0, t1: t_end, stepping: Stepping::Adaptive(a), save_at: SaveAt::Steps }
            };
            let loss: Box<dyn Loss> = if osc {
                Box::new(Mse { targets })
            } else {
                Box::new(InterpMse { t0: 0.0, y0: y0.clone(), grid: grid[1..].to_vec(), targets })
            };
            Ok(Task { field: mlp(4, false)?, y0, opts, loss, solver, data_source: source, data_file, data: (grid, states) })
        }
    }
}

/// 500 points of the first trial of a Schmidt & Lipson file on `[0, t_end]` (time shifted to
/// start at 0, linear interpolation, states divided by `scale`), or a simulated stand-in; with
/// a description of the source and the file read.
#[allow(clippy::type_complexity)]
fn measured_or_simulated(dir: &Path, required: bool, file: &str, t_end: f64, scale: f64, osc: bool) -> Result<(Vec<f64>, Vec<Vec<f64>>, String, Option<PathBuf>)> {
    let path = dir.join("schmidt-lipson").join(file);
    if path.exists() || required {
        let trials = load_schmidt_lipson(&path)?;
        let (g, s) = trials[0].resample(500, t_end, scale)?;
        let source = format!("measured: {} (trial {}, t − t_first ∈ [0, {t_end}] s, 500 points by linear interpolation, ÷{scale})", path.display(), trials[0].id);
        return Ok((g, s, source, Some(path)));
    }
    // Stand-ins from the physical equations, started near the first measured state.
    let (field, y0): (Box<dyn VectorField>, Vec<f64>) = if osc {
        (Box::new(CoupledOscillator { k: 4.0, kc: 1.5 }), vec![0.0, -143.0, -141.0, 40.0])
    } else {
        (Box::new(DoublePendulum { g_over_l: 9.81 / 0.1 }), vec![-1.134, -1.301, -0.539, -6.155])
    };
    let opts = SolveOptions::fixed(0.0, t_end, 499 * 20).save_at(SaveAt::Times((1..500).map(|i| t_end * i as f64 / 499.0).collect()));
    let sol = solve(field.as_ref(), &ExplicitRk::rk4(), &y0, &opts)?;
    let mut states = vec![y0.iter().map(|v| v / scale).collect::<Vec<_>>()];
    states.extend(sol.ys.iter().map(|y| y.iter().map(|v| v / scale).collect()));
    let grid = (0..500).map(|i| t_end * i as f64 / 499.0).collect();
    Ok((grid, states, format!("simulated ({} not found): {} from the physical equations, RK4, ÷{scale}", path.display(), field.name()), None))
}

/// The outcome of a training run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// What was run.
    pub spec: RunSpec,
    /// Key of the spec.
    pub key: String,
    /// Name of the solver stepped with.
    pub solver_name: String,
    /// Minimum training loss (the talk's tables report this).
    pub best_loss: f64,
    /// Loss at the last step.
    pub final_loss: f64,
    /// Loss every `log_every` steps.
    pub losses: Vec<f64>,
    /// Steps between entries of `losses`.
    pub log_every: usize,
    /// Wall time of the training loop (seconds), the exactness check excluded.
    pub train_sec: f64,
    /// Relative error of the first gradient against full backprop through the same
    /// discretisation.
    pub first_grad_rel_err: f64,
    /// Peak carries held by the gradient (max over steps).
    pub peak_stored_states: usize,
    /// Peak bytes held by the gradient (carries and step times).
    pub peak_stored_bytes: usize,
    /// Steps recomputed per gradient (mean).
    pub recomputed_steps: f64,
    /// Accepted solver steps per gradient (mean).
    pub mean_accepted_steps: f64,
    /// Field evaluations per gradient (mean, forward and backward).
    pub field_evals_per_grad: f64,
    /// Peak RSS of the process (`VmHWM`), meaningful when the run had a process of its own.
    pub peak_rss_bytes: Option<u64>,
    /// Where the data came from.
    pub data_source: String,
}

/// Train a run with AdamW (lr 1e-2, decoupled weight decay 1e-5). `progress(step, loss)` is
/// called after every step.
///
/// # Errors
/// Everything the gradient can return (e.g. a non-finite state, with its time and step).
pub fn train(spec: &RunSpec, progress: impl FnMut(usize, f64)) -> Result<RunRecord> {
    train_task(spec, task(spec)?, progress)
}

/// [`train`] on a task built by the caller (e.g. with [`task_from`]).
///
/// # Errors
/// As [`train`].
pub fn train_task(spec: &RunSpec, t: Task, mut progress: impl FnMut(usize, f64)) -> Result<RunRecord> {
    if spec.train_steps == 0 {
        return Err(Error::InvalidArgument { name: "train_steps", value: 0.0, expected: "at least 1" });
    }
    let mut field = t.field;
    let mut theta = field.params();
    let mut opt = Adam::new(theta.len(), AdamConfig { lr: 1e-2, weight_decay: Some(WeightDecay::Decoupled(1e-5)), ..Default::default() })?;
    // Exactness check on the first step (not timed).
    let reference = Adjoint::FullStorage.gradient(&field, t.solver.as_ref(), &t.y0, &t.opts, t.loss.as_ref())?;
    let log_every = (spec.train_steps / 200).max(1);
    let (mut losses, mut best, mut last) = (Vec::new(), f64::INFINITY, f64::NAN);
    let (mut peak_states, mut peak_bytes) = (0, 0);
    let (mut recomputed, mut accepted, mut evals) = (0usize, 0usize, 0usize);
    let mut first_err = f64::NAN;
    let start = Instant::now();
    for step in 0..spec.train_steps {
        let g = spec.adjoint.gradient(&field, t.solver.as_ref(), &t.y0, &t.opts, t.loss.as_ref())?;
        if step == 0 {
            first_err = rel_err(&g.d_theta, &reference.d_theta);
        }
        best = best.min(g.loss);
        last = g.loss;
        if step % log_every == 0 {
            losses.push(g.loss);
        }
        peak_states = peak_states.max(g.stats.peak_stored_states);
        peak_bytes = peak_bytes.max(g.stats.peak_stored_bytes);
        recomputed += g.stats.recomputed_steps;
        accepted += g.stats.accepted_steps;
        evals += g.stats.field_evals;
        opt.step(&mut theta, &g.d_theta)?;
        field.set_params(&theta)?;
        progress(step + 1, g.loss);
    }
    let train_sec = start.elapsed().as_secs_f64();
    let n = spec.train_steps as f64;
    Ok(RunRecord {
        key: spec.key(),
        spec: spec.clone(),
        solver_name: t.solver.name(),
        best_loss: best,
        final_loss: last,
        losses,
        log_every,
        train_sec,
        first_grad_rel_err: first_err,
        peak_stored_states: peak_states,
        peak_stored_bytes: peak_bytes,
        recomputed_steps: recomputed as f64 / n,
        mean_accepted_steps: accepted as f64 / n,
        field_evals_per_grad: evals as f64 / n,
        peak_rss_bytes: crate::provenance::peak_rss_bytes(),
        data_source: t.data_source,
    })
}
