"""revlib's gradient benchmarks solved with diffrax (JAX), for side-by-side comparisons.

Problems (identical to revlib's, see revlib-lab/src/bench.rs and experiments/runtime.rs), float64:

  core     (`revlib bench`) y' = MLP(y), D = 2, two tanh hidden layers of width 64, explicit midpoint
           on [0, 1] with N fixed steps, loss 1/2 ||y(1)||^2 summed over a batch of B initial states.
  runtime  (the talk's runtime figure, `revlib experiment runtime`) y' = MLP(y) with a scalar state,
           one hidden layer of 10 tanh units, midpoint with dt = 0.01 on [0, 0.01 N], y0 = 1,
           loss 1/2 y(T)^2 (B is ignored).

Gradient strategies:

  full_storage    RecursiveCheckpointAdjoint(checkpoints=N): every step stored (diffrax's default
                  would not store every step, so it is set explicitly)
  checkpoint_<c>  RecursiveCheckpointAdjoint(checkpoints=c): online binomial checkpointing
  backsolve       BacksolveAdjoint(): the continuous adjoint

Each case runs in a fresh process (so its peak RSS is its own) and prints one JSON line with the
keys of `revlib bench`. The time is the median of repeated calls of a jitted value_and_grad after
one compile call.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run_case(problem: str, adjoint: str, batch: int, steps: int, seed: int, min_seconds: float) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax
    import equinox as eqx
    import jax.numpy as jnp

    key_mlp, key_y0 = jax.random.split(jax.random.PRNGKey(seed))
    if problem == "core":
        mlp = eqx.nn.MLP(2, 2, 64, 2, activation=jnp.tanh, key=key_mlp, dtype=jnp.float64)
        y0 = jax.random.normal(key_y0, (batch, 2), dtype=jnp.float64)
        t1 = 1.0
    elif problem == "runtime":
        mlp = eqx.nn.MLP(1, 1, 10, 1, activation=jnp.tanh, key=key_mlp, dtype=jnp.float64)
        y0 = jnp.ones((1, 1), dtype=jnp.float64)
        batch, t1 = 1, 0.01 * steps
    else:
        raise SystemExit(f"unknown problem {problem}")

    if adjoint == "full_storage":
        adj = diffrax.RecursiveCheckpointAdjoint(checkpoints=steps)
    elif adjoint.startswith("checkpoint_"):
        adj = diffrax.RecursiveCheckpointAdjoint(checkpoints=int(adjoint.split("_")[1]))
    elif adjoint == "backsolve":
        adj = diffrax.BacksolveAdjoint()
    else:
        raise SystemExit(f"unknown adjoint {adjoint}")

    def field(t, y, model):
        return jax.vmap(model)(y)

    @eqx.filter_jit
    @eqx.filter_value_and_grad
    def loss_and_grad(model, y0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Midpoint(), t0=0.0, t1=t1, dt0=t1 / steps, y0=y0,
            args=model, adjoint=adj, max_steps=steps, saveat=diffrax.SaveAt(t1=True),
        )
        return 0.5 * jnp.sum(sol.ys[-1] ** 2)

    t = time.perf_counter()
    v, g = loss_and_grad(mlp, y0)
    jax.block_until_ready(g)
    compile_sec = time.perf_counter() - t
    t = time.perf_counter()
    v, g = loss_and_grad(mlp, y0)
    jax.block_until_ready(g)
    first = time.perf_counter() - t
    reps = max(1, min(20, int(min_seconds / max(first, 1e-9)) + 1))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        v, g = loss_and_grad(mlp, y0)
        jax.block_until_ready(g)
        times.append(time.perf_counter() - t)
    times.sort()
    mean = sum(times) / len(times)
    return {
        "problem": problem, "adjoint": adjoint, "B": batch, "D": 2 if problem == "core" else 1,
        "W": 64 if problem == "core" else 10, "N": steps, "solver": "diffrax Midpoint",
        "sec_per_grad": times[len(times) // 2], "mean_sec": mean,
        "std_sec": (sum((t - mean) ** 2 for t in times) / len(times)) ** 0.5,
        "min_sec": times[0], "max_sec": times[-1], "repeats": reps, "compile_sec": compile_sec,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "loss": float(v), "framework": f"jax {jax.__version__}, diffrax {diffrax.__version__}, equinox {eqx.__version__}",
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "jaxlib": __import__("jaxlib").__version__,
                     "diffrax": diffrax.__version__, "equinox": eqx.__version__},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", default="core", choices=["core", "runtime"])
    p.add_argument("--batch", default="1,256")
    p.add_argument("--steps", default="100,1000")
    p.add_argument("--adjoints", default="full_storage,checkpoint_8,checkpoint_32,backsolve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--case", nargs=3, metavar=("ADJOINT", "B", "N"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.case:
        adj, b, n = a.case
        print(json.dumps(run_case(a.problem, adj, int(b), int(n), a.seed, a.min_seconds)), flush=True)
        return
    for b in map(int, a.batch.split(",")):
        for n in map(int, a.steps.split(",")):
            for adj in a.adjoints.split(","):
                out = subprocess.run(
                    [sys.executable, __file__, "--problem", a.problem, "--case", adj, str(b), str(n), "--seed", str(a.seed), "--min-seconds", str(a.min_seconds)],
                    capture_output=True, text=True, env=os.environ,
                )
                if out.returncode != 0:
                    raise SystemExit(f"case {adj} B={b} N={n} failed:\n{out.stderr}")
                print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
