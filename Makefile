# The README's commands: `make demo`, `make test` (and `test-fast`, `test-release`). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
NOTEBOOK := $(VENV)/.notebook-installed

.PHONY: install install-dev demo test test-tf test-jax test-fast test-release test-random benchmark notebook clean

# The core install (requirements.txt, which pyproject.toml reads), editable.
$(RUNTIME): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Everything the tests use: the [dev] extra (test tools, JAX, and the [gpt2], [download] and [lab] extras).
$(DEV): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

$(NOTEBOOK): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e ".[notebook]"
	touch $@

install: $(RUNTIME)
install-dev: $(DEV)

## Train on the embedded sample, print generated text, say where the logs and the run are.
demo: $(RUNTIME)
	$(BIN)/gpt-keras demo

## Run the test suite (at most 8 minutes on two cores): everything but the release tier on TensorFlow,
## then the backend-agnostic model tests on JAX; the 15 slowest tests are listed at the end.
test: $(DEV)
	$(MAKE) --no-print-directory -j2 --output-sync=target test-tf test-jax  # side by side: the time is the longer

# Both cores: pytest-xdist shares the tests out over two workers (each trains the shared runs it needs once);
# the JAX pass runs beside it at a lower priority, on what the TensorFlow pass leaves free.
test-tf: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not release" -n auto --maxprocesses=4 --dist worksteal \
		--durations=15

test-jax: $(DEV)
	KERAS_BACKEND=jax nice -n 10 $(BIN)/python -m pytest -q -p no:cacheprovider -m "backend_agnostic and not release" \
		--durations=10

## The quick edit loop: the tests marked neither `slow` (training end to end, subprocesses) nor `release`.
test-fast: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not release"

## The release tier: the wheel in a fresh venv, the notebooks, two worker processes, the long property runs,
## and end-to-end subprocesses whose logic `make test` checks in process. CI runs it after `make test`.
test-release: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m release --durations=0

## The suite in a random order (pytest-random-order, in the [dev] extra; the seed is printed,
## `--random-order-seed=N` repeats it): no test may depend on another having run first.
test-random: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider --random-order -m "not release" -n auto --maxprocesses=4 --dist worksteal

## Open the lecture notebook in JupyterLab (installs the [notebook] extra once).
notebook: $(NOTEBOOK)
	$(BIN)/jupyter lab notebooks/gpt_listo_para_entrenar.ipynb

benchmark: $(DEV)
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf $(VENV) runs .pytest_cache
