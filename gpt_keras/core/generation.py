"""Autoregressive generation: pass the prompt, sample a word, append it, repeat.

Two loops give the same steps in float32 (the lecture's `info`: one dict per generated word with the prompt
so far, the distribution the word was drawn from, and the last position's attention over the prompt, per
head; under mixed precision they round differently, so a near-tie may be drawn differently):

- `generate_lecture` is the lecture's loop, kept for teaching: it calls `model.predict` on the whole
  growing sequence for every word.
- `CachedGenerator` keeps each block's keys and values (a key/value cache) and runs one compiled step
  per word on fixed shapes, so nothing is recomputed or retraced. Its `prefill` and `advance` steps
  take a batch, so many texts can be sampled at once (`gpt_keras.tools.batch_sampling`).

Both stop when padding (index 0) is sampled or the text reaches `max_tokens` tokens, prompt included,
as in the lecture. A prompt longer than the context window slides: only the last `max_len` tokens are
seen, and the attention covers those.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from gpt_keras.core.backend import compile_decoding
from gpt_keras.core.checks import check_max_tokens
from gpt_keras.core.data import PAD_ID, Vocabulary
from gpt_keras.core.layers import TransformerBlock
from gpt_keras.core.sampling import Sampler, SamplingError


class PromptWarning(UserWarning):
    """A prompt had words outside the vocabulary or did not fit the context window."""


def encode_prompt(vocab: Vocabulary, prompt: str, max_len: int) -> list[int]:
    """Token ids of a prompt; unknown words become `[UNK]` and a long prompt is cut to the window, with a warning."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise SamplingError("the prompt is empty; give at least one word, e.g. 'wine review'")
    ids, unknown = vocab.encode(prompt)
    if unknown:
        more = f" ... ({len(unknown)} in all)" if len(unknown) > 20 else ""
        warnings.warn(f"prompt words not in the vocabulary, read as [UNK]: {', '.join(unknown[:20])}{more}",
                      PromptWarning, stacklevel=3)
    if len(ids) > max_len:
        warnings.warn(f"the prompt has {len(ids)} tokens, more than the context window of {max_len}: "
                      f"the model sees only the last {max_len}", PromptWarning, stacklevel=3)
    return ids


def make_step(prompt: str, distribution: np.ndarray, attention: np.ndarray, token: int, word: str) -> dict:
    """One entry of the lecture's `info`, plus the chosen token and word for convenience."""
    return {"prompt": prompt, "word_probs": distribution, "atts": attention, "token": token, "word": word}


def _context_length(model: keras.Model) -> int:
    return model.get_layer("embedding").max_len


def check_vocabulary_fits(model: keras.Model, vocab: Vocabulary) -> None:
    """A model with more output units than the vocabulary has words could sample a word that does not exist.

    That happens when `vocab_size` exceeds the words a small corpus has (training shrinks it, but a
    hand-built model may not): fail at once, naming both sizes, instead of at a random step.
    """
    units = model.get_layer("probabilities").units
    if units > len(vocab):
        raise SamplingError(f"the model predicts {units:,} words but the vocabulary has {len(vocab):,}; build the "
                            f"model with vocab_size={len(vocab)} (the vectorizer's real vocabulary)")


def generate_lecture(model: keras.Model, vocab: Vocabulary, start_prompt: str, max_tokens: int,
                     sampler: Sampler, rng: np.random.Generator) -> tuple[list[dict], str]:
    """The lecture's loop: `model.predict` on the whole sequence for every new word.

    Returns:
        (info, generated text).
    """
    max_tokens = check_max_tokens(max_tokens, error=SamplingError)
    check_vocabulary_fits(model, vocab)
    max_len = _context_length(model)
    tokens = encode_prompt(vocab, start_prompt, max_len)
    prompt = " ".join(vocab.standardize(start_prompt))
    info, sample_token = [], None
    while len(tokens) < max_tokens and sample_token != PAD_ID:
        x = np.array([tokens[-max_len:]])
        y, att = model.predict(x, verbose=0)
        sample_token, probs = sampler.sample(y[0][-1], rng)
        info.append(make_step(prompt, probs, att[0, :, -1, :], sample_token, vocab[sample_token]))
        tokens.append(sample_token)
        prompt = _append_word(prompt, vocab[sample_token])
    return info, prompt


def _append_word(prompt: str, word: str) -> str:
    return prompt + " " + word if word else prompt  # padding ends the text and adds no word


