"""Plain-text tables and JSON-safe values for the reports of the temperature lab and the GPT-2 comparison."""

from __future__ import annotations

import math
from typing import Sequence


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned: the first to the left, the others to the right, a dashed rule under the headers."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def clip_line(text: str, width: int | None) -> str:
    """Cuts a line to `width` characters with '...' (None: no limit)."""
    return text if width is None or len(text) <= width else text[:width - 3].rstrip() + "..."


def json_safe(value):
    """JSON has no NaN: non-finite floats become null, in nested lists and dicts too."""
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
