"""The lecture recipe's epoch losses beside the lecture's reference implementation's, same data, same epochs.

`gpt-keras train --recipe lecture` claims the lecture's arithmetic (float32, no XLA, Keras'
`SparseCategoricalCrossentropy`, whole batches of 32 shuffled 1,000 at a time, Adam). This script trains
both on the same reviews for the same epochs, each in a child process of its own started at once (so a
neighbour's load on a shared CPU falls on both alike), and prints each epoch's loss as it finishes and a
table at the end. It is a benchmark, not a test: on the 10,000 real reviews an epoch takes minutes on a
2-core CPU.

    nice python benchmarks/recipe_losses.py --epochs 5            # the lecture's 5 epochs
    nice python benchmarks/recipe_losses.py --epochs 2 --json out.json

The reference is trained without its `TextGenerator` (a sample after each epoch changes no weight: it
only calls `predict`); ours is the real `train` (a run directory in a temporary folder, with its
checkpoints and samples). Both are seeded with 42, but they draw their initial weights and dropout
masks in different orders, so equal losses are not expected, only close ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wine-reviews" / "winemag-data-130k-v2.head10001.csv"
SEED = 42
LECTURE_LOSSES = (2.5973, 1.9768, 1.8990, 1.8507, 1.8236)  # the lecture's 5 epochs on 129,907 reviews (a GPU)
IMPLEMENTATIONS = {"reference": "benchmarks/lecture_reference.py (the lecture's code)",
                   "recipe": "gpt-keras train --recipe lecture"}


def _epoch_printer(keras, name):
    """A callback that prints one JSON line per finished epoch, so the parent sees progress as it comes."""
    class EpochLine(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            print(json.dumps({"implementation": name, "epoch": epoch + 1, "loss": float(logs["loss"]),
                              "seconds": round(time.perf_counter() - self.start, 1)}), flush=True)
    return EpochLine()


def run_reference(data: Path, epochs: int) -> None:
    sys.path.insert(0, str(HERE))
    import keras

    import lecture_reference as lecture

    keras.utils.set_random_seed(SEED)
    text_data = [lecture.pad_punctuation(x) for x in lecture.filter_reviews(lecture.read_records(data))]
    train_ds, _, _ = lecture.make_datasets(text_data)
    gpt = lecture.build_model()
    gpt.fit(train_ds, epochs=epochs, verbose=0, callbacks=[_epoch_printer(keras, "reference")])


def run_recipe(data: Path, epochs: int) -> None:
    sys.path.insert(0, str(ROOT))
    import keras

    from gpt_keras.core.config import GPTConfig
    from gpt_keras.runs import train as training

    config = GPTConfig.preset("lecture", recipe="lecture", epochs=epochs, seed=SEED)
    printer = _epoch_printer(keras, "recipe")
    fit = keras.Model.fit

    def fit_with_printer(model, *args, callbacks=(), **kwargs):  # the run's own callbacks, and ours
        return fit(model, *args, callbacks=[*callbacks, printer], **kwargs)

    keras.Model.fit = fit_with_printer
    with tempfile.TemporaryDirectory() as runs:
        training.train(config, data, runs_dir=runs, print_fn=None, verbose=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Kaggle reviews (CSV or JSON)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each (default 5, the lecture's)")
    parser.add_argument("--json", type=Path, help="also write the epochs' figures here")
    parser.add_argument("--child", choices=tuple(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        (run_reference if args.child == "reference" else run_recipe)(args.data, args.epochs)
        return 0
    if not args.data.is_file():
        print(f"{args.data}: file not found (give --data)", file=sys.stderr)
        return 2
    children = {name: subprocess.Popen([sys.executable, __file__, "--child", name, "--data", str(args.data),
                                        "--epochs", str(args.epochs)], stdout=subprocess.PIPE, text=True,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)})
                for name in IMPLEMENTATIONS}
    rows: dict[str, list[dict]] = {name: [] for name in IMPLEMENTATIONS}
    import selectors

    selector = selectors.DefaultSelector()
    for name, child in children.items():
        selector.register(child.stdout, selectors.EVENT_READ, name)
    open_streams = len(children)
    while open_streams:
        for key, _ in selector.select():
            line = key.fileobj.readline()
            if not line:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            if line.startswith("{"):
                row = json.loads(line)
                rows[key.data].append(row)
                print(f"{key.data:9s} epoch {row['epoch']}: loss {row['loss']:.4f} ({row['seconds']:.0f} s)",
                      flush=True)
    codes = {name: child.wait() for name, child in children.items()}
    print(table(rows, args.data))
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "epochs": args.epochs, "rows": rows,
                                         "exit_codes": codes}, indent=1))
    return 0 if all(code == 0 for code in codes.values()) else 1


def table(rows: dict[str, list[dict]], data: Path) -> str:
    """Markdown: one row per epoch finished by both, with the lecture's own loss for that epoch."""
    epochs = min(len(found) for found in rows.values())
    lines = ["| epoch | " + " | ".join(IMPLEMENTATIONS.values()) + " | difference | the lecture (129,907 reviews) |",
             "|---:|---:|---:|---:|---:|"]
    for index in range(epochs):
        ref, ours = rows["reference"][index], rows["recipe"][index]
        lecture = f"{LECTURE_LOSSES[index]:.4f}" if index < len(LECTURE_LOSSES) else "—"
        lines.append(f"| {index + 1} | {ref['loss']:.4f} | {ours['loss']:.4f} | {ours['loss'] - ref['loss']:+.4f} "
                     f"| {lecture} |")
    times = " / ".join(f"{name} {found[epochs - 1]['seconds'] / 60:.1f} min" for name, found in rows.items()
                       if epochs)
    return "\n".join(lines) + f"\n\n{data.name}, {epochs} epochs; wall time for them: {times}"


if __name__ == "__main__":
    sys.exit(main())
