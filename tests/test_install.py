"""Installing and running as a student would: a wheel in a fresh environment, extras, a quiet terminal.

The fast tests run the command line in subprocesses of this environment with TensorFlow, transformers
or kagglehub made unimportable (`sys.modules[name] = None` before `main` runs). The slow one builds the
wheel from the sources, installs it with its dependencies into a new virtual environment outside the
checkout (pip's cache may serve the downloads), and runs the demo and the notebook from an empty folder
(the release tier: `make test-release`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_process, tiny_flags

NATIVE_LOG = re.compile(r"^[IWEF]\d{4} |cuInit|absl::InitializeLog", re.MULTILINE)


def test_help_version_and_the_calculator_run_without_tensorflow(tmp_path):
    import gpt_keras

    helped = cli_process("--help", block=["tensorflow"], cwd=tmp_path)
    assert helped.code == 0, helped.err
    assert "temperature" in helped.out and "--version" in helped.out and "--verbose" in helped.out
    version = cli_process("--version", block=["tensorflow"], cwd=tmp_path)
    assert version.code == 0 and version.out.strip() == f"gpt-keras {gpt_keras.__version__}"
    table = cli_process("temperature", "--logits", "pfalz=4.1", "mosel=3.9", "rhein=2.7", "--temperatures", "0.5", "3",
                        block=["tensorflow"], cwd=tmp_path)
    assert table.code == 0, table.err
    assert "pfalz" in table.out and "p(T=3)" in table.out and table.err == ""


def test_tensorflow_is_really_blocked_in_those_processes(tmp_path):
    """The guard of the test above: a command that needs TensorFlow fails there."""
    result = cli_process("demo", "--epochs", "1", block=["tensorflow"], cwd=tmp_path)
    assert result.code != 0 and "tensorflow" in result.err


@pytest.mark.parametrize("args, message", [
    (("train", "--jit-compile", "maybe"), "--jit-compile: jit_compile must be one of auto, on, off, got 'maybe'"),
    (("train", "--data", "missing.json"), "--data: missing.json: file not found"),
    (("train", "--resume", "--run", "missing-run"), "--run: missing-run: run directory not found"),
    (("generate", "--run", "missing-run"), "--run: missing-run: run directory not found"),
    (("temperature", "--run", "missing-run"), "--run: missing-run: run directory not found"),
    (("demo", "--epochs", "0"), "--epochs: must be at least 1, got 0"),
])
def test_flags_and_paths_are_checked_before_tensorflow_loads(tmp_path, args, message):
    result = cli_process(*args, block=["tensorflow"], cwd=tmp_path)
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("args, blocked, extra", [
    (("compare", "--run", "runs/x"), ["transformers"], "gpt2"),
    (("finetune-gpt2",), ["tf_keras"], "gpt2"),
    (("download",), ["kagglehub"], "download"),
    (("notebook",), ["jupyterlab"], "notebook"),
])
def test_a_command_without_its_extra_names_the_extra(tmp_path, args, blocked, extra):
    result = cli_process(*args, block=[*blocked, "tensorflow"], cwd=tmp_path)
    assert result.code == 2, result.err
    assert f'pip install "gpt-keras[{extra}]"' in result.err and "Traceback" not in result.err
    assert not any(tmp_path.iterdir())


def test_python_dash_m_gpt_keras_is_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gpt_keras", "--version"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and result.stdout.startswith("gpt-keras ")


def test_no_module_imports_fcntl_at_the_top():
    """Windows has no fcntl: the package must import there."""
    import ast

    for path in (REPO / "gpt_keras").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            assert "fcntl" not in names, f"{path.relative_to(REPO)} imports fcntl at the top"


# --- a quiet terminal ---------------------------------------------------------------------------------------

def test_the_native_log_filter_keeps_everything_else():
    from gpt_keras.tools.quiet import is_native_log_line

    assert is_native_log_line("E0000 00:00:1796098911.155158   28873 cuda_platform.cc:52] failed call to cuInit: x")
    assert is_native_log_line("I0000 00:00:1796098905.063249   28873 port.cc:153] oneDNN custom operations are on.")
    assert is_native_log_line("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not is_native_log_line("gpt-keras train: error: --data: missing.json: file not found")
    assert not is_native_log_line("Traceback (most recent call last):")


@pytest.mark.parametrize("verbose", ["0", "1"])
def test_a_notebook_quiets_tensorflow_with_one_call(tmp_path, verbose):
    """Verbose, the import's lines show (TensorFlow on x86 Linux always writes some): the check can fail."""
    code = "import gpt_keras\ngpt_keras.quiet_tensorflow()\nimport tensorflow as tf\nprint(int(tf.constant(2) + 1))\n"
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**environment, "PYTHONPATH": str(REPO), "GPT_KERAS_VERBOSE": verbose})
    assert result.returncode == 0 and result.stdout == "3\n", result.stderr
    assert bool(NATIVE_LOG.search(result.stderr)) == (verbose == "1"), result.stderr


