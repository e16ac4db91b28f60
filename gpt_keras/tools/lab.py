"""The live temperature lab: one page where a class drags the temperature and watches the next word.

The page (Gradio, from the `[lab]` extra) shows, for a prompt:

- the model's next-word distribution at the slider's temperature, top words as bars with
  percentages and "the rest" summed, and its entropy;
- the prompt shaded by attention as `print_probs` shades it (mean of heads, or one head);
- "sample": a seeded generation, word by word; clicking a generated word shows that step's
  distribution and attention;
- "compare temperatures": the same prompt and seed at three temperatures side by side;
- the lecture's calculator (pfalz 4.1, mosel 3.9, rhein 2.7), which needs no run.

The model runs once per prompt (`read_prompt`); moving the slider only re-applies temperature to
those cached probabilities (`distribution_at`), which is why the page keeps up with the slider.
Everything here below the Gradio wiring is a pure function returning values or escaped HTML, so it
is tested without a browser. Every text that comes from the data or the user is HTML-escaped.

Offline by design: Gradio's analytics are switched off before it is imported, no share link is ever
made, and the theme uses the system's fonts instead of fetching web fonts.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import html
import logging
import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gpt_keras.core.checks import GPTKerasError, check_seed
from gpt_keras.tools.temperature.calculator import LECTURE_LOGITS, TemperatureTable, temperature_table
from gpt_keras.tools.temperature.experiment import entropy
from gpt_keras.runs.files import one_line
from gpt_keras.runs.rundir import RunError
from gpt_keras.core.sampling import Sampler, SamplingError, check_temperature
from gpt_keras.tools.viz import SHADE_RGB, percent

DEFAULT_PROMPT = "wine review : germany :"
DEFAULT_HOST = "127.0.0.1"
TEMPERATURE_RANGE = (0.1, 3.0)
TEMPERATURE_MARKS = (0.5, 1.0, 1.5, 3.0)  # the lecture's temperatures, one button each under the slider
COMPARE_TEMPERATURES = (0.5, 1.0, 3.0)
DEFAULT_SEED = 0
DEFAULT_MAX_TOKENS = 80  # the lecture's max_tokens, prompt included
TOP_WORDS = 10
PROMPT_CACHE_SIZE = 64
INSTALL_HINT = 'pip install "gpt-keras[lab]"'
_RGB = ",".join(map(str, SHADE_RGB))


class LabError(GPTKerasError, ValueError):
    """Something on the page cannot be shown (an empty prompt, no known word, a bad number); shown as a message."""


class LabUnavailable(RunError):
    """The lab's extra (Gradio) is not installed."""


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
    return PromptView(words=tuple(vocab.standardize(prompt)), probs=np.asarray(probs, np.float64)[0, -1],
                      attention=np.asarray(attention, np.float64)[0, :, -1, :], unknown=tuple(unknown),
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
            f"(0 = certain, {uniform:.2f} = every word equally likely)</div></div>")


def attention_html(words: Sequence[str], attention: np.ndarray, head: int | None = None) -> str:
    """The prompt with each word shaded by attention, as `print_probs` shades it.

    `attention` is [heads, visible words] (the last `visible` words of `words`); `head` None shades
    by the mean of heads, else by that head (0-based). The most attended word is fully shaded; words
    outside the context window are grey.
    """
    attention = np.atleast_2d(np.asarray(attention, np.float64))
    if head is not None and not 0 <= head < attention.shape[0]:
        raise LabError(f"head must be 1 to {attention.shape[0]}, got {head + 1}")
    weights = attention.mean(axis=0) if head is None else attention[head]
    peak = weights.max() if weights.size else 0.0
    shades = weights / peak if peak > 0 else np.zeros_like(weights)
    first_visible = len(words) - len(shades)
    pieces = []
    for position, word in enumerate(words):
        visible = position - first_visible
        if visible < 0:
            pieces.append(f'<span class="lab-outside" title="outside the context window">{html.escape(word)}</span>')
        else:
            pieces.append(f'<span class="lab-att" style="background-color:rgba({_RGB},{shades[visible]:.3f})" '
                          f'title="attention {weights[visible]:.3f}">{html.escape(word)}</span>')
    which = "mean of heads" if head is None else f"head {head + 1}"
    return (f'<div class="lab-prompt"><span class="lab-caption">attention ({html.escape(which)}):</span> '
            + " ".join(pieces) + "</div>")


