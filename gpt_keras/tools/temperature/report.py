"""Writing the temperature lab's results: CSV and JSON for handouts, a PNG of the metrics, TensorBoard logs.

Every file is written atomically (a reader never sees half of one).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from gpt_keras.runs.files import atomic_path, write_json, write_text
from gpt_keras.tools.tables import json_safe
from gpt_keras.tools.temperature.calculator import TemperatureTable
from gpt_keras.tools.temperature.experiment import _DEFINITIONS, METRICS, TENSORBOARD_FILE, TemperatureReport


def write_table(table: TemperatureTable, out_dir: str | Path) -> tuple[Path, Path]:
    """The calculator's table as `temperature_table.csv` and `temperature_table.json` in `out_dir`."""
    out_dir = Path(out_dir)
    return _write_csv(out_dir / "temperature_table.csv", table.rows()), _write_table_json(table, out_dir / "temperature_table.json")

def _write_table_json(table: TemperatureTable, path: str | Path) -> Path:
    return write_json(path, {"words": list(table.words), "logits": list(table.logits),
                             "temperatures": list(table.temperatures), "rows": json_safe(table.rows()),
                             "max_abs_difference": json_safe(table.max_abs_difference)})


def write_metrics_csv(report: TemperatureReport, path: str | Path) -> Path:
    """The metrics, one row per temperature (an empty cell where a metric is undefined)."""
    return _write_csv(path, report.rows())


def write_report_json(report: TemperatureReport, path: str | Path) -> Path:
    """Everything: settings, metric definitions, next-word table, metrics and every sample."""
    return write_json(path, report.to_dict())


def plot_metrics(report: TemperatureReport, path: str | Path) -> Path:
    """A PNG with one small plot per metric against temperature.

    Drawn on a bare matplotlib `Figure` (Agg), so pyplot's backend, in a notebook say, is untouched.
    """
    from matplotlib.figure import Figure

    panels = [("entropy", "model_entropy"), ("distinct_1", "distinct_2"), ("repetition_rate", "unk_share"),
              ("perplexity",), ("mean_length",), ("ended_share",)]
    figure = Figure(figsize=(13, 7), layout="constrained")
    axes = figure.subplots(2, 3)
    temperatures = report.temperatures
    for ax, names in zip(axes.flat, panels):
        for name in names:
            ax.plot(temperatures, report.metric(name), marker="o", label=METRICS[name][0])
        ax.set_xlabel("temperature T")
        ax.set_title(" / ".join(METRICS[name][0] for name in names))
        if len(names) > 1:
            ax.legend(fontsize="small")
        if names == ("entropy", "model_entropy"):
            uniform = math.log(report.settings["vocab_size"])
            ax.axhline(uniform, color="grey", linestyle="--", linewidth=1)
            ax.text(temperatures[0], uniform, "uniform: log V", va="top", fontsize="small", color="grey")
        if names == ("perplexity",) and np.all(report.metric("perplexity") > 0):
            ax.set_yscale("log")
        ax.axvline(1.0, color="grey", linewidth=0.8, alpha=0.5)
        ax.grid(alpha=0.3)
    figure.suptitle(f'temperature lab: "{report.prompt}", {report.settings["n_samples"]} samples per T',
                    parse_math=False)  # the prompt is plain text: "$" is a dollar, not maths
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return Path(path)


def write_tensorboard(report: TemperatureReport, log_dir: str | Path) -> Path:
    """Scalars (step = 100 x T, so the x axis reads as T in hundredths) and text samples per temperature.

    The event file is written in a temporary folder, then moved to `log_dir/TENSORBOARD_FILE`
    when complete, replacing the one an earlier experiment left there (other files are kept).
    """
    import tensorflow as tf

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tensorboard-", dir=log_dir))
    try:
        writer = tf.summary.create_file_writer(str(staging))
        with writer.as_default():
            for result in report.results:
                step = int(round(100 * result.temperature))
                for name, value in result.metrics.items():
                    if math.isfinite(value):
                        tf.summary.scalar(f"temperature_lab/{name}", value, step=step,
                                          description=f"{_DEFINITIONS[name]} Step = 100 x temperature.")
                samples = "\n\n".join(f"{index + 1}. {text}" for index, text in enumerate(result.texts))
                tf.summary.text("temperature_lab/samples", f"**T = {result.temperature:g}**\n\n{samples}",
                                step=step)
            tf.summary.text("temperature_lab/next_words", "```\n" + report.next_words.format() + "\n```", step=0)
        writer.close()
        (event_file,) = staging.iterdir()
        os.replace(event_file, log_dir / TENSORBOARD_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return log_dir


def write_report(report: TemperatureReport, out_dir: str | Path) -> dict[str, Path]:
    """metrics.csv, report.json, metrics.png and tensorboard/ in `out_dir`, all or none of the new ones.

    If one cannot be written (a full disk), the files and folders this call had made are removed again,
    so a failed command leaves no partial set behind (a file it replaced stays replaced: that was atomic).
    """
    out_dir = Path(out_dir)
    writers = {"csv": (write_metrics_csv, "metrics.csv"), "json": (write_report_json, "report.json"),
               "png": (plot_metrics, "metrics.png"), "tensorboard": (write_tensorboard, "tensorboard")}
    made = [] if os.path.lexists(out_dir) else [out_dir]
    written = {}
    try:
        for key, (write, name) in writers.items():
            if not os.path.lexists(out_dir / name):
                made.insert(0, out_dir / name)
            written[key] = write(report, out_dir / name)
    except BaseException:
        for path in made:  # the files first, then the folder if this call made it (empty by then)
            with contextlib.suppress(OSError):
                if path == out_dir:
                    path.rmdir()
                elif path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        raise
    return written


def _write_csv(path: str | Path, rows: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if isinstance(value, float) and not math.isfinite(value) else value
                         for key, value in row.items()})
    return write_text(path, buffer.getvalue())
