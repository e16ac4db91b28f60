"""Issue 14: nothing a user can type or a disk can do crashes, hangs, or deletes what it did not write.

One test per cause found when the tiny run was attacked as a hostile user would (docs/reliability.md).
Damaged runs are copies of the session's `trained_run`, which stays read-only.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.core.data import DataError
from gpt_keras.core.sampling import SamplingError, top_p_filter
from gpt_keras.runs import rundir as runs
from gpt_keras.runs.lock import RunLock
from gpt_keras.runs.files import UnsafePathError, WriteError, atomic_path, read_json, write_json
from tests.conftest import REPO, cli, tiny_config

DEEP = "[" * 100_000


@contextlib.contextmanager
def deadline(seconds: float = 60):
    """Fails (TimeoutError) instead of hanging: the alarm interrupts a blocked open() or read()."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s: a hang")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def copy_run(trained_run, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(trained_run.run_dir, target, symlinks=True)
    (target / runs.LOCK).unlink(missing_ok=True)
    return target


def replace_with_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


# --- data lost --------------------------------------------------------------------------------------

def test_finetune_out_never_replaces_a_folder_of_the_users_files(tmp_path, capsys, monkeypatch):
    from gpt_keras.tools.gpt2 import check_finetune_out
    from gpt_keras.tools.gpt2.load import FINETUNE_INFO, GPT2Error

    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work")
    (folder / "sub" / "notes.md").write_text("notes")
    code, error = cli("finetune-gpt2", "--out", folder).code_and_err
    assert code == 2 and "not a previous finetune-gpt2 save" in error and "Traceback" not in error
    assert (folder / "thesis.txt").read_text() == "years of work" and (folder / "sub" / "notes.md").exists()
    monkeypatch.chdir(folder)
    with pytest.raises(GPT2Error, match="not the current folder"):
        check_finetune_out(Path("."))
    previous = tmp_path / "gpt2-wine"
    previous.mkdir()
    (previous / FINETUNE_INFO).write_text("{}")
    assert check_finetune_out(previous) == previous  # a previous save may be replaced
    assert check_finetune_out(tmp_path / "new") == tmp_path / "new"


def test_a_training_refused_by_another_lock_deletes_nothing(tmp_path, small_json, monkeypatch):
    """The winner takes the lock in the loser's mkdir -> lock window; the loser must not remove the winner's files."""
    from gpt_keras.runs import train as train_module

    target = tmp_path / "contested"
    winner = RunLock(target)
    make_dir = train_module._make_dir

    def make_dir_then_lose_the_race(path):
        made = make_dir(path)
        winner.__enter__()
        (path / runs.CONFIG).write_text("the winner's config")
        return made

    monkeypatch.setattr(train_module, "_make_dir", make_dir_then_lose_the_race)
    try:
        with pytest.raises(runs.RunError, match="in use by another training process"):
            train_module.train(tiny_config(), small_json, run_dir=target, print_fn=None, verbose=0)
        assert (target / runs.CONFIG).read_text() == "the winner's config"
    finally:
        winner.__exit__()


def test_ctrl_c_in_epoch_one_keeps_the_users_empty_directory(tmp_path, small_json, monkeypatch):
    from gpt_keras.runs import train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "fit_run", interrupted)
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_config(), small_json, run_dir=existing, print_fn=None, verbose=0)
    assert existing.is_dir() and list(existing.iterdir()) == []  # the half-written run is gone, the folder stays
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_config(), small_json, run_dir=fresh, print_fn=None, verbose=0)
    assert not fresh.exists()  # made by the run, so removed with it


def test_a_nan_in_epoch_one_keeps_nothing_that_resume_could_pick(tmp_path, small_json):
    from gpt_keras.runs.train import train

    result = train(tiny_config(learning_rate=1e12), small_json, runs_dir=tmp_path / "runs", run_name="nan",
                   print_fn=None, verbose=0)
    assert result.stopped_on_nan is not None and not result.run_dir.exists()
    with pytest.raises(runs.RunError, match="no run to resume"):
        runs.latest_run(tmp_path / "runs")


def test_stale_temporaries_of_a_killed_process_are_removed_on_the_next_start(tmp_path, trained_run):
    run_dir = copy_run(trained_run, tmp_path)
    stale = [run_dir / ".model-a1b2c3d4.keras", run_dir / runs.CHECKPOINTS / ".epoch-003-x9y8z7w6.keras",
             run_dir / ".state-abcdefgh.tmp.json", run_dir / ".tokens-abcd_123.tmp.npz"]
    mine = [run_dir / ".notes.txt", run_dir / "model-a1b2c3d4.keras", run_dir / ".thesis-abcdefgh.docx"]
    for path in stale + mine:
        path.write_bytes(b"x")
    with RunLock(run_dir):
        pass
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in mine)


