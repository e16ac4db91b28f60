"""The lecture's layers and model: causality, attention, parameter count, serialization."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from gpt_keras.runs import rundir as runs
from keras import ops

from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.core.layers import TokenAndPositionEmbedding, TransformerBlock, causal_attention_mask
from gpt_keras.core.model import build_gpt
from tests.conftest import tiny_config, trained_beside_the_lecture_loss

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return build_gpt(tiny_config())


def test_causal_mask_is_lower_triangular():
    mask = np.asarray(causal_attention_mask(2, 4, 4, "int32"))
    assert mask.shape == (2, 4, 4)
    np.testing.assert_array_equal(mask[1], np.tril(np.ones((4, 4), int)))
    shifted = np.asarray(causal_attention_mask(1, 2, 4, "int32"))[0]  # two queries at the end of four keys
    np.testing.assert_array_equal(shifted, [[1, 1, 1, 0], [1, 1, 1, 1]])


def test_parameter_count_at_the_lecture_defaults():
    model = build_gpt(GPTConfig())
    assert model.count_params() == 5_809_168
    counts = {layer.name: layer.count_params() for layer in model.layers}
    assert counts == {"tokens": 0, "embedding": 2_580_480, "transformer_block": 658_688, "probabilities": 2_570_000}


def test_outputs_probabilities_and_per_head_attention(tiny_model):
    tokens = np.random.default_rng(0).integers(0, 400, size=(3, 10)).astype("int32")
    probs, attention = (np.asarray(t) for t in tiny_model(tokens))
    assert probs.shape == (3, 10, 400) and attention.shape == (3, 2, 10, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    above_diagonal = np.triu(np.ones((10, 10), bool), k=1)
    assert np.all(attention[:, :, above_diagonal] == 0.0)
    assert np.all(attention[:, :, ~above_diagonal] > 0.0)


def test_changing_a_later_token_changes_no_earlier_output(tiny_model):
    tokens = np.random.default_rng(1).integers(2, 400, size=(1, 12)).astype("int32")
    changed = tokens.copy()
    changed[0, 7] = (changed[0, 7] + 1) % 400
    before, before_att = (np.asarray(t) for t in tiny_model(tokens))
    after, after_att = (np.asarray(t) for t in tiny_model(changed))
    np.testing.assert_allclose(before[0, :7], after[0, :7], atol=1e-6)
    np.testing.assert_allclose(before_att[0, :, :7], after_att[0, :, :7], atol=1e-6)
    assert np.abs(before[0, 7:] - after[0, 7:]).max() > 1e-4


def test_layers_round_trip_through_their_config():
    block = TransformerBlock(2, 8, 16, 32, dropout_rate=0.2, epsilon=1e-5, name="b")
    clone = TransformerBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    embedding = TokenAndPositionEmbedding(10, 50, 16)
    assert TokenAndPositionEmbedding.from_config(embedding.get_config()).get_config() == embedding.get_config()
    out, att = block(ops.zeros((1, 5, 16)))
    assert tuple(out.shape) == (1, 5, 16) and tuple(att.shape) == (1, 2, 5, 5)


def test_dropout_only_in_training(tiny_model):
    tokens = np.arange(2, 12, dtype="int32")[None]
    inference = [np.asarray(tiny_model(tokens, training=False)[0]) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    training = np.asarray(tiny_model(tokens, training=True)[0])
    assert np.abs(training - inference[0]).max() > 1e-6


def test_saved_model_reloads_in_a_new_process_with_identical_outputs(tmp_path, tiny_model):
    tokens = np.random.default_rng(2).integers(0, 400, size=(2, 9)).astype("int32")
    expected = np.asarray(tiny_model(tokens)[0])
    tiny_model.save(tmp_path / "m.keras")
    np.save(tmp_path / "tokens.npy", tokens)
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import gpt_keras.core.layers  # registers the custom layers
        model = keras.saving.load_model({str(tmp_path / 'm.keras')!r})
        np.save({str(tmp_path / 'out.npy')!r}, np.asarray(model(np.load({str(tmp_path / 'tokens.npy')!r}))[0]))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


@pytest.mark.parametrize("changes, message", [
    ({"vocab_size": 0}, "vocab_size must be at least 3"),
    ({"dropout_rate": 1.5}, "dropout_rate must be in [0, 1)"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"max_len": "80"}, "max_len must be an integer"),
    ({"jit_compile": "maybe"}, "jit_compile must be one of auto, on, off"),
    ({"generate_prompt": " "}, "generate_prompt must be a non-empty string"),
])
def test_invalid_config_values_name_the_field(changes, message):
    with pytest.raises(ConfigError) as error:
        GPTConfig(**changes)
    assert message in str(error.value)


def test_config_files_round_trip_and_reject_unknown_fields(tmp_path):
    config = tiny_config(seed=3)
    assert GPTConfig.from_dict(config.to_dict()) == config
    (tmp_path / "c.json").write_text('{"vocab_size": 10, "colour": "red"}')
    with pytest.raises(ConfigError, match="unknown config field"):
        runs.read_config(tmp_path / "c.json")


# the default here, in training (the probabilities the softmax rounds to bfloat16, `softmax_rounds_once`) and out of
# it (float32 probabilities); and the lecture's arithmetic
@pytest.mark.parametrize("policy, training", [("mixed_bfloat16", True), ("mixed_bfloat16", False), ("float32", True)])
def test_the_loss_differentiates_the_output_layer_as_the_lecture_loss_does(policy, training):
    """`NextTokenCrossEntropy` on `SoftmaxDense`'s probabilities (on TensorFlow it writes the output layer's
    backward pass itself, from the operands the layer attaches) gives the output layer's inputs, kernel and
    bias the gradients Keras' `SparseCategoricalCrossentropy()` gives through the float32 softmax, repeated
    targets included; exactly in float32, within bfloat16's rounding in mixed precision."""
    from gpt_keras.core.fast import OPERANDS_ATTRIBUTE, NextTokenCrossEntropy, SoftmaxDense

    rng = np.random.default_rng(1)
    layer = SoftmaxDense(50, dtype=policy)
    layer.build((None, None, 16))
    layer.set_weights([0.2 * rng.normal(size=(16, 50)).astype("float32"), 0.2 * rng.normal(size=(50,)).astype("float32")])
    inputs = rng.normal(size=(3, 7, 16)).astype("float32")
    targets = rng.integers(0, 50, (3, 7))
    targets[0, :4] = 4  # one word is the target four times: the one-hot part sums per word
    ours = _layer_gradients(layer, inputs, lambda p: NextTokenCrossEntropy()(targets, p), training)
    lecture = _layer_gradients(layer, inputs, lambda p: keras.losses.SparseCategoricalCrossentropy()(
        targets, p + 0.0))  # `+ 0.0`: a new tensor, carrying nothing from the layer
    assert hasattr(layer(inputs), OPERANDS_ATTRIBUTE) == (keras.backend.backend() == "tensorflow")
    tolerance = 1e-6 if policy == "float32" else 0.02  # bfloat16 keeps 8 bits: 0.4% of the largest gradient
    for mine, theirs in zip(ours, lecture):
        np.testing.assert_allclose(mine, theirs, atol=tolerance * np.abs(theirs).max())


