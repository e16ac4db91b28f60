"""Speed and memory of gpt-keras against the lecture's implementation, in one run on one machine.

At the lecture's configuration (vocabulary 10,000, 80 tokens, embedding 256, two heads of 256,
feed-forward 256, batch 32) on real reviews, it measures:

- training ms/step of the lecture's implementation (`lecture_reference.py`: its model, its
  `compile("adam", ...)` and its `tf.data` pipeline) and of ours (`build_gpt` + `compile_gpt` +
  `make_dataset`) with `jit_compile` "auto", off and on, and with bfloat16 compute. The ratios come
  from one process that trains all of them in alternating chunks of steps, so a neighbour's load on
  a shared CPU falls on each alike;
- generation ms/token of the lecture's `TextGenerator.generate` (`model.predict` per word) and of
  our `CachedGenerator`, for the lecture's call `generate("wine review", max_tokens=80)`; also our
  teaching loop `generate_lecture` and batched generation, for information;
- the peak resident memory (RSS) of each, every measurement in a child process of its own
  (`os.wait4` reports the child's peak), beside a child that only imports and loads the data.

It prints a table and writes `BENCHMARKS.md`. It is a script, not a test: run

    python benchmarks/benchmark.py                 # about 5 minutes on a 2-core CPU
    python benchmarks/benchmark.py --steps 10 --no-write
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
TRAIN_TARGET = 1.0  # ours / lecture ms per step: no slower
GENERATION_TARGET = 20.0  # lecture / ours ms per token: at least 20 times faster
# The paired training's variants: (key, label, jit_compile, precision).
VARIANTS = [
    ("lecture", "lecture", None, "float32"),
    ("auto", 'ours, jit_compile="auto" (the default)', "auto", "float32"),
    ("off", "ours, jit_compile=False", "off", "float32"),
    ("on", "ours, jit_compile=True (XLA)", "on", "float32"),
    ("mixed", 'ours, mixed_bfloat16 (mixed_precision="on")', "auto", "mixed"),
]


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


def _our_training(keras, data, tokens, jit="auto", precision="float32"):
    """Our model (`build_gpt` + `compile_gpt`) and input pipeline at the lecture's configuration."""
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.data import make_dataset
    from gpt_keras.core.model import build_gpt, compile_gpt
    from gpt_keras.runs.batches import ArrayBatches

    config = GPTConfig()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "mixed" else "float32")
    model = compile_gpt(build_gpt(config), config, jit_compile={"auto": "auto", "on": True, "off": False}[jit])
    keras.mixed_precision.set_global_policy("float32")
    if keras.backend.backend() == "tensorflow":
        return model, make_dataset(tokens, config.batch_size, seed=SEED)
    return model, ArrayBatches(tokens, config.batch_size, seed=SEED)


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

    A turn's figure is the median of its step times; a variant's ratio is the median over rounds of
    its turn / the lecture's turn in the same round, so load that comes and goes falls on both.
    """
    lecture, lecture_ds, _ = _lecture_data(args.data)
    data, tokens, _ = _our_data(args.data)
    runs = {"lecture": (lecture.build_model(), lecture_ds.repeat())}
    for key, _, jit, precision in VARIANTS[1:]:
        runs[key] = _our_training(keras, data, tokens, jit, precision)
    resolved = {key: bool(model.jit_compile) for key, (model, _) in runs.items()}
    for model, dataset in runs.values():
        _fit_steps(model, dataset, args.warmup, keras)
    turns = {key: [] for key in runs}
    keys = list(runs)
    for round_ in range(max(2, -(-args.steps // (CHUNK - 1)))):
        for key in keys[round_ % len(keys):] + keys[:round_ % len(keys)]:
            turns[key].append(statistics.median(_fit_steps(*runs[key], CHUNK, keras)[1]))
    figures = {}
    for key, times in turns.items():
        ratios = [mine / theirs for mine, theirs in zip(times, turns["lecture"])]
        low, _, high = statistics.quantiles(ratios, n=4)
        figures[key] = {"ms_per_step": statistics.median(times), "ratio": statistics.median(ratios),
                        "ratio_quartiles": [low, high], "resolved_jit": resolved[key]}
    return {"variants": figures, "rounds": len(turns["lecture"]), "chunk": CHUNK}


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
        return _separate_training(*_our_training(keras, data, tokens, args.jit), args, keras, started)
    if name == "train-paired":
        return _paired_training(args, keras)
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

MEASUREMENTS = [  # (name, extra arguments, environment, label)
    ("baseline", [], {}, "imports + data only"),
    ("train-lecture", [], {}, "lecture: training"),
    ("train-ours", [], {}, 'ours: training, jit_compile="auto"'),
    ("train-ours", ["--jit", "on"], {}, "ours: training, jit_compile=True (XLA)"),
    ("train-paired", [], {}, "paired training (all variants, one process)"),
    ("generate-lecture", [], {}, "lecture: TextGenerator.generate"),
    ("generate-ours-lecture-loop", [], {}, "ours: generate_lecture (teaching loop)"),
    ("generate-cached", [], {}, "ours: CachedGenerator.generate"),
    ("generate-cached-batch", [], {}, "ours: sample_batch (CachedGenerator, batched)"),
    ("train-ours", [], {"KERAS_BACKEND": "jax"}, "ours on JAX: training (ArrayBatches)"),
    ("generate-cached", [], {"KERAS_BACKEND": "jax"}, "ours on JAX: CachedGenerator.generate"),
]


def run_child(name, extra, env, args) -> dict:
    """Runs one measurement in a child; returns its figures with its peak RSS and the load average."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--data", str(args.data),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
               "--batch-samples", str(args.batch_samples), *extra]
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


