//! `revlib` command line: the gradient benchmark and the experiment drivers.

use clap::{Parser, Subcommand};
use revlib_lab::bench::{compare, paired_ratio, predict_seconds, run_case, time_ratios, Case};
use revlib_lab::provenance::Provenance;
use revlib_lab::experiments::runtime::runtime_case;
use revlib_lab::experiments::train::{train, RunSpec};
use revlib_lab::experiments::lm::{study_models, train_lm, LmResult, StudyConfig};
use revlib_lab::experiments::wikitext::wikitext2_or_generated;
use revlib_lab::experiments::{physical_grid, read_jsonl, runtime_grid, white_dwarf_grid, EXPERIMENTS};
use revlib_lab::results::{append_jsonl_unique, repair_jsonl, Repair, RunLock};
use revlib_lab::notebook::Mode;
use revlib::nn::DeviceKind;
use revlib::Adjoint;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Parser)]
#[command(name = "revlib", version, about = "Reversible ODE solvers: benchmarks and experiments")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Exit when standard input closes: set by a parent `revlib` on the processes it starts, so
    /// that they end with it instead of training on unobserved.
    #[arg(long, global = true, hide = true)]
    exit_with_parent: bool,
}

/// Every mode's name, for clap's list of possible values.
const MODES: [&str; 3] = ["quick", "default", "full"];

