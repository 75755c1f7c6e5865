use revlib::field::{tanh_inplace, Mlp, MlpConfig, VectorField};
use std::time::Instant;
fn main() {
    let n = 256 * 128;
    let mut x: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.001).sin() * 3.0).collect();
    let t = Instant::now();
    for _ in 0..1000 { tanh_inplace(&mut x); for v in x.iter_mut() { *v *= 2.9; } }
    println!("tanh_inplace: {:.2} ns/elem", t.elapsed().as_secs_f64() / (1000.0 * n as f64) * 1e9);
    let t = Instant::now();
    for _ in 0..200 { for v in x.iter_mut() { *v = v.tanh() * 2.9; } }
    println!("std tanh: {:.2} ns/elem", t.elapsed().as_secs_f64() / (200.0 * n as f64) * 1e9);
    let m = Mlp::new(MlpConfig { dim: 2, width: 64, depth: 2, time_input: false }, 0).unwrap();
    let y: Vec<f64> = (0..512).map(|i| (i as f64 * 0.1).sin()).collect();
    let mut out = vec![0.0; 512];
    let t = Instant::now();
    for _ in 0..2000 { m.eval(0.0, &y, &mut out).unwrap(); }
    println!("eval B=256: {:.1} us", t.elapsed().as_secs_f64() / 2000.0 * 1e6);
    let (mut ay, mut at) = (vec![0.0; 512], vec![0.0; m.n_params()]);
    let t = Instant::now();
    for _ in 0..2000 { m.eval_and_vjp(0.0, &y, &y, &mut out, &mut ay, &mut at).unwrap(); }
    println!("eval_and_vjp B=256: {:.1} us", t.elapsed().as_secs_f64() / 2000.0 * 1e6);
}