def summarize(results: dict) -> dict:
    paired = results["paired training (all variants, one process)"]["variants"]
    fastest = min(("auto", "off", "on"), key=lambda key: paired[key]["ratio"])
    return {"train_ratio": paired["auto"]["ratio"], "fastest": fastest,
            "generation_speedup": results["lecture: TextGenerator.generate"]["ms_per_token"]
            / results["ours: CachedGenerator.generate"]["ms_per_token"]}


def paired_table(results: dict) -> str:
    paired = results["paired training (all variants, one process)"]["variants"]
    lines = ["| training | ms/step (median of turns) | ours / lecture (median over rounds) | interquartile range |",
             "|---|---:|---:|---|"]
    for key, label, *_ in VARIANTS:
        figures = paired[key]
        low, high = figures["ratio_quartiles"]
        lines.append(f"| {label} | {figures['ms_per_step']:.1f} | {figures['ratio']:.3f} | {low:.3f} - {high:.3f} |")
    return "\n".join(lines)


def separate_table(results: dict) -> str:
    lines = ["| measurement (own process) | ms/step | ms/token | first call (s) | peak RSS (MiB) | load avg |",
             "|---|---:|---:|---:|---:|---|"]
    for label, f in results.items():
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
    """What "auto" meant in this run, for us and for the lecture, and which rows are the same setting."""
    xla = lambda key: "XLA" if variants[key]["resolved_jit"] else "no XLA"  # noqa: E731
    same = "on" if variants["auto"]["resolved_jit"] else "off"
    return (f'`jit_compile="auto"` (Keras\' choice: XLA for TensorFlow only with an accelerator) resolved to '
            f'{xla("auto")} here, for ours and for the lecture\'s `compile("adam")` alike; our "auto" and "{same}" '
            f'are then the same setting, so the gap between those two rows is the noise.')


