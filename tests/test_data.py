"""Loading, filtering, formatting and vectorizing the wine reviews, and every bad input of the loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpt_keras.runs import rundir as runs

from gpt_keras.core import data as data_core
from gpt_keras.runs import datasets as data_datasets
from gpt_keras.runs import batches as data_batches
from gpt_keras.core.data import DataError, Vocabulary
from tests.conftest import write_reviews_json


# --- text format -----------------------------------------------------------------------------------

def test_pad_punctuation_matches_the_lecture_regex():
    assert data_core.pad_punctuation("Crisp, dry-ish; it's 90% fruit.\nNice!") == \
        "Crisp , dry - ish ; it ' s 90 % fruit . \n Nice ! "


def test_format_review_is_the_lecture_text():
    assert data_core.format_review("Germany", "Mosel", "Riesling", "Zesty.") == \
        "wine review : Germany : Mosel : Riesling : Zesty."


def test_real_csv_keeps_the_rows_with_all_four_fields(shared_csv, shared_frame):
    texts, report = data_datasets.load_texts(shared_csv)
    complete = shared_frame[["country", "province", "variety", "description"]].notna().all(axis=1)
    assert report.rows == len(shared_frame) == 10_001
    assert report.kept == len(texts) == int(complete.sum()) == 9_996
    assert report.dropped == 5 and report.dropped_missing["country"] == 5
    first = shared_frame[complete].iloc[0]
    assert texts[0] == data_core.pad_punctuation(data_core.format_review(
        first.country, first.province, first.variety, first.description))
    assert "kept 9,996 of 10,001" in report.summary()


def test_json_and_csv_give_the_same_texts(tmp_path, shared_frame):
    head = shared_frame.head(60)
    json_texts, _ = data_datasets.load_texts(write_reviews_json(tmp_path / "r.json", head))
    kaggle_csv = tmp_path / "kaggle.csv"  # Kaggle's own CSV: an unnamed first column
    head.rename(columns={"id": ""}).to_csv(kaggle_csv, index=False)
    csv_texts, _ = data_datasets.load_texts(kaggle_csv)
    assert json_texts == csv_texts
    assert all(text.startswith("wine review : ") for text in json_texts)


def test_blank_fields_count_as_missing(tmp_path):
    records = [{"country": "Italy", "province": "Tuscany", "variety": "Sangiovese", "description": "Red."},
               {"country": "  ", "province": "Tuscany", "variety": "Sangiovese", "description": "Red."},
               {"country": "Italy", "province": None, "variety": "Sangiovese", "description": "Red."}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))
    texts, report = data_datasets.load_texts(path)
    assert len(texts) == 1 and report.dropped_missing == {"country": 1, "province": 1, "variety": 0, "description": 0}


# --- vectorizing --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vectorized(shared_csv):
    texts, _ = data_datasets.load_texts(shared_csv)
    texts = texts[:500]
    vectorizer = data_core.make_vectorizer(texts, vocab_size=300, max_len=20)
    return texts, vectorizer, data_core.vectorize(vectorizer, texts)


def test_vectorizer_lowercases_limits_vocabulary_and_outputs_max_len_plus_one(vectorized):
    texts, vectorizer, tokens = vectorized
    vocab = vectorizer.get_vocabulary()
    assert len(vocab) == 300 and vocab[:2] == ["", "[UNK]"]
    assert all(word == word.lower() for word in vocab[2:])
    assert tokens.shape == (500, 21) and tokens.dtype == np.int32
    words = texts[0].lower().split()[:21]
    expected = [vocab.index(word) if word in vocab else 1 for word in words]
    assert tokens[0, :len(expected)].tolist() == expected


def test_dataset_shifts_by_one_and_shuffles_with_a_seed(vectorized):
    _, _, tokens = vectorized
    batches = list(data_core.make_dataset(tokens, batch_size=32, seed=7).take(2))
    x, y = (np.asarray(t) for t in batches[0])
    assert x.shape == (32, 20) and y.shape == (32, 20)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    rows = {tuple(row) for row in tokens.tolist()}
    assert all(tuple(np.concatenate([xr, yr[-1:]])) in rows for xr, yr in zip(x, y))
    again = np.asarray(next(iter(data_core.make_dataset(tokens, batch_size=32, seed=7)))[0])
    other = np.asarray(next(iter(data_core.make_dataset(tokens, batch_size=32, seed=8)))[0])
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, other)
    assert not np.array_equal(x, tokens[:32, :-1])


def test_validation_split_is_seeded_and_disjoint(vectorized):
    _, _, tokens = vectorized
    train, validation = data_batches.split_tokens(tokens, 0.2, seed=3)
    assert len(validation) == 100 and len(train) == 400
    again_train, _ = data_batches.split_tokens(tokens, 0.2, seed=3)
    np.testing.assert_array_equal(train, again_train)
    assert data_batches.split_tokens(tokens, 0.0, seed=3)[1] is None


def test_token_archive_round_trip(tmp_path, vectorized):
    _, vectorizer, tokens = vectorized
    path = data_batches.save_tokens(tmp_path / "t.npz", tokens, vectorizer.get_vocabulary())
    loaded, words = data_batches.load_tokens(path)
    np.testing.assert_array_equal(loaded, tokens)
    assert words == vectorizer.get_vocabulary()


def test_vocabulary_encodes_prompts_as_training_saw_them():
    vocab = Vocabulary(("", "[UNK]", "wine", "review", ":", "germany"))
    assert vocab.encode("Wine Review: Germany") == ([2, 3, 4, 5], [])
    assert vocab.encode("wine review : narnia") == ([2, 3, 4, 1], ["narnia"])
    assert vocab.decode([2, 3]) == "wine review"


# --- bad input: one clear error naming the file, row or field ---------------------------------------

def _write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", '[{"country": "Italy",', "malformed JSON at line 1"),
    ("obj.json", '{"country": "Italy"}', "expected a JSON list"),
    ("row.json", '[{"country": "Italy", "province": "T", "variety": "V", "description": "D"}, 5]',
     "row 1 is a int"),
    ("cols.json", '[{"country": "Italy", "description": "D"}]', "missing column(s) province, variety"),
    ("none.json", '[{"country": null, "province": "T", "variety": "V", "description": "D"}]', "no usable review"),
    ("latin1.csv", "country,province,variety,description\nEspa\xf1a,a,b,c\n".encode("latin-1"), "not UTF-8"),
    ("empty.csv", "", "empty file"),
    ("cols.csv", "country,description\nItaly,D\n", "missing column(s) province, variety"),
    ("ragged.csv", 'country,province,variety,description\n"Italy,T,V,D\n', "malformed CSV"),
    ("reviews.txt", "hello", "unknown format .txt"),
])
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError) as error:
        data_datasets.load_texts(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data_datasets.load_texts(tmp_path / "nope.json")
    with pytest.raises(DataError, match="not a regular file"):
        data_datasets.load_texts(tmp_path)


def test_bad_token_archives(tmp_path):
    with pytest.raises(DataError, match="not a token archive"):
        data_batches.load_tokens(_write(tmp_path, "x.npz", b"not a zip"))
    np.savez(tmp_path / "ids.npz", tokens=np.array([[0, 5]]), vocabulary=np.array(["", "[UNK]"]))
    with pytest.raises(DataError, match="outside 0..1"):
        data_batches.load_tokens(tmp_path / "ids.npz")


def test_bad_vocabularies(tmp_path):
    with pytest.raises(DataError, match="starts with padding"):
        Vocabulary(("a", "b"))
    with pytest.raises(DataError, match="JSON list of strings"):
        runs.read_vocabulary(_write(tmp_path, "v.json", '{"a": 1}'))


def test_download_without_network_says_how_to_place_the_file(tmp_path, monkeypatch):
    import kagglehub

    def refuse(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(kagglehub, "dataset_download", refuse)
    with pytest.raises(DataError) as error:
        data_datasets.download_dataset(tmp_path)
    message = str(error.value)
    assert "could not download zynicide/wine-reviews" in message
    assert "winemag-data-130k-v2.json" in message and str(tmp_path) in message
    assert not any(tmp_path.iterdir())


def test_default_data_prefers_the_full_dataset(tmp_path):
    assert data_datasets.default_data_path(tmp_path)[0] == data_datasets.SAMPLE_PATH  # the package's own sample
    _write(tmp_path, "winemag-data-130k-v2.csv", "x")
    path, description = data_datasets.default_data_path(tmp_path)
    assert path.name == "winemag-data-130k-v2.csv" and "full" in description


def test_prompts_are_lower_cased_like_the_vectorizer(shared_csv):
    import tensorflow as tf

    text = "Émilia-Romagna Rosé DOURO Ürzig"
    vectorizer_view = tf.strings.lower(text).numpy().decode()
    assert data_core.ascii_lower(text) == vectorizer_view == "Émilia-romagna rosé douro Ürzig"
    vocab = Vocabulary(("", "[UNK]", "Émilia", "-", "romagna"))
    assert vocab.encode("Émilia-Romagna") == ([2, 3, 4], [])


def test_data_folder_order_flag_then_variable_then_working_data_then_user_cache(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPT_KERAS_DATA_DIR", raising=False)
    cache = platformdirs.user_cache_path("gpt-keras", appauthor=False) / "data"
    (tmp_path / "data").mkdir()
    assert data_datasets.data_dir() == cache  # ./data without the dataset does not count
    _write(tmp_path / "data", "winemag-data-130k-v2.json", "[]")
    assert data_datasets.data_dir() == Path("data")
    monkeypatch.setenv("GPT_KERAS_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_datasets.data_dir() == tmp_path / "elsewhere"
    assert data_datasets.data_dir(tmp_path / "flag") == tmp_path / "flag"


def test_the_data_folder_is_never_inside_the_package(tmp_path, monkeypatch):
    import gpt_keras

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPT_KERAS_DATA_DIR", raising=False)
    package = Path(gpt_keras.__file__).resolve().parent
    assert package not in data_datasets.data_dir().resolve().parents
