"""The default training step (mixed_bfloat16 on a CPU with bfloat16 instructions, TensorFlow, no XLA) taken
apart at the lecture's size, each part against its arithmetic floor on this machine (issue 24, point 2).

Every part trains with `train_on_batch` on fixed random batches, the parts alternating in rounds (the order
rotating), so that a neighbour's load falls on each alike; a part's figure is the median over rounds of its
time / the whole step's time in the same round. The parts:

- the whole step (`build_gpt` + `compile_gpt`: Adam, `NextTokenCrossEntropy`), and with SGD instead of Adam
  (their difference is what Adam's own passes cost);
- the embedding and block alone, forward and backward (a mean-squared error on the block's output);
- the output layer's matmuls alone (`Dense(10,000)` with a loss that only averages the logits);
- the output layer with its softmax and loss (`SoftmaxDense` + `NextTokenCrossEntropy`): minus the matmuls,
  that is the softmax and the cross-entropy.

The floors: the matmuls' FLOPs at the rate a bfloat16 matmul of the output layer's shape reaches in this
process; the softmax and loss, and Adam, as the bytes they must read and write at the rate a float32 copy
of [positions, vocabulary] reaches. `--loss-paths` times the output layer and loss alone, with the gradient
written at the logits and through the softmax. Run `python benchmarks/step_parts.py` (a quiet machine: each part is
timed while the other parts are not running; the figures under load misstate the matmuls most, because a
matmul waits for its slowest thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from gpt_keras.core.config import GPTConfig  # noqa: E402
from gpt_keras.core.fast import NextTokenCrossEntropy, SoftmaxDense  # noqa: E402
from gpt_keras.core.layers import TokenAndPositionEmbedding, TransformerBlock  # noqa: E402
from gpt_keras.core.model import build_gpt, compile_gpt  # noqa: E402

POLICY = "mixed_bfloat16"  # what `auto` picks on a CPU with bfloat16 instructions
WHOLE, WHOLE_SGD = "whole step (Adam)", "whole step, SGD instead of Adam"
BODY, MATMULS, HEAD = "embedding + block, fwd + bwd", "output matmuls (fwd + 2 bwd)", "output layer + softmax + loss"


class MeanOfLogits(keras.losses.Loss):
    """A loss that only averages the logits: the output layer's matmuls with almost nothing after them."""

    def call(self, y_true, y_pred):
        return ops.mean(ops.cast(y_pred, "float32"), axis=-1)


def block_flops(config: GPTConfig, positions: int) -> float:
    """Forward FLOPs of one block's matmuls: Q, K, V and the attention output, scores and weighted sum, the
    feed-forward network."""
    width, heads, key = config.embedding_dim, config.n_heads, config.key_dim
    projections = 2 * positions * width * heads * key * 4  # Q, K, V in, the heads' output back
    attention = 2 * 2 * config.batch_size * heads * config.max_len ** 2 * key  # scores and weighted sum
    feed_forward = 2 * 2 * positions * width * config.feed_forward_dim
    return config.n_blocks * (projections + attention + feed_forward)


def parts(config: GPTConfig):
    """The compiled models of each part and their (x, y) batch."""
    rng = np.random.default_rng(0)
    shape = (config.batch_size, config.max_len)
    tokens, targets = rng.integers(1, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)
    hidden = rng.normal(size=(*shape, config.embedding_dim)).astype("float32")

    def compiled(model, loss, optimizer=None):
        model.compile(optimizer=optimizer or keras.optimizers.Adam(config.learning_rate), loss=loss, jit_compile=False)
        return model

    token_input = keras.layers.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(config.max_len, config.vocab_size, config.embedding_dim, dtype=POLICY)(token_input)
    for _ in range(config.n_blocks):
        x, _ = TransformerBlock(config.n_heads, config.key_dim, config.embedding_dim, config.feed_forward_dim,
                                dropout_rate=config.dropout_rate, dtype=POLICY)(x)
    body_output = keras.layers.Activation("linear", dtype="float32")(x)
    hidden_input = keras.layers.Input((None, config.embedding_dim))
    return {
        WHOLE: (compile_gpt(build_gpt(config, POLICY), config, jit_compile=False), tokens, targets),
        WHOLE_SGD: (compiled(build_gpt(config, POLICY), [NextTokenCrossEntropy(), None], keras.optimizers.SGD(0.01)),
                    tokens, targets),
        BODY: (compiled(keras.Model(token_input, body_output), "mse"), tokens, hidden),
        MATMULS: (compiled(keras.Model(hidden_input, keras.layers.Dense(config.vocab_size, dtype=POLICY)(hidden_input)),
                           MeanOfLogits()), hidden, targets),
        HEAD: (compiled(keras.Model(hidden_input, SoftmaxDense(config.vocab_size, dtype=POLICY)(hidden_input)),
                        NextTokenCrossEntropy()), hidden, targets),
    }


