"""Executed notebooks for reading without a kernel: what `run.py --publish DIR` writes.

A notebook executed by run.py holds each figure as one output with two representations: the
plotly JSON (drawn by JupyterLab and VS Code) and an HTML div + `Plotly.newPlot` script (drawn
in the report's pages, which embed plotly.js). A viewer that runs no JavaScript — GitHub's
notebook preview, a plain nbviewer — shows neither. The published copy of each figure's output
keeps the plotly JSON, with numbers rounded to SIGNIFICANT digits, and puts a PNG next to it in
the same output (rendered from that JSON by headless Chromium without network), in place of the
HTML; a viewer draws the interactive figure where it can and the image where it cannot.
Consecutive stream outputs are merged, the copy records the commit, mode and date it was executed
at, and a copy over MAX_BYTES is refused.

check(nb_path) checks a published copy: every figure has a PNG that decodes to a non-blank
image, and the file is within MAX_BYTES. test_index.py runs it on the committed copies.
"""
import base64
import copy
import hashlib
import json
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import nbformat
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from report_index import IMAGE_PROBE, screenshot

PLOTLY = "application/vnd.plotly.v1+json"
SIGNIFICANT = 5
MAX_BYTES = 2 * 1024 * 1024
WIDTH, HEIGHT = 860, 460


