"""The report's front page: reports/index.html, built from whatever the output folder holds.

Usage: python notebooks/report_index.py [OUT] [--mode quick|default|full]

run.py calls build_index() after every run, so the index always lists every notebook whose
executed page exists in OUT, whichever subset the last run executed. Per notebook it reads

  NN_<name>.html          the executed page (written by run.py),
  NN_<name>.run.json      when, how long, in which mode and at which commit it ran (run.py),
  NN*_headline.json       the headline tables the notebook wrote (revlib_lab::notebook::Headline),
  figures/NN_*.html       its standalone figure pages, with figures/NN_*.png screenshots when
                          headless Chromium was available (thumbnails()).

The page embeds its stylesheet, loads nothing from the network and links only to files in OUT.
"""
import argparse
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_PATHSPECS = [":(top,exclude)results", ":(top,exclude,glob)benchmarks/*.jsonl", ":(top,exclude)reports", ":(top,exclude)notebooks/executed"]

STYLE = """
:root { --ink: #1d2430; --muted: #5b6472; --line: #d9dee5; --accent: #1f5fa8; --warn-bg: #fff4d6; --warn: #7a5200; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: #f6f7f9; }
main { max-width: 62rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
header h1 { font-size: 1.9rem; line-height: 1.2; margin: 0.5rem 0 0.25rem; }
header p { color: var(--muted); margin: 0.25rem 0; }
h2 { font-size: 1.35rem; margin: 0 0 0.2rem; }
h3 { font-size: 1rem; margin: 1rem 0 0.3rem; }
a { color: var(--accent); }
section.nb { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; margin: 1.2rem 0; }
.meta { color: var(--muted); font-size: 0.9rem; margin: 0.2rem 0 0.6rem; }
.badge { display: inline-block; border-radius: 4px; padding: 0 0.4rem; font-size: 0.8rem; border: 1px solid var(--line); }
.real { background: #e5f4e8; border-color: #9ccca6; }
.generated { background: #eef0f4; }
.warn { background: var(--warn-bg); color: var(--warn); border-left: 4px solid #e0a800; padding: 0.35rem 0.6rem; margin: 0.4rem 0; font-size: 0.9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88rem; margin: 0.3rem 0 0.6rem; }
caption { text-align: left; color: var(--muted); padding-bottom: 0.3rem; caption-side: top; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem 0.25rem 0; text-align: left; vertical-align: top; }
th { font-weight: 600; }
td { font-variant-numeric: tabular-nums; }
code, .hash { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.85em; }
.hash { word-break: break-all; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: 0.6rem; margin-top: 0.4rem; }
.thumbs a { display: block; text-decoration: none; color: var(--ink); border: 1px solid var(--line); border-radius: 6px; overflow: hidden; background: #fff; }
.thumbs img { display: block; width: 100%; height: auto; }
.thumbs span { display: block; font-size: 0.78rem; padding: 0.25rem 0.4rem; color: var(--muted); }
.thumbs .noimg { padding: 1.6rem 0.4rem; text-align: center; background: #f0f2f5; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; font-size: 0.9rem; margin: 0.4rem 0; }
dl.prov dt { color: var(--muted); }
dl.prov dd { margin: 0; }
pre { background: #f0f2f5; padding: 0.5rem 0.7rem; border-radius: 6px; overflow-x: auto; font-size: 0.85rem; }
@media (max-width: 40rem) {
  main { padding: 1rem 0.6rem 2rem; }
  header h1 { font-size: 1.45rem; }
  section.nb { padding: 0.8rem; }
  dl.prov { grid-template-columns: 1fr; }
  dl.prov dt { margin-top: 0.4rem; }
  .thumbs { grid-template-columns: repeat(2, 1fr); }
}
"""

