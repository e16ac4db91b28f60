"""The lab's page: the Gradio wiring of the views and the `Lab` state, and serving it offline.

Gradio's analytics are switched off before it is imported, no share link is ever made, and the theme
uses the system's fonts instead of fetching web fonts.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from gpt_keras.core.sampling import SamplingError
from gpt_keras.runs.rundir import RunError, load_run
from gpt_keras.tools.lab import form
from gpt_keras.tools.lab.calculator import calculator, calculator_html, lecture_logits_text
from gpt_keras.tools.lab.server import check_address, serve
from gpt_keras.tools.lab.state import Lab, _head_index, _optional_top_k
from gpt_keras.tools.lab.views import (COMPARE_TEMPERATURES, DEFAULT_MAX_TOKENS, DEFAULT_PROMPT, DEFAULT_SEED,
                                       LabError, attention_html, bars_html, compare_html, error_message,
                                       message_html)

DEFAULT_HOST = "127.0.0.1"
TEMPERATURE_RANGE = (0.1, 3.0)
TEMPERATURE_MARKS = (0.5, 1.0, 1.5, 3.0)  # the lecture's temperatures, one button each under the slider
INSTALL_HINT = 'pip install "gpt-keras[lab]"'


class LabUnavailable(RunError):
    """The lab's extra (Gradio) is not installed."""



# Made for a projector at 1024x768: the controls, the bars with "the rest" and the entropy fit the first
# screen; words and percentages are 20 px; the attention's shades run from white to a dark blue.
_CSS = """
.gradio-container .main { padding-top: 8px !important; }
.gradio-container .html-container { padding: 0 4px !important; }
#lab-marks { align-self: center; }
#lab-title h1 { font-size: 26px; margin: 0; display: inline; }
#lab-title p { display: inline; margin: 0 0 0 12px; font-size: 16px; color: #444; }
.lab-bars { border-collapse: collapse; width: 100%; font-size: 20px; margin: 0 !important; }
.lab-bars, .lab-bars td, .lab-bars tr { border: none !important; padding: 0 6px !important; background: none !important;
  line-height: 1.3; }
.lab-word { white-space: nowrap; width: 1%; }
.lab-track { width: 100%; }
.lab-fill { display: inline-block; height: 0.85em; background: rgb(33,113,181); vertical-align: middle; }
.lab-fill-rest { background: #8c8c8c; }
.lab-fill-attention { background: rgb(8,69,148); }
.lab-pct { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; width: 1%; }
.lab-caption { font-size: 18px; color: #333; margin: 0 0 2px 0; }
.lab-entropy { font-size: 18px; margin-top: 4px; }
.lab-entropy .lab-muted { font-size: 16px; }
.lab-muted { color: #666; }
.lab-prompt { font-size: 20px; line-height: 2; max-height: 45vh; overflow-y: auto; }
.lab-att { padding: 2px 5px; border-radius: 4px; border: 1px solid rgba(8,69,148,0.4); }
.lab-outside { color: #555; font-style: italic; }
.lab-legend { font-size: 15px; margin: 4px 0 10px 0; }
.lab-swatch { display: inline-block; width: 1.6em; height: 1em; vertical-align: middle; margin: 0 1px;
  border: 1px solid rgba(8,69,148,0.4); }
.lab-message { padding: 0.4em 0.8em; border-radius: 4px; margin: 0; font-size: 17px; }
.lab-error { background: #fde8e8; color: #8a1c1c; }
.lab-note { background: #fff7dd; color: #6b5200; }
.lab-html-box:not(:has(.lab-message)) { display: none; }
#lab-sampled .text { font-size: 20px !important; }
#lab-sampled .token[style*="245, 158, 11"] { background-color: rgb(245,158,11) !important; font-weight: bold;
  outline: 2px solid rgb(146,64,14); }  /* the clicked word (Gradio draws its category at half opacity) */
.lab-compare { display: flex; gap: 1em; }
.lab-compare-column { flex: 1; border: 1px solid #ddd; border-radius: 4px; padding: 0.5em; font-size: 18px; }
.lab-calculator { border-collapse: collapse; font-size: 18px; font-variant-numeric: tabular-nums; }
.lab-calculator td, .lab-calculator th { padding: 3px 8px; text-align: right; border: 1px solid #ccc; }
.lab-calculator th.lab-calc-t { text-align: center; }
.lab-calculator th.lab-calc-formula { font-size: 15px; font-weight: normal; color: #333; }
.lab-calculator td.lab-calc-word { text-align: left; }
.lab-verdict { font-size: 16px; }
"""

_INTRO = "Drag T: the distribution of the next word sharpens (T < 1) or flattens (T > 1)."


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
        gr.HTML(f'<div id="lab-title"><h1>The temperature lab</h1><p>{_INTRO}</p></div>')
        gr.HTML(message_html(problem), elem_id="lab-run-message", elem_classes="lab-html-box")
        if lab is not None:
            redraw, inputs, outputs = _model_sections(gr, lab)
            app.load(redraw, inputs, outputs, show_progress="hidden", queue=False,  # the default prompt at once
                     preprocess=False)
        _calculator_section(gr)
    app.lab = lab  # for notebooks and tests: the state behind the page
    return app


