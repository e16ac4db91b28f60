"""The Kaggle wine reviews on disk: reading them with pandas, where they live, and downloading them.

The lecture loads `winemag-data-130k-v2.json` (a list of records) and keeps the reviews with a
country, province, variety and description. This module reads that file or the Kaggle CSV, applies the
same filter, turns each review into the lecture's text (`gpt_keras.core.data`) and reports what it kept
and dropped. Every fault in a file is one `DataError` naming the file and, where it can, the row.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from gpt_keras.core.data import DataError, format_review, pad_punctuation
from gpt_keras.runs.files import atomic_path, one_line

REQUIRED_FIELDS = ("country", "province", "variety", "description")
KAGGLE_DATASET = "zynicide/wine-reviews"
FULL_DATASET_NAMES = ("winemag-data-130k-v2.json", "winemag-data-130k-v2.csv")
SAMPLE_NAME = "wine-reviews-sample.json"
# The synthetic sample ships inside the package (written by data/make_sample.py in a source checkout).
SAMPLE_PATH = Path(__file__).resolve().parent / SAMPLE_NAME
DATA_DIR_VARIABLE = "GPT_KERAS_DATA_DIR"


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
    except DataError:
        raise
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except ValueError as error:  # a number of thousands of digits: Python refuses to convert it
        raise DataError(f"{path}: malformed JSON: {one_line(error, 200)}") from None
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
        raise DataError(f"{path}: malformed CSV: {one_line(error)}") from None
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

def data_dir(explicit: str | Path | None = None) -> Path:
    """The folder that holds (or will hold) the full dataset, never inside the installed package.

    In order: `explicit` (`--data-dir`), then `$GPT_KERAS_DATA_DIR`, then `./data` in the working
    directory when it holds the dataset (a source checkout), else the per-user cache folder
    (`~/.cache/gpt-keras/data` on Linux), where `gpt-keras download` puts it.
    """
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE])
    if find_full_dataset(Path("data")) is not None:
        return Path("data")
    import platformdirs

    return platformdirs.user_cache_path("gpt-keras", appauthor=False) / "data"


def find_full_dataset(folder: str | Path | None = None) -> Path | None:
    """The full Kaggle file in `folder` (default `data_dir()`), JSON preferred as in the lecture."""
    folder = data_dir() if folder is None else Path(folder)
    for name in FULL_DATASET_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def default_data_path(folder: str | Path | None = None) -> tuple[Path, str]:
    """The file training uses when none is given: the full dataset if downloaded, else the sample."""
    full = find_full_dataset(folder)
    if full is not None:
        return full, "the full Kaggle dataset"
    if not SAMPLE_PATH.is_file():
        raise DataError(f"{SAMPLE_PATH}: the embedded sample is missing from the installed package; "
                        "reinstall gpt-keras or pass --data FILE")
    return SAMPLE_PATH, "the embedded synthetic sample (run `gpt-keras download` for the real dataset)"


def download_dataset(folder: str | Path | None = None) -> Path:
    """Fetches the full Kaggle dataset with `kagglehub` and copies its JSON and CSV into `folder`
    (default `data_dir()`).

    Raises:
        DataError: kagglehub is missing, the network or Kaggle refused, or the files are not there;
            the message says how to place the file by hand.
    """
    import shutil

    folder = data_dir(folder)
    manual = (f"Download it by hand from https://www.kaggle.com/datasets/{KAGGLE_DATASET} and place "
              f"{FULL_DATASET_NAMES[0]} (or {FULL_DATASET_NAMES[1]}) in {folder}/")
    try:
        import kagglehub
    except ImportError:
        raise DataError(f'kagglehub is not installed: pip install "gpt-keras[download]". {manual}') from None
    try:
        source = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as error:  # kagglehub raises many kinds (network, auth, HTTP); all mean "not fetched"
        raise DataError(f"could not download {KAGGLE_DATASET} from Kaggle ({type(error).__name__}: "
                        f"{error}). {manual}") from None
    found = [source / name for name in FULL_DATASET_NAMES if (source / name).is_file()]
    if not found:
        raise DataError(f"{source}: the Kaggle download holds none of {', '.join(FULL_DATASET_NAMES)}. {manual}")
    folder.mkdir(parents=True, exist_ok=True)
    for file in found:
        with atomic_path(folder / file.name) as temporary:
            shutil.copyfile(file, temporary)
    return folder / found[0].name


