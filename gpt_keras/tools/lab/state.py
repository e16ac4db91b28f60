"""The lab behind the page: a loaded run, its cached generator and its prompt cache (no Gradio)."""

from __future__ import annotations

import collections
import sys
import threading
import warnings

import numpy as np

from gpt_keras.core.checks import check_room_after_prompt
from gpt_keras.core.generation import CachedGenerator, PromptWarning
from gpt_keras.core.sampling import Sampler
from gpt_keras.tools.lab import form
from gpt_keras.tools.lab.views import (LabError, PromptView, Step, attention_html, bars_html, distribution_at,
                                       message_html, prompt_note, read_prompt, sample_steps, seen_prompt,
                                       shown_prompt, top_bars)

PROMPT_CACHE_SIZE = 64  # prompts whose forward pass is kept, the most recently used first
PROMPT_CACHE_BYTES = 32 * 2**20  # and what they may hold together: each keeps a distribution over the vocabulary


class Lab:
    """A loaded run, its cached generator, and the distributions of the prompts seen so far.

    Gradio calls the handlers from worker threads; one lock keeps the model to one call at a time.
    Every value comes from a web form (or its API): each is checked (`form`) before the model runs.
    """

    def __init__(self, model, vocab, n_heads: int):
        self.model, self.vocab, self.n_heads = model, vocab, n_heads
        self.generator = CachedGenerator(model, vocab)
        self._views: collections.OrderedDict[str, tuple[PromptView, int]] = collections.OrderedDict()
        self.cache_bytes = 0  # what the cached views hold, by `view_bytes`
        self._lock = threading.Lock()

    @classmethod
    def from_run(cls, run) -> "Lab":
        return cls(run.model, run.vocab, run.config.n_heads)

    def view(self, prompt: str) -> PromptView:
        """The prompt's forward pass, computed on first use and then kept (the last `PROMPT_CACHE_SIZE`
        prompts, at most `PROMPT_CACHE_BYTES` together; the newest is always kept)."""
        prompt = form.check_prompt(prompt, self.vocab)
        key = " ".join(prompt.split())
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key][0]
            view = read_prompt(self.model, self.vocab, prompt)
            size = view_bytes(key, view)
            self._views[key] = (view, size)
            self.cache_bytes += size
            while len(self._views) > 1 and (len(self._views) > PROMPT_CACHE_SIZE
                                            or self.cache_bytes > PROMPT_CACHE_BYTES):
                _, (_, dropped) = self._views.popitem(last=False)
                self.cache_bytes -= dropped
            return view

    def redraw(self, prompt: str, temperature: float, top_k=None, top_p=None, head: int | None = None
               ) -> tuple[str, str, str]:
        """What the slider redraws: (distribution with entropy, shaded prompt, message) as HTML."""
        temperature = form.temperature(temperature)
        top_k, top_p = form.optional_top_k(top_k), form.optional_top_p(top_p)
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
        max_tokens = form.max_tokens(max_tokens)
        temperature = form.temperature(temperature)
        top_k, top_p = form.optional_top_k(top_k), form.optional_top_p(top_p)
        view = self.view(prompt)  # checks the prompt (empty, unknown) with the page's messages
        check_room_after_prompt(len(view.words) - view.cut, max_tokens, "max tokens", LabError)
        with self._lock, warnings.catch_warnings():
            # unknown words and a prompt longer than the window are on the page already (`prompt_note`),
            # not the terminal's business; the lock keeps the other samples out of this filter
            warnings.simplefilter("ignore", PromptWarning)
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


def view_bytes(key: str, view: PromptView) -> int:
    """What a cached prompt holds: its key, its words, its distribution and its attention."""
    return (sys.getsizeof(key) + sum(map(sys.getsizeof, view.words)) + view.probs.nbytes + view.attention.nbytes
            + sum(map(sys.getsizeof, view.unknown)))


# The page's names for the form's checks (page.py imports them from here).
_head_index = form.head_index
_optional_top_k = form.optional_top_k
