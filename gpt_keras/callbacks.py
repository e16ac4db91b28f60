"""Keras callbacks of the lecture: `TextGenerator` samples a text after every epoch.

`TextGenerator` keeps the lecture's names (`sample_from`, `generate`, `on_epoch_end`) and prints
`generated text:` as the slides do, but draws from its own seeded random generator, so a seed gives
the same text in the training process and in a later `gpt-keras generate`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np

from gpt_keras.data import Vocabulary
from gpt_keras.generation import CachedGenerator, check_max_tokens, generate_lecture
from gpt_keras.sampling import Sampler, SamplingError

METHODS = ("cached", "lecture")


class TextGenerator(keras.callbacks.Callback):
    """Generates text from a prompt after each epoch, and on demand with `generate`.

    Args:
        index_to_word: the vocabulary (a list, as `vectorizer.get_vocabulary()` returns, or a `Vocabulary`).
        top_k: keep only the k most likely words when sampling (None: all, the lecture's behaviour;
            the lecture's own `top_k=10` argument was never used).
        prompt, max_tokens, temperature: what to generate after each epoch (lecture: "wine review", 80, 1.0).
        seed: seeds the random generator (None: a fresh one each run).
        method: "cached" (key/value cache, fast) or "lecture" (`model.predict` per word, as taught).
        every_epoch: generate in `on_epoch_end` (set False to only generate on demand).
        print_fn: where `generated text:` goes (None prints nothing).

    Example:
        >>> text_generator = TextGenerator(vocab, seed=0)
        >>> gpt.fit(train_ds, epochs=5, callbacks=[text_generator])            # doctest: +SKIP
        >>> info = text_generator.generate("wine review : germany", max_tokens=80, temperature=0.5)
    """

    def __init__(self, index_to_word: Sequence[str] | Vocabulary, top_k: int | None = None, *,
                 prompt: str = "wine review", max_tokens: int = 80, temperature: float = 1.0,
                 seed: int | None = None, method: str = "cached", every_epoch: bool = True,
                 print_fn: Callable[[str], None] | None = print):
        super().__init__()
        if method not in METHODS:
            raise SamplingError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        _check_generator_args(prompt, max_tokens, seed, print_fn)  # fail now, not after the first epoch
        self.vocab = index_to_word if isinstance(index_to_word, Vocabulary) else Vocabulary(tuple(index_to_word))
        self.index_to_word = list(self.vocab.words)
        self.word_to_index = {word: index for index, word in enumerate(self.index_to_word)}
        self.top_k = top_k
        self.prompt, self.max_tokens, self.temperature = prompt, max_tokens, temperature
        Sampler(temperature=temperature, top_k=top_k)
        self.method = method
        self.every_epoch = every_epoch
        self.print_fn = print_fn
        self.rng = np.random.default_rng(seed)
        self.generated: list[tuple[int | None, str]] = []
        self._cached: CachedGenerator | None = None

    def sample_from(self, probs: np.ndarray, temperature: float):
        """The lecture's sampler: `probs ** (1/T)` renormalised, then one draw; returns (index, probs)."""
        return Sampler(temperature=temperature, top_k=self.top_k).sample(probs, self.rng)

    def generate(self, start_prompt: str, max_tokens: int, temperature: float, *, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False, method: str | None = None) -> list[dict]:
        """Generates from `start_prompt` and prints the text; returns one record per generated word.

        Each record has `prompt` (the text before the word), `word_probs` (the distribution the word
        was drawn from), `atts` (last position's attention over the prompt, [heads, words]), and the
        chosen `token` and `word`.
        """
        sampler = Sampler(temperature=temperature, top_k=top_k if top_k is not None else self.top_k,
                          top_p=top_p, greedy=greedy)
        info, text = self._generate(start_prompt, max_tokens, sampler, method or self.method)
        self.last_text = text
        if self.print_fn is not None:
            self.print_fn(f"\ngenerated text:\n{text}\n")
        return info

    def _generate(self, start_prompt, max_tokens, sampler, method):
        if method == "lecture":
            return generate_lecture(self.model, self.vocab, start_prompt, max_tokens, sampler, self.rng)
        if method != "cached":
            raise SamplingError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if self._cached is None or self._cached.model is not self.model:
            self._cached = CachedGenerator(self.model, self.vocab)
        return self._cached.generate(start_prompt, max_tokens, sampler, self.rng)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.last_text = None  # the weights are NaN: nothing to read, and no text to log
            return
        if self.every_epoch:
            self.generate(self.prompt, max_tokens=self.max_tokens, temperature=self.temperature)
            self.generated.append((epoch, self.last_text))

    def get_rng_state(self) -> dict:
        """The random generator's state, saved with checkpoints so a resumed run samples on."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def _check_generator_args(prompt, max_tokens, seed, print_fn) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise SamplingError(f"prompt must be a non-empty string, got {prompt!r}")
    check_max_tokens(max_tokens)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise SamplingError(f"seed must be None or an integer of at least 0, got {seed!r}")
    if print_fn is not None and not callable(print_fn):
        raise SamplingError(f"print_fn must be callable (print, a list's append) or None, got {print_fn!r}")


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
        from pathlib import Path

        super().__init__(str(Path(run_dir) / checkpoint_pattern), save_weights_only=False, save_freq="epoch")
        self.run_dir = Path(run_dir)
        self.checkpoint_pattern = checkpoint_pattern
        self.text_generator = text_generator
        self.tensorboard = tensorboard
        self.stop_on_nan = stop_on_nan
        self.history = {key: list(values) for key, values in (history or {}).items()}
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        from gpt_keras.files import write_json
        from gpt_keras.runs import save_model

        if self.stop_on_nan is not None and self.stop_on_nan.stopped_at is not None:
            return  # never save or record a NaN model as the state to resume from
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        checkpoint = self.checkpoint_pattern.format(epoch=epoch + 1)
        save_model(self.model, self.run_dir / checkpoint)
        state = {
            "epoch": epoch + 1,
            "checkpoint": checkpoint,
            "global_step": self.tensorboard.global_step if self.tensorboard is not None else None,
            "rng_state": _jsonable(self.text_generator.get_rng_state()) if self.text_generator else None,
            "seed_states": [keras.ops.convert_to_numpy(state).tolist() for state in seed_generator_states(self.model)],
            "history": self.history,
        }
        write_json(self.run_dir / "state.json", state)
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
