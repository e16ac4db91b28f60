"""The reliability guarantees of docs/reliability.md, each checked the hard way.

Resume after SIGKILL in the middle of an epoch, same seed -> same results in separate processes,
atomic files, a run directory in use refused, corrupt models and checkpoints named in one clear
error, training stopped cleanly on a NaN loss.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from gpt_keras.runs import rundir as runs
from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import ConfigError
from gpt_keras.core.data import DataError
from gpt_keras.core.sampling import SamplingError
from gpt_keras.runs.resume import resume
from gpt_keras.runs.train import train
from tests.conftest import REPO, cli, copy_run, run_config, tiny_config, tiny_flags

pytestmark = pytest.mark.slow


def one_error_line(result) -> bool:
    """stderr is exactly one line, the command's own (`gpt-keras ...: error: ...`), and no traceback."""
    return len(result.error_lines) == 1 and [line for line in result.err.splitlines() if line.strip()] \
        == result.error_lines


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


def _child_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


# --- 1. resume after SIGKILL --------------------------------------------------------------------------

# `gpt-keras ARGS` in a fresh interpreter that SIGKILLs itself (no clean-up of any kind can run) at the end of
# batch KILL_BATCH (0-based) of the second epoch: a fixed point in the middle of an epoch, no timing involved.
KILLED_AT = """
import os, signal, sys
import keras
from gpt_keras.tools.cli import main

epoch_index, batch_index = int(sys.argv[1]), int(sys.argv[2])

class KillHere(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == epoch_index and batch == batch_index:
            print(f"SIGKILL at epoch {epoch_index + 1}, batch {batch_index + 1}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

fit = keras.Model.fit
keras.Model.fit = lambda self, *args, callbacks=(), **kwargs: fit(self, *args, callbacks=[*callbacks, KillHere()],
                                                                  **kwargs)
sys.exit(main(sys.argv[3:]))
"""
KILL_BATCH = 12  # of the 23 batches of 16 in an epoch of small_json's 400 reviews less the validation tenth


