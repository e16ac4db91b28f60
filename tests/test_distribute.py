"""Training past one device: MirroredStrategy over two logical CPUs, and two worker processes on
127.0.0.1 with MultiWorkerMirroredStrategy, both with `batch_size` as the global batch."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gpt_keras.runs import distribute
from gpt_keras.runs import rundir as runs
from gpt_keras.runs.train import train
from tests.conftest import cli


REVIEWS = 400  # small_json
BATCH = 22  # 400 = 18 * 22 + 4: each full batch splits 11 + 11, the last one 2 + 2


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **extra}


# --- the cluster description ---------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster' object"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "cluster.worker must be a non-empty"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task.type must name a job"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "task.index must be 0 to 1 for the 2 worker address(es), got 2"),
])
def test_a_bad_tf_config_is_named(text, message):
    with pytest.raises(distribute.DistributeError) as error:
        distribute.check_tf_config(text)
    assert message in str(error.value)


def test_train_with_multiworker_and_no_tf_config_is_one_line_and_exit_2(tmp_path, small_json, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = cli("train", "--strategy", "multiworker", "--data", small_json, "--runs-dir", tmp_path / "runs")
    assert result.code == 2
    assert "--strategy multiworker: TF_CONFIG is not set" in result.err and "Traceback" not in result.err
    assert len(result.error_lines) == 1
    assert not (tmp_path / "runs").exists()


def test_only_worker_0_or_the_chief_is_chief():
    import tensorflow as tf

    def resolver(cluster, task_type, task_id):
        return tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)

    class Strategy:  # is_chief reads only the strategy's cluster resolver
        def __init__(self, cluster_resolver):
            self.cluster_resolver = cluster_resolver

    workers = {"worker": ["a:1", "b:1"]}
    assert distribute.is_chief(None)
    assert distribute.is_chief(Strategy(resolver(workers, "worker", 0)))
    assert not distribute.is_chief(Strategy(resolver(workers, "worker", 1)))
    with_chief = {"chief": ["c:1"], **workers}
    assert distribute.is_chief(Strategy(resolver(with_chief, "chief", 0)))
    assert not distribute.is_chief(Strategy(resolver(with_chief, "worker", 0)))
    assert distribute.task_name(Strategy(resolver(workers, "worker", 1))) == "worker-1"


# --- MirroredStrategy over two logical CPU devices --------------------------------------------------

MIRRORED = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np
from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.tools.cli import make_strategy
from gpt_keras.core.config import GPTConfig
from gpt_keras.core.generation import CachedGenerator
from gpt_keras.core.sampling import Sampler
from gpt_keras.runs.train import train

data, runs_dir, config = sys.argv[1], sys.argv[2], GPTConfig.from_dict(json.loads(sys.argv[3]))
strategy = make_strategy("mirrored")  # no GPU: every logical CPU device
traces = []
import keras
original = keras.Model.train_step
def counting_train_step(self, data):  # runs only while tf.function traces, once per replica
    traces.append(1)
    return original(self, data)
keras.Model.train_step = counting_train_step
class TracesPerEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = []
    def on_epoch_end(self, epoch, logs=None):
        self.counts.append(len(traces))
per_epoch = TracesPerEpoch()
import gpt_keras.runs.train as train_module
original_fit = keras.Model.fit
def fit_with_counter(self, *args, callbacks=(), **kwargs):
    return original_fit(self, *args, callbacks=[*callbacks, per_epoch], **kwargs)
keras.Model.fit = fit_with_counter
result = train(config, data, runs_dir=runs_dir, run_name="mirrored", strategy=strategy, print_fn=None, verbose=0)

generator = TextGenerator(result.text_generator.vocab, seed=0, print_fn=None, every_epoch=False)
generator.set_model(result.model)
generator.generate("wine review : italy", max_tokens=16, temperature=1.0)
probe = np.arange(2 * config.max_len, dtype=np.int32).reshape(2, config.max_len) % 50
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "devices": list(strategy.extended.worker_devices),
    "variable_type": type(result.model.trainable_variables[0].value).__name__,
    "history": result.history,
    "global_step": json.load(open(result.run_dir / "state.json"))["global_step"],
    "traces_per_epoch": per_epoch.counts,
    "cached_text": generator.last_text,
    "probe": np.asarray(result.model.predict(probe, verbose=0)[0]).tolist(),
}))
"""


