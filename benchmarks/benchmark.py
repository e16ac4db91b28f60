"""Speed and memory of gpt-keras against the lecture's implementation, in one run on one machine.

At the lecture's configuration (vocabulary 10,000, 80 tokens, embedding 256, two heads of 256,
feed-forward 256, batch 32) on real reviews, it measures:

- training ms/step of the lecture's implementation (`lecture_reference.py`: its model, its
  `compile("adam", ...)` and its `tf.data` pipeline) and of ours (`build_gpt` + `compile_gpt` +
  `make_dataset`) in float32 (the lecture's arithmetic), under XLA, in the precision `auto` picks for
  this machine (`gpt_keras.runs.precision`; bfloat16 with the output matmul in bfloat16 where the CPU has
  bfloat16 instructions), and with the opt-in length buckets (`gpt_keras.runs.bucketing`). The ratios come
  from one process that trains all of them in alternating chunks of steps, so a neighbour's load on
  a shared CPU falls on each alike;
- held-out loss against training time: the lecture's implementation and ours trained side by side on
  the same reviews for the same epochs (`heldout.py`), plotted to `benchmarks/heldout-loss.png`;
- why the JAX backend trains slower on a CPU: a float32 step taken apart on each backend (the whole
  step, with SGD instead of Adam, the embedding and block alone, the output layer alone), and the
  output layer's kernels (matmuls, the exponential, softmax and cross-entropy) timed in JAX (XLA) and
  in TensorFlow (oneDNN) in one process;
- generation ms/token of the lecture's `TextGenerator.generate` (`model.predict` per word) and of
  our `CachedGenerator`, for the lecture's call `generate("wine review", max_tokens=80)`; also our
  teaching loop `generate_lecture` and batched generation, for information;
- the peak resident memory (RSS) of each, every measurement in a child process of its own
  (`os.wait4` reports the child's peak), beside a child that only imports and loads the data.

It prints a table and writes `BENCHMARKS.md`. It is a script, not a test: run

    python benchmarks/benchmark.py                 # about 30 minutes on a 2-core CPU
    python benchmarks/benchmark.py --quick         # a few minutes, smaller everything, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wine-reviews" / "winemag-data-130k-v2.head10001.csv"
PROMPT, MAX_TOKENS, TEMPERATURE = "wine review", 80, 1.0  # the lecture's TextGenerator call
SEED = 42
CHUNK = 6  # steps per turn in the paired training; the first of each is not timed
TRAIN_TARGET = 0.5  # ours / lecture ms per step and per epoch: at most 0.5 of the lecture's (issue 24)
HELDOUT_TARGET = 1.01  # ours / lecture held-out loss after the same epochs: within 1%
GENERATION_TARGET = 20.0  # lecture / ours ms per token: at least 20 times faster
PLOT = HERE / "heldout-loss.png"
BLOCK_SHAPE = "block's shape (2560 x 256 by 256 x 256)"
# The parts of a step that `_components` times on each backend, and the report reads back.
WHOLE, WHOLE_SGD = "whole step", "whole step, SGD instead of Adam"
BODY, HEAD = "embedding + block (no output layer)", "output layer (SoftmaxDense) + loss"
HEAD_3D = 'output layer as Dense(activation="softmax") on 3-D + loss'
STEP_PARTS = "the default step taken apart (benchmarks/step_parts.py)"
# The paired training's variants: key -> (label, precision mode, jit_compile, length buckets, Keras' loss,
# Keras' Adam).
VARIANTS = {
    "lecture": ("lecture (float32, its pipeline)", None, None, False, False, False),
    "float32": ('ours, float32 (mixed_precision="off", the lecture\'s arithmetic)', "off", "auto", False, False, False),
    "xla": ('ours, float32 under XLA (jit_compile="on")', "off", "on", False, False, False),
    "mixed-out32": ("ours, mixed_bfloat16 with the output layer float32", "out32", "auto", False, False, False),
    "auto-keras-loss": ('ours, "auto" with Keras\' `SparseCategoricalCrossentropy` (TensorFlow\'s fused kernel)',
                        "auto", "auto", False, True, False),
    "auto-keras-adam": ('ours, "auto" with Keras\' `Adam` instead of `FusedAdam`', "auto", "auto", False, False, True),
    "auto": ('ours, mixed_precision="auto" (the default)', "auto", "auto", False, False, False),
    "auto-xla": ('ours, mixed_precision="auto" under XLA', "auto", "on", False, False, False),
    "bucketed": ('ours, "auto" + bucket_by_length="on" (opt-in)', "auto", "auto", True, False, False),
}
QUALITY_CONTENDERS = ["lecture", "auto", "auto-bucketed"]
QUICK_VARIANTS = ["lecture", "float32", "auto", "bucketed"]


# --- the measurements, each run in a child process ---------------------------------------------

def _silence():
    """The library logs of TensorFlow and Keras out of the way (the child's stdout carries JSON)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.simplefilter("ignore")


def _lecture_data(path):
    sys.path.insert(0, str(HERE))
    import lecture_reference as lecture

    text_data = [lecture.pad_punctuation(x) for x in lecture.filter_reviews(lecture.read_records(path))]
    train_ds, _, vocab = lecture.make_datasets(text_data)
    return lecture, train_ds, vocab


def _our_data(path):
    """Our data step (`gpt-keras train`'s): reviews loaded, vectorizer adapted, all vectorized once."""
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.runs.train import prepare_data

    prepared = prepare_data(GPTConfig(), path, print_fn=None)
    return None, prepared.tokens, prepared.vocab


def _our_training(keras, data, tokens, key="auto", keras_loss=False):
    """Our model (`build_gpt` + `compile_gpt`) and input pipeline at the lecture's configuration, as variant
    `key` of `VARIANTS`; returns (model, dataset, the precision chosen)."""
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.data import make_dataset
    from gpt_keras.core.model import build_gpt, compile_gpt
    from gpt_keras.runs.batches import ArrayBatches
    from gpt_keras.runs.optimizer import training_optimizer
    from gpt_keras.runs.precision import choose_precision, detect_hardware

    _, mode, jit, bucketed, variant_keras_loss, keras_adam = VARIANTS[key]
    keras_loss = keras_loss or variant_keras_loss
    config = GPTConfig()
    facts = detect_hardware()
    choice = choose_precision(facts, "on" if mode == "out32" else mode, jit)
    output_dtype = "float32" if mode == "out32" else choice.output_dtype
    model = compile_gpt(build_gpt(config, choice.policy, output_dtype), config, choice.jit,
                        loss_scaling=choice.loss_scaling, optimizer=training_optimizer(config))
    if keras_loss or keras_adam:  # Keras' own loss on probabilities, or its own Adam, which `compile_gpt` replaces
        optimizer = keras.optimizers.Adam if keras_adam else type(model.optimizer)
        loss = keras.losses.SparseCategoricalCrossentropy() if keras_loss else model.loss[0]
        model.compile(optimizer=optimizer(config.learning_rate), jit_compile=choice.jit, loss=[loss, None])
    if bucketed:
        return model, _continuing_buckets(tokens, config.batch_size, keras), choice
    if keras.backend.backend() == "tensorflow":
        return model, make_dataset(tokens, config.batch_size, seed=SEED), choice
    return model, ArrayBatches(tokens, config.batch_size, seed=SEED), choice


def _continuing_buckets(tokens, batch_size, keras):
    """Bucketed batches that continue where the last `fit` call stopped (a new `fit` call starts a new
    iterator; `bucketed_dataset` would restart at the first batch of the epoch every time)."""
    import itertools

    from gpt_keras.runs import bucketing

    lengths = bucketing.review_lengths(tokens)
    stream = (bucketing.trimmed_batch(tokens, rows, lengths) for epoch in itertools.count()
              for rows in bucketing.bucketed_batches(tokens, batch_size, SEED, epoch))
    if keras.backend.backend() != "tensorflow":
        return bucketing.BucketedBatches(tokens, batch_size, SEED)
    import tensorflow as tf

    spec = tf.TensorSpec((None, None), tf.int32)
    return tf.data.Dataset.from_generator(lambda: stream, output_signature=(spec, spec))


def _step_timer(keras):
    class StepTimer(keras.callbacks.Callback):
        """Wall time at the end of every training step (reading the loss waits for the step)."""

        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))
            self.ends.append(time.perf_counter())

    return StepTimer()