@pytest.mark.release  # three TensorFlow subprocesses (about 45 s); test_quiet.py checks the same noise in make test
def test_train_generate_and_temperature_print_no_tensorflow_log_lines(tmp_path, small_json):
    trained = cli_process("train", "--data", small_json, "--preset", "tiny", *tiny_flags(), "--name", "quiet", "--quiet",
                          cwd=tmp_path)
    assert trained.code == 0, trained.err
    run = tmp_path / "runs" / "quiet"
    generated = cli_process("generate", "--run", run, "--max-tokens", "10", "--seed", "0", cwd=tmp_path)
    assert generated.code == 0, generated.err
    lab = cli_process("temperature", "--run", run, "--samples", "2", "--max-tokens", "10", "--temperatures", "0.5", "2",
                      cwd=tmp_path)
    assert lab.code == 0, lab.err
    for result in (trained, generated, lab):
        assert not NATIVE_LOG.search(result.err), result.err
        assert not NATIVE_LOG.search(result.out), result.out
    # --verbose shows them (TensorFlow writes some on every machine), so the check above can fail.
    verbose = cli_process("generate", "--run", run, "--max-tokens", "10", "--seed", "0", "--verbose", cwd=tmp_path)
    assert verbose.code == 0 and NATIVE_LOG.search(verbose.err), verbose.err
    assert generated.out == verbose.out


# --- the wheel, installed in a fresh environment ------------------------------------------------------------

# What goes into the build: pyproject.toml reads these (README.md is the long description).
SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "gpt_keras", "notebooks")


def build_wheel(out: Path) -> Path:
    """The wheel, built from a copy of the sources so that the checkout gets no build/ folder."""
    source = out / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("gpt_keras-*.whl")
    return wheel


def test_the_wheel_holds_every_module_the_sample_and_the_notebook(tmp_path):
    names = set(zipfile.ZipFile(build_wheel(tmp_path)).namelist())
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "gpt_keras").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert {"gpt_keras/runs/wine-reviews-sample.json", "gpt_keras/notebooks/gpt_listo_para_entrenar.ipynb"} <= names
    assert not [name for name in names if name.startswith(("data/", "tests/", "notebooks/"))]


def site_packages_files(venv: Path) -> set[str]:
    """Every file in the environment's site-packages, bytecode caches aside (Python may write those)."""
    (site,) = venv.glob("lib/python*/site-packages") or venv.glob("Lib/site-packages")
    return {path.relative_to(site).as_posix() for path in site.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}


@pytest.mark.release  # minutes: a fresh venv, pip installing TensorFlow and JupyterLab, the demo, the notebook
def test_the_wheel_installs_and_runs_from_any_directory(tmp_path):
    timings = {}
    started = time.perf_counter()
    wheel = build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    # Nothing of this process's environment: with the checkout on PYTHONPATH pip would find its egg-info
    # and take gpt-keras for installed already.
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "GPT_KERAS_DATA_DIR", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=environment)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # The core plus the [notebook] extra (JupyterLab; nbclient and ipykernel come with it), not [gpt2] nor [download].
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{wheel}[notebook]"],
                               capture_output=True, text=True, timeout=1500, env=environment, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    timings["install"] = time.perf_counter() - started
    before = site_packages_files(venv)
    ours = sorted(name for name in before if name.startswith("gpt_keras"))
    assert "gpt_keras/runs/wine-reviews-sample.json" in ours, ours
    assert "gpt_keras/notebooks/gpt_listo_para_entrenar.ipynb" in ours, ours

    home, work = tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    work.mkdir()
    environment.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))

    def gpt_keras(*args, timeout=900):
        return subprocess.run([str(bin_dir / "gpt-keras"), *map(str, args)], capture_output=True, text=True,
                              cwd=work, env=environment, timeout=timeout)

    started = time.perf_counter()
    demo = gpt_keras("demo", "--epochs", "1")
    timings["demo"] = time.perf_counter() - started
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Run saved in runs" in demo.stdout and not NATIVE_LOG.search(demo.stderr), demo.stderr
    assert list((work / "runs").iterdir())

    # Without the [gpt2] and [download] extras, their commands say what to install.
    for args, extra in ((("compare", "--run", "runs/x"), "gpt2"), (("download",), "download")):
        result = gpt_keras(*args)
        assert result.returncode == 2 and f'pip install "gpt-keras[{extra}]"' in result.stderr, result.stderr

    # The notebook, copied out of the installed package and run headless in quick mode by the venv's own kernel.
    copied = gpt_keras("notebook", "--copy-only", "--dir", "notebook")
    assert copied.returncode == 0, copied.stderr
    started = time.perf_counter()
    run_notebook = (
        "import sys, nbformat, nbclient\n"
        "notebook = nbformat.read(sys.argv[1], as_version=4)\n"
        "nbclient.NotebookClient(notebook, kernel_name='python3', timeout=600, startup_timeout=120,\n"
        "                        resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
        "nbformat.write(notebook, sys.argv[1])\n")
    executed = subprocess.run([str(python), "-c", run_notebook, str(work / "notebook" / "gpt_listo_para_entrenar.ipynb"),
                               str(work / "notebook")], capture_output=True, text=True, cwd=work,
                              env={**environment, "GPT_KERAS_NOTEBOOK_MODE": "quick"}, timeout=1500)
    timings["notebook"] = time.perf_counter() - started
    assert executed.returncode == 0, executed.stderr[-3000:]
    # Without data/, [download] nor [gpt2]: the book's data code ran on the package's sample, with its banner.
    import nbformat

    shown = "".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/html", ""))
                    for cell in nbformat.read(work / "notebook" / "gpt_listo_para_entrenar.ipynb", as_version=4).cells
                    if cell.cell_type == "code" for output in cell.outputs)
    assert "recipes loaded" in shown and "Datos sintéticos" in shown

    written = sorted(site_packages_files(venv) - before)
    assert not written, f"written inside site-packages: {written[:20]}"
    print("wheel test timings (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()))
