//! Losses on the outputs of a solve. A loss returns its value and its cotangent with respect
//! to every output state; the gradient strategies pull those cotangents back through the solve.

use crate::error::{check_len, Error, Result};

/// A scalar loss $L(y(t_1), \dots, y(t_m))$ of the saved outputs.
pub trait Loss: Sync {
    /// Value and $\partial L/\partial y(t_k)$ for every output $k$ (same shapes as `ys`).
    fn value_and_grad(&self, ts: &[f64], ys: &[Vec<f64>]) -> Result<(f64, Vec<Vec<f64>>)>;
}

impl<F: Fn(&[f64], &[Vec<f64>]) -> (f64, Vec<Vec<f64>>) + Sync> Loss for F {
    fn value_and_grad(&self, ts: &[f64], ys: &[Vec<f64>]) -> Result<(f64, Vec<Vec<f64>>)> {
        let (v, g) = self(ts, ys);
        check_len("loss cotangents (one per output)", ys.len(), g.len())?;
        for (y, gy) in ys.iter().zip(&g) {
            check_len("loss cotangent", y.len(), gy.len())?;
        }
        Ok((v, g))
    }
}

/// $L = \tfrac12 \sum_k \|y(t_k)\|^2$ over all outputs and the whole batch (with
/// `SaveAt::Final`: $\tfrac12\|y(t_1)\|^2$ summed over the batch, the benchmark's loss).
#[derive(Debug, Clone, Copy, Default)]
pub struct HalfSquaredNorm;

impl Loss for HalfSquaredNorm {
    fn value_and_grad(&self, _ts: &[f64], ys: &[Vec<f64>]) -> Result<(f64, Vec<Vec<f64>>)> {
        let v = ys.iter().flatten().map(|x| 0.5 * x * x).sum();
        Ok((v, ys.to_vec()))
    }
}

/// Mean squared error against targets of the same shapes as the outputs, averaged over
/// every entry of every output (the McCallum–Foster experiments' loss).
#[derive(Debug, Clone, Default)]
pub struct Mse {
    /// One target per output.
    pub targets: Vec<Vec<f64>>,
}

impl Loss for Mse {
    fn value_and_grad(&self, _ts: &[f64], ys: &[Vec<f64>]) -> Result<(f64, Vec<Vec<f64>>)> {
        check_len("MSE targets (one per output)", ys.len(), self.targets.len())?;
        let total: usize = ys.iter().map(Vec::len).sum();
        if total == 0 {
            return Err(Error::ShapeMismatch { what: "MSE outputs", expected: 1, found: 0 });
        }
        let mut v = 0.0;
        let mut g = Vec::with_capacity(ys.len());
        for (y, d) in ys.iter().zip(&self.targets) {
            check_len("MSE target", y.len(), d.len())?;
            g.push(y.iter().zip(d).map(|(a, b)| {
                v += (a - b) * (a - b);
                2.0 * (a - b) / total as f64
            }).collect());
        }
        Ok((v / total as f64, g))
    }
}

/// Mean squared error against targets on a fixed time grid, with the outputs linearly
/// interpolated onto the grid. The outputs may sit at any increasing times (the accepted steps
/// of an adaptive solve, `SaveAt::Steps`); before the first output the state is the constant
/// `y0` at `t0`. This is how the McCallum–Foster double-pendulum experiment compares an
/// adaptive solve with data sampled every 2/499 s. Step times are constants for the gradient.
#[derive(Debug, Clone, Default)]
pub struct InterpMse {
    /// Initial time.
    pub t0: f64,
    /// Initial state (a constant of the loss).
    pub y0: Vec<f64>,
    /// Grid times in `(t0, t1]`, increasing.
    pub grid: Vec<f64>,
    /// One target per grid time.
    pub targets: Vec<Vec<f64>>,
}

impl Loss for InterpMse {
    fn value_and_grad(&self, ts: &[f64], ys: &[Vec<f64>]) -> Result<(f64, Vec<Vec<f64>>)> {
        check_len("interpolated MSE targets (one per grid time)", self.grid.len(), self.targets.len())?;
        check_len("outputs (one per output time)", ts.len(), ys.len())?;
        let d = self.y0.len();
        let total = self.grid.len() * d;
        if total == 0 || ts.is_empty() {
            return Err(Error::ShapeMismatch { what: "interpolated MSE grid and outputs", expected: 1, found: 0 });
        }
        let mut g: Vec<Vec<f64>> = ys.iter().map(|y| vec![0.0; y.len()]).collect();
        let mut v = 0.0;
        let mut k = 0; // outputs k-1 (or y0 when k = 0) and k bracket the grid time
        for (&tg, target) in self.grid.iter().zip(&self.targets) {
            check_len("interpolated MSE target", d, target.len())?;
            while k + 1 < ts.len() && ts[k] < tg {
                k += 1;
            }
            let (ta, ya) = if k == 0 { (self.t0, &self.y0) } else { (ts[k - 1], &ys[k - 1]) };
            check_len("interpolated MSE output", d, ys[k].len())?;
            let w = if ts[k] > ta { ((tg - ta) / (ts[k] - ta)).clamp(0.0, 1.0) } else { 1.0 };
            for i in 0..d {
                let r = (1.0 - w) * ya[i] + w * ys[k][i] - target[i];
                v += r * r;
                let c = 2.0 * r / total as f64;
                g[k][i] += w * c;
                if k > 0 {
                    g[k - 1][i] += (1.0 - w) * c;
                }
            }
        }
        Ok((v / total as f64, g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_mse_matches_finite_differences() {
        let loss = InterpMse { t0: 0.0, y0: vec![1.0], grid: vec![0.25, 0.5, 0.9, 1.0], targets: vec![vec![0.3], vec![0.1], vec![-0.2], vec![0.4]] };
        let ts = [0.4, 0.7, 1.0];
        let ys = vec![vec![0.5], vec![0.2], vec![-0.1]];
        let (v, g) = loss.value_and_grad(&ts, &ys).unwrap();
        for k in 0..3 {
            let mut yp = ys.clone();
            yp[k][0] += 1e-6;
            let mut ym = ys.clone();
            ym[k][0] -= 1e-6;
            let fd = (loss.value_and_grad(&ts, &yp).unwrap().0 - loss.value_and_grad(&ts, &ym).unwrap().0) / 2e-6;
            assert!((fd - g[k][0]).abs() < 1e-8, "output {k}: {fd} vs {}", g[k][0]);
        }
        // y(0.25) = 1 + (0.5 - 1) * 0.625 = 0.6875; y(0.5) = 0.4; y(0.9) = 0.0; y(1) = -0.1
        let want = ((0.6875f64 - 0.3).powi(2) + 0.3f64.powi(2) + 0.2f64.powi(2) + 0.5f64.powi(2)) / 4.0;
        assert!((v - want).abs() < 1e-14, "{v} vs {want}");
    }
}
