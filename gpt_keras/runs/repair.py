"""Repairing what a kill left in a run: a `model.keras` older than the run's last finished epoch.

Training saves the last epoch's checkpoint, then `model.keras`, then records in `state.json` which
epoch `model.keras` holds; a kill between the two saves leaves `model.keras` an epoch (or more) behind.
`load_run` notices and loads the checkpoint; `replace_stale_model` then puts that checkpoint in place of
the stale file, so the run is whole again for every later reader (Keras' own `load_model` included).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gpt_keras.runs import rundir
from gpt_keras.runs.files import atomic_path
from gpt_keras.runs.lock import RunLock


def replace_stale_model(run_dir: str | Path) -> str | None:
    """Replaces a stale `model.keras` with the last finished epoch's checkpoint; returns what was done.

    The checkpoint is the model training would have saved there (the same weights and optimizer), so
    the copy is exact. It is written through a temporary (a reader never sees half a file) under the
    run's lock, so a training at work in the run is never written over: that is an error instead.
    Returns None when `model.keras` is not stale.

    Raises:
        RunError: the run is in use by a training, or its lock cannot be taken (a read-only folder).
        WriteError: the copy could not be written (a full disk); the stale file is kept.
    """
    run_dir = Path(run_dir)
    with RunLock(run_dir):
        state = rundir.RunState.read(run_dir)
        older = rundir.stale_model_reason(run_dir, state)
        if older is None:
            return None
        with atomic_path(run_dir / rundir.MODEL) as temporary:
            shutil.copyfile(run_dir / state.checkpoint, temporary)
        rundir.record_final_model(run_dir)
    return f"{run_dir / rundir.MODEL} {older}; replaced it with {state.checkpoint}, the model of epoch {state.epoch}"
