"""Training with model.fit: the loss goes down, the run directory is complete, resume continues."""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import pytest

from gpt_keras.runs import rundir as runs
from gpt_keras.runs.lock import RunLock
from gpt_keras.core.config import GPTConfig
from gpt_keras.core.data import DataError
from gpt_keras.runs.resume import resume
from gpt_keras.runs.train import train
from tests.conftest import copy_run, run_config, tiny_config

pytestmark = pytest.mark.slow


def _event_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def test_two_epochs_on_the_real_reviews_lower_the_loss_clearly(tmp_path, shared_csv):
    config = GPTConfig(vocab_size=1000, max_len=32, embedding_dim=48, key_dim=24, n_heads=2, feed_forward_dim=96,
                       batch_size=64, epochs=2, generate_max_tokens=20)
    result = train(config, shared_csv, runs_dir=tmp_path, print_fn=None, verbose=0)
    losses = result.history["loss"]
    assert len(losses) == 2
    assert losses[0] < 0.85 * math.log(config.vocab_size)  # better than uniform already after one epoch
    assert losses[1] < losses[0] - 0.3
    assert result.report.kept == 9_996


def test_run_directory_holds_everything_needed(trained_run):
    run_dir = trained_run.run_dir
    for name in (runs.CONFIG, runs.VOCAB, runs.DATA, runs.TOKENS, runs.STATE, runs.MODEL, runs.HISTORY):
        assert (run_dir / name).is_file(), name
    assert runs.read_config(run_dir / runs.CONFIG) == run_config()
    assert runs.read_vocabulary(run_dir / runs.VOCAB) == trained_run.text_generator.vocab
    state = json.loads((run_dir / runs.STATE).read_text())
    assert state["epoch"] == 2 and (run_dir / state["checkpoint"]).is_file()
    assert json.loads((run_dir / runs.HISTORY).read_text())["loss"] == trained_run.history["loss"]
    data_info = json.loads((run_dir / runs.DATA).read_text())
    assert data_info["kept"] == data_info["reviews"] == 400


def test_tensorboard_has_loss_per_batch_and_per_epoch_and_the_generated_text(trained_run):
    train_events = _event_tags(trained_run.run_dir / "logs" / "train")
    tags = train_events.Tags()["tensors"]
    assert "epoch_loss" in tags and "batch_loss" in tags
    assert "keras" in tags  # the model's conceptual graph (TensorBoard's Graphs tab); Keras 3 writes no op graph
    steps_per_epoch = math.ceil(360 / 16)  # 400 reviews, a tenth held out for validation
    assert [event.step for event in train_events.Tensors("epoch_loss")] == [1, 2]  # epoch 1 is step 1
    assert max(event.step for event in train_events.Tensors("batch_loss")) == 2 * steps_per_epoch
    text_events = _event_tags(trained_run.run_dir / "logs" / "text")
    texts = [event.tensor_proto.string_val[0].decode() for event in text_events.Tensors("generated_text")]
    assert len(texts) == 2 and texts[-1] == trained_run.text_generator.generated[-1][1]


def test_epoch_loss_and_the_epochs_generated_text_share_the_step(trained_run):
    """TensorBoard's Scalars and Text tabs line up: epoch N's loss and epoch N's text are both at step N."""
    loss_steps = [event.step for event in _event_tags(trained_run.run_dir / "logs" / "train").Tensors("epoch_loss")]
    validation = _event_tags(trained_run.run_dir / "logs" / "validation").Tensors("epoch_loss")
    text_steps = [event.step for event in _event_tags(trained_run.run_dir / "logs" / "text").Tensors("generated_text")]
    epochs = len(trained_run.history["loss"])
    assert loss_steps == text_steps == [event.step for event in validation] == list(range(1, epochs + 1))


def test_text_generator_ran_after_every_epoch(trained_run):
    generated = trained_run.text_generator.generated
    assert [epoch for epoch, _ in generated] == [0, 1]
    assert all(text.startswith("wine review") for _, text in generated)


def test_loaded_run_gives_the_trained_models_outputs(trained_run):
    loaded = runs.load_run(trained_run.run_dir)
    tokens = np.arange(2, 14, dtype="int32")[None]
    np.testing.assert_array_equal(np.asarray(loaded.model(tokens)[0]), np.asarray(trained_run.model(tokens)[0]))


