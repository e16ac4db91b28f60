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


def _tiny_config():
    from gpt_keras.core.config import GPTConfig

    return GPTConfig.preset("tiny", vocab_size=30, max_len=12, embedding_dim=32, key_dim=16, feed_forward_dim=64,
                          dropout_rate=0.0, learning_rate=5e-3)


@pytest.mark.backend_agnostic
def test_model_fit_learns_from_array_batches():
    import keras

    from gpt_keras.core.model import build_gpt, compile_gpt

    config = _tiny_config()
    keras.utils.set_random_seed(0)
    model = compile_gpt(build_gpt(config), config)
    history = model.fit(ArrayBatches(counting_tokens(), batch_size=16, seed=0), epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


# The child: JAX backend, `import tensorflow` fails, trains from the .npz and reports its losses.
_CHILD = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
    import keras
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.runs.batches import ArrayBatches, load_tokens
    from gpt_keras.core.model import build_gpt, compile_gpt

    assert keras.backend.backend() == "jax", keras.backend.backend()
    config = GPTConfig.from_dict(json.loads(sys.argv[2]))
    tokens, vocabulary = load_tokens(sys.argv[1])
    keras.utils.set_random_seed(0)
    model = compile_gpt(build_gpt(config.replace(vocab_size=len(vocabulary))), config)
    history = model.fit(ArrayBatches(tokens, config.batch_size, seed=config.seed), epochs=4, verbose=0)
    print(json.dumps({"loss": history.history["loss"],
                      "tensorflow_loaded": sys.modules.get("tensorflow") is not None}))
""")


@pytest.mark.slow
def test_jax_trains_from_an_npz_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    vocabulary = ["", "[UNK]"] + [f"w{i}" for i in range(2, 30)]
    path = save_tokens(tmp_path / "tokens.npz", counting_tokens(), vocabulary)
    assert load_tokens(path)[1] == vocabulary
    config = _tiny_config().replace(batch_size=16)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(config.to_dict())],
                            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tensorflow_loaded"] is False
    losses = report["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


# The command line, with TensorFlow unimportable: train from the .npz, then generate from the run.
_CLI_CHILD = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None
    from gpt_keras.tools.cli import main
    code = main(sys.argv[1:])
    print("tensorflow loaded:", sys.modules.get("tensorflow") is not None)
    sys.exit(code)
""")


@pytest.mark.slow
def test_gpt_keras_train_from_tokens_runs_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    vocabulary = ["", "[UNK]"] + [f"w{i}" for i in range(2, 30)]
    path = save_tokens(tmp_path / "tokens.npz", counting_tokens(), vocabulary)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}

    def gpt_keras(*args):
        return subprocess.run([sys.executable, "-c", _CLI_CHILD, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300, cwd=tmp_path)

    trained = gpt_keras("train", "--tokens", path, "--runs-dir", "runs", "--name", "jax", "--quiet",
                        "--vocab-size", 30, "--max-len", 12, "--embedding-dim", 16, "--key-dim", 8,
                        "--feed-forward-dim", 32, "--batch-size", 16, "--epochs", 3, "--generate-prompt", "w2 w3",
                        "--generate-max-tokens", 8)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "without TensorBoard logs" in trained.stdout and "tensorflow loaded: False" in trained.stdout
    run_dir = tmp_path / "runs" / "jax"
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 3 and history["loss"][-1] < 0.8 * history["loss"][0]
    assert (run_dir / "model.keras").is_file() and not (run_dir / "logs" / "train").exists()
    generated = gpt_keras("generate", "--run", run_dir, "--prompt", "w5 w6", "--max-tokens", 8, "--seed", 0)
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert "generated text:\nw5 w6" in generated.stdout and "tensorflow loaded: False" in generated.stdout
