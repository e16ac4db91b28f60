"""Memory before allocation: what a model will need, from its config alone, checked before anything is made.

Each size limit in `gpt_keras.core.checks` holds one flag alone, but memory is a product of them:
`--embedding-dim 65536 --feed-forward-dim 262144` is one 68 GB weight matrix, and a `model.keras`, a
GPT-2 folder or a `tokens.npz` can claim any size in a few bytes. So every entry point estimates the
bytes first, from the config wherever it comes from (flags, `config.json`, the config inside a model
archive, a GPT-2 `config.json`, an `.npz` header), and `check_fits` refuses with one line naming the
estimate and the memory this machine has available, before any data is loaded or any layer is built.

The estimate counts what grows with the config (float32 throughout, which mixed precision never
exceeds): the parameters; for training their gradients and Adam's two slots, and the activations of
one batch kept for the backward pass; for generation the key/value cache and the distribution over the
vocabulary that each step keeps. It is an order of magnitude, meant to stop a typo or a hostile file
at once, not to plan a GPU. No Keras, no TensorFlow: the command line calls it before importing them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.core.config import ConfigError, GPTConfig

FLOAT = 4  # bytes of a float32 weight or activation
DISTRIBUTION = 8  # bytes per word of a kept next-word distribution (float64, as sampling computes it)
MAX_CONFIG_BYTES = 16 << 20  # a model archive's config.json: 256 blocks take about 1 MB
MAX_WORD_CHARS = 10_000  # one vocabulary word: the longest real one is far shorter
BOMB_FLOOR, BOMB_RATIO = 256 << 20, 100  # an archive member above 256 MB inflating over 100x: a decompression bomb
# The GPT's layer classes (a Dense only as the output layer of early runs): any other is no gpt-keras model.
GPT_LAYERS = {"InputLayer", "TokenAndPositionEmbedding", "TransformerBlock", "SoftmaxDense", "Dense"}


class NotEnoughMemory(GPTKerasError, ValueError):
    """A config, model or data file needs more memory than this machine has; says how much of each."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes a piece of work needs, by part (for the message), and their total."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {size_text(size)}" for name, size in self.parts.items() if size)


def size_text(size: float) -> str:
    """Bytes for people: 68.7 GB, 512.0 MB (decimal units, as `free -h --si` and disk sizes)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size / 1e3:,.1f} kB" if size >= 1e3 else f"{int(size)} bytes"


# --- the model's arithmetic ------------------------------------------------------------------------------

def block_parameters(config: GPTConfig) -> int:
    """One transformer block: query, key and value projections, the output projection, two layer
    norms and the two feed-forward layers (`build_gpt`'s count, layer by layer)."""
    d, heads = config.embedding_dim, config.n_heads * config.key_dim
    attention = 3 * (d * heads + heads) + heads * d + d
    return attention + 2 * 2 * d + d * config.feed_forward_dim + config.feed_forward_dim \
        + config.feed_forward_dim * d + d


def parameter_count(config: GPTConfig) -> int:
    """The GPT's parameters from its config alone: `build_gpt(config).count_params()` without building it.

    Example:
        >>> parameter_count(GPTConfig())   # the lecture's 5,809,168
        5809168
    """
    d, vocab = config.embedding_dim, config.vocab_size
    embeddings = vocab * d + config.max_len * d
    return embeddings + config.n_blocks * block_parameters(config) + d * vocab + vocab


def _activations_per_token(config: GPTConfig) -> int:
    """Floats one position keeps for the backward pass: per block the residual stream and its norms,
    queries, keys, values, the attention scores and their softmax, the feed-forward layer; then the
    probabilities over the vocabulary. Each kept with its gradient."""
    d, heads = config.embedding_dim, config.n_heads
    block = 6 * d + 4 * heads * config.key_dim + 3 * heads * config.max_len + 2 * config.feed_forward_dim
    return 2 * (config.n_blocks * block + 2 * config.vocab_size + d)


def training_estimate(config: GPTConfig) -> Estimate:
    """Training: weights, their gradients and Adam's two slots (4 copies), and one batch's activations."""
    parameters = parameter_count(config) * FLOAT
    activations = config.batch_size * config.max_len * _activations_per_token(config) * FLOAT
    return Estimate({"parameters": parameters, "gradients and Adam's two slots": 3 * parameters,
                     f"activations of a batch of {config.batch_size:,}": activations})


def generation_estimate(config: GPTConfig, max_tokens: int, samples: int = 1, keep_steps: bool = True) -> Estimate:
    """Sampling `samples` texts of `max_tokens` tokens at once: the weights, each block's key/value cache
    and one window's activations per text, and the distributions over the vocabulary: every step's when
    they are kept (the lecture's `info`, one per generated word), else the few one step works with
    (the model's, the tempered one, the filtered one, its cumulative sum)."""
    cache = config.n_blocks * 2 * config.n_heads * config.key_dim * config.max_len * FLOAT
    window = config.max_len * _activations_per_token(config) // 2 * FLOAT
    step = config.vocab_size * DISTRIBUTION + config.n_heads * config.max_len * FLOAT
    kept = (f"{max_tokens:,} steps' distributions", max_tokens * step) if keep_steps else ("one step's distributions",
                                                                                           6 * step)
    return Estimate({"parameters": parameter_count(config) * FLOAT,
                     "key/value cache and activations": samples * (cache + window), kept[0]: samples * kept[1]})


# --- what the machine has --------------------------------------------------------------------------------

def available_memory() -> int | None:
    """Bytes this process could still allocate: the system's available memory (psutil), lowered to the
    room left under a container's cgroup limit; None where neither can be read (then nothing is refused)."""
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except (ImportError, OSError, AttributeError):
        available = _meminfo_available()
    room = _cgroup_room()
    if room is not None:
        available = room if available is None else min(available, room)
    return available


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """cgroup v2: memory.max minus memory.current ("max" means no limit)."""
    folder = Path("/sys/fs/cgroup")
    try:
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((folder / "memory.current").read_text().strip()), 0)
    except (OSError, ValueError):
        return None


