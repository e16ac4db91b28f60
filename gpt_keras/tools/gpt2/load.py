"""Loading GPT-2 (`TFGPT2LMHeadModel` and its tokenizer) from a hub name or a `save_pretrained` directory.

The lecture's Hugging Face path: `TFGPT2LMHeadModel.from_pretrained("gpt2")`. Offline, without a local
copy, loading fails at once with a message that says how to get the weights. Also here: which device
fine-tuning runs on and the dtype policy it uses.

Transformers' TensorFlow models need Keras 2 (`tf-keras`); importing them sets `TF_USE_LEGACY_KERAS=1`,
so TensorFlow's own Keras alias means Keras 2 from then on. gpt-keras itself imports `keras` (Keras 3)
only, which that setting does not touch, so both live in one process. `transformers` is imported inside
the functions: `import gpt_keras` stays fast and works without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import urllib.parse
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.runs.files import read_json, one_line


DEFAULT_MODEL = "gpt2"
FINETUNE_INFO = "gpt_keras_finetune.json"


PRECISION_CHOICES = ("auto", "on", "off")


class GPT2Error(GPTKerasError, RuntimeError):
    """A GPT-2 model or directory cannot be used; the message names it and what to do."""


class GPT2Unavailable(GPT2Error):
    """GPT-2's weights are neither on this machine nor reachable; the message says how to get them."""


@dataclasses.dataclass
class GPT2:
    """A loaded `TFGPT2LMHeadModel` with its tokenizer and where it came from."""

    model: object
    tokenizer: object
    source: str
    name: str
    finetune_info: dict | None = None
    _word_ids: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n_positions(self) -> int:
        return int(self.model.config.n_positions)

    @property
    def bos_id(self) -> int:
        token = self.tokenizer.bos_token_id
        return int(token if token is not None else self.model.config.bos_token_id)

    @property
    def eos_id(self) -> int:
        token = self.tokenizer.eos_token_id
        return int(token if token is not None else self.model.config.eos_token_id)

    def count_params(self) -> int:
        """Trainable and frozen weights, the tied input/output embedding counted once (gpt2: 124,439,808)."""
        return int(self.model.count_params())

    def word_ids(self, word: str) -> list[int]:
        """A word's tokens as it appears inside a text: with its leading space (cached)."""
        ids = self._word_ids.get(word)
        if ids is None:
            ids = self._word_ids[word] = list(self.tokenizer.encode(" " + word, add_special_tokens=False))
        return ids

    def token_label(self, token_id: int) -> str:
        """A token as one whitespace-free label: 'wine' starts a word, '##aly' continues one."""
        token_id = int(token_id)
        if token_id in self.tokenizer.all_special_ids:
            return self.tokenizer.convert_ids_to_tokens(token_id)
        text = self.tokenizer.decode([token_id])
        starts_word = text.startswith(" ") and text.strip() != ""
        body = text[1:] if starts_word else text
        body = "".join(_VISIBLE.get(c, "␣" if c.isspace() else c) for c in body) or "∅"
        return body if starts_word else "##" + body


_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "↵"}


class TokenLabels(Mapping):
    """GPT-2's vocabulary as index -> label, for `gpt_keras.tools.viz` (labels made on demand)."""

    def __init__(self, gpt2: GPT2):
        self.gpt2 = gpt2

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)) and 0 <= index < len(self):
            return self.gpt2.token_label(int(index))
        raise KeyError(index)

    def __len__(self) -> int:
        return len(self.gpt2.tokenizer)

    def __iter__(self):
        return iter(range(len(self)))


def how_to_get(name: str) -> str:
    """The ways to make a hub model available offline, for error messages."""
    return (f"To get the weights: run once with a network connection (they are cached in ~/.cache/huggingface), "
            f"or `huggingface-cli download {name}` (fills the same cache), or on a machine with a network "
            f"`huggingface-cli download {name} --include '*.json' '*.txt' 'tf_model.h5' --local-dir models/{name}` "
            f"and pass `--gpt2 models/{name}` (any `save_pretrained` directory works, e.g. "
            "`gpt-keras finetune-gpt2 --out DIR`).")


def _offline_requested() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connection to the hub, so no network fails in seconds instead of a minute of retries."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; let the download try
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hides transformers' info and deprecation chatter (TF classes, weight-loading notes) while loading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _is_hub_id(text: str) -> bool:
    """`gpt2`, `distilgpt2` or `owner/name`; anything else (`./dir`, `/abs/dir`, `a/b/c`) is a directory."""
    return bool(_HUB_ID.match(text)) and not text.endswith((".", "-"))


