"""Training throughput, counted rather than timed: step functions traced once for all epochs, reviews
vectorized once, an input pipeline that runs no Python per batch, and the precision and XLA choices.
The wall-clock figures are in benchmarks/ (`benchmark.py`, `input_pipeline.py`)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import gpt_keras.runs.train as train_module
from gpt_keras.core import data as data_lib_core
from gpt_keras.runs import batches as data_lib_batches
from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.runs.train import configure_precision, train
from tests.conftest import tiny_config

class EpochCounts(keras.callbacks.Callback):
    """Records, at the end of each epoch, how many times each step function has been traced so far."""

    def __init__(self, traces):
        super().__init__()
        self.traces = traces
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch.append(dict(self.traces))


@pytest.mark.slow  # trains three epochs
def test_three_epochs_trace_each_step_once_and_vectorize_once(tmp_path, small_json, monkeypatch):
    traces = {"train": 0, "test": 0}
    vectorized = []
    counts = EpochCounts(traces)
    train_step, test_step, fit, vectorize = keras.Model.train_step, keras.Model.test_step, keras.Model.fit, \
        data_lib_core.vectorize

    def counting(name, step):
        def traced(self, batch):  # Python runs the step only while tf.function traces it
            traces[name] += 1
            return step(self, batch)
        return traced

    monkeypatch.setattr(keras.Model, "train_step", counting("train", train_step))
    monkeypatch.setattr(keras.Model, "test_step", counting("test", test_step))
    monkeypatch.setattr(keras.Model, "fit", lambda self, *args, callbacks=(), **kwargs: fit(
        self, *args, callbacks=[*callbacks, counts], **kwargs))
    monkeypatch.setattr(train_module, "vectorize", lambda *args, **kwargs: vectorized.append(1) or vectorize(*args, **kwargs))

    # 360 training reviews in batches of 21: every epoch ends in a short batch of 3.
    result = train(tiny_config(epochs=3, batch_size=21, validation_split=0.1), small_json, runs_dir=tmp_path,
                   print_fn=None, verbose=0)
    assert len(result.history["loss"]) == 3
    assert counts.per_epoch == [{"train": 1, "test": 1}] * 3  # no retracing, not even for the short batch
    assert len(vectorized) == 1  # the reviews are vectorized once; every epoch reads the cached array


def test_the_input_pipeline_runs_no_python_per_batch_and_prefetches(monkeypatch):
    """Drawing a batch is a gather from the cached token array and a shift, all inside tf.data's graph: the
    Python of the batch function runs once, when tf.data traces it, never per batch nor per epoch, and the
    stream prefetches, so the model never waits for data. (The timing itself, pipeline ms/batch against the
    model's ms/step: `python benchmarks/input_pipeline.py`.)"""
    import tensorflow as tf

    calls = []
    shift = data_lib_batches.shift_for_language_model
    monkeypatch.setattr(data_lib_batches, "shift_for_language_model", lambda rows: calls.append(1) or shift(rows))
    config = tiny_config(max_len=80, batch_size=32)
    tokens = np.random.default_rng(0).integers(1, config.vocab_size, (1_000, config.max_len + 1)).astype(np.int32)
    batches, steps = data_lib_batches.training_batches(tokens, config.batch_size, seed=0)
    drawn = list(batches.take(3 * steps))  # three epochs, each ending in a short batch of 8
    assert len(calls) == 1  # traced once; every batch of every epoch ran as graph
    assert [tuple(x.shape) for x, _ in drawn[steps - 2:steps + 1]] == [(32, 80), (8, 80), (32, 80)]
    np.testing.assert_array_equal(drawn[0][0].numpy()[:, 1:], drawn[0][1].numpy()[:, :-1])  # y is x shifted
    assert type(batches).__name__ == "_PrefetchDataset"  # the last stage: batches are made ahead of the model
    assert b"PyFunc" not in batches._as_serialized_graph().numpy()  # no Python callback anywhere in the stream


def test_auto_follows_the_machine_and_on_forces_bfloat16_with_a_float32_softmax():
    from gpt_keras.runs import precision

    config = tiny_config(mixed_precision="auto")
    try:
        expected = precision.choose_precision(precision.detect_hardware(), "auto", "auto")
        assert configure_precision(config) == expected
        model = compile_gpt(build_gpt(config, expected.output_dtype), config, expected.jit)
        if not precision.detect_hardware().gpus:
            assert model.jit_compile is False  # no XLA on a CPU under TensorFlow
        forced = config.replace(jit_compile="on", mixed_precision="on")
        choice = configure_precision(forced)
        if not precision.detect_hardware().gpus:
            assert choice.policy == "mixed_bfloat16" and choice.output_dtype == "mixed_bfloat16"
        model = compile_gpt(build_gpt(forced, choice.output_dtype), forced, choice.jit)
        assert model.jit_compile is True
        assert model.get_layer("transformer_block").compute_dtype == "bfloat16"
        assert model.get_layer("probabilities").compute_dtype == "bfloat16"  # the matmul
        assert model.outputs[0].dtype == "float32"  # the softmax the loss logs
    finally:
        keras.mixed_precision.set_global_policy("float32")
