"""The lesson: what the lecture teaches, in the order data flows.

Read `config`, `data`, `layers`, `model`, then `sampling`, `generation` and `callbacks`
(`TextGenerator`). Imports only keras, numpy and the standard library (TensorFlow only inside
`data`, for `TextVectorization` and `tf.data`).
"""
