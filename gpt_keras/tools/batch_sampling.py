"""Many texts from one prompt at once, for the temperature lab and the GPT-2 comparison.

`sample_batch` drives `CachedGenerator`'s batched steps (`prefill`, then `advance`): every step
decodes all the texts together, and records what the lab measures: each chosen word's
log-probability under the model and the model's untempered distribution at each step.
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
    step_distributions: list[np.ndarray]  # the model's untempered distribution at each step, [batch, vocab]


def sample_batch(generator: CachedGenerator, start_prompt: str, n_samples: int, max_tokens: int, sampler: Sampler,
                 rng: np.random.Generator) -> BatchResult:
    """`n_samples` texts from one prompt in one batch: each step decodes all of them together."""
    max_tokens = check_max_tokens(max_tokens, error=SamplingError)
    n_samples = check_count(n_samples, "n_samples", 1, MAX_SAMPLES, SamplingError)
    prompt_ids = encode_prompt(generator.vocab, start_prompt, generator.max_len)
    n_new = max(max_tokens - len(prompt_ids), 0)
    tokens = np.zeros((n_samples, n_new), np.int64)
    log_probs = np.full((n_samples, n_new), np.nan)
    done = np.zeros(n_samples, bool)
    lengths = np.zeros(n_samples, np.int64)
    distributions = []
    if n_new:
        history = np.tile(np.asarray(prompt_ids, np.int32), (n_samples, 1))
        probs, _, caches = generator.prefill(prompt_ids, n_samples)
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
            history = np.concatenate([history[:, -generator.max_len:], chosen[:, None].astype(np.int32)], axis=1)
            probs, _, caches = generator.advance(history, caches)
    texts = [_text(generator.vocab, prompt_ids, row[:length]) for row, length in zip(tokens, lengths)]
    return BatchResult(prompt_ids, tokens, lengths, log_probs, texts, distributions)


def _text(vocab, prompt_ids: list[int], new_ids: np.ndarray) -> str:
    return " ".join(word for word in (vocab[i] for i in [*prompt_ids, *new_ids]) if word)