def _fit_steps(model, dataset, steps, keras) -> tuple[float, list[float]]:
    """Trains `steps` steps; returns the seconds to the end of the first and the ms between step ends."""
    timer = _step_timer(keras)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return timer.ends[0] - start, [1000 * (b - a) for a, b in zip(timer.ends, timer.ends[1:])]


def _separate_training(model, dataset, args, keras, started) -> dict:
    setup = time.perf_counter() - started
    first, durations = _fit_steps(model, dataset, args.warmup + args.steps, keras)
    durations = durations[args.warmup - 1:]
    return {"ms_per_step": statistics.median(durations), "mean_ms_per_step": statistics.mean(durations),
            "steps": len(durations), "first_call_s": first, "setup_s": setup,
            "resolved_jit": bool(model.jit_compile), "backend": keras.backend.backend()}


def _paired_training(args, keras) -> dict:
    """Every variant in one process, trained in turns of `CHUNK` steps, the order rotating each round.

    A turn's figure is the mean of its timed step times (the mean, not the median: a bucketed variant's
    steps differ with the width of each batch); a variant's ratio is the median over rounds of its
    turn / the lecture's turn in the same round, so load that comes and goes falls on both.
    """
    lecture, lecture_ds, _ = _lecture_data(args.data)
    data, tokens, _ = _our_data(args.data)
    runs = {"lecture": (lecture.build_model(), lecture_ds.repeat())}
    choices = {}
    for key in (QUICK_VARIANTS if args.quick else list(VARIANTS))[1:]:
        model, dataset, choice = _our_training(keras, data, tokens, key)
        runs[key] = (model, dataset)
        choices[key] = choice.to_dict()
    resolved = {key: bool(model.jit_compile) for key, (model, _) in runs.items()}
    for model, dataset in runs.values():
        _fit_steps(model, dataset, args.warmup, keras)
    turns = {key: [] for key in runs}
    keys = list(runs)
    for round_ in range(max(2, -(-args.steps // (CHUNK - 1)))):
        for key in keys[round_ % len(keys):] + keys[:round_ % len(keys)]:
            turns[key].append(statistics.mean(_fit_steps(*runs[key], CHUNK, keras)[1]))
    figures = {}
    for key, times in turns.items():
        ratios = [mine / theirs for mine, theirs in zip(times, turns["lecture"])]
        low, _, high = statistics.quantiles(ratios, n=4)
        figures[key] = {"ms_per_step": statistics.median(times), "ratio": statistics.median(ratios),
                        "ratio_quartiles": [low, high], "resolved_jit": resolved[key], "choice": choices.get(key)}
    return {"variants": figures, "rounds": len(turns["lecture"]), "chunk": CHUNK,
            "padding_share": _padding_share(tokens)}


def _padding_share(tokens) -> float:
    """The share of the 80 input positions that are padding in full-width batches."""
    from gpt_keras.runs import bucketing

    width = tokens.shape[1] - 1
    return 1.0 - float((bucketing.review_lengths(tokens).clip(max=width)).mean()) / width


def _quality(args, keras) -> dict:
    sys.path.insert(0, str(HERE))
    import heldout

    return heldout.race(args.data, args.quality_epochs, args.quality_reviews or None, args.eval_every or None, SEED,
                        QUALITY_CONTENDERS, say=lambda line: print(line, file=sys.stderr, flush=True))


def _components(args, keras) -> dict:
    """A float32 training step of ours taken apart on this process's backend, in alternating turns:
    the whole step, the same with SGD instead of Adam, the embedding and block alone, and the output
    layer alone (`SoftmaxDense`, and Keras' `Dense(activation="softmax")` on the 3-D activations), the
    parts as `step_parts.part_models` builds them."""
    sys.path.insert(0, str(HERE))
    from step_parts import part_models

    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.fast import NextTokenCrossEntropy
    from gpt_keras.runs.precision import choose_precision, detect_hardware

    config = GPTConfig()
    jit = choose_precision(detect_hardware(), "off", "auto").jit
    cases = part_models(config, None, jit)
    _, hidden, targets = cases[HEAD]
    dense = keras.layers.Dense(config.vocab_size, activation="softmax")
    inputs = keras.layers.Input((None, config.embedding_dim))
    cases[HEAD_3D] = (keras.Model(inputs, dense(inputs)), hidden, targets)
    cases[HEAD_3D][0].compile(optimizer=keras.optimizers.SGD(0.01), loss=NextTokenCrossEntropy(), jit_compile=jit)
    for model, x, y in cases.values():
        for _ in range(2):
            model.train_on_batch(x, y)
    times = {name: [] for name in cases}
    for _ in range(max(2, args.steps // 4)):
        for name, (model, x, y) in cases.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(1000 * (time.perf_counter() - start))
    return {"ms": {name: statistics.median(values) for name, values in times.items()},
            "backend": keras.backend.backend(), "jit": bool(jit)}


def _jax_cause(args) -> dict:
    """The output layer (256 x 10,000 matmul, then softmax and cross-entropy in float32, forward and
    backward, at 32 x 80 positions) in JAX and in TensorFlow, alternated in one process."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    h = rng.normal(size=(2560, 256)).astype("float32")
    w = (rng.normal(size=(256, 10_000)) * 0.05).astype("float32")
    y = rng.integers(0, 10_000, 2560)
    y_jax, y_tf = jnp.asarray(y), tf.constant(y)

    def jax_loss(hh, ww):
        z = (hh @ ww).astype(jnp.float32)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y_jax[:, None], 1))

    functions = {}
    for dtype in ("float32", "bfloat16"):
        jh, jw = jnp.asarray(h, dtype), jnp.asarray(w, dtype)
        matmul, head = jax.jit(lambda a, b: a @ b), jax.jit(jax.grad(jax_loss, argnums=(0, 1)))
        functions[f"jax matmul {dtype}"] = (lambda m=matmul, a=jh, b=jw: m(a, b).block_until_ready())
        functions[f"jax output layer {dtype}"] = (lambda g=head, a=jh, b=jw: jax.block_until_ready(g(a, b)))
        th, tw = tf.Variable(tf.cast(h, dtype)), tf.Variable(tf.cast(w, dtype))
        tf_matmul = tf.function(lambda a=th, b=tw: tf.matmul(a, b))

        def tf_head(a=th, b=tw):
            with tf.GradientTape() as tape:
                z = tf.cast(tf.matmul(a, b), tf.float32)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y_tf, z))
            return tape.gradient(loss, [a, b])
        tf_head = tf.function(tf_head)
        # TensorFlow's eager call returns once computed: timed without copying the result to NumPy
        functions[f"tensorflow matmul {dtype}"] = (lambda m=tf_matmul: m())
        functions[f"tensorflow output layer {dtype}"] = (lambda g=tf_head: g())
    z = rng.normal(size=(2560, 10_000)).astype("float32")
    jz, tz = jnp.asarray(z), tf.constant(z)
    jax_ce = jax.jit(jax.grad(lambda logits: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y_jax[:, None], 1))))

    @tf.function
    def tf_ce():
        with tf.GradientTape() as tape:
            tape.watch(tz)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y_tf, tz))
        return tape.gradient(loss, tz)
    block_weights = (rng.normal(size=(256, 256)) * 0.05).astype("float32")
    jb, tb = jnp.asarray(block_weights), tf.constant(block_weights)
    jax_hidden, tf_hidden = jnp.asarray(h), tf.constant(h)
    jax_block, tf_block = jax.jit(lambda a, b: a @ b), tf.function(tf.matmul)
    functions[f"jax matmul float32, {BLOCK_SHAPE}"] = lambda: jax_block(jax_hidden, jb).block_until_ready()
    functions[f"tensorflow matmul float32, {BLOCK_SHAPE}"] = lambda: tf_block(tf_hidden, tb)
    jax_exp, tf_exp = jax.jit(jnp.exp), tf.function(tf.exp)
    functions["jax exp of the logits float32"] = lambda: jax_exp(jz).block_until_ready()
    functions["tensorflow exp of the logits float32"] = lambda: tf_exp(tz)
    functions["jax softmax + cross-entropy float32"] = lambda: jax_ce(jz).block_until_ready()
    functions["tensorflow softmax + cross-entropy float32"] = lambda: tf_ce()
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(args.repeats + 4):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(1000 * (time.perf_counter() - start))
    flops = lambda name: 2 * 2560 * 256 * (256 if BLOCK_SHAPE in name else 10_000)  # noqa: E731
    return {"ms": {name: statistics.median(values) for name, values in times.items()},
            "matmul_gflops": {name: flops(name) / statistics.median(values) / 1e6 for name, values in times.items()
                              if "matmul" in name}, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _generation(name, args, keras):
    """A function `run(max_tokens)` returning one entry per generated word, for measurement `name`."""
    import numpy as np

    if name == "generate-lecture":
        lecture, _, vocab = _lecture_data(args.data)
        generator = lecture.TextGenerator(vocab)
        generator.set_model(lecture.build_model())
        np.random.seed(SEED)

        def run(max_tokens):
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "generated text:"
                return generator.generate(PROMPT, max_tokens=max_tokens, temperature=TEMPERATURE)
        return run
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.generation import CachedGenerator, generate_lecture
    from gpt_keras.core.model import build_gpt
    from gpt_keras.core.sampling import Sampler
    from gpt_keras.tools.batch_sampling import sample_batch

    _, _, vocab = _our_data(args.data)
    model, sampler, rng = build_gpt(GPTConfig()), Sampler(TEMPERATURE), np.random.default_rng(SEED)
    if name == "generate-ours-lecture-loop":
        return lambda max_tokens: generate_lecture(model, vocab, PROMPT, max_tokens, sampler, rng)[0]
    cached = CachedGenerator(model, vocab)
    if name == "generate-cached":
        return lambda max_tokens: cached.generate(PROMPT, max_tokens, sampler, rng)[0]
    if name == "generate-cached-batch":
        def run(max_tokens):
            result = sample_batch(cached, PROMPT, args.batch_samples, max_tokens, sampler, rng)
            return [None] * int(result.lengths.max())  # one entry per decoding step
        return run
    raise SystemExit(f"unknown measurement {name!r}")


def measure(name, args) -> dict:
    """Runs one measurement in this (child) process and returns its figures."""
    _silence()
    started = time.perf_counter()
    import keras

    keras.utils.set_random_seed(SEED)
    if name == "baseline":
        import tensorflow  # noqa: F401  (what every measurement pays before it starts)
        _our_data(args.data)
        return {"backend": keras.backend.backend()}
    if name == "train-lecture":
        lecture, train_ds, _ = _lecture_data(args.data)
        return _separate_training(lecture.build_model(), train_ds, args, keras, started)
    if name == "train-ours":
        data, tokens, _ = _our_data(args.data)
        model, dataset, choice = _our_training(keras, data, tokens, args.variant, args.keras_loss)
        return {**_separate_training(model, dataset, args, keras, started), "choice": choice.to_dict()}
    if name == "train-paired":
        return _paired_training(args, keras)
    if name == "quality":
        return _quality(args, keras)
    if name == "jax-cause":
        return _jax_cause(args)
    if name == "components":
        return _components(args, keras)
    if name == "step-parts":
        sys.path.insert(0, str(HERE))
        import step_parts

        return step_parts.breakdown(max(8, args.steps // 4))
    run = _generation(name, args, keras)
    first = time.perf_counter()
    run(5)  # traces, compiles, warms the caches
    warm = time.perf_counter() - first
    per_token, tokens = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        steps = len(run(MAX_TOKENS))
        per_token.append(1000 * (time.perf_counter() - start) / steps)
        tokens.append(steps)
    figures = {"ms_per_token": statistics.median(per_token), "runs_ms_per_token": per_token, "tokens": tokens,
               "first_call_s": warm, "setup_s": first - started, "backend": keras.backend.backend()}
    if name == "generate-cached-batch":
        figures["samples"] = args.batch_samples
        figures["ms_per_token_per_sample"] = figures["ms_per_token"] / args.batch_samples
    return figures


# --- the parent: one child per measurement -----------------------------------------------------

MEASUREMENTS = [  # (name, extra arguments, environment, label, in --quick)
    ("baseline", [], {}, "imports + data only", False),
    ("train-lecture", [], {}, "lecture: training", False),
    ("train-ours", ["--variant", "float32"], {}, "ours: training, float32", False),
    ("train-ours", [], {}, 'ours: training, mixed_precision="auto"', False),
    ("train-paired", [], {}, "paired training (all variants, one process)", True),
    ("quality", [], {}, "held-out loss, lecture and ours side by side", True),
    ("generate-lecture", [], {}, "lecture: TextGenerator.generate", True),
    ("generate-ours-lecture-loop", [], {}, "ours: generate_lecture (teaching loop)", False),
    ("generate-cached", [], {}, "ours: CachedGenerator.generate", True),
    ("generate-cached-batch", [], {}, "ours: sample_batch (CachedGenerator, batched)", False),
    ("train-ours", ["--variant", "float32"], {"KERAS_BACKEND": "jax"},
     "ours on JAX: training, float32 (ArrayBatches)", True),
    ("train-ours", ["--variant", "float32", "--keras-loss"], {"KERAS_BACKEND": "jax"},
     "ours on JAX: training, float32, with Keras' loss on probabilities", False),
    ("train-ours", ["--variant", "mixed-out32"], {"KERAS_BACKEND": "jax"},
     "ours on JAX: training, mixed_bfloat16", False),
    ("step-parts", [], {}, STEP_PARTS, True),
    ("components", [], {}, "step components, TensorFlow", True),
    ("components", [], {"KERAS_BACKEND": "jax"}, "step components, JAX", True),
    ("jax-cause", [], {}, "output layer, JAX (XLA) vs TensorFlow (oneDNN)", True),
    ("jax-cause", [], {"XLA_FLAGS": "--xla_cpu_use_onednn=true"}, "output layer, JAX with oneDNN flag vs TensorFlow", False),
    ("generate-cached", [], {"KERAS_BACKEND": "jax"}, "ours on JAX: CachedGenerator.generate", False),
]


def run_child(name, extra, env, args) -> dict:
    """Runs one measurement in a child; returns its figures with its peak RSS and the load average."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--data", str(args.data),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
               "--batch-samples", str(args.batch_samples), "--quality-epochs", str(args.quality_epochs),
               "--quality-reviews", str(args.quality_reviews), "--eval-every", str(args.eval_every),
               *extra, *(["--quick"] if args.quick else [])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", **env}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None if args.verbose else devnull,
                                 env=environment, cwd=ROOT, text=True)
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, not all children's
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join([name, *extra])} failed (exit {os.waitstatus_to_exitcode(status)}); rerun with --verbose")
    figures = json.loads(output.strip().splitlines()[-1])
    figures.update(peak_rss_mib=usage.ru_maxrss / 1024, wall_s=time.perf_counter() - started,
                   load=(load_before, os.getloadavg()[0]))
    return figures


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    field = lambda name: next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith(name)), "")  # noqa: E731
    memory_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")), 0)
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("tensorflow", "keras", "jax", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {"cpu": field("model name") or platform.processor() or "unknown",
            "bf16_flags": [flag for flag in field("flags").split() if "bf16" in flag],
            "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "ram_gib": memory_kib / 1024 ** 2,
            "python": platform.python_version(), "os": platform.platform(), "versions": versions,
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}


PAIRED, QUALITY = "paired training (all variants, one process)", "held-out loss, lecture and ours side by side"
JAX_CAUSE, JAX_CAUSE_ONEDNN = "output layer, JAX (XLA) vs TensorFlow (oneDNN)", "output layer, JAX with oneDNN flag vs TensorFlow"
COMPONENTS_TF, COMPONENTS_JAX = "step components, TensorFlow", "step components, JAX"


def summarize(results: dict) -> dict:
    paired = results[PAIRED]["variants"]
    summary = {"train_ratio": paired["auto"]["ratio"], "bucketed_ratio": paired["bucketed"]["ratio"],
               "float32_ratio": paired["float32"]["ratio"], "choice": paired["auto"]["choice"]}
    if QUALITY in results:
        contenders = results[QUALITY]["contenders"]
        lecture = contenders["lecture"]
        for key in ("auto", "auto-bucketed"):
            summary[f"{key}_heldout_ratio"] = contenders[key]["heldout_loss"] / lecture["heldout_loss"]
            summary[f"{key}_time_ratio"] = contenders[key]["train_seconds"] / lecture["train_seconds"]
    if "lecture: TextGenerator.generate" in results and "ours: CachedGenerator.generate" in results:
        summary["generation_speedup"] = (results["lecture: TextGenerator.generate"]["ms_per_token"]
                                         / results["ours: CachedGenerator.generate"]["ms_per_token"])
    return summary


def paired_table(results: dict) -> str:
    paired = results[PAIRED]["variants"]
    lines = ["| training | ms/step (median of turns) | ours / lecture (median over rounds) | interquartile range |",
             "|---|---:|---:|---|"]
    for key, (label, *_) in VARIANTS.items():
        if key not in paired:
            continue
        figures = paired[key]
        low, high = figures["ratio_quartiles"]
        choice = figures.get("choice")
        if choice and key in ("auto", "bucketed"):
            label += f": {choice['policy']}, output matmul {choice['output_dtype']}"
        lines.append(f"| {label} | {figures['ms_per_step']:.1f} | {figures['ratio']:.3f} | {low:.3f} - {high:.3f} |")
    return "\n".join(lines)


def quality_table(results: dict) -> str:
    quality = results[QUALITY]
    contenders = quality["contenders"]
    lecture = contenders["lecture"]
    lines = [f"| trained side by side ({quality['epochs']} epoch(s) of {quality['train_reviews']:,} reviews) | "
             "ms/step | training time (s) | time / lecture | held-out loss | loss / lecture | "
             "held-out loss, words only | words / lecture |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for result in contenders.values():
        lines.append(f"| {result['label']} | {result['ms_per_step']:.1f} | {result['train_seconds']:.0f} | "
                     f"{result['train_seconds'] / lecture['train_seconds']:.3f} | {result['heldout_loss']:.4f} | "
                     f"{result['heldout_loss'] / lecture['heldout_loss']:.4f} | {result['heldout_word_loss']:.4f} | "
                     f"{result['heldout_word_loss'] / lecture['heldout_word_loss']:.4f} |")
    return "\n".join(lines)


def jax_table(results: dict) -> str:
    lines = ["| output layer at 32 x 80 positions (one process) | ms | GFLOP/s |", "|---|---:|---:|"]
    for label in (JAX_CAUSE, JAX_CAUSE_ONEDNN):
        if label not in results:
            continue
        cause = results[label]
        flags = f" (XLA_FLAGS={cause['xla_flags']})" if cause["xla_flags"] else ""
        for name, ms in cause["ms"].items():
            if flags and not name.startswith("jax"):
                continue
            gflops = cause["matmul_gflops"].get(name)
            lines.append(f"| {name}{flags if name.startswith('jax') else ''} | {ms:.1f} | "
                         f"{'' if gflops is None else f'{gflops:.0f}'} |")
    return "\n".join(lines)


def separate_table(results: dict) -> str:
    lines = ["| measurement (own process) | ms/step | ms/token | first call (s) | peak RSS (MiB) | load avg |",
             "|---|---:|---:|---:|---:|---|"]
    for label, f in results.items():
        if label in (PAIRED, QUALITY, JAX_CAUSE, JAX_CAUSE_ONEDNN, COMPONENTS_TF, COMPONENTS_JAX):
            continue
        step = f"{f['ms_per_step']:.1f}" if "ms_per_step" in f else ""
        token = ""
        if "ms_per_token" in f:
            token = f"{f['ms_per_token']:.2f}"
            if "samples" in f:
                token += f" per step of {f['samples']} texts ({f['ms_per_token_per_sample']:.3f} per text)"
        first = f"{f['first_call_s']:.2f}" if "first_call_s" in f else ""
        lines.append(f"| {label} | {step} | {token} | {first} | {f['peak_rss_mib']:.0f} | "
                     f"{f['load'][0]:.1f} -> {f['load'][1]:.1f} |")
    return "\n".join(lines)


def jit_note(variants: dict) -> str:
    """What "auto" meant in this run for XLA, for us and for the lecture."""
    xla = lambda key: "XLA" if variants[key]["resolved_jit"] else "no XLA"  # noqa: E731
    return (f'With `jit_compile="auto"` our training ran with {xla("auto")} here, the lecture\'s `compile("adam")` '
            f'with {xla("lecture")}. XLA on a CPU does not use the bfloat16 matrix instructions (see the JAX '
            f'section): compare "auto" with "auto under XLA", and float32 with float32 under XLA.')


def _verdict(ratio: float, target: float, quartiles=None) -> str:
    if ratio <= target:
        return "met" if quartiles is None or quartiles[1] <= target else "met (the interquartile range reaches above)"
    return "**not met**"


def report(results: dict, summary: dict, info: dict, args) -> str:
    paired = results[PAIRED]
    variants = paired["variants"]
    lecture_generate, cached = results["lecture: TextGenerator.generate"], results["ours: CachedGenerator.generate"]
    batch = results["ours: sample_batch (CachedGenerator, batched)"]
    lecture_rss = results["lecture: training"]["peak_rss_mib"]
    ours_rss = results['ours: training, mixed_precision="auto"']["peak_rss_mib"]
    versions = ", ".join(f"{name} {value}" for name, value in info["versions"].items())
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    choice = summary["choice"]
    quality = results[QUALITY]
    contenders = quality["contenders"]
    lecture_q, auto_q, bucketed_q = contenders["lecture"], contenders["auto"], contenders["auto-bucketed"]
    train_verdict = _verdict(summary["train_ratio"], TRAIN_TARGET, variants["auto"]["ratio_quartiles"])
    bucketed_verdict = _verdict(summary["bucketed_ratio"], TRAIN_TARGET, variants["bucketed"]["ratio_quartiles"])
    only_bucketed = summary["train_ratio"] > TRAIN_TARGET >= summary["bucketed_ratio"]
    return f"""# Benchmarks

Written by `python benchmarks/benchmark.py` (a script, not a test); rerun it to refresh every figure
(`--quick` for a smoke check in a few minutes, which writes nothing).

## Machine

- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {info['ram_gib']:.1f} GiB RAM;
  bfloat16 instructions: {', '.join(info['bf16_flags']) or 'none'}
- {versions}; Python {info['python']}; {info['os']}
- Date: {info['date']}
- `mixed_precision="auto"` chose here: **{choice['policy']}**, output matmul {choice['output_dtype']}
  ({choice['reason']}).
- Shared: other jobs may run on this CPU during the run (the load average is shown beside each process;
  {info['usable_cores']}.0 means every core busy). Absolute times are noisy. The ratios are the figures to
  read: training ratios come from one process that alternates the implementations every {paired['chunk']}
  steps, and the held-out race alternates every few steps with a clock per model, so load that comes
  and goes falls on each alike.

## Against the targets

| target | lecture | ours | ratio | |
|---|---:|---:|---:|---|
| training step at most {TRAIN_TARGET:g} x the lecture's, default (`auto`) | {variants['lecture']['ms_per_step']:.1f} ms | {variants['auto']['ms_per_step']:.1f} ms | {summary['train_ratio']:.3f} | {train_verdict} |
| the same with the opt-in length buckets (`--bucket-by-length on`) | {variants['lecture']['ms_per_step']:.1f} ms | {variants['bucketed']['ms_per_step']:.1f} ms | {summary['bucketed_ratio']:.3f} | {bucketed_verdict} |
| held-out loss after {quality['epochs']} epoch(s), within 1% (default) | {lecture_q['heldout_loss']:.4f} | {auto_q['heldout_loss']:.4f} | {summary['auto_heldout_ratio']:.4f} | {met(summary['auto_heldout_ratio'] <= HELDOUT_TARGET)} |
| held-out loss after {quality['epochs']} epoch(s), within 1% (length buckets) | {lecture_q['heldout_loss']:.4f} | {bucketed_q['heldout_loss']:.4f} | {summary['auto-bucketed_heldout_ratio']:.4f} | {met(summary['auto-bucketed_heldout_ratio'] <= HELDOUT_TARGET)} |
| held-out loss over words only (lecture; default; length buckets) | {lecture_q['heldout_word_loss']:.4f} | {auto_q['heldout_word_loss']:.4f}; {bucketed_q['heldout_word_loss']:.4f} | {auto_q['heldout_word_loss'] / lecture_q['heldout_word_loss']:.4f}; {bucketed_q['heldout_word_loss'] / lecture_q['heldout_word_loss']:.4f} | |
| training time of those epochs at most {TRAIN_TARGET:g} x the lecture's (default; length buckets) | {lecture_q['train_seconds']:.0f} s | {auto_q['train_seconds']:.0f} s; {bucketed_q['train_seconds']:.0f} s | {summary['auto_time_ratio']:.3f}; {summary['auto-bucketed_time_ratio']:.3f} | {met(summary['auto_time_ratio'] <= TRAIN_TARGET)} (default) |
| generation at least {GENERATION_TARGET:g}x faster (lecture / ours) | {lecture_generate['ms_per_token']:.2f} ms/token | {cached['ms_per_token']:.2f} ms/token | {summary['generation_speedup']:.1f}x | {met(summary['generation_speedup'] >= GENERATION_TARGET)} |
| peak memory, training (RSS of the process) | {lecture_rss:.0f} MiB | {ours_rss:.0f} MiB | {ours_rss / lecture_rss:.2f} | |
| peak memory, generation | {lecture_generate['peak_rss_mib']:.0f} MiB | {cached['peak_rss_mib']:.0f} MiB | {cached['peak_rss_mib'] / lecture_generate['peak_rss_mib']:.2f} | |
{_bucket_sentence(only_bucketed, summary)}
## Training, paired

{args.steps} timed steps per variant after {args.warmup} warm-up steps, in {paired['rounds']} rounds of one
turn each ({paired['chunk']} steps, the first not timed); the order of the turns rotates every round.

{paired_table(results)}

- The levers, measured each: the output layer (256 x 10,000 at each of the 32 x 80 positions) is most
  of a step. Its matmul in bfloat16 (softmax and loss still float32) is the "auto" row against
  "mixed_bfloat16 with the output layer float32". {_loss_lever(variants)} {_adam_lever(variants)}
- Length buckets: {100 * paired['padding_share']:.0f}% of the input positions of full-width batches are
  padding here. With `bucket_by_length="on"` reviews of similar length share a batch, cut after its
  longest review (widths in multiples of 8), which removes most of that padding; every review keeps all
  its tokens and the end-of-text target after its last word. The lecture's loss also averages over the
  padding targets, so a trimmed batch weighs them less: that changes what the loss averages, hence
  opt-in. The held-out loss below is always the lecture's definition, on full-width batches, and
  also over the words only (each review's targets up to and including its end of text): a model
  trained on trimmed batches rarely sees padding after padding, which only the first counts.
- {jit_note(variants)}

{_parts_section(results)}
## Held-out loss against training time

The lecture's implementation and ours trained side by side on {quality['train_reviews']:,} real reviews
({quality['steps_per_epoch']} steps per epoch) for {quality['epochs']} epoch(s), each with its own clock,
in turns of a few steps; the held-out loss of {quality['heldout_reviews']:,} reviews (10%, the same
reviews for all, each vectorized by its own implementation's vocabulary) every {quality['eval_every']}
steps, evaluation not timed. Different implementations draw different initial weights and batch orders,
so about a percent of difference in held-out loss is within seed-to-seed noise at this length of training.

{quality_table(results)}

![held-out loss against training time](benchmarks/{PLOT.name})

## The JAX backend

{_jax_paragraph(results)}

{components_table(results) if COMPONENTS_JAX in results else ""}

{jax_table(results)}

## GPU

No GPU was lent to this benchmark run. `benchmarks/gpu_benchmark.py` is ready for one: on a machine
with a GPU and JAX (TensorFlow not needed), it trains the lecture's model from pre-tokenized reviews
(`gpt-keras tokenize --out tokens.npz`, a few MiB) and prints ms/step, tokens/s, the share of the
GPU's peak and cached generation ms/token. The lecture's GPU ran 27-30 ms/step.

## Each measurement in its own process

Peak RSS includes the Python, TensorFlow and data a process loads before it measures anything (the
first row). Training rows: {args.steps} steps after {args.warmup}, "first call" the first step (tracing and
compiling included); generation rows: the lecture's call
`generate("{PROMPT}", max_tokens={MAX_TOKENS}, temperature={TEMPERATURE})` (78 new words unless padding
is drawn), median of {args.repeats} runs after a 5-word warm-up that traces and compiles ("first call"),
untrained float32 models (the speed does not depend on the weights).

{separate_table(results)}

## Reading the figures

- Training: the two implementations run the same layers, the same loss and Keras' `fit` loop; in float32
  a step does the same arithmetic (ours writes the loss's gradient through the output layer itself), dominated on a
  CPU by the 256 x 10,000 output layer and its softmax at each of the 32 x 80 positions. What differs is the input pipeline (the lecture vectorizes each batch of
  strings on the fly, without prefetching; ours vectorizes once and prefetches token arrays) and the
  causal mask (the lecture tiles it over the batch with `tf.tile`, ours broadcasts it): small costs.
  Ours is faster by computing in bfloat16 where the CPU has bfloat16 instructions (`auto`), by the
  loss writing the output layer's backward pass itself, by Adam in one kernel per variable, and, opt-in,
  by not computing padding.
- Generation: the lecture calls `model.predict` for every word, which sets up a data adapter and
  reruns the whole sequence; `CachedGenerator` runs one XLA-compiled step per word on the newest token
  only, with each block's keys and values kept, and the prompt in one call. Its records (the
  distribution each word was drawn from and the attention over the prompt so far) equal the lecture
  loop's within 1e-5, and a seed draws the same words (`tests/test_generation.py`).
- Batched generation decodes {batch['samples']} texts per step in {batch['ms_per_token']:.1f} ms,
  {batch['ms_per_token_per_sample']:.2f} ms per word per text.
"""


def _loss_lever(variants: dict) -> str:
    """What replacing Keras' loss by `NextTokenCrossEntropy` measured, when both rows ran."""
    return _lever(variants, "auto-keras-loss", "Keras' loss", "ours", (
        "The loss: Keras' `SparseCategoricalCrossentropy` finds the softmax's logits and calls TensorFlow's "
        "fused `sparse_softmax_cross_entropy_with_logits` (a second softmax), then the gradient goes back "
        "through Keras' `Dense`, which multiplies the kernel's gradient in a layout oneDNN runs at two thirds "
        "of its speed. `NextTokenCrossEntropy`, the same loss, reads the target's probability and writes the "
        "output layer's backward pass itself from the operands `SoftmaxDense` hands it: the probabilities in "
        "bfloat16 as the softmax rounded them, the kernel's gradient as (p.T @ inputs).T, the one-hot part as a "
        "gather and a segment sum of [positions, width] values, never a [positions, vocabulary] one"))


def _adam_lever(variants: dict) -> str:
    """What `FusedAdam` measured against Keras' Adam, when both rows ran."""
    return _lever(variants, "auto-keras-adam", "Keras' Adam", "`FusedAdam`", (
        "Adam: Keras' `Adam` runs about a dozen operations per variable, each a pass over its 5.8 M float32 "
        "weights and moments; `FusedAdam` runs TensorFlow's one `ApplyAdam` kernel per variable (the same "
        "update; a word's slices of the embedding gradient are summed before squaring, as in Keras 2 and JAX, "
        "docs/lecture-differences.md)"))


def _lever(variants: dict, key: str, theirs: str, ours: str, explanation: str) -> str:
    """`explanation`, then the step ratio of variant `key` (with `theirs`) against the default (with `ours`)."""
    if key not in variants:
        return ""
    return (f"{explanation}: {variants[key]['ratio']:.3f} of the lecture's step with {theirs}, "
            f"{variants['auto']['ratio']:.3f} with {ours}.")


def _parts_section(results: dict) -> str:
    """Where the default step's time goes, each part against its floor (`benchmarks/step_parts.py`)."""
    if STEP_PARTS not in results:
        return ""
    sys.path.insert(0, str(HERE))
    import step_parts

    figures = results[STEP_PARTS]
    return f"""## Where the default step's time goes

The default step (mixed_bfloat16, TensorFlow, no XLA) taken apart by `benchmarks/step_parts.py`: each part
run alone on fixed random batches, the parts alternating over {figures['rounds']} rounds, a part's share
the median of its time / the whole step's in the same round. The floors: FLOPs at the
{figures['bf16_gflops']:.0f} GFLOP/s a bfloat16 matmul of the output layer's shape reached in that process
(this CPU's two cores at about their bfloat16 peak: 2 x 16 pairs x 2 FLOPs per cycle), bytes at the
{figures['copy_gbps']:.1f} GB/s of a float32 copy of [positions, vocabulary].

{step_parts.table(figures)}

- The output matmuls are at their floor: the next lever there is fewer FLOPs, which only the opt-in length
  buckets give (27% of the positions are padding), or faster matrix units than this CPU's.
- The softmax computes in float32 (the lecture's) from the bfloat16 logits and, in training, writes bfloat16
  probabilities, the copy the backward pass multiplies (`softmax_rounds_once`): those two passes, and the
  bias's gradient reading the probabilities again, are the bytes the floor counts; above it are the
  softmax's second pass over the logits and the one-hot parts. The embedding and block spend about half
  their time outside their matmuls, in Keras'
  `MultiHeadAttention`, `LayerNormalization` and `Dropout` (reshapes, bias gradients, random masks), which
  the lesson keeps as the lecture builds them.
- "The rest" is the whole step less the parts: Keras' step around the model, less what the parts count twice
  (each part pays its own Keras step and SGD pass, and in the whole step some small operations overlap);
  being a difference of medians, it also carries their noise.
"""


def _bucket_sentence(only_bucketed: bool, summary: dict) -> str:
    if only_bucketed:
        return (f"\nThe {TRAIN_TARGET:g}x step target is met only with the opt-in length buckets "
                f"({summary['bucketed_ratio']:.2f}); the default, which keeps the lecture's batches and loss, "
                f"reaches {summary['train_ratio']:.2f}.\n")
    return ""


def components_table(results: dict) -> str:
    tf_ms, jax_ms = results[COMPONENTS_TF]["ms"], results[COMPONENTS_JAX]["ms"]
    lines = ["| float32, lecture size, ms per step (each backend in its own process) | TensorFlow | JAX | JAX - TensorFlow |",
             "|---|---:|---:|---:|"]
    for name, tf_value in tf_ms.items():
        lines.append(f"| {name} | {tf_value:.1f} | {jax_ms[name]:.1f} | {jax_ms[name] - tf_value:+.1f} |")
    adam_tf, adam_jax = tf_ms[WHOLE] - tf_ms[WHOLE_SGD], jax_ms[WHOLE] - jax_ms[WHOLE_SGD]
    lines.append(f"| Adam (whole step less the SGD step) | {adam_tf:.1f} | {adam_jax:.1f} | {adam_jax - adam_tf:+.1f} |")
    return "\n".join(lines)


def _jax_paragraph(results: dict) -> str:
    jax_row = results.get("ours on JAX: training, float32 (ArrayBatches)")
    tf_row = results.get("ours: training, float32")
    if jax_row is None or JAX_CAUSE not in results or COMPONENTS_JAX not in results:
        return "(The JAX rows were not measured in this run.)"
    ms, gflops = results[JAX_CAUSE]["ms"], results[JAX_CAUSE]["matmul_gflops"]
    tf_parts, jax_parts = results[COMPONENTS_TF]["ms"], results[COMPONENTS_JAX]["ms"]
    gap = jax_parts[WHOLE] - tf_parts[WHOLE]
    head_gap = jax_parts[HEAD] - tf_parts[HEAD]
    text = (f"A float32 training step on JAX took {jax_row['ms_per_step']:.0f} ms against "
            + (f"{tf_row['ms_per_step']:.0f} ms on TensorFlow " if tf_row else "TensorFlow's ")
            + "(own processes, below). ")
    if gap <= 0:
        return text + "JAX was not slower here. " + _jax_extras(results, jax_row)
    text += (f"Taken apart on each backend, the same layers in alternating turns (first table), the step "
             f"costs {gap:.0f} ms more on JAX; the output layer and its loss account for {head_gap:.0f} ms of it "
             f"({jax_parts[HEAD]:.0f} against {tf_parts[HEAD]:.0f} ms), the embedding and block for "
             f"{jax_parts[BODY] - tf_parts[BODY]:.0f} ms{_block_clause(gflops)}. The cause inside the output layer, kernels timed in one "
             f"process (second table): XLA's float32 matmul of the output layer's shape runs at "
             f"{gflops['jax matmul float32']:.0f} GFLOP/s against {gflops['tensorflow matmul float32']:.0f} in "
             f"TensorFlow, which calls oneDNN, and XLA takes {ms['jax exp of the logits float32']:.0f} ms for the "
             f"exponential of the 2560 x 10,000 logits (the softmax's) against TensorFlow's "
             f"{ms['tensorflow exp of the logits float32']:.1f} ms. In bfloat16 XLA's matmul reaches "
             f"{gflops['jax matmul bfloat16']:.0f} GFLOP/s against TensorFlow's {gflops['tensorflow matmul bfloat16']:.0f}: "
             "XLA does not use the CPU's bfloat16 instructions as oneDNN does, so `auto` keeps float32 on JAX on a "
             f"CPU. One lever paid on JAX only: `SoftmaxDense` multiplies all positions as one 2-D matrix, where "
             f"Keras' `Dense` on the 3-D activations costs {jax_parts[HEAD_3D]:.0f} ms on JAX against "
             f"{jax_parts[HEAD]:.0f} (TensorFlow: {tf_parts[HEAD_3D]:.0f} against {tf_parts[HEAD]:.0f}).")
    return text + _jax_extras(results, jax_row)


def _block_clause(gflops: dict) -> str:
    """Whether the block's gap can lie in its matmuls, from their measured speed on each backend."""
    xla, onednn = gflops[f"jax matmul float32, {BLOCK_SHAPE}"], gflops[f"tensorflow matmul float32, {BLOCK_SHAPE}"]
    if xla >= 0.9 * onednn:
        return (f", though XLA multiplies the block's small matrices as fast ({xla:.0f} GFLOP/s at the {BLOCK_SHAPE} "
                f"against {onednn:.0f}): that gap lies in the block's elementwise work (layer norms, dropout, the "
                "attention softmax), which XLA computes more slowly on this CPU, as the exponential below shows")
    return f", whose small matmuls run at {xla:.0f} GFLOP/s in XLA against {onednn:.0f} ({BLOCK_SHAPE})"


def _jax_extras(results: dict, jax_row: dict) -> str:
    text = ""
    if JAX_CAUSE_ONEDNN in results:
        onednn = results[JAX_CAUSE_ONEDNN]
        text += (f" With `XLA_FLAGS={onednn['xla_flags']}` XLA's matmul ran at "
                 f"{onednn['matmul_gflops']['jax matmul float32']:.0f} GFLOP/s in float32 and "
                 f"{onednn['matmul_gflops']['jax matmul bfloat16']:.0f} in bfloat16 (rows below).")
    keras_loss = results.get("ours on JAX: training, float32, with Keras' loss on probabilities")
    if keras_loss:
        text += (f" The loss: with Keras' `SparseCategoricalCrossentropy` on probabilities a JAX step took "
                 f"{keras_loss['ms_per_step']:.0f} ms against {jax_row['ms_per_step']:.0f} ms with "
                 "`NextTokenCrossEntropy` (which `compile_gpt` uses): on JAX, Keras renormalizes, "
                 "clips and logs all 10,000 probabilities and multiplies them by a one-hot matrix at every position.")
    if "ours on JAX: training, mixed_bfloat16" in results:
        text += (f" bfloat16 on JAX: {results['ours on JAX: training, mixed_bfloat16']['ms_per_step']:.0f} ms/step "
                 "(output layer float32).")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Kaggle reviews (CSV or JSON)")
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per variant (default 60)")
    parser.add_argument("--warmup", type=int, default=5, help="training steps before timing (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generation runs (default 3)")
    parser.add_argument("--batch-samples", type=int, default=32, help="texts in the batched generation")
    parser.add_argument("--quality-epochs", type=int, default=2,
                        help="epochs of the held-out race, lecture against ours (default 2)")
    parser.add_argument("--quality-reviews", type=int, default=0,
                        help="reviews in the held-out race (default 0: all the file has)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="steps between held-out evaluations (default 0: twice per epoch)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check in a few minutes: fewer steps and reviews, the main rows only, "
                             "nothing written (unless --out is given)")
    parser.add_argument("--out", type=Path, default=None, help="the report to write (default BENCHMARKS.md)")
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX rows")
    parser.add_argument("--verbose", action="store_true", help="show the children's logs")
    parser.add_argument("--from-results", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="auto", choices=tuple(VARIANTS)[1:], help=argparse.SUPPRESS)
    parser.add_argument("--keras-loss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and not args.measure:
        args.steps, args.warmup, args.repeats = 10, 2, 1
        args.quality_epochs, args.quality_reviews, args.eval_every = 1, 1000, 10
        args.no_write = args.no_write or args.out is None
    args.out = args.out or ROOT / "BENCHMARKS.md"
    if min(args.steps, args.warmup, args.repeats, args.batch_samples, args.quality_epochs) < 1:
        parser.error("--steps, --warmup, --repeats, --batch-samples and --quality-epochs must be at least 1")
    if min(args.quality_reviews, args.eval_every) < 0:
        parser.error("--quality-reviews and --eval-every must be 0 or more")
    if not args.data.is_file():
        parser.error(f"{args.data}: data file not found")

    if args.measure:
        print(json.dumps(measure(args.measure, args)))
        return 0

    if args.from_results:  # re-renders the report of a finished run (its figures were saved)
        saved = json.loads(args.from_results.read_text())
        return _finish(saved["results"], saved["info"], args)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['ram_gib']:.1f} GiB; {info['versions']}", flush=True)
    results = {}
    for name, extra, env, label, in_quick in MEASUREMENTS:
        if (args.no_jax and (env.get("KERAS_BACKEND") == "jax" or name == "jax-cause")) or (args.quick and not in_quick):
            continue
        print(f"  {label} ...", end=" ", flush=True)
        results[label] = figures = run_child(name, extra, env, args)
        shown = figures.get("ms_per_step", figures.get("ms_per_token"))
        print(f"{'' if shown is None else f'{shown:.2f} ms, '}{figures['peak_rss_mib']:.0f} MiB, "
              f"{figures['wall_s']:.0f} s", flush=True)
    saved = Path(os.environ.get("TMPDIR", "/tmp")) / "gpt-keras-benchmark-results.json"
    saved.write_text(json.dumps({"results": results, "info": info}))
    print(f"figures saved to {saved} (--from-results renders them again)")
    return _finish(results, info, args)


HAND_WRITTEN = "## The lecture recipe against the lecture's code"  # from `recipe_losses.py`, kept on a rewrite


def _written_by_hand(path: Path) -> str:
    """The report's sections this script does not measure (from `HAND_WRITTEN` on), as the file has them."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return "\n" + text[text.index(HAND_WRITTEN):] if HAND_WRITTEN in text else ""


def _finish(results: dict, info: dict, args) -> int:
    """Prints the tables and the verdicts, plots the race and writes BENCHMARKS.md."""
    summary = summarize(results)
    tables = [paired_table(results), separate_table(results)]
    if QUALITY in results:
        tables.insert(1, quality_table(results))
    if COMPONENTS_JAX in results and COMPONENTS_TF in results:
        tables.append(components_table(results))
    if JAX_CAUSE in results:
        tables.append(jax_table(results))
    print("\n" + "\n\n".join(tables) + "\n")
    print(f"training ours/lecture: {summary['train_ratio']:.3f} (auto: {summary['choice']['policy']}), "
          f"{summary['bucketed_ratio']:.3f} with length buckets, {summary['float32_ratio']:.3f} in float32")
    if QUALITY in results:
        print(f"held-out loss ours/lecture: {summary['auto_heldout_ratio']:.4f} (auto), "
              f"{summary['auto-bucketed_heldout_ratio']:.4f} (length buckets); training time ours/lecture: "
              f"{summary['auto_time_ratio']:.3f}, {summary['auto-bucketed_time_ratio']:.3f}")
    if "generation_speedup" in summary:
        print(f"generation speed-up: {summary['generation_speedup']:.1f}x")
    if QUALITY in results:
        plot_path = PLOT if not (args.no_write or args.quick) else Path(os.environ.get("TMPDIR", "/tmp")) / PLOT.name
        sys.path.insert(0, str(HERE))
        import heldout

        heldout.plot(results[QUALITY], plot_path)
        print(f"plotted {plot_path}")
    if not args.no_write:
        args.out.write_text(report(results, summary, info, args) + _written_by_hand(args.out), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