def machine_rates(config: GPTConfig, repeats: int = 5) -> tuple[float, float]:
    """(bfloat16 matmul FLOP/s of the output layer's shape, float32 copy bytes/s of its logits), best of `repeats`."""
    import tensorflow as tf

    positions = config.batch_size * config.max_len
    rng = np.random.default_rng(0)
    h = tf.constant(rng.normal(size=(positions, config.embedding_dim)), tf.bfloat16)
    w = tf.constant(rng.normal(size=(config.embedding_dim, config.vocab_size)), tf.bfloat16)
    z = tf.constant(rng.normal(size=(positions, config.vocab_size)), tf.float32)

    @tf.function
    def matmul():
        return tf.matmul(h, w)

    @tf.function
    def copy():
        return z + 1.0

    best = {}
    for name, function in (("matmul", matmul), ("copy", copy)):
        function()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function().shape  # noqa: B018  (TensorFlow returns once computed)
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    flops = 2 * positions * config.embedding_dim * config.vocab_size
    return flops / best["matmul"], 2 * z.shape.num_elements() * 4 / best["copy"]


def loss_paths(config: GPTConfig, rounds: int) -> None:
    """The output layer + loss forward and backward with the gradient written at the logits (what
    `NextTokenCrossEntropy` does on TensorFlow) against written at the target's probability and taken
    through the softmax's backward pass (what it did before, and still does on JAX), alternating."""
    import tensorflow as tf

    from gpt_keras.core.fast import target_negative_log

    rng = np.random.default_rng(0)
    hidden = tf.constant(rng.normal(size=(config.batch_size, config.max_len, config.embedding_dim)), tf.bfloat16)
    targets = tf.constant(rng.integers(0, config.vocab_size, (config.batch_size, config.max_len)), tf.int32)
    layer = SoftmaxDense(config.vocab_size, dtype=POLICY)
    layer.build((None, None, config.embedding_dim))
    losses = {"at the logits": lambda y, p: NextTokenCrossEntropy()(y, p),
              "through the softmax": lambda y, p: ops.mean(target_negative_log(p, y))}
    steps = {}
    for name, loss in losses.items():
        @tf.function
        def step(loss=loss):
            with tf.GradientTape() as tape:
                value = loss(targets, layer(hidden))
            return value, tape.gradient(value, layer.trainable_variables)
        steps[name] = step
    values = {name: step() for name, step in steps.items()}
    (first, first_grads), (second, second_grads) = values.values()
    gap = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(first_grads, second_grads))
    times = {name: [] for name in steps}
    for round_ in range(rounds):
        for name in list(steps)[round_ % 2:] + list(steps)[:round_ % 2]:
            start = time.perf_counter()
            float(steps[name]()[0])
            times[name].append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(*times.values()))
    print(f"output layer + loss, fwd + bwd: at the logits / through the softmax = {ratio:.3f} (median of {rounds} "
          f"rounds, load average {os.getloadavg()[0]:.1f}); losses {float(first):.6f}, {float(second):.6f}, "
          f"largest gradient difference {gap:.2e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="rounds of alternating parts (default 12)")
    parser.add_argument("--loss-paths", action="store_true",
                        help="only the output layer + loss, gradient at the logits against through the softmax")
    args = parser.parse_args(argv)
    config = GPTConfig()
    if args.loss_paths:
        loss_paths(config, args.rounds)
        return 0
    cases = parts(config)
    for model, x, y in cases.values():
        for _ in range(2):
            model.train_on_batch(x, y)
    times = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            model, x, y = cases[name]
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(1000 * (time.perf_counter() - start))
    share = {name: statistics.median(a / b for a, b in zip(times[name], times[WHOLE])) for name in names}
    whole_ms = statistics.median(times[WHOLE])
    flop_rate, byte_rate = machine_rates(config)
    positions = config.batch_size * config.max_len
    logits = positions * config.vocab_size
    parameters = cases[WHOLE][0].count_params()
    floors = {  # ms
        BODY: 3 * block_flops(config, positions) / flop_rate * 1000,
        MATMULS: 3 * 2 * positions * config.embedding_dim * config.vocab_size / flop_rate * 1000,
        # forward: read bfloat16 logits, write float32 probabilities; backward: read them, write a bfloat16 gradient
        "softmax + loss": (2 + 4 + 4 + 2) * logits / byte_rate * 1000,
        # Adam: read weight, gradient, two moments; write weight and two moments (float32)
        "Adam (whole - SGD)": 7 * 4 * parameters / byte_rate * 1000,
    }
    rows = {BODY: share[BODY], MATMULS: share[MATMULS], "softmax + loss": share[HEAD] - share[MATMULS],
            "Adam (whole - SGD)": share[WHOLE] - share[WHOLE_SGD]}
    rows["the rest (framework, Keras' step)"] = 1.0 - sum(rows.values())
    print(f"load average {os.getloadavg()[0]:.1f}; whole step {whole_ms:.1f} ms (median of {args.rounds}); "
          f"bfloat16 matmul {flop_rate / 1e9:.0f} GFLOP/s, float32 copy {byte_rate / 1e9:.1f} GB/s")
    print("| part of the default step | share of the step | ms | arithmetic floor, ms |")
    print("|---|---:|---:|---:|")
    for name, value in rows.items():
        floor = floors.get(name)
        print(f"| {name} | {value:.3f} | {value * whole_ms:.1f} | {'' if floor is None else f'{floor:.1f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
