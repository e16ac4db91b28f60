"""Memory before allocation (issue 23): estimates refuse what cannot fit before anything is loaded or built,
archives are measured before they are opened, every count has a limit, and errors stay cheap.

Nothing here allocates what it refuses: the hostile files are small and only claim huge sizes.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from gpt_keras.runs.files import MAX_MESSAGE, one_line
from tests.conftest import cli


def test_a_long_message_is_cut_before_it_is_escaped():
    message = f"bad value {chr(27) * 3_000_000} in the file"  # a 3 MB line of escape bytes, each shown as 4 characters
    tracemalloc.start()
    try:
        line = one_line(message)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert line == ("bad value " + "\\x1b" * 3_000_000)[:MAX_MESSAGE - 3] + "..."
    assert peak < 100_000  # escaping the whole text first took over 200 MB here
    assert one_line("a \t\n b\x00c") == "a b\\x00c"  # whitespace runs still become one space


# --- every count has an upper bound -------------------------------------------------------------------

def _count_flags():
    """(subcommand, flag, argparse action) for every flag whose value is a whole number."""
    import argparse

    from gpt_keras.tools.cli import build_parser

    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    for command, parser in subparsers.choices.items():
        for action in parser._actions:
            if action.option_strings and callable(action.type) and action.type not in (str, Path):
                try:
                    value = action.type("7")
                except (argparse.ArgumentTypeError, ValueError, TypeError):
                    continue
                if isinstance(value, int):
                    yield command, action.option_strings[0], action


def test_every_whole_number_flag_has_an_upper_bound():
    import argparse
    import dataclasses

    from gpt_keras.core.config import ConfigError, GPTConfig

    config_ints = {field.name for field in dataclasses.fields(GPTConfig) if field.type in (int, "int")}
    flags = list(_count_flags())
    assert len(flags) > 20  # every subcommand's counts, ports and seeds, and the config's sizes
    for command, flag, action in flags:
        huge = 10 ** 30  # past int64: tf.data and NumPy would overflow on it
        if action.dest in config_ints:  # parsed as given, then checked with the config's own limits
            with pytest.raises(ConfigError, match=f"{action.dest} must be"):
                GPTConfig.preset("tiny", **{action.dest: huge})
        else:
            with pytest.raises(argparse.ArgumentTypeError, match="at most|from|must be"):
                action.type(str(huge))


@pytest.mark.parametrize("args, named", [
    (["train", "--batch-size", str(2 ** 70)], "--batch-size: batch_size must be at most 65,536"),
    (["train", "--shuffle-buffer", str(2 ** 64)], "--shuffle-buffer: shuffle_buffer must be at most 100,000,000"),
    (["temperature", "--run", "RUN", "--samples", "1001"], "argument --samples: must be at most 1,000, got 1,001"),
    (["generate", "--run", "RUN", "--top-k", str(10 ** 30)], "top_k must be at most 1,000,000"),
])
def test_count_flags_past_their_limit_are_one_line_and_exit_2(tmp_path, args, named):
    result = cli(*[str(tmp_path) if arg == "RUN" else arg for arg in args], "--runs-dir", tmp_path / "runs") \
        if args[0] == "train" else cli(*[str(tmp_path) if arg == "RUN" else arg for arg in args])
    assert result.code == 2 and named in result.err, result.err
    assert not (tmp_path / "runs").exists()
