"""One rule, one place: every entry point that takes a seed or a max-tokens gives the same message for the
same bad value (the rule lives in `gpt_keras.core.checks`), and every bad-input error derives from
`GPTKerasError`, which the command line turns into one line and exit 2."""

from __future__ import annotations

import pytest

from gpt_keras.core.checks import GPTKerasError, MAX_SEED, MAX_TOKENS
from tests.conftest import cli

BAD_SEEDS = {-1: "got -1", MAX_SEED + 1: f"got {MAX_SEED + 1}"}
SEED_RULE = f"seed must be a whole number from 0 to {MAX_SEED:,}"
TOKENS_RULE = f"max_tokens must be at most {MAX_TOKENS:,} (MAX_TOKENS, the prompt included)"


def message_of(call) -> str:
    with pytest.raises(GPTKerasError) as caught:
        call()
    return str(caught.value)


@pytest.fixture(scope="module")
def vocab_and_model():
    from gpt_keras.core.data import Vocabulary
    from gpt_keras.core.model import build_gpt
    from tests.conftest import tiny_config

    vocab = Vocabulary(("", "[UNK]", "wine", "review", ":", "red"))
    return vocab, build_gpt(tiny_config(vocab_size=len(vocab)))


@pytest.mark.parametrize("seed", sorted(BAD_SEEDS))
def test_a_bad_seed_has_one_message_at_every_entry_point(seed, vocab_and_model, tmp_path):
    from gpt_keras.core.callbacks import TextGenerator
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.generation import CachedGenerator
    from gpt_keras.tools import lab

    vocab, model = vocab_and_model
    expected = f"{SEED_RULE}, {BAD_SEEDS[seed]}"
    messages = {
        "config": message_of(lambda: GPTConfig(seed=seed)),
        "TextGenerator": message_of(lambda: TextGenerator(vocab, seed=seed)),
        "lab": message_of(lambda: lab.sample_steps(CachedGenerator(model, vocab), vocab, "wine review", 1.0, seed)),
    }
    result = cli("generate", "--run", tmp_path, "--seed", seed)
    messages["command line"] = result.error_lines[0] if result.error_lines else result.err
    assert result.code == 2
    assert all(expected in message for message in messages.values()), messages


def test_a_bad_max_tokens_has_one_message_at_every_entry_point(vocab_and_model, tmp_path):
    from gpt_keras.core.callbacks import TextGenerator
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.generation import CachedGenerator
    from gpt_keras.core.sampling import Sampler

    import numpy as np

    vocab, model = vocab_and_model
    too_many = MAX_TOKENS + 1
    messages = {
        "config": message_of(lambda: GPTConfig(generate_max_tokens=too_many)),
        "TextGenerator": message_of(lambda: TextGenerator(vocab, max_tokens=too_many)),
        "generator": message_of(lambda: CachedGenerator(model, vocab).generate(
            "wine", too_many, Sampler(1.0), np.random.default_rng(0))),
    }
    result = cli("generate", "--run", tmp_path, "--max-tokens", too_many)
    messages["command line"] = result.error_lines[0] if result.error_lines else result.err
    assert result.code == 2
    assert all(TOKENS_RULE.split(" must")[1] in message for message in messages.values()), messages
    assert all(f"got {too_many:,}" in message for message in messages.values()), messages


def test_every_bad_input_error_class_derives_from_the_one_root():
    from gpt_keras.core.config import ConfigError
    from gpt_keras.core.data import DataError
    from gpt_keras.core.sampling import SamplingError
    from gpt_keras.runs.distribute import DistributeError
    from gpt_keras.runs.files import UnsafePathError, WriteError
    from gpt_keras.runs.rundir import RunError
    from gpt_keras.tools.cli import UsageError
    from gpt_keras.tools.gpt2.load import GPT2Error
    from gpt_keras.tools.lab import LabError
    from gpt_keras.tools.viz import VizError

    classes = [ConfigError, DataError, SamplingError, DistributeError, UnsafePathError, WriteError, RunError,
               UsageError, GPT2Error, LabError, VizError]
    assert all(issubclass(kind, GPTKerasError) for kind in classes)
    assert issubclass(WriteError, OSError) and issubclass(ConfigError, ValueError)  # the old bases stay
