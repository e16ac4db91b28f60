"""Resuming: a run continues from its last finished epoch as if it had never stopped.

Same data (the run's saved tokens), optimizer state, TensorBoard step, sampler state, dropout random
state, per-epoch data order and precision, so a run killed at any moment and resumed ends with the losses
an uninterrupted run has (tests/test_reliability.py). Only `epochs` and `learning_rate` may change.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import keras

from gpt_keras.core.config import GPTConfig
from gpt_keras.core.data import Vocabulary
from gpt_keras.runs import distribute
from gpt_keras.runs import precision as precision_lib
from gpt_keras.runs import rundir
from gpt_keras.runs.batches import load_tokens, split_tokens
from gpt_keras.runs.monitoring import restore_seed_generator_states
from gpt_keras.runs.files import check_regular_file, read_json, write_json
from gpt_keras.runs.lock import RunLock
from gpt_keras.runs.memory import check_training_fits
from gpt_keras.runs.train import (PRECISION, FitJob, PreparedData, TrainResult, announce_precision, build_model,
                                  check_arguments, file_sha256, fit_run, fit_vocabulary_size, strategy_scope,
                                  worker_scratch_dir)

RESUMABLE_CHANGES = ("epochs", "learning_rate")  # the only config fields `--resume` may change


def resume(run_dir: str | Path | None = None, config: GPTConfig | None = None, data_path: str | Path | None = None,
           *, runs_dir: str | Path = "runs", run_name: str | None = None, tokens_path: str | Path | None = None,
           strategy=None, print_fn: Callable[[str], None] | None = print, verbose: int | str = "auto") -> TrainResult:
    """Continues a run from its last finished epoch, as if it had never stopped.

    The run is `run_dir`, else `runs_dir/run_name`, else the latest run in `runs_dir`. It trains on its
    saved tokens with the same optimizer state, TensorBoard step, sampler state, dropout random state
    and per-epoch data order.

    Args:
        config: None continues with the run's saved config; a config given must equal it except for
            `epochs` and `learning_rate` (which may change), otherwise `RunError` names the fields.
        data_path / tokens_path: optional; if given, must be the run's own data.
        strategy, print_fn, verbose: as for `train`.

    Raises:
        RunError: no such run, it is in use, or its files cannot be read.
    """
    check_arguments(config=config, data_path=data_path, tokens_path=tokens_path, runs_dir=runs_dir, run_dir=run_dir,
                    verbose=verbose, print_fn=print_fn)
    target = _resume_target(runs_dir, run_name, run_dir, strategy)
    if not distribute.is_chief(strategy):
        return _resume_as_worker(target, config, data_path or tokens_path, strategy, print_fn, verbose)
    return _resume_in(target, config, data_path or tokens_path, strategy, print_fn, verbose)


def _resumed_precision(config: GPTConfig, run_dir: Path, print_fn) -> precision_lib.PrecisionChoice:
    """A resumed run continues in the precision it was trained in (its precision.json), whatever this
    machine would pick now; its checkpoint carries the same policies. A run without the record is
    chosen for anew, as at its start."""
    try:
        record = read_json(run_dir / PRECISION, "precision record", rundir.RunError)
    except (rundir.RunError, OSError):
        record = None
    choice = precision_lib.recorded_choice(record) if record is not None else None
    if choice is None:
        return announce_precision(config, run_dir, print_fn)
    if print_fn is not None:
        print_fn(f"Precision: {choice.policy}, the run's own (from {PRECISION}); resuming keeps it")
    return choice


def _resume_target(runs_dir, run_name, run_dir, strategy) -> Path:
    """The run to continue; a worker that cannot see it is told that every worker must."""
    try:
        return rundir.resume_target(runs_dir, run_name, run_dir)
    except rundir.RunError as error:
        if distribute.is_chief(strategy):
            raise
        raise rundir.RunError(f"{error} (every worker must see the run at the same path, e.g. on a shared "
                              "file system)") from None


def _resume_in(target: Path, config, data_path, strategy, print_fn, verbose) -> TrainResult:
    say = print_fn or (lambda _: None)
    with RunLock(target):
        vocab = rundir.read_vocabulary(target / rundir.VOCAB)
        saved = resumed_config(rundir.read_config(target / rundir.CONFIG, complete=True), config, vocab, target)
        distribute.check_global_batch(strategy, saved.batch_size)
        check_training_fits(saved, str(target / rundir.CONFIG))  # before the tokens or the checkpoint are read
        _check_same_data(target, data_path)
        tokens, words = load_tokens(target / rundir.TOKENS)
        if tuple(words) != vocab.words or tokens.shape[1] != saved.max_len + 1:
            raise rundir.RunError(f"{target / rundir.TOKENS}: not this run's tokens (its vocabulary or width differs "
                                f"from {rundir.VOCAB} and {rundir.CONFIG}); the run cannot be resumed")
        train_tokens, validation_tokens = split_tokens(tokens, saved.validation_split, saved.seed)
        state = rundir.RunState.read(target)
        if state is None and _has_saved_models(target):
            raise rundir.RunError(f"{target / rundir.STATE}: missing, but the run has saved models; resuming from the "
                                "start would overwrite them: restore state.json or start a new run")
        initial_epoch = state.epoch if state else 0
        if initial_epoch >= saved.epochs:
            say(f"{target}: all {initial_epoch} epochs are done; nothing to resume (raise --epochs to train more)")
            saved = saved.replace(epochs=initial_epoch)
        keras.utils.set_random_seed(saved.seed)  # as in the first run: the data order depends on it
        if state is None:
            say(f"Resuming {target} from the start (no epoch had finished)")
            model = build_model(saved, strategy, _resumed_precision(saved, target, print_fn))
        else:
            say(f"Resuming {target} after epoch {initial_epoch} from {state.checkpoint}")
            model = _load_checkpoint(target / state.checkpoint, strategy)
            try:
                restore_seed_generator_states(model, state.seed_states)
            except ValueError:
                raise rundir.RunError(f"{target / rundir.STATE}: field 'seed_states' does not fit the model") from None
            model.optimizer.learning_rate = saved.learning_rate
            _resumed_precision(saved, target, print_fn)  # says it (the checkpoint carries its policies)
        # Only now, with every file checked, may the run change: a refused resume writes nothing.
        write_json(target / rundir.CONFIG, saved.to_dict())  # epochs or learning rate may have changed
        prepared = PreparedData(tokens, vocab, None, f"the run's saved tokens ({rundir.TOKENS})", str(target / rundir.TOKENS))
        job = FitJob(saved, target, prepared, train_tokens, validation_tokens, initial_epoch, state, strategy)
        return fit_run(model, job, print_fn, verbose)


def _has_saved_models(run_dir: Path) -> bool:
    """A finished epoch left a model (a checkpoint or model.keras); temporaries do not count."""
    checkpoints = [path for path in (run_dir / rundir.CHECKPOINTS).glob("*.keras") if not path.name.startswith(".")]
    return bool(checkpoints) or os.path.lexists(run_dir / rundir.MODEL)


def _resume_as_worker(target: Path, config, data_path, strategy, print_fn, verbose) -> TrainResult:
    """A non-chief worker resumes a copy of the files resuming reads, in its scratch directory.

    The chief keeps writing the real run, so every worker must see it at the same path (a shared
    file system); the copy is taken before training starts, when the chief cannot have written yet.
    """
    scratch = worker_scratch_dir(strategy)
    try:
        state = rundir.RunState.read(target)
        names = [rundir.CONFIG, rundir.VOCAB, rundir.DATA, rundir.TOKENS] + ([rundir.STATE, state.checkpoint] if state else [])
        for name in names:
            check_regular_file(target / name, name, rundir.RunError)
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target / name, scratch / name)
        result = _resume_in(scratch, config, data_path, strategy, print_fn, verbose)
        result.chief = False
        return result
    finally:
        rundir.remove_run_dir(scratch)


def resumed_config(saved: GPTConfig, given: GPTConfig | None, vocab: Vocabulary, run_dir) -> GPTConfig:
    """The config a resumed run trains with: the saved one, with the given `epochs` and `learning_rate`.

    Those two may change (train longer; a lower rate after a NaN loss). Any other field that differs
    would be silently ignored (the model and its data are already made), so it is refused instead.
    `vocab_size` counts as equal when the run shrank it to the size of its vocabulary.

    Raises:
        RunError: naming each field that differs, with both values.
    """
    if given is None:
        return saved
    given = fit_vocabulary_size(given, vocab, None)
    differ = [name for name, value in given.to_dict().items()
              if name not in RESUMABLE_CHANGES and value != getattr(saved, name)]
    if differ:
        changes = ", ".join(f"{name} {getattr(given, name)!r} (the run has {getattr(saved, name)!r})"
                            for name in differ)
        raise rundir.RunError(f"{run_dir}: a resumed run keeps its config; these differ: {changes}. "
                            f"Only {' and '.join(RESUMABLE_CHANGES)} can change: resume with the run's "
                            "settings, or start a new run")
    return saved.replace(**{name: getattr(given, name) for name in RESUMABLE_CHANGES})


def _check_same_data(run_dir: Path, data_path) -> None:
    """A data file given on resume must be the run's own (the same content): a resumed run trains on its saved tokens."""
    if data_path is None:
        return
    info = rundir.read_data_info(run_dir)
    source, saved_hash = info.get("source"), info.get("sha256")
    if isinstance(saved_hash, str):
        given_hash = file_sha256(data_path)
        if given_hash is None:
            raise rundir.RunError(f"{data_path}: cannot read the data given to compare it with the run's")
        same = given_hash == saved_hash
    else:  # a run from before data.json kept a hash
        same = source is not None and Path(str(source)).resolve() == Path(data_path).resolve()
    if not same:
        raise rundir.RunError(f"{run_dir}: resuming trains on the run's saved tokens from {source}, but the data "
                            f"given is {data_path}; omit --data/--tokens or start a new run")


def _load_checkpoint(path: Path, strategy) -> keras.Model:
    with strategy_scope(strategy):
        return rundir.load_model(path)
