"""The reliability guarantees of the README, each checked the hard way.

Resume after SIGKILL in the middle of an epoch, same seed -> same results in separate processes,
atomic files, a run directory in use refused, corrupt models and checkpoints named in one clear
error, training stopped cleanly on a NaN loss.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from gpt_keras.runs import rundir as runs
from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.core.data import DataError
from gpt_keras.core.sampling import SamplingError
from gpt_keras.runs.resume import resume
from gpt_keras.runs.train import train
from tests.conftest import TEST_SIZE, tiny_config

pytestmark = pytest.mark.slow

# The tiny model at test size, as command-line flags and as the config they make.
TINY = {name: value for name, value in TEST_SIZE.items() if name != "epochs"}


def flags(**values) -> list[str]:
    return [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "gpt_keras.tools.cli", *map(str, args)]


def run_cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def messages(stderr: str) -> list[str]:
    """stderr without the C++ start-up lines TensorFlow prints before its logging is configured."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(("I0000", "W0000", "WARNING: All log messages before absl"))]


def batch_steps(run_dir: Path) -> list[int]:
    """The TensorBoard steps at which a batch loss was logged, from every event file of the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = []
    for events in sorted((run_dir / "logs" / "train").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        if "batch_loss" in accumulator.Tags()["tensors"]:
            steps += [event.step for event in accumulator.Tensors("batch_loss")]
    return steps


# --- 1. resume after SIGKILL --------------------------------------------------------------------------

def _wait_until_mid_epoch_two(process: subprocess.Popen, run_dir: Path, timeout: float = 300) -> None:
    """Waits until epoch 1 is saved and epoch 2 has logged some batches to TensorBoard."""
    deadline = time.monotonic() + timeout
    size_after_epoch_one = None
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        state = runs.RunState.read(run_dir) if (run_dir / runs.STATE).exists() else None
        if state is not None and state.epoch >= 1:
            size = sum(path.stat().st_size for path in (run_dir / "logs" / "train").glob("events.*"))
            if size_after_epoch_one is None:
                size_after_epoch_one = size
            elif size > size_after_epoch_one:
                return
        time.sleep(0.05)
    pytest.fail("epoch 2 never started")


def test_sigkill_in_the_middle_of_an_epoch_then_resume_gives_the_uninterrupted_result(tmp_path, shared_csv):
    config = GPTConfig(**TINY, epochs=3)
    steps_per_epoch = -(-9_996 // config.batch_size)
    uninterrupted = train(config, shared_csv, runs_dir=tmp_path, run_name="whole", print_fn=None, verbose=0)

    run_dir = tmp_path / "killed"
    command = ["train", "--data", shared_csv, "--run", run_dir, *flags(**TINY, epochs=3), "--quiet"]
    process = subprocess.Popen(cli(*command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        _wait_until_mid_epoch_two(process, run_dir)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert runs.RunState.read(run_dir).epoch == 1  # epoch 2 was cut short...
    logged = batch_steps(run_dir)
    assert steps_per_epoch < max(logged) < 2 * steps_per_epoch  # ...in its middle
    assert not (run_dir / runs.MODEL).exists()

    resumed = run_cli(*command, "--resume")  # the same command, plus --resume
    assert resumed.returncode == 0, resumed.stderr
    assert "Run saved in" in resumed.stdout
    state = runs.RunState.read(run_dir)
    assert state.epoch == 3 and state.global_step == 3 * steps_per_epoch
    history = json.loads((run_dir / runs.HISTORY).read_text())
    assert len(history["loss"]) == 3
    # Same data order per epoch, dropout and sampler states restored: the resumed run is the uninterrupted one.
    np.testing.assert_allclose(history["loss"], uninterrupted.history["loss"], rtol=1e-5)
    assert json.loads((run_dir / runs.STATE).read_text())["rng_state"] == \
        json.loads((uninterrupted.run_dir / runs.STATE).read_text())["rng_state"]
    assert not [path for path in run_dir.rglob(".*") if path.is_file()]  # no temporary file left behind
    assert runs.load_run(run_dir).config == runs.load_run(uninterrupted.run_dir).config


def test_a_run_directory_in_use_by_another_process_is_refused(tmp_path, small_json):
    run_dir = tmp_path / "busy"
    command = ["train", "--data", small_json, "--run", run_dir, *flags(**TINY, epochs=500), "--quiet"]
    process = subprocess.Popen(cli(*command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / runs.STATE).exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        again = run_cli(*command, "--resume")
        fresh = run_cli(*command)
        assert process.poll() is None  # still training all along
    finally:
        process.kill()
        process.wait(timeout=60)
    assert again.returncode == 2 and f"{run_dir}: in use by another training process (pid {process.pid})" \
        in again.stderr, again.stderr
    assert fresh.returncode == 2 and "already exists" in fresh.stderr
    assert len(messages(again.stderr)) == len(messages(fresh.stderr)) == 1


# --- resume: the same command works, a different one is refused ---------------------------------------

@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, small_json):
    """A run stopped after epoch 1 of 2 (copy it before resuming)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    result = train(tiny_config(epochs=1), small_json, runs_dir=runs_dir, run_name="one", print_fn=None, verbose=0)
    config = json.loads((result.run_dir / runs.CONFIG).read_text())
    (result.run_dir / runs.CONFIG).write_text(json.dumps({**config, "epochs": 2}))
    return result.run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


