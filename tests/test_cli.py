"""The `gpt-keras` command line end to end: in this process (`cli`), and in a fresh interpreter where that is
the point (`cli_process`: a run saved by one process generates the same text in another)."""

from __future__ import annotations

import pytest

from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import PRESETS
from gpt_keras.runs import rundir as runs
from tests.conftest import TEST_SIZE, cli, tiny_flags

pytestmark = pytest.mark.slow


def generated_text(stdout: str) -> str:
    return stdout.split("generated text:\n", 1)[1].split("\n", 1)[0]


def test_train_says_what_it_kept_and_where_the_run_is(tmp_path, small_json):
    trained = cli("train", "--data", small_json, "--runs-dir", tmp_path / "runs", "--name", "cli",
                  *tiny_flags(max_len=16), cwd=tmp_path)
    assert trained.code == 0, trained.err
    run_dir = tmp_path / "runs" / "cli"
    assert f"Run saved in {run_dir}" in trained.out and (run_dir / "model.keras").is_file()
    assert "kept 400 of 400 reviews" in trained.out
    assert runs.load_run(run_dir).config.max_len == 16  # the flag, not the preset's or the test size's
    assert TEST_SIZE["max_len"] != 16


def test_same_seed_same_text_from_the_saved_run_as_in_the_training_process(trained_run):
    """`generate` loads the saved run: same seed, same text as the training process's own model. (A fresh
    interpreter doing the same is tests/test_reliability.py's same-seed test; identical outputs after a reload
    in a new process, tests/test_model.py's.)"""
    in_process = TextGenerator(trained_run.text_generator.vocab, seed=0, print_fn=None, every_epoch=False)
    in_process.set_model(trained_run.model)
    in_process.generate("wine review : italy", max_tokens=20, temperature=0.5)
    again = cli("generate", "--run", trained_run.run_dir, "--prompt", "wine review : italy", "--temperature", 0.5,
                "--max-tokens", 20, "--seed", 0)
    assert again.code == 0, again.err
    assert generated_text(again.out) == in_process.last_text


def test_the_lecture_method_gives_the_same_text_as_the_cached_decoder(run_in):
    # float32 is the point: there the cached decoder and the lecture's whole-sequence passes agree to rounding,
    # so one seed picks the same words (in bfloat16 their different rounding changes a word now and then). The two
    # loops are compared on every precision, auto included, in test_every_run.test_both_generation_loops_agree_on_every_run.
    args = ("generate", "--run", run_in("off").run_dir, "--prompt", "wine review : italy", "--temperature", 0.5,
            "--max-tokens", 20, "--seed", 0)
    cached, lecture = cli(*args), cli(*args, "--method", "lecture")
    assert cached.code == lecture.code == 0, cached.err + lecture.err
    assert generated_text(lecture.out) == generated_text(cached.out)
    assert len(generated_text(cached.out).split()) > len("wine review : italy".split())


@pytest.mark.parametrize("args, message", [
    (("train", "--data", "missing.json"), "missing.json: file not found"),
    (("train", "--max-len", "0"), "--max-len: max_len must be at least 1, got 0"),
    (("train", "--dropout-rate", "2"), "--dropout-rate: dropout_rate must be in [0, 1)"),
    (("generate", "--run", "no-such-run"), "no-such-run: run directory not found"),
    (("train", "--resume", "--runs-dir", "empty"), "no run to resume"),
])
def test_bad_input_gives_one_clear_line_and_exit_code_2(tmp_path, args, message):
    result = cli(*args, cwd=tmp_path)
    assert result.code == 2
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "runs").exists()


def test_bad_sampling_flags_name_the_flag(trained_run):
    result = cli("generate", "--run", trained_run.run_dir, "--temperature", "0")
    assert result.code == 2 and "temperature must be a finite number greater than 0" in result.err
    result = cli("generate", "--run", trained_run.run_dir, "--max-len", "3")
    assert result.code == 2 and "unrecognized arguments" in result.err


