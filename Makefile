# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
NOTEBOOK := $(VENV)/.notebook-installed

.PHONY: install install-dev demo test test-tf test-jax benchmark notebook clean

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

## Run the test suite: everything on TensorFlow, then the backend-agnostic model tests on JAX.
test: $(DEV)
	$(MAKE) --no-print-directory test-tf test-jax

test-tf: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=30

test-jax: $(DEV)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -p no:cacheprovider -m backend_agnostic

## Open the lecture notebook in JupyterLab (installs the [notebook] extra once).
notebook: $(NOTEBOOK)
	$(BIN)/jupyter lab notebooks/gpt_listo_para_entrenar.ipynb

benchmark: $(DEV)
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf $(VENV) runs .pytest_cache
