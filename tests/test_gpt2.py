"""The GPT-2 comparison path, offline: a tiny random GPT-2 and a tiny BPE tokenizer saved to a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tf_keras")

from gpt_keras.tools import gpt2 as gpt2_lib  # noqa: E402
from gpt_keras.core.data import DataError  # noqa: E402
from gpt_keras.runs.datasets import load_texts  # noqa: E402
from gpt_keras.core.sampling import Sampler  # noqa: E402
from tests.conftest import cli  # noqa: E402


# Importing Transformers' TensorFlow models sets TF_USE_LEGACY_KERAS=1 in this process's environment (see
# gpt_keras/tools/gpt2/load.py): tf.keras is Keras 2 from then on, here as in the lecture. Subprocesses that
# later tests start (in other files) would inherit it, so the setting is put back when this file is done.
_LEGACY_KERAS_AT_IMPORT = os.environ.get("TF_USE_LEGACY_KERAS")


@pytest.fixture(scope="module", autouse=True)
def _legacy_keras_setting_restored_after_this_file():
    yield
    if _LEGACY_KERAS_AT_IMPORT is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = _LEGACY_KERAS_AT_IMPORT


@pytest.fixture(scope="session")
def reviews(small_json) -> list[str]:
    return load_texts(small_json)[0]


def build_tiny_gpt2(path, reviews):
    """A randomly initialised 2-layer GPT-2 (n_embd 32, 64 positions) and a 400-token byte-level BPE, saved in `path`.

    The BPE's vocab.json and merges.txt are saved too, so the lecture's `GPT2Tokenizer` loads it as well
    as the fast tokenizer does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2TokenizerFast, TFGPT2LMHeadModel

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(reviews[:200], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")
    end = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_head=2, n_embd=32, n_positions=64,
                        bos_token_id=end, eos_token_id=end)
    model = TFGPT2LMHeadModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    bpe.model.save(str(path))  # vocab.json and merges.txt, for GPT2Tokenizer
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, reviews):
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), reviews)


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    return gpt2_lib.load_gpt2(tiny_gpt2_dir)


# --- loading -------------------------------------------------------------------------------------

def test_importing_gpt_keras_does_not_import_transformers():
    code = ("import sys, gpt_keras.tools.gpt2, gpt_keras.tools.cli; "
            "assert 'transformers' not in sys.modules and 'tf_keras' not in sys.modules, 'eager import'")
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}  # as a user starts
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_loads_model_and_tokenizer_from_a_directory(tiny_gpt2, tiny_gpt2_dir):
    from transformers import TFGPT2LMHeadModel

    assert isinstance(tiny_gpt2.model, TFGPT2LMHeadModel)
    assert tiny_gpt2.source == str(tiny_gpt2_dir) and tiny_gpt2.n_positions == 64
    assert tiny_gpt2.bos_id == tiny_gpt2.eos_id == tiny_gpt2.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # wte (vocab x 32) + wpe (64 x 32) + 2 blocks of 12,704 + final LayerNorm; the output layer is tied to wte
    assert tiny_gpt2.count_params() == len(tiny_gpt2.tokenizer) * 32 + 64 * 32 + 2 * 12_704 + 64
    assert tiny_gpt2.word_ids("wine") == tiny_gpt2.tokenizer.encode(" wine")
    labels = [tiny_gpt2.token_label(i) for i in tiny_gpt2.tokenizer.encode(" wine review : Italy")]
    assert labels[0] == "wine" and all(label and not any(c.isspace() for c in label) for label in labels)


def test_a_missing_or_foreign_directory_is_a_clear_error(tmp_path):
    with pytest.raises(gpt2_lib.GPT2Error, match="no such directory"):
        gpt2_lib.load_gpt2(tmp_path / "nothing-here")
    with pytest.raises(gpt2_lib.GPT2Error, match="no config.json"):
        gpt2_lib.load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(gpt2_lib.GPT2Error, match="'bert' model, not GPT-2"):
        gpt2_lib.load_gpt2(tmp_path)