#[derive(Subcommand)]
enum Cmd {
    /// Gradient benchmark: one JSON line per case, each case in a fresh process.
    Bench {
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 256])]
        batch: Vec<usize>,
        /// Numbers of steps.
        #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1000, 10000])]
        steps: Vec<usize>,
        /// Adjoint keys.
        #[arg(long, value_delimiter = ',', default_values_t = ["full_storage".to_string(), "checkpoint_2".into(), "checkpoint_8".into(), "checkpoint_32".into(), "backsolve".into(), "reversible".into()])]
        adjoints: Vec<String>,
        /// Skip a case predicted to take longer than this per gradient (seconds).
        #[arg(long, default_value_t = 60.0)]
        max_seconds: f64,
        /// Time each case for at least this long (seconds) after one warm-up gradient.
        #[arg(long, default_value_t = 2.0)]
        min_seconds: f64,
        /// Seed of the network and initial states.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Regression guard: measure the cases of this baseline file (lines of an earlier
        /// `revlib bench --paired` on the same CPU model, overriding --batch/--steps/--adjoints)
        /// and fail when a strategy's time as a multiple of full storage's grew by more than
        /// --tolerance (a case that regresses is measured a second time before it counts). With
        /// no baseline line for this CPU it warns and compares nothing.
        #[arg(long)]
        check: Option<std::path::PathBuf>,
        /// Allowed growth of a time ratio for --check (0.2 = 20 %).
        #[arg(long, default_value_t = 0.2)]
        tolerance: f64,
        /// Add each strategy's time ÷ full storage measured in its own process by alternating
        /// the two (`paired_ratio`, robust on a busy machine); --check always measures it.
        #[arg(long)]
        paired: bool,
        /// Instead of gradients, measure this machine's f64 arithmetic limit (independent FMAs
        /// in registers) and its GEMM rate (GFLOP/s) on the benchmark's matrix shapes and on a
        /// large square product, on 1 and 2 threads: the ceilings the gradients' GFLOP/s are
        /// compared with.
        #[arg(long)]
        peak: bool,
    },
    /// Run an experiment grid (white-dwarf, physical, runtime, or all): one process per run,
    /// progress bars, one JSON line per finished run appended to `<out>/<experiment>.jsonl`.
    /// Runs already in that file are skipped, so an interrupted grid resumes where it stopped.
    Experiment {
        /// Which grid.
        #[arg(value_parser = ["white-dwarf", "physical", "runtime", "all"])]
        name: String,
        /// Grid size.
        #[arg(long, default_value = "full", value_parser = MODES)]
        mode: String,
        /// Output directory (default: results/<mode>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Start again: delete the results file first instead of resuming.
        #[arg(long)]
        fresh: bool,
        /// Repeats per runtime case.
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Runs at once (one process each).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// The perplexity study: transformers, an implicit DEQ and a RevDEQ trained on the same
    /// WikiText-2 tokens (or the generated corpus when the files are absent). One JSON line per
    /// model in `<out>/lm-study.jsonl`; checkpoints in `<out>/lm-checkpoints/`; finished models
    /// are skipped and an interrupted model resumes from its last checkpoint.
    LmStudy {
        /// Sizes.
        #[arg(long, default_value = "full", value_parser = MODES)]
        mode: String,
        /// Output directory (default: results/<mode>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Only these models (comma-separated names such as `revdeq_s1`, or families such as
        /// `revdeq`).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Device of the models: cpu, cuda or cuda:<n> (CUDA needs `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Models trained at once (one process each).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Train one run described by a JSON `RunSpec` (used by `experiment`); progress on stderr.
    #[command(hide = true)]
    TrainRun {
        #[arg(long)]
        spec: String,
    },
    /// Time one runtime case (used by `experiment runtime`).
    #[command(hide = true)]
    RuntimeCase {
        #[arg(long)]
        n: usize,
        #[arg(long)]
        adjoint: String,
        #[arg(long)]
        repeats: usize,
    },
    /// Print the <script> tags with plotly.js for offline reports (needs feature `plot`).
    PlotlyJs,
    /// Print this build's provenance (commit, version, CPU, threads) as JSON.
    Provenance,
    /// Run one benchmark case in this process (used by `bench`).
    #[command(hide = true)]
    BenchCase {
        #[arg(long)]
        adjoint: String,
        #[arg(long)]
        batch: usize,
        #[arg(long)]
        steps: usize,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        min_seconds: f64,
        /// Also measure the time ÷ full storage in this process, alternating the two.
        #[arg(long)]
        paired: bool,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if cli.exit_with_parent {
        // The parent holds the write end of our stdin; when it dies, the read returns.
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            // No message: stderr went to the parent, so writing to it now would fail.
            std::process::exit(130);
        });
    }
    let child = cli.exit_with_parent;
    match cli.cmd {
        Cmd::TrainRun { spec } => {
            let spec: RunSpec = serde_json::from_str(&spec)?;
            let mut last = std::time::Instant::now();
            let rec = train(&spec, |step, loss| {
                if last.elapsed().as_millis() > 200 || step == spec.train_steps {
                    eprintln!("progress {step} {loss:e}");
                    last = std::time::Instant::now();
                }
            })?;
            println!("{}", serde_json::to_string(&rec)?);
        }
        Cmd::RuntimeCase { n, adjoint, repeats } => {
            let rec = runtime_case(n, Adjoint::from_key(&adjoint)?, repeats, 0)?;
            println!("{}", serde_json::to_string(&rec)?);
        }
        Cmd::LmStudy { mode, out, models, device, jobs } => {
            let mode = Mode::parse(&mode)?;
            let device = DeviceKind::parse(&device)?;
            let out = out.unwrap_or_else(|| std::path::PathBuf::from("results").join(mode.name()));
            lm_study(mode, &out, &models, device, jobs, child)?;
        }
        Cmd::Experiment { name, mode, out, fresh, repeats, jobs } => {
            let mode = Mode::parse(&mode)?;
            let out = out.unwrap_or_else(|| std::path::PathBuf::from("results").join(mode.name()));
            let names: Vec<&str> = if name == "all" { EXPERIMENTS.to_vec() } else { vec![name.as_str()] };
            for name in names {
                run_experiment(name, mode, &out, fresh, repeats, jobs)?;
            }
        }
        Cmd::Provenance => println!("{}", serde_json::to_string(&Provenance::collect(0, "bench"))?),
        Cmd::PlotlyJs => {
            #[cfg(feature = "plot")]
            println!("{}", revlib_lab::plot::plotly_js());
            #[cfg(not(feature = "plot"))]
            return Err("build with `--features plot` for plotly-js".into());
        }
        Cmd::BenchCase { adjoint, batch, steps, seed, min_seconds, paired } => {
            let case = Case { adjoint: Adjoint::from_key(&adjoint)?, batch, steps };
            let mut line = run_case(&case, seed, min_seconds)?;
            if paired && case.adjoint != Adjoint::FullStorage {
                let (ratio, rounds) = paired_ratio(&case, seed, min_seconds)?;
                line["paired_ratio"] = ratio.into();
                line["paired_rounds"] = rounds.into();
            }
            println!("{line}");
        }
        Cmd::Bench { batch, steps, adjoints, max_seconds, min_seconds, seed, check, tolerance, paired, peak } => {
            let prov = serde_json::to_value(Provenance::collect(seed, "default"))?;
            if peak {
                gemm_peak(&batch, min_seconds, &prov);
            } else if let Some(baseline_path) = check {
                bench_check(&baseline_path, min_seconds, seed, tolerance, &prov)?;
            } else {
                let adjoints: Vec<Adjoint> = adjoints.iter().map(|k| Adjoint::from_key(k)).collect::<Result<_, _>>()?;
                let cases: Vec<(usize, usize, Vec<Adjoint>)> = batch.iter().flat_map(|&b| steps.iter().map(move |&n| (b, n))).map(|(b, n)| (b, n, adjoints.clone())).collect();
                bench(&cases, max_seconds, min_seconds, seed, paired, &prov)?;
            }
        }
    }
    Ok(())
}