def rounded(value):
    """`value` with every float rounded to SIGNIFICANT significant digits (recursively)."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}") if value == value and abs(value) != float("inf") else value
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def render_png(figure: dict, scripts: str, cache: Path) -> bytes:
    """A PNG of a plotly figure, drawn by headless Chromium from its JSON (static plot, no
    network); cached in `cache` under the hash of the figure."""
    layout = dict(figure.get("layout") or {})
    height = int(layout.get("height") or HEIGHT)
    spec = json.dumps({"data": figure.get("data", []), "layout": layout}, sort_keys=True)
    key = hashlib.sha256(f"{WIDTH}x{height}:{spec}".encode()).hexdigest()[:24]
    cache.mkdir(parents=True, exist_ok=True)
    png = cache / f"{key}.png"
    if png.exists() and png.stat().st_size > 0:
        return png.read_bytes()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise RuntimeError("publishing needs headless Chromium for the figures' static images (apt-get install chromium)")
    page = ("<!doctype html><html><head><meta charset='utf-8'>" + scripts + "<style>body{margin:0;background:#fff}</style></head><body>"
            f"<div id='fig' style='width:{WIDTH}px;height:{height}px'></div><script>"
            f"var f = {spec}; f.layout.width = {WIDTH}; f.layout.height = {height};"
            "Plotly.newPlot('fig', f.data, f.layout, {staticPlot: true});</script></body></html>")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "figure.html"
        src.write_text(page)
        out = Path(tmp) / "figure.png"
        failure = screenshot(browser, src, out, WIDTH, height)
        if failure is not None:
            raise RuntimeError(f"Chromium drew no image of the figure {layout.get('title')}: {failure}")
        data = out.read_bytes()
    problem = png_problem(data)
    if problem:
        raise RuntimeError(f"the image of the figure {layout.get('title')} is unusable: {problem}")
    png.write_bytes(data)
    return data


def merge_streams(outputs: list) -> list:
    """Consecutive stream outputs of one name merged, carriage-return overwrites applied
    (nbconvert's CoalesceStreamsPreprocessor)."""
    cell = nbformat.v4.new_code_cell(outputs=[nbformat.from_dict(o) for o in outputs])
    CoalesceStreamsPreprocessor().preprocess_cell(cell, {}, 0)
    return cell.outputs


def publish(nb, scripts: str, cache: Path, record: dict):
    """The published copy of an executed notebook `nb` (see the module's docstring). `record`
    (commit, mode, date, seconds) goes into the copy's metadata under `revlib`."""
    nb = copy.deepcopy(nb)
    figures = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = merge_streams(cell.get("outputs", []))
        for o in cell.outputs:
            data = o.get("data") or {}
            if PLOTLY not in data:
                continue
            figure = rounded(data[PLOTLY] if isinstance(data[PLOTLY], dict) else json.loads(data[PLOTLY]))
            title = ((figure.get("layout") or {}).get("title") or {})
            title = title.get("text", "") if isinstance(title, dict) else str(title)
            png = render_png(figure, scripts, cache)
            o["data"] = {PLOTLY: figure, "image/png": base64.b64encode(png).decode("ascii"), "text/plain": f"figure: {title}"}
            figures += 1
    nb.metadata["revlib"] = {**record, "figures": figures, "static_images": "image/png beside each figure's plotly JSON (publish.py)"}
    size = len(nbformat.writes(nb).encode())
    if size > MAX_BYTES:
        raise RuntimeError(f"the published notebook would be {size / 2**20:.2f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB limit; thin its figures")
    return nb


def png_problem(data: bytes):
    """Why `data` is not a usable PNG (None when it decodes to an image that is not blank)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "not a PNG"
    pos, idat, width, height, depth, colour = 8, b"", 0, 0, 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if width < 100 or height < 100:
        return f"{width}×{height} pixels"
    try:
        raw = zlib.decompress(idat)
    except zlib.error as e:
        return f"pixel data does not decompress: {e}"
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 0)
    if depth != 8 or channels == 0:
        return None  # a valid PNG in a format not checked further
    stride = width * channels + 1
    if len(raw) != stride * height:
        return f"pixel data holds {len(raw)} bytes, not {stride * height}"
    # Filter bytes aside, a blank image compresses to almost nothing and has few distinct rows.
    rows = {raw[i * stride:(i + 1) * stride] for i in range(0, height, 4)}
    if len(rows) < 5:
        return "blank (fewer than 5 distinct pixel rows)"
    return None


def check(path: Path):
    """Problems with a published notebook (an empty list when there are none)."""
    problems = []
    size = path.stat().st_size
    if size > MAX_BYTES:
        problems.append(f"{path.name}: {size / 2**20:.2f} MiB, over {MAX_BYTES / 2**20:.0f} MiB")
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("revlib") or {}
    for key in ("commit", "mode", "finished"):
        if key not in meta:
            problems.append(f"{path.name}: metadata.revlib lacks {key}")
    if meta.get("mode", "default") != "default":
        problems.append(f"{path.name}: executed in {meta['mode']} mode, not default")
    figures = 0
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = o.get("data") or {}
            if PLOTLY in data:
                figures += 1
                if "image/png" not in data:
                    problems.append(f"{path.name} cell {i}: a figure without a static image")
                    continue
                problem = png_problem(base64.b64decode(data["image/png"]))
                if problem:
                    problems.append(f"{path.name} cell {i}: static image {problem}")
            if "text/html" in data and "Plotly.newPlot" in "".join(data["text/html"]):
                problems.append(f"{path.name} cell {i}: a figure kept as a script (no viewer without JavaScript draws it)")
    if figures == 0:
        problems.append(f"{path.name}: no figures")
    if meta.get("figures") not in (None, figures):
        problems.append(f"{path.name}: metadata says {meta.get('figures')} figures, the outputs hold {figures}")
    return problems


def code_of(nb) -> list:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def check_folder(folder: Path, notebooks: Path) -> list:
    """Problems with the published copies in `folder` of the notebooks in `notebooks`: one per
    notebook, each passing check(), each executed from the notebook's current code."""
    problems = []
    for book in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        copy_path = folder / book.name
        if not copy_path.exists():
            problems.append(f"{book.name}: no published copy in {folder} (make publish)")
            continue
        problems += check(copy_path)
        ours, theirs = code_of(nbformat.read(book, as_version=4)), code_of(nbformat.read(copy_path, as_version=4))
        changed = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
        if len(ours) != len(theirs) or changed:
            where = f"code cells {changed[:5]} differ" if changed else f"{len(theirs)} code cells, the notebook has {len(ours)}"
            problems.append(f"{book.name}: the published copy was executed from other code ({where}); run make publish")
    return problems


def static_pages(folder: Path, out: Path) -> int:
    """HTML pages of the published copies with no plotly.js (so each figure is its PNG), each
    recording after load how many images it holds and how many were decoded (for
    check_offline.sh). Returns how many figures the pages hold."""
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    figures = 0
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        count = sum(PLOTLY in (o.get("data") or {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        figures += count
        body, _ = HTMLExporter(template_name="lab", mathjax_url="").from_notebook_node(nb)
        body = body.replace("</body>", f'<meta name="figures" content="{count}">{IMAGE_PROBE}</body>', 1)
        (out / path.with_suffix(".html").name).write_text(body)
    return figures


if __name__ == "__main__":
    import argparse
    import sys

    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description="Check the published notebooks, or write their static HTML pages.")
    ap.add_argument("what", choices=["check", "pages"])
    ap.add_argument("folder", nargs="?", default=str(root / "notebooks" / "executed"))
    ap.add_argument("--out", default=None, help="where `pages` writes (default: a temporary folder it prints)")
    args = ap.parse_args()
    folder = Path(args.folder)
    if args.what == "check":
        found = check_folder(folder, root / "notebooks")
        for p in found:
            print(f"  {p}", file=sys.stderr)
        print(f"published notebooks in {folder}: {'all checks passed' if not found else f'{len(found)} problems'}")
        sys.exit(1 if found else 0)
    out = Path(args.out or tempfile.mkdtemp(prefix="revlib-static-"))
    print(f"{static_pages(folder, out)} figures in {out}")
