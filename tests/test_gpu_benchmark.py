"""benchmarks/gpu_benchmark.py runs on JAX with TensorFlow unimportable (as on a GPU machine without it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpt_keras.runs.batches import save_tokens
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.mark.release  # the benchmark script end to end in a JAX subprocess (about 15 s); its arithmetic is tested here
def test_the_gpu_benchmark_trains_and_generates_without_tensorflow(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 300, (256, 25)).astype(np.int32)
    tokens[:, 18:] = 0  # padding after 18 words
    words = ["", "[UNK]", "wine", "review"] + [f"w{i}" for i in range(296)]
    save_tokens(tmp_path / "tokens.npz", tokens, words)
    script = textwrap.dedent(f"""
        import runpy, sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow fails
        sys.argv = ["gpu_benchmark.py", "--tokens", {str(tmp_path / 'tokens.npz')!r}, "--tiny", "--steps", "3",
                    "--warmup", "2", "--repeats", "1", "--json", {str(tmp_path / 'figures.json')!r}]
        runpy.run_path({str(REPO / 'benchmarks' / 'gpu_benchmark.py')!r}, run_name="__main__")
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TensorFlow imported: no" in done.stdout
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["ms_per_step"] > 0 and figures["tokens_per_s"] > figures["word_tokens_per_s"] > 0
    assert figures["max_len"] == 24 and figures["batch_size"] == 32
    assert figures["generation"]["ms_per_token"] > 0
    assert figures["share_of_peak"] is None  # a CPU is not in the GPU table


def test_peak_lookup_and_flops_per_step():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_benchmark
    from gpt_keras.core.config import GPTConfig

    assert gpu_benchmark.peak_tflops("gpu: NVIDIA H200") == 989.0
    assert gpu_benchmark.peak_tflops("gpu: Tesla T4") == 65.0
    assert gpu_benchmark.peak_tflops("gpu: NVIDIA L4") == 121.0
    assert gpu_benchmark.peak_tflops("cpu: cpu") is None
    config = GPTConfig()
    matmuls = 5_809_168 - 2_580_480
    attention = 3 * 2 * 2 * 80 ** 2 * 2 * 256 * 32
    assert gpu_benchmark.flops_per_step(config, matmuls, 32) == 6.0 * matmuls * 32 * 80 + attention
