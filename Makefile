# `make demo` and `make test` work on a fresh machine that reaches only the package registries.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU torch goes in first, in its own step; installed together with other packages pip may pick a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup demo test test-fast style quality clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev,onnx,bnb,torchao]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/hfcompress demo --output-dir runs/demo --overwrite_output_dir

# Two workers: most tests are tiny models and subprocess start-ups that leave the second core idle.
test: setup
	$(PY) -m pytest -q -n 2 --durations=15

test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow"

style: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

quality: setup
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache .ruff_cache
