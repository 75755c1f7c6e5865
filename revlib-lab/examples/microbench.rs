//! Micro-benchmark of the fused MLP's building blocks, one JSON line per measurement:
//! `cargo run --release -p revlib-lab --example microbench`.
use revlib::field::{tanh_inplace, Mlp, MlpConfig, VectorField};
use std::time::Instant;

fn main() -> revlib::Result<()> {
    let n = 256 * 128;
    let mut x: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.001).sin() * 3.0).collect();
    let t = Instant::now();
    for _ in 0..1000 {
        tanh_inplace(&mut x);
        x.iter_mut().for_each(|v| *v *= 2.9);
    }
    println!("{{\"case\": \"tanh_inplace\", \"ns_per_value\": {:.3}}}", t.elapsed().as_secs_f64() / (1000.0 * n as f64) * 1e9);
    let t = Instant::now();
    for _ in 0..200 {
        x.iter_mut().for_each(|v| *v = v.tanh() * 2.9);
    }
    println!("{{\"case\": \"std_tanh\", \"ns_per_value\": {:.3}}}", t.elapsed().as_secs_f64() / (200.0 * n as f64) * 1e9);
    let m = Mlp::new(MlpConfig { dim: 2, width: 64, depth: 2, time_input: false }, 0)?;
    let y: Vec<f64> = (0..512).map(|i| (i as f64 * 0.1).sin()).collect();
    let (mut out, mut ay, mut at) = (vec![0.0; 512], vec![0.0; 512], vec![0.0; m.n_params()]);
    let t = Instant::now();
    for _ in 0..2000 {
        m.eval(0.0, &y, &mut out)?;
    }
    println!("{{\"case\": \"mlp_eval_b256\", \"us\": {:.1}}}", t.elapsed().as_secs_f64() / 2000.0 * 1e6);
    let t = Instant::now();
    for _ in 0..2000 {
        m.eval_and_vjp(0.0, &y, &y, &mut out, &mut ay, &mut at)?;
    }
    println!("{{\"case\": \"mlp_eval_and_vjp_b256\", \"us\": {:.1}}}", t.elapsed().as_secs_f64() / 2000.0 * 1e6);
    Ok(())
}