def _check_extra_installed() -> None:
    """Transformers' TensorFlow GPT-2 needs the [gpt2] extra; without it, say so instead of an ImportError."""
    import importlib.util

    missing = [name for name in ("transformers", "tf_keras") if importlib.util.find_spec(name) is None]
    if missing:
        raise GPT2Unavailable(f"GPT-2 needs {' and '.join(missing)}, from the [gpt2] extra: "
                              'pip install "gpt-keras[gpt2]"')


def load_gpt2(name_or_path: str | Path = DEFAULT_MODEL, *, cache_dir: str | Path | None = None) -> GPT2:
    """Loads `TFGPT2LMHeadModel` and its tokenizer from a `save_pretrained` directory or a hub name.

    A directory that exists is always read as one. Otherwise the name is looked up in the local
    Hugging Face cache first, then downloaded unless `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`)
    is set or the hub cannot be reached.

    Args:
        name_or_path: `gpt2`, `distilgpt2` (or another GPT-2 on the hub), or a directory.
        cache_dir: the Hugging Face cache to use (default: `HF_HUB_CACHE` if set, else the library's,
            ~/.cache/huggingface/hub).

    Raises:
        GPT2Unavailable: a hub model is not cached and cannot be downloaded; says how to get it.
        GPT2Error: the directory is not a GPT-2 `save_pretrained` directory, or loading failed.
    """
    _check_extra_installed()
    text = str(name_or_path).strip()
    if not text:
        raise GPT2Error("--gpt2: give a model name (gpt2, distilgpt2) or a save_pretrained directory")
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None  # read now, not at import time
    path = Path(text).expanduser()
    if path.exists() or isinstance(name_or_path, Path) or not _is_hub_id(text):
        return _load_directory(path)
    return _load_hub(text, cache_dir)


def _load_directory(path: Path) -> GPT2:
    if not path.is_dir():
        raise GPT2Error(f"{path}: no such directory (--gpt2 takes a model name such as gpt2 or a directory "
                        "written by save_pretrained)")
    if not (path / "config.json").is_file():
        raise GPT2Error(f"{path}: not a save_pretrained directory (no config.json)")
    config = read_json(path / "config.json", "model config", GPT2Error)
    if not isinstance(config, dict):
        raise GPT2Error(f"{path / 'config.json'}: not a model config (a JSON object), got {type(config).__name__}")
    if config.get("model_type") != "gpt2":
        raise GPT2Error(f"{path}: holds a {one_line(repr(config.get('model_type')), 80)} model, not GPT-2")
    check_gpt2_fits(config, path)
    from transformers import AutoTokenizer, TFGPT2LMHeadModel

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = TFGPT2LMHeadModel.from_pretrained(path)
    except (OSError, ValueError, EnvironmentError, TypeError, KeyError, AttributeError, RecursionError) as error:
        raise GPT2Error(f"{path}: cannot load GPT-2 from it ({_first_line(error)})") from None
    info = None
    if (path / FINETUNE_INFO).is_file():
        try:
            info = read_json(path / FINETUNE_INFO, "fine-tuning record", GPT2Error)
        except GPT2Error:
            info = None
        info = info if isinstance(info, dict) else None
    return GPT2(model, tokenizer, str(path), path.name, info)


# GPT-2's size fields, the gpt-keras limit each is held to, and the default transformers gives a missing one.
_GPT2_SIZES = {"n_positions": ("max_len", 1024), "n_embd": ("embedding_dim", 768), "n_layer": ("n_blocks", 12),
               "n_head": ("n_heads", 12), "vocab_size": ("vocab_size", 50257)}


def gpt2_parameters(sizes: dict) -> int:
    """GPT-2's parameters from its config: token and position embeddings, per layer attention (qkv and
    projection), two layer norms and the MLP (`n_inner`, default 4 x n_embd), and the final norm; the
    output layer shares the token embedding (gpt2: 124,439,808)."""
    d, inner = sizes["n_embd"], sizes["n_inner"]
    layer = d * 3 * d + 3 * d + d * d + d + 2 * 2 * d + d * inner + inner + inner * d + d
    return sizes["vocab_size"] * d + sizes["n_positions"] * d + sizes["n_layer"] * layer + 2 * d


