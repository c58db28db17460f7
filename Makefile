# vldbook: `make book` builds the study book on the offline default; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast book book-smoke bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not browser"

book: setup
	HF_HUB_OFFLINE=1 $(PY) -m vldlib.book --profile offline

book-smoke: setup
	HF_HUB_OFFLINE=1 $(PY) -m vldlib.book --profile smoke

bench: setup
	$(PY) benchmarks/metrics.py

clean:
	rm -rf _build book/executed
