//! The continuous adjoint ("backsolve", optimise-then-discretise).
//!
//! Solves the augmented system backwards from $t_1$ to $t_0$ over the forward pass's step
//! times, with the same solver:
//! $$\dot y = f(t, y),\qquad \dot a = -\Big(\frac{\partial f}{\partial y}\Big)^{\!\top} a,\qquad
//! \dot g = -\Big(\frac{\partial f}{\partial \theta}\Big)^{\!\top} a,$$
//! starting from $(y(t_1), \partial L/\partial y(t_1), 0)$ and adding each output's cotangent to
//! $a$ when its time is reached. Memory is one state; the gradient is that of the continuous
//! problem, so it differs from the exact gradient of the discrete solve by the discretisation
//! error of both solves, and $y$ itself is reconstructed only approximately.

use super::{Backward, Parts, Problem, Store};
use crate::error::Result;
use crate::field::{axpy, Term};
use crate::integrate::forward;
use crate::solver::Step;

/// The augmented term on $[y, a, g]$.
struct Augmented<'a> {
    inner: &'a dyn Term,
    n: usize,
}

impl Term for Augmented<'_> {
    fn vf_len(&self, state_len: usize) -> usize {
        state_len
    }
    fn n_params(&self) -> usize {
        0
    }
    fn vf(&self, t: f64, s: &[f64], out: &mut [f64]) -> Result<()> {
        let n = self.n;
        let (y, rest) = s.split_at(n);
        let a = &rest[..n];
        let (fy, rest) = out.split_at_mut(n);
        let (fa, fg) = rest.split_at_mut(n);
        fg.fill(0.0);
        // One fused call (one forward pass): f(y), aᵀ∂f/∂y, aᵀ∂f/∂θ; then negate the adjoint parts.
        self.inner.vf_and_vjp(t, y, a, fy, fa, fg)?;
        fa.iter_mut().chain(fg.iter_mut()).for_each(|v| *v = -*v);
        Ok(())
    }
    fn vf_vjp(&self, _t: f64, _y: &[f64], _a: &[f64], _a_y: &mut [f64], _a_theta: &mut [f64]) -> Result<()> {
        Err(crate::Error::Unsupported("differentiating the continuous adjoint's own solve".into()))
    }
    fn prod_add(&self, scale: f64, vf: &[f64], t0: f64, t1: f64, out: &mut [f64]) {
        axpy(scale * (t1 - t0), vf, out);
    }
    fn prod_transpose_add(&self, scale: f64, a: &[f64], t0: f64, t1: f64, out_vf: &mut [f64]) {
        axpy(scale * (t1 - t0), a, out_vf);
    }
}

pub(crate) fn gradient(prob: &Problem, store: &mut Store) -> Result<Parts> {
    let Problem { term, solver, y0, opts, .. } = *prob;
    let n = y0.len();
    let p = term.n_params();
    let fwd = forward(term, solver, y0, opts, |_, _| Ok(()))?;
    store.hold(1);
    // Reuse the exact sweep's bookkeeping only for the loss cotangents.
    let (bw, value) = Backward::new(prob, &fwd)?;
    // Backward::new has already absorbed the cotangent at t1 into its carry cotangent.
    let a1 = bw.bar[..n].to_vec();
    let mut pending = bw.into_pending();
    let aug = Augmented { inner: term, n };
    let len = 2 * n + p;
    let mut s = vec![0.0; len];
    s[..n].copy_from_slice(&fwd.final_carry[..n]);
    s[n..2 * n].copy_from_slice(&a1);
    let steps = fwd.times.len() - 1;
    let clen = solver.carry_len(&aug, len);
    let (mut carry, mut next) = (vec![0.0; clen], vec![0.0; clen]);
    solver.init(&aug, fwd.times.at(steps), &s, &mut carry)?;
    for i in (0..steps).rev() {
        let (ta, tb) = (fwd.times.at(i + 1), fwd.times.at(i));
        solver.step(Step::new(&aug, len, ta, tb), &carry, &mut next, None)?;
        std::mem::swap(&mut carry, &mut next);
        // A diverging adjoint solve is an error, not a NaN gradient.
        if !carry.iter().all(|v| v.is_finite()) {
            return Err(crate::Error::NonFiniteGradient { strategy: prob.strategy.key(), what: "cotangent", step: i, t: tb });
        }
        if pending.last().is_some_and(|q| q.0 == i) {
            s.copy_from_slice(&carry[..len]);
            add_pending(&mut pending, i, &mut s[n..2 * n]);
            solver.init(&aug, tb, &s, &mut carry)?;
        }
    }
    let d_y0 = carry[n..2 * n].to_vec();
    let d_theta = carry[2 * n..len].to_vec();
    Ok((fwd, d_y0, d_theta, value))
}

fn add_pending(pending: &mut Vec<(usize, Vec<f64>)>, node: usize, a: &mut [f64]) {
    while pending.last().is_some_and(|q| q.0 == node) {
        if let Some((_, c)) = pending.pop() {
            axpy(1.0, &c, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::field::{Linear, VectorField};
    use crate::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// A field that counts its forward passes: `eval` and `eval_and_vjp` run one each, a bare
    /// `vjp` one of its own (as the MLP's does).
    struct Passes(Linear, AtomicUsize);

    impl VectorField for Passes {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn n_params(&self) -> usize {
            self.0.n_params()
        }
        fn params(&self) -> Vec<f64> {
            self.0.params()
        }
        fn set_params(&mut self, theta: &[f64]) -> crate::Result<()> {
            self.0.set_params(theta)
        }
        fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> crate::Result<()> {
            self.1.fetch_add(1, Relaxed);
            self.0.eval(t, y, out)
        }
        fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> crate::Result<()> {
            self.1.fetch_add(1, Relaxed);
            self.0.vjp(t, y, a, a_y, a_theta)
        }
        fn eval_and_vjp(&self, t: f64, y: &[f64], a: &[f64], out: &mut [f64], a_y: &mut [f64], a_theta: &mut [f64]) -> crate::Result<()> {
            self.1.fetch_add(1, Relaxed);
            self.0.eval(t, y, out)?;
            self.0.vjp(t, y, a, a_y, a_theta)
        }
    }

    #[test]
    fn each_adjoint_stage_runs_the_forward_pass_once() {
        let field = Passes(Linear::new(2, vec![-0.5, 1.0, -1.0, -0.2]).unwrap(), AtomicUsize::new(0));
        let steps = 25;
        let g = Adjoint::Backsolve.gradient(&field, &ExplicitRk::midpoint(), &[1.0, 0.5], &SolveOptions::fixed(0.0, 1.0, steps), &HalfSquaredNorm).unwrap();
        // Midpoint: 2 stages forward and 2 augmented stages backward per step, one pass each.
        assert_eq!(field.1.load(Relaxed), 4 * steps);
        assert_eq!((g.stats.field_evals, g.stats.vjps), (4 * steps, 2 * steps));
    }
}
