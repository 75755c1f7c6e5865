//! Dense kernels of the fused MLP ([`super::Mlp`]): matrix products for its shapes and a
//! vectorised tanh.
//!
//! Two plain kernels run along the long dimension of a product — [`rows_axpy`] (rows of C as
//! combinations of B's rows, several rows of C at a time in registers: for wide C) and
//! [`rows_dot`] (each entry of C a dot product of contiguous rows: for narrow C) — copying the
//! small operand into the layout they need when it is not in it already. They take the input
//! and output layers' products, which have one dimension of only D (2 in the benchmarks), where
//! packing both operands for a GEMM micro-kernel costs more than the product; and, on CPUs with
//! 32 vector registers (AVX-512), the hidden layers' (B × W)(W × W) products and their
//! transposes too. Other products, and those on CPUs with 16 registers, go to `matrixmultiply`'s
//! packed GEMM. The plain kernels and [`tanh_inplace`] are compiled three times (baseline x86-64
//! or other architectures, AVX2 + FMA, AVX-512) and the copy for the running CPU is chosen at
//! run time.

use std::borrow::Cow;

/// A strided matrix: element $(i, j)$ at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    pub(super) fn rows(data: &'a [f64], rows: usize, cols: usize) -> Self {
        debug_assert!(data.len() >= rows * cols);
        Self { data, rows, cols, rs: cols, cs: 1 }
    }
    /// The transpose (no copy).
    pub(super) fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.rs + j * self.cs]
    }
    /// The matrix as a contiguous row-major slice, copied only if it is not one already.
    fn row_major(self) -> Cow<'a, [f64]> {
        if self.cs == 1 && (self.rs == self.cols || self.rows <= 1) {
            Cow::Borrowed(&self.data[..self.rows * self.cols])
        } else {
            Cow::Owned((0..self.rows).flat_map(|i| (0..self.cols).map(move |j| self.at(i, j))).collect())
        }
    }
}

/// A mutable row-major matrix.
pub(super) struct ViewMut<'a> {
    data: &'a mut [f64],
    rows: usize,
    cols: usize,
}

impl<'a> ViewMut<'a> {
    pub(super) fn rows(data: &'a mut [f64], rows: usize, cols: usize) -> Self {
        debug_assert!(data.len() >= rows * cols);
        Self { data, rows, cols }
    }
}

/// Below this, a dimension is "thin": a product with a thin dimension uses the plain kernels.
const THIN: usize = 8;
/// The longest inner dimension [`rows_axpy`] takes on when it could use the packed GEMM: a
/// block of B's columns is then at most 64 kB.
const AXPY_MAX_K: usize = 256;
/// Products with at most this many multiply–adds use the plain kernels whatever their shape.
const SMALL_GEMM: usize = 8192;

/// `c = beta * c + a · b` for strided `a` (m × k), `b` (k × n) and row-major `c` (m × n).
pub(super) fn gemm(a: View, b: View, beta: f64, c: ViewMut) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(b.rows == k && c.rows == m && c.cols == n);
    if m == 0 || n == 0 {
        return;
    }
    // With 32 vector registers the register-blocked rows_axpy beats the packed GEMM on the
    // hidden layers' products (B/2 × W × W and W × B/2 × W at W = 64: 1.3–1.5× on the product
    // alone, Intel Xeon with AVX-512, 2026-12-08; not measured on AMD), as long as a block of
    // B's columns stays in cache along k.
    let blocked = wide_registers() && n >= AXPY_BLOCK && m >= AXPY_ROWS_WIDE && k <= AXPY_MAX_K;
    if m.min(n).min(k) >= THIN && m * n * k > SMALL_GEMM && !blocked {
        return packed_gemm(a, b, beta, c);
    }
    // Few rows of C whose entries are dot products of contiguous rows: nothing to copy.
    let dot_in_place = m < THIN && a.cs == 1 && b.rs == 1;
    if n >= THIN && !dot_in_place {
        rows_axpy(a, &b.row_major(), beta, c);
    } else if a.cs == 1 {
        rows_dot(a, &b.t().row_major(), beta, c);
    } else if m >= THIN {
        // Narrow C and strided A (the input layer's weight cotangent, gᵀ x): Cᵀ = Bᵀ Aᵀ has
        // wide rows and a row-major right factor.
        let mut ct = vec![0.0; n * m];
        gemm(b.t(), a.t(), 0.0, ViewMut::rows(&mut ct, n, m));
        for (i, crow) in c.data.chunks_exact_mut(n).take(m).enumerate() {
            for (j, cij) in crow.iter_mut().enumerate() {
                *cij = if beta == 0.0 { ct[j * m + i] } else { beta * *cij + ct[j * m + i] };
            }
        }
    } else {
        rows_axpy(a, &b.row_major(), beta, c);
    }
}

