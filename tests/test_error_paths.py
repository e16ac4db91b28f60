"""Issue 23, points 4 and 5: every error path a user can reach is one line and exit code 2, and a failed
command leaves nothing it wrote.

One small group of tests per kind of fault: huge JSON integers, integers past int64 in `state.json`,
non-UTF-8 prompts, matplotlib's maths markup in words, run folders that cannot be made, the notebook's
`--dir`, a `model.keras` with the right layer names and the wrong layer types, a refused resume, a full
disk at the lock and at the first checkpoint, and SIGTERM during the first epoch.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt_keras.runs import rundir as runs
from gpt_keras.runs.files import WriteError, atomic_path
from tests.conftest import REPO, cli, copy_run, tiny_config, tiny_flags

HUGE_INTEGER = "9" * 5000  # past Python's 4,300-digit limit for converting text to int


def assert_one_error_line(result, command: str, *named: str) -> str:
    """Exit code 2 and stderr exactly one line, the command's own error line, naming each of `named`."""
    assert result.code == 2, (result.code, result.err[-2000:])
    lines = result.err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith(f"gpt-keras {command}: error: "), result.err[-2000:]
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under `folder` and its bytes, the lock file left out (any training start makes it)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != runs.LOCK}


# --- integers Python's json refuses ---------------------------------------------------------------

def test_a_json_integer_of_thousands_of_digits_in_the_data_file_is_one_line(tmp_path):
    data = tmp_path / "reviews.json"
    data.write_text('[{"country": "Italy", "province": "Sicily", "variety": "Red", "description": "Good.", '
                    f'"points": {HUGE_INTEGER}}}]')
    result = cli("train", "--data", data, "--runs-dir", tmp_path / "runs", *tiny_flags())
    assert_one_error_line(result, "train", "reviews.json: malformed JSON", "4300 digits")
    assert not (tmp_path / "runs").exists()


def test_a_json_integer_of_thousands_of_digits_in_the_data_folder_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "winemag-data-130k-v2.json").write_text(f"[{HUGE_INTEGER}]")
    monkeypatch.setenv("GPT_KERAS_DATA_DIR", str(folder))
    result = cli("train", "--runs-dir", tmp_path / "runs", *tiny_flags())
    assert_one_error_line(result, "train", "winemag-data-130k-v2.json: malformed JSON")
    assert not (tmp_path / "runs").exists()


# --- integers past int64 in state.json ------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("epoch", 2**64), ("global_step", 2**63), ("history", {"loss": [10**400]})])
def test_state_integers_past_int64_are_refused_naming_the_field(tmp_path, trained_run, field, value):
    run_dir = copy_run(trained_run, tmp_path)
    state = json.loads((run_dir / runs.STATE).read_text())
    (run_dir / runs.STATE).write_text(json.dumps({**state, field: value}))
    with pytest.raises(runs.RunError, match=f"state.json: field '{field}' must"):
        runs.RunState.read(run_dir)


def test_resuming_from_a_state_with_an_epoch_past_int64_is_one_line_and_writes_nothing(tmp_path, trained_run):
    run_dir = copy_run(trained_run, tmp_path)
    state = json.loads((run_dir / runs.STATE).read_text())
    (run_dir / runs.STATE).write_text(json.dumps({**state, "epoch": 2**64}))
    before = snapshot(run_dir)
    result = cli("train", "--resume", "--run", run_dir, "--epochs", "3", "--quiet")
    assert_one_error_line(result, "train", "field 'epoch'")
    assert snapshot(run_dir) == before


# --- a byte that is not UTF-8 in a prompt ---------------------------------------------------------

NOT_UTF8 = "wine review \udcff"  # what Python makes of the byte 0xff in argv


def test_a_non_utf8_prompt_with_html_is_one_line_and_writes_no_page(tmp_path, trained_run):
    page = tmp_path / "gen.html"
    result = cli("generate", "--run", trained_run.run_dir, "--prompt", NOT_UTF8, "--html", page)
    assert_one_error_line(result, "generate", "--prompt: not UTF-8 text (byte 0xff at character 13)")
    assert not page.exists()


def test_a_non_utf8_prompt_in_the_temperature_lab_is_one_line_and_leaves_no_metrics(tmp_path, trained_run):
    out = tmp_path / "lab"
    result = cli("temperature", "--run", trained_run.run_dir, "--prompt", NOT_UTF8, "--out", out)
    assert_one_error_line(result, "temperature", "--prompt: not UTF-8 text")
    assert not out.exists()


