//! Recursive (binomial) checkpointing: schedules and the checkpointed backward pass.
//!
//! Model: steps $x_i \to x_{i+1}$, $i = 0..N-1$; the forward sweep computes all $N$ steps once
//! (needed for the loss anyway) and ends holding $x_{N-1}$ as its working state (revolve's
//! convention); $c$ **checkpoint slots include the one holding $x_0$**. A "recomputed step" is
//! any step evaluated after the forward sweep.
//!
//! With $\beta(c, r) = \binom{c+r}{c}$ (the most steps $c$ checkpoints can reverse when
//! no step is advanced more than $r$ times), the cost of reversing $n$ steps from a
//! checkpoint with $c$ slots and nothing else available is (Griewank 1992; Griewank & Walther
//! 2000)
//! $$T(n, c) = r\,n - \beta(c+1, r-1),\qquad r = \min\{r : \beta(c, r) \ge n\},$$
//! and the offline schedule here recomputes exactly $T(N, c) - (N - 1)$ steps: the first
//! sweep is free. For adaptive steps, where $N$ is unknown during the forward sweep,
//! [`online_plan`] keeps at most $c$ checkpoints by stride doubling and the backward pass
//! reverses each segment with the revolve schedule on the slots left free; its cost is
//! [`online_recomputations`], compared in the tests with the offline optimum.
//!
//! # References
//! A. Griewank, A. Walther, *Algorithm 799: revolve*, ACM TOMS 26 (2000).

use super::{Backward, Parts, Problem, Store};
use crate::error::{Error, Result};
use crate::field::Term;
use crate::integrate::{fixed_grid, forward, StepTimes};
use crate::solver::{Solver, Step};

/// $\binom{c + r}{c}$, saturating at `u128::MAX` (`r < 0` gives 0).
pub fn beta(c: usize, r: i64) -> u128 {
    if r < 0 {
        return 0;
    }
    let r = r as u128;
    let mut v: u128 = 1;
    for i in 1..=(c as u128).min(r) {
        // C(c+r, i) built incrementally from the smaller of c, r.
        v = v.saturating_mul(c as u128 + r - (c as u128).min(r) + i) / i;
    }
    v
}

/// The repetition number $r(n, c) = \min\{r : \beta(c, r) \ge n\}$.
pub fn repetitions(n: usize, c: usize) -> i64 {
    let mut r = 0;
    while beta(c, r) < n as u128 {
        r += 1;
    }
    r
}

/// $T(n, c)$: steps evaluated to reverse $n$ steps from a checkpoint with $c \ge 1$ slots.
pub fn reversal_cost(n: usize, c: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    if c == 1 {
        return n * (n - 1) / 2;
    }
    let r = repetitions(n, c);
    (r as u128 * n as u128 - beta(c + 1, r - 1)) as usize
}

/// Steps the offline (revolve) schedule recomputes for `n` steps and `c` checkpoints:
/// $T(n, c) - (n - 1)$.
pub fn revolve_recomputations(n: usize, c: usize) -> usize {
    reversal_cost(n, c) - n.saturating_sub(1)
}

/// An optimal split: advance `m` steps, checkpoint, reverse the right part with one slot
/// fewer, then the left part with all slots.
fn split(n: usize, c: usize) -> usize {
    let r = repetitions(n, c);
    let m = beta(c, r - 2).max((n as u128).saturating_sub(beta(c - 1, r))) as usize;
    m.clamp(1, n - 1)
}

/// Checkpoint positions of the offline schedule's forward sweep (always starting with 0).
pub fn revolve_plan(n: usize, c: usize) -> Vec<usize> {
    let mut pos = vec![0];
    let (mut p, mut slots) = (0, c);
    while slots > 1 && n - p > 1 {
        p += split(n - p, slots);
        pos.push(p);
        slots -= 1;
    }
    pos
}

