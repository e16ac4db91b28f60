"""The live temperature lab: one page where a class drags the temperature and watches the next word.

The page (Gradio, from the `[lab]` extra) shows, for a prompt:

- the model's next-word distribution at the slider's temperature, top words as bars with
  percentages and "the rest" summed, and its entropy;
- the prompt shaded by attention as `print_probs` shades it (mean of heads, or one head), in colours a
  projector shows, with a legend and the most attended words in percent;
- "sample": a seeded generation, word by word; clicking a generated word marks it and shows that
  step's distribution and attention;
- "compare temperatures": the same prompt and seed at three temperatures side by side;
- the lecture's calculator (pfalz 4.1, mosel 3.9, rhein 2.7), which needs no run.

The model runs once per prompt (`read_prompt`); moving the slider only re-applies temperature to
those cached probabilities (`distribution_at`), which is why the page keeps up with the slider.
Everything here below the Gradio wiring is a pure function returning values or escaped HTML, so it
is tested without a browser. Every text that comes from the data or the user is HTML-escaped.

Offline by design: Gradio's analytics are switched off before it is imported, no share link is ever
made, and the theme uses the system's fonts instead of fetching web fonts.

The package: `views` (the pure functions: the prompt's view, the distribution at T, bars, attention,
messages, compare), `calculator` (the lecture's calculator), `state` (`Lab`, a loaded run and its prompt
cache), `page` (the Gradio wiring) and `server` (serving it: the request guard, the launch options).
"""

from gpt_keras.tools.lab.calculator import (calculator, calculator_html, lecture_logits_text, parse_logits,
                                            parse_temperatures)
from gpt_keras.tools.lab.form import MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, check_prompt, check_text
from gpt_keras.tools.lab.page import (DEFAULT_HOST, INSTALL_HINT, TEMPERATURE_MARKS, TEMPERATURE_RANGE,
                                      LabUnavailable, _guarded, build_lab, import_gradio, lab, lab_theme, launch_lab)
from gpt_keras.tools.lab.server import LabGuard, LabServerError, allowed_host, check_address
from gpt_keras.tools.lab.state import PROMPT_CACHE_BYTES, PROMPT_CACHE_SIZE, Lab
from gpt_keras.tools.lab.views import (COMPARE_TEMPERATURES, DEFAULT_MAX_TOKENS, DEFAULT_PROMPT, DEFAULT_SEED,
                                       SHADE_DARKEST, TOP_WORDS, Bars, LabError, PromptView, Step, attention_html,
                                       bars_html, compare_html, contrast, distribution_at, error_message,
                                       message_html, prompt_note, read_prompt, sample_steps, sampled_text,
                                       sampler_for, seen_prompt, shade_colours, shown_prompt, top_bars)
from gpt_keras.tools.viz import percent

__all__ = [
    "COMPARE_TEMPERATURES", "DEFAULT_HOST", "DEFAULT_MAX_TOKENS", "DEFAULT_PROMPT", "DEFAULT_SEED", "INSTALL_HINT",
    "MAX_PROMPT_CHARS", "MAX_PROMPT_TOKENS", "PROMPT_CACHE_BYTES", "PROMPT_CACHE_SIZE", "SHADE_DARKEST",
    "TEMPERATURE_MARKS", "TEMPERATURE_RANGE", "TOP_WORDS", "Bars", "Lab", "LabError", "LabGuard", "LabServerError",
    "LabUnavailable", "PromptView", "Step", "allowed_host", "attention_html", "bars_html", "build_lab", "calculator",
    "calculator_html", "check_address", "check_prompt", "check_text", "compare_html", "contrast", "distribution_at",
    "error_message", "import_gradio", "lab", "lab_theme", "launch_lab", "lecture_logits_text", "message_html",
    "parse_logits", "parse_temperatures", "percent", "prompt_note", "read_prompt", "sample_steps", "sampled_text",
    "sampler_for", "seen_prompt", "shade_colours", "shown_prompt", "top_bars",
    "_guarded",  # private, but the tests check the page's error handling through it
]
