#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, its driver and the CUDA toolkit (nvcc;
# dfdx compiles its kernels at build time). Checks the transformer block's VJP on CUDA against
# central differences and one language-model gradient on CUDA against the CPU (f32 tolerance),
# then runs the quick perplexity study on CUDA. JSON lines go to stdout and to $OUT (default
# gpu-check/) with the GPU's name, so the README can record what ran where and when.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
date -u +%FT%TZ | tee "$OUT/date.txt"
cargo run --release -q -p revlib-lab --features cuda --example gpu_check | tee "$OUT/checks.jsonl"
cargo build --release -q -p revlib-lab --features cuda --bin revlib
for dev in cpu cuda; do
  /usr/bin/time -f "$dev: %e s, peak RSS %M kB" ./target/release/revlib lm-study --mode quick --device "$dev" --out "$OUT/lm-study-$dev" 2>&1 | tail -3
done
