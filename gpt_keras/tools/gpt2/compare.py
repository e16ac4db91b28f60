"""GPT-2 beside our GPT: the same prompts, temperatures, seeds, metrics and held-out reviews.

The lecture's Hugging Face path (`TFGPT2LMHeadModel.from_pretrained("gpt2")`) is loaded here from a hub
name (`gpt2`, `distilgpt2`) or from a `save_pretrained` directory, and measured the way our model is:

- generation runs our `Sampler` (temperature, then top-k or top-p) on GPT-2's next-token distribution
  with the same numpy seed, one step at a time with a key/value cache, so each step keeps the lecture's
  record (`prompt`, `word_probs`, `atts`, `token`, `word`) and `gpt_keras.tools.viz` can draw it;
- time per generated token is measured with `time.perf_counter` over the same number of new tokens for
  both models (the end token is not allowed to stop the timed run, after a warm-up run);
- perplexity is computed on the same held-out reviews and the same words. The models split text
  differently (our model: one token per word; GPT-2: byte-level BPE pieces), so besides perplexity per
  token the report gives perplexity per word: exp(total negative log-likelihood / number of words),
  where a word's NLL under GPT-2 is the sum over its tokens. Words are the whitespace words of the
  padded review text (`gpt_keras.core.data`); GPT-2 reads each word with a leading space, after
  `<|endoftext|>`; the first word is context for both models (ours cannot predict it). Our model maps
  words outside its vocabulary to `[UNK]` and predicts `[UNK]` itself, which flatters its per-word
  perplexity: the report gives the `[UNK]` share beside it.

`finetune_gpt2` fine-tunes GPT-2 on the reviews with `fit` (mixed precision on a GPU) and saves it with
`save_pretrained`, so `compare` can load the result as a directory.

Transformers' TensorFlow models need Keras 2 (`tf-keras`); importing them sets `TF_USE_LEGACY_KERAS=1`,
so TensorFlow's own Keras alias means Keras 2 from then on. gpt-keras itself imports `keras` (Keras 3) only, which that
setting does not touch, so both live in one process. `transformers` is imported inside the functions
here: `import gpt_keras` stays fast and works without it.

Library code: it returns values and writes files atomically; the command line prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from gpt_keras.core.config import check_int_at_least
from gpt_keras.core.data import DataError
from gpt_keras.runs.batches import split_tokens
from gpt_keras.runs.datasets import load_texts
from gpt_keras.tools.tables import json_safe, shorten, text_table
from gpt_keras.runs.files import read_json, write_json, write_text
from gpt_keras.core.data import PAD_ID
from gpt_keras.core.generation import CachedGenerator, encode_prompt, make_record
from gpt_keras.core.sampling import Sampler, softmax

DEFAULT_MODEL = "gpt2"
FINETUNE_INFO = "gpt_keras_finetune.json"
UNK_ID = 1
PRECISION_CHOICES = ("auto", "on", "off")


class GPT2Error(RuntimeError):
    """A GPT-2 model or directory cannot be used; the message names it and what to do."""


class GPT2Unavailable(GPT2Error):
    """GPT-2's weights are neither on this machine nor reachable; the message says how to get them."""


