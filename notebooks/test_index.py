"""Tests of the report's front page (report_index.py) on a synthetic output folder: a partial
run leaves a complete index, stale, foreign or retried pages are flagged, headline tables and
data checksums appear, and every link points at a file in the folder; and of which failures the
runner retries. Run: .venv/bin/python notebooks/test_index.py
"""
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report_index as ri  # noqa: E402


def fake_page(out: Path, stem: str, mode: str, commit: str, headline: dict | None):
    (out / f"{stem}.html").write_text("<html><body>page</body></html>")
    (out / f"{stem}.run.json").write_text(json.dumps({
        "notebook": stem, "title": f"{stem[:2]} — Title <{stem}>", "slides": "“A” to “B”", "mode": mode,
        "seconds": 12.0, "finished": "2026-12-03 08:00 UTC", "commit": commit, "dirty": False}))
    if headline is not None:
        (out / f"{stem[:2]}_headline.json").write_text(json.dumps({"provenance": {"revlib_version": "0.1.0", "threads": 2}, "results": headline}))
    (out / "figures" / f"{stem[:2]}_curve.html").write_text("<html></html>")


def main() -> int:
    head = ri.checkout_state()["commit"]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        (out / "figures").mkdir()
        data = out / "measured.txt"
        data.write_text("1 2 3\n")
        fake_page(out, "01_first", "quick", head, {"caption": "Errors", "columns": ["strategy", "error"],
                                                  "rows": [["backsolve", "3.1e-8"], ["<script>", "1"]], "data_files": [], "data": "generated in the notebook"})
        fake_page(out, "04_fourth", "quick", "0" * 40, {"caption": "Speed", "columns": ["strategy", "seconds"],
                                                        "rows": [["reversible", "0.1"]], "data_files": [str(data)], "data": "measured file"})
        fake_page(out, "05_fifth", "default", head, None)
        (out / "figures" / "01_curve.png").write_bytes(b"\x89PNG fake")

        page = ri.build_index(out, "quick").read_text()
        # Every executed page is listed, whatever ran last.
        for n in ["01", "04", "05"]:
            assert f'id="nb{n}"' in page, n
        assert "3 notebooks" in page
        # Headline cells are escaped, and the data file is listed with its SHA-256.
        assert "<td>&lt;script&gt;</td>" in page and "<td><script>" not in page
        assert hashlib.sha256(b"1 2 3\n").hexdigest() in page
        assert page.count("real data") == 1 and page.count("generated data") == 1
        # Warnings: an older commit, another mode, a notebook without a headline.
        assert "Executed at commit 0000000000; the checkout is now at" in page
        assert "Executed in default mode" in page
        assert "wrote no headline table" in page
        # The thumbnail that exists is an image; the one without a screenshot is a text card.
        assert 'src="figures/01_curve.png"' in page and "interactive figure" in page
        # Every link and image is a file in the folder (or an anchor on the page).
        for target in re.findall(r'(?:href|src)="([^"]+)"', page):
            if target.startswith("#"):
                assert f'id="{target[1:]}"' in page, target
            else:
                assert not re.match(r"[a-z]+:", target), f"non-local link {target}"
                assert (out / target).exists(), target

        # A later partial run (only 01 re-executed) still lists all three.
        (out / "01_first.run.json").write_text(json.dumps({**json.loads((out / "01_first.run.json").read_text()), "finished": "2026-12-03 09:00 UTC"}))
        page = ri.build_index(out).read_text()
        assert all(f'id="nb{n}"' in page for n in ["01", "04", "05"])
        # The reference mode defaults to the most recent run's.
        assert "quick mode ·" in page and "Executed in default mode" in page

        # A retried run says so.
        (out / "04_fourth.run.json").write_text(json.dumps({**json.loads((out / "04_fourth.run.json").read_text()), "retry": "retried once in a fresh kernel after: Failed to wrap rustc"}))
        assert "The runner retried once in a fresh kernel after: Failed to wrap rustc." in ri.build_index(out).read_text()

        # A page without a run record is listed with a warning.
        (out / "02_second.html").write_text("<html></html>")
        page = ri.build_index(out, "quick").read_text()
        assert 'id="nb02"' in page and "No run record" in page

    assert ri.talk_slides('# 01\n\nTalk slides *"What is a neural ODE"* to *"However…"*. A') == "“What is a neural ODE” to “However…”"
    assert ri.talk_slides('Talk slides *"Experiments"*: the white dwarf') == "“Experiments”"
    assert ri.talk_slides("no slides here") == ""
    # The index judges a checkout modified by the same rule as revlib_lab's provenance.
    rust = (Path(__file__).resolve().parent.parent / "revlib-lab" / "src" / "provenance.rs").read_text()
    m = re.search(r"pub const OUTPUT_PATHSPECS: \[&str; \d+\] = \[([^\]]*)\];", rust)
    assert m and re.findall(r'"([^"]+)"', m.group(1)) == ri.OUTPUT_PATHSPECS, "OUTPUT_PATHSPECS differ between provenance.rs and report_index.py"

    # Only tool-chain failures without a Rust diagnostic are retried (run.py).
    import run
    assert run.is_transient("Failed to wrap rustc: cannot parse integer from empty string")
    assert not run.is_transient("error[E0308]: mismatched types")
    assert not run.is_transient("thread 'main' panicked at src/lib.rs:1: Subprocess terminated with status 101")
    assert not run.is_transient("Error: InvalidArgument { name: \"n\" }")
    # Every work a notebook cites by key has its entry in docs/bibliography.md.
    root = Path(__file__).resolve().parent.parent
    bib = set(re.findall(r"\*\*\[([^\]]+)\]\*\*", (root / "docs" / "bibliography.md").read_text()))
    for book in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cited = set()
        for cell in json.loads(book.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                cited |= set(re.findall(r"\[([A-Z][A-Za-z\u00C0-\u017F-]+ (?:19|20)\d\d[a-z]?)\]", "".join(cell["source"])))
        assert cited, f"{book.name} cites nothing"
        assert cited <= bib, f"{book.name} cites {sorted(cited - bib)}, missing from docs/bibliography.md"

    # A solution cell reaches the HTML page folded: code and output inside a closed <details>.
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("**Exercise.** Add."),
                                         nbformat.v4.new_code_cell("assert!(1 < 2 && \"<b>\".len() == 3);", metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}}),
                                         nbformat.v4.new_code_cell("let x = 1;")])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="sum = 3\n")]
    page = run.to_html(nb, "")
    folded = re.search(r'<details class="solution"><summary>[^<]*</summary>(.*?)</details>', page, re.S)
    assert folded and "assert!(1 &lt; 2 &amp;&amp;" in folded.group(1) and "&lt;b&gt;" in folded.group(1) and "sum = 3" in folded.group(1), "solution not folded"
    assert page.count("sum = 3") == 1 and page.count("jp-CodeCell jp-Notebook-cell") == 1, "the solution's output shown twice, or another cell lost"
    assert len(nb.cells) == 3 and nb.cells[1].cell_type == "code", "folding must not change the notebook itself"

    check_publish(root)
    print("report index, runner and published notebooks: all checks passed")
    return 0