def check_gpt2_fits(config: dict, path: Path) -> None:
    """A GPT-2 directory's sizes, held to gpt-keras' limits and to this machine's memory, before transformers
    builds a single weight (`n_positions` 10**9 would be a position table of terabytes)."""
    from gpt_keras.core.checks import maximum_of
    from gpt_keras.runs.memory import FLOAT, Estimate, check_fits

    sizes = {}
    for name, (limit, default) in _GPT2_SIZES.items():
        value = config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum_of(limit):
            raise GPT2Error(f"{path / 'config.json'}: {name} must be a whole number from 1 to "
                            f"{maximum_of(limit):,}, got {one_line(repr(value), 80)}")
        sizes[name] = value
    inner = config.get("n_inner")
    inner = 4 * sizes["n_embd"] if inner is None else inner
    if isinstance(inner, bool) or not isinstance(inner, int) or not 1 <= inner <= maximum_of("feed_forward_dim"):
        raise GPT2Error(f"{path / 'config.json'}: n_inner must be null or a whole number from 1 to "
                        f"{maximum_of('feed_forward_dim'):,}, got {one_line(repr(inner), 80)}")
    weights = gpt2_parameters({**sizes, "n_inner": inner}) * FLOAT
    stored = sum(file.stat().st_size for file in path.glob("*.h5") if file.is_file())
    check_fits(Estimate({"parameters": weights, "the weights file": stored}), "loading this GPT-2", str(path),
               "is its config.json right?")


def _load_hub(name: str, cache_dir) -> GPT2:
    from transformers import AutoTokenizer, TFGPT2LMHeadModel

    def load(local_only: bool) -> GPT2:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name, cache_dir=cache_dir, local_files_only=local_only)
            model = TFGPT2LMHeadModel.from_pretrained(name, cache_dir=cache_dir, local_files_only=local_only)
        return GPT2(model, tokenizer, f"hub:{name}", name)

    try:
        return load(local_only=True)
    except OSError:
        pass  # not cached (or only partly): download below, if allowed
    where = f"neither a directory {name!r} nor a cached hub model" if "/" in name else "not on this machine"
    if _offline_requested():
        raise GPT2Unavailable(f"GPT-2 {name!r} is {where}, and HF_HUB_OFFLINE is set, so it cannot be "
                              f"downloaded. {how_to_get(name)}") from None
    if not _hub_reachable():
        raise GPT2Unavailable(f"GPT-2 {name!r} is {where}, and the Hugging Face hub cannot be reached "
                              f"(no network?). {how_to_get(name)}") from None
    try:
        return load(local_only=False)
    except OSError as error:
        raise GPT2Unavailable(f"could not download GPT-2 {name!r} ({_first_line(error)}). "
                              f"{how_to_get(name)}") from None


def _first_line(error: BaseException) -> str:
    """The error's first line, at most 300 characters, found without splitting a long message into lines."""
    text = str(error).strip()
    end = text.find("\n", 0, 300)
    return text[:end if end >= 0 else 300] or type(error).__name__


def gpu_details() -> list[dict]:
    """The GPUs TensorFlow sees: name and compute capability (empty on a CPU-only machine)."""
    import tensorflow as tf

    details = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            info = tf.config.experimental.get_device_details(device)
        except Exception:  # details are optional; the device is still there
            info = {}
        details.append({"device": device.name, "name": info.get("device_name", device.name),
                        "compute_capability": info.get("compute_capability")})
    return details


def device_description() -> str:
    """One line naming where TensorFlow runs: the GPU(s) it sees, or the CPU."""
    gpus = gpu_details()
    if not gpus:
        return "CPU (TensorFlow sees no GPU)"
    return "GPU: " + ", ".join(gpu["name"] for gpu in gpus)


def precision_policy(mode: str = "auto") -> str:
    """The tf-keras dtype policy for fine-tuning: mixed precision on a GPU (auto) or when asked (on).

    bfloat16 where the hardware has it (GPUs of compute capability 8.0 and later, and CPUs), float16
    with loss scaling on older GPUs, float32 when off (or auto without a GPU).
    """
    if mode not in PRECISION_CHOICES:
        raise GPT2Error(f"--mixed-precision must be one of {', '.join(PRECISION_CHOICES)}, got {mode!r}")
    gpus = gpu_details()
    if mode == "off" or (mode == "auto" and not gpus):
        return "float32"
    capabilities = [gpu["compute_capability"] for gpu in gpus]
    if gpus and any(c is None or tuple(c) < (8, 0) for c in capabilities):
        return "mixed_float16"
    return "mixed_bfloat16"


@contextlib.contextmanager
def tf_keras_policy(policy: str) -> Iterator[None]:
    """Sets tf-keras' global dtype policy (not Keras 3's) for the block, then restores it."""
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
