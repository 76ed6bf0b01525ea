# `make run`: set up and run a short IMP experiment (lenet300_100 on Fashion-MNIST, offline).
# `make test`: set up and run the whole test suite.
# `make readme-sample`: rerun `make run`'s command and write what it prints into README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data run readme-sample test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@# A newer pip is nice to have, not needed: a flaky index answer must not fail the setup.
	$(BIN)/pip install --quiet --upgrade pip || echo "pip upgrade failed; keeping the venv's pip"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed data

# Fashion-MNIST from Debian (the offline dataset); skipped when already installed.
data:
	@[ -f $(FASHION_MNIST) ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

run: setup
	$(BIN)/python -m pipelines.imp --model=lenet300_100 --dataset=fashion_mnist \
		--rounds=10 --iterations=1000 --output_dir=runs --experiment_name=quickstart

# The README's Quickstart sample: run's command (read from this file) in a temporary directory.
readme-sample: setup
	$(BIN)/python docs/quickstart_sample.py

# One worker per core (at most 4, conftest.py): a test file stays on one worker, so its
# module fixtures are built once. PYTEST_WORKERS=0 runs the suite in this one process.
PYTEST_WORKERS ?= auto
test: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check lth_tf pipelines benchmarks tests docs conftest.py
	$(BIN)/ruff format --check lth_tf pipelines benchmarks tests docs conftest.py

clean:
	rm -rf $(VENV) runs
