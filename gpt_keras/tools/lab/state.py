"""The lab behind the page: a loaded run, its cached generator and its prompt cache (no Gradio)."""

from __future__ import annotations

import collections
import threading
from typing import Any

import numpy as np

from gpt_keras.core.checks import check_int_at_least, check_room_after_prompt
from gpt_keras.core.generation import CachedGenerator
from gpt_keras.core.sampling import Sampler
from gpt_keras.tools.lab.views import (LabError, PromptView, Step, attention_html, bars_html, distribution_at,
                                       message_html, prompt_note, read_prompt, sample_steps, seen_prompt,
                                       shown_prompt, top_bars)

PROMPT_CACHE_SIZE = 64


class Lab:
    """A loaded run, its cached generator, and the distributions of the prompts seen so far.

    Gradio calls the handlers from worker threads; one lock keeps the model to one call at a time.
    """

    def __init__(self, model, vocab, n_heads: int):
        self.model, self.vocab, self.n_heads = model, vocab, n_heads
        self.generator = CachedGenerator(model, vocab)
        self._views: collections.OrderedDict[str, PromptView] = collections.OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_run(cls, run) -> "Lab":
        return cls(run.model, run.vocab, run.config.n_heads)

    def view(self, prompt: str) -> PromptView:
        """The prompt's forward pass, computed on first use and then kept (the last 64 prompts)."""
        key = " ".join((prompt or "").split())
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
            view = read_prompt(self.model, self.vocab, prompt)
            self._views[key] = view
            while len(self._views) > PROMPT_CACHE_SIZE:
                self._views.popitem(last=False)
            return view

    def redraw(self, prompt: str, temperature: float, top_k=None, top_p=None, head: int | None = None
               ) -> tuple[str, str, str]:
        """What the slider redraws: (distribution with entropy, shaded prompt, message) as HTML."""
        view = self.view(prompt)
        bars = top_bars(distribution_at(view.probs, temperature, top_k, top_p), self.vocab)
        caption = f"next word after \u201c{_tail(view.words)}\u201d at T = {temperature:g}"
        return (bars_html(bars, caption), attention_html(view.words, view.attention, head),
                message_html(prompt_note(view), "note"))

    def sample(self, prompt: str, temperature: float, seed: int, max_tokens: int, *, top_k=None, top_p=None
               ) -> list[Step]:
        """A seeded generation from the words the model reads of `prompt` (the last `max_len`).

        A longer prompt starts from its last `max_len` words, the only ones the model sees; `max_tokens`
        counts those, so every prompt leaves room to sample (`prompt_note` says so on the page).
        """
        max_tokens = _whole(max_tokens, "max tokens", 1)
        view = self.view(prompt)  # checks the prompt (empty, unknown) with the page's messages
        check_room_after_prompt(len(view.words) - view.cut, max_tokens, "max tokens", LabError)
        with self._lock:
            return sample_steps(self.generator, self.vocab, seen_prompt(view), temperature, seed,
                                max_tokens=max_tokens, top_k=top_k, top_p=top_p)

    def shown_prompt(self, prompt: str) -> str:
        """The prompt as the page prints it before sampled words (`views.shown_prompt`)."""
        return shown_prompt(self.view(prompt))

    def warm_up(self) -> None:
        """Compiles the generator's step and window once, so the first "sample" click is not slow."""
        with self._lock:
            word = next((w for w in self.vocab.words[2:] if w), "wine")
            self.generator.generate(word, self.generator.max_len + 2, Sampler(1.0), np.random.default_rng(0))


def _tail(words, n_words: int = 8) -> str:
    """The last words of a prompt for a one-line caption (the whole prompt is in its box above)."""
    return ("\u2026 " if len(words) > n_words else "") + " ".join(words[-n_words:])


def _whole(value: Any, what: str, minimum: int) -> int:
    """`check_int_at_least` for a number from a web form, where 3.0 means 3."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_int_at_least(value, what, minimum, LabError)


def _head_index(choice: str | None) -> int | None:
    """"mean of heads" -> None, "head 2" -> 1."""
    if not choice or not choice.startswith("head "):
        return None
    return int(choice.split()[1]) - 1


def _optional_top_k(value) -> int | None:
    if value in (None, "", 0):
        return None
    return _whole(value, "top-k", 0) or None


