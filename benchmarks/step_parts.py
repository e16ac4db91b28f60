"""The default training step (mixed_bfloat16 on a CPU with bfloat16 instructions, TensorFlow, no XLA) taken
apart at the lecture's size, each part against its arithmetic floor on this machine (issue 24, point 2).

Every part runs on fixed random batches, the parts alternating in rounds (the order rotating), so that a
neighbour's load falls on each alike; a part's figure is the median over rounds of its time / the whole
step's time in the same round. The parts:

- the whole step (`build_gpt` + `compile_gpt`: `FusedAdam`, `NextTokenCrossEntropy`);
- its Adam alone, applying fixed gradients to the model's variables;
- the embedding and block alone, forward and backward (a mean-squared error on the block's output);
- the output layer's three matmuls alone, as the step runs them (the forward with its bias as a kernel row,
  then the inputs' and the kernel's gradients from bfloat16 probabilities, in `NextTokenCrossEntropy`'s layout);
- the output layer with its softmax and loss (`SoftmaxDense` + `NextTokenCrossEntropy`): minus the matmuls,
  that is the softmax, the casts and the loss.

The floors: the matmuls' FLOPs at the rate a bfloat16 matmul of the output layer's shape reaches in this
process; the softmax and loss, and Adam, as the bytes they must read and write at the rate a float32 copy
of [positions, vocabulary] reaches. `benchmarks/benchmark.py` runs `breakdown` and writes its table into
BENCHMARKS.md; `python benchmarks/step_parts.py` prints it alone (a quiet machine: the figures under load
misstate the matmuls most, because a matmul waits for its slowest thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmark import BODY, HEAD, WHOLE, WHOLE_SGD  # noqa: E402  (the parts' names, shared with its JAX table)
from gpt_keras.core.config import GPTConfig  # noqa: E402
from gpt_keras.core.fast import NextTokenCrossEntropy, SoftmaxDense, matmul_with_bias  # noqa: E402
from gpt_keras.core.layers import TokenAndPositionEmbedding, TransformerBlock  # noqa: E402
from gpt_keras.core.model import build_gpt, compile_gpt  # noqa: E402
from gpt_keras.runs.optimizer import training_optimizer  # noqa: E402

POLICY = "mixed_bfloat16"  # what `auto` picks on a CPU with bfloat16 instructions
MATMULS = "output matmuls (forward + 2 backward)"
SOFTMAX_LOSS, ADAM, REST = "softmax, casts and loss", "Adam (`FusedAdam`)", "the rest (framework, Keras' step)"


def block_flops(config: GPTConfig, positions: int) -> float:
    """Forward FLOPs of the blocks' matmuls: Q, K, V and the attention output, scores and weighted sum, the
    feed-forward network."""
    width, heads, key = config.embedding_dim, config.n_heads, config.key_dim
    projections = 2 * positions * width * heads * key * 4  # Q, K, V in, the heads' output back
    attention = 2 * 2 * config.batch_size * heads * config.max_len ** 2 * key  # scores and weighted sum
    feed_forward = 2 * 2 * positions * width * config.feed_forward_dim
    return config.n_blocks * (projections + attention + feed_forward)


def part_models(config: GPTConfig, policy: str | None, jit: bool) -> dict:
    """{part: (compiled model, x, y)}: the whole step, with SGD, the embedding and block, the output layer and
    loss, each on fixed random batches; `policy` None is Keras' global policy (float32).

    The parts train with SGD (one pass over their weights), so that Adam's cost is the whole step's less its
    SGD step's alone; the output layer reads its inputs through a `LayerNormalization` (a few
    [positions, width] passes), so that its inputs' gradient is computed, as in the whole step."""
    rng = np.random.default_rng(42)
    shape = (config.batch_size, config.max_len)
    tokens, targets = rng.integers(1, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)
    hidden = rng.normal(size=(*shape, config.embedding_dim)).astype("float32")

    def compiled(model, loss):
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=jit)
        return model

    token_input = keras.layers.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(config.max_len, config.vocab_size, config.embedding_dim, dtype=policy)(token_input)
    for _ in range(config.n_blocks):
        x, _ = TransformerBlock(config.n_heads, config.key_dim, config.embedding_dim, config.feed_forward_dim,
                                dropout_rate=config.dropout_rate, dtype=policy)(x)
    body_output = keras.layers.Activation("linear", dtype="float32")(x)
    hidden_input = keras.layers.Input((None, config.embedding_dim))
    return {
        WHOLE: (compile_gpt(build_gpt(config, policy), config, jit_compile=jit, optimizer=training_optimizer(config)),
                tokens, targets),
        WHOLE_SGD: (compiled(build_gpt(config, policy), [NextTokenCrossEntropy(), None]), tokens, targets),
        BODY: (compiled(keras.Model(token_input, body_output), "mse"), tokens, hidden),
        HEAD: (compiled(keras.Model(hidden_input, SoftmaxDense(config.vocab_size, dtype=policy)(
            keras.layers.LayerNormalization(dtype=policy)(hidden_input))), NextTokenCrossEntropy()), hidden, targets),
    }


def output_matmuls(config: GPTConfig):
    """The output layer's three bfloat16 matmuls as a training step runs them, as one call."""
    import tensorflow as tf

    positions = config.batch_size * config.max_len
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(positions, config.embedding_dim)), tf.bfloat16)
    kernel = tf.constant(rng.normal(size=(config.embedding_dim, config.vocab_size)) * 0.05, tf.bfloat16)
    bias = tf.zeros((config.vocab_size,), tf.bfloat16)
    probabilities = tf.constant(rng.random(size=(positions, config.vocab_size)), tf.bfloat16)

    @tf.function
    def matmuls():
        logits = matmul_with_bias(inputs, kernel, bias)
        d_inputs = tf.matmul(probabilities, kernel, transpose_b=True)
        d_kernel = tf.transpose(tf.matmul(probabilities, inputs, transpose_a=True))
        return logits[0, 0] + d_inputs[0, 0] + d_kernel[0, 0]

    return lambda: float(matmuls())