def message_html(text: str, kind: str = "error") -> str:
    """A message box on the page (kind "error" or "note"); empty text gives nothing."""
    return f'<div class="lab-message lab-{kind}">{html.escape(text)}</div>' if text else ""


def prompt_note(view: PromptView) -> str:
    """What the page should say about a prompt the model read differently than typed."""
    notes = []
    if view.unknown:
        notes.append(f"not in the vocabulary, read as [UNK]: {', '.join(view.unknown)}")
    if view.cut:
        notes.append(f"the first {view.cut} words are outside the context window")
    return "; ".join(notes)


# --- sampling word by word ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Step:
    """One sampled word and what the model saw and offered at that step (small, for the page's state)."""

    word: str
    prompt: tuple[str, ...]
    attention: np.ndarray
    bars: Bars


def sample_steps(generator, vocab, prompt: str, temperature: float, seed: int = DEFAULT_SEED,
                 max_tokens: int = DEFAULT_MAX_TOKENS, top_k: int | None = None,
                 top_p: float | None = None) -> list[Step]:
    """A seeded generation from `prompt` (a `CachedGenerator`), one `Step` per word.

    `max_tokens` counts the prompt, as in the lecture. The same seed and settings give the same words.
    """
    seed = check_seed(seed, error=LabError)
    sampler = sampler_for(temperature, top_k, top_p)
    records, _ = generator.generate(prompt, max_tokens, sampler, np.random.default_rng(seed))
    return [Step(_label(record["word"]), tuple(record["prompt"].split()), np.asarray(record["atts"], np.float64),
                 top_bars(record["word_probs"], vocab)) for record in records]


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


# --- the calculator ----------------------------------------------------------------------------------

def parse_logits(text: str) -> dict[str, float]:
    """`"pfalz 4.1, mosel 3.9, rhein 2.7"` (or `pfalz=4.1`, one per line) -> {"pfalz": 4.1, ...}."""
    logits: dict[str, float] = {}
    for item in (piece.strip() for piece in re.split(r"[,;\n]", text or "")):
        if not item:
            continue
        match = re.fullmatch(r"(.+?)\s*[=:\s]\s*([-+]?[0-9.eE+-]+)", item)
        if match is None:
            raise LabError(f"{item!r}: write each word and its logit as 'word 4.1' or 'word=4.1'")
        word, value = match.group(1).strip(), _number(match.group(2), f"the logit of {match.group(1).strip()!r}")
        if word in logits:
            raise LabError(f"{word!r} is given twice")
        logits[word] = value
    if not logits:
        raise LabError("give at least one word and its logit, e.g. 'pfalz 4.1, mosel 3.9, rhein 2.7'")
    return logits


def parse_temperatures(text: str) -> list[float]:
    """`"1, 0.5, 1.5"` -> [1.0, 0.5, 1.5], each a finite number > 0."""
    values = [_number(piece, "a temperature") for piece in re.split(r"[,;\s]+", (text or "").strip()) if piece]
    if not values:
        raise LabError("give at least one temperature, e.g. '1, 0.5, 1.5'")
    for value in values:
        try:
            check_temperature(value)
        except SamplingError as error:
            raise LabError(str(error)) from None
    return values


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise LabError(f"{what} must be a finite number, got {text!r}")
    return value


def calculator(logits_text: str, temperatures_text: str) -> TemperatureTable:
    """The lecture's calculator from the page's two text boxes (`experiments.temperature_table`)."""
    try:
        return temperature_table(parse_logits(logits_text), parse_temperatures(temperatures_text))
    except SamplingError as error:
        raise LabError(str(error)) from None


def calculator_html(table: TemperatureTable) -> str:
    """Both formulas side by side for every word and temperature, and how far apart they are."""
    head = "".join(f"<th>p(T={t:g})<br><small>softmax(z/T)</small></th><th><br><small>p**(1/T), renorm.</small></th>"
                   for t in table.temperatures)
    rows = "".join(
        f"<tr><td>{html.escape(word)}</td><td>{logit:g}</td>"
        + "".join(f'<td class="lab-softmax">{table.softmax[i, j]:.3f}</td><td class="lab-lecture">'
                  f"{_cell(table.lecture[i, j])}</td>" for i in range(len(table.temperatures)))
        + "</tr>"
        for j, (word, logit) in enumerate(zip(table.words, table.logits)))
    difference = table.max_abs_difference
    verdict = ("the lecture's formula underflowed (0 / 0) at a very small T; softmax(z / T) did not"
               if math.isnan(difference) else
               f"largest difference between the two formulas: {difference:.1e} (rounding only: they agree)")
    return (f'<table class="lab-calculator"><tr><th>word</th><th>logit</th>{head}</tr>{rows}</table>'
            f'<p class="lab-verdict">{html.escape(verdict)}</p>')


