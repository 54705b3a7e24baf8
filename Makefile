# Two entry points: `make run` (set up, then the live tracker) and `make test` (set up, then lint + tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# --system-site-packages: a torch already installed on the machine (e.g. a CUDA build) is reused.
$(BIN)/python:
	$(PY) -m venv --system-site-packages $(VENV)

.PHONY: install install-dev run test lint
install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

# torch==2.13.0 is the light CPU wheel on these machines; an existing torch (any build) is kept.
install-dev: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[train,dev]"

run: install
	$(BIN)/fkd-track --camera 0

lint: install-dev
	$(BIN)/python -m ruff check .

test: lint
	$(BIN)/python -m pytest -q
