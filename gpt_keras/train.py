"""Training: from a data file to a run directory, with `model.fit` as in the lecture.

`train` loads and checks everything that can be wrong with the input before it creates the run
directory, so bad input never leaves a half-written run. Then it vectorizes the reviews once, builds
and compiles the GPT, and calls `model.fit` with the Keras progress bar, TensorBoard (loss per batch
and per epoch), a checkpoint per epoch, the lecture's `TextGenerator` and a NaN guard. `resume=True`
continues a run from its last finished epoch with the same data, optimizer state, TensorBoard step
and sampler state.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from gpt_keras import data as data_lib
from gpt_keras import distribute, runs
from gpt_keras.callbacks import GeneratedTextSummary, ResumableTensorBoard, RunState, StopOnNaN, TextGenerator
from gpt_keras.config import GPTConfig
from gpt_keras.model import build_gpt, compile_gpt

CHECKPOINT_PATTERN = "checkpoints/epoch-{epoch:03d}.keras"


@dataclasses.dataclass
class TrainResult:
    """What a training run produced and where."""

    run_dir: Path
    model: keras.Model
    history: dict[str, list[float]]
    text_generator: TextGenerator
    report: data_lib.LoadReport | None
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
    vocab: data_lib.Vocabulary
    report: data_lib.LoadReport | None
    description: str
    source: str


def prepare_data(config: GPTConfig, data_path: str | Path | None = None, tokens_path: str | Path | None = None,
                 print_fn: Callable[[str], None] | None = print) -> PreparedData:
    """Loads the reviews (or pre-tokenized arrays) and vectorizes them; raises `DataError` on bad input."""
    say = print_fn or (lambda _: None)
    if tokens_path is not None:
        tokens, words = data_lib.load_tokens(tokens_path)
        _check_tokens_fit(tokens, words, config, tokens_path)
        return PreparedData(tokens, data_lib.Vocabulary(tuple(words)), None, f"pre-tokenized {tokens_path}",
                            str(tokens_path))
    if data_path is None:
        data_path, description = data_lib.default_data_path()
        say(f"Training on {description}: {data_path}")
    else:
        description = str(data_path)
    texts, report = data_lib.load_texts(data_path)
    say(report.summary())
    vectorizer = data_lib.make_vectorizer(texts, config.vocab_size, config.max_len)
    vocab = data_lib.Vocabulary(tuple(vectorizer.get_vocabulary()))
    return PreparedData(data_lib.vectorize(vectorizer, texts), vocab, report, description, str(data_path))


def _check_tokens_fit(tokens: np.ndarray, words: list[str], config: GPTConfig, path) -> None:
    if tokens.shape[1] != config.max_len + 1:
        raise data_lib.DataError(f"{path}: tokens have {tokens.shape[1]} columns, the config needs "
                                 f"max_len + 1 = {config.max_len + 1}")
    if len(words) > config.vocab_size:
        raise data_lib.DataError(f"{path}: vocabulary of {len(words)} words exceeds vocab_size {config.vocab_size}")


def fit_vocabulary_size(config: GPTConfig, vocab: data_lib.Vocabulary,
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


def configure_precision(config: GPTConfig) -> str:
    """Sets the global dtype policy: bfloat16 compute only where it pays (a GPU), float32 elsewhere."""
    use_mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and _has_gpu())
    policy = "mixed_bfloat16" if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _has_gpu() -> bool:
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except Exception:  # a backend without device listing: assume no accelerator
        return False


def jit_compile_flag(config: GPTConfig) -> bool | str:
    return {"auto": "auto", "on": True, "off": False}[config.jit_compile]


def train(config: GPTConfig = GPTConfig(), data_path: str | Path | None = None, *,
          runs_dir: str | Path = "runs", run_name: str | None = None, run_dir: str | Path | None = None,
          resume: bool = False, tokens_path: str | Path | None = None, strategy=None,
          print_fn: Callable[[str], None] | None = print, verbose: int | str = "auto") -> TrainResult:
    """Trains the GPT and saves everything in a run directory.

    Args:
        config: hyperparameters (ignored on resume, except that `epochs` may be raised).
        data_path: Kaggle JSON/CSV; None uses the full dataset in data/ if present, else the sample.
        runs_dir: where new run directories are created.
        run_name / run_dir: name a new run, or give its directory (resume: the run to continue).
        resume: continue `run_dir` (or the latest run in `runs_dir`) from its last finished epoch.
        tokens_path: train from a `.npz` of token ids written by `gpt-keras tokenize` (any backend).
        strategy: a `tf.distribute` strategy; the model is built in its scope and `batch_size` is global.
            In a multi-worker cluster only the chief writes the run; the other workers train in a
            temporary directory that is deleted at the end (see `gpt_keras.distribute`).
        print_fn: where progress messages go (the Keras progress bar is controlled by `verbose`).

    Raises:
        DataError, ConfigError: bad input, raised before any run directory is created.
        RunError: the run directory is in use, or cannot be resumed.
    """
    if strategy is not None:
        distribute.patch_keras_for_distribution()
    if resume:
        return _resume(config, runs_dir, run_dir, strategy, print_fn, verbose)
    prepared = prepare_data(config, data_path, tokens_path, print_fn)
    config = fit_vocabulary_size(config, prepared.vocab, print_fn)
    train_tokens, validation_tokens = data_lib.split_tokens(prepared.tokens, config.validation_split, config.seed)
    chief = distribute.is_chief(strategy)
    target = Path(run_dir) if run_dir is not None else None
    if not chief:
        target = _worker_scratch_dir(strategy)
        if print_fn is not None:
            print_fn(f"{distribute.task_name(strategy)}: the chief writes the run; this worker's copy goes to "
                     f"{target} (deleted at the end)")
    elif target is not None and target.exists() and any(target.iterdir()):
        raise runs.RunError(f"{target}: run directory already exists and is not empty; pass --resume to continue it")
    else:
        target = runs.new_run_dir(runs_dir, run_name) if target is None else _make_dir(target)
    finished_an_epoch = False
    try:
        with runs.RunLock(target):
            runs.write_run_files(target, config, prepared.vocab, _data_info(prepared))
            data_lib.save_tokens(target / runs.TOKENS, prepared.tokens, prepared.vocab.words)
            keras.utils.set_random_seed(config.seed)
            model = _build(config, strategy)
            result = _fit(model, config, target, prepared.vocab, train_tokens, validation_tokens, 0, None, print_fn,
                          verbose, prepared, strategy=strategy)
            finished_an_epoch = runs.read_state(target) is not None
            result.chief = chief
            return result
    except BaseException:
        if not finished_an_epoch and runs.read_state(target) is None:
            runs.remove_run_dir(target)  # nothing worth resuming: leave no half-written run
        raise
    finally:
        if not chief:
            runs.remove_run_dir(target)


def _worker_scratch_dir(strategy) -> Path:
    """Where a non-chief worker writes its copy of the run (the chief's run is the one kept)."""
    return Path(tempfile.mkdtemp(prefix=f"gpt-keras-{distribute.task_name(strategy)}-"))


def _make_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _data_info(prepared: PreparedData) -> dict:
    info = {"source": prepared.source, "description": prepared.description, "reviews": int(len(prepared.tokens))}
    if prepared.report is not None:
        info.update(rows=prepared.report.rows, kept=prepared.report.kept, dropped=prepared.report.dropped,
                    dropped_missing=prepared.report.dropped_missing)
    return info


def _build(config: GPTConfig, strategy) -> keras.Model:
    configure_precision(config)
    if strategy is None:
        return compile_gpt(build_gpt(config), config, jit_compile_flag(config), metrics=_metrics(config))
    with strategy.scope():
        return compile_gpt(build_gpt(config), config, jit_compile_flag(config), metrics=_metrics(config))


def _metrics(config: GPTConfig):
    """Perplexity (keras-hub's metric) when there is a validation split to report it on."""
    if config.validation_split <= 0:
        return None
    import keras_hub

    return [keras_hub.metrics.Perplexity(name="perplexity")]


def _fit(model, config, run_dir, vocab, train_tokens, validation_tokens, initial_epoch, state, print_fn, verbose,
         prepared, strategy=None) -> TrainResult:
    """Runs `model.fit` with the run's callbacks and saves the final model and history."""
    log_dir = run_dir / runs.LOGS
    text_generator = TextGenerator(vocab, prompt=config.generate_prompt, max_tokens=config.generate_max_tokens,
                                   temperature=config.generate_temperature, seed=config.seed, print_fn=print_fn)
    tensorboard = ResumableTensorBoard(log_dir, initial_step=(state or {}).get("global_step") or 0,
                                       update_freq="batch", write_graph=keras.backend.backend() == "tensorflow")
    stop_on_nan = StopOnNaN()
    if state and state.get("rng_state"):
        text_generator.set_rng_state(state["rng_state"])
    callbacks = [
        stop_on_nan,
        tensorboard,
        text_generator,
        GeneratedTextSummary(text_generator, log_dir / "text"),
        keras.callbacks.ModelCheckpoint(str(run_dir / CHECKPOINT_PATTERN)),  # formats {epoch} as epoch + 1
        RunState(run_dir, CHECKPOINT_PATTERN, text_generator, tensorboard, stop_on_nan,
                 history=(state or {}).get("history")),
    ]
    train_ds = data_lib.make_dataset(train_tokens, config.batch_size, seed=config.seed + initial_epoch,
                                     shuffle_buffer=config.shuffle_buffer)
    validation_ds = None if validation_tokens is None else data_lib.make_dataset(
        validation_tokens, config.batch_size, shuffle=False)
    if strategy is not None:  # every worker builds the same batches and keeps its share of each
        train_ds = train_ds.with_options(distribute.dataset_options())
        validation_ds = None if validation_ds is None else validation_ds.with_options(distribute.dataset_options())
    # shuffle=False: the tf.data pipeline already shuffles per review with the run's seed.
    model.fit(train_ds, epochs=config.epochs, initial_epoch=initial_epoch, validation_data=validation_ds,
              callbacks=callbacks, verbose=verbose, shuffle=False)
    history = callbacks[-1].history
    from gpt_keras.files import write_json

    write_json(run_dir / runs.HISTORY, history)
    if stop_on_nan.stopped_at is None:
        runs.save_model(model, run_dir / runs.MODEL)
    return TrainResult(run_dir=run_dir, model=model, history=history, text_generator=text_generator,
                       report=prepared.report if prepared else None,
                       data_description=prepared.description if prepared else "the run's saved tokens",
                       stopped_on_nan=stop_on_nan.stopped_at, resumed_from_epoch=initial_epoch)


def _resume(config, runs_dir, run_dir, strategy, print_fn, verbose) -> TrainResult:
    """Continues a run from its last finished epoch (or from the start if none finished)."""
    say = print_fn or (lambda _: None)
    target = Path(run_dir) if run_dir is not None else runs.latest_run(runs_dir)
    if not (target / runs.CONFIG).is_file():
        hint = "" if distribute.is_chief(strategy) else (" (every worker must see the run at the same path, "
                                                           "e.g. on a shared file system)")
        raise runs.RunError(f"{target}: not a run directory (no {runs.CONFIG}); nothing to resume{hint}")
    if not distribute.is_chief(strategy):
        return _resume_as_worker(target, config, strategy, print_fn, verbose)
    return _resume_in(target, config, strategy, print_fn, verbose)


def _resume_in(target: Path, config, strategy, print_fn, verbose) -> TrainResult:
    say = print_fn or (lambda _: None)
    with runs.RunLock(target):
        saved = GPTConfig.load(target / runs.CONFIG)
        if config.epochs > saved.epochs:
            saved = saved.replace(epochs=config.epochs)
        vocab = data_lib.Vocabulary.load(target / runs.VOCAB)
        tokens, _ = data_lib.load_tokens(target / runs.TOKENS)
        train_tokens, validation_tokens = data_lib.split_tokens(tokens, saved.validation_split, saved.seed)
        state = runs.read_state(target)
        initial_epoch = state["epoch"] if state else 0
        if initial_epoch >= saved.epochs:
            say(f"{target}: all {saved.epochs} epochs are done; nothing to resume (raise --epochs to train more)")
        keras.utils.set_random_seed(saved.seed + initial_epoch)
        configure_precision(saved)
        if state is None:
            say(f"Resuming {target} from the start (no epoch had finished)")
            model = _build(saved, strategy)
        else:
            say(f"Resuming {target} after epoch {initial_epoch} from {state['checkpoint']}")
            model = _load_checkpoint(target / state["checkpoint"], strategy)
        prepared = PreparedData(tokens, vocab, None, f"the run's saved tokens ({runs.TOKENS})", str(target / runs.TOKENS))
        return _fit(model, saved, target, vocab, train_tokens, validation_tokens, initial_epoch, state, print_fn,
                    verbose, prepared, strategy=strategy)


def _resume_as_worker(target: Path, config, strategy, print_fn, verbose) -> TrainResult:
    """A non-chief worker resumes a copy of the files resuming reads, in its scratch directory.

    The chief keeps writing the real run, so every worker must see it at the same path (a shared
    file system); the copy is taken before training starts, when the chief cannot have written yet.
    """
    scratch = _worker_scratch_dir(strategy)
    try:
        state = runs.read_state(target)
        names = [runs.CONFIG, runs.VOCAB, runs.DATA, runs.TOKENS] + ([runs.STATE, state["checkpoint"]] if state else [])
        for name in names:
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target / name, scratch / name)
        result = _resume_in(scratch, config, strategy, print_fn, verbose)
        result.chief = False
        return result
    finally:
        runs.remove_run_dir(scratch)


def _load_checkpoint(path: Path, strategy) -> keras.Model:
    if strategy is None:
        return runs.load_model(path)
    with strategy.scope():
        return runs.load_model(path)
