"""The precision chosen per machine (hardware facts injected), the bfloat16 output layer, and bfloat16
training that learns as float32 does."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from gpt_keras.core.config import GPTConfig
from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.runs.optimizer import training_optimizer
from gpt_keras.runs.precision import GPU, HardwareFacts, choose_precision, detect_hardware
from gpt_keras.runs.train import PRECISION, configure_precision, train
from tests.conftest import tiny_config, trained_beside_the_lecture_loss

PLAIN_CPU = HardwareFacts(cpu_flags=frozenset({"avx2", "fma"}))
BF16_CPU = HardwareFacts(cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}))
AMX_CPU = HardwareFacts(cpu_flags=frozenset({"avx512f", "amx_tile", "amx_bf16"}))
T4 = GPU("Tesla T4", (7, 5))
V100 = GPU("Tesla V100-SXM2-16GB", (7, 0))
A100 = GPU("NVIDIA A100-SXM4-40GB", (8, 0))
H100 = GPU("NVIDIA H100 80GB HBM3", (9, 0))


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("facts, policy, output, scaling, jit", [
    (PLAIN_CPU, "float32", "float32", False, False),
    (BF16_CPU, "mixed_bfloat16", "mixed_bfloat16", False, False),
    (AMX_CPU, "mixed_bfloat16", "mixed_bfloat16", False, False),
    (HardwareFacts(BF16_CPU.cpu_flags, backend="jax"), "float32", "float32", False, "auto"),  # XLA CPU: no bf16 units
    (HardwareFacts(PLAIN_CPU.cpu_flags, (A100,)), "mixed_bfloat16", "mixed_bfloat16", False, "auto"),
    (HardwareFacts(PLAIN_CPU.cpu_flags, (H100,), backend="jax"), "mixed_bfloat16", "mixed_bfloat16", False, "auto"),
    (HardwareFacts(BF16_CPU.cpu_flags, (T4,)), "mixed_float16", "mixed_float16", True, "auto"),
    (HardwareFacts(PLAIN_CPU.cpu_flags, (V100,)), "mixed_float16", "mixed_float16", True, "auto"),
    (HardwareFacts(PLAIN_CPU.cpu_flags, (A100, T4)), "mixed_float16", "mixed_float16", True, "auto"),  # the weakest
    (HardwareFacts(gpus=(GPU("unknown GPU", None),)), "mixed_float16", "mixed_float16", True, "auto"),
])
def test_auto_chooses_per_machine(facts, policy, output, scaling, jit):
    choice = choose_precision(facts)
    assert (choice.policy, choice.output_dtype, choice.loss_scaling, choice.jit) == (policy, output, scaling, jit)
    assert choice.reason and choice.policy in choice.describe()


def test_the_reason_names_what_was_found():
    assert "avx512_bf16" in choose_precision(BF16_CPU).reason
    assert "Tesla T4" in choose_precision(HardwareFacts(gpus=(T4,))).reason and "7.5" in choose_precision(
        HardwareFacts(gpus=(T4,))).reason


def test_off_keeps_the_lecture_float32_and_on_forces_mixed_precision():
    for facts in (BF16_CPU, HardwareFacts(gpus=(A100,)), HardwareFacts(gpus=(T4,))):
        assert choose_precision(facts, "off").policy == "float32"
        assert choose_precision(facts, "off").output_dtype == "float32"
    assert choose_precision(PLAIN_CPU, "on").policy == "mixed_bfloat16"
    assert choose_precision(HardwareFacts(gpus=(T4,)), "on").policy == "mixed_float16"
    assert choose_precision(BF16_CPU, "auto", "on").jit is True
    assert choose_precision(HardwareFacts(gpus=(A100,)), "auto", "off").jit is False
    with pytest.raises(ValueError, match="mixed_precision must be one of auto, off, bfloat16, float16, on"):
        choose_precision(PLAIN_CPU, "fp8")


def test_each_precision_can_be_asked_for_by_name_on_any_machine():
    for facts in (PLAIN_CPU, BF16_CPU, HardwareFacts(gpus=(A100,)), HardwareFacts(gpus=(T4,))):
        bfloat16, float16 = choose_precision(facts, "bfloat16"), choose_precision(facts, "float16")
        assert (bfloat16.policy, bfloat16.loss_scaling) == ("mixed_bfloat16", False)
        assert (float16.policy, float16.loss_scaling) == ("mixed_float16", True)


def test_configure_precision_chooses_for_the_injected_machine_and_leaves_the_global_policy_alone():
    config = tiny_config(mixed_precision="auto")
    assert configure_precision(config, BF16_CPU).policy == "mixed_bfloat16"
    assert configure_precision(config, PLAIN_CPU).policy == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_the_bfloat16_output_layer_keeps_names_parameters_and_a_float32_softmax():
    model = build_gpt(GPTConfig(), "mixed_bfloat16")
    assert model.count_params() == 5_809_168
    assert [layer.name for layer in model.layers] == ["tokens", "embedding", "transformer_block", "probabilities"]
    output = model.get_layer("probabilities")
    assert output.compute_dtype == "bfloat16" and output.variable_dtype == "float32"
    probs, attention = model(np.arange(1, 11, dtype="int32")[None])
    assert probs.dtype == "float32" and tuple(probs.shape) == (1, 10, 10_000)
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-5)


def test_float16_with_loss_scaling_wraps_adam():
    config = tiny_config()
    choice = choose_precision(HardwareFacts(gpus=(T4,)), "auto", "off")
    model = compile_gpt(build_gpt(config, choice.policy), config, choice.jit, loss_scaling=choice.loss_scaling)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("probabilities").compute_dtype == "float16"


def _losses(policy: str, output_dtype: str, tokens: np.ndarray, steps: int) -> list[float]:
    config = tiny_config(vocab_size=int(tokens.max()) + 1, max_len=tokens.shape[1] - 1)
    keras.utils.set_random_seed(0)
    # training's own optimizer (`FusedAdam`) and loss, as `gpt-keras train` compiles them
    model = compile_gpt(build_gpt(config, policy, output_dtype), config, jit_compile=False,
                        optimizer=training_optimizer(config))
    x, y = tokens[:, :-1], tokens[:, 1:]
    return [float(model.train_on_batch(x[i % 4 * 16:(i % 4 + 1) * 16], y[i % 4 * 16:(i % 4 + 1) * 16]))
            for i in range(steps)]


def test_bfloat16_training_lowers_the_loss_as_float32_does():
    rng = np.random.default_rng(0)
    # A learnable language: each next token is a fixed function of the current one, plus a little noise.
    successor = rng.permutation(200)
    tokens = np.zeros((64, 25), np.int32)
    tokens[:, 0] = rng.integers(0, 200, 64)
    for column in range(1, 25):
        tokens[:, column] = successor[tokens[:, column - 1]]
    float32 = _losses("float32", "float32", tokens, 60)
    bfloat16 = _losses("mixed_bfloat16", "mixed_bfloat16", tokens, 60)
    assert abs(bfloat16[0] - float32[0]) < 0.05 * float32[0]  # same start (same seed, same weights)
    assert float32[-1] < 0.5 * float32[0] and bfloat16[-1] < 0.5 * bfloat16[0]
    assert bfloat16[-1] == pytest.approx(float32[-1], rel=0.15)


def test_training_prints_and_records_its_precision(tmp_path, small_json):
    said = []
    expected = choose_precision(detect_hardware(), "on")  # bfloat16 here; float16 on a GPU without it
    result = train(tiny_config(mixed_precision="on"), small_json, runs_dir=tmp_path, print_fn=said.append, verbose=0)
    recorded = json.loads((result.run_dir / PRECISION).read_text())
    assert recorded["policy"] == expected.policy != "float32" and recorded["mixed_precision"] == "on"
    assert any(line.startswith(f"Precision: {expected.policy}") for line in said)
    assert result.model.get_layer("probabilities").compute_dtype == expected.policy.removeprefix("mixed_")
    assert np.isfinite(result.history["loss"]).all()


def test_next_token_cross_entropy_equals_keras_loss_on_probabilities():
    from gpt_keras.core.fast import NextTokenCrossEntropy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 50)).astype("float32") * 4
    logits[0, 0, 5] = -60.0  # a probability below Keras' epsilon: both clip it
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    targets = rng.integers(0, 50, (3, 7))
    targets[0, 0] = 5
    expected = float(keras.losses.SparseCategoricalCrossentropy()(targets, probs))
    assert float(NextTokenCrossEntropy()(targets, probs)) == pytest.approx(expected, rel=1e-5)


def test_bfloat16_training_with_our_loss_is_training_with_the_lecture_loss():
    """In mixed_bfloat16 (the default here), `compile_gpt`'s loss, which writes the output layer's backward pass
    in bfloat16 itself, trains as Keras' `SparseCategoricalCrossentropy()` on the probabilities."""
    config = tiny_config(dropout_rate=0.0)  # no dropout: the two models draw no random masks
    ours, lecture, histories = trained_beside_the_lecture_loss(config, "mixed_bfloat16")
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-3)
    kernels = [np.asarray(model.get_layer("probabilities").kernel) for model in (ours, lecture)]
    # bfloat16 gradients round differently in the two losses: within a fraction of one Adam step
    assert np.abs(kernels[0] - kernels[1]).max() < 0.5 * config.learning_rate
