"""`gpt-keras train --recipe lecture`: the lecture's arithmetic (float32, no XLA, Keras' own loss, whole
batches shuffled), recorded in the run so that resuming keeps it; `--recipe fast` is the default."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import cli, tiny_flags


def _flags_config(*flags):
    from gpt_keras.tools.cli import build_parser
    from gpt_keras.tools.cli.flags import config_from_args

    return config_from_args(build_parser().parse_args(["train", *map(str, flags)]))


def test_the_lecture_recipe_sets_the_lectures_training_and_explicit_flags_win():
    fast = _flags_config()
    assert (fast.recipe, fast.mixed_precision, fast.jit_compile) == ("fast", "auto", "auto")  # the default
    lecture = _flags_config("--preset", "tiny", "--recipe", "lecture")
    assert (lecture.recipe, lecture.mixed_precision, lecture.jit_compile, lecture.bucket_by_length) == \
        ("lecture", "off", "off", "off")
    assert (lecture.epochs, lecture.batch_size) == (5, 32)  # over the tiny preset's 2 epochs
    assert _flags_config("--recipe", "lecture", "--epochs", "1").epochs == 1  # sizes: the flag wins


@pytest.mark.parametrize("flag, value", [("--mixed-precision", "bfloat16"), ("--jit-compile", "on"),
                                         ("--bucket-by-length", "on"), ("--shuffle-buffer", "100")])
def test_a_flag_that_would_change_the_lectures_arithmetic_is_refused_naming_it(flag, value):
    result = cli("train", "--recipe", "lecture", flag, value)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith(f"gpt-keras train: error: {flag}: ") and "conflicts with recipe 'lecture'" in result.err
    assert cli("train", "--recipe", "cake").err.count("--recipe") == 1


def test_the_lecture_shuffle_keeps_whole_batches_and_reorders_them_each_epoch():
    import keras

    from gpt_keras.runs.batches import training_batches

    keras.utils.set_random_seed(1)  # as `train` does: the order depends on the global seed too
    rows = np.repeat(np.arange(100, dtype=np.int32)[:, None], 2, axis=1)  # x of review i is [i]
    dataset, steps = training_batches(rows, batch_size=8, seed=1, whole_batches=True)
    stream = [x.numpy()[:, 0].tolist() for x, _ in dataset.take(steps * 2)]
    epochs = [stream[:steps], stream[steps:]]
    for batches in epochs:
        assert sorted(batch[0] for batch in batches) == list(range(0, 100, 8))  # every batch once ...
        assert all(batch == list(range(batch[0], min(batch[0] + 8, 100))) for batch in batches)  # ... whole
    assert [b[0] for b in epochs[0]] != [b[0] for b in epochs[1]] != list(range(0, 100, 8))
    keras.utils.set_random_seed(1)
    resumed, _ = training_batches(rows, batch_size=8, seed=1, first_epoch=1, whole_batches=True)
    assert [x.numpy()[:, 0].tolist() for x, _ in resumed.take(steps)] == epochs[1]  # resuming sees epoch 1's order


@pytest.mark.slow  # two tiny trainings: a run and its resume
def test_train_recipe_lecture_writes_a_float32_run_with_the_lectures_settings_and_resume_keeps_them(
        tmp_path, small_json):
    import keras

    run = tmp_path / "run"
    flags = tiny_flags(epochs=1)  # the test's small model for one epoch, at the recipe's batch of 32
    del flags[flags.index("--batch-size"):flags.index("--batch-size") + 2]
    trained = cli("train", "--recipe", "lecture", "--preset", "tiny", *flags, "--data", small_json, "--run", run,
                  "--quiet")
    assert trained.code == 0, trained.err
    assert "Precision: float32" in trained.out
    config = json.loads((run / "config.json").read_text())
    assert (config["recipe"], config["mixed_precision"], config["jit_compile"], config["batch_size"],
            config["epochs"]) == ("lecture", "off", "off", 32, 1)
    precision = json.loads((run / "precision.json").read_text())
    assert (precision["policy"], precision["output_dtype"], precision["jit"], precision["recipe"]) == \
        ("float32", "float32", False, "lecture")
    model = keras.saving.load_model(run / "model.keras")
    assert isinstance(model.loss[0], keras.losses.SparseCategoricalCrossentropy)
    assert model.jit_compile is False
    with open(run / "history.json") as handle:
        assert len(json.load(handle)["loss"]) == 1

    resumed = cli("train", "--resume", "--run", run, "--epochs", 2, "--quiet")
    assert resumed.code == 0, resumed.err
    assert "Precision: float32, the run's own" in resumed.out
    config = json.loads((run / "config.json").read_text())
    assert (config["recipe"], config["mixed_precision"], config["epochs"]) == ("lecture", "off", 2)
    assert isinstance(keras.saving.load_model(run / "model.keras").loss[0], keras.losses.SparseCategoricalCrossentropy)
    refused = cli("train", "--resume", "--run", run, "--recipe", "fast", "--epochs", 3, "--quiet")
    assert refused.code == 2 and "recipe 'fast' (the run has 'lecture')" in refused.err
