"""The lecture's temperature calculator: each word's probability at each temperature, by both formulas.

Given logits (pfalz 4.1, mosel 3.9, rhein 2.7), `temperature_table` computes each word's probability
at several temperatures twice, as softmax(z / T) and as the lecture's `probs ** (1 / T)` renormalised,
and reports how far apart the two are (rounding only). Pure numpy: no model, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping

import numpy as np

from gpt_keras.core.sampling import SamplingError, check_temperature, lecture_temperature, softmax
from gpt_keras.tools.tables import text_table

LECTURE_LOGITS = {"pfalz": 4.1, "mosel": 3.9, "rhein": 2.7}
LECTURE_TEMPERATURES = (1.0, 0.5, 1.5)


@dataclasses.dataclass(frozen=True)
class TemperatureTable:
    """The lecture's table: each word's probability at each temperature, by both formulas.

    `softmax[i, j]` is softmax(z / T_i) for word j; `lecture[i, j]` is the lecture's
    `probs ** (1 / T_i)` renormalised, starting from probs = softmax(z). They agree up to rounding
    (`max_abs_difference`), except where `probs ** (1 / T)` underflows to 0 / 0 at a very small T:
    those entries are NaN, which is why `gpt_keras.core.sampling` computes it in log space.
    """

    words: tuple[str, ...]
    logits: tuple[float, ...]
    temperatures: tuple[float, ...]
    softmax: np.ndarray
    lecture: np.ndarray

    @property
    def max_abs_difference(self) -> float:
        """Largest |softmax - lecture| over the table (NaN where the lecture's formula underflowed)."""
        return float(np.max(np.abs(self.softmax - self.lecture)))

    def rows(self) -> list[dict]:
        """One row per (temperature, word), for CSV or JSON."""
        return [{"temperature": temperature, "word": word, "logit": logit,
                 "softmax": float(self.softmax[i, j]), "lecture": float(self.lecture[i, j]),
                 "abs_difference": float(abs(self.softmax[i, j] - self.lecture[i, j]))}
                for i, temperature in enumerate(self.temperatures)
                for j, (word, logit) in enumerate(zip(self.words, self.logits))]

    def format(self, digits: int = 3) -> str:
        """The table as the lecture prints it (word, logit, p(T=...)), then the lecture formula's values."""
        headers = ["word", "logit"] + [f"p(T={t:g})" for t in self.temperatures]
        body = [[word, f"{logit:g}"] + [format_number(p, digits) for p in self.softmax[:, j]]
                for j, (word, logit) in enumerate(zip(self.words, self.logits))]
        lecture = [[word, ""] + [format_number(p, digits) for p in self.lecture[:, j]]
                   for j, word in enumerate(self.words)]
        lines = ["softmax(z / T):", text_table(headers, body), "",
                 "probs ** (1 / T), renormalised (the lecture's code):", text_table(headers, lecture), ""]
        difference = self.max_abs_difference
        if math.isnan(difference):
            lines.append("the lecture's formula underflowed (0 / 0) at the smallest temperature(s): "
                         "probs ** (1 / T) rounds every word to 0; softmax(z / T) in log space does not")
        else:
            lines.append(f"largest difference between the two: {difference:.1e} (rounding only: they are the "
                         "same formula)")
        return "\n".join(lines)


def temperature_table(logits: Mapping[str, float], temperatures: Iterable[float] = LECTURE_TEMPERATURES
                      ) -> TemperatureTable:
    """The lecture's temperature table for the given logits.

    Args:
        logits: word -> logit, e.g. `{"pfalz": 4.1, "mosel": 3.9, "rhein": 2.7}`.
        temperatures: each finite and > 0; shown in the order given.

    Example:
        >>> table = temperature_table({"pfalz": 4.1, "mosel": 3.9, "rhein": 2.7}, [1.0, 0.5, 1.5])
        >>> table.softmax.round(3).tolist()   # the lecture's slide has 0.577 / 0.388 at T = 0.5
        [[0.484, 0.396, 0.119], [0.578, 0.387, 0.035], [0.441, 0.386, 0.173]]
    """
    if not isinstance(logits, Mapping) or not logits:
        raise SamplingError("logits: give at least one word and its logit, e.g. pfalz=4.1")
    for word, logit in logits.items():
        if not isinstance(word, str) or not word:
            raise SamplingError(f"logits: every word must be a non-empty string, got {word!r}")
        if isinstance(logit, bool) or not isinstance(logit, (int, float, np.floating, np.integer)) \
                or not math.isfinite(logit):
            raise SamplingError(f"logits: the logit of {word!r} must be a finite number, got {logit!r}")
    temperatures = [check_temperature(t, "temperatures") for t in temperatures]
    if not temperatures:
        raise SamplingError("temperatures: give at least one temperature")
    z = np.array(list(logits.values()), np.float64)
    probs = softmax(z)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        lecture = np.stack([lecture_temperature(probs, t) for t in temperatures])
    return TemperatureTable(tuple(logits), tuple(float(v) for v in z), tuple(temperatures),
                            np.stack([softmax(z, t) for t in temperatures]), lecture)


def format_number(value: float, digits: int = 3, fmt: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return (fmt or f"{{:.{digits}f}}").format(value)
