"""The `gpt-keras` command line end to end, in temporary directories and fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpt_keras.runs import rundir as runs
from gpt_keras.core.callbacks import TextGenerator

pytestmark = pytest.mark.slow


def gpt_keras(*args, cwd=None, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "gpt_keras.tools.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def generated_text(stdout: str) -> str:
    return stdout.split("generated text:\n", 1)[1].split("\n", 1)[0]


def test_train_then_generate_in_new_processes(tmp_path, small_json):
    trained = gpt_keras("train", "--data", small_json, "--runs-dir", tmp_path / "runs", "--name", "cli",
                        "--vocab-size", 300, "--max-len", 16, "--embedding-dim", 16, "--key-dim", 8,
                        "--feed-forward-dim", 32, "--epochs", 1, "--generate-max-tokens", 10, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "runs" / "cli"
    assert "Run saved in" in trained.stdout and (run_dir / "model.keras").is_file()
    assert "kept 400 of 400 reviews" in trained.stdout
    assert runs.load_run(run_dir).config.max_len == 16


def test_same_seed_same_text_as_in_the_training_process(trained_run):
    in_process = TextGenerator(trained_run.text_generator.vocab, seed=0, print_fn=None, every_epoch=False)
    in_process.set_model(trained_run.model)
    in_process.generate("wine review : italy", max_tokens=20, temperature=0.5)
    args = ("generate", "--run", trained_run.run_dir, "--prompt", "wine review : italy", "--temperature", 0.5,
            "--max-tokens", 20, "--seed", 0)
    first, second = gpt_keras(*args), gpt_keras(*args)
    assert first.returncode == 0, first.stderr
    assert generated_text(first.stdout) == generated_text(second.stdout) == in_process.last_text
    lecture = gpt_keras(*args, "--method", "lecture")
    assert generated_text(lecture.stdout) == in_process.last_text


@pytest.mark.parametrize("args, message", [
    (("train", "--data", "missing.json"), "missing.json: file not found"),
    (("train", "--max-len", "0"), "--max-len: max_len must be at least 1, got 0"),
    (("train", "--dropout-rate", "2"), "--dropout-rate: dropout_rate must be in [0, 1)"),
    (("generate", "--run", "no-such-run"), "no-such-run: run directory not found"),
    (("train", "--resume", "--runs-dir", "empty"), "no run to resume"),
])
def test_bad_input_gives_one_clear_line_and_exit_code_2(tmp_path, args, message):
    result = gpt_keras(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_sampling_flags_name_the_flag(trained_run):
    result = gpt_keras("generate", "--run", trained_run.run_dir, "--temperature", "0")
    assert result.returncode == 2 and "temperature must be a finite number greater than 0" in result.stderr
    result = gpt_keras("generate", "--run", trained_run.run_dir, "--max-len", "3")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_demo_trains_on_the_sample_and_says_where_everything_is(tmp_path):
    result = gpt_keras("demo", "--epochs", 1, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "kept 2,992 of 3,000 reviews" in out
    assert out.count("generated text:\nwine review : ") == 4  # after the epoch, then us, italy, germany
    assert "generated text:\nwine review : germany" in out and "-----" in out  # print_probs of the germany text
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"Run saved in {run_dir}" in out and f"--logdir {run_dir / 'logs'}" in out
    assert (run_dir / "model.keras").is_file()
