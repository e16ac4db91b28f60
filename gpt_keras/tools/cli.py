"""The `gpt-keras` command line: download, tokenize, train, generate, tensorboard (and the classroom tools).

Each subcommand is a small `add_*_parser` function that declares its flags and a `run_*` function that
calls the library and prints. Bad input ends with one line on stderr naming the problem and exit code 2.
Flags, paths and config values are checked before TensorFlow is imported (`--help`, `--version` and the
temperature calculator never import it), and TensorFlow's own log lines are hidden unless `--verbose`.
"""

from __future__ import annotations

from gpt_keras.tools.quiet import quiet_tensorflow  # first: nothing below may have imported TensorFlow yet

import argparse
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from gpt_keras.core.checks import GPTKerasError, check_max_tokens, check_seed
from gpt_keras.core.config import PRESETS, ConfigError, GPTConfig
from gpt_keras.core.sampling import check_temperature, check_top_k, check_top_p
from gpt_keras.runs.files import printable, one_line

class UsageError(GPTKerasError, ValueError):
    """A command-line argument is invalid; the message names the flag."""


# --- shared flag helpers ------------------------------------------------------------------------

def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `GPTConfig` field (`--vocab-size`, `--max-len`, ...), defaulting to the preset's value."""
    group = parser.add_argument_group("model and training hyperparameters (defaults: the chosen --preset)")
    group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="starting values for every hyperparameter (default: lecture)")
    group.add_argument("--config", type=Path, help="a config.json to start from (a run's, say)")
    for field in dataclasses.fields(GPTConfig):
        kind = {"int": int, "float": float, "str": str}[field.type if isinstance(field.type, str) else field.type.__name__]
        group.add_argument(_flag(field.name), dest=field.name, type=_checked_arg(kind, _unchecked), default=None,
                           metavar=field.name.upper(), help=_FIELD_HELP.get(field.name, f"(lecture: {field.default})"))


def _mixed_precision_help() -> str:
    from gpt_keras.runs.precision import auto_here

    return ("auto (default): the machine decides, " + auto_here().replace("%", "%%") + "; off: float32, the "
            "lecture's; bfloat16; float16 (with loss scaling, as on a T4); on: mixed precision in whichever the "
            "machine prefers")


_FIELD_HELP = {"mixed_precision": _mixed_precision_help()}


