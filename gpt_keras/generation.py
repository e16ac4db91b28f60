"""Autoregressive generation: pass the prompt, sample a word, append it, repeat.

Two loops give the same records (one per generated word: the prompt so far, the distribution the word
was drawn from, and the last position's attention over the prompt, per head):

- `generate_lecture` is the lecture's loop, kept for teaching: it calls `model.predict` on the whole
  growing sequence for every word.
- `CachedGenerator` keeps each block's keys and values (a key/value cache) and runs one compiled step
  per word on fixed shapes, so nothing is recomputed or retraced; it also samples many texts at once.

Both stop when padding (index 0) is sampled or the text reaches `max_tokens` tokens, prompt included,
as in the lecture. A prompt longer than the context window slides: only the last `max_len` tokens are
seen, and the attention covers those.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import keras
import numpy as np
from keras import ops

from gpt_keras.data import Vocabulary
from gpt_keras.config import check_int_at_least
from gpt_keras.model import transformer_blocks
from gpt_keras.sampling import Sampler, SamplingError

PAD_ID = 0


class PromptWarning(UserWarning):
    """A prompt had words outside the vocabulary or did not fit the context window."""


def encode_prompt(vocab: Vocabulary, prompt: str, max_len: int) -> list[int]:
    """Token ids of a prompt; unknown words become `[UNK]` and a long prompt is cut to the window, with a warning."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise SamplingError("the prompt is empty; give at least one word, e.g. 'wine review'")
    ids, unknown = vocab.encode(prompt)
    if unknown:
        warnings.warn(f"prompt words not in the vocabulary, read as [UNK]: {', '.join(unknown)}", PromptWarning,
                      stacklevel=3)
    if len(ids) > max_len:
        warnings.warn(f"the prompt has {len(ids)} tokens, more than the context window of {max_len}: "
                      f"the model sees only the last {max_len}", PromptWarning, stacklevel=3)
    return ids


def check_max_tokens(max_tokens: int) -> int:
    return check_int_at_least(max_tokens, "max_tokens", 1, SamplingError)


