"""The lecture's GPT as the class ran it, for benchmarks: the baseline `gpt_keras` is measured against.

This reproduces the computations of the notebook shown in "Transformers III"
(`gpt_listo_para_entrenar.ipynb`, from the GPT notebook of *Generative Deep Learning*, 2nd ed.,
chapter 9), step for step, written for Keras 3 (the lecture's own log shows Keras 3 ran it):

- data: the filtered `wine review : country : province : variety : description` texts, punctuation
  padded, `tf.data.Dataset.from_tensor_slices(texts).batch(32).shuffle(1000)`, a `TextVectorization`
  adapted on that dataset, and `map` of a function that vectorizes each batch on the fly (no prefetch);
- the causal mask built with TensorFlow ops and `tf.tile` over the batch, inside a
  `TransformerBlock` that reads the batch size with `tf.shape` on every call;
- `TokenAndPositionEmbedding` with `tf.range` positions, one post-norm block, a softmax `Dense`;
- `compile("adam", loss=[SparseCategoricalCrossentropy(), None])`;
- a `TextGenerator` whose `generate` calls `model.predict` on the whole sequence for every word and
  samples with NumPy's global random generator.

It is not part of the package and is not meant to be imported by it; `benchmarks/benchmark.py` uses
it. Only `read_records` is added (the benchmark data is the Kaggle CSV; the lecture read the JSON).
"""

from __future__ import annotations

import json
import re
import string

import keras
import numpy as np
import tensorflow as tf
from keras import callbacks, layers, losses, models

VOCAB_SIZE = 10000
MAX_LEN = 80
EMBEDDING_DIM = 256
KEY_DIM = 256
N_HEADS = 2
FEED_FORWARD_DIM = 256
BATCH_SIZE = 32
EPOCHS = 5


# --- 1. the data --------------------------------------------------------------------------------

def read_records(path):
    """The Kaggle reviews as a list of dicts with None for missing fields (JSON as in the lecture, or CSV)."""
    if str(path).endswith(".json"):
        with open(path) as handle:
            return json.load(handle)
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return [{key: (None if isinstance(value, float) else value) for key, value in row.items()}
            for row in frame.to_dict("records")]


def filter_reviews(wine_data):
    """Reviews with a country, province, variety and description, as one line of text each."""
    return [
        "wine review : " + x["country"] + " : " + x["province"] + " : " + x["variety"] + " : " + x["description"]
        for x in wine_data
        if x["country"] is not None
        and x["province"] is not None
        and x["variety"] is not None
        and x["description"] is not None
    ]


def pad_punctuation(s):
    """Spaces around punctuation and newlines, so each becomes a word."""
    s = re.sub(f"([{string.punctuation}, '\n])", r" \1 ", s)
    s = re.sub(" +", " ", s)
    return s


def make_datasets(text_data, batch_size=BATCH_SIZE):
    """The lecture's pipeline: batch, shuffle 1,000 batches, adapt the vectorizer, vectorize per batch.

    Returns:
        (train_ds, vectorize_layer, vocab)
    """
    text_ds = tf.data.Dataset.from_tensor_slices(text_data).batch(batch_size).shuffle(1000)
    vectorize_layer = layers.TextVectorization(
        standardize="lower",
        max_tokens=VOCAB_SIZE,
        output_mode="int",
        output_sequence_length=MAX_LEN + 1,
    )
    vectorize_layer.adapt(text_ds)
    vocab = vectorize_layer.get_vocabulary()

    def prepare_inputs(text):
        text = tf.expand_dims(text, -1)
        tokenized_sentences = vectorize_layer(text)
        x = tokenized_sentences[:, :-1]
        y = tokenized_sentences[:, 1:]
        return x, y

    train_ds = text_ds.map(prepare_inputs)
    return train_ds, vectorize_layer, vocab


# --- 2. the model -------------------------------------------------------------------------------

def causal_attention_mask(batch_size, n_dest, n_src, dtype):
    """[batch, n_dest, n_src]: True where a query may see a key (itself and earlier), tiled over the batch."""
    i = tf.range(n_dest)[:, None]
    j = tf.range(n_src)
    m = i >= j - n_src + n_dest
    mask = tf.cast(m, dtype)
    mask = tf.reshape(mask, [1, n_dest, n_src])
    mult = tf.concat([tf.expand_dims(batch_size, -1), tf.constant([1, 1], dtype=tf.int32)], 0)
    return tf.tile(mask, mult)