def _checked_arg(kind: type, check: Callable) -> Callable[[str], object]:
    """An argparse type that converts, then checks; argparse puts the flag's name before the message."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            return check(value)
        except GPTKerasError as error:  # the rule's own message; argparse puts the flag before it
            raise argparse.ArgumentTypeError(str(error)) from None
    return convert


def _unchecked(value):
    return value


def _at_least(minimum: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return check


def _seed(value: int) -> int:
    return check_seed(value)


def _max_tokens(value: int) -> int:
    return check_max_tokens(value)


def _output(path: Path | None, flag: str, kind: str = "file") -> None:
    """An output path is checked before any work starts (see `gpt_keras.runs.files.check_output_path`)."""
    if path is not None:
        from gpt_keras.runs.files import check_output_path

        check_output_path(path, flag, kind)


def _port(value: int) -> int:
    if not 1 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {value}")
    return value


def config_from_args(args: argparse.Namespace, saved: GPTConfig | None = None) -> GPTConfig:
    """The preset (or --config file), then every flag given on top; errors name the flag.

    `saved` (a run's config, for --resume) takes the place of the preset unless --preset or --config
    is given, so `--resume --epochs 8` changes only the epochs.
    """
    if args.config:
        from gpt_keras.runs.rundir import read_config

        base = read_config(args.config).to_dict()
    elif saved is not None and args.preset is None:
        base = saved.to_dict()
    else:
        base = GPTConfig.preset(args.preset or "lecture").to_dict()
    changes = {field.name: getattr(args, field.name) for field in dataclasses.fields(GPTConfig)
               if getattr(args, field.name, None) is not None}
    try:
        return GPTConfig(**{**base, **changes})
    except ConfigError as error:
        message = str(error)
        for name in changes:
            if message.startswith(name + " "):
                message = f"{_flag(name)}: {message}"
        raise ConfigError(message) from None


def require_extra(extra: str, *modules: str, purpose: str) -> None:
    """Stops with exit code 2 and the pip command when a package of an optional extra is missing."""
    missing = [name for name in modules if not _importable(name)]
    if missing:
        raise UsageError(f"{purpose} needs {', '.join(missing)}, from the [{extra}] extra: "
                         f"pip install \"gpt-keras[{extra}]\"")


def _importable(name: str) -> bool:
    """Whether `import name` would find the package, without importing it (transformers imports TensorFlow)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None, i.e. blocked
        return False


def existing_file(path: Path | None, flag: str) -> None:
    """A missing input file is reported before TensorFlow loads."""
    if path is not None and not path.is_file():
        raise UsageError(f"{flag}: {path}: {'not a regular file' if path.exists() else 'file not found'}")


def existing_run(path: Path | None, flag: str = "--run") -> None:
    """A missing run directory is reported before TensorFlow loads."""
    if path is not None and not path.is_dir():
        raise UsageError(f"{flag}: {path}: {'not a directory' if path.exists() else 'run directory not found'}")


def add_sampling_flags(parser: argparse.ArgumentParser, temperature: bool = True) -> None:
    group = parser.add_argument_group("decoding (temperature, then top-k or top-p, then renormalise)")
    if temperature:
        group.add_argument("--temperature", type=_checked_arg(float, check_temperature), default=1.0,
                           help="T > 0 (default 1.0)")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--top-k", type=_checked_arg(int, check_top_k), help="keep only the k most likely words")
    mode.add_argument("--top-p", type=_checked_arg(float, check_top_p),
                      help="keep the smallest set of words whose probability reaches p")
    mode.add_argument("--greedy", action="store_true", help="always take the most likely word")


# --- download / tokenize --------------------------------------------------------------------------

def add_download_parser(subparsers) -> None:
    parser = subparsers.add_parser("download", help="fetch the full Kaggle wine-review dataset (needs gpt-keras[download])")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to put it (default: $GPT_KERAS_DATA_DIR, else ./data if it holds the dataset, "
                             "else the per-user cache folder)")
    parser.set_defaults(handler=run_download)


def run_download(args) -> int:
    require_extra("download", "kagglehub", purpose="gpt-keras download")
    from gpt_keras.runs import datasets

    folder = datasets.data_dir(args.data_dir)
    print(f"Downloading the Kaggle wine reviews into {folder}/")
    path = datasets.download_dataset(folder)
    hint = "" if args.data_dir is None else f" when run with GPT_KERAS_DATA_DIR={folder}"
    print(f"Saved {path}; `gpt-keras train` now uses it{hint}.")
    return 0


def add_tokenize_parser(subparsers) -> None:
    parser = subparsers.add_parser("tokenize", help="vectorize reviews into a .npz for training on any backend")
    parser.add_argument("--data", type=Path, help="Kaggle JSON or CSV (default: full dataset or the sample)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    add_config_flags(parser)
    parser.set_defaults(handler=run_tokenize)


def run_tokenize(args) -> int:
    config = config_from_args(args)
    existing_file(args.data, "--data")
    from gpt_keras.runs.batches import save_tokens
    from gpt_keras.runs.train import prepare_data

    _output(args.out, "--out")
    prepared = prepare_data(config, args.data)
    save_tokens(args.out, prepared.tokens, prepared.vocab.words)
    print(f"Wrote {args.out}: {prepared.tokens.shape[0]:,} reviews x {prepared.tokens.shape[1]} tokens, "
          f"vocabulary {len(prepared.vocab):,}")
    return 0


# --- train ------------------------------------------------------------------------------------------

def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the GPT with model.fit (TensorBoard, checkpoints, samples)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="Kaggle JSON or CSV (default: the data folder's full dataset, else the sample)")
    source.add_argument("--tokens", type=Path, help="train from a .npz written by `gpt-keras tokenize`")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    parser.add_argument("--name", help="name of the new run directory (default: run-DATE-TIME)")
    parser.add_argument("--run", type=Path, help="the run directory to create, or to continue with --resume")
    parser.add_argument("--resume", action="store_true", help="continue --run (or the latest run) from its last epoch")
    parser.add_argument("--strategy", choices=("none", "data-parallel", "mirrored", "multiworker"), default="none",
                        help="data-parallel: Keras' own, on the JAX backend; mirrored/multiworker: tf.distribute; "
                             "--batch-size is then the global batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(parser)
    parser.set_defaults(handler=run_train)


def run_train(args) -> int:
    existing_file(args.data, "--data")
    existing_file(args.tokens, "--tokens")
    if args.resume:
        existing_run(args.run)
    else:
        config_from_args(args)  # the flags' values, checked before TensorFlow loads
    from gpt_keras.runs import rundir
    from gpt_keras.runs.resume import resume
    from gpt_keras.runs.train import train

    verbose = 0 if args.quiet else progress_verbosity()
    rundir.check_run_name(args.name)
    if args.resume:  # the same command again, plus --resume: its flags are checked against the run's config
        run_dir = rundir.resume_target(args.runs_dir, args.name, args.run)
        config = config_from_args(args, saved=rundir.read_config(run_dir / rundir.CONFIG))
        result = resume(run_dir, config, args.data, tokens_path=args.tokens, strategy=make_strategy(args.strategy),
                        verbose=verbose)
    else:
        result = train(config_from_args(args), args.data, runs_dir=args.runs_dir, run_name=args.name,
                       run_dir=args.run, tokens_path=args.tokens, strategy=make_strategy(args.strategy),
                       verbose=verbose)
    if result.stopped_on_nan is not None:
        epoch, batch = result.stopped_on_nan
        kept = (f"The last good epoch is kept in {result.run_dir}: resume it with a lower --learning-rate and "
                "--resume." if (result.run_dir / "state.json").exists() else
                "No epoch finished, so nothing was kept to resume: start again with a lower --learning-rate.")
        print(f"Training stopped: the loss became NaN at epoch {epoch}, batch {batch}. {kept}", file=sys.stderr)
        return 1
    if not result.chief:
        print("\nTraining finished; the chief worker saved the run (this worker's copy was temporary).")
        return 0
    print(f"\nRun saved in {result.run_dir}")
    print(f"  model:       {result.run_dir / 'model.keras'}")
    print(f"  TensorBoard: tensorboard --logdir {result.run_dir / 'logs'}   (or: gpt-keras tensorboard --run {result.run_dir})")
    print(f"  generate:    gpt-keras generate --run {result.run_dir} --prompt \"wine review : germany\" "
          "--temperature 0.5 --seed 0")
    return 0


def make_strategy(name: str):
    """The distribution for --strategy (None for none); see `gpt_keras.runs.distribute`."""
    from gpt_keras.runs import distribute

    makers = {"data-parallel": distribute.data_parallel, "mirrored": distribute.mirrored_strategy,
              "multiworker": distribute.multiworker_strategy}
    if name == "none":
        return None
    try:
        return makers[name]()
    except distribute.DistributeError as error:
        raise UsageError(f"--strategy {name}: {error} (see the README)") from None


# --- generate ----------------------------------------------------------------------------------------

def add_generate_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate text from a trained run")
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by `gpt-keras train`")
    parser.add_argument("--prompt", default="wine review", help="start of the text (default 'wine review')")
    parser.add_argument("--max-tokens", type=_checked_arg(int, _max_tokens), default=80,
                        help="length of the text, prompt included (default 80, at most 2048)")
    parser.add_argument("--seed", type=_checked_arg(int, _seed), default=None,
                        help="seed of the sampler (same seed, same text)")
    parser.add_argument("--samples", type=_checked_arg(int, _at_least(1)), default=1, help="how many texts (default 1)")
    parser.add_argument("--method", choices=("cached", "lecture"), default="cached",
                        help="cached: key/value cache (fast); lecture: model.predict per word, as taught")
    add_sampling_flags(parser)
    look = parser.add_argument_group("looking inside (the lecture's print_probs)")
    look.add_argument("--show-probs", action="store_true",
                      help="after each text, every step's prompt shaded by attention and the 5 likeliest next words")
    look.add_argument("--heads", action="store_true", help="with --show-probs (implied), also each attention head")
    look.add_argument("--html", type=Path, metavar="PATH",
                      help="write a standalone HTML page of the generation (PATH-2.html... for more --samples)")
    look.add_argument("--heatmap", type=Path, metavar="PATH", help="write the attention of every step as a PNG")
    parser.set_defaults(handler=run_generate)


def run_generate(args) -> int:
    existing_run(args.run)
    from gpt_keras.runs.rundir import load_run

    _output(args.html, "--html")
    _output(args.heatmap, "--heatmap")
    run = load_run(args.run)
    generator = run.text_generator(seed=args.seed, method=args.method)
    infos = []
    for _ in range(args.samples):
        infos.append(generator.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                                        top_k=args.top_k, top_p=args.top_p, greedy=args.greedy))
        if args.show_probs or args.heads:
            from gpt_keras.tools.viz import print_probs

            print_probs(infos[-1], run.vocab, heads=args.heads)
    _write_views(args, infos, run.vocab)
    return 0


def _numbered(path: Path, index: int, count: int) -> Path:
    """PATH for one sample; PATH, PATH-2, PATH-3... (before the suffix) for several."""
    return path if count == 1 or index == 0 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def _write_views(args, infos: list, vocab) -> None:
    """--html and --heatmap: one file per sample."""
    if args.html is None and args.heatmap is None:
        return
    from gpt_keras.tools.viz import attention_heatmap, export_html

    for index, info in enumerate(infos):
        if args.html is not None:
            path = export_html(info, vocab, _numbered(args.html, index, len(infos)),
                               title=f"gpt-keras generate: {args.prompt}")
            print(f"Wrote {path}")
        if args.heatmap is not None:
            if not info:
                print(f"gpt-keras generate: no heatmap for sample {index + 1}: no word was generated "
                      "(is --max-tokens larger than the prompt?)", file=sys.stderr)
                continue
            print(f"Wrote {attention_heatmap(info, _numbered(args.heatmap, index, len(infos)))}")


# --- demo ------------------------------------------------------------------------------------------------

DEMO_PROMPTS = (("wine review : us", 1.0), ("wine review : italy", 0.5), ("wine review : germany", 0.5))


def add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train the demo preset on the embedded sample and generate")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the run goes (default runs/)")
    parser.add_argument("--epochs", type=_checked_arg(int, _at_least(1)), default=None,
                        help="override the demo preset's epochs")
    parser.add_argument("--seed", type=_checked_arg(int, _seed), default=0,
                        help="seed of training and sampling (default 0)")
    parser.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    """What `make demo` runs: the lecture's pipeline at demo size, then the lecture's three prompts."""
    changes = {"seed": args.seed, **({"epochs": args.epochs} if args.epochs is not None else {})}
    try:
        config = GPTConfig.preset("demo", **changes)
    except ConfigError as error:
        raise UsageError(f"--epochs/--seed: {error}") from None
    from gpt_keras.core.callbacks import TextGenerator
    from gpt_keras.runs.datasets import SAMPLE_PATH as sample
    from gpt_keras.runs.train import train

    print(f"gpt-keras demo: training the 'demo' preset on the embedded synthetic sample {sample}\n"
          f"  ({config.epochs} epochs; the lecture's size is `gpt-keras train --preset lecture`)")
    result = train(config, sample, runs_dir=args.runs_dir, verbose=progress_verbosity())
    generator = TextGenerator(result.text_generator.vocab, seed=args.seed, every_epoch=False)
    generator.set_model(result.model)
    infos = {prompt: generator.generate(prompt, max_tokens=config.generate_max_tokens, temperature=temperature)
             for prompt, temperature in DEMO_PROMPTS}
    _show_probs(infos[DEMO_PROMPTS[-1][0]][:4], generator.vocab)
    print(f"\nRun saved in {result.run_dir} (model.keras, vocab.json, config.json, checkpoints/)")
    print(f"TensorBoard logs in {result.run_dir / 'logs'}: open them with\n"
          f"  {Path(sys.executable).parent / 'tensorboard'} --logdir {result.run_dir / 'logs'} --host 127.0.0.1\n"
          f"  (or `gpt-keras tensorboard --run {result.run_dir}`), then browse http://127.0.0.1:6006/")
    print(f"Generate again: gpt-keras generate --run {result.run_dir} --prompt \"wine review : germany\" "
          "--temperature 0.5 --seed 0")
    return 0


