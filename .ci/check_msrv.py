"""Check that revlib's `rust-version` is the higher of (a) the highest `rust-version` among the
locked dependencies its default features build and (b) what revlib's own code needs, so the
declared minimum is true and no higher than it must be."""
import json
import subprocess
import sys

# revlib's own code: the AVX-512 `target_feature`s of field/kernels.rs were stabilised in
# Rust 1.89 (`slice::as_chunks`, also used there, in 1.88).
OWN_CODE = "1.89"

meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform",
     subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout.split("host: ")[1].split()[0]],
    capture_output=True, text=True, check=True).stdout)
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = next(p["id"] for p in meta["packages"] if p["name"] == "revlib")


def version(v):
    return tuple(int(x) for x in (v or "0").split(".")) + (0,) * (3 - len((v or "0").split(".")))


# Normal and build dependencies reachable from revlib (dev-dependencies are not built by users).
seen, stack = set(), [root]
while stack:
    pid = stack.pop()
    if pid in seen:
        continue
    seen.add(pid)
    for dep in nodes[pid]["deps"]:
        if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
            stack.append(dep["pkg"])
seen.discard(root)
need = max(seen, key=lambda p: version(pkgs[p]["rust_version"]))
declared = pkgs[root]["rust_version"]
deps = pkgs[need]["rust_version"]
required = max(deps, OWN_CODE, key=version)
print(f"revlib rust-version {declared}; highest among its {len(seen)} dependencies: "
      f"{pkgs[need]['name']} {pkgs[need]['version']} needs {deps}; revlib's own code needs {OWN_CODE}")
if version(declared) != version(required):
    sys.exit(f"revlib's rust-version must be {required}")
