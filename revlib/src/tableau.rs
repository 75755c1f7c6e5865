//! Butcher tableaux of explicit Runge–Kutta methods, validated on construction.
//!
//! ```text
//!  c | A          stage i:  Y_i = y + Σ_{j<i} a_ij K_j,   K_i = f(t + c_i h, Y_i) h
//! ---+----        step:     y' = y + Σ_i b_i K_i
//!    | bᵀ         error:    e  = Σ_i (b_i - b̂_i) K_i   (embedded pair, if any)
//! ```

use crate::error::{Error, Result};

/// The highest order whose rooted-tree conditions [`ButcherTableau::new`] checks (286 trees up to
/// order 8; the count grows about threefold per order).
pub const MAX_ORDER: usize = 8;

/// A validated explicit Runge–Kutta tableau, optionally with an embedded lower-order solution.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ButcherTableau {
    name: String,
    /// Stage coefficients, row i holds $a_{i,0..i}$ (strictly lower triangular).
    a: Vec<Vec<f64>>,
    b: Vec<f64>,
    c: Vec<f64>,
    /// Error weights $b_i - \hat b_i$ of an embedded pair.
    b_err: Option<Vec<f64>>,
    order: usize,
    /// Order of the embedded solution (the error estimate is $O(h^{\hat p + 1})$).
    err_order: usize,
}

const TOL: f64 = 1e-12;

impl ButcherTableau {
    /// Build and validate a tableau. `a` is given as full rows (`a[i].len() == stages`); the
    /// method must be explicit (zero on and above the diagonal).
    ///
    /// # Errors
    /// - [`Error::Unsupported`] if some $a_{ij} \ne 0$ with $j \ge i$ (implicit methods are
    ///   out of scope).
    /// - [`Error::InvalidTableau`] on inconsistent sizes, non-finite entries,
    ///   $c_i \ne \sum_j a_{ij}$, $\sum_i b_i \ne 1$, error weights not summing to 0, or a
    ///   claimed `order` that the order conditions do not support.
    pub fn new(
        name: &str,
        a: Vec<Vec<f64>>,
        b: Vec<f64>,
        c: Vec<f64>,
        b_err: Option<Vec<f64>>,
        order: usize,
        err_order: usize,
    ) -> Result<Self> {
        let s = b.len();
        let bad = |m: String| Err(Error::InvalidTableau(format!("{name}: {m}")));
        if s == 0 {
            return bad("no stages".into());
        }
        if order > MAX_ORDER || err_order > MAX_ORDER {
            return bad(format!("claims order {order} (embedded {err_order}); order conditions are checked up to {MAX_ORDER}"));
        }
        if a.len() != s || c.len() != s || a.iter().any(|r| r.len() != s) {
            return bad(format!("A must be {s}×{s} and c of length {s}"));
        }
        if let Some(e) = &b_err {
            if e.len() != s {
                return bad(format!("error weights must have length {s}"));
            }
            if e.iter().sum::<f64>().abs() > TOL {
                return bad("error weights must sum to 0 (both solutions consistent)".into());
            }
        }
        let all = a.iter().flatten().chain(&b).chain(&c).chain(b_err.iter().flatten());
        if all.clone().any(|v| !v.is_finite()) {
            return bad("non-finite coefficient".into());
        }
        for (i, row) in a.iter().enumerate() {
            if row[i..].iter().any(|&v| v != 0.0) {
                return Err(Error::Unsupported(format!(
                    "{name}: a[{i}][j] ≠ 0 for some j ≥ {i}; implicit and stiff solvers are not implemented"
                )));
            }
            let sum: f64 = row.iter().sum();
            if (sum - c[i]).abs() > TOL {
                return bad(format!("row-sum condition fails at stage {i}: Σ_j a_ij = {sum} ≠ c_i = {}", c[i]));
            }
        }
        if (b.iter().sum::<f64>() - 1.0).abs() > TOL {
            return bad("weights b must sum to 1".into());
        }
        let a: Vec<Vec<f64>> = a.into_iter().enumerate().map(|(i, r)| r[..i].to_vec()).collect();
        let tab = Self { name: name.into(), a, b, c, b_err, order, err_order };
        let achieved = tab.satisfied_order(order.max(1));
        if achieved < order {
            return bad(format!("claims order {order} but satisfies the order conditions only up to {achieved}"));
        }
        Ok(tab)
    }

