//! Where and with what a result was produced: every results file carries a [`Provenance`].

use std::path::Path;

/// Version of the results schema written by this crate.
pub const SCHEMA: u32 = 2;

/// Where and with what a result was produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// Results schema version.
    pub schema: u32,
    /// `git rev-parse HEAD`, with `-dirty` when tracked files other than outputs have
    /// uncommitted changes, or "unknown" outside a git checkout ([`git_commit`]).
    pub git_commit: String,
    /// revlib's crate version.
    pub revlib_version: String,
    /// CPU model from `/proc/cpuinfo` ("unknown" elsewhere).
    pub cpu: String,
    /// Threads of rayon's pool (the MLP splits batches of 64 or more over two of them;
    /// `RAYON_NUM_THREADS=1` runs single-threaded).
    pub threads: usize,
    /// Random seed.
    pub seed: u64,
    /// quick / default / full.
    pub mode: String,
}

impl Provenance {
    /// Collect provenance for the current process.
    pub fn collect(seed: u64, mode: &str) -> Self {
        Self { schema: SCHEMA, git_commit: git_commit(), revlib_version: revlib::VERSION.into(), cpu: cpu_model(), threads: rayon::current_num_threads(), seed, mode: mode.into() }
    }
}

/// Paths of a checkout that hold what runs write (results, benchmark lines, reports, published notebooks): changes
/// there do not make a checkout `-dirty`, or a results file could never be regenerated at a
/// clean commit. Git pathspecs, from the top of the repository.
pub const OUTPUT_PATHSPECS: [&str; 4] = [":(top,exclude)results", ":(top,exclude,glob)benchmarks/*.jsonl", ":(top,exclude)reports", ":(top,exclude)notebooks/executed"];

/// The commit of the working directory's checkout, `-dirty` when tracked files outside
/// [`OUTPUT_PATHSPECS`] differ; "unknown" outside a git checkout.
pub fn git_commit() -> String {
    git_commit_in(Path::new("."))
}

/// [`git_commit`] of the checkout containing `dir`.
pub fn git_commit_in(dir: &Path) -> String {
    let run = |args: &[&str]| std::process::Command::new("git").current_dir(dir).args(args).output().ok().filter(|o| o.status.success());
    match run(&["rev-parse", "HEAD"]) {
        Some(o) => {
            let c = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--", ":/"];
            status.extend(OUTPUT_PATHSPECS);
            let dirty = run(&status).is_some_and(|o| !o.stdout.is_empty());
            if dirty {
                c + "-dirty"
            } else {
                c
            }
        }
        None => "unknown".into(),
    }
}

/// The CPU model name from `/proc/cpuinfo`, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Peak resident set size of this process in bytes (`VmHWM`), if the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
