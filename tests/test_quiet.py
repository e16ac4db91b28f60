"""A quiet classroom terminal: a warning is one plain line, the libraries' notices to their developers are hidden.

The fast tests check the warning printer of `gpt_keras.tools.quiet` in this process; the slow one starts
`generate` (with a word the vocabulary lacks), `lab` and `tensorboard` as a user's shell does, waits until the
two servers serve (and makes the lab's web server handle a request, which is when Starlette warns), stops
them and reads everything they printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import warnings

import pytest

from tests.conftest import REPO, copy_run

# What a class must not see: a warning's file and line (`.../callbacks.py:88: PromptWarning: ...`), the
# libraries' deprecation notices and TensorBoard's note about its loader.
NOISE = ("PromptWarning", ".py:", "Warning:", "deprecated", "NOTE: Using experimental fast data loading logic",
         "Traceback")


def test_a_warning_is_one_line_without_file_or_source(capsys):
    from gpt_keras.core.generation import PromptWarning
    from gpt_keras.tools.quiet import plain_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        plain_warnings("gpt-keras generate", verbose=False)
        warnings.warn("prompt words not in the vocabulary, read as [UNK]:\nzzqx", PromptWarning)
        warnings.warn("a library's note", UserWarning)
    assert capsys.readouterr().err.splitlines() == [
        "gpt-keras generate: warning: prompt words not in the vocabulary, read as [UNK]: zzqx",
        "gpt-keras generate: warning: a library's note"]


def test_the_libraries_deprecation_notices_are_hidden_but_verbose_shows_them(capsys):
    from starlette.exceptions import StarletteDeprecationWarning  # a UserWarning, not a DeprecationWarning

    from gpt_keras.tools.quiet import plain_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        plain_warnings("gpt-keras lab", verbose=False)
        for category in (StarletteDeprecationWarning, DeprecationWarning, FutureWarning):
            warnings.warn(f"'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated ({category.__name__})", category)
    assert capsys.readouterr().err == ""
    with warnings.catch_warnings():
        python_printer = warnings.showwarning
        plain_warnings("gpt-keras lab", verbose=True)  # changes nothing: Python's own format, every notice
        assert warnings.showwarning is python_printer


def _start(*args) -> subprocess.Popen:
    """`gpt-keras ARGS` in a fresh interpreter, as `cli_process` runs it, without waiting for it."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "GPT_KERAS_VERBOSE")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    code = "import sys\nfrom gpt_keras.tools.cli import main\nsys.exit(main())\n"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


def _stop(process: subprocess.Popen, stop_signal=signal.SIGINT) -> str:
    """Stops a server (SIGINT: as Ctrl-C does to the lab; TensorBoard waits for SIGTERM) and returns all it
    printed (stdout, then stderr)."""
    if process.poll() is None:
        process.send_signal(stop_signal)
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out + err


def _ask_the_lab_something(url: str) -> None:
    """One queued event, as the page sends when a control changes (Starlette warned at each one)."""
    config = json.load(urllib.request.urlopen(f"{url}/config", timeout=10))
    fn_index = next(d["id"] for d in config["dependencies"] if not d["inputs"])
    body = json.dumps({"data": [], "fn_index": fn_index, "session_hash": "quiet-test", "trigger_id": None,
                       "event_data": None}).encode()
    request = urllib.request.Request(f"{url}{config.get('api_prefix', '')}/queue/join", data=body,
                                     headers={"Content-Type": "application/json"})
    assert "event_id" in json.load(urllib.request.urlopen(request, timeout=10))


@pytest.mark.slow
def test_generate_lab_and_tensorboard_print_no_warning_source_and_no_library_notices(trained_run, tmp_path):
    from gpt_keras.tools.quiet import is_native_log_line
    from tests.test_lab import free_port, wait_until_served

    run = copy_run(trained_run, tmp_path)
    lab_port, board_port = free_port(), free_port()
    processes = {"generate": _start("generate", "--run", run, "--prompt", "wine review : zzqx", "--max-tokens", "8",
                                    "--seed", "0"),
                 "lab": _start("lab", "--run", run, "--port", lab_port),
                 "tensorboard": _start("tensorboard", "--run", run, "--port", board_port)}
    printed = {}
    try:
        wait_until_served(f"http://127.0.0.1:{board_port}/", processes["tensorboard"])
        wait_until_served(f"http://127.0.0.1:{lab_port}/", processes["lab"])
        _ask_the_lab_something(f"http://127.0.0.1:{lab_port}")
        out, err = processes["generate"].communicate(timeout=120)
        assert processes["generate"].returncode == 0, err
        printed["generate"] = out + err
    finally:
        for name in ("lab", "tensorboard", "generate"):
            text = _stop(processes[name], signal.SIGTERM if name == "tensorboard" else signal.SIGINT)
            printed.setdefault(name, text)
    assert "gpt-keras generate: warning: prompt words not in the vocabulary, read as [UNK]: zzqx" \
        in printed["generate"].splitlines()
    for name, text in printed.items():
        assert not [line for line in text.splitlines()
                    if any(noise in line for noise in NOISE) or is_native_log_line(line)], (name, text)
    assert f"http://127.0.0.1:{board_port}/" in printed["tensorboard"]  # its own line is still there
