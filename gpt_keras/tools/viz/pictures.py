"""Attention as a picture: the heatmap PNG (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gpt_keras.core.checks import printable
from gpt_keras.runs.files import atomic_path
from gpt_keras.tools.viz.steps import PAD_LABEL, VizError, _attention, _field, _steps

# --- pictures and pages ------------------------------------------------------------------------

def _attention_grid(steps: list[Mapping]) -> tuple[np.ndarray, list[str]]:
    """[heads, steps, words] attention (NaN where a step did not see the word) and the longest prompt's words."""
    prompts = [str(_field(step, "prompt", index)).split() for index, step in enumerate(steps)]
    attentions = [_attention(step, len(words), index) for index, (step, words) in enumerate(zip(steps, prompts))]
    n_heads = {attention.shape[0] for attention in attentions}
    if len(n_heads) != 1:
        raise VizError(f"the steps disagree on the number of heads ({sorted(n_heads)}); draw one generation")
    longest = max(prompts, key=len)
    grid = np.full((n_heads.pop(), len(steps), len(longest)), np.nan)
    for row, (words, attention) in enumerate(zip(prompts, attentions)):
        end = len(words)  # prompts grow by one word per step: align each row's window to its prompt's end
        grid[:, row, end - attention.shape[1]:end] = attention
    return grid, longest


def attention_heatmap(info: Any, path: str | Path, step: int | None = None, heads: bool = True) -> Path:
    """Draws attention as a slide-ready PNG (1920 x 1080 px, labels at 12 pt; matplotlib, Agg), written atomically.

    Args:
        info: the steps of `TextGenerator.generate`.
        path: the PNG to write (folders are created).
        step: None draws every step (rows: steps, columns: the prompt's words; a row covers the words
            the model saw at that step). An index into `info` (0 is the first step, negatives count
            from the end) draws that step alone: rows are the heads and their mean.
        heads: one panel per head (True) or only the head average (False); for one step, whether to
            add a row per head under the mean.

    Returns:
        The path written.
    """
    figure = heatmap_figure(info, step, heads)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return Path(path)


def _step_index(step: Any, n_steps: int) -> int:
    """`step` as an index into the steps (negatives count from the end), or a `VizError`."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not -n_steps <= step < n_steps:
        raise VizError(f"step must be an index into the {n_steps} steps, got {step!r}")
    return int(step) % n_steps


def _panels(grid: np.ndarray, steps: list[Mapping], step: int | None, heads: bool
            ) -> tuple[list[tuple[str, np.ndarray]], list[str], str]:
    """What to draw from the [heads, steps, words] grid: (panel name, [rows, words]) per panel, the row
    labels and the figure's title."""
    if step is None:
        panels = [(f"head {h + 1}", grid[h]) for h in range(grid.shape[0])] if heads \
            else [("mean of heads", np.mean(grid, axis=0))]
        row_labels = [f"{i + 1}: {printable(str(r.get('word', '')) or PAD_LABEL)}" for i, r in enumerate(steps)]
        return panels, row_labels, "attention of the last position at each step (row label: the word it chose)"
    rows = [np.mean(grid[:, 0], axis=0)] + ([grid[h, 0] for h in range(grid.shape[0])] if heads else [])
    row_labels = ["mean"] + ([f"head {h + 1}" for h in range(grid.shape[0])] if heads else [])
    return [(f"step {step + 1}", np.stack(rows))], row_labels, f"attention at step {step + 1} (info[{step}])"


# A slide: 16:9, 1920 px wide, labels at 12 pt and titles at 14 pt, readable from the back of a room.
SLIDE_INCHES = (16.0, 9.0)
SLIDE_DPI = 120  # 16 in x 120 = 1920 px; 12 pt = 20 px
LABEL_POINTS = 12
TITLE_POINTS = 14


def heatmap_figure(info: Any, step: int | None = None, heads: bool = True):
    """The figure `attention_heatmap` saves (a matplotlib `Figure`), for a notebook to show or a test to measure.

    A landscape slide, 1920 x 1080 px: the panels (one per head, or their mean) side by side, labels at
    12 pt. When there are more words or steps than 12 pt labels can hold, every second (third...) one is
    labelled, counting from the first, so no two labels overlap.
    """
    steps = _steps(info)
    if not steps:
        raise VizError("no steps to draw: the generation produced no steps")
    if step is not None:
        step = _step_index(step, len(steps))
        steps = [steps[step]]
    grid, words = _attention_grid(steps)
    panels, row_labels, title = _panels(grid, steps, step, heads)
    return _draw(panels, row_labels, words, title)


def _every(n_labels: int, room_px: float) -> int:
    """Label every k-th position so that labels LABEL_POINTS high, with a little space, fit in `room_px`."""
    label_px = LABEL_POINTS / 72 * SLIDE_DPI * 1.25
    fits = max(1, int(room_px // label_px))
    return max(1, -(-n_labels // fits))


def _draw(panels: list[tuple[str, np.ndarray]], row_labels: list[str], words: list[str], title: str):
    """The panels side by side on a 16:9 slide, as a matplotlib `Figure` (not yet saved)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot's backend alone

    n_rows, n_cols = panels[0][1].shape
    figure = Figure(figsize=SLIDE_INCHES, dpi=SLIDE_DPI, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    width_px, height_px = SLIDE_INCHES[0] * SLIDE_DPI, SLIDE_INCHES[1] * SLIDE_DPI
    # the room the ticks have, roughly: the panel's share of the slide less the labels and titles around it
    column_room = (width_px - 260) / len(panels) - 60
    row_room = height_px - 330
    columns = range(0, n_cols, _every(n_cols, column_room))
    rows = range(0, n_rows, _every(n_rows, row_room))
    every_value = np.stack([values for _, values in panels])
    top = max(float(np.nanmax(every_value)) if np.isfinite(every_value).any() else 1.0, 1e-9)  # one scale, one colorbar
    for index, (ax, (name, values)) in enumerate(zip(axes, panels)):
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="Blues", vmin=0.0, vmax=top,
                          interpolation="nearest")
        ax.set_title(name, fontsize=TITLE_POINTS)
        # parse_math=False: a word is plain text, "$" included (matplotlib would read "$^^$" as maths and fail)
        ax.set_xticks(list(columns), [printable(words[i]) for i in columns], rotation=90, fontsize=LABEL_POINTS,
                      parse_math=False)
        ax.set_yticks(list(rows), [row_labels[i] for i in rows], fontsize=LABEL_POINTS, parse_math=False)
        ax.tick_params(labelleft=index == 0)  # the panels share their rows: label them once
        ax.set_facecolor("#f2f2f2")  # words a step did not see
    colorbar = figure.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)
    colorbar.ax.tick_params(labelsize=LABEL_POINTS)
    figure.suptitle(title, fontsize=TITLE_POINTS)
    return figure
