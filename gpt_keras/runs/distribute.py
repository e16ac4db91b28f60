"""Training past one device, for `gpt-keras train --strategy`.

`data-parallel` is Keras 3's own, public path (`keras.distribution.DataParallel`, JAX backend): the
model is replicated on every device the process sees, each batch is split between them; several
processes (hosts) join through `keras.distribution.initialize`, configured by the environment
(`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID`).

With TensorFlow, `mirrored` copies the model onto every GPU of one machine (or, on a machine without a GPU, onto
every logical CPU device the process was started with) and splits each batch between them.
`multiworker` does the same across processes, possibly on several hosts, described by the
`TF_CONFIG` environment variable. In both, `batch_size` is the global batch: one step consumes
`batch_size` reviews in all, `batch_size / replicas` on each replica, so an epoch has the same number
of steps as on one device.

Every worker runs the same training program on the same data (each keeps its share of every
batch); only the chief (worker 0, or the task of type "chief") writes the run directory, the others
write to a temporary directory they delete at the end, the standard Keras multi-worker pattern.
`fit_workarounds` works around the two Keras 3 bugs that otherwise stop a multi-worker `fit`.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import keras

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.core.config import ConfigError

TF_CONFIG = "TF_CONFIG"


class DistributeError(GPTKerasError, ValueError):
    """The cluster description (`TF_CONFIG`) is missing or malformed; the message names what is wrong."""


def data_parallel():
    """`keras.distribution.DataParallel` over every device (JAX backend; several hosts from the environment)."""
    if keras.backend.backend() != "jax":
        raise DistributeError(f"data-parallel runs on the JAX backend (KERAS_BACKEND=jax), not on "
                              f"{keras.backend.backend()}; with TensorFlow use --strategy mirrored")
    if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        keras.distribution.initialize()
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def is_keras_distribution(strategy) -> bool:
    """A Keras 3 distribution (JAX) rather than a `tf.distribute` strategy."""
    return isinstance(strategy, keras.distribution.DataParallel)


def replica_count(strategy) -> int:
    """How many devices share each global batch."""
    if strategy is None:
        return 1
    if is_keras_distribution(strategy):
        return int(strategy.device_mesh.devices.size)
    return int(strategy.num_replicas_in_sync)


def mirrored_strategy():
    """`MirroredStrategy` over every GPU, else over every logical CPU device (one replica on a plain CPU).

    TensorFlow alone mirrors onto the first CPU only when there is no GPU; taking every logical CPU
    lets a CPU machine split into several devices (`tf.config.set_logical_device_configuration`
    before TensorFlow starts) run the same data-parallel training as a multi-GPU one, which is how
    the tests check it.
    """
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus if len(cpus) > 1 else None)


def multiworker_strategy(tf_config: str | None = None):
    """`MultiWorkerMirroredStrategy` for the cluster in `TF_CONFIG` (checked first, errors name the field).

    Must be created before TensorFlow runs any operation in this process.
    """
    check_tf_config(os.environ.get(TF_CONFIG) if tf_config is None else tf_config)
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def check_tf_config(text: str | None) -> dict:
    """Parses a `TF_CONFIG` value: a cluster with a worker list and this process's task in it."""
    if not text or not text.strip():
        raise DistributeError(f"{TF_CONFIG} is not set; it describes the cluster, e.g. "
                              '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                              '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributeError(f"{TF_CONFIG} is not valid JSON ({error})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise DistributeError(f"{TF_CONFIG}: needs a 'cluster' object listing the workers' host:port addresses")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            raise DistributeError(f"{TF_CONFIG}: cluster.{job} must be a non-empty list of 'host:port' strings")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise DistributeError(f"{TF_CONFIG}: task.type must name a job of the cluster "
                              f"({', '.join(cluster)}), got {task.get('type') if isinstance(task, dict) else task!r}")
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise DistributeError(f"{TF_CONFIG}: task.index must be 0 to {len(cluster[task['type']]) - 1} "
                              f"for the {len(cluster[task['type']])} {task['type']} address(es), got {index!r}")
    return config


def is_chief(strategy) -> bool:
    """Whether this process writes the run: always without a cluster, else the chief or worker 0."""
    if is_keras_distribution(strategy):
        return _process_index() == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if strategy is None or resolver is None or task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def task_name(strategy) -> str:
    """'worker-1' for a cluster task, '' for a single process (for temporary directory names)."""
    if is_keras_distribution(strategy):
        return f"process-{_process_index()}" if _process_index() else ""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or getattr(resolver, "task_type", None) is None:
        return ""
    return f"{resolver.task_type}-{resolver.task_id}"


def _process_index() -> int:
    import jax

    return jax.process_index()


def dataset_options():
    """Shard each global batch by element between the workers (the reviews come from memory, not
    from files, so file sharding would fail over to this anyway, with a warning per run)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


# Keras versions whose `fit` fails under `MultiWorkerMirroredStrategy` without the workaround below.
_MULTIWORKER_BUG_VERSIONS = ((3, 0), (3, 16))


@contextlib.contextmanager
def fit_workarounds(strategy) -> Iterator[None]:
    """Runs `model.fit` unchanged, except under a multi-worker strategy on an affected Keras version.

    Keras 3 (checked up to 3.15) cannot `fit` under `MultiWorkerMirroredStrategy`: before the first
    step it builds the model from a batch averaged over the replicas, a collective on a per-replica
    value that fails, and it averages each logged scalar with `reduce(MEAN, axis=0)`, invalid for a
    scalar (keras-team/keras#20585, tensorflow/tensorflow#72388). The workaround swaps two methods of
    Keras' TensorFlow trainer for the duration of this `fit` only, and puts them back afterwards; it
    is refused on a Keras version it was not checked against. Without a strategy, or under
    `MirroredStrategy` on one machine, Keras' own code runs untouched.
    """
    if not _is_multiworker(strategy):
        yield
        return
    version = tuple(int(part) for part in keras.__version__.split(".")[:2])
    if not _MULTIWORKER_BUG_VERSIONS[0] <= version < _MULTIWORKER_BUG_VERSIONS[1]:
        raise DistributeError(f"--strategy multiworker was checked with Keras 3.0 to 3.15, not Keras {keras.__version__}")
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is None or self._distribute_strategy is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # building needs shapes only: one replica's share of the batch
            data_batch = tree.map_structure(
                lambda value: strategy.experimental_local_results(value)[0]
                if isinstance(value, tf.distribute.DistributedValues) else value, next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean"):  # the mean over replicas, as Keras computes it on one machine
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer.TensorFlowTrainer._maybe_symbolic_build = original_build
        trainer.reduce_per_replica = original_reduce


def _is_multiworker(strategy) -> bool:
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def check_global_batch(strategy, batch_size: int) -> None:
    """The global batch must split evenly over the replicas.

    Keras builds the model from the first batch averaged over the replicas, which fails when their
    shares differ in size (21 reviews on 2 replicas: 11 and 10). An even split needs no workaround;
    the last, short batch of an epoch may still split unevenly, since by then the model is built.
    """
    replicas = replica_count(strategy)
    if batch_size % replicas:
        raise ConfigError(f"batch_size {batch_size} does not split evenly over the {replicas} replicas; "
                          f"use a multiple of {replicas} (the global batch is shared between them)")
