"""The one place every hyperparameter lives.

`GPTConfig` carries the lecture's defaults (vocabulary 10,000, 80 tokens, embedding 256, two heads of
key_dim 256, feed-forward 256, dropout 0.1, LayerNorm epsilon 1e-6, one post-norm block, batch 32,
5 epochs, Adam). The command line and the notebook fill it; nothing reads globals. Values are checked
when the config is made, so a bad flag fails before any file is written.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range; the message names it."""


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of the wine-review GPT and of its training run.

    Args:
        vocab_size: size of the `TextVectorization` vocabulary, `[UNK]` and padding included.
        max_len: context window in tokens; the vectorizer outputs `max_len + 1` so x and y shift by one.
        embedding_dim: width of the token and position embeddings and of the block's output.
        key_dim: size of each attention head (the lecture uses 256 per head, projected back).
        n_heads: attention heads in each block.
        feed_forward_dim: hidden width of the block's feed-forward network.
        dropout_rate: dropout after attention and after the feed-forward network.
        layer_norm_epsilon: epsilon of both LayerNormalization layers.
        n_blocks: transformer blocks stacked (the lecture uses one; attention comes from the last).
        batch_size: global batch size (split across replicas under a distribution strategy).
        epochs: passes over the training data.
        learning_rate: Adam's learning rate (Keras' default, as in the lecture's `compile("adam")`).
        seed: seeds weights, dropout, shuffling, the validation split and sampling.
        validation_split: share of reviews held out for validation loss and perplexity (lecture: none).
        shuffle_buffer: reviews in the shuffle buffer; 0 shuffles the whole dataset every epoch.
        generate_prompt / generate_max_tokens / generate_temperature: what `TextGenerator` samples
            after each epoch (the lecture: "wine review", 80 tokens, T = 1.0).
        jit_compile: XLA for the training step: "auto" (off on a CPU under TensorFlow, where XLA does
            not use the bfloat16 matrix instructions; otherwise Keras decides), "on" or "off".
        mixed_precision: "auto" chooses per machine (`gpt_keras.runs.precision`: bfloat16, float16 with
            loss scaling, or float32; printed and saved in the run's precision.json); "bfloat16" or
            "float16" asks for one on any machine; "on" forces mixed precision, "off" keeps the
            lecture's float32.
        bucket_by_length: "on" batches reviews of similar length and cuts each batch after its longest
            review (`gpt_keras.runs.bucketing`): faster, but the loss then averages over fewer padding
            positions than the lecture's, so it is opt-in; "off" (default) keeps the lecture's batches.
    """

    vocab_size: int = 10_000
    max_len: int = 80
    embedding_dim: int = 256
    key_dim: int = 256
    n_heads: int = 2
    feed_forward_dim: int = 256
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    n_blocks: int = 1
    batch_size: int = 32
    epochs: int = 5
    learning_rate: float = 1e-3
    seed: int = 42
    validation_split: float = 0.0
    shuffle_buffer: int = 0
    generate_prompt: str = "wine review"
    generate_max_tokens: int = 80
    generate_temperature: float = 1.0
    jit_compile: str = "auto"
    mixed_precision: str = "auto"
    bucket_by_length: str = "off"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_field(field.name, getattr(self, field.name), field.type)

    def replace(self, **changes: Any) -> "GPTConfig":
        """A copy with some fields changed, validated like a new config."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "GPTConfig":
        """Builds a config from a dict (a saved `config.json`), naming any unknown or bad field."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object of config fields, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown config field(s): {', '.join(unknown)}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "GPTConfig":
        """A named starting point (`lecture`, `demo`, `tiny`; see `PRESETS`) with some fields changed.

        Example:
            >>> GPTConfig.preset("tiny", epochs=1).embedding_dim
            64
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        return cls(**{**PRESETS[name], **changes})


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},  # the lecture's hyperparameters: the GPTConfig defaults
    # Small enough to learn the embedded sample's structure in a few minutes on a 2-core CPU.
    "demo": dict(vocab_size=1500, max_len=64, embedding_dim=96, key_dim=48, n_heads=2, feed_forward_dim=192,
                 batch_size=32, epochs=8, generate_max_tokens=48),
    # About 0.2 M parameters: for quick checks and tests.
    "tiny": dict(vocab_size=2000, max_len=40, embedding_dim=64, key_dim=32, n_heads=2, feed_forward_dim=128,
                 batch_size=32, epochs=2),
}


def check_int_at_least(value: Any, name: str, minimum: int = 1, error: type[Exception] = ConfigError) -> int:
    """An integer (not a bool) of at least `minimum`, else `error` naming the parameter and the value.

    The one check behind every count the library takes (top_k, max_tokens, n_samples, batch_size, ...);
    each caller passes the error class of its module.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise error(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


_CHOICES = {"jit_compile": ("auto", "on", "off"), "mixed_precision": ("auto", "off", "bfloat16", "float16", "on"),
            "bucket_by_length": ("off", "on")}
_MINIMUMS = {"vocab_size": 3, "max_len": 1, "embedding_dim": 1, "key_dim": 1, "n_heads": 1,
             "feed_forward_dim": 1, "n_blocks": 1, "batch_size": 1, "epochs": 1, "generate_max_tokens": 1,
             "shuffle_buffer": 0, "seed": 0}
MAX_TOKENS = 2048  # longest generated text, prompt included: each step keeps a distribution over the vocabulary
# Far above any classroom model, low enough that a typo fails at once instead of filling the memory.
_MAXIMUMS = {"vocab_size": 1_000_000, "max_len": 4096, "embedding_dim": 65_536, "key_dim": 65_536, "n_heads": 256,
             "feed_forward_dim": 262_144, "n_blocks": 256, "seed": 2**32 - 1, "generate_max_tokens": MAX_TOKENS}


def _check_field(name: str, value: Any, annotation: Any) -> None:
    """Type and range check of one field; the error names the field and the value."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if value < _MINIMUMS.get(name, 0):
            raise ConfigError(f"{name} must be at least {_MINIMUMS.get(name, 0)}, got {value}")
        if value > _MAXIMUMS.get(name, value):
            raise ConfigError(f"{name} must be at most {_MAXIMUMS[name]:,} (the limit), got {value:,}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        _check_float_range(name, float(value))
    elif kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"{name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")


def _check_float_range(name: str, value: float) -> None:
    if name == "dropout_rate" and not 0.0 <= value < 1.0:
        raise ConfigError(f"dropout_rate must be in [0, 1), got {value}")
    if name == "validation_split" and not 0.0 <= value < 1.0:
        raise ConfigError(f"validation_split must be in [0, 1), got {value}")
    if name in ("layer_norm_epsilon", "learning_rate", "generate_temperature") and value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    if name == "layer_norm_epsilon" and not (value <= 1 and np.float32(value) > 0):
        raise ConfigError(f"layer_norm_epsilon must be at most 1 and above 0 in float32, got {value}")