def test_resume_picks_the_latest_run_and_continues_from_its_last_epoch(trained_run, tmp_path):
    older, latest = copy_run(trained_run, tmp_path / "runs", "older"), copy_run(trained_run, tmp_path / "runs", "latest")
    os.utime(older / runs.STATE, (1_000_000_000, 1_000_000_000))  # written long before the other's
    state = runs.RunState.read(latest)
    assert state.epoch == 2
    resumed = resume(config=run_config(epochs=3), runs_dir=tmp_path / "runs", print_fn=None, verbose=0)
    assert resumed.run_dir == latest and resumed.resumed_from_epoch == 2
    assert len(resumed.history["loss"]) == 3 and resumed.history["loss"][:2] == trained_run.history["loss"]
    final = runs.RunState.read(latest)
    assert final.epoch == 3 and final.global_step == state.global_step // 2 * 3
    assert resumed.history["loss"][2] < resumed.history["loss"][1]
    assert runs.RunState.read(older).epoch == 2  # the other run is untouched


def test_bad_input_leaves_no_run_behind(tmp_path):
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match="malformed JSON"):
        train(tiny_config(), tmp_path / "broken.json", runs_dir=tmp_path / "runs", print_fn=None, verbose=0)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_failure_before_the_first_epoch_removes_the_run(tmp_path, small_json, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(keras.Model, "fit", explode)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(tiny_config(), small_json, runs_dir=tmp_path, run_name="x", print_fn=None, verbose=0)
    assert not (tmp_path / "x").exists()


def test_a_run_directory_in_use_is_refused(trained_run, tmp_path, small_json):
    busy = copy_run(trained_run, tmp_path, "busy")
    with RunLock(busy):
        with pytest.raises(runs.RunError, match="in use by another training process"):
            resume(config=run_config(epochs=3), run_dir=busy, print_fn=None, verbose=0)
    with pytest.raises(runs.RunError, match="already exists"):
        train(tiny_config(), small_json, runs_dir=tmp_path, run_name="busy", print_fn=None, verbose=0)
    assert runs.RunState.read(busy).epoch == 2


def test_validation_split_reports_loss_and_perplexity(tmp_path, small_json):
    result = train(tiny_config(epochs=1, validation_split=0.25), small_json, runs_dir=tmp_path, print_fn=None,
                   verbose=0)
    history = result.history
    assert {"val_loss", "val_probabilities_perplexity", "probabilities_perplexity"} <= set(history)
    assert 1 < history["val_probabilities_perplexity"][0] < 400  # better than a uniform guess over the 400 words
    validation_tags = _event_tags(result.run_dir / "logs" / "validation").Tags()["tensors"]
    assert "epoch_loss" in validation_tags and "epoch_probabilities_perplexity" in validation_tags
    assert result.model.get_layer("probabilities").units == 400


def test_vocab_size_shrinks_to_the_words_the_data_has(tmp_path):
    records = [{"country": "Italy", "province": "Tuscany", "variety": "Sangiovese", "description": "Red and dry."}] * 40
    (tmp_path / "few.json").write_text(json.dumps(records))
    messages = []
    result = train(tiny_config(vocab_size=400), tmp_path / "few.json", runs_dir=tmp_path / "runs",
                   print_fn=messages.append, verbose=0)
    vocab = result.text_generator.vocab
    assert len(vocab) < 400
    assert result.model.get_layer("probabilities").units == len(vocab)
    assert runs.read_config(result.run_dir / runs.CONFIG).vocab_size == len(vocab)
    assert any(f"vocab_size 400 -> {len(vocab)}" in message for message in messages)
    assert runs.load_run(result.run_dir).vocab == vocab


def test_perplexity_counts_only_real_tokens():
    """exp(mean NLL) over the non-padding targets; padded positions change nothing, however well predicted."""
    import keras

    from gpt_keras.runs.train import RealTokenPerplexity

    probabilities = np.array([[[0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]]], dtype="float32")
    targets = np.array([[1, 2, 0]])
    metric = RealTokenPerplexity()
    metric.update_state(targets, probabilities)
    assert float(metric.result()) == pytest.approx(math.exp(-(math.log(0.6) + math.log(0.6)) / 2), rel=1e-5)
    metric.update_state(np.array([[0, 0, 2]]), probabilities)  # one more real token (p 0.05), two pads
    expected = math.exp(-(2 * math.log(0.6) + math.log(0.05)) / 3)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(restored, RealTokenPerplexity) and restored.name == "perplexity"
