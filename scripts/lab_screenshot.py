"""Draws the README's pictures of the temperature lab (docs/images/lab-*.png) from a run, in headless Chromium.

    gpt-keras demo                                   # prints the run it made, e.g. runs/run-20261203-183554
    python scripts/lab_screenshot.py --run runs/run-20261203-183554 [--out docs/images] [--temperature 1.5]

Each picture is one screen of a classroom projector, 1024x768, as the class sees it:

- `lab-1024x768.png`: the first screen at `--temperature`: prompt, temperature, the bars with "the rest",
  the entropy, and the prompt shaded by attention;
- `lab-sample-1024x768.png`: a seeded text sampled word by word, its third word clicked (marked), and
  that step's distribution;
- `lab-calculator-1024x768.png`: three temperatures compared and the lecture's calculator.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VIEWPORT = {"width": 1024, "height": 768}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run directory (the one `gpt-keras demo` printed)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder of the pictures")
    parser.add_argument("--temperature", choices=("0.5", "1", "1.5", "3"), default="1.5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from gpt_keras.tools.lab import launch_lab

    args.out.mkdir(parents=True, exist_ok=True)
    app = launch_lab(args.run, block=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.goto(app.local_url)
            page.wait_for_selector("#lab-distribution .lab-distribution", timeout=60_000)
            _first_screen(page, args.temperature, args.out / "lab-1024x768.png")
            _sampled_step(page, args.seed, args.out / "lab-sample-1024x768.png")
            _compare_and_calculator(page, args.out / "lab-calculator-1024x768.png")
            browser.close()
    finally:
        app.close()
    return 0


def _first_screen(page, temperature: str, path: Path) -> None:
    page.click("#lab-mark-" + temperature.replace(".", "\\."))  # a dot in a CSS id is escaped
    page.wait_for_function("t => document.querySelector('#lab-distribution .lab-caption')"
                           "?.textContent.endsWith('at T = ' + t)", arg=temperature)
    _save(page, path)


def _sampled_step(page, seed: int, path: Path) -> None:
    page.fill("#lab-seed input", str(seed))
    page.click("#lab-sample")
    words = page.locator("#lab-sampled .token.highlighted")
    words.nth(2).wait_for(timeout=30_000)
    words.nth(2).click()
    page.locator("#lab-step-distribution .lab-caption").wait_for(timeout=20_000)
    page.wait_for_timeout(300)  # the clicked word's colour is redrawn after the step
    _scroll_to_top_of(page, "#lab-sampled")
    _save(page, path)


def _compare_and_calculator(page, path: Path) -> None:
    page.click("#lab-compare")
    page.locator("#lab-compared .lab-compare-column").nth(2).wait_for(timeout=30_000)
    _scroll_to_top_of(page, "#lab-compared")
    _save(page, path)


def _scroll_to_top_of(page, selector: str) -> None:
    page.evaluate("s => { document.querySelector(s).scrollIntoView({block: 'start'}); window.scrollBy(0, -8); }",
                  selector)


def _save(page, path: Path) -> None:
    page.screenshot(path=str(path))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
