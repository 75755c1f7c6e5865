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
