//! The lab's error type: revlib's errors plus everything that touches files, processes and
//! command-line input.

use std::path::{Path, PathBuf};

/// Errors of the lab (experiments, data loaders, results files, figures, tables).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the library itself (a solve, a gradient, a model).
    #[error(transparent)]
    Revlib(#[from] revlib::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are malformed: the file, the line (1-based; 0 when not line-based) and
    /// what is wrong.
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line number, 1-based (0: the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// JSON (de)serialisation failed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file (or a description of the value).
        path: PathBuf,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A name given on the command line, in an environment variable or in a run
    /// specification is not one of the known values.
    #[error("unknown {what} `{value}` (expected one of: {expected})")]
    UnknownName {
        /// What kind of name (mode, solver, experiment, model, …).
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: String,
    },
    /// An argument of an experiment is outside its admissible range.
    #[error("invalid {name} = {value}: {expected}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What was expected.
        expected: &'static str,
    },
    /// Another process holds the lock of a results file (see [`crate::results::RunLock`]).
    #[error("{}: another process is writing this results file (wait for it to finish, or choose another --out)", path.display())]
    Locked {
        /// The results file.
        path: PathBuf,
    },
    /// A child process (one run of a grid) failed.
    #[error("{what}: {reason}")]
    Process {
        /// The run.
        what: String,
        /// Exit status or what went wrong.
        reason: String,
    },
    /// polars rejected a table.
    #[cfg(feature = "tables")]
    #[error("table: {0}")]
    Table(#[from] polars::error::PolarsError),
}

/// `Result` with the lab's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { path, source }
    }
    /// A JSON error on `path`.
    pub fn json(path: impl AsRef<Path>) -> impl FnOnce(serde_json::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Json { path, source }
    }
}