@pytest.mark.parametrize("change, named", [
    (dict(embedding_dim=48), "embedding_dim 48 (the run has 32)"),
    (dict(seed=7, dropout_rate=0.2), "dropout_rate 0.2 (the run has 0.1), seed 7 (the run has 42)"),
    (dict(vocab_size=100), "vocab_size 100"),
])
def test_resume_refuses_a_config_it_would_silently_ignore(tmp_path, one_epoch_run, change, named):
    run_dir = _copy(one_epoch_run, tmp_path)
    with pytest.raises(runs.RunError) as error:
        resume(config=tiny_config(epochs=2, **change), run_dir=run_dir, print_fn=None, verbose=0)
    assert str(run_dir) in str(error.value) and named in str(error.value)
    assert runs.RunState.read(run_dir).epoch == 1


def test_resume_takes_more_epochs_and_a_new_learning_rate(tmp_path, one_epoch_run, small_json):
    run_dir = _copy(one_epoch_run, tmp_path)
    result = resume(config=tiny_config(epochs=3, learning_rate=5e-4), data_path=small_json, run_dir=run_dir,
                   print_fn=None, verbose=0)
    assert len(result.history["loss"]) == 3
    assert float(keras.ops.convert_to_numpy(result.model.optimizer.learning_rate)) == pytest.approx(5e-4)
    assert runs.read_config(run_dir / runs.CONFIG) == tiny_config(epochs=3, learning_rate=5e-4)


def test_resume_with_no_config_continues_the_saved_one(tmp_path, one_epoch_run):
    run_dir = _copy(one_epoch_run, tmp_path)
    result = resume(run_dir=run_dir, print_fn=None, verbose=0)
    assert result.resumed_from_epoch == 1 and len(result.history["loss"]) == 2


def test_resume_refuses_other_data(tmp_path, one_epoch_run, shared_csv):
    run_dir = _copy(one_epoch_run, tmp_path)
    with pytest.raises(runs.RunError, match="trains on the run's saved tokens"):
        resume(config=tiny_config(epochs=2), data_path=shared_csv, run_dir=run_dir, print_fn=None, verbose=0)


