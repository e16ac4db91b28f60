"""The run directory: everything one training run needs to be watched, resumed and sampled from.

This module is the one place that knows the directory's format: the file names, `RunState` (what
`state.json` holds, written by the checkpoint callback and read by resume and by `load_run`), and
how the config and vocabulary are stored.

A run directory holds:

    config.json        the GPTConfig of the run
    vocab.json         the vectorizer's vocabulary (index -> word)
    data.json          where the data came from and what the loader kept
    tokens.npz         the vectorized reviews, so a resumed run trains on exactly the same data
    logs/              TensorBoard logs (train/, validation/, text samples)
    checkpoints/       full models (weights and optimizer) after each epoch, the last two kept
    state.json         the last finished epoch, its checkpoint, TensorBoard step and sampler state
    model.keras        the final model
    history.json       loss per epoch
    run.lock           held by the training process, so two trainings never share a directory

Every file is written atomically (see `gpt_keras.files`), so a crash leaves the previous state intact.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shutil
import zipfile
from pathlib import Path

import keras

from gpt_keras.core import layers as _layers  # noqa: F401  (registers the custom layers for loading)
from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.core.data import DataError, Vocabulary
from gpt_keras.runs.files import atomic_path, read_json, write_json

CONFIG, VOCAB, DATA, TOKENS, STATE, MODEL, HISTORY, LOCK = (
    "config.json", "vocab.json", "data.json", "tokens.npz", "state.json", "model.keras", "history.json", "run.lock")
LOGS, CHECKPOINTS = "logs", "checkpoints"


class RunError(RuntimeError):
    """A run directory is missing, incomplete, in use, or holds a file that cannot be read."""


def new_run_dir(runs_dir: str | Path, name: str | None = None) -> Path:
    """Creates a fresh run directory (`run-YYYYmmdd-HHMMSS` unless named); never reuses an existing one."""
    runs_dir = Path(runs_dir)
    base = name or _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    if name is not None and (not name.strip() or Path(name).name != name or name in (".", "..")):
        raise RunError(f"--name must be a plain directory name, got {name!r}")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ["", *(f"-{n}" for n in range(2, 1000))]:
        candidate = runs_dir / f"{base}{suffix}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if name is not None:
                raise RunError(f"{candidate}: a run with this name already exists; use --resume to continue "
                               "it or choose another --name") from None
    raise RunError(f"{runs_dir}: too many runs named {base}")


def latest_run(runs_dir: str | Path) -> Path:
    """The most recently changed run directory under `runs_dir` (for `--resume` without `--run`)."""
    runs_dir = Path(runs_dir)
    runs = [path for path in runs_dir.glob("*") if (path / CONFIG).is_file()] if runs_dir.is_dir() else []
    if not runs:
        raise RunError(f"{runs_dir}: no run to resume; train one first or pass --run DIR")
    return max(runs, key=lambda path: (path / STATE).stat().st_mtime if (path / STATE).exists()
               else (path / CONFIG).stat().st_mtime)


def resume_target(runs_dir: str | Path, name: str | None = None, run_dir: str | Path | None = None) -> Path:
    """The run `--resume` continues: `run_dir`, else `runs_dir/name`, else the latest run in `runs_dir`.

    Raises:
        RunError: there is no such run, or the directory is not a run (no config.json).
    """
    if run_dir is not None:
        target = Path(run_dir)
    elif name is not None:
        target = Path(runs_dir) / name
    else:
        target = latest_run(runs_dir)
    if not (target / CONFIG).is_file():
        raise RunError(f"{target}: not a run directory (no {CONFIG}); nothing to resume")
    return target


def read_data_info(run_dir: str | Path) -> dict:
    """The run's data.json (where its reviews came from), or {} if it is missing or unreadable."""
    try:
        info = read_json(Path(run_dir) / DATA, "data description", RunError)
    except RunError:
        return {}
    return info if isinstance(info, dict) else {}


