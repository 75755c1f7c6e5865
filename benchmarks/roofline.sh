#!/usr/bin/env bash
# The README's roofline table: this machine's GEMM rate (`revlib bench --peak`) and each
# strategy's gradient at B = 256, N = 1000 on one and on two threads (taskset + RAYON_NUM_THREADS),
# appended to benchmarks/roofline.jsonl, then the table as Markdown with % of the measured GEMM
# peak (the 256×64×64 hidden-layer product on the same thread count) and of the FMA limit
# (independent FMAs in registers).
#
#   bash benchmarks/roofline.sh          (about 3 minutes on 2 cores; needs `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/revlib
out=benchmarks/roofline.jsonl
new=$(mktemp)
trap 'rm -f "$new"' EXIT
"$bin" bench --peak >> "$new"
for threads in 1 2; do
  cpus=$([ "$threads" = 1 ] && echo 0 || echo 0,1)
  RAYON_NUM_THREADS=$threads taskset -c "$cpus" "$bin" bench --batch 256 --steps 1000 \
    --adjoints full_storage,checkpoint_8,backsolve,reversible --min-seconds 3 >> "$new"
done
cat "$new" >> "$out"
python3 - "$new" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak, fma = {}, {}
for d in lines:
    if d.get("kind") == "gemm" and d["what"] == "hidden layer" and d["m"] == 256:
        peak[d["threads"]] = max(peak.get(d["threads"], 0.0), d["gflops_per_sec"])
    if d.get("kind") == "fma":
        fma[d["threads"]] = d["gflops_per_sec"]
grads = [d for d in lines if "adjoint" in d]
p = grads[0]["provenance"]
print(f"{p['cpu']}, commit {p['git_commit'][:7]}; peak (256×64×64 GEMM) "
      + ", ".join(f"{peak[t]:.1f} GFLOP/s on {t} thread{'s' if t > 1 else ''}" for t in sorted(peak))
      + "; FMA limit " + ", ".join(f"{fma[t]:.1f}" for t in sorted(fma)))
print("| strategy | evaluations / VJPs per step | GFLOP | 1 thread: s | GFLOP/s | % of GEMM peak | % of FMA limit | 2 threads: s | GFLOP/s | % of GEMM peak | % of FMA limit |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name in dict.fromkeys(d["adjoint"] for d in grads):
    row = {d["provenance"]["threads"]: d for d in grads if d["adjoint"] == name}
    any_ = next(iter(row.values()))
    cells = [name.replace("_", " "), f"{any_['evals_per_step']:g} / {any_['vjps_per_step']:g}", f"{any_['gemm_flops'] / 1e9:.1f}"]
    for t in (1, 2):
        d = row.get(t)
        cells += [f"{d['sec_per_grad']:.3f}", f"{d['gflops_per_sec']:.1f}", f"{100 * d['gflops_per_sec'] / peak[t]:.0f}",
                  f"{100 * d['gflops_per_sec'] / fma[t]:.0f}"] if d else ["—"] * 4
    print("| " + " | ".join(cells) + " |")
EOF
