//! Results files under faults: concurrent writers, torn lines, missing newlines, duplicates,
//! a second driver, atomic and bit-exact files; and the command line's order of validation.

use revlib_lab::provenance::Provenance;
use revlib_lab::results::{append_jsonl, append_jsonl_unique, provenance_summary, read_jsonl, repair_jsonl, write_atomic, RunLock};
use revlib_lab::Error;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revlib-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn prov() -> Provenance {
    Provenance::collect(0, "quick")
}

#[test]
fn concurrent_writers_never_interleave() {
    let path = scratch("concurrent").join("r.jsonl");
    let p = prov();
    // Four writers, 150 records each, every record 20 kB: far larger than one pipe buffer.
    std::thread::scope(|s| {
        for w in 0..4 {
            let (path, p) = (&path, &p);
            s.spawn(move || {
                for i in 0..150 {
                    let rec = serde_json::json!({"writer": w, "i": i, "payload": "x".repeat(20_000)});
                    append_jsonl(path, &rec, p).unwrap();
                }
            });
        }
    });
    let recs: Vec<serde_json::Value> = read_jsonl(&path).unwrap();
    assert_eq!(recs.len(), 600);
    for w in 0..4 {
        assert_eq!(recs.iter().filter(|r| r["writer"] == w).count(), 150);
    }
}

