"""Training and generation speed of the lecture's GPT on a GPU, with JAX and without TensorFlow.

Copy the repository and a token file to the GPU machine, install `keras jax[cuda12] numpy pandas`,
and run

    gpt-keras tokenize --out tokens.npz              # here, where TensorFlow is installed (a few MiB)
    python benchmarks/gpu_benchmark.py --tokens tokens.npz

It trains the lecture's model (vocabulary from the token file, 80 tokens, embedding 256, two heads of
256, feed-forward 256, batch 32, Adam) with `model.fit` on the Keras JAX backend, in the precision
`gpt_keras.runs.precision` chooses for the GPU (bfloat16 on Ampere and later, float16 with loss scaling on
a T4 or V100), and prints

- ms/step (median after the warm-up steps; the loss is read every step, so each step is waited for),
- tokens/s (batch x positions per second, padding included; and the reviews' own tokens per second),
- the share of the GPU's peak dense bfloat16/float16 rate, from model FLOPs per step:
  6 x (parameters used in matrix multiplications: the block and the output layer; the embeddings
  are lookups) x tokens, plus the attention's two products, 2 x 2 x 80^2 x heads x key_dim per review
  forward, times 3 for forward and backward;
- cached generation ms/token (`CachedGenerator`, the lecture's prompt, 80 tokens).

It imports nothing that needs TensorFlow (it says so at the end). On a CPU, with `--tiny` and few
steps, it checks that the script runs (`KERAS_BACKEND=jax python benchmarks/gpu_benchmark.py --tokens
tokens.npz --tiny --steps 5`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Peak dense tensor-core rates in TFLOP/s (bfloat16, or float16 where the GPU has no bfloat16), by
# a piece of the device name; the first match wins. From the vendors' data sheets (no sparsity).
PEAK_TFLOPS = [
    ("H200", 989.0), ("H100", 989.0), ("GH200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("T4", 65.0), ("V100", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
]
PROMPT, MAX_TOKENS = "wine review", 80


def peak_tflops(device_name: str) -> float | None:
    """The GPU's peak dense bfloat16/float16 TFLOP/s, looked up from its name (None: not in the table)."""
    for key, peak in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def flops_per_step(config, params_in_matmuls: int, batch_size: int) -> float:
    """Model FLOPs of one training step: 6 x matmul parameters x tokens, plus attention's products."""
    tokens = batch_size * config.max_len
    attention = 3 * 2 * 2 * config.max_len ** 2 * config.n_heads * config.key_dim * batch_size * config.n_blocks
    return 6.0 * params_in_matmuls * tokens + attention


def _config(args, tokens, vocabulary):
    from gpt_keras.core.config import GPTConfig

    base = GPTConfig.preset("tiny" if args.tiny else "lecture")
    return base.replace(vocab_size=len(vocabulary), max_len=tokens.shape[1] - 1, batch_size=args.batch_size,
                        mixed_precision=args.precision)


def _device_name() -> str:
    import jax

    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


def train_speed(args) -> dict:
    import keras
    import numpy as np

    from gpt_keras.runs.batches import ArrayBatches, load_tokens
    from gpt_keras.core.model import build_gpt, compile_gpt
    from gpt_keras.runs.optimizer import training_optimizer
    from gpt_keras.runs.precision import choose_precision, detect_hardware

    tokens, vocabulary = load_tokens(args.tokens)
    if args.reviews:
        tokens = tokens[:args.reviews]
    config = _config(args, tokens, vocabulary)
    facts = detect_hardware("jax")
    choice = choose_precision(facts, config.mixed_precision, config.jit_compile)
    print(choice.describe(), flush=True)
    keras.utils.set_random_seed(0)
    model = compile_gpt(build_gpt(config, choice.policy), config, choice.jit, loss_scaling=choice.loss_scaling,
                        optimizer=training_optimizer(config))
    ends = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))  # waits for the step
            ends.append(time.perf_counter())

    batches = ArrayBatches(tokens, config.batch_size, seed=0)
    steps = args.warmup + args.steps
    start = time.perf_counter()
    history = model.fit(batches, epochs=1, steps_per_epoch=min(steps, len(batches)), callbacks=[StepTimer()],
                        verbose=0)
    durations = [b - a for a, b in zip(ends, ends[1:])][args.warmup - 1:]
    if not durations:
        raise SystemExit(f"{len(batches)} batches: too few for --warmup {args.warmup} and --steps {args.steps}")
    step_s = statistics.median(durations)
    params = model.count_params()
    matmul_params = params - model.get_layer("embedding").count_params()
    flops = flops_per_step(config, matmul_params, config.batch_size)
    lengths = (tokens[:, 1:] != 0).sum(axis=1)  # targets that are words, not padding
    device = _device_name()
    peak = peak_tflops(device)
    achieved = flops / step_s / 1e12
    return {
        "device": device, "precision": choice.to_dict(), "params": params, "params_in_matmuls": matmul_params,
        "batch_size": config.batch_size, "max_len": config.max_len, "steps_timed": len(durations),
        "first_step_s": ends[0] - start, "ms_per_step": 1000 * step_s,
        "tokens_per_s": config.batch_size * config.max_len / step_s,
        "word_tokens_per_s": float(np.mean(np.minimum(lengths, config.max_len))) * config.batch_size / step_s,
        "flops_per_step": flops, "achieved_tflops": achieved, "peak_tflops": peak,
        "share_of_peak": None if peak is None else achieved / peak,
        "final_loss": float(history.history["loss"][-1]), "model": model, "vocabulary": vocabulary,
    }