/// Checkpoint positions left by the online stride-doubling schedule after `n` steps with `c`
/// slots: every multiple of the stride, the stride doubling whenever the slots are full.
pub fn online_plan(n: usize, c: usize) -> Vec<usize> {
    let mut pos = Vec::new();
    let mut stride = 1;
    for i in 0..n {
        online_push(&mut pos, &mut stride, c, i, |_| ());
    }
    pos
}

/// One forward step of the online schedule: decide whether node `i` is stored, thinning
/// first if all slots are full. `drop(k)` is called with the index of each removed entry.
fn online_push(pos: &mut Vec<usize>, stride: &mut usize, c: usize, i: usize, mut drop: impl FnMut(usize)) -> bool {
    if i % *stride != 0 {
        return false;
    }
    if pos.len() == c {
        let s2 = 2 * *stride;
        let mut k = pos.len();
        while k > 0 {
            k -= 1;
            if pos[k] % s2 != 0 {
                pos.remove(k);
                drop(k);
            }
        }
        *stride = s2;
        if i % *stride != 0 {
            return false;
        }
    }
    pos.push(i);
    true
}

/// Steps recomputed by the backward pass when the forward sweep left checkpoints at `pos`
/// (sorted, starting at 0) out of `c` slots and holds $x_{N-1}$.
pub fn recomputations_for(pos: &[usize], n: usize, c: usize) -> usize {
    let k = pos.len();
    let mut total = 0;
    for j in 0..k {
        let end = if j + 1 < k { pos[j + 1] } else { n - 1 };
        total += reversal_cost(end - pos[j], c - j);
    }
    total
}

/// Recomputations of the online schedule for `n` steps and `c` checkpoints.
pub fn online_recomputations(n: usize, c: usize) -> usize {
    recomputations_for(&online_plan(n, c), n, c)
}

/// The checkpointed gradient with `c` slots: the offline revolve schedule on a fixed grid,
/// the online one for adaptive steps or when `force_online`.
pub(crate) fn gradient(p: &Problem, c: usize, force_online: bool, store: &mut Store) -> Result<Parts> {
    let Problem { term, solver, y0, opts, .. } = *p;
    if c == 0 {
        return Err(Error::InvalidArgument { name: "checkpoints", value: 0.0, expected: "at least 1 (the initial state)" });
    }
    let n = y0.len();
    let plan = if force_online { None } else { fixed_grid(opts)?.map(|g| revolve_plan(g.len() - 1, c)) };
    let mut ckpts: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut held: Vec<f64> = Vec::new();
    let mut stride = 1;
    let mut pos: Vec<usize> = Vec::new();
    let fwd = forward(term, solver, y0, opts, |i, carry| {
        let keep = match &plan {
            Some(p) => p.binary_search(&i).is_ok(),
            None => online_push(&mut pos, &mut stride, c, i, |k| {
                ckpts.remove(k);
                store.release(1);
            }),
        };
        if keep {
            ckpts.push((i, carry.to_vec()));
            store.hold(1);
        }
        held.clear();
        held.extend_from_slice(carry);
        Ok(())
    })?;
    store.hold(1); // the held x_{N-1}
    let steps = fwd.times.len() - 1;
    let (mut bw, value) = Backward::new(p, &fwd)?;
    // The last step from the held working state, then each segment right to left.
    bw.step(steps - 1, &held)?;
    drop(held);
    store.release(1);
    let mut rev = Reverser { term, solver, n, times: &fwd.times, store };
    let mut seg_end = steps - 1;
    while let Some((p, carry)) = ckpts.pop() {
        // Checkpoints 0..j stay stored while segment j is reversed: c - j slots.
        let slots = c - ckpts.len();
        rev.reverse(&mut bw, p, seg_end - p, &carry, slots)?;
        rev.store.release(1);
        seg_end = p;
    }
    let (d_y0, d_theta) = bw.finish(opts.t0, y0)?;
    Ok((fwd, d_y0, d_theta, value))
}

