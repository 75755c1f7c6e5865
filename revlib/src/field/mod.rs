//! Vector fields $f(t, y; \theta)$ and the terms solvers step with.
//!
//! A [`VectorField`] evaluates $f$ on a **batch** of states stored as one flat slice
//! (`y.len() = batch * dim`, sample after sample) and provides the vector–Jacobian products
//! $a^\top \partial f/\partial y$ and $a^\top \partial f/\partial \theta$ that every gradient
//! strategy needs. Parameters $\theta$ are shared by the whole batch and exposed as a flat
//! vector, so any optimiser can train them.
//!
//! Solvers never call a vector field directly: they step with a [`Term`], the product of a
//! vector field and a control increment. For an ODE ([`OdeTerm`]) the control is time and the
//! increment is $\Delta t$; a controlled term (CDE, SDE) only needs a new `Term`
//! implementation, no change to any solver.

mod closed;
mod kernels;
mod mlp;
mod team;

pub use closed::{CoupledOscillator, DoublePendulum, Linear, Sir, WhiteDwarf};
pub use kernels::tanh_inplace;
pub use mlp::{Mlp, MlpConfig};

use crate::error::{check_len, Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The right-hand side $f(t, y; \theta)$ of an ODE, with vector–Jacobian products.
///
/// States come as a batch: `y.len()` must be a multiple of [`dim`](VectorField::dim). The
/// parameters are shared across the batch, so parameter cotangents are summed over it.
pub trait VectorField: Sync {
    /// State dimension of one sample.
    fn dim(&self) -> usize;
    /// Number of parameters $\theta$ (0 for a fixed field).
    fn n_params(&self) -> usize;
    /// Current parameters as a flat vector of length [`n_params`](VectorField::n_params).
    fn params(&self) -> Vec<f64>;
    /// Replace the parameters.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `theta.len() != n_params()`.
    fn set_params(&mut self, theta: &[f64]) -> Result<()>;
    /// Evaluate `out = f(t, y)` for a batch of states.
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()>;
    /// Vector–Jacobian product: **overwrites** `a_y` with $a^\top \partial f/\partial y$ and
    /// **adds** $a^\top \partial f/\partial \theta$ (summed over the batch) to `a_theta`.
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()>;
    /// `out = f(t, y)` and the VJP of [`vjp`](VectorField::vjp) in one call. The default calls
    /// both; fields whose VJP recomputes the forward pass (MLPs) override it to share the work.
    fn eval_and_vjp(
        &self,
        t: f64,
        y: &[f64],
        a: &[f64],
        out: &mut [f64],
        a_y: &mut [f64],
        a_theta: &mut [f64],
    ) -> Result<()> {
        self.eval(t, y, out)?;
        self.vjp(t, y, a, a_y, a_theta)
    }
    /// Evaluate `out = f(t, y)` and save in `saved` what [`vjp_saved`](VectorField::vjp_saved)
    /// needs to take the VJP at this point without re-running the forward pass. The default
    /// saves $(t, y)$; the MLP saves its activations.
    fn eval_save(&self, t: f64, y: &[f64], out: &mut [f64], saved: &mut Vec<f64>) -> Result<()> {
        saved.clear();
        saved.push(t);
        saved.extend_from_slice(y);
        self.eval(t, y, out)
    }
    /// The VJP of [`vjp`](VectorField::vjp) at the point saved by
    /// [`eval_save`](VectorField::eval_save).
    fn vjp_saved(&self, saved: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.vjp(saved[0], &saved[1..], a, a_y, a_theta)
    }
    /// A short human-readable name.
    fn name(&self) -> String {
        "vector field".into()
    }
}

/// Check a batch of states against a field's dimension; returns the batch size.
pub fn batch_size(field_dim: usize, len: usize) -> Result<usize> {
    if field_dim == 0 || len == 0 || len % field_dim != 0 {
        return Err(Error::ShapeMismatch { what: "state (a multiple of the field dimension)", expected: field_dim, found: len });
    }
    Ok(len / field_dim)
}

/// What a solver steps with: a vector field times a control increment.
///
/// The vector-field value of a `Term` lives in its own space of length
/// [`vf_len`](Term::vf_len) (for an ODE the state space; for a CDE a matrix), and
/// [`prod_add`](Term::prod_add) maps it to a state increment over $[t_0, t_1]$. Everything is
/// linear in the vector-field value, so the transpose needed by the backward pass is
/// [`prod_transpose_add`](Term::prod_transpose_add).
pub trait Term: Sync {
    /// Length of the vector-field value for a state of length `state_len`.
    fn vf_len(&self, state_len: usize) -> usize;
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// Vector-field value at `(t, y)`.
    fn vf(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()>;
    /// VJP of [`vf`](Term::vf): overwrites `a_y`, adds to `a_theta`.
    fn vf_vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()>;
    /// [`vf`](Term::vf) and [`vf_vjp`](Term::vf_vjp) at the same point in one call. The default
    /// calls both; a term whose VJP re-runs the forward pass overrides it to run it once (the
    /// continuous adjoint needs both at every stage).
    fn vf_and_vjp(&self, t: f64, y: &[f64], a: &[f64], out: &mut [f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.vf(t, y, out)?;
        self.vf_vjp(t, y, a, a_y, a_theta)
    }
    /// [`vf`](Term::vf), saving what [`vf_vjp_saved`](Term::vf_vjp_saved) needs.
    fn vf_save(&self, t: f64, y: &[f64], out: &mut [f64], saved: &mut Vec<f64>) -> Result<()> {
        saved.clear();
        saved.push(t);
        saved.extend_from_slice(y);
        self.vf(t, y, out)
    }
    /// [`vf_vjp`](Term::vf_vjp) at the point saved by [`vf_save`](Term::vf_save).
    fn vf_vjp_saved(&self, saved: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.vf_vjp(saved[0], &saved[1..], a, a_y, a_theta)
    }
    /// `out += scale * vf · (X(t1) - X(t0))`.
    fn prod_add(&self, scale: f64, vf: &[f64], t0: f64, t1: f64, out: &mut [f64]);
    /// `out_vf += scale * (∂ prod / ∂ vf)ᵀ a`.
    fn prod_transpose_add(&self, scale: f64, a: &[f64], t0: f64, t1: f64, out_vf: &mut [f64]);
    /// Refuse a solve over `[t0, t1]` that the term cannot drive (a Brownian path defined on a
    /// shorter interval); called once before a solve starts. Time terms accept any interval.
    ///
    /// # Errors
    /// What the term refuses, with the offending time.
    fn check_interval(&self, _t0: f64, _t1: f64) -> Result<()> {
        Ok(())
    }
}

/// The ODE term $f(t, y)\,\Delta t$.
pub struct OdeTerm<'a>(pub &'a dyn VectorField);

impl Term for OdeTerm<'_> {
    fn vf_len(&self, state_len: usize) -> usize {
        state_len
    }
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn vf(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        self.0.eval(t, y, out)
    }
    fn vf_vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.0.vjp(t, y, a, a_y, a_theta)
    }
    fn vf_and_vjp(&self, t: f64, y: &[f64], a: &[f64], out: &mut [f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.0.eval_and_vjp(t, y, a, out, a_y, a_theta)
    }
    fn vf_save(&self, t: f64, y: &[f64], out: &mut [f64], saved: &mut Vec<f64>) -> Result<()> {
        self.0.eval_save(t, y, out, saved)
    }
    fn vf_vjp_saved(&self, saved: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.0.vjp_saved(saved, a, a_y, a_theta)
    }
    fn prod_add(&self, scale: f64, vf: &[f64], t0: f64, t1: f64, out: &mut [f64]) {
        axpy(scale * (t1 - t0), vf, out);
    }
    fn prod_transpose_add(&self, scale: f64, a: &[f64], t0: f64, t1: f64, out_vf: &mut [f64]) {
        axpy(scale * (t1 - t0), a, out_vf);
    }
}

/// `y += alpha * x`.
#[inline]
pub(crate) fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Run `f` on a thread-local value taken out of `pool` for the call and put back after it, so
/// that buffers kept there survive between calls; a nested use on this thread (while the value
/// is out) gets a fresh default value.
pub(crate) fn with_taken<T: Default, R>(pool: &'static std::thread::LocalKey<std::cell::Cell<T>>, f: impl FnOnce(&mut T) -> R) -> R {
    let mut value = pool.take();
    let r = f(&mut value);
    pool.set(value);
    r
}

/// Run `f` on the first `len` entries of a thread-local buffer ([`with_taken`]), kept between
/// calls so that a hot loop allocates nothing (no per-step heap growth and trimming, whose page
/// faults and TLB shootdowns cost more than the arithmetic at large batches). The entries hold
/// whatever the last use left: `f` must write each one before reading it.
pub(crate) fn with_scratch<R>(pool: &'static std::thread::LocalKey<std::cell::Cell<Vec<f64>>>, len: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    with_taken(pool, |buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// A vector field wrapper that counts evaluations and VJPs (used for every solve's cost report).
pub struct Counted<'a> {
    inner: &'a dyn VectorField,
    evals: AtomicUsize,
    vjps: AtomicUsize,
}

