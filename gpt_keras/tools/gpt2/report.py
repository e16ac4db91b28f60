"""The comparison's result: a table for the terminal, and Markdown and JSON reports, written atomically."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

from gpt_keras.runs.files import write_json, write_text
from gpt_keras.tools.tables import json_safe, clip_line, text_table


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

    @property
    def keys(self) -> list[str]:
        """The models compared, in column order: "ours" (absent when GPT-2 ran alone), then "gpt2"."""
        return [key for key in ("ours", "gpt2") if key in self.models]

    @property
    def names(self) -> list[str]:
        return [self.models[key]["name"] for key in self.keys]

    def _rows(self) -> list[list[str]]:
        def seen(value):
            return "unknown" if value is None else f"{100 * value:.0f}%"

        def unk(key):
            return "0% (byte-level BPE)" if key == "gpt2" else f"{100 * self.perplexity[key].unk_share:.1f}%"

        cells = {
            "parameters": lambda key: f"{self.models[key]['parameters']:,}",
            "ms per generated token": lambda key: f"{self.models[key]['ms_per_token']:.2f}",
            "perplexity per token": lambda key: f"{self.perplexity[key].per_token:.2f}",
            "perplexity per word": lambda key: f"{self.perplexity[key].per_word:.2f}",
            "tokens per word": lambda key: f"{self.perplexity[key].tokens_per_word:.2f}",
            "[UNK] share of words": unk,
            "held-out reviews seen in training": lambda key: seen(self.models[key]["heldout_seen"]),
        }
        return [[label, *(cell(key) for key in self.keys)] for label, cell in cells.items()]

    def format_table(self, width: int | None = 100) -> str:
        """The metrics side by side, then every generated text, for a terminal."""
        settings, names = self.settings, self.names
        ppl = self.perplexity[self.keys[0]]
        lines = [f"device: {settings['device']}",
                 f"held-out: {ppl.reviews} reviews, {ppl.words:,} words scored (first {settings['max_words']} words "
                 f"of each of the last {settings['heldout']} reviews of {settings['data']})",
                 f"timing: {settings['max_new_tokens']} new tokens each, prompt {settings['prompts'][0]!r}", "",
                 text_table(["", *names], self._rows())]
        for generation in self.generations:
            lines += ["", f"prompt {generation['prompt']!r}, {generation['sampler']}, seed {generation['seed']}:"]
            for key, name in zip(self.keys, names):
                lines.append(f"  {name}: {clip_line(generation[key]['text'], width)}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        settings, names = self.settings, self.names
        ppl = self.perplexity[self.keys[0]]
        table = ["| | " + " | ".join(_md(name) for name in names) + " |", "|---|" + "---:|" * len(names)]
        table += ["| " + " | ".join(row) + " |" for row in self._rows()]
        ours = _md(settings["run"]) if settings.get("run") else "none (GPT-2 alone)"
        lines = ["# Our GPT beside GPT-2" if "ours" in self.models else "# GPT-2", "",
                 f"- device: {_md(settings['device'])}",
                 f"- our run: {ours}; GPT-2: {_md(settings['gpt2'])}",
                 f"- held-out: {ppl.reviews} reviews, {ppl.words:,} words (the first {settings['max_words']} words of "
                 f"each of the last {settings['heldout']} reviews of {_md(settings['data'])})",
                 f"- timing: {settings['max_new_tokens']} new tokens per model after a warm-up, prompt "
                 f"{_md(settings['prompts'][0])}", "", *table, "", "## Generated texts", ""]
        for generation in self.generations:
            lines.append(f"**{_md(generation['prompt'])}**, {generation['sampler']}, seed {generation['seed']}")
            lines.append("")
            for key, name in zip(self.keys, names):
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
