"""Training: from a data file to a run directory, with `model.fit` as in the lecture.

`train` checks its arguments, then makes the run directory (a folder that cannot be made fails before
minutes of loading data), then loads and checks the data; any failure, Ctrl-C or SIGTERM before the
first epoch is saved removes every file and folder it made, so bad input never leaves a half-written run.
Then it vectorizes the reviews once, builds
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
from gpt_keras.runs import rundir
from gpt_keras.runs.lock import RunLock
from gpt_keras.runs.batches import ArrayBatches, load_tokens, save_tokens, split_tokens, training_batches
from gpt_keras.runs.monitoring import BatchLossSummary, EpochTensorBoard, GeneratedTextSummary, RunCheckpoint, StopOnNaN
from gpt_keras.runs.datasets import LoadReport, default_data_path, load_texts
from gpt_keras.runs.metrics import RealTokenPerplexity
from gpt_keras.runs.optimizer import training_optimizer
from gpt_keras.runs.files import check_output_path, one_line, open_regular, write_json
from gpt_keras.runs.memory import check_training_fits

CHECKPOINT_PATTERN = "checkpoints/epoch-{epoch:03d}.keras"
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


@dataclasses.dataclass
class FitJob:
    """What `fit_run` trains on, where it writes, and from which epoch (a new run starts at 0, no state)."""

    config: GPTConfig
    run_dir: Path
    data: PreparedData
    train_tokens: np.ndarray
    validation_tokens: np.ndarray | None
    initial_epoch: int = 0
    state: rundir.RunState | None = None
    strategy: object = None


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
        DataError, ConfigError: bad input; the run directory made for it is removed again.
        RunError: the run directory cannot be made, is in use, or cannot be resumed.
    """
    check_arguments(config=config, data_path=data_path, tokens_path=tokens_path, runs_dir=runs_dir, run_dir=run_dir,
                    verbose=verbose, print_fn=print_fn)
    rundir.check_run_name(run_name)
    config = GPTConfig() if config is None else config
    check_training_fits(config)  # the product of the sizes, before any data is read or layer built
    distribute.check_global_batch(strategy, config.batch_size)
    chief = distribute.is_chief(strategy)
    target, created = _target_dir(runs_dir, run_name, run_dir, strategy, print_fn)
    discard, locked = True, False  # until an epoch is saved, a failure leaves nothing
    try:
        prepared = prepare_data(config, data_path, tokens_path, print_fn)
        config = fit_vocabulary_size(config, prepared.vocab, print_fn)
        train_tokens, validation_tokens = split_tokens(prepared.tokens, config.validation_split, config.seed)
        with RunLock(target):
            locked = True
            if any(path.name != rundir.LOCK for path in target.iterdir()):  # another process won the race to it
                raise rundir.RunError(f"{target}: another process started a run here; pass --resume to continue it")
            try:
                rundir.write_run_files(target, config, prepared.vocab, _data_info(prepared))
                save_tokens(target / rundir.TOKENS, prepared.tokens, prepared.vocab.words)
                keras.utils.set_random_seed(config.seed)
                model = build_model(config, strategy, announce_precision(config, target, print_fn))
                job = FitJob(config, target, prepared, train_tokens, validation_tokens, strategy=strategy)
                result = fit_run(model, job, print_fn, verbose)
                result.chief = chief
            finally:  # nothing worth resuming (an error, Ctrl-C, SIGTERM, a NaN in epoch 1): no half-written run
                discard = not (target / rundir.STATE).exists()
                if discard:
                    _empty_run_dir(target)
            return result
    finally:
        if not chief:
            rundir.remove_run_dir(target)
        elif discard:
            _remove_lock_and_dir(target, created, remove_lock=locked)


