# The README's two commands: `make report` (main job) and `make test` (what CI runs).
.PHONY: report publish test test-rust test-notebooks data index check-reports bench roofline side-by-side schedules experiments lm-study setup bench-venv

# Main job: set up the notebook pipeline once, execute every notebook in default mode, and
# write the executed notebooks, HTML pages, figures and JSON results to reports/.
report: setup
	.venv/bin/python notebooks/run.py --mode default --out reports

# The executed notebooks the repository holds (notebooks/executed/, for reading without a
# kernel: each figure with a static PNG beside its plotly JSON): a default-mode report that
# also writes them. Run it after changing a notebook's code; `make test` checks they match.
publish: setup
	.venv/bin/python notebooks/run.py --mode default --out reports --publish notebooks/executed

# Tests: unit, integration and doc tests of both crates and of revlib-lab's polars tables (feature
# `tables`), then every notebook in quick mode (a cell error or a failed assertion a notebook makes
# about its own results fails the run).
test: test-rust test-notebooks

test-rust:
	cargo test --workspace
	cargo test -p revlib-lab --features tables --lib table::

test-notebooks: setup
	.venv/bin/python notebooks/test_index.py
	python3 data/test_fetch.py
	.venv/bin/python notebooks/run.py --mode quick --out reports/quick
	.venv/bin/python notebooks/test_anywhere.py

# Fetch WikiText-2 and the Schmidt & Lipson measurements into data/external/ (SHA-256 checked);
# the loaders look there first, then in $REVLIB_DATA_DIR.
data:
	python3 data/fetch.py

# Rebuild a report's front page (and figure thumbnails) from the pages already in the folder.
index:
	.venv/bin/python notebooks/report_index.py reports

# Open the report pages in headless Chromium without network and check the figures are drawn.
check-reports:
	bash notebooks/check_offline.sh reports/quick

setup:
	bash notebooks/setup.sh

# The gradient benchmark of the core (JSON lines on stdout).
bench:
	cargo run --release -p revlib-lab --bin revlib -- bench

# GEMM peak and each strategy's GFLOP/s on 1 and 2 threads (appends to benchmarks/roofline.jsonl,
# prints the README's roofline table).
roofline:
	cargo build --release -p revlib-lab
	bash benchmarks/roofline.sh

# revlib vs diffrax on the same problem and threads (JSON lines + ratios; benchmarks/side-by-side.jsonl).
side-by-side: bench-venv
	cargo build --release -p revlib-lab
	.venv-bench/bin/python benchmarks/side_by_side.py

# Schedule or framework: the talk's runtime problem, every strategy, revlib and diffrax, each as a
# multiple of its own framework's full storage (benchmarks/schedules.jsonl; about 30 minutes).
schedules: bench-venv
	cargo build --release -p revlib-lab
	.venv-bench/bin/python benchmarks/schedules.py

# The peer side: JAX / diffrax / equinox at the versions of benchmarks/requirements.txt.
bench-venv:
	[ -x .venv-bench/bin/python ] && cmp -s benchmarks/requirements.txt .venv-bench/requirements.stamp || \
	  (python3 -m venv .venv-bench && .venv-bench/bin/pip install -q -r benchmarks/requirements.txt && cp benchmarks/requirements.txt .venv-bench/requirements.stamp)

# The talk's experiments at full size, as the committed results/full/ files were made (about
# 1.5 h on 2 cores; resumes where it stopped): the white dwarf and runtime grids one run at a time
# (their batches use both cores), the oscillator and pendulum (batch 1, one thread each) two at once.
experiments:
	cargo build --release -p revlib-lab
	./target/release/revlib experiment white-dwarf --mode full --jobs 1
	./target/release/revlib experiment runtime --mode full --jobs 1
	RAYON_NUM_THREADS=1 ./target/release/revlib experiment physical --mode full --jobs 2

# The perplexity study at full size, as results/full/lm-study.jsonl was made: two models at once,
# one thread each (about an hour on 2 cores; resumes from checkpoints).
lm-study:
	cargo build --release -p revlib-lab
	RAYON_NUM_THREADS=1 ./target/release/revlib lm-study --mode full --jobs 2
