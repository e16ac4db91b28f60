"""The temperature lab: the calculator, the model's next-word table, the sampling experiment and its files."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from gpt_keras.core.data import Vocabulary
from gpt_keras.tools.temperature.calculator import LECTURE_LOGITS, temperature_table
from gpt_keras.tools.temperature.experiment import (DEFAULT_TEMPERATURES, METRICS, TENSORBOARD_FILE, next_word_table,
                                                    temperature_experiment)
from gpt_keras.tools.temperature.report import write_report, write_tensorboard
from gpt_keras.core.generation import PromptWarning
from gpt_keras.core.sampling import SamplingError
from tests.conftest import cli

WORDS = ("", "[UNK]", "wine", "review", ":", "germany", "mosel", "riesling", "italy", "tuscany", "red", "blend",
         "this", "is", "dry", "crisp", "fruity", "ripe", "and", ",", ".", "cherry", "lemon", "with", "notes", "of")
TEXTS = ("wine review : germany : mosel : riesling : this is crisp and dry , with notes of lemon .",
         "wine review : italy : tuscany : red blend : this is ripe and fruity , with notes of cherry .")
PROMPT = "wine review : germany"
LECTURE = {1.0: [0.484, 0.396, 0.119], 0.5: [0.577, 0.388, 0.035], 1.5: [0.441, 0.386, 0.173]}


@pytest.fixture(scope="module")
def lab():
    """A tiny GPT that has learnt two reviews by heart (a few seconds on a CPU): peaked at low T."""
    import keras

    from gpt_keras.core.model import build_gpt, compile_gpt
    from tests.conftest import tiny_config

    vocab = Vocabulary(WORDS)
    tokens = np.zeros((len(TEXTS), 25), np.int32)
    for row, text in enumerate(TEXTS):
        ids, unknown = vocab.encode(text)
        assert not unknown
        tokens[row, :len(ids)] = ids
    keras.utils.set_random_seed(0)
    config = tiny_config(vocab_size=len(WORDS), max_len=24, dropout_rate=0.0, learning_rate=1e-2)
    model = compile_gpt(build_gpt(config), config)
    model.fit(np.repeat(tokens[:, :-1], 16, 0), np.repeat(tokens[:, 1:], 16, 0), epochs=15, batch_size=32,
              verbose=0)
    return model, vocab


@pytest.fixture(scope="module")
def report(lab):
    model, vocab = lab
    return temperature_experiment(model, vocab, PROMPT, n_samples=6, max_tokens=24, seed=0)


# --- the calculator ----------------------------------------------------------------------------

def test_calculator_reproduces_the_lecture_table_by_both_formulas():
    table = temperature_table(LECTURE_LOGITS, [1.0, 0.5, 1.5, 3.0])
    assert table.words == ("pfalz", "mosel", "rhein")
    for row, temperature in enumerate(table.temperatures[:3]):
        np.testing.assert_allclose(table.softmax[row], LECTURE[temperature], atol=1e-3)
        np.testing.assert_allclose(table.lecture[row], LECTURE[temperature], atol=1e-3)
    assert table.max_abs_difference < 1e-12
    np.testing.assert_allclose(table.softmax.sum(axis=1), 1.0)
    assert table.softmax[3, 0] < table.softmax[2, 0]  # T = 3 flattens further
    text = table.format()
    assert "p(T=1)" in text and "p(T=0.5)" in text and "p(T=3)" in text
    assert "pfalz    4.1   0.484" in text and "0.119" in text and "largest difference" in text
    assert len(table.rows()) == 12 and {"softmax", "lecture", "abs_difference"} <= set(table.rows()[0])


def test_calculator_shows_where_the_lecture_formula_underflows():
    table = temperature_table(LECTURE_LOGITS, [1e-4, 1.0])
    np.testing.assert_allclose(table.softmax[0], [1, 0, 0])
    assert np.isnan(table.lecture[0]).all() and not np.isnan(table.lecture[1]).any()
    assert "underflowed" in table.format() and "n/a" in table.format()


@pytest.mark.parametrize("logits, temperatures, message", [
    ({}, [1.0], "logits"),
    ({"pfalz": math.nan}, [1.0], "logit of 'pfalz'"),
    ({"pfalz": "4.1"}, [1.0], "logit of 'pfalz'"),
    ({"": 1.0}, [1.0], "non-empty"),
    (LECTURE_LOGITS, [0.0], "temperatures must be a finite number greater than 0, got 0"),
    (LECTURE_LOGITS, [-1], "temperatures must be a finite number greater than 0, got -1"),
    (LECTURE_LOGITS, [math.inf], "temperatures"),
    (LECTURE_LOGITS, [], "at least one temperature"),
])
def test_calculator_bad_input(logits, temperatures, message):
    with pytest.raises(SamplingError, match=message):
        temperature_table(logits, temperatures)


def test_calculator_on_the_command_line(tmp_path):
    result = cli("temperature", "--logits", "pfalz=4.1", "mosel=3.9", "rhein=2.7",
                 "--temperatures", "0.5", "1", "1.5", "3", "--out", tmp_path)
    assert result.code == 0, result.err
    out = result.out
    assert "softmax(z / T)" in out and "probs ** (1 / T)" in out
    assert "word   logit  p(T=0.5)  p(T=1)  p(T=1.5)  p(T=3)" in out
    assert "pfalz    4.1     0.578   0.484     0.441   0.390" in out
    assert "largest difference between the two" in out
    with open(tmp_path / "temperature_table.csv", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 12
    assert json.loads((tmp_path / "temperature_table.json").read_text())["max_abs_difference"] < 1e-12
    default = cli("temperature")  # the lecture's example by default, with T = 3
    assert default.code == 0 and "p(T=3)" in default.out


@pytest.mark.parametrize("args, message", [
    (["--temperatures", "0"], "argument --temperatures: temperature must be a finite number greater than 0"),
    (["--temperatures", "1", "-1"], "argument --temperatures: temperature must be a finite number greater than 0"),
    (["--temperatures", "nan"], "argument --temperatures: temperature must be a finite number"),
    (["--temperatures", "inf"], "argument --temperatures: temperature must be a finite number"),
    (["--temperatures", "hot"], "argument --temperatures: expected a number, got 'hot'"),
    (["--logits", "pfalz"], "argument --logits: expected WORD=LOGIT"),
    (["--logits", "pfalz=nan"], "argument --logits: expected WORD=LOGIT with a finite number"),
    (["--top-k", "0"], "argument --top-k: top_k must be an integer of at least 1, got 0"),
    (["--top-k", "2.5"], "argument --top-k: expected an integer, got '2.5'"),
    (["--top-p", "0"], "argument --top-p: top_p must be in (0, 1], got 0.0"),
    (["--top-p", "1.5"], "argument --top-p: top_p must be in (0, 1], got 1.5"),
    (["--top-k", "5", "--top-p", "0.9"], "argument --top-p: not allowed with argument --top-k"),
    (["--samples", "0"], "argument --samples: must be at least 1, got 0"),
    (["--logits", "a=1", "--run", "x"], "argument --run: not allowed with argument --logits"),
])
def test_command_line_bad_flags_name_the_flag(args, message):
    result = cli("temperature", *args)
    assert result.code == 2
    assert message in result.err


@pytest.mark.parametrize("args, message", [
    (["--temperatures", "1", "0.5", "1"], "--temperatures: 1 given more than once"),
    (["--logits", "a=1", "a=2"], "--logits: a given more than once"),
    (["--prompt", "wine review", "--samples", "3"], "--prompt, --samples: only used with --run"),
    (["--run", "no-such-run"], "no-such-run: run directory not found"),
])
def test_command_line_bad_combinations_give_one_line(args, message):
    result = cli("temperature", *args)
    assert result.code == 2
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.err


# --- the model's next word -------------------------------------------------------------------------

@pytest.mark.slow
def test_next_word_table_is_the_model_distribution_tempered(lab):
    model, vocab = lab
    table = next_word_table(model, vocab, PROMPT, [3.0, 0.5, 1.0], n_words=4)
    assert table.temperatures == (0.5, 1.0, 3.0)
    assert table.words[0] == ":" and len(table.words) == 4
    probs = np.asarray(model(np.array([vocab.encode(PROMPT)[0]]), training=False)[0])[0, -1].astype(np.float64)
    ids = [vocab.words.index(word) for word in table.words]
    np.testing.assert_allclose(table.probabilities[:, 1], probs[ids], rtol=1e-6)
    assert np.all(np.diff(table.probabilities[0]) < 0)  # the top word loses share as T rises
    assert np.all(np.diff(table.entropy) > 0)  # entropy rises with T
    np.testing.assert_allclose(table.probabilities.sum(axis=0) + table.other, 1.0)
    text = table.format()
    assert 'next word after "wine review : germany"' in text and "T=0.5" in text and "entropy (nats)" in text
    assert table.rows()[0]["word"] == ":"


# --- the experiment ----------------------------------------------------------------------------

@pytest.mark.slow
def test_metrics_are_in_range(report):
    assert report.temperatures == DEFAULT_TEMPERATURES
    vocab_size = report.settings["vocab_size"]
    for result in report.results:
        m = result.metrics
        assert set(m) == set(METRICS)
        assert len(result.texts) == 6 and all(text.startswith(PROMPT) for text in result.texts)
        assert 0 <= m["entropy"] <= math.log(vocab_size) and 0 <= m["model_entropy"] <= math.log(vocab_size)
        for name in ("distinct_1", "distinct_2", "repetition_rate", "unk_share", "ended_share"):
            assert 0 <= m[name] <= 1, name
        assert m["mean_log_prob"] <= 0 and m["perplexity"] >= 1
        assert m["perplexity"] == pytest.approx(math.exp(-m["mean_log_prob"]))
        assert 0 < m["mean_length"] <= 24 - 4
    at_one = report.results[DEFAULT_TEMPERATURES.index(1.0)].metrics
    assert at_one["entropy"] == pytest.approx(at_one["model_entropy"])  # T = 1 samples the model as it is


@pytest.mark.slow
def test_metrics_move_with_temperature_as_the_lecture_says(report):
    entropy = report.metric("entropy")
    assert np.all(np.diff(report.next_words.entropy) > 0)
    assert entropy[0] < entropy[2] < entropy[-1]  # T = 0.2 < 1 < 3
    perplexity = report.metric("perplexity")
    assert perplexity[0] < perplexity[2] < perplexity[-1]
    assert report.metric("distinct_2")[-1] > report.metric("distinct_2")[0]
    assert report.metric("distinct_1")[-1] > report.metric("distinct_1")[0]
    assert report.metric("entropy")[0] < 0.2  # near-deterministic at T = 0.2: the memorised review


@pytest.mark.slow
def test_same_seed_same_samples_and_each_temperature_on_its_own_stream(lab, report):
    model, vocab = lab
    again = temperature_experiment(model, vocab, PROMPT, temperatures=[3.0, 1.0], n_samples=6, max_tokens=24, seed=0)
    for result in again.results:
        same = report.results[DEFAULT_TEMPERATURES.index(result.temperature)]
        assert result.texts == same.texts
        assert result.metrics == pytest.approx(same.metrics)
    other_seed = temperature_experiment(model, vocab, PROMPT, temperatures=[3.0], n_samples=6, max_tokens=24, seed=1)
    assert other_seed.results[0].texts != again.results[1].texts


@pytest.mark.slow
def test_filters_apply_after_temperature(lab, report):
    model, vocab = lab
    greedy_like = temperature_experiment(model, vocab, PROMPT, temperatures=[0.5, 3.0], n_samples=3, max_tokens=16,
                                         top_k=1)
    for result in greedy_like.results:
        assert result.metrics["entropy"] == 0
        assert len(set(result.texts)) == 1
    assert greedy_like.results[0].texts == greedy_like.results[1].texts
    nucleus = temperature_experiment(model, vocab, PROMPT, temperatures=[0.5, 3.0], n_samples=3, max_tokens=16,
                                     top_p=0.5)
    assert nucleus.next_words.strategy == "top-p 0.5"
    assert nucleus.next_words.other[0] == pytest.approx(0.0, abs=1e-12)
    assert nucleus.metric("entropy")[1] < report.metric("entropy")[-1]  # T = 3 with the tail cut off


@pytest.mark.slow
def test_outputs_are_written(report, tmp_path):
    written = write_report(report, tmp_path / "lab")
    with open(written["csv"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["temperature"]) for row in rows] == list(DEFAULT_TEMPERATURES)
    assert set(rows[0]) == {"temperature", *METRICS}
    saved = json.loads(written["json"].read_text(encoding="utf-8"))
    assert saved["prompt"] == PROMPT and len(saved["results"]) == 6
    assert len(saved["results"][-1]["samples"]) == 6 and saved["next_words"]["words"][0] == ":"
    assert set(saved["metric_definitions"]) == set(METRICS)
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_tensorboard(report, written["tensorboard"])  # a second write replaces the first
    event_files = list(written["tensorboard"].iterdir())
    assert [path.name for path in event_files] == [TENSORBOARD_FILE]
    scalars, texts = _read_events(event_files[0])
    assert sorted(scalars["temperature_lab/entropy"]) == [20, 50, 100, 150, 200, 300]
    assert scalars["temperature_lab/entropy"][300] == pytest.approx(report.results[-1].metrics["entropy"], rel=1e-5)
    assert 300 in texts["temperature_lab/samples"] and "T = 3" in texts["temperature_lab/samples"][300]
    assert not list((tmp_path / "lab").glob(".*"))  # no temporary file left behind


def _read_events(path):
    import tensorflow as tf

    scalars, texts = {}, {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            tensor = tf.make_ndarray(value.tensor)
            if value.metadata.plugin_data.plugin_name == "text":
                texts.setdefault(value.tag, {})[event.step] = tensor.item().decode()
            else:
                scalars.setdefault(value.tag, {})[event.step] = float(tensor)
    return scalars, texts


@pytest.mark.slow
def test_format_table_for_the_terminal(report):
    text = report.format_table(samples=2, width=60)
    assert 'next word after "wine review : germany"' in text
    assert "6 samples per temperature, up to 24 tokens (prompt included), seed 0" in text
    assert "distinct-2" in text and "perplexity" in text and "[UNK]" in text and "H: entropy (nats)" in text
    assert "T=3 #2: wine review : germany" in text
    assert all(len(line) <= 60 for line in text.splitlines() if line.startswith("T=3 #"))
    shown = re.findall(r"[\d.]+%", text)
    assert shown and all(re.fullmatch(r"\d+\.\d\d%", number) for number in shown), shown  # viz.percent's rule


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("changes, message", [
    (dict(temperatures=[]), "at least one temperature"),
    (dict(temperatures=[1.0, 0.0]), "temperatures must be a finite number greater than 0, got 0"),
    (dict(temperatures=[-1]), "greater than 0, got -1"),
    (dict(temperatures=[math.nan]), "got nan"),
    (dict(temperatures=[math.inf]), "got inf"),
    (dict(temperatures=[1.0, 1.0]), "1 given more than once"),
    (dict(temperatures=3.0), "must be a list"),
    (dict(top_k=0), "top_k must be an integer of at least 1"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_k=3, top_p=0.9), "top_k or top_p"),
    (dict(n_samples=0), "n_samples must be an integer of at least 1"),
    (dict(max_tokens=0), "max_tokens must be an integer of at least 1"),
    (dict(max_tokens=4), "more than the prompt's 4 tokens"),
    (dict(seed=-1), "seed must be a whole number from 0 to 4,294,967,295"),
    (dict(prompt=""), "the prompt is empty"),
    (dict(prompt="   "), "the prompt is empty"),
])
def test_experiment_bad_input(lab, changes, message):
    model, vocab = lab
    arguments = {**dict(prompt=PROMPT, temperatures=[1.0], n_samples=2, max_tokens=10), **changes}
    with pytest.raises(SamplingError, match=message):
        temperature_experiment(model, vocab, **arguments)


@pytest.mark.slow
def test_unknown_prompt_words_become_unk_with_one_warning(lab):
    model, vocab = lab
    with pytest.warns(PromptWarning, match="not in the vocabulary, read as \\[UNK\\]: spain, rioja") as caught:
        report = temperature_experiment(model, vocab, "wine review : spain : rioja", temperatures=[0.5, 1.0],
                                        n_samples=2, max_tokens=12)
    assert len([w for w in caught if issubclass(w.category, PromptWarning)]) == 1  # once, not per temperature
    assert all(text.startswith("wine review : [UNK] : [UNK]") for result in report.results for text in result.texts)
    with pytest.warns(PromptWarning, match="spain"):
        table = next_word_table(model, vocab, "wine review : spain", [1.0])
    assert table.prompt == "wine review : spain"


@pytest.mark.slow
def test_prompt_longer_than_the_window_slides_with_a_warning(lab):
    model, vocab = lab
    long_prompt = TEXTS[0] + " wine review : italy : tuscany"  # 26 tokens, the window is 24
    with pytest.warns(PromptWarning, match="more than the context window of 24"):
        report = temperature_experiment(model, vocab, long_prompt, temperatures=[0.2], n_samples=2, max_tokens=34)
    assert report.settings["prompt_tokens"] == 26
    # The texts keep the whole prompt; whether they go on is the model's: this one learnt that the 24th
    # position is followed by padding (its reviews are shorter), so it may end them at once.
    assert all(text.startswith(long_prompt) for text in report.results[0].texts)
    with pytest.warns(PromptWarning, match="the model sees only the last 24"):
        table = next_word_table(model, vocab, long_prompt, [1.0])
    ids, _ = vocab.encode(long_prompt)
    last_window = np.asarray(model(np.array([ids[-24:]], "int32"))[0])[0, -1]  # what the model reads: the last 24
    shown = [vocab.words.index(word) for word in table.words]
    np.testing.assert_allclose(table.probabilities[:, 0], last_window[shown], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_next_word_table_bad_input(lab):
    model, vocab = lab
    with pytest.raises(SamplingError, match="the prompt is empty"):
        next_word_table(model, vocab, "", [1.0])
    with pytest.raises(SamplingError, match="temperatures must be a finite number greater than 0"):
        next_word_table(model, vocab, PROMPT, [0.0])
    with pytest.raises(SamplingError, match="words shown"):
        next_word_table(model, vocab, PROMPT, [1.0], n_words=0)


# --- the command line with a run -------------------------------------------------------------------

@pytest.mark.slow
def test_command_line_experiment_on_a_run(trained_run, tmp_path):
    out = tmp_path / "lab"
    captured = cli("temperature", "--run", trained_run.run_dir, "--prompt", "wine review : germany : zzzunknown",
                   "--temperatures", "0.5", "3", "--samples", "3", "--max-tokens", "16", "--seed", "1",
                   "--top-p", "0.95", "--out", out)
    assert captured.code == 0, captured.err
    assert "gpt-keras temperature: warning: prompt words not in the vocabulary, read as [UNK]: zzzunknown" \
        in captured.err
    assert "T=0.5" in captured.out and "T=3" in captured.out and "perplexity" in captured.out and "top-p 0.95" in \
        captured.out
    assert "metrics.csv, report.json, metrics.png, tensorboard/" in captured.out
    assert {path.name for path in out.iterdir()} == {"metrics.csv", "report.json", "metrics.png", "tensorboard"}
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["settings"]["seed"] == 1 and saved["settings"]["top_p"] == 0.95
    empty = cli("temperature", "--run", trained_run.run_dir, "--prompt", " ", "--out", out)
    assert empty.code == 2 and "the prompt is empty" in empty.err