# After load, the page records how many images it holds and how many were decoded, so the
# headless-browser check (check_offline.sh) can tell that every thumbnail was drawn.
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-drawn", imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
</script>"""


def esc(x) -> str:
    return html.escape(str(x))


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def checkout_state() -> dict:
    """The commit the checkout is at and whether tracked files are modified."""
    commit = git("rev-parse", "HEAD") or "unknown"
    # As revlib_lab::provenance::git_commit (test_index.py checks the two lists agree): rewritten
    # outputs do not make a checkout dirty.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ":/", *OUTPUT_PATHSPECS))
    return {"commit": commit, "dirty": dirty}


def talk_slides(first_markdown: str) -> str:
    """The slide range a notebook's introduction names: 'Talk slides *"A"* to *"B"*'."""
    m = re.search(r'Talk slides?\s+\*"([^"]+)"\*(?:\s+to\s+\*"([^"]+)"\*)?', first_markdown)
    if not m:
        return ""
    return f"“{m.group(1)}” to “{m.group(2)}”" if m.group(2) else f"“{m.group(1)}”"


def run_record(nb_path: Path, nb, mode: str, seconds: float) -> dict:
    """What run.py stores next to an executed page as NN_<name>.run.json."""
    first_md = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title = first_md.splitlines()[0].lstrip("# ").strip() if first_md else nb_path.stem
    return {
        "notebook": nb_path.stem, "title": title, "slides": talk_slides(first_md), "mode": mode,
        "seconds": round(seconds, 1), "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **checkout_state(),
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def screenshot(browser: str, page: Path, png: Path, width: int, height: int):
    """Draw `page` with headless Chromium, without network where `unshare` allows, into `png`.
    Returns None on success, else what Chromium said."""
    offline = ["unshare", "-n", "--"] if shutil.which("unshare") and os.geteuid() == 0 else []
    cmd = offline + [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     "--virtual-time-budget=15000", f"--window-size={width},{height}",
                     f"--screenshot={png}", page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode == 0 and png.exists() and png.stat().st_size > 0:
        return None
    return r.stderr.strip()[-400:] or f"exit status {r.returncode}"


def thumbnails(out: Path, width: int = 720, height: int = 440) -> int:
    """A PNG screenshot next to every figures/*.html that has none or an older one, taken by
    headless Chromium without network (the static image of each interactive figure). Returns
    how many were written; 0 without Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("thumbnails: chromium not found, the index shows figure links without images")
        return 0
    todo = [f for f in sorted((out / "figures").glob("*.html"))
            if not f.with_suffix(".png").exists() or f.with_suffix(".png").stat().st_mtime < f.stat().st_mtime]

    def shoot(page: Path) -> bool:
        return screenshot(browser, page, page.with_suffix(".png"), width, height) is None

    start = time.time()
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = sum(pool.map(shoot, todo))
    print(f"thumbnails: {made} of {len(todo)} figure screenshots written in {time.time() - start:.0f} s")
    return made


def tool_versions() -> dict:
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return "not found"
    evcxr = "not found"
    try:
        installed = subprocess.run(["cargo", "install", "--list"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^evcxr_jupyter v([0-9.]+)", installed, re.M)
        evcxr = f"evcxr_jupyter {m.group(1)}" if m else evcxr
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"rustc": first_line(["rustc", "--version"]), "evcxr": evcxr}


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def peer_versions() -> list:
    """(benchmark, versions, date) of the peers in the committed side-by-side benchmarks."""
    found = []
    for name in ["side-by-side.jsonl", "schedules.jsonl"]:
        path = ROOT / "benchmarks" / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            v = rec.get("versions")
            if isinstance(v, dict) and rec.get("framework", "diffrax") == "diffrax":
                found.append((f"benchmarks/{name}", ", ".join(f"{k} {x}" for k, x in v.items()), rec.get("date", "")))
                break
    return found


def headline_tables(out: Path, number: str) -> list:
    tables = []
    # The notebook's own table (NN_headline.json) first, then any others it wrote (NN_<what>_headline.json).
    for path in sorted(out.glob(f"{number}*_headline.json"), key=lambda p: (p.name != f"{number}_headline.json", p.name)):
        doc = read_json(path)
        if doc and isinstance(doc.get("results"), dict):
            tables.append((path.name, doc["results"], doc.get("provenance", {})))
    return tables


def render_table(h: dict) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in h.get("columns", []))
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
        for row in h.get("rows", []))
    return f'<div class="scroll"><table><caption>{esc(h.get("caption", ""))}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def notebook_section(out: Path, page: Path, tables: list, state: dict, mode: str, hashes: dict) -> str:
    stem = page.stem
    number = stem[:2]
    rec = read_json(out / f"{stem}.run.json")
    warnings = []
    if rec is None:
        rec = {"title": stem, "slides": "", "mode": "unknown", "seconds": None, "finished": "unknown", "commit": "unknown", "dirty": False}
        warnings.append("No run record (NN_*.run.json) next to this page: when, how and at which commit it ran is unknown.")
    else:
        if rec.get("commit") != state["commit"]:
            warnings.append(f"Executed at commit {esc(rec.get('commit', '')[:10])}; the checkout is now at {esc(state['commit'][:10])}: re-run it to refresh.")
        if rec.get("dirty"):
            warnings.append("Executed on a checkout with uncommitted changes.")
        if rec.get("retry"):
            warnings.append(f"The runner {esc(rec['retry'])}.")
        if rec.get("mode") != mode:
            warnings.append(f"Executed in {esc(rec.get('mode'))} mode; the other pages of this report are {esc(mode)} mode.")
    files = []
    for _, h, _ in tables:
        for f in h.get("data_files", []):
            if f not in files:
                files.append(f)
    descriptions = []
    for _, h, _ in tables:
        if h.get("data") and h["data"] not in descriptions:
            descriptions.append(h["data"])
    real = bool(files)
    badge = '<span class="badge real">real data</span>' if real else '<span class="badge generated">generated data</span>'
    if not tables:
        warnings.append("This notebook wrote no headline table (NN_headline.json).")
        badge = '<span class="badge">data: unknown</span>'
    secs = f"{rec['seconds']:.0f} s" if isinstance(rec.get("seconds"), (int, float)) else "unknown time"
    meta = (f"{esc(rec.get('mode'))} mode · executed in {secs} · {esc(rec.get('finished'))} · commit "
            f"<code>{esc(str(rec.get('commit', ''))[:10])}</code>{' (modified)' if rec.get('dirty') else ''}")
    parts = [f'<section class="nb" id="nb{esc(number)}">',
             f'<h2><a href="{esc(page.name)}">{esc(rec.get("title", stem))}</a></h2>',
             f'<p class="meta">{("Talk slides " + esc(rec["slides"]) + " · ") if rec.get("slides") else ""}{meta} · {badge}</p>']
    parts += [f'<div class="warn">{w}</div>' for w in warnings]
    for _, h, _ in tables:
        parts.append(render_table(h))
    parts.append("<h3>Data</h3><ul>")
    for d in descriptions:
        parts.append(f"<li>{esc(d)}</li>")
    for f in files:
        p = Path(f)
        if p.exists():
            if f not in hashes:
                hashes[f] = (sha256(p), p.stat().st_size)
            digest, size = hashes[f]
            parts.append(f'<li><code>{esc(p.name)}</code> ({size / 1e6:.2f} MB) — SHA-256 <span class="hash">{digest}</span></li>')
        else:
            parts.append(f'<li><code>{esc(p.name)}</code> — <strong>not found on this machine now</strong> ({esc(f)})</li>')
    parts.append("</ul>")
    figs = sorted((out / "figures").glob(f"{number}_*.html"))
    if figs:
        parts.append('<h3>Figures</h3><div class="thumbs">')
        for fig in figs:
            label = esc(fig.stem[3:].replace("_", " "))
            png = fig.with_suffix(".png")
            inner = (f'<img src="figures/{esc(png.name)}" alt="{label}" width="720" height="440">' if png.exists()
                     else f'<span class="noimg">interactive figure</span>')
            parts.append(f'<a href="figures/{esc(fig.name)}">{inner}<span>{label}</span></a>')
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


def build_index(out: Path, mode: str | None = None) -> Path:
    """Write OUT/index.html listing every executed notebook page in OUT; pages from another
    mode than `mode` (default: the most recent run's) or an older commit carry a warning."""
    out = Path(out).resolve()
    pages = sorted(out.glob("[0-9][0-9]_*.html"))
    records = [r for r in (read_json(out / f"{p.stem}.run.json") for p in pages) if r]
    if mode is None:
        mode = max(records, key=lambda r: r.get("finished", ""))["mode"] if records else "default"
    state = checkout_state()
    hashes: dict = {}
    tables = {p.stem: headline_tables(out, p.stem[:2]) for p in pages}
    sections = [notebook_section(out, p, tables[p.stem], state, mode, hashes) for p in pages]
    provs = [prov for p in pages for _, _, prov in tables[p.stem] if prov]
    prov = provs[0] if provs else {}
    tools = tool_versions()
    peers = peer_versions()
    make = {"quick": "make test-notebooks", "default": "make report"}.get(mode)
    try:
        out_arg = str(out.relative_to(ROOT))
    except ValueError:
        out_arg = str(out)
    reproduce = make if make and out_arg == {"quick": "reports/quick", "default": "reports"}[mode] else f".venv/bin/python notebooks/run.py --mode {mode} --out {out_arg}"
    toc = " · ".join(f'<a href="#nb{esc(p.stem[:2])}">{esc(p.stem[:2])}</a>' for p in pages)
    total = sum(r.get("seconds") or 0 for r in records)
    peer_items = "<dd>" + ("<br>".join(f"{esc(v)} ({esc(src)}, measured {esc(d)})" for src, v, d in peers) or "none recorded") + "</dd>"
    provenance = f"""<section class="nb" id="provenance"><h2>Provenance</h2><dl class="prov">
<dt>revlib</dt><dd>{esc(prov.get('revlib_version', 'unknown'))}</dd>
<dt>checkout</dt><dd><code>{esc(state['commit'])}</code>{' (with uncommitted changes)' if state['dirty'] else ''}</dd>
<dt>CPU</dt><dd>{esc(prov.get('cpu') or cpu_model())}</dd>
<dt>threads</dt><dd>{esc(prov.get('threads', os.cpu_count()))} (rayon) on {os.cpu_count()} logical CPUs</dd>
<dt>Rust</dt><dd>{esc(tools['rustc'])}</dd>
<dt>kernel</dt><dd>{esc(tools['evcxr'])}</dd>
<dt>peers</dt>{peer_items}
<dt>index built</dt><dd>{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</dd>
</dl><h3>Reproduce</h3><p>From a fresh clone (the README lists what it installs and how long it takes):</p>
<pre>{esc(reproduce)}</pre><p>One notebook: <code>.venv/bin/python notebooks/run.py --mode {esc(mode)} --out {esc(out_arg)} --only 05</code>
(this page is rebuilt from every page in the folder, so it stays complete).</p></section>"""
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>revlib report: exact, memory-efficient gradients through ODE solvers</title>
<style>{STYLE}</style></head>
<body><main>
<header><h1>Reversible solvers and exact gradients: the talk, reproduced in code</h1>
<p>Executed notebooks of <strong>revlib</strong>: neural ODEs and the adjoint method, algebraically reversible
solvers and their stability, the McCallum–Foster construction, training against recursive checkpointing,
and reversible deep equilibrium models. Every number below was computed by the notebook it belongs to and
checked by it.</p>
<p class="meta">{len(pages)} notebooks · {esc(mode)} mode · {total / 60:.0f} min of execution · jump to {toc or '—'} · <a href="#provenance">provenance</a></p>
</header>
{chr(10).join(sections) if sections else '<p class="warn">No executed notebook pages in this folder yet.</p>'}
{provenance}
</main>{IMAGE_PROBE}</body></html>
"""
    path = out / "index.html"
    path.write_text(doc)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "reports"))
    ap.add_argument("--mode", default=None, help="the report's mode (default: the most recent run's)")
    ap.add_argument("--no-thumbnails", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not out.is_dir():
        print(f"{out}: no such folder", file=sys.stderr)
        return 2
    if not args.no_thumbnails:
        thumbnails(out)
    print(f"index: {build_index(out, args.mode)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
