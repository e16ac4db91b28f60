"""Length-bucketed batches: every token of every review kept, the same batches for the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from gpt_keras.runs import bucketing
from gpt_keras.runs.train import prepare_data, train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def real_tokens(small_json):
    """400 real reviews vectorized to 81 columns, as training sees them."""
    return prepare_data(tiny_config(max_len=80, vocab_size=2_000), small_json, print_fn=None).tokens


def _epoch(tokens, seed, epoch, batch_size=16):
    return [bucketing.trimmed_batch(tokens, rows) for rows in bucketing.bucketed_batches(tokens, batch_size, seed,
                                                                                           epoch, pool_batches=4)]


def test_review_lengths_count_up_to_the_last_word():
    tokens = np.array([[5, 6, 7, 0, 0], [5, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(bucketing.review_lengths(tokens), [3, 1, 0, 5])


def test_every_token_of_every_review_is_in_exactly_one_batch(real_tokens):
    rows = np.concatenate(bucketing.bucketed_batches(real_tokens, 16, seed=3, epoch=0, pool_batches=4))
    assert sorted(rows.tolist()) == list(range(len(real_tokens)))  # each review once
    lengths = bucketing.review_lengths(real_tokens)
    for rows in bucketing.bucketed_batches(real_tokens, 16, seed=3, epoch=0, pool_batches=4):
        x, y = bucketing.trimmed_batch(real_tokens, rows)
        width = x.shape[1]
        assert width % bucketing.WIDTH_STEP == 0 or width == real_tokens.shape[1] - 1
        np.testing.assert_array_equal(x, real_tokens[rows, :width])
        np.testing.assert_array_equal(y, real_tokens[rows, 1:width + 1])
        assert not real_tokens[rows, width + 1:].any()  # only padding was cut
        # each review's last word and the end-of-text (padding) target after it are still predicted
        ends = lengths[rows]
        assert np.all(ends <= width) or width == real_tokens.shape[1] - 1


def test_batches_are_narrower_than_the_full_width_on_real_reviews(real_tokens):
    batches = _epoch(real_tokens, 0, 0)
    computed = sum(x.size for x, _ in batches)
    assert computed < 0.9 * len(real_tokens) * (real_tokens.shape[1] - 1)
    assert len(batches) == bucketing.steps_per_epoch(len(real_tokens), 16, pool_batches=4)


def test_the_same_seed_and_epoch_give_the_same_batches_and_others_differ(real_tokens):
    first, again = _epoch(real_tokens, 7, 2), _epoch(real_tokens, 7, 2)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    orders = [np.concatenate(bucketing.bucketed_batches(real_tokens, 16, seed, epoch, pool_batches=4))
              for seed, epoch in ((7, 2), (7, 3), (8, 2))]
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], orders[2])


def test_the_tf_data_stream_and_the_py_dataset_yield_the_same_epochs(real_tokens):
    dataset, steps = bucketing.bucketed_dataset(real_tokens, 16, seed=5, first_epoch=1)
    py_dataset = bucketing.BucketedBatches(real_tokens, 16, seed=5, first_epoch=1)
    stream = iter(dataset)
    for _ in range(2):  # two epochs: the stream continues with the next epoch's order
        assert len(py_dataset) == steps
        for index in range(steps):
            x, y = next(stream)
            expected_x, expected_y = py_dataset[index]
            np.testing.assert_array_equal(np.asarray(x), expected_x)
            np.testing.assert_array_equal(np.asarray(y), expected_y)
        py_dataset.on_epoch_end()


def test_training_with_buckets_runs_and_validates_on_full_width_batches(tmp_path, small_json):
    result = train(tiny_config(bucket_by_length="on", validation_split=0.1, epochs=2), small_json,
                   runs_dir=tmp_path, print_fn=None, verbose=0)
    assert len(result.history["loss"]) == 2 and np.isfinite(result.history["val_loss"]).all()
    assert result.history["loss"][1] < result.history["loss"][0]
