"""Optional reading: `SoftmaxDense`, the lecture's `Dense(vocab_size, activation="softmax")`, and
`NextTokenCrossEntropy`, its `SparseCategoricalCrossentropy()` writing the output layer's backward pass: like
nanoGPT's flash-attention branch they change the speed, not the model (tests/test_model.py checks each)."""

from __future__ import annotations

import keras
from keras import layers, ops

from gpt_keras.core import PACKAGE

OPERANDS_ATTRIBUTE = "gpt_keras_operands"  # carries the output layer's operands from SoftmaxDense to the loss


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftmaxDense(layers.Dense):
    """The lecture's `Dense(units, activation="softmax")` as one 2-D matmul (which XLA differentiates much faster
    than a 3-D one), in bfloat16 or float16 under mixed precision, the softmax in float32. The probabilities
    carry the matmul's operands to the loss (`attach_operands`)."""

    def __init__(self, units, **kwargs):
        kwargs.pop("activation", None)  # always softmax, applied in float32 in `call`
        super().__init__(units, activation=None, **kwargs)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)  # (B, T, C)
        flat = ops.reshape(inputs, (-1, shape[-1]))  # (B * T, C)
        kernel, bias = ops.cast(self.kernel, self.compute_dtype), ops.cast(self.bias, self.compute_dtype)
        logits = ops.matmul(flat, kernel) + bias  # (B * T, vocab), in the compute dtype
        float32_logits = ops.reshape(ops.cast(logits, "float32"), (*shape[:-1], self.units))  # (B, T, vocab)
        return attach_operands(ops.softmax(float32_logits, axis=-1), (flat, kernel, bias))

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.units,), dtype="float32")


def attach_operands(probabilities, operands):
    """On TensorFlow, the probabilities carrying `operands` (inputs [positions, width], kernel, bias) as their
    attribute `OPERANDS_ATTRIBUTE`, so the loss writes the output layer's backward pass itself: through the
    softmax's it takes several float32 [positions, vocabulary] passes and a slow layout for the kernel's
    gradient. JAX arrays take no attributes, and XLA fuses those passes and picks its layouts anyway."""
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
    only below Keras' epsilon, where the clip would stop it)."""
    epsilon = keras.config.epsilon()
    flat_targets = ops.reshape(targets, (-1,))  # (P,)

    @ops.custom_gradient
    def cross_entropy(inputs, kernel, bias):
        picked = ops.take_along_axis(probabilities, ops.expand_dims(targets, -1), axis=-1)[..., 0]

        def grad(*args, upstream=None):  # TensorFlow passes the upstream gradient as an argument, JAX by keyword
            weights = ops.reshape(ops.cast(args[0] if upstream is None else upstream, "float32"), (-1, 1))  # (P, 1)
            return output_layer_gradients(weights, probabilities, (inputs, kernel, bias), flat_targets)

        return -ops.log(ops.clip(picked, epsilon, 1.0 - epsilon)), grad

    return cross_entropy(*operands)


def output_layer_gradients(weights, probabilities, operands, targets):
    """d inputs, d kernel, d bias for logits' gradient weights [P, 1] * (p - onehot(targets)), never written out:
    p is cast once, the weights go on the [P, C] side, the one-hot part is a gather and a segment sum."""
    inputs, kernel, bias = operands  # (P, C), (C, V), (V,)
    vocabulary = ops.shape(kernel)[-1]
    p32 = ops.reshape(probabilities, (-1, vocabulary))  # (P, V), float32
    p = ops.cast(p32, kernel.dtype)  # (P, V), the one full-size copy
    weighted_inputs = ops.cast(inputs, "float32") * weights  # (P, C)
    through_p = ops.cast(ops.matmul(p, ops.transpose(kernel)), "float32")  # (P, C)
    at_targets = ops.cast(ops.take(ops.transpose(kernel), targets, axis=0), "float32")  # (P, C)
    d_inputs = weights * (through_p - at_targets)  # weights * (p - onehot) @ kernel.T
    # d kernel = weighted_inputs.T @ (p - onehot) as (p.T @ weighted_inputs).T, the layout oneDNN runs fastest
    onehot_part = ops.segment_sum(weighted_inputs, targets, vocabulary)  # (V, C)
    through_p_kernel = ops.matmul(ops.transpose(p), ops.cast(weighted_inputs, inputs.dtype))  # (V, C)
    d_kernel = ops.transpose(ops.cast(through_p_kernel, "float32") - onehot_part)
    # d bias = weights.T @ (p - onehot), in float32: rounded, a mean's equal weights would scale it all
    d_bias = ops.matmul(ops.transpose(weights), p32)[0] - ops.segment_sum(weights[:, 0], targets, vocabulary)
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
