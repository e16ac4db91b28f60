"""Every run the trainer makes works in every tool: one matrix of precisions by consumers.

The trainer makes runs in float32 (`--mixed-precision off`), mixed_bfloat16, mixed_float16 (with loss
scaling) and whatever "auto" picks on this machine; `cli_default_run` is one made by the command line
with its own defaults. Each consumer of a run (loading it, Keras' own `load_model`, both generation
loops, `print_probs` in text, HTML and heatmap, the temperature experiment, the lab's handlers, resume,
the held-out scores of `compare`, the notebook's hand-over of weights) is run on each of them. The runs
are trained once per session (tests/conftest.py). tests/README.md has the table of axes this covers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PRECISIONS, REPO, cli, copy_run

OLD_RELEASE_RUN = REPO / "tests" / "data" / "run-0.2.0-bfloat16"  # saved by gpt-keras 0.2.0 (inner layers float32)
POLICY = {"off": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}

pytestmark = pytest.mark.slow


def expected_policy(result) -> str:
    """The policy a run was trained in, as its precision.json records it."""
    return json.loads((Path(result.run_dir) / "precision.json").read_text())["policy"]


def layer_policies(model) -> set[str]:
    """The dtype policies of the model's layers and of every sub-layer they build (the input layer aside)."""
    from gpt_keras.core.layers import TransformerBlock

    embedding = model.get_layer("embedding")
    layers = [embedding, embedding.token_emb, embedding.pos_emb, model.get_layer("probabilities")]
    for block in (layer for layer in model.layers if isinstance(layer, TransformerBlock)):
        attention = block.attn
        layers += [block, attention, attention.query_dense, attention.key_dense, attention.value_dense,
                   attention.output_dense, block.dropout_1, block.ln_1, block.ffn_1, block.ffn_2, block.dropout_2,
                   block.ln_2]
    return {layer.dtype_policy.name for layer in layers}


def assert_distribution(probs) -> None:
    probs = np.asarray(probs, np.float64)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-3)


@pytest.fixture(params=PRECISIONS)
def run_result(request, run_in):
    import keras

    if keras.backend.backend() == "jax" and request.param != "auto":
        pytest.skip(f"on JAX the matrix trains 'auto' (float32 there) only: a mixed-precision run loads and "
                    "generates on JAX in test_a_run_saved_by_the_previous_release_... (bfloat16); "
                    f"{request.param!r} runs are trained and tested on TensorFlow")
    return run_in(request.param)


# --- loading -----------------------------------------------------------------------------------------

@pytest.mark.backend_agnostic
def test_a_run_reloads_with_the_policies_it_was_trained_in_and_runs(run_result):
    from gpt_keras.runs.rundir import load_run

    run = load_run(run_result.run_dir)
    assert layer_policies(run.model) == {expected_policy(run_result)}
    probs, attention = run.model(np.array([[2, 3, 4, 5]], np.int32))
    assert_distribution(probs)
    assert tuple(attention.shape) == (1, run.config.n_heads, 4, 4)


def test_keras_load_model_and_predict_need_nothing_but_import_gpt_keras(run_in, cli_default_run):
    paths = [run_in(precision).run_dir / "model.keras" for precision in PRECISIONS]
    paths += [cli_default_run / "model.keras", OLD_RELEASE_RUN / "model.keras"]
    code = ("import sys, numpy as np, gpt_keras, keras\n"
            "for path in sys.argv[1:]:\n"
            "    probs, attention = keras.saving.load_model(path).predict(np.array([[2, 3, 4]]), verbose=0)\n"
            "    assert np.isfinite(probs).all() and abs(float(probs[0, -1].sum()) - 1) < 1e-3, path\n"
            "    print('ok', path)\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ok ") == len(paths)


@pytest.mark.backend_agnostic
def test_a_run_saved_by_the_previous_release_loads_and_runs_in_its_own_precision():
    """0.2.0 built the block's sub-layers without the parent's policy: they reload in it now."""
    from gpt_keras.runs.rundir import load_run

    run = load_run(OLD_RELEASE_RUN)
    assert layer_policies(run.model) == {"mixed_bfloat16"}
    probs, _ = run.model.predict(np.array([[2, 3, 4, 5]]), verbose=0)
    assert_distribution(probs[0])
    info = run.text_generator(seed=0, print_fn=None, method="lecture").generate("wine review", max_tokens=8, temperature=1.0)
    assert info and all(np.isfinite(step["word_probs"]).all() for step in info)


# --- generation and looking inside ------------------------------------------------------------------