def _layer_gradients(layer, inputs, loss_of_probabilities, training=False):
    """[loss, d inputs, d kernel, d bias] of loss_of_probabilities(layer(inputs)) on the current backend."""
    if keras.backend.backend() == "jax":
        import jax

        def loss(x, weights):
            with keras.StatelessScope(state_mapping=list(zip(layer.trainable_variables, weights))):
                return loss_of_probabilities(layer(x, training=training))
        weights = [variable.value for variable in layer.trainable_variables]
        value, (d_inputs, d_weights) = jax.value_and_grad(loss, argnums=(0, 1))(inputs, weights)
        return [np.asarray(t, "float32") for t in (value, d_inputs, *d_weights)]
    import tensorflow as tf

    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss_of_probabilities(layer(x, training=training))
    gradients = tape.gradient(value, [x, *layer.trainable_variables])
    return [np.asarray(t, "float32") for t in (value, *gradients)]


def test_training_probabilities_are_the_float32_softmax_rounded_once_where_the_backend_allows():
    """In training under mixed_bfloat16, TensorFlow's softmax on a CPU (oneDNN's) computes in float32 and rounds
    once, so `SoftmaxDense` takes the bfloat16 probabilities from it, which the backward pass multiplies: those
    are the float32 softmax's rounded to bfloat16. Elsewhere (JAX, or a softmax that sums in bfloat16)
    training keeps the float32 probabilities."""
    from gpt_keras.core.fast import SoftmaxDense

    layer = SoftmaxDense(10_000, dtype="mixed_bfloat16")
    layer.build((None, 16))
    inputs = np.random.default_rng(3).normal(size=(4, 16)).astype("float32")
    training, inference = (np.asarray(layer(inputs, training=flag), "float64") for flag in (True, False))
    assert layer.rounds_in_training == (keras.backend.backend() == "tensorflow")  # oneDNN's softmax, on this CPU
    if layer.rounds_in_training:
        rounded = np.asarray(keras.ops.cast(keras.ops.cast(inference.astype("float32"), "bfloat16"), "float32"))
        np.testing.assert_allclose(training, rounded, rtol=2.0 ** -7)
        assert np.abs(training - inference).max() > 0  # rounded indeed
    else:
        np.testing.assert_array_equal(training, inference)


