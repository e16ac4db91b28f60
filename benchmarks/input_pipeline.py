"""The input pipeline against the model: milliseconds to draw a batch and to train a step.

The figure the old timing test asserted (the pipeline under a fifth of a step, even for the smallest model)
is printed here instead, so that no test depends on a machine's load; tests/test_throughput.py checks by
count what makes the pipeline cheap (no Python per batch, prefetch). Run: `python benchmarks/input_pipeline.py`.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from gpt_keras.core.config import GPTConfig
from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.runs.batches import training_batches


def measure(rows: int = 4_000, steps: int = 30, max_len: int = 80, batch_size: int = 32) -> dict[str, float]:
    config = GPTConfig.preset("tiny", vocab_size=400, max_len=max_len, embedding_dim=32, key_dim=16,
                              feed_forward_dim=64, batch_size=batch_size)
    tokens = np.random.default_rng(0).integers(1, config.vocab_size, (rows, config.max_len + 1)).astype(np.int32)
    batches, epoch_steps = training_batches(tokens, config.batch_size, seed=0)
    iterator = iter(batches)
    next(iterator)
    start = time.perf_counter()
    for _ in range(epoch_steps):
        next(iterator)
    pipeline = (time.perf_counter() - start) / epoch_steps

    model = compile_gpt(build_gpt(config), config, jit_compile=False)
    step_times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            step_times.append(time.perf_counter() - self.start)

    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()], shuffle=False)
    step = float(np.median(step_times[5:]))
    return {"pipeline_ms_per_batch": pipeline * 1e3, "model_ms_per_step": step * 1e3, "ratio": pipeline / step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps timed (the first 5 are left out)")
    figures = measure(steps=parser.parse_args().steps)
    print(f"input pipeline {figures['pipeline_ms_per_batch']:.2f} ms/batch, tiny model "
          f"{figures['model_ms_per_step']:.2f} ms/step: the pipeline costs {figures['ratio']:.1%} of a step")


if __name__ == "__main__":
    main()
