"""Looking inside generation: the lecture's `print_probs`, attention heatmaps and a standalone HTML page.

Every step that `TextGenerator.generate` returns (its list is the lecture's `info`) holds the prompt so far, the distribution the next word was
drawn from (`word_probs`) and the last position's attention over the prompt, per head (`atts`,
[heads, words]). `print_probs` shows, for every step, the prompt with each word's background shaded
light blue, `rgba(135,206,250,a)` where `a` is the word's head-averaged attention divided by the
largest one (the word the model looked at most is fully shaded), then the `n_words` most likely next
words as `word: pct%`, then `-----`, as in the lecture.

Where it draws:

- "html": a notebook (Jupyter, VS Code, Colab) shows the shaded HTML, as in the lecture.
- "ansi": a terminal shades words with 24-bit background colours and aligns the top-k with bars.
- "plain": no escape codes (logs, files, pipes): each word is followed by its shade `a` in brackets.
- "auto": html in a notebook, ansi on a terminal (unless `NO_COLOR` is set), plain otherwise.

A long generation slides its context window, so a step's attention may cover only the last
`len(atts)` words of its prompt: the words before them are shown unshaded (`word[-]` in plain text),
because the model did not see them.

`format_probs` and `probs_html` return strings and print nothing; only `print_probs`, the lecture's
printing helper, prints.
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.core.checks import check_int_at_least
from gpt_keras.runs.files import atomic_path, write_text

Vocab = Sequence[str] | Mapping[int, str]  # index -> word: a list, a `Vocabulary`, or a dict
SHADE_RGB = (135, 206, 250)  # lightskyblue, the lecture's colour
MODES = ("auto", "html", "ansi", "plain")
PAD_LABEL = "<pad>"
SEPARATOR = "-----"
BAR_WIDTH = 20  # characters for 100 % in the terminal bars
_EIGHTHS = " ▏▎▍▌▋▊▉"
_RGB = ",".join(map(str, SHADE_RGB))
_RESET = "\x1b[0m"
_ANSI_BAR = "\x1b[38;2;" + ";".join(map(str, SHADE_RGB)) + "m"  # bars in the shading colour


class VizError(GPTKerasError, ValueError):
    """A step cannot be drawn (a missing key, attention longer than the prompt, a bad argument)."""


class Rendered(str):
    """What `print_probs` showed (HTML or text), returned as a string.

    Its notebook display is empty because `print_probs` has already shown it; a cell ending in
    `print_probs(info, vocab)` shows the output once, as in the lecture. Use `str(result)` or
    `IPython.display.HTML(result)` to work with it again.
    """

    def _ipython_display_(self) -> None:
        return None

    def __repr__(self) -> str:  # a REPL echoes this instead of pages of escaped markup
        return f"<print_probs output: {len(self):,} characters; str() gives the text>"


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
    """The lecture's `np.round(100 * p, 2)`, printed cleanly: 0.9243 -> '92.43%', 1.0 -> '100.0%'."""
    return f"{round(100.0 * float(probability), 2)}%"


def generated_text(info: Any) -> str:
    """The whole text of a generation: the last prompt plus the last sampled word (padding adds none)."""
    steps = _steps(info)
    if not steps:
        return ""
    last = steps[-1]
    word = last.get("word")
    prompt = str(_field(last, "prompt", len(steps) - 1))
    return f"{prompt} {word}" if word else prompt


# --- text: plain and ANSI ----------------------------------------------------------------------

