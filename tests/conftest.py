"""Shared fixtures: reviews, small files made from them, trained runs of every precision, one CLI runner.

The suite starts without ../shared: `small_json` then comes from the package's own synthetic sample,
and only the tests that need real reviews (`shared_csv`, `shared_frame`) skip, saying why.
`GPT_KERAS_SHARED` points elsewhere (CI and the tests of this fallback use it).

Tests train what a user gets: `tiny_config()` leaves `mixed_precision` at its default, "auto", which
is bfloat16 on a CPU with bfloat16 instructions (this project's machines) and float32 elsewhere. A test
that pins another precision says why. Trained runs are made once per test session and shared:

- `trained_run`: the default run (what `gpt-keras train` makes here), trained through `train()`;
- `run_in("off" | "bfloat16" | "float16" | "auto")`: one run per precision the trainer can produce;
- `cli_default_run`: a run made by the command line with nothing but size flags.

A test that changes a run's files works on `copy_run(run, tmp_path)`, never on the shared directory.
`cli(...)` runs the command line in this process and captures what it prints; `cli_process(...)` runs it
in a fresh interpreter, for tests where the process boundary is the point (signals, imports, exit codes
of the real executable).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPT_KERAS_SHARED", REPO.parent / "shared"))
SHARED_CSV = SHARED / "data" / "wine-reviews" / "winemag-data-130k-v2.head10001.csv"
PACKAGE_SAMPLE = REPO / "gpt_keras" / "runs" / "wine-reviews-sample.json"
# The `tiny` preset shrunk further, so that a test trains in seconds on two cores. The precision is the
# default ("auto"): the suite trains and loads what a user gets on this machine.
TEST_SIZE = dict(vocab_size=400, max_len=24, embedding_dim=32, key_dim=16, feed_forward_dim=64, batch_size=16,
                 epochs=1, generate_max_tokens=16)
# Every value of `--mixed-precision` that makes a different run ("on" is an alias of one of them).
PRECISIONS = ("off", "bfloat16", "float16", "auto")


def tiny_config(**changes):
    """The `tiny` preset at test size, with `changes`."""
    from gpt_keras.core.config import GPTConfig

    return GPTConfig.preset("tiny", **{**TEST_SIZE, **changes})


def trained_beside_the_lecture_loss(config, policy: str | None = None):
    """(ours, lecture, [our losses, the lecture's]): `compile_gpt`'s model and a copy of it compiled with the
    lecture's `SparseCategoricalCrossentropy()` (both with Keras' Adam), trained one epoch on the same
    random tokens in the same order, so that only the loss differs."""
    import keras
    import numpy as np

    from gpt_keras.core.model import build_gpt, compile_gpt

    tokens = np.random.default_rng(0).integers(1, config.vocab_size, (16, config.max_len + 1))
    keras.utils.set_random_seed(0)
    ours = compile_gpt(build_gpt(config, policy), config, jit_compile=False)
    lecture = build_gpt(config, policy)
    lecture.set_weights(ours.get_weights())
    lecture.compile(keras.optimizers.Adam(config.learning_rate), jit_compile=False,
                    loss=[keras.losses.SparseCategoricalCrossentropy(), None])
    histories = [model.fit(tokens[:, :-1], tokens[:, 1:], batch_size=4, epochs=1, shuffle=False, verbose=0)
                 .history["loss"] for model in (ours, lecture)]
    return ours, lecture, histories


def run_config(**changes):
    """The config of the shared session runs (`trained_run`, `run_in`): `tiny_config(epochs=2,
    validation_split=0.1)`, with `changes` (`run_config(epochs=3)` resumes one of them)."""
    return tiny_config(**{"epochs": 2, "validation_split": 0.1, **changes})


def tiny_flags(**changes) -> list[str]:
    """`TEST_SIZE` (with `changes`) as command-line flags: `--vocab-size 400 --max-len 24 ...`."""
    values = {**TEST_SIZE, **changes}
    return [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def real_reviews_available() -> bool:
    return SHARED_CSV.is_file()


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    if not real_reviews_available():
        pytest.skip(f"needs the real reviews: {SHARED_CSV} is missing (../shared beside the repo)")
    return SHARED_CSV


@pytest.fixture(scope="session")
def shared_frame(shared_csv) -> pd.DataFrame:
    return pd.read_csv(shared_csv, dtype=str, keep_default_na=False, na_values=[""])


def write_reviews_json(path: Path, frame: pd.DataFrame) -> Path:
    """The lecture's JSON format (a list of records, nulls for missing values) from a slice of the CSV."""
    records = frame.drop(columns=["id"], errors="ignore").astype(object).where(frame.notna(), None)
    path.write_text(json.dumps(records.to_dict(orient="records"), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_json(tmp_path_factory) -> Path:
    """The first 400 real reviews as the lecture's JSON file (the package's sample without ../shared)."""
    path = tmp_path_factory.mktemp("data") / "reviews.json"
    if real_reviews_available():
        frame = pd.read_csv(SHARED_CSV, dtype=str, keep_default_na=False, na_values=[""])
        return write_reviews_json(path, frame.head(400))
    records = json.loads(PACKAGE_SAMPLE.read_text(encoding="utf-8"))[:400]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


# --- trained runs, made once per session --------------------------------------------------------------

class _Runs:
    """Trains each kind of run on first request and hands the same result to every later test."""

    def __init__(self, tmp_path_factory, data: Path):
        self._factory, self._data, self._made = tmp_path_factory, data, {}

    def train(self, precision: str):
        from gpt_keras.runs.train import train

        if precision not in self._made:
            runs_dir = self._factory.mktemp(f"runs-{precision}")
            config = run_config(mixed_precision=precision)
            self._made[precision] = train(config, self._data,
                                          runs_dir=runs_dir, run_name="tiny", print_fn=None, verbose=0)
        return self._made[precision]


@pytest.fixture(scope="session")
def _session_runs(tmp_path_factory, small_json) -> _Runs:
    return _Runs(tmp_path_factory, small_json)


@pytest.fixture(scope="session")
def run_in(_session_runs):
    """`run_in(precision)`: the `TrainResult` of a tiny run trained in that `--mixed-precision` mode
    (one of `PRECISIONS`), trained on first use and shared (read-only: copy it to change it)."""
    return _session_runs.train


@pytest.fixture(scope="session")
def trained_run(run_in):
    """The default run: a tiny model trained for 2 epochs on 400 reviews (a tenth held out for validation) in
    the machine's default precision."""
    return run_in("auto")


@pytest.fixture(scope="session")
def cli_default_run(tmp_path_factory, small_json) -> Path:
    """A run made by `gpt-keras train` with nothing but the size flags: the command line's own defaults."""
    runs_dir = tmp_path_factory.mktemp("cli-runs")
    result = cli("train", "--data", small_json, "--runs-dir", runs_dir, "--name", "cli-default", "--quiet",
                 *tiny_flags())
    assert result.code == 0, result.err
    return runs_dir / "cli-default"


def copy_run(run, tmp_path: Path, name: str = "run") -> Path:
    """A private copy of a shared run directory (a `TrainResult` or a path), to damage or continue."""
    source = Path(getattr(run, "run_dir", run))
    target = tmp_path / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("run.lock"))
    return target


# --- the command line ---------------------------------------------------------------------------------

@dataclasses.dataclass
class CliResult:
    """What a `gpt-keras` command did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    @property
    def code_and_err(self) -> tuple[int, str]:
        return self.code, self.err

    @property
    def error_lines(self) -> list[str]:
        """stderr's lines that are the command's own (`gpt-keras ...`), TensorFlow's start-up lines left out."""
        return [line for line in self.err.splitlines() if line.startswith("gpt-keras")]


def cli(*args, cwd: Path | None = None) -> CliResult:
    """Runs `gpt-keras ARGS` in this process (`cli.main`), capturing stdout, stderr and warnings' lines."""
    from gpt_keras.tools import cli as cli_module

    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(warnings.catch_warnings())  # the CLI installs its own warning printer
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        try:
            code = cli_module.main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse's usage errors and --help
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_process(*args, block=(), cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> CliResult:
    """Runs `gpt-keras ARGS` in a fresh interpreter, as a user's shell starts it, for tests where the process
    boundary is the point (imports, signals, TensorFlow's start-up lines: the command quiets them itself, so
    `TF_CPP_MIN_LOG_LEVEL` is not passed on). Each module in `block` is made unimportable, as if not installed."""
    code = ("import sys\n"
            f"for name in {list(block)!r}:\n"
            "    sys.modules[name] = None\n"
            "from gpt_keras.tools.cli import main\n"
            "sys.exit(main())\n")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "GPT_KERAS_VERBOSE", "TF_USE_LEGACY_KERAS")}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    """A test that sets Keras' global dtype policy (the library never does) leaves it as it found it."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


def pytest_terminal_summary(terminalreporter):
    """The figures of the hostile property run (README, Reliability), when it ran in this session."""
    hostile = sys.modules.get("tests.test_hostile")
    figures = getattr(hostile, "FIGURES", None)
    if figures and figures["cases"]:
        terminalreporter.write_line("hostile run directories: "
                                    + ", ".join(f"{key} {value}" for key, value in figures.items()))
