# One-command set-up: `make demo` runs the main job on the simulated bench,
# `make test` runs the tests. Both create the virtual environment themselves.
PYTHON ?= python3
VENV ?= .venv
# CPU build by default; GPU users: make TORCH_SPEC="torch==<version>" with their CUDA index configured.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,hardware,gui]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/labrig demo --out runs/demo $(if $(DATA),--data $(DATA))

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu and not hardware"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/twin.py

clean:
	rm -rf $(VENV) runs .pytest_cache