/// `matrixmultiply::dgemm` on the views.
fn packed_gemm(a: View, b: View, beta: f64, c: ViewMut) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // Invariant: the views cover their strided extents. Checked in every build (a few compares
    // per product): a violation would be a bug in this crate, and it must not reach dgemm.
    assert!(m > 0 && n > 0 && k > 0, "packed_gemm of an empty product ({m}×{k}·{k}×{n})");
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "left factor shorter than its view");
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "right factor shorter than its view");
    assert!(c.data.len() >= m * n, "output shorter than m × n");
    // SAFETY: by the asserts every index dgemm reads or writes lies inside the slices, and `c`
    // does not alias `a` or `b` (distinct borrows).
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.data.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Defines `fn $name(args)` (with the given visibility) running `$body::<FMA>(args)` compiled for the best
/// instruction set the CPU has: AVX-512, AVX2 + FMA (both with `FMA = true`), or the
/// baseline (`FMA = false`, so no software `mul_add`).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                match isa() {
                    // SAFETY: the CPU has the features the copy is compiled for (detected).
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Baseline => {}
                }
            }
            $body::<false>($($arg),*)
        }
    };
}

/// The instruction sets the kernels are compiled for.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

/// The best instruction set of this CPU (detected once; std caches the CPUID query).
#[cfg(target_arch = "x86_64")]
fn isa() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx2") && has!("fma") {
        Isa::Avx512
    } else if has!("avx2") && has!("fma") {
        Isa::Avx2
    } else {
        Isa::Baseline
    }
}

/// `a * b + c`, fused where the CPU has FMA (then one rounding instead of two).
#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

multiversion! {
    /// `c = beta c + a b` with `b` (k × n) row-major and contiguous: row i of C is the sum of B's
    /// rows weighted by row i of A, accumulated in registers a block of columns at a time.
    fn rows_axpy(a: View<'_>, b: &[f64], beta: f64, c: ViewMut<'_>) => rows_axpy_body
}

/// Columns of C accumulated at once by [`rows_axpy`] (eight 4-wide or four 8-wide registers per
/// row of C: enough independent sums to hide the FMA latency).
const AXPY_BLOCK: usize = 32;

/// Rows of C that [`rows_axpy`] computes together on a CPU with 32 vector registers (AVX-512):
/// each loaded block of a row of B then feeds six rows' multiply–adds, so the loop is bound by
/// the FMA units rather than by loads (6 × 4 accumulator registers, A's entries broadcast from
/// memory). With 16 registers (AVX2) one row at a time keeps its 8 accumulators in registers.
const AXPY_ROWS_WIDE: usize = 6;

#[inline(always)]
fn rows_axpy_body<const FMA: bool>(a: View, b: &[f64], beta: f64, mut c: ViewMut) {
    let (m, n) = (a.rows, c.cols);
    let blocked = n / AXPY_BLOCK * AXPY_BLOCK;
    let mut i = 0;
    if wide_registers() {
        while i + AXPY_ROWS_WIDE <= m {
            rows_block::<FMA, AXPY_ROWS_WIDE>(a, b, beta, &mut c, i, blocked);
            i += AXPY_ROWS_WIDE;
        }
    }
    while i < m {
        rows_block::<FMA, 1>(a, b, beta, &mut c, i, blocked);
        i += 1;
    }
    // Columns past the last full block, entry by entry.
    for (i, crow) in c.data.chunks_exact_mut(n).take(m).enumerate() {
        for (j, cij) in crow.iter_mut().enumerate().skip(blocked) {
            let mut s = if beta == 0.0 { 0.0 } else { beta * *cij };
            for p in 0..a.cols {
                s = madd::<FMA>(a.at(i, p), b[p * n + j], s);
            }
            *cij = s;
        }
    }
}

