"""Perplexity of both models on the same held-out reviews and the same words.

The models split text differently (ours: one token per word; GPT-2: byte-level BPE pieces), so besides
perplexity per token this gives perplexity per word: exp(total negative log-likelihood / words), where a
word's NLL under GPT-2 is the sum over its tokens. Words are the whitespace words of the padded review
text (`gpt_keras.core.data`); GPT-2 reads each word with a leading space, after `<|endoftext|>`; the
first word is context for both models (ours cannot predict it). Our model maps words outside its
vocabulary to `[UNK]` and predicts `[UNK]` itself, which flatters its per-word perplexity: the report
gives the `[UNK]` share beside it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from gpt_keras.core.data import PAD_ID, UNK_ID, DataError
from gpt_keras.runs.batches import split_tokens
from gpt_keras.tools.gpt2.load import GPT2


@dataclasses.dataclass(frozen=True)
class Perplexity:
    """Negative log-likelihood (nats) of the held-out words, and perplexity per token and per word."""

    reviews: int
    words: int
    tokens: int
    nll: float
    unk_share: float | None = None

    @property
    def per_token(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else math.nan

    @property
    def per_word(self) -> float:
        return math.exp(self.nll / self.words) if self.words else math.nan

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else math.nan

    def to_dict(self) -> dict:
        return {"reviews": self.reviews, "words": self.words, "tokens": self.tokens, "nll": self.nll,
                "perplexity_per_token": self.per_token, "perplexity_per_word": self.per_word,
                "tokens_per_word": self.tokens_per_word, "unk_share": self.unk_share}


@dataclasses.dataclass
class WordScores:
    """Per review: each scored word's NLL, and (GPT-2) each scored token's NLL and its word's token span."""

    word_nll: list[np.ndarray]
    token_nll: list[np.ndarray]
    spans: list[list[tuple[int, int]]]  # per scored word: [start, end) into token_nll
    unk: list[np.ndarray] | None = None

    def perplexity(self) -> Perplexity:
        words = sum(len(nll) for nll in self.word_nll)
        unk_share = None
        if self.unk is not None:
            unk_share = float(np.concatenate(self.unk).mean()) if words else math.nan
        return Perplexity(reviews=len(self.word_nll), words=words, tokens=sum(len(nll) for nll in self.token_nll),
                          nll=float(sum(nll.sum() for nll in self.word_nll)), unk_share=unk_share)


def word_windows(texts: Sequence[str], max_words: int, gpt2: GPT2 | None = None) -> list[list[str]]:
    """The words each model scores: the first `max_words` of each review, cut so GPT-2's tokens fit its window.

    Reviews left with fewer than two words (nothing to predict after the first) are skipped.
    """
    windows = []
    for text in texts:
        words = text.split()[:max_words]
        if gpt2 is not None:
            used = 1  # <|endoftext|>
            for count, word in enumerate(words):
                used += len(gpt2.word_ids(word))
                if used > gpt2.n_positions:
                    words = words[:count]
                    break
        if len(words) >= 2:
            windows.append(words)
    return windows


def score_gpt2(gpt2: GPT2, windows: Sequence[Sequence[str]], batch_size: int = 8) -> WordScores:
    """NLL of every word after the first: the sum of its tokens' NLL, each read after `<|endoftext|>`."""
    import tensorflow as tf

    rows, firsts, spans = [], [], []
    for words in windows:
        ids, bounds = [gpt2.bos_id], []
        for word in words:
            start = len(ids)
            ids.extend(gpt2.word_ids(word))
            bounds.append((start, len(ids)))
        # the first word is context only: scoring starts at the second word's first token
        first = bounds[1][0]
        rows.append(ids)
        firsts.append(first)
        spans.append([(start - first, end - first) for start, end in bounds[1:]])
    word_nll, token_nll = [], []
    for begin in range(0, len(rows), batch_size):
        batch = rows[begin:begin + batch_size]
        length = max(map(len, batch))
        ids = np.full((len(batch), length), gpt2.eos_id, np.int32)
        mask = np.zeros((len(batch), length), np.int32)
        for index, row in enumerate(batch):
            ids[index, :len(row)], mask[index, :len(row)] = row, 1
        logits = gpt2.model(input_ids=ids, attention_mask=mask, training=False).logits
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[:, 1:], logits=tf.cast(logits[:, :-1], tf.float32))
        nll = np.asarray(nll, np.float64)
        for index, row in enumerate(batch):
            # the token at position p is predicted by the logits at p - 1
            tokens = nll[index, firsts[begin + index] - 1:len(row) - 1]
            token_nll.append(tokens)
            word_nll.append(np.array([tokens[start:end].sum() for start, end in spans[begin + index]]))
    return WordScores(word_nll, token_nll, spans)


def score_ours(model, vocab, windows: Sequence[Sequence[str]], batch_size: int = 32) -> WordScores:
    """NLL of every word after the first under our model (one token per word, unknown words as `[UNK]`)."""
    context = model.get_layer("embedding").max_len
    rows = []
    for words in windows:
        ids, _ = vocab.encode(" ".join(words))
        if len(ids) != len(words):
            raise DataError(f"review text does not split into the same words twice: {' '.join(words)[:80]!r}")
        if len(ids) > context + 1:
            raise DataError(f"a window of {len(ids)} words exceeds the model's context of {context} + 1")
        rows.append(ids)
    word_nll, unk = [], []
    for begin in range(0, len(rows), batch_size):
        batch = rows[begin:begin + batch_size]
        length = max(map(len, batch)) - 1
        x = np.full((len(batch), length), PAD_ID, np.int32)
        for index, row in enumerate(batch):
            x[index, :len(row) - 1] = row[:-1]
        probs = np.asarray(model.predict_on_batch(x)[0], np.float64)
        for index, row in enumerate(batch):
            targets = np.asarray(row[1:])
            picked = probs[index, np.arange(len(targets)), targets]
            word_nll.append(-np.log(np.maximum(picked, np.finfo(np.float64).tiny)))
            unk.append(targets == UNK_ID)
    return WordScores(word_nll, word_nll, [[(i, i + 1) for i in range(len(n))] for n in word_nll], unk)


def heldout_indices(n_texts: int, n: int) -> np.ndarray:
    """The held-out reviews: the last `n` of the file (fine-tuning leaves the same ones out)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"--heldout must be a positive number of reviews, got {n!r}")
    if n >= n_texts:
        raise DataError(f"--heldout {n}: the file has only {n_texts} reviews; hold out fewer")
    return np.arange(n_texts - n, n_texts)


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


def seen_by_our_run(run, data_path, n_texts: int, indices: np.ndarray) -> float | None:
    """Share of the held-out reviews our run trained on (None when its data was another file)."""
    from gpt_keras.runs.rundir import read_data_info

    info = read_data_info(run.path)
    if not _same_file(info.get("source", ""), data_path) or info.get("reviews") != n_texts:
        return None
    try:
        train, _ = split_tokens(np.arange(n_texts)[:, None], run.config.validation_split, run.config.seed)
    except DataError:
        return None
    return float(np.isin(indices, train[:, 0]).mean())


def seen_by_gpt2(gpt2: GPT2, data_path, n_texts: int, indices: np.ndarray) -> float | None:
    """Share of the held-out reviews our fine-tuning trained GPT-2 on (None if unknown or not fine-tuned)."""
    info = gpt2.finetune_info
    if not info or not _same_file(info.get("data", ""), data_path) or info.get("reviews_in_file") != n_texts:
        return None
    start, end = info.get("train_range", (0, 0))
    return float(((indices >= start) & (indices < end)).mean())
