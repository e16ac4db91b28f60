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
    state.json         the last finished epoch, its checkpoint, TensorBoard step and sampler state, and
                       the epoch model.keras holds (so a final save cut short is noticed, see `load_run`)
    model.keras        the final model
    history.json       loss per epoch
    run.lock           held by the training process, so two trainings never share a directory (`runs/lock.py`)

Every file is written atomically (see `gpt_keras.runs.files`), so a crash leaves the previous state intact.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
import shutil
import zipfile
from pathlib import Path

import keras

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.core import layers as _layers  # noqa: F401  (registers the custom layers for loading)
from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.core.data import DataError, Vocabulary
from gpt_keras.runs.memory import check_model_archive
from gpt_keras.runs.files import (NAME_MAX, atomic_path, check_regular_file, one_line, open_regular,
                                  read_json, write_json)

CONFIG, VOCAB, DATA, TOKENS, STATE, MODEL, HISTORY, LOCK = (
    "config.json", "vocab.json", "data.json", "tokens.npz", "state.json", "model.keras", "history.json", "run.lock")
LOGS, CHECKPOINTS = "logs", "checkpoints"


class RunError(GPTKerasError, RuntimeError):
    """A run directory is missing, incomplete, in use, or holds a file that cannot be read."""


def new_run_dir(runs_dir: str | Path, name: str | None = None) -> Path:
    """Creates a fresh run directory (`run-YYYYmmdd-HHMMSS` unless named); never reuses an existing one."""
    runs_dir = Path(runs_dir)
    base = name or _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    check_run_name(name)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"{one_line(runs_dir)}: cannot create the runs directory ({error.strerror})") from None
    for suffix in ["", *(f"-{n}" for n in range(2, 1000))]:
        candidate = runs_dir / f"{base}{suffix}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if name is not None:
                raise RunError(f"{candidate}: a run with this name already exists; use --resume to continue "
                               "it or choose another --name") from None
        except OSError as error:  # no free inodes, a read-only or virtual file system (/proc, /sys)
            raise RunError(f"{one_line(candidate)}: cannot create the run directory ({error.strerror or error})"
                           ) from None
    raise RunError(f"{runs_dir}: too many runs named {base}")


def check_run_name(name: str | None) -> None:
    """A run name is one plain directory name of printable characters (no ESC, newline or path separator)."""
    if name is None:
        return
    if not isinstance(name, str) or not name.strip() or Path(name).name != name or name in (".", "..") \
            or "\\" in name or not name.isprintable():
        raise RunError(f"--name must be a plain directory name of printable characters, got {one_line(repr(name))}")
    if len(os.fsencode(name)) > NAME_MAX - 8:  # room for a "-2" suffix and the file system's limit
        raise RunError(f"--name is {len(os.fsencode(name))} bytes long; the limit is {NAME_MAX - 8}")


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


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves a full `.keras` model atomically (a reader never sees a half-written zip)."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    return Path(path)


def load_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Loads a `.keras` model, turning Keras' deep errors on bad files into one clear `RunError`."""
    path = check_regular_file(path, "model", RunError)
    if not zipfile.is_zipfile(path):
        raise RunError(f"{path}: not a Keras model archive (corrupt or truncated file)")
    check_model_archive(path, RunError)  # its config's sizes and inflated weights, before Keras builds them
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many types (ValueError, KeyError, OSError, zipfile errors)
        raise RunError(f"{path}: cannot load the model, the file is corrupt, truncated or from another "
                       f"program ({type(error).__name__}: {one_line(error, 200)})") from None
    if not _is_gpt(model):
        raise RunError(f"{path}: a Keras model, but not a gpt-keras GPT (it needs an 'embedding' layer of type "
                       "TokenAndPositionEmbedding, TransformerBlock layers and a Dense 'probabilities' layer)")
    _check_one_precision(model, path)
    return model


def _is_gpt(model) -> bool:
    """The layers generation reads, by name and by type: a layer of the right name and another type would fail
    later, deep inside sampling."""
    layers = {layer.name: layer for layer in getattr(model, "layers", ())}
    return (isinstance(layers.get("embedding"), _layers.TokenAndPositionEmbedding)
            and isinstance(layers.get("probabilities"), keras.layers.Dense)
            and any(isinstance(layer, _layers.TransformerBlock) for layer in layers.values()))