@pytest.mark.release  # a training subprocess killed, then resumed (about 20 s); in-process resume is tested in make test
def test_sigkill_in_the_middle_of_an_epoch_then_resume_gives_the_uninterrupted_result(tmp_path, small_json,
                                                                                     trained_run):
    # The uninterrupted run is the session's `trained_run`: the same tiny config, data and (default) precision.
    uninterrupted = trained_run
    config = runs.load_run(uninterrupted.run_dir).config
    steps_per_epoch = -(-360 // config.batch_size)  # 400 reviews, a tenth held out for validation
    assert config == run_config() and 0 < KILL_BATCH < steps_per_epoch - 1

    run_dir = tmp_path / "killed"
    command = ["train", "--data", small_json, "--run", run_dir, "--preset", "tiny",
               *tiny_flags(epochs=2, validation_split=0.1), "--quiet"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AT, "1", str(KILL_BATCH), *map(str, command)],
                            capture_output=True, text=True, env=_child_env(), timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"SIGKILL at epoch 2, batch {KILL_BATCH + 1}" in killed.stdout
    assert runs.RunState.read(run_dir).epoch == 1  # epoch 2 was cut short, nothing of it saved
    assert not (run_dir / runs.MODEL).exists()

    resumed = cli(*command, "--resume")  # the same command, plus --resume
    assert resumed.code == 0, resumed.err
    assert "Run saved in" in resumed.out
    state = runs.RunState.read(run_dir)
    assert state.epoch == 2 and state.global_step == 2 * steps_per_epoch
    history = json.loads((run_dir / runs.HISTORY).read_text())
    assert len(history["loss"]) == 2
    # Same data order per epoch, dropout and sampler states restored: the resumed run is the uninterrupted one.
    np.testing.assert_allclose(history["loss"], uninterrupted.history["loss"], rtol=1e-5)
    assert json.loads((run_dir / runs.STATE).read_text())["rng_state"] == \
        json.loads((uninterrupted.run_dir / runs.STATE).read_text())["rng_state"]
    assert not [path for path in run_dir.rglob(".*") if path.is_file()]  # no temporary file left behind
    assert runs.load_run(run_dir).config == config
    # Every batch of both epochs has its TensorBoard point, the resumed ones numbered on from epoch 1's.
    assert set(batch_steps(run_dir)) == set(range(1, 2 * steps_per_epoch + 1))


# A plain process that holds a run's lock, as a training does, until its stdin closes.
HOLD_THE_LOCK = """
import sys
from gpt_keras.runs.lock import RunLock

with RunLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_run_directory_in_use_by_another_process_is_refused(tmp_path, small_json, trained_run):
    run_dir = copy_run(trained_run, tmp_path, "busy")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        again = cli("train", "--resume", "--run", run_dir, "--epochs", 3, "--quiet")
        fresh = cli("train", "--data", small_json, "--run", run_dir, *tiny_flags(), "--quiet")
        assert holder.poll() is None  # held the lock all along
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert again.code == 2 and f"{run_dir}: in use by another training process (pid {holder.pid})" \
        in again.err, again.err
    assert fresh.code == 2 and "already exists" in fresh.err
    assert one_error_line(again) and one_error_line(fresh)
    assert runs.RunState.read(run_dir).epoch == 2  # untouched


# --- resume: the same command works, a different one is refused ---------------------------------------

@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, small_json):
    """A run stopped after epoch 1 of 2 (copy it before resuming)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    result = train(tiny_config(epochs=1), small_json, runs_dir=runs_dir, run_name="one", print_fn=None, verbose=0)
    config = json.loads((result.run_dir / runs.CONFIG).read_text())
    (result.run_dir / runs.CONFIG).write_text(json.dumps({**config, "epochs": 2}))
    return result.run_dir


@pytest.mark.parametrize("change, named", [
    (dict(embedding_dim=48), "embedding_dim 48 (the run has 32)"),
    (dict(seed=7, dropout_rate=0.2), "dropout_rate 0.2 (the run has 0.1), seed 7 (the run has 42)"),
    (dict(vocab_size=100), "vocab_size 100"),
])
def test_resume_refuses_a_config_it_would_silently_ignore(tmp_path, one_epoch_run, change, named):
    run_dir = copy_run(one_epoch_run, tmp_path, "one")
    with pytest.raises(runs.RunError) as error:
        resume(config=tiny_config(epochs=2, **change), run_dir=run_dir, print_fn=None, verbose=0)
    assert str(run_dir) in str(error.value) and named in str(error.value)
    assert runs.RunState.read(run_dir).epoch == 1


def test_resume_takes_more_epochs_and_a_new_learning_rate(tmp_path, one_epoch_run, small_json):
    run_dir = copy_run(one_epoch_run, tmp_path, "one")
    result = resume(config=tiny_config(epochs=3, learning_rate=5e-4), data_path=small_json, run_dir=run_dir,
                   print_fn=None, verbose=0)
    assert len(result.history["loss"]) == 3
    assert float(keras.ops.convert_to_numpy(result.model.optimizer.learning_rate)) == pytest.approx(5e-4)
    assert runs.read_config(run_dir / runs.CONFIG) == tiny_config(epochs=3, learning_rate=5e-4)


def test_resume_refuses_other_data(tmp_path, one_epoch_run, shared_csv):
    run_dir = copy_run(one_epoch_run, tmp_path, "one")
    with pytest.raises(runs.RunError, match="trains on the run's saved tokens"):
        resume(config=tiny_config(epochs=2), data_path=shared_csv, run_dir=run_dir, print_fn=None, verbose=0)


def test_resume_by_name_with_no_config_continues_that_run_not_the_latest(tmp_path, one_epoch_run):
    runs_dir = tmp_path / "runs"
    copy_run(one_epoch_run, runs_dir, "one")
    copy_run(one_epoch_run, runs_dir, "newer")
    result = resume(runs_dir=runs_dir, run_name="one", print_fn=None, verbose=0)  # no config: the saved one
    assert result.run_dir == runs_dir / "one"
    assert result.resumed_from_epoch == 1 and len(result.history["loss"]) == 2
    assert runs.RunState.read(runs_dir / "newer").epoch == 1


def test_cli_resume_with_only_more_epochs_and_refusing_a_changed_flag(tmp_path, one_epoch_run):
    run_dir = copy_run(one_epoch_run, tmp_path, "one")
    refused = cli("train", "--resume", "--run", run_dir, "--max-len", 30, "--quiet")
    assert refused.code == 2 and "max_len 30 (the run has 24)" in refused.err
    assert one_error_line(refused)
    more = cli("train", "--resume", "--run", run_dir, "--epochs", 3, "--quiet")
    assert more.code == 0, more.err
    assert runs.RunState.read(run_dir).epoch == 3


# --- 2. reproducible ------------------------------------------------------------------------------------

# `gpt-keras train` then `gpt-keras generate`, both in one fresh interpreter.
TRAIN_THEN_GENERATE = """
import sys
from gpt_keras.tools.cli import main

run, data, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
code = main(["train", "--data", data, "--run", run, *flags, "--quiet"])
print("<<generate>>", flush=True)
sys.exit(code or main(["generate", "--run", run, "--seed", "3", "--max-tokens", "20", "--temperature", "0.8"]))
"""


@pytest.mark.release  # two training subprocesses (about 25 s); same-seed runs in one process: test_cli, test_sample_data
def test_same_seed_same_vocabulary_losses_and_text_in_separate_processes(tmp_path, small_json):
    """This process and a fresh interpreter train the same command and generate with the same seed."""
    child = subprocess.Popen([sys.executable, "-c", TRAIN_THEN_GENERATE, str(tmp_path / "first"), str(small_json),
                              *tiny_flags(epochs=2)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_child_env())
    try:  # both at once: the child starts TensorFlow while this process trains
        here = cli("train", "--data", small_json, "--run", tmp_path / "second", *tiny_flags(epochs=2), "--quiet")
        here_generate = cli("generate", "--run", tmp_path / "second", "--seed", 3, "--max-tokens", 20,
                            "--temperature", 0.8)
        child_out, child_err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert here.code == 0, here.err
    assert here_generate.code == 0, here_generate.err
    assert child.returncode == 0, child_err[-3000:]
    child_train, child_generate = child_out.split("<<generate>>")
    outputs = []
    for run_dir, trained, generated in ((tmp_path / "first", child_train, child_generate),
                                        (tmp_path / "second", here.out, here_generate.out)):
        outputs.append(((run_dir / runs.VOCAB).read_text(), json.loads((run_dir / runs.HISTORY).read_text()),
                        [chunk.split("\n")[1] for chunk in trained.split("generated text:")[1:]],
                        generated.split("generated text:")[1]))
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
    run_dir = copy_run(trained_run, tmp_path)
    state = runs.RunState.read(run_dir)
    for path in (run_dir / runs.MODEL, run_dir / state.checkpoint):
        _damage(path, damage)

    with pytest.raises(runs.RunError) as error:
        runs.load_run(run_dir)
    assert str(run_dir / runs.MODEL) in str(error.value)
    with pytest.raises(runs.RunError) as error:
        resume(config=run_config(epochs=3), run_dir=run_dir, print_fn=None, verbose=0)
    assert str(run_dir / state.checkpoint) in str(error.value)

    for args in (("generate", "--run", run_dir), ("train", "--resume", "--run", run_dir, "--epochs", 3)):
        result = cli(*args)
        assert result.code == 2, result.err
        assert one_error_line(result)
        assert "corrupt" in result.err or "not a Keras model archive" in result.err


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
    run_dir = copy_run(one_epoch_run, tmp_path, "one")
    (run_dir / name).write_text(content)
    with pytest.raises((runs.RunError, DataError, ConfigError)) as error:
        resume(run_dir=run_dir, print_fn=None, verbose=0)
    assert str(run_dir / name) in str(error.value)


# --- NaN --------------------------------------------------------------------------------------------------

def test_a_nan_loss_stops_training_and_the_cli_says_so(tmp_path, small_json):
    run_dir = tmp_path / "nan"
    result = cli("train", "--data", small_json, "--run", run_dir, *tiny_flags(epochs=2), "--learning-rate", "1e12",
                 "--quiet")
    assert result.code == 1, result.err
    assert "the loss became NaN at epoch 1, batch" in result.err and "Traceback" not in result.err
    assert "No epoch finished" in result.err
    assert runs.RunState.read(run_dir) is None and not (run_dir / runs.MODEL).exists()
    assert not list((run_dir / "checkpoints").glob("*.keras")) if (run_dir / "checkpoints").exists() else True
    assert "generated text" not in result.out


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
    (["generate", "--run", "RUN", "--max-tokens", "0"],
     "argument --max-tokens: max_tokens must be an integer of at least 1, got 0"),
    (["generate", "--run", "RUN", "--seed", "-1"],
     "argument --seed: seed must be a whole number from 0 to 4,294,967,295, got -1"),
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
def test_command_line_errors_name_the_argument(tmp_path, trained_run, args, named):
    run_dir = copy_run(trained_run, tmp_path)
    (tmp_path / "FILE").write_text("a file")
    places = {"RUN": str(run_dir), "FILE": str(tmp_path / "FILE")}
    args = [places.get(arg, arg) for arg in args]
    result = cli(*args)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.error_lines[-1].startswith(f"gpt-keras {args[0]}: error: ")
    assert named.replace("RUN", str(run_dir)).replace("FILE", str(tmp_path / "FILE")) in result.error_lines[-1]
    assert runs.RunState.read(run_dir).epoch == 2 and not (tmp_path / "runs").exists()
