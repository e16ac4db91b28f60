"""Held-out loss against training time: the lecture's implementation and ours, trained side by side.

Used by `benchmark.py` (its "quality" measurement). The reviews are split once (a seeded 10% held
out); the lecture's implementation adapts its vectorizer on the training reviews and trains with its
own pipeline (`lecture_reference.make_datasets`), ours with `gpt_keras.data.training_batches` (or the
opt-in length buckets). All models train in one process, in turns of a few steps, each with its own
clock, so load from other jobs on a shared CPU falls on each alike. Every `eval_every` steps each
model's held-out loss is computed (not timed) with the lecture's definition: the mean cross-entropy
over all 80 positions of full-width batches, padding targets included; at the end also over the
words only (each review's targets up to and including the end of its text).
"""

from __future__ import annotations

import time

import numpy as np

HELDOUT_SHARE = 0.1
TURN = 10  # training steps per model per turn


def split_texts(texts: list[str], seed: int, limit: int | None = None) -> tuple[list[str], list[str]]:
    """(training, held-out) texts: a seeded permutation, the first `HELDOUT_SHARE` held out."""
    order = np.random.default_rng(seed).permutation(len(texts))
    if limit:
        order = order[:limit]
    n_heldout = max(1, int(len(order) * HELDOUT_SHARE))
    return [texts[i] for i in order[n_heldout:]], [texts[i] for i in order[:n_heldout]]


class Contender:
    """One model in the race: its training batches, its own clock, its held-out curve."""

    def __init__(self, key, label, model, batches, heldout_tokens, steps_per_epoch):
        self.key, self.label, self.model = key, label, model
        self.batches = batches  # a callable returning the next (x, y)
        self.x_heldout, self.y_heldout = heldout_tokens[:, :-1], heldout_tokens[:, 1:]
        self.steps_per_epoch = steps_per_epoch
        self.steps = 0
        self.seconds = 0.0
        self.curve = []  # (training seconds, steps, epochs, held-out loss)
        self.train_losses = []

    def train(self, steps: int) -> None:
        for _ in range(steps):
            x, y = self.batches()
            start = time.perf_counter()
            loss = self.model.train_on_batch(x, y)
            self.train_losses.append(float(loss[0] if isinstance(loss, list) else loss))  # waits for the step
            self.seconds += time.perf_counter() - start
            self.steps += 1

    def evaluate(self) -> float:
        """Held-out loss, the lecture's (all positions) and over words only (targets up to the end of text)."""
        all_positions, words, counted = 0.0, 0.0, 0
        for start in range(0, len(self.x_heldout), 32):
            x, y = self.x_heldout[start:start + 32], self.y_heldout[start:start + 32]
            probs = np.asarray(self.model(x, training=False)[0], np.float32)
            picked = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
            losses = -np.log(np.clip(picked, 1e-7, 1 - 1e-7))
            all_positions += losses.sum()
            ends = np.argmax(np.concatenate([y == 0, np.ones((len(y), 1), bool)], axis=1), axis=1)
            is_word = np.arange(y.shape[1])[None, :] <= ends[:, None]  # words and the end-of-text target
            words += losses[is_word].sum()
            counted += int(is_word.sum())
        loss = all_positions / self.y_heldout.size
        self.curve.append((self.seconds, self.steps, self.steps / self.steps_per_epoch, float(loss)))
        self.word_loss = float(words / counted)
        return float(loss)

    def result(self) -> dict:
        return {"label": self.label, "curve": self.curve, "train_seconds": self.seconds, "steps": self.steps,
                "ms_per_step": 1000 * self.seconds / max(1, self.steps), "heldout_loss": self.curve[-1][3],
                "heldout_word_loss": self.word_loss,
                "last_train_loss": float(np.mean(self.train_losses[-self.steps_per_epoch:]))}


def _repeating(dataset):
    """The next (x, y) of a finite `tf.data` dataset, starting a new pass (reshuffled) when one ends."""
    iterator = iter(dataset)

    def next_batch():
        nonlocal iterator
        try:
            x, y = next(iterator)
        except StopIteration:
            iterator = iter(dataset)
            x, y = next(iterator)
        return x, y
    return next_batch


def _streaming(dataset):
    iterator = iter(dataset)
    return lambda: next(iterator)


