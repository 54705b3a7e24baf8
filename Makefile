# Two entry points: `make run` (set up, then the live tracker) and `make test` (set up, then lint + tests).
# The venv is hermetic: it sees no system site-packages and holds what pyproject declares, at the
# versions in constraints.txt (what CI tested). USE_SYSTEM_TORCH=1 builds it with system site-packages
# instead, so a CUDA torch already installed on the machine is used (see README, "Installing").
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
USE_SYSTEM_TORCH ?=
MODE := $(if $(USE_SYSTEM_TORCH),system,hermetic)
PIP := $(BIN)/python -m pip install -q -c constraints.txt

# The stamp names the mode, so switching modes (or an old --system-site-packages venv) rebuilds the venv.
$(VENV)/.mode-$(MODE):
	rm -rf $(VENV)
	$(PY) -m venv $(if $(USE_SYSTEM_TORCH),--system-site-packages,) $(VENV)
	touch $@

.PHONY: install install-dev run test lint lock gpu-check gpu-data bench-peer
install: $(VENV)/.mode-$(MODE)
	$(PIP) -e .

# torch==2.13.0 is the light CPU wheel on these machines; installed only where no torch imports
# (in the hermetic venv: always; with USE_SYSTEM_TORCH=1: only when the system has none).
install-dev: $(VENV)/.mode-$(MODE)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(PIP) -e ".[train,dev,cluster]"

run: install
	$(BIN)/fkd-track --camera 0

lint: install-dev
	$(BIN)/python -m ruff check .

test: lint
	$(BIN)/python -m pytest -q

# One command for a GPU session (one device call: under 9 minutes, nothing to install): the machine's own
# python with PYTHONPATH at this repository, no venv (GPU images have torch + CUDA but no package registry).
# Writes OUT/gpu_check.log and OUT/summary.json; without CUDA it runs the CPU parts and lists the skips.
# Real faces come from ../shared/data, or from GPU_DATA (made here by `make gpu-data`, ~4 MiB: carry it).
PY_GPU ?= python3
OUT ?= /tmp/fkd-gpu-check
GPU_CHECK_ARGS ?=
GPU_DATA ?= build/gpu-data
GPU_SHARED := $(firstword $(wildcard $(CURDIR)/../shared/data/README.md $(CURDIR)/$(GPU_DATA)/README.md))
gpu-check:
	PYTHONPATH=$(CURDIR) $(if $(GPU_SHARED),FKD_SHARED_DATA=$(dir $(GPU_SHARED)),) \
	  $(PY_GPU) -m train.gpu_check --out $(OUT) $(GPU_CHECK_ARGS)

gpu-data:
	PYTHONPATH=$(CURDIR) $(BIN)/python -m train.gpu_check --make-data $(GPU_DATA)

# Re-pin: resolve pyproject's ranges afresh in a throwaway hermetic venv and write constraints.txt.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q $(TORCH) && .lock-venv/bin/python -m pip install -q ".[train,dev,cluster]"
	{ echo "# Exact versions CI tested: the Makefile installs with -c constraints.txt. Regenerate: make lock."; \
	  echo "# torch is installed on its own (TORCH, default $(TORCH)) so a CUDA build can be kept."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -e '^torch==' -e '^fkd-track'; } > constraints.txt
	rm -rf .lock-venv

# The fair peer benchmark (benchmarks/peer_mediapipe.py): MediaPipe FaceMesh in its own venv (numpy<2),
# fkd-track in the project venv, alternating rounds on the same clips, decode excluded for both.
MP_VENV := benchmarks/.venv-mediapipe
$(MP_VENV)/.stamp:
	rm -rf $(MP_VENV)
	$(PY) -m venv $(MP_VENV)
	$(MP_VENV)/bin/python -m pip install -q "mediapipe==0.10.14" "numpy<2"
	touch $@

bench-peer: install $(MP_VENV)/.stamp
	$(BIN)/python benchmarks/peer_mediapipe.py $(BENCH_ARGS)
