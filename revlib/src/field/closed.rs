//! Closed-form vector fields with hand-derived vector–Jacobian products.

use super::{check_eval, check_vjp, VectorField};
use crate::error::{check_len, Error, Result};

/// Linear field $y' = A y$, with the entries of $A$ (row-major) as parameters.
///
/// `Linear::scalar(alpha)` is the test equation $y' = \alpha y$; `Linear::complex(re, im)` is
/// $y' = \alpha y$ for complex $\alpha$ written as a real 2-D system
/// $\begin{pmatrix}\mathrm{re} & -\mathrm{im}\\ \mathrm{im} & \mathrm{re}\end{pmatrix}$.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    dim: usize,
    a: Vec<f64>,
}

impl Linear {
    /// $y' = A y$ with `a` the $d \times d$ matrix in row-major order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `a.len() != dim * dim` or `dim == 0`.
    pub fn new(dim: usize, a: Vec<f64>) -> Result<Self> {
        if dim == 0 {
            return Err(Error::ShapeMismatch { what: "Linear dimension", expected: 1, found: 0 });
        }
        check_len("Linear matrix (dim*dim)", dim * dim, a.len())?;
        Ok(Self { dim, a })
    }
    /// The scalar test equation $y' = \alpha y$.
    pub fn scalar(alpha: f64) -> Self {
        Self { dim: 1, a: vec![alpha] }
    }
    /// $y' = \alpha y$ for complex $\alpha = \mathrm{re} + i\,\mathrm{im}$, as a real 2-D system.
    pub fn complex(re: f64, im: f64) -> Self {
        Self { dim: 2, a: vec![re, -im, im, re] }
    }
    /// The matrix, row-major.
    pub fn matrix(&self) -> &[f64] {
        &self.a
    }
}

impl VectorField for Linear {
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_params(&self) -> usize {
        self.a.len()
    }
    fn params(&self) -> Vec<f64> {
        self.a.clone()
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("Linear parameters", self.a.len(), theta.len())?;
        self.a.copy_from_slice(theta);
        Ok(())
    }
    fn eval(&self, _t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        check_eval(self.dim, y, out)?;
        let d = self.dim;
        for (ys, os) in y.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            for (i, o) in os.iter_mut().enumerate() {
                *o = self.a[i * d..(i + 1) * d].iter().zip(ys).map(|(a, y)| a * y).sum();
            }
        }
        Ok(())
    }
    fn vjp(&self, _t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        check_vjp(self.dim, self.a.len(), y, a, a_y, a_theta)?;
        let d = self.dim;
        for ((ys, cs), ay) in y.chunks_exact(d).zip(a.chunks_exact(d)).zip(a_y.chunks_exact_mut(d)) {
            ay.fill(0.0);
            for i in 0..d {
                for j in 0..d {
                    ay[j] += self.a[i * d + j] * cs[i];
                    a_theta[i * d + j] += cs[i] * ys[j];
                }
            }
        }
        Ok(())
    }
    fn name(&self) -> String {
        format!("linear (d = {})", self.dim)
    }
}

/// SIR epidemic model with learnable infection rate $b$ and recovery rate $k$:
/// $S' = -bSI,\ I' = bSI - kI,\ R' = kI$. Parameters `[b, k]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sir {
    /// Infection rate.
    pub b: f64,
    /// Recovery rate.
    pub k: f64,
}

impl VectorField for Sir {
    fn dim(&self) -> usize {
        3
    }
    fn n_params(&self) -> usize {
        2
    }
    fn params(&self) -> Vec<f64> {
        vec![self.b, self.k]
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("SIR parameters [b, k]", 2, theta.len())?;
        self.b = theta[0];
        self.k = theta[1];
        Ok(())
    }
    fn eval(&self, _t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        check_eval(3, y, out)?;
        for (s, o) in y.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
            let inf = self.b * s[0] * s[1];
            o[0] = -inf;
            o[1] = inf - self.k * s[1];
            o[2] = self.k * s[1];
        }
        Ok(())
    }
    fn vjp(&self, _t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        check_vjp(3, 2, y, a, a_y, a_theta)?;
        for ((s, c), ay) in y.chunks_exact(3).zip(a.chunks_exact(3)).zip(a_y.chunks_exact_mut(3)) {
            let (sus, inf) = (s[0], s[1]);
            let d_inf = c[1] - c[0]; // cotangent of the infection flux b*S*I
            ay[0] = self.b * inf * d_inf;
            ay[1] = self.b * sus * d_inf + self.k * (c[2] - c[1]);
            ay[2] = 0.0;
            a_theta[0] += sus * inf * d_inf;
            a_theta[1] += inf * (c[2] - c[1]);
        }
        Ok(())
    }
    fn name(&self) -> String {
        "SIR".into()
    }
}

