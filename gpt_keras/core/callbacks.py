"""The lecture's Keras callback: `TextGenerator` samples a text after every epoch.

`TextGenerator` keeps the lecture's names (`sample_from`, `generate`, `on_epoch_end`) and prints
`generated text:` as the slides do, but draws from its own seeded random generator, so a seed gives
the same text in the training process and in a later `gpt-keras generate`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np

from gpt_keras.core.data import Vocabulary
from gpt_keras.core.checks import check_max_tokens, check_seed, printable
from gpt_keras.core.generation import CachedGenerator, generate_lecture
from gpt_keras.core.sampling import Sampler, SamplingError

METHODS = ("cached", "lecture")


class TextGenerator(keras.callbacks.Callback):
    """Generates text from a prompt after each epoch, and on demand with `generate`.

    Args:
        index_to_word: the vocabulary (a list, as `vectorizer.get_vocabulary()` returns, or a `Vocabulary`).
        top_k: keep only the k most likely words when sampling (None: all, the lecture's behaviour;
            the lecture's own `top_k=10` argument was never used).
        prompt, max_tokens, temperature: what to generate after each epoch (lecture: "wine review", 80, 1.0).
        seed: seeds the random generator (None: a fresh one each run).
        method: "cached" (key/value cache, fast) or "lecture" (`model.predict` per word, as taught).
        every_epoch: generate in `on_epoch_end` (set False to only generate on demand).
        print_fn: where `generated text:` goes (None prints nothing).

    Example:
        >>> text_generator = TextGenerator(vocab, seed=0)
        >>> gpt.fit(train_ds, epochs=5, callbacks=[text_generator])            # doctest: +SKIP
        >>> info = text_generator.generate("wine review : germany", max_tokens=80, temperature=0.5)
    """

    def __init__(self, index_to_word: Sequence[str] | Vocabulary, top_k: int | None = None, *,
                 prompt: str = "wine review", max_tokens: int = 80, temperature: float = 1.0,
                 seed: int | None = None, method: str = "cached", every_epoch: bool = True,
                 print_fn: Callable[[str], None] | None = print):
        super().__init__()
        if method not in METHODS:
            raise SamplingError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        _check_generator_args(prompt, max_tokens, seed, print_fn)  # fail now, not after the first epoch
        self.vocab = index_to_word if isinstance(index_to_word, Vocabulary) else Vocabulary(tuple(index_to_word))
        self.top_k = top_k
        self.prompt, self.max_tokens, self.temperature = prompt, max_tokens, temperature
        Sampler(temperature=temperature, top_k=top_k)
        self.method = method
        self.every_epoch = every_epoch
        self.print_fn = print_fn
        self.rng = np.random.default_rng(seed)
        self.generated: list[tuple[int | None, str]] = []
        self._cached: CachedGenerator | None = None

    def sample_from(self, probs: np.ndarray, temperature: float):
        """The lecture's sampler: `probs ** (1/T)` renormalised, then one draw; returns (index, probs)."""
        return Sampler(temperature=temperature, top_k=self.top_k).sample(probs, self.rng)

    def generate(self, start_prompt: str, max_tokens: int, temperature: float, *, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False, method: str | None = None) -> list[dict]:
        """Generates from `start_prompt` and prints the text; returns the lecture's `info`, one dict per generated word.

        Each step has `prompt` (the text before the word), `word_probs` (the distribution the word
        was drawn from), `atts` (last position's attention over the prompt, [heads, words]), and the
        chosen `token` and `word`.
        """
        sampler = Sampler(temperature=temperature, top_k=top_k if top_k is not None else self.top_k,
                          top_p=top_p, greedy=greedy)
        info, text = self._generate(start_prompt, max_tokens, sampler, method or self.method)
        self.last_text = text
        if self.print_fn is not None:
            self.print_fn(f"\ngenerated text:\n{printable(text)}\n")  # no escape codes from the data
        return info

    def _generate(self, start_prompt, max_tokens, sampler, method):
        if method == "lecture":
            return generate_lecture(self.model, self.vocab, start_prompt, max_tokens, sampler, self.rng)
        if method != "cached":
            raise SamplingError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if self._cached is None or self._cached.model is not self.model:
            self._cached = CachedGenerator(self.model, self.vocab)
        return self._cached.generate(start_prompt, max_tokens, sampler, self.rng)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.last_text = None  # the weights are NaN: nothing to read, and no text to log
            return
        if self.every_epoch:
            self.generate(self.prompt, max_tokens=self.max_tokens, temperature=self.temperature)
            self.generated.append((epoch, self.last_text))

    def get_rng_state(self) -> dict:
        """The random generator's state, saved with checkpoints so a resumed run samples on."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def _check_generator_args(prompt, max_tokens, seed, print_fn) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise SamplingError(f"prompt must be a non-empty string, got {prompt!r}")
    check_max_tokens(max_tokens, error=SamplingError)
    if seed is not None:
        check_seed(seed, error=SamplingError)
    if print_fn is not None and not callable(print_fn):
        raise SamplingError(f"print_fn must be callable (print, a list's append) or None, got {print_fn!r}")