    /// Forward Euler, order 1.
    ///
    /// ```text
    /// 0 |
    /// --+--
    ///   | 1
    /// ```
    pub fn euler() -> Self {
        Self::known("Euler", vec![vec![0.0]], vec![1.0], vec![0.0], None, 1, 0)
    }
    /// Explicit midpoint, order 2.
    ///
    /// ```text
    ///   0 |
    /// 1/2 | 1/2
    /// ----+---------
    ///     |  0   1
    /// ```
    pub fn midpoint() -> Self {
        Self::known("Midpoint", vec![vec![0.0, 0.0], vec![0.5, 0.0]], vec![0.0, 1.0], vec![0.0, 0.5], None, 2, 0)
    }
    /// Heun's method (explicit trapezoid), order 2, with Euler embedded (error order 1).
    ///
    /// ```text
    /// 0 |
    /// 1 | 1
    /// --+---------
    ///   | 1/2 1/2
    ///   |  1   0    (embedded)
    /// ```
    pub fn heun() -> Self {
        Self::known(
            "Heun",
            vec![vec![0.0, 0.0], vec![1.0, 0.0]],
            vec![0.5, 0.5],
            vec![0.0, 1.0],
            Some(vec![-0.5, 0.5]),
            2,
            1,
        )
    }
    /// Ralston's third-order method (diffrax `RK3Simple` in the McCallum–Foster experiments).
    ///
    /// ```text
    ///   0 |
    /// 1/2 | 1/2
    /// 3/4 |  0   3/4
    /// ----+-------------
    ///     | 2/9 1/3 4/9
    /// ```
    pub fn ralston3() -> Self {
        Self::known(
            "Ralston3",
            vec![vec![0.0; 3], vec![0.5, 0.0, 0.0], vec![0.0, 0.75, 0.0]],
            vec![2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
            vec![0.0, 0.5, 0.75],
            None,
            3,
            0,
        )
    }
    /// The classical fourth-order Runge–Kutta method.
    ///
    /// ```text
    ///   0 |
    /// 1/2 | 1/2
    /// 1/2 |  0  1/2
    ///   1 |  0   0   1
    /// ----+----------------
    ///     | 1/6 1/3 1/3 1/6
    /// ```
    pub fn rk4() -> Self {
        Self::known(
            "RK4",
            vec![vec![0.0; 4], vec![0.5, 0.0, 0.0, 0.0], vec![0.0, 0.5, 0.0, 0.0], vec![0.0, 0.0, 1.0, 0.0]],
            vec![1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
            vec![0.0, 0.5, 0.5, 1.0],
            None,
            4,
            0,
        )
    }
    /// Bogacki–Shampine 3(2): Ralston3 plus a fourth (FSAL) stage at $(t_1, y_1)$ for the
    /// embedded second-order estimate. With fixed steps the fourth stage is skipped.
    ///
    /// ```text
    ///   0 |
    /// 1/2 | 1/2
    /// 3/4 |  0   3/4
    ///   1 | 2/9  1/3  4/9
    /// ----+-------------------
    ///     | 2/9  1/3  4/9   0
    ///     | 7/24 1/4  1/3  1/8   (embedded)
    /// ```
    pub fn bosh3() -> Self {
        let b = vec![2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0];
        let bh = [7.0 / 24.0, 0.25, 1.0 / 3.0, 0.125];
        Self::known(
            "Bosh3",
            vec![vec![0.0; 4], vec![0.5, 0.0, 0.0, 0.0], vec![0.0, 0.75, 0.0, 0.0], vec![2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0]],
            b.clone(),
            vec![0.0, 0.5, 0.75, 1.0],
            Some(b.iter().zip(bh).map(|(x, y)| x - y).collect()),
            3,
            2,
        )
    }
    /// Dormand–Prince 5(4) (`dopri5`), fifth order with a fourth-order embedded estimate.
    pub fn dopri5() -> Self {
        let a = vec![
            vec![0.0; 7],
            vec![1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            vec![3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            vec![44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0, 0.0],
            vec![19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0, 0.0, 0.0, 0.0],
            vec![9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0, 0.0, 0.0],
            vec![35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0, 0.0],
        ];
        let b = vec![35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0, 0.0];
        let bh = [5179.0 / 57600.0, 0.0, 7571.0 / 16695.0, 393.0 / 640.0, -92097.0 / 339200.0, 187.0 / 2100.0, 1.0 / 40.0];
        Self::known(
            "Dopri5",
            a,
            b.clone(),
            vec![0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0],
            Some(b.iter().zip(bh).map(|(x, y)| x - y).collect()),
            5,
            4,
        )
    }

    /// Every named tableau, for tests and tables.
    pub fn all() -> Vec<Self> {
        vec![Self::euler(), Self::midpoint(), Self::heun(), Self::ralston3(), Self::rk4(), Self::bosh3(), Self::dopri5()]
    }

    fn known(name: &str, a: Vec<Vec<f64>>, b: Vec<f64>, c: Vec<f64>, e: Option<Vec<f64>>, p: usize, pe: usize) -> Self {
        match Self::new(name, a, b, c, e, p, pe) {
            Ok(t) => t,
            // Invariant: the built-in tableaux are checked by the unit tests below.
            Err(e) => unreachable!("built-in tableau failed validation: {e}"),
        }
    }

    /// Method name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Number of stages $s$.
    pub fn stages(&self) -> usize {
        self.b.len()
    }
    /// Classical order $p$.
    pub fn order(&self) -> usize {
        self.order
    }
    /// Order of the embedded solution, if there is one.
    pub fn embedded_order(&self) -> Option<usize> {
        self.b_err.as_ref().map(|_| self.err_order)
    }
    /// Strictly-lower-triangular row $a_{i,0..i}$.
    pub fn a_row(&self, i: usize) -> &[f64] {
        &self.a[i]
    }
    /// Weights $b$.
    pub fn b(&self) -> &[f64] {
        &self.b
    }
    /// Nodes $c$.
    pub fn c(&self) -> &[f64] {
        &self.c
    }
    /// Error weights $b - \hat b$, if embedded.
    pub fn b_err(&self) -> Option<&[f64]> {
        self.b_err.as_deref()
    }
    /// Number of stages needed for the solution alone (trailing stages with $b_i = 0$, such as
    /// Bosh3's FSAL stage, only serve the error estimate).
    pub fn solution_stages(&self) -> usize {
        self.b.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1)
    }

    /// Stability function $R(w)$ of the method on $y' = \alpha y$, $w = h\alpha$:
    /// $R(w) = 1 + w\, b^\top (I - wA)^{-1} \mathbf 1$, computed by running the stages.
    pub fn stability_function(&self, w: (f64, f64)) -> (f64, f64) {
        let mul = |x: (f64, f64), y: (f64, f64)| (x.0 * y.0 - x.1 * y.1, x.0 * y.1 + x.1 * y.0);
        let s = self.solution_stages();
        let mut k: Vec<(f64, f64)> = Vec::with_capacity(s);
        for i in 0..s {
            let mut yi = (1.0, 0.0);
            for (j, &a) in self.a[i].iter().enumerate() {
                yi.0 += a * k[j].0;
                yi.1 += a * k[j].1;
            }
            k.push(mul(w, yi));
        }
        let mut r = (1.0, 0.0);
        for (bi, ki) in self.b.iter().zip(&k) {
            r.0 += bi * ki.0;
            r.1 += bi * ki.1;
        }
        r
    }

    /// The highest order $p \le$ `max` whose rooted-tree order conditions
    /// $b^\top \Phi(\tau) = 1/\gamma(\tau)$ all hold (to 1e-12).
    pub fn satisfied_order(&self, max: usize) -> usize {
        let trees = rooted_trees(max);
        let mut p = 0;
        for order in 1..=max {
            let ok = trees.iter().filter(|t| t.order == order).all(|t| {
                let phi = self.elementary_weights(t, &trees);
                let lhs: f64 = self.b.iter().zip(&phi).map(|(b, p)| b * p).sum();
                (lhs - 1.0 / t.gamma).abs() < 1e-12
            });
            if !ok {
                break;
            }
            p = order;
        }
        p
    }

    /// $\Phi_i(\tau) = \prod_{\text{children } u} (A \Phi(u))_i$.
    fn elementary_weights(&self, t: &Tree, all: &[Tree]) -> Vec<f64> {
        let s = self.b.len();
        let mut phi = vec![1.0; s];
        for &ch in &t.children {
            let pu = self.elementary_weights(&all[ch], all);
            for (i, p) in phi.iter_mut().enumerate() {
                *p *= self.a[i].iter().zip(&pu).map(|(a, x)| a * x).sum::<f64>();
            }
        }
        phi
    }
}

/// A rooted tree as the list of its root's subtrees (indices into the list of all trees).
struct Tree {
    order: usize,
    gamma: f64,
    children: Vec<usize>,
}

/// All rooted trees with at most `max` vertices (1, 1, 2, 4, 9, 20, … of each order).
fn rooted_trees(max: usize) -> Vec<Tree> {
    let mut trees = vec![Tree { order: 1, gamma: 1.0, children: vec![] }];
    for n in 2..=max {
        // Multisets of existing trees (non-decreasing indices) with total order n - 1.
        let mut out = Vec::new();
        fn rec(trees: &[Tree], start: usize, left: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if left == 0 {
                out.push(cur.clone());
                return;
            }
            for i in start..trees.len() {
                if trees[i].order <= left {
                    cur.push(i);
                    rec(trees, i, left - trees[i].order, cur, out);
                    cur.pop();
                }
            }
        }
        rec(&trees, 0, n - 1, &mut Vec::new(), &mut out);
        for ch in out {
            let gamma = n as f64 * ch.iter().map(|&i| trees[i].gamma).product::<f64>();
            trees.push(Tree { order: n, gamma, children: ch });
        }
    }
    trees
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_counts_match_oeis_a000081() {
        let t = rooted_trees(6);
        let counts: Vec<usize> = (1..=6).map(|n| t.iter().filter(|x| x.order == n).count()).collect();
        assert_eq!(counts, vec![1, 1, 2, 4, 9, 20]);
    }

    #[test]
    fn named_tableaux_have_exactly_their_order() {
        for t in ButcherTableau::all() {
            assert_eq!(t.satisfied_order(7), t.order(), "{}", t.name());
        }
    }

    #[test]
    fn embedded_solutions_have_their_order() {
        for t in ButcherTableau::all() {
            if let Some(e) = t.b_err() {
                let bh: Vec<f64> = t.b().iter().zip(e).map(|(b, e)| b - e).collect();
                let emb = ButcherTableau { b: bh, b_err: None, ..t.clone() };
                assert_eq!(emb.satisfied_order(6), t.embedded_order().unwrap_or(0), "{}", t.name());
            }
        }
    }

    #[test]
    fn stability_functions_are_taylor_truncations() {
        let w = (-0.3, 0.7);
        for (t, p) in [(ButcherTableau::euler(), 1), (ButcherTableau::midpoint(), 2), (ButcherTableau::ralston3(), 3), (ButcherTableau::rk4(), 4)] {
            let mut term = (1.0, 0.0);
            let mut sum = (1.0, 0.0);
            for k in 1..=p {
                let nt = (term.0 * w.0 - term.1 * w.1, term.0 * w.1 + term.1 * w.0);
                term = (nt.0 / k as f64, nt.1 / k as f64);
                sum = (sum.0 + term.0, sum.1 + term.1);
            }
            let r = t.stability_function(w);
            assert!((r.0 - sum.0).abs() < 1e-15 && (r.1 - sum.1).abs() < 1e-15, "{}", t.name());
        }
    }

    #[test]
    fn invalid_tableaux_are_rejected() {
        let implicit = ButcherTableau::new("bad", vec![vec![1.0]], vec![1.0], vec![1.0], None, 1, 0);
        assert!(matches!(implicit, Err(Error::Unsupported(_))));
        let rowsum = ButcherTableau::new("bad", vec![vec![0.0, 0.0], vec![0.4, 0.0]], vec![0.0, 1.0], vec![0.0, 0.5], None, 1, 0);
        assert!(matches!(rowsum, Err(Error::InvalidTableau(_))));
        let order = ButcherTableau::new("bad", vec![vec![0.0]], vec![1.0], vec![0.0], None, 2, 0);
        assert!(matches!(order, Err(Error::InvalidTableau(m)) if m.contains("order 2")));
        let weights = ButcherTableau::new("bad", vec![vec![0.0]], vec![0.9], vec![0.0], None, 0, 0);
        assert!(matches!(weights, Err(Error::InvalidTableau(_))));
    }
}
