"""Optional reading: the two speed variants the model uses, each doing exactly what the lecture's code does.

- `SoftmaxDense` is the lecture's `layers.Dense(vocab_size, activation="softmax")` as one 2-D matmul over
  all positions (which XLA, on JAX, differentiates much faster than a 3-D one), with the softmax in
  float32 under mixed precision (the loss takes its log).
- `NextTokenCrossEntropy` is the lecture's `SparseCategoricalCrossentropy()` on those probabilities,
  read at the target word only, with its gradient written at the target only.

`tests/test_model.py` and `tests/test_precision.py` check each against the lecture's version. Like nanoGPT's
flash-attention branch, they change the speed, not the model: the lesson reads the same without them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from gpt_keras.core import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftmaxDense(layers.Dense):
    """The lecture's `Dense(units, activation="softmax")` as one 2-D matmul, with the softmax in float32.

    All positions are flattened into one [positions, width] matrix: the same arithmetic, which XLA (JAX)
    differentiates much faster than a matmul over [batch, sequence, width]. Under a mixed dtype policy
    the matmul, most of a step's arithmetic, runs in bfloat16 (or float16) and the logits are cast to
    float32 before the softmax, whose log the loss takes.
    """

    def __init__(self, units, **kwargs):
        kwargs.pop("activation", None)  # always softmax, applied in float32 in `call`
        super().__init__(units, activation=None, **kwargs)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)  # (B, T, C)
        logits = super().call(ops.reshape(inputs, (-1, shape[-1])))  # (B * T, vocab)
        logits = ops.reshape(ops.cast(logits, "float32"), (*shape[:-1], self.units))  # (B, T, vocab)
        return ops.softmax(logits, axis=-1)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.units,), dtype="float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class NextTokenCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy of softmax probabilities, read at the target word only.

    The value of `keras.losses.SparseCategoricalCrossentropy()` on probabilities (-log p(target), p
    floored at Keras' epsilon), with its gradient written at the target only: faster than Keras' loss,
    which calls TensorFlow's fused softmax cross-entropy kernel or, on JAX, logs all 10,000 probabilities.
    """

    def __init__(self, name="next_token_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return target_negative_log(y_pred, ops.cast(y_true, "int32"))


def target_negative_log(probabilities, targets):
    """-log probabilities[..., target] for [..., vocabulary] probabilities and [...] int targets; its
    gradient is -1 / p(target) at the target and 0 elsewhere, written without scattering a gather's."""
    epsilon = keras.config.epsilon()

    @ops.custom_gradient
    def negative_log(p):
        picked = ops.take_along_axis(p, ops.expand_dims(targets, -1), axis=-1)[..., 0]
        picked = ops.clip(picked, epsilon, 1.0 - epsilon)

        def grad(*args, upstream=None):
            # TensorFlow passes the upstream gradient as an argument, JAX by keyword: take either
            upstream = args[0] if upstream is None else upstream
            at_target = ops.one_hot(targets, ops.shape(p)[-1], dtype=p.dtype)
            return at_target * ops.expand_dims(-upstream / picked, -1)

        return -ops.log(picked), grad

    return negative_log(probabilities)
