"""Tests of data/fetch.py against a local `file://` mirror (no network here).

The mirror is built from the data the project already reads ($REVLIB_DATA_DIR, else
../shared/data): the WikiText-2 files zipped under their original names, and the two
Schmidt & Lipson files. Checks: a fetch writes exactly the verified files; a second fetch
downloads nothing; a corrupted download is refused and leaves no file behind.
"""
import os
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fetch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    src = Path(os.environ.get("REVLIB_DATA_DIR", ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mirror = tmp / "mirror"
        mirror.mkdir()
        # A corrupted mirror first: every file one byte off. Nothing may be written.
        (mirror / "real_double_linear_h_1.txt").write_bytes(b"% x1 x2 v1 v2\n0 0.033 1 2 3 4\n")
        (mirror / "real_double_pend_h_1.txt").write_bytes(b"not the file")
        with zipfile.ZipFile(mirror / "wikitext-2-v1.zip", "w") as z:
            for split in ("train", "valid", "test"):
                z.writestr(f"wikitext-2/wiki.{split}.tokens", " = a = \n")
        problems = fetch.fetch_all(tmp / "bad", mirror.as_uri())
        assert len(problems) == 5 and all("SHA-256" in p for p in problems), problems
        assert not any(p.is_file() for p in (tmp / "bad").rglob("*")), "a file failing its checksum was written"
        # Not an archive at all: a clear error, nothing written.
        (mirror / "wikitext-2-v1.zip").write_bytes(b"<html>moved</html>")
        problems = fetch.fetch_all(tmp / "bad", mirror.as_uri())
        assert any("not the expected archive" in p for p in problems), problems
        # A missing file on the mirror: reported with its URL.
        (mirror / "real_double_pend_h_1.txt").unlink()
        assert any("real_double_pend_h_1.txt" in p for p in fetch.fetch_all(tmp / "bad", mirror.as_uri()))

        wt, sl = src / "wikitext-2", src / "schmidt-lipson"
        if not (wt / "train.txt").is_file() or not (sl / "real_double_pend_h_1.txt").is_file():
            if os.environ.get("REVLIB_REQUIRE_DATA") == "1":
                raise AssertionError(f"REVLIB_REQUIRE_DATA=1 but the data are not in {src}")
            print(f"fetch: failure paths checked; no data in {src}, so the successful fetch was not")
            return 0
        # The real files, served from the mirror: every one written and verified.
        with zipfile.ZipFile(mirror / "wikitext-2-v1.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for split in ("train", "valid", "test"):
                z.write(wt / f"{split}.txt", f"wikitext-2/wiki.{split}.tokens")
        for name in ("real_double_linear_h_1.txt", "real_double_pend_h_1.txt"):
            (mirror / name).write_bytes((sl / name).read_bytes())
        dest = tmp / "external"
        assert fetch.fetch_all(dest, mirror.as_uri()) == []
        for split in ("train", "valid", "test"):
            assert (dest / "wikitext-2" / f"{split}.txt").read_bytes() == (wt / f"{split}.txt").read_bytes()
        for name in ("real_double_linear_h_1.txt", "real_double_pend_h_1.txt"):
            assert (dest / "schmidt-lipson" / name).read_bytes() == (sl / name).read_bytes()
        assert not list(dest.rglob("*.part"))
        # Present and correct: the mirror is not read again (it is gone).
        for f in mirror.iterdir():
            f.unlink()
        assert fetch.fetch_all(dest, mirror.as_uri()) == []
    print("fetch: verified fetch, no refetch, refused corrupt and non-archive downloads: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
