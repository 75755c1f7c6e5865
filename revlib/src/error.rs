//! The crate's error type.
//!
//! Every variant carries the numbers needed to debug the failure: the time and step index where
//! a solve went wrong, the offending parameter value, the expected and found lengths.

/// Errors returned by revlib. Library code never panics on user input; it returns one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scalar argument is outside its admissible range.
    #[error("invalid argument `{name}` = {value}: {expected}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// A time grid (step times or output times) is empty or not strictly increasing.
    #[error("invalid time grid: {reason} (at index {index}: t = {t})")]
    InvalidTimeGrid {
        /// What is wrong.
        reason: &'static str,
        /// Index of the first offending entry.
        index: usize,
        /// The offending time.
        t: f64,
    },
    /// A vector has the wrong length.
    #[error("shape mismatch for {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// Which vector.
        what: &'static str,
        /// Expected length (or the multiple it must be).
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// The state stopped being finite during a solve.
    #[error("non-finite state at t = {t} (step {step}){context}")]
    NonFiniteState {
        /// Time at which the non-finite value appeared.
        t: f64,
        /// Index of the step that produced it.
        step: usize,
        /// Extra context (e.g. "during reversible reconstruction").
        context: String,
    },
    /// The adaptive controller asked for a step smaller than round-off allows.
    #[error("step size underflow at t = {t} (step {step}): dt = {dt:e}")]
    StepSizeUnderflow {
        /// Time of the failed step.
        t: f64,
        /// Accepted steps so far.
        step: usize,
        /// The step size proposed.
        dt: f64,
    },
    /// More than `max_steps` steps (accepted plus rejected) were needed.
    #[error("max_steps = {max_steps} exceeded at t = {t} (t1 = {t1})")]
    MaxStepsExceeded {
        /// Time reached.
        t: f64,
        /// Final time requested.
        t1: f64,
        /// The limit.
        max_steps: usize,
    },
    /// A Butcher tableau fails validation.
    #[error("invalid Butcher tableau: {0}")]
    InvalidTableau(String),
    /// The gradient strategy needs an algebraically reversible solver.
    #[error("solver `{solver}` is not algebraically reversible; the reversible adjoint needs one of Reversible, ReversibleHeun, AsyncLeapfrog")]
    NotReversible {
        /// Name of the solver given.
        solver: String,
    },
    /// The request is outside what revlib implements (implicit solvers, events, gradients with
    /// respect to output times, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An adaptive-stepping solve was requested from a solver with no error estimate.
    #[error("solver `{solver}` has no embedded error estimate; use fixed steps or an embedded method (Heun, Bosh3, Dopri5)")]
    NoErrorEstimate {
        /// Name of the solver given.
        solver: String,
    },
    /// A fixed-point iteration stopped at `max_steps` without meeting its tolerance (strict mode).
    #[error("fixed-point iteration did not converge in {iterations} iterations: relative residual {residual:e} > tol {tol:e}")]
    NoConvergence {
        /// Iterations run.
        iterations: usize,
        /// Final relative residual ‖z − f(z)‖ / ‖f(z)‖.
        residual: f64,
        /// The tolerance asked for.
        tol: f64,
    },
    /// A fixed-point iterate (or its reconstruction) stopped being finite.
    #[error("non-finite fixed-point iterate at iteration {iteration}{context}")]
    NonFiniteIterate {
        /// Iteration that produced it.
        iteration: usize,
        /// Extra context (e.g. "during reversible reconstruction").
        context: String,
    },
    /// An error from the tensor backend (dfdx).
    #[error("tensor backend: {0}")]
    Backend(String),
    /// Reading or parsing an input file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with revlib's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Check that a vector has the expected length.
pub(crate) fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { what, expected, found })
    }
}
