"""Optional reading: `SoftmaxDense`, the lecture's `Dense(vocab_size, activation="softmax")`, and
`NextTokenCrossEntropy`, its `SparseCategoricalCrossentropy()` writing the output layer's backward pass: like
nanoGPT's flash-attention branch they change the speed, not the model (tests/test_model.py checks each)."""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers, ops

from gpt_keras.core import PACKAGE

OPERANDS_ATTRIBUTE = "gpt_keras_operands"  # carries the output layer's operands from SoftmaxDense to the loss


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftmaxDense(layers.Dense):
    """The lecture's `Dense(units, activation="softmax")` as one 2-D matmul (which XLA differentiates much faster
    than a 3-D one), in bfloat16 or float16 under mixed precision, the softmax in float32: in training, where
    the backend's softmax in the compute dtype computes in float32 (`softmax_rounds_once`), its result rounded
    once, as the backward pass reads it. The probabilities carry the matmul's operands to the loss."""

    def __init__(self, units, **kwargs):
        kwargs.pop("activation", None)  # always softmax, applied in float32 in `call`
        super().__init__(units, activation=None, **kwargs)
        # Training may keep the probabilities in the compute dtype where the softmax still computes in float32
        self.rounds_in_training = keras.backend.backend() == "tensorflow" and softmax_rounds_once(self.compute_dtype)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)  # (B, T, C)
        flat = ops.reshape(inputs, (-1, shape[-1]))  # (B * T, C)
        kernel, bias = ops.cast(self.kernel, self.compute_dtype), ops.cast(self.bias, self.compute_dtype)
        # (B * T, vocab), in the compute dtype; generation's few positions would pay more to copy the kernel
        logits = matmul_with_bias(flat, kernel, bias) if training else ops.matmul(flat, kernel) + bias
        if training and self.rounds_in_training:  # float32 math, the result rounded to the compute dtype once
            rounded = ops.softmax(logits, axis=-1)
            probabilities = ops.cast(rounded, "float32")
        else:
            rounded, probabilities = None, ops.softmax(ops.cast(logits, "float32"), axis=-1)
        probabilities = ops.reshape(probabilities, (*shape[:-1], self.units))  # (B, T, vocab)
        return attach_operands(probabilities, (flat, kernel, bias, rounded))

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.units,), dtype="float32")


def matmul_with_bias(inputs, kernel, bias):
    """inputs @ kernel + bias as one matmul, the bias a last row of the kernel against a column of ones: at a
    training batch's thousands of positions, TensorFlow would fuse a bias added apart into a slower oneDNN matmul."""
    ones = ops.ones((ops.shape(inputs)[0], 1), inputs.dtype)
    return ops.matmul(ops.concatenate([inputs, ones], axis=1), ops.concatenate([kernel, bias[None]], axis=0))


@functools.cache
def softmax_rounds_once(dtype: str) -> bool:
    """Whether softmax in `dtype` computes in float32 and rounds once, as oneDNN's does on a CPU (one that sums in
    bfloat16 gives 10,000 equal logits 1/256 each): then training takes the probabilities the backward pass
    multiplies (p - onehot, in `dtype`) from it, without float32 logits and probabilities at [positions, vocabulary]."""
    if dtype == "float32":
        return False
    logits = np.random.default_rng(0).normal(size=(2, 10_000)) * [[1.0], [0.0]]  # random, and all equal
    logits = ops.convert_to_numpy(ops.cast(ops.cast(logits, dtype), "float32")).astype("float64")
    exact = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # no overflow: |logits| < 10
    got = ops.convert_to_numpy(ops.cast(ops.softmax(ops.cast(logits, dtype), axis=-1), "float32"))
    return bool(np.allclose(got, exact, rtol=2.0 ** -7, atol=0.0))


def attach_operands(probabilities, operands):
    """On TensorFlow, the probabilities carrying `operands` (inputs [positions, width], kernel, bias, and the
    probabilities [positions, vocabulary] in the compute dtype or None) as their attribute `OPERANDS_ATTRIBUTE`,
    so the loss writes the output layer's backward pass itself: through the softmax's it takes several float32
    [positions, vocabulary] passes and a slow layout for the kernel's gradient. JAX arrays take no attributes,
    and XLA fuses those passes and picks its layouts anyway."""
    if keras.backend.backend() == "tensorflow":
        setattr(probabilities, OPERANDS_ATTRIBUTE, operands)
    return probabilities


