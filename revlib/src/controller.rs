//! Step-size controllers: accept or reject an attempted step and choose the next step size.
//!
//! The integrator measures each attempted step's error as the RMS, over all components of the
//! batch, of $e_i / (\text{atol} + \text{rtol}\max(|y_i|, |y_i'|))$ (≤ 1: within tolerance)
//! and hands it to a [`StepSizeController`]. Two are provided:
//! - [`PiController`], the proportional–integral controller of Hairer & Wanner (II, §IV.2)
//!   and Söderlind, with named gains and limits;
//! - [`ConstantController`], which accepts every step and keeps its size (constant steps of a
//!   given `dt`, shortened only to land on output times and $t_1$).

/// An attempted step as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// Size of the attempted step.
    pub h: f64,
    /// Scaled RMS error (≤ 1 is within tolerance; infinite if the step produced a non-finite
    /// state; 0 for controllers that read no estimate).
    pub err: f64,
    /// $k$ = order of the error estimate's underlying solution + 1 (the error is $O(h^k)$).
    pub order: usize,
}

/// The controller's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the step is accepted.
    pub accept: bool,
    /// Size of the next attempt.
    pub next_h: f64,
}

/// What a controller remembers between steps (the PI controller: the last accepted error).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerMemory {
    /// Scaled error of the last accepted step (1 before the first).
    pub prev_err: f64,
}

impl Default for ControllerMemory {
    fn default() -> Self {
        Self { prev_err: 1.0 }
    }
}

/// Decides on attempted steps.
pub trait StepSizeController: std::fmt::Debug + Sync {
    /// Whether the controller reads error estimates (the solver must then provide one).
    fn needs_error_estimate(&self) -> bool;
    /// Accept or reject `attempt` and propose the next step size.
    fn decide(&self, attempt: Attempt, memory: &mut ControllerMemory) -> Decision;
}

/// The proportional–integral step-size controller.
///
/// On acceptance ($\epsilon_n \le 1$) the next step is
/// $h \cdot \mathrm{clamp}(s\, \epsilon_n^{-\beta_1/k}\, \epsilon_{n-1}^{\beta_2/k},\ f_{\min}, f_{\max})$;
/// on rejection $h \cdot \mathrm{clamp}(s\, \epsilon_n^{-1/k}, f_{\min}, 1)$ (and $f_{\min}$ if the step
/// was not finite). Errors are floored at [`PiController::ERR_FLOOR`] so an exact step does not
/// propose an infinite one.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PiController {
    /// Safety factor $s$.
    pub safety: f64,
    /// Proportional exponent $\beta_1$.
    pub beta1: f64,
    /// Integral exponent $\beta_2$.
    pub beta2: f64,
    /// Smallest step-size factor $f_{\min}$.
    pub min_factor: f64,
    /// Largest step-size factor $f_{\max}$.
    pub max_factor: f64,
}

impl PiController {
    /// Default safety factor.
    pub const SAFETY: f64 = 0.9;
    /// Default proportional exponent.
    pub const BETA1: f64 = 0.7;
    /// Default integral exponent.
    pub const BETA2: f64 = 0.4;
    /// Default smallest factor.
    pub const MIN_FACTOR: f64 = 0.2;
    /// Default largest factor.
    pub const MAX_FACTOR: f64 = 10.0;
    /// Errors below this are treated as this (an exact step would otherwise propose $h = \infty$).
    pub const ERR_FLOOR: f64 = 1e-10;
}

impl Default for PiController {
    fn default() -> Self {
        Self { safety: Self::SAFETY, beta1: Self::BETA1, beta2: Self::BETA2, min_factor: Self::MIN_FACTOR, max_factor: Self::MAX_FACTOR }
    }
}

impl StepSizeController for PiController {
    fn needs_error_estimate(&self) -> bool {
        true
    }
    fn decide(&self, a: Attempt, memory: &mut ControllerMemory) -> Decision {
        let k = a.order as f64;
        if a.err <= 1.0 {
            let e = a.err.max(Self::ERR_FLOOR);
            let fac = (self.safety * e.powf(-self.beta1 / k) * memory.prev_err.powf(self.beta2 / k)).clamp(self.min_factor, self.max_factor);
            memory.prev_err = e;
            Decision { accept: true, next_h: a.h * fac }
        } else {
            let fac = if a.err.is_finite() { (self.safety * a.err.powf(-1.0 / k)).clamp(self.min_factor, 1.0) } else { self.min_factor };
            Decision { accept: false, next_h: a.h * fac }
        }
    }
}

/// Accepts every step and keeps its size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConstantController;

impl StepSizeController for ConstantController {
    fn needs_error_estimate(&self) -> bool {
        false
    }
    fn decide(&self, a: Attempt, _memory: &mut ControllerMemory) -> Decision {
        Decision { accept: true, next_h: a.h }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_controller_grows_on_small_errors_and_shrinks_on_rejection() {
        let pi = PiController::default();
        let mut mem = ControllerMemory::default();
        let d = pi.decide(Attempt { h: 0.1, err: 0.01, order: 3 }, &mut mem);
        assert!(d.accept && d.next_h > 0.1 && d.next_h <= 0.1 * PiController::MAX_FACTOR);
        assert_eq!(mem.prev_err, 0.01);
        let d = pi.decide(Attempt { h: 0.1, err: 8.0, order: 3 }, &mut mem);
        assert!(!d.accept);
        assert!((d.next_h - 0.1 * 0.9 * 8f64.powf(-1.0 / 3.0)).abs() < 1e-15);
        let d = pi.decide(Attempt { h: 0.1, err: f64::INFINITY, order: 3 }, &mut mem);
        assert!(!d.accept && (d.next_h - 0.1 * PiController::MIN_FACTOR).abs() < 1e-15);
        let d = ConstantController.decide(Attempt { h: 0.25, err: 0.0, order: 1 }, &mut mem);
        assert_eq!(d, Decision { accept: true, next_h: 0.25 });
    }
}
