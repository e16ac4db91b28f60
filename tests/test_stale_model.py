"""Issue 23, point 5: no stale model without a word, and no config.json that contradicts its model.

A kill during the final save leaves `model.keras` one epoch older than `state.json` and its checkpoint;
`load_run` loads that checkpoint instead and says so, and the next command replaces the stale file
with it (atomically) and says that in one line, or, where it cannot, why not. The runs are copies of the session's
`trained_run` (2 epochs, both checkpoints kept), made stale as a kill leaves them.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpt_keras.runs import rundir as runs
from gpt_keras.runs.lock import RunLock
from gpt_keras.runs.repair import replace_stale_model
from tests.conftest import cli, copy_run

GENERATE = ("--prompt", "wine review : italy", "--seed", "0", "--max-tokens", "10")


def stale_copy(trained_run, tmp_path: Path, record: bool = True) -> Path:
    """A run as a kill during the final save of a resumed run leaves it: the checkpoint and state.json of
    epoch 2, model.keras still epoch 1's (`record=False`: a run from before state.json recorded it)."""
    run_dir = copy_run(trained_run, tmp_path)
    shutil.copyfile(run_dir / "checkpoints" / "epoch-001.keras", run_dir / runs.MODEL)
    state = json.loads((run_dir / runs.STATE).read_text())
    assert state["epoch"] == 2 and state["model_epoch"] == 2  # training records what model.keras holds
    if record:
        state["model_epoch"] = 1
    else:
        del state["model_epoch"]
        _set_date_saved(run_dir / runs.MODEL, "2000-01-01@00:00:00")  # saved long before epoch 2's checkpoint
    (run_dir / runs.STATE).write_text(json.dumps(state))
    return run_dir


def _set_date_saved(path: Path, date: str) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["metadata.json"] = json.dumps({**json.loads(members["metadata.json"]), "date_saved": date}).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def notes(result) -> list[str]:
    return [line for line in result.err.splitlines() if ": note: " in line]


def same_weights(model, path: Path) -> bool:
    other = runs.load_model(path, compile=False)
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(model.get_weights(), other.get_weights()))


@pytest.mark.slow  # three commands
def test_a_model_keras_older_than_the_last_epoch_is_replaced_by_its_checkpoint_and_named(tmp_path, trained_run):
    run_dir = stale_copy(trained_run, tmp_path)
    last = run_dir / "checkpoints" / "epoch-002.keras"

    result = cli("generate", "--run", run_dir, *GENERATE)
    assert result.code == 0, result.err
    [note] = notes(result)
    assert note == (f"gpt-keras generate: note: {run_dir / runs.MODEL} holds epoch 1, but the run finished epoch 2 "
                    "(the final save was cut short); replaced it with checkpoints/epoch-002.keras, the model of epoch 2")
    assert (run_dir / runs.MODEL).read_bytes() == last.read_bytes()  # repaired, through a temporary
    assert not [path.name for path in run_dir.iterdir() if path.name.startswith(".")]
    assert json.loads((run_dir / runs.STATE).read_text())["model_epoch"] == 2

    # the text is the last epoch's: the same as the intact run gives
    assert result.out == cli("generate", "--run", trained_run.run_dir, *GENERATE).out
    again = cli("temperature", "--run", run_dir, "--prompt", "wine review", "--temperatures", "1", "--samples", "1",
                "--max-tokens", "6", "--out", tmp_path / "lab")
    assert again.code == 0 and not notes(again), again.err  # repaired once, quiet after


def test_a_run_without_the_record_is_told_stale_by_the_save_dates(tmp_path, trained_run):
    run_dir = stale_copy(trained_run, tmp_path, record=False)
    run = runs.load_run(run_dir)  # the library loads the last epoch and says so; the command line repairs
    assert run.model_file == "checkpoints/epoch-002.keras"
    assert run.note == (f"{run_dir / runs.MODEL} was saved at 2000-01-01@00:00:00, before checkpoints/epoch-002.keras "
                        f"of the run's last finished epoch (2, saved at {runs._date_saved(run_dir / run.model_file)}); "
                        "loaded checkpoints/epoch-002.keras instead")
    assert same_weights(run.model, run_dir / run.model_file)
    assert "replaced it with checkpoints/epoch-002.keras" in replace_stale_model(run_dir)
    assert (run_dir / runs.MODEL).read_bytes() == (run_dir / "checkpoints" / "epoch-002.keras").read_bytes()
    assert replace_stale_model(run_dir) is None and runs.load_run(run_dir).note is None


