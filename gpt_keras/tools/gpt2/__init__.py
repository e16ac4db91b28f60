"""Hugging Face's GPT-2 (`TFGPT2LMHeadModel`) beside our model: load, generate, score, fine-tune, report.

`load` gets the model (hub name or `save_pretrained` directory), `generate` samples from it with our
`Sampler` and the lecture's `info`, `score` measures perplexity per token and per word, `compare` runs both models
side by side and `report` writes the result; `finetune` trains GPT-2 on the reviews. Needs the `[gpt2]`
extra (transformers<5 and tf-keras); importing this package does not import them.
"""

from gpt_keras.tools.gpt2.compare import compare
from gpt_keras.tools.gpt2.finetune import FinetuneResult, check_finetune_out, finetune_gpt2
from gpt_keras.tools.gpt2.generate import GPT2Generator
from gpt_keras.tools.gpt2.load import (DEFAULT_MODEL, FINETUNE_INFO, GPT2, GPT2Error, GPT2Unavailable, TokenLabels,
                                       device_description, load_gpt2, precision_policy)
from gpt_keras.tools.gpt2.report import Comparison
from gpt_keras.tools.gpt2.score import (Perplexity, WordScores, heldout_indices, score_gpt2, score_ours, seen_by_gpt2,
                                        seen_by_our_run, word_windows)

__all__ = ["compare", "Comparison", "DEFAULT_MODEL", "FINETUNE_INFO", "FinetuneResult", "GPT2", "GPT2Error",
           "GPT2Generator", "GPT2Unavailable", "Perplexity", "TokenLabels", "WordScores", "device_description",
           "check_finetune_out", "finetune_gpt2", "heldout_indices", "load_gpt2", "precision_policy", "score_gpt2", "score_ours",
           "seen_by_gpt2", "seen_by_our_run", "word_windows"]