def _printable(word: str) -> str:
    """Control characters (an escape code hidden in the data) are shown escaped, never sent to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in word)


def _blend(alpha: float) -> tuple[int, int, int]:
    """rgba(135,206,250,alpha) over a white page, as the notebook shows it."""
    return tuple(round(255 + alpha * (channel - 255)) for channel in SHADE_RGB)


def _ansi_word(word: str, alpha: float | None) -> str:
    if alpha is None:  # outside the context window
        return f"\x1b[2m{word}{_RESET}"
    r, g, b = _blend(alpha)
    return f"\x1b[38;2;0;0;0;48;2;{r};{g};{b}m{word}{_RESET}"


def _plain_word(word: str, alpha: float | None) -> str:
    return f"{word}[-]" if alpha is None else f"{word}[{alpha:.2f}]"


def _shaded_words(view: StepView, shades: np.ndarray, draw) -> str:
    """The prompt with `draw(word, alpha)` per word; alpha None for words outside the attention window."""
    pieces = []
    for position, word in enumerate(view.words):
        visible = position - view.first_visible
        pieces.append(draw(_printable(word), None if visible < 0 else float(shades[visible])))
    return " ".join(pieces)


def _bar(probability: float) -> str:
    eighths = int(round(max(0.0, min(1.0, probability)) * BAR_WIDTH * 8))
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def _text_step(view: StepView, heads: bool, ansi: bool) -> list[str]:
    draw = _ansi_word if ansi else _plain_word
    n_heads = view.head_shades.shape[0]
    lines = []
    if heads:
        width = len(f"head {n_heads}:")
        lines.append(f"{'mean:':<{width}} " + _shaded_words(view, view.shade, draw))
        for head in range(n_heads):
            lines.append(f"{f'head {head + 1}:':<{width}} " + _shaded_words(view, view.head_shades[head], draw))
    else:
        lines.append(_shaded_words(view, view.shade, draw))
    if ansi:
        width = max(len(_printable(word)) for _, word, _ in view.top) + 1
        for _, word, probability in view.top:
            label = f"{_printable(word) + ':':<{width}}"
            if word == view.chosen:
                label = f"\x1b[1m{label}{_RESET}"
            lines.append(f"{label} {100 * probability:6.2f}% {_ANSI_BAR}{_bar(probability)}{_RESET}")
    else:
        lines.extend(f"{_printable(word)}: {percent(probability)}" for _, word, probability in view.top)
    lines.append(SEPARATOR)
    return lines


def format_probs(info: Any, vocab: Vocab, n_words: int = 5, *,
                 mode: str = "plain", heads: bool = False) -> str:
    """`print_probs` as a string, printing nothing.

    Args:
        info: the steps of `TextGenerator.generate` (a list of dicts, or one dict).
        vocab: index -> word: a list, a `gpt_keras.core.data.Vocabulary`, or a dict.
        n_words: how many next words to list per step (default 5).
        mode: "plain", "ansi", "html" (same as `probs_html`) or "auto" (decided for `sys.stdout`).
        heads: also show each head's attention (each head shaded by its own maximum).

    Returns:
        For each step: the shaded prompt, the top-k lines `word: pct%`, and `-----` then an empty line.

    Example:
        >>> step = {"prompt": "wine review : germany :", "atts": [[.1, .1, .1, .6, .1]],
        ...           "word_probs": [0, 0, .9243, .0603, .0154]}
        >>> print(format_probs([step], ["", "[UNK]", "mosel", "rheinhessen", "baden"], n_words=2), end="")
        wine[0.17] review[0.17] :[0.17] germany[1.00] :[0.17]
        mosel: 92.43%
        rheinhessen: 6.03%
        -----
        <BLANKLINE>
    """
    mode = resolve_mode(mode)
    if mode == "html":
        return probs_html(info, vocab, n_words, heads=heads)
    n_words = _check_n_words(n_words)
    lines: list[str] = []
    for index, step in enumerate(_steps(info)):
        lines.extend(_text_step(step_view(step, vocab, n_words, index), heads, ansi=mode == "ansi"))
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")


# --- HTML --------------------------------------------------------------------------------------

def _html_word(word: str, alpha: float | None) -> str:
    if alpha is None:
        return f'<span style="color:#999;" title="outside the context window">{html.escape(word)}</span>'
    return f'<span style="background-color:rgba({_RGB},{alpha:.3f});">{html.escape(word)}</span>'


def _html_prompt(view: StepView, shades: np.ndarray) -> str:
    return _shaded_words(view, shades, _html_word)


def _html_label(text: str) -> str:
    return f'<span style="color:#666;font-size:smaller;">{text}</span> '


def _html_step(view: StepView, heads: bool) -> str:
    rows = [f"<div>{_html_label('mean:') if heads else ''}{_html_prompt(view, view.shade)}</div>"]
    if heads:
        for head, shades in enumerate(view.head_shades):
            rows.append(f"<div>{_html_label(f'head {head + 1}:')}{_html_prompt(view, shades)}</div>")
    lines = []
    for _, word, probability in view.top:
        text = html.escape(f"{word}: {percent(probability)}")
        lines.append(f"<b>{text}</b>" if word == view.chosen else text)
    rows.append('<div style="font-family:monospace;white-space:pre;">' + "\n".join(lines) + f"\n{SEPARATOR}</div>")
    return '<div class="gpt-keras-step" style="margin-bottom:0.8em;">' + "".join(rows) + "</div>"


def probs_html(info: Any, vocab: Vocab, n_words: int = 5, *, heads: bool = False) -> str:
    """The HTML `print_probs` displays in a notebook, as a string: shaded prompts, top-k lines, `-----`.

    Each word is a `<span style="background-color:rgba(135,206,250,a);">`, a = its head-averaged
    attention over the largest one (3 decimals); words are HTML-escaped; the sampled word is bold.
    """
    n_words = _check_n_words(n_words)
    sections = [_html_step(step_view(step, vocab, n_words, index), heads) for index, step in enumerate(_steps(info))]
    return '<div class="gpt-keras-probs" style="line-height:1.7;">' + "".join(sections) + "</div>"


# --- printing ----------------------------------------------------------------------------------

def in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, VS Code, Colab), where HTML can be displayed."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def resolve_mode(mode: str, file: IO[str] | None = None) -> str:
    """Turns "auto" into "html" (a notebook, when printing to it), "ansi" (a terminal) or "plain"."""
    if mode not in MODES:
        raise VizError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    if file is None and in_notebook():
        return "html"
    stream = file if file is not None else sys.stdout
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    return "ansi" if tty and colour else "plain"


def print_probs(info: Any, vocab: Vocab, top_k: int = 5, *, mode: str = "auto",
                heads: bool = False, file: IO[str] | None = None) -> Rendered:
    """The lecture's helper: for each step, the prompt shaded by attention and the top-k next words.

    Args:
        info: the steps of `TextGenerator.generate`.
        vocab: index -> word (a list such as `vectorizer.get_vocabulary()`, a `Vocabulary`, a dict).
        top_k: how many next words to list per step (default 5); the lecture's name for what the
            other functions here call `n_words` (it is not the top-k sampling filter).
        mode: "auto", "html", "ansi" or "plain" (see the module docstring).
        heads: also show each attention head's shading, not only their mean.
        file: where text goes (default `sys.stdout`); in a notebook with no file, HTML is displayed.

    Returns:
        What was shown, as a string (`Rendered`; a notebook does not show it a second time).

    Example:
        >>> info = text_generator.generate("wine review : germany", max_tokens=80, temperature=0.5)  # doctest: +SKIP
        >>> print_probs(info, vocab)                                                                  # doctest: +SKIP
    """
    mode = resolve_mode(mode, file)
    stream = file if file is not None else sys.stdout
    if mode == "html":
        text = probs_html(info, vocab, top_k, heads=heads)
        if file is None and in_notebook():
            from IPython.display import display

            # text/plain too, for viewers without HTML (nbconvert to text, a terminal client)
            plain = format_probs(info, vocab, top_k, mode="plain", heads=heads)
            display({"text/html": text, "text/plain": plain}, raw=True)
        else:
            print(text, file=stream)
    else:
        text = format_probs(info, vocab, top_k, mode=mode, heads=heads)
        print(text, file=stream, end="")
    return Rendered(text)


# --- pictures and pages ------------------------------------------------------------------------

def _attention_grid(steps: list[Mapping]) -> tuple[np.ndarray, list[str]]:
    """[heads, steps, words] attention (NaN where a step did not see the word) and the longest prompt's words."""
    prompts = [str(_field(step, "prompt", index)).split() for index, step in enumerate(steps)]
    attentions = [_attention(step, len(words), index) for index, (step, words) in enumerate(zip(steps, prompts))]
    n_heads = {attention.shape[0] for attention in attentions}
    if len(n_heads) != 1:
        raise VizError(f"the steps disagree on the number of heads ({sorted(n_heads)}); draw one generation")
    longest = max(prompts, key=len)
    grid = np.full((n_heads.pop(), len(steps), len(longest)), np.nan)
    for row, (words, attention) in enumerate(zip(prompts, attentions)):
        end = len(words)  # prompts grow by one word per step: align each row's window to its prompt's end
        grid[:, row, end - attention.shape[1]:end] = attention
    return grid, longest