# --- loading -----------------------------------------------------------------------------------

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
    """GPT-2's vocabulary as index -> label, for `gpt_keras.viz` (labels made on demand)."""

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
    if config.get("model_type") != "gpt2":
        raise GPT2Error(f"{path}: holds a {config.get('model_type')!r} model, not GPT-2")
    from transformers import AutoTokenizer, TFGPT2LMHeadModel

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = TFGPT2LMHeadModel.from_pretrained(path)
    except (OSError, ValueError, EnvironmentError) as error:
        raise GPT2Error(f"{path}: cannot load GPT-2 from it ({_first_line(error)})") from None
    info = None
    if (path / FINETUNE_INFO).is_file():
        try:
            info = json.loads((path / FINETUNE_INFO).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            info = None
    return GPT2(model, tokenizer, str(path), path.name, info)


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
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


# --- devices and precision -------------------------------------------------------------------------

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
def _tf_keras_policy(policy: str) -> Iterator[None]:
    """Sets tf-keras' global dtype policy (not Keras 3's) for the block, then restores it."""
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


# --- generation ------------------------------------------------------------------------------------

class _NoStop:
    """A sampler that never picks `stop_id`, so a timed run generates exactly the tokens asked for."""

    def __init__(self, sampler: Sampler, stop_id: int):
        self.sampler, self.stop_id = sampler, stop_id

    def sample(self, probs: np.ndarray, rng: np.random.Generator):
        probs = np.array(probs, np.float64)
        probs[..., self.stop_id] = 0.0
        return self.sampler.sample(probs / probs.sum(axis=-1, keepdims=True), rng)


class GPT2Generator:
    """GPT-2 decoding with our samplers: one cached step per token, records as `CachedGenerator` keeps.

    Each step feeds only the newest token and the key/value cache (`past_key_values`) through one
    `tf.function` (traced for the prompt and, with relaxed shapes, once for all later steps). Text
    ends when `<|endoftext|>` is sampled or after `max_new_tokens`; past the context window
    (`n_positions`), the window slides and is recomputed.

    Example:
        >>> generator = GPT2Generator(load_gpt2("gpt2"))                        # doctest: +SKIP
        >>> info, text = generator.generate("wine review : germany", 40, Sampler(0.7), np.random.default_rng(0))
    """

    def __init__(self, gpt2: GPT2):
        import tensorflow as tf

        self.gpt2 = gpt2
        self._prefill = tf.function(self._forward, reduce_retracing=True)
        self._step = tf.function(self._forward_cached, reduce_retracing=True)

    def _forward(self, ids):
        return self._outputs(self.gpt2.model(ids, use_cache=True, output_attentions=True, training=False))

    def _forward_cached(self, ids, past):
        return self._outputs(self.gpt2.model(ids, past_key_values=past, use_cache=True, output_attentions=True,
                                             training=False))

    @staticmethod
    def _outputs(output):
        """Last position's logits [batch, vocab], its last-layer attention [batch, heads, keys], the cache."""
        import tensorflow as tf

        return (tf.cast(output.logits[:, -1, :], tf.float32), tf.cast(output.attentions[-1][:, :, -1, :], tf.float32),
                output.past_key_values)

    def prompt_ids(self, prompt: str) -> list[int]:
        """`<|endoftext|>` then the prompt's words, punctuation padded as in the training texts."""
        from gpt_keras.core.data import pad_punctuation

        words = pad_punctuation(prompt).split()
        if not words:
            from gpt_keras.core.sampling import SamplingError

            raise SamplingError("the prompt is empty; give at least one word, e.g. 'wine review'")
        return [self.gpt2.bos_id] + [i for word in words for i in self.gpt2.word_ids(word)]

    def generate(self, prompt: str, max_new_tokens: int, sampler, rng: np.random.Generator,
                 stop: bool = True) -> tuple[list[dict], str]:
        """Samples up to `max_new_tokens` tokens after `prompt`; returns (records, text).

        Each record has `prompt` (the context's token labels, space-separated), `word_probs` (the
        distribution the token was drawn from), `atts` (last layer's attention of the newest position
        over the context, [heads, tokens]), `token` and `word` (its label). `stop=False` never picks
        the end token (for timing).
        """
        import tensorflow as tf

        gpt2, window = self.gpt2, self.gpt2.n_positions
        sampler = sampler if stop else _NoStop(sampler, gpt2.eos_id)
        tokens = self.prompt_ids(prompt)
        new: list[int] = []
        labels = [gpt2.token_label(i) for i in tokens]
        logits, attention, past = self._prefill(tf.constant([tokens[-window:]], tf.int32))
        info = []
        for _ in range(max_new_tokens):
            token, distribution = sampler.sample(softmax(logits.numpy()[0]), rng)
            token = int(token)
            label = gpt2.token_label(token)
            info.append(make_record(" ".join(labels), distribution, attention.numpy()[0], token, label))
            if stop and token == gpt2.eos_id:
                break
            tokens.append(token)
            new.append(token)
            labels.append(label)
            if len(new) == max_new_tokens:
                break
            if len(tokens) <= window:
                logits, attention, past = self._step(tf.constant([[token]], tf.int32), past)
            else:
                logits, attention, past = self._prefill(tf.constant([tokens[-window:]], tf.int32))
        return info, gpt2.tokenizer.decode(tokens, skip_special_tokens=True).strip()


# --- perplexity ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Perplexity:
    """Negative log-likelihood (nats) of the held-out words, and perplexity per token and per word."""

    reviews: int
    words: int
    tokens: int
    nll: float
    unk_share: float | None = None

    @property
    def per_token(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else math.nan

    @property
    def per_word(self) -> float:
        return math.exp(self.nll / self.words) if self.words else math.nan

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else math.nan

    def to_dict(self) -> dict:
        return {"reviews": self.reviews, "words": self.words, "tokens": self.tokens, "nll": self.nll,
                "perplexity_per_token": self.per_token, "perplexity_per_word": self.per_word,
                "tokens_per_word": self.tokens_per_word, "unk_share": self.unk_share}


@dataclasses.dataclass
class WordScores:
    """Per review: each scored word's NLL, and (GPT-2) each scored token's NLL and its word's token span."""

    word_nll: list[np.ndarray]
    token_nll: list[np.ndarray]
    spans: list[list[tuple[int, int]]]  # per scored word: [start, end) into token_nll
    unk: list[np.ndarray] | None = None

    def perplexity(self) -> Perplexity:
        words = sum(len(nll) for nll in self.word_nll)
        unk_share = None
        if self.unk is not None:
            unk_share = float(np.concatenate(self.unk).mean()) if words else math.nan
        return Perplexity(reviews=len(self.word_nll), words=words, tokens=sum(len(nll) for nll in self.token_nll),
                          nll=float(sum(nll.sum() for nll in self.word_nll)), unk_share=unk_share)


def word_windows(texts: Sequence[str], max_words: int, gpt2: GPT2 | None = None) -> list[list[str]]:
    """The words each model scores: the first `max_words` of each review, cut so GPT-2's tokens fit its window.

    Reviews left with fewer than two words (nothing to predict after the first) are skipped.
    """
    windows = []
    for text in texts:
        words = text.split()[:max_words]
        if gpt2 is not None:
            used = 1  # <|endoftext|>
            for count, word in enumerate(words):
                used += len(gpt2.word_ids(word))
                if used > gpt2.n_positions:
                    words = words[:count]
                    break
        if len(words) >= 2:
            windows.append(words)
    return windows


def score_gpt2(gpt2: GPT2, windows: Sequence[Sequence[str]], batch_size: int = 8) -> WordScores:
    """NLL of every word after the first: the sum of its tokens' NLL, each read after `<|endoftext|>`."""
    import tensorflow as tf

    rows, firsts, spans = [], [], []
    for words in windows:
        ids, bounds = [gpt2.bos_id], []
        for word in words:
            start = len(ids)
            ids.extend(gpt2.word_ids(word))
            bounds.append((start, len(ids)))
        # the first word is context only: scoring starts at the second word's first token
        first = bounds[1][0]
        rows.append(ids)
        firsts.append(first)
        spans.append([(start - first, end - first) for start, end in bounds[1:]])
    word_nll, token_nll = [], []
    for begin in range(0, len(rows), batch_size):
        batch = rows[begin:begin + batch_size]
        length = max(map(len, batch))
        ids = np.full((len(batch), length), gpt2.eos_id, np.int32)
        mask = np.zeros((len(batch), length), np.int32)
        for index, row in enumerate(batch):
            ids[index, :len(row)], mask[index, :len(row)] = row, 1
        logits = gpt2.model(input_ids=ids, attention_mask=mask, training=False).logits
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[:, 1:], logits=tf.cast(logits[:, :-1], tf.float32))
        nll = np.asarray(nll, np.float64)
        for index, row in enumerate(batch):
            # the token at position p is predicted by the logits at p - 1
            tokens = nll[index, firsts[begin + index] - 1:len(row) - 1]
            token_nll.append(tokens)
            word_nll.append(np.array([tokens[start:end].sum() for start, end in spans[begin + index]]))
    return WordScores(word_nll, token_nll, spans)


def score_ours(model, vocab, windows: Sequence[Sequence[str]], batch_size: int = 32) -> WordScores:
    """NLL of every word after the first under our model (one token per word, unknown words as `[UNK]`)."""
    context = model.get_layer("embedding").max_len
    rows = []
    for words in windows:
        ids, _ = vocab.encode(" ".join(words))
        if len(ids) != len(words):
            raise DataError(f"review text does not split into the same words twice: {' '.join(words)[:80]!r}")
        if len(ids) > context + 1:
            raise DataError(f"a window of {len(ids)} words exceeds the model's context of {context} + 1")
        rows.append(ids)
    word_nll, unk = [], []
    for begin in range(0, len(rows), batch_size):
        batch = rows[begin:begin + batch_size]
        length = max(map(len, batch)) - 1
        x = np.full((len(batch), length), PAD_ID, np.int32)
        for index, row in enumerate(batch):
            x[index, :len(row) - 1] = row[:-1]
        probs = np.asarray(model.predict_on_batch(x)[0], np.float64)
        for index, row in enumerate(batch):
            targets = np.asarray(row[1:])
            picked = probs[index, np.arange(len(targets)), targets]
            word_nll.append(-np.log(np.maximum(picked, np.finfo(np.float64).tiny)))
            unk.append(targets == UNK_ID)
    return WordScores(word_nll, word_nll, [[(i, i + 1) for i in range(len(n))] for n in word_nll], unk)


def heldout_indices(n_texts: int, n: int) -> np.ndarray:
    """The held-out reviews: the last `n` of the file (fine-tuning leaves the same ones out)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"--heldout must be a positive number of reviews, got {n!r}")
    if n >= n_texts:
        raise DataError(f"--heldout {n}: the file has only {n_texts} reviews; hold out fewer")
    return np.arange(n_texts - n, n_texts)


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


def seen_by_our_run(run, data_path, n_texts: int, indices: np.ndarray) -> float | None:
    """Share of the held-out reviews our run trained on (None when its data was another file)."""
    from gpt_keras.runs.rundir import read_data_info

    info = read_data_info(run.path)
    if not _same_file(info.get("source", ""), data_path) or info.get("reviews") != n_texts:
        return None
    try:
        train, _ = split_tokens(np.arange(n_texts)[:, None], run.config.validation_split, run.config.seed)
    except DataError:
        return None
    return float(np.isin(indices, train[:, 0]).mean())


def seen_by_gpt2(gpt2: GPT2, data_path, n_texts: int, indices: np.ndarray) -> float | None:
    """Share of the held-out reviews our fine-tuning trained GPT-2 on (None if unknown or not fine-tuned)."""
    info = gpt2.finetune_info
    if not info or not _same_file(info.get("data", ""), data_path) or info.get("reviews_in_file") != n_texts:
        return None
    start, end = info.get("train_range", (0, 0))
    return float(((indices >= start) & (indices < end)).mean())


# --- the comparison ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Comparison:
    """Both models on the same prompts, temperatures, seeds and held-out words."""

    settings: dict
    models: dict  # "ours" / "gpt2": name, parameters, ms_per_token, tokens_timed, seen share
    perplexity: dict  # "ours" / "gpt2": Perplexity
    generations: list[dict]
    records: dict = dataclasses.field(default_factory=dict, repr=False)  # first generation's steps, per model

    def to_dict(self) -> dict:
        return json_safe({"settings": self.settings, "models": self.models,
                        "perplexity": {key: value.to_dict() for key, value in self.perplexity.items()},
                        "generations": self.generations, "notes": NOTES})

    def _rows(self) -> list[tuple[str, str, str]]:
        ours, gpt2 = self.perplexity["ours"], self.perplexity["gpt2"]
        models = self.models

        def seen(value):
            return "unknown" if value is None else f"{100 * value:.0f}%"

        return [
            ("parameters", f"{models['ours']['parameters']:,}", f"{models['gpt2']['parameters']:,}"),
            ("ms per generated token", f"{models['ours']['ms_per_token']:.2f}", f"{models['gpt2']['ms_per_token']:.2f}"),
            ("perplexity per token", f"{ours.per_token:.2f}", f"{gpt2.per_token:.2f}"),
            ("perplexity per word", f"{ours.per_word:.2f}", f"{gpt2.per_word:.2f}"),
            ("tokens per word", f"{ours.tokens_per_word:.2f}", f"{gpt2.tokens_per_word:.2f}"),
            ("[UNK] share of words", f"{100 * ours.unk_share:.1f}%", "0% (byte-level BPE)"),
            ("held-out reviews seen in training", seen(models["ours"]["heldout_seen"]),
             seen(models["gpt2"]["heldout_seen"])),
        ]

    def format_table(self, width: int | None = 100) -> str:
        """The metrics side by side, then every generated text, for a terminal."""
        settings, names = self.settings, (self.models["ours"]["name"], self.models["gpt2"]["name"])
        ppl = self.perplexity["ours"]
        lines = [f"device: {settings['device']}",
                 f"held-out: {ppl.reviews} reviews, {ppl.words:,} words scored (first {settings['max_words']} words "
                 f"of each of the last {settings['heldout']} reviews of {settings['data']})",
                 f"timing: {settings['max_new_tokens']} new tokens each, prompt {settings['prompts'][0]!r}", "",
                 text_table(["", *names], [list(row) for row in self._rows()])]
        for generation in self.generations:
            lines += ["", f"prompt {generation['prompt']!r}, {generation['sampler']}, seed {generation['seed']}:"]
            for key, name in zip(("ours", "gpt2"), names):
                lines.append(f"  {name}: {shorten(generation[key]['text'], width)}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        settings, names = self.settings, (self.models["ours"]["name"], self.models["gpt2"]["name"])
        ppl = self.perplexity["ours"]
        table = [f"| | {names[0]} | {names[1]} |", "|---|---:|---:|"]
        table += [f"| {label} | {a} | {b} |" for label, a, b in self._rows()]
        lines = ["# Our GPT beside GPT-2", "",
                 f"- device: {settings['device']}",
                 f"- our run: `{settings['run']}`; GPT-2: `{settings['gpt2']}`",
                 f"- held-out: {ppl.reviews} reviews, {ppl.words:,} words (the first {settings['max_words']} words of "
                 f"each of the last {settings['heldout']} reviews of `{settings['data']}`)",
                 f"- timing: {settings['max_new_tokens']} new tokens per model after a warm-up, prompt "
                 f"`{settings['prompts'][0]}`", "", *table, "", "## Generated texts", ""]
        for generation in self.generations:
            lines.append(f"**{_md(generation['prompt'])}**, {generation['sampler']}, seed {generation['seed']}")
            lines.append("")
            for key, name in zip(("ours", "gpt2"), names):
                lines.append(f"- {name}: {_md(generation[key]['text'])}")
            lines.append("")
        lines += ["## How it was measured", "", *(f"- {note}" for note in NOTES), ""]
        return "\n".join(lines)

    def write(self, stem: str | Path) -> dict[str, Path]:
        """`stem.md` and `stem.json`, each written atomically."""
        stem = Path(stem)
        return {"markdown": write_text(stem.with_name(stem.name + ".md"), self.to_markdown()),
                "json": write_json(stem.with_name(stem.name + ".json"), self.to_dict())}


NOTES = [
    "Words are the whitespace words of the padded review text; both models score every word after the first "
    "(the first is context: our model cannot predict it).",
    "GPT-2 reads `<|endoftext|>` and then each word with a leading space; a word's NLL is the sum of its tokens' NLL. "
    "GPT-2 sees the original case, our model lower-cased words.",
    "Perplexity per word = exp(total NLL / words); per token = exp(total NLL / tokens). For our model a word is one "
    "token, so both are equal.",
    "Our model reads unknown words as [UNK] and only has to predict [UNK] for them, which makes its perplexity "
    "optimistic; the [UNK] share says by how much the task was eased.",
    "Time per generated token: time.perf_counter over the same number of new tokens for both models (the end token "
    "is not allowed to stop the timed run), after a warm-up run that traces the compiled steps.",
]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("\n", " ")


def _time_per_token(generate, n_tokens: int) -> float:
    """Milliseconds per token of one call that generates exactly `n_tokens` new tokens."""
    start = time.perf_counter()
    generate()
    return 1000.0 * (time.perf_counter() - start) / n_tokens


def compare(run, gpt2: GPT2, data_path: str | Path | None = None, *, prompts: Sequence[str] = ("wine review",),
            temperatures: Sequence[float] = (1.0,), seeds: Sequence[int] = (0,), max_new_tokens: int = 40,
            top_k: int | None = None, top_p: float | None = None, greedy: bool = False, heldout: int = 200,
            batch_size: int = 8) -> Comparison:
    """Puts our run and GPT-2 side by side.

    Args:
        run: our model (`gpt_keras.runs.load_run(dir)`, or any object with `model`, `vocab`, `config`, `path`).
        gpt2: a model from `load_gpt2`.
        data_path: reviews (Kaggle JSON or CSV) whose last `heldout` reviews are scored (None: the
            default data, `gpt_keras.data.default_data_path()`).
        prompts, temperatures, seeds: every combination is generated by both models.
        max_new_tokens: tokens each model generates after the prompt (also the timed length).
        top_k, top_p, greedy: the filter applied after temperature (as in `gpt-keras generate`).
        heldout: how many reviews, from the end of the file, to compute perplexity on.

    Returns:
        A `Comparison`; `records` holds both models' steps of the first generation for `gpt_keras.viz`.
    """
    from gpt_keras.runs.datasets import default_data_path
    from gpt_keras.core.generation import check_max_tokens

    max_new_tokens = check_max_tokens(max_new_tokens)
    if data_path is None:
        data_path, _ = default_data_path()
    texts, _ = load_texts(data_path)
    indices = heldout_indices(len(texts), heldout)
    samplers = [Sampler(temperature=t, top_k=top_k, top_p=top_p, greedy=greedy) for t in temperatures]
    if not prompts or not samplers or not seeds:
        raise DataError("give at least one prompt, temperature and seed")

    ours_generator, gpt2_generator = CachedGenerator(run.model, run.vocab), GPT2Generator(gpt2)

    def ours_generate(prompt, sampler, rng, n_new=max_new_tokens):
        n_prompt = len(encode_prompt(run.vocab, prompt, run.config.max_len))
        return ours_generator.generate(prompt, n_prompt + n_new, sampler, rng)

    generations, records = [], {}
    for prompt in prompts:
        for sampler in samplers:
            for seed in seeds:
                ours_info, ours_text = ours_generate(prompt, sampler, np.random.default_rng(seed))
                gpt2_info, gpt2_text = gpt2_generator.generate(prompt, max_new_tokens, sampler,
                                                               np.random.default_rng(seed))
                if not records:
                    records = {"ours": ours_info, "gpt2": gpt2_info}
                generations.append({"prompt": prompt, "sampler": sampler.describe(), "seed": int(seed),
                                    "ours": {"text": ours_text, "tokens": len(ours_info)},
                                    "gpt2": {"text": gpt2_text, "tokens": len(gpt2_info)}})

    timed_sampler, rng = samplers[0], np.random.default_rng(seeds[0])
    ours_ms = _time_per_token(lambda: ours_generate(prompts[0], _NoStop(timed_sampler, PAD_ID), rng), max_new_tokens)
    gpt2_ms = _time_per_token(lambda: gpt2_generator.generate(prompts[0], max_new_tokens, timed_sampler, rng,
                                                              stop=False), max_new_tokens)

    windows = word_windows([texts[i] for i in indices], run.config.max_len + 1, gpt2)
    if not windows:
        raise DataError(f"{data_path}: no held-out review has two words to score")
    perplexity = {"ours": score_ours(run.model, run.vocab, windows).perplexity(),
                  "gpt2": score_gpt2(gpt2, windows, batch_size).perplexity()}
    settings = {"run": str(run.path), "gpt2": gpt2.source, "data": str(data_path), "heldout": int(heldout),
                "max_words": run.config.max_len + 1, "prompts": list(prompts),
                "temperatures": [float(t) for t in temperatures], "seeds": [int(s) for s in seeds],
                "top_k": top_k, "top_p": top_p, "greedy": greedy, "max_new_tokens": max_new_tokens,
                "device": device_description()}
    models = {"ours": {"name": f"ours ({Path(str(run.path)).name})", "parameters": int(run.model.count_params()),
                       "ms_per_token": ours_ms, "tokens_timed": max_new_tokens,
                       "heldout_seen": seen_by_our_run(run, data_path, len(texts), indices)},
              "gpt2": {"name": gpt2.name, "parameters": gpt2.count_params(), "ms_per_token": gpt2_ms,
                       "tokens_timed": max_new_tokens,
                       "heldout_seen": seen_by_gpt2(gpt2, data_path, len(texts), indices)}}
    return Comparison(settings, models, perplexity, generations, records)


# --- fine-tuning -----------------------------------------------------------------------------------

@dataclasses.dataclass
class FinetuneResult:
    """Where the fine-tuned GPT-2 was saved and how training went."""

    out_dir: Path
    history: dict[str, list[float]]
    policy: str
    device: str
    reviews: int
    seconds: float
    info: dict


def encode_reviews(gpt2: GPT2, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """Inputs, attention mask and next-token labels (-100 on padding) for causal-LM fine-tuning.

    Each review is `<|endoftext|>`, its words with leading spaces (as `compare` scores them), then
    `<|endoftext|>` so the model learns where a review ends; cut to `max_length + 1` tokens.
    """
    n = len(texts)
    input_ids = np.full((n, max_length), gpt2.eos_id, np.int32)
    mask = np.zeros((n, max_length), np.int32)
    labels = np.full((n, max_length), -100, np.int32)
    for row, text in enumerate(texts):
        ids = [gpt2.bos_id] + [i for word in text.split() for i in gpt2.word_ids(word)] + [gpt2.eos_id]
        ids = ids[:max_length + 1]
        length = len(ids) - 1
        input_ids[row, :length], mask[row, :length], labels[row, :length] = ids[:-1], 1, ids[1:]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def masked_lm_loss(labels, logits):
    """Mean next-token cross-entropy over the positions whose label is not -100, in float32."""
    import tensorflow as tf

    logits = tf.cast(logits, tf.float32)
    mask = tf.cast(tf.not_equal(labels, -100), tf.float32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
    return tf.reduce_sum(nll * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def finetune_gpt2(name_or_path: str | Path, data_path: str | Path | None, out_dir: str | Path, *, epochs: int = 1,
                  batch_size: int = 8, max_length: int = 128, learning_rate: float = 5e-5, limit: int | None = None,
                  heldout: int = 200, mixed_precision: str = "auto", seed: int = 0, verbose: int | str = "auto",
                  cache_dir: str | Path | None = None) -> FinetuneResult:
    """Fine-tunes GPT-2 on the reviews with `fit` and saves it with `save_pretrained` in `out_dir`.

    The last `heldout` reviews of the file are left out (they are the ones `compare` scores); `limit`
    keeps only the first N of the rest. The model is built under the mixed-precision policy (see
    `precision_policy`): float32 weights, bfloat16 or float16 compute, the loss in float32. `out_dir`
    is replaced only once everything is saved.

    Raises:
        GPT2Unavailable, GPT2Error: the model cannot be loaded. DataError: bad data or settings.
    """
    import tensorflow as tf

    from gpt_keras.runs.datasets import default_data_path

    for name, value, minimum in (("--epochs", epochs, 1), ("--batch-size", batch_size, 1),
                                 ("--max-length", max_length, 2), ("--heldout", heldout, 0)):
        check_int_at_least(value, name, minimum, DataError)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DataError(f"--limit must be a positive number of reviews, got {limit!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise DataError(f"--learning-rate must be a finite number greater than 0, got {learning_rate!r}")
    if data_path is None:
        data_path, _ = default_data_path()
    texts, _ = load_texts(data_path)
    end = len(texts) - heldout
    if end < 1:
        raise DataError(f"--heldout {heldout}: the file has only {len(texts)} reviews, none left to train on")
    end = min(end, limit) if limit is not None else end
    policy = precision_policy(mixed_precision)
    device = device_description()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    with _tf_keras_policy(policy):
        gpt2 = load_gpt2(name_or_path, cache_dir=cache_dir)
        import tf_keras

        tf_keras.utils.set_random_seed(seed)
        arrays = encode_reviews(gpt2, texts[:end], max_length)
        labels = arrays.pop("labels")
        dataset = (tf.data.Dataset.from_tensor_slices((arrays, labels)).shuffle(end, seed=seed)
                   .batch(batch_size).prefetch(tf.data.AUTOTUNE))
        gpt2.model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=masked_lm_loss)
        history = gpt2.model.fit(dataset, epochs=epochs, verbose=verbose).history
    seconds = time.perf_counter() - started
    history = {key: [float(v) for v in values] for key, values in history.items()}
    info = {"base": gpt2.source, "data": str(data_path), "reviews_in_file": len(texts), "train_range": [0, end],
            "heldout": heldout, "epochs": epochs, "batch_size": batch_size, "max_length": max_length,
            "learning_rate": learning_rate, "policy": policy, "device": device, "seed": seed,
            "seconds": seconds, "history": history}
    _save_pretrained(gpt2, out_dir, info)
    return FinetuneResult(out_dir, history, policy, device, end, seconds, info)


def _save_pretrained(gpt2: GPT2, out_dir: Path, info: dict) -> None:
    """`save_pretrained` into a fresh folder beside `out_dir`, then swapped in, so no half-saved model remains."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GPT2Error(f"{out_dir}: exists and is not a directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    old = None
    try:
        gpt2.model.save_pretrained(staging)
        gpt2.tokenizer.save_pretrained(staging)
        write_json(staging / FINETUNE_INFO, info)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