@pytest.mark.backend_agnostic
def test_both_generation_loops_agree_on_every_run(run_result):
    """Same seed, same words in float32; under mixed precision the two loops round differently (the cached
    decoder is compiled, the lecture's loop is `model.predict`), so their distributions agree to bfloat16's
    precision and a near-tie may be drawn differently."""
    from gpt_keras.runs.rundir import load_run

    run = load_run(run_result.run_dir)
    steps = {method: run.text_generator(seed=3, print_fn=None, method=method).generate(
        "wine review :", max_tokens=10, temperature=1.0) for method in ("cached", "lecture")}
    for info in steps.values():
        assert info
        for step in info:
            assert_distribution(step["word_probs"])
            assert np.isfinite(step["atts"]).all()
    first_cached, first_lecture = steps["cached"][0]["word_probs"], steps["lecture"][0]["word_probs"]
    if expected_policy(run_result) == "float32":
        assert [s["word"] for s in steps["cached"]] == [s["word"] for s in steps["lecture"]]
        np.testing.assert_allclose(first_cached, first_lecture, atol=1e-5)
    else:
        np.testing.assert_allclose(first_cached, first_lecture, atol=0.02)


def test_generate_with_print_probs_html_and_heatmap_on_every_run(run_result, tmp_path):
    html, heatmap = tmp_path / "view.html", tmp_path / "attention.png"
    for method in ("cached", "lecture"):
        result = cli("generate", "--run", run_result.run_dir, "--method", method, "--seed", "0", "--max-tokens", 8,
                     "--show-probs", "--html", html, "--heatmap", heatmap)
        assert result.code == 0, result.err
        assert "%" in result.out and "Traceback" not in result.err
    assert "rgba(135,206,250," in html.read_text(encoding="utf-8")
    assert heatmap.read_bytes().startswith(b"\x89PNG")


def test_the_command_lines_default_run_works_in_generate_and_temperature(cli_default_run, tmp_path):
    recorded = json.loads((cli_default_run / "precision.json").read_text())
    from gpt_keras.runs.precision import choose_precision, detect_hardware

    assert recorded["mixed_precision"] == "auto"
    assert recorded["policy"] == choose_precision(detect_hardware(), "auto").policy
    for method in ("cached", "lecture"):
        result = cli("generate", "--run", cli_default_run, "--method", method, "--seed", "0", "--max-tokens", 8,
                     "--show-probs", "--html", tmp_path / f"{method}.html")
        assert result.code == 0, result.err
    result = cli("temperature", "--run", cli_default_run, "--samples", 2, "--max-tokens", 8,
                 "--out", tmp_path / "sweep")
    assert result.code == 0, result.err


def test_the_temperature_experiment_on_every_run(run_result, tmp_path):
    result = cli("temperature", "--run", run_result.run_dir, "--temperatures", "0.5", "1", "3", "--samples", 2,
                 "--max-tokens", 8, "--out", tmp_path / "sweep")
    assert result.code == 0, result.err
    written = sorted(path.name for path in (tmp_path / "sweep").iterdir())
    assert any(name.endswith(".csv") for name in written), written


# --- the lab's handlers ---------------------------------------------------------------------------------

def test_the_labs_handlers_on_every_run(run_result):
    from gpt_keras.runs.rundir import load_run
    from gpt_keras.tools import lab as lab_lib

    lab = lab_lib.Lab.from_run(load_run(run_result.run_dir))
    bars, attention, message = lab.redraw("wine review : germany :", 1.5)
    assert "lab-bar" in bars and 'data-shade="1.000"' in attention and "lab-error" not in message
    steps = lab.sample("wine review : germany :", 1.0, seed=0, max_tokens=10)
    assert steps and all(np.isfinite(step.attention).all() and step.bars for step in steps)
    compared = lab_lib.compare_html("wine review", [(t, lab.sample("wine review", t, 0, 8)) for t in (0.5, 3.0)])
    assert compared.count("lab-compare-column") == 2
    clicked = lab_lib.bars_html(steps[0].bars, "step 1")  # what clicking the first sampled word draws
    assert "lab-bar" in clicked


def test_an_unexpected_failure_in_the_lab_is_one_line_on_the_page():
    from gpt_keras.tools import lab as lab_lib

    def broken(*_):
        raise ValueError("Tensor must be bfloat16,\nnot float32")

    handler = lab_lib._guarded(broken, 3, 2)
    distribution, attention, message = handler("wine review", 1.0)
    assert (distribution, attention) == ("", "")
    assert "the model could not answer (ValueError: Tensor must be bfloat16, not float32)" in message
    assert "\n" not in message


# --- resume, held-out scores, the notebook --------------------------------------------------------------

def test_resume_continues_in_the_runs_own_precision_and_says_so(run_in, tmp_path):
    """A float16 run (as a T4 makes with "auto") resumed here keeps float16, though "auto" here picks otherwise."""
    run_dir = copy_run(run_in("float16"), tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "mixed_precision": "auto"}))
    result = cli("train", "--resume", "--run", run_dir, "--epochs", 3, "--quiet")
    assert result.code == 0, result.err
    assert "Precision: mixed_float16, the run's own" in result.out
    from gpt_keras.runs.rundir import load_run

    assert layer_policies(load_run(run_dir).model) == {"mixed_float16"}
    assert len(json.loads((run_dir / "history.json").read_text())["loss"]) == 3


def test_validation_loss_and_perplexity_are_finite_in_every_precision(run_result):
    history = run_result.history
    names = [name for name in history if name.startswith("val_")]
    assert "val_loss" in names and any(name.endswith("perplexity") for name in names), history.keys()
    assert all(np.isfinite(history[name]).all() for name in ["loss", *names])