_LOG = logging.getLogger("gpt_keras.tools.lab")  # the name it had as one module


def _guarded(function, n_outputs: int, message_index: int):
    """Runs a handler; any error becomes one line in the message box beside the control that was used
    (never a traceback on the page, never a blank panel); an unexpected one is also logged in one line.

    The events pass their inputs raw (`preprocess=False`): Gradio's own checks of a component's value
    print a traceback in the terminal for every bad value an API call sends, while the `Lab` and `form`
    check each value themselves and say what is wrong on the page."""
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
    """Prompt, temperature, top-k/top-p and head; the distribution and attention redrawn live.

    Laid out for one projector screen: the prompt (its message under it), the slider with the lecture's
    temperatures beside it, then the bars and the attention side by side.
    """
    heads = ["mean of heads"] + [f"head {h + 1}" for h in range(lab.n_heads)]
    with gr.Row(equal_height=True):
        prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt (Enter to read it)", elem_id="lab-prompt", scale=5,
                            lines=1, max_lines=2)
        head = gr.Dropdown(heads, value=heads[0], label="attention", elem_id="lab-head", scale=3, min_width=170)
        top_k = gr.Number(0, label="top-k (0 = off)", precision=0, minimum=0, elem_id="lab-top-k", scale=2,
                          min_width=120)
        top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (1 = off)", elem_id="lab-top-p", scale=3,
                          min_width=160, buttons=[])
    message = gr.HTML("", elem_id="lab-message", elem_classes="lab-html-box")  # under the prompt it is about
    with gr.Row(equal_height=True):
        temperature = gr.Slider(*TEMPERATURE_RANGE, value=1.0, step=0.05, label="temperature T",
                                elem_id="lab-temperature", scale=3, buttons=[])
        with gr.Row(scale=2, elem_id="lab-marks"):
            marks = [gr.Button(f"T = {t:g}", size="md", elem_id=f"lab-mark-{t:g}", min_width=60)
                     for t in TEMPERATURE_MARKS]
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            distribution = gr.HTML(elem_id="lab-distribution")
        with gr.Column(scale=2, min_width=240):
            attention = gr.HTML(elem_id="lab-attention")

    redraw_inputs = [prompt, temperature, top_k, top_p, head]
    redraw_outputs = [distribution, attention, message]

    def redraw(prompt_text, t, k, p, head_choice):
        return lab.redraw(prompt_text, t, _optional_top_k(k), p, _head_index(head_choice))

    guarded_redraw = _guarded(redraw, 3, 2)
    for trigger in (temperature.change, top_k.change, top_p.change, head.change, prompt.submit):
        trigger(guarded_redraw, redraw_inputs, redraw_outputs, show_progress="hidden", trigger_mode="always_last",
                queue=False, preprocess=False)
    for button, value in zip(marks, TEMPERATURE_MARKS):
        button.click(lambda v=value: v, None, temperature, queue=False)
    controls = dict(prompt=prompt, temperature=temperature, top_k=top_k, top_p=top_p, head=head)
    return controls, message, (guarded_redraw, redraw_inputs, redraw_outputs)


def sampled_words(shown_prompt: str, steps, clicked: int | None = None) -> list[tuple[str, str | None]]:
    """The sampled text as the page's highlighted words: the prompt (not clickable), then one entry per
    step, the clicked one (1-based) in its own colour so the class sees which step is drawn below."""
    return [(shown_prompt, None)] + [(" " + step.word, "clicked" if index == clicked else "sampled")
                                     for index, step in enumerate(steps, start=1)]


SAMPLED_COLOURS = {"sampled": "#dbeafe", "clicked": "#f59e0b"}  # pale blue words; the clicked one amber


