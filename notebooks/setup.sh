#!/usr/bin/env bash
# One-time setup of the notebook pipeline: a local Python virtual environment with the
# packages of environment.yml, the pinned evcxr Jupyter kernel, and a kernel spec registered
# in that environment only (name `rust`, as evcxr names it; run.py puts .venv/share/jupyter first on
# JUPYTER_PATH so this one is used even where a user-wide `rust` kernel exists; none is touched).
set -euo pipefail
cd "$(dirname "$0")/.."
EVCXR_VERSION=0.22.0
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall when notebooks/requirements.txt changes (a stamp holds the last installed copy).
if ! cmp -s notebooks/requirements.txt .venv/requirements.stamp; then
  .venv/bin/pip install -q -r notebooks/requirements.txt
  cp notebooks/requirements.txt .venv/requirements.stamp
fi
EVCXR="$(command -v evcxr_jupyter || true)"
installed=$(cargo install --list 2>/dev/null | grep -c "^evcxr_jupyter v$EVCXR_VERSION:" || true)
if [ -z "$EVCXR" ] || [ "$installed" = 0 ]; then
  cargo install --locked evcxr_jupyter --version "$EVCXR_VERSION"
  EVCXR="$(command -v evcxr_jupyter || echo "$HOME/.cargo/bin/evcxr_jupyter")"
fi
# evcxr needs the standard library's sources for completions; harmless if rustup is absent.
command -v rustup >/dev/null && rustup component add rust-src >/dev/null 2>&1 || true
# The kernel always starts in this checkout's notebooks/ folder, whichever directory Jupyter, VS Code
# or a copied notebook asks for, so the notebooks' `:dep revlib = { path = "../revlib" }` lines resolve
# (evcxr resolves them against its working directory). Its temporary directory, where evcxr writes and
# builds its crate, is target/evcxr/ in this checkout, so cargo applies the checkout's
# .cargo/config.toml to those builds. Rerun this script after moving the checkout.
spec=.venv/share/jupyter/kernels/rust
mkdir -p "$spec"
cat > "$spec/kernel.json" <<JSON
{"argv": ["bash", "-c", "f=\$(realpath \"\$1\") && cd \"\$2\" && mkdir -p ../target/evcxr && export TMPDIR=\$(realpath ../target/evcxr) && exec \"\$3\" --control_file \"\$f\"", "revlib-kernel", "{connection_file}", "$PWD/notebooks", "$EVCXR"],
 "display_name": "Rust (revlib, evcxr $EVCXR_VERSION)", "language": "rust", "interrupt_mode": "message"}
JSON
# evcxr_jupyter reinstalls its own kernel.json (without the cd above) when the version.txt beside it
# differs from the one compiled into it; this is 0.22.0's ("1", no newline).
printf 1 > "$spec/version.txt"
echo "notebook kernel: $spec -> $EVCXR"
