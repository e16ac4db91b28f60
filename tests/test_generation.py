"""The cached decoder against the lecture's loop: same records, same words, on any Keras backend.

A tiny random model with two blocks (so the cache is exercised across layers) and sharpened output
weights (so temperature and top-k make a difference and padding, which ends a text, is sampled now
and then). Every test here must pass on TensorFlow and on JAX: CI runs them with
`KERAS_BACKEND=jax pytest -m backend_agnostic` as a second pass.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from gpt_keras.core.data import Vocabulary
from gpt_keras.core.generation import PAD_ID, CachedGenerator, PromptWarning, generate_lecture
from gpt_keras.core.model import build_gpt
from gpt_keras.core.sampling import Sampler
from gpt_keras.tools.batch_sampling import sample_batch
from tests.conftest import tiny_config

pytestmark = pytest.mark.backend_agnostic

TOLERANCE = 1e-5
# Narrower than the test size: `sharpen`'s scale and padding bias are set for these widths (texts that stop
# early and texts that outgrow the window both occur).
CONFIG = tiny_config(vocab_size=40, max_len=8, embedding_dim=16, key_dim=8, feed_forward_dim=32, n_blocks=2,
                     dropout_rate=0.1)
VOCAB = Vocabulary(("", "[UNK]") + tuple(f"w{i}" for i in range(2, CONFIG.vocab_size)))
PROMPT = "w2 w3 w4"
LONG_PROMPT = " ".join(f"w{2 + i % 30}" for i in range(13))  # 13 tokens, longer than the window of 8


def sharpen(model: keras.Model, scale: float = 4.0, pad_bias: float = 5.0) -> None:
    """Scales the output layer so distributions are peaked, and makes padding (which stops a text) likelier."""
    kernel, bias = model.get_layer("probabilities").get_weights()
    bias = bias.copy()
    bias[PAD_ID] = pad_bias
    model.get_layer("probabilities").set_weights([kernel * scale, bias])


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    gpt = build_gpt(CONFIG)
    sharpen(gpt)
    return gpt


@pytest.fixture(scope="module")
def generator(model):
    return CachedGenerator(model, VOCAB)


def model_probs(model, ids) -> np.ndarray:
    """The model's next-word distribution after `ids` (the last `max_len` of them), from a plain call."""
    return model_probs_many(model, [ids])[0]


def model_probs_many(model, texts) -> list[np.ndarray]:
    """`model_probs` of each of `texts` (lists of ids) from one plain call.

    Each window is padded at its end to `max_len`: the causal mask keeps padding after a position
    from changing what the model outputs there.
    """
    windows = [list(ids)[-CONFIG.max_len:] for ids in texts]
    padded = np.zeros((len(windows), CONFIG.max_len), np.int32)
    for row, window in zip(padded, windows):
        row[:len(window)] = window
    probs = keras.ops.convert_to_numpy(model(padded, training=False)[0]).astype(np.float64)
    return [probs[i, len(window) - 1] for i, window in enumerate(windows)]


def chosen_log_probs(model, prompt_ids, tokens, lengths) -> np.ndarray:
    """log p(token | the text before it) of each generated token, from plain model calls; NaN past the end."""
    prefixes = [[*prompt_ids, *row[:step]] for row, length in zip(tokens, lengths) for step in range(length)]
    probs = iter(model_probs_many(model, prefixes))
    expected = np.full(tokens.shape, np.nan)
    for i, (row, length) in enumerate(zip(tokens, lengths)):
        for step in range(length):
            expected[i, step] = np.log(next(probs)[row[step]])
    return expected


def assert_same_records(lecture, cached):
    assert len(cached) == len(lecture) > 0
    for step, (ref, got) in enumerate(zip(lecture, cached)):
        assert got["token"] == ref["token"], f"step {step}: chose {got['word']!r}, the lecture {ref['word']!r}"
        assert got["prompt"] == ref["prompt"]
        assert got["word_probs"].shape == ref["word_probs"].shape == (CONFIG.vocab_size,)
        np.testing.assert_allclose(got["word_probs"], ref["word_probs"], rtol=0, atol=TOLERANCE,
                                   err_msg=f"word_probs at step {step}")
        assert got["atts"].shape == ref["atts"].shape
        np.testing.assert_allclose(got["atts"], ref["atts"], rtol=0, atol=TOLERANCE, err_msg=f"atts at step {step}")


SAMPLERS = [Sampler(1.0), Sampler(0.5), Sampler(1.5, top_k=5), Sampler(0.8, top_p=0.9), Sampler(greedy=True)]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda sampler: sampler.describe())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_matches_the_lecture_loop(model, generator, sampler, seed):
    # 20 tokens: the text outgrows the window of 8, so the sliding part is compared too.
    lecture, lecture_text = generate_lecture(model, VOCAB, PROMPT, 20, sampler, np.random.default_rng(seed))
    cached, cached_text = generator.generate(PROMPT, 20, sampler, np.random.default_rng(seed))
    assert_same_records(lecture, cached)
    assert cached_text == lecture_text


