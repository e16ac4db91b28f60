"""The lecture's texts and vocabulary: from a review to batches of (x, y) token ids shifted by one.

Each example is `wine review : {country} : {province} : {variety} : {description}` with punctuation
padded by spaces, so that punctuation marks become words; a `TextVectorization` layer lower-cases and
indexes them (padding 0, `[UNK]` 1) into `max_len + 1` ids, and x and y are those ids shifted by one.
Reading the Kaggle files is run management (`gpt_keras.runs.datasets`); this module starts from texts.

TensorFlow is used only for the vectorizer and the `tf.data` pipeline (imported inside them), so the
rest runs on any Keras backend.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string
from typing import Iterable, Sequence

import keras
import numpy as np
from gpt_keras.core.checks import GPTKerasError

PROMPT_PREFIX = "wine review"
PAD, UNK = "", "[UNK]"
PAD_ID, UNK_ID = 0, 1  # TextVectorization puts padding first and the unknown word second

# The lecture's character class: every ASCII punctuation mark, plus comma, space, quote and newline.
_PUNCTUATION = re.compile(f"([{re.escape(string.punctuation)}, '\n])")
_SPACES = re.compile(" +")


class DataError(GPTKerasError, ValueError):
    """The data cannot be used; the message names the file and, where it can, the row and field."""


def pad_punctuation(text: str) -> str:
    """Surrounds punctuation and newlines with spaces, as the lecture does, so each becomes a word."""
    return _SPACES.sub(" ", _PUNCTUATION.sub(r" \1 ", text))


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """Lower-cases A-Z only, as `TextVectorization(standardize="lower")` does (`tf.strings.lower`).

    Python's `str.lower` would also turn 'É' into 'é', making prompt words differ from the vocabulary.
    """
    return text.translate(_ASCII_LOWER)


def format_review(country: str, province: str, variety: str, description: str) -> str:
    """The lecture's text of one example, before punctuation padding."""
    return f"{PROMPT_PREFIX} : {country} : {province} : {variety} : {description}"


def make_vectorizer(texts: Sequence[str], vocab_size: int, max_len: int, batch_size: int = 1024):
    """A `TextVectorization` (lower-case, `vocab_size` words, `max_len + 1` tokens) adapted on `texts`."""
    import tensorflow as tf

    vectorizer = keras.layers.TextVectorization(
        standardize="lower", max_tokens=vocab_size, output_mode="int", output_sequence_length=max_len + 1)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(batch_size))
    return vectorizer


def vectorize(vectorizer, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
    """All texts as one int32 array of `max_len + 1` token ids, so epochs reuse it instead of re-tokenizing."""
    import tensorflow as tf

    pieces = [np.asarray(vectorizer(tf.constant(list(texts[start:start + batch_size]))), dtype=np.int32)
              for start in range(0, len(texts), batch_size)]
    return np.concatenate(pieces) if pieces else np.zeros((0, 0), np.int32)


def shift_for_language_model(tokens):
    """x is every token but the last, y every token but the first: predict the next word."""
    return tokens[..., :-1], tokens[..., 1:]


def make_dataset(tokens: np.ndarray, batch_size: int, seed: int | None = None, shuffle: bool = True,
                 shuffle_buffer: int = 0):
    """A `tf.data` pipeline of (x, y) batches: shuffled per review each epoch with `seed`, prefetched.

    `shuffle_buffer` 0 shuffles over the whole dataset (the token array is small: 130k x 81 int32 is
    42 MB); the lecture shuffled a 1,000-batch buffer of whole batches instead.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(tokens)
    if shuffle:
        buffer = shuffle_buffer or len(tokens)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return (dataset.batch(batch_size)
            .map(shift_for_language_model, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Index <-> word, as `TextVectorization.get_vocabulary()` orders it: padding 0, `[UNK]` 1.

    Example:
        >>> vocab = Vocabulary(["", "[UNK]", "wine", "review"])
        >>> vocab.encode("Wine review: Mosel")
        ([2, 3, 1, 1], ['mosel'])   # ':' and 'mosel' are unknown here
    """

    words: tuple[str, ...]

    def __post_init__(self):
        words = tuple(self.words)
        object.__setattr__(self, "words", words)
        if len(words) < 2 or words[PAD_ID] != PAD or words[UNK_ID] != UNK:
            raise DataError(f"a vocabulary starts with padding '' and '[UNK]', got {list(words[:2])!r}")
        if len(set(words)) != len(words):
            repeated = collections.Counter(words).most_common(1)[0][0]
            raise DataError(f"the vocabulary lists the word {repeated!r} more than once")
        object.__setattr__(self, "_index", {word: index for index, word in enumerate(words)})

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, index: int) -> str:
        return self.words[index]

    def standardize(self, prompt: str) -> list[str]:
        """The prompt's words as training saw them: punctuation padded, lower-cased, split on spaces."""
        return ascii_lower(pad_punctuation(prompt)).split()

    def encode(self, prompt: str) -> tuple[list[int], list[str]]:
        """Token ids of a prompt and the words that were not in the vocabulary (mapped to `[UNK]`, 1)."""
        words = self.standardize(prompt)
        ids = [self._index.get(word, UNK_ID) for word in words]
        unknown = [word for word, index in zip(words, ids) if index == UNK_ID and word != UNK.lower()]
        return ids, unknown

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[int(i)] for i in ids)