def test_resume_by_name_continues_that_run_not_the_latest(tmp_path, one_epoch_run):
    runs_dir = tmp_path / "runs"
    _copy(one_epoch_run, runs_dir)
    newer = _copy(one_epoch_run, tmp_path / "other")
    shutil.move(newer, runs_dir / "newer")
    result = resume(runs_dir=runs_dir, run_name="one", print_fn=None, verbose=0)
    assert result.run_dir == runs_dir / "one"
    assert runs.RunState.read(runs_dir / "newer").epoch == 1


def test_cli_resume_with_only_more_epochs_and_refusing_a_changed_flag(tmp_path, one_epoch_run):
    run_dir = _copy(one_epoch_run, tmp_path)
    refused = run_cli("train", "--resume", "--run", run_dir, "--max-len", 30, "--quiet")
    assert refused.returncode == 2 and "max_len 30 (the run has 24)" in refused.stderr
    assert len(messages(refused.stderr)) == 1
    more = run_cli("train", "--resume", "--run", run_dir, "--epochs", 3, "--quiet")
    assert more.returncode == 0, more.stderr
    assert runs.RunState.read(run_dir).epoch == 3


# --- 2. reproducible ------------------------------------------------------------------------------------

def test_same_seed_same_vocabulary_losses_and_text_in_separate_processes(tmp_path, small_json):
    outputs = []
    for name in ("first", "second"):
        run_dir = tmp_path / name
        result = run_cli("train", "--data", small_json, "--run", run_dir, *flags(**TINY, epochs=2), "--quiet")
        assert result.returncode == 0, result.stderr
        generated = run_cli("generate", "--run", run_dir, "--seed", 3, "--max-tokens", 20, "--temperature", 0.8)
        assert generated.returncode == 0, generated.stderr
        outputs.append(((run_dir / runs.VOCAB).read_text(), json.loads((run_dir / runs.HISTORY).read_text()),
                        [chunk.split("\n")[1] for chunk in result.stdout.split("generated text:")[1:]],
                        generated.stdout.split("generated text:")[1]))
    (vocab_1, history_1, epoch_texts_1, text_1), (vocab_2, history_2, epoch_texts_2, text_2) = outputs
    assert vocab_1 == vocab_2
    assert history_1 == history_2  # bit for bit
    assert len(epoch_texts_1) == 2 and epoch_texts_1 == epoch_texts_2
    assert text_1.split()[:2] == ["wine", "review"] and text_1 == text_2


# --- 3. safe files ------------------------------------------------------------------------------------

def test_a_crash_while_saving_a_checkpoint_leaves_the_previous_state_intact(tmp_path, small_json, monkeypatch):
    real_save = keras.Model.save
    calls = []

    def crash_on_the_second_save(model, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"PK\x03\x04 half a zip")  # the process dies with the file half-written
            raise KeyboardInterrupt
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", crash_on_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(epochs=2), small_json, runs_dir=tmp_path, run_name="crash", print_fn=None, verbose=0)
    run_dir = tmp_path / "crash"
    state = runs.RunState.read(run_dir)
    assert state.epoch == 1 and zipfile.is_zipfile(run_dir / state.checkpoint)
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["epoch-001.keras"]
    assert not [path for path in run_dir.rglob(".*") if path.is_file()]
    monkeypatch.setattr(keras.Model, "save", real_save)
    resumed = resume(config=tiny_config(epochs=2), run_dir=run_dir, print_fn=None, verbose=0)
    assert len(resumed.history["loss"]) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "bad-config-inside"])
def test_a_corrupt_model_or_checkpoint_is_one_clear_error(tmp_path, trained_run, damage):
    run_dir = _copy(trained_run.run_dir, tmp_path)
    state = runs.RunState.read(run_dir)
    for path in (run_dir / runs.MODEL, run_dir / state.checkpoint):
        _damage(path, damage)

    with pytest.raises(runs.RunError) as error:
        runs.load_run(run_dir)
    assert str(run_dir / runs.MODEL) in str(error.value)
    with pytest.raises(runs.RunError) as error:
        resume(config=tiny_config(epochs=3), run_dir=run_dir, print_fn=None, verbose=0)
    assert str(run_dir / state.checkpoint) in str(error.value)

    for args in (("generate", "--run", run_dir), ("train", "--resume", "--run", run_dir, "--epochs", 3)):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert len(messages(result.stderr)) == 1 and "Traceback" not in result.stderr
        assert "corrupt" in result.stderr or "not a Keras model archive" in result.stderr


