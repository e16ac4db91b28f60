"""The optimizer `gpt-keras train` compiles with: Keras' Adam for the lecture recipe, `FusedAdam` for the fast one.

In its own small module because a saved run names `FusedAdam`: `import gpt_keras` registers it with Keras
(with the lesson's layers), so `keras.saving.load_model` finds it. It imports Keras alone at the top (that
registration runs while Keras itself is first imported); TensorFlow only when a step runs.
"""

from __future__ import annotations

import keras
from keras import ops

from gpt_keras.core import PACKAGE


def training_optimizer(config) -> keras.optimizers.Optimizer:
    """The lecture's `"adam"` for `config.recipe` "lecture"; the same update in fused kernels otherwise."""
    if config.recipe == "lecture":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
    return FusedAdam(learning_rate=config.learning_rate)


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
