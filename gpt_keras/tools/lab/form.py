"""Values from the page's form, checked before use: anyone who can open the page can also call its API
with any JSON value, so every text and number is checked here and refused with one line on the page.

Texts are capped in characters (and the prompt in tokens too), so that a pasted book costs one message,
not memory; a lone surrogate (half of a UTF-16 pair, which a JSON request can carry but no text holds)
is refused by position instead of failing later when the answer is encoded.
"""

from __future__ import annotations

from typing import Any

from gpt_keras.core.checks import MAX_TOKENS, check_int_at_least, check_max_tokens
from gpt_keras.core.sampling import SamplingError, check_temperature, check_top_p
from gpt_keras.tools.lab.views import LabError

MAX_PROMPT_CHARS = 20_000  # a review is ~300 characters; a few pages of text still get the page's note
MAX_PROMPT_TOKENS = 2 * MAX_TOKENS  # words and punctuation: past the window they only show what the model ignores
MAX_TEXT_CHARS = 2_000  # the calculator's two boxes


def check_text(value: Any, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A text box's value: a string (None is empty) of at most `max_chars` characters, all of them text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LabError(f"the {what} must be text, got {type(value).__name__}")
    if len(value) > max_chars:
        raise LabError(f"the {what} has {len(value):,} characters; the lab takes at most {max_chars:,}")
    broken = next((i for i, c in enumerate(value) if "\ud800" <= c <= "\udfff"), None)
    if broken is not None:
        raise LabError(f"the {what} has a broken character at position {broken + 1} (U+{ord(value[broken]):04X}, "
                       "half of a pair that is not text): type it again")
    return value


def check_prompt(value: Any, vocab) -> str:
    """A prompt: `check_text` with `MAX_PROMPT_CHARS`, then at most `MAX_PROMPT_TOKENS` tokens."""
    prompt = check_text(value, "prompt", MAX_PROMPT_CHARS)
    n_tokens = len(vocab.standardize(prompt))
    if n_tokens > MAX_PROMPT_TOKENS:
        raise LabError(f"the prompt has {n_tokens:,} tokens (words and punctuation); the lab takes at most "
                       f"{MAX_PROMPT_TOKENS:,}")
    return prompt


def whole(value: Any, what: str, minimum: int) -> int:
    """`check_int_at_least` for a number from a web form, where 3.0 means 3."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_int_at_least(value, what, minimum, LabError)


def max_tokens(value: Any) -> int:
    """The sample's length, prompt included, from 1 to the command line's `MAX_TOKENS`."""
    return check_max_tokens(whole(value, "max tokens", 1), "max tokens", LabError)


def temperature(value: Any, what: str = "temperature") -> float:
    try:
        return check_temperature(value, what)
    except SamplingError as error:
        raise LabError(str(error)) from None


def optional_top_k(value: Any) -> int | None:
    """top-k from its box: 0 (or empty) is off."""
    if value is None or value == "" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0):
        return None
    return whole(value, "top-k", 0) or None


def optional_top_p(value: Any) -> float | None:
    """top-p from its slider: 1 (or empty) is off."""
    if value is None or value == "":
        return None
    try:
        top_p = check_top_p(value)
    except SamplingError as error:
        raise LabError(str(error).replace("top_p", "top-p")) from None
    return None if top_p >= 1 else top_p


def head_index(choice: Any, n_heads: int | None = None) -> int | None:
    """"mean of heads" (or empty) -> None, "head 2" -> 1; anything else is refused."""
    if choice is None or choice == "" or choice == "mean of heads":
        return None
    number = choice[len("head "):] if isinstance(choice, str) and choice.startswith("head ") else ""
    if not (number.isascii() and number.isdigit() and len(number) <= 6) or int(number) < 1 \
            or (n_heads is not None and int(number) > n_heads):
        heads = f"1 to {n_heads}" if n_heads else "a number from 1"
        raise LabError(f"attention: choose 'mean of heads' or 'head N' with N {heads}, got {str(choice)[:40]!r}")
    return int(number) - 1
