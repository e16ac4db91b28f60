"""The lab's views: pure functions from a model's next word to values and escaped HTML (no Gradio).

The model runs once per prompt (`read_prompt`); moving the slider only re-applies temperature to
those cached probabilities (`distribution_at`). Every text that comes from the data or the user is
HTML-escaped.
"""

from __future__ import annotations

import dataclasses
import html
import math
import sys
from typing import Sequence

import numpy as np

from gpt_keras.core.checks import GPTKerasError, check_seed
from gpt_keras.core.sampling import Sampler, SamplingError
from gpt_keras.runs.files import one_line
from gpt_keras.runs.rundir import RunError
from gpt_keras.tools.temperature.experiment import entropy
from gpt_keras.tools.viz import percent

DEFAULT_PROMPT = "wine review : germany :"
COMPARE_TEMPERATURES = (0.5, 1.0, 3.0)
DEFAULT_SEED = 0
DEFAULT_MAX_TOKENS = 80  # the lecture's max_tokens, prompt included
TOP_WORDS = 10


class LabError(GPTKerasError, ValueError):
    """Something on the page cannot be shown (an empty prompt, no known word, a bad number); shown as a message."""



# --- the model's next word, computed once per prompt ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PromptView:
    """One forward pass over a prompt: what every slider position is computed from.

    Attributes:
        words: the prompt's words as the model reads them (standardised).
        probs: the model's next-word distribution (temperature 1), [vocab].
        attention: the last position's attention over the words it saw, per head, [heads, words].
        unknown: prompt words not in the vocabulary (read as `[UNK]`).
        cut: how many words from the start fell outside the context window.
    """

    words: tuple[str, ...]
    probs: np.ndarray
    attention: np.ndarray
    unknown: tuple[str, ...] = ()
    cut: int = 0


def read_prompt(model, vocab, prompt: str) -> PromptView:
    """Runs the model once over `prompt` and keeps its next-word distribution and attention.

    Raises:
        LabError: the prompt is empty, or none of its words is in the vocabulary.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise LabError("the prompt is empty: type at least one word, e.g. 'wine review : germany :'")
    ids, unknown = vocab.encode(prompt)
    if not ids:
        raise LabError("the prompt has no words the model can read")
    if all(index == 1 for index in ids):
        raise LabError(f"none of the prompt's words is in the vocabulary ({', '.join(unknown)}); try words from "
                       "the reviews, e.g. 'wine review : germany :'")
    max_len = model.get_layer("embedding").max_len
    seen = ids[-max_len:]
    probs, attention = model(np.asarray([seen], np.int32), training=False)
    # copies of the last position only: a slice would keep every position's distribution alive in the cache
    return PromptView(words=tuple(vocab.standardize(prompt)), probs=np.array(np.asarray(probs)[0, -1], np.float64),
                      attention=np.array(np.asarray(attention)[0, :, -1, :], np.float64), unknown=tuple(unknown),
                      cut=len(ids) - len(seen))


def sampler_for(temperature: float, top_k: int | None = None, top_p: float | None = None) -> Sampler:
    """The page's settings as a `Sampler`: top-k 0 and top-p 1 mean "off"."""
    top_k = None if top_k in (None, 0) else top_k
    top_p = None if top_p is None or top_p >= 1 else top_p
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    return Sampler(temperature=temperature, top_k=top_k, top_p=top_p)


def distribution_at(probs: np.ndarray, temperature: float, top_k: int | None = None,
                    top_p: float | None = None) -> np.ndarray:
    """The distribution the next word would be drawn from at `temperature` (then top-k or top-p)."""
    return sampler_for(temperature, top_k, top_p).distribution(probs)


@dataclasses.dataclass(frozen=True)
class Bars:
    """A distribution as the page draws it: the top words, what the rest share, the entropy."""

    top: tuple[tuple[str, float], ...]
    rest: float
    rest_count: int
    entropy: float
    vocab_size: int


def top_bars(distribution: np.ndarray, vocab, n_words: int = TOP_WORDS) -> Bars:
    """The `n_words` most likely words (ties: lower id first) and the probability all others share."""
    distribution = np.asarray(distribution, np.float64)
    order = np.argsort(-distribution, kind="stable")[:n_words]
    top = tuple((_label(vocab[int(i)]), float(distribution[i])) for i in order)
    rest = float(max(0.0, 1.0 - sum(p for _, p in top)))
    return Bars(top, rest, len(distribution) - len(top), float(entropy(distribution)), len(distribution))


def _label(word: str) -> str:
    return "<end>" if word == "" else word


# --- HTML (every text escaped) -----------------------------------------------------------------------