def test_a_non_utf8_word_in_the_calculators_logits_is_one_line(tmp_path):
    result = cli("temperature", "--logits", "pfalz=4.1", "mos\udce9l=3.9")
    assert_one_error_line(result, "temperature", "--logits: not UTF-8 text (byte 0xe9 at character 4)")
    result = cli("temperature", "--logits", "pfalz=4.1", "\ud800=3.9")  # a surrogate no byte stands for
    assert_one_error_line(result, "temperature", "--logits: not UTF-8 text (code point U+D800 at character 1)")


# --- matplotlib's maths markup in words -----------------------------------------------------------

MARKUP_PROMPT = r"wine review : $^^$ $\frac{$"


def test_maths_markup_in_words_draws_as_plain_text_in_the_heatmap(tmp_path):
    from gpt_keras.tools.viz import attention_heatmap

    # The words of a step's prompt and the word it chose become tick labels; these are vocabulary words.
    step = {"prompt": r"wine review : $^^$ $\frac{$", "atts": np.full((2, 5), 0.2), "word": "$x^^$",
            "word_probs": np.full(4, 0.25)}
    for name, options in [("steps.png", {}), ("one-step.png", {"step": 0})]:
        picture = attention_heatmap([step, step], tmp_path / name, **options)
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def small_report(prompt: str):
    """A report as `temperature_experiment` makes it (the prompt standardized), from a four-word model's numbers."""
    from gpt_keras.core.data import Vocabulary
    from gpt_keras.tools.temperature.experiment import (METRICS, TemperatureReport, TemperatureResult,
                                                        _next_words)

    vocab = Vocabulary(("", "[UNK]", "wine", "review"))
    next_words = _next_words(np.array([0.1, 0.2, 0.3, 0.4]), vocab, prompt, [0.5, 1.0], 3)
    results = tuple(TemperatureResult(t, ("wine review",), {name: 1.0 + t for name in METRICS}, (-1.0,))
                    for t in (0.5, 1.0))
    return TemperatureReport(next_words.prompt, {"n_samples": 1, "vocab_size": len(vocab)}, next_words, results)


def test_maths_markup_in_the_prompt_draws_as_plain_text_in_the_temperature_plot(tmp_path):
    from gpt_keras.tools.temperature.report import plot_metrics

    report = small_report(MARKUP_PROMPT)
    assert "$ ^ ^ $" in report.prompt
    picture = plot_metrics(report, tmp_path / "metrics.png")  # the prompt is in the figure's title
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_temperature_reports_files_are_written_all_or_none(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from gpt_keras.tools.temperature.report import write_report

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full_disk)  # metrics.csv and report.json are written by then
    with pytest.raises(WriteError, match=r"metrics.png: cannot write \(No space left on device\)"):
        write_report(small_report("wine review"), tmp_path / "lab")
    assert not (tmp_path / "lab").exists()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.csv").write_text("an earlier run's")
    (earlier / "notes.txt").write_text("mine")
    with pytest.raises(WriteError):
        write_report(small_report("wine review"), earlier)
    assert sorted(path.name for path in earlier.iterdir()) == ["metrics.csv", "notes.txt"]  # report.json is gone


# --- a run folder that cannot be made -------------------------------------------------------------

@pytest.mark.parametrize("where", [("--runs-dir", "/proc"), ("--runs-dir", "/sys"), ("--run", "/proc/gpt-keras-run")])
def test_a_run_folder_that_cannot_be_made_fails_before_the_data_is_read(small_json, where):
    result = cli("train", "--data", small_json, *where, *tiny_flags())
    assert_one_error_line(result, "train", "cannot create the run directory")
    assert "kept" not in result.out  # the data's summary line: it was never loaded


def test_no_free_inode_for_the_run_folder_is_one_line_and_leaves_no_folder(tmp_path, small_json, monkeypatch):
    make_dir = Path.mkdir

    def no_inode_for_the_run(self, *args, **kwargs):
        if self.name == "inodes":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return make_dir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", no_inode_for_the_run)
    result = cli("train", "--data", small_json, "--runs-dir", tmp_path / "runs" / "deeper", "--name", "inodes",
                 *tiny_flags())
    assert_one_error_line(result, "train", "inodes: cannot create the run directory (No space left on device)")
    assert list(tmp_path.iterdir()) == []  # runs/deeper, made on the way, is gone too