def check_fits(estimate: Estimate, what: str, source: str = "", advice: str = "") -> Estimate:
    """Raises `NotEnoughMemory` (one line: the estimate, its parts and the available memory) when
    `estimate` exceeds what this machine has available; returns it otherwise."""
    available = available_memory()
    if available is not None and estimate.total > available:
        where = f"{source}: " if source else ""
        raise NotEnoughMemory(f"{where}{what} needs about {size_text(estimate.total)} of memory "
                              f"({estimate.describe()}), more than the {size_text(available)} this machine has "
                              f"available{'; ' + advice if advice else ''}")
    return estimate


def check_training_fits(config: GPTConfig, source: str = "") -> Estimate:
    """`training_estimate` checked against the machine, before any data is read or any layer built."""
    return check_fits(training_estimate(config), "training this model", source,
                      "make the model (--embedding-dim, --feed-forward-dim, --n-heads x --key-dim, --vocab-size, "
                      "--n-blocks, --max-len) or the --batch-size smaller")


def check_generation_fits(config: GPTConfig, max_tokens: int, samples: int = 1, source: str = "",
                          keep_steps: bool = True) -> Estimate:
    """`generation_estimate` checked against the machine, before the model is loaded."""
    return check_fits(generation_estimate(config, max_tokens, samples, keep_steps), f"sampling {samples:,} text(s) "
                      f"of {max_tokens:,} tokens from this model", source, "ask for fewer samples or tokens")


# --- a model archive, before Keras opens it --------------------------------------------------------------

def check_model_archive(path: str | Path, error: type[Exception] = NotEnoughMemory) -> GPTConfig | None:
    """Reads the config inside a `.keras` archive (never more than `MAX_CONFIG_BYTES` of it) and checks,
    before Keras builds anything: it is a gpt-keras GPT; its sizes are within the limits `config.json`
    is held to; its weights file does not inflate past what those sizes need (with Adam's slots); and
    the model plus the weights file read into memory (as Keras does) fit this machine.

    Returns the model's sizes as a `GPTConfig` (its other fields are defaults), or None for an archive
    it cannot read, which Keras then refuses with its own reason.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            config_info = members.get("config.json")
            too_big = config_info is not None and config_info.file_size > MAX_CONFIG_BYTES
            text = None if config_info is None or too_big else archive.open(config_info).read(MAX_CONFIG_BYTES + 1)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
            RuntimeError):
        return None  # unreadable: Keras' own loading names the damage, before it could build anything
    if too_big:
        raise error(f"{path}: its config.json inflates to {size_text(config_info.file_size)}; a gpt-keras model's "
                    f"takes under {size_text(MAX_CONFIG_BYTES)}")
    sizes = archive_sizes(text, path, error) if text is not None else None
    if sizes is None:
        return None
    weights = sum(info.file_size for name, info in members.items() if name != "config.json")
    needed = parameter_count(sizes) * FLOAT
    most = 3 * needed + needed // 4 + (1 << 20)  # weights and Adam's two slots, a quarter and 1 MB for HDF5's own
    if weights > most:
        raise error(f"{path}: its files inflate to {size_text(weights)}, but a model of its config needs at most "
                    f"{size_text(most)} (weights and optimizer); the archive is damaged or not a gpt-keras model")
    check_fits(Estimate({"parameters": needed, "the weights file read into memory": weights}),
               "loading this model", str(path))
    return sizes


def archive_sizes(config_text: bytes, path: Path, error: type[Exception]) -> GPTConfig | None:
    """The GPT's sizes from the config.json inside a model archive, held to `GPTConfig`'s limits."""
    try:
        config = json.loads(config_text)
        layers = config["config"]["layers"]
        if not isinstance(layers, list):
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):
        return None  # not a functional model's config: Keras' loading names it (and builds nothing from it)
    fields: dict = {}
    n_blocks, names = 0, set()
    for layer in layers:
        kind = layer.get("class_name") if isinstance(layer, dict) else None
        values = layer.get("config") if isinstance(layer, dict) else None
        name = values.get("name") if isinstance(values, dict) else None
        if not isinstance(name, str) or not isinstance(kind, str):  # a list there would not even hash
            raise error(f"{path}: a Keras model, but not a gpt-keras GPT (a layer's name or class is not text: "
                        f"{str(name)[:80]!r}, {str(kind)[:80]!r})")
        if kind not in GPT_LAYERS or not isinstance(values, dict) or (kind == "Dense" and name != "probabilities"):
            raise error(f"{path}: a Keras model, but not a gpt-keras GPT (layer {str(name)[:80]!r} is a "
                        f"{str(kind)[:80]})")
        names.add(name)
        if kind == "TokenAndPositionEmbedding":
            _take(fields, values, {"max_len": "max_len", "vocab_size": "vocab_size", "embed_dim": "embedding_dim"})
        elif kind == "TransformerBlock":
            n_blocks += 1
            _take(fields, values, {"num_heads": "n_heads", "key_dim": "key_dim", "embed_dim": "embedding_dim",
                                   "ff_dim": "feed_forward_dim"})
        elif kind in ("SoftmaxDense", "Dense"):
            _take(fields, values, {"units": "vocab_size"})
    if not {"embedding", "probabilities"} <= names:
        raise error(f"{path}: a Keras model, but not a gpt-keras GPT (no 'embedding' and 'probabilities' layers)")
    fields["n_blocks"] = max(n_blocks, 1)
    try:
        return GPTConfig.from_dict(fields, source=f"{path} (the config inside the archive)")
    except ConfigError as exc:
        raise error(str(exc)) from None


def _take(fields: dict, values: dict, names: dict) -> None:
    """Copies a layer's sizes into config fields, keeping the largest when layers differ (an upper bound)."""
    for key, field in names.items():
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(fields.get(field), int):
            value = max(value, fields[field])
        fields[field] = value if value is not None else fields.get(field)


