"""Fine-tuning GPT-2 on the reviews with `fit` (mixed precision on a GPU), saved with `save_pretrained`,
so `gpt-keras compare --gpt2 DIR` can load the result."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from gpt_keras.core.checks import MAX_COUNT, check_count, maximum_of
from gpt_keras.core.data import DataError
from gpt_keras.runs.datasets import default_data_path, load_texts
from gpt_keras.runs.files import UnsafePathError, check_output_path, one_line, write_json
from gpt_keras.tools.gpt2.load import FINETUNE_INFO, GPT2, GPT2Error, device_description, load_gpt2, precision_policy, tf_keras_policy


@dataclasses.dataclass
class FinetuneResult:
    """Where the fine-tuned GPT-2 was saved and how training went."""

    out_dir: Path
    history: dict[str, list[float]]
    policy: str
    device: str
    reviews: int
    seconds: float
    info: dict


def encode_reviews(gpt2: GPT2, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """Inputs, attention mask and next-token labels (-100 on padding) for causal-LM fine-tuning.

    Each review is `<|endoftext|>`, its words with leading spaces (as `compare` scores them), then
    `<|endoftext|>` so the model learns where a review ends; cut to `max_length + 1` tokens.
    """
    n = len(texts)
    input_ids = np.full((n, max_length), gpt2.eos_id, np.int32)
    mask = np.zeros((n, max_length), np.int32)
    labels = np.full((n, max_length), -100, np.int32)
    for row, text in enumerate(texts):
        ids = [gpt2.bos_id] + [i for word in text.split() for i in gpt2.word_ids(word)] + [gpt2.eos_id]
        ids = ids[:max_length + 1]
        length = len(ids) - 1
        input_ids[row, :length], mask[row, :length], labels[row, :length] = ids[:-1], 1, ids[1:]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def masked_lm_loss(labels, logits):
    """Mean next-token cross-entropy over the positions whose label is not -100, in float32."""
    import tensorflow as tf

    logits = tf.cast(logits, tf.float32)
    mask = tf.cast(tf.not_equal(labels, -100), tf.float32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
    return tf.reduce_sum(nll * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def finetune_gpt2(name_or_path: str | Path, data_path: str | Path | None, out_dir: str | Path, *, epochs: int = 1,
                  batch_size: int = 8, max_length: int = 128, learning_rate: float = 5e-5, limit: int | None = None,
                  heldout: int = 200, mixed_precision: str = "auto", seed: int = 0, verbose: int | str = "auto",
                  cache_dir: str | Path | None = None) -> FinetuneResult:
    """Fine-tunes GPT-2 on the reviews with `fit` and saves it with `save_pretrained` in `out_dir`.

    The last `heldout` reviews of the file are left out (they are the ones `compare` scores); `limit`
    keeps only the first N of the rest. The model is built under the mixed-precision policy (see
    `precision_policy`): float32 weights, bfloat16 or float16 compute, the loss in float32. `out_dir`
    is replaced only once everything is saved.

    Raises:
        GPT2Unavailable, GPT2Error: the model cannot be loaded. DataError: bad data or settings.
    """
    _check_settings(epochs=epochs, batch_size=batch_size, max_length=max_length, heldout=heldout, limit=limit,
                    learning_rate=learning_rate)
    out_dir = Path(check_finetune_out(out_dir))
    if data_path is None:
        data_path, _ = default_data_path()
    texts, _ = load_texts(data_path)
    end = _train_end(len(texts), heldout, limit)
    policy = precision_policy(mixed_precision)
    device = device_description()
    started = time.perf_counter()
    with tf_keras_policy(policy):
        gpt2 = load_gpt2(name_or_path, cache_dir=cache_dir)
        history = _fit(gpt2, texts[:end], epochs=epochs, batch_size=batch_size, max_length=max_length,
                       learning_rate=learning_rate, seed=seed, verbose=verbose)
    seconds = time.perf_counter() - started
    info = {"base": gpt2.source, "data": str(data_path), "reviews_in_file": len(texts), "train_range": [0, end],
            "heldout": heldout, "epochs": epochs, "batch_size": batch_size, "max_length": max_length,
            "learning_rate": learning_rate, "policy": policy, "device": device, "seed": seed,
            "seconds": seconds, "history": history}
    _save_pretrained(gpt2, out_dir, info)
    return FinetuneResult(out_dir, history, policy, device, end, seconds, info)


def _check_settings(*, epochs, batch_size, max_length, heldout, limit, learning_rate) -> None:
    """The fine-tuning settings, each checked with the command line's name for it (a `DataError`)."""
    for name, value, minimum, maximum in (
            ("--epochs", epochs, 1, maximum_of("epochs")), ("--batch-size", batch_size, 1, maximum_of("batch_size")),
            ("--max-length", max_length, 2, maximum_of("max_len")), ("--heldout", heldout, 0, MAX_COUNT)):
        check_count(value, name, minimum, maximum, DataError)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or not 1 <= limit <= MAX_COUNT):
        raise DataError(f"--limit must be a positive number of reviews, at most {MAX_COUNT:,}, got {limit!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise DataError(f"--learning-rate must be a finite number greater than 0, got {learning_rate!r}")


def _train_end(n_reviews: int, heldout: int, limit: int | None) -> int:
    """How many reviews from the start of the file to train on: all but the last `heldout`, at most `limit`."""
    end = n_reviews - heldout
    if end < 1:
        raise DataError(f"--heldout {heldout}: the file has only {n_reviews} reviews, none left to train on")
    return min(end, limit) if limit is not None else end


def _fit(gpt2: GPT2, texts: Sequence[str], *, epochs: int, batch_size: int, max_length: int,
         learning_rate: float, seed: int, verbose: int | str) -> dict[str, list[float]]:
    """Trains `gpt2` on `texts` with `fit` (inside the caller's precision policy); returns the history."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    arrays = encode_reviews(gpt2, texts, max_length)
    labels = arrays.pop("labels")
    dataset = (tf.data.Dataset.from_tensor_slices((arrays, labels)).shuffle(len(texts), seed=seed)
               .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    gpt2.model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=masked_lm_loss)
    history = gpt2.model.fit(dataset, epochs=epochs, verbose=verbose).history
    return {key: [float(v) for v in values] for key, values in history.items()}


def check_finetune_out(out_dir: str | Path) -> Path:
    """`--out` may be new, empty, or a previous `finetune-gpt2` save (it has FINETUNE_INFO): nothing else is replaced.

    Raises:
        GPT2Error: the folder holds other files, is the current folder or above it, is a symlink, or cannot be written.
    """
    out_dir = Path(out_dir)
    try:
        check_output_path(out_dir, "--out", kind="dir")
    except UnsafePathError as error:
        raise GPT2Error(str(error)) from None
    if out_dir.is_symlink() or out_dir.name in ("", ".", "..") or Path.cwd().resolve().is_relative_to(out_dir.resolve()):
        raise GPT2Error(f"--out {one_line(out_dir)}: give a folder of its own for the model (not the current folder, "
                        "one above it, or a symlink)")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / FINETUNE_INFO).is_file():
        raise GPT2Error(f"--out {one_line(out_dir)}: the folder holds other files and is not a previous finetune-gpt2 "
                        f"save (no {FINETUNE_INFO}); it is never replaced: choose a new or empty folder")
    return out_dir


def _save_pretrained(gpt2: GPT2, out_dir: Path, info: dict) -> None:
    """`save_pretrained` into a fresh folder beside `out_dir`, then swapped in, so no half-saved model remains."""
    check_finetune_out(out_dir)  # again: the folder may have changed during training
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    old = None
    try:
        gpt2.model.save_pretrained(staging)
        gpt2.tokenizer.save_pretrained(staging)
        write_json(staging / FINETUNE_INFO, info)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