def bars_html(bars: Bars, caption: str = "") -> str:
    """Bars with percentages, "the rest" summed, and the entropy, as an HTML fragment.

    The entropy and the top word's share are also in `data-` attributes, for scripts and tests.
    """
    top_share = bars.top[0][1] if bars.top else 0.0
    rows = "".join(
        f'<tr class="lab-bar"><td class="lab-word">{html.escape(word)}</td>'
        f'<td class="lab-track"><span class="lab-fill" style="width:{100 * p:.2f}%"></span></td>'
        f'<td class="lab-pct">{html.escape(percent(p))}</td></tr>'
        for word, p in bars.top)
    rows += (f'<tr class="lab-rest"><td class="lab-word">the rest ({bars.rest_count:,} words)</td>'
             f'<td class="lab-track"><span class="lab-fill lab-fill-rest" style="width:{100 * bars.rest:.2f}%">'
             f'</span></td><td class="lab-pct">{html.escape(percent(bars.rest))}</td></tr>')
    uniform = math.log(bars.vocab_size) if bars.vocab_size > 1 else 0.0
    caption_html = f'<div class="lab-caption">{html.escape(caption)}</div>' if caption else ""
    return (f'<div class="lab-distribution" data-entropy="{bars.entropy:.6f}" data-top-share="{top_share:.6f}">'
            f"{caption_html}<table class=\"lab-bars\">{rows}</table>"
            f'<div class="lab-entropy">entropy <b class="lab-entropy-value">{bars.entropy:.3f}</b> nats '
            f'<span class="lab-muted">(0 = certain, {uniform:.2f} = every word equally likely)</span></div></div>')


def attention_html(words: Sequence[str], attention: np.ndarray, head: int | None = None) -> str:
    """The prompt with each word shaded by attention, a legend, and the most attended words in percent.

    `attention` is [heads, visible words] (the last `visible` words of `words`); `head` None shades
    by the mean of heads, else by that head (0-based). Each word's shade is its attention divided by
    the largest, as `print_probs` computes it, drawn from white to dark blue (`shade_colours`) so that
    the steps still tell apart on a projector. The words outside the context window are summed up in
    one grey line, so a long prompt keeps the page short.
    """
    attention = np.atleast_2d(np.asarray(attention, np.float64))
    if head is not None and not 0 <= head < attention.shape[0]:
        raise LabError(f"head must be 1 to {attention.shape[0]}, got {head + 1}")
    weights = attention.mean(axis=0) if head is None else attention[head]
    peak = weights.max() if weights.size else 0.0
    shades = weights / peak if peak > 0 else np.zeros_like(weights)
    first_visible = len(words) - len(shades)
    pieces = []
    if first_visible > 0:
        pieces.append(f'<span class="lab-outside">\u2026 {first_visible:,} earlier '
                      f'{"word" if first_visible == 1 else "words"} outside the context window</span>')
    for word, weight, shade in zip(words[first_visible:], weights, shades):
        background, text = shade_colours(shade)
        pieces.append(f'<span class="lab-att" data-shade="{shade:.3f}" style="background-color:{background};'
                      f'color:{text}" title="attention {html.escape(percent(weight))}">{html.escape(word)}</span>')
    which = "mean of heads" if head is None else f"head {head + 1}"
    return (f'<div class="lab-attention"><div class="lab-caption">attention ({html.escape(which)}): where the '
            f'model looks to choose the next word</div><div class="lab-prompt">{" ".join(pieces)}</div>'
            f"{_legend()}{_most_attended(words[first_visible:], weights)}</div>")


SHADE_DARKEST = (8, 69, 148)  # the most attended word: a dark blue that still reads on a washed-out projector
MOST_ATTENDED = 5


def shade_colours(shade: float) -> tuple[str, str]:
    """(background, text colour) of a word shaded `shade` (0 to 1): white to `SHADE_DARKEST`, and
    whichever of black or white text reads better on that background (either way a contrast of at least 4.5)."""
    shade = min(max(float(shade), 0.0), 1.0)
    rgb = tuple(round(255 + (dark - 255) * shade) for dark in SHADE_DARKEST)
    text = "#ffffff" if contrast(rgb, (255, 255, 255)) >= contrast(rgb, (0, 0, 0)) else "#000000"
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", text


def contrast(first: Sequence[int], second: Sequence[int]) -> float:
    """The WCAG contrast ratio of two sRGB colours (1 = the same, 21 = black on white)."""
    def luminance(rgb):
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _legend() -> str:
    swatches = "".join(f'<span class="lab-swatch" style="background-color:{shade_colours(s)[0]}"></span>'
                       for s in (0.0, 0.25, 0.5, 0.75, 1.0))
    return (f'<div class="lab-legend">little {swatches} the most attended word '
            f'<span class="lab-muted">(shade = attention / the largest)</span></div>')