def test_demo_trains_on_the_sample_and_says_where_everything_is(tmp_path, monkeypatch):
    # The demo preset's layers shrunk to the test size: what is checked is what the demo does and prints.
    # (The demo at its real size runs from the installed wheel in test_install.py.)
    small = {name: TEST_SIZE[name] for name in ("vocab_size", "embedding_dim", "key_dim", "feed_forward_dim")}
    monkeypatch.setitem(PRESETS, "demo", {**PRESETS["demo"], **small})
    result = cli("demo", "--epochs", 1, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert result.code == 0, result.err
    out = result.out
    assert "kept 2,992 of 3,000 reviews" in out
    assert out.count("generated text:\nwine review") == 4  # after the epoch, then us, italy, germany
    assert all(f"generated text:\n{prompt}" in out for prompt in ("wine review : us", "wine review : italy"))
    assert "generated text:\nwine review : germany" in out and "-----" in out  # print_probs of the germany text
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"Run saved in {run_dir}" in out and f"--logdir {run_dir / 'logs'}" in out
    assert (run_dir / "model.keras").is_file()
    assert runs.load_run(run_dir).config.max_len == PRESETS["demo"]["max_len"]  # the demo's own window


# --- gpt-keras notebook in a container ----------------------------------------------------------------------

@pytest.fixture
def jupyter_started(tmp_path, monkeypatch):
    """What `gpt-keras notebook` would start: an importable `jupyterlab` (its extra need not be installed for
    this) and `os.execv` recorded instead of replacing the test process."""
    fake = tmp_path / "site"
    (fake / "jupyterlab").mkdir(parents=True)
    (fake / "jupyterlab" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(fake))
    started = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(list(argv)))
    return started


@pytest.mark.parametrize("uid", [0, 1000])
def test_notebook_as_root_passes_allow_root_and_passes_jupyter_its_arguments(tmp_path, monkeypatch, jupyter_started, uid):
    monkeypatch.setattr("os.geteuid", lambda: uid)
    result = cli("notebook", "--dir", tmp_path / "class", "--", "--port", "8890", "--no-browser")
    assert result.code == 0, result.err
    notebook = tmp_path / "class" / "gpt_listo_para_entrenar.ipynb"
    assert notebook.is_file()
    (argv,) = jupyter_started
    assert argv[1:] == ["-m", "jupyterlab", str(notebook), "--port", "8890", "--no-browser"] + (["--allow-root"] if uid == 0 else [])
    assert ("--allow-root" in result.out) == (uid == 0)


def test_notebook_passes_allow_root_once_when_the_user_gives_it(tmp_path, monkeypatch, jupyter_started):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert cli("notebook", "--dir", tmp_path, "--", "--allow-root").code == 0
    assert jupyter_started[0].count("--allow-root") == 1


def test_notebook_copy_only_refuses_jupyter_arguments(tmp_path):
    result = cli("notebook", "--copy-only", "--dir", tmp_path, "--", "--port", "8890")
    assert result.code == 2 and "--copy-only" in result.err and "--port 8890" in result.err
    assert not (tmp_path / "gpt_listo_para_entrenar.ipynb").exists()


# --- one run, one prompt, one seed: the same numbers in every command ---------------------------------------

def test_the_demo_and_generate_print_the_same_text_and_percentages_for_a_run_prompt_and_seed(trained_run, capsys):
    """The demo generates from the model it has just trained (in memory); `generate` reloads the saved run in
    the same default precision. The demo's "Generate again" line must show what the demo showed."""
    from gpt_keras.tools.cli.training import DEMO_PROMPTS, demo_generations
    from gpt_keras.tools.viz import format_probs

    vocab = trained_run.text_generator.vocab
    infos = demo_generations(trained_run.model, vocab, seed=3, max_tokens=trained_run.text_generator.max_tokens)
    capsys.readouterr()
    prompt, temperature = DEMO_PROMPTS[-1]  # the one the demo shows with print_probs, third in its order
    again = cli("generate", "--run", trained_run.run_dir, "--prompt", prompt, "--temperature", temperature,
                "--seed", 3, "--show-probs")
    assert again.code == 0, again.err
    demo_shows = format_probs(infos[prompt], vocab, mode="plain")
    assert demo_shows.count("%") >= 5 and demo_shows in again.out
    assert generated_text(again.out) == " ".join([infos[prompt][-1]["prompt"], infos[prompt][-1]["word"]]).strip()
