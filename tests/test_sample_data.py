"""The embedded synthetic sample: reproducible from its script, loadable, and consistent as a corpus."""

from __future__ import annotations

import collections
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_keras.runs.datasets import FULL_DATASET_NAMES, REQUIRED_FIELDS, SAMPLE_NAME, SAMPLE_PATH, load_texts

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SCRIPT = DATA_DIR / "make_sample.py"
SAMPLE = SAMPLE_PATH
KAGGLE_FIELDS = ["points", "title", "description", "taster_name", "taster_twitter_handle", "price", "designation",
                 "variety", "region_1", "region_2", "province", "country", "winery"]


@pytest.fixture(scope="module")
def make_sample():
    spec = importlib.util.spec_from_file_location("make_sample", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records():
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_sample_name_is_not_a_full_dataset_name():
    assert SAMPLE_NAME not in FULL_DATASET_NAMES


def test_committed_sample_equals_a_fresh_generation_in_a_new_process():
    # A new interpreter (another hash seed): the script's own --check, with its real exit code.
    result = run_script("--check")
    assert result.returncode == 0, \
        f"{result.stderr}\ngpt_keras/runs/wine-reviews-sample.json is stale: run `python data/make_sample.py` and commit it"
    assert "up to date" in result.stdout


def test_the_script_writes_the_committed_file(make_sample, tmp_path, capsys):
    output = tmp_path / "sample.json"
    assert make_sample.main(["--output", str(output)]) == 0
    assert output.read_bytes() == SAMPLE.read_bytes()
    assert [path.name for path in tmp_path.iterdir()] == ["sample.json"]  # no temporary left
    assert "wrote" in capsys.readouterr().out


def test_generation_is_deterministic_in_process(make_sample):
    assert make_sample.render(make_sample.generate()) == make_sample.render(make_sample.generate())


def test_check_fails_on_a_changed_or_missing_file(make_sample, tmp_path, capsys):
    changed = tmp_path / "sample.json"
    changed.write_bytes(SAMPLE.read_bytes().replace(b"Mosel", b"Moselle", 1))
    assert make_sample.main(["--check", "--output", str(changed)]) == 1
    assert "differs" in capsys.readouterr().err
    assert make_sample.main(["--check", "--output", str(tmp_path / "absent.json")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_sample_is_a_small_utf8_kaggle_json_list(records):
    raw = SAMPLE.read_bytes()
    assert len(raw) < 2_000_000
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert "ü".encode() in raw, "written with ensure_ascii=False"
    assert isinstance(records, list) and 2_500 <= len(records) <= 4_000
    for record in records:
        assert list(record) == KAGGLE_FIELDS
        assert record["points"].isdigit() and 80 <= int(record["points"]) <= 100
        assert record["price"] is None or isinstance(record["price"], float)


def test_loader_drops_exactly_the_planted_nulls(make_sample, records):
    texts, report = load_texts(SAMPLE)
    planted = make_sample.NULL_ROWS
    expected_missing = {field: sum(field in fields for fields in planted) for field in REQUIRED_FIELDS}
    assert report.rows == len(records) == make_sample.N_REVIEWS
    assert report.dropped == len(planted) == 8
    assert report.kept == len(texts) == len(records) - len(planted)
    assert report.dropped_missing == expected_missing == {"country": 2, "province": 4, "variety": 2, "description": 2}
    in_file = {field: sum(record[field] is None for record in records) for field in REQUIRED_FIELDS}
    assert in_file == expected_missing


def test_every_province_belongs_to_one_country_and_every_grape_to_its_table(make_sample, records):
    table = {(country, province, variety)
             for country, _, provinces in make_sample.GEOGRAPHY
             for province, _, regions in provinces
             for _, _, _, varieties in regions
             for variety, _ in varieties}
    countries_of = collections.defaultdict(set)
    complete = [r for r in records if all(r[field] is not None for field in ("country", "province", "variety"))]
    for record in complete:
        countries_of[record["province"]].add(record["country"])
        assert (record["country"], record["province"], record["variety"]) in table, record["title"]
    shared = {province: sorted(countries) for province, countries in countries_of.items() if len(countries) > 1}
    assert not shared, f"provinces under more than one country: {shared}"
    # The table itself, not only what the seed happened to draw.
    table_countries = collections.defaultdict(set)
    for country, province, _ in table:
        table_countries[province].add(country)
    assert all(len(countries) == 1 for countries in table_countries.values())
    assert {variety for _, _, variety in table} <= set(make_sample.VARIETIES)
    # Every country is there with several provinces, and the German ones are German.
    provinces_of = collections.defaultdict(set)
    for record in complete:
        provinces_of[record["country"]].add(record["province"])
    assert len(provinces_of) >= 10 and all(len(p) >= 2 for p in provinces_of.values())
    assert {"Mosel", "Rheingau", "Rheinhessen", "Pfalz"} <= provinces_of["Germany"]
    assert {r["variety"] for r in complete if r["country"] == "Germany"} >= {"Riesling", "Spätburgunder"}


def test_texts_have_the_lecture_format_and_fit_a_small_window(records):
    texts, _ = load_texts(SAMPLE)
    assert all(text.startswith("wine review : ") for text in texts)
    assert texts[0].split(" : ")[1:4] == [records[0]["country"], records[0]["province"], records[0]["variety"]]
    lengths = sorted(len(text.split()) for text in texts)
    assert lengths[len(lengths) * 95 // 100] <= 60, "most formatted reviews fit in 60 tokens"
    assert lengths[-1] <= 64
    words = {word for text in texts for word in text.lower().split()}
    assert 200 <= len(words) <= 1_500, f"{len(words)} distinct words"
    assert {",", ".", "-", "'"} <= words, "punctuation is padded into words"


def test_descriptions_follow_the_grape(records):
    """Red grapes get tannins and white grapes do not: the text depends on the variety."""
    def mentions(variety: str, word: str) -> float:
        texts = [r["description"] for r in records if r["variety"] == variety and r["description"]]
        return sum(word in text for text in texts) / len(texts)

    assert mentions("Cabernet Sauvignon", "tannins") > 0.1
    assert mentions("Riesling", "tannins") == 0
    assert mentions("Sauvignon Blanc", "acidity") > 0.1
