"""Length-bucketed batches: reviews of similar length batched together, each batch cut to its longest.

Every review is vectorized to `max_len + 1` token ids, padded with zeros; in the real reviews about a
quarter of the 80 positions are padding. A batch of reviews of similar length, cut after its longest
review, computes far fewer padding positions. Each review keeps all its tokens and the first padding
target after it (the "end of text" the generator stops at), and each epoch still sees every review
once, in an order that depends only on the seed and the epoch (so a resumed run sees the same batches).

What it changes: the lecture's loss averages over all 80 positions, padding included, so a trimmed
batch averages over fewer padding targets (which are easy: after padding comes padding). The model
is trained on the same reviews with a differently weighted loss; that is why bucketing is opt-in
(`GPTConfig(bucket_by_length="on")`, `--bucket-by-length on`) and the lecture's full-width batches are
the default. Validation always uses full-width batches, the lecture's loss.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from gpt_keras.core.checks import check_int_at_least

WIDTH_STEP = 8  # batch widths are multiples of this, so the step function sees few distinct shapes
POOL_BATCHES = 64  # batches' worth of shuffled reviews sorted by length together


def review_lengths(tokens: np.ndarray) -> np.ndarray:
    """Per review, the columns up to and including its last non-padding token (0 for an empty row)."""
    tokens = np.asarray(tokens)
    nonzero = tokens != 0
    last = tokens.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0)


def batch_width(lengths: np.ndarray, row_width: int, step: int = WIDTH_STEP) -> int:
    """Input positions a batch needs: its longest review, whose last target is then the first padding
    (the end of the text), rounded up to a multiple of `step`, at most `row_width - 1`."""
    longest = int(lengths.max()) if len(lengths) else 1
    return min(row_width - 1, max(step, math.ceil(longest / step) * step))


def bucketed_batches(tokens: np.ndarray, batch_size: int, seed: int, epoch: int,
                     pool_batches: int = POOL_BATCHES, step: int = WIDTH_STEP) -> list[np.ndarray]:
    """Epoch `epoch`'s batches as row indices: shuffled, sorted by length within pools, batch order shuffled.

    Each pool of `pool_batches * batch_size` shuffled reviews is sorted by length and cut into
    batches; then the batches of all pools are shuffled, so consecutive steps do not walk from short
    to long reviews. Every review is in exactly one batch; the last batch of each pool may be short.
    """
    check_int_at_least(batch_size, "batch_size", 1)
    lengths = review_lengths(tokens)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(order), pool):
        members = order[start:start + pool]
        members = members[np.argsort(lengths[members], kind="stable")]
        batches.extend(members[i:i + batch_size] for i in range(0, len(members), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def steps_per_epoch(n_reviews: int, batch_size: int, pool_batches: int = POOL_BATCHES) -> int:
    """Batches in an epoch of `bucketed_batches` (a short batch can end each pool)."""
    pool = batch_size * pool_batches
    full_pools, rest = divmod(n_reviews, pool)
    return full_pools * pool_batches + math.ceil(rest / batch_size)


def trimmed_batch(tokens: np.ndarray, rows: np.ndarray, lengths: np.ndarray | None = None,
                  step: int = WIDTH_STEP) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of `rows`, cut after the batch's longest review: only padding is removed."""
    lengths = review_lengths(tokens[rows]) if lengths is None else lengths[rows]
    width = batch_width(lengths, tokens.shape[1], step)
    batch = tokens[rows, :width + 1]
    return batch[:, :-1], batch[:, 1:]


class BucketedBatches(keras.utils.PyDataset):
    """Length-bucketed (x, y) batches from a token array, for `model.fit` on any backend.

    Like `gpt_keras.runs.batches.ArrayBatches`, epoch e's batches depend only on `seed` and e, and
    `first_epoch` lets a resumed run continue the sequence.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.tokens = np.asarray(tokens, np.int32)
        self.lengths = review_lengths(self.tokens)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = first_epoch
        self._batches = bucketed_batches(self.tokens, batch_size, seed, self.epoch)

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        return trimmed_batch(self.tokens, self._batches[index], self.lengths)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._batches = bucketed_batches(self.tokens, self.batch_size, self.seed, self.epoch)


def bucketed_dataset(tokens: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0):
    """An endless `tf.data` stream of bucketed batches, epoch after epoch: returns (dataset, steps).

    The TensorFlow counterpart of `BucketedBatches` for `model.fit(..., steps_per_epoch=steps)`; its
    batches have an unknown length dimension, so the training step is traced once for all widths.
    """
    import tensorflow as tf

    tokens = np.asarray(tokens, np.int32)
    lengths = review_lengths(tokens)

    def generate():
        epoch = first_epoch
        while True:
            for rows in bucketed_batches(tokens, batch_size, seed, epoch):
                yield trimmed_batch(tokens, rows, lengths)
            epoch += 1

    spec = tf.TensorSpec((None, None), tf.int32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(spec, spec))
    return dataset.prefetch(tf.data.AUTOTUNE), steps_per_epoch(len(tokens), batch_size)