@pytest.mark.parametrize("precision", ["auto", "float16"])
def test_compare_scores_held_out_reviews_beside_a_local_gpt2(run_in, precision, small_json, tmp_path):
    pytest.importorskip("transformers", reason='the GPT-2 extra is not installed: pip install "gpt-keras[gpt2]"')
    from tests.test_gpt2 import build_tiny_gpt2
    from gpt_keras.runs.datasets import load_texts

    gpt2_dir = build_tiny_gpt2(tmp_path / "gpt2", load_texts(small_json)[0])
    result = cli("compare", "--run", run_in(precision).run_dir, "--gpt2", gpt2_dir, "--data", small_json,
                 "--heldout", 10, "--max-new-tokens", 5, "--report", tmp_path / "report")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "report.json").read_text())
    assert "nan" not in json.dumps(report).lower()


def test_the_notebooks_hand_over_of_weights_works_from_every_run(run_result):
    """The notebook copies its trained weights into the package's model (`fast_gpt.set_weights(...)`)."""
    import nbformat

    from gpt_keras.core.generation import CachedGenerator
    from gpt_keras.core.model import build_gpt
    from gpt_keras.core.sampling import Sampler
    from gpt_keras.runs.rundir import load_run

    notebook = nbformat.read(REPO / "notebooks" / "gpt_listo_para_entrenar.ipynb", as_version=4)
    assert any("fast_gpt.set_weights(gpt.get_weights())" in cell.source for cell in notebook.cells)
    run = load_run(run_result.run_dir)
    fast_gpt = build_gpt(run.config)
    fast_gpt.set_weights(run.model.get_weights())
    info, _ = CachedGenerator(fast_gpt, run.vocab).generate("wine review", 8, Sampler(1.0), np.random.default_rng(0))
    assert info and all(np.isfinite(step["word_probs"]).all() for step in info)


def test_a_model_that_fails_in_the_lab_shows_one_line_beside_the_control_in_a_browser(trained_run):
    """The default run served; then its model starts failing (as a run whose files no longer fit would):
    the message appears beside what was used (the prompt box, the sample button), never a blank panel."""
    pytest.importorskip("gradio", reason='the lab\'s extra is not installed: pip install "gpt-keras[lab]"')
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the [dev] extra")
    from tests.test_lab import browser_executable, free_port
    from gpt_keras.tools import lab as lab_lib

    executable = browser_executable()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium; .ci/install-browser does it)")

    class FailingModel:
        def __init__(self, model):
            self.get_layer = model.get_layer

        def __call__(self, *args, **kwargs):
            raise ValueError("the model's weights no longer fit its layers")

    app = lab_lib.launch_lab(trained_run.run_dir, port=free_port(), block=False, quiet=True)
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            page.goto(app.local_url)
            page.wait_for_selector("#lab-distribution .lab-distribution", timeout=60_000)
            app.lab.model = FailingModel(app.lab.model)  # from now on, every forward pass fails
            app.lab.generator.generate = app.lab.model
            page.fill("#lab-prompt textarea", "wine review : italy :")
            page.press("#lab-prompt textarea", "Enter")
            near_prompt = page.locator("#lab-message", has_text="the model could not answer")
            near_prompt.wait_for(timeout=20_000)
            assert "weights no longer fit" in near_prompt.inner_text()
            page.click("#lab-sample")
            near_button = page.locator("#lab-sample-message", has_text="the model could not answer")
            near_button.wait_for(timeout=20_000)
            button, message = page.locator("#lab-sample").bounding_box(), near_button.bounding_box()
            assert 0 <= message["y"] - (button["y"] + button["height"]) < 120  # right under the button
            browser.close()
    finally:
        app.close()


def test_the_modules_import_gpt_keras_registers_import_only_keras():
    """`import gpt_keras` registers the layers, the loss and the metric the moment Keras is first imported,
    which may be half-way through importing any gpt_keras module: so they may import Keras (with NumPy, which
    Keras imports first, and the standard library) and the core package's name alone, never another gpt_keras
    module (that one could be the half-imported one). A function may import TensorFlow, which it reaches only
    when it runs, long after the registration."""
    import ast
    import sys

    import gpt_keras

    for name in gpt_keras.REGISTERING_MODULES:
        path = REPO / (name.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_functions = {id(node) for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
                        for node in ast.walk(function)}
        imported, imported_when_called = set(), set()
        for node in ast.walk(tree):
            names = ({alias.name for alias in node.names} if isinstance(node, ast.Import)
                     else {node.module} if isinstance(node, ast.ImportFrom) else set())
            (imported_when_called if id(node) in in_functions else imported).update(names)
        outside_the_standard_library = {module for module in imported if module.split(".")[0] not in sys.stdlib_module_names}
        assert outside_the_standard_library <= {"keras", "numpy", "gpt_keras.core"}, (name, imported)
        assert imported_when_called <= {"tensorflow"}, (name, imported_when_called)