class TransformerBlock(layers.Layer):
    def __init__(self, num_heads, key_dim, embed_dim, ff_dim, dropout_rate=0.1):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.embed_dim = embed_dim
        self.ff_dim = ff_dim
        self.dropout_rate = dropout_rate
        self.attn = layers.MultiHeadAttention(num_heads, key_dim, output_shape=embed_dim)
        self.dropout_1 = layers.Dropout(self.dropout_rate)
        self.ln_1 = layers.LayerNormalization(epsilon=1e-6)
        self.ffn_1 = layers.Dense(self.ff_dim, activation="relu")
        self.ffn_2 = layers.Dense(self.embed_dim)
        self.dropout_2 = layers.Dropout(self.dropout_rate)
        self.ln_2 = layers.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        input_shape = tf.shape(inputs)
        batch_size = input_shape[0]
        seq_len = input_shape[1]
        causal_mask = causal_attention_mask(batch_size, seq_len, seq_len, tf.bool)
        attention_output, attention_scores = self.attn(
            inputs, inputs, attention_mask=causal_mask, return_attention_scores=True)
        attention_output = self.dropout_1(attention_output)
        out1 = self.ln_1(inputs + attention_output)
        ffn_1 = self.ffn_1(out1)
        ffn_2 = self.ffn_2(ffn_1)
        ffn_output = self.dropout_2(ffn_2)
        return (self.ln_2(out1 + ffn_output), attention_scores)

    def get_config(self):
        config = super().get_config()
        config.update({"key_dim": self.key_dim, "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                       "ff_dim": self.ff_dim, "dropout_rate": self.dropout_rate})
        return config


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, max_len, vocab_size, embed_dim):
        super().__init__()
        self.max_len = max_len
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=max_len, output_dim=embed_dim)

    def call(self, x):
        maxlen = tf.shape(x)[-1]
        positions = tf.range(start=0, limit=maxlen, delta=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions

    def get_config(self):
        config = super().get_config()
        config.update({"max_len": self.max_len, "vocab_size": self.vocab_size, "embed_dim": self.embed_dim})
        return config


def build_model():
    """The functional GPT, compiled as in the lecture: outputs [next-word probabilities, attention]."""
    inputs = layers.Input(shape=(None,), dtype=tf.int32)
    x = TokenAndPositionEmbedding(MAX_LEN, VOCAB_SIZE, EMBEDDING_DIM)(inputs)
    x, attention_scores = TransformerBlock(N_HEADS, KEY_DIM, EMBEDDING_DIM, FEED_FORWARD_DIM)(x)
    outputs = layers.Dense(VOCAB_SIZE, activation="softmax")(x)
    gpt = models.Model(inputs=inputs, outputs=[outputs, attention_scores])
    gpt.compile("adam", loss=[losses.SparseCategoricalCrossentropy(), None])
    return gpt


# --- 3. generation ------------------------------------------------------------------------------

class TextGenerator(callbacks.Callback):
    def __init__(self, index_to_word, top_k=10):
        super().__init__()
        self.index_to_word = index_to_word
        self.word_to_index = {word: index for index, word in enumerate(index_to_word)}

    def sample_from(self, probs, temperature):
        probs = probs ** (1 / temperature)
        probs = probs / np.sum(probs)
        return np.random.choice(len(probs), p=probs), probs

    def generate(self, start_prompt, max_tokens, temperature):
        start_tokens = [self.word_to_index.get(x, 1) for x in start_prompt.split()]
        sample_token = None
        info = []
        while len(start_tokens) < max_tokens and sample_token != 0:
            x = np.array([start_tokens])
            y, att = self.model.predict(x, verbose=0)
            sample_token, probs = self.sample_from(y[0][-1], temperature)
            info.append({"prompt": start_prompt, "word_probs": probs, "atts": att[0, :, -1, :]})
            start_tokens.append(sample_token)
            start_prompt = start_prompt + " " + self.index_to_word[sample_token]
        print(f"\ngenerated text:\n{start_prompt}\n")
        return info

    def on_epoch_end(self, epoch, logs=None):
        self.generate("wine review", max_tokens=80, temperature=1.0)


def main(path, epochs=EPOCHS):
    """The whole lecture: load, tokenize, build, train with a sample after every epoch."""
    text_data = [pad_punctuation(x) for x in filter_reviews(read_records(path))]
    train_ds, _, vocab = make_datasets(text_data)
    gpt = build_model()
    gpt.fit(train_ds, epochs=epochs, callbacks=[TextGenerator(vocab)])
    return gpt


if __name__ == "__main__":
    import sys

    keras.utils.set_random_seed(42)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else EPOCHS)
