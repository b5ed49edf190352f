# diy_nn: `make demo` and `make test` each set everything up on a fresh machine
# (python3 and cargo are all they need), then run.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
MATURIN := $(VENV)/bin/maturin
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
DIY_NN_DATA ?= $(abspath data)
export DIY_NN_DATA

.PHONY: all setup build build-test demo test test-rust test-python lint docs bench clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(MATURIN): | $(PY)
	$(PY) -m pip install --quiet "maturin>=1.7,<2"

setup: $(MATURIN)

# Release build of the extension, installed in .venv with the runtime dependencies
# and the experiments extra (matplotlib, scikit-learn).
build: setup
	$(MATURIN) develop --release --quiet --extras experiments

# The same, plus the test extra (pytest, hypothesis, torch, ruff, mypy; the tests run
# the experiments and the sweeps, hence the experiments extra) and the docs extra (mkdocs-material, mkdocstrings).
build-test: setup
	$(MATURIN) develop --release --quiet --extras test,experiments,docs

demo: build
	$(PY) -m diy_nn.experiments run all --out results

test: build-test lint test-rust test-python docs

test-rust:
	cargo test --quiet
	cargo bench --no-run --quiet

test-python:
	$(PY) -m pytest -q tests

lint: build-test
	cargo fmt --all -- --check
	cargo clippy --quiet --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest diy_nn._core

# The documentation site, into site/; --strict turns every warning (a broken link,
# a docstring mkdocstrings cannot parse) into an error. Nothing is downloaded.
docs: build-test
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# The bench extra adds jax (the training benchmark's jax.jit anchor).
bench: build-test
	$(MATURIN) develop --release --quiet --extras test,experiments,docs,bench
	cargo bench --bench kernels
	$(PY) benches/bench_kernels.py
	mkdir -p results
	$(PY) benches/bench_training.py --suite all --json results/bench_training.json

clean:
	rm -rf $(VENV) target results site
