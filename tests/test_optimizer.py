"""`gpt-keras train`'s optimizer: `FusedAdam`, Keras' Adam in TensorFlow's fused kernel, against Keras' Adam."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gpt_keras.runs.optimizer import FusedAdam
from gpt_keras.runs.train import build_model
from tests.conftest import tiny_config


def _adam_steps(optimizer, gradients_per_step, shape=(6, 3)):
    """The weights after `optimizer` applies each step's gradient to one variable starting at ones."""
    variable = keras.Variable(np.ones(shape, "float32"))
    for gradient in gradients_per_step:
        optimizer.apply([gradient], [variable])
    return np.asarray(variable)


def test_fused_adam_updates_as_keras_adam():
    """Training's optimizer (`FusedAdam`) is Keras' Adam with the lecture's settings: the same weights
    after several steps of dense gradients, of either sign and scale."""
    rng = np.random.default_rng(0)
    gradients = [(rng.normal(size=(6, 3)) * 10.0 ** rng.integers(-3, 2)).astype("float32") for _ in range(5)]
    fused = _adam_steps(FusedAdam(1e-3), gradients)
    np.testing.assert_allclose(fused, _adam_steps(keras.optimizers.Adam(1e-3), gradients), rtol=0, atol=1e-6)
    assert np.abs(fused - 1.0).min() > 1e-4  # every weight moved
    assert isinstance(build_model(tiny_config(), strategy=None).optimizer, FusedAdam)  # what `gpt-keras train` compiles
    lecture_recipe = tiny_config(recipe="lecture")  # the lecture recipe keeps Keras' own Adam
    assert type(build_model(lecture_recipe, strategy=None).optimizer) is keras.optimizers.Adam


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="only TensorFlow gives slices (JAX's are dense)")
def test_fused_adam_sums_a_word_s_slices_before_squaring():
    """The token embedding's gradient comes as one slice per occurrence: `FusedAdam` steps as Adam on the
    summed (dense) gradient, as Keras 2's Adam (the book's) and JAX do; Keras 3's Adam on TensorFlow squares
    each slice instead, which is the difference docs/lecture-differences.md explains."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    values, rows = rng.normal(size=(4, 3)).astype("float32"), np.array([1, 1, 1, 4])  # row 1 three times
    slices = tf.IndexedSlices(tf.constant(values), tf.constant(rows), tf.constant([6, 3]))
    dense = tf.convert_to_tensor(slices)  # the three slices of row 1 summed
    fused = _adam_steps(FusedAdam(1e-3), [slices, slices])
    np.testing.assert_allclose(fused, _adam_steps(keras.optimizers.Adam(1e-3), [dense, dense]), atol=1e-6)
    assert np.abs(_adam_steps(keras.optimizers.Adam(1e-3), [slices, slices]) - fused)[1].max() > 1e-4