@pytest.fixture(scope="session")  # one training process, even when the tests are shuffled
def mirrored(tmp_path_factory, small_json):
    from tests.conftest import tiny_config

    tmp = tmp_path_factory.mktemp("mirrored")
    config = tiny_config(batch_size=BATCH, epochs=3)
    process = subprocess.run([sys.executable, "-c", MIRRORED, str(small_json), str(tmp), json.dumps(config.to_dict())],
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1]), tmp / "mirrored", config


@pytest.mark.slow  # the mirrored training process
def test_mirrored_splits_each_global_batch_over_two_cpu_replicas(mirrored):
    report, _, config = mirrored
    assert report["replicas"] == 2 and len(report["devices"]) == 2
    assert report["variable_type"] == "MirroredVariable"
    # batch_size is global: an epoch is ceil(N / batch) steps, as on one device (each replica gets ~half).
    assert report["global_step"] == config.epochs * math.ceil(REVIEWS / BATCH)


@pytest.mark.slow  # the mirrored training process
def test_mirrored_training_lowers_the_loss_without_retracing(mirrored):
    report, _, _ = mirrored
    losses = report["history"]["loss"]
    assert losses[0] > losses[1] > losses[2]
    counts = report["traces_per_epoch"]
    assert counts[0] == 2  # traced once per replica in the first epoch...
    assert counts == [counts[0]] * 3  # ...and never again


@pytest.mark.slow  # the mirrored training process
def test_a_mirrored_run_reloads_and_generates_like_the_training_process(mirrored):
    from gpt_keras.core.callbacks import TextGenerator

    report, run_dir, _ = mirrored
    run = runs.load_run(run_dir)
    probe = np.arange(2 * run.config.max_len, dtype=np.int32).reshape(2, run.config.max_len) % 50
    np.testing.assert_allclose(run.model.predict(probe, verbose=0)[0], report["probe"], rtol=1e-5, atol=1e-6)
    generator = TextGenerator(run.vocab, seed=0, print_fn=None, every_epoch=False)
    generator.set_model(run.model)
    generator.generate("wine review : italy", max_tokens=16, temperature=1.0)
    assert generator.last_text == report["cached_text"]  # the cached decoder ran on the mirrored variables


# --- two worker processes on 127.0.0.1 -----------------------------------------------------------

