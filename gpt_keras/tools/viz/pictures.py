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
    """Draws attention as a PNG (matplotlib, Agg), written atomically.

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
    steps = _steps(info)
    if not steps:
        raise VizError("no steps to draw: the generation produced no steps")
    if step is not None:
        step = _step_index(step, len(steps))
        steps = [steps[step]]
    grid, words = _attention_grid(steps)
    panels, row_labels, title = _panels(grid, steps, step, heads)
    figure = _draw(panels, row_labels, words, title)
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


def _draw(panels: list[tuple[str, np.ndarray]], row_labels: list[str], words: list[str], title: str):
    """The panels one under another as a matplotlib `Figure` (not yet saved)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot's backend alone

    n_rows, n_cols = panels[0][1].shape
    width = min(max(6.0, 0.22 * n_cols + 2.5), 40.0)
    height = min(max(2.0, 0.18 * n_rows + 1.8), 30.0) * len(panels)
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, panels):
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="Blues", vmin=0.0,
                          vmax=max(float(np.nanmax(values)) if np.isfinite(values).any() else 1.0, 1e-9),
                          interpolation="nearest")
        ax.set_title(name, fontsize=9)
        # parse_math=False: a word is plain text, "$" included (matplotlib would read "$^^$" as maths and fail)
        ax.set_xticks(range(n_cols), [printable(word) for word in words], rotation=90, fontsize=7, parse_math=False)
        ax.set_yticks(range(n_rows), row_labels, fontsize=7, parse_math=False)
        ax.set_facecolor("#f2f2f2")  # words a step did not see
        figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    figure.suptitle(title, fontsize=10)
    return figure