/// `revlib bench --peak`: the arithmetic limit (independent FMAs in registers), then GEMM GFLOP/s
/// on the benchmark MLP's three products at each batch size (and half of it, what one thread
/// gets when a batch is split), and on 1024³.
fn gemm_peak(batches: &[usize], min_seconds: f64, prov: &serde_json::Value) {
    use revlib_lab::bench::{gemm_rate, DIM, WIDTH};
    let mut shapes: Vec<(usize, usize, usize, &str)> = Vec::new();
    for &b in batches {
        for m in [b, b.div_ceil(2)] {
            shapes.extend([(m, DIM, WIDTH, "input layer"), (m, WIDTH, WIDTH, "hidden layer"), (m, WIDTH, DIM, "output layer")]);
        }
    }
    shapes.push((1024, 1024, 1024, "large square"));
    shapes.dedup();
    for threads in [1, 2] {
        let line = serde_json::json!({"kind": "fma", "what": "independent FMAs in registers", "threads": threads,
            "gflops_per_sec": revlib_lab::bench::fma_rate(threads, min_seconds.min(1.0)), "provenance": prov});
        println!("{line}");
    }
    for (m, k, n, what) in shapes {
        for threads in [1, 2] {
            let line = serde_json::json!({"kind": "gemm", "what": what, "m": m, "k": k, "n": n, "threads": threads,
                "gflops_per_sec": gemm_rate(m, k, n, threads, min_seconds.min(1.0)), "provenance": prov});
            println!("{line}");
        }
    }
}

/// `revlib bench --check`: measure the baseline's cases (on this CPU model) with paired ratios and
/// fail on a ratio that grew by more than `tolerance` twice in a row.
fn bench_check(baseline_path: &Path, min_seconds: f64, seed: u64, tolerance: f64, prov: &serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
    if !(tolerance > 0.0 && tolerance.is_finite()) {
        return Err(format!("--tolerance must be positive and finite, not {tolerance}").into());
    }
    if !baseline_path.is_file() {
        return Err(format!("--check {}: no such baseline file (write one with `revlib bench ... > FILE`)", baseline_path.display()).into());
    }
    let all: Vec<serde_json::Value> = read_jsonl(baseline_path)?;
    // Ratios are compared on the CPU model the baseline was measured on: across
    // micro-architectures the strategies' relative costs legitimately differ.
    let cpu = prov["cpu"].as_str().unwrap_or("").to_string();
    let baseline: Vec<serde_json::Value> = all.iter().filter(|v| v["provenance"]["cpu"].as_str() == Some(cpu.as_str())).cloned().collect();
    if baseline.is_empty() {
        let mut cpus: Vec<&str> = all.iter().filter_map(|v| v["provenance"]["cpu"].as_str()).collect();
        cpus.sort_unstable();
        cpus.dedup();
        eprintln!("warning: {} has no baseline for this CPU ({cpu}; it has: {}); nothing was compared. Append one with `revlib bench --paired --batch B --steps N >> {}`",
            baseline_path.display(), cpus.join(", "), baseline_path.display());
        println!("{}", serde_json::json!({"check": baseline_path.display().to_string(), "passed": null, "cpu": cpu, "baseline_cpus": cpus}));
        return Ok(());
    }
    let cases = cases_of(&baseline)?;
    if cases.is_empty() {
        return Err(format!("{}: no measured cases to check against", baseline_path.display()).into());
    }
    let mut current = bench(&cases, f64::INFINITY, min_seconds, seed, true, prov)?;
    let mut result = compare(&baseline, &current, tolerance);
    if !result.regressions.is_empty() {
        // Measure each regressed case (and its full storage) once more: a regression must reproduce.
        let again: Vec<(usize, usize, Vec<Adjoint>)> = result.regressions.iter().map(|r| Ok((r.case.0, r.case.1, vec![Adjoint::from_key(&r.case.2)?])))
            .collect::<Result<_, revlib::Error>>()?;
        eprintln!("{} case(s) slower than the baseline allows; measuring them again", again.len());
        let second = bench(&again, f64::INFINITY, min_seconds, seed, true, prov)?;
        // What counts is the second measurement of the cases that regressed the first time.
        let retried = compare(&baseline, &second, tolerance).regressions;
        result.regressions = retried.into_iter().filter(|q| result.regressions.iter().any(|r| r.case == q.case)).collect();
        current.extend(second);
    }
    println!("{}", serde_json::json!({"check": baseline_path.display().to_string(), "tolerance": tolerance, "passed": result.passed(),
        "regressions": result.regressions, "missing": result.missing, "ratios_now": time_ratios(&current), "ratios_baseline": time_ratios(&baseline)}));
    if !result.passed() {
        let what: Vec<String> = result.regressions.iter().map(|r| format!("{} B={} N={}: {:.2}× full storage, baseline {:.2}× (+{:.0} %)", r.case.2, r.case.0, r.case.1, r.now, r.baseline, 100.0 * (r.now / r.baseline - 1.0)))
            .chain(result.missing.iter().map(|c| format!("{} B={} N={}: not measured", c.2, c.0, c.1))).collect();
        return Err(format!("benchmark regression against {} (tolerance {:.0} %):\n  {}", baseline_path.display(), 100.0 * tolerance, what.join("\n  ")).into());
    }
    Ok(())
}

