"""TensorBoard's per-batch curve is the loss of each batch, not Keras' running mean of the epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.runs.monitoring import BatchLossSummary
from tests.conftest import tiny_config

tf = pytest.importorskip("tensorflow")

REVIEWS, BATCH = 70, 16  # 5 batches an epoch, the last one short (6 reviews)


class WeightsBeforeEachBatch(keras.callbacks.Callback):
    """Keeps the weights each batch starts from, so its loss can be recomputed outside fit."""

    def __init__(self):
        super().__init__()
        self.weights, self.running_means = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.weights.append(self.model.get_weights())

    def on_train_batch_end(self, batch, logs=None):
        self.running_means.append(float(logs["loss"]))


def _logged(log_dir, tag="batch_loss"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in accumulator.Tensors(tag)]


def test_each_logged_point_is_the_loss_of_its_own_batch(tmp_path):
    config = tiny_config(dropout_rate=0.0, vocab_size=50, max_len=12)
    keras.utils.set_random_seed(0)
    model = compile_gpt(build_gpt(config), config, jit_compile=False)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (REVIEWS, config.max_len + 1)).astype("int32")
    x, y = tokens[:, :-1], tokens[:, 1:]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    recorder = WeightsBeforeEachBatch()
    batch_losses = BatchLossSummary(tmp_path / "train", initial_step=7)
    model.fit(dataset, epochs=2, callbacks=[recorder, batch_losses], verbose=0, shuffle=False)

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    starts = list(range(0, REVIEWS, BATCH)) * 2  # two epochs, same order
    true_losses = []
    for weights, start in zip(recorder.weights, starts):
        model.set_weights(weights)
        probabilities = model(x[start:start + BATCH], training=False)[0]
        true_losses.append(float(loss_fn(y[start:start + BATCH], probabilities)))

    assert len(true_losses) == 10
    np.testing.assert_allclose(batch_losses.losses, true_losses, atol=1e-5)
    logged = _logged(tmp_path / "train")
    assert [step for step, _ in logged] == list(range(8, 18))  # continues from initial_step
    np.testing.assert_allclose([value for _, value in logged], true_losses, atol=1e-5)
    assert batch_losses.global_step == 17
    # The running mean Keras reports is a different curve: it would have failed the comparison above.
    assert np.max(np.abs(np.array(recorder.running_means) - true_losses)) > 1e-3
