"""Hugging Face's GPT-2 (`TFGPT2LMHeadModel`) beside our model: load, generate, score, fine-tune, report.

Needs the `[gpt2]` extra (transformers<5 and tf-keras); importing this package does not import them.
"""