def test_a_state_of_epoch_minus_one_is_refused(tmp_path, trained_run):
    run_dir = copy_run(trained_run, tmp_path)
    state = json.loads((run_dir / runs.STATE).read_text())
    (run_dir / runs.STATE).write_text(json.dumps({**state, "epoch": -1}))
    with pytest.raises(runs.RunError, match=r"state.json: field 'epoch' must be an integer of at least 1"):
        runs.RunState.read(run_dir)


def test_resume_without_state_never_overwrites_the_saved_models(tmp_path, trained_run):
    from gpt_keras.runs.resume import resume

    run_dir = copy_run(trained_run, tmp_path)
    (run_dir / runs.STATE).unlink()
    before = snapshot(run_dir)
    with pytest.raises(runs.RunError, match="state.json: missing, but the run has saved models"):
        resume(run_dir, print_fn=None, verbose=0)
    assert {name: data for name, data in snapshot(run_dir).items() if name != runs.LOCK} == before


def test_pruning_old_checkpoints_leaves_a_directory_of_that_name(tmp_path):
    from gpt_keras.runs.monitoring import RunCheckpoint

    folder = tmp_path / runs.CHECKPOINTS
    (folder / "epoch-001.keras").mkdir(parents=True)
    (folder / "epoch-001.keras" / "mine.txt").write_text("mine")
    (folder / "epoch-002.keras").write_bytes(b"an old checkpoint")
    RunCheckpoint(tmp_path, "checkpoints/epoch-{epoch:03d}.keras")._prune(4)
    assert (folder / "epoch-001.keras" / "mine.txt").exists() and not (folder / "epoch-002.keras").exists()