def _show_probs(info, vocab) -> None:
    from gpt_keras.tools.viz import print_probs

    print("Where the model looked, and its next-word probabilities (first steps of the germany text):")
    print_probs(info, vocab)


def progress_verbosity() -> int:
    """The Keras progress bar on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2


# --- tensorboard ---------------------------------------------------------------------------------------

def add_tensorboard_parser(subparsers) -> None:
    parser = subparsers.add_parser("tensorboard", help="start TensorBoard on a run's logs (127.0.0.1)")
    parser.add_argument("--run", type=Path, required=True, help="a run directory (or runs/ for all runs)")
    parser.add_argument("--port", type=_checked_arg(int, _port), default=6006, help="1 to 65535 (default 6006)")
    parser.set_defaults(handler=run_tensorboard)


def run_tensorboard(args) -> int:
    log_dir = args.run / "logs" if (args.run / "logs").is_dir() else args.run
    if not log_dir.is_dir():
        raise UsageError(f"--run: {args.run} is not a directory")
    # TensorBoard imports TensorFlow too: run it through gpt_keras.tools.quiet unless --verbose.
    runner = ["-m"] if args.verbose else ["-m", "gpt_keras.tools.quiet"]
    command = [sys.executable, *runner, "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1",
               "--port", str(args.port)]
    print(f"TensorBoard on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
    os.execv(sys.executable, command)
    return 0  # not reached


# --- temperature lab --------------------------------------------------------------------------------

def add_temperature_parser(subparsers) -> None:
    from gpt_keras.core.sampling import check_temperature, check_top_k, check_top_p

    parser = subparsers.add_parser(
        "temperature", help="the temperature lab: the lecture's table from logits, or a run's samples per T",
        description="Without --run: the lecture's calculator, each word's probability at each temperature as "
                    "softmax(z / T) and as probs ** (1 / T) renormalised. With --run: the model's next-word "
                    "distribution after --prompt at each temperature, --samples texts per temperature and "
                    "their metrics (entropy, distinct-1/2, repetition, [UNK] share, perplexity), saved as "
                    "CSV, JSON, a PNG and TensorBoard logs in --out.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--logits", nargs="+", type=_logit_arg, metavar="WORD=LOGIT",
                        help="the calculator's words and logits (default: pfalz=4.1 mosel=3.9 rhein=2.7)")
    source.add_argument("--run", type=Path, help="a run directory written by `gpt-keras train`")
    parser.add_argument("--temperatures", nargs="+", metavar="T",
                        type=_checked_arg(float, lambda value: check_temperature(value, "temperature")),
                        help="each > 0 (default: 1 0.5 1.5 3 for the calculator, 0.2 0.5 1 1.5 2 3 with --run)")
    parser.add_argument("--out", type=Path,
                        help="folder for the files (with --run, default RUN/temperature-lab: metrics.csv, "
                             "report.json, metrics.png, tensorboard/; the calculator writes only with --out)")
    group = parser.add_argument_group("with --run")
    group.add_argument("--prompt", help="start of every sample (default 'wine review : germany')")
    group.add_argument("--samples", type=_checked_arg(int, _at_least(1)), help="texts per temperature (default 8)")
    group.add_argument("--max-tokens", type=_checked_arg(int, _max_tokens),
                       help="length of each text, prompt included (default 80, at most 2048)")
    group.add_argument("--seed", type=_checked_arg(int, _seed), help="seed of the samples (default 0)")
    group.add_argument("--top-words", type=_checked_arg(int, _at_least(1)),
                       help="words in the next-word table (default 5)")
    group.add_argument("--show-samples", type=_checked_arg(int, _at_least(0)),
                       help="texts printed per temperature (default 1; all of them are in report.json)")
    filters = group.add_mutually_exclusive_group()
    filters.add_argument("--top-k", type=_checked_arg(int, check_top_k),
                         help="after temperature, keep only the k most likely words")
    filters.add_argument("--top-p", type=_checked_arg(float, check_top_p),
                         help="after temperature, keep the smallest set of words whose probability reaches p")
    parser.set_defaults(handler=run_temperature)


_LAB_DEFAULTS = dict(prompt="wine review : germany", samples=8, max_tokens=80, seed=0, top_words=5, show_samples=1,
                     top_k=None, top_p=None)


def run_temperature(args) -> int:
    import warnings

    from gpt_keras.tools.temperature import calculator

    temperatures = args.temperatures
    repeated = sorted({t for t in temperatures or () if temperatures.count(t) > 1})
    if repeated:
        raise UsageError(f"--temperatures: {', '.join(f'{t:g}' for t in repeated)} given more than once")
    if args.run is None:
        given = [_flag(name) for name in _LAB_DEFAULTS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only used with --run (the calculator takes --logits, "
                             "--temperatures and --out)")
        words = [word for word, _ in args.logits or ()]
        repeated = sorted({word for word in words if words.count(word) > 1})
        if repeated:
            raise UsageError(f"--logits: {', '.join(repeated)} given more than once")
        table = calculator.temperature_table(dict(args.logits or calculator.LECTURE_LOGITS.items()),
                                              temperatures or (*calculator.LECTURE_TEMPERATURES, 3.0))
        print(printable(table.format(), keep_newlines=True))
        if args.out is not None:
            from gpt_keras.tools.temperature import report as reports

            written = reports.write_table(table, args.out)
            print(f"\nWrote {written[0]} and {written[1]}")
        return 0

    options = {name: default if getattr(args, name) is None else getattr(args, name)
               for name, default in _LAB_DEFAULTS.items()}
    existing_run(args.run)
    _output(args.out if args.out is not None else args.run / "temperature-lab", "--out", "dir")
    from gpt_keras.core.generation import PromptWarning
    from gpt_keras.runs.rundir import load_run
    from gpt_keras.tools.temperature import experiment, report as reports

    run = load_run(args.run)
    with warnings.catch_warnings():
        warnings.simplefilter("always", PromptWarning)  # unknown prompt words, a prompt too long: one line each
        warnings.showwarning = _prompt_warning_printer("temperature", warnings.showwarning)
        report = experiment.temperature_experiment(
            run.model, run.vocab, options["prompt"], temperatures or experiment.DEFAULT_TEMPERATURES,
            n_samples=options["samples"], max_tokens=options["max_tokens"], seed=options["seed"],
            top_k=options["top_k"], top_p=options["top_p"], n_words=options["top_words"])
    print(printable(report.format_table(samples=options["show_samples"], width=None), keep_newlines=True))
    out = args.out if args.out is not None else args.run / "temperature-lab"
    written = reports.write_report(report, out)
    print(f"\nWrote {', '.join(path.name + ('/' if path.is_dir() else '') for path in written.values())} in {out}")
    print(f"  TensorBoard: gpt-keras tensorboard --run {written['tensorboard']}")
    return 0


def _positive(value: float) -> float:
    import math

    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {value}")
    return value


def _logit_arg(text: str) -> tuple[str, float]:
    import math

    word, separator, number = text.rpartition("=")
    try:
        logit = float(number)
    except ValueError:
        logit = math.nan
    if not separator or not word or not math.isfinite(logit):
        raise argparse.ArgumentTypeError(f"expected WORD=LOGIT with a finite number, e.g. pfalz=4.1, got {text!r}")
    return word, logit


def _prompt_warning_printer(command: str, show: Callable) -> Callable:
    """A `warnings.showwarning` that prints a `PromptWarning` as one plain line on stderr."""
    from gpt_keras.core.generation import PromptWarning

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PromptWarning):
            print(f"gpt-keras {command}: warning: {one_line(message)}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return show_warning


# --- GPT-2 beside our model ---------------------------------------------------------------------------

def add_compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="our run beside GPT-2: texts, parameters, time per token, perplexity per token and per word",
        description="Generates from the same prompts, temperatures and seeds with both models, times the same "
                    "number of new tokens, and scores the same held-out words (the last --heldout reviews of "
                    "--data). Writes a Markdown and a JSON report. Needs transformers<5 and tf-keras.")
    parser.add_argument("--run", type=Path,
                        help="a run directory written by `gpt-keras train` (without it: GPT-2 alone, as in the "
                             "lecture's GPT-2 part)")
    parser.add_argument("--gpt2", default="gpt2", metavar="NAME|PATH",
                        help="gpt2, distilgpt2 (from the Hugging Face hub or its cache) or a save_pretrained "
                             "directory, e.g. from `gpt-keras finetune-gpt2` (default gpt2)")
    parser.add_argument("--data", type=Path, help="reviews to hold out (default: the data folder's full dataset, else the sample)")
    parser.add_argument("--heldout", type=_checked_arg(int, _at_least(1)), default=200,
                        help="score the last N reviews of --data (default 200)")
    parser.add_argument("--prompt", action="append", metavar="TEXT",
                        help="a prompt; repeat for more (default: 'wine review : germany' and 'wine review : us')")
    parser.add_argument("--temperature", nargs="+", type=_checked_arg(float, check_temperature), default=[0.5, 1.0],
                        metavar="T", help="temperatures, each used with every prompt and seed (default 0.5 1.0)")
    parser.add_argument("--seed", nargs="+", type=_checked_arg(int, _seed), default=[0],
                        help="sampler seeds (default 0)")
    parser.add_argument("--max-new-tokens", type=_checked_arg(int, _max_tokens), default=40,
                        help="tokens each model generates after the prompt, also the timed length (default 40)")
    add_sampling_flags(parser, temperature=False)
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help="write PATH.md and PATH.json (default RUN/compare-NAME, without --run ./compare-NAME)")
    look = parser.add_argument_group("looking inside (the lecture's print_probs)")
    look.add_argument("--show-probs", action="store_true",
                      help="for the first text of each model: every step's context shaded by (last-layer) attention "
                           "and the 5 likeliest next tokens")
    look.add_argument("--heads", action="store_true", help="with --show-probs (implied), also each attention head")
    parser.set_defaults(handler=run_compare)


def run_compare(args) -> int:
    import warnings

    require_extra("gpt2", "transformers", "tf_keras", purpose="gpt-keras compare")
    existing_run(args.run)
    existing_file(args.data, "--data")
    from gpt_keras.tools import gpt2 as gpt2_lib
    from gpt_keras.core.generation import PromptWarning
    from gpt_keras.runs.rundir import load_run

    folder = args.run if args.run is not None else Path.cwd()
    stem = args.report if args.report is not None else folder / f"compare-{Path(args.gpt2).name}"
    for suffix in (".md", ".json"):
        _output(stem.with_name(stem.name + suffix), "--report")
    run = load_run(args.run) if args.run is not None else None
    gpt2 = gpt2_lib.load_gpt2(args.gpt2)
    prompts = args.prompt or ["wine review : germany", "wine review : us"]
    with warnings.catch_warnings():
        warnings.simplefilter("always", PromptWarning)
        warnings.showwarning = _prompt_warning_printer("compare", warnings.showwarning)
        comparison = gpt2_lib.compare(run, gpt2, args.data, prompts=prompts, temperatures=args.temperature,
                                      seeds=args.seed, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                                      top_p=args.top_p, greedy=args.greedy, heldout=args.heldout)
    print(printable(comparison.format_table(width=None), keep_newlines=True))
    if args.show_probs or args.heads:
        from gpt_keras.tools.viz import print_probs

        first = comparison.generations[0]
        vocabularies = {"ours": run.vocab if run is not None else None, "gpt2": gpt2_lib.TokenLabels(gpt2)}
        for key in comparison.keys:
            vocab = vocabularies[key]
            print(f"\n{comparison.models[key]['name']}, step by step ({first['prompt']!r}, {first['sampler']}, "
                  f"seed {first['seed']}):")
            print_probs(comparison.info[key], vocab, heads=args.heads)
    folder = args.run if args.run is not None else Path.cwd()
    stem = args.report if args.report is not None else folder / f"compare-{Path(gpt2.name).name}"
    written = comparison.write(stem)
    print(f"\nWrote {written['markdown']} and {written['json']}")
    return 0


def add_finetune_gpt2_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune-gpt2", help="fine-tune GPT-2 on the wine reviews (fit, mixed precision on a GPU, save_pretrained)",
        description="Fine-tunes TFGPT2LMHeadModel on the reviews of --data, leaving out the last --heldout "
                    "(the ones `gpt-keras compare` scores), and saves it with save_pretrained in --out, "
                    "which `gpt-keras compare --gpt2 OUT` loads.")
    parser.add_argument("--gpt2", default="gpt2", metavar="NAME|PATH", help="the model to start from (default gpt2)")
    parser.add_argument("--data", type=Path, help="Kaggle JSON or CSV (default: the data folder's full dataset, else the sample)")
    parser.add_argument("--out", type=Path, default=Path("runs/gpt2-wine"),
                        help="save_pretrained directory to write (replaced when done; default runs/gpt2-wine)")
    parser.add_argument("--epochs", type=_checked_arg(int, _at_least(1)), default=1, help="default 1")
    parser.add_argument("--batch-size", type=_checked_arg(int, _at_least(1)), default=8, help="default 8")
    parser.add_argument("--max-length", type=_checked_arg(int, _at_least(2)), default=128,
                        help="tokens per review, longer ones are cut (default 128)")
    parser.add_argument("--learning-rate", type=_checked_arg(float, _positive), default=5e-5,
                        help="Adam's learning rate (default 5e-5)")
    parser.add_argument("--limit", type=_checked_arg(int, _at_least(1)), metavar="N",
                        help="train on the first N reviews only (default: all but the held-out ones)")
    parser.add_argument("--heldout", type=_checked_arg(int, _at_least(0)), default=200,
                        help="leave out the last N reviews, as `compare --heldout N` scores them (default 200)")
    parser.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                        help="auto: mixed precision only on a GPU (bfloat16, float16 on GPUs older than Ampere)")
    parser.add_argument("--seed", type=_checked_arg(int, _seed), default=0,
                        help="seed of dropout and shuffling (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_finetune_gpt2)


def run_finetune_gpt2(args) -> int:
    require_extra("gpt2", "transformers", "tf_keras", purpose="gpt-keras finetune-gpt2")
    existing_file(args.data, "--data")
    from gpt_keras.tools import gpt2 as gpt2_lib

    gpt2_lib.check_finetune_out(args.out)
    policy = gpt2_lib.precision_policy(args.mixed_precision)
    print(f"Fine-tuning {args.gpt2} on {gpt2_lib.device_description()}, dtype policy {policy}")
    result = gpt2_lib.finetune_gpt2(args.gpt2, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size,
                                    max_length=args.max_length, learning_rate=args.learning_rate, limit=args.limit,
                                    heldout=args.heldout, mixed_precision=args.mixed_precision, seed=args.seed,
                                    verbose=0 if args.quiet else progress_verbosity())
    losses = ", ".join(f"{loss:.4f}" for loss in result.history["loss"])
    print(f"Trained on {result.reviews:,} reviews in {result.seconds:.1f} s; loss per epoch: {losses}")
    print(f"Saved {result.out_dir} (save_pretrained)")
    heldout = f" --heldout {args.heldout}" if args.heldout not in (0, 200) else ""
    print(f"Compare: gpt-keras compare --run RUN --gpt2 {result.out_dir}{heldout}")
    return 0


# --- the live temperature lab ---------------------------------------------------------------------------

def add_lab_parser(subparsers) -> None:
    parser = subparsers.add_parser("lab", help="open the live temperature lab (a local web page; needs gpt-keras[lab])")
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this computer only)")
    parser.add_argument("--port", type=_checked_arg(int, _port), default=None,
                        help="1 to 65535 (default: the first free port from 7860)")
    parser.set_defaults(handler=run_lab)


def run_lab(args) -> int:
    require_extra("lab", "gradio", purpose="gpt-keras lab")
    existing_run(args.run)
    from gpt_keras.tools.lab import import_gradio, launch_lab
    from gpt_keras.runs.rundir import load_run

    import_gradio()  # a missing extra is reported before the model is loaded
    run = load_run(args.run)
    launch_lab(run, host=args.host, port=args.port)
    return 0


# --- the lecture notebook ---------------------------------------------------------------------------------

NOTEBOOK_NAME = "gpt_listo_para_entrenar.ipynb"


def notebook_path() -> Path:
    """The lecture notebook: inside the installed package (a wheel), else the checkout's notebooks/."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "notebooks" / NOTEBOOK_NAME, package.parent / "notebooks" / NOTEBOOK_NAME):
        if candidate.is_file():
            return candidate
    raise UsageError(f"the lecture notebook {NOTEBOOK_NAME} is missing from the installed package; reinstall gpt-keras")