def _cell(value: float) -> str:
    return "0/0" if math.isnan(value) else f"{value:.3f}"


def lecture_logits_text() -> str:
    return ", ".join(f"{word} {logit:g}" for word, logit in LECTURE_LOGITS.items())


# --- the lab behind the page: a loaded run and its prompt cache --------------------------------------

class Lab:
    """A loaded run, its cached generator, and the distributions of the prompts seen so far.

    Gradio calls the handlers from worker threads; one lock keeps the model to one call at a time.
    """

    def __init__(self, model, vocab, n_heads: int):
        from gpt_keras.core.generation import CachedGenerator

        self.model, self.vocab, self.n_heads = model, vocab, n_heads
        self.generator = CachedGenerator(model, vocab)
        self._views: collections.OrderedDict[str, PromptView] = collections.OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_run(cls, run) -> "Lab":
        return cls(run.model, run.vocab, run.config.n_heads)

    def view(self, prompt: str) -> PromptView:
        """The prompt's forward pass, computed on first use and then kept (the last 64 prompts)."""
        key = " ".join((prompt or "").split())
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
            view = read_prompt(self.model, self.vocab, prompt)
            self._views[key] = view
            while len(self._views) > PROMPT_CACHE_SIZE:
                self._views.popitem(last=False)
            return view

    def redraw(self, prompt: str, temperature: float, top_k=None, top_p=None, head: int | None = None
               ) -> tuple[str, str, str]:
        """What the slider redraws: (distribution with entropy, shaded prompt, message) as HTML."""
        view = self.view(prompt)
        bars = top_bars(distribution_at(view.probs, temperature, top_k, top_p), self.vocab)
        caption = f"next word after \u201c{' '.join(view.words)}\u201d at T = {temperature:g}"
        return (bars_html(bars, caption), attention_html(view.words, view.attention, head),
                message_html(prompt_note(view), "note"))

    def sample(self, prompt: str, temperature: float, seed: int, max_tokens: int, top_k=None, top_p=None
               ) -> list[Step]:
        max_tokens = _whole(max_tokens, "max tokens", 1)
        view = self.view(prompt)  # checks the prompt (empty, unknown) with the page's messages
        n_prompt = len(view.words)
        if max_tokens <= n_prompt:
            raise LabError(f"max tokens counts the prompt, as in the lecture: the prompt has {n_prompt} tokens, "
                           f"so give more than {n_prompt}")
        with self._lock:
            return sample_steps(self.generator, self.vocab, prompt, temperature, seed, max_tokens, top_k, top_p)

    def warm_up(self) -> None:
        """Compiles the generator's step and window once, so the first "sample" click is not slow."""
        with self._lock:
            word = next((w for w in self.vocab.words[2:] if w), "wine")
            self.generator.generate(word, self.generator.max_len + 2, Sampler(1.0), np.random.default_rng(0))


