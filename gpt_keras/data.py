"""Wine reviews: from the Kaggle file to batches of (x, y) token ids shifted by one.

The lecture loads `winemag-data-130k-v2.json` (a list of records), keeps the reviews with a country,
province, variety and description, writes each as
`wine review : {country} : {province} : {variety} : {description}`, pads punctuation with spaces so
that punctuation marks become words, and lets a `TextVectorization` layer lower-case and index them.
This module does the same with pandas (JSON or the Kaggle CSV) and reports what it kept and dropped.

TensorFlow is used here only for the vectorizer and the `tf.data` pipeline (imported inside them):
the model code itself runs on any Keras backend, and `save_tokens`/`load_tokens` with `ArrayBatches`
let training start from plain arrays where TensorFlow is not installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import string
from pathlib import Path
from typing import Iterable, Sequence

import keras
import numpy as np
import pandas as pd

from gpt_keras.config import check_int_at_least
from gpt_keras.files import atomic_path, read_json

REQUIRED_FIELDS = ("country", "province", "variety", "description")
PROMPT_PREFIX = "wine review"
KAGGLE_DATASET = "zynicide/wine-reviews"
FULL_DATASET_NAMES = ("winemag-data-130k-v2.json", "winemag-data-130k-v2.csv")
SAMPLE_NAME = "wine-reviews-sample.json"
DEFAULT_DATA_DIR = Path(os.environ.get("GPT_KERAS_DATA_DIR", Path(__file__).resolve().parent.parent / "data"))

# The lecture's character class: every ASCII punctuation mark, plus comma, space, quote and newline.
_PUNCTUATION = re.compile(f"([{re.escape(string.punctuation)}, '\n])")
_SPACES = re.compile(" +")


class DataError(ValueError):
    """The data cannot be used; the message names the file and, where it can, the row and field."""


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """How many reviews a file held, how many were kept, and why the others were dropped."""

    path: str
    rows: int
    kept: int
    dropped_missing: dict[str, int]

    @property
    def dropped(self) -> int:
        return self.rows - self.kept

    def summary(self) -> str:
        reasons = ", ".join(f"{n} without {field}" for field, n in self.dropped_missing.items() if n)
        return (f"{self.path}: kept {self.kept:,} of {self.rows:,} reviews, dropped {self.dropped:,}"
                + (f" ({reasons})" if reasons else ""))


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


def read_reviews(path: str | Path) -> pd.DataFrame:
    """Reads the Kaggle reviews from JSON (a list of records) or CSV (unnamed or `id` index column).

    Raises:
        DataError: the file is missing, unreadable, malformed or lacks one of the four fields.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise DataError(f"{path}: unknown format {suffix or '(no extension)'}; expected .json or .csv")
    frame = _read_json(path) if suffix == ".json" else _read_csv(path)
    missing = [field for field in REQUIRED_FIELDS if field not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; "
                        f"found {', '.join(map(str, frame.columns)) or 'none'}")
    return frame


def _read_json(path: Path) -> pd.DataFrame:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark, as some editors write, is fine
        if not text.strip():
            raise DataError(f"{path}: empty file, no review records")
        records = json.loads(text)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON: nested too deeply to be a list of review records") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of review records, got a {type(records).__name__}")
    if not records:
        raise DataError(f"{path}: the JSON list holds no review records")
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: row {row} is a {type(record).__name__}, expected a record (JSON object)")
    return pd.DataFrame.from_records(records)


def _read_csv(path: Path) -> pd.DataFrame:
    """Reads every cell as text; a structural fault (a row longer than the header, an open quote,
    a repeated column name) fails the file, since the cells could not be trusted to be in their columns."""
    import warnings

    try:
        with warnings.catch_warnings():
            # index_col=False: a row with an extra cell must not silently shift into an index column.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
                                index_col=False)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file, no header row") from None
    except pd.errors.ParserWarning:
        raise DataError(f"{path}: malformed CSV: line 2 has more cells than the header") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(f"{path}: malformed CSV: {_one_line(error)}") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    names = [str(name) for name in header.iloc[0].tolist()] if len(header) else []
    repeated = sorted({name for name in names if names.count(name) > 1 and name in REQUIRED_FIELDS})
    if repeated:
        raise DataError(f"{path}: column {repeated[0]} appears {names.count(repeated[0])} times in the header; "
                        "which one holds the reviews is ambiguous")
    if frame.empty and set(REQUIRED_FIELDS) <= set(frame.columns):
        raise DataError(f"{path}: a header but no review rows")
    return frame.drop(columns=[c for c in frame.columns if c in ("id", "") or str(c).startswith("Unnamed:")])


