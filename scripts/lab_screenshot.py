"""Draws the README's picture of the temperature lab (docs/lab.png) from a trained run, in headless Chromium.

    python scripts/lab_screenshot.py --run runs/demo [--out docs/lab.png] [--temperature 1.5] [--seed 0]

The page is served on 127.0.0.1, the slider set, one text sampled and its third word clicked;
the picture covers the page down to that step's distribution, at 1280 pixels wide.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lab.png")
    parser.add_argument("--temperature", choices=("0.5", "1", "1.5", "3"), default="1.5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from gpt_keras.tools.lab import launch_lab

    app = launch_lab(args.run, block=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app.local_url)
            page.wait_for_selector("#lab-distribution .lab-distribution", timeout=60_000)
            mark = "#lab-mark-" + args.temperature.replace(".", "\\.")  # a dot in a CSS id is escaped
            page.click(mark)
            page.wait_for_function("t => document.querySelector('#lab-distribution .lab-caption')"
                                   "?.textContent.endsWith('at T = ' + t)", arg=args.temperature)
            page.fill("#lab-seed input", str(args.seed))
            page.click("#lab-sample")
            words = page.locator("#lab-sampled .token.highlighted")
            words.nth(2).wait_for(timeout=30_000)
            words.nth(2).click()
            page.locator("#lab-step-distribution .lab-caption").wait_for(timeout=20_000)
            bottom = page.locator("#lab-step-distribution").bounding_box()  # relative to the scrolled viewport
            bottom["y"] += page.evaluate("window.scrollY")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": bottom["y"] + bottom["height"] + 16})
            browser.close()
    finally:
        app.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
