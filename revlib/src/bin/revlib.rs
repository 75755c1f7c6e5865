//! `revlib` command line: benchmarks (and, later, the experiment drivers).

use clap::{Parser, Subcommand};
use revlib::bench::{predict_seconds, run_case, Case, Provenance};
use revlib::Adjoint;
use std::process::Command;

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
