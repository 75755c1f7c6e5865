//! `revlib` command line: the gradient benchmark and the experiment drivers.

use clap::{Parser, Subcommand};
use revlib::bench::{predict_seconds, run_case, Case, Provenance};
use revlib::experiments::runtime::{runtime_case, RuntimeRecord};
use revlib::experiments::train::{train, RunRecord, RunSpec};
use revlib::experiments::lm::{study_models, train_lm, LmResult, StudyConfig};
use revlib::experiments::wikitext::wikitext2_or_generated;
use revlib::experiments::{append_jsonl, physical_grid, read_jsonl, runtime_grid, white_dwarf_grid, EXPERIMENTS};
use revlib::notebook::Mode;
use revlib::Adjoint;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Parser)]
#[command(name = "revlib", version, about = "Reversible ODE solvers: benchmarks and experiments")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

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
    },
    /// Run an experiment grid (white-dwarf, physical, runtime, or all): one process per run,
    /// progress bars, one JSON line per finished run appended to `<out>/<experiment>.jsonl`.
    /// Runs already in that file are skipped, so an interrupted grid resumes where it stopped.
    Experiment {
        /// white-dwarf, physical, runtime or all.
        name: String,
        /// Grid size: quick, default or full.
        #[arg(long, default_value = "full")]
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
    },
    /// The perplexity study: transformers, an implicit DEQ and a RevDEQ trained on the same
    /// WikiText-2 tokens (or the generated corpus when the files are absent). One JSON line per
    /// model in `<out>/lm-study.jsonl`; checkpoints in `<out>/lm-checkpoints/`; finished models
    /// are skipped and an interrupted model resumes from its last checkpoint.
    LmStudy {
        /// Sizes: quick, default or full.
        #[arg(long, default_value = "full")]
        mode: String,
        /// Output directory (default: results/<mode>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Only these models (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
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
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().cmd {
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
        Cmd::LmStudy { mode, out, models } => {
            let mode = Mode::parse(&mode)?;
            let out = out.unwrap_or_else(|| std::path::PathBuf::from("results").join(mode.name()));
            lm_study(mode, &out, &models)?;
        }
        Cmd::Experiment { name, mode, out, fresh, repeats } => {
            let mode = Mode::parse(&mode)?;
            let out = out.unwrap_or_else(|| std::path::PathBuf::from("results").join(mode.name()));
            let names: Vec<&str> = if name == "all" { EXPERIMENTS.to_vec() } else { vec![name.as_str()] };
            for name in names {
                run_experiment(name, mode, &out, fresh, repeats)?;
            }
        }
        Cmd::PlotlyJs => {
            #[cfg(feature = "plot")]
            println!("{}", revlib::plot::plotly_js());
            #[cfg(not(feature = "plot"))]
            return Err("build with `--features plot` for plotly-js".into());
        }
        Cmd::BenchCase { adjoint, batch, steps, seed, min_seconds } => {
            let case = Case { adjoint: Adjoint::from_key(&adjoint)?, batch, steps };
            println!("{}", run_case(&case, seed, min_seconds)?);
        }
        Cmd::Bench { batch, steps, adjoints, max_seconds, min_seconds, seed } => {
            let prov = serde_json::to_value(Provenance::collect(seed, "default"))?;
            let adjoints: Vec<Adjoint> = adjoints.iter().map(|k| Adjoint::from_key(k)).collect::<Result<_, _>>()?;
            let total = (batch.len() * steps.len() * adjoints.len()) as u64;
            let bar = indicatif::ProgressBar::new(total);
            let exe = std::env::current_exe()?;
            for &b in &batch {
                for &n in &steps {
                    let mut full_sec: Option<f64> = None;
                    // Full storage first: its time predicts the others'.
                    let mut order = adjoints.clone();
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
                                let out = Command::new(&exe)
                                    .args(["bench-case", "--adjoint", &adjoint.key(), "--batch", &b.to_string(), "--steps", &n.to_string(), "--seed", &seed.to_string(), "--min-seconds", &min_seconds.to_string()])
                                    .output()?;
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
                    }
                }
            }
            bar.finish_and_clear();
        }
    }
    Ok(())
}

