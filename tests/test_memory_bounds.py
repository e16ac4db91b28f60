"""Memory before allocation (issue 23): estimates refuse what cannot fit before anything is loaded or built,
archives are measured before they are opened, every count has a limit, and errors stay cheap.

Nothing here allocates what it refuses: the hostile files are small and only claim huge sizes.
"""

from __future__ import annotations

import tracemalloc

from gpt_keras.runs.files import MAX_MESSAGE, one_line


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