def test_a_lock_that_cannot_be_made_on_a_full_disk_says_so_and_leaves_no_run_folder(tmp_path, small_json,
                                                                                    monkeypatch):
    from gpt_keras.runs.train import train

    open_file = os.open

    def full_disk_for_the_lock(path, *args, **kwargs):
        if str(path).endswith(runs.LOCK):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return open_file(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", full_disk_for_the_lock)
    with pytest.raises(runs.RunError, match=r"run.lock: cannot lock the run \(No space left on device\)$"):
        train(tiny_config(), small_json, runs_dir=tmp_path / "runs", run_name="full", print_fn=None, verbose=0)
    assert not (tmp_path / "runs").exists()


def test_the_first_checkpoint_on_a_full_disk_does_not_claim_a_previous_file(tmp_path):
    def full_disk(target: Path) -> str:
        with pytest.raises(WriteError) as error:
            with atomic_path(target):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return str(error.value)

    first = tmp_path / "epoch-001.keras"
    assert full_disk(first).endswith("cannot write (No space left on device); nothing was written")
    assert not first.exists()
    first.write_bytes(b"an earlier checkpoint")
    assert full_disk(first).endswith("; the previous file is kept")
    assert first.read_bytes() == b"an earlier checkpoint"


# --- the notebook's --dir -------------------------------------------------------------------------

@pytest.mark.parametrize("directory, named", [("FILE", "exists and is not a directory"),
                                              ("/dev/null/notebooks", "is not a directory"),
                                              ("/proc/gpt-keras-notebooks", "cannot write"),
                                              ("x" * 300, "longer than 255 bytes")])
def test_the_notebook_dir_that_cannot_hold_it_is_one_line(tmp_path, directory, named):
    (tmp_path / "FILE").write_text("mine")
    result = cli("notebook", "--copy-only", "--dir", directory, cwd=tmp_path)
    assert_one_error_line(result, "notebook", named)
    assert [path.name for path in tmp_path.iterdir()] == ["FILE"] and (tmp_path / "FILE").read_text() == "mine"


# --- a model.keras with the right layer names and the wrong types ---------------------------------

def _impostor(vocab_size: int, output_layer: str):
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, 8, name="embedding")(tokens)
    layer = keras.layers.Dense(vocab_size, name="probabilities") if output_layer == "dense" \
        else keras.layers.Softmax(name="probabilities")
    return keras.Model(tokens, layer(x))


@pytest.mark.parametrize("output_layer", ["dense", "softmax"])
def test_a_model_with_the_right_layer_names_and_the_wrong_types_is_one_line(tmp_path, trained_run, output_layer):
    run_dir = copy_run(trained_run, tmp_path)
    vocab_size = len(json.loads((run_dir / runs.VOCAB).read_text()))
    (run_dir / runs.MODEL).unlink()
    _impostor(vocab_size, output_layer).save(run_dir / runs.MODEL)
    result = cli("generate", "--run", run_dir, "--max-tokens", "4")
    assert_one_error_line(result, "generate", "model.keras: a Keras model, but not a gpt-keras GPT")


# --- a refused resume writes nothing --------------------------------------------------------------

def test_a_resume_refused_for_a_damaged_checkpoint_leaves_config_json_as_it_was(tmp_path, trained_run):
    run_dir = copy_run(trained_run, tmp_path)
    state = runs.RunState.read(run_dir)
    (run_dir / state.checkpoint).write_bytes(b"PK\x03\x04 not a whole model")
    before = snapshot(run_dir)
    result = cli("train", "--resume", "--run", run_dir, "--epochs", "5", "--quiet")
    assert_one_error_line(result, "train", state.checkpoint)
    assert snapshot(run_dir) == before
    assert json.loads((run_dir / runs.CONFIG).read_text())["epochs"] == 2


# --- SIGTERM during the first epoch ---------------------------------------------------------------

# `gpt-keras ARGS` in a fresh interpreter that sends itself SIGTERM at the end of the second batch of the
# first epoch: a fixed point, no timing involved.
TERMINATED_IN_EPOCH_ONE = """
import os, signal, sys
import keras
from gpt_keras.tools.cli import main

class TerminateHere(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            print("SIGTERM in epoch 1", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

fit = keras.Model.fit
keras.Model.fit = lambda self, *args, callbacks=(), **kwargs: fit(self, *args, callbacks=[*callbacks, TerminateHere()],
                                                                  **kwargs)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.release  # a training subprocess killed mid-epoch (15-40 s); the cleanup is tested in process here
def test_sigterm_in_epoch_one_removes_the_run_folder_lock_included(tmp_path, small_json):
    runs_dir = tmp_path / "runs"
    command = ["train", "--data", small_json, "--runs-dir", runs_dir, "--name", "terminated", "--quiet",
               *tiny_flags()]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", TERMINATED_IN_EPOCH_ONE, *map(str, command)], capture_output=True,
                          text=True, env=environment, timeout=600)
    assert "SIGTERM in epoch 1" in done.stdout, done.stderr[-3000:]
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == "gpt-keras: terminated"
    assert not runs_dir.exists()  # config, vocab, tokens, logs and the lock are gone, and the folders made for them
