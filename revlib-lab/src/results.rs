//! JSON-lines results files: one record per line, each with its [`Provenance`], safe against
//! concurrent writers and interrupted runs.
//!
//! - A record is serialised into one buffer and written with a single `write` on a file opened
//!   in append mode, under an exclusive advisory lock on the file, then synced to disk: two
//!   writers never interleave, and a crash loses at most the record being written.
//! - A **torn last line** (a record cut short by `kill -9` or a full disk: no final newline and
//!   not valid JSON) is moved aside to `<file>.torn` and reported before the next append, never
//!   silently dropped and never blocking a resume. A valid last record that merely lacks its
//!   newline gets one, so the next record is not glued onto it.
//! - [`append_jsonl_unique`] skips a record whose key is already in the file (checked under the
//!   lock), so a resumed or repeated run never duplicates a record.
//! - [`RunLock`] lets one process at a time drive a results file (a second one gets
//!   [`Error::Locked`] with the file's name).

use crate::error::{Error, Result};
use crate::provenance::Provenance;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Read a JSON-lines results file (missing file: no records). Lines that do not parse as `T`
/// are an error with their line number; a torn last line (no final newline, not valid JSON) is
/// left out, as a resume will move it aside.
///
/// # Errors
/// [`Error::Io`] on a read failure, [`Error::Parse`] on a malformed line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path)(e)),
    };
    let body = &text[..text.len() - torn_tail(&text).map_or(0, str::len)];
    body.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::Parse { path: path.to_path_buf(), line: i + 1, reason: e.to_string() }))
        .collect()
}

/// The torn last line of a results file's text, if any: text after the last newline that is
/// not valid JSON.
fn torn_tail(text: &str) -> Option<&str> {
    let tail = &text[text.rfind('\n').map_or(0, |i| i + 1)..];
    (!tail.trim().is_empty() && serde_json::from_str::<serde_json::Value>(tail).is_err()).then_some(tail)
}

/// Where a results file's records come from: each distinct "commit C on CPU, N thread(s)" of
/// their [`Provenance`], in first-seen order (a `-dirty` commit means a modified checkout). What
/// a notebook prints beside the numbers it loads.
///
/// # Errors
/// As [`read_jsonl`]; a record without provenance is an [`Error::Parse`].
pub fn provenance_summary(path: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Record {
        provenance: Provenance,
    }
    let mut seen: Vec<String> = Vec::new();
    for r in read_jsonl::<Record>(path)? {
        let p = r.provenance;
        let s = format!("commit {} on {}, {} thread(s)", p.git_commit, p.cpu, p.threads);
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    Ok(seen)
}

/// What opening a results file for appending had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    /// Bytes of a torn last line moved to [`Repair::torn_file`].
    pub torn_bytes: usize,
    /// Where the torn line went (`<file>.torn`).
    pub torn_file: Option<PathBuf>,
    /// A newline was added after a valid last record that lacked one.
    pub added_newline: bool,
}

/// An open results file, locked exclusively, with its tail repaired.
struct Locked {
    file: File,
    text: String,
}

fn open_locked(path: &Path) -> Result<(Locked, Repair)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(Error::io(path))?;
    file.lock().map_err(Error::io(path))?;
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).map_err(Error::io(path))?;
    file.read_to_string(&mut text).map_err(Error::io(path))?;
    let mut repair = Repair::default();
    if let Some(tail) = torn_tail(&text) {
        let torn = PathBuf::from(format!("{}.torn", path.display()));
        let mut t = OpenOptions::new().create(true).append(true).open(&torn).map_err(Error::io(&torn))?;
        t.write_all(format!("{tail}\n").as_bytes()).and_then(|()| t.sync_all()).map_err(Error::io(&torn))?;
        repair.torn_bytes = tail.len();
        repair.torn_file = Some(torn);
        let keep = text.len() - tail.len();
        file.set_len(keep as u64).map_err(Error::io(path))?;
        text.truncate(keep);
    } else if !text.is_empty() && !text.ends_with('\n') {
        file.write_all(b"\n").map_err(Error::io(path))?;
        text.push('\n');
        repair.added_newline = true;
    }
    Ok((Locked { file, text }, repair))
}

fn record_line<T: serde::Serialize>(path: &Path, record: &T, provenance: &Provenance) -> Result<(serde_json::Value, String)> {
    let mut v = serde_json::to_value(record).map_err(Error::json(path))?;
    v["provenance"] = serde_json::to_value(provenance).map_err(Error::json(path))?;
    let mut line = serde_json::to_string(&v).map_err(Error::json(path))?;
    line.push('\n');
    Ok((v, line))
}

/// Append one record, with provenance, as one JSON line: one buffer, one `write` in append mode
/// under an exclusive lock, then synced. A torn last line is moved aside first (see the module
/// documentation); what was repaired is returned.
///
/// # Errors
/// [`Error::Io`] on a write failure, [`Error::Json`] if the record does not serialise.
pub fn append_jsonl<T: serde::Serialize>(path: &Path, record: &T, provenance: &Provenance) -> Result<Repair> {
    append_jsonl_unique(path, record, provenance, |_| None).map(|(_, r)| r)
}

/// Like [`append_jsonl`], but the record is skipped (returning `false`) when a line already in
/// the file has the same key, as computed by `key` on each parsed line and on the new record
/// (`None`: no key, never a duplicate). The check and the write happen under one lock.
///
/// # Errors
/// As [`append_jsonl`].
pub fn append_jsonl_unique<T: serde::Serialize>(path: &Path, record: &T, provenance: &Provenance, key: impl Fn(&serde_json::Value) -> Option<String>) -> Result<(bool, Repair)> {
    let (value, line) = record_line(path, record, provenance)?;
    let (mut locked, repair) = open_locked(path)?;
    if let Some(k) = key(&value) {
        let seen = locked.text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| key(&v).as_deref() == Some(k.as_str()));
        if seen {
            return Ok((false, repair));
        }
    }
    locked.file.write_all(line.as_bytes()).and_then(|()| locked.file.sync_data()).map_err(Error::io(path))?;
    Ok((true, repair))
}

/// Repair a results file's tail (see the module documentation) without appending: what a
/// resume calls before reading which runs are done.
///
/// # Errors
/// [`Error::Io`] on a read or write failure.
pub fn repair_jsonl(path: &Path) -> Result<Repair> {
    if !path.exists() {
        return Ok(Repair::default());
    }
    open_locked(path).map(|(_, r)| r)
}

/// One process at a time drives a results file: an exclusive advisory lock on `<file>.lock`,
/// held until dropped (the operating system releases it if the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock for `results`, or fail at once if another process holds it.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds it; [`Error::Io`] otherwise.
    pub fn acquire(results: &Path) -> Result<Self> {
        if let Some(dir) = results.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let path = PathBuf::from(format!("{}.lock", results.display()));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(Error::io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: results.to_path_buf() }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path)(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Write `bytes` to `path` atomically: a temporary file unique to this process, synced, then
/// renamed over `path`, then the directory synced. A reader sees the old file or the new one.
///
/// # Errors
/// [`Error::Io`] on any step.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    let mut f = File::create(&tmp).map_err(Error::io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Persist the rename; a directory that cannot be opened for syncing is not an error.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
