//! The README's example: train a neural ODE with the reversible adjoint (built by `cargo test`).

use revlib::prelude::*;

fn main() -> revlib::Result<()> {
    let mut field = Mlp::new(MlpConfig { dim: 2, width: 32, depth: 2, time_input: false }, 0)?;
    let solver = Reversible::new(ExplicitRk::midpoint(), 0.999)?;      // McCallum–Foster, λ = 0.999
    let opts = SolveOptions::fixed(0.0, 1.0, 100).save_at(SaveAt::Steps);
    let y0 = vec![1.0, 0.0];
    let data = Mse { targets: (1..=100).map(|k| vec![(k as f64 / 100.0).cos(), -(k as f64 / 100.0).sin()]).collect() };
    let mut opt = Adam::new(field.n_params(), AdamConfig { lr: 1e-2, ..Default::default() })?;
    for _ in 0..200 {
        let g = Adjoint::Reversible.gradient(&field, &solver, &y0, &opts, &data)?; // exact, O(1) states
        let mut theta = field.params();
        opt.step(&mut theta, &g.d_theta)?;
        field.set_params(&theta)?;
    }
    println!("trained {} parameters", field.n_params());
    Ok(())
}