def make_record(prompt: str, distribution: np.ndarray, attention: np.ndarray, token: int, word: str) -> dict:
    """One step as the lecture records it, plus the chosen token and word for convenience."""
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
        (records, generated text).
    """
    max_tokens = check_max_tokens(max_tokens)
    check_vocabulary_fits(model, vocab)
    max_len = _context_length(model)
    tokens = encode_prompt(vocab, start_prompt, max_len)
    prompt = " ".join(vocab.standardize(start_prompt))
    info, sample_token = [], None
    while len(tokens) < max_tokens and sample_token != PAD_ID:
        x = np.array([tokens[-max_len:]])
        y, att = model.predict(x, verbose=0)
        sample_token, probs = sampler.sample(y[0][-1], rng)
        info.append(make_record(prompt, probs, att[0, :, -1, :], sample_token, vocab[sample_token]))
        tokens.append(sample_token)
        prompt = _append_word(prompt, vocab[sample_token])
    return info, prompt


def _append_word(prompt: str, word: str) -> str:
    return prompt + " " + word if word else prompt  # padding ends the text and adds no word


@dataclasses.dataclass
class BatchResult:
    """Texts sampled together: token ids, texts, and each chosen word's log-probability under the model.

    `log_probs[i, t]` is log p(token t | tokens before it) from the model's own distribution (before
    temperature), NaN where sample i had already stopped. Perplexity of a sample is
    exp(-mean of its log-probabilities).
    """

    prompt_ids: list[int]
    tokens: np.ndarray
    lengths: np.ndarray
    log_probs: np.ndarray
    texts: list[str]
    step_distributions: list[np.ndarray]  # the model's untempered distribution at each step, [batch, vocab]


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
        self.blocks = transformer_blocks(model)
        self.output_layer = model.get_layer("probabilities")
        self.max_len = self.embedding.max_len
        self._step = _compile(self._decode_step, model)
        self._window = _compile(self._decode_window, model)

    # -- the compiled functions ----------------------------------------------------------------

    def _decode_step(self, token_ids, position, caches):
        """Feeds one token per text at `position`: next-token probabilities [batch, vocab], the new
        token's attention [batch, heads, max_len] (zero past `position`) and the updated caches."""
        x = self.embedding.token_emb(token_ids[:, None]) + self.embedding.pos_emb(position[None])
        visible = (ops.arange(self.max_len) <= position)[None, :]
        new_caches, attention = [], None
        for block, (key_cache, value_cache) in zip(self.blocks, caches):
            mha = block.attn
            start = (0, position, 0, 0)
            key_cache = ops.slice_update(key_cache, start, ops.cast(mha._key_dense(x), key_cache.dtype))
            value_cache = ops.slice_update(value_cache, start, ops.cast(mha._value_dense(x), value_cache.dtype))
            x, attention = _attend(block, x, key_cache, value_cache, visible)
            new_caches.append((key_cache, value_cache))
        return self.output_layer(x)[:, 0, :], attention[:, :, 0, :], new_caches

    def _decode_window(self, token_ids, length):
        """Feeds a whole window [batch, max_len] whose first `length` tokens are real (the rest is
        padding the causal mask hides from them) in one call: the probabilities and attention at
        position `length - 1`, and every block's keys and values as the caches to decode on from."""
        x = self.embedding(token_ids)
        causal = ops.arange(self.max_len)[:, None] >= ops.arange(self.max_len)[None, :]
        caches, attention = [], None
        for block in self.blocks:
            mha = block.attn
            key, value = mha._key_dense(x), mha._value_dense(x)
            x, attention = _attend(block, x, key, value, causal)
            caches.append((key, value))
        last = length - 1
        return (self.output_layer(ops.take(x, last, axis=1)), ops.take(attention, last, axis=2), caches)

    # -- decoding ------------------------------------------------------------------------------

    def _advance(self, sequences: np.ndarray, caches):
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

    def _prefill(self, prompt_ids: list[int], batch_size: int):
        """Runs the prompt (its last `max_len` tokens) in one call; returns the state after its last token."""
        window = np.tile(np.asarray(prompt_ids[-self.max_len:], np.int32), (batch_size, 1))
        return self._run_window(window)

    def generate(self, start_prompt: str, max_tokens: int, sampler: Sampler,
                 rng: np.random.Generator) -> tuple[list[dict], str]:
        """One text with the lecture's per-step records (same words as `generate_lecture` for a seed)."""
        max_tokens = check_max_tokens(max_tokens)
        tokens = encode_prompt(self.vocab, start_prompt, self.max_len)
        prompt = " ".join(self.vocab.standardize(start_prompt))
        info = []
        if len(tokens) >= max_tokens:
            return info, prompt
        probs, attention, caches = self._prefill(tokens, 1)
        while True:
            token, distribution = sampler.sample(probs[0], rng)
            info.append(make_record(prompt, distribution, attention[0], token, self.vocab[token]))
            tokens.append(token)
            prompt = _append_word(prompt, self.vocab[token])
            if token == PAD_ID or len(tokens) >= max_tokens:
                return info, prompt
            probs, attention, caches = self._advance(np.asarray([tokens[-self.max_len - 1:]], np.int32), caches)

    def generate_batch(self, start_prompt: str, n_samples: int, max_tokens: int, sampler: Sampler,
                       rng: np.random.Generator) -> BatchResult:
        """`n_samples` texts from one prompt in one batch: each step decodes all of them together."""
        max_tokens = check_max_tokens(max_tokens)
        n_samples = check_int_at_least(n_samples, "n_samples", 1, SamplingError)
        prompt_ids = encode_prompt(self.vocab, start_prompt, self.max_len)
        n_new = max(max_tokens - len(prompt_ids), 0)
        tokens = np.zeros((n_samples, n_new), np.int64)
        log_probs = np.full((n_samples, n_new), np.nan)
        done = np.zeros(n_samples, bool)
        lengths = np.zeros(n_samples, np.int64)
        distributions = []
        if n_new:
            history = np.tile(np.asarray(prompt_ids, np.int32), (n_samples, 1))
            probs, _, caches = self._prefill(prompt_ids, n_samples)
            for step in range(n_new):
                distributions.append(probs)
                chosen, _ = sampler.sample(probs, rng)
                chosen = np.where(done, PAD_ID, chosen)
                tokens[:, step] = chosen
                picked = probs[np.arange(n_samples), chosen]
                with np.errstate(divide="ignore"):
                    log_probs[:, step] = np.where(done, np.nan, np.log(picked))
                lengths += ~done
                done |= chosen == PAD_ID
                if done.all() or step == n_new - 1:
                    break
                history = np.concatenate([history[:, -self.max_len:], chosen[:, None].astype(np.int32)], axis=1)
                probs, _, caches = self._advance(history, caches)
        texts = [self._text(prompt_ids, row[:length]) for row, length in zip(tokens, lengths)]
        return BatchResult(prompt_ids, tokens, lengths, log_probs, texts, distributions)

    def _text(self, prompt_ids: list[int], new_ids: np.ndarray) -> str:
        return " ".join(word for word in (self.vocab[i] for i in [*prompt_ids, *new_ids]) if word)


def _attend(block, x, key, value, visible):
    """One block on queries `x` over `key`/`value` (the cache): the block's output and its attention.

    The same arithmetic as `MultiHeadAttention` with a causal mask, written out so the keys and
    values can come from the cache; `visible` is a [queries, keys] boolean mask.
    """
    mha = block.attn
    query = mha._query_dense(x) * (1.0 / math.sqrt(block.key_dim))
    scores = ops.einsum("bqhd,bkhd->bhqk", query, key)
    scores = ops.where(visible[None, None, :, :], scores, ops.full_like(scores, -1e9))
    attention = ops.softmax(scores, axis=-1)
    attended = ops.einsum("bhqk,bkhd->bqhd", attention, value)
    return block.feed_forward(mha._output_dense(attended), x), attention


def _compile(function: Callable, model: keras.Model) -> Callable:
    """Compiles a decoding function for the active backend, reading the model's current weights.

    TensorFlow reads variables live inside `tf.function`; the function is XLA-compiled and its
    concrete function is called directly per input shape, which skips `tf.function`'s dispatch
    (about a quarter of a millisecond a call, a sixth of a decoding step on a CPU). JAX bakes arrays
    into a trace, so the function takes the variable values as an argument under a `StatelessScope`
    (a retrained model stays fresh). Other backends run it eagerly.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        traced = tf.function(function, jit_compile=True)
        concrete = {}

        def call(*args):
            args = tf.nest.map_structure(tf.convert_to_tensor, args)
            key = tuple(tuple(tensor.shape) for tensor in tf.nest.flatten(args))
            if key not in concrete:
                concrete[key] = traced.get_concrete_function(*args)
            return concrete[key](*args)

        return call
    if backend == "jax":
        import jax

        variables = model.variables

        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return function(*args)

        jitted = jax.jit(stateless)
        return lambda *args: jitted([variable.value for variable in variables], *args)
    return function
