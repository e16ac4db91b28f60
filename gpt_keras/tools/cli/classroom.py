"""The classroom subcommands: temperature (the calculator and the experiment), lab and notebook."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

from gpt_keras.core.checks import MAX_SAMPLES
from gpt_keras.core.sampling import check_temperature, check_top_k, check_top_p
from gpt_keras.runs.files import atomic_path, check_output_path, printable
from gpt_keras.tools.cli.flags import (UsageError, _count, _checked_arg, _flag, _max_tokens, _output, _port,
                                       _seed, check_sampling_fits, existing_run, require_extra)
from gpt_keras.tools.cli.terminal import echo, load_run_with_note


# --- temperature lab --------------------------------------------------------------------------------

def add_temperature_parser(subparsers) -> None:
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
    group.add_argument("--samples", type=_checked_arg(int, _count(1, MAX_SAMPLES)),
                       help=f"texts per temperature (default 8, at most {MAX_SAMPLES:,})")
    group.add_argument("--max-tokens", type=_checked_arg(int, _max_tokens),
                       help="length of each text, prompt included (default 80, at most 2048)")
    group.add_argument("--seed", type=_checked_arg(int, _seed), help="seed of the samples (default 0)")
    group.add_argument("--top-words", type=_checked_arg(int, _count(1, MAX_TOP_WORDS)),
                       help="words in the next-word table (default 5)")
    group.add_argument("--show-samples", type=_checked_arg(int, _count(0, MAX_SAMPLES)),
                       help="texts printed per temperature (default 1; all of them are in report.json)")
    filters = group.add_mutually_exclusive_group()
    filters.add_argument("--top-k", type=_checked_arg(int, check_top_k),
                         help="after temperature, keep only the k most likely words")
    filters.add_argument("--top-p", type=_checked_arg(float, check_top_p),
                         help="after temperature, keep the smallest set of words whose probability reaches p")
    parser.set_defaults(handler=run_temperature)


MAX_TOP_WORDS = 1_000  # rows of the next-word table printed


_LAB_DEFAULTS = dict(prompt="wine review : germany", samples=8, max_tokens=80, seed=0, top_words=5, show_samples=1,
                     top_k=None, top_p=None)


def run_temperature(args) -> int:
    """Without --run, the lecture's calculator; with --run, the experiment on the run's model."""
    temperatures = args.temperatures
    repeated = sorted({t for t in temperatures or () if temperatures.count(t) > 1})
    if repeated:
        raise UsageError(f"--temperatures: {', '.join(f'{t:g}' for t in repeated)} given more than once")
    return _run_calculator(args) if args.run is None else _run_experiment(args)


def _run_calculator(args) -> int:
    from gpt_keras.tools.temperature import calculator

    given = [_flag(name) for name in _LAB_DEFAULTS if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: only used with --run (the calculator takes --logits, "
                         "--temperatures and --out)")
    words = [word for word, _ in args.logits or ()]
    repeated = sorted({word for word in words if words.count(word) > 1})
    if repeated:
        raise UsageError(f"--logits: {', '.join(repeated)} given more than once")
    table = calculator.temperature_table(dict(args.logits or calculator.LECTURE_LOGITS.items()),
                                          args.temperatures or (*calculator.LECTURE_TEMPERATURES, 3.0))
    echo(table.format())
    if args.out is not None:
        from gpt_keras.tools.temperature import report as reports

        written = reports.write_table(table, args.out)
        echo(f"\nWrote {written[0]} and {written[1]}")
    return 0


def _run_experiment(args) -> int:
    options = {name: default if getattr(args, name) is None else getattr(args, name)
               for name, default in _LAB_DEFAULTS.items()}
    existing_run(args.run)
    _output(args.out if args.out is not None else args.run / "temperature-lab", "--out", "dir")
    from gpt_keras.core.generation import PromptWarning
    from gpt_keras.tools.temperature import experiment, report as reports

    check_sampling_fits(args.run, options["max_tokens"], options["samples"], keep_steps=False)
    run = load_run_with_note(args.run, "temperature")
    with warnings.catch_warnings():
        warnings.simplefilter("always", PromptWarning)  # unknown prompt words, a prompt too long: one line each
        report = experiment.temperature_experiment(
            run.model, run.vocab, options["prompt"], args.temperatures or experiment.DEFAULT_TEMPERATURES,
            n_samples=options["samples"], max_tokens=options["max_tokens"], seed=options["seed"],
            top_k=options["top_k"], top_p=options["top_p"], n_words=options["top_words"])
    echo(report.format_table(samples=options["show_samples"], width=None))
    out = args.out if args.out is not None else args.run / "temperature-lab"
    written = reports.write_report(report, out)
    echo(f"\nWrote {', '.join(path.name + ('/' if path.is_dir() else '') for path in written.values())} in {out}")
    echo(f"  TensorBoard: gpt-keras tensorboard --run {written['tensorboard']}")
    return 0


def _logit_arg(text: str) -> tuple[str, float]:
    word, separator, number = text.rpartition("=")
    try:
        logit = float(number)
    except ValueError:
        logit = math.nan
    if not separator or not word or not math.isfinite(logit):
        raise argparse.ArgumentTypeError(f"expected WORD=LOGIT with a finite number, e.g. pfalz=4.1, got {text!r}")
    return word, logit



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
    from gpt_keras.tools.lab import check_address, import_gradio, launch_lab

    import_gradio()  # a missing extra, a port in use or a bad --host is reported before the model is loaded
    check_address(args.host, args.port)
    run = load_run_with_note(args.run, "lab")
    launch_lab(run, host=args.host, port=args.port)
    return 0


# --- the lecture notebook ---------------------------------------------------------------------------------

NOTEBOOK_NAME = "gpt_listo_para_entrenar.ipynb"


def notebook_path() -> Path:
    """The lecture notebook: inside the installed package (a wheel), else the checkout's notebooks/."""
    package = Path(__file__).resolve().parents[2]
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
    parser.add_argument("jupyter_args", nargs="*", metavar="-- JUPYTER_ARGS",
                        help="after --, arguments for JupyterLab, e.g. `gpt-keras notebook -- --port 8890 "
                             "--no-browser --ip 0.0.0.0`; as root (a container) --allow-root is added")
    parser.set_defaults(handler=run_notebook)