# --- security ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_run_lock_is_never_followed_and_must_be_a_regular_file(tmp_path, trained_run, kind):
    run_dir = copy_run(trained_run, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = run_dir / runs.LOCK
    {"symlink": lambda: lock.symlink_to(victim), "directory": lock.mkdir, "fifo": lambda: os.mkfifo(lock)}[kind]()
    with deadline(30), pytest.raises(runs.RunError, match="run.lock: not a regular file"):
        with RunLock(run_dir):
            pass
    assert victim.read_text() == "precious"


def test_training_never_writes_through_a_symlinked_checkpoints_folder(tmp_path, trained_run):
    run_dir = copy_run(trained_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run_dir / runs.CHECKPOINTS, elsewhere)
    (run_dir / runs.CHECKPOINTS).symlink_to(elsewhere)
    before = sorted(path.name for path in elsewhere.iterdir())
    with pytest.raises(runs.RunError, match="checkpoints: must be a directory of the run"):
        with RunLock(run_dir):
            pass
    assert sorted(path.name for path in elsewhere.iterdir()) == before


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(runs.RunError, match=rf"{tmp_path}: in use by another training process \(pid {os.getpid()}\)"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass


def test_the_compare_report_escapes_html_and_markdown():
    from gpt_keras.tools.gpt2.report import _md

    text = _md('<script>alert(1)</script><img src=x onerror=alert(2)> | *b* [l](javascript:x) `c`\nnext')
    assert "<" not in text and ">" not in text and "\n" not in text
    assert "\\|" in text and "\\*b\\*" in text and "\\[l\\]" in text and "\\`c\\`" in text


def test_control_bytes_from_the_data_never_reach_the_terminal(trained_run):
    from gpt_keras.core.callbacks import TextGenerator

    printed = []
    generator = TextGenerator(trained_run.text_generator.vocab, print_fn=printed.append, every_epoch=False)
    generator._generate = lambda *args: ([], "wine \x1b[2J\x1b]0;owned\x07 review\x00")
    generator.generate("wine review", max_tokens=10, temperature=1.0)
    assert not any(c in printed[0] for c in "\x1b\x07\x00") and "\\x1b[2J" in printed[0]


@pytest.mark.parametrize("name", ["evil\x1b[2Jname", "two\nlines", "bell\x07", "x" * 300])
def test_run_names_with_control_characters_or_too_long_are_refused(tmp_path, capsys, name):
    code, error = cli("train", "--runs-dir", tmp_path, "--name", name).code_and_err
    assert code == 2 and "--name" in error and "Traceback" not in error
    assert "\x1b" not in error and not any(tmp_path.iterdir())


def test_requirements_ask_for_a_keras_without_the_safe_mode_bypasses():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert "keras>=3.11,<4" in lines  # CVE-2025-8747, CVE-2025-9906 are fixed in 3.11
    assert any(line.startswith("filelock>=4.3") for line in lines)


# --- hangs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [runs.CONFIG, runs.VOCAB, runs.STATE, runs.TOKENS])
def test_a_fifo_in_place_of_a_run_file_is_refused_not_waited_on(tmp_path, trained_run, name):
    from gpt_keras.runs.batches import load_tokens

    run_dir = copy_run(trained_run, tmp_path)
    replace_with_fifo(run_dir / name)
    with deadline(30), pytest.raises((runs.RunError, DataError), match=f"{name}.*not a regular file \\(a FIFO\\)"):
        if name == runs.TOKENS:
            load_tokens(run_dir / name)
        elif name == runs.STATE:
            runs.RunState.read(run_dir)
        else:
            runs.load_run(run_dir)


@pytest.mark.parametrize("flag", ["--config", "--tokens"])
def test_a_fifo_given_as_config_or_tokens_is_refused(tmp_path, capsys, flag):
    os.mkfifo(tmp_path / "fifo")
    with deadline(60):
        code, error = cli("train", "--runs-dir", tmp_path / "runs", flag, tmp_path / "fifo").code_and_err
    assert code == 2 and "not a regular file" in error and "Traceback" not in error


def test_max_tokens_has_a_named_limit(capsys):
    from gpt_keras.core.checks import check_max_tokens

    code, error = cli("generate", "--run", "RUN", "--max-tokens", "100000000").code_and_err
    assert code == 2 and "--max-tokens: max_tokens must be at most 2,048 (MAX_TOKENS" in error
    with pytest.raises(SamplingError, match="max_tokens must be at most 2,048"):
        check_max_tokens(100_000_000, error=SamplingError)


def test_a_long_prompt_keeps_the_model_input_to_the_window(trained_run):
    """A 2,000-word prompt: the model sees the last max_len tokens; the steps' records stay bounded by MAX_TOKENS."""
    from gpt_keras.core.generation import CachedGenerator
    from gpt_keras.core.sampling import Sampler

    generator = CachedGenerator(trained_run.model, trained_run.text_generator.vocab)
    seen = []
    window = generator._run_window
    generator._run_window = lambda tokens: (seen.append(tokens.shape), window(tokens))[1]
    with pytest.warns(UserWarning):
        info, text = generator.generate("wine review " * 1000, 2003, Sampler(1.0, greedy=True),
                                        np.random.default_rng(0))
    assert seen and all(shape[1] <= generator.max_len for shape in seen)
    assert 1 <= len(info) <= 3 and len(text.split()) <= 2003


@pytest.mark.parametrize("flag, value, named", [
    ("--max-len", "100000", "max_len must be at most 4,096"),
    ("--n-heads", "100000", "n_heads must be at most 256"),
    ("--embedding-dim", "1000000000", "embedding_dim must be at most 65,536"),
    ("--vocab-size", "10000000", "vocab_size must be at most 1,000,000"),
    ("--seed", "4294967296", "seed must be a whole number from 0 to 4,294,967,295"),
    ("--layer-norm-epsilon", "1e300", "layer_norm_epsilon must be at most 1 and above 0 in float32"),
    ("--layer-norm-epsilon", "1e-60", "layer_norm_epsilon must be at most 1 and above 0 in float32"),
])
def test_sizes_and_seeds_have_named_limits_checked_before_any_work(tmp_path, capsys, flag, value, named):
    code, error = cli("train", "--runs-dir", tmp_path / "runs", flag, value).code_and_err
    assert code == 2 and named in error and flag in error
    assert not (tmp_path / "runs").exists()


# --- tracebacks -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [runs.CONFIG, runs.VOCAB, runs.STATE])
def test_deeply_nested_json_in_a_run_file_is_one_clear_error(tmp_path, trained_run, name):
    run_dir = copy_run(trained_run, tmp_path)
    (run_dir / name).write_text(DEEP)
    (run_dir / runs.MODEL).unlink()  # so load_run reads state.json too
    with pytest.raises(runs.RunError, match=f"{name}: cannot read the .* \\(JSON nested too deeply\\)"):
        runs.load_run(run_dir)


def test_deeply_nested_config_flag_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "deep.json").write_text(DEEP)
    code, error = cli("train", "--runs-dir", tmp_path / "runs", "--config", tmp_path / "deep.json").code_and_err
    assert code == 2 and "deep.json: cannot read the config (JSON nested too deeply)" in error


@pytest.mark.parametrize("field, value", [
    ("checkpoint", 5), ("checkpoint", None), ("checkpoint", "../../victim.keras"), ("rng_state", {"x": 1}),
    ("rng_state", {"bit_generator": "PCG64", "state": "abc"}), ("history", "abc"), ("history", {"loss": ["x"]}),
    ("global_step", "abc"), ("global_step", -5), ("seed_states", [["a"]]), ("epoch", True), ("epoch", 1.5),
])
def test_a_state_field_of_the_wrong_type_is_named(tmp_path, trained_run, field, value):
    run_dir = copy_run(trained_run, tmp_path)
    state = json.loads((run_dir / runs.STATE).read_text())
    (run_dir / runs.STATE).write_text(json.dumps({**state, field: value}))
    with pytest.raises(runs.RunError, match=f"state.json: field '{field}'"):
        runs.RunState.read(run_dir)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", "truncated"])
def test_an_empty_or_truncated_token_archive_is_one_clear_error(tmp_path, trained_run, content):
    from gpt_keras.runs.batches import load_tokens

    path = tmp_path / "tokens.npz"
    whole = (trained_run.run_dir / runs.TOKENS).read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if content == "truncated" else content)
    with pytest.raises(DataError, match="tokens.npz: not a token archive written by gpt-keras"):
        load_tokens(path)