def race(path, epochs: int, limit: int | None, eval_every: int | None, seed: int, contenders: list[str],
         say=print) -> dict:
    """Trains the lecture's model and ours for `epochs` epochs each; returns every curve."""
    import keras

    import lecture_reference as lecture
    from gpt_keras.core import data as data_lib_core
    from gpt_keras.runs import batches as data_lib_batches
    from gpt_keras.runs import bucketing
    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.model import build_gpt, compile_gpt
    from gpt_keras.runs.optimizer import training_optimizer
    from gpt_keras.runs.precision import choose_precision, detect_hardware

    texts = [lecture.pad_punctuation(x) for x in lecture.filter_reviews(lecture.read_records(path))]
    train_texts, heldout_texts = split_texts(texts, seed, limit)
    config = GPTConfig()
    steps_per_epoch = -(-len(train_texts) // config.batch_size)
    eval_every = eval_every or max(1, steps_per_epoch // 2)
    runners = []
    for key in contenders:
        keras.utils.set_random_seed(seed)
        if key == "lecture":
            train_ds, vectorizer, _ = lecture.make_datasets(train_texts)
            heldout = np.asarray(vectorizer(np.array(heldout_texts)[:, None]), np.int32)
            runners.append(Contender(key, "lecture (float32, its pipeline)", lecture.build_model(),
                                     _repeating(train_ds), heldout, steps_per_epoch))
            continue
        vectorizer = data_lib_core.make_vectorizer(train_texts, config.vocab_size, config.max_len)
        train_tokens, heldout = data_lib_core.vectorize(vectorizer, train_texts), data_lib_core.vectorize(vectorizer, heldout_texts)
        choice = choose_precision(detect_hardware(), "auto" if key.startswith("auto") else "off")
        model = compile_gpt(build_gpt(config, choice.policy), config, choice.jit,
                            loss_scaling=choice.loss_scaling, optimizer=training_optimizer(config))
        if key == "auto-bucketed":
            batches, _ = bucketing.bucketed_dataset(train_tokens, config.batch_size, seed)
            label = f"ours, {choice.policy} + length buckets (opt-in)"
        else:
            batches, _ = data_lib_batches.training_batches(train_tokens, config.batch_size, seed)
            label = f"ours, {choice.policy}" + (' (mixed_precision="auto")' if key == "auto" else "")
        runners.append(Contender(key, label, model, _streaming(batches), heldout, steps_per_epoch))
    total = epochs * steps_per_epoch
    for runner in runners:
        runner.evaluate()  # the untrained loss, at time 0
    say(f"{len(train_texts)} training reviews ({steps_per_epoch} steps per epoch), {len(heldout_texts)} held out")
    done = 0
    turn = 0
    while done < total:
        steps = min(TURN, total - done, eval_every - done % eval_every)
        order = runners[turn % len(runners):] + runners[:turn % len(runners)]
        for runner in order:
            runner.train(steps)
        done += steps
        turn += 1
        if done % eval_every == 0 or done == total:
            losses = ", ".join(f"{r.key} {r.evaluate():.4f} ({r.seconds:.0f} s)" for r in runners)
            say(f"  step {done}/{total}: held-out {losses}")
    return {"reviews": len(texts), "train_reviews": len(train_texts), "heldout_reviews": len(heldout_texts),
            "epochs": epochs, "steps_per_epoch": steps_per_epoch, "eval_every": eval_every,
            "contenders": {runner.key: runner.result() for runner in runners}}


def plot(quality: dict, path) -> None:
    """Held-out loss against training seconds, one line per contender, written as a PNG, with the curves
    beside it as JSON (`PATH.json`), so `python benchmarks/heldout.py --replot PATH` redraws it without a race.

    Every point lies inside the axes: the loss axis is logarithmic, from the untrained loss at time 0 down
    to the end, so the first fall and the last differences both show. The legend sits under the axes,
    where no line can run under it.
    """
    import json
    from pathlib import Path

    figure = heldout_figure(quality)
    figure.savefig(path)
    Path(f"{path}.json").write_text(json.dumps(quality, indent=1) + "\n", encoding="utf-8")


def heldout_figure(quality: dict):
    """The plot of `plot` as a matplotlib `Figure` (Agg, not yet saved)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot's backend alone
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    figure = Figure(figsize=(8, 5), dpi=120, layout="constrained")
    axis = figure.subplots()
    for result in quality["contenders"].values():
        seconds, _, _, losses = zip(*result["curve"])
        axis.plot(seconds, losses, marker="o", markersize=4, label=result["label"])
    losses = [point[3] for result in quality["contenders"].values() for point in result["curve"]]
    seconds = [point[0] for result in quality["contenders"].values() for point in result["curve"]]
    axis.set_yscale("log")
    axis.set_ylim(min(losses) * 0.97, max(losses) * 1.06)
    axis.set_xlim(-0.03 * max(seconds), 1.04 * max(seconds))
    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0)))
    axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axis.yaxis.set_minor_formatter(FormatStrFormatter(""))
    axis.set_xlabel("training time (s), evaluation excluded")
    axis.set_ylabel("held-out loss (lecture's definition, log scale)")
    axis.set_title(f"{quality['train_reviews']:,} reviews, {quality['epochs']} epoch(s), "
                   f"{quality['heldout_reviews']:,} held out")
    axis.grid(alpha=0.3, which="both")
    figure.legend(loc="outside lower center", ncols=1, frameon=False)
    return figure


if __name__ == "__main__":
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="redraw the held-out plot from the curves saved beside it")
    parser.add_argument("--replot", type=Path, default=Path(__file__).with_name("heldout-loss.png"),
                        help="the PNG to redraw from PNG.json (default benchmarks/heldout-loss.png)")
    args = parser.parse_args()
    plot(json.loads(Path(f"{args.replot}.json").read_text(encoding="utf-8")), args.replot)
    print(f"plotted {args.replot}")