#[test]
fn a_torn_last_line_is_moved_aside_and_reported() {
    let path = scratch("torn").join("r.jsonl");
    let p = prov();
    append_jsonl(&path, &serde_json::json!({"key": "a"}), &p).unwrap();
    // What kill -9 in the middle of a write leaves: a prefix of a record, no newline.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"key\": \"b\", \"loss\": 0.12");
    std::fs::write(&path, &text).unwrap();
    // Readers skip it (a resume is never blocked) ...
    assert_eq!(read_jsonl::<serde_json::Value>(&path).unwrap().len(), 1);
    // ... and the next append moves it to `.torn` and says so.
    let repair = append_jsonl(&path, &serde_json::json!({"key": "c"}), &p).unwrap();
    assert_eq!(repair.torn_bytes, 25);
    let torn = repair.torn_file.unwrap();
    assert_eq!(std::fs::read_to_string(&torn).unwrap(), "{\"key\": \"b\", \"loss\": 0.12\n");
    let keys: Vec<String> = read_jsonl::<serde_json::Value>(&path).unwrap().iter().map(|r| r["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys, ["a", "c"]);
    // Repairing a clean file changes nothing.
    assert_eq!(repair_jsonl(&path).unwrap(), Default::default());
}

#[test]
fn a_record_without_its_newline_is_kept_and_not_glued_onto() {
    let path = scratch("newline").join("r.jsonl");
    std::fs::write(&path, "{\"key\": \"a\"}").unwrap();
    let repair = append_jsonl(&path, &serde_json::json!({"key": "b"}), &prov()).unwrap();
    assert!(repair.added_newline && repair.torn_file.is_none());
    assert_eq!(read_jsonl::<serde_json::Value>(&path).unwrap().len(), 2);
}

#[test]
fn malformed_lines_inside_the_file_are_errors_with_their_line() {
    let path = scratch("malformed").join("r.jsonl");
    std::fs::write(&path, "{\"key\": \"a\"}\nnot json\n{\"key\": \"b\"}\n").unwrap();
    let err = read_jsonl::<serde_json::Value>(&path).unwrap_err().to_string();
    assert!(err.contains("r.jsonl:2:"), "{err}");
}

#[test]
fn unique_appends_skip_a_key_already_present() {
    let path = scratch("unique").join("r.jsonl");
    let key = |v: &serde_json::Value| v["name"].as_str().map(str::to_string);
    let p = prov();
    assert!(append_jsonl_unique(&path, &serde_json::json!({"name": "revdeq_s0", "ppl": 1.0}), &p, key).unwrap().0);
    assert!(!append_jsonl_unique(&path, &serde_json::json!({"name": "revdeq_s0", "ppl": 2.0}), &p, key).unwrap().0);
    assert!(append_jsonl_unique(&path, &serde_json::json!({"name": "revdeq_s1", "ppl": 3.0}), &p, key).unwrap().0);
    let recs: Vec<serde_json::Value> = read_jsonl(&path).unwrap();
    assert_eq!(recs.iter().map(|r| r["ppl"].as_f64().unwrap()).collect::<Vec<_>>(), [1.0, 3.0]);
}

#[test]
fn provenance_summary_lists_each_source_once_in_order() {
    let path = scratch("sources").join("r.jsonl");
    let at = |commit: &str, threads: usize| Provenance { git_commit: commit.into(), cpu: "Test CPU".into(), threads, ..prov() };
    for (i, p) in [at("abc", 1), at("abc", 1), at("def-dirty", 2), at("abc", 1)].iter().enumerate() {
        append_jsonl(&path, &serde_json::json!({ "run": i }), p).unwrap();
    }
    assert_eq!(provenance_summary(&path).unwrap(), ["commit abc on Test CPU, 1 thread(s)", "commit def-dirty on Test CPU, 2 thread(s)"]);
    assert!(provenance_summary(&path.with_file_name("missing.jsonl")).unwrap().is_empty());
    std::fs::write(&path, "{\"run\": 0}\n").unwrap();
    assert!(matches!(provenance_summary(&path), Err(Error::Parse { line: 1, .. })), "a record without provenance");
}

#[test]
fn a_second_driver_of_one_results_file_is_refused() {
    let path = scratch("lock").join("r.jsonl");
    let first = RunLock::acquire(&path).unwrap();
    match RunLock::acquire(&path) {
        Err(Error::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    drop(first);
    RunLock::acquire(&path).unwrap();
}

#[test]
fn atomic_files_round_trip_random_f64_bit_exactly() {
    use rand::{RngCore, SeedableRng};
    let path = scratch("atomic").join("ck.json");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Random bit patterns (every exponent, subnormals included), minus NaN and ±inf, which JSON
    // cannot hold; plus the awkward values by name.
    let mut xs: Vec<f64> = (0..200_000).map(|_| f64::from_bits(rng.next_u64())).filter(|x| x.is_finite()).collect();
    xs.extend([0.0, -0.0, f64::MIN_POSITIVE, f64::MAX, f64::MIN, 5e-324, 0.1, 1.0 / 3.0]);
    write_atomic(&path, serde_json::to_string(&xs).unwrap().as_bytes()).unwrap();
    let back: Vec<f64> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let changed = xs.iter().zip(&back).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!((back.len(), changed), (xs.len(), 0));
    // No temporary file is left next to it.
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn fresh_validates_the_experiment_before_deleting_anything() {
    let dir = scratch("fresh");
    let file = dir.join("nonsense.jsonl");
    std::fs::write(&file, "{\"key\": \"keep me\"}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_revlib"))
        .args(["experiment", "nonsense", "--mode", "quick", "--fresh", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(2), "clap refuses the name: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"key\": \"keep me\"}\n");
}

#[test]
fn a_second_experiment_driver_on_one_directory_exits_with_a_clear_message() {
    let dir = scratch("driver");
    let _held = RunLock::acquire(&dir.join("runtime.jsonl")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_revlib"))
        .args(["experiment", "runtime", "--mode", "quick", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("another process"), "{err}");
}

/// The state letter of a process in /proc (None once it is gone).
#[cfg(target_os = "linux")]
fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid …; comm may contain spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Starts `revlib <args> --out <dir>`, waits for its first child, kills the driver with SIGKILL
/// and asserts that the child ends within ten seconds.
#[cfg(target_os = "linux")]
fn kill_driver_and_check_its_child_ends(args: &[&str], dir: &std::path::Path) {
    use std::time::{Duration, Instant};
    let mut parent = std::process::Command::new(env!("CARGO_BIN_EXE_revlib")).args(args).arg("--out").arg(dir).stderr(std::process::Stdio::null()).spawn().unwrap();
    let find_child = || -> Option<u32> {
        std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|&pid| proc_state(pid).is_some_and(|(_, ppid)| ppid == parent.id()))
    };
    let t = Instant::now();
    let child = loop {
        if let Some(c) = find_child() {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the driver started no child");
        std::thread::sleep(Duration::from_millis(50));
    };
    parent.kill().unwrap();
    parent.wait().unwrap();
    let t = Instant::now();
    while proc_state(child).is_some_and(|(s, _)| s != 'Z') {
        assert!(t.elapsed() < Duration::from_secs(10), "child {child} of `revlib {}` outlived its parent", args.join(" "));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn killing_a_driver_stops_its_children_and_the_resume_recovers() {
    let dir = scratch("kill");
    let exe = env!("CARGO_BIN_EXE_revlib");
    // A grid whose first case takes long (many repeats), driven by a process we kill -9.
    kill_driver_and_check_its_child_ends(&["experiment", "runtime", "--mode", "quick", "--repeats", "1000000"], &dir);
    // A torn record, as a write cut short would leave it; the resume moves it aside and finishes.
    let path = dir.join("runtime.jsonl");
    std::fs::write(&path, "{\"n\": 100, \"adjoint\": \"reversi").unwrap();
    let out = std::process::Command::new(exe).args(["experiment", "runtime", "--mode", "quick", "--repeats", "1", "--out"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("torn last line"), "{err}");
    let recs: Vec<serde_json::Value> = read_jsonl(&path).unwrap();
    let mut keys: Vec<String> = recs.iter().map(|r| format!("{}/{}", r["n"], r["adjoint"])).collect();
    keys.sort();
    keys.dedup();
    let grid = revlib_lab::experiments::runtime_grid(revlib_lab::notebook::Mode::Quick);
    assert_eq!((recs.len(), keys.len()), (grid.len(), grid.len()));
    assert!(std::fs::read_to_string(dir.join("runtime.jsonl.torn")).unwrap().contains("reversi"));
}

#[cfg(target_os = "linux")]
#[test]
fn killing_the_lm_study_driver_stops_the_models_it_started() {
    let dir = scratch("kill-lm");
    kill_driver_and_check_its_child_ends(&["lm-study", "--mode", "quick", "--jobs", "2"], &dir);
    // Nothing recorded by the killed run, so a resume trains every model once.
    let recs: Vec<serde_json::Value> = read_jsonl(&dir.join("lm-study.jsonl")).unwrap();
    assert!(recs.is_empty(), "{recs:?}");
}

#[test]
fn loaders_and_configs_refuse_bad_input_with_file_and_line() {
    use revlib_lab::experiments::data::load_schmidt_lipson;
    let dir = scratch("loaders");
    for (name, body, line) in [("nan", "% a\n0 1.0 NaN\n0 2.0 1\n", 2), ("inf", "% a\n0 1.0 1\n0 2.0 inf\n", 3), ("frac", "% a\n0.5 1.0 1\n0.5 2.0 1\n", 2)] {
        let p = dir.join(format!("{name}.txt"));
        std::fs::write(&p, body).unwrap();
        let err = load_schmidt_lipson(&p).unwrap_err().to_string();
        assert!(err.contains(&format!("{name}.txt:{line}:")), "{err}");
    }
    let empty = revlib_lab::experiments::data::Trial { id: 0, t: vec![], states: vec![], names: vec!["a".into()] };
    assert!(empty.resample(5, 1.0, 1.0).is_err());
    // Empty WikiText split: an error naming the file, before any training.
    let wt = dir.join("wt");
    std::fs::create_dir_all(&wt).unwrap();
    for (split, text) in [("train", "a b c\n"), ("valid", "a\n"), ("test", "")] {
        std::fs::write(wt.join(format!("{split}.txt")), text).unwrap();
    }
    let err = revlib_lab::experiments::wikitext::load_wikitext(&wt, 100).unwrap_err().to_string();
    assert!(err.contains("test.txt") && err.contains("no words"), "{err}");
    // Study sizes of zero: errors, not panics.
    use revlib_lab::experiments::lm::StudyConfig;
    let base = StudyConfig::for_mode(revlib_lab::notebook::Mode::Quick);
    for cfg in [StudyConfig { batch: 0, ..base.clone() }, StudyConfig { heads: 0, ..base.clone() }, StudyConfig { checkpoint_every: 0, ..base.clone() }, StudyConfig { heads: 5, ..base.clone() }] {
        assert!(matches!(cfg.validate(), Err(Error::InvalidArgument { .. })));
    }
    base.validate().unwrap();
}

#[test]
fn random_schmidt_lipson_files_round_trip_and_any_bad_cell_names_its_line() {
    use rand::{Rng, SeedableRng};
    use revlib_lab::experiments::data::load_schmidt_lipson;
    let dir = scratch("sl-random");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for case in 0..60 {
        let d = rng.gen_range(1..5);
        let names: Vec<String> = (0..d).map(|k| format!("x{k}")).collect();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut expect = Vec::new();
        for id in 0..rng.gen_range(1..4) {
            let mut t = rng.gen_range(-10.0..10.0);
            let mut trial = (id as i64, Vec::new(), Vec::new());
            for _ in 0..rng.gen_range(2..15) {
                t += rng.gen_range(1e-6..1.0);
                let x: Vec<f64> = (0..d).map(|_| rng.gen_range(-1e3..1e3) * 10f64.powi(rng.gen_range(-8..8))).collect();
                rows.push([id.to_string(), format!("{t}")].into_iter().chain(x.iter().map(|v| format!("{v:e}"))).collect());
                trial.1.push(t);
                trial.2.push(x);
            }
            expect.push(trial);
        }
        let write = |rows: &[Vec<String>]| {
            let body: String = rows.iter().map(|r| r.join(" ") + "\n").collect();
            let p = dir.join(format!("case{case}.txt"));
            std::fs::write(&p, format!("% {}\n{body}", names.join(" "))).unwrap();
            p
        };
        let trials = load_schmidt_lipson(&write(&rows)).unwrap();
        let got: Vec<_> = trials.into_iter().map(|tr| (tr.id, tr.t, tr.states)).collect();
        assert_eq!(got, expect, "case {case}");
        // One bad cell anywhere: an error naming the file and that row's line (header is line 1).
        let (i, j) = (rng.gen_range(0..rows.len()), rng.gen_range(0..2 + d));
        let bad = ["NaN", "inf", "-inf", "x", "1,5", ""][rng.gen_range(0..6)];
        let bad = if j == 0 && bad.is_empty() { "0.5" } else { bad };
        rows[i][j] = bad.to_string();
        let err = load_schmidt_lipson(&write(&rows)).unwrap_err().to_string();
        assert!(err.contains(&format!("case{case}.txt:{}:", i + 2)), "case {case}, cell ({i}, {j}) = `{bad}`: {err}");
    }
}

#[test]
fn the_command_line_lists_and_refuses_unknown_names() {
    let exe = env!("CARGO_BIN_EXE_revlib");
    let help = std::process::Command::new(exe).args(["experiment", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("white-dwarf") && help.contains("quick"), "{help}");
    let out = std::process::Command::new(exe).args(["lm-study", "--mode", "quick", "--models", "nonsense", "--out"]).arg(scratch("cli")).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown model"));
    let out = std::process::Command::new(exe).args(["experiment", "runtime", "--mode", "huge"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn random_records_round_trip_through_the_writer() {
    use rand::{Rng, SeedableRng};
    let path = scratch("random").join("r.jsonl");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let alphabet: Vec<char> = "ab \n\t\"\\{}[],:λ∑😀\u{0}\u{7f}".chars().collect();
    let p = prov();
    let mut written = Vec::new();
    for i in 0..300 {
        let s: String = (0..rng.gen_range(0..200)).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
        let xs: Vec<f64> = (0..rng.gen_range(0..20)).map(|_| f64::from_bits(rng.gen::<u64>())).filter(|x| x.is_finite()).collect();
        let rec = serde_json::json!({"key": i, "s": s, "xs": xs});
        append_jsonl(&path, &rec, &p).unwrap();
        written.push(rec);
    }
    let back: Vec<serde_json::Value> = read_jsonl(&path).unwrap();
    let back: Vec<serde_json::Value> = back.into_iter().map(|mut v| { v.as_object_mut().unwrap().remove("provenance"); v }).collect();
    assert_eq!(back, written);
}

#[test]
fn a_headline_is_written_with_provenance_and_never_cites_data_it_did_not_read() {
    use revlib_lab::notebook::{Headline, Mode};
    let dir = scratch("headline");
    let mut h = Headline::new("Round trip after n steps", &["scheme", "error"]);
    assert!(matches!(h.write(&dir, "02", Mode::Quick), Err(Error::InvalidArgument { .. })), "an empty table is refused");
    h.row(["Euler".into(), "1.2e-3".into()]).unwrap();
    assert!(matches!(h.row(["only one cell".into()]), Err(Error::InvalidArgument { .. })));
    assert!(matches!(h.data_from("measured", &[dir.join("missing.txt")]), Err(Error::Io { .. })));
    let data = dir.join("data.txt");
    std::fs::write(&data, "1 2 3\n").unwrap();
    h.data_from("measured: data.txt", std::slice::from_ref(&data)).unwrap();
    let path = h.write(&dir, "02", Mode::Quick).unwrap();
    assert_eq!(path, dir.join("02_headline.json"));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["provenance"]["mode"], "quick");
    let back: Headline = serde_json::from_value(doc["results"].clone()).unwrap();
    assert_eq!(back.rows, vec![vec!["Euler".to_string(), "1.2e-3".to_string()]]);
    assert_eq!(back.data_files, vec![data.canonicalize().unwrap()]);
}

#[test]
fn rewriting_results_keeps_a_checkout_clean_but_changed_code_makes_it_dirty() {
    use revlib_lab::provenance::git_commit_in;
    let repo = scratch("git-clean");
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git").current_dir(&repo).args(["-c", "user.name=t", "-c", "user.email=t@t"]).args(args).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    for f in ["results/full/a.jsonl", "benchmarks/b.jsonl", "benchmarks/b.py", "src/lib.rs"] {
        let p = repo.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "1\n").unwrap();
    }
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "init"]);
    let head = git(&["rev-parse", "HEAD"]);
    assert_eq!(git_commit_in(&repo), head);
    std::fs::write(repo.join("results/full/a.jsonl"), "2\n").unwrap();
    std::fs::write(repo.join("benchmarks/b.jsonl"), "2\n").unwrap();
    assert_eq!(git_commit_in(&repo.join("results")), head, "outputs rewritten: still clean (from any folder of the checkout)");
    std::fs::write(repo.join("benchmarks/b.py"), "2\n").unwrap();
    assert_eq!(git_commit_in(&repo), format!("{head}-dirty"));
    assert_eq!(git_commit_in(&std::env::temp_dir().join("revlib-surely-not-a-repo-dir")), "unknown");
}