def test_a_valid_keras_file_of_another_model_is_one_clear_error(tmp_path, trained_run):
    import keras

    run_dir = copy_run(trained_run, tmp_path)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save(run_dir / runs.MODEL)
    with pytest.raises(runs.RunError, match="model.keras: a Keras model, but not a gpt-keras GPT"):
        runs.load_run(run_dir)


@pytest.mark.parametrize("args, named", [
    (["generate", "--run", "RUN", "--html", "DIR"], "--html: DIR is a directory"),
    (["generate", "--run", "RUN", "--heatmap", "DIR"], "--heatmap: DIR is a directory"),
    (["generate", "--run", "RUN", "--html", "/dev/null/x.html"], "/dev/null is not a directory"),
    (["train", "--runs-dir", "/dev/null/x"], "/dev/null is not a directory"),
    (["tokenize", "--out", "DIR"], "--out: DIR is a directory"),
    (["temperature", "--run", "RUN", "--out", "FILE"], "--out: FILE exists and is not a directory"),
    (["finetune-gpt2", "--out", "FILE"], "FILE exists and is not a directory"),
    (["compare", "--run", "RUN", "--report", "DIR/" + "r" * 300], "is longer than 255 bytes"),
])
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, trained_run, capsys, monkeypatch, args, named):
    from gpt_keras.runs import rundir

    loads = []
    monkeypatch.setattr(rundir, "load_run", lambda *a: loads.append(a))
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("mine")
    places = {"RUN": str(trained_run.run_dir), "DIR": str(tmp_path / "DIR"), "FILE": str(tmp_path / "FILE")}
    args = [places.get(arg, arg.replace("DIR/", places["DIR"] + "/")) for arg in args]
    code, error = cli(*args).code_and_err
    named = named.replace("DIR", places["DIR"]).replace("FILE", places["FILE"])
    assert code == 2 and named in error and "Traceback" not in error
    assert loads == [] and (tmp_path / "FILE").read_text() == "mine"