def test_a_softmax_that_sums_in_bfloat16_keeps_training_in_float32(monkeypatch):
    """`softmax_rounds_once` refuses a bfloat16 softmax that does not compute in float32: one whose running sum is
    bfloat16 stalls at 256 (256 + 1 rounds to 256), so 10,000 equal logits would get 1/256 each, not 1e-4."""
    from gpt_keras.core import fast

    def summing_in_bfloat16(x, axis=-1):
        exponentials = keras.ops.exp(x - keras.ops.max(x, axis=axis, keepdims=True))
        return exponentials / keras.ops.minimum(keras.ops.sum(exponentials, axis=axis, keepdims=True), 256.0)

    fast.softmax_rounds_once.cache_clear()
    monkeypatch.setattr(fast.ops, "softmax", summing_in_bfloat16)
    try:
        assert not fast.softmax_rounds_once("bfloat16")
        assert not fast.softmax_rounds_once("float32")  # float32 probabilities are what training keeps anyway
    finally:
        fast.softmax_rounds_once.cache_clear()


def test_training_with_our_loss_is_training_with_the_lecture_loss():
    """`compile_gpt` (`NextTokenCrossEntropy` writing the output layer's backward pass) trains as the lecture's
    `SparseCategoricalCrossentropy()` does: the same losses and the same weights after a few steps."""
    # Keras' global policy: float32 on either backend, where the two losses agree to rounding; the default,
    # mixed_bfloat16 here, is test_precision.py's twin of this test
    ours, lecture, histories = trained_beside_the_lecture_loss(tiny_config(dropout_rate=0.0))
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    for mine, theirs in zip(ours.get_weights(), lecture.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=2e-5)


@pytest.mark.parametrize("shape", [(2, 5), (1, 1)])
def test_the_output_layer_computes_the_lecture_dense_softmax(shape):
    """`SoftmaxDense` (one matmul over all positions, softmax in float32) is `Dense(activation="softmax")`."""
    config = tiny_config()
    ours = build_gpt(config).get_layer("probabilities")
    lecture = keras.layers.Dense(config.vocab_size, activation="softmax")
    lecture.build((None, None, config.embedding_dim))
    lecture.set_weights(ours.get_weights())
    x = np.random.default_rng(0).normal(size=(*shape, config.embedding_dim)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(lecture(x)), atol=1e-6)
    assert isinstance(ours, keras.layers.Dense) and ours.count_params() == lecture.count_params()