def _target_dir(runs_dir, run_name, run_dir, strategy, print_fn) -> tuple[Path, list[Path]]:
    """The directory a new run writes, and the folders this process made for it, deepest first (only
    those may it remove again).

    A non-chief worker of a cluster writes a temporary copy; a given `run_dir` must be new or empty.
    """
    if not distribute.is_chief(strategy):
        target = worker_scratch_dir(strategy)
        if print_fn is not None:
            print_fn(f"{distribute.task_name(strategy)}: the chief writes the run; this worker's copy goes to "
                     f"{target} (deleted at the end)")
        return target, [target]
    if run_dir is not None and Path(run_dir).exists() and any(Path(run_dir).iterdir()):
        raise rundir.RunError(f"{run_dir}: run directory already exists and is not empty; pass --resume to continue it")
    made = _missing_folders(Path(runs_dir if run_dir is None else run_dir))
    try:
        if run_dir is None:
            target = rundir.new_run_dir(runs_dir, run_name)
            return target, [target, *made]
        return _make_dir(Path(run_dir)), made
    except rundir.RunError:
        for folder in made:  # the parents it did make before failing
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _make_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # no free inodes, a read-only or virtual file system (/proc, /sys)
        raise rundir.RunError(f"{one_line(path)}: cannot create the run directory ({error.strerror or error})"
                              ) from None
    return path


