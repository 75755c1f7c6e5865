//! # revlib — reversible ODE solvers and exact, memory-efficient gradients
//!
//! revlib differentiates ODE solves $y' = f(t, y; \theta)$ in the ways a neural-ODE researcher
//! compares: full-storage backpropagation, binomial checkpointing, the continuous adjoint,
//! and the **reversible adjoint**, which rebuilds the trajectory backwards with an
//! algebraically reversible solver and so gives the exact discrete gradient in $O(1)$ memory.
//!
//! ## Notation
//! | symbol | code | meaning |
//! |---|---|---|
//! | $t_0, t_1$ | `t0`, `t1` | interval |
//! | $y$ | `y`, `y0` | state (a batch, flat: `batch * dim` values) |
//! | $\theta$ | `theta` | parameters of the vector field |
//! | $z$ | — | the coupled state of [`Reversible`] |
//! | $\lambda$ | `coupling` | McCallum–Foster coupling, default 0.999 |
//! | $a$, $\bar y$ | `a`, `*_bar` | cotangents |
//! | $N$, $c$ | — | number of steps, number of checkpoints |
//!
//! ## Quick start
//! ```
//! use revlib::prelude::*;
//! # fn main() -> revlib::Result<()> {
//! let mut field = Mlp::new(MlpConfig { dim: 2, width: 32, depth: 2, time_input: false }, 0)?;
//! let solver = Reversible::new(ExplicitRk::midpoint(), 0.999)?;
//! let opts = SolveOptions::fixed(0.0, 1.0, 100);
//! let y0 = vec![1.0, 0.0, 0.0, 1.0]; // a batch of two states
//! let mut opt = Adam::new(field.n_params(), AdamConfig { lr: 1e-2, ..Default::default() })?;
//! for _ in 0..5 {
//!     let g = Adjoint::Reversible.gradient(&field, &solver, &y0, &opts, &HalfSquaredNorm)?;
//!     let mut theta = field.params();
//!     opt.step(&mut theta, &g.d_theta)?;
//!     field.set_params(&theta)?;
//! }
//! # Ok(()) }
//! ```
//!
//! ## Solvers
//! | solver | order | evaluations / step | reversible | reference |
//! |---|---|---|---|---|
//! | [`ExplicitRk::euler`] | 1 | 1 | no | — |
//! | [`ExplicitRk::midpoint`], [`ExplicitRk::heun`] | 2 | 2 | no | — |
//! | [`ExplicitRk::ralston3`], [`ExplicitRk::bosh3`] | 3 | 3 (+1 for the error) | no | Bogacki & Shampine 1989 |
//! | [`ExplicitRk::rk4`] | 4 | 4 | no | — |
//! | [`ExplicitRk::dopri5`] | 5 | 6 (+1) | no | Dormand & Prince 1980 |
//! | [`Reversible`]`(B, λ)` | that of B | 2 × B's | yes | McCallum & Foster 2024 |
//! | [`ReversibleHeun`] | 2 | 1 | yes | Kidger et al. 2021 |
//! | [`AsyncLeapfrog`] | 2 | 1 | yes | Zhuang et al. 2021 (MALI) |
//!
//! ## Gradient strategies
//! See [`Adjoint`]: recommended are [`Adjoint::Reversible`] (exact, $O(1)$ memory) and
//! [`Adjoint::Checkpoint`] (exact, $c$ states, recomputation); [`Adjoint::FullStorage`] is the
//! reference and [`Adjoint::Backsolve`] the (inexact) continuous adjoint, for comparison.
//!
//! ## Stochastic differential equations
//! [`sde`]: Stratonovich SDEs driven by a [`VirtualBrownianTree`](sde::VirtualBrownianTree)
//! (any increment, from a seed, in $O(1)$ memory), solved by the same solvers — Heun's method
//! is the stochastic Heun method, [`ReversibleHeun`] the reversible Heun method for SDEs — and
//! differentiated by the same strategies through [`Adjoint::sde_gradient`], exactly, on the
//! sample the forward pass used.
//!
//! ## Features
//! - `nn` (default): the dfdx models in [`nn`] — a reference MLP, the transformer block and the
//!   language models of the RevDEQ experiments, Adam/AdamW.
//! - `parallel` (default): large MLP batches split over two threads, the caller and a helper
//!   that spins between jobs (`RAYON_NUM_THREADS=1`, the size of rayon's global pool, turns it off).
//! - `serde`: `Serialize`/`Deserialize` for options, statistics and results.
//! - `cuda`: the [`nn`] models on a CUDA device chosen at run time (dfdx's CUDA backend; with
//!   `ci-check` it builds without a GPU).
//!
//! `default-features = false` leaves the solvers, gradients, stability analysis and DEQ maths,
//! without dfdx. Experiments, data loaders, figures, tables and the command line live in the
//! separate, unpublished `revlib-lab` crate.

#![warn(missing_docs)]

pub mod adjoint;
pub mod controller;
pub mod deq;
pub mod error;
pub mod field;
pub mod gradcheck;
pub mod integrate;
pub mod loss;
#[cfg(feature = "nn")]
pub mod nn;
mod rng;
pub mod sde;
pub mod solver;
pub mod stability;
pub mod tableau;

/// This crate's version (for provenance records).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use adjoint::{rel_err, Adjoint, Gradient, GradientChecks, OnInexact};
pub use error::{Error, Result};
pub use integrate::{solve, Adaptive, SaveAt, Solution, SolveOptions, Stats, Stepping};

/// Everything a notebook or a training script needs, in one import.
pub mod prelude {
    // `Result` stays at the crate root (`revlib::Result`): a glob import of a one-parameter
    // `Result` would shadow the standard one in evcxr's generated code.
    pub use crate::adjoint::{rel_err, Adjoint, Gradient, GradientChecks, OnInexact};
    pub use crate::error::Error;
    pub use crate::field::{CoupledOscillator, DoublePendulum, Linear, Mlp, MlpConfig, Sir, VectorField, WhiteDwarf};
    pub use crate::gradcheck::{gradcheck, GradCheck, GradCheckOptions};
    pub use crate::integrate::{solve, Adaptive, SaveAt, Solution, SolveOptions, Stats, Stepping};
    pub use crate::loss::{HalfSquaredNorm, Loss, Mse};
    #[cfg(feature = "nn")]
    pub use crate::nn::{Adam, AdamConfig, DfdxMlp};
    pub use crate::solver::{AsyncLeapfrog, ExplicitRk, Reversible, ReversibleHeun, ReversibleSolver, Solver};
    pub use crate::tableau::ButcherTableau;
}

pub use solver::{AsyncLeapfrog, ExplicitRk, Reversible, ReversibleHeun};
