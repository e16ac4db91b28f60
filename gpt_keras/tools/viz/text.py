"""print_probs as text: plain (logs, files, pipes) and ANSI (a terminal), and where `auto` draws.

`format_probs` returns the text and prints nothing; `print_probs`, the lecture's printing helper,
prints it (or, in a notebook, displays the HTML of `gpt_keras.tools.viz.html`).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from gpt_keras.core.checks import printable
from gpt_keras.tools.viz.html import probs_html
from gpt_keras.tools.viz.steps import (SEPARATOR, SHADE_RGB, StepView, Vocab, VizError, _check_n_words,
                                       _shaded_words, _steps, percent, step_view)

MODES = ("auto", "html", "ansi", "plain")
BAR_WIDTH = 20  # characters for 100 % in the terminal bars
_EIGHTHS = " ▏▎▍▌▋▊▉"
_RESET = "\x1b[0m"
_ANSI_BAR = "\x1b[38;2;" + ";".join(map(str, SHADE_RGB)) + "m"  # bars in the shading colour


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
        width = max(len(printable(word)) for _, word, _ in view.top) + 1
        for _, word, probability in view.top:
            label = f"{printable(word) + ':':<{width}}"
            if word == view.chosen:
                label = f"\x1b[1m{label}{_RESET}"
            lines.append(f"{label} {percent(probability):>7} {_ANSI_BAR}{_bar(probability)}{_RESET}")
    else:
        lines.extend(f"{printable(word)}: {percent(probability)}" for _, word, probability in view.top)
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