/// Run one experiment grid, resuming from its results file.
fn run_experiment(name: &str, mode: Mode, out: &Path, fresh: bool, repeats: usize) -> Result<(), Box<dyn std::error::Error>> {
    let path = out.join(format!("{name}.jsonl"));
    if fresh && path.exists() {
        std::fs::remove_file(&path)?;
    }
    let prov = Provenance::collect(0, mode.name());
    let exe = std::env::current_exe()?;
    // (key, arguments of the child process, training steps for the inner bar)
    let jobs: Vec<(String, Vec<String>, u64)> = match name {
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
    let done: Vec<String> = if name == "runtime" {
        read_jsonl::<RuntimeRecord>(&path)?.into_iter().map(|r| format!("n{}/{}", r.n, r.adjoint)).collect()
    } else {
        read_jsonl::<RunRecord>(&path)?.into_iter().map(|r| r.key).collect()
    };
    let todo: Vec<_> = jobs.into_iter().filter(|j| !done.contains(&j.0)).collect();
    eprintln!("{name} ({}): {} runs done, {} to go → {}", mode.name(), done.len(), todo.len(), path.display());
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})")?;
    let outer = bars.add(indicatif::ProgressBar::new(todo.len() as u64).with_style(style.clone()).with_prefix(name.to_string()));
    for (key, args, steps) in todo {
        outer.set_message(key.clone());
        let inner = bars.add(indicatif::ProgressBar::new(steps.max(1)).with_style(style.clone()).with_prefix("steps"));
        let mut child = Command::new(&exe).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut err_text = String::new();
        if let Some(stderr) = child.stderr.take() {
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line?;
                let mut it = line.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some("progress"), Some(step), Some(loss)) => {
                        inner.set_position(step.parse().unwrap_or(0));
                        inner.set_message(format!("loss {loss}"));
                    }
                    _ => {
                        err_text.push_str(&line);
                        err_text.push('\n');
                    }
                }
            }
        }
        let output = child.wait_with_output()?;
        inner.finish_and_clear();
        if !output.status.success() {
            return Err(format!("run {key} failed: {err_text}").into());
        }
        let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        append_jsonl(&path, &v, &prov)?;
        outer.inc(1);
    }
    outer.finish();
    Ok(())
}

/// Train every model of the perplexity study that is not in the results file yet.
fn lm_study(mode: Mode, out: &Path, only: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = StudyConfig::for_mode(mode);
    let path = out.join("lm-study.jsonl");
    let done: Vec<String> = read_jsonl::<LmResult>(&path)?.into_iter().map(|r| r.name).collect();
    let ckdir = out.join("lm-checkpoints");
    std::fs::create_dir_all(&ckdir)?;
    let prov = Provenance::collect(cfg.seed, mode.name());
    if only.is_empty() {
        // Dispatch one process per model (so each peak RSS is the model's own). Model names do not
        // depend on the corpus, so the parent does not load it.
        for spec in study_models(&cfg, cfg.max_vocab) {
            if done.contains(&spec.name) {
                continue;
            }
            let status = Command::new(std::env::current_exe()?).args(["lm-study", "--mode", mode.name(), "--out"]).arg(out).args(["--models", &spec.name]).status()?;
            if !status.success() {
                return Err(format!("model {} failed", spec.name).into());
            }
        }
        return Ok(());
    }
    let corpus = wikitext2_or_generated(cfg.max_vocab)?;
    eprintln!("corpus: {} ({} training tokens, vocabulary {})", corpus.source, corpus.train.len(), corpus.vocab.len());
    for spec in study_models(&cfg, corpus.vocab.len()) {
        if done.contains(&spec.name) || !only.contains(&spec.name) {
            continue;
        }
        let bar = indicatif::ProgressBar::new(cfg.steps() as u64).with_style(indicatif::ProgressStyle::with_template("{prefix:>14} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})")?).with_prefix(spec.name.clone());
        let ck = ckdir.join(format!("{}.json", spec.name));
        let res = train_lm(&corpus, &cfg, &spec, Some(&ck), |step, _, loss| {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.3}"));
        })?;
        bar.finish();
        eprintln!("{}: test perplexity {:.1}, {:.1} NFE per forward pass, {:.0} s", res.name, res.test_ppl, res.forward_nfe, res.train_sec);
        append_jsonl(&path, &res, &prov)?;
    }
    Ok(())
}
