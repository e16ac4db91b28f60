"""gpt-keras: the wine-review GPT of the "Transformers III" lecture, in Keras 3.

Three layers, each importing only the ones below it:

- `gpt_keras.core`: the lesson (config, texts and vocabulary, layers, model, sampling, generation,
  the `TextGenerator` callback);
- `gpt_keras.runs`: training into run directories, resuming, loading runs;
- `gpt_keras.tools`: `print_probs` and plots, the temperature lab, the GPT-2 comparison, the command line.

The names below are imported on first use, so `import gpt_keras` (and `gpt-keras --help`) stays fast.
Keras still finds the lesson's layers when it loads a saved model: `import gpt_keras` registers them as
soon as Keras is imported (at once if it already is), so `keras.saving.load_model("runs/.../model.keras")`
works with nothing but `import gpt_keras`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

__version__ = "0.2.0"

_EXPORTS = {
    "GPTConfig": "gpt_keras.core.config",
    "build_gpt": "gpt_keras.core.model",
    "compile_gpt": "gpt_keras.core.model",
    "TextGenerator": "gpt_keras.core.callbacks",
    "train": "gpt_keras.runs.train",
    "resume": "gpt_keras.runs.resume",
    "load_run": "gpt_keras.runs.rundir",
    "print_probs": "gpt_keras.tools.viz",
    "quiet_tensorflow": "gpt_keras.tools.quiet",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpt_keras' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


# Importing these registers, under the name "gpt_keras", what a saved run names: the layers, the loss, the metric.
REGISTERING_MODULES = ("gpt_keras.core.layers", "gpt_keras.core.fast", "gpt_keras.runs.metrics",
                       "gpt_keras.runs.optimizer")


class _RegisterAfterKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `keras` as usual and, once it has run, imports the lesson's layers (which registers them)."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or "keras" in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
        _import_registering_modules()


def _import_registering_modules() -> None:
    """Each of these imports only Keras and `gpt_keras.core`'s package name, so this can run while any
    other gpt_keras module is half-way through importing Keras."""
    for name in REGISTERING_MODULES:
        importlib.import_module(name)


def _register_layers_with_keras() -> None:
    if "keras" in sys.modules:
        _import_registering_modules()
    elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKeras())


_register_layers_with_keras()