impl<'a> Counted<'a> {
    /// Wrap a field with zeroed counters.
    pub fn new(inner: &'a dyn VectorField) -> Self {
        Self { inner, evals: AtomicUsize::new(0), vjps: AtomicUsize::new(0) }
    }
    /// Evaluations so far.
    pub fn evals(&self) -> usize {
        self.evals.load(Relaxed)
    }
    /// VJPs so far.
    pub fn vjps(&self) -> usize {
        self.vjps.load(Relaxed)
    }
}

impl VectorField for Counted<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn n_params(&self) -> usize {
        self.inner.n_params()
    }
    fn params(&self) -> Vec<f64> {
        self.inner.params()
    }
    fn set_params(&mut self, _theta: &[f64]) -> Result<()> {
        Err(Error::Unsupported("set_params on a counting wrapper".into()))
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        self.evals.fetch_add(1, Relaxed);
        self.inner.eval(t, y, out)
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.vjps.fetch_add(1, Relaxed);
        self.inner.vjp(t, y, a, a_y, a_theta)
    }
    fn eval_and_vjp(
        &self,
        t: f64,
        y: &[f64],
        a: &[f64],
        out: &mut [f64],
        a_y: &mut [f64],
        a_theta: &mut [f64],
    ) -> Result<()> {
        self.evals.fetch_add(1, Relaxed);
        self.vjps.fetch_add(1, Relaxed);
        self.inner.eval_and_vjp(t, y, a, out, a_y, a_theta)
    }
    fn eval_save(&self, t: f64, y: &[f64], out: &mut [f64], saved: &mut Vec<f64>) -> Result<()> {
        self.evals.fetch_add(1, Relaxed);
        self.inner.eval_save(t, y, out, saved)
    }
    fn vjp_saved(&self, saved: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        self.vjps.fetch_add(1, Relaxed);
        self.inner.vjp_saved(saved, a, a_y, a_theta)
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// Shared argument checks for closed-form fields: lengths of `y`, `out`, `a`, `a_y`, `a_theta`.
pub(crate) fn check_eval(dim: usize, y: &[f64], out: &[f64]) -> Result<usize> {
    let b = batch_size(dim, y.len())?;
    check_len("vector-field output", y.len(), out.len())?;
    Ok(b)
}

pub(crate) fn check_vjp(dim: usize, n_params: usize, y: &[f64], a: &[f64], a_y: &[f64], a_theta: &[f64]) -> Result<usize> {
    let b = batch_size(dim, y.len())?;
    check_len("VJP cotangent", y.len(), a.len())?;
    check_len("VJP state cotangent output", y.len(), a_y.len())?;
    check_len("VJP parameter cotangent output", n_params, a_theta.len())?;
    Ok(b)
}
