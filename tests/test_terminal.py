"""Issue 23, point 6: text reaches the terminal escaped everywhere, warnings and errors included.

A prompt, a vocabulary word and a run's folder name carry an ANSI colour code, a right-to-left
override, a zero-width space, a carriage return and a bell; every command's stdout and stderr must
show them escaped (`\\x1b[31m`, `\\u202e`, ...), never raw. One function does it (`printable`).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import pytest

from gpt_keras.core.checks import printable
from gpt_keras.runs import rundir as runs
from tests.conftest import cli, copy_run

NASTY = "\x1b[31m\u202e\u200b\r\x07"
RAW = ("\x1b", "\u202e", "\u200b", "\r", "\x07")
ESCAPED = "\\x1b[31m\\u202e\\u200b\\r\\x07"
ESCAPED_IN_A_LINE = "\\x1b[31m\\u202e\\u200b \\x07"  # error and warning lines: whitespace (\\r) made one space
PROMPT_WORDS = {"wine", "review", ":", "italy"}


def assert_escaped(*texts: str) -> None:
    for text in texts:
        assert not [c for c in RAW if c in text], repr(text[-600:])


@pytest.fixture
def nasty_run(tmp_path, trained_run) -> Path:
    """A copy of the trained run in a folder named with NASTY, whose every word but the prompt's ends in NASTY."""
    run_dir = copy_run(trained_run, tmp_path, "run" + NASTY)
    words = json.loads((run_dir / runs.VOCAB).read_text())
    words = words[:2] + [word if word in PROMPT_WORDS else word + NASTY for word in words[2:]]
    (run_dir / runs.VOCAB).write_text(json.dumps(words))
    return run_dir


def test_printable_escapes_control_bidi_and_zero_width_characters():
    assert printable("a" + NASTY + "b") == "a" + ESCAPED + "b"
    assert printable("two\nlines\t", keep_newlines=True) == "two\nlines\\t"
    assert printable("café · 11.10% ☺ 葡萄酒") == "café · 11.10% ☺ 葡萄酒"  # printable text is left alone


@pytest.mark.slow  # four commands on one run
def test_every_command_output_escapes_prompts_words_paths_warnings_and_errors(tmp_path, nasty_run):
    prompt = f"wine review : italy {NASTY}oops{NASTY}"
    generated = cli("generate", "--run", nasty_run, "--prompt", prompt, "--seed", "0", "--max-tokens", "16",
                    "--show-probs", "--html", tmp_path / f"page{NASTY}.html")
    assert generated.code == 0, generated.err
    assert ESCAPED in generated.out  # the words were there, escaped: in the text, the top words, the page's name
    assert f"Wrote {printable(tmp_path / f'page{NASTY}.html')}" in generated.out
    [warning] = [line for line in generated.err.splitlines() if ": warning: " in line]
    assert warning.startswith("gpt-keras generate: warning: prompt words not in the vocabulary") and "oops" in warning

    sampled = cli("temperature", "--run", nasty_run, "--prompt", prompt, "--temperatures", "1", "--samples", "1",
                  "--max-tokens", "16", "--show-samples", "1", "--out", tmp_path / f"out{NASTY}")
    assert sampled.code == 0, sampled.err
    assert ESCAPED in sampled.out and "gpt-keras temperature: warning: prompt words" in sampled.err

    missing = cli("generate", "--run", tmp_path / f"missing{NASTY}", "--prompt", prompt)
    contradicted = _contradicting_config(nasty_run)
    assert missing.code == contradicted.code == 2
    assert missing.error_lines[0].startswith("gpt-keras generate: error: --run:") and ESCAPED_IN_A_LINE in missing.err
    assert_escaped(generated.out, generated.err, sampled.out, sampled.err, missing.err, contradicted.err)


def _contradicting_config(run_dir: Path):
    config = json.loads((run_dir / runs.CONFIG).read_text())
    (run_dir / runs.CONFIG).write_text(json.dumps({**config, "max_len": 12}))
    try:
        result = cli("generate", "--run", run_dir)
    finally:
        (run_dir / runs.CONFIG).write_text(json.dumps(config))
    assert "field 'max_len' is 12" in result.err and ESCAPED_IN_A_LINE in result.err
    return result


def test_print_probs_escapes_words_in_every_mode_but_keeps_its_own_colours(nasty_run):
    from gpt_keras.tools.viz import format_probs

    vocab = runs.read_vocabulary(nasty_run / runs.VOCAB)
    step = {"prompt": f"wine {vocab[5]}", "atts": [[0.4, 0.6]], "word_probs": [0, 0, .5, .2, .1, .1, .1],
            "word": vocab[2], "token": 2}
    plain = format_probs([step], list(vocab.words[:7]), mode="plain")
    ansi = format_probs([step], list(vocab.words[:7]), mode="ansi")
    assert plain.count(ESCAPED) == ansi.count(ESCAPED) == 4  # the four top words that are not ":"
    assert_escaped(plain)
    assert "\x1b[31m" not in ansi and "\u202e" not in ansi and "\x1b[0m" in ansi  # its shading, not the words'


def test_warnings_and_the_labs_log_lines_are_escaped_one_liners(capsys, caplog):
    from gpt_keras.core.generation import PromptWarning
    from gpt_keras.tools.cli.terminal import terminal_warnings
    from gpt_keras.tools.lab.views import error_message

    with terminal_warnings("lab"):
        warnings.warn(f"prompt words not in the vocabulary: x{NASTY}\nsecond line", PromptWarning)
        warnings.warn(f"from another library {NASTY}", RuntimeWarning)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"gpt-keras lab: warning: prompt words not in the vocabulary: x{ESCAPED_IN_A_LINE} second line"
    assert lines[1].startswith(f"gpt-keras lab: warning: RuntimeWarning: from another library {ESCAPED_IN_A_LINE} (")
    assert len(lines) == 2

    with caplog.at_level(logging.ERROR, logger="gpt_keras.tools.lab"):
        logging.getLogger("gpt_keras.tools.lab").error("lab: %s", error_message(ValueError(f"bad {NASTY}")))
    stream = io.StringIO()
    logging.StreamHandler(stream).handle(caplog.records[-1])
    assert ESCAPED_IN_A_LINE in stream.getvalue()
    assert_escaped(stream.getvalue())
