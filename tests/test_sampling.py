"""Decoding strategies on small worked examples: temperature, top-k, top-p, greedy, and bad values."""

import math

import numpy as np
import pytest

from gpt_keras.core.sampling import (Sampler, SamplingError, apply_temperature, choose, greedy_filter,
                                lecture_temperature, sample_from, softmax, top_k_filter, top_p_filter)

# The lecture's worked example: next word after "wine review : germany :".
LOGITS = np.array([4.1, 3.9, 2.7])  # pfalz, mosel, rhein
LECTURE = {1.0: [0.484, 0.396, 0.119], 0.5: [0.577, 0.388, 0.035], 1.5: [0.441, 0.386, 0.173]}


@pytest.mark.parametrize("temperature", sorted(LECTURE))
def test_worked_example_both_formulas_match_the_lecture_and_each_other(temperature):
    by_softmax = softmax(LOGITS, temperature)
    by_lecture = lecture_temperature(softmax(LOGITS), temperature)
    by_log_space = apply_temperature(softmax(LOGITS), temperature)
    np.testing.assert_allclose(by_softmax, LECTURE[temperature], atol=1e-3)
    np.testing.assert_allclose(by_lecture, LECTURE[temperature], atol=1e-3)
    np.testing.assert_allclose(by_softmax, by_lecture, atol=1e-12)
    np.testing.assert_allclose(by_softmax, by_log_space, atol=1e-12)


def test_temperature_three_flattens_towards_uniform():
    p = softmax(LOGITS, 3.0)
    assert p[0] > p[1] > p[2]  # the ranking never changes
    assert p.max() - p.min() < softmax(LOGITS, 1.5).max() - softmax(LOGITS, 1.5).min()
    np.testing.assert_allclose(softmax(LOGITS, 1e6), [1 / 3] * 3, atol=1e-5)


def test_apply_temperature_at_small_t_has_no_nan():
    probs = np.array([0.5, 0.3, 0.2 - 1e-12, 1e-12, 0.0])
    for temperature in (0.01, 1e-3, 1e-6):
        tempered = apply_temperature(probs, temperature)
        assert np.all(np.isfinite(tempered))
        np.testing.assert_allclose(tempered, [1, 0, 0, 0, 0], atol=1e-12)
    with np.errstate(all="ignore"):  # the lecture's verbatim formula underflows to 0 / 0 here
        assert np.isnan(lecture_temperature(np.array([1e-3, 1e-3]), 1e-3)).all()


def test_apply_temperature_on_a_batch():
    probs = np.array([softmax(LOGITS), [0.6, 0.3, 0.1]])
    tempered = apply_temperature(probs, 0.5)
    np.testing.assert_allclose(tempered[0], softmax(LOGITS, 0.5))
    np.testing.assert_allclose(tempered.sum(axis=-1), 1.0)


# --- top-p -----------------------------------------------------------------------------------------

def test_top_p_keeps_the_first_two_at_the_exact_boundary():
    """The course's example: 0.60 + 0.30 reaches 0.90, so 0.09 and 0.01 go (rule: smallest set >= p)."""
    kept = top_p_filter(np.array([0.60, 0.30, 0.09, 0.01]), 0.9)
    np.testing.assert_allclose(kept, [0.6 / 0.9, 0.3 / 0.9, 0, 0])


def test_top_p_adds_the_word_that_crosses_p():
    np.testing.assert_allclose(top_p_filter(np.array([0.5, 0.3, 0.2]), 0.7), [0.625, 0.375, 0])
    np.testing.assert_allclose(top_p_filter(np.array([0.5, 0.3, 0.2]), 0.85), [0.5, 0.3, 0.2])


def test_top_p_always_keeps_the_most_likely_word_and_p_one_keeps_all():
    np.testing.assert_allclose(top_p_filter(np.array([0.99, 0.01]), 0.9), [1, 0])  # the course's "azul"
    probs = np.array([0.5, 0.5 - 1e-12, 1e-12])
    np.testing.assert_allclose(top_p_filter(probs, 1.0), probs)
    np.testing.assert_allclose(top_p_filter(probs, 1), probs)


def test_top_p_unsorted_input_and_batch():
    probs = np.array([[0.09, 0.60, 0.01, 0.30], [0.25, 0.25, 0.25, 0.25]])
    kept = top_p_filter(probs, 0.9)
    np.testing.assert_allclose(kept[0], [0, 0.6 / 0.9, 0, 0.3 / 0.9])
    assert (kept[1] > 0).sum() == 4  # 0.75 < 0.9: all four needed


# --- top-k and greedy ------------------------------------------------------------------------------

