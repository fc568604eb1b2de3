# Every target creates the virtual environment it needs; nothing else is assumed on the machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow lint docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.docs-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,docs]'
	touch $@

$(VENV)/.bench-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

demo: $(VENV)/.test-deps
	$(BIN)/python examples/demo.py

lint: $(VENV)/.test-deps
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy --strict src

# The API reference, from the docstrings: any Sphinx warning fails the build.
docs: $(VENV)/.docs-deps
	$(BIN)/sphinx-build -q -W --keep-going -b html docs/api docs/api/_build/html

test: lint docs
	$(BIN)/python -m pytest -q -m "not slow"
	COSERVE_POLLER=selectors $(BIN)/python -m pytest -q -m "not slow" tests/test_kernel.py tests/test_io.py tests/test_stale_fds.py tests/test_deadlines.py
	.ci/other-pythons

test-slow: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q -m slow

# Long: the echo benchmark (about 20 minutes), then the kernel's (about 20), then the HTTP client's
# (a few minutes). See benchmarks/README.md.
bench: $(VENV)/.bench-deps
	$(BIN)/python benchmarks/echo/run.py --rounds 2 --out benchmarks/results/echo.json
	$(BIN)/python benchmarks/kernel.py --rounds 5 --out benchmarks/results/kernel-cpu.json
	$(BIN)/python benchmarks/kernel.py --mode instructions --out benchmarks/results/kernel-instructions.json
	$(BIN)/python benchmarks/http/run.py --out benchmarks/results/http.json
	$(BIN)/python benchmarks/ftp_smtp/ftp.py --out benchmarks/results/ftp.json
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) .venv-3.* build src/*.egg-info docs/api/_build
