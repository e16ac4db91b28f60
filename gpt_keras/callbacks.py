"""The lecture's callback where the lecture imports it from: `from gpt_keras.callbacks import TextGenerator`.

It is defined in the lesson core, `gpt_keras.core.callbacks`; the callbacks that manage a training run
(checkpoints, TensorBoard, the NaN guard) are in `gpt_keras.runs.monitoring`.
"""

from gpt_keras.core.callbacks import TextGenerator

__all__ = ["TextGenerator"]
