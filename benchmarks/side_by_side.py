"""Run revlib's gradient benchmark and the same problem in diffrax with the same thread count, and
print revlib/diffrax time ratios per case as JSON lines (then a summary table on stderr).

    python benchmarks/side_by_side.py [--threads 2] [--batch 1,256] [--steps 100,1000]

Both sides run under `taskset` on the same CPUs; revlib with RAYON_NUM_THREADS=threads. Needs
target/release/revlib (cargo build --release) and the packages in benchmarks/requirements.txt.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def lines(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", default="1,256")
    p.add_argument("--steps", default="100,1000")
    p.add_argument("--checkpoints", default="4,8,32")
    p.add_argument("--min-seconds", default="2")
    p.add_argument("--out", default=os.path.join(HERE, "side-by-side.jsonl"))
    a = p.parse_args()
    cpus = f"0-{a.threads - 1}"
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    ck = [f"checkpoint_{c}" for c in a.checkpoints.split(",")]
    common = ["--batch", a.batch, "--steps", a.steps, "--min-seconds", a.min_seconds]
    rev = lines(["taskset", "-c", cpus, os.path.join(ROOT, "target/release/revlib"), "bench", "--max-seconds", "1e9",
                 "--adjoints", ",".join(["full_storage", *ck, "backsolve", "reversible"]), *common], env)
    dfx = lines(["taskset", "-c", cpus, sys.executable, os.path.join(HERE, "diffrax_bench.py"),
                 "--adjoints", ",".join(["full_storage", *ck, "backsolve"]), *common], env)
    sec = {("revlib", r["adjoint"], r["B"], r["N"]): r["sec_per_grad"] for r in rev}
    sec.update({("diffrax", r["adjoint"], r["B"], r["N"]): r["sec_per_grad"] for r in dfx})
    stamp = {"date": datetime.date.today().isoformat(), "threads": a.threads, "cpu": rev[0]["provenance"]["cpu"],
             "git_commit": rev[0]["provenance"]["git_commit"], "diffrax": dfx[0]["framework"], "versions": dfx[0]["versions"]}
    out = []
    for b in map(int, a.batch.split(",")):
        for n in map(int, a.steps.split(",")):
            row = {"B": b, "N": n, **stamp}
            for k in ["full_storage", *ck, "backsolve", "reversible"]:
                row[f"revlib_{k}_sec"] = sec.get(("revlib", k, b, n))
                row[f"diffrax_{k}_sec"] = sec.get(("diffrax", k, b, n))
            d_full = sec[("diffrax", "full_storage", b, n)]
            r_rev = sec[("revlib", "reversible", b, n)]
            row["ratio_full_storage"] = sec[("revlib", "full_storage", b, n)] / d_full  # target <= 0.5
            row["ratio_reversible_vs_diffrax_full"] = r_rev / d_full  # target <= 1.5
            for k in ck:
                row[f"speedup_reversible_vs_diffrax_{k}"] = sec[("diffrax", k, b, n)] / r_rev  # target >= 3 for c <= 8
                row[f"ratio_{k}"] = sec[("revlib", k, b, n)] / sec[("diffrax", k, b, n)]
            row["ratio_backsolve"] = sec[("revlib", "backsolve", b, n)] / sec[("diffrax", "backsolve", b, n)]
            # Each framework's strategies as multiples of its own full-storage time.
            for fw in ("revlib", "diffrax"):
                for k in [*ck, "backsolve", "reversible"]:
                    if (fw, k, b, n) in sec:
                        row[f"{fw}_{k}_over_own_full"] = sec[(fw, k, b, n)] / sec[(fw, "full_storage", b, n)]
            out.append(row)
            print(json.dumps(row), flush=True)
    with open(a.out, "w") as f:
        for r in rev + dfx:
            f.write(json.dumps({"side": "revlib" if "provenance" in r else "diffrax", **r}) + "\n")
        for r in out:
            f.write(json.dumps({"side": "ratios", **r}) + "\n")
    print(f"\n{'B':>4} {'N':>5} | revlib/diffrax full | reversible/diffrax full | " + " | ".join(f"diffrax {k}/reversible" for k in ck), file=sys.stderr)
    for r in out:
        print(f"{r['B']:>4} {r['N']:>5} | {r['ratio_full_storage']:19.2f} | {r['ratio_reversible_vs_diffrax_full']:23.2f} | "
              + " | ".join(f"{r[f'speedup_reversible_vs_diffrax_{k}']:{len(k) + 19}.2f}" for k in ck), file=sys.stderr)


if __name__ == "__main__":
    main()
