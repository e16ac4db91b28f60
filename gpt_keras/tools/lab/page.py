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
from gpt_keras.tools.lab.calculator import calculator, calculator_html, lecture_logits_text
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


_LOG = logging.getLogger("gpt_keras.tools.lab")  # the name it had as one module


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
        steps = lab.sample(prompt_text, t, seed_value, tokens, top_k=_optional_top_k(k), top_p=p)
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
        runs = [(float(t), lab.sample(prompt_text, float(t), seed_value, tokens, top_k=_optional_top_k(k), top_p=p))
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

def launch_lab(run_dir: str | Path | Any | None = None, host: str = DEFAULT_HOST, port: int | None = None, *,
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
