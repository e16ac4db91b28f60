"""Turning the model's next-word probabilities into a choice: temperature, top-k, top-p, greedy.

The lecture samples with `probs ** (1 / T)` renormalised, which equals softmax(logits / T): the
probabilities are already a softmax, so raising them to 1/T and renormalising divides the logits by T.
Here that is computed in log space (`exp((log p - max log p) / T)`), the same numbers without the
underflow that `p ** (1/T)` hits at small T.

Order of operations, as taught: temperature first, then the filter (top-k or top-p), then renormalise.

Top-p keeps the smallest set of most likely words whose cumulative probability reaches p (>= p, with
a 1e-9 tolerance for rounding): over 0.60 / 0.30 / 0.09 / 0.01 with p = 0.9 that keeps the first two,
as Hugging Face's `TopPLogitsWarper` does and as the course's own example ("azul" kept alone at 99% for
p = 0.9) requires. The most likely word is always kept. keras-hub's samplers run their own decoding
loop without exposing each step's distribution, which the lecture's `info` needs, so the filters are
small array functions here, for one distribution or a batch.

Top-k keeps ties at the k-th probability (so a few more than k words can stay), as Hugging Face's
`TopKLogitsWarper` does. Greedy takes the most likely word (the first on ties) and ignores temperature
and filters.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.core.checks import check_count

TOP_P_TOLERANCE = 1e-9
MAX_TOP_K = 1_000_000  # the largest vocabulary a config allows: a larger k keeps every word anyway


class SamplingError(GPTKerasError, ValueError):
    """A decoding parameter is out of range; the message names it."""


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Temperature must be a finite number greater than 0 (T -> 0 is greedy: ask for greedy instead)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)):
        raise SamplingError(f"{name} must be a number, got {temperature!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise SamplingError(f"{name} must be a finite number greater than 0, got {temperature}; "
                            "use greedy decoding for the T -> 0 limit")
    return float(temperature)


def check_top_k(top_k: int | None) -> int | None:
    if top_k is None:
        return None
    return check_count(top_k, "top_k", 1, MAX_TOP_K, SamplingError)


def check_top_p(top_p: float | None) -> float | None:
    if top_p is None:
        return None
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating, np.integer)) \
            or not math.isfinite(top_p) \
            or not 0 < top_p <= 1:
        raise SamplingError(f"top_p must be in (0, 1], got {top_p!r}")
    return float(top_p)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(z / T) over the last axis, in float64: the textbook formula of the slides."""
    temperature = check_temperature(temperature)
    z = np.asarray(logits, np.float64) / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def lecture_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The lecture's two lines, verbatim: `probs ** (1 / T)`, then divide by the sum."""
    temperature = check_temperature(temperature)
    probs = np.asarray(probs, np.float64) ** (1 / temperature)
    return probs / np.sum(probs, axis=-1, keepdims=True)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`probs ** (1/T)` renormalised, computed in log space so that small T does not underflow to 0/0."""
    temperature = check_temperature(temperature)
    probs = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
    scaled = np.exp((log_probs - log_probs.max(axis=-1, keepdims=True)) / temperature)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def top_k_filter(probs: np.ndarray, k: int) -> np.ndarray:
    """Zeroes all but the k most likely words (ties at the k-th value are kept) and renormalises."""
    k = check_top_k(k)
    probs = np.asarray(probs, np.float64)
    if k >= probs.shape[-1]:
        return probs / probs.sum(axis=-1, keepdims=True)
    kth = np.partition(probs, -k, axis=-1)[..., -k, None]
    kept = np.where(probs >= kth, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


def top_p_filter(probs: np.ndarray, p: float) -> np.ndarray:
    """Keeps the smallest set of most likely words whose total reaches p, and renormalises.

    Example:
        >>> top_p_filter(np.array([0.60, 0.30, 0.09, 0.01]), 0.9).round(3).tolist()
        [0.667, 0.333, 0.0, 0.0]
    """
    p = check_top_p(p)
    probs = np.asarray(probs, np.float64)
    if p == 1.0:  # everything; the tolerance below would otherwise drop a tail of total mass < 1e-9
        return probs / probs.sum(axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    total_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = total_before < p - TOP_P_TOLERANCE  # a word is kept while the set before it is short of p
    keep_sorted[..., 0] = True  # the most likely word always stays, however small p is
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


def greedy_filter(probs: np.ndarray) -> np.ndarray:
    """All the probability on the most likely word (the first one on ties)."""
    probs = np.asarray(probs, np.float64)
    one_hot = np.zeros_like(probs)
    np.put_along_axis(one_hot, probs.argmax(axis=-1)[..., None], 1.0, axis=-1)
    return one_hot


def choose(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray | int:
    """Draws one index per distribution, exactly as `rng.choice(len(p), p=p)` does for one.

    The same inverse-CDF rule for one row or a batch, so batched and step-by-step generation draw
    the same words from the same seed.
    """
    probs = np.asarray(probs, np.float64)
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[..., -1:]
    uniform = rng.random(probs.shape[:-1])
    if probs.ndim == 1:
        return int(np.searchsorted(cdf, uniform, side="right"))
    return np.array([np.searchsorted(row, u, side="right") for row, u in zip(cdf, uniform)], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Sampler:
    """One decoding strategy: temperature, then an optional top-k or top-p filter, or greedy.

    Example:
        >>> Sampler(temperature=0.5, top_p=0.9).distribution(np.array([0.6, 0.3, 0.1]))  # doctest: +SKIP
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False

    def __post_init__(self):
        check_temperature(self.temperature)
        check_top_k(self.top_k)
        check_top_p(self.top_p)
        if self.top_k is not None and self.top_p is not None:
            raise SamplingError("choose top_k or top_p, not both")

    def distribution(self, probs: np.ndarray) -> np.ndarray:
        """The distribution the next word is drawn from (temperature, filter, renormalise)."""
        if self.greedy:
            return greedy_filter(probs)
        tempered = apply_temperature(probs, self.temperature)
        if self.top_k is not None:
            return top_k_filter(tempered, self.top_k)
        if self.top_p is not None:
            return top_p_filter(tempered, self.top_p)
        return tempered

    def sample(self, probs: np.ndarray, rng: np.random.Generator):
        """(chosen index or indices, the distribution they were drawn from)."""
        distribution = self.distribution(probs)
        return choose(distribution, rng), distribution

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        text = f"T={self.temperature:g}"
        if self.top_k is not None:
            text += f", top-k={self.top_k}"
        if self.top_p is not None:
            text += f", top-p={self.top_p:g}"
        return text


def sample_from(probs: np.ndarray, temperature: float, rng: np.random.Generator | None = None):
    """The lecture's `sample_from`: returns (index, tempered probabilities)."""
    return Sampler(temperature=temperature).sample(probs, rng if rng is not None else np.random.default_rng())
