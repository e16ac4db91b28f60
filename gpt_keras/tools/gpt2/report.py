"""The comparison's result: a table for the terminal, and Markdown and JSON reports, written atomically."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

from gpt_keras.runs.files import write_json, write_text
from gpt_keras.tools.tables import json_safe, shorten, text_table


@dataclasses.dataclass
class Comparison:
    """Both models on the same prompts, temperatures, seeds and held-out words."""

    settings: dict
    models: dict  # "ours" / "gpt2": name, parameters, ms_per_token, tokens_timed, seen share
    perplexity: dict  # "ours" / "gpt2": Perplexity
    generations: list[dict]
    info: dict = dataclasses.field(default_factory=dict, repr=False)  # first generation's steps, per model

    def to_dict(self) -> dict:
        return json_safe({"settings": self.settings, "models": self.models,
                        "perplexity": {key: value.to_dict() for key, value in self.perplexity.items()},
                        "generations": self.generations, "notes": NOTES})

    def _rows(self) -> list[tuple[str, str, str]]:
        ours, gpt2 = self.perplexity["ours"], self.perplexity["gpt2"]
        models = self.models

        def seen(value):
            return "unknown" if value is None else f"{100 * value:.0f}%"

        return [
            ("parameters", f"{models['ours']['parameters']:,}", f"{models['gpt2']['parameters']:,}"),
            ("ms per generated token", f"{models['ours']['ms_per_token']:.2f}", f"{models['gpt2']['ms_per_token']:.2f}"),
            ("perplexity per token", f"{ours.per_token:.2f}", f"{gpt2.per_token:.2f}"),
            ("perplexity per word", f"{ours.per_word:.2f}", f"{gpt2.per_word:.2f}"),
            ("tokens per word", f"{ours.tokens_per_word:.2f}", f"{gpt2.tokens_per_word:.2f}"),
            ("[UNK] share of words", f"{100 * ours.unk_share:.1f}%", "0% (byte-level BPE)"),
            ("held-out reviews seen in training", seen(models["ours"]["heldout_seen"]),
             seen(models["gpt2"]["heldout_seen"])),
        ]

    def format_table(self, width: int | None = 100) -> str:
        """The metrics side by side, then every generated text, for a terminal."""
        settings, names = self.settings, (self.models["ours"]["name"], self.models["gpt2"]["name"])
        ppl = self.perplexity["ours"]
        lines = [f"device: {settings['device']}",
                 f"held-out: {ppl.reviews} reviews, {ppl.words:,} words scored (first {settings['max_words']} words "
                 f"of each of the last {settings['heldout']} reviews of {settings['data']})",
                 f"timing: {settings['max_new_tokens']} new tokens each, prompt {settings['prompts'][0]!r}", "",
                 text_table(["", *names], [list(row) for row in self._rows()])]
        for generation in self.generations:
            lines += ["", f"prompt {generation['prompt']!r}, {generation['sampler']}, seed {generation['seed']}:"]
            for key, name in zip(("ours", "gpt2"), names):
                lines.append(f"  {name}: {shorten(generation[key]['text'], width)}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        settings, names = self.settings, (self.models["ours"]["name"], self.models["gpt2"]["name"])
        ppl = self.perplexity["ours"]
        table = [f"| | {_md(names[0])} | {_md(names[1])} |", "|---|---:|---:|"]
        table += [f"| {label} | {a} | {b} |" for label, a, b in self._rows()]
        lines = ["# Our GPT beside GPT-2", "",
                 f"- device: {_md(settings['device'])}",
                 f"- our run: {_md(settings['run'])}; GPT-2: {_md(settings['gpt2'])}",
                 f"- held-out: {ppl.reviews} reviews, {ppl.words:,} words (the first {settings['max_words']} words of "
                 f"each of the last {settings['heldout']} reviews of {_md(settings['data'])})",
                 f"- timing: {settings['max_new_tokens']} new tokens per model after a warm-up, prompt "
                 f"{_md(settings['prompts'][0])}", "", *table, "", "## Generated texts", ""]
        for generation in self.generations:
            lines.append(f"**{_md(generation['prompt'])}**, {generation['sampler']}, seed {generation['seed']}")
            lines.append("")
            for key, name in zip(("ours", "gpt2"), names):
                lines.append(f"- {_md(name)}: {_md(generation[key]['text'])}")
            lines.append("")
        lines += ["## How it was measured", "", *(f"- {note}" for note in NOTES), ""]
        return "\n".join(lines)

    def write(self, stem: str | Path) -> dict[str, Path]:
        """`stem.md` and `stem.json`, each written atomically."""
        stem = Path(stem)
        return {"markdown": write_text(stem.with_name(stem.name + ".md"), self.to_markdown()),
                "json": write_json(stem.with_name(stem.name + ".json"), self.to_dict())}


NOTES = [
    "Words are the whitespace words of the padded review text; both models score every word after the first "
    "(the first is context: our model cannot predict it).",
    "GPT-2 reads `<|endoftext|>` and then each word with a leading space; a word's NLL is the sum of its tokens' NLL. "
    "GPT-2 sees the original case, our model lower-cased words.",
    "Perplexity per word = exp(total NLL / words); per token = exp(total NLL / tokens). For our model a word is one "
    "token, so both are equal.",
    "Our model reads unknown words as [UNK] and only has to predict [UNK] for them, which makes its perplexity "
    "optimistic; the [UNK] share says by how much the task was eased.",
    "Time per generated token: time.perf_counter over the same number of new tokens for both models (the end token "
    "is not allowed to stop the timed run), after a warm-up run that traces the compiled steps.",
]


def _md(text) -> str:
    """Text shown as text in Markdown: HTML escaped (no <script> or <img onerror> runs), Markdown's marks
    backslashed, control characters and newlines gone (one line)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return re.sub(r"([\\`*_\[\]|~#!])", r"\\\1", html.escape(text, quote=True))
