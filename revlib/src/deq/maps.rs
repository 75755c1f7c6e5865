//! A small closed-form map for tests, examples and the notebook's theorem check.

use super::FixedPointMap;
use crate::error::{check_len, Error, Result};

/// $f(z, x) = \tanh(W z + U x + b)$ row by row over a batch, with $z, x \in \mathbb{R}^d$.
/// Its Lipschitz constant in $z$ is at most $\|W\|_2$ (tanh is 1-Lipschitz), so
/// [`TanhMap::random`] sets $\|W\|_2 = L$ to get a contraction with a known constant.
/// Parameters θ = (W row-major, U row-major, b).
#[derive(Debug, Clone, PartialEq)]
pub struct TanhMap {
    d: usize,
    batch: usize,
    theta: Vec<f64>,
}

impl TanhMap {
    /// Random W (rescaled to spectral norm `lipschitz`), U with N(0, 1/d) entries, b ~ N(0, 0.1²).
    ///
    /// # Errors
    /// `d = 0`, `batch = 0`, or a negative / non-finite `lipschitz`.
    pub fn random(d: usize, lipschitz: f64, batch: usize, seed: u64) -> Result<Self> {
        if d == 0 || batch == 0 {
            return Err(Error::InvalidArgument { name: "d, batch", value: (d.min(batch)) as f64, expected: "positive" });
        }
        if !(lipschitz >= 0.0 && lipschitz.is_finite()) {
            return Err(Error::InvalidArgument { name: "lipschitz", value: lipschitz, expected: "finite and non-negative" });
        }
        let mut rng = crate::rng::Rng::new(seed);
        let mut w = rng.normals(d * d, 1.0);
        let s = spectral_norm(&w, d);
        w.iter_mut().for_each(|v| *v *= lipschitz / s.max(1e-300));
        let mut theta = w;
        theta.extend(rng.normals(d * d, 1.0 / (d as f64).sqrt()));
        theta.extend(rng.normals(d, 0.1));
        Ok(Self { d, batch, theta })
    }
    /// Parameters θ.
    pub fn params(&self) -> &[f64] {
        &self.theta
    }
    /// Replace θ.
    ///
    /// # Errors
    /// Wrong length.
    pub fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("TanhMap parameters", self.theta.len(), theta.len())?;
        self.theta.copy_from_slice(theta);
        Ok(())
    }
    /// Length of z and x: batch × d.
    pub fn len(&self) -> usize {
        self.d * self.batch
    }
    /// Whether `len() == 0` (never: d and batch are positive).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// $\|W\|_2$, the Lipschitz bound in z.
    pub fn lipschitz(&self) -> f64 {
        spectral_norm(&self.theta[..self.d * self.d], self.d)
    }
    fn pre(&self, z: &[f64], x: &[f64]) -> Vec<f64> {
        let d = self.d;
        let (w, rest) = self.theta.split_at(d * d);
        let (u, b) = rest.split_at(d * d);
        let mut out = vec![0.0; z.len()];
        for ((zr, xr), o) in z.chunks_exact(d).zip(x.chunks_exact(d)).zip(out.chunks_exact_mut(d)) {
            for i in 0..d {
                let mut s = b[i];
                for j in 0..d {
                    s += w[i * d + j] * zr[j] + u[i * d + j] * xr[j];
                }
                o[i] = s;
            }
        }
        out
    }
    fn check(&self, z: &[f64], x: &[f64]) -> Result<()> {
        check_len("TanhMap z", self.len(), z.len())?;
        check_len("TanhMap x", self.len(), x.len())
    }
}

/// Largest singular value by power iteration on WᵀW.
fn spectral_norm(w: &[f64], d: usize) -> f64 {
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut s = 0.0;
    for _ in 0..500 {
        let wv: Vec<f64> = (0..d).map(|i| (0..d).map(|j| w[i * d + j] * v[j]).sum()).collect();
        let wtwv: Vec<f64> = (0..d).map(|j| (0..d).map(|i| w[i * d + j] * wv[i]).sum()).collect();
        let n = wtwv.iter().map(|a| a * a).sum::<f64>().sqrt();
        if n == 0.0 {
            return 0.0;
        }
        v = wtwv.iter().map(|a| a / n).collect();
        s = n.sqrt();
    }
    s
}

impl FixedPointMap for TanhMap {
    fn n_params(&self) -> usize {
        self.theta.len()
    }
    fn eval(&self, z: &[f64], x: &[f64], out: &mut [f64]) -> Result<()> {
        self.check(z, x)?;
        check_len("TanhMap output", self.len(), out.len())?;
        for (o, p) in out.iter_mut().zip(self.pre(z, x)) {
            *o = p.tanh();
        }
        Ok(())
    }
    fn vjp(&self, z: &[f64], x: &[f64], a: &[f64], a_z: &mut [f64], a_theta: &mut [f64], a_x: &mut [f64]) -> Result<()> {
        self.check(z, x)?;
        check_len("TanhMap cotangent", self.len(), a.len())?;
        check_len("TanhMap a_z", self.len(), a_z.len())?;
        check_len("TanhMap a_x", self.len(), a_x.len())?;
        check_len("TanhMap a_theta", self.theta.len(), a_theta.len())?;
        let d = self.d;
        let pre = self.pre(z, x);
        let (w, rest) = self.theta.split_at(d * d);
        let u = &rest[..d * d];
        for r in 0..self.batch {
            let rows = r * d..(r + 1) * d;
            let s: Vec<f64> = pre[rows.clone()].iter().zip(&a[rows.clone()]).map(|(p, ai)| ai * (1.0 - p.tanh().powi(2))).collect();
            let (zr, xr) = (&z[rows.clone()], &x[rows.clone()]);
            for j in 0..d {
                let (mut az, mut ax) = (0.0, 0.0);
                for i in 0..d {
                    az += w[i * d + j] * s[i];
                    ax += u[i * d + j] * s[i];
                }
                a_z[r * d + j] = az;
                a_x[r * d + j] += ax;
            }
            for i in 0..d {
                for j in 0..d {
                    a_theta[i * d + j] += s[i] * zr[j];
                    a_theta[d * d + i * d + j] += s[i] * xr[j];
                }
                a_theta[2 * d * d + i] += s[i];
            }
        }
        Ok(())
    }
}
