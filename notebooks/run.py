"""Execute the revlib notebooks headless and build the report.

Usage: python notebooks/run.py [--mode quick|default|full] [--out reports] [--only NN] [--publish DIR]

For each notebooks/NN_*.ipynb (in order): execute it
in notebooks/ with the `rust` (evcxr) kernel that setup.sh registered in .venv, and REVLIB_MODE
and REVLIB_RESULTS set; write the executed notebook and a
self-contained HTML page (plotly.js embedded once per page, so figures render offline) to
the output folder, with a run record (NN_<name>.run.json: mode, seconds, date, commit). Then
rebuild the index page from every executed page in the folder (report_index.py), so a partial
run (--only) leaves a complete index. Exits non-zero on the first cell error, including a
failed assertion a notebook makes about its own results.

With --publish DIR (`make publish`: default mode into notebooks/executed/, the copies the
repository holds) each executed notebook is also written to DIR for reading without a kernel:
figures with a static PNG beside their plotly JSON, numbers rounded (publish.py).
"""
import argparse
import copy
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbconvert import HTMLExporter

from publish import publish
from report_index import build_index, run_record, thumbnails

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "rust"


def plotly_scripts(out: Path) -> str:
    """The <script> tags with plotly.js, produced by revlib itself (feature `plot`)."""
    cache = out / "plotly-js.html"
    if not cache.exists():
        js = subprocess.run(
            ["cargo", "run", "-q", "--release", "-p", "revlib-lab", "--features", "plot", "--bin", "revlib", "--", "plotly-js"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
        cache.write_text(js)
    return cache.read_text()


MATHJAX_CONFIG = """<script>window.MathJax = {tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]]}, svg: {fontCache: "global"}};</script>"""


def fold_solutions(nb):
    """A copy of `nb` for its HTML page in which every code cell tagged `solution` becomes a closed
    <details> element holding its code and printed output (the notebook itself keeps the cell,
    collapsed by `jupyter.source_hidden`, and runs it like any other)."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stdout")
            # One line of HTML (newlines as &#10;), so the markdown renderer keeps it one HTML block.
            pre = lambda cls, text: f'<pre class="{cls}">' + html.escape(text).replace("\n", "&#10;") + "</pre>"
            body = pre("solution-code", cell.source) + (pre("solution-output", printed) if printed else "")
            cells.append(nbformat.v4.new_markdown_cell(f'<details class="solution"><summary>Solution: show the code and what it printed</summary>{body}</details>'))
        else:
            cells.append(cell)
    nb.cells = cells
    return nb


def to_html(nb, scripts: str) -> str:
    # No CDN: nbconvert's MathJax URL is blanked, and the MathJax 3 (tex-svg) that revlib embeds
    # next to plotly.js typesets the markdown's $…$ offline.
    exporter = HTMLExporter(template_name="lab", mathjax_url="")
    body, _ = exporter.from_notebook_node(fold_solutions(nb))
    # Drop the template's CDN require.js (only ipywidgets use it) and the blank MathJax tag.
    body = re.sub(r'<script src="https://cdnjs[^"]*require[^"]*"></script>', "", body)
    body = body.replace('<script src=""></script>', "")
    # One copy of plotly.js in <head>, before any figure's Plotly.newPlot call.
    return body.replace("</head>", MATHJAX_CONFIG + "\n" + scripts + "\n</head>", 1)


# Failures of the tool chain rather than of the notebook: evcxr (the rustc wrapper) dying while
# it waits on cargo's package-cache lock, or the kernel process ending. They carry no Rust
# diagnostic, and a fresh kernel gets past them; anything else is the notebook's own error.
TRANSIENT = re.compile(r"Failed to wrap rustc|Subprocess terminated with status|Child process terminated|Kernel died")
RUST_DIAGNOSTIC = re.compile(r"error\[E\d{4}\]|panicked at")


def is_transient(message: str) -> bool:
    """Whether a cell failure looks like a tool-chain hiccup worth one retry in a fresh kernel."""
    return bool(TRANSIENT.search(message)) and not RUST_DIAGNOSTIC.search(message)


def evcxr_build_env() -> dict:
    """Where the kernels of a run build their cells: one lasting folder (EVCXR_TMPDIR) and one
    compile cache of its own (evcxr's `:cache` lives in $XDG_CACHE_HOME/evcxr), both under
    target/evcxr/.

    By default each kernel builds in a fresh temporary folder and shares ~/.cache/evcxr with every
    other kernel. A cached crate whose dependency record names a file its build script generated
    (serde_core's OUT_DIR/private.rs) then points into a folder that is gone, so cargo finds it
    stale in every later kernel and rebuilds it and everything above it (serde, askama, plotly,
    revlib) on every cell: 2-8 s a cell. With one lasting folder, cargo's own records stay true,
    dependencies build once for all notebooks and all runs, and a cell costs only its own crate.
    Measured on notebook 02 in quick mode (2-core AMD EPYC): 57-72 s warm before, 40 s after.
    The runner executes one notebook at a time, so the folder is never shared by two kernels."""
    build = ROOT / "target" / "evcxr"
    env = {"EVCXR_TMPDIR": build / "run", "XDG_CACHE_HOME": build / "cache"}
    for folder in env.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {k: str(v) for k, v in env.items()}


def execute(path: Path, timeout: int):
    """Execute a notebook; a transient tool failure is retried once in a fresh kernel.
    Returns (executed notebook, error or None, note about a retry or None)."""
    note = None
    for attempt in (1, 2):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
            return nb, None, note
        except (CellExecutionError, DeadKernelError) as e:
            message = str(e)
            if attempt == 1 and (isinstance(e, DeadKernelError) or is_transient(message)):
                first = next((line for line in message.splitlines() if TRANSIENT.search(line)), message.strip().splitlines()[-1] if message.strip() else type(e).__name__)
                note = f"retried once in a fresh kernel after: {first.strip()[:300]}"
                print(f"!! {path.name}: {note}", file=sys.stderr, flush=True)
                continue
            return nb, e, note
    raise AssertionError("unreachable")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default=os.environ.get("REVLIB_MODE", "default"), choices=["quick", "default", "full"])
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--only", default=None, help="run only notebooks whose name starts with this")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    ap.add_argument("--publish", default=None, help="also write a copy of each executed notebook for reading without a kernel to this folder")
    args = ap.parse_args()
    if args.publish and args.mode != "default":
        ap.error("--publish writes the repository's default-mode copies; run it with --mode default")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    env_mode = {"REVLIB_MODE": args.mode, "REVLIB_RESULTS": str(out)}
    os.environ.update(env_mode)
    os.environ.update(evcxr_build_env())
    # The kernel spec that notebooks/setup.sh registered in .venv comes first, ahead of any
    # user-wide `rust` kernel.
    venv_share = str(ROOT / ".venv" / "share" / "jupyter")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([venv_share] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p])
    scripts = plotly_scripts(out)
    books = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        books = [b for b in books if b.name.startswith(args.only)]
    for path in books:
        start = time.time()
        print(f"== {path.name} ({args.mode})", flush=True)
        nb, error, retry = execute(path, args.timeout)
        if error is not None:
            nbformat.write(nb, out / path.name)
            print(f"!! {path.name} failed{' (after a retry)' if retry else ''}:\n{error}", file=sys.stderr)
            return 1
        # evcxr reports a panic (a failed `assert!`) on stderr and carries on with the next cell,
        # so a notebook's own checks would pass silently: treat any panic as a failure.
        panics = [(i, o.get("text", "")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
                  for o in c.get("outputs", []) if o.get("output_type") == "stream" and "panicked at" in o.get("text", "")]
        if panics:
            nbformat.write(nb, out / path.name)
            i, _ = panics[0]
            message = "".join(o.get("text", "") for o in nb.cells[i].get("outputs", []) if o.get("name") == "stderr")
            message = message[message.find("panicked at"):].split("stack backtrace")[0].strip()
            print(f"!! {path.name} failed: cell {i} panicked:\n{nb.cells[i].source}\n{message}", file=sys.stderr)
            return 1
        secs = time.time() - start
        print(f"   {secs:.0f} s", flush=True)
        nbformat.write(nb, out / path.name)
        (out / path.with_suffix(".html").name).write_text(to_html(nb, scripts))
        record = {**run_record(path, nb, args.mode, secs), "retry": retry}
        (out / f"{path.stem}.run.json").write_text(json.dumps(record, indent=1))
        if args.publish:
            folder = Path(args.publish).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            keep = {k: record[k] for k in ("commit", "dirty", "mode", "finished", "seconds")}
            nbformat.write(publish(nb, scripts, out / "figures" / "static", keep), folder / path.name)
            print(f"   published {folder / path.name}", flush=True)
    thumbnails(out)
    print(f"report: {build_index(out, args.mode)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
