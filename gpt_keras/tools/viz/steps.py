"""Reading the steps of `info` (what `TextGenerator.generate` returns) into views ready to draw.

Shared by the three outputs: `text` (print_probs in a terminal or a log), `html` (notebooks and the
standalone page) and `pictures` (the heatmap PNG).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gpt_keras.core.checks import GPTKerasError, check_int_at_least, printable

Vocab = Sequence[str] | Mapping[int, str]  # index -> word: a list, a `Vocabulary`, or a dict
SHADE_RGB = (135, 206, 250)  # lightskyblue, the lecture's colour
PAD_LABEL = "<pad>"
SEPARATOR = "-----"


class VizError(GPTKerasError, ValueError):
    """A step cannot be drawn (a missing key, attention longer than the prompt, a bad argument)."""



@dataclasses.dataclass(frozen=True)
class StepView:
    """One generation step made ready to draw.

    Attributes:
        words: the prompt's words.
        first_visible: index of the first word the attention covers (0 unless the window slid).
        shade: head-averaged attention divided by its maximum, one value per visible word.
        head_shades: [heads, visible words], each head's attention divided by that head's maximum.
        attention: [heads, visible words], the raw attention weights.
        top: (token id, word, probability) of the `n_words` most likely next words, most likely first.
        chosen: the word that was sampled at this step, when the step says.
    """

    words: list[str]
    first_visible: int
    shade: np.ndarray
    head_shades: np.ndarray
    attention: np.ndarray
    top: list[tuple[int, str, float]]
    chosen: str | None


# --- reading the steps of info ---------------------------------------------------------------------------

def _steps(info: Any) -> list[Mapping]:
    if isinstance(info, Mapping):
        return [info]
    if isinstance(info, (str, bytes)) or not isinstance(info, Iterable):
        raise VizError(f"info must be the list of steps that generate() returns, got {type(info).__name__}")
    steps = list(info)
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise VizError(f"step {index + 1}: each step is a dict, got {type(step).__name__}")
    return steps


def _check_n_words(n_words: Any) -> int:
    return check_int_at_least(n_words, "n_words", 1, VizError)


def _field(step: Mapping, key: str, index: int) -> Any:
    if key not in step:
        raise VizError(f"step {index + 1}: the step has no {key!r} (keys: {', '.join(map(str, step))})")
    return step[key]


def _attention(step: Mapping, prompt_length: int, index: int) -> np.ndarray:
    """The step's attention as float64 [heads, words], checked against the prompt's length."""
    try:
        atts = np.asarray(_field(step, "atts", index)).astype(np.float64)
    except (TypeError, ValueError) as error:
        raise VizError(f"step {index + 1}: 'atts' is not an array of numbers ({error})") from None
    while atts.ndim > 2 and atts.shape[0] == 1:  # a leading batch axis of one
        atts = atts[0]
    if atts.ndim == 1:
        atts = atts[None, :]
    if atts.ndim != 2 or atts.shape[0] < 1:
        raise VizError(f"step {index + 1}: 'atts' must be [heads, words], got shape {atts.shape}")
    if atts.shape[1] > prompt_length:
        raise VizError(f"step {index + 1}: {atts.shape[1]} attention weights but the prompt has only "
                       f"{prompt_length} words")
    return np.nan_to_num(atts, nan=0.0)


def _normalise(values: np.ndarray) -> np.ndarray:
    """Divides by the maximum along the last axis (the lecture's att / max(att)); all-zero rows stay 0."""
    peak = values.max(axis=-1, keepdims=True) if values.shape[-1] else np.zeros(values.shape[:-1] + (1,))
    return np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)


def _word(vocab: Any, index: int) -> str:
    """The word of a token id; an id the vocabulary lacks (a model with more outputs) shows as `<id N>`."""
    if isinstance(vocab, Mapping):
        word = vocab.get(index, vocab.get(str(index)))
    else:
        word = vocab[index] if index < len(vocab) else None
    if word is None:
        return f"<id {index}>"
    word = str(word)
    return PAD_LABEL if word == "" else word


def top_words(word_probs: Any, vocab: Vocab, n_words: int = 5) -> list[tuple[int, str, float]]:
    """The `n_words` most likely words of a distribution as (token id, word, probability).

    Ties keep the lower token id first. Padding (the empty word, index 0) is named `<pad>`; an id
    past the end of the vocabulary (a model with more outputs than words) is named `<id N>`.

    Example:
        >>> top_words([0.1, 0.0, 0.6, 0.3], ["", "[UNK]", "mosel", "baden"], n_words=2)
        [(2, 'mosel', 0.6), (3, 'baden', 0.3)]
    """
    n_words = _check_n_words(n_words)
    probs = np.asarray(word_probs, dtype=np.float64).reshape(-1)
    order = np.argsort(-probs, kind="stable")[:n_words]
    return [(int(i), _word(vocab, int(i)), float(probs[i])) for i in order]


def step_view(step: Mapping, vocab: Vocab, n_words: int = 5,
              index: int = 0) -> StepView:
    """Reads one step (`prompt`, `atts`, `word_probs`, optional `word`) into a `StepView`."""
    prompt = _field(step, "prompt", index)
    if not isinstance(prompt, str):
        raise VizError(f"step {index + 1}: 'prompt' must be text, got {type(prompt).__name__}")
    words = prompt.split()
    attention = _attention(step, len(words), index)
    top = top_words(_field(step, "word_probs", index), vocab, n_words)
    chosen = step.get("word")
    chosen = None if chosen is None else (PAD_LABEL if chosen == "" else str(chosen))
    return StepView(words=words, first_visible=len(words) - attention.shape[1],
                    shade=_normalise(attention.mean(axis=0)), head_shades=_normalise(attention),
                    attention=attention, top=top, chosen=chosen)


def percent(probability: float) -> str:
    """The lecture's two decimals, always both, so a column of them lines up: 0.9243 -> '92.43%', 0.111 -> '11.10%'.

    The one rule for a probability shown to a person: the terminal, the HTML export, the lab and the
    notebook's package cells all print through this function.
    """
    return f"{100.0 * float(probability):.2f}%"


def generated_text(info: Any) -> str:
    """The whole text of a generation: the last prompt plus the last sampled word (padding adds none)."""
    steps = _steps(info)
    if not steps:
        return ""
    last = steps[-1]
    word = last.get("word")
    prompt = str(_field(last, "prompt", len(steps) - 1))
    return f"{prompt} {word}" if word else prompt



def _shaded_words(view: StepView, shades: np.ndarray, draw) -> str:
    """The prompt with `draw(word, alpha)` per word; alpha None for words outside the attention window."""
    pieces = []
    for position, word in enumerate(view.words):
        visible = position - view.first_visible
        pieces.append(draw(printable(word), None if visible < 0 else float(shades[visible])))
    return " ".join(pieces)