/// Chandrasekhar's white-dwarf equation as a first-order system, with parameter $C$:
/// $y_1' = y_2,\quad y_2' = -(y_1^2 - C)^{3/2} - 2 y_2/\eta,\quad \eta = t + t_{\rm off}$.
///
/// The equation is singular at radius $\eta = 0$; as in McCallum & Foster's experiment the
/// radius is offset, $\eta = t + 0.5$ by default. Where $y_1^2 < C$ (outside the star) the
/// density term $(y_1^2 - C)^{3/2}$ is taken as 0, which keeps the field real and continuous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WhiteDwarf {
    /// The parameter $C$ (0.001 in the talk's experiment).
    pub c: f64,
    /// Radius offset $t_{\rm off}$ (0.5).
    pub t_offset: f64,
}

impl Default for WhiteDwarf {
    fn default() -> Self {
        Self { c: 0.001, t_offset: 0.5 }
    }
}

impl VectorField for WhiteDwarf {
    fn dim(&self) -> usize {
        2
    }
    fn n_params(&self) -> usize {
        1
    }
    fn params(&self) -> Vec<f64> {
        vec![self.c]
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("white-dwarf parameter [C]", 1, theta.len())?;
        self.c = theta[0];
        Ok(())
    }
    fn eval(&self, t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        check_eval(2, y, out)?;
        let eta = t + self.t_offset;
        for (s, o) in y.chunks_exact(2).zip(out.chunks_exact_mut(2)) {
            let u = (s[0] * s[0] - self.c).max(0.0);
            o[0] = s[1];
            o[1] = -u * u.sqrt() - 2.0 * s[1] / eta;
        }
        Ok(())
    }
    fn vjp(&self, t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        check_vjp(2, 1, y, a, a_y, a_theta)?;
        let eta = t + self.t_offset;
        for ((s, c), ay) in y.chunks_exact(2).zip(a.chunks_exact(2)).zip(a_y.chunks_exact_mut(2)) {
            let su = (s[0] * s[0] - self.c).max(0.0).sqrt();
            ay[0] = -3.0 * s[0] * su * c[1];
            ay[1] = c[0] - 2.0 / eta * c[1];
            a_theta[0] += 1.5 * su * c[1];
        }
        Ok(())
    }
    fn name(&self) -> String {
        "white dwarf".into()
    }
}

/// Two unit masses, each on a spring of stiffness $k$ to a wall and coupled by a spring of
/// stiffness $k_c$. State $(x_1, x_2, v_1, v_2)$ (the column order of Schmidt & Lipson's
/// `double_linear` files), parameters `[k, kc]`:
/// $v_1' = -k x_1 - k_c (x_1 - x_2),\ v_2' = -k x_2 - k_c (x_2 - x_1)$.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoupledOscillator {
    /// Spring to the wall.
    pub k: f64,
    /// Coupling spring.
    pub kc: f64,
}

impl VectorField for CoupledOscillator {
    fn dim(&self) -> usize {
        4
    }
    fn n_params(&self) -> usize {
        2
    }
    fn params(&self) -> Vec<f64> {
        vec![self.k, self.kc]
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("oscillator parameters [k, kc]", 2, theta.len())?;
        self.k = theta[0];
        self.kc = theta[1];
        Ok(())
    }
    fn eval(&self, _t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        check_eval(4, y, out)?;
        for (s, o) in y.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
            let d = s[0] - s[1];
            o[0] = s[2];
            o[1] = s[3];
            o[2] = -self.k * s[0] - self.kc * d;
            o[3] = -self.k * s[1] + self.kc * d;
        }
        Ok(())
    }
    fn vjp(&self, _t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        check_vjp(4, 2, y, a, a_y, a_theta)?;
        for ((s, c), ay) in y.chunks_exact(4).zip(a.chunks_exact(4)).zip(a_y.chunks_exact_mut(4)) {
            let dc = c[2] - c[3];
            ay[0] = -self.k * c[2] - self.kc * dc;
            ay[1] = -self.k * c[3] + self.kc * dc;
            ay[2] = c[0];
            ay[3] = c[1];
            a_theta[0] -= s[0] * c[2] + s[1] * c[3];
            a_theta[1] -= (s[0] - s[1]) * dc;
        }
        Ok(())
    }
    fn name(&self) -> String {
        "coupled oscillator".into()
    }
}

