"""The flags several subcommands share, and their checks: each runs before TensorFlow is imported.

`_checked_arg(kind, check)` turns one of the library's checks into an argparse type, so a bad flag value
gets the rule's own message after the flag's name; `add_config_flags` and `config_from_args` give every
`GPTConfig` field a flag; `existing_file`, `existing_run` and `require_extra` stop with one line before
any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from gpt_keras.core.checks import MAX_COUNT, GPTKerasError, check_max_tokens, check_seed
from gpt_keras.core.config import PRESETS, ConfigError, GPTConfig, with_recipe
from gpt_keras.core.sampling import check_temperature, check_top_k, check_top_p
from gpt_keras.runs.files import check_output_path


class UsageError(GPTKerasError, ValueError):
    """A command-line argument is invalid; the message names the flag."""


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


_FIELD_HELP = {
    "mixed_precision": _mixed_precision_help(),
    "recipe": ("fast (default): this package's speed (the precision above, its own loss, reviews reshuffled every "
               "epoch); lecture: the lecture's arithmetic (float32, no XLA, Keras' SparseCategoricalCrossentropy, "
               "shuffled whole batches, 5 epochs of batch 32); other flags win, except those that would change "
               "its arithmetic (docs/recipes.md)"),
}


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


def _count(minimum: int, maximum: int = MAX_COUNT) -> Callable[[int], int]:
    """A count flag's range: every count has an upper bound, so 10**30 fails here, not as an int64 overflow."""
    def check(value: int) -> int:
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {value:,}")
        return value
    return check


def _seed(value: int) -> int:
    return check_seed(value)


def _max_tokens(value: int) -> int:
    return check_max_tokens(value)


def _output(path: Path | None, flag: str, kind: str = "file") -> None:
    """An output path is checked before any work starts (see `gpt_keras.runs.files.check_output_path`)."""
    if path is not None:
        check_output_path(path, flag, kind)


def _port(value: int) -> int:
    if not 1 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {value}")
    return value


def config_from_args(args: argparse.Namespace, saved: GPTConfig | None = None) -> GPTConfig:
    """The preset (or --config file), then every flag given on top; errors name the flag.

    `saved` (a run's config, for --resume) takes the place of the preset unless --preset or --config
    is given, so `--resume --epochs 8` changes only the epochs.

    `--recipe` sets its values (`gpt_keras.core.config.RECIPES`: the lecture's float32, no XLA, 5 epochs
    of batch 32) over the preset or --config; the other flags given win over it, and a lecture run
    refuses, naming the flag, those that would change its arithmetic (--mixed-precision bfloat16, say).
    On --resume the run's recipe stays; naming another one is refused as any other changed field is.
    """
    if args.config:
        from gpt_keras.runs.rundir import read_config

        base = read_config(args.config).to_dict()
    elif saved is not None and args.preset is None:
        base = saved.to_dict()
    else:
        base = GPTConfig.preset(args.preset or "lecture").to_dict()
    recipe = getattr(args, "recipe", None)
    if recipe is not None and recipe != base.get("recipe"):
        try:
            base = with_recipe(base, recipe)
        except ConfigError as error:
            raise ConfigError(f"--recipe: {error}") from None
    changes = {field.name: getattr(args, field.name) for field in dataclasses.fields(GPTConfig)
               if field.name != "recipe" and getattr(args, field.name, None) is not None}
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


def check_sampling_fits(run: Path, max_tokens: int | None, samples: int = 1, keep_steps: bool = True) -> None:
    """The memory sampling from `run` needs, from its config.json, checked before its model is loaded
    (a config that cannot be read is left for `load_run` to name); `max_tokens` None: the run's own length."""
    from gpt_keras.runs.memory import check_generation_fits
    from gpt_keras.runs.rundir import CONFIG, read_config

    try:
        config = read_config(run / CONFIG, complete=True)
    except GPTKerasError:
        return
    max_tokens = config.generate_max_tokens if max_tokens is None else max_tokens
    check_generation_fits(config, max_tokens, samples, str(run), keep_steps)


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



def progress_verbosity() -> int:
    """The Keras progress bar on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2