class CachedGenerator:
    """Fast generation with a key/value cache and one compiled decoding step.

    Each step embeds only the newest token, appends its keys and values to each block's cache and
    attends over the cache, instead of re-running the whole sequence. The prompt goes through in one
    call over the whole window (padded; the causal mask hides the padding), which fills the caches;
    once the text outgrows the window, each step reruns its last `max_len` tokens in that call.
    Shapes are fixed (the cache spans the window, masked past the current position), so each of the
    two functions is traced once per batch size.

    Args:
        model: a GPT built by `build_gpt` (trained or not).
        vocab: its vocabulary.

    Example:
        >>> generator = CachedGenerator(model, vocab)                       # doctest: +SKIP
        >>> info, text = generator.generate("wine review : germany", 80, Sampler(0.5), rng)
    """

    def __init__(self, model: keras.Model, vocab: Vocabulary):
        check_vocabulary_fits(model, vocab)
        self.model = model
        self.vocab = vocab
        self.embedding = model.get_layer("embedding")
        self.blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
        self.output_layer = model.get_layer("probabilities")
        self.max_len = self.embedding.max_len
        self._step = compile_decoding(self._decode_step, model)
        self._window = compile_decoding(self._decode_window, model)

    # -- the compiled functions ----------------------------------------------------------------

    def _decode_step(self, token_ids, position, caches):
        """Feeds one token per text at `position`: next-token probabilities [batch, vocab], the new
        token's attention [batch, heads, max_len] (zero past `position`) and the updated caches."""
        x = self.embedding(token_ids[:, None], start_position=position)
        new_caches, attention = [], None
        for block, cache in zip(self.blocks, caches):
            x, attention, cache = block.call_cached(x, cache, cache_index=position)
            new_caches.append(cache)
        return self.output_layer(x)[:, 0, :], attention[:, :, 0, :], new_caches

    def _decode_window(self, token_ids, length):
        """Feeds a whole window [batch, max_len] whose first `length` tokens are real (the rest is
        padding the causal mask hides from them) in one call: the probabilities and attention at
        position `length - 1`, and every block's keys and values as the caches to decode on from."""
        x = self.embedding(token_ids)
        caches, attention = [], None
        for block in self.blocks:
            x, attention, cache = block.call_cached(x)
            caches.append(cache)
        last = length - 1
        return (self.output_layer(ops.take(x, last, axis=1)), ops.take(attention, last, axis=2), caches)

    # -- decoding ------------------------------------------------------------------------------

    def advance(self, sequences: np.ndarray, caches):
        """Model probabilities [batch, vocab] and attention [batch, heads, words seen] after `sequences`.

        While the text fits the window only its newest token is fed, through the cache. Once it is
        longer, the window slides by one every step (every position shifts), so the last `max_len`
        tokens are run again in one call.
        """
        length = sequences.shape[1]
        if length <= self.max_len:
            probs, attention, caches = self._step(sequences[:, -1].astype(np.int32), np.int32(length - 1), caches)
            return np.asarray(probs, np.float64), np.asarray(attention)[:, :, :length], caches
        return self._run_window(sequences[:, -self.max_len:])

    def _run_window(self, window: np.ndarray):
        """The state after `window` ([batch, at most max_len] token ids), from one call."""
        batch, length = window.shape
        padded = np.zeros((batch, self.max_len), np.int32)
        padded[:, :length] = window
        probs, attention, caches = self._window(padded, np.int32(length))
        return np.asarray(probs, np.float64), np.asarray(attention)[:, :, :length], caches

    def prefill(self, prompt_ids: list[int], batch_size: int):
        """Runs the prompt (its last `max_len` tokens) in one call; returns the state after its last token."""
        window = np.tile(np.asarray(prompt_ids[-self.max_len:], np.int32), (batch_size, 1))
        return self._run_window(window)

    def generate(self, start_prompt: str, max_tokens: int, sampler: Sampler,
                 rng: np.random.Generator) -> tuple[list[dict], str]:
        """One text with the lecture's per-step `info` (in float32, the words `generate_lecture` draws for a seed)."""
        max_tokens = check_max_tokens(max_tokens, error=SamplingError)
        tokens = encode_prompt(self.vocab, start_prompt, self.max_len)
        prompt = " ".join(self.vocab.standardize(start_prompt))
        info = []
        if len(tokens) >= max_tokens:
            return info, prompt
        probs, attention, caches = self.prefill(tokens, 1)
        while True:
            token, distribution = sampler.sample(probs[0], rng)
            info.append(make_step(prompt, distribution, attention[0], token, self.vocab[token]))
            tokens.append(token)
            prompt = _append_word(prompt, self.vocab[token])
            if token == PAD_ID or len(tokens) >= max_tokens:
                return info, prompt
            probs, attention, caches = self.advance(np.asarray([tokens[-self.max_len - 1:]], np.int32), caches)
