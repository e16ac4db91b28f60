"""The temperature lab: what temperature does to the next-word distribution and to sampled text.

With a trained model (the calculator without one is `calculator.py`; the files are written by
`report.py`):

- `next_word_table` asks a model for its real next-word distribution after a prompt and shows the top
  words at each temperature. Temperature never changes the ranking, only how the probability is
  shared, so one list of words serves every column.
- `temperature_experiment` samples N texts per temperature in one batch (`sample_batch`) and
  measures them. The metrics, per temperature:

  - `entropy`: mean entropy, in nats, of the distributions the words were actually drawn from
    (after temperature and any top-k/top-p filter), over every sampled step of every sample;
    `model_entropy` is the same steps' entropy before temperature (the model's own uncertainty
    along the paths that temperature led it to). log(vocabulary size) is the uniform maximum.
  - `distinct_1`, `distinct_2`: distinct words (bigrams) divided by all words (bigrams) generated,
    pooled over the N samples (Li et al., 2016). 1.0 means nothing was repeated anywhere.
  - `repetition_rate`: share of generated bigrams that already occurred earlier in the same
    sample's generated part: the loops of low temperature ("this off - dry riesling is ... this off -
    dry riesling is"). Repeated single words are not counted, since ':' , ',' and 'and' recur in any
    review.
  - `unk_share`: share of generated words that are `[UNK]`.
  - `mean_log_prob`: mean log-probability per sampled token under the model's untempered
    distribution, and `perplexity` = exp(-mean_log_prob): how surprising the samples are to the
    model itself. The end-of-text token (padding) counts, because sampling it was a choice too.
  - `mean_length`: generated words per sample (the prompt and the end token not counted), and
    `ended_share`: share of samples that ended by sampling padding before reaching `max_tokens`.

  "Generated words" exclude the prompt and the end token. The samples at one temperature depend only
  on the seed and that temperature, not on which other temperatures are in the list.

Library code only: it returns values and writes files (atomically); the command line prints.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import warnings
from typing import Iterable, Sequence

import numpy as np

from gpt_keras.core.checks import check_int_at_least
from gpt_keras.core.data import PAD_ID, UNK_ID, Vocabulary
from gpt_keras.core.checks import check_max_tokens, check_room_after_prompt, check_seed
from gpt_keras.core.generation import CachedGenerator, PromptWarning, encode_prompt
from gpt_keras.core.sampling import Sampler, SamplingError, check_temperature
from gpt_keras.tools.batch_sampling import entropy, sample_batch
from gpt_keras.tools.tables import json_safe, clip_line, text_table
from gpt_keras.tools.temperature.calculator import format_number
from gpt_keras.tools.viz.steps import percent

DEFAULT_TEMPERATURES = (0.2, 0.5, 1.0, 1.5, 2.0, 3.0)
TENSORBOARD_FILE = "events.out.tfevents.temperature-lab.v2"  # TensorBoard reads any name holding "tfevents"
LECTURE_LOGITS = {"pfalz": 4.1, "mosel": 3.9, "rhein": 2.7}
LECTURE_TEMPERATURES = (1.0, 0.5, 1.5)

# name in rows -> (label in plots, short header in the terminal table, format there)
METRICS = {
    "entropy": ("entropy (nats)", "H", "{:.3f}"),
    "model_entropy": ("model entropy (nats)", "model H", "{:.3f}"),
    "distinct_1": ("distinct-1", "distinct-1", "{:.3f}"),
    "distinct_2": ("distinct-2", "distinct-2", "{:.3f}"),
    "repetition_rate": ("repetition rate", "repeats", "{:.3f}"),
    "unk_share": ("[UNK] share", "[UNK]", "{:.3f}"),
    "mean_log_prob": ("mean log-prob", "log-prob", "{:.3f}"),
    "perplexity": ("perplexity", "perplexity", "{:.2f}"),
    "mean_length": ("mean length", "length", "{:.1f}"),
    "ended_share": ("ended share", "ended", "{:.2f}"),
}
LEGEND = ("H: entropy (nats) of the distribution sampled from; model H: the same steps before temperature; "
          "repeats: share of bigrams already seen in the same sample; [UNK]: share of words; log-prob and "
          "perplexity: of the samples under the model; length: words generated; ended: share that sampled the "
          "end token")


def check_temperatures(temperatures: Iterable[float], name: str = "temperatures") -> tuple[float, ...]:
    """At least one temperature, each finite and > 0, none repeated; returned sorted ascending."""
    if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Iterable):
        raise SamplingError(f"{name} must be a list of numbers, got {temperatures!r}")
    values = [check_temperature(value, name) for value in temperatures]
    if not values:
        raise SamplingError(f"{name}: give at least one temperature")
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise SamplingError(f"{name}: {', '.join(f'{value:g}' for value in repeated)} given more than once")
    return tuple(sorted(values))


@dataclasses.dataclass(frozen=True)
class NextWordTable:
    """The model's next-word probabilities after a prompt, at several temperatures.

    `probabilities[j, i]` is word j's probability at temperature i; `other[i]` is what the words not
    shown share; `entropy[i]` is the whole distribution's entropy in nats. `words` are the model's
    most likely words, which are the most likely at every temperature (T keeps the order).
    """

    prompt: str
    temperatures: tuple[float, ...]
    words: tuple[str, ...]
    probabilities: np.ndarray
    other: np.ndarray
    entropy: np.ndarray
    strategy: str = ""

    def rows(self) -> list[dict]:
        return [{"word": word, **{f"T={t:g}": float(p) for t, p in zip(self.temperatures, probs)}}
                for word, probs in zip(self.words, self.probabilities)]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "strategy": self.strategy, "temperatures": list(self.temperatures),
                "words": list(self.words), "probabilities": self.probabilities.tolist(),
                "other": self.other.tolist(), "entropy": self.entropy.tolist()}

    def format(self) -> str:
        headers = ["next word"] + [f"T={t:g}" for t in self.temperatures]
        body = [[_word(word)] + [percent(p) for p in probs]
                for word, probs in zip(self.words, self.probabilities)]
        body.append(["(all others)"] + [percent(p) for p in self.other])
        body.append(["entropy (nats)"] + [f"{h:.3f}" for h in self.entropy])
        title = f'next word after "{self.prompt}"' + (f" ({self.strategy})" if self.strategy else "")
        return title + "\n" + text_table(headers, body)


def _next_words(probs: np.ndarray, vocab: Vocabulary, prompt: str, temperatures: Sequence[float],
                n_words: int, *, top_k: int | None = None, top_p: float | None = None) -> NextWordTable:
    """A `NextWordTable` from the model's untempered distribution `probs` [vocab]."""
    check_int_at_least(n_words, "n_words (words shown)", 1, SamplingError)
    probs = np.asarray(probs, np.float64)
    order = np.argsort(-probs, kind="stable")[:n_words]
    tempered = np.stack([Sampler(t, top_k=top_k, top_p=top_p).distribution(probs) for t in temperatures])
    shown = tempered[:, order]
    strategy = f"top-k {top_k}" if top_k is not None else f"top-p {top_p:g}" if top_p is not None else ""
    return NextWordTable(" ".join(vocab.standardize(prompt)), tuple(temperatures),
                         tuple(vocab[int(i)] for i in order), shown.T.copy(),
                         np.clip(1.0 - shown.sum(axis=1), 0.0, 1.0), entropy(tempered), strategy)