def _one_line(error: Exception) -> str:
    """An error message from a parser, without its line breaks (the CLI prints exactly one line)."""
    return " ".join(str(error).split())


def review_texts(frame: pd.DataFrame, path: str | Path = "<reviews>") -> tuple[list[str], LoadReport]:
    """Keeps reviews with all four fields, formats and pads them; reports what was dropped.

    A field counts as missing when it is null, not text (a number, a list, a nested object), only
    whitespace (the CSV cannot tell an empty string from a missing value, so both formats treat them
    alike), or not valid Unicode (a lone surrogate escape in JSON, which the vectorizer cannot encode).

    Raises:
        DataError: no review has all four fields.
    """
    present = {field: frame[field].map(_is_text) for field in REQUIRED_FIELDS}
    keep = np.logical_and.reduce([present[field].to_numpy(dtype=bool) for field in REQUIRED_FIELDS]) \
        if len(frame) else np.zeros(0, dtype=bool)
    dropped = {field: int((~present[field].to_numpy(dtype=bool)).sum()) for field in REQUIRED_FIELDS}
    kept = frame.loc[keep, list(REQUIRED_FIELDS)]
    texts = [pad_punctuation(format_review(*row)) for row in kept.itertuples(index=False, name=None)]
    report = LoadReport(path=str(path), rows=len(frame), kept=len(texts), dropped_missing=dropped)
    if not texts:
        raise DataError(f"{path}: no usable review: every one of the {len(frame):,} rows lacks one of "
                        f"{', '.join(REQUIRED_FIELDS)}")
    return texts, report


def _is_text(value: object) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_texts(path: str | Path) -> tuple[list[str], LoadReport]:
    """Reads a Kaggle file and returns the lecture's padded texts with a `LoadReport`."""
    return review_texts(read_reviews(path), path)


# --- where the data comes from -----------------------------------------------------------------

def find_full_dataset(data_dir: str | Path = DEFAULT_DATA_DIR) -> Path | None:
    """The full Kaggle file in `data_dir` (JSON preferred, as in the lecture), if it is there."""
    for name in FULL_DATASET_NAMES:
        candidate = Path(data_dir) / name
        if candidate.is_file():
            return candidate
    return None


def default_data_path(data_dir: str | Path = DEFAULT_DATA_DIR) -> tuple[Path, str]:
    """The file training uses when none is given: the full dataset if downloaded, else the sample."""
    full = find_full_dataset(data_dir)
    if full is not None:
        return full, "the full Kaggle dataset"
    sample = Path(data_dir) / SAMPLE_NAME
    if not sample.is_file():
        raise DataError(f"{sample}: the embedded sample is missing; run `python data/make_sample.py` "
                        "or pass --data FILE")
    return sample, "the embedded synthetic sample (run `gpt-keras download` for the real dataset)"


def download_dataset(data_dir: str | Path = DEFAULT_DATA_DIR) -> Path:
    """Fetches the full Kaggle dataset with `kagglehub` and copies its JSON and CSV into `data_dir`.

    Raises:
        DataError: kagglehub is missing, the network or Kaggle refused, or the files are not there;
            the message says how to place the file by hand.
    """
    import shutil

    data_dir = Path(data_dir)
    manual = (f"Download it by hand from https://www.kaggle.com/datasets/{KAGGLE_DATASET} and place "
              f"{FULL_DATASET_NAMES[0]} (or {FULL_DATASET_NAMES[1]}) in {data_dir}/")
    try:
        import kagglehub
    except ImportError:
        raise DataError(f"kagglehub is not installed (pip install kagglehub). {manual}") from None
    try:
        source = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as error:  # kagglehub raises many kinds (network, auth, HTTP); all mean "not fetched"
        raise DataError(f"could not download {KAGGLE_DATASET} from Kaggle ({type(error).__name__}: "
                        f"{error}). {manual}") from None
    found = [source / name for name in FULL_DATASET_NAMES if (source / name).is_file()]
    if not found:
        raise DataError(f"{source}: the Kaggle download holds none of {', '.join(FULL_DATASET_NAMES)}. {manual}")
    data_dir.mkdir(parents=True, exist_ok=True)
    for file in found:
        with atomic_path(data_dir / file.name) as temporary:
            shutil.copyfile(file, temporary)
    return data_dir / found[0].name


