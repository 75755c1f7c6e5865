//! The crate's error type.
//!
//! Every variant carries the numbers needed to debug the failure: the time and step index where
//! a solve went wrong, the offending parameter value, the expected and found lengths.

/// Errors returned by revlib. Library code never panics on user input; it returns one of these.
///
/// The library touches no files: errors of reading data or writing results belong to the
/// caller (the `revlib-lab` crate has its own error type wrapping this one).
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
    /// A loss, a cotangent during the backward pass, or the final gradient is not finite (NaN
    /// or infinite): the gradient would be meaningless, so none is returned.
    #[error("non-finite {what} in the {strategy} gradient at step {step} (t = {t})")]
    NonFiniteGradient {
        /// The gradient strategy (its key, e.g. `reversible`).
        strategy: String,
        /// `loss`, `cotangent` or `gradient`.
        what: &'static str,
        /// The step whose backward pass produced it (N for the loss).
        step: usize,
        /// The time of that step's start.
        t: f64,
    },
    /// The reversible adjoint rebuilt the initial state (or a stored carry) with a relative
    /// error above the tolerance: round-off, amplified by the inverse, has made the rebuilt
    /// trajectory — and so the gradient — inexact.
    #[error("inexact reversible reconstruction: relative error {error:e} > tolerance {tol:e} (at step {step}); use fewer steps, a larger coupling λ, or Adjoint::ReversibleEvery(K) to store a carry every K steps")]
    InexactReconstruction {
        /// The certificate: relative error of the rebuilt state.
        error: f64,
        /// The tolerance it exceeded.
        tol: f64,
        /// The step at which it was measured (0: the initial state).
        step: usize,
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
    /// A text that should name a value (an adjoint key, a solver name, …) does not.
    #[error("cannot parse {what} from `{input}` (expected {expected})")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The text given.
        input: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// The tensor backend (dfdx) failed: out of memory, a device error, …
    #[error("tensor backend failed in {op}")]
    Backend {
        /// The operation that failed.
        op: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
}

/// An error reported by the tensor backend, kept as the [`source`](std::error::Error::source)
/// of [`Error::Backend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    message: String,
}

impl BackendError {
    /// Wrap the backend's error (dfdx's device errors implement `Display` only).
    pub fn new(err: impl std::fmt::Display) -> Self {
        Self { message: err.to_string() }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}

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