def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_cluster(args, tmp_path, name, timeout=150):
    """Starts one `gpt-keras train --strategy multiworker` per worker; kills all of them after `timeout`."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes, logs = [], []
    for index in range(2):
        scratch = tmp_path / f"{name}-tmp-{index}"
        scratch.mkdir()
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        log = open(tmp_path / f"{name}-worker-{index}.log", "w+")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "gpt_keras.tools.cli", "train", "--strategy", "multiworker", "--quiet", *map(str, args)],
            stdout=log, stderr=subprocess.STDOUT, env=_env(TF_CONFIG=tf_config, TMPDIR=str(scratch)),
            cwd=tmp_path, start_new_session=True))
        logs.append(log)
    deadline = time.monotonic() + timeout
    try:
        codes = [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    if codes is None:
        pytest.fail(f"the two workers did not finish in {timeout} s and were killed; their last output:\n"
                    + "\n".join(f"--- worker {i}:\n{out[-1500:]}" for i, out in enumerate(outputs)))
    return codes, outputs


@pytest.mark.release  # two worker processes, each starting TensorFlow, twice
def test_two_workers_train_one_run_written_by_the_chief_only(tmp_path, small_json):
    from tests.conftest import tiny_config

    config = tiny_config(batch_size=BATCH, epochs=2)
    flags = [item for field in ("vocab_size", "max_len", "embedding_dim", "key_dim", "feed_forward_dim",
                                "batch_size", "epochs", "generate_max_tokens")
             for item in ("--" + field.replace("_", "-"), getattr(config, field))]
    codes, outputs = run_cluster(["--data", small_json, "--runs-dir", "runs", "--name", "mw", *flags], tmp_path,
                                 "train")
    assert codes == [0, 0], outputs
    assert "Run saved in" in outputs[0] and "the chief worker saved the run" in outputs[1]
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["mw"]
    # the other worker trained in a temporary directory and deleted it
    assert f"this worker's copy goes to {tmp_path / 'train-tmp-1' / 'gpt-keras-worker-1-'}" in outputs[1]
    assert not list((tmp_path / "train-tmp-1").iterdir())
    run_dir = tmp_path / "runs" / "mw"
    state = runs.RunState.read(run_dir)
    assert state.epoch == 2 and state.global_step == 2 * math.ceil(REVIEWS / BATCH)
    losses = state.history["loss"]
    assert losses[1] < losses[0] < math.log(config.vocab_size)
    run = runs.load_run(run_dir)
    assert run.text_generator(seed=0, print_fn=None).generate("wine review : us", max_tokens=10, temperature=1.0)

    # --resume in a cluster: the chief continues the run, the other worker a temporary copy of it
    codes, outputs = run_cluster(["--resume", "--run", run_dir, "--epochs", 3], tmp_path, "resume")
    assert codes == [0, 0], outputs
    state = runs.RunState.read(run_dir)
    assert state.epoch == 3 and state.global_step == 3 * math.ceil(REVIEWS / BATCH)
    assert len(state.history["loss"]) == 3 and state.history["loss"][2] < losses[1]
    assert f"Resuming {tmp_path / 'resume-tmp-1' / 'gpt-keras-worker-1-'}" in outputs[1]
    assert not list((tmp_path / "resume-tmp-1").iterdir())


def test_a_global_batch_that_does_not_split_over_the_replicas_is_refused_before_training(tmp_path, small_json):
    class TwoReplicas:  # what train reads of a strategy before anything else: its replica count
        num_replicas_in_sync = 2

    from gpt_keras.core.config import ConfigError
    from tests.conftest import tiny_config

    with pytest.raises(ConfigError, match="batch_size 21 does not split evenly over the 2 replicas"):
        train(tiny_config(batch_size=21), small_json, runs_dir=tmp_path / "runs", strategy=TwoReplicas(),
              print_fn=None, verbose=0)
    assert not (tmp_path / "runs").exists()


DATA_PARALLEL = """
import json, sys
from gpt_keras.core.config import GPTConfig
from gpt_keras.runs import distribute
from gpt_keras.runs.train import train

data, runs_dir, config = sys.argv[1], sys.argv[2], GPTConfig.from_dict(json.loads(sys.argv[3]))
strategy = distribute.data_parallel()
result = train(config, data, runs_dir=runs_dir, run_name="dp", strategy=strategy, print_fn=None, verbose=0)
kernel = result.model.get_layer("probabilities").kernel.value
print(json.dumps({"replicas": distribute.replica_count(strategy), "history": result.history,
                  "kernel_devices": len(kernel.sharding.device_set), "saved": (result.run_dir / "model.keras").is_file()}))
"""


@pytest.mark.release  # a JAX training process of its own (about 30 s); the mirrored TensorFlow test stays in make test
def test_keras_data_parallel_on_jax_splits_each_batch_over_two_devices(tmp_path, small_json):
    """Keras 3's public `keras.distribution.DataParallel`, two CPU devices of one JAX process, no patch."""
    from tests.conftest import tiny_config

    config = tiny_config(batch_size=BATCH, epochs=2)
    process = subprocess.run([sys.executable, "-c", DATA_PARALLEL, str(small_json), str(tmp_path), json.dumps(config.to_dict())],
                             capture_output=True, text=True, timeout=300,
                             env=_env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["kernel_devices"] == 2 and report["saved"]
    losses = report["history"]["loss"]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses) and losses[1] < losses[0]


def test_data_parallel_on_tensorflow_names_the_backend_to_use(tmp_path, small_json):
    import keras

    assert keras.backend.backend() == "tensorflow"  # this suite's backend (make test-jax runs none of this file)
    result = cli("train", "--data", small_json, "--strategy", "data-parallel", "--runs-dir", tmp_path / "runs")
    assert result.code == 2
    assert "--strategy data-parallel: data-parallel runs on the JAX backend" in result.err
    assert len(result.error_lines) == 1
    assert not (tmp_path / "runs").exists()
