"""The lecture's calculator on the page: the two text boxes parsed, both formulas as an HTML table."""

from __future__ import annotations

import html
import math
import re

from gpt_keras.core.sampling import SamplingError, check_temperature
from gpt_keras.tools.lab.form import check_text
from gpt_keras.tools.lab.views import LabError
from gpt_keras.tools.temperature.calculator import LECTURE_LOGITS, TemperatureTable, temperature_table
from gpt_keras.tools.viz import percent


MAX_WORDS = 50  # rows of the table
MAX_TEMPERATURES = 10  # pairs of columns


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
    """The lecture's calculator from the page's two text boxes (`experiments.temperature_table`), at most
    `MAX_WORDS` words and `MAX_TEMPERATURES` temperatures (a table the page can show)."""
    logits = parse_logits(check_text(logits_text, "logits box"))
    temperatures = parse_temperatures(check_text(temperatures_text, "temperatures box"))
    if len(logits) > MAX_WORDS:
        raise LabError(f"the calculator takes at most {MAX_WORDS} words, got {len(logits):,}")
    if len(temperatures) > MAX_TEMPERATURES:
        raise LabError(f"the calculator takes at most {MAX_TEMPERATURES} temperatures, got {len(temperatures):,}")
    try:
        return temperature_table(logits, temperatures)
    except SamplingError as error:
        raise LabError(str(error)) from None


def calculator_html(table: TemperatureTable) -> str:
    """Both formulas side by side for every word and temperature, in percent, and how far apart they are.

    Each temperature's header spans its two columns; the row under it names the formula of each.
    """
    temperatures = "".join(f'<th colspan="2" class="lab-calc-t">p(T={t:g})</th>' for t in table.temperatures)
    formulas = "".join('<th class="lab-calc-formula">softmax(z/T)</th><th class="lab-calc-formula">'
                       "p**(1/T), renorm.</th>" for _ in table.temperatures)
    rows = "".join(
        f'<tr><td class="lab-calc-word">{html.escape(word)}</td><td>{logit:g}</td>'
        + "".join(f'<td class="lab-softmax">{html.escape(percent(table.softmax[i, j]))}</td><td class="lab-lecture">'
                  f"{_cell(table.lecture[i, j])}</td>" for i in range(len(table.temperatures)))
        + "</tr>"
        for j, (word, logit) in enumerate(zip(table.words, table.logits)))
    difference = table.max_abs_difference
    verdict = ("the lecture's formula underflowed (0 / 0) at a very small T; softmax(z / T) did not"
               if math.isnan(difference) else
               f"largest difference between the two formulas: {difference:.1e} (rounding only: they agree)")
    return (f'<table class="lab-calculator"><thead><tr><th rowspan="2">word</th><th rowspan="2">logit</th>'
            f"{temperatures}</tr><tr>{formulas}</tr></thead><tbody>{rows}</tbody></table>"
            f'<p class="lab-verdict">{html.escape(verdict)}</p>')


def _cell(value: float) -> str:
    return "0/0" if math.isnan(value) else html.escape(percent(value))


def lecture_logits_text() -> str:
    return ", ".join(f"{word} {logit:g}" for word, logit in LECTURE_LOGITS.items())

