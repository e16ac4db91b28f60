"""Training: from a data file to a run directory, with `model.fit` as in the lecture.

`train` loads and checks everything that can be wrong with the input before it creates the run
directory, so bad input never leaves a half-written run. Then it vectorizes the reviews once, builds
and compiles the GPT, and calls `model.fit` with the Keras progress bar, TensorBoard (loss per batch
and per epoch), a checkpoint per epoch, the lecture's `TextGenerator` and a NaN guard. `resume`
continues a run from its last finished epoch with the same data, optimizer state, TensorBoard step,
sampler state, dropout random state and per-epoch data order, so a run killed at any moment and
resumed ends with the losses an uninterrupted run has (tests/test_reliability.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.core.data import PAD_ID, DataError, Vocabulary, make_dataset, make_vectorizer, vectorize
from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.runs import bucketing, distribute
from gpt_keras.runs import precision as precision_lib
from gpt_keras.runs import rundir as runs
from gpt_keras.runs.batches import ArrayBatches, load_tokens, save_tokens, split_tokens, training_batches
from gpt_keras.runs.callbacks import (BatchLossSummary, GeneratedTextSummary, RunCheckpoint, StopOnNaN,
                                      restore_seed_generator_states)
from gpt_keras.runs.datasets import LoadReport, default_data_path, load_texts
from gpt_keras.runs.metrics import RealTokenPerplexity
from gpt_keras.runs.files import check_output_path, check_regular_file, open_regular, read_json, write_json

CHECKPOINT_PATTERN = "checkpoints/epoch-{epoch:03d}.keras"
RESUMABLE_CHANGES = ("epochs", "learning_rate")  # the only config fields `--resume` may change
PRECISION = "precision.json"  # the arithmetic chosen at the latest start of training, and why


@dataclasses.dataclass
class TrainResult:
    """What a training run produced and where."""

    run_dir: Path
    model: keras.Model
    history: dict[str, list[float]]
    text_generator: TextGenerator
    report: LoadReport | None
    data_description: str
    stopped_on_nan: tuple[int, int] | None = None
    resumed_from_epoch: int = 0
    chief: bool = True  # False on the other workers of a cluster: their run_dir was temporary and is gone

    @property
    def completed(self) -> bool:
        return self.stopped_on_nan is None


@dataclasses.dataclass
class PreparedData:
    """Vectorized reviews and where they came from, ready for any run."""

    tokens: np.ndarray
    vocab: Vocabulary
    report: LoadReport | None
    description: str
    source: str


def prepare_data(config: GPTConfig, data_path: str | Path | None = None, tokens_path: str | Path | None = None,
                 print_fn: Callable[[str], None] | None = print) -> PreparedData:
    """Loads the reviews (or pre-tokenized arrays) and vectorizes them; raises `DataError` on bad input."""
    say = print_fn or (lambda _: None)
    if tokens_path is not None:
        tokens, words = load_tokens(tokens_path)
        _check_tokens_fit(tokens, words, config, tokens_path)
        try:
            vocab = Vocabulary(tuple(words))
        except DataError as error:
            raise DataError(f"{tokens_path}: {error}") from None
        return PreparedData(tokens, vocab, None, f"pre-tokenized {tokens_path}", str(tokens_path))
    if data_path is None:
        data_path, description = default_data_path()
        say(f"Training on {description}: {data_path}")
    else:
        description = str(data_path)
    texts, report = load_texts(data_path)
    say(report.summary())
    vectorizer = make_vectorizer(texts, config.vocab_size, config.max_len)
    vocab = Vocabulary(tuple(vectorizer.get_vocabulary()))
    return PreparedData(vectorize(vectorizer, texts), vocab, report, description, str(data_path))


def _check_tokens_fit(tokens: np.ndarray, words: list[str], config: GPTConfig, path) -> None:
    if tokens.shape[1] != config.max_len + 1:
        raise DataError(f"{path}: tokens have {tokens.shape[1]} columns, the config needs "
                                 f"max_len + 1 = {config.max_len + 1}")
    if len(words) > config.vocab_size:
        raise DataError(f"{path}: vocabulary of {len(words)} words exceeds vocab_size {config.vocab_size}")


def fit_vocabulary_size(config: GPTConfig, vocab: Vocabulary,
                        print_fn: Callable[[str], None] | None = print) -> GPTConfig:
    """Shrinks `vocab_size` to the words the data really has.

    A small corpus can hold fewer distinct words than `vocab_size`; the vectorizer then returns a
    shorter vocabulary, and output units beyond it would be words that do not exist (and could be
    sampled). The run's saved config records the size actually used.
    """
    if len(vocab) >= config.vocab_size:
        return config
    if print_fn is not None:
        print_fn(f"The data has only {len(vocab):,} distinct words (padding and [UNK] included): "
                 f"vocab_size {config.vocab_size:,} -> {len(vocab):,}")
    return config.replace(vocab_size=len(vocab))


def configure_precision(config: GPTConfig, facts: precision_lib.HardwareFacts | None = None
                        ) -> precision_lib.PrecisionChoice:
    """Chooses the arithmetic for this machine (see `gpt_keras.runs.precision`).

    "auto" trains in bfloat16 where the CPU or GPU multiplies it fast, float16 with loss scaling on
    GPUs without bfloat16, and float32 (the lecture's) elsewhere; `facts` defaults to this machine.
    The choice reaches the model through `build_gpt(config, choice.policy)`, not Keras' global policy,
    so nothing else in the process changes.
    """
    facts = precision_lib.detect_hardware() if facts is None else facts
    return precision_lib.choose_precision(facts, config.mixed_precision, config.jit_compile)


def train(config: GPTConfig | None = None, data_path: str | Path | None = None, *,
          runs_dir: str | Path = "runs", run_name: str | None = None, run_dir: str | Path | None = None,
          tokens_path: str | Path | None = None, strategy=None,
          print_fn: Callable[[str], None] | None = print, verbose: int | str = "auto") -> TrainResult:
    """Trains the GPT and saves everything in a run directory.

    Args:
        config: hyperparameters (None: the lecture's).
        data_path: Kaggle JSON/CSV; None uses the full dataset in data/ if present, else the sample.
        runs_dir: where new run directories are created.
        run_name / run_dir: name a new run, or give its directory (to continue one, see `resume`).
        tokens_path: train from a `.npz` of token ids written by `gpt-keras tokenize` (any backend).
        strategy: a `tf.distribute` strategy or a Keras distribution (`keras.distribution.DataParallel`,
            JAX); the model is built and fitted in its scope and `batch_size` is global.
            In a multi-worker cluster only the chief writes the run; the other workers train in a
            temporary directory that is deleted at the end (see `gpt_keras.runs.distribute`).
        print_fn: where progress messages go (the Keras progress bar is controlled by `verbose`).

    Raises:
        DataError, ConfigError: bad input, raised before any run directory is created.
        RunError: the run directory is in use, or cannot be resumed.
    """
    _check_arguments(config, data_path, tokens_path, runs_dir, run_dir, verbose, print_fn)
    runs.check_run_name(run_name)
    config = GPTConfig() if config is None else config
    prepared = prepare_data(config, data_path, tokens_path, print_fn)
    config = fit_vocabulary_size(config, prepared.vocab, print_fn)
    distribute.check_global_batch(strategy, config.batch_size)
    train_tokens, validation_tokens = split_tokens(prepared.tokens, config.validation_split, config.seed)
    chief = distribute.is_chief(strategy)
    target = Path(run_dir) if run_dir is not None else None
    created = True  # whether this process made the directory (only then may it remove it)
    if not chief:
        target = _worker_scratch_dir(strategy)
        if print_fn is not None:
            print_fn(f"{distribute.task_name(strategy)}: the chief writes the run; this worker's copy goes to "
                     f"{target} (deleted at the end)")
    elif target is not None and target.exists() and any(target.iterdir()):
        raise runs.RunError(f"{target}: run directory already exists and is not empty; pass --resume to continue it")
    elif target is None:
        target = runs.new_run_dir(runs_dir, run_name)
    else:
        created = not target.exists()
        _make_dir(target)
    discard = False
    try:
        with runs.RunLock(target):
            if any(path.name != runs.LOCK for path in target.iterdir()):  # another process won the race to it
                raise runs.RunError(f"{target}: another process started a run here; pass --resume to continue it")
            try:
                runs.write_run_files(target, config, prepared.vocab, _data_info(prepared))
                save_tokens(target / runs.TOKENS, prepared.tokens, prepared.vocab.words)
                keras.utils.set_random_seed(config.seed)
                model = _build(config, strategy, _announce_precision(config, target, print_fn))
                result = _fit(model, config, target, prepared.vocab, train_tokens, validation_tokens, 0, None,
                              print_fn, verbose, prepared, strategy=strategy)
                result.chief = chief
            except BaseException:
                discard = not (target / runs.STATE).exists()
                raise
            finally:  # nothing worth resuming (an error, Ctrl-C, a NaN in epoch 1): leave no half-written run
                discard = discard or not (target / runs.STATE).exists()
                if discard:
                    _empty_run_dir(target)
            return result
    finally:
        if not chief:
            runs.remove_run_dir(target)
        elif discard:
            _remove_lock_and_dir(target, created)


def _empty_run_dir(target: Path) -> None:
    """Deletes what this run wrote in `target` (called while holding its lock); the lock file stays."""
    for path in target.iterdir():
        if path.name == runs.LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _remove_lock_and_dir(target: Path, created: bool) -> None:
    """After the lock is released: its file goes, and the directory too if this process made it and it is empty."""
    with contextlib.suppress(OSError):
        if any(path.name != runs.LOCK for path in target.iterdir()):
            return  # another process wrote here since: not ours to remove
        (target / runs.LOCK).unlink(missing_ok=True)
        if created:
            target.rmdir()


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
    _check_arguments(config, data_path, tokens_path, runs_dir, run_dir, verbose, print_fn)
    return _resume(config, data_path or tokens_path, runs_dir, run_name, run_dir, strategy, print_fn, verbose)


def _check_arguments(config, data_path, tokens_path, runs_dir, run_dir, verbose, print_fn) -> None:
    """Wrong types and impossible paths fail first, naming the argument, before anything is read or made."""
    if config is not None and not isinstance(config, GPTConfig):
        raise ConfigError(f"config must be a GPTConfig (GPTConfig.from_dict reads a dict), got {type(config).__name__}")
    if data_path is not None and tokens_path is not None:
        raise DataError(f"data_path and tokens_path: give one or the other, got {data_path} and {tokens_path}")
    for name, path in (("data_path", data_path), ("tokens_path", tokens_path), ("runs_dir", runs_dir),
                       ("run_dir", run_dir)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"{name} must be a path, got {path!r}")
    for name, path in (("runs_dir", runs_dir), ("run_dir", run_dir)):
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise runs.RunError(f"{path}: {name} exists and is not a directory")
        if path is not None:
            check_output_path(path, name, kind="dir")
    if isinstance(verbose, bool) or verbose not in ("auto", 0, 1, 2):
        raise ConfigError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    if print_fn is not None and not callable(print_fn):
        raise ConfigError(f"print_fn must be callable or None, got {print_fn!r}")


def _worker_scratch_dir(strategy) -> Path:
    """Where a non-chief worker writes its copy of the run (the chief's run is the one kept)."""
    return Path(tempfile.mkdtemp(prefix=f"gpt-keras-{distribute.task_name(strategy)}-"))


def _make_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _data_info(prepared: PreparedData) -> dict:
    info = {"source": prepared.source, "description": prepared.description, "reviews": int(len(prepared.tokens)),
            "sha256": file_sha256(prepared.source)}
    if prepared.report is not None:
        info.update(rows=prepared.report.rows, kept=prepared.report.kept, dropped=prepared.report.dropped,
                    dropped_missing=prepared.report.dropped_missing)
    return info


def _build(config: GPTConfig, strategy, choice: precision_lib.PrecisionChoice | None = None) -> keras.Model:
    choice = configure_precision(config) if choice is None else choice
    with _scope(strategy):
        return _compiled(config, choice)


def _announce_precision(config: GPTConfig, run_dir: Path, print_fn) -> precision_lib.PrecisionChoice:
    """Chooses the precision, says it, and records it (with the hardware it was chosen for) in the run."""
    facts = precision_lib.detect_hardware()
    choice = configure_precision(config, facts)
    if print_fn is not None:
        print_fn(choice.describe())
    write_json(run_dir / PRECISION, {**choice.to_dict(), "mixed_precision": config.mixed_precision,
                                     "jit_compile": config.jit_compile, "backend": facts.backend,
                                     "cpu_bfloat16_flags": facts.cpu_bfloat16_flags,
                                     "gpus": [dataclasses.asdict(gpu) for gpu in facts.gpus],
                                     "bucket_by_length": config.bucket_by_length})
    return choice


def _resumed_precision(config: GPTConfig, run_dir: Path, print_fn) -> precision_lib.PrecisionChoice:
    """A resumed run continues in the precision it was trained in (its precision.json), whatever this
    machine would pick now; its checkpoint carries the same policies. A run without the record is
    chosen for anew, as at its start."""
    try:
        record = read_json(run_dir / PRECISION, "precision record", runs.RunError)
    except (runs.RunError, OSError):
        record = None
    choice = precision_lib.recorded_choice(record) if record is not None else None
    if choice is None:
        return _announce_precision(config, run_dir, print_fn)
    if print_fn is not None:
        print_fn(f"Precision: {choice.policy}, the run's own (from {PRECISION}); resuming keeps it")
    return choice


def _scope(strategy):
    """Variables made inside are replicated by `strategy`, and `fit` inside splits each batch; without
    one, a plain block."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _compiled(config: GPTConfig, choice: precision_lib.PrecisionChoice | None = None) -> keras.Model:
    """The compiled GPT with Adam's slot variables already made: otherwise the first step creates them
    while `tf.function` traces, and TensorFlow traces the training step a second time."""
    if choice is None:
        choice = precision_lib.choose_precision(precision_lib.detect_hardware(), config.mixed_precision,
                                                config.jit_compile)
    model = compile_gpt(build_gpt(config, choice.policy, choice.output_dtype), config, choice.jit, metrics=_metrics(config),
                        loss_scaling=choice.loss_scaling)
    model.optimizer.build(model.trainable_variables)
    return model


def _metrics(config: GPTConfig):
    """The real-token perplexity, when there is a validation split to report it on."""
    if config.validation_split <= 0:
        return None
    return [RealTokenPerplexity(name="perplexity", mask_id=PAD_ID)]


def _fit(model, config, run_dir, vocab, train_tokens, validation_tokens, initial_epoch, state, print_fn, verbose,
         prepared, strategy=None) -> TrainResult:
    """Runs `model.fit` with the run's callbacks and saves the final model and history."""
    log_dir = run_dir / runs.LOGS
    with_tensorflow = tensorflow_available()
    text_generator = TextGenerator(vocab, prompt=config.generate_prompt, max_tokens=config.generate_max_tokens,
                                   temperature=config.generate_temperature, seed=config.seed, print_fn=print_fn)
    # Keras' TensorBoard logs the epochs and the graph; BatchLossSummary each batch's own loss, resumably.
    tensorboard = keras.callbacks.TensorBoard(str(log_dir), update_freq="epoch",
                                              write_graph=keras.backend.backend() == "tensorflow") \
        if with_tensorflow else None
    batch_losses = BatchLossSummary(log_dir / "train", initial_step=(state.global_step if state else 0) or 0) \
        if with_tensorflow else None
    stop_on_nan = StopOnNaN()
    if state and state.rng_state:
        text_generator.set_rng_state(state.rng_state)
    checkpoint = RunCheckpoint(run_dir, CHECKPOINT_PATTERN, text_generator, batch_losses, stop_on_nan,
                               history=state.history if state else None)
    if with_tensorflow:
        callbacks = [stop_on_nan, tensorboard, batch_losses, text_generator, GeneratedTextSummary(text_generator, log_dir / "text"),
                     checkpoint]
    else:
        callbacks = [stop_on_nan, text_generator, checkpoint]
        if print_fn is not None:
            print_fn("TensorFlow is not installed: training from token arrays, without TensorBoard logs")
    train_ds, steps_per_epoch, validation_ds = _training_inputs(config, train_tokens, validation_tokens,
                                                                initial_epoch, with_tensorflow)
    if strategy is not None and not distribute.is_keras_distribution(strategy):
        # tf.distribute: every worker builds the same batches and keeps its share of each
        train_ds = train_ds.with_options(distribute.dataset_options())
        validation_ds = None if validation_ds is None else validation_ds.with_options(distribute.dataset_options())
    # shuffle=False: the tf.data pipeline already shuffles per review with the run's seed.
    fit_scope = _scope(strategy) if distribute.is_keras_distribution(strategy) else contextlib.nullcontext()
    with fit_scope, distribute.fit_workarounds(strategy):  # Keras' JAX trainer reads the distribution in fit
        model.fit(train_ds, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                  validation_data=validation_ds, callbacks=callbacks, verbose=verbose, shuffle=False)
    history = checkpoint.history
    write_json(run_dir / runs.HISTORY, history)
    if stop_on_nan.stopped_at is None:
        runs.save_model(model, run_dir / runs.MODEL)
    return TrainResult(run_dir=run_dir, model=model, history=history, text_generator=text_generator,
                       report=prepared.report if prepared else None,
                       data_description=prepared.description if prepared else "the run's saved tokens",
                       stopped_on_nan=stop_on_nan.stopped_at, resumed_from_epoch=initial_epoch)


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (always with its backend; checked on the others)."""
    if keras.backend.backend() == "tensorflow":
        return True
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def _training_inputs(config, train_tokens, validation_tokens, initial_epoch, with_tensorflow):
    """(training batches, steps per epoch, validation batches), from `tf.data` or, without TensorFlow, arrays.

    Either way epoch e's order depends only on the seed and e, so a resumed run sees the same
    batches as an uninterrupted one.
    """
    if config.bucket_by_length == "on":  # opt-in; validation keeps the lecture's full-width batches
        _, steps_per_epoch, validation_ds = _training_inputs(config.replace(bucket_by_length="off"), train_tokens[:1],
                                                             validation_tokens, initial_epoch, with_tensorflow)
        if with_tensorflow:
            train_ds, steps_per_epoch = bucketing.bucketed_dataset(train_tokens, config.batch_size, config.seed,
                                                                   initial_epoch)
        else:
            train_ds = bucketing.BucketedBatches(train_tokens, config.batch_size, config.seed, initial_epoch)
        return train_ds, steps_per_epoch, validation_ds
    if not with_tensorflow:
        train_ds = ArrayBatches(train_tokens, config.batch_size, seed=config.seed, first_epoch=initial_epoch)
        validation_ds = None if validation_tokens is None else ArrayBatches(
            validation_tokens, config.batch_size, shuffle=False)
        return train_ds, None, validation_ds
    train_ds, steps_per_epoch = training_batches(train_tokens, config.batch_size, config.seed,
                                                          initial_epoch, config.shuffle_buffer)
    validation_ds = None if validation_tokens is None else make_dataset(
        validation_tokens, config.batch_size, shuffle=False)
    return train_ds, steps_per_epoch, validation_ds


def _resume(config, data_path, runs_dir, run_name, run_dir, strategy, print_fn, verbose) -> TrainResult:
    """Continues a run from its last finished epoch (or from the start if none finished)."""
    try:
        target = runs.resume_target(runs_dir, run_name, run_dir)
    except runs.RunError as error:
        if distribute.is_chief(strategy):
            raise
        raise runs.RunError(f"{error} (every worker must see the run at the same path, e.g. on a shared "
                            "file system)") from None
    if not distribute.is_chief(strategy):
        return _resume_as_worker(target, config, data_path, strategy, print_fn, verbose)
    return _resume_in(target, config, data_path, strategy, print_fn, verbose)


def _resume_in(target: Path, config, data_path, strategy, print_fn, verbose) -> TrainResult:
    say = print_fn or (lambda _: None)
    with runs.RunLock(target):
        vocab = runs.read_vocabulary(target / runs.VOCAB)
        saved = resumed_config(runs.read_config(target / runs.CONFIG, complete=True), config, vocab, target)
        distribute.check_global_batch(strategy, saved.batch_size)
        _check_same_data(target, data_path)
        tokens, words = load_tokens(target / runs.TOKENS)
        if tuple(words) != vocab.words or tokens.shape[1] != saved.max_len + 1:
            raise runs.RunError(f"{target / runs.TOKENS}: not this run's tokens (its vocabulary or width differs "
                                f"from {runs.VOCAB} and {runs.CONFIG}); the run cannot be resumed")
        train_tokens, validation_tokens = split_tokens(tokens, saved.validation_split, saved.seed)
        state = runs.RunState.read(target)
        if state is None and _has_saved_models(target):
            raise runs.RunError(f"{target / runs.STATE}: missing, but the run has saved models; resuming from the "
                                "start would overwrite them: restore state.json or start a new run")
        initial_epoch = state.epoch if state else 0
        if initial_epoch >= saved.epochs:
            say(f"{target}: all {initial_epoch} epochs are done; nothing to resume (raise --epochs to train more)")
            saved = saved.replace(epochs=initial_epoch)
        write_json(target / runs.CONFIG, saved.to_dict())  # epochs or learning rate may have changed
        keras.utils.set_random_seed(saved.seed)  # as in the first run: the data order depends on it
        choice = _resumed_precision(saved, target, print_fn)
        if state is None:
            say(f"Resuming {target} from the start (no epoch had finished)")
            model = _build(saved, strategy, choice)
        else:
            say(f"Resuming {target} after epoch {initial_epoch} from {state.checkpoint}")
            model = _load_checkpoint(target / state.checkpoint, strategy)
            try:
                restore_seed_generator_states(model, state.seed_states)
            except ValueError:
                raise runs.RunError(f"{target / runs.STATE}: field 'seed_states' does not fit the model") from None
            model.optimizer.learning_rate = saved.learning_rate
        prepared = PreparedData(tokens, vocab, None, f"the run's saved tokens ({runs.TOKENS})", str(target / runs.TOKENS))
        return _fit(model, saved, target, vocab, train_tokens, validation_tokens, initial_epoch, state, print_fn,
                    verbose, prepared, strategy=strategy)


def _has_saved_models(run_dir: Path) -> bool:
    """A finished epoch left a model (a checkpoint or model.keras); temporaries do not count."""
    checkpoints = [path for path in (run_dir / runs.CHECKPOINTS).glob("*.keras") if not path.name.startswith(".")]
    return bool(checkpoints) or os.path.lexists(run_dir / runs.MODEL)


def _resume_as_worker(target: Path, config, data_path, strategy, print_fn, verbose) -> TrainResult:
    """A non-chief worker resumes a copy of the files resuming reads, in its scratch directory.

    The chief keeps writing the real run, so every worker must see it at the same path (a shared
    file system); the copy is taken before training starts, when the chief cannot have written yet.
    """
    scratch = _worker_scratch_dir(strategy)
    try:
        state = runs.RunState.read(target)
        names = [runs.CONFIG, runs.VOCAB, runs.DATA, runs.TOKENS] + ([runs.STATE, state.checkpoint] if state else [])
        for name in names:
            check_regular_file(target / name, name, runs.RunError)
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target / name, scratch / name)
        result = _resume_in(scratch, config, data_path, strategy, print_fn, verbose)
        result.chief = False
        return result
    finally:
        runs.remove_run_dir(scratch)


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
        raise runs.RunError(f"{run_dir}: a resumed run keeps its config; these differ: {changes}. "
                            f"Only {' and '.join(RESUMABLE_CHANGES)} can change: resume with the run's "
                            "settings, or start a new run")
    return saved.replace(**{name: getattr(given, name) for name in RESUMABLE_CHANGES})


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a data file, to recognise it on resume wherever it lies (None if it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open_regular(path, "data", DataError) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (DataError, OSError):
        return None
    return digest.hexdigest()


def _check_same_data(run_dir: Path, data_path) -> None:
    """A data file given on resume must be the run's own (the same content): a resumed run trains on its saved tokens."""
    if data_path is None:
        return
    info = runs.read_data_info(run_dir)
    source, saved_hash = info.get("source"), info.get("sha256")
    if isinstance(saved_hash, str):
        given_hash = file_sha256(data_path)
        if given_hash is None:
            raise runs.RunError(f"{data_path}: cannot read the data given to compare it with the run's")
        same = given_hash == saved_hash
    else:  # a run from before data.json kept a hash
        same = source is not None and Path(str(source)).resolve() == Path(data_path).resolve()
    if not same:
        raise runs.RunError(f"{run_dir}: resuming trains on the run's saved tokens from {source}, but the data "
                            f"given is {data_path}; omit --data/--tokens or start a new run")


def _load_checkpoint(path: Path, strategy) -> keras.Model:
    with _scope(strategy):
        return runs.load_model(path)
