"""gpt-keras: the wine-review GPT of the "Transformers III" lecture, in Keras 3.

Three layers, each importing only the ones below it:

- `gpt_keras.core`: the lesson (config, texts and vocabulary, layers, model, sampling, generation,
  the `TextGenerator` callback);
- `gpt_keras.runs`: training into run directories, resuming, loading runs;
- `gpt_keras.tools`: `print_probs` and plots, the temperature lab, the GPT-2 comparison, the command line.

The names below are imported on first use, so `import gpt_keras` (and `gpt-keras --help`) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "GPTConfig": "gpt_keras.core.config",
    "build_gpt": "gpt_keras.core.model",
    "compile_gpt": "gpt_keras.core.model",
    "TextGenerator": "gpt_keras.core.callbacks",
    "train": "gpt_keras.runs.train",
    "resume": "gpt_keras.runs.train",
    "load_run": "gpt_keras.runs.rundir",
    "print_probs": "gpt_keras.tools.viz",
    "quiet_tensorflow": "gpt_keras.tools.quiet",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpt_keras' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