def test_offline_without_a_local_copy_says_how_to_get_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(gpt2_lib.GPT2Unavailable) as caught:
        gpt2_lib.load_gpt2("gpt2")
    message = str(caught.value)
    assert "'gpt2' is not on this machine" in message and "HF_HUB_OFFLINE" in message
    assert "huggingface-cli download gpt2" in message and "--gpt2" in message and "save_pretrained" in message


# --- generation ----------------------------------------------------------------------------------

def test_same_seed_same_text_and_lecture_records(tiny_gpt2):
    from gpt_keras.tools.viz import format_probs

    generator = gpt2_lib.GPT2Generator(tiny_gpt2)
    sampler = Sampler(temperature=0.8, top_k=5)
    info, text = generator.generate("wine review : Italy", 12, sampler, np.random.default_rng(3))
    again, same = generator.generate("wine review : Italy", 12, sampler, np.random.default_rng(3))
    assert text == same and [r["token"] for r in info] == [r["token"] for r in again]
    assert text.startswith("wine review : Italy") and 1 <= len(info) <= 12
    n_prompt = len(generator.prompt_ids("wine review : Italy"))
    for step, record in enumerate(info):
        assert set(record) >= {"prompt", "word_probs", "atts", "token", "word"}
        assert record["atts"].shape == (2, n_prompt + step) == (2, len(record["prompt"].split()))
        assert np.allclose(record["atts"].sum(axis=-1), 1.0, atol=1e-5)
        assert np.isclose(record["word_probs"].sum(), 1.0) and np.count_nonzero(record["word_probs"]) <= 5
    shown = format_probs(info[:2], gpt2_lib.TokenLabels(tiny_gpt2), n_words=3, heads=True)
    assert shown.count("-----") == 2 and "head 2:" in shown and "<|endoftext|>[" in shown


def test_cached_steps_match_a_full_forward_pass_and_the_window_slides(tiny_gpt2):
    generator = gpt2_lib.GPT2Generator(tiny_gpt2)
    prompt_ids = generator.prompt_ids("wine review")
    info, _ = generator.generate("wine review", 70, Sampler(greedy=True), np.random.default_rng(0), stop=False)
    assert len(info) == 70  # past the 64-token window: it slides instead of failing
    tokens = prompt_ids + [record["token"] for record in info]
    for step in (0, 5, 20):
        context = tokens[:len(prompt_ids) + step]
        logits = tiny_gpt2.model(np.array([context]), training=False).logits.numpy()[0, -1]
        assert info[step]["token"] == int(np.argmax(logits))


# --- perplexity ----------------------------------------------------------------------------------