def test_records_attend_over_the_words_seen(generator):
    records, text = generator.generate(PROMPT, 20, Sampler(1.0, top_k=3), np.random.default_rng(1))
    assert len(records) > CONFIG.max_len - len(PROMPT.split())  # the text outgrew the window
    for step, record in enumerate(records):
        seen = min(len(PROMPT.split()) + step, CONFIG.max_len)
        assert record["atts"].shape == (CONFIG.n_heads, seen)
        np.testing.assert_allclose(record["atts"].sum(axis=-1), 1.0, atol=1e-5)
        assert record["prompt"].split() == text.split()[:len(PROMPT.split()) + step]
        np.testing.assert_allclose(record["word_probs"].sum(), 1.0, atol=1e-9)


def test_a_seed_gives_the_same_text(generator):
    sampler = Sampler(1.0)
    _, first = generator.generate(PROMPT, 20, sampler, np.random.default_rng(11))
    _, again = generator.generate(PROMPT, 20, sampler, np.random.default_rng(11))
    assert first == again


def test_a_prompt_longer_than_the_window_slides(model, generator):
    sampler = Sampler(0.7, top_k=8)
    with pytest.warns(PromptWarning, match="context window"):
        lecture, lecture_text = generate_lecture(model, VOCAB, LONG_PROMPT, 20, sampler, np.random.default_rng(3))
    with pytest.warns(PromptWarning, match="context window"):
        cached, cached_text = generator.generate(LONG_PROMPT, 20, sampler, np.random.default_rng(3))
    assert_same_records(lecture, cached)
    assert cached_text == lecture_text
    assert all(record["atts"].shape == (CONFIG.n_heads, CONFIG.max_len) for record in cached)
    # The first step sees the prompt's last 8 tokens only.
    ids, _ = VOCAB.encode(LONG_PROMPT)
    np.testing.assert_allclose(cached[0]["word_probs"], sampler.distribution(model_probs(model, ids)), atol=TOLERANCE)


def test_a_prompt_as_long_as_max_tokens_generates_nothing(generator):
    assert generator.generate(PROMPT, 3, Sampler(1.0), np.random.default_rng(0)) == ([], PROMPT)
    result = sample_batch(generator, PROMPT, 4, 3, Sampler(1.0), np.random.default_rng(0))
    assert result.tokens.shape == (4, 0) and result.lengths.tolist() == [0, 0, 0, 0]


# --- batched generation ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch(generator):
    return sample_batch(generator, PROMPT, 12, 20, Sampler(1.0), np.random.default_rng(4), keep_distributions=True)


def test_batch_shapes(batch):
    n_new = 20 - len(PROMPT.split())
    assert batch.prompt_ids == VOCAB.encode(PROMPT)[0]
    assert batch.tokens.shape == batch.log_probs.shape == (12, n_new)
    assert batch.lengths.shape == (12,) and len(batch.texts) == 12
    assert 1 <= len(batch.step_distributions) <= n_new
    assert all(distribution.shape == (12, CONFIG.vocab_size) for distribution in batch.step_distributions)


def test_batch_stops_at_padding(batch):
    n_new = batch.tokens.shape[1]
    stopped = 0
    for row, length, log_probs, text in zip(batch.tokens, batch.lengths, batch.log_probs, batch.texts):
        pads = np.flatnonzero(row == PAD_ID)
        expected_length = pads[0] + 1 if len(pads) else n_new
        stopped += bool(len(pads))
        assert length == expected_length
        assert (row[length:] == PAD_ID).all()
        assert np.isfinite(log_probs[:length]).all() and np.isnan(log_probs[length:]).all()
        assert text.split() == [VOCAB[i] for i in [*batch.prompt_ids, *row[:length]] if VOCAB[i]]
    # The sharpened padding bias makes some texts stop early and lets others run to the end.
    assert 0 < stopped and (batch.lengths == n_new).any(), batch.lengths


def test_batch_log_probs_are_the_models_probabilities(model, batch):
    expected = chosen_log_probs(model, batch.prompt_ids, batch.tokens, batch.lengths)
    np.testing.assert_allclose(batch.log_probs, expected, rtol=1e-5, atol=1e-5)  # NaNs must match too


def test_batch_distributions_are_the_models(model, batch):
    # Rows that had not stopped before a step, and the text each had then.
    live = [(step, i) for step in range(len(batch.step_distributions)) for i in np.flatnonzero(batch.lengths > step)]
    expected = model_probs_many(model, [[*batch.prompt_ids, *batch.tokens[i, :step]] for step, i in live])
    got = [batch.step_distributions[step][i] for step, i in live]
    np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=TOLERANCE)