def _check_one_precision(model: keras.Model, path: Path) -> None:
    """The embedding and the blocks compute in one dtype policy, as `build_gpt` makes them (only the output
    layer may differ); an archive whose config says otherwise would load and then fail in the middle of
    generating, adding a bfloat16 tensor to a float32 one."""
    policies = {layer.name: getattr(layer.dtype_policy, "name", None) for layer in model.layers
                if layer.name == "embedding" or layer.name.startswith("transformer_block")}
    if len(set(policies.values())) > 1:
        found = ", ".join(f"{name} {policy}" for name, policy in policies.items())
        raise RunError(f"{path}: its layers have different dtype policies ({one_line(found, 200)}); a gpt-keras "
                       "model has one, so the file was changed or is from another program")


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
        model_epoch: the epoch `model.keras` holds, recorded once it is saved; None before the first final
            save (and in runs from before it was recorded). Lower than `epoch` when a kill cut the final
            save short, which `load_run` notices and `gpt_keras.runs.repair` mends.
    """

    epoch: int
    checkpoint: str
    global_step: int | None = None
    rng_state: dict | None = None
    seed_states: list | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    model_epoch: int | None = None

    def write(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / STATE, dataclasses.asdict(self))

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunState | None":
        """The run's resume state, or None if no epoch has finished yet."""
        path = Path(run_dir) / STATE
        if not os.path.lexists(path):
            return None
        values = read_json(path, "resume state", RunError)
        if not isinstance(values, dict) or "epoch" not in values or "checkpoint" not in values:
            raise RunError(f"{path}: not a gpt-keras resume state (needs 'epoch' and 'checkpoint')")
        known = {field.name for field in dataclasses.fields(cls)}
        for name, value in values.items():
            problem = _state_field_problem(name, value) if name in known else None
            if problem:
                raise RunError(f"{path}: field '{name}' {problem}, got {one_line(repr(value), 80)}")
        return cls(**{key: value for key, value in values.items() if key in known})


INT64_MAX = 2**63 - 1  # Keras, NumPy and TensorBoard hold epochs and steps in 64-bit integers


