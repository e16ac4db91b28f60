"""Fuzzing the review loaders: whatever bytes a file holds, `load_texts` loads what is valid and says
what it dropped, or raises one `DataError` naming the file; never another exception.

Hypothesis runs derandomized and without an example database, so every CI run tries the same files.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gpt_keras.runs import datasets as data_datasets
from gpt_keras.core.data import DataError
from gpt_keras.runs.datasets import REQUIRED_FIELDS

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=120,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PREFIX = "wine review : "

# --- what a cell can hold ----------------------------------------------------------------------------

_words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_awkward = st.sampled_from(["", " ", "\t\n", "\x00", "null", "NA", "NaN", "None", '"', "a,b", "line\nbreak",
                            "\r\n", "é ü ß 日本", "\ufeff", "x" * 5_000])
_json_values = st.one_of(
    st.none(), _words, _awkward, st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
_columns = st.lists(st.sampled_from([*REQUIRED_FIELDS, "points", "price", "id", "", "Country", "country "]),
                    min_size=0, max_size=8)


def _is_usable(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def check_loaded(path, expected_kept: int | None = None) -> None:
    """The property: texts and a consistent report, or one DataError that names the file."""
    try:
        texts, report = data_datasets.load_texts(path)
    except DataError as error:
        message = str(error)
        assert message.startswith(str(path)), message
        assert "\n" not in message.strip(), message
        return
    assert 1 <= report.kept == len(texts) <= report.rows
    assert report.kept + report.dropped == report.rows
    assert all(text.startswith(PREFIX) for text in texts)
    # every dropped row lacks at least one field, and no field is missing more often than rows were dropped
    assert sum(report.dropped_missing.values()) >= report.dropped
    assert all(0 <= n <= report.dropped for n in report.dropped_missing.values())
    if expected_kept is not None:
        assert report.kept == expected_kept


# --- JSON ------------------------------------------------------------------------------------------

_records = st.lists(st.dictionaries(st.sampled_from([*REQUIRED_FIELDS, "points", "taster_name", "extra"]),
                                    _json_values, max_size=7), max_size=12)


@FUZZ
@given(records=_records, bom=st.booleans())
@example(records=[{field: "x" for field in REQUIRED_FIELDS}], bom=True)
@example(records=[{field: None for field in REQUIRED_FIELDS}] * 3, bom=False)
def test_json_records_of_any_shape(tmp_path_factory, records, bom):
    path = tmp_path_factory.mktemp("json") / "reviews.json"
    text = json.dumps(records, ensure_ascii=False, allow_nan=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass"))
    expected = sum(all(_is_usable(record.get(field)) for field in REQUIRED_FIELDS) for record in records)
    check_loaded(path, expected if expected else None)
    if expected == 0:
        with pytest.raises(DataError):
            data_datasets.load_texts(path)


@FUZZ
@given(content=st.binary(max_size=400))
@example(content=b"")
@example(content=b"[" * 3_000)
@example(content=b"\xff\xfe[\x00]\x00")
def test_json_random_bytes(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("json") / "reviews.json"
    path.write_bytes(content)
    check_loaded(path)


@FUZZ
@given(value=st.recursive(_json_values, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(REQUIRED_FIELDS), inner, max_size=4), max_leaves=12))
def test_json_documents_of_any_type(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("json") / "reviews.json"
    path.write_text(json.dumps(value, allow_nan=True), encoding="utf-8")
    check_loaded(path)


# --- CSV -------------------------------------------------------------------------------------------

def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


_cells = st.one_of(_words, _awkward)


@FUZZ
@given(header=_columns, rows=st.lists(st.lists(_cells, min_size=0, max_size=9), max_size=10),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
@example(header=list(REQUIRED_FIELDS), rows=[["Italy", "Tuscany", "Red", "Dry."]], encoding="utf-8-sig")
@example(header=["country", "country", "province", "variety", "description"], rows=[["A", "B", "T", "V", "D"]],
         encoding="utf-8")
@example(header=list(REQUIRED_FIELDS), rows=[["Italy", "Tuscany", "Red", "Dry.", "extra"]], encoding="utf-8")
@example(header=list(REQUIRED_FIELDS), rows=[], encoding="utf-8")
def test_csv_tables_of_any_shape(tmp_path_factory, header, rows, encoding):
    path = tmp_path_factory.mktemp("csv") / "reviews.csv"
    text = _csv_text(header, rows)
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
        path.write_bytes(text.encode(encoding, "replace"))
    expected = None
    well_formed = (encoding in ("utf-8", "utf-8-sig") and len(set(header)) == len(header)
                   and set(REQUIRED_FIELDS) <= set(header) and all(len(row) == len(header) for row in rows))
    if well_formed and rows and not any("\x00" in cell or "\r" in cell for row in rows for cell in row):
        expected = sum(all(_is_usable(row[header.index(field)]) for field in REQUIRED_FIELDS) for row in rows)
    check_loaded(path, expected or None)


@FUZZ
@given(content=st.binary(max_size=400), header=st.booleans())
@example(content=b"", header=False)
@example(content=b"\x00" * 50, header=True)
@example(content=b'"unterminated', header=True)
def test_csv_random_bytes(tmp_path_factory, content, header):
    path = tmp_path_factory.mktemp("csv") / "reviews.csv"
    path.write_bytes((",".join(REQUIRED_FIELDS) + "\n").encode() * header + content)
    check_loaded(path)


# --- the named hostile files, each checked exactly ------------------------------------------------------

def _review(**changes):
    return {"country": "Italy", "province": "Tuscany", "variety": "Sangiovese", "description": "Cherry, dry.",
            **changes}


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_huge_fields_load(tmp_path, suffix):
    description = "tannic " * 150_000  # about 1 MB in one field
    records = [_review(description=description, taster_notes="y" * 1_000_000), _review()]
    path = tmp_path / f"huge{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        header = list(records[0])
        path.write_text(_csv_text(header, [[record.get(key, "") for key in header] for record in records]), encoding="utf-8")
    texts, report = data_datasets.load_texts(path)
    assert report.kept == 2 and len(texts[0]) > 1_000_000


def test_nulls_everywhere_fail_with_one_clear_error(tmp_path):
    path = tmp_path / "nulls.json"
    path.write_text(json.dumps([{field: None for field in REQUIRED_FIELDS}] * 5))
    with pytest.raises(DataError, match="no usable review: every one of the 5 rows"):
        data_datasets.load_texts(path)


def test_nulls_in_some_rows_are_dropped_and_reported(tmp_path):
    path = tmp_path / "some.json"
    path.write_text(json.dumps([_review(), _review(country=None, variety=None), _review(description=12.5)]))
    texts, report = data_datasets.load_texts(path)
    assert len(texts) == 1 and report.dropped == 2
    assert report.dropped_missing == {"country": 1, "province": 0, "variety": 1, "description": 1}
    assert "dropped 2" in report.summary()


@pytest.mark.parametrize("name, content, message", [
    ("empty.json", b"", "empty file"),
    ("empty.csv", b"", "empty file"),
    ("list.json", b"[]", "no review records"),
    ("header.csv", b"country,province,variety,description\n", "no review rows"),
    ("deep.json", b"[" * 100_000, "nested too deeply"),
    ("dup.csv", b"country,country,province,variety,description\nA,B,T,V,D\n", "column country appears 2 times"),
    ("extra.csv", b"country,province,variety,description\nItaly,T,V,D,E\n", "line 2"),
    ("latin1.json", json.dumps([_review(country="España")], ensure_ascii=False).encode("latin-1"), "not UTF-8"),
])
def test_hostile_files_fail_with_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        data_datasets.load_texts(path)
    text = str(error.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("name, content", [
    ("bom.json", b"\xef\xbb\xbf" + json.dumps([_review()]).encode()),
    ("bom.csv", b"\xef\xbb\xbfcountry,province,variety,description\nItaly,Tuscany,Sangiovese,Dry.\n"),
    ("one.csv", b"id,country,province,variety,description,points\n0,Italy,Tuscany,Sangiovese,Dry.,90\n"),
    ("one.json", json.dumps([_review(points=90, extra={"nested": [1, 2]})]).encode()),
])
def test_a_byte_order_mark_and_a_single_row_load(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    texts, report = data_datasets.load_texts(path)
    assert report.rows == report.kept == 1 and texts[0].startswith(PREFIX + "Italy : Tuscany : Sangiovese")


def test_text_that_is_not_valid_unicode_is_dropped_not_passed_to_the_vectorizer(tmp_path):
    path = tmp_path / "surrogate.json"
    path.write_text('[{"country": "\\ud800", "province": "T", "variety": "V", "description": "D"},'
                    ' {"country": "I", "province": "T", "variety": "V", "description": "D"}]')
    texts, report = data_datasets.load_texts(path)
    assert report.dropped_missing["country"] == 1 and len(texts) == 1
    assert all(text.encode("utf-8") for text in texts)
