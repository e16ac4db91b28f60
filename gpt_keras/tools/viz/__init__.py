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

The package is split by output: `steps` reads `info`; `text` (`print_probs`, `format_probs`: plain and
ANSI), `html` (`probs_html`, `export_html`) and `pictures` (`attention_heatmap`, matplotlib) draw it.
"""

from gpt_keras.tools.viz.html import export_html, probs_html
from gpt_keras.tools.viz.pictures import attention_heatmap
from gpt_keras.tools.viz.steps import (PAD_LABEL, SEPARATOR, SHADE_RGB, StepView, Vocab, VizError, generated_text,
                                       percent, step_view, top_words)
from gpt_keras.tools.viz.text import BAR_WIDTH, MODES, Rendered, format_probs, in_notebook, print_probs, resolve_mode

__all__ = [
    "BAR_WIDTH", "MODES", "PAD_LABEL", "SEPARATOR", "SHADE_RGB", "Rendered", "StepView", "Vocab", "VizError",
    "attention_heatmap", "export_html", "format_probs", "generated_text", "in_notebook", "percent", "print_probs",
    "probs_html", "resolve_mode", "step_view", "top_words",
]