/// Reverses segments from a checkpoint by recursive bisection at the revolve split.
struct Reverser<'a, 's> {
    term: &'a dyn Term,
    solver: &'a dyn Solver,
    n: usize,
    times: &'a StepTimes,
    store: &'s mut Store,
}

impl Reverser<'_, '_> {
    /// Recompute the carry at node `to` from the carry at node `from`.
    fn advance(&mut self, carry: &[f64], from: usize, to: usize) -> Result<Vec<f64>> {
        let mut x = carry.to_vec();
        let mut next = vec![0.0; x.len()];
        for i in from..to {
            self.solver.step(Step::new(self.term, self.n, self.times.at(i), self.times.at(i + 1)), &x, &mut next, None)?;
            std::mem::swap(&mut x, &mut next);
        }
        self.store.recomputed += to - from;
        Ok(x)
    }

    /// Pull the cotangent back through steps `a + len - 1` down to `a`, given the carry at
    /// node `a` and `slots` checkpoint slots (including the one holding node `a`).
    fn reverse(&mut self, bw: &mut Backward, a: usize, len: usize, carry_a: &[f64], slots: usize) -> Result<()> {
        match len {
            0 => Ok(()),
            1 => bw.step(a, carry_a),
            _ if slots <= 1 => {
                for i in (a..a + len).rev() {
                    let x = self.advance(carry_a, a, i)?;
                    bw.step(i, &x)?;
                }
                Ok(())
            }
            _ => {
                let m = split(len, slots);
                let xm = self.advance(carry_a, a, a + m)?;
                self.store.hold(1);
                self.reverse(bw, a + m, len - m, &xm, slots - 1)?;
                self.store.release(1);
                self.reverse(bw, a, m, carry_a, slots)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force optimum of the reversal cost by dynamic programming.
    fn dp(nmax: usize, cmax: usize) -> Vec<Vec<usize>> {
        let mut t = vec![vec![0usize; cmax + 1]; nmax + 1];
        for n in 2..=nmax {
            t[n][1] = n * (n - 1) / 2;
            for c in 2..=cmax {
                t[n][c] = (1..n).map(|m| m + t[n - m][c - 1] + t[m][c]).min().unwrap_or(0);
            }
        }
        t
    }

    #[test]
    fn closed_form_equals_dynamic_programming_optimum() {
        let t = dp(120, 7);
        for n in 1..=120 {
            for c in 1..=7 {
                assert_eq!(reversal_cost(n, c), t[n][c], "n = {n}, c = {c}");
            }
        }
    }

    #[test]
    fn split_attains_the_optimum() {
        let t = dp(150, 6);
        for n in 2..=150 {
            for c in 2..=6 {
                let m = split(n, c);
                assert_eq!(m + t[n - m][c - 1] + t[m][c], t[n][c], "n = {n}, c = {c}, m = {m}");
            }
        }
    }

    #[test]
    fn plan_cost_is_the_binomial_prediction() {
        for (n, c) in [(1000, 44), (1000, 8), (1000, 2), (10, 3), (1, 4), (2, 1), (777, 5)] {
            let plan = revolve_plan(n, c);
            assert!(plan.len() <= c);
            assert_eq!(recomputations_for(&plan, n, c), revolve_recomputations(n, c), "n = {n}, c = {c}");
        }
        // c(n) of the McCallum–Foster experiments: smallest c with (c+1)(c+2)/2 >= n.
        assert_eq!(repetitions(1000, 44), 2);
        assert_eq!(repetitions(1000, 43), 3);
    }

    #[test]
    fn online_plan_never_exceeds_the_slots_and_costs_at_least_the_optimum() {
        for c in 1..=9 {
            for n in 1..300 {
                let p = online_plan(n, c);
                assert!(p.len() <= c && p.first() == Some(&0));
                assert!(online_recomputations(n, c) >= revolve_recomputations(n, c));
            }
        }
    }
}