/// Run benchmark cases, one process each, printing each JSON line as it finishes; full storage
/// goes first in each (B, N) so that its time can predict (and skip) slow cases.
fn bench(cases: &[(usize, usize, Vec<Adjoint>)], max_seconds: f64, min_seconds: f64, seed: u64, paired: bool, prov: &serde_json::Value) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let total: usize = cases.iter().map(|c| c.2.len() + usize::from(!c.2.contains(&Adjoint::FullStorage))).sum();
    let bar = indicatif::ProgressBar::new(total as u64);
    let exe = std::env::current_exe()?;
    let mut lines = Vec::new();
    for (b, n, adjoints) in cases {
        let (b, n) = (*b, *n);
        let mut full_sec: Option<f64> = None;
        // Full storage first (and always: every other time is read as a multiple of it).
        let mut order = adjoints.clone();
        if !order.contains(&Adjoint::FullStorage) {
            order.push(Adjoint::FullStorage);
        }
        order.sort_by_key(|a| *a != Adjoint::FullStorage);
        for adjoint in order {
            let case = Case { adjoint, batch: b, steps: n };
            bar.set_message(format!("{} B={b} N={n}", adjoint.key()));
            let predicted = full_sec.map(|s| predict_seconds(&case, s));
            let mut line = match predicted {
                Some(p) if p > max_seconds => serde_json::json!({
                    "adjoint": adjoint.key(), "B": b, "D": 2, "W": 64, "N": n,
                    "skipped": format!("predicted {p:.0} s per gradient > --max-seconds {max_seconds}"),
                    "predicted_sec": p,
                }),
                _ => {
                    let mut cmd = Command::new(&exe);
                    cmd.args(["bench-case", "--adjoint", &adjoint.key(), "--batch", &b.to_string(), "--steps", &n.to_string(), "--seed", &seed.to_string(), "--min-seconds", &min_seconds.to_string()]);
                    if paired {
                        cmd.arg("--paired");
                    }
                    let out = cmd.output()?;
                    if !out.status.success() {
                        return Err(format!("case {} B={b} N={n} failed: {}", adjoint.key(), String::from_utf8_lossy(&out.stderr)).into());
                    }
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                    if adjoint == Adjoint::FullStorage {
                        full_sec = v["sec_per_grad"].as_f64();
                    }
                    v
                }
            };
            line["provenance"] = prov.clone();
            bar.suspend(|| println!("{line}"));
            bar.inc(1);
            lines.push(line);
        }
    }
    bar.finish_and_clear();
    Ok(lines)
}

/// The measured cases of benchmark lines, grouped by (B, N) in their order of appearance.
fn cases_of(lines: &[serde_json::Value]) -> Result<Vec<(usize, usize, Vec<Adjoint>)>, Box<dyn std::error::Error>> {
    let mut cases: Vec<(usize, usize, Vec<Adjoint>)> = Vec::new();
    for v in lines.iter().filter(|v| v["sec_per_grad"].is_number()) {
        let (Some(b), Some(n), Some(a)) = (v["B"].as_u64(), v["N"].as_u64(), v["adjoint"].as_str()) else { continue };
        let adjoint = Adjoint::from_key(a)?;
        match cases.iter_mut().find(|c| c.0 == b as usize && c.1 == n as usize) {
            Some(c) => c.2.push(adjoint),
            None => cases.push((b as usize, n as usize, vec![adjoint])),
        }
    }
    Ok(cases)
}

