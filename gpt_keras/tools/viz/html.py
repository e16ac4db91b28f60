"""print_probs as HTML (what a notebook shows) and the standalone page of a whole generation.

Every word and title is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from gpt_keras.runs.files import write_text
from gpt_keras.tools.viz.steps import (SEPARATOR, SHADE_RGB, StepView, Vocab, _check_n_words, _shaded_words,
                                       _steps, generated_text, percent, step_view)

_RGB = ",".join(map(str, SHADE_RGB))


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



_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; line-height: 1.5; }
h1 { font-size: 1.4em; } h2 { font-size: 1.05em; margin: 1.4em 0 0.3em; }
.text { background: #f7f7f7; padding: 0.8em; border-radius: 4px; }
.prompt { line-height: 1.9; }
table { border-collapse: collapse; margin-top: 0.4em; }
td, th { padding: 0.1em 0.6em; text-align: left; vertical-align: baseline; }  /* a label on its words' line */
td.p { text-align: right; font-variant-numeric: tabular-nums; }  /* digits line up, at the words' size */
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