# --- vectorizing -------------------------------------------------------------------------------

def make_vectorizer(texts: Sequence[str], vocab_size: int, max_len: int, batch_size: int = 1024):
    """A `TextVectorization` (lower-case, `vocab_size` words, `max_len + 1` tokens) adapted on `texts`."""
    import tensorflow as tf

    vectorizer = keras.layers.TextVectorization(
        standardize="lower", max_tokens=vocab_size, output_mode="int", output_sequence_length=max_len + 1)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(batch_size))
    return vectorizer


def vectorizer_from_vocabulary(vocabulary: Sequence[str], max_len: int):
    """Rebuilds a saved run's vectorizer from its vocabulary (padding and `[UNK]` first)."""
    vectorizer = keras.layers.TextVectorization(
        standardize="lower", output_mode="int", output_sequence_length=max_len + 1)
    vectorizer.set_vocabulary(list(vocabulary)[2:] if list(vocabulary[:2]) == ["", "[UNK]"] else vocabulary)
    return vectorizer


def vectorize(vectorizer, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
    """All texts as one int32 array of `max_len + 1` token ids, so epochs reuse it instead of re-tokenizing."""
    import tensorflow as tf

    pieces = [np.asarray(vectorizer(tf.constant(list(texts[start:start + batch_size]))), dtype=np.int32)
              for start in range(0, len(texts), batch_size)]
    return np.concatenate(pieces) if pieces else np.zeros((0, 0), np.int32)


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


def training_batches(tokens: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0, shuffle_buffer: int = 0):
    """The training stream for `model.fit(..., steps_per_epoch=steps)`: returns (dataset, steps).

    One endless `tf.data` stream of (x, y) batches, epoch after epoch, each epoch reshuffled and ending
    in a short batch as `make_dataset`'s does. Epoch e's order depends only on `seed`, TensorFlow's
    global seed (`train` sets it to the run's seed) and e; a run resumed at epoch k skips the first k
    epochs' index batches (cheap: indices only), so it sees exactly the batches an uninterrupted run
    sees from epoch k on. (`make_dataset` restarts its shuffle sequence instead.)
    """
    import tensorflow as tf

    steps = -(-len(tokens) // batch_size)
    order = (tf.data.Dataset.range(len(tokens))
             .shuffle(shuffle_buffer or len(tokens), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size).repeat().skip(first_epoch * steps))
    table = tf.constant(np.asarray(tokens, np.int32))
    batches = order.map(lambda rows: shift_for_language_model(tf.gather(table, rows)),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE), steps


# --- pre-tokenized arrays (training without TensorFlow) ----------------------------------------

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
        with np.load(path, allow_pickle=False) as archive:
            tokens, vocabulary = archive["tokens"], [str(word) for word in archive["vocabulary"]]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path}: not a token archive written by gpt-keras ({error})") from None
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


# --- the vocabulary -----------------------------------------------------------------------------

PAD, UNK = "", "[UNK]"


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
        if len(words) < 2 or words[0] != PAD or words[1] != UNK:
            raise DataError(f"a vocabulary starts with padding '' and '[UNK]', got {list(words[:2])!r}")
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
        ids = [self._index.get(word, 1) for word in words]
        unknown = [word for word, index in zip(words, ids) if index == 1 and word != UNK.lower()]
        return ids, unknown

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[int(i)] for i in ids)

    def save(self, path: str | Path) -> Path:
        from gpt_keras.files import write_json
        return write_json(path, list(self.words))

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        words = read_json(path, "vocabulary", DataError)
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            raise DataError(f"{path}: a vocabulary is a JSON list of strings")
        try:
            return cls(tuple(words))
        except DataError as error:
            raise DataError(f"{path}: {error}") from None