def generation_speed(model, vocabulary, repeats: int) -> dict:
    import numpy as np

    from gpt_keras.core.data import Vocabulary
    from gpt_keras.core.generation import CachedGenerator
    from gpt_keras.core.sampling import Sampler

    generator = CachedGenerator(model, Vocabulary(tuple(vocabulary)))
    sampler, rng = Sampler(1.0), np.random.default_rng(0)
    generator.generate(PROMPT, 5, sampler, rng)  # traces and compiles
    per_token = []
    for _ in range(repeats):
        start = time.perf_counter()
        info, _ = generator.generate(PROMPT, MAX_TOKENS, sampler, rng)
        per_token.append(1000 * (time.perf_counter() - start) / max(1, len(info)))
    return {"ms_per_token": statistics.median(per_token), "runs_ms_per_token": per_token}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=Path, required=True, help="a .npz written by `gpt-keras tokenize --out`")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing, compiling included (default 10)")
    parser.add_argument("--batch-size", type=int, default=32, help="reviews per step (the lecture: 32)")
    parser.add_argument("--reviews", type=int, default=0, help="use only the first N reviews (default all)")
    parser.add_argument("--precision", choices=("auto", "on", "off"), default="auto",
                        help="mixed precision: auto (per GPU), on, off (float32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generation runs (default 3)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to check the script on a CPU")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.steps, args.warmup, args.batch_size, args.repeats) < 1:
        parser.error("--steps, --warmup, --batch-size and --repeats must be at least 1")
    if not args.tokens.is_file():
        parser.error(f"{args.tokens}: token file not found (write one with `gpt-keras tokenize --out`)")
    import keras

    if keras.backend.backend() != "jax":
        parser.error(f"this benchmark runs on the JAX backend (KERAS_BACKEND=jax), not {keras.backend.backend()}")
    figures = train_speed(args)
    model, vocabulary = figures.pop("model"), figures.pop("vocabulary")
    figures["generation"] = generation_speed(model, vocabulary, args.repeats)
    figures["tensorflow_imported"] = "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None
    share = "n/a (GPU not in the table)" if figures["share_of_peak"] is None else \
        f"{100 * figures['share_of_peak']:.1f}% of {figures['peak_tflops']:.0f} TFLOP/s"
    print(f"device:      {figures['device']}")
    print(f"model:       {figures['params']:,} parameters ({figures['params_in_matmuls']:,} in matmuls), "
          f"batch {figures['batch_size']} x {figures['max_len']} tokens")
    print(f"training:    {figures['ms_per_step']:.2f} ms/step (median of {figures['steps_timed']}; first step "
          f"{figures['first_step_s']:.1f} s), {figures['tokens_per_s']:,.0f} tokens/s "
          f"({figures['word_tokens_per_s']:,.0f} of them words)")
    print(f"compute:     {figures['flops_per_step'] / 1e9:.1f} GFLOP/step -> {figures['achieved_tflops']:.2f} TFLOP/s, "
          f"{share}")
    print(f"generation:  {figures['generation']['ms_per_token']:.2f} ms/token (cached, '{PROMPT}', {MAX_TOKENS} tokens)")
    print(f"TensorFlow imported: {'yes' if figures['tensorflow_imported'] else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # as a script only: importing this module changes nothing
    sys.exit(main())