/// Run one child process of a grid, showing its `progress <step> <loss>` lines on `bar`, and
/// return the JSON record it prints.
fn run_child(exe: &Path, args: &[String], bar: &indicatif::ProgressBar) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut child = Command::new(exe).args(args).arg("--exit-with-parent").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Held until the child is done: if this process dies, the pipe closes and the child stops.
    let _lifeline = child.stdin.take();
    let mut err_text = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line?;
            let mut it = line.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some("progress"), Some(step), Some(loss)) => {
                    bar.set_position(step.parse().unwrap_or(0));
                    bar.set_message(format!("loss {loss}"));
                }
                _ => {
                    err_text.push_str(&line);
                    err_text.push('\n');
                }
            }
        }
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(err_text.into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Say what opening a results file repaired (a torn last line moved aside, a newline added).
fn report_repair(repair: &Repair, path: &Path) {
    if let Some(torn) = &repair.torn_file {
        eprintln!("{}: a torn last line ({} bytes, an interrupted write) was moved to {}", path.display(), repair.torn_bytes, torn.display());
    }
    if repair.added_newline {
        eprintln!("{}: the last record lacked its newline; added", path.display());
    }
}

/// The key that identifies a record of an experiment's results file (a run is done once).
fn record_key(experiment: &str, v: &serde_json::Value) -> Option<String> {
    if experiment == "runtime" {
        Some(format!("n{}/{}", v["n"].as_u64()?, v["adjoint"].as_str()?))
    } else {
        v["key"].as_str().map(str::to_string)
    }
}

/// Run one experiment grid with `jobs` processes at once, resuming from its results file.
fn run_experiment(name: &str, mode: Mode, out: &Path, fresh: bool, repeats: usize, jobs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let path = out.join(format!("{name}.jsonl"));
    let exe = std::env::current_exe()?;
    // (key, arguments of the child process, training steps for the inner bar); building the
    // grid validates the experiment before anything on disk is touched.
    let runs: Vec<(String, Vec<String>, u64)> = match name {
        "white-dwarf" | "physical" => {
            let grid = if name == "white-dwarf" { white_dwarf_grid(mode) } else { physical_grid(mode) };
            grid.iter().map(|s| Ok((s.key(), vec!["train-run".into(), "--spec".into(), serde_json::to_string(s)?], s.train_steps as u64))).collect::<Result<_, serde_json::Error>>()?
        }
        "runtime" => runtime_grid(mode)
            .into_iter()
            .map(|(n, a)| (format!("n{n}/{}", a.key()), vec!["runtime-case".into(), "--n".into(), n.to_string(), "--adjoint".into(), a.key(), "--repeats".into(), repeats.to_string()], 0))
            .collect(),
        other => return Err(format!("unknown experiment `{other}` (white-dwarf, physical, runtime, all)").into()),
    };
    // One driver per results file; a second one exits here with the file's name.
    let _lock = RunLock::acquire(&path)?;
    if fresh && path.exists() {
        std::fs::remove_file(&path)?;
    }
    let prov = Provenance::collect(0, mode.name());
    report_repair(&repair_jsonl(&path)?, &path);
    let done: Vec<String> = read_jsonl::<serde_json::Value>(&path)?.iter().filter_map(|v| record_key(name, v)).collect();
    let todo: Vec<_> = runs.into_iter().filter(|j| !done.contains(&j.0)).collect();
    eprintln!("{name} ({}): {} runs done, {} to go → {}", mode.name(), done.len(), todo.len(), path.display());
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})")?;
    let outer = bars.add(indicatif::ProgressBar::new(todo.len() as u64).with_style(style.clone()).with_prefix(name.to_string()));
    let queue = std::sync::Mutex::new(todo.into_iter());
    let write = std::sync::Mutex::new(());
    // `jobs` workers, each running one child process at a time.
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    loop {
                        let Some((key, args, steps)) = queue.lock().map_err(|e| e.to_string())?.next() else { return Ok(()) };
                        outer.set_message(key.clone());
                        let inner = bars.add(indicatif::ProgressBar::new(steps.max(1)).with_style(style.clone()).with_prefix("steps"));
                        let v = run_child(&exe, &args, &inner).map_err(|e| format!("run {key} failed: {e}"))?;
                        inner.finish_and_clear();
                        let _guard = write.lock().map_err(|e| e.to_string())?;
                        let (_, repair) = append_jsonl_unique(&path, &v, &prov, |r| record_key(name, r)).map_err(|e| e.to_string())?;
                        bars.suspend(|| report_repair(&repair, &path));
                        outer.inc(1);
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into()))).collect()
    });
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e.into());
    }
    outer.finish();
    Ok(())
}

