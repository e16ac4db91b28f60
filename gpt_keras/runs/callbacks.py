"""The callbacks that make a training run watchable and resumable.

`RunCheckpoint` saves the model and the run's `RunState` after every epoch, `StopOnNaN` stops at the
first non-finite loss, and the TensorBoard callbacks log the loss and each epoch's generated text.
The lecture's own callback, `TextGenerator`, lives in the lesson core (`gpt_keras.core.callbacks`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.runs.rundir import RunState, save_model


class ResumableTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, continuing its batch-level step count when a run resumes.

    Without this, a resumed run would write its per-batch loss from step 0 again, on top of the
    first run's curve.
    """

    def __init__(self, log_dir, initial_step: int = 0, **kwargs):
        super().__init__(log_dir=str(log_dir), **kwargs)
        self.initial_step = initial_step

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = self.initial_step  # Keras keeps this counter privately

    @property
    def global_step(self) -> int:
        return self._global_train_batch


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
            tf.summary.text("generated_text", text, step=epoch + 1)
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

    def __init__(self, run_dir, checkpoint_pattern: str, text_generator: TextGenerator | None = None,
                 tensorboard: ResumableTensorBoard | None = None, stop_on_nan: StopOnNaN | None = None,
                 history: dict | None = None, keep: int = 2):
        super().__init__(str(Path(run_dir) / checkpoint_pattern), save_weights_only=False, save_freq="epoch")
        self.run_dir = Path(run_dir)
        self.checkpoint_pattern = checkpoint_pattern
        self.text_generator = text_generator
        self.tensorboard = tensorboard
        self.stop_on_nan = stop_on_nan
        self.history = {key: list(values) for key, values in (history or {}).items()}
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
            global_step=self.tensorboard.global_step if self.tensorboard is not None else None,
            rng_state=_jsonable(self.text_generator.get_rng_state()) if self.text_generator else None,
            seed_states=[keras.ops.convert_to_numpy(state).tolist() for state in seed_generator_states(self.model)],
            history=self.history,
        ).write(self.run_dir)
        self._prune(epoch + 1)

    def _prune(self, newest_epoch: int) -> None:
        for old_epoch in range(1, newest_epoch - self.keep + 1):
            (self.run_dir / self.checkpoint_pattern.format(epoch=old_epoch)).unlink(missing_ok=True)


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
