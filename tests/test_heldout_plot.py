"""benchmarks/heldout.py's picture: every point of every curve inside the axes, the legend clear of them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tests.conftest import REPO

# Curves shaped as the benchmark's: the untrained loss at time 0, far above the rest, then two evaluations.
QUALITY = {"train_reviews": 8997, "heldout_reviews": 999, "epochs": 1, "contenders": {
    "lecture": {"label": "lecture (float32, its pipeline)",
                "curve": [[0.0, 0, 0.0, 9.2], [52.8, 141, 0.5, 2.847], [106.0, 282, 1.0, 2.6242]]},
    "auto": {"label": 'ours, mixed_bfloat16 (mixed_precision="auto")',
             "curve": [[0.0, 0, 0.0, 9.2], [34.0, 141, 0.5, 2.851], [69.0, 282, 1.0, 2.6187]]}}}


def _heldout():
    spec = importlib.util.spec_from_file_location("heldout", REPO / "benchmarks" / "heldout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_heldout_plot_holds_every_point_and_keeps_its_legend_off_the_lines(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _heldout().heldout_figure(QUALITY)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    (axis,) = figure.axes
    (x_low, x_high), (y_low, y_high) = axis.get_xlim(), axis.get_ylim()
    for line in axis.get_lines():
        assert all(x_low < x < x_high for x in line.get_xdata()), line.get_label()
        assert all(y_low < y < y_high for y in line.get_ydata()), line.get_label()
    (legend,) = figure.legends
    renderer = canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))


def test_the_heldout_plot_is_redrawn_from_the_curves_saved_beside_it(tmp_path):
    picture = tmp_path / "heldout-loss.png"
    _heldout().plot(QUALITY, picture)
    assert json.loads((tmp_path / "heldout-loss.png.json").read_text()) == QUALITY
    picture.unlink()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "heldout.py"), "--replot", str(picture)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