def test_a_full_disk_while_saving_is_one_error_and_keeps_the_previous_file(tmp_path, monkeypatch, trained_run):
    target = write_json(tmp_path / "state.json", {"epoch": 1})

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(WriteError, match="state.json: cannot write \\(No space left on device\\)"):
        write_json(target, {"epoch": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == ["state.json"]

    model_path = tmp_path / "model.keras"
    shutil.copyfile(trained_run.run_dir / runs.MODEL, model_path)
    before = model_path.read_bytes()
    model = trained_run.model

    def save_half_then_fail(path, *args, **kwargs):
        Path(path).write_bytes(b"PK half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(model, "save", save_half_then_fail)
    with pytest.raises(WriteError, match="model.keras: cannot write"):
        runs.save_model(model, model_path)
    assert model_path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras",
                                                                                                  "state.json"]


def test_gpt2_directory_whose_config_is_not_an_object(tmp_path):
    from gpt_keras.tools.gpt2.load import GPT2Error, load_gpt2

    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(GPT2Error, match="config.json: not a model config"):
        load_gpt2(tmp_path)


# --- wrong but silent ---------------------------------------------------------------------------------

def test_top_p_below_the_top_word_keeps_the_top_word():
    probs = top_p_filter(np.array([0.1, 0.6, 0.3]), 1e-12)
    assert probs.tolist() == [0.0, 1.0, 0.0]


def test_a_vocabulary_with_duplicate_words_is_refused_naming_the_file(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(["", "[UNK]", "wine", "wine"]))
    with pytest.raises(DataError, match="vocab.json: the vocabulary lists the word 'wine' more than once"):
        runs.read_vocabulary(tmp_path / "vocab.json")


@pytest.mark.parametrize("change", ["vocabulary", "width"])
def test_resume_refuses_tokens_of_another_vocabulary_or_width(tmp_path, trained_run, change):
    from gpt_keras.runs.batches import load_tokens, save_tokens
    from gpt_keras.runs.resume import resume

    run_dir = copy_run(trained_run, tmp_path)
    tokens, words = load_tokens(run_dir / runs.TOKENS)
    if change == "vocabulary":
        words = words[:2] + list(reversed(words[2:]))
    else:
        tokens = tokens[:, :-1]
    save_tokens(run_dir / runs.TOKENS, tokens, words)
    with pytest.raises(runs.RunError, match="tokens.npz: not this run's tokens"):
        resume(run_dir, print_fn=None, verbose=0)


def test_a_runs_config_must_hold_every_field(tmp_path, trained_run):
    run_dir = copy_run(trained_run, tmp_path)
    (run_dir / runs.CONFIG).write_text("{}")
    with pytest.raises(runs.RunError, match="config.json: a run's config needs every field; missing: vocab_size"):
        runs.load_run(run_dir)
    assert GPTConfig.from_dict({}) == GPTConfig()  # a --config file may still give only some fields


def test_error_lines_have_a_length_limit(tmp_path, capsys):
    code, error = cli("generate", "--run", tmp_path / ("x" * 200) / ("y" * 200) / ("z" * 200)).code_and_err
    line = [line for line in error.splitlines() if "error:" in line][-1]
    assert code == 2 and len(line) <= 530 and line.endswith("...")


def test_resume_compares_the_data_by_content_not_by_path(tmp_path, trained_run, small_json, monkeypatch):
    from gpt_keras.runs.resume import _check_same_data

    run_dir = copy_run(trained_run, tmp_path)
    copy = tmp_path / "elsewhere" / small_json.name
    copy.parent.mkdir()
    shutil.copyfile(small_json, copy)
    _check_same_data(run_dir, copy)  # the same reviews under another path: accepted
    monkeypatch.chdir(small_json.parent)
    _check_same_data(run_dir, Path(small_json.name))  # relative to another folder
    impostor = tmp_path / "other" / small_json.name
    impostor.parent.mkdir()
    impostor.write_text(small_json.read_text()[:-2] + " ]")
    with pytest.raises(runs.RunError, match="resuming trains on the run's saved tokens"):
        _check_same_data(run_dir, impostor)


def test_read_json_refuses_what_is_not_a_regular_file(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ConfigError, match="dir.json: the config is not a regular file \\(a directory\\)"):
        read_json(tmp_path / "dir.json", "config", ConfigError)


def test_an_unwritable_target_folder_is_a_write_error_with_no_temporary(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="cannot write"):
        with atomic_path(tmp_path / "file" / "config.json") as temporary:
            temporary.write_text("never")
    with pytest.raises(UnsafePathError, match="--out: .*file is not a directory"):
        from gpt_keras.runs.files import check_output_path
        check_output_path(tmp_path / "file" / "x.npz", "--out")


def test_a_model_whose_layers_disagree_on_precision_is_one_clear_error(tmp_path, trained_run):
    """A config.json inside model.keras giving the block another dtype policy loaded, then failed in the
    middle of generating (a traceback: a bfloat16 tensor added to a float32 one)."""
    run_dir = copy_run(trained_run, tmp_path)
    with zipfile.ZipFile(run_dir / runs.MODEL) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    embedding, block = config["config"]["layers"][1:3]
    policy = embedding["config"]["dtype"]["config"]["name"]
    other = "float32" if policy != "float32" else "mixed_bfloat16"
    block["config"]["dtype"] = {**embedding["config"]["dtype"], "config": {"name": other}}
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(run_dir / runs.MODEL, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(runs.RunError, match=f"model.keras: its layers have different dtype policies "
                                            f"\\(embedding {policy}, transformer_block {other}\\)"):
        runs.load_run(run_dir)


# --- property: random damage to every file of a real run --------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

RUN_FILES = [runs.CONFIG, runs.VOCAB, runs.DATA, runs.STATE, runs.TOKENS, runs.MODEL, runs.HISTORY, runs.LOCK,
             "checkpoints/epoch-002.keras", "checkpoints/epoch-001.keras", "checkpoints", "logs"]
DAMAGES = ["empty", "truncate", "random bytes", "deep nesting", "fifo", "symlink out", "directory", "missing",
           "json value", "not utf-8"]
# Damage inside the archives, where a valid zip carries a crafted member (issue 23): the config.json inside a
# `.keras` file (a value of the wrong type, a size no memory holds, a missing key, a layer with the right name
# and another class) or its truncated weights; the `.npy` headers inside tokens.npz (a shape of 10^12 tokens,
# strings of 10^8 characters, another dtype, an object array) or a truncated member.
MODELS = [runs.MODEL, "checkpoints/epoch-002.keras", "checkpoints/epoch-001.keras"]
MODEL_DAMAGES = ["keras wrong type", "keras huge size", "keras missing key", "keras other class",
                 "keras truncated weights"]
TOKEN_DAMAGES = ["npz huge shape", "npz wrong dtype", "npz object array", "npz truncated member"]
HUGE = [10**12, 2**40, 2**63 - 1, 10**30]  # sizes no machine holds: refused or failed fast, never allocated
# Files a failed load or resume must leave as they were (model.keras and history.json are rewritten by a resume).
KEPT = [runs.CONFIG, runs.VOCAB, runs.DATA, runs.STATE, runs.TOKENS, "checkpoints/epoch-002.keras",
        "checkpoints/epoch-001.keras"]
OUR_ERRORS = (runs.RunError, ConfigError, DataError, SamplingError, WriteError, UnsafePathError)
FIGURES = {"cases": 0, "calls": 0, "clean errors": 0, "succeeded": 0, "crashes": 0, "hangs": 0, "data lost": 0}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


file_damages = st.tuples(st.sampled_from(RUN_FILES), st.sampled_from(DAMAGES))
crafted_damages = (st.tuples(st.sampled_from(MODELS), st.sampled_from(MODEL_DAMAGES))
                   | st.tuples(st.just(runs.TOKENS), st.sampled_from(TOKEN_DAMAGES)))


@st.composite
def damages(draw, kinds=file_damages | crafted_damages):
    """One or two damaged files; a quarter of the cases also trains one more epoch on resume (not those with a
    crafted archive: resume reads the tokens and the checkpoint either way, and an epoch would add seconds)."""
    attack = [(*draw(kinds), draw(st.integers(0, 10**6)), draw(json_values), draw(st.binary(min_size=1, max_size=64)))
              for _ in range(draw(st.integers(1, 2)))]
    crafted = any(kind.startswith(("keras ", "npz ")) for _, kind, *_ in attack)
    return draw(st.integers(0, 3)) == 0 and not crafted, attack


def damage(run_dir: Path, outside: Path, name: str, kind: str, number: int, value, noise: bytes) -> None:
    path = run_dir / name
    if kind.startswith(("keras ", "npz ")):
        if zipfile.is_zipfile(path):  # an earlier damage may have left no archive to craft
            craft_member(path, kind, number, value)
        return
    regular = path.is_file() and not path.is_symlink()
    original = path.read_bytes() if regular else b""
    if kind in ("fifo", "symlink out", "directory", "missing") or (os.path.lexists(path) and not regular):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink out":
        path.symlink_to(outside / ("victim-dir" if name in ("checkpoints", "logs") else "victim.txt"))
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        pass
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncate":
        path.write_bytes(original[: number % max(len(original), 1)])
    elif kind == "random bytes":
        path.write_bytes(noise * (1 + number % 50))
    elif kind == "deep nesting":
        path.write_text(("[" if number % 2 else '{"a":') * (1000 + number % 100_000))
    elif kind == "not utf-8":
        path.write_bytes(b"\xff\xfe" + original)
    elif kind == "json value":
        path.write_text(json.dumps(_with_value(original, number, value), allow_nan=True))


def _with_value(original: bytes, number: int, value):
    """The file's JSON with one field (or element) replaced by `value`; the value itself for other files."""
    try:
        document = json.loads(original)
    except ValueError:
        return value
    if isinstance(document, dict) and document:
        keys = sorted(document)
        document[keys[number % len(keys)]] = value
        return document
    if isinstance(document, list) and document:
        document[number % len(document)] = value
        return document
    return value


def craft_member(path: Path, kind: str, number: int, value) -> None:
    """Rewrites one member of the zip at `path` (a `.keras` model or tokens.npz) as `kind` says."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if kind == "keras truncated weights":
        weights = members["model.weights.h5"]
        members["model.weights.h5"] = weights[: number % len(weights)]
    elif kind.startswith("keras "):
        config = json.loads(members["config.json"])
        _craft_keras_config(config, kind, number, value)
        members["config.json"] = json.dumps(config).encode()
    else:
        name = "vocabulary.npy" if kind == "npz huge shape" and number % 3 == 2 else "tokens.npy"
        members[name] = _craft_npy(members[name], kind, number)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _craft_keras_config(config: dict, kind: str, number: int, value) -> None:
    layers = config["config"]["layers"]
    layer = layers[1 + number % (len(layers) - 1)]  # embedding, a block or the output layer (not the input)
    keys = sorted(layer["config"])
    if kind == "keras wrong type":
        layer["config"][keys[number % len(keys)]] = value
    elif kind == "keras huge size":
        sizes = [key for key in keys if key in ("max_len", "vocab_size", "embed_dim", "num_heads", "key_dim", "ff_dim",
                                                 "units")]
        layer["config"][sizes[number % len(sizes)]] = HUGE[number % len(HUGE)]
    elif kind == "keras missing key":
        where = [layer, layer["config"], config["config"], config][number % 4]
        del where[sorted(where)[number % len(where)]]
    else:  # "keras other class": the name stays, the class (and, every other time, its config) is another layer's
        other = layers[1 + (number + 1) % (len(layers) - 1)]
        layer.update({key: other[key] for key in ("module", "class_name", "registered_name") if key in other})
        if number % 2:
            layer["config"] = {**other["config"], "name": layer["config"]["name"]}


def _craft_npy(data: bytes, kind: str, number: int) -> bytes:
    """A `.npy` member whose header (or body) lies: a huge shape, another dtype, an object array, cut short."""
    if kind == "npz truncated member":
        return data[: number % max(len(data), 1)]
    try:  # a member an earlier damage of the same attack already cut short: craft a valid one to lie about
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
    except ValueError:
        data = io.BytesIO()
        np.save(data, np.zeros((4, 3), dtype=np.int32))
        data = data.getvalue()
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    body = data[stream.tell():]
    if kind == "npz truncated member":
        return data[: number % len(data)]
    if kind == "npz object array":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}, "x", None], dtype=object), allow_pickle=True)
        return buffer.getvalue()
    if kind == "npz huge shape":
        header = {"descr": "<U100000000", "shape": shape} if dtype.kind == "U" and number % 2 else \
            {"descr": dtype.str, "shape": (HUGE[number % 4], *shape[1:]) if number % 2 else (10**6, 10**6)}
    else:  # "npz wrong dtype"
        header = {"descr": ["<f8", "|S10", "<c16", "|b1", "<M8[s]", "<i8"][number % 6], "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {**header, "fortran_order": fortran})
    return buffer.getvalue() + body


def snapshot(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _call(function, *args, **kwargs) -> None:
    FIGURES["calls"] += 1
    try:
        with deadline(120):
            function(*args, **kwargs)
        FIGURES["succeeded"] += 1
    except OUR_ERRORS as error:
        assert "\n" not in str(error).strip() and len(str(error)) < 2000
        FIGURES["clean errors"] += 1
    except TimeoutError:
        FIGURES["hangs"] += 1
        raise
    except BaseException:
        FIGURES["crashes"] += 1
        raise


# The property run's length: a short one in `make test`, the long one (the figures docs/reliability.md quotes) in the
# release tier. GPT_KERAS_PROPERTY_EXAMPLES sets the short run's count (e.g. 150 to repeat the long one here).
PROPERTY_EXAMPLES = int(os.environ.get("GPT_KERAS_PROPERTY_EXAMPLES", 20))
RELEASE_PROPERTY_EXAMPLES = 150
PROPERTY_SETTINGS = dict(derandomize=True, database=None, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


@pytest.mark.slow
@settings(max_examples=PROPERTY_EXAMPLES, **PROPERTY_SETTINGS)
@given(attack=damages())
def test_random_damage_to_a_run_is_a_clean_error_never_a_crash_a_hang_or_a_loss(tmp_path_factory, trained_run,
                                                                                attack):
    attack_a_copy(tmp_path_factory, trained_run, attack)


@pytest.mark.release
@settings(max_examples=RELEASE_PROPERTY_EXAMPLES, **PROPERTY_SETTINGS)
@given(attack=damages())
def test_random_damage_long_run(tmp_path_factory, trained_run, attack):
    """The same property over 150 attacks (the release tier; conftest prints the figures at the end)."""
    attack_a_copy(tmp_path_factory, trained_run, attack)


CRAFTED_PROPERTY_EXAMPLES = 100


@pytest.mark.release
@settings(max_examples=CRAFTED_PROPERTY_EXAMPLES, **PROPERTY_SETTINGS)
@given(attack=damages(kinds=crafted_damages))
def test_crafted_archive_internals_long_run(tmp_path_factory, trained_run, attack):
    """The same property over 100 attacks inside the archives only: crafted `.keras` configs and weights,
    crafted `.npy` headers in tokens.npz (the release tier; the short run above mixes them in)."""
    attack_a_copy(tmp_path_factory, trained_run, attack)


def attack_a_copy(tmp_path_factory, trained_run, attack) -> None:
    """Damages a copy of the run, then loads and resumes it: a clean error or success, never a crash, a
    hang, or a change to a file outside the run or to one of its intact files. FIGURES counts the outcomes."""
    from gpt_keras.runs.resume import resume

    base = tmp_path_factory.mktemp("attack")
    outside = base / "outside"
    (outside / "victim-dir").mkdir(parents=True)
    (outside / "victim.txt").write_text("precious")
    (outside / "victim-dir" / "epoch-001.keras").write_text("not yours")
    run_dir = copy_run(trained_run, base)
    more, attack = attack
    for name, kind, number, value, noise in attack:
        damage(run_dir, outside, name, kind, number, value, noise)
    damaged = {name for name, *_ in attack} | {"checkpoints/epoch-001.keras", "checkpoints/epoch-002.keras"} \
        if any(name == "checkpoints" for name, *_ in attack) else {name for name, *_ in attack}
    before_outside, before_run = snapshot(outside), snapshot(run_dir)
    FIGURES["cases"] += 1
    _call(runs.load_run, run_dir)
    config = trained_run_config(trained_run).replace(epochs=3) if more else None
    _call(resume, run_dir, config, print_fn=None, verbose=0)
    after_run = snapshot(run_dir)
    kept = [runs.VOCAB, runs.TOKENS, runs.DATA] if more else KEPT  # one more epoch rewrites state and checkpoints
    lost = snapshot(outside) != before_outside or any(
        name in before_run and after_run.get(name) != before_run[name] for name in kept if name not in damaged)
    FIGURES["data lost"] += lost
    assert not lost, "a file outside the run, or one of the run's intact files, changed"
    shutil.rmtree(base, ignore_errors=True)


def trained_run_config(trained_run) -> GPTConfig:
    return runs.read_config(trained_run.run_dir / runs.CONFIG)


@pytest.mark.slow
@pytest.mark.parametrize("name, kind, command", [
    (runs.CONFIG, "fifo", "generate"), (runs.STATE, "deep nesting", "resume"), (runs.LOCK, "symlink out", "resume"),
    (runs.TOKENS, "truncate", "resume"), (runs.MODEL, "random bytes", "generate"), (runs.VOCAB, "fifo", "resume"),
])
def test_damaged_runs_through_the_command_line(tmp_path, trained_run, name, kind, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    run_dir = copy_run(trained_run, tmp_path)
    damage(run_dir, outside, name, kind, 1234, None, b"\x00\x1b")
    args = ["generate", "--run", run_dir] if command == "generate" else ["train", "--resume", "--run", run_dir]
    with deadline(120):
        result = cli(*args)
    assert result.code == 2 and "Traceback" not in result.err, result.err[-2000:]
    assert len(result.error_lines) == 1 and name in result.error_lines[0]
    assert (outside / "victim.txt").read_text() == "precious"