def png(width: int, height: int, row) -> bytes:
    """An 8-bit greyscale PNG whose row y holds the bytes row(y)."""
    import struct
    import zlib
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\x00" + bytes(row(y)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def check_publish(root: Path):
    """publish.py: rounding, merged streams, the PNG check, check() on synthetic copies, and the
    committed copies in notebooks/executed/."""
    import base64
    import nbformat
    import publish as pb
    assert pb.rounded({"x": [0.123456789, 1.23456789e-15, 3, float("inf")], "t": "a"}) == {"x": [0.12346, 1.2346e-15, 3, float("inf")], "t": "a"}
    assert pb.rounded(float("nan")) != pb.rounded(float("nan")), "NaN stays NaN"
    streams = [nbformat.v4.new_output("stream", name="stdout", text="a"), nbformat.v4.new_output("stream", name="stdout", text="b\n"),
               nbformat.v4.new_output("stream", name="stderr", text="c")]
    assert [(o["name"], o["text"]) for o in pb.merge_streams([dict(o) for o in streams])] == [("stdout", "ab\n"), ("stderr", "c")]
    striped = png(200, 120, lambda y: [(x * y) % 256 for x in range(200)])
    assert pb.png_problem(striped) is None
    assert "blank" in pb.png_problem(png(200, 120, lambda y: [255] * 200))
    assert pb.png_problem(b"GIF89a") == "not a PNG"
    assert "pixels" in pb.png_problem(png(20, 20, lambda y: [y] * 20))

    def published(data: dict, meta=True):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("show(&plot);")])
        nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data=data)]
        if meta:
            nb.metadata["revlib"] = {"commit": "c", "mode": "default", "finished": "now", "figures": 1}
        return nb

    figure = {"data": [{"type": "scatter", "x": [0.0, 1.0], "y": [1.0, 2.0]}], "layout": {"title": {"text": "t"}}}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "01_x.ipynb"
        cases = [
            (published({pb.PLOTLY: figure, "image/png": base64.b64encode(striped).decode(), "text/plain": "figure: t"}), []),
            (published({pb.PLOTLY: figure, "text/plain": "figure"}), ["without a static image"]),
            (published({pb.PLOTLY: figure, "image/png": base64.b64encode(png(200, 120, lambda y: [0] * 200)).decode()}), ["blank"]),
            (published({pb.PLOTLY: figure, "image/png": base64.b64encode(striped).decode(), "text/html": "<script>Plotly.newPlot()</script>"}), ["kept as a script"]),
            (published({"text/plain": "()"}), ["no figures", "metadata says 1 figures"]),
            (nbformat.from_dict({**published({pb.PLOTLY: figure, "image/png": base64.b64encode(striped).decode()}), "metadata": {"revlib": {"commit": "c", "mode": "quick", "finished": "now"}}}), ["quick mode"]),
            (published({pb.PLOTLY: figure, "image/png": base64.b64encode(striped).decode()}, meta=False), ["lacks commit", "lacks mode", "lacks finished"]),
        ]
        for nb, expected in cases:
            nbformat.write(nb, path)
            found = pb.check(path)
            assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found)), (expected, found)
    # The committed copies: one per notebook, each checked, each executed from the current code.
    problems = pb.check_folder(root / "notebooks" / "executed", root / "notebooks")
    assert not problems, "published notebooks:\n" + "\n".join(problems)


if __name__ == "__main__":
    sys.exit(main())