def add_notebook_parser(subparsers) -> None:
    parser = subparsers.add_parser("notebook", help="copy the lecture notebook here and open it in JupyterLab "
                                                    "(needs gpt-keras[notebook])")
    parser.add_argument("--dir", type=Path, default=Path("."),
                        help="folder to copy it into (default: here); an existing copy is opened, not replaced")
    parser.add_argument("--copy-only", action="store_true", help="copy it, print where, and do not start JupyterLab")
    parser.set_defaults(handler=run_notebook)


def run_notebook(args) -> int:
    import shutil

    if not args.copy_only:
        require_extra("notebook", "jupyterlab", purpose="gpt-keras notebook")
    source = notebook_path()
    target = args.dir / NOTEBOOK_NAME
    if target.exists():
        print(f"Opening the existing {target} (delete it to get a fresh copy)")
    else:
        args.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        print(f"Copied the lecture notebook to {target}")
    if args.copy_only:
        return 0
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "jupyterlab", str(target)])
    return 0  # not reached


# --- main -----------------------------------------------------------------------------------------------

SUBCOMMANDS = [add_download_parser, add_tokenize_parser, add_train_parser, add_generate_parser,
               add_demo_parser, add_tensorboard_parser, add_temperature_parser, add_compare_parser,
               add_finetune_gpt2_parser, add_lab_parser, add_notebook_parser]
VERBOSE_HELP = "show TensorFlow's own log lines (also GPT_KERAS_VERBOSE=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt-keras", description=__doc__.splitlines()[0])
    # gpt_keras/__init__.py holds the version (pyproject.toml reads it); Python always imports it before this module.
    parser.add_argument("--version", action="version", version=f"gpt-keras {sys.modules['gpt_keras'].__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    for subparser in subparsers.choices.values():  # `gpt-keras train --verbose` as well as `gpt-keras --verbose train`
        subparser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from gpt_keras.tools.quiet import verbose_requested

    args = build_parser().parse_args(argv)
    args.verbose = args.verbose or verbose_requested()
    quiet_tensorflow(verbose=args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("gpt-keras: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # only the project's own "bad input" errors become one-line messages
        if not _is_user_error(error):
            raise
        print(f"gpt-keras {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


def _is_user_error(error: Exception) -> bool:
    """The project's own "bad input" errors, which all derive from `GPTKerasError`, become one line."""
    return isinstance(error, GPTKerasError)


if __name__ == "__main__":
    sys.exit(main())
