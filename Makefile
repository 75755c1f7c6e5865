# The two commands of the README.
.PHONY: test bench

# Tests: unit, integration and doc tests of revlib (f64 throughout).
test:
	cargo test -p revlib

# Main job (until the notebook pipeline lands): the gradient benchmark, JSON lines on stdout.
bench:
	cargo run --release -p revlib --bin revlib -- bench
