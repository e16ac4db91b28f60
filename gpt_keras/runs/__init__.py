"""Training into run directories: data files, batches, the run-directory format, callbacks, train and resume.

Imports the lesson core only. `train`, `resume` and `load_run` are the entry points; they are
imported on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"train": "gpt_keras.runs.train", "resume": "gpt_keras.runs.resume",
            "load_run": "gpt_keras.runs.rundir", "RunError": "gpt_keras.runs.rundir"}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpt_keras.runs' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
