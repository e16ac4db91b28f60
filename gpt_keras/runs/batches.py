"""Batches for training: a resumable `tf.data` stream, and plain arrays for backends without TensorFlow.

Epoch e's order depends only on the seed and e, in both, so a run resumed at epoch k sees the batches
an uninterrupted run sees from epoch k on. `save_tokens`/`load_tokens` keep the vectorized reviews in
one `.npz`, which is what a resumed run, or a machine without TensorFlow, trains from.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from gpt_keras.core.checks import check_int_at_least
from gpt_keras.core.data import DataError, shift_for_language_model
from gpt_keras.runs.files import atomic_path, open_regular, one_line
from gpt_keras.runs.memory import check_token_archive


def split_tokens(tokens: np.ndarray, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Holds out a seeded random share of reviews for validation (none when the split is 0)."""
    if validation_split <= 0:
        return tokens, None
    order = np.random.default_rng(seed).permutation(len(tokens))
    n_validation = int(round(len(tokens) * validation_split))
    if n_validation < 1 or n_validation >= len(tokens):
        raise DataError(f"validation_split {validation_split} leaves {n_validation} of {len(tokens)} reviews "
                        "for validation; use a larger file or another split")
    return tokens[order[n_validation:]], tokens[order[:n_validation]]


LECTURE_SHUFFLE_BATCHES = 1000  # the lecture's .shuffle(1000), applied after .batch(32): a buffer of batches


def training_batches(tokens: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0, shuffle_buffer: int = 0,
                     whole_batches: bool = False):
    """The training stream for `model.fit(..., steps_per_epoch=steps)`: returns (dataset, steps).

    `whole_batches` (the lecture recipe) keeps the batches of consecutive reviews the lecture's
    `.batch(32)` makes and shuffles only their order, in a buffer of 1,000 batches as its
    `.shuffle(1000)` does; otherwise reviews are shuffled before batching (`shuffle_buffer` 0: all).

    One endless `tf.data` stream of (x, y) batches, epoch after epoch, each epoch reshuffled and ending
    in a short batch as `make_dataset`'s does. Epoch e's order depends only on `seed`, TensorFlow's
    global seed (`train` sets it to the run's seed) and e; a run resumed at epoch k skips the first k
    epochs' index batches (cheap: indices only), so it sees exactly the batches an uninterrupted run
    sees from epoch k on. (`make_dataset` restarts its shuffle sequence instead.)
    """
    import tensorflow as tf

    steps = -(-len(tokens) // batch_size)
    if whole_batches:  # the lecture's from_tensor_slices(texts).batch(32).shuffle(1000): fixed batches, shuffled
        order = (tf.data.Dataset.range(len(tokens)).batch(batch_size)
                 .shuffle(LECTURE_SHUFFLE_BATCHES, seed=seed, reshuffle_each_iteration=True))
    else:
        order = (tf.data.Dataset.range(len(tokens))
                 .shuffle(shuffle_buffer or len(tokens), seed=seed, reshuffle_each_iteration=True)
                 .batch(batch_size))
    order = order.repeat().skip(first_epoch * steps)
    table = tf.constant(np.asarray(tokens, np.int32))
    batches = order.map(lambda rows: shift_for_language_model(tf.gather(table, rows)),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE), steps


def save_tokens(path: str | Path, tokens: np.ndarray, vocabulary: Sequence[str]) -> Path:
    """Writes token ids and vocabulary to one `.npz`, atomically, for any-backend training."""
    path = Path(path)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, tokens=np.asarray(tokens, np.int32), vocabulary=np.asarray(vocabulary, dtype=str))
    return path


def load_tokens(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Reads a `.npz` written by `save_tokens`, checking shapes and id ranges."""
    path = Path(path)
    try:
        with open_regular(path, "token archive", DataError) as handle:
            check_token_archive(handle, path, DataError)  # the headers' sizes, before NumPy allocates them
            with np.load(handle, allow_pickle=False) as archive:
                tokens, words = archive["tokens"], archive["vocabulary"]
                if not isinstance(tokens, np.ndarray) or not isinstance(words, np.ndarray):  # numpy hands over raw bytes
                    raise ValueError("a member is not a .npy array (cut short or replaced)")
            if words.ndim != 1 or words.dtype.kind != "U":
                raise ValueError(f"the vocabulary must be a 1-D array of strings, got {words.dtype} {words.shape}")
            vocabulary = [str(word) for word in words]
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        reason = "empty or truncated file" if isinstance(error, (EOFError, zipfile.BadZipFile)) else one_line(error, 200)
        raise DataError(f"{path}: not a token archive written by gpt-keras ({reason})") from None
    if tokens.ndim != 2 or tokens.shape[1] < 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise DataError(f"{path}: tokens must be a 2-D integer array of at least 2 columns, got "
                        f"{tokens.dtype} {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= len(vocabulary)):
        raise DataError(f"{path}: token ids outside 0..{len(vocabulary) - 1}")
    return tokens.astype(np.int32), vocabulary


class ArrayBatches(keras.utils.PyDataset):
    """(x, y) batches of token ids shifted by one, from a plain array, for `model.fit` on any backend.

    The TensorFlow-free counterpart of `training_batches`: reviews are reshuffled every epoch (the
    first too), epoch e's order depends only on `seed` and e, so a run resumed at epoch k with
    `first_epoch=k` sees the batches an uninterrupted run sees; the last batch may be short.

    Args:
        tokens: [reviews, max_len + 1] integer token ids, e.g. from `load_tokens`.
        batch_size: reviews per batch.
        seed: seeds the shuffles (None: a fresh order every run).
        shuffle: reshuffle every epoch (False keeps the array's order, for validation).
        first_epoch: the epoch the first pass is (a resumed run's `initial_epoch`).
        **kwargs: `keras.utils.PyDataset`'s `workers`, `use_multiprocessing`, `max_queue_size`.

    Example:
        >>> tokens, vocabulary = load_tokens("tokens.npz")                   # doctest: +SKIP
        >>> model.fit(ArrayBatches(tokens, batch_size=32, seed=42), epochs=5)  # doctest: +SKIP
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seed: int | None = None, shuffle: bool = True,
                 first_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 2 \
                or not np.issubdtype(tokens.dtype, np.integer):
            raise DataError(f"tokens must be a 2-D integer array of at least 1 row and 2 columns, got "
                            f"{tokens.dtype} {tokens.shape}")
        self.batch_size = check_int_at_least(batch_size, "batch_size", 1, DataError)
        self.tokens = tokens.astype(np.int32, copy=False)
        self.shuffle = shuffle
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self.epoch = first_epoch
        self._order = self._epoch_order()

    def __len__(self) -> int:
        return math.ceil(len(self.tokens) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return shift_for_language_model(self.tokens[rows])

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.tokens))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.tokens))


