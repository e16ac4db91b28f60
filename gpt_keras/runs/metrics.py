"""The metric a run logs beside the loss: perplexity over the real words, padding left out.

In its own small module because a saved model that was compiled with it names it: `import gpt_keras`
registers it with Keras (with the lesson's layers), so `keras.saving.load_model` finds it. It imports
Keras alone: that registration runs while Keras itself is first imported.
"""

from __future__ import annotations

import keras

from gpt_keras.core import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class RealTokenPerplexity(keras.metrics.Metric):
    """exp(mean negative log-likelihood) over the real tokens: padding (id 0) is left out.

    The loss averages over every position, padding included, which the model learns to predict
    almost for free; the perplexity logged is the honest figure, per word the reader sees
    (keras-hub's `Perplexity(mask_token_id=0)` computes the same).
    """

    def __init__(self, name: str = "perplexity", mask_id: int = 0, **kwargs):
        super().__init__(name=name, **kwargs)
        self.mask_id = mask_id  # the padding id (core.data.PAD_ID), as keras-hub's `mask_token_id`
        self.total_nll = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total_nll")
        self.tokens = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="tokens")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        probabilities = keras.ops.cast(y_pred, "float32")
        picked = keras.ops.take_along_axis(probabilities, keras.ops.expand_dims(y_true, -1), axis=-1)[..., 0]
        nll = -keras.ops.log(keras.ops.maximum(picked, keras.backend.epsilon()))
        real = keras.ops.cast(keras.ops.not_equal(y_true, self.mask_id), "float32")
        if sample_weight is not None:
            real = real * keras.ops.cast(sample_weight, "float32")
        self.total_nll.assign_add(keras.ops.sum(nll * real))
        self.tokens.assign_add(keras.ops.sum(real))

    def result(self):
        return keras.ops.exp(self.total_nll / keras.ops.maximum(self.tokens, 1.0))

    def reset_state(self):
        self.total_nll.assign(0.0)
        self.tokens.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "mask_id": self.mask_id}
