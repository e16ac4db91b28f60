"""Shared fixtures: the real wine reviews from ../shared, small files made from them, a tiny trained run."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_CSV = REPO.parent / "shared" / "data" / "wine-reviews" / "winemag-data-130k-v2.head10001.csv"


def tiny_config(**changes):
    """A model small enough to train in seconds on two cores.

    float32 whatever the machine (`mixed_precision="off"`), so what a test checks does not depend on
    whether the CPU has bfloat16 instructions; tests/test_precision.py covers that choice.
    """
    from gpt_keras.config import GPTConfig

    values = dict(vocab_size=400, max_len=24, embedding_dim=32, key_dim=16, n_heads=2, feed_forward_dim=64,
                  batch_size=16, epochs=1, generate_max_tokens=16, mixed_precision="off")
    values.update(changes)
    return GPTConfig(**values)


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    if not SHARED_CSV.is_file():
        pytest.fail(f"{SHARED_CSV} is missing: the tests read the real reviews from ../shared beside the repo")
    return SHARED_CSV


@pytest.fixture(scope="session")
def shared_frame(shared_csv) -> pd.DataFrame:
    return pd.read_csv(shared_csv, dtype=str, keep_default_na=False, na_values=[""])


def write_reviews_json(path: Path, frame: pd.DataFrame) -> Path:
    """The lecture's JSON format (a list of records, nulls for missing values) from a slice of the CSV."""
    records = frame.drop(columns=["id"], errors="ignore").astype(object).where(frame.notna(), None)
    path.write_text(json.dumps(records.to_dict(orient="records"), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_json(tmp_path_factory, shared_frame) -> Path:
    """The first 400 real reviews as the lecture's JSON file."""
    return write_reviews_json(tmp_path_factory.mktemp("data") / "reviews.json", shared_frame.head(400))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_json):
    """A tiny model trained for 2 epochs on 400 real reviews: a complete run directory (shared, read-only)."""
    from gpt_keras.train import train

    runs_dir = tmp_path_factory.mktemp("runs")
    return train(tiny_config(epochs=2), small_json, runs_dir=runs_dir, run_name="tiny", print_fn=None, verbose=0)
