//! The GPU check (run by `scripts/gpu-check.sh` on a machine with a CUDA device): the
//! transformer block's VJP on CUDA against central differences, and one language-model
//! gradient (transformer and RevDEQ) on CUDA against the same model on the CPU. Prints one
//! JSON line per check and exits non-zero if any fails.

use revlib::deq::FixedPointMap;
use revlib::nn::lm::{LanguageModel, LmConfig, LmKind};
use revlib::nn::transformer::{BlockConfig, BlockKind, TransformerBlock};
use revlib::nn::{AnyDevice, Cpu, DeviceKind};
use revlib::rel_err;
use std::time::Instant;

fn wave(n: usize, f: f64) -> Vec<f64> {
    (0..n).map(|i| (f * i as f64).sin()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let AnyDevice::Cuda(cuda, ordinal) = AnyDevice::open(DeviceKind::Cuda { ordinal: 0 }, 0)? else {
        return Err("no CUDA device".into());
    };
    let mut failed = 0;
    let mut report = |check: &str, value: f64, bound: f64, extra: serde_json::Value| {
        let pass = value < bound;
        failed += usize::from(!pass);
        println!("{}", serde_json::json!({ "check": check, "device": format!("cuda:{ordinal}"), "value": value, "bound": bound, "pass": pass, "details": extra }));
    };

    // 1. Block VJP on the device against central differences of <a, f(z, x)> (f32 inside).
    let cfg = BlockConfig { d_model: 16, heads: 4, mlp_ratio: 4, seq_len: 8, kind: BlockKind::PostLn };
    let block = TransformerBlock::on(cuda.clone(), cfg, 0)?;
    let n = 2 * cfg.seq_len * cfg.d_model;
    let (z, x, a, v) = (wave(n, 0.3), wave(n, 0.7), wave(n, 0.11), wave(n, 0.05));
    let (mut a_z, mut a_t, mut a_x) = (vec![0.0; n], vec![0.0; block.n_params()], vec![0.0; n]);
    block.vjp(&z, &x, &a, &mut a_z, &mut a_t, &mut a_x)?;
    let h = 1e-2;
    let dot = |zz: &[f64]| -> Result<f64, revlib::Error> {
        let mut out = vec![0.0; n];
        block.eval(zz, &x, &mut out)?;
        Ok(out.iter().zip(&a).map(|(p, q)| p * q).sum())
    };
    let up: Vec<f64> = z.iter().zip(&v).map(|(p, q)| p + h * q).collect();
    let dn: Vec<f64> = z.iter().zip(&v).map(|(p, q)| p - h * q).collect();
    let fd = (dot(&up)? - dot(&dn)?) / (2.0 * h);
    let ad: f64 = a_z.iter().zip(&v).map(|(p, q)| p * q).sum();
    report("block_vjp_vs_central_differences", (fd - ad).abs() / fd.abs().max(1e-12), 1e-2, serde_json::json!({ "fd": fd, "vjp": ad }));

    // 2. One language-model gradient on CUDA against the CPU (same parameters, f32 blocks).
    let block = BlockConfig { d_model: 64, heads: 4, mlp_ratio: 4, seq_len: 32, kind: BlockKind::PostLn };
    let tokens: Vec<u32> = (0..16 * 33).map(|i| ((i * 7919) % 500) as u32).collect();
    for (name, kind) in [("transformer_1", LmKind::Transformer { layers: 1 }), ("revdeq", LmKind::rev_deq(0.5, 4))] {
        let lm = LmConfig { vocab: 500, block, kind };
        let cpu = LanguageModel::on(Cpu::default(), lm, 0)?;
        let gpu = LanguageModel::on(cuda.clone(), lm, 0)?;
        let t = Instant::now();
        let (lc, gc, _) = cpu.loss_and_grad(&tokens)?;
        let cpu_sec = t.elapsed().as_secs_f64();
        gpu.loss_and_grad(&tokens)?; // warm-up (kernel loading)
        let t = Instant::now();
        let (lg, gg, stats) = gpu.loss_and_grad(&tokens)?;
        let gpu_sec = t.elapsed().as_secs_f64();
        report(
            &format!("lm_gradient_cuda_vs_cpu_{name}"),
            rel_err(&gg, &gc),
            1e-3,
            serde_json::json!({ "loss_cpu": lc, "loss_cuda": lg, "cpu_sec": cpu_sec, "cuda_sec": gpu_sec, "iterations": stats.iterations }),
        );
    }
    if failed > 0 {
        return Err(format!("{failed} GPU check(s) failed").into());
    }
    Ok(())
}