def _sample_section(gr, lab: Lab, controls: dict) -> None:
    """"sample": a seeded generation word by word; clicking a word shows that step (and marks the word)."""
    gr.Markdown("## Sample word by word\nClick a generated word to see that step's distribution and attention.")
    with gr.Row():
        controls["seed"] = gr.Number(DEFAULT_SEED, label="seed", precision=0, minimum=0, elem_id="lab-seed")
        controls["max_tokens"] = gr.Number(DEFAULT_MAX_TOKENS, label="max tokens (prompt included)", precision=0,
                                           minimum=1, elem_id="lab-max-tokens")
        sample_button = gr.Button("sample", variant="primary", elem_id="lab-sample")
    # beside the button: what went wrong with this sample
    message = gr.HTML("", elem_id="lab-sample-message", elem_classes="lab-html-box")
    sample_state = gr.State(("", []))  # (the prompt as shown, the steps)
    sampled = gr.HighlightedText(label="generated (click a word)", elem_id="lab-sampled", combine_adjacent=False,
                                 show_inline_category=False, show_legend=False, color_map=SAMPLED_COLOURS)
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            step_distribution = gr.HTML(elem_id="lab-step-distribution")
        with gr.Column(scale=2, min_width=240):
            step_attention = gr.HTML(elem_id="lab-step-attention")

    def sample(prompt_text, t, k, p, seed_value, tokens):
        steps = lab.sample(prompt_text, t, seed_value, tokens, top_k=_optional_top_k(k), top_p=p)
        shown = lab.shown_prompt(prompt_text)
        return sampled_words(shown, steps), (shown, steps), "", "", ""

    def show_step(state, head_choice, event: gr.SelectData):
        shown, steps = state or ("", [])  # a failed sample leaves the state empty
        index = event.index[0] if isinstance(event.index, (list, tuple)) and event.index else event.index
        if not steps or not isinstance(index, int) or index < 1 or index > len(steps):
            return (gr.skip(), "", "",
                    message_html("click one of the generated words (not the prompt)", "note"))
        step = steps[index - 1]
        caption = f"step {index}: the model chose \u201c{step.word}\u201d from"
        return (sampled_words(shown, steps, clicked=index), bars_html(step.bars, caption),
                attention_html(step.prompt, step.attention, _head_index(head_choice)), "")

    show_step.__annotations__["event"] = gr.SelectData  # Gradio finds the click's data by this (a real type)
    inputs = [controls[name] for name in ("prompt", "temperature", "top_k", "top_p", "seed", "max_tokens")]
    sample_button.click(_guarded(sample, 5, 4), inputs, [sampled, sample_state, step_distribution, step_attention,
                                                          message], concurrency_limit=1, preprocess=False)
    sampled.select(_guarded(show_step, 4, 3), [sample_state, controls["head"]],
                   [sampled, step_distribution, step_attention, message], preprocess=False)


def _compare_section(gr, lab: Lab, controls: dict) -> None:
    """"compare temperatures": the same prompt and seed at three temperatures side by side."""
    gr.Markdown("## Compare temperatures\nThe same prompt and seed at three temperatures.")
    with gr.Row():
        compare_ts = [gr.Number(t, label=f"T{i + 1}", minimum=0.01, elem_id=f"lab-compare-t{i + 1}")
                      for i, t in enumerate(COMPARE_TEMPERATURES)]
        compare_button = gr.Button("compare temperatures", elem_id="lab-compare")
    message = gr.HTML("", elem_id="lab-compare-message", elem_classes="lab-html-box")  # beside it
    compared = gr.HTML(elem_id="lab-compared")

    def compare(prompt_text, k, p, seed_value, tokens, *temperatures):
        temperatures = [form.temperature(t, f"T{i + 1}") for i, t in enumerate(temperatures)]
        runs = [(t, lab.sample(prompt_text, t, seed_value, tokens, top_k=_optional_top_k(k), top_p=p))
                for t in temperatures]
        return compare_html(lab.shown_prompt(prompt_text), runs), ""

    inputs = [controls[name] for name in ("prompt", "top_k", "top_p", "seed", "max_tokens")]
    compare_button.click(_guarded(compare, 2, 1), [*inputs, *compare_ts], [compared, message], concurrency_limit=1,
                         preprocess=False)


def _calculator_section(gr) -> None:
    gr.Markdown("## The lecture's calculator\nEdit the logits; both formulas, softmax(z / T) and "
                "`p ** (1/T)` renormalised, give the same numbers.")
    with gr.Row():
        logits = gr.Textbox(lecture_logits_text(), label="logits (word value, ...)", elem_id="lab-logits", scale=3)
        temperatures = gr.Textbox("1, 0.5, 1.5, 3", label="temperatures", elem_id="lab-calc-temperatures", scale=2)
    table = gr.HTML(calculator_html(calculator(lecture_logits_text(), "1, 0.5, 1.5, 3")), elem_id="lab-calculator")

    def calculate(logits_text, temperatures_text):
        return calculator_html(calculator(logits_text, temperatures_text))

    for trigger in (logits.change, temperatures.change):
        trigger(_guarded(calculate, 1, 0), [logits, temperatures], table, show_progress="hidden", queue=False,
                preprocess=False)


# --- serving ----------------------------------------------------------------------------------------

def launch_lab(run_dir: str | Path | Any | None = None, host: str = DEFAULT_HOST, port: int | None = None, *,
               inline: bool | None = None, block: bool = True, quiet: bool = False):
    """Builds and serves the lab on `host:port` (a free port from 7860 up when None), offline.

    Args:
        block: wait until Ctrl-C (the command line); False returns at once with the server running
            in a background thread (notebooks, tests); `app.close()` stops it.
        inline: show the page inside the notebook cell (None: Gradio decides, inline in Jupyter/Colab).

    Returns:
        The running Gradio app; `app.local_url` is its address.

    Raises:
        LabServerError: the port is in use, or `host` is not an address of this computer.
    """
    check_address(host, port)  # a port in use or a bad address is one line, before the model is built
    app = build_lab(run_dir)
    gr = import_gradio()
    try:
        serve(app, host, port, inline=inline, theme=lab_theme(gr), css=_CSS)
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
