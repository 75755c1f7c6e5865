"""Check that revlib's `rust-version` is the highest `rust-version` among the locked
dependencies its default features build (so the declared minimum is true)."""
import json
import subprocess
import sys

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
print(f"revlib rust-version {declared}; highest among its {len(seen)} dependencies: "
      f"{pkgs[need]['name']} {pkgs[need]['version']} needs {pkgs[need]['rust_version']}")
if version(declared) != version(pkgs[need]["rust_version"]):
    sys.exit(f"revlib's rust-version must be {pkgs[need]['rust_version']}")