def _is_int(value, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= INT64_MAX


def _state_field_problem(name: str, value) -> str | None:
    """Why a `state.json` field cannot be used (None if it can)."""
    if name == "epoch":
        return None if _is_int(value, 1) else f"must be an integer of at least 1 and at most {INT64_MAX:,}"
    if name == "checkpoint":
        ok = isinstance(value, str) and value.startswith(CHECKPOINTS + "/") and value.endswith(".keras") \
            and ".." not in Path(value).parts and not Path(value).is_absolute() and value.isprintable()
        return None if ok else f"must name a file in {CHECKPOINTS}/ of the run"
    if name == "model_epoch":
        return None if value is None or _is_int(value, 1) else "must be an integer of at least 1 or null"
    if name == "global_step":
        return None if value is None or _is_int(value) else f"must be an integer from 0 to {INT64_MAX:,} or null"
    if name == "rng_state":
        return None if value is None or _valid_rng_state(value) else "must be a numpy bit-generator state"
    if name == "seed_states":
        ok = value is None or (isinstance(value, list) and all(
            isinstance(item, list) and all(_is_int(number) and number < 2 ** 64 for number in item) for item in value))
        return None if ok else "must be a list of lists of non-negative integers"
    if name == "history":
        ok = isinstance(value, dict) and all(isinstance(values, list) and all(
            _is_finite_float(number) for number in values) for values in value.values())
        return None if ok else "must map each metric to a list of finite numbers"
    return None


def _is_finite_float(number) -> bool:
    """A number a float holds (an integer of 400 digits is not one: float() overflows)."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return False
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _valid_rng_state(value) -> bool:
    import numpy as np

    if not isinstance(value, dict) or value.get("bit_generator") != "PCG64":
        return False
    try:
        np.random.default_rng().bit_generator.state = value
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


# Fields newer than some saved runs, with the value every run before them had: runs before `recipe` were "fast".
FIELDS_ADDED_LATER = {"recipe": "fast"}


def read_config(path: str | Path, complete: bool = False) -> GPTConfig:
    """A saved `config.json` (a run's, or one given with `--config`).

    A run's own config (`complete=True`) must hold every field: a missing one would silently take
    today's default, which may not be what the run was trained with.
    """
    values = read_json(path, "config", ConfigError)
    if complete and isinstance(values, dict):
        values = {**FIELDS_ADDED_LATER, **values}
        missing = [field.name for field in dataclasses.fields(GPTConfig) if field.name not in values]
        if missing:
            raise ConfigError(f"{path}: a run's config needs every field; missing: {', '.join(missing)}")
    return GPTConfig.from_dict(values, source=str(path))


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
    """A trained run loaded back: its model, vocabulary and config.

    `model_file` is the file the model came from, relative to the run (`model.keras`, or a checkpoint).
    `note` is one plain line to show the user when that is not simply `model.keras` as training left it
    (a stale one passed over for the last checkpoint, say); None otherwise.
    """

    path: Path
    model: keras.Model
    vocab: Vocabulary
    config: GPTConfig
    model_file: str = MODEL
    note: str | None = None

    def text_generator(self, seed: int | None = None, method: str = "cached", print_fn=print, top_k=None):
        """A `TextGenerator` bound to this run's model, for generating on demand."""
        generator = TextGenerator(self.vocab, top_k, seed=seed, method=method, every_epoch=False, print_fn=print_fn,
                                  prompt=self.config.generate_prompt, max_tokens=self.config.generate_max_tokens,
                                  temperature=self.config.generate_temperature)
        generator.set_model(self.model)
        return generator


def load_run(path: str | Path) -> Run:
    """Loads a run directory: the model of its last finished epoch, its vocabulary and config.

    That model is `model.keras`, or the last checkpoint if training did not finish. A `model.keras`
    older than the last finished epoch (a kill cut the final save short) is passed over for that
    epoch's checkpoint, and `Run.note` says so (`gpt_keras.runs.repair` then replaces the stale file).

    Raises:
        RunError: the directory or one of its files is missing or unreadable, or `config.json`
            contradicts the model; the message names the file (and the field).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: run directory not found")
    try:
        config = read_config(path / CONFIG, complete=True)
        vocab = read_vocabulary(path / VOCAB)
    except (ConfigError, DataError) as error:
        raise RunError(str(error)) from None
    model, model_file, note = _last_epoch_model(path)
    check_config_matches_model(config, model, path / CONFIG, model_file)
    if model.get_layer("probabilities").units != len(vocab):
        raise RunError(f"{path}: the model predicts {model.get_layer('probabilities').units} words but "
                       f"{VOCAB} has {len(vocab)}")
    return Run(path=path, model=model, vocab=vocab, config=config, model_file=model_file, note=note)


def _last_epoch_model(run_dir: Path) -> tuple[keras.Model, str, str | None]:
    """(the model of the run's last finished epoch, its file relative to the run, a note or None)."""
    state = RunState.read(run_dir)
    if not (run_dir / MODEL).exists():
        if state is None:
            raise RunError(f"{run_dir}: no model.keras and no finished epoch yet; nothing to load")
        return load_model(run_dir / state.checkpoint, compile=False), state.checkpoint, None
    older = stale_model_reason(run_dir, state)
    if older is None:
        return load_model(run_dir / MODEL, compile=False), MODEL, None
    try:
        model = load_model(run_dir / state.checkpoint, compile=False)
    except RunError as error:
        return (load_model(run_dir / MODEL, compile=False), MODEL,
                f"{run_dir / MODEL} {older}, and that epoch's checkpoint cannot be loaded ({one_line(error, 200)}); "
                f"using the older {MODEL}")
    return model, state.checkpoint, f"{run_dir / MODEL} {older}; loaded {state.checkpoint} instead"


def stale_model_reason(run_dir: str | Path, state: RunState | None) -> str | None:
    """Why `model.keras` is older than the run's last finished epoch, or None if it is not (or cannot be told).

    Training saves model.keras after the last epoch's checkpoint and then records that epoch in
    `state.json` (`model_epoch`); a kill in between leaves the record of an earlier epoch. Runs without
    the record, and a model.keras copied over by hand, are told by the save times Keras writes into
    both archives (`metadata.json`, to the second).
    """
    if state is None:
        return None
    run_dir = Path(run_dir)
    if state.model_epoch is not None and state.model_epoch < state.epoch:
        return (f"holds epoch {state.model_epoch}, but the run finished epoch {state.epoch} "
                "(the final save was cut short)")
    model_saved, checkpoint_saved = _date_saved(run_dir / MODEL), _date_saved(run_dir / state.checkpoint)
    if model_saved is not None and checkpoint_saved is not None and model_saved < checkpoint_saved:
        return (f"was saved at {model_saved}, before {state.checkpoint} of the run's last finished epoch "
                f"({state.epoch}, saved at {checkpoint_saved})")
    return None


def _date_saved(path: Path) -> str | None:
    """The save time Keras writes into a `.keras` archive ("2026-01-31@12:00:00", which sorts as it reads)."""
    try:
        with open_regular(path, "model", RunError) as handle, zipfile.ZipFile(handle) as archive, \
                archive.open("metadata.json") as member:
            saved = json.loads(member.read(4096)).get("date_saved")
        return saved if isinstance(saved, str) and re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", saved) else None
    except (RunError, OSError, KeyError, ValueError, AttributeError, RuntimeError, zipfile.BadZipFile):
        return None  # an unreadable archive is reported when it is loaded


def record_final_model(run_dir: str | Path) -> None:
    """Records in state.json that model.keras, just saved (or replaced by `gpt_keras.runs.repair`), holds the
    last finished epoch (see `stale_model_reason`)."""
    state = RunState.read(run_dir)
    if state is not None and state.model_epoch != state.epoch:
        dataclasses.replace(state, model_epoch=state.epoch).write(run_dir)


# The fields of config.json that the model's own layers (their configs, saved inside model.keras) also hold:
# {layer name: {the layer's get_config key: the GPTConfig field}}; every "transformer_block*" is a block.
_MODEL_FIELDS = {
    "embedding": {"max_len": "max_len", "vocab_size": "vocab_size", "embed_dim": "embedding_dim"},
    "transformer_block": {"num_heads": "n_heads", "key_dim": "key_dim", "embed_dim": "embedding_dim",
                          "ff_dim": "feed_forward_dim", "dropout_rate": "dropout_rate", "epsilon": "layer_norm_epsilon"},
    "probabilities": {"units": "vocab_size"},
}


def check_config_matches_model(config: GPTConfig, model: keras.Model, config_path: str | Path, model_name) -> None:
    """`config.json` must describe the model beside it: a field that contradicts the model's own config
    (the context window generation crops to, say) is an error naming the field and both values, never
    silently used.

    Raises:
        RunError: naming config.json, the field, its value and the model's (`model_name`, its file).
    """
    layers = getattr(model, "layers", ())
    found = {"n_blocks": sum(layer.name.startswith("transformer_block") for layer in layers)}
    for layer in layers:
        kind = "transformer_block" if layer.name.startswith("transformer_block") else layer.name
        layer_config = layer.get_config() if kind in _MODEL_FIELDS else {}
        for key, field in _MODEL_FIELDS.get(kind, {}).items():
            if key in layer_config:
                found.setdefault(field, layer_config[key])
    for field, value in found.items():
        if value != getattr(config, field):
            raise RunError(f"{config_path}: field '{field}' is {one_line(repr(getattr(config, field)), 60)}, but the "
                           f"model in {model_name} has {one_line(repr(value), 60)}; the two files are not from "
                           "the same run")


def remove_run_dir(run_dir: str | Path) -> None:
    """Deletes a run that failed before finishing any epoch, so no half-written run is left behind."""
    shutil.rmtree(run_dir, ignore_errors=True)


def write_run_files(run_dir: Path, config: GPTConfig, vocab: Vocabulary, data_info: dict) -> None:
    """The files a run needs before its first epoch: config, vocabulary and data description."""
    write_json(run_dir / CONFIG, config.to_dict())
    write_json(run_dir / VOCAB, list(vocab.words))
    write_json(run_dir / DATA, data_info)