def adam_update(model: keras.Model, positions: int):
    """The model's optimizer applying one step of fixed random gradients (the token embedding's as slices, as
    in training), as one call."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    variables = model.trainable_variables
    gradients = [tf.constant(rng.normal(size=v.shape).astype("float32") * 1e-3) for v in variables]
    for index, variable in enumerate(variables):
        if "token_emb" in variable.path:
            rows = rng.integers(0, variable.shape[0], positions)
            gradients[index] = tf.IndexedSlices(tf.constant(rng.normal(size=(len(rows), variable.shape[1])),
                                                            tf.float32), tf.constant(rows), tf.constant(variable.shape))
    apply = tf.function(lambda: model.optimizer.apply(gradients, variables), autograph=False)
    return lambda: (apply(), float(model.optimizer.iterations))


def machine_rates(config: GPTConfig, repeats: int = 5) -> tuple[float, float]:
    """(bfloat16 matmul FLOP/s of the output layer's shape, float32 copy bytes/s of its logits), best of `repeats`."""
    import tensorflow as tf

    positions = config.batch_size * config.max_len
    rng = np.random.default_rng(0)
    h = tf.constant(rng.normal(size=(positions, config.embedding_dim)), tf.bfloat16)
    w = tf.constant(rng.normal(size=(config.embedding_dim, config.vocab_size)), tf.bfloat16)
    z = tf.constant(rng.normal(size=(positions, config.vocab_size)), tf.float32)
    functions = {"matmul": tf.function(lambda: tf.matmul(h, w), autograph=False),
                 "copy": tf.function(lambda: z + 1.0, autograph=False)}
    best = {}
    for name, function in functions.items():
        function()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function().shape  # noqa: B018  (TensorFlow returns once computed)
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    flops = 2 * positions * config.embedding_dim * config.vocab_size
    return flops / best["matmul"], 2 * z.shape.num_elements() * 4 / best["copy"]


def breakdown(rounds: int = 12, config: GPTConfig = GPTConfig()) -> dict:
    """The default step's parts: {"whole_ms", "rows": {part: [share of the step, ms, floor ms or None]},
    the machine's rates and the load average}."""
    models = part_models(config, POLICY, jit=False)
    cases = {name: (lambda m=model, x=x, y=y: m.train_on_batch(x, y)) for name, (model, x, y) in models.items()
             if name != WHOLE_SGD}
    cases[MATMULS] = output_matmuls(config)
    cases[ADAM] = adam_update(models[WHOLE][0], config.batch_size * config.max_len)
    for run in cases.values():
        run(), run()
    times = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(1000 * (time.perf_counter() - start))
    share = {name: statistics.median(a / b for a, b in zip(times[name], times[WHOLE])) for name in names}
    whole_ms = statistics.median(times[WHOLE])
    flop_rate, byte_rate = machine_rates(config)
    positions = config.batch_size * config.max_len
    logits = positions * config.vocab_size
    parameters = build_gpt(config).count_params()
    floors = {  # ms
        BODY: 3 * block_flops(config, positions) / flop_rate * 1000,
        MATMULS: 3 * 2 * positions * config.embedding_dim * config.vocab_size / flop_rate * 1000,
        # the softmax reads the bfloat16 logits and writes bfloat16 probabilities (float32 inside, `softmax_rounds_once`),
        # the bias's gradient reads them again
        SOFTMAX_LOSS: (2 + 2 + 2) * logits / byte_rate * 1000,
        # Adam: read weight, gradient, two moments; write weight and two moments (float32)
        ADAM: 7 * 4 * parameters / byte_rate * 1000,
    }
    parts = {BODY: share[BODY], MATMULS: share[MATMULS], SOFTMAX_LOSS: share[HEAD] - share[MATMULS], ADAM: share[ADAM]}
    parts[REST] = 1.0 - sum(parts.values())
    rows = {name: [value, value * whole_ms, floors.get(name)] for name, value in parts.items()}
    return {"whole_ms": whole_ms, "rows": rows, "rounds": rounds, "bf16_gflops": flop_rate / 1e9,
            "copy_gbps": byte_rate / 1e9, "load": os.getloadavg()[0]}


def table(figures: dict) -> str:
    lines = ["| part of the default step | share of the step | ms | arithmetic floor, ms |", "|---|---:|---:|---:|"]
    for name, (share, ms, floor) in figures["rows"].items():
        lines.append(f"| {name} | {share:.3f} | {ms:.1f} | {'' if floor is None else f'{floor:.1f}'} |")
    floors = sum(floor for _, _, floor in figures["rows"].values() if floor is not None)
    lines.append(f"| **whole step** | 1.000 | {figures['whole_ms']:.1f} | {floors:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="rounds of alternating parts (default 12)")
    args = parser.parse_args(argv)
    figures = breakdown(args.rounds)
    print(f"load average {figures['load']:.1f}; whole step {figures['whole_ms']:.1f} ms (median of {args.rounds}); "
          f"bfloat16 matmul {figures['bf16_gflops']:.0f} GFLOP/s, float32 copy {figures['copy_gbps']:.1f} GB/s")
    print(table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
