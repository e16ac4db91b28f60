"""Memory before allocation (issue 23): estimates refuse what cannot fit before anything is loaded or built,
archives are measured before they are opened, every count has a limit, and errors stay cheap.

Nothing here allocates what it refuses: the hostile files are small and only claim huge sizes.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from gpt_keras.runs.files import MAX_MESSAGE, one_line
from tests.conftest import cli


def test_a_long_message_is_cut_before_it_is_escaped():
    message = f"bad value {chr(27) * 3_000_000} in the file"  # a 3 MB line of escape bytes, each shown as 4 characters
    tracemalloc.start()
    try:
        line = one_line(message)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert line == ("bad value " + "\\x1b" * 3_000_000)[:MAX_MESSAGE - 3] + "..."
    assert peak < 100_000  # escaping the whole text first took over 200 MB here
    assert one_line("a \t\n b\x00c") == "a b\\x00c"  # whitespace runs still become one space


# --- every count has an upper bound -------------------------------------------------------------------

def _count_flags():
    """(subcommand, flag, argparse action) for every flag whose value is a whole number."""
    import argparse

    from gpt_keras.tools.cli import build_parser

    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    for command, parser in subparsers.choices.items():
        for action in parser._actions:
            if action.option_strings and callable(action.type) and action.type not in (str, Path):
                try:
                    value = action.type("7")
                except (argparse.ArgumentTypeError, ValueError, TypeError):
                    continue
                if isinstance(value, int):
                    yield command, action.option_strings[0], action


def test_every_whole_number_flag_has_an_upper_bound():
    import argparse
    import dataclasses

    from gpt_keras.core.config import ConfigError, GPTConfig

    config_ints = {field.name for field in dataclasses.fields(GPTConfig) if field.type in (int, "int")}
    flags = list(_count_flags())
    assert len(flags) > 20  # every subcommand's counts, ports and seeds, and the config's sizes
    for command, flag, action in flags:
        huge = 10 ** 30  # past int64: tf.data and NumPy would overflow on it
        if action.dest in config_ints:  # parsed as given, then checked with the config's own limits
            with pytest.raises(ConfigError, match=f"{action.dest} must be"):
                GPTConfig.preset("tiny", **{action.dest: huge})
        else:
            with pytest.raises(argparse.ArgumentTypeError, match="at most|from|must be"):
                action.type(str(huge))


@pytest.mark.parametrize("args, named", [
    (["train", "--batch-size", str(2 ** 70)], "--batch-size: batch_size must be at most 65,536"),
    (["train", "--shuffle-buffer", str(2 ** 64)], "--shuffle-buffer: shuffle_buffer must be at most 100,000,000"),
    (["temperature", "--run", "RUN", "--samples", "1001"], "argument --samples: must be at most 1,000, got 1,001"),
    (["generate", "--run", "RUN", "--top-k", str(10 ** 30)], "top_k must be at most 1,000,000"),
])
def test_count_flags_past_their_limit_are_one_line_and_exit_2(tmp_path, args, named):
    result = cli(*[str(tmp_path) if arg == "RUN" else arg for arg in args], "--runs-dir", tmp_path / "runs") \
        if args[0] == "train" else cli(*[str(tmp_path) if arg == "RUN" else arg for arg in args])
    assert result.code == 2 and named in result.err, result.err
    assert not (tmp_path / "runs").exists()


# --- a memory estimate before any allocation --------------------------------------------------------------

HUGE_MODEL = dict(embedding_dim=65_536, feed_forward_dim=262_144, n_blocks=16)  # each size allowed, their product not


def test_the_parameter_count_from_the_config_is_keras_own():
    from gpt_keras.core.model import build_gpt
    from gpt_keras.runs.memory import parameter_count
    from tests.conftest import tiny_config

    config = tiny_config(n_blocks=2, n_heads=3)
    assert parameter_count(config) == build_gpt(config).count_params()


@pytest.mark.parametrize("flags", [
    ["--embedding-dim", "65536", "--feed-forward-dim", "262144", "--n-blocks", "16"],
    ["--n-heads", "256", "--key-dim", "65536", "--n-blocks", "8"],  # heads x key-dim: one projection of 17 G weights
])
def test_train_refuses_a_model_that_cannot_fit_before_reading_any_data(tmp_path, flags):
    result = cli("train", "--runs-dir", tmp_path / "runs", *flags)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "training this model needs about" in result.err and "this machine has available" in result.err
    assert not (tmp_path / "runs").exists()


def test_a_config_file_asking_for_too_much_is_refused_naming_it(tmp_path):
    import json

    from gpt_keras.runs.memory import NotEnoughMemory
    from gpt_keras.runs.train import train
    from tests.conftest import tiny_config

    config = tmp_path / "big.json"
    config.write_text(json.dumps(HUGE_MODEL))
    result = cli("train", "--runs-dir", tmp_path / "runs", "--config", config)
    assert result.code == 2 and f"{config}: training this model needs about" in result.err, result.err
    with pytest.raises(NotEnoughMemory, match="activations of a batch of 16 "):  # the library checks it too
        train(tiny_config(**HUGE_MODEL), tmp_path / "absent.json", runs_dir=tmp_path / "runs", print_fn=None)
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_a_config_that_cannot_fit_before_reading_tokens_or_checkpoints(tmp_path, trained_run):
    import json

    from gpt_keras.runs import rundir
    from gpt_keras.runs.memory import NotEnoughMemory
    from gpt_keras.runs.resume import resume
    from tests.conftest import copy_run

    run_dir = copy_run(trained_run, tmp_path)
    values = json.loads((run_dir / rundir.CONFIG).read_text())
    (run_dir / rundir.CONFIG).write_text(json.dumps({**values, **HUGE_MODEL, "epochs": 5}))
    (run_dir / rundir.TOKENS).write_bytes(b"not read")
    before = (run_dir / rundir.CONFIG).read_text()
    with pytest.raises(NotEnoughMemory, match="config.json: training this model needs about"):
        resume(run_dir, print_fn=None)
    assert (run_dir / rundir.CONFIG).read_text() == before


def test_generate_refuses_before_loading_the_model(tmp_path, trained_run):
    import json

    from gpt_keras.runs import rundir
    from tests.conftest import copy_run

    run_dir = copy_run(trained_run, tmp_path)
    values = json.loads((run_dir / rundir.CONFIG).read_text())
    (run_dir / rundir.CONFIG).write_text(json.dumps({**values, "vocab_size": 1_000_000, "embedding_dim": 65_536}))
    (run_dir / rundir.MODEL).write_bytes(b"never opened")  # loading it would be another error
    result = cli("generate", "--run", run_dir, "--max-tokens", "2048")
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "sampling 1 text(s) of 2,048 tokens from this model needs about" in result.err
    assert "2,048 steps' distributions 16.4 GB" in result.err


def _model_archive(path, trained_run, change=None, weights_bytes=0):
    """A copy of the trained run's model.keras whose config.json is changed by `change`, and optionally
    a weights file of `weights_bytes` zeros (written in 1 MB pieces: the test allocates no more)."""
    import json
    import zipfile

    from gpt_keras.runs import rundir

    with zipfile.ZipFile(trained_run.run_dir / rundir.MODEL) as source, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename == "config.json" and change is not None:
                config = json.loads(source.read(info))
                change(config["config"]["layers"])
                target.writestr("config.json", json.dumps(config))
            elif info.filename == "model.weights.h5" and weights_bytes:
                with target.open("model.weights.h5", "w", force_zip64=True) as out:
                    for _ in range(weights_bytes >> 20):
                        out.write(bytes(1 << 20))
            else:
                target.writestr(info, source.read(info))
    return path


def _layer(layers, kind):
    return next(layer["config"] for layer in layers if layer["class_name"] == kind)


@pytest.mark.parametrize("change, named", [
    (lambda layers: _layer(layers, "TokenAndPositionEmbedding").update(vocab_size=8_000_000),
     "vocab_size must be at most 1,000,000"),
    (lambda layers: (_layer(layers, "TokenAndPositionEmbedding").update(vocab_size=1_000_000, embed_dim=65_536),
                     _layer(layers, "SoftmaxDense").update(units=1_000_000)),
     "loading this model needs about 524.4 GB"),
    (lambda layers: _layer(layers, "TransformerBlock").update(ff_dim=[1, 2]), "feed_forward_dim must be an integer"),
    (lambda layers: _layer(layers, "SoftmaxDense").update(units=10 ** 12), "vocab_size must be at most 1,000,000"),
    (lambda layers: layers.append({"class_name": "Dense", "config": {"name": "x", "units": 10 ** 12}}),
     "a Keras model, but not a gpt-keras GPT (layer 'x' is a Dense)"),
    (lambda layers: layers.append({"class_name": "Conv3D", "config": {"name": "x", "filters": 10 ** 9}}),
     "a Keras model, but not a gpt-keras GPT (layer 'x' is a Conv3D)"),
])
def test_the_config_inside_model_keras_is_held_to_the_limits_before_keras_builds_it(tmp_path, trained_run, change,
                                                                                    named):
    from gpt_keras.runs import rundir
    from tests.conftest import copy_run

    run_dir = copy_run(trained_run, tmp_path)
    _model_archive(run_dir / rundir.MODEL, trained_run, change)
    result = cli("generate", "--run", run_dir)
    assert result.code == 2 and len(result.error_lines) == 1 and named in result.err, result.err
    assert "model.keras" in result.err


def test_a_model_archive_is_measured_before_it_is_extracted(tmp_path, trained_run):
    from gpt_keras.runs import rundir
    from tests.conftest import copy_run

    run_dir = copy_run(trained_run, tmp_path)
    _model_archive(run_dir / rundir.MODEL, trained_run, weights_bytes=16 << 20)  # 16 MB of zeros: 16 kB stored
    assert (run_dir / rundir.MODEL).stat().st_size < 1 << 20
    with pytest.raises(rundir.RunError, match=r"its files inflate to 16\.8 MB, but a model of its config needs at "
                                              r"most \d\.\d MB"):
        rundir.load_run(run_dir)


def _token_archive(path, tokens_header: str, vocabulary_header: str = "{'descr': '<U5', 'fortran_order': False, "
                                                                      "'shape': (3,), }"):
    """An .npz whose arrays have the given .npy headers and almost no data: it only claims its sizes."""
    import zipfile

    def npy(header: str, data: bytes) -> bytes:
        header = header.ljust(118) + "\n"
        return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin-1") + data

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tokens.npy", npy(tokens_header, bytes(64)))
        archive.writestr("vocabulary.npy", npy(vocabulary_header, "".join(w.ljust(5, "\0") for w in
                                                                          ("", "[UNK]", "wine")).encode("utf-32-le")))
    return path


@pytest.mark.parametrize("tokens, vocabulary, named", [
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (10000000000, 100), }", None,
     "tokens.npy claims 1,000,000,000,000 values of 4 bytes (4.0 TB) but holds 64 bytes"),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (4, 4), }",
     "{'descr': '<U100000000', 'fortran_order': False, 'shape': (3,), }",
     "vocabulary.npy claims 3 values of 400000000 bytes (1.2 GB)"),
])
def test_a_token_archive_claiming_huge_arrays_is_refused_from_its_headers(tmp_path, tokens, vocabulary, named):
    path = _token_archive(tmp_path / "tokens.npz", tokens, *([vocabulary] if vocabulary else []))
    result = cli("train", "--tokens", path, "--runs-dir", tmp_path / "runs", "--max-len", "3")
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert named in result.err and "tokens.npz" in result.err
    assert not (tmp_path / "runs").exists()


def test_a_gpt2_folder_is_sized_from_its_config_before_transformers_builds_it(tmp_path):
    import json

    from gpt_keras.runs.memory import NotEnoughMemory
    from gpt_keras.tools.gpt2.load import GPT2Error, load_gpt2

    folder = tmp_path / "gpt2"
    folder.mkdir()
    for config, named in (({"n_positions": 10 ** 9}, "n_positions must be a whole number from 1 to 4,096"),
                          ({"n_embd": 65_536, "n_layer": 256, "n_head": 256},
                           "loading this GPT-2 needs about 52.8 TB")):
        (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", **config}))
        with pytest.raises(GPT2Error if "n_positions" in config else NotEnoughMemory, match=named):
            load_gpt2(folder)


def test_a_one_line_data_file_costs_its_size_not_its_escaped_size(tmp_path):
    """The issue's case in a real process: a 10 MB single-line file (one huge column name) named in the error."""
    import subprocess
    import sys

    from tests.conftest import REPO

    data = tmp_path / "one-line.csv"
    with open(data, "w") as handle:
        for _ in range(10):
            handle.write("\x1b" * (1 << 20))  # escape bytes: each shown as 4 characters
        handle.write("\n")
    child = ("import resource, sys\n"
             "import gpt_keras.runs.train  # Keras, TensorFlow and pandas loaded: the baseline\n"
             "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "from gpt_keras.tools.cli import main\n"
             "code = main(sys.argv[1:])\n"
             "print('peak increase kB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, file=sys.stderr)\n"
             "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", child, "train", "--data", str(data), "--runs-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    errors = [line for line in done.stderr.splitlines() if line.startswith("gpt-keras")]
    increase_kb = int(done.stderr.rsplit("peak increase kB", 1)[1].split()[0])
    assert done.returncode == 2 and len(errors) == 1 and errors[0].endswith("..."), done.stderr
    assert "missing column(s) country" in errors[0] and len(errors[0]) < 600
    assert increase_kb < 300_000, increase_kb  # escaping the whole line first added about 900 MB
