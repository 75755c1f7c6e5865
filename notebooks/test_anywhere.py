"""A notebook copied out of the repository still runs: execute one from a temporary directory
outside the checkout, with that directory as the working directory of both this process and the
kernel, and check that it finds revlib, revlib-lab and the repository's files.

Run after notebooks/setup.sh (it uses the kernel registered in .venv); `make test-notebooks` does.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from run import evcxr_build_env

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    source = nbformat.read(ROOT / "notebooks" / "02_reversible_solvers.ipynb", as_version=4)
    # The notebook's own dependency and import cells, unchanged, then a check of what it can see.
    deps = [c for c in source.cells if c.cell_type == "code" and ":dep" in c.source]
    assert deps and '"../revlib"' in deps[0].source, "the notebooks' :dep lines were expected to name ../revlib"
    check = nbformat.v4.new_code_cell(
        'let root = revlib_lab::notebook::repo_path("");\n'
        'println!("revlib {} from the repository at {}", revlib::VERSION, root.display());\n'
        'assert!(root.join("notebooks").join("02_reversible_solvers.ipynb").exists());\n'
        'assert!(revlib_lab::notebook::repo_path("data/published/mccallum-foster-2024.json").exists());\n'
        '// evcxr builds in target/evcxr/, where cargo reads the checkout\'s .cargo/config.toml.\n'
        'assert!(std::env::temp_dir().starts_with(root.join("target").join("evcxr")), "{}", std::env::temp_dir().display());'
    )
    nb = nbformat.v4.new_notebook(cells=[deps[0], check], metadata=source.metadata)
    spec = ROOT / ".venv" / "share" / "jupyter" / "kernels" / "rust" / "kernel.json"
    argv = json.loads(spec.read_text())["argv"]
    assert argv[0] == "bash" and 'cd "$2"' in argv[2], f"{spec} does not start the kernel in notebooks/ (evcxr may have rewritten it; rerun notebooks/setup.sh)"
    # The runner's build folder and compile cache: what is checked is where the notebook lives, not
    # where evcxr builds it.
    os.environ.update(evcxr_build_env())
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(ROOT / ".venv" / "share" / "jupyter")] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p])
    with tempfile.TemporaryDirectory(prefix="revlib-elsewhere-") as elsewhere:
        os.chdir(elsewhere)
        path = Path(elsewhere) / "copied.ipynb"
        nbformat.write(nb, path)
        NotebookClient(nb, kernel_name="rust", timeout=1200, resources={"metadata": {"path": elsewhere}}).execute()
        printed = "".join(o.get("text", "") for o in nb.cells[1].get("outputs", []) if o.get("output_type") == "stream")
        assert "panicked" not in printed and f"from the repository at {ROOT}" in printed, printed
    print(f"a notebook copied to another directory ran: {printed.strip().splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