def _whole(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise LabError(f"{what} must be a whole number of at least {minimum}, got {value!r}")
    return int(value)


def _head_index(choice: str | None) -> int | None:
    """"mean of heads" -> None, "head 2" -> 1."""
    if not choice or not choice.startswith("head "):
        return None
    return int(choice.split()[1]) - 1


def _optional_top_k(value) -> int | None:
    if value in (None, "", 0):
        return None
    return _whole(value, "top-k", 0) or None


# --- the page ---------------------------------------------------------------------------------------

_CSS = """
.lab-bars { border-collapse: collapse; width: 100%; }
.lab-bars, .lab-bars td, .lab-bars tr { border: none !important; padding: 2px 6px; background: none; }
.lab-word { white-space: nowrap; font-family: ui-monospace, monospace; width: 1%; }
.lab-track { width: 100%; }
.lab-fill { display: inline-block; height: 1em; background: rgb(135,206,250); vertical-align: middle; }
.lab-fill-rest { background: #ccc; }
.lab-pct { text-align: right; font-family: ui-monospace, monospace; white-space: nowrap; width: 1%; }
.lab-entropy { margin-top: 0.5em; }
.lab-caption, .lab-muted { color: #666; }
.lab-prompt { line-height: 2; font-size: 1.15em; }
.lab-att { padding: 1px 3px; border-radius: 3px; }
.lab-outside { color: #999; }
.lab-message { padding: 0.5em 0.8em; border-radius: 4px; margin: 0.3em 0; }
.lab-error { background: #fde8e8; color: #8a1c1c; }
.lab-note { background: #fff7dd; color: #6b5200; }
.lab-compare { display: flex; gap: 1em; }
.lab-compare-column { flex: 1; border: 1px solid #ddd; border-radius: 4px; padding: 0.5em; }
.lab-calculator td, .lab-calculator th { padding: 2px 8px; text-align: right; }
"""

_INTRO = ("Type a prompt, drag the temperature, and watch the model's next-word distribution sharpen (T < 1) "
          "or flatten (T > 1). The model runs once per prompt; the slider only re-applies temperature.")


def import_gradio():
    """Gradio with its analytics off (no network calls), or a one-line error saying how to install it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as error:
        raise LabUnavailable(f"the temperature lab needs Gradio, which is not installed ({error}); "
                             f"install it with: {INSTALL_HINT}") from None
    return gradio


def lab_theme(gr):
    """The default look with the system's fonts: Gradio's default theme would fetch web fonts."""
    return gr.themes.Default(font=[gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")],
                             font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")])


def _load(run_dir) -> tuple[Lab | None, str]:
    """The lab for a run (a path or a loaded `Run`), or None and the reason to show on the page."""
    if run_dir is None:
        return None, "No run loaded: the calculator works without one. Start the lab with --run DIR for a model."
    if hasattr(run_dir, "model") and hasattr(run_dir, "vocab"):
        return Lab.from_run(run_dir), ""
    from gpt_keras.runs.rundir import load_run

    try:
        return Lab.from_run(load_run(run_dir)), ""
    except (RunError, SamplingError) as error:
        return None, f"cannot load the run: {error}"


def build_lab(run_dir: str | Path | Any | None = None, warm_up: bool = True):
    """The lab page as a Gradio `Blocks` app, not yet launched.

    Args:
        run_dir: a run directory, a loaded `gpt_keras.runs.Run`, or None for the calculator alone. A
            directory that cannot be loaded gives a message on the page instead of the model's sections.
        warm_up: compile the generator now, so the first "sample" answers at full speed.
    """
    gr = import_gradio()
    lab, problem = _load(run_dir)
    if lab is not None and warm_up:
        lab.warm_up()
    with gr.Blocks(title="gpt-keras temperature lab", analytics_enabled=False) as app:
        gr.Markdown("# The temperature lab\n" + _INTRO)
        gr.HTML(message_html(problem), elem_id="lab-run-message")
        if lab is not None:
            redraw, inputs, outputs = _model_sections(gr, lab)
            app.load(redraw, inputs, outputs, show_progress="hidden", queue=False)  # the default prompt at once
        _calculator_section(gr)
    app.lab = lab  # for notebooks and tests: the state behind the page
    return app


_LOG = logging.getLogger(__name__)


def error_message(error: Exception) -> str:
    """The one plain line the page shows for an error: the user's own mistake as it is, anything else
    (a model that fails on this input, say) as what failed, so a panel is never left blank."""
    if isinstance(error, (LabError, SamplingError, RunError)):
        return one_line(error)
    return f"the model could not answer ({type(error).__name__}: {one_line(error, 300)})"


def _guarded(function, n_outputs: int, message_index: int):
    """Runs a handler; any error becomes one line in the message box beside the control that was used
    (never a traceback on the page, never a blank panel); an unexpected one is also logged in one line."""
    @functools.wraps(function)  # Gradio reads the signature (a `gr.SelectData` parameter) through it
    def handler(*args):
        try:
            return function(*args)
        except Exception as error:  # noqa: BLE001 (the page must answer whatever failed)
            if not isinstance(error, (LabError, SamplingError, RunError)):
                _LOG.error("lab: %s", error_message(error))
            outputs = [""] * n_outputs
            outputs[message_index] = message_html(error_message(error))
            return tuple(outputs) if n_outputs > 1 else outputs[0]
    return handler


def _model_sections(gr, lab: Lab):
    """The run's sections; returns the redraw event (handler, inputs, outputs) to run when the page opens."""
    controls, message, redraw_event = _next_word_section(gr, lab)
    _sample_section(gr, lab, controls)
    _compare_section(gr, lab, controls)
    return redraw_event


def _next_word_section(gr, lab: Lab):
    """Prompt, temperature, top-k/top-p and head; the distribution and attention redrawn live."""
    heads = ["mean of heads"] + [f"head {h + 1}" for h in range(lab.n_heads)]
    gr.Markdown("## Next word")
    with gr.Row():
        prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt", elem_id="lab-prompt", scale=3)
        head = gr.Dropdown(heads, value=heads[0], label="attention", elem_id="lab-head", scale=1)
    with gr.Row():
        temperature = gr.Slider(*TEMPERATURE_RANGE, value=1.0, step=0.05, label="temperature T",
                                elem_id="lab-temperature", scale=4)
        top_k = gr.Number(0, label="top-k (0 = off)", precision=0, minimum=0, elem_id="lab-top-k", scale=1)
        top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (1 = off)", elem_id="lab-top-p", scale=2)
    with gr.Row():
        marks = [gr.Button(f"T = {t:g}", size="sm", elem_id=f"lab-mark-{t:g}") for t in TEMPERATURE_MARKS]
    message = gr.HTML("", elem_id="lab-message")
    with gr.Row():
        distribution = gr.HTML(elem_id="lab-distribution")
        attention = gr.HTML(elem_id="lab-attention")

    redraw_inputs = [prompt, temperature, top_k, top_p, head]
    redraw_outputs = [distribution, attention, message]

    def redraw(prompt_text, t, k, p, head_choice):
        return lab.redraw(prompt_text, t, _optional_top_k(k), p, _head_index(head_choice))

    guarded_redraw = _guarded(redraw, 3, 2)
    for trigger in (temperature.change, top_k.change, top_p.change, head.change, prompt.submit):
        trigger(guarded_redraw, redraw_inputs, redraw_outputs, show_progress="hidden", trigger_mode="always_last",
                queue=False)
    for button, value in zip(marks, TEMPERATURE_MARKS):
        button.click(lambda v=value: v, None, temperature, queue=False)
    controls = dict(prompt=prompt, temperature=temperature, top_k=top_k, top_p=top_p, head=head)
    return controls, message, (guarded_redraw, redraw_inputs, redraw_outputs)


def _sample_section(gr, lab: Lab, controls: dict) -> None:
    """"sample": a seeded generation word by word; clicking a word shows that step."""
    gr.Markdown("## Sample word by word\nClick a generated word to see that step's distribution and attention.")
    with gr.Row():
        controls["seed"] = gr.Number(DEFAULT_SEED, label="seed", precision=0, minimum=0, elem_id="lab-seed")
        controls["max_tokens"] = gr.Number(DEFAULT_MAX_TOKENS, label="max tokens (prompt included)", precision=0,
                                           minimum=1, elem_id="lab-max-tokens")
        sample_button = gr.Button("sample", variant="primary", elem_id="lab-sample")
    message = gr.HTML("", elem_id="lab-sample-message")  # beside the button: what went wrong with this sample
    steps_state = gr.State([])
    sampled = gr.HighlightedText(label="generated (click a word)", elem_id="lab-sampled", combine_adjacent=False,
                                 show_inline_category=False, show_legend=False, color_map={"sampled": "#e8f4fd"})
    with gr.Row():
        step_distribution = gr.HTML(elem_id="lab-step-distribution")
        step_attention = gr.HTML(elem_id="lab-step-attention")

    def sample(prompt_text, t, k, p, seed_value, tokens):
        steps = lab.sample(prompt_text, t, seed_value, tokens, _optional_top_k(k), p)
        words = [(" ".join(lab.vocab.standardize(prompt_text)), None)] + [(" " + s.word, "sampled") for s in steps]
        return words, steps, "", "", ""

    def show_step(steps, head_choice, event: gr.SelectData):
        index = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not steps or index is None or index < 1 or index > len(steps):
            return "", "", message_html("click one of the generated words (not the prompt)", "note")
        step = steps[index - 1]
        caption = f"step {index}: the model chose \u201c{step.word}\u201d from"
        return (bars_html(step.bars, caption), attention_html(step.prompt, step.attention, _head_index(head_choice)),
                "")

    show_step.__annotations__["event"] = gr.SelectData  # Gradio finds the click's data by this (a real type)
    inputs = [controls[name] for name in ("prompt", "temperature", "top_k", "top_p", "seed", "max_tokens")]
    sample_button.click(_guarded(sample, 5, 4), inputs, [sampled, steps_state, step_distribution, step_attention,
                                                          message], concurrency_limit=1)
    sampled.select(_guarded(show_step, 3, 2), [steps_state, controls["head"]],
                   [step_distribution, step_attention, message])


def _compare_section(gr, lab: Lab, controls: dict) -> None:
    """"compare temperatures": the same prompt and seed at three temperatures side by side."""
    gr.Markdown("## Compare temperatures\nThe same prompt and seed at three temperatures.")
    with gr.Row():
        compare_ts = [gr.Number(t, label=f"T{i + 1}", minimum=0.01, elem_id=f"lab-compare-t{i + 1}")
                      for i, t in enumerate(COMPARE_TEMPERATURES)]
        compare_button = gr.Button("compare temperatures", elem_id="lab-compare")
    message = gr.HTML("", elem_id="lab-compare-message")  # beside the button
    compared = gr.HTML(elem_id="lab-compared")

    def compare(prompt_text, k, p, seed_value, tokens, *temperatures):
        runs = [(float(t), lab.sample(prompt_text, float(t), seed_value, tokens, _optional_top_k(k), p))
                for t in temperatures]
        return compare_html(" ".join(lab.vocab.standardize(prompt_text)), runs), ""

    inputs = [controls[name] for name in ("prompt", "top_k", "top_p", "seed", "max_tokens")]
    compare_button.click(_guarded(compare, 2, 1), [*inputs, *compare_ts], [compared, message], concurrency_limit=1)


def _calculator_section(gr) -> None:
    gr.Markdown("## The lecture's calculator\nEdit the logits; both formulas, softmax(z / T) and "
                "`p ** (1/T)` renormalised, give the same numbers.")
    with gr.Row():
        logits = gr.Textbox(lecture_logits_text(), label="logits (word value, ...)", elem_id="lab-logits", scale=3)
        temperatures = gr.Textbox("1, 0.5, 1.5, 3", label="temperatures", elem_id="lab-calc-temperatures", scale=2)
    table = gr.HTML(calculator_html(calculator(lecture_logits_text(), "1, 0.5, 1.5, 3")), elem_id="lab-calculator")

    def calculate(logits_text, temperatures_text):
        try:
            return calculator_html(calculator(logits_text, temperatures_text))
        except LabError as error:
            return message_html(str(error))

    for trigger in (logits.change, temperatures.change):
        trigger(calculate, [logits, temperatures], table, show_progress="hidden", queue=False)


# --- serving ----------------------------------------------------------------------------------------

def launch_lab(run_dir: str | Path | Any | None = None, host: str = DEFAULT_HOST, port: int | None = None,
               inline: bool | None = None, block: bool = True, quiet: bool = False):
    """Builds and serves the lab on `host:port` (a free port from 7860 up when None), offline.

    Args:
        block: wait until Ctrl-C (the command line); False returns at once with the server running
            in a background thread (notebooks, tests); `app.close()` stops it.
        inline: show the page inside the notebook cell (None: Gradio decides, inline in Jupyter/Colab).

    Returns:
        The running Gradio app; `app.local_url` is its address.
    """
    app = build_lab(run_dir)
    gr = import_gradio()
    try:
        app.launch(server_name=host, server_port=port, share=False, inline=inline, prevent_thread_lock=True,
                   quiet=True, theme=lab_theme(gr), css=_CSS, ssr_mode=False, mcp_server=False, pwa=False,
                   enable_monitoring=False, footer_links=[], show_error=False)
        if not quiet:
            print(f"The temperature lab on {app.local_url}" + (" (Ctrl-C to stop)" if block else ""), flush=True)
        if block:
            app.block_thread()  # returns on Ctrl-C, after closing the server
    except KeyboardInterrupt:  # Ctrl-C before Gradio's own wait began: stop just as cleanly
        app.close()
    return app


def lab(run_dir: str | Path | Any | None = None, port: int | None = None, host: str = DEFAULT_HOST):
    """The lab inside a notebook cell (Jupyter, Colab): `gpt_keras.tools.lab.lab("runs/my-run")`.

    The server runs in the background; `app.close()` (the returned app) stops it.
    """
    return launch_lab(run_dir, host=host, port=port, inline=True, block=False)
