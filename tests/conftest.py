"""Shared fixtures: reviews (real ones from ../shared when present), small files made from them, a tiny run.

The suite starts without ../shared: `small_json` then comes from the package's own synthetic sample,
and only the tests that need real reviews (`shared_csv`, `shared_frame`) skip, saying why.
`GPT_KERAS_SHARED` points elsewhere (CI and the tests of this fallback use it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPT_KERAS_SHARED", REPO.parent / "shared"))
SHARED_CSV = SHARED / "data" / "wine-reviews" / "winemag-data-130k-v2.head10001.csv"
PACKAGE_SAMPLE = REPO / "gpt_keras" / "runs" / "wine-reviews-sample.json"
# The `tiny` preset shrunk further, so that a test trains in seconds on two cores; float32 whatever the
# machine, so what a test checks does not depend on the CPU's bfloat16 instructions (tests/test_precision.py
# covers that choice).
TEST_SIZE = dict(vocab_size=400, max_len=24, embedding_dim=32, key_dim=16, feed_forward_dim=64, batch_size=16,
                 epochs=1, generate_max_tokens=16, mixed_precision="off")


def tiny_config(**changes):
    """The `tiny` preset at test size, with `changes`."""
    from gpt_keras.core.config import GPTConfig

    return GPTConfig.preset("tiny", **{**TEST_SIZE, **changes})


def real_reviews_available() -> bool:
    return SHARED_CSV.is_file()


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    if not real_reviews_available():
        pytest.skip(f"needs the real reviews: {SHARED_CSV} is missing (../shared beside the repo)")
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
def small_json(tmp_path_factory) -> Path:
    """The first 400 real reviews as the lecture's JSON file (the package's sample without ../shared)."""
    path = tmp_path_factory.mktemp("data") / "reviews.json"
    if real_reviews_available():
        frame = pd.read_csv(SHARED_CSV, dtype=str, keep_default_na=False, na_values=[""])
        return write_reviews_json(path, frame.head(400))
    records = json.loads(PACKAGE_SAMPLE.read_text(encoding="utf-8"))[:400]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_json):
    """A tiny model trained for 2 epochs on 400 real reviews: a complete run directory (shared, read-only)."""
    from gpt_keras.runs.train import train

    runs_dir = tmp_path_factory.mktemp("runs")
    return train(tiny_config(epochs=2), small_json, runs_dir=runs_dir, run_name="tiny", print_fn=None, verbose=0)


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    """Training sets Keras' global dtype policy (bfloat16 on some machines); no test inherits another's."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")
