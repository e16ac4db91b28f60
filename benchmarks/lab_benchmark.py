"""How fast the temperature lab answers at the lecture's size: a slider redraw and an 80-word sample.

The model is the lecture's (`build_gpt(GPTConfig())`: vocabulary 10,000, 80 tokens, embedding 256,
two heads), untrained: speed does not depend on the weights. The vocabulary is made up (10,000
words, the prompt's among them). It prints:

- the prompt's one forward pass (first time a prompt is seen);
- ms per slider redraw: the handler the slider calls (temperature re-applied to the cached
  probabilities, top words, entropy, shaded prompt, HTML), over 30 temperatures from 0.1 to 3;
  with `--browser`, slider steps in headless Chromium, from the key press until the new
  distribution is drawn; with `--server`, the redraw called through Gradio's Python client;
- seconds to sample 80 words (after the prompt), seeded, through the page's sampling function, and
  the lecture's `max_tokens=80` (prompt included).

Targets (issue 13): a redraw within 200 ms, 80 words within 1 s. A script, not a test:

    python benchmarks/lab_benchmark.py            # about a minute on a 2-core CPU
    python benchmarks/lab_benchmark.py --browser  # also in headless Chromium (needs gpt-keras[lab], chromium)
    python benchmarks/lab_benchmark.py --server   # also through Gradio's Python client (queue and all)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

PROMPT = "wine review : germany :"
REDRAW_TARGET_MS, SAMPLE_TARGET_S = 200, 1.0


def lecture_lab():
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.data import Vocabulary
    from gpt_keras.tools.lab import Lab
    from gpt_keras.core.model import build_gpt

    config = GPTConfig()
    known = ["wine", "review", ":", "germany", "mosel", "pfalz", "rhein"]
    words = ["", "[UNK]", *known, *(f"word{i}" for i in range(config.vocab_size - 2 - len(known)))]
    model = build_gpt(config)
    return Lab(model, Vocabulary(tuple(words)), config.n_heads), config


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def redraw_times(lab, repeats: int) -> list[float]:
    temperatures = np.linspace(0.1, 3.0, 30)
    times = []
    for _ in range(repeats):
        for temperature in temperatures:
            seconds, _ = timed(lab.redraw, PROMPT, float(temperature), None, None, None)
            times.append(1000 * seconds)
    return times


def sample_seconds(lab, max_tokens: int, repeats: int) -> tuple[float, int]:
    best, words = float("inf"), 0
    for seed in range(repeats):
        seconds, steps = timed(lab.sample, PROMPT, 1.0, seed, max_tokens)
        best, words = min(best, seconds), len(steps)
    return best, words


def server_redraw_times(lab_app_lab, repeats: int) -> list[float]:
    """The redraw through the page's HTTP API (Gradio's client), as the slider's browser call travels."""
    from gradio_client import Client

    from gpt_keras.tools.lab import launch_lab

    app = launch_lab(lab_app_lab, block=False, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        times = []
        for _ in range(repeats):
            for temperature in np.linspace(0.1, 3.0, 30):
                seconds, _ = timed(client.predict, PROMPT, float(temperature), 0, 1.0, "mean of heads",
                                   api_name="/redraw")
                times.append(1000 * seconds)
        return times
    finally:
        app.close()


def browser_redraw_times(run, steps: int) -> list[float]:
    """Keyboard steps of the slider in headless Chromium, timed from the key press until the new
    distribution is on the page: what a teacher dragging the slider waits for."""
    import shutil

    from playwright.sync_api import sync_playwright

    from gpt_keras.tools.lab import launch_lab

    app = launch_lab(run, block=False, quiet=True)
    times = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(app.local_url)
            page.wait_for_selector("#lab-distribution .lab-distribution", timeout=60_000)
            page.click("#lab-mark-0\\.5")
            slider = page.locator("#lab-temperature input[type=range]")
            for _ in range(steps):
                expected = f"{round(float(slider.input_value()) + 0.05, 2):g}"
                slider.focus()
                start = time.perf_counter()
                page.keyboard.press("ArrowRight")
                page.wait_for_function("t => document.querySelector('#lab-distribution .lab-caption')"
                                       "?.textContent.endsWith('at T = ' + t)", arg=expected, timeout=10_000)
                times.append(1000 * (time.perf_counter() - start))
            browser.close()
    finally:
        app.close()
    return times


def summary(times: list[float]) -> str:
    return (f"median {statistics.median(times):.1f} ms, p95 {np.percentile(times, 95):.1f} ms, "
            f"max {max(times):.1f} ms over {len(times)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server", action="store_true", help="also time the redraw through the HTTP server")
    parser.add_argument("--browser", action="store_true",
                        help="also time slider steps in headless Chromium, key press to new distribution")
    args = parser.parse_args(argv)

    lab, config = lecture_lab()
    print(f"lecture size: vocabulary {config.vocab_size:,}, context {config.max_len}, embedding "
          f"{config.embedding_dim}, {config.n_heads} heads; prompt {PROMPT!r}")
    seconds, _ = timed(lab.warm_up)
    print(f"warm-up (compiling the generator, once at start): {seconds:.1f} s")
    seconds, _ = timed(lab.view, PROMPT)
    print(f"the prompt's forward pass (once per prompt): {1000 * seconds:.1f} ms")
    redraws = redraw_times(lab, args.repeats)
    print(f"slider redraw (handler): {summary(redraws)}  [target <= {REDRAW_TARGET_MS} ms]")
    prompt_tokens = len(PROMPT.split())
    seconds, words = sample_seconds(lab, prompt_tokens + 80, args.repeats)
    print(f"sample 80 words after the prompt: {seconds:.3f} s for {words} words (best of {args.repeats})  "
          f"[target <= {SAMPLE_TARGET_S} s]")
    seconds, words = sample_seconds(lab, 80, args.repeats)
    print(f"sample with the lecture's max_tokens=80 (prompt included): {seconds:.3f} s for {words} words")
    from gpt_keras.runs.rundir import Run

    run = Run(path=Path("."), model=lab.model, vocab=lab.vocab, config=config)
    if args.browser:
        print(f"slider step in Chromium, key press to new distribution: {summary(browser_redraw_times(run, 40))}  "
              f"[target <= {REDRAW_TARGET_MS} ms]")
    if args.server:
        print(f"slider redraw through the HTTP server: {summary(server_redraw_times(run, args.repeats))}  "
              f"[target <= {REDRAW_TARGET_MS} ms]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
