"""Optional reading: the speed variants the model uses, each doing exactly what the lecture's code does.

`SoftmaxDense` is the lecture's `Dense(vocab_size, activation="softmax")`; `NextTokenCrossEntropy` its
`SparseCategoricalCrossentropy()`, with the output layer's backward pass written by the loss; `FusedAdam`
its `"adam"`, one TensorFlow kernel per variable. `tests/test_model.py` and `tests/test_precision.py` check
each against the lecture's version. Like nanoGPT's flash-attention branch, they change the speed, not the
model: the lesson reads the same without them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from gpt_keras.core import PACKAGE

OPERANDS_ATTRIBUTE = "gpt_keras_operands"  # carries the output layer's operands from SoftmaxDense to the loss


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftmaxDense(layers.Dense):
    """The lecture's `Dense(units, activation="softmax")` as one 2-D matmul, with the softmax in float32.

    One [positions, width] matmul is the same arithmetic, which XLA (JAX) differentiates much faster than a
    3-D one; under mixed precision it runs in bfloat16 (or float16), and the softmax, whose log the loss
    takes, in float32. The probabilities carry the matmul's operands to the loss (`attach_operands`).
    """

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
    """On TensorFlow, the probabilities carrying `operands` (the matmul's inputs [positions, width], kernel
    and bias, in the compute dtype) as their attribute `OPERANDS_ATTRIBUTE`, so that the loss writes the
    output layer's backward pass itself (`output_layer_cross_entropy`).

    Why: through the softmax's own backward pass the gradient takes several passes over float32 [positions,
    vocabulary] values, and TensorFlow multiplies the kernel's gradient in a slow memory layout: together
    most of a CPU step outside the matmuls. JAX arrays take no attributes, and XLA fuses those passes and
    picks its layouts anyway: there the probabilities are returned alone.
    """
    if keras.backend.backend() == "tensorflow":
        setattr(probabilities, OPERANDS_ATTRIBUTE, operands)
    return probabilities


@keras.saving.register_keras_serializable(package=PACKAGE)
class NextTokenCrossEntropy(keras.losses.Loss):
    """The value of `keras.losses.SparseCategoricalCrossentropy()` on probabilities (-log p(target), p floored
    at Keras' epsilon), with its gradient written through the output layer whose operands `SoftmaxDense`
    attached (`output_layer_cross_entropy`), else at the target's probability (`target_negative_log`):
    faster than Keras' loss, which runs a second softmax on TensorFlow or logs all 10,000 probabilities on JAX.
    """

    def __init__(self, name="next_token_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        targets = ops.cast(y_true, "int32")
        operands = getattr(y_pred, OPERANDS_ATTRIBUTE, None)
        if operands is None:
            return target_negative_log(y_pred, targets)
        return output_layer_cross_entropy(y_pred, operands, targets)


def output_layer_cross_entropy(probabilities, operands, targets):
    """-log probabilities[..., target], differentiated at the output layer's operands (inputs, kernel, bias),
    whose softmax(inputs @ kernel + bias) `probabilities` is.

    The logits' gradient is upstream * (p - onehot(target)), the gradient of TensorFlow's fused softmax
    cross-entropy, which the lecture's loss calls (it differs from the clipped -log p's only where p(target)
    is below Keras' epsilon, where the clip would stop the gradient). It is never written out: the matmuls
    take p once, cast to the compute dtype, with the upstream weights moved onto the small [positions,
    width] side, and the one-hot part is a gather and a segment sum of [positions, width] values.
    """
    epsilon = keras.config.epsilon()
    flat_targets = ops.reshape(targets, (-1,))  # (P,)

    @ops.custom_gradient
    def cross_entropy(inputs, kernel, bias):
        picked = ops.take_along_axis(probabilities, ops.expand_dims(targets, -1), axis=-1)[..., 0]

        def grad(*args, upstream=None):
            # TensorFlow passes the upstream gradient as an argument, JAX by keyword: take either
            upstream = args[0] if upstream is None else upstream
            weights = ops.reshape(ops.cast(upstream, "float32"), (-1, 1))  # (P, 1): one per position
            return output_layer_gradients(weights, probabilities, (inputs, kernel, bias), flat_targets)

        return -ops.log(ops.clip(picked, epsilon, 1.0 - epsilon)), grad

    return cross_entropy(*operands)


def output_layer_gradients(weights, probabilities, operands, targets):
    """The gradients of the inputs, kernel and bias whose logits have the gradient weights * (p - onehot).

    `weights` [positions, 1] float32, `probabilities` [..., vocabulary] float32, `targets` [positions].
    """
    inputs, kernel, bias = operands  # (P, C), (C, V), (V,)
    vocabulary = ops.shape(kernel)[-1]
    p = ops.cast(ops.reshape(probabilities, (-1, vocabulary)), kernel.dtype)  # (P, V), the one full-size copy
    weighted_inputs = ops.cast(ops.cast(inputs, "float32") * weights, inputs.dtype)  # (P, C)
    # d inputs = weights * (p - onehot) @ kernel.T
    through_p = ops.cast(ops.matmul(p, ops.transpose(kernel)), "float32")  # (P, C)
    at_targets = ops.cast(ops.take(ops.transpose(kernel), targets, axis=0), "float32")  # (P, C)
    d_inputs = weights * (through_p - at_targets)
    # d kernel = weighted_inputs.T @ (p - onehot), multiplied as (p.T @ weighted_inputs).T: TensorFlow's matmul
    # of a transposed [positions, width] by [positions, vocabulary] runs at two thirds of the speed on a CPU
    onehot_part = ops.segment_sum(ops.cast(weighted_inputs, "float32"), targets, vocabulary)  # (V, C)
    d_kernel = ops.transpose(ops.cast(ops.matmul(ops.transpose(p), weighted_inputs), "float32") - onehot_part)
    # d bias = weights.T @ (p - onehot), in float32: the weights of a mean are all alike, and rounded they would
    # scale the whole bias gradient
    d_bias = ops.matmul(ops.transpose(weights), ops.reshape(probabilities, (-1, vocabulary)))[0] - (
        ops.segment_sum(weights[:, 0], targets, vocabulary))
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(keras.optimizers.Optimizer):
    """Keras' `Adam` (the lecture's `"adam"`: the same defaults, moments and update), each variable updated on
    TensorFlow by its fused `ApplyAdam` kernel, one pass over the weights and moments where Keras' Adam runs a
    dozen operations; on other backends by the same arithmetic in `keras.ops`.

    One difference, on purpose: a gradient that arrives as slices (the token embedding's, one slice per
    occurrence of a word in the batch) is summed before it is squared, as in Keras 2 (the book's), JAX and
    the Adam paper; Keras 3's Adam on TensorFlow squares each slice and adds the squares.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums, self.velocities = self.add_optimizer_variables(variables, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)  # Keras' documented way from a variable to its slots
        m, v = self.momentums[index], self.velocities[index]
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        lr, epsilon = ops.cast(learning_rate, dtype), ops.cast(self.epsilon, dtype)
        gradient = ops.convert_to_tensor(ops.cast(gradient, dtype))  # slices summed into a dense gradient
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1 ** step,
                                         beta2_power=beta_2 ** step, lr=lr, beta1=beta_1, beta2=beta_2,
                                         epsilon=epsilon, grad=gradient)
            return
        alpha = lr * ops.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
        self.assign_add(m, (gradient - m) * (1 - beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - beta_2))
        self.assign_sub(variable, m * alpha / (ops.sqrt(v) + epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
