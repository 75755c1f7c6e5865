"""Fetch the external data sets into data/external/ (`make data`), checking every file's SHA-256.

    python3 data/fetch.py [--dest DIR] [--mirror URL]

- WikiText-2 (Merity et al. 2016, arXiv:1609.07843): the v1 archive from its authors' site; its
  `wiki.{train,valid,test}.tokens` become `wikitext-2/{train,valid,test}.txt`.
- Schmidt & Lipson (2009), doi:10.1126/science.1165893: the two measured files the experiments
  use, from the copy of the paper's supplementary data in erwincoumans/tiny-differentiable-simulator
  at a fixed commit.

The checksums are those of the files the project's results were computed from. A file whose
checksum differs is not written (and the command fails); files already present and correct are
not fetched again. `--mirror URL` fetches every file from URL/<file name> instead (a local copy,
or a `file://` folder in tests). Python's standard library only.
"""
import argparse
import hashlib
import io
import sys
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SL_RAW = ("https://raw.githubusercontent.com/erwincoumans/tiny-differentiable-simulator/"
          "8381b8c9ad7f0a959548e4982eb8a63431a842d2/data/schmidt-lipson-exp-data/")

# dataset folder, URL, and for each file written: (name, member of the archive or None, sha256)
SOURCES = [
    ("wikitext-2", "https://wikitext.smerity.com/wikitext-2-v1.zip", [
        ("train.txt", "wikitext-2/wiki.train.tokens", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
        ("valid.txt", "wikitext-2/wiki.valid.tokens", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
        ("test.txt", "wikitext-2/wiki.test.tokens", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    ]),
    ("schmidt-lipson", SL_RAW + "real_double_linear_h_1.txt", [
        ("real_double_linear_h_1.txt", None, "b258df76a9a6f3dda294feb344160e39ecd3158d8e44b8bfe4ae4aa842c026aa"),
    ]),
    ("schmidt-lipson", SL_RAW + "real_double_pend_h_1.txt", [
        ("real_double_pend_h_1.txt", None, "9ea97ad3b1c6b83b2762f1c84760bfd55638809436a8ece0c2dfffb96ddaec37"),
    ]),
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, mirror: str | None) -> bytes:
    if mirror:
        url = mirror.rstrip("/") + "/" + url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def fetch_all(dest: Path, mirror: str | None = None) -> list[str]:
    """Fetch every source; returns the problems (empty when every file is in place and correct)."""
    problems = []
    for folder, url, files in SOURCES:
        out = dest / folder
        if all((out / name).is_file() and sha256((out / name).read_bytes()) == digest for name, _, digest in files):
            print(f"{folder}: {', '.join(n for n, _, _ in files)} already present and verified")
            continue
        try:
            data = fetch(url, mirror)
        except OSError as e:
            problems.append(f"{url}: {e}")
            continue
        contents = {}
        try:
            archive = zipfile.ZipFile(io.BytesIO(data)) if any(member for _, member, _ in files) else None
            for name, member, digest in files:
                body = archive.read(member) if member else data
                got = sha256(body)
                if got != digest:
                    problems.append(f"{url} ({member or name}): SHA-256 {got}, expected {digest}; not written")
                else:
                    contents[name] = body
        except (zipfile.BadZipFile, KeyError) as e:
            problems.append(f"{url}: not the expected archive ({e})")
            continue
        out.mkdir(parents=True, exist_ok=True)
        for name, body in contents.items():
            tmp = out / (name + ".part")
            tmp.write_bytes(body)
            tmp.replace(out / name)  # only a verified file ever appears under its name
            print(f"{folder}/{name}: {len(body)} bytes, SHA-256 verified")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=str(ROOT / "data" / "external"))
    ap.add_argument("--mirror", default=None, help="fetch each file from MIRROR/<file name> instead")
    args = ap.parse_args()
    problems = fetch_all(Path(args.dest), args.mirror)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