def _damage(path: Path, how: str) -> None:
    content = path.read_bytes()
    if how == "truncate":
        path.write_bytes(content[:len(content) // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(content)))
    else:  # a valid zip whose config.json is not JSON
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        members["config.json"] = b"{not json"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)


@pytest.mark.parametrize("name, content", [(runs.STATE, "{trunc"), (runs.STATE, '{"epoch": "one"}'),
                                           (runs.CONFIG, "[]"), (runs.VOCAB, '["a"]'), (runs.TOKENS, "zip?")])
def test_a_corrupt_run_file_is_named_on_resume(tmp_path, one_epoch_run, name, content):
    run_dir = _copy(one_epoch_run, tmp_path)
    (run_dir / name).write_text(content)
    with pytest.raises((runs.RunError, DataError, ConfigError)) as error:
        resume(run_dir=run_dir, print_fn=None, verbose=0)
    assert str(run_dir / name) in str(error.value)


# --- NaN --------------------------------------------------------------------------------------------------

def test_a_nan_loss_stops_training_and_the_cli_says_so(tmp_path, small_json):
    run_dir = tmp_path / "nan"
    result = run_cli("train", "--data", small_json, "--run", run_dir, *flags(**TINY, epochs=2),
                     "--learning-rate", "1e12", "--quiet")
    assert result.returncode == 1, result.stderr
    assert "the loss became NaN at epoch 1, batch" in result.stderr and "Traceback" not in result.stderr
    assert "No epoch finished" in result.stderr
    assert runs.RunState.read(run_dir) is None and not (run_dir / runs.MODEL).exists()
    assert not list((run_dir / "checkpoints").glob("*.keras")) if (run_dir / "checkpoints").exists() else True
    assert "generated text" not in result.stdout


def test_a_nan_in_a_later_epoch_keeps_the_last_good_state(tmp_path, small_json, monkeypatch):
    real_end = TextGenerator.on_epoch_end

    def blow_up_after_epoch_one(self, epoch, logs=None):
        real_end(self, epoch, logs)
        if epoch == 0:
            self.model.optimizer.learning_rate = 1e12  # a real divergence in epoch 2

    monkeypatch.setattr(TextGenerator, "on_epoch_end", blow_up_after_epoch_one)
    result = train(tiny_config(epochs=3), small_json, runs_dir=tmp_path, run_name="nan", print_fn=None, verbose=0)
    assert result.stopped_on_nan is not None and result.stopped_on_nan[0] == 2 and not result.completed
    run_dir = result.run_dir
    state = runs.RunState.read(run_dir)
    assert state.epoch == 1 and sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-001.keras"]
    assert len(json.loads((run_dir / runs.HISTORY).read_text())["loss"]) == 1
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in runs.load_run(run_dir).model.weights)
    monkeypatch.setattr(TextGenerator, "on_epoch_end", real_end)
    recovered = resume(config=tiny_config(epochs=3, learning_rate=1e-4), run_dir=run_dir, print_fn=None,
                      verbose=0)
    assert recovered.completed and len(recovered.history["loss"]) == 3
    assert np.isfinite(recovered.history["loss"]).all()


# --- 4. API parameters are checked, and errors name them -----------------------------------------------