def test_a_stale_model_that_cannot_be_replaced_is_not_used_and_named(tmp_path, trained_run):
    run_dir = stale_copy(trained_run, tmp_path)
    before = (run_dir / runs.MODEL).read_bytes()
    with RunLock(run_dir):  # a training holds the run: nothing in it may be written
        result = cli("generate", "--run", run_dir, *GENERATE)
    assert result.code == 0, result.err
    [note] = notes(result)
    assert "; loaded checkpoints/epoch-002.keras instead (model.keras left as it is: " in note
    assert "in use by another training process" in note
    assert (run_dir / runs.MODEL).read_bytes() == before
    assert result.out == cli("generate", "--run", trained_run.run_dir, *GENERATE).out  # epoch 2's text all the same


def test_an_intact_run_loads_model_keras_without_a_note(trained_run):
    run = runs.load_run(trained_run.run_dir)
    assert run.note is None
    assert runs.stale_model_reason(trained_run.run_dir, runs.RunState.read(trained_run.run_dir)) is None


@pytest.mark.release  # trains an epoch; the crafted runs above cover the default tier
def test_a_kill_during_the_final_save_of_a_resume_is_repaired_on_the_next_load(tmp_path, trained_run, monkeypatch):
    """The real failure, not a crafted one: resume for a third epoch and die while saving model.keras."""
    from gpt_keras.runs.resume import resume
    from tests.conftest import run_config

    run_dir = copy_run(trained_run, tmp_path)
    real_save = runs.save_model

    def killed_in_the_final_save(model, path):
        if Path(path).name == runs.MODEL:
            raise KeyboardInterrupt  # SIGINT while the final model is written: the temporary goes, nothing else
        return real_save(model, path)

    monkeypatch.setattr(runs, "save_model", killed_in_the_final_save)
    with pytest.raises(KeyboardInterrupt):
        resume(run_dir, run_config(epochs=3), print_fn=None, verbose=0)
    monkeypatch.undo()
    state = runs.RunState.read(run_dir)
    assert (state.epoch, state.model_epoch, state.checkpoint) == (3, 2, "checkpoints/epoch-003.keras")
    assert "holds epoch 2, but the run finished epoch 3" in runs.stale_model_reason(run_dir, state)

    run = runs.load_run(run_dir)
    assert run.model_file == "checkpoints/epoch-003.keras" and run.note.endswith("loaded checkpoints/epoch-003.keras instead")
    assert same_weights(run.model, run_dir / "checkpoints" / "epoch-003.keras")
    assert "replaced it with checkpoints/epoch-003.keras" in replace_stale_model(run_dir)
    assert runs.RunState.read(run_dir).model_epoch == 3 and runs.load_run(run_dir).note is None


@pytest.mark.parametrize("field, value, model_has", [
    ("max_len", 12, 24), ("feed_forward_dim", 128, 64), ("n_blocks", 2, 1)])
def test_a_config_json_that_contradicts_its_model_is_one_error_naming_the_field(tmp_path, trained_run, field, value,
                                                                               model_has):
    run_dir = copy_run(trained_run, tmp_path)
    config = json.loads((run_dir / runs.CONFIG).read_text())
    assert config[field] == model_has
    (run_dir / runs.CONFIG).write_text(json.dumps({**config, field: value}))

    result = cli("generate", "--run", run_dir, *GENERATE)
    assert result.code == 2 and result.out == "", result.err
    assert result.error_lines == [
        f"gpt-keras generate: error: {run_dir / runs.CONFIG}: field '{field}' is {value}, but the model in "
        f"{runs.MODEL} has {model_has}; the two files are not from the same run"]
    assert "Traceback" not in result.err