def jupyter_command(notebook: Path, jupyter_args=(), as_root: bool = False) -> list[str]:
    """The command that opens `notebook` in JupyterLab, with the user's own arguments after it.

    Jupyter refuses to start as root ("Running as root is not recommended. Use --allow-root") and exits 1,
    which is how Docker and JupyterHub images run by default: there `--allow-root` is added, once.
    """
    extra = list(jupyter_args)
    if as_root and "--allow-root" not in extra:
        extra.append("--allow-root")
    return [sys.executable, "-m", "jupyterlab", str(notebook), *extra]


def running_as_root() -> bool:
    """Whether this process runs as root (POSIX; never on Windows, which has no such refusal)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_notebook(args) -> int:
    if args.copy_only and args.jupyter_args:
        raise UsageError(f"--copy-only starts no JupyterLab, so there is nothing to pass "
                         f"{' '.join(args.jupyter_args)} to")
    if not args.copy_only:
        require_extra("notebook", "jupyterlab", purpose="gpt-keras notebook")
    source = notebook_path()
    check_output_path(args.dir, "--dir", kind="dir")  # a file, /dev/null/x, a name too long: one line, nothing made
    target = args.dir / NOTEBOOK_NAME
    if os.path.lexists(target):
        if not target.is_file():
            raise UsageError(f"--dir: {printable(target)} exists and is not a notebook file; move it away or "
                             "choose another --dir")
        echo(f"Opening the existing {target} (delete it to get a fresh copy)")
    else:
        with atomic_path(target) as temporary:  # a full disk or /proc: WriteError, and no half-copied notebook
            shutil.copyfile(source, temporary)
        echo(f"Copied the lecture notebook to {target}")
    if args.copy_only:
        return 0
    command = jupyter_command(target, args.jupyter_args, as_root=running_as_root())
    if running_as_root() and "--allow-root" not in args.jupyter_args:
        print("Running as root (a container?): JupyterLab is started with --allow-root")
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached
