//! Seeded random numbers for parameter initialisation: xoshiro256++ (portable: the same seed
//! gives the same parameters on every platform and revlib version that keeps this generator)
//! and Box–Muller normals.

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A seeded generator of uniform and standard normal variates.
pub(crate) struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// The generator for `seed` (expanded by SplitMix64, as xoshiro's authors recommend).
    pub(crate) fn new(seed: u64) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    /// Uniform on $[0, 1)$ with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform on $[lo, hi)$.
    pub(crate) fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// A standard normal variate (Box–Muller; one of the pair is used).
    pub(crate) fn normal(&mut self) -> f64 {
        // 1 − u ∈ (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// `n` normal variates with standard deviation `sd`.
    pub(crate) fn normals(&mut self, n: usize, sd: f64) -> Vec<f64> {
        (0..n).map(|_| sd * self.normal()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn moments_and_reproducibility() {
        let mut r = Rng::new(7);
        let xs = r.normals(200_000, 1.0);
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.01, "mean {m}, variance {v}");
        let u: Vec<f64> = (0..1000).map(|_| r.uniform()).collect();
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert_eq!(Rng::new(3).normals(5, 1.0), Rng::new(3).normals(5, 1.0));
        assert_ne!(Rng::new(3).normals(5, 1.0), Rng::new(4).normals(5, 1.0));
    }
}