@pytest.mark.parametrize("kwargs, named", [
    (dict(max_tokens=0), "max_tokens"), (dict(max_tokens=2.5), "max_tokens"), (dict(temperature=0), "temperature"),
    (dict(temperature="hot"), "temperature"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(prompt=""), "prompt"), (dict(prompt=None), "prompt"), (dict(method="fast"), "method"),
    (dict(top_k=0), "top_k"), (dict(print_fn="stdout"), "print_fn"),
])
def test_text_generator_checks_its_parameters_when_made(trained_run, kwargs, named):
    top_k = kwargs.pop("top_k", None)
    with pytest.raises(SamplingError, match=named):
        TextGenerator(trained_run.text_generator.vocab, top_k, **kwargs)


def test_generate_checks_its_arguments(trained_run):
    generator = runs.load_run(trained_run.run_dir).text_generator(seed=0, print_fn=None)
    for kwargs, named in [(dict(max_tokens=-3), "max_tokens"), (dict(temperature=float("nan")), "temperature"),
                          (dict(top_p=1.5), "top_p"), (dict(method="beam"), "method")]:
        with pytest.raises(SamplingError, match=named):
            generator.generate("wine review", **{"max_tokens": 10, "temperature": 1.0, **kwargs})


@pytest.mark.parametrize("kwargs, named", [
    (dict(runs_dir="FILE"), "runs_dir"), (dict(run_dir="FILE"), "run_dir"), (dict(run_name="a/b"), "--name"),
    (dict(verbose=5), "verbose"), (dict(config={"epochs": 1}), "config"),
    (dict(tokens_path="t.npz"), "data_path and tokens_path"),
])
def test_train_checks_its_arguments_before_making_anything(tmp_path, small_json, kwargs, named):
    (tmp_path / "FILE").write_text("not a directory")
    kwargs = {key: tmp_path / value if value == "FILE" else value for key, value in kwargs.items()}
    kwargs.setdefault("runs_dir", tmp_path / "runs")
    config = kwargs.pop("config", tiny_config())
    with pytest.raises((runs.RunError, DataError, ConfigError)) as error:
        train(config, small_json, print_fn=None, **kwargs)
    assert named in str(error.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("args, named", [
    (["generate", "--run", "RUN", "--max-tokens", "0"], "argument --max-tokens: must be at least 1, got 0"),
    (["generate", "--run", "RUN", "--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    (["generate", "--run", "RUN", "--samples", "0"], "argument --samples: must be at least 1"),
    (["generate", "--run", "RUN", "--top-p", "2"], "argument --top-p: top_p must be in (0, 1]"),
    (["generate", "--run", "RUN", "--temperature", "nan"], "argument --temperature: temperature must be"),
    (["train", "--epochs", "x"], "argument --epochs: expected an integer, got 'x'"),
    (["train", "--learning-rate", "-1"], "--learning-rate: learning_rate must be greater than 0"),
    (["train", "--runs-dir", "FILE"], "FILE: runs_dir exists and is not a directory"),
    (["train", "--run", "FILE"], "FILE: run_dir exists and is not a directory"),
    (["train", "--data", "RUN"], "RUN: not a regular file"),
    (["train", "--resume", "--run", "RUN", "--seed", "1"], "seed 1 (the run has 42)"),
    (["tensorboard", "--run", "RUN", "--port", "99999"], "argument --port: must be a TCP port from 1 to 65535"),
    (["demo", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
])
def test_command_line_errors_name_the_argument(tmp_path, trained_run, capsys, args, named):
    from gpt_keras.tools import cli

    run_dir = _copy(trained_run.run_dir, tmp_path)
    (tmp_path / "FILE").write_text("a file")
    places = {"RUN": str(run_dir), "FILE": str(tmp_path / "FILE")}
    args = [places.get(arg, arg) for arg in args]
    try:
        code = cli.main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    assert messages(error)[-1].startswith(f"gpt-keras {args[0]}: error: ")
    assert named.replace("RUN", str(run_dir)).replace("FILE", str(tmp_path / "FILE")) in messages(error)[-1]
    assert runs.RunState.read(run_dir).epoch == 2 and not (tmp_path / "runs").exists()