def _missing_folders(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first: what `mkdir(parents=True)` will make."""
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _empty_run_dir(target: Path) -> None:
    """Deletes what this run wrote in `target` (called while holding its lock); the lock file stays."""
    for path in target.iterdir():
        if path.name == rundir.LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _remove_lock_and_dir(target: Path, created: list[Path], remove_lock: bool) -> None:
    """After the lock is released: its file goes (if this process held it), then the folders this process
    made, deepest first, as long as they are empty."""
    with contextlib.suppress(OSError):
        if any(path.name != rundir.LOCK for path in target.iterdir()):
            return  # another process wrote here since: not ours to remove
        if remove_lock:
            (target / rundir.LOCK).unlink(missing_ok=True)
        for folder in created:
            folder.rmdir()


def check_arguments(*, config, data_path, tokens_path, runs_dir, run_dir, verbose, print_fn) -> None:
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
            raise rundir.RunError(f"{path}: {name} exists and is not a directory")
        if path is not None:
            check_output_path(path, name, kind="dir")
    if isinstance(verbose, bool) or verbose not in ("auto", 0, 1, 2):
        raise ConfigError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    if print_fn is not None and not callable(print_fn):
        raise ConfigError(f"print_fn must be callable or None, got {print_fn!r}")


def worker_scratch_dir(strategy) -> Path:
    """Where a non-chief worker writes its copy of the run (the chief's run is the one kept)."""
    return Path(tempfile.mkdtemp(prefix=f"gpt-keras-{distribute.task_name(strategy)}-"))


def _data_info(prepared: PreparedData) -> dict:
    info = {"source": prepared.source, "description": prepared.description, "reviews": int(len(prepared.tokens)),
            "sha256": file_sha256(prepared.source)}
    if prepared.report is not None:
        info.update(rows=prepared.report.rows, kept=prepared.report.kept, dropped=prepared.report.dropped,
                    dropped_missing=prepared.report.dropped_missing)
    return info


def build_model(config: GPTConfig, strategy, choice: precision_lib.PrecisionChoice | None = None) -> keras.Model:
    choice = configure_precision(config) if choice is None else choice
    with strategy_scope(strategy):
        return _compiled(config, choice)


def announce_precision(config: GPTConfig, run_dir: Path, print_fn) -> precision_lib.PrecisionChoice:
    """Chooses the precision, says it, and records it (with the hardware it was chosen for) in the run."""
    facts = precision_lib.detect_hardware()
    choice = configure_precision(config, facts)
    if print_fn is not None:
        print_fn(choice.describe())
    write_json(run_dir / PRECISION, {**choice.to_dict(), "mixed_precision": config.mixed_precision,
                                     "jit_compile": config.jit_compile, "backend": facts.backend,
                                     "cpu_bfloat16_flags": facts.cpu_bfloat16_flags,
                                     "gpus": [dataclasses.asdict(gpu) for gpu in facts.gpus],
                                     "bucket_by_length": config.bucket_by_length, "recipe": config.recipe})
    return choice


def strategy_scope(strategy):
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
                        loss_scaling=choice.loss_scaling, optimizer=training_optimizer(config))
    model.optimizer.build(model.trainable_variables)
    return model


def _metrics(config: GPTConfig):
    """The real-token perplexity, when there is a validation split to report it on."""
    if config.validation_split <= 0:
        return None
    return [RealTokenPerplexity(name="perplexity", mask_id=PAD_ID)]


def fit_run(model: keras.Model, job: FitJob, print_fn, verbose) -> TrainResult:
    """Runs `model.fit` with the run's callbacks and saves the final model and history."""
    config, state = job.config, job.state
    text_generator = TextGenerator(job.data.vocab, prompt=config.generate_prompt, max_tokens=config.generate_max_tokens,
                                   temperature=config.generate_temperature, seed=config.seed, print_fn=print_fn)
    if state and state.rng_state:
        text_generator.set_rng_state(state.rng_state)
    with_tensorflow = tensorflow_available()
    if not with_tensorflow and print_fn is not None:
        print_fn("TensorFlow is not installed: training from token arrays, without TensorBoard logs")
    callbacks, checkpoint, stop_on_nan = _run_callbacks(job, text_generator, with_tensorflow)
    train_ds, steps_per_epoch, validation_ds = _training_inputs(config, job.train_tokens, job.validation_tokens,
                                                                job.initial_epoch, with_tensorflow)
    if job.strategy is not None and not distribute.is_keras_distribution(job.strategy):
        # tf.distribute: every worker builds the same batches and keeps its share of each
        train_ds = train_ds.with_options(distribute.dataset_options())
        validation_ds = None if validation_ds is None else validation_ds.with_options(distribute.dataset_options())
    # shuffle=False: the tf.data pipeline already shuffles per review with the run's seed.
    fit_scope = strategy_scope(job.strategy) if distribute.is_keras_distribution(job.strategy) else contextlib.nullcontext()
    with fit_scope, distribute.fit_workarounds(job.strategy):  # Keras' JAX trainer reads the distribution in fit
        model.fit(train_ds, epochs=config.epochs, initial_epoch=job.initial_epoch, steps_per_epoch=steps_per_epoch,
                  validation_data=validation_ds, callbacks=callbacks, verbose=verbose, shuffle=False)
    history = checkpoint.history
    write_json(job.run_dir / rundir.HISTORY, history)
    if stop_on_nan.stopped_at is None:
        rundir.save_model(model, job.run_dir / rundir.MODEL)
        rundir.record_final_model(job.run_dir)  # after the save: a kill before this leaves an older record
    return TrainResult(run_dir=job.run_dir, model=model, history=history, text_generator=text_generator,
                       report=job.data.report, data_description=job.data.description,
                       stopped_on_nan=stop_on_nan.stopped_at, resumed_from_epoch=job.initial_epoch)


def _run_callbacks(job: FitJob, text_generator: TextGenerator, with_tensorflow: bool):
    """(callbacks, the checkpoint, the NaN guard): the NaN guard first, the checkpoint last.

    Keras' TensorBoard logs the epochs and the graph; `BatchLossSummary` each batch's own loss, resumably;
    without TensorFlow there are no logs.
    """
    state, log_dir = job.state, job.run_dir / rundir.LOGS
    stop_on_nan = StopOnNaN()
    batch_losses = BatchLossSummary(log_dir / "train", initial_step=(state.global_step if state else 0) or 0) \
        if with_tensorflow else None
    checkpoint = RunCheckpoint(job.run_dir, CHECKPOINT_PATTERN, text_generator=text_generator,
                               batch_losses=batch_losses, stop_on_nan=stop_on_nan,
                               history=state.history if state else None,
                               model_epoch=state.model_epoch if state else None)
    if not with_tensorflow:
        return [stop_on_nan, text_generator, checkpoint], checkpoint, stop_on_nan
    tensorboard = EpochTensorBoard(str(log_dir), update_freq="epoch",
                                   write_graph=keras.backend.backend() == "tensorflow")
    return ([stop_on_nan, tensorboard, batch_losses, text_generator,
             GeneratedTextSummary(text_generator, log_dir / "text"), checkpoint], checkpoint, stop_on_nan)


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
    train_ds, steps_per_epoch = training_batches(train_tokens, config.batch_size, config.seed, initial_epoch,
                                                 config.shuffle_buffer, whole_batches=config.recipe == "lecture")
    validation_ds = None if validation_tokens is None else make_dataset(
        validation_tokens, config.batch_size, shuffle=False)
    return train_ds, steps_per_epoch, validation_ds


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


