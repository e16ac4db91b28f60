"""Training throughput: step functions traced once for all epochs, reviews vectorized once, an input
pipeline far faster than the model, and XLA / mixed precision off on a CPU unless asked for."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

import gpt_keras.runs.train as train_module
from gpt_keras.core import data as data_lib_core
from gpt_keras.runs import batches as data_lib_batches
from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.runs.train import configure_precision, train
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


class EpochCounts(keras.callbacks.Callback):
    """Records, at the end of each epoch, how many times each step function has been traced so far."""

    def __init__(self, traces):
        super().__init__()
        self.traces = traces
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch.append(dict(self.traces))


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


def test_the_input_pipeline_keeps_far_ahead_of_the_model():
    """Drawing a batch (gather from the cached token array, shift, prefetch) costs a small fraction
    of a training step even for the smallest model, so the model never waits for data."""
    config = tiny_config(max_len=80, batch_size=32)
    tokens = np.random.default_rng(0).integers(1, config.vocab_size, (4_000, config.max_len + 1)).astype(np.int32)
    batches, steps = data_lib_batches.training_batches(tokens, config.batch_size, seed=0)
    iterator = iter(batches)
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    pipeline = (time.perf_counter() - start) / steps

    model = compile_gpt(build_gpt(config), config, jit_compile=False)
    step_times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            step_times.append(time.perf_counter() - self.start)

    model.fit(batches, epochs=1, steps_per_epoch=30, verbose=0, callbacks=[Timer()], shuffle=False)
    step = float(np.median(step_times[5:]))
    assert pipeline < 0.2 * step, f"pipeline {pipeline * 1e3:.2f} ms/batch vs model {step * 1e3:.2f} ms/step"


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