def test_top_k_keeps_k_and_renormalises():
    np.testing.assert_allclose(top_k_filter(np.array([0.1, 0.6, 0.3]), 2), [0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(top_k_filter(np.array([0.1, 0.6, 0.3]), 1), [0, 1, 0])
    np.testing.assert_allclose(top_k_filter(np.array([0.1, 0.6, 0.3]), 10), [0.1, 0.6, 0.3])


def test_top_k_keeps_ties_at_the_kth_probability():
    kept = top_k_filter(np.array([0.4, 0.2, 0.2, 0.2]), 2)
    np.testing.assert_allclose(kept, [0.4, 0.2, 0.2, 0.2])  # three words tie for 2nd place: all stay
    np.testing.assert_allclose(top_k_filter(np.array([0.4, 0.3, 0.15, 0.15]), 2), [4 / 7, 3 / 7, 0, 0])


def test_greedy_takes_the_most_likely_and_the_first_on_ties():
    np.testing.assert_array_equal(greedy_filter(np.array([0.2, 0.5, 0.3])), [0, 1, 0])
    np.testing.assert_array_equal(greedy_filter(np.array([0.4, 0.2, 0.4])), [1, 0, 0])
    sampler = Sampler(greedy=True, temperature=5.0)
    rng = np.random.default_rng(0)
    assert {sampler.sample(np.array([0.2, 0.5, 0.3]), rng)[0] for _ in range(20)} == {1}
    assert sampler.describe() == "greedy"


# --- the order: temperature, then filter, then renormalise -----------------------------------------

def test_order_temperature_then_filter_then_renormalise():
    """At T = 3 the distribution is flatter, so top-p 0.8 needs all three words; filtering first would keep two."""
    probs = np.array([0.5, 0.3, 0.2])
    taught = Sampler(temperature=3.0, top_p=0.8).distribution(probs)
    np.testing.assert_allclose(taught, top_p_filter(apply_temperature(probs, 3.0), 0.8))
    assert (taught > 0).sum() == 3
    filter_first = apply_temperature(top_p_filter(probs, 0.8), 3.0)
    assert (filter_first > 0).sum() == 2
    assert not np.allclose(taught, filter_first)
    np.testing.assert_allclose(taught.sum(), 1.0)


def test_low_temperature_then_top_p_keeps_one_word():
    probs = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(Sampler(temperature=0.1, top_p=0.9).distribution(probs), [1, 0, 0])
    assert (Sampler(temperature=1.0, top_p=0.9).distribution(probs) > 0).sum() == 3


def test_top_k_with_temperature_renormalises_the_tempered_values():
    probs = np.array([0.5, 0.3, 0.2])
    tempered = apply_temperature(probs, 2.0)
    np.testing.assert_allclose(Sampler(temperature=2.0, top_k=2).distribution(probs),
                               [tempered[0] / tempered[:2].sum(), tempered[1] / tempered[:2].sum(), 0])


# --- drawing -----------------------------------------------------------------------------------

def test_choose_matches_numpy_choice_and_batches_draw_the_same():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    ours = [choose(probs, np.random.default_rng(seed)) for seed in range(50)]
    numpy = [np.random.default_rng(seed).choice(4, p=probs) for seed in range(50)]
    assert ours == numpy
    batch = choose(np.tile(probs, (5, 1)), np.random.default_rng(1))
    rng = np.random.default_rng(1)
    one_by_one = [choose(probs, rng) for _ in range(5)]
    assert batch.tolist() == one_by_one


def test_choose_never_picks_a_filtered_word():
    rng = np.random.default_rng(0)
    distribution = top_p_filter(np.array([0.60, 0.30, 0.09, 0.01]), 0.9)
    assert set(choose(np.tile(distribution, (2000, 1)), rng).tolist()) == {0, 1}


def test_sample_from_keeps_the_lecture_signature():
    index, probs = sample_from(softmax(LOGITS), 0.5, np.random.default_rng(0))
    assert index in (0, 1, 2)
    np.testing.assert_allclose(probs, softmax(LOGITS, 0.5))


# --- bad values --------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0, -1, -0.5, math.nan, math.inf, -math.inf, "1", None, True])
def test_bad_temperature_names_the_parameter(temperature):
    with pytest.raises(SamplingError, match="temperature"):
        Sampler(temperature=temperature)
    with pytest.raises(SamplingError, match="temperature"):
        apply_temperature(np.array([0.5, 0.5]), temperature)


@pytest.mark.parametrize("top_k", [0, -3, 1.5, "2", True])
def test_bad_top_k_names_the_parameter(top_k):
    with pytest.raises(SamplingError, match="top_k"):
        Sampler(top_k=top_k)
    with pytest.raises(SamplingError, match="top_k"):
        top_k_filter(np.array([0.5, 0.5]), top_k)


@pytest.mark.parametrize("top_p", [0, -0.1, 1.01, 2, math.nan, math.inf, "0.9", True])
def test_bad_top_p_names_the_parameter(top_p):
    with pytest.raises(SamplingError, match="top_p"):
        Sampler(top_p=top_p)
    with pytest.raises(SamplingError, match="top_p"):
        top_p_filter(np.array([0.5, 0.5]), top_p)


def test_top_k_and_top_p_together_are_refused():
    with pytest.raises(SamplingError, match="top_k or top_p"):
        Sampler(top_k=5, top_p=0.9)


def test_good_edge_values_are_accepted():
    assert Sampler(temperature=1e-6, top_k=1).describe() == "T=1e-06, top-k=1"
    assert Sampler(temperature=np.float32(0.5), top_p=1).describe() == "T=0.5, top-p=1"
    assert Sampler(top_k=np.int64(3)).top_k == 3
    assert Sampler(top_p=np.int64(1)).top_p == 1
