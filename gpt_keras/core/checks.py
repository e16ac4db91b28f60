"""Optional reading: the limits of every value gpt-keras takes, and the one check of each, so a value has one
rule and one message wherever it is given (config, flags, `TextGenerator`, the lab); each caller passes the
error class of its module, all derived from `GPTKerasError`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class GPTKerasError(Exception):
    """The root of every error gpt-keras raises for bad input; the command line prints it as one line."""


def printable(text: Any, keep_newlines: bool = False) -> str:
    """Text safe for a terminal (the one escaper for all gpt-keras prints): control, bidi and zero-width
    characters would redraw, reorder or hide what it shows, so they appear as `\\x1b`, `\\u202e`, ..."""
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n") else repr(c)[1:-1] for c in str(text))


class ConfigError(GPTKerasError, ValueError):
    """A configuration value is missing, of the wrong type or out of range; the message names it."""


def check_int_at_least(value: Any, name: str, minimum: int = 1, error: type[Exception] = ConfigError) -> int:
    """An integer (not a bool) of at least `minimum`, else `error` naming the parameter and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise error(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


_CHOICES = {"jit_compile": ("auto", "on", "off"), "mixed_precision": ("auto", "off", "bfloat16", "float16", "on"),
            "bucket_by_length": ("off", "on"), "recipe": ("fast", "lecture")}
_MINIMUMS = {"vocab_size": 3, "max_len": 1, "embedding_dim": 1, "key_dim": 1, "n_heads": 1,
             "feed_forward_dim": 1, "n_blocks": 1, "batch_size": 1, "epochs": 1, "shuffle_buffer": 0}
MAX_TOKENS = 2048  # longest generated text, prompt included: each step keeps a distribution over the vocabulary
_MAXIMUMS = {"vocab_size": 1_000_000, "max_len": 4096, "embedding_dim": 65_536, "key_dim": 65_536, "n_heads": 256,
             "feed_forward_dim": 262_144, "n_blocks": 256, "batch_size": 65_536, "epochs": 100_000,
             "shuffle_buffer": 100_000_000}  # far above any classroom model, low enough that a typo fails at once
MAX_SAMPLES = 1_000  # texts one command samples (generate, temperature --samples): temperature decodes them as one batch
MAX_COUNT = 100_000_000  # any other count (reviews held out or kept, words shown): far below int64's overflow
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are 32-bit


def maximum_of(field: str) -> int:
    """The upper limit of a config field, for flags that take the same value."""
    return _MAXIMUMS[field]


def check_count(value: Any, name: str, minimum: int = 1, maximum: int = MAX_COUNT,
                error: type[Exception] = ConfigError) -> int:
    """From `minimum` to `maximum`: a typo (or 10**30) fails at once instead of overflowing int64."""
    value = check_int_at_least(value, name, minimum, error)
    if value > maximum:
        raise error(f"{name} must be at most {maximum:,}, got {value:,}")
    return value


def check_seed(seed: Any, name: str = "seed", error: type[Exception] = ConfigError) -> int:
    """A whole number from 0 to MAX_SEED (3.0 from a web form counts as 3); the one rule for every seed."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise error(f"{name} must be a whole number from 0 to {MAX_SEED:,}, got {seed!r}")
    return int(seed)


def check_max_tokens(value: Any, name: str = "max_tokens", error: type[Exception] = ConfigError) -> int:
    """From 1 to MAX_TOKENS, the prompt included: each step keeps its distribution, so memory grows with it."""
    if check_int_at_least(value, name, 1, error) > MAX_TOKENS:
        raise error(f"{name} must be at most {MAX_TOKENS:,} (MAX_TOKENS, the prompt included), got {value:,}")
    return int(value)


def check_room_after_prompt(prompt_tokens: int, max_tokens: int, name: str = "max_tokens",
                            error: type[Exception] = ConfigError) -> None:
    """`max_tokens` counts the prompt (the lecture's rule), so it must leave room for one word; past
    MAX_TOKENS no `max_tokens` would do, so the advice is then to shorten the prompt."""
    if max_tokens > prompt_tokens:
        return
    if prompt_tokens >= MAX_TOKENS:
        raise error(f"the prompt has {prompt_tokens:,} tokens and {name} (which counts the prompt) is at most "
                    f"{MAX_TOKENS:,}: shorten the prompt to fewer than {MAX_TOKENS:,} tokens")
    raise error(f"{name} must be more than the prompt's {prompt_tokens:,} tokens (it counts the prompt, as in the "
                f"lecture), got {max_tokens:,}")


def check_config_field(name: str, value: Any, annotation: Any) -> None:
    """Type and range check of one field; the error names the field and the value."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if name == "seed" and not isinstance(value, float):
        check_seed(value)
    elif name == "generate_max_tokens":
        check_max_tokens(value, name)
    elif kind == "int":
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
    if name in ("dropout_rate", "validation_split") and not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if name in ("layer_norm_epsilon", "learning_rate", "generate_temperature") and value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    if name == "layer_norm_epsilon" and not (value <= 1 and np.float32(value) > 0):
        raise ConfigError(f"layer_norm_epsilon must be at most 1 and above 0 in float32, got {value}")


def check_known_fields(values: Any, known: list[str]) -> None:
    """`values` must be a dict of config fields: anything else, or an unknown field, is named."""
    if not isinstance(values, dict):
        raise ConfigError(f"expected a JSON object of config fields, got {type(values).__name__}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
