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
    print("report index and runner: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