def next_word_table(model, vocab: Vocabulary, prompt: str, temperatures: Iterable[float] = DEFAULT_TEMPERATURES,
                    n_words: int = 5) -> NextWordTable:
    """The model's real next-word distribution after `prompt`, at each temperature.

    Args:
        model: a GPT built by `build_gpt` (trained or not).
        vocab: its vocabulary.
        prompt: the text so far; unknown words become `[UNK]` and a prompt longer than the context
            window is cut to its last `max_len` tokens, both with a `PromptWarning`.
        temperatures: each finite and > 0 (sorted ascending in the table).
        n_words: how many of the most likely words to show.

    Example:
        >>> print(next_word_table(model, vocab, "wine review : germany :", [0.5, 1, 3]).format())  # doctest: +SKIP
    """
    temperatures = check_temperatures(temperatures)
    max_len = model.get_layer("embedding").max_len
    ids = encode_prompt(vocab, prompt, max_len)
    probs, _ = model(np.asarray([ids[-max_len:]], np.int32), training=False)
    return _next_words(np.asarray(probs)[0, -1], vocab, prompt, temperatures, n_words)


@dataclasses.dataclass(frozen=True)
class TemperatureResult:
    """The samples drawn at one temperature, and their metrics (see the module docstring)."""

    temperature: float
    texts: tuple[str, ...]
    metrics: dict[str, float]
    log_probs: tuple[float, ...]  # mean log-probability of each sample

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "metrics": json_safe(self.metrics),
                "samples": [{"text": text, "mean_log_prob": json_safe(lp)}
                            for text, lp in zip(self.texts, self.log_probs)]}