def test_a_batch_keeps_each_steps_entropies_and_the_distributions_only_when_asked(generator, batch):
    from gpt_keras.tools.batch_sampling import entropy

    lean = sample_batch(generator, PROMPT, 12, 20, Sampler(1.0), np.random.default_rng(4))
    assert lean.step_distributions == [] and lean.texts == batch.texts  # the same draws, nothing per step kept
    np.testing.assert_array_equal(lean.first_distribution, batch.step_distributions[0][0])
    for step, probs in enumerate(batch.step_distributions):
        live = batch.lengths > step
        np.testing.assert_allclose(lean.model_entropy[live, step], entropy(probs[live]))
        np.testing.assert_allclose(lean.sampled_entropy[live, step], entropy(Sampler(1.0).distribution(probs[live])))
        assert np.isnan(lean.model_entropy[~live, step]).all()


@pytest.mark.parametrize("sampler", [Sampler(1.0), Sampler(0.5, top_k=4)], ids=lambda sampler: sampler.describe())
def test_a_batch_of_one_is_single_generation(generator, sampler):
    records, text = generator.generate(PROMPT, 20, sampler, np.random.default_rng(9))
    result = sample_batch(generator, PROMPT, 1, 20, sampler, np.random.default_rng(9))
    assert result.tokens[0, :result.lengths[0]].tolist() == [record["token"] for record in records]
    assert result.texts == [text]


def test_batch_with_a_long_prompt_slides(model, generator):
    with pytest.warns(PromptWarning):
        result = sample_batch(generator, LONG_PROMPT, 3, 18, Sampler(1.0), np.random.default_rng(2))
    assert result.tokens.shape == (3, 5)
    expected = chosen_log_probs(model, result.prompt_ids, result.tokens, result.lengths)
    np.testing.assert_allclose(result.log_probs, expected, rtol=1e-5, atol=1e-5)


# --- weights that change after the generator exists --------------------------------------------

def test_new_weights_are_picked_up():
    keras.utils.set_random_seed(3)
    gpt = build_gpt(CONFIG)
    sharpen(gpt)
    generator = CachedGenerator(gpt, VOCAB)
    sampler = Sampler(1.0)
    before, _ = generator.generate(PROMPT, 6, sampler, np.random.default_rng(0))
    # As training would: assign new values to the same variables (the compiled step must not keep the old ones).
    rng = np.random.default_rng(1)
    gpt.set_weights([weights + rng.normal(0, 0.3, weights.shape).astype(weights.dtype) for weights in gpt.get_weights()])
    after, _ = generator.generate(PROMPT, 6, sampler, np.random.default_rng(0))
    lecture, _ = generate_lecture(gpt, VOCAB, PROMPT, 6, sampler, np.random.default_rng(0))
    assert_same_records(lecture, after)
    assert np.abs(after[0]["word_probs"] - before[0]["word_probs"]).max() > 1e-3


def test_training_updates_are_picked_up():
    from gpt_keras.core.model import compile_gpt

    keras.utils.set_random_seed(4)
    gpt = compile_gpt(build_gpt(CONFIG), CONFIG)
    generator = CachedGenerator(gpt, VOCAB)
    sampler = Sampler(1.0)
    before, _ = generator.generate(PROMPT, 5, sampler, np.random.default_rng(0))
    tokens = np.random.default_rng(0).integers(2, CONFIG.vocab_size, (64, CONFIG.max_len + 1))
    gpt.fit(tokens[:, :-1], tokens[:, 1:], batch_size=32, epochs=1, verbose=0)
    after, _ = generator.generate(PROMPT, 5, sampler, np.random.default_rng(0))
    lecture, _ = generate_lecture(gpt, VOCAB, PROMPT, 5, sampler, np.random.default_rng(0))
    assert_same_records(lecture, after)
    assert np.abs(after[0]["word_probs"] - before[0]["word_probs"]).max() > 1e-6


def test_unknown_prompt_words_warn(generator):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records, text = generator.generate("w2 zinfandel", 4, Sampler(1.0), np.random.default_rng(0))
    assert any(issubclass(w.category, PromptWarning) and "zinfandel" in str(w.message) for w in caught)
    assert text.startswith("w2 zinfandel") and len(records) == 2


def test_a_model_larger_than_its_vocabulary_is_refused_up_front():
    from gpt_keras.core.sampling import SamplingError

    model = build_gpt(tiny_config(vocab_size=60))
    vocab = Vocabulary(("", "[UNK]", "wine", "review"))
    with pytest.raises(SamplingError, match="the model predicts 60 words but the vocabulary has 4"):
        CachedGenerator(model, vocab)
    with pytest.raises(SamplingError, match="vocab_size=4"):
        generate_lecture(model, vocab, "wine review", 5, Sampler(), np.random.default_rng(0))