/// Train every model of the perplexity study that is not in the results file yet.
///
/// The top-level process holds the study's [`RunLock`]; the processes it starts (`child`) end
/// with it, and each holds its model's checkpoint lock, so no model is trained twice at once
/// and no record is written twice.
fn lm_study(mode: Mode, out: &Path, only: &[String], device: DeviceKind, jobs: usize, child: bool) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = StudyConfig::for_mode(mode);
    let path = out.join("lm-study.jsonl");
    let _lock = if child { None } else { Some(RunLock::acquire(&path)?) };
    report_repair(&repair_jsonl(&path)?, &path);
    let done: Vec<String> = read_jsonl::<LmResult>(&path)?.into_iter().map(|r| r.name).collect();
    let ckdir = out.join("lm-checkpoints");
    std::fs::create_dir_all(&ckdir)?;
    let prov = Provenance::collect(cfg.seed, mode.name());
    let wanted = |spec: &revlib_lab::experiments::lm::ModelSpec| only.is_empty() || only.iter().any(|m| *m == spec.name || *m == spec.family);
    let known = study_models(&cfg, cfg.max_vocab);
    if let Some(bad) = only.iter().find(|m| !known.iter().any(|s| s.name == **m || s.family == **m)) {
        let names: Vec<&str> = known.iter().map(|s| s.family.as_str()).collect();
        return Err(format!("unknown model `{bad}` (families in {} mode: {})", mode.name(), names.join(", ")).into());
    }
    let todo: Vec<_> = known.into_iter().filter(|s| wanted(s) && !done.contains(&s.name)).collect();
    if todo.len() > 1 || jobs > 1 {
        // Dispatch one process per model (so each peak RSS is the model's own), `jobs` at once.
        // Model names do not depend on the corpus, so the parent does not load it.
        let mut running: Vec<(String, std::process::Child)> = Vec::new();
        let mut queue = todo.into_iter();
        let mut failed = Vec::new();
        loop {
            while running.len() < jobs.max(1) {
                let Some(spec) = queue.next() else { break };
                let child = Command::new(std::env::current_exe()?)
                    .args(["lm-study", "--exit-with-parent", "--mode", mode.name(), "--out"])
                    .arg(out)
                    .args(["--models", &spec.name, "--device", &device.name()])
                    .stdin(Stdio::piped())
                    .spawn()?;
                running.push((spec.name, child));
            }
            if running.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            let mut i = 0;
            while i < running.len() {
                if let Some(status) = running[i].1.try_wait()? {
                    let (name, _) = running.remove(i);
                    if !status.success() {
                        failed.push(name);
                    }
                } else {
                    i += 1;
                }
            }
        }
        if !failed.is_empty() {
            return Err(format!("models failed: {}", failed.join(", ")).into());
        }
        return Ok(());
    }
    let corpus = wikitext2_or_generated(cfg.max_vocab)?;
    eprintln!("corpus: {} ({} training tokens, vocabulary {})", corpus.source, corpus.train.len(), corpus.vocab.len());
    for spec in study_models(&cfg, corpus.vocab.len()) {
        if done.contains(&spec.name) || !wanted(&spec) {
            continue;
        }
        let bar = indicatif::ProgressBar::new(cfg.steps() as u64).with_style(indicatif::ProgressStyle::with_template("{prefix:>14} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})")?).with_prefix(spec.name.clone());
        let ck = ckdir.join(format!("{}.json", spec.name));
        let _model_lock = RunLock::acquire(&ck)?;
        let res = train_lm(&corpus, &cfg, &spec, Some(&ck), device, |step, _, loss| {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.3}"));
        })?;
        bar.finish();
        eprintln!("{}: test perplexity {:.1}, {:.1} NFE per forward pass, {:.0} s", res.name, res.test_ppl, res.forward_nfe, res.train_sec);
        let (written, repair) = append_jsonl_unique(&path, &res, &prov, |v| v["name"].as_str().map(str::to_string))?;
        report_repair(&repair, &path);
        if !written {
            eprintln!("{}: already in {}; not recorded twice", res.name, path.display());
        }
    }
    Ok(())
}
