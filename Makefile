# Two-command set-up: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install the package (editable, with the dev and cluster extras).
# TORCH_SPEC (pip arguments) picks the torch build: the default is the CPU wheel that lies on this
# machine kind's disk; on a GPU box use e.g. `make demo TORCH_SPEC="torch==2.9.1"`
# (a CUDA build from PyPI) or TORCH_SPEC="" to keep the torch you already have.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,cluster
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install -q $(TORCH_SPEC); fi
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/neuro demo

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --timeout=900 --durations=15 tests

clean-venv:
	rm -rf $(VENV)
