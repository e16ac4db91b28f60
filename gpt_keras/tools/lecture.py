"""The lecture's own results, and tables that put a run's figures beside them.

A student who reruns the class needs to see whether the run went right: how many reviews were kept,
how many steps an epoch has, how many parameters the model has, the loss after each epoch and what
the model predicts after "wine review : germany :". `LECTURE_FIGURES` holds the lecture's numbers
(from its slides and the book's notebook); `lecture_table` puts the figures of a run beside them.
The run's figures are always passed in by the caller, computed from the run itself.

`data_banner` says, visibly, when the data is the synthetic sample rather than the Kaggle reviews,
why the figures then differ and how to get the real dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gpt_keras.runs.datasets import FULL_DATASET_NAMES, KAGGLE_DATASET, SAMPLE_NAME, data_dir
from gpt_keras.tools.viz.steps import percent

# The lecture's figures: the full Kaggle dataset, the book's hyperparameters, 5 epochs on a GPU.
LECTURE_FIGURES = {
    "reviews": 129_907,  # reviews with country, province, variety and description
    "steps_per_epoch": 4_060,  # ceil(129,907 / 32)
    "parameters": 5_809_168,  # embeddings 2,580,480 + block 658,688 + output layer 2,570,000
    "loss": (2.5973, 1.9768, 1.8990, 1.8507, 1.8236),  # after each of the 5 epochs
    "mosel_step_2": 92.43,  # % for "mosel" after "wine review : germany :" at T = 0.5
    "temperature": {  # the slide's worked example: logits pfalz 4.1, mosel 3.9, rhein 2.7
        0.5: (0.577, 0.388, 0.035), 1.0: (0.484, 0.397, 0.119), 1.5: (0.441, 0.386, 0.173)},
}

LABELS = {
    "reviews": "reseñas conservadas",
    "steps_per_epoch": "pasos por época",
    "parameters": "parámetros",
    "loss": "pérdida por época",
    "mosel_step_2": "mosel en el paso 2 (T = 0.5)",
}

TEMPERATURE_WORDS = ("pfalz", "mosel", "rhein")


def _format(key: str, value) -> str:
    if value is None:
        return "—"
    if key == "loss":
        return " / ".join(f"{float(loss):.4f}" for loss in value)
    if key == "mosel_step_2":
        return percent(float(value) / 100)  # the one rule for a probability shown to a person
    if key.startswith("p("):
        return " / ".join(f"{float(p):.3f}" for p in value)
    return f"{int(value):,}"


def lecture_table(**this_run):
    """A pandas table "clase | esta ejecución" for the figures given, in the order given.

    Args:
        **this_run: any of `reviews`, `steps_per_epoch`, `parameters`, `loss` (one value per epoch),
            `mosel_step_2` (a percentage, or None when the run has no such step), and
            `temperature` (a dict T -> (p(pfalz), p(mosel), p(rhein)) computed from the slide's logits).

    Example:
        >>> lecture_table(reviews=len(text_data), parameters=gpt.count_params())   # doctest: +SKIP
    """
    import pandas as pd

    rows = {}
    for key, value in this_run.items():
        if key == "temperature":
            for temperature, probs in value.items():
                label = f"p({' / '.join(TEMPERATURE_WORDS)}) con T = {temperature:g}"
                rows[label] = (_format("p(", LECTURE_FIGURES["temperature"][temperature]), _format("p(", probs))
            continue
        if key not in LABELS:
            raise KeyError(f"no lecture figure named {key!r}; known: {', '.join([*LABELS, 'temperature'])}")
        rows[LABELS[key]] = (_format(key, LECTURE_FIGURES[key]), _format(key, value))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["clase", "esta ejecución"])


def slide_temperature_table(logits: Sequence[float], temperatures: Sequence[float] = (0.5, 1.0, 1.5)):
    """A pandas table "diapositiva | softmax(z / T)" for the slide's worked example (pfalz, mosel, rhein).

    These probabilities do not depend on any run: both columns come from the same logits, and where
    they differ (0.577 / 0.388 against 0.578 / 0.387 at T = 0.5, 0.397 against 0.396 at T = 1.0) it
    is the slide's rounding; the lecture's own worked example gives 0.396.
    """
    import pandas as pd

    from gpt_keras.core.sampling import softmax

    rows = {f"p({' / '.join(TEMPERATURE_WORDS)}) con T = {temperature:g}":
            (_format("p(", LECTURE_FIGURES["temperature"][temperature]),
             _format("p(", softmax(np.asarray(logits, dtype=float), temperature)))
            for temperature in temperatures}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["diapositiva (su redondeo)", "softmax(z / T), 3 decimales"])


def word_percent(info: Sequence[dict], vocab: Sequence[str], step: int, word: str) -> float | None:
    """The probability, in percent, that step `step` (1-based, as `print_probs` counts) gave `word`.

    None when the generation stopped before that step or the vocabulary lacks the word.
    """
    words = list(vocab)
    if len(info) < step or word not in words:
        return None
    return 100.0 * float(np.asarray(info[step - 1]["word_probs"])[words.index(word)])


def is_synthetic_sample(data_path: str | Path) -> bool:
    """Whether `data_path` is the package's synthetic sample (`wine-reviews-sample.json`)."""
    return Path(data_path).name == SAMPLE_NAME


def data_banner(data_path: str | Path, n_reviews: int | None = None) -> str | None:
    """HTML that says the data is the synthetic sample, why the figures differ and how to get the real
    reviews; None for any other file."""
    if not is_synthetic_sample(data_path):
        return None
    count = f"{n_reviews:,} reseñas inventadas" if n_reviews is not None else "reseñas inventadas"
    return (
        '<div style="border:2px solid #d9822b;background:#fff4e5;padding:0.6em 1em;border-radius:6px">'
        "<b>⚠ Datos sintéticos.</b> Este cuaderno entrena con la muestra del repositorio "
        f"(<code>{Path(data_path).name}</code>: {count} con el formato de Kaggle), no con las "
        f"{LECTURE_FIGURES['reviews']:,} reseñas reales de la clase. "
        "Por eso las cifras de «esta ejecución» no se parecen a las de la clase: hay menos reseñas y pasos por "
        "época, el vocabulario tiene unas cientos de palabras en vez de 10,000 (así que el modelo tiene menos "
        "parámetros) y la pérdida y las probabilidades son otras.<br>"
        "<b>Para usar los datos reales:</b> <code>gpt-keras download</code> (necesita acceso a Kaggle), o "
        f"descargue <code>{FULL_DATASET_NAMES[0]}</code> de "
        f'<a href="https://www.kaggle.com/datasets/{KAGGLE_DATASET}">kaggle.com/datasets/{KAGGLE_DATASET}</a> '
        f"y colóquelo en la carpeta <code>{data_dir()}</code> (o indique el archivo con "
        "<code>GPT_KERAS_DATA</code>); luego vuelva a ejecutar el cuaderno.</div>")