/// Double pendulum of two equal point masses on equal massless rods, with parameter
/// $\omega_0^2 = g/l$. State $(\theta_1, \theta_2, \omega_1, \omega_2)$ (the column order of
/// Schmidt & Lipson's `double_pend` files). With $\Delta = \theta_1 - \theta_2$ and
/// $D = 3 - \cos 2\Delta$:
///
/// ```text
/// ω1' = [-3 w sin θ1 - w sin(θ1 - 2θ2) - 2 sin Δ (ω2² + ω1² cos Δ)] / D
/// ω2' = [2 sin Δ (2 ω1² + 2 w cos θ1 + ω2² cos Δ)] / D,     w = g / l
/// ```
///
/// The VJP is computed exactly by forward-mode dual numbers (one pass per input), not by
/// finite differences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoublePendulum {
    /// $g/l$ in s⁻².
    pub g_over_l: f64,
}

/// A minimal forward-mode dual number for the pendulum's Jacobian.
#[derive(Clone, Copy)]
struct Dual(f64, f64);

impl Dual {
    fn c(v: f64) -> Self {
        Dual(v, 0.0)
    }
    fn sin(self) -> Self {
        Dual(self.0.sin(), self.1 * self.0.cos())
    }
    fn cos(self) -> Self {
        Dual(self.0.cos(), -self.1 * self.0.sin())
    }
}
impl std::ops::Add for Dual {
    type Output = Dual;
    fn add(self, o: Dual) -> Dual {
        Dual(self.0 + o.0, self.1 + o.1)
    }
}
impl std::ops::Sub for Dual {
    type Output = Dual;
    fn sub(self, o: Dual) -> Dual {
        Dual(self.0 - o.0, self.1 - o.1)
    }
}
impl std::ops::Mul for Dual {
    type Output = Dual;
    fn mul(self, o: Dual) -> Dual {
        Dual(self.0 * o.0, self.1 * o.0 + self.0 * o.1)
    }
}
impl std::ops::Div for Dual {
    type Output = Dual;
    fn div(self, o: Dual) -> Dual {
        Dual(self.0 / o.0, (self.1 * o.0 - self.0 * o.1) / (o.0 * o.0))
    }
}

fn pendulum_accel(w: Dual, s: [Dual; 4]) -> [Dual; 2] {
    let [th1, th2, w1, w2] = s;
    let d = th1 - th2;
    let (sd, cd) = (d.sin(), d.cos());
    let den = Dual::c(3.0) - (Dual::c(2.0) * d).cos();
    let two = Dual::c(2.0);
    let n1 = Dual::c(-3.0) * w * th1.sin() - w * (th1 - two * th2).sin() - two * sd * (w2 * w2 + w1 * w1 * cd);
    let n2 = two * sd * (two * w1 * w1 + two * w * th1.cos() + w2 * w2 * cd);
    [n1 / den, n2 / den]
}

impl VectorField for DoublePendulum {
    fn dim(&self) -> usize {
        4
    }
    fn n_params(&self) -> usize {
        1
    }
    fn params(&self) -> Vec<f64> {
        vec![self.g_over_l]
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_len("double-pendulum parameter [g/l]", 1, theta.len())?;
        self.g_over_l = theta[0];
        Ok(())
    }
    fn eval(&self, _t: f64, y: &[f64], out: &mut [f64]) -> Result<()> {
        check_eval(4, y, out)?;
        for (s, o) in y.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
            let acc = pendulum_accel(Dual::c(self.g_over_l), [Dual::c(s[0]), Dual::c(s[1]), Dual::c(s[2]), Dual::c(s[3])]);
            o[0] = s[2];
            o[1] = s[3];
            o[2] = acc[0].0;
            o[3] = acc[1].0;
        }
        Ok(())
    }
    fn vjp(&self, _t: f64, y: &[f64], a: &[f64], a_y: &mut [f64], a_theta: &mut [f64]) -> Result<()> {
        check_vjp(4, 1, y, a, a_y, a_theta)?;
        for ((s, c), ay) in y.chunks_exact(4).zip(a.chunks_exact(4)).zip(a_y.chunks_exact_mut(4)) {
            // Column j of the Jacobian of (ω1', ω2') by seeding input j; inputs 0..4 are the
            // state, input 4 is g/l.
            let mut col = [[0.0; 2]; 5];
            for (j, cj) in col.iter_mut().enumerate() {
                let seed = |k: usize, v: f64| Dual(v, if k == j { 1.0 } else { 0.0 });
                let acc = pendulum_accel(seed(4, self.g_over_l), [seed(0, s[0]), seed(1, s[1]), seed(2, s[2]), seed(3, s[3])]);
                *cj = [acc[0].1, acc[1].1];
            }
            for k in 0..4 {
                ay[k] = col[k][0] * c[2] + col[k][1] * c[3];
            }
            ay[2] += c[0];
            ay[3] += c[1];
            a_theta[0] += col[4][0] * c[2] + col[4][1] * c[3];
        }
        Ok(())
    }
    fn name(&self) -> String {
        "double pendulum".into()
    }
}
