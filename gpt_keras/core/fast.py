"""Optional reading: the two speed variants the model uses, each doing exactly what the lecture's code does.

`SoftmaxDense` is the lecture's `Dense(vocab_size, activation="softmax")`; `NextTokenCrossEntropy` its
`SparseCategoricalCrossentropy()`, with the gradient written where it is cheapest. `tests/test_model.py` and
`tests/test_precision.py` check each against the lecture's version. Like nanoGPT's flash-attention branch,
they change the speed, not the model: the lesson reads the same without them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from gpt_keras.core import PACKAGE

LOGITS_ATTRIBUTE = "gpt_keras_logits"  # carries the logits from SoftmaxDense to the loss


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftmaxDense(layers.Dense):
    """The lecture's `Dense(units, activation="softmax")` as one 2-D matmul, with the softmax in float32.

    One [positions, width] matmul is the same arithmetic, which XLA (JAX) differentiates much faster than a
    3-D one; under mixed precision it runs in bfloat16 (or float16), and the softmax, whose log the loss
    takes, in float32. The probabilities carry their logits to the loss (`attach_logits`).
    """

    def __init__(self, units, **kwargs):
        kwargs.pop("activation", None)  # always softmax, applied in float32 in `call`
        super().__init__(units, activation=None, **kwargs)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)  # (B, T, C)
        logits = super().call(ops.reshape(inputs, (-1, shape[-1])))  # (B * T, vocab), in the compute dtype
        float32_logits = ops.reshape(ops.cast(logits, "float32"), (*shape[:-1], self.units))  # (B, T, vocab)
        return attach_logits(ops.softmax(float32_logits, axis=-1), logits)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.units,), dtype="float32")


def attach_logits(probabilities, logits):
    """On TensorFlow, the probabilities carrying `logits` (the matmul's [positions, vocabulary] output, in
    the compute dtype) as their attribute `LOGITS_ATTRIBUTE`, so the loss's gradient is written there once.

    Why: the gradient at the logits is `p - onehot`, one pass; through the softmax's own backward pass it
    is several passes over float32 [positions, vocabulary] values, most of a CPU step outside the matmuls
    (the lecture's loss gets its softmax's logits the same way inside Keras). JAX arrays take no
    attributes, and XLA fuses that backward pass anyway: there the probabilities are returned alone.
    """
    if keras.backend.backend() == "tensorflow":
        setattr(probabilities, LOGITS_ATTRIBUTE, logits)
    return probabilities


@keras.saving.register_keras_serializable(package=PACKAGE)
class NextTokenCrossEntropy(keras.losses.Loss):
    """The value of `keras.losses.SparseCategoricalCrossentropy()` on probabilities (-log p(target), p floored
    at Keras' epsilon), with its gradient written at the logits `SoftmaxDense` attached (`p - onehot`,
    `target_cross_entropy`), else at the target's probability (`target_negative_log`): faster than Keras'
    loss, which runs a second softmax on TensorFlow or logs all 10,000 probabilities on JAX.
    """

    def __init__(self, name="next_token_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        targets = ops.cast(y_true, "int32")
        logits = getattr(y_pred, LOGITS_ATTRIBUTE, None)
        if logits is None:
            return target_negative_log(y_pred, targets)
        return target_cross_entropy(y_pred, logits, targets)


def target_cross_entropy(probabilities, logits, targets):
    """-log probabilities[..., target], differentiated at `logits` (whose softmax `probabilities` is).

    The gradient is written once: upstream * probabilities cast to the logits' dtype, then -upstream added
    at each target; no one-hot, no pass through the softmax, no float32 copy. It is the gradient of
    TensorFlow's fused softmax cross-entropy, which the lecture's loss calls (it differs from the clipped
    -log p's only where p(target) is below Keras' epsilon, where the clip would stop the gradient).
    """
    epsilon = keras.config.epsilon()
    vocabulary = ops.shape(probabilities)[-1]

    @ops.custom_gradient
    def cross_entropy(logits):
        picked = ops.take_along_axis(probabilities, ops.expand_dims(targets, -1), axis=-1)[..., 0]

        def grad(*args, upstream=None):
            # TensorFlow passes the upstream gradient as an argument, JAX by keyword: take either
            upstream = args[0] if upstream is None else upstream
            weights = ops.reshape(ops.cast(upstream, probabilities.dtype), (-1, 1))  # one per position
            rows = ops.cast(ops.reshape(probabilities, (-1, vocabulary)) * weights, logits.dtype)
            positions = ops.arange(ops.shape(rows)[0], dtype="int32")
            at_target = ops.stack([positions, ops.reshape(targets, (-1,))], axis=1)
            return ops.scatter_update(rows, at_target, ops.cast(-weights[:, 0], logits.dtype), reduction="add")

        return -ops.log(ops.clip(picked, epsilon, 1.0 - epsilon)), grad

    return cross_entropy(logits)


def target_negative_log(probabilities, targets):
    """-log probabilities[..., target]; its gradient, -1 / p(target) at the target, written directly."""
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