/// Rows `i..i + R` of `c = beta c + a b`, columns `0..cols` (a multiple of [`AXPY_BLOCK`]), one
/// block of columns at a time. The block is an array of fixed size, so the compiler keeps it in
/// registers over the whole loop along the inner dimension.
#[inline(always)]
fn rows_block<const FMA: bool, const R: usize>(a: View, b: &[f64], beta: f64, c: &mut ViewMut, i: usize, cols: usize) {
    let n = c.cols;
    for j0 in (0..cols).step_by(AXPY_BLOCK) {
        let mut acc = [[0.0; AXPY_BLOCK]; R];
        if beta != 0.0 {
            for (r, row) in acc.iter_mut().enumerate() {
                for (s, cij) in row.iter_mut().zip(&c.data[(i + r) * n + j0..][..AXPY_BLOCK]) {
                    *s = beta * cij;
                }
            }
        }
        for p in 0..a.cols {
            let brow = &b[p * n + j0..][..AXPY_BLOCK];
            for (r, row) in acc.iter_mut().enumerate() {
                let aip = a.at(i + r, p);
                for (s, bl) in row.iter_mut().zip(brow) {
                    *s = madd::<FMA>(aip, *bl, *s);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            c.data[(i + r) * n + j0..][..AXPY_BLOCK].copy_from_slice(row);
        }
    }
}

/// Whether the CPU has 32 vector registers for [`rows_axpy`]'s six-row blocks.
fn wide_registers() -> bool {
    #[cfg(target_arch = "x86_64")]
    return isa() == Isa::Avx512;
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

multiversion! {
    /// `c = beta c + a b` with `a`'s rows contiguous and `bt` = Bᵀ (n × k) row-major: each entry a
    /// dot product of two contiguous rows, in eight partial sums.
    fn rows_dot(a: View<'_>, bt: &[f64], beta: f64, c: ViewMut<'_>) => rows_dot_body
}

#[inline(always)]
fn rows_dot_body<const FMA: bool>(a: View, bt: &[f64], beta: f64, c: ViewMut) {
    let (m, k, n) = (a.rows, a.cols, c.cols);
    debug_assert!(a.cs == 1 || k <= 1);
    for (i, crow) in c.data.chunks_exact_mut(n).take(m).enumerate() {
        let arow = &a.data[i * a.rs..i * a.rs + k];
        for (cij, bcol) in crow.iter_mut().zip(bt.chunks_exact(k.max(1))) {
            let sum = dot::<FMA>(arow, bcol);
            *cij = if beta == 0.0 { sum } else { beta * *cij + sum };
        }
    }
}

/// `x · y` in eight interleaved partial sums (one vector register's worth).
#[inline(always)]
fn dot<const FMA: bool>(x: &[f64], y: &[f64]) -> f64 {
    let (xc, xt) = x.as_chunks::<8>();
    let (yc, yt) = y.as_chunks::<8>();
    let mut acc = [0.0; 8];
    for (xv, yv) in xc.iter().zip(yc) {
        for l in 0..8 {
            acc[l] = madd::<FMA>(xv[l], yv[l], acc[l]);
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for (xp, yp) in xt.iter().zip(yt) {
        sum = madd::<FMA>(*xp, *yp, sum);
    }
    sum
}

multiversion! {
    /// In-place hyperbolic tangent, accurate to a few ulp and written so the compiler vectorises it.
    ///
    /// $\tanh|x| = -m/(2 + m)$ with $m = \mathrm{expm1}(-2|x|)$ from a range-reduced degree-13
    /// polynomial (argument clamped to $|x| \le 22$, where $\tanh$ rounds to ±1). Only
    /// arithmetic and bit operations, no branches or library calls, so the loop vectorises; on
    /// x86-64 a copy compiled for AVX-512, or for AVX2 and FMA (fused multiply–adds in the
    /// polynomials), is selected at run time.
    pub fn tanh_inplace(xs: &mut [f64]) => tanh_body
}

#[inline(always)]
fn tanh_body<const FMA: bool>(xs: &mut [f64]) {
    for x in xs.iter_mut() {
        *x = tanh1::<FMA>(*x);
    }
}

multiversion! {
    /// `x ← tanh(x + b)` row by row, for a row-major matrix with `bias.len()` columns: a hidden
    /// layer's bias and activation in one pass over its output.
    pub(super) fn add_bias_tanh(xs: &mut [f64], bias: &[f64]) => add_bias_tanh_body
}

#[inline(always)]
fn add_bias_tanh_body<const FMA: bool>(xs: &mut [f64], bias: &[f64]) {
    for row in xs.chunks_exact_mut(bias.len().max(1)) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x = tanh1::<FMA>(*x + b);
        }
    }
}

#[inline(always)]
fn tanh1<const FMA: bool>(x: f64) -> f64 {
    // Adding 1.5·2^52 rounds to the nearest integer (round-half-even) with plain arithmetic.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let ax = f64::from_bits(x.to_bits() & 0x7fff_ffff_ffff_ffff);
    let ax = if ax > 22.0 { 22.0 } else { ax };
    // m = expm1(-2ax) by range reduction: -2ax = k ln2 + r, |r| <= ln2/2, and
    // exp(r) = 1 + r q(r) with q a degree-12 Taylor polynomial.
    let v = -2.0 * ax;
    let kf = madd::<FMA>(v, std::f64::consts::LOG2_E, SHIFT);
    let k = kf - SHIFT;
    // ln 2 split in two (Cody–Waite): LN2_HI has trailing zero bits, so k·LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 0.6931471803691238
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.9082149292705877e-10
    let r = madd::<FMA>(-k, LN2_LO, madd::<FMA>(-k, LN2_HI, v));
    let mut q = 1.0 / 6_227_020_800.0;
    q = madd::<FMA>(q, r, 1.0 / 479_001_600.0);
    q = madd::<FMA>(q, r, 1.0 / 39_916_800.0);
    q = madd::<FMA>(q, r, 1.0 / 3_628_800.0);
    q = madd::<FMA>(q, r, 1.0 / 362_880.0);
    q = madd::<FMA>(q, r, 1.0 / 40_320.0);
    q = madd::<FMA>(q, r, 1.0 / 5_040.0);
    q = madd::<FMA>(q, r, 1.0 / 720.0);
    q = madd::<FMA>(q, r, 1.0 / 120.0);
    q = madd::<FMA>(q, r, 1.0 / 24.0);
    q = madd::<FMA>(q, r, 1.0 / 6.0);
    q = madd::<FMA>(q, r, 0.5);
    q = madd::<FMA>(q, r, 1.0);
    let rq = r * q;
    // k in [-64, 0] sits in the low bits of kf; 2^k from its exponent bits (no subnormals).
    let ki = (kf.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let scale = f64::from_bits(((ki + 1023) as u64) << 52);
    // k = 0: m = r q(r) is accurate to an ulp even for tiny x; otherwise e^{-2ax} <= 0.71 and
    // 2^k (1 + r q) - 1 has no cancellation.
    let m = if ki == 0 { rq } else { madd::<FMA>(scale, rq, scale - 1.0) };
    // tanh|x| = -m / (2 + m).
    let t = -m / (2.0 + m);
    f64::from_bits(t.to_bits() | (x.to_bits() & 0x8000_0000_0000_0000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_std_to_a_few_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -30.0;
        while x < 30.0 {
            let mut v = [x];
            tanh_inplace(&mut v);
            let e = x.tanh();
            let err = (v[0] - e).abs() / e.abs().max(f64::MIN_POSITIVE);
            worst = worst.max(err);
            x += 0.000_731;
        }
        assert!(worst < 2e-15, "worst relative error {worst:e}");
        let mut tiny = [1e-300, -1e-12, 0.0, 0.125, -0.125000001];
        let expect: Vec<f64> = tiny.iter().map(|v: &f64| v.tanh()).collect();
        tanh_inplace(&mut tiny);
        for (a, b) in tiny.iter().zip(expect) {
            assert!((a - b).abs() <= 2e-16 * b.abs());
        }
        // Non-finite input: NaN stays NaN (a diverged solve must not look finite), ±∞ → ±1.
        let mut odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
        tanh_inplace(&mut odd);
        assert!(odd[0].is_nan());
        assert_eq!(odd[1..3], [1.0, -1.0]);
        assert!(odd[3] == 0.0 && odd[3].is_sign_negative());
    }

    /// Every kernel path (packed GEMM, rows of B, dot products, the transposed form) against a
    /// triple loop, for every layout of A and B the MLP uses and shapes around the thresholds.
    #[test]
    fn products_match_a_triple_loop_in_every_layout() {
        let value = |i: usize, salt: usize| (((i * 7919 + salt * 104_729) % 1013) as f64 / 1013.0) - 0.5;
        let dims = [1usize, 2, 3, 7, 8, 9, 33, 64, 130];
        for &m in &dims {
            for &k in &dims {
                for &n in &dims {
                    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                        let ad: Vec<f64> = (0..m * k).map(|i| value(i, 1)).collect();
                        let bd: Vec<f64> = (0..k * n).map(|i| value(i, 2)).collect();
                        let a = if ta { View::rows(&ad, k, m).t() } else { View::rows(&ad, m, k) };
                        let b = if tb { View::rows(&bd, n, k).t() } else { View::rows(&bd, k, n) };
                        for beta in [0.0, 1.0] {
                            let c0: Vec<f64> = (0..m * n).map(|i| value(i, 3)).collect();
                            let mut c = c0.clone();
                            gemm(a, b, beta, ViewMut::rows(&mut c, m, n));
                            for i in 0..m {
                                for j in 0..n {
                                    let exact: f64 = beta * c0[i * n + j] + (0..k).map(|p| a.at(i, p) * b.at(p, j)).sum::<f64>();
                                    let err = (c[i * n + j] - exact).abs();
                                    assert!(err <= 1e-13 * (1.0 + k as f64), "m={m} k={k} n={n} ta={ta} tb={tb} beta={beta}: {err:e}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
