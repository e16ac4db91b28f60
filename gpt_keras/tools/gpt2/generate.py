"""Generating with GPT-2 the way our model generates: our `Sampler`, our seed, the lecture's `info`.

Each step runs our `Sampler` (temperature, then top-k or top-p) on GPT-2's next-token distribution
with a numpy seed, one step at a time with GPT-2's key/value cache, so each step keeps the lecture's
step (`prompt`, `word_probs`, `atts`, `token`, `word`) and `gpt_keras.tools.viz` can draw it.
"""

from __future__ import annotations

import numpy as np

from gpt_keras.core.generation import make_step
from gpt_keras.core.sampling import Sampler, SamplingError, softmax
from gpt_keras.tools.gpt2.load import GPT2


class NoStop:
    """A sampler that never picks `stop_id`, so a timed run generates exactly the tokens asked for."""

    def __init__(self, sampler: Sampler, stop_id: int):
        self.sampler, self.stop_id = sampler, stop_id

    def sample(self, probs: np.ndarray, rng: np.random.Generator):
        probs = np.array(probs, np.float64)
        probs[..., self.stop_id] = 0.0
        return self.sampler.sample(probs / probs.sum(axis=-1, keepdims=True), rng)


class GPT2Generator:
    """GPT-2 decoding with our samplers: one cached step per token, the `info` `CachedGenerator` returns.

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
            raise SamplingError("the prompt is empty; give at least one word, e.g. 'wine review'")
        return [self.gpt2.bos_id] + [i for word in words for i in self.gpt2.word_ids(word)]

    def generate(self, prompt: str, max_new_tokens: int, sampler, rng: np.random.Generator,
                 stop: bool = True) -> tuple[list[dict], str]:
        """Samples up to `max_new_tokens` tokens after `prompt`; returns (info, text).

        Each step has `prompt` (the context's token labels, space-separated), `word_probs` (the
        distribution the token was drawn from), `atts` (last layer's attention of the newest position
        over the context, [heads, tokens]), `token` and `word` (its label). `stop=False` never picks
        the end token (for timing).
        """
        import tensorflow as tf

        gpt2, window = self.gpt2, self.gpt2.n_positions
        sampler = sampler if stop else NoStop(sampler, gpt2.eos_id)
        tokens = self.prompt_ids(prompt)
        new: list[int] = []
        labels = [gpt2.token_label(i) for i in tokens]
        logits, attention, past = self._prefill(tf.constant([tokens[-window:]], tf.int32))
        info = []
        for _ in range(max_new_tokens):
            token, distribution = sampler.sample(softmax(logits.numpy()[0]), rng)
            token = int(token)
            label = gpt2.token_label(token)
            info.append(make_step(" ".join(labels), distribution, attention.numpy()[0], token, label))
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