def attention_heatmap(info: Any, path: str | Path, step: int | None = None, heads: bool = True) -> Path:
    """Draws attention as a PNG (matplotlib, Agg), written atomically.

    Args:
        info: the steps of `TextGenerator.generate`.
        path: the PNG to write (folders are created).
        step: None draws every step (rows: steps, columns: the prompt's words; a row covers the words
            the model saw at that step). An index into `info` (0 is the first step, negatives count
            from the end) draws that step alone: rows are the heads and their mean.
        heads: one panel per head (True) or only the head average (False); for one step, whether to
            add a row per head under the mean.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot's backend alone

    steps = _steps(info)
    if not steps:
        raise VizError("no steps to draw: the generation produced no steps")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) \
                or not -len(steps) <= step < len(steps):
            raise VizError(f"step must be an index into the {len(steps)} steps, got {step!r}")
        step = int(step) % len(steps)
        steps = [steps[step]]
    grid, words = _attention_grid(steps)
    if step is None:
        panels = [(f"head {h + 1}", grid[h]) for h in range(grid.shape[0])] if heads \
            else [("mean of heads", np.mean(grid, axis=0))]
        row_labels = [f"{i + 1}: {_printable(str(r.get('word', '')) or PAD_LABEL)}" for i, r in enumerate(steps)]
        title = "attention of the last position at each step (row label: the word it chose)"
    else:
        rows = [np.mean(grid[:, 0], axis=0)] + ([grid[h, 0] for h in range(grid.shape[0])] if heads else [])
        panels = [(f"step {step + 1}", np.stack(rows))]
        row_labels = ["mean"] + ([f"head {h + 1}" for h in range(grid.shape[0])] if heads else [])
        title = f"attention at step {step + 1} (info[{step}])"
    n_rows, n_cols = panels[0][1].shape
    width = min(max(6.0, 0.22 * n_cols + 2.5), 40.0)
    height = min(max(2.0, 0.18 * n_rows + 1.8), 30.0) * len(panels)
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, panels):
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="Blues", vmin=0.0,
                          vmax=max(float(np.nanmax(values)) if np.isfinite(values).any() else 1.0, 1e-9),
                          interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(n_cols), [_printable(word) for word in words], rotation=90, fontsize=7)
        ax.set_yticks(range(n_rows), row_labels, fontsize=7)
        ax.set_facecolor("#f2f2f2")  # words a step did not see
        figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    figure.suptitle(title, fontsize=10)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return Path(path)


_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; line-height: 1.5; }
h1 { font-size: 1.4em; } h2 { font-size: 1.05em; margin: 1.4em 0 0.3em; }
.text { background: #f7f7f7; padding: 0.8em; border-radius: 4px; }
.prompt { line-height: 1.9; }
table { border-collapse: collapse; margin-top: 0.4em; }
td, th { padding: 0.1em 0.6em; text-align: left; vertical-align: top; }
td.p { text-align: right; font-family: monospace; }
.bar { display: inline-block; height: 0.8em; background: rgb(135,206,250); }
.chosen td { font-weight: bold; }
.head { color: #666; font-size: smaller; white-space: nowrap; }
"""


