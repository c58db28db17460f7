# vldbook: `make book` builds the study book on the offline default; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# data (and browser) come before setup, so that a machine lacking them stops before the pip install.
.PHONY: setup data browser test test-fast book book-smoke lab bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Fashion-MNIST for the offline profile: found, or installed through apt as root / with sudo, or a
# one-line message saying what to run (tools/ensure_data.sh).
data:
	sh tools/ensure_data.sh

# Headless Chromium for the browser tests: installed through apt as root / with sudo, else a note
# (the browser tests then skip) (tools/ensure_browser.sh).
browser:
	sh tools/ensure_browser.sh

# `make test` runs on two pytest-xdist workers, a test file on one worker (the scale tests' local Ray
# clusters never run beside each other; the smoke book is built once for both: tests/book_fixtures.py),
# the longest files first (tests/conftest.py LONGEST_FIRST, kept in that order by --no-loadscope-reorder),
# and lists its 25 slowest tests.
TEST_WORKERS ?= 2
test: data browser setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not browser"

book: data setup
	HF_HUB_OFFLINE=1 $(PY) -m vldlib.book --profile offline

book-smoke: data setup
	HF_HUB_OFFLINE=1 $(PY) -m vldlib.book --profile smoke

# JupyterLab on the notebooks (jupytext pairing: notebooks/*.py open as notebooks, save back as .py);
# the server's root is the repository, so a notebook's `results_dir = "results"` is the book's run store.
# overrides.json (written once into the venv) makes "Jupytext Notebook" the default viewer of .py files.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json

lab: data setup
	test -f $(LAB_OVERRIDES) || { mkdir -p $(dir $(LAB_OVERRIDES)) && printf '%s\n' \
	  '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
	  > $(LAB_OVERRIDES); }
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

bench: setup
	$(PY) benchmarks/metrics.py

clean:
	rm -rf _build book/executed
