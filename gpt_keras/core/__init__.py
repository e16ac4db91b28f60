"""The lesson: what the lecture teaches, in the order data flows.

Read `config`, `data`, `layers`, `model`, then `sampling`, `generation` and `callbacks`
(`TextGenerator`). `fast`, `backend` and `checks` are optional reading: faster versions of the
lecture's output layer and loss, the decoder's compilation per backend, the limits of every value.
Imports only keras, numpy and the standard library (TensorFlow inside `data`, for `TextVectorization`
and `tf.data`; TensorFlow or JAX inside `backend`).
"""

PACKAGE = "gpt_keras"  # the name the layers, the loss and the metric are registered under with Keras