class RunLock:
    """An exclusive lock on a run directory, held while a process trains in it.

    The operating system releases it when the process ends, even on SIGKILL, so a crashed run can
    be resumed at once, while a second live training in the same directory is refused.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._handle = None

    def __enter__(self) -> "RunLock":
        import fcntl

        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise RunError(f"{self.path.parent}: in use by another training process (pid {owner}); "
                           "wait for it to finish or use another run directory") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        import fcntl

        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves a full `.keras` model atomically (a reader never sees a half-written zip)."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    return Path(path)


def load_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Loads a `.keras` model, turning Keras' deep errors on bad files into one clear `RunError`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: model file not found")
    if not zipfile.is_zipfile(path):
        raise RunError(f"{path}: not a Keras model archive (corrupt or truncated file)")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many types (ValueError, KeyError, OSError, zipfile errors)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RunError(f"{path}: cannot load the model, the file is corrupt, truncated or from another "
                       f"program ({type(error).__name__}: {first_line[:200]})") from None


@dataclasses.dataclass
class RunState:
    """What `state.json` holds: the last finished epoch and what a `.keras` checkpoint leaves out.

    Attributes:
        epoch: epochs finished (1 after the first).
        checkpoint: the full model (weights and optimizer) after that epoch, relative to the run.
        global_step: TensorBoard's batch counter, so a resumed run's curves continue.
        rng_state: the `TextGenerator`'s random-generator state, so its samples continue.
        seed_states: the dropout layers' random-generator states.
        history: the loss (and any metric) per epoch so far.
    """

    epoch: int
    checkpoint: str
    global_step: int | None = None
    rng_state: dict | None = None
    seed_states: list | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def write(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / STATE, dataclasses.asdict(self))

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunState | None":
        """The run's resume state, or None if no epoch has finished yet."""
        path = Path(run_dir) / STATE
        if not path.exists():
            return None
        values = read_json(path, "resume state", RunError)
        if not isinstance(values, dict) or not isinstance(values.get("epoch"), int) or "checkpoint" not in values:
            raise RunError(f"{path}: not a gpt-keras resume state (needs 'epoch' and 'checkpoint')")
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def read_config(path: str | Path) -> GPTConfig:
    """A saved `config.json` (a run's, or one given with `--config`)."""
    return GPTConfig.from_dict(read_json(path, "config", ConfigError), source=str(path))


def read_vocabulary(path: str | Path) -> Vocabulary:
    """A saved `vocab.json`: the words in index order, padding and `[UNK]` first."""
    path = Path(path)
    words = read_json(path, "vocabulary", DataError)
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise DataError(f"{path}: a vocabulary is a JSON list of strings")
    try:
        return Vocabulary(tuple(words))
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


@dataclasses.dataclass
class Run:
    """A trained run loaded back: its model, vocabulary and config."""

    path: Path
    model: keras.Model
    vocab: Vocabulary
    config: GPTConfig

    def text_generator(self, seed: int | None = None, method: str = "cached", print_fn=print, top_k=None):
        """A `TextGenerator` bound to this run's model, for generating on demand."""
        generator = TextGenerator(self.vocab, top_k, seed=seed, method=method, every_epoch=False, print_fn=print_fn,
                                  prompt=self.config.generate_prompt, max_tokens=self.config.generate_max_tokens,
                                  temperature=self.config.generate_temperature)
        generator.set_model(self.model)
        return generator


def load_run(path: str | Path) -> Run:
    """Loads a run directory: the final model, or the last checkpoint if training did not finish.

    Raises:
        RunError: the directory or one of its files is missing or unreadable; the message names it.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: run directory not found")
    try:
        config = read_config(path / CONFIG)
        vocab = read_vocabulary(path / VOCAB)
    except (ConfigError, DataError) as error:
        raise RunError(str(error)) from None
    model_path = path / MODEL
    if not model_path.exists():
        state = RunState.read(path)
        if state is None:
            raise RunError(f"{path}: no model.keras and no finished epoch yet; nothing to load")
        model_path = path / state.checkpoint
    model = load_model(model_path, compile=False)
    if model.get_layer("probabilities").units != len(vocab):
        raise RunError(f"{path}: the model predicts {model.get_layer('probabilities').units} words but "
                       f"{VOCAB} has {len(vocab)}")
    return Run(path=path, model=model, vocab=vocab, config=config)


def remove_run_dir(run_dir: str | Path) -> None:
    """Deletes a run that failed before finishing any epoch, so no half-written run is left behind."""
    shutil.rmtree(run_dir, ignore_errors=True)


def write_run_files(run_dir: Path, config: GPTConfig, vocab: Vocabulary, data_info: dict) -> None:
    """The files a run needs before its first epoch: config, vocabulary and data description."""
    write_json(run_dir / CONFIG, config.to_dict())
    write_json(run_dir / VOCAB, list(vocab.words))
    write_json(run_dir / DATA, data_info)