@dataclasses.dataclass(frozen=True)
class TemperatureReport:
    """What `temperature_experiment` found: the next-word table, and samples and metrics per temperature."""

    prompt: str
    settings: dict
    next_words: NextWordTable
    results: tuple[TemperatureResult, ...]

    @property
    def temperatures(self) -> tuple[float, ...]:
        return tuple(result.temperature for result in self.results)

    def metric(self, name: str) -> np.ndarray:
        """One metric across the temperatures (ascending)."""
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; one of {', '.join(METRICS)}")
        return np.array([result.metrics[name] for result in self.results])

    def rows(self) -> list[dict]:
        """One row per temperature: the temperature and every metric."""
        return [{"temperature": result.temperature, **result.metrics} for result in self.results]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "settings": self.settings, "metric_definitions": _DEFINITIONS,
                "next_words": self.next_words.to_dict(), "results": [r.to_dict() for r in self.results]}

    def format_table(self, samples: int = 1, width: int | None = 100) -> str:
        """The next-word table, the metrics table and `samples` texts per temperature, for a terminal.

        Sample lines longer than `width` characters are cut with "..." (None: never cut).
        """
        headers = ["T"] + [METRICS[name][1] for name in METRICS]
        body = [[f"{result.temperature:g}"] + [format_number(result.metrics[name], fmt=METRICS[name][2])
                                                for name in METRICS] for result in self.results]
        settings = self.settings
        strategy = self.next_words.strategy
        lines = [self.next_words.format(), "",
                 f"{settings['n_samples']} samples per temperature, up to {settings['max_tokens']} tokens "
                 f"(prompt included), seed {settings['seed']}" + (f", {strategy}" if strategy else ""),
                 text_table(headers, body), textwrap.fill(LEGEND, width or 100)]
        for result in self.results:
            for index, text in enumerate(result.texts[:samples]):
                label = f"T={result.temperature:g}" + (f" #{index + 1}" if samples > 1 else "")
                lines.append("")
                lines.append(clip_line(f"{label}: {text}", width))
        return "\n".join(lines)