# --- token archives --------------------------------------------------------------------------------------

def npy_header(archive: zipfile.ZipFile, name: str, error: type[Exception], path) -> tuple[tuple, object, int]:
    """(shape, dtype, data bytes) of one array in an `.npz`, from its header alone; the data must be
    as long as the header says (a header claiming 10**12 tokens in a small file is refused here)."""
    import numpy as np

    try:
        info = archive.getinfo(name)
        with archive.open(info) as handle:
            version = np.lib.format.read_magic(handle)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                raise ValueError(f"unknown .npy version {version}")
            shape, _, dtype = reader[version](handle, max_header_size=10_000)
            header = handle.tell() if hasattr(handle, "tell") else None
    except KeyError:
        raise error(f"{path}: not a token archive written by gpt-keras (no {name} inside)") from None
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError) as exc:
        raise error(f"{path}: not a token archive written by gpt-keras ({name}: {type(exc).__name__})") from None
    count = math.prod(shape)
    data = count * dtype.itemsize
    stored = info.file_size - (header or 0)
    if data > stored:
        raise error(f"{path}: {name} claims {count:,} values of {dtype.itemsize} bytes ({size_text(data)}) but holds "
                    f"{size_text(stored)}; the file is damaged or not written by gpt-keras")
    return shape, dtype, data


def check_token_archive(handle: BinaryIO, path: str | Path, error: type[Exception]) -> None:
    """Before a `tokens.npz` (open in `handle`) is read: its arrays' headers agree with their sizes, no
    member inflates a hundredfold past 256 MB (as Keras refuses for models), no word is longer than
    `MAX_WORD_CHARS`, and what reading them takes (the ids, then as int32; the vocabulary as NumPy strings,
    then Python ones) fits this machine."""
    try:
        with zipfile.ZipFile(handle) as archive:
            for info in archive.infolist():
                if info.file_size > BOMB_FLOOR and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
                    raise error(f"{path}: {info.filename} inflates from {size_text(info.compress_size)} to "
                                f"{size_text(info.file_size)}; refused as a likely decompression bomb")
            _, token_type, token_bytes = npy_header(archive, "tokens.npy", error, path)
            word_shape, word_type, word_bytes = npy_header(archive, "vocabulary.npy", error, path)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error):
        return  # not a readable zip: NumPy's reading names the problem, and allocates nothing
    finally:
        handle.seek(0)
    count = math.prod(word_shape)
    per_word = word_type.itemsize // 4 if word_type.kind == "U" else word_type.itemsize
    if per_word > MAX_WORD_CHARS:
        raise error(f"{path}: the vocabulary's longest word has {per_word:,} characters; a word of over "
                    f"{MAX_WORD_CHARS:,} is no word (the file is damaged or not written by gpt-keras)")
    tokens = token_bytes + token_bytes * FLOAT // max(token_type.itemsize, 1)  # as read, then as int32
    words = word_bytes + count * (64 + per_word)  # NumPy's fixed-width strings, then Python's (with their headers)
    check_fits(Estimate({"token ids": tokens, "vocabulary": words}), "reading these tokens", str(path))