def _page_step(index: int, view: StepView) -> str:
    chosen = f" → {html.escape(view.chosen)}" if view.chosen is not None else ""
    head_rows = "".join(
        f'<tr><td class="head">head {h + 1}</td><td class="prompt">{_html_prompt(view, shades)}</td></tr>'
        for h, shades in enumerate(view.head_shades))
    chosen_row = ' class="chosen"'
    top_rows = "".join(
        f'<tr{chosen_row if word == view.chosen else ""}><td>{rank}</td><td>{html.escape(word)}</td>'
        f'<td class="p">{html.escape(percent(probability))}</td>'
        f'<td><span class="bar" style="width:{100 * probability:.1f}px;"></span></td></tr>'
        for rank, (_, word, probability) in enumerate(view.top, start=1))
    return (f"<section><h2>Step {index + 1}{chosen}</h2>"
            f'<table><tr><td class="head">mean</td><td class="prompt">{_html_prompt(view, view.shade)}</td></tr>'
            f"{head_rows}</table>"
            f"<table><tr><th>#</th><th>next word</th><th>probability</th><th></th></tr>{top_rows}</table>"
            f"</section>")


def export_html(info: Any, vocab: Vocab, path: str | Path,
                title: str = "gpt-keras: generation step by step", n_words: int = 5) -> Path:
    """Writes a standalone HTML page (no external files) of a whole generation, atomically.

    The page holds the generated text, then for every step the prompt shaded by the head-averaged
    attention, a row per head (each shaded by its own maximum) and a table of the top-k next words.
    Every word and the title are HTML-escaped.

    Returns:
        The path written.
    """
    n_words = _check_n_words(n_words)
    steps = _steps(info)
    views = [step_view(step, vocab, n_words, index) for index, step in enumerate(steps)]
    sections = "\n".join(_page_step(index, view) for index, view in enumerate(views))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_PAGE_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="text">{html.escape(generated_text(steps))}</p>
<p>Each word's background is <span style="background-color:rgba(135,206,250,1);">light blue</span> in
proportion to the attention the last position paid it (divided by the largest); grey words were outside
the context window. {len(steps)} steps, top {n_words} next words each.</p>
{sections}
</body>
</html>
"""
    return write_text(path, page)