def report(results: dict, summary: dict, info: dict, args) -> str:
    paired = results["paired training (all variants, one process)"]
    variants = paired["variants"]
    lecture_generate, cached = results["lecture: TextGenerator.generate"], results["ours: CachedGenerator.generate"]
    batch = results["ours: sample_batch (CachedGenerator, batched)"]
    lecture_rss, ours_rss = results["lecture: training"]["peak_rss_mib"], results['ours: training, jit_compile="auto"']["peak_rss_mib"]
    versions = ", ".join(f"{name} {value}" for name, value in info["versions"].items())
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    low, high = variants["auto"]["ratio_quartiles"]
    if summary["train_ratio"] <= TRAIN_TARGET:
        train_verdict = "met" if high <= TRAIN_TARGET else "met, level within the noise (the interquartile range spans 1)"
    else:
        train_verdict = "level: above 1 by less than the noise (the interquartile range spans 1)" \
            if low <= TRAIN_TARGET else met(False)
    labels = {key: label for key, label, *_ in VARIANTS}
    return f"""# Benchmarks

Written by `python benchmarks/benchmark.py` (a script, not a test); rerun it to refresh every figure.

## Machine

- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {info['ram_gib']:.1f} GiB RAM;
  bfloat16 instructions: {', '.join(info['bf16_flags']) or 'none'}
- {versions}; Python {info['python']}; {info['os']}
- Date: {info['date']}
- Shared: other jobs ran on this CPU during the run (the load average is shown beside each process;
  2.0 means both cores busy). Absolute times are noisy and pessimistic. The ratios are the figures to
  read: training ratios come from one process that alternates the implementations every {paired['chunk']}
  steps, so load that comes and goes falls on each alike; generation differs by far more than the noise.

## Against the targets

| target | lecture | ours | ratio | |
|---|---:|---:|---:|---|
| training no slower per step (ours / lecture <= {TRAIN_TARGET:g}) | {variants['lecture']['ms_per_step']:.1f} ms | {variants['auto']['ms_per_step']:.1f} ms | {summary['train_ratio']:.3f} | {train_verdict} |
| generation at least {GENERATION_TARGET:g}x faster (lecture / ours) | {lecture_generate['ms_per_token']:.2f} ms/token | {cached['ms_per_token']:.2f} ms/token | {summary['generation_speedup']:.1f}x | {met(summary['generation_speedup'] >= GENERATION_TARGET)} |
| peak memory, training (RSS of the process) | {lecture_rss:.0f} MiB | {ours_rss:.0f} MiB | {ours_rss / lecture_rss:.2f} | |
| peak memory, generation | {lecture_generate['peak_rss_mib']:.0f} MiB | {cached['peak_rss_mib']:.0f} MiB | {cached['peak_rss_mib'] / lecture_generate['peak_rss_mib']:.2f} | |

## Training, paired

{args.steps} timed steps per variant after {args.warmup} warm-up steps, in {paired['rounds']} rounds of one
turn each ({paired['chunk']} steps, the first not timed); the order of the turns rotates every round.

{paired_table(results)}

Fastest float32 option for our training on this CPU: **{labels[summary['fastest']]}**.
{jit_note(variants)}
bfloat16 compute (`mixed_precision="on"`) runs the embedding and the block in bfloat16; the output
layer, where most of the time goes, stays float32 by design (its softmax feeds the loss). It is not
the lecture's float32 arithmetic, so `mixed_precision="auto"` keeps float32 on a CPU.

## Each measurement in its own process

Peak RSS includes the Python, TensorFlow and data a process loads before it measures anything (the
first row). Training rows: {args.steps} steps after {args.warmup}, "first call" the first step (tracing and
compiling included); generation rows: the lecture's call
`generate("{PROMPT}", max_tokens={MAX_TOKENS}, temperature={TEMPERATURE})` (78 new words unless padding
is drawn), median of {args.repeats} runs after a 5-word warm-up that traces and compiles ("first call"),
untrained models (the speed does not depend on the weights).

{separate_table(results)}

## Reading the figures

- Training: the two implementations run the same layers, loss and Keras `fit` loop, so a step does
  the same arithmetic, dominated on a CPU by the 256 x 10,000 output layer and its softmax at each of
  the 32 x 80 positions. What differs is the input pipeline (the lecture vectorizes each batch of
  strings on the fly, without prefetching; ours vectorizes once and prefetches token arrays) and the
  causal mask (the lecture tiles it over the batch with `tf.tile`, ours broadcasts it): small costs, so
  the two are level within the noise. XLA (`jit_compile=True`) costs compilation before the first
  step and memory (its own-process row); compare its paired row with "off" for what it saves per step.
- Generation: the lecture calls `model.predict` for every word, which sets up a data adapter and
  reruns the whole sequence; `CachedGenerator` runs one XLA-compiled step per word on the newest token
  only, with each block's keys and values kept, and the prompt in one call. Its records (the
  distribution each word was drawn from and the attention over the prompt so far) equal the lecture
  loop's within 1e-5, and a seed draws the same words (`tests/test_generation.py`).
- Batched generation decodes {batch['samples']} texts per step in {batch['ms_per_token']:.1f} ms,
  {batch['ms_per_token_per_sample']:.2f} ms per word per text.
- The JAX rows train from token arrays (`ArrayBatches`) and decode with `jax.jit`, without TensorFlow
  in the loop.
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Kaggle reviews (CSV or JSON)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="training steps before timing (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generation runs (default 3)")
    parser.add_argument("--batch-samples", type=int, default=32, help="texts in the batched generation")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the report to write")
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX rows")
    parser.add_argument("--verbose", action="store_true", help="show the children's logs")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--jit", default="auto", choices=("auto", "on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.warmup, args.repeats, args.batch_samples) < 1:
        parser.error("--steps, --warmup, --repeats and --batch-samples must be at least 1")
    if not args.data.is_file():
        parser.error(f"{args.data}: data file not found")

    if args.measure:
        print(json.dumps(measure(args.measure, args)))
        return 0

    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['ram_gib']:.1f} GiB; {info['versions']}", flush=True)
    results = {}
    for name, extra, env, label in MEASUREMENTS:
        if args.no_jax and env.get("KERAS_BACKEND") == "jax":
            continue
        print(f"  {label} ...", end=" ", flush=True)
        results[label] = figures = run_child(name, extra, env, args)
        shown = figures.get("ms_per_step", figures.get("ms_per_token"))
        print(f"{'' if shown is None else f'{shown:.2f} ms, '}{figures['peak_rss_mib']:.0f} MiB, "
              f"{figures['wall_s']:.0f} s", flush=True)
    summary = summarize(results)
    print(f"\n{paired_table(results)}\n\n{separate_table(results)}\n")
    print(f"training ours/lecture: {summary['train_ratio']:.3f}; fastest option: {summary['fastest']}; "
          f"generation speed-up: {summary['generation_speedup']:.1f}x")
    if not args.no_write:
        args.out.write_text(report(results, summary, info, args), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