def test_word_nll_is_the_sum_of_its_tokens_nll(tiny_gpt2, reviews):
    import tensorflow as tf

    windows = gpt2_lib.word_windows(reviews[:5], max_words=30, gpt2=tiny_gpt2)
    assert len(windows) == 5
    for words in windows:
        assert 2 <= len(words) <= 30 and 1 + sum(len(tiny_gpt2.word_ids(w)) for w in words) <= 64
    scores = gpt2_lib.score_gpt2(tiny_gpt2, windows, batch_size=2)  # right-padded batches
    for words, word_nll, token_nll in zip(windows, scores.word_nll, scores.token_nll):
        pieces = [tiny_gpt2.word_ids(word) for word in words]
        ids = [tiny_gpt2.bos_id] + [i for piece in pieces for i in piece]
        log_probs = tf.nn.log_softmax(tiny_gpt2.model(np.array([ids]), training=False).logits[0]).numpy()
        every_token = -log_probs[np.arange(len(ids) - 1), ids[1:]]
        start, expected = 1 + len(pieces[0]), []
        for piece in pieces[1:]:
            expected.append(every_token[start - 1:start - 1 + len(piece)].sum())
            start += len(piece)
        assert len(word_nll) == len(words) - 1 and len(token_nll) == sum(map(len, pieces[1:]))
        np.testing.assert_allclose(word_nll, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(word_nll.sum(), token_nll.sum(), rtol=1e-6)
    perplexity = scores.perplexity()
    assert perplexity.words == sum(len(w) - 1 for w in windows) and perplexity.tokens > perplexity.words
    total = sum(n.sum() for n in scores.word_nll)
    assert np.isclose(perplexity.per_word, np.exp(total / perplexity.words))
    assert np.isclose(perplexity.per_token, np.exp(total / perplexity.tokens))
    assert perplexity.per_word > perplexity.per_token  # the same NLL spread over fewer units


def test_our_model_scores_one_token_per_word_and_counts_unk(trained_run, reviews):
    run = trained_run
    vocab = run.text_generator.vocab
    windows = gpt2_lib.word_windows(reviews[-4:], max_words=25)
    scores = gpt2_lib.score_ours(run.model, vocab, windows)
    perplexity = scores.perplexity()
    assert perplexity.tokens == perplexity.words and np.isclose(perplexity.per_token, perplexity.per_word)
    ids, _ = vocab.encode(" ".join(windows[0]))
    probs = run.model.predict(np.array([ids[:-1]]), verbose=0)[0][0]
    np.testing.assert_allclose(scores.word_nll[0], -np.log(probs[np.arange(len(ids) - 1), ids[1:]]), rtol=1e-5)
    expected_unk = np.mean([i == 1 for words in windows for i in vocab.encode(" ".join(words))[0][1:]])
    assert 0 < perplexity.unk_share == pytest.approx(expected_unk)  # 400 words cannot cover the reviews


# --- comparison and report -----------------------------------------------------------------------

def test_compare_report_side_by_side(tiny_gpt2, trained_run, small_json, tmp_path):
    from gpt_keras.runs.rundir import load_run

    run = load_run(trained_run.run_dir)
    comparison = gpt2_lib.compare(run, tiny_gpt2, small_json, prompts=["wine review", "wine review : Italy"],
                                  temperatures=[0.5, 1.0], seeds=[7], max_new_tokens=6, heldout=12)
    assert len(comparison.generations) == 4
    assert {g["sampler"] for g in comparison.generations} == {"T=0.5", "T=1"}
    assert all(g["ours"]["tokens"] <= 6 and g["gpt2"]["tokens"] <= 6 for g in comparison.generations)
    models = comparison.models
    assert models["ours"]["parameters"] == run.model.count_params()
    assert models["gpt2"]["parameters"] == tiny_gpt2.count_params()
    assert models["ours"]["ms_per_token"] > 0 and models["gpt2"]["ms_per_token"] > 0
    # The run held a tenth of the file out for validation: of the last 12 reviews, exactly those it trained on count.
    from gpt_keras.runs.batches import split_tokens

    trained_on, _ = split_tokens(np.arange(400)[:, None], run.config.validation_split, run.config.seed)
    assert models["ours"]["heldout_seen"] == pytest.approx(np.isin(np.arange(388, 400), trained_on[:, 0]).mean())
    assert 0 < models["ours"]["heldout_seen"] < 1
    assert models["gpt2"]["heldout_seen"] is None  # not fine-tuned by gpt-keras: unknown
    ours, gpt2 = comparison.perplexity["ours"], comparison.perplexity["gpt2"]
    assert ours.reviews == gpt2.reviews == 12 and ours.words == gpt2.words  # the same words for both
    assert np.isfinite([ours.per_word, gpt2.per_word, gpt2.per_token]).all()
    assert len(comparison.info["gpt2"]) == comparison.generations[0]["gpt2"]["tokens"]

    table = comparison.format_table()
    assert "perplexity per word" in table and ("device: CPU" in table or "device: GPU" in table)
    assert f"{run.model.count_params():,}" in table and "wine review : Italy" in table
    paths = comparison.write(tmp_path / "report")
    saved = json.loads(paths["json"].read_text())
    assert saved["perplexity"]["gpt2"]["words"] == gpt2.words
    assert saved["models"]["gpt2"]["parameters"] == tiny_gpt2.count_params()
    assert len(saved["generations"]) == 4 and saved["settings"]["seeds"] == [7]
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# Our GPT beside GPT-2") and "| perplexity per token |" in markdown


# --- fine-tuning ---------------------------------------------------------------------------------

def test_finetuning_lowers_the_loss_and_saves_a_loadable_model(tiny_gpt2_dir, small_json, tmp_path):
    out = tmp_path / "finetuned"
    # the default precision ("auto"): float32 on a CPU, mixed on a GPU; the policy is the one chosen for this machine
    result = gpt2_lib.finetune_gpt2(tiny_gpt2_dir, small_json, out, epochs=3, batch_size=8, max_length=32,
                                    learning_rate=3e-3, limit=64, heldout=20, verbose=0)
    losses = result.history["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result.policy == gpt2_lib.precision_policy("auto") and result.reviews == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    tuned = gpt2_lib.load_gpt2(out)
    assert tuned.finetune_info["train_range"] == [0, 64] and tuned.finetune_info["history"]["loss"] == losses
    indices = gpt2_lib.heldout_indices(400, 20)
    assert gpt2_lib.seen_by_gpt2(tuned, small_json, 400, indices) == 0.0
    assert gpt2_lib.seen_by_gpt2(tuned, small_json, 400, np.arange(60, 70)) == 0.4


def test_mixed_precision_fine_tuning_leaves_both_kerases_float32(tiny_gpt2_dir, small_json, tmp_path):
    import keras
    import tf_keras

    result = gpt2_lib.finetune_gpt2(tiny_gpt2_dir, small_json, tmp_path / "mixed", epochs=1, batch_size=8,
                                    max_length=16, limit=16, heldout=20, mixed_precision="on", verbose=0)
    assert result.policy in ("mixed_bfloat16", "mixed_float16") and np.isfinite(result.history["loss"]).all()
    assert tf_keras.mixed_precision.global_policy().name == "float32"
    assert keras.config.dtype_policy().name == "float32"
    weights = json.loads((tmp_path / "mixed" / "config.json").read_text())
    assert weights["model_type"] == "gpt2"


def test_bad_finetune_settings_are_named(small_json, tmp_path, tiny_gpt2_dir):
    with pytest.raises(DataError, match="--heldout 400: the file has only 400 reviews"):
        gpt2_lib.finetune_gpt2(tiny_gpt2_dir, small_json, tmp_path / "x", heldout=400)
    with pytest.raises(DataError, match="--epochs must be an integer of at least 1"):
        gpt2_lib.finetune_gpt2(tiny_gpt2_dir, small_json, tmp_path / "x", epochs=0)
    with pytest.raises(gpt2_lib.GPT2Error, match="--mixed-precision must be one of"):
        gpt2_lib.finetune_gpt2(tiny_gpt2_dir, small_json, tmp_path / "x", mixed_precision="fp8")
    assert not (tmp_path / "x").exists()


# --- Keras 3 and tf-keras in one process ---------------------------------------------------------

def test_keras3_trains_and_predicts_after_gpt2_is_loaded(tiny_gpt2):
    import keras
    import tensorflow as tf
    import tf_keras

    from gpt_keras.core.model import build_gpt, compile_gpt
    from tests.conftest import tiny_config

    assert keras.__version__.startswith("3.") and isinstance(tiny_gpt2.model, tf_keras.Model)
    assert not isinstance(tiny_gpt2.model, keras.Model)
    assert tf.keras.__name__.startswith("tf_keras")  # transformers routes tf.keras to Keras 2 ...
    config = tiny_config(vocab_size=50, max_len=8, batch_size=4)
    model = compile_gpt(build_gpt(config), config)  # ... while `import keras` stays Keras 3
    assert isinstance(model, keras.Model) and type(model).__module__.startswith("keras.")
    tokens = np.random.default_rng(0).integers(2, 50, (16, 9))
    history = model.fit(tokens[:, :-1], tokens[:, 1:], epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    probs, attention = model.predict(tokens[:2, :-1], verbose=0)
    assert probs.shape == (2, 8, 50) and attention.shape == (2, 2, 8, 8)
    logits = tiny_gpt2.model(np.array([[tiny_gpt2.bos_id, 5, 6]]), training=False).logits
    assert logits.shape == (1, 3, len(tiny_gpt2.tokenizer))  # and GPT-2 still runs beside it


# --- the command line ----------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_finetune_then_compare_with_the_result(tiny_gpt2_dir, trained_run, small_json, tmp_path):
    out = tmp_path / "tuned"
    tuned = cli("finetune-gpt2", "--gpt2", tiny_gpt2_dir, "--data", small_json, "--out", out,
                "--epochs", "1", "--batch-size", "8", "--max-length", "24", "--limit", "16", "--heldout", "10",
                "--quiet")  # the default precision, as above
    printed = tuned.out
    assert tuned.code == 0, tuned.err
    assert f"dtype policy {gpt2_lib.precision_policy('auto')}" in printed and "Trained on 16 reviews" in printed
    assert (out / "config.json").is_file() and (out / gpt2_lib.FINETUNE_INFO).is_file()

    report = tmp_path / "side-by-side"
    compared = cli("compare", "--run", trained_run.run_dir, "--gpt2", out, "--data", small_json,
                   "--heldout", "10", "--prompt", "wine review : Italy", "--temperature", "0.7", "--seed", "1", "2",
                   "--max-new-tokens", "5", "--top-k", "20", "--report", report, "--show-probs", "--heads")
    printed = compared.out
    assert compared.code == 0, compared.err
    assert "perplexity per word" in printed and "parameters" in printed and "device: " in printed
    assert "held-out reviews seen in training" in printed and "0%" in printed  # fine-tuning left them out
    assert "tuned, step by step" in printed and "head 2:" in printed and "-----" in printed
    saved = json.loads(report.with_suffix(".json").read_text())
    assert saved["settings"]["top_k"] == 20 and len(saved["generations"]) == 2
    assert saved["models"]["gpt2"]["heldout_seen"] == 0.0 and report.with_suffix(".md").is_file()


def test_cli_offline_error_is_one_line(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = cli("compare", "--run", trained_run.run_dir, "--gpt2", "distilgpt2")
    assert result.code == 2
    error = result.err
    assert error.startswith("gpt-keras compare: error: GPT-2 'distilgpt2' is not on this machine")
    assert "huggingface-cli download distilgpt2" in error and "Traceback" not in error


def test_cli_compare_without_a_run_shows_gpt2_alone(tiny_gpt2_dir, small_json, tmp_path):
    """The lecture's GPT-2 part needs no trained run: `gpt-keras compare --prompt "Machine learning is"`."""
    result = cli("compare", "--gpt2", tiny_gpt2_dir, "--data", small_json, "--heldout", "6",
                 "--prompt", "Machine learning is", "--temperature", "1.0", "--max-new-tokens", "4", "--show-probs",
                 cwd=tmp_path)
    printed = result.out
    assert result.code == 0, result.err
    assert "prompt 'Machine learning is', T=1, seed 0:" in printed and "perplexity per word" in printed
    assert "ours" not in printed and "step by step" in printed
    saved = json.loads((tmp_path / f"compare-{tiny_gpt2_dir.name}.json").read_text())
    assert list(saved["models"]) == ["gpt2"] and list(saved["perplexity"]) == ["gpt2"]
    assert saved["settings"]["run"] is None and saved["settings"]["max_words"] == 81
    assert saved["generations"][0]["gpt2"]["text"].startswith("Machine learning is")
    assert "ours" not in saved["generations"][0]
    markdown = (tmp_path / f"compare-{tiny_gpt2_dir.name}.md").read_text()
    assert markdown.startswith("# GPT-2") and "none (GPT-2 alone)" in markdown


def test_cli_compare_without_a_run_offline_is_the_same_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = cli("compare", "--prompt", "Machine learning is", cwd=tmp_path)
    assert result.code == 2
    error = result.err
    assert error.startswith("gpt-keras compare: error: GPT-2 'gpt2' is not on this machine") and "Traceback" not in error
