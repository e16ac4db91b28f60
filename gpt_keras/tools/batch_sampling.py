"""Many texts from one prompt at once, for the temperature lab and the GPT-2 comparison.

`sample_batch` drives `CachedGenerator`'s batched steps (`prefill`, then `advance`): every step
decodes all the texts together, and records what the lab measures: each chosen word's
log-probability under the model and, per step, the entropy of the distribution it was drawn from and
of the model's own. The distributions themselves ([texts, vocabulary] per step: 16 GB for 100 texts of
2,048 tokens over 10,000 words) are kept only when asked for.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gpt_keras.core.checks import MAX_SAMPLES, check_count
from gpt_keras.core.data import PAD_ID
from gpt_keras.core.checks import check_max_tokens
from gpt_keras.core.generation import CachedGenerator, encode_prompt
from gpt_keras.core.sampling import Sampler, SamplingError


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
    first_distribution: np.ndarray  # the model's distribution after the prompt, [vocab] (the next-word table's)
    sampled_entropy: np.ndarray  # [batch, steps]: entropy (nats) of the distribution each word was drawn from
    model_entropy: np.ndarray  # [batch, steps]: entropy of the model's untempered one there (both NaN once stopped)
    # every step's untempered distribution, [batch, vocab], with keep_distributions=True only
    step_distributions: list[np.ndarray] = dataclasses.field(default_factory=list)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis (0 log 0 = 0)."""
    probs = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -terms.sum(axis=-1)


def sample_batch(generator: CachedGenerator, start_prompt: str, n_samples: int, max_tokens: int, sampler: Sampler,
                 rng: np.random.Generator, keep_distributions: bool = False) -> BatchResult:
    """`n_samples` texts from one prompt in one batch: each step decodes all of them together.

    `keep_distributions` also keeps every step's [n_samples, vocabulary] distribution; without it
    memory holds one step's, whatever the length.
    """
    max_tokens = check_max_tokens(max_tokens, error=SamplingError)
    n_samples = check_count(n_samples, "n_samples", 1, MAX_SAMPLES, SamplingError)
    prompt_ids = encode_prompt(generator.vocab, start_prompt, generator.max_len)
    n_new = max(max_tokens - len(prompt_ids), 0)
    tokens = np.zeros((n_samples, n_new), np.int64)
    log_probs = np.full((n_samples, n_new), np.nan)
    done = np.zeros(n_samples, bool)
    lengths = np.zeros(n_samples, np.int64)
    sampled_entropy, model_entropy = np.full((n_samples, n_new), np.nan), np.full((n_samples, n_new), np.nan)
    distributions, first = [], np.zeros(0)
    if n_new:
        history = np.tile(np.asarray(prompt_ids, np.int32), (n_samples, 1))
        probs, _, caches = generator.prefill(prompt_ids, n_samples)
        first = probs[0].copy()
        for step in range(n_new):
            if keep_distributions:
                distributions.append(probs)
            chosen, distribution = sampler.sample(probs, rng)
            sampled_entropy[~done, step] = entropy(distribution[~done])
            model_entropy[~done, step] = entropy(probs[~done])
            chosen = np.where(done, PAD_ID, chosen)
            tokens[:, step] = chosen
            picked = probs[np.arange(n_samples), chosen]
            with np.errstate(divide="ignore"):
                log_probs[:, step] = np.where(done, np.nan, np.log(picked))
            lengths += ~done
            done |= chosen == PAD_ID
            if done.all() or step == n_new - 1:
                break
            history = np.concatenate([history[:, -generator.max_len:], chosen[:, None].astype(np.int32)], axis=1)
            probs, _, caches = generator.advance(history, caches)
    texts = [_text(generator.vocab, prompt_ids, row[:length]) for row, length in zip(tokens, lengths)]
    return BatchResult(prompt_ids, tokens, lengths, log_probs, texts, first, sampled_entropy, model_entropy,
                       distributions)


def _text(vocab, prompt_ids: list[int], new_ids: np.ndarray) -> str:
    return " ".join(word for word in (vocab[i] for i in [*prompt_ids, *new_ids]) if word)