@keras.saving.register_keras_serializable(package=PACKAGE)
class NextTokenCrossEntropy(keras.losses.Loss):
    """The value of `keras.losses.SparseCategoricalCrossentropy()` on probabilities (-log p(target), p floored at
    Keras' epsilon), its gradient written through the output layer `SoftmaxDense` attached, else at the
    target's probability: faster than Keras' loss, which runs a second softmax (TensorFlow) or logs them all."""

    def __init__(self, name="next_token_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        targets = ops.cast(y_true, "int32")
        operands = getattr(y_pred, OPERANDS_ATTRIBUTE, None)
        if operands is None:
            return target_negative_log(y_pred, targets)
        return output_layer_cross_entropy(y_pred, operands, targets)


def output_layer_cross_entropy(probabilities, operands, targets):
    """-log probabilities[..., target], differentiated at the operands (inputs, kernel, bias) of which
    `probabilities` is softmax(inputs @ kernel + bias), with the logits' gradient upstream * (p - onehot):
    TensorFlow's fused softmax cross-entropy's, which the lecture's loss calls (the clipped -log p's differs
    only below Keras' epsilon, where the clip would stop it). The fourth operand, the probabilities rounded to
    the compute dtype, is read instead where the output layer made it (training, `softmax_rounds_once`)."""
    epsilon = keras.config.epsilon()
    inputs, kernel, bias, rounded = operands
    flat_targets = ops.reshape(targets, (-1,))  # (P,)
    p = ops.reshape(probabilities, (-1, ops.shape(kernel)[-1])) if rounded is None else rounded  # (P, V)

    @ops.custom_gradient
    def cross_entropy(inputs, kernel, bias):
        picked = ops.take_along_axis(p, ops.expand_dims(flat_targets, -1), axis=-1)  # (P, 1)
        picked = ops.reshape(ops.cast(picked, "float32"), ops.shape(targets))

        def grad(*args, upstream=None):  # TensorFlow passes the upstream gradient as an argument, JAX by keyword
            weights = ops.reshape(ops.cast(args[0] if upstream is None else upstream, "float32"), (-1, 1))  # (P, 1)
            return output_layer_gradients(weights, ops.cast(p, kernel.dtype), (inputs, kernel, bias), flat_targets)

        return -ops.log(ops.clip(picked, epsilon, 1.0 - epsilon)), grad

    return cross_entropy(inputs, kernel, bias)


def output_layer_gradients(weights, p, operands, targets):
    """d inputs, d kernel, d bias for logits' gradient weights [P, 1] * (p - onehot(targets)), never written out:
    p [P, V] is in the kernel's dtype, the weights go on the [P, C] side, the one-hot part is a gather and a
    segment sum. Each matmul rounds its p part before the one-hot part comes off (in bfloat16, up to 2^-8 of it:
    a tenth of the batch's sampling noise in the gradient of even the commonest word's bias, padding's)."""
    inputs, kernel, bias = operands  # (P, C), (C, V), (V,)
    vocabulary = ops.shape(kernel)[-1]
    weighted_inputs = ops.cast(inputs, "float32") * weights  # (P, C)
    through_p = ops.cast(ops.matmul(p, ops.transpose(kernel)), "float32")  # (P, C)
    at_targets = ops.cast(ops.take(ops.transpose(kernel), targets, axis=0), "float32")  # (P, C)
    d_inputs = weights * (through_p - at_targets)  # weights * (p - onehot) @ kernel.T
    # d kernel = weighted_inputs.T @ (p - onehot) as (p.T @ weighted_inputs).T, the layout oneDNN runs fastest
    onehot_part = ops.segment_sum(weighted_inputs, targets, vocabulary)  # (V, C)
    through_p_kernel = ops.matmul(ops.transpose(p), ops.cast(weighted_inputs, inputs.dtype))  # (V, C)
    d_kernel = ops.transpose(ops.cast(through_p_kernel, "float32") - onehot_part)
    # d bias = weights.T @ (p - onehot), both parts with the weights rounded alike (else a mean's would not cancel)
    rounded_weights = ops.cast(weights, p.dtype)  # (P, 1)
    through_p_bias = ops.cast(ops.matmul(ops.transpose(rounded_weights), p)[0], "float32")
    d_bias = through_p_bias - ops.segment_sum(ops.cast(rounded_weights[:, 0], "float32"), targets, vocabulary)
    return (ops.cast(d_inputs, inputs.dtype), ops.cast(d_kernel, kernel.dtype), ops.cast(d_bias, bias.dtype))


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
