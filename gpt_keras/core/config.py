"""The one place every hyperparameter lives: `GPTConfig`, with the lecture's values as defaults, and presets.

The command line and the notebook fill it; nothing reads globals. Each value is checked when the config
is made (the limits are in `gpt_keras.core.checks`), so a bad flag fails before any file is written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gpt_keras.core.checks import ConfigError, check_config_field, check_known_fields


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of the wine-review GPT and of its training run (defaults: the lecture's)."""

    vocab_size: int = 10_000  # TextVectorization's vocabulary, [UNK] and padding included
    max_len: int = 80  # context window; the vectorizer outputs max_len + 1 tokens so x and y shift by one
    embedding_dim: int = 256  # width of the token and position embeddings and of the block's output
    key_dim: int = 256  # size of each attention head (projected back to embedding_dim)
    n_heads: int = 2
    feed_forward_dim: int = 256
    dropout_rate: float = 0.1  # after attention and after the feed-forward network
    layer_norm_epsilon: float = 1e-6
    n_blocks: int = 1  # the lecture has one; the attention output is the last block's
    batch_size: int = 32  # global: split across replicas under a distribution strategy
    epochs: int = 5
    learning_rate: float = 1e-3  # Adam's default, as in the lecture's compile("adam")
    seed: int = 42  # weights, dropout, shuffling, the validation split and sampling
    validation_split: float = 0.0  # share of reviews held out for validation (the lecture: none)
    shuffle_buffer: int = 0  # 0 shuffles the whole dataset every epoch
    generate_prompt: str = "wine review"  # what TextGenerator samples after each epoch ...
    generate_max_tokens: int = 80
    generate_temperature: float = 1.0
    # Speed, not the model (gpt_keras.runs.precision): XLA and the arithmetic, chosen per machine by "auto";
    # mixed_precision also takes "off" (the lecture's float32), "bfloat16", "float16" and "on".
    jit_compile: str = "auto"
    mixed_precision: str = "auto"
    bucket_by_length: str = "off"  # "on": batches of similar length (faster; the loss then averages less padding)
    # How training computes (docs/recipes.md): "fast", this package's (the precision and XLA above, its own
    # loss, reviews reshuffled every epoch); "lecture", the lecture's arithmetic (RECIPES below).
    recipe: str = "fast"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_config_field(field.name, getattr(self, field.name), field.type)
        self._check_recipe()

    def _check_recipe(self) -> None:
        """A "lecture" run computes as the lecture did: a field that would change its arithmetic is refused,
        naming the field first (the command line turns it into the flag's name)."""
        if self.recipe != "lecture":
            return
        for name, required in LECTURE_ARITHMETIC.items():
            if getattr(self, name) != required:
                raise ConfigError(f"{name} {getattr(self, name)!r} conflicts with recipe 'lecture', which trains "
                                  f"with {name} {required!r} as the lecture did; use recipe 'fast' to change it")

    def replace(self, **changes: Any) -> "GPTConfig":
        """A copy with some fields changed, validated like a new config."""
        check_known_fields(changes, [field.name for field in dataclasses.fields(self)])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "GPTConfig":
        """Builds a config from a dict (a saved `config.json`), naming any unknown or bad field."""
        try:
            check_known_fields(values, [field.name for field in dataclasses.fields(cls)])
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def preset(cls, name: str, recipe: str | None = None, **changes: Any) -> "GPTConfig":
        """A named starting point (`lecture`, `demo`, `tiny`), then a recipe's values, then some fields changed.

        Example:
            >>> GPTConfig.preset("tiny", epochs=1).embedding_dim
            64
            >>> GPTConfig.preset("tiny", recipe="lecture", epochs=1).mixed_precision
            'off'
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        return cls(**{**with_recipe(dict(PRESETS[name]), recipe), **changes})


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},  # the lecture's hyperparameters: the GPTConfig defaults
    # Small enough to learn the embedded sample's structure in a few minutes on a 2-core CPU.
    "demo": dict(vocab_size=1500, max_len=64, embedding_dim=96, key_dim=48, n_heads=2, feed_forward_dim=192,
                 batch_size=32, epochs=8, generate_max_tokens=48),
    # About 0.2 M parameters: for quick checks and tests.
    "tiny": dict(vocab_size=2000, max_len=40, embedding_dim=64, key_dim=32, n_heads=2, feed_forward_dim=128,
                 batch_size=32, epochs=2),
}


# The lecture's arithmetic: float32, no XLA (on a CPU, what Keras' default "auto" gives the lecture's compile),
# the full-width batches (not bucketed) that `from_tensor_slices(...).batch(32).shuffle(1000)` makes.
# With recipe "lecture" training also uses Keras' `SparseCategoricalCrossentropy` and shuffles whole batches
# (gpt_keras.runs.train); these fields must then keep these values.
LECTURE_ARITHMETIC: dict[str, Any] = dict(mixed_precision="off", jit_compile="off", bucket_by_length="off",
                                          shuffle_buffer=0)
# What choosing a recipe sets; flags given explicitly win over it (and a lecture run refuses those that
# would change LECTURE_ARITHMETIC). "fast" puts back the speed defaults.
RECIPES: dict[str, dict[str, Any]] = {
    "fast": dict(recipe="fast", mixed_precision="auto", jit_compile="auto"),
    "lecture": dict(recipe="lecture", epochs=5, batch_size=32, **LECTURE_ARITHMETIC),
}


def with_recipe(values: dict[str, Any], recipe: str | None) -> dict[str, Any]:
    """`values` (a preset's or a saved config's fields) with the recipe's settings on top; None changes nothing."""
    if recipe is None:
        return values
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    return {**values, **RECIPES[recipe]}
