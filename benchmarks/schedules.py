"""Schedule or framework? The talk's runtime problem (y' = MLP(y), scalar state, 10 tanh units,
midpoint, dt = 0.01, N steps, loss 1/2 y(T)^2) differentiated by every strategy in revlib and in
diffrax, each time also as a multiple of the same framework's full-storage time.

    python benchmarks/schedules.py [--steps 100,300,1000,3000,10000] [--budget 60]

revlib: full storage, the reversible adjoint, backsolve, and checkpointing with
c in {2, 4, 8, ceil(sqrt N), 44} both with the offline (revolve) and the online schedule;
diffrax: full storage (RecursiveCheckpointAdjoint(checkpoints=N)), RecursiveCheckpointAdjoint
(online) with the same c, BacksolveAdjoint. Each case runs in a fresh process on one CPU
(taskset) with RAYON_NUM_THREADS=1 and reports mean, std, min and max over its repeats. A
(framework, strategy) pair is skipped at larger N once one case took more than a tenth of
--budget seconds per gradient (the next N is at least 3x larger, and recomputation grows faster
than N). Writes benchmarks/schedules.jsonl (one line per case, with versions and
provenance). Needs target/release/revlib and .venv-bench (make side-by-side installs it).
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def strategies(n):
    cs = [2, 4, 8, math.ceil(math.sqrt(n)), 44]
    rules = ["2", "4", "8", "sqrt", "44"]
    return list(zip(cs, rules))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="100,300,1000,3000,10000")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per gradient after which a strategy stops growing N")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--cpu", default="1")
    p.add_argument("--out", default=os.path.join(HERE, "schedules.jsonl"))
    a = p.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    revlib = os.path.join(ROOT, "target/release/revlib")
    py = os.path.join(ROOT, ".venv-bench/bin/python")
    over = set()
    stamp = {"date": datetime.date.today().isoformat()}
    with open(a.out, "w") as f:
        for n in map(int, a.steps.split(",")):
            cases = [("revlib", "full_storage", None, None), ("revlib", "reversible", None, None), ("revlib", "backsolve", None, None),
                     ("diffrax", "full_storage", None, None), ("diffrax", "backsolve", None, None)]
            for c, rule in strategies(n):
                cases += [("revlib", f"checkpoint_{c}", c, rule), ("revlib", f"checkpoint_online_{c}", c, rule), ("diffrax", f"checkpoint_{c}", c, rule)]
            seen = set()
            for fw, adj, c, rule in cases:
                key = (fw, adj.replace(str(c), rule) if c else adj)
                if key in over or (fw, adj) in seen:
                    continue
                seen.add((fw, adj))
                if fw == "revlib":
                    r = run(["taskset", "-c", a.cpu, revlib, "runtime-case", "--n", str(n), "--adjoint", adj, "--repeats", str(a.repeats)], env)
                    rec = {"framework": "revlib", "N": n, "adjoint": adj, "sec": r["mean_sec"], "std_sec": r["std_sec"], "min_sec": r["min_sec"],
                           "max_sec": r["max_sec"], "repeats": r["repeats"], "stored_states": r["peak_stored_states"],
                           "recomputed_steps": r["recomputed_steps"], "field_evals": r["field_evals"]}
                else:
                    r = run(["taskset", "-c", a.cpu, py, os.path.join(HERE, "diffrax_bench.py"), "--problem", "runtime", "--case", adj, "1", str(n), "--min-seconds", "2"], env)
                    rec = {"framework": "diffrax", "N": n, "adjoint": adj, "sec": r["mean_sec"], "std_sec": r["std_sec"], "min_sec": r["min_sec"],
                           "max_sec": r["max_sec"], "repeats": r["repeats"], "compile_sec": r["compile_sec"], "versions": r["versions"]}
                rec.update({"checkpoints": c, "c_rule": rule, "schedule": "online" if (fw == "diffrax" and c) or "online" in adj else ("offline" if c else None), **stamp})
                if fw == "revlib":
                    rec["provenance"] = json.loads(subprocess.run([revlib, "provenance"], capture_output=True, text=True, cwd=ROOT).stdout)
                f.write(json.dumps(rec) + "\n")
                f.flush()
                print(f"{fw:8} N={n:6} {adj:22} {rec['sec']:.4g} s", file=sys.stderr, flush=True)
                if rec["sec"] > a.budget / 10:  # the next N is at least 3x larger; recomputation grows faster than N
                    over.add(key)


if __name__ == "__main__":
    main()
