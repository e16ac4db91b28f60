"""The callbacks that make a training run watchable and resumable.

`RunCheckpoint` saves the model and the run's `RunState` after every epoch, `StopOnNaN` stops at the
first non-finite loss, `EpochTensorBoard` (Keras' TensorBoard callback) logs the epochs, `BatchLossSummary`
each batch's own loss and `GeneratedTextSummary` each epoch's generated text. Epoch curves and texts share
one step rule, `epoch_step`: epoch 1 is step 1 in the Scalars tab and in the Text tab.
The lecture's own callback, `TextGenerator`, lives in the lesson core (`gpt_keras.core.callbacks`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.runs.rundir import RunState, save_model


def epoch_step(epoch: int) -> int:
    """The TensorBoard step of an epoch Keras numbers from 0: epoch 1 is step 1, as the progress bar says."""
    return int(epoch) + 1


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback with the epoch curves at `epoch_step` (Keras' own uses 0 for epoch 1).

    So `epoch_loss` and the epoch's `generated_text` sit at the same step, and a teacher reading
    "epoch 1/2" in the terminal finds it at step 1 in both tabs.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch_step(epoch), logs)


class BatchLossSummary(keras.callbacks.Callback):
    """Logs the loss of every batch to TensorBoard (`batch_loss`), with a step count that survives resuming.

    Keras' own TensorBoard callback, asked for batch-level logs, writes the `loss` of its logs: the
    running mean of the epoch so far. That curve is smooth inside an epoch and jumps at every epoch
    boundary, where the mean starts again. Here each point is the loss of that batch alone, taken
    from the same tracker Keras averages: the loss tracker (`model.metrics`' "loss", a `Mean`) adds
    `loss * batch size` to its total and `batch size` to its count at every step, so the change of
    total over the change of count since the previous batch is the batch's own loss, whatever the
    batch sizes (a short last batch, batches shuffled as wholes) and under a distribution strategy
    (the tracker's variables then sum over replicas). With `steps_per_execution` > 1 a point is the
    mean of the batches of one execution. Its precision is the tracker's (float32 sums: late in a
    long epoch, about 1e-3 of the loss).

    Args:
        log_dir: the folder of the event files (the run's `logs/train`, beside Keras' epoch curves).
        initial_step: the number of batches already done; a resumed run continues from there.
        tag: the scalar's name in TensorBoard.
    """

    def __init__(self, log_dir, initial_step: int = 0, tag: str = "batch_loss"):
        super().__init__()
        self.log_dir = str(log_dir)
        self.global_step = int(initial_step)
        self.tag = tag
        self.losses: list[float] = []  # this fit's batch losses, in order (a test and a notebook read them)
        self._writer = None
        self._previous = (0.0, 0.0)

    def on_train_begin(self, logs=None):
        import tensorflow as tf  # TensorBoard's summary writer

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = _loss_tracker_sums(self.model)  # Keras resets its metrics just before this

    def on_train_batch_end(self, batch, logs=None):
        import tensorflow as tf

        total, count = _loss_tracker_sums(self.model)
        previous_total, previous_count = self._previous
        self._previous = (total, count)
        self.global_step += 1
        if count <= previous_count:
            return  # nothing was added (cannot happen in fit, but never divide by zero)
        loss = (total - previous_total) / (count - previous_count)
        self.losses.append(loss)
        with self._writer.as_default():
            tf.summary.scalar(self.tag, loss, step=self.global_step)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _loss_tracker_sums(model: keras.Model) -> tuple[float, float]:
    """(total, count) of the model's loss tracker: the weighted sum of batch losses and of batch sizes."""
    tracker = next((metric for metric in model.metrics if metric.name == "loss"), None)
    if tracker is None:
        raise ValueError("the model has no loss tracker; compile it with a loss before fit")
    values = {variable.name: float(keras.ops.convert_to_numpy(variable)) for variable in tracker.variables}
    return values["total"], values["count"]


class GeneratedTextSummary(keras.callbacks.Callback):
    """Writes each epoch's generated text (from a `TextGenerator` earlier in the list) to TensorBoard."""

    def __init__(self, text_generator: TextGenerator, log_dir):
        super().__init__()
        self.text_generator = text_generator
        self.log_dir = str(log_dir)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        text = getattr(self.text_generator, "last_text", None)
        if text is None:
            return
        import tensorflow as tf  # TensorBoard's summary writer

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.text("generated_text", text, step=epoch_step(epoch))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss and remembers where, so the caller can say so."""

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.stopped_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class RunCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' `ModelCheckpoint`, made safe to resume from: after each epoch it saves the full model
    (weights and optimizer) and records it in `state.json`, both atomically.

    Keras' own `on_epoch_end` writes the checkpoint in place, so a crash while saving leaves a torn
    file; here the file is written beside its target and renamed (`runs.save_model`).

    The state names the checkpoint only once that file is complete, so a crash while a checkpoint is
    being written leaves the previous state pointing at the previous, intact checkpoint. An epoch whose
    loss became NaN is neither saved nor recorded. Besides the checkpoint (weights and optimizer), the
    state keeps what a `.keras` file does not: the dropout layers' random-generator states, the
    TensorBoard step and the text sampler's state, so a resumed run continues as if never stopped.
    Older checkpoints beyond `keep` are deleted.
    """

    def __init__(self, run_dir, checkpoint_pattern: str, *, text_generator: TextGenerator | None = None,
                 batch_losses: BatchLossSummary | None = None, stop_on_nan: StopOnNaN | None = None,
                 history: dict | None = None, model_epoch: int | None = None, keep: int = 2):
        super().__init__(str(Path(run_dir) / checkpoint_pattern), save_weights_only=False, save_freq="epoch")
        self.run_dir = Path(run_dir)
        self.checkpoint_pattern = checkpoint_pattern
        self.text_generator = text_generator
        self.batch_losses = batch_losses
        self.stop_on_nan = stop_on_nan
        self.history = {key: list(values) for key, values in (history or {}).items()}
        self.model_epoch = model_epoch  # model.keras's epoch, carried until the final save records a new one
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_on_nan is not None and self.stop_on_nan.stopped_at is not None:
            return  # never save or record a NaN model as the state to resume from
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        checkpoint = self.checkpoint_pattern.format(epoch=epoch + 1)
        save_model(self.model, self.run_dir / checkpoint)
        RunState(
            epoch=epoch + 1,
            checkpoint=checkpoint,
            global_step=self.batch_losses.global_step if self.batch_losses is not None else None,
            rng_state=_jsonable(self.text_generator.get_rng_state()) if self.text_generator else None,
            seed_states=[keras.ops.convert_to_numpy(state).tolist() for state in seed_generator_states(self.model)],
            history=self.history,
            model_epoch=self.model_epoch,
        ).write(self.run_dir)
        self._prune(epoch + 1)

    def _prune(self, newest_epoch: int) -> None:
        for old_epoch in range(1, newest_epoch - self.keep + 1):
            old = self.run_dir / self.checkpoint_pattern.format(epoch=old_epoch)
            if old.is_symlink() or old.is_file():  # a directory of that name is not a checkpoint: left alone
                old.unlink(missing_ok=True)


def seed_generator_states(model: keras.Model) -> list:
    """The state variables of the model's random generators (dropout's), which `model.save` leaves out."""
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


def restore_seed_generator_states(model: keras.Model, states: list | None) -> None:
    """Puts back the states `RunCheckpoint` saved, so dropout draws on where the interrupted run stopped."""
    variables = seed_generator_states(model)
    if states is None or len(states) != len(variables):
        return  # a state from before these were saved: dropout starts afresh, training still resumes
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def _jsonable(value):
    """numpy's bit-generator state holds Python ints only; make sure nested dicts survive JSON."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return int(value) if isinstance(value, np.integer) else value