def _most_attended(words: Sequence[str], weights: np.ndarray) -> str:
    """The words the model attends to most, with their share of the attention (it sums to 100%)."""
    order = np.argsort(-weights, kind="stable")[:MOST_ATTENDED]
    rows = "".join(
        f'<tr class="lab-bar"><td class="lab-word">{html.escape(words[i])}</td>'
        f'<td class="lab-track"><span class="lab-fill lab-fill-attention" style="width:{100 * weights[i]:.2f}%">'
        f'</span></td><td class="lab-pct">{html.escape(percent(weights[i]))}</td></tr>' for i in order)
    return f'<div class="lab-caption">most attended</div><table class="lab-bars lab-attended">{rows}</table>'


def message_html(text: str, kind: str = "error") -> str:
    """A message box on the page (kind "error" or "note"); empty text gives nothing."""
    return f'<div class="lab-message lab-{kind}">{html.escape(text)}</div>' if text else ""


def seen_prompt(view: PromptView) -> str:
    """The prompt as the model reads it: its words, the last `max_len` of them (what sampling starts from)."""
    return " ".join(view.words[view.cut:])


def shown_prompt(view: PromptView) -> str:
    """The prompt as the page prints it before generated words: the words the model reads, after an
    ellipsis when earlier ones were left out (so a 2,000-word prompt does not fill the page)."""
    return ("\u2026 " if view.cut else "") + seen_prompt(view)


def prompt_note(view: PromptView) -> str:
    """One line on a prompt the model read differently than typed (unknown words, a cut to its context)."""
    notes = []
    if view.unknown:
        more = f" \u2026 ({len(view.unknown):,} in all)" if len(view.unknown) > 10 else ""
        notes.append(f"not in the vocabulary, read as [UNK]: {', '.join(view.unknown[:10])}{more}")
    if view.cut:
        notes.append(f"the model reads only the last {len(view.words) - view.cut:,} of the prompt's "
                     f"{len(view.words):,} words (its context window), here and when sampling")
    return "; ".join(notes)


# --- sampling word by word ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Step:
    """One sampled word and what the model saw and offered at that step (small, for the page's state):
    `prompt` is the words its attention covers (the context window), not the whole text so far."""

    word: str
    prompt: tuple[str, ...]
    attention: np.ndarray
    bars: Bars


def sample_steps(generator, vocab, prompt: str, temperature: float, seed: int = DEFAULT_SEED, *,
                 max_tokens: int = DEFAULT_MAX_TOKENS, top_k: int | None = None,
                 top_p: float | None = None) -> list[Step]:
    """A seeded generation from `prompt` (a `CachedGenerator`), one `Step` per word.

    `max_tokens` counts the prompt, as in the lecture. The same seed and settings give the same words.
    """
    seed = check_seed(seed, error=LabError)
    sampler = sampler_for(temperature, top_k, top_p)
    records, _ = generator.generate(prompt, max_tokens, sampler, np.random.default_rng(seed))
    return [Step(_label(record["word"]), _window(record["prompt"], record["atts"]),
                 np.asarray(record["atts"], np.float64), top_bars(record["word_probs"], vocab)) for record in records]


def _window(text: str, attention) -> tuple[str, ...]:
    """The last words of `text` that `attention` covers, each word one shared string: a step keeps the
    window the model saw, so a long sample's steps grow with the window, not with the text."""
    n_seen = np.shape(attention)[-1]
    return tuple(map(sys.intern, text.rsplit(maxsplit=n_seen)[-n_seen:]))


def sampled_text(steps: Sequence[Step]) -> str:
    """The generated words, space-separated (the end token adds no word)."""
    return " ".join(step.word for step in steps if step.word != "<end>")


def compare_html(prompt: str, runs: Sequence[tuple[float, Sequence[Step]]]) -> str:
    """Three (or any number of) samples side by side, each with its temperature and mean entropy."""
    columns = []
    for temperature, steps in runs:
        mean_entropy = float(np.mean([step.bars.entropy for step in steps])) if steps else float("nan")
        columns.append(
            f'<div class="lab-compare-column" data-temperature="{temperature:g}">'
            f"<h4>T = {temperature:g}</h4><p class=\"lab-compare-meta\">{len(steps)} words, mean entropy "
            f"{mean_entropy:.2f} nats</p><p class=\"lab-compare-text\"><span class=\"lab-muted\">"
            f"{html.escape(prompt)}</span> {html.escape(sampled_text(steps))}</p></div>")
    return '<div class="lab-compare">' + "".join(columns) + "</div>"



def error_message(error: Exception) -> str:
    """The one plain line the page shows for an error: the user's own mistake as it is, anything else
    (a model that fails on this input, say) as what failed, so a panel is never left blank."""
    if isinstance(error, (LabError, SamplingError, RunError)):
        return one_line(error)
    return f"the model could not answer ({type(error).__name__}: {one_line(error, 300)})"