def temperature_experiment(model, vocab: Vocabulary, prompt: str,
                           temperatures: Iterable[float] = DEFAULT_TEMPERATURES, *, n_samples: int = 8,
                           max_tokens: int = 80, seed: int = 0, top_k: int | None = None,
                           top_p: float | None = None, n_words: int = 5,
                           generator: CachedGenerator | None = None) -> TemperatureReport:
    """Samples `n_samples` texts from `prompt` at each temperature and measures them.

    Args:
        model: a GPT built by `build_gpt` (trained or not).
        vocab: its vocabulary.
        prompt: the start of every sample (unknown words: `[UNK]` with a `PromptWarning`; longer than
            the context window: only its end is seen, with a `PromptWarning`; empty: `SamplingError`).
        temperatures: each finite and > 0, none repeated (the lecture's question, T = 3, is a default).
        n_samples: texts per temperature, sampled together in one batch.
        max_tokens: length of each text in tokens, prompt included (the lecture's `max_tokens`).
        seed: with the temperature, fixes the samples.
        top_k, top_p: an optional filter applied after temperature (one or neither).
        n_words: words in the next-word table.
        generator: a `CachedGenerator` for `model` to reuse (one is made otherwise).

    Returns:
        A `TemperatureReport`; its writers save CSV, JSON, a PNG and TensorBoard logs.

    Example:
        >>> report = temperature_experiment(model, vocab, "wine review : germany", seed=0)  # doctest: +SKIP
        >>> print(report.format_table())
    """
    temperatures = check_temperatures(temperatures)
    max_tokens = check_max_tokens(max_tokens, error=SamplingError)
    seed = check_seed(seed, error=SamplingError)
    samplers = [Sampler(t, top_k=top_k, top_p=top_p) for t in temperatures]  # checks top_k and top_p
    generator = generator if generator is not None else CachedGenerator(model, vocab)
    prompt_ids = encode_prompt(vocab, prompt, generator.max_len)  # warns once, here
    check_room_after_prompt(len(prompt_ids), max_tokens, error=SamplingError)
    results, first_step = [], None
    for temperature, sampler in zip(temperatures, samplers):
        rng = np.random.default_rng([int(seed), int(np.float64(temperature).view(np.uint64))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptWarning)
            batch = sample_batch(generator, prompt, n_samples, max_tokens, sampler, rng)
        first_step = batch.first_distribution
        results.append(_measure(temperature, batch))
    next_words = _next_words(first_step, vocab, prompt, temperatures, n_words, top_k=top_k, top_p=top_p)
    settings = {"n_samples": int(n_samples), "max_tokens": max_tokens, "seed": int(seed), "top_k": top_k,
                "top_p": top_p, "prompt_tokens": len(prompt_ids), "context_window": generator.max_len,
                "vocab_size": len(vocab)}
    return TemperatureReport(next_words.prompt, settings, next_words, tuple(results))


def _measure(temperature: float, batch) -> TemperatureResult:
    """The metrics of one temperature's batch (definitions in the module docstring)."""
    n_samples, n_steps = batch.tokens.shape
    sampled = np.arange(n_steps)[None, :] < batch.lengths[:, None]  # steps where a token was drawn
    tempered_entropy, model_entropy = [batch.sampled_entropy[sampled]], [batch.model_entropy[sampled]]
    words = [[int(t) for t in row[:length] if t != PAD_ID] for row, length in zip(batch.tokens, batch.lengths)]
    ended = [length > 0 and row[length - 1] == PAD_ID for row, length in zip(batch.tokens, batch.lengths)]
    unigrams = [w for sample in words for w in sample]
    bigrams = [pair for sample in words for pair in zip(sample, sample[1:])]
    repeated = sum(_repeated_bigrams(sample) for sample in words)
    log_probs = batch.log_probs[sampled]
    mean_log_prob = float(log_probs.mean()) if log_probs.size else math.nan
    metrics = {
        "entropy": _mean(tempered_entropy),
        "model_entropy": _mean(model_entropy),
        "distinct_1": _ratio(len(set(unigrams)), len(unigrams)),
        "distinct_2": _ratio(len(set(bigrams)), len(bigrams)),
        "repetition_rate": _ratio(repeated, len(bigrams)),
        "unk_share": _ratio(sum(w == UNK_ID for w in unigrams), len(unigrams)),
        "mean_log_prob": mean_log_prob,
        "perplexity": math.exp(-mean_log_prob) if math.isfinite(mean_log_prob) else math.nan,
        "mean_length": float(np.mean([len(sample) for sample in words])),
        "ended_share": float(np.mean(ended)),
    }
    per_sample = tuple(float(np.mean(row[mask])) if mask.any() else math.nan
                       for row, mask in zip(batch.log_probs, sampled))
    return TemperatureResult(float(temperature), tuple(batch.texts), metrics, per_sample)


def _repeated_bigrams(sample: Sequence[int]) -> int:
    """How many of a sample's bigrams already occurred earlier in it."""
    seen, repeats = set(), 0
    for pair in zip(sample, sample[1:]):
        repeats += pair in seen
        seen.add(pair)
    return repeats


def _mean(arrays: list[np.ndarray]) -> float:
    values = np.concatenate(arrays) if arrays else np.zeros(0)
    return float(values.mean()) if values.size else math.nan


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


_DEFINITIONS = {
    "entropy": "Mean entropy (nats) of the distributions the words were drawn from (after temperature and filter).",
    "model_entropy": "Mean entropy (nats) of the model's untempered distribution at the same steps.",
    "distinct_1": "Distinct generated words / generated words, pooled over the samples.",
    "distinct_2": "Distinct generated bigrams / generated bigrams, pooled over the samples.",
    "repetition_rate": "Share of generated bigrams that already occurred earlier in the same sample.",
    "unk_share": "Share of generated words that are [UNK].",
    "mean_log_prob": "Mean log-probability per sampled token (end token included) under the untempered model.",
    "perplexity": "exp(-mean log-probability): how surprising the samples are to the model.",
    "mean_length": "Generated words per sample (prompt and end token not counted).",
    "ended_share": "Share of samples that sampled the end token (padding) before max_tokens.",
}


def _word(word: str) -> str:
    return word if word else "(end)"
