"""The functional-API GPT of the lecture: embedding, transformer block(s), softmax over the vocabulary.

The model outputs `[next-token probabilities, attention]` so that generation can show where it looked;
only the first output has a loss. At the lecture's defaults it has exactly 5,809,168 parameters
(embeddings 2,580,480; block 658,688; output layer 2,570,000).
"""

from __future__ import annotations

import keras
from keras import layers

from gpt_keras.core.config import GPTConfig
from gpt_keras.core.fast import NextTokenCrossEntropy, SoftmaxDense
from gpt_keras.core.layers import TokenAndPositionEmbedding, TransformerBlock


def build_gpt(config: GPTConfig = GPTConfig(), dtype: str | None = None, output_dtype: str | None = None
              ) -> keras.Model:
    """Builds (does not compile) the GPT for `config`.

    Inputs are token ids of any length up to `config.max_len`. With several blocks, the attention
    output is the last block's. The output layer is `SoftmaxDense`, the lecture's float32 softmax
    `Dense` computed over all positions at once.

    `dtype` is the dtype policy of every layer: None for Keras' global one (float32 unless set),
    "mixed_bfloat16" or "mixed_float16" for mixed precision (see `gpt_keras.runs.precision`): weights in
    float32, the arithmetic in the low precision, the softmax still in float32. It is saved with the
    model, so a reloaded run computes as it trained. `output_dtype` gives the output layer another
    policy (None: the same).

    Example:
        >>> build_gpt().count_params()
        5809168
    """
    inputs = layers.Input(shape=(None,), dtype="int32", name="tokens")
    x = TokenAndPositionEmbedding(config.max_len, config.vocab_size, config.embedding_dim, dtype=dtype,
                                  name="embedding")(inputs)
    attention = None
    for index in range(config.n_blocks):
        x, attention = TransformerBlock(
            config.n_heads, config.key_dim, config.embedding_dim, config.feed_forward_dim,
            dropout_rate=config.dropout_rate, epsilon=config.layer_norm_epsilon, dtype=dtype,
            name="transformer_block" if index == 0 else f"transformer_block_{index}")(x)
    # The lecture's layers.Dense(vocab_size, activation="softmax"), as one matmul with a float32 softmax (core/fast.py).
    outputs = SoftmaxDense(config.vocab_size, dtype=output_dtype or dtype, name="probabilities")(x)
    return keras.Model(inputs=inputs, outputs=[outputs, attention], name="gpt")


def compile_gpt(model: keras.Model, config: GPTConfig = GPTConfig(), jit_compile: bool | str = "auto",
                metrics=None, loss_scaling: bool = False, optimizer: keras.optimizers.Optimizer | None = None
                ) -> keras.Model:
    """Adam and sparse categorical cross-entropy on the first output only, as in the lecture.

    With `config.recipe` "fast" the loss is `NextTokenCrossEntropy`: the value of the lecture's
    `SparseCategoricalCrossentropy()`, read at the target word only, which on TensorFlow writes the output
    layer's backward pass itself (faster on every backend). With "lecture" it is Keras'
    `SparseCategoricalCrossentropy()` itself, as the lecture's `compile` has it (also in the notebook and
    `benchmarks/lecture_reference.py`). `optimizer` defaults to the lecture's Adam (`gpt-keras train` passes
    `runs.optimizer.training_optimizer`).

    `loss_scaling` wraps Adam in Keras' `LossScaleOptimizer`, which float16 training needs (its small
    gradients would underflow to zero).
    """
    optimizer = optimizer or keras.optimizers.Adam(learning_rate=config.learning_rate)
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=[_loss(config), None],
        metrics=[metrics or [], None] if metrics else None,
        jit_compile=jit_compile,
    )
    return model


def _loss(config: GPTConfig) -> keras.losses.Loss:
    if config.recipe == "lecture":
        return keras.losses.SparseCategoricalCrossentropy()
    return NextTokenCrossEntropy()
