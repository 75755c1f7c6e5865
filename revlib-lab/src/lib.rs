//! # revlib-lab — the experiments, data and notebook support around revlib
//!
//! [`revlib`] is the library (solvers, gradients, DEQ layers). This crate is its lab: the
//! talk's experiments ([`experiments`]), data loaders, results files with provenance
//! ([`provenance`], [`results`]), the gradient benchmark ([`mod@bench`]), run sizes and helpers
//! for the notebooks ([`notebook`]), figures (`plot`, feature `plot`), tables (`table`,
//! feature `tables`), and the `revlib` command line.
//!
//! Environment variables read here (never by the library): `REVLIB_MODE` (run size),
//! `REVLIB_RESULTS` (where notebooks write), `REVLIB_DATA_DIR` (external data) and
//! `REVLIB_REQUIRE_DATA` (missing data is an error).

#![warn(missing_docs)]

pub mod bench;
pub mod error;
pub mod experiments;
pub mod notebook;
#[cfg(feature = "plot")]
pub mod plot;
pub mod provenance;
pub mod results;
#[cfg(feature = "tables")]
pub mod table;

pub use error::{Error, Result};
