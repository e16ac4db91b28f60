"""Training from pre-tokenized arrays: `ArrayBatches` and a JAX run where TensorFlow cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gpt_keras.runs.batches import ArrayBatches, load_tokens, save_tokens
from gpt_keras.core.data import DataError
from tests.conftest import tiny_config, tiny_flags

ROOT = Path(__file__).resolve().parent.parent


def counting_tokens(n_reviews: int = 96, length: int = 13, vocab_size: int = 30, seed: int = 0) -> np.ndarray:
    """Reviews that count up from a random word (2, 3, ... wrapping before vocab_size): easy to learn."""
    starts = np.random.default_rng(seed).integers(0, vocab_size - 2, n_reviews)
    return (2 + (starts[:, None] + np.arange(length)) % (vocab_size - 2)).astype(np.int32)


@pytest.mark.backend_agnostic
def test_batches_are_shifted_by_one_and_cover_every_review_once_per_epoch():
    tokens = counting_tokens(n_reviews=10, length=6)
    batches = ArrayBatches(tokens, batch_size=4, seed=1)
    assert len(batches) == 3
    for epoch in range(2):
        seen = []
        for index in range(len(batches)):
            x, y = batches[index]
            assert x.shape[1] == y.shape[1] == 5 and x.dtype == y.dtype == np.int32
            np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
            seen.extend(map(tuple, np.concatenate([x, y[:, -1:]], axis=1)))
        assert [len(batches[i][0]) for i in range(len(batches))] == [4, 4, 2]  # the last batch is short
        assert sorted(seen) == sorted(map(tuple, tokens))
        batches.on_epoch_end()


@pytest.mark.backend_agnostic
def test_shuffling_is_seeded_and_changes_every_epoch():
    tokens = counting_tokens(n_reviews=50)

    def epochs(batches, n=3):
        orders = []
        for _ in range(n):
            orders.append(np.concatenate([batches[i][0][:, 0] for i in range(len(batches))]))
            batches.on_epoch_end()
        return orders

    first, again = epochs(ArrayBatches(tokens, 8, seed=3)), epochs(ArrayBatches(tokens, 8, seed=3))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], tokens[:, 0])  # the first epoch is shuffled too
    unshuffled = epochs(ArrayBatches(tokens, 8, shuffle=False), 2)
    for order in unshuffled:
        np.testing.assert_array_equal(order, tokens[:, 0])
    # A run resumed at epoch 2 sees what an uninterrupted run sees from its third epoch on.
    resumed = epochs(ArrayBatches(tokens, 8, seed=3, first_epoch=2), 1)
    np.testing.assert_array_equal(resumed[0], first[2])
    assert not np.array_equal(epochs(ArrayBatches(tokens, 8, seed=4), 1)[0], first[0])


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("tokens, batch_size, message", [
    (np.zeros((4,), np.int32), 2, "2-D"),
    (np.zeros((4, 1), np.int32), 2, "2 columns"),
    (np.zeros((0, 5), np.int32), 2, "1 row"),
    (np.zeros((4, 5), np.float32), 2, "integer"),
    (np.zeros((4, 5), np.int32), 0, "batch_size"),
])
def test_bad_arrays_are_refused(tokens, batch_size, message):
    with pytest.raises(DataError, match=message):
        ArrayBatches(tokens, batch_size)


def _config():
    # A vocabulary of 30 counting words; no dropout and a higher learning rate, so that 4 epochs learn them.
    return tiny_config(vocab_size=30, max_len=12, dropout_rate=0.0, learning_rate=5e-3)


@pytest.mark.backend_agnostic
def test_model_fit_learns_from_array_batches():
    import keras

    from gpt_keras.core.model import build_gpt, compile_gpt

    config = _config()
    keras.utils.set_random_seed(0)
    model = compile_gpt(build_gpt(config), config)
    history = model.fit(ArrayBatches(counting_tokens(), batch_size=16, seed=0), epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


def test_tokens_round_trip_through_an_npz(tmp_path):
    vocabulary = ["", "[UNK]"] + [f"w{i}" for i in range(2, 30)]
    tokens = counting_tokens()
    path = save_tokens(tmp_path / "tokens.npz", tokens, vocabulary)
    loaded, words = load_tokens(path)
    assert words == vocabulary
    np.testing.assert_array_equal(loaded, tokens)


# One fresh interpreter, JAX backend, `import tensorflow` failing (as on a machine without it): the command
# line trains from the .npz (through `ArrayBatches`), then generates from the run it saved.
_CLI_CHILD = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
    import keras
    from gpt_keras.tools.cli import main
    assert keras.backend.backend() == "jax", keras.backend.backend()
    train_args, generate_args = sys.argv[1:sys.argv.index("--then")], sys.argv[sys.argv.index("--then") + 1:]
    code = main(train_args)
    print("train exit code:", code, flush=True)
    if code == 0:
        code = main(generate_args)
        print("generate exit code:", code)
    print("tensorflow loaded:", sys.modules.get("tensorflow") is not None)
    sys.exit(code)
""")


@pytest.mark.release  # a JAX subprocess that trains (about 25 s); loading token arrays is tested in make test
def test_gpt_keras_train_from_tokens_and_generate_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    vocabulary = ["", "[UNK]"] + [f"w{i}" for i in range(2, 30)]
    path = save_tokens(tmp_path / "tokens.npz", counting_tokens(), vocabulary)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    train_args = ("train", "--tokens", path, "--runs-dir", "runs", "--name", "jax", "--quiet",
                  *tiny_flags(vocab_size=30, max_len=12, epochs=4, generate_max_tokens=8), "--dropout-rate", 0.0,
                  "--learning-rate", 5e-3, "--generate-prompt", "w2 w3")
    generate_args = ("generate", "--run", tmp_path / "runs" / "jax", "--prompt", "w5 w6", "--max-tokens", 8,
                     "--seed", 0)
    child = subprocess.run([sys.executable, "-c", _CLI_CHILD, *map(str, train_args), "--then",
                            *map(str, generate_args)], capture_output=True, text=True, env=env, timeout=300,
                           cwd=tmp_path)
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-3000:]
    assert "train exit code: 0" in child.stdout and "generate exit code: 0" in child.stdout
    assert "without TensorBoard logs" in child.stdout and "tensorflow loaded: False" in child.stdout
    run_dir = tmp_path / "runs" / "jax"
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 4 and history["loss"][-1] < 0.7 * history["loss"][0], history["loss"]
    assert (run_dir / "model.keras").is_file() and not (run_dir / "logs" / "train").exists()
    assert "generated text:\nw5 w6" in child.stdout
