"""The lecture's building blocks: the causal mask, the embedding and the transformer block.

Written with `keras.ops` so they run on every Keras backend, registered serializable so a saved
`.keras` model reloads without custom-object plumbing, and named as in the slides so a student can
match them line by line.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from gpt_keras.core import PACKAGE


def causal_attention_mask(batch_size, n_dest, n_src, dtype="bool"):
    """A [batch, n_dest, n_src] mask that lets each position attend to itself and earlier ones only.

    Row i (a query) may see column j (a key) when `i >= j - n_src + n_dest`; with `n_dest == n_src`
    that is the lower triangle. The offset lets a shorter block of queries sit at the end of a longer
    key sequence, as when decoding with a cache.

    Example:
        >>> causal_attention_mask(1, 3, 3)[0]   # doctest: +SKIP
        [[ True, False, False], [ True,  True, False], [ True,  True,  True]]
    """
    i = ops.arange(n_dest)[:, None]
    j = ops.arange(n_src)
    mask = ops.cast(i >= j - n_src + n_dest, dtype)
    mask = ops.reshape(mask, (1, n_dest, n_src))
    return ops.broadcast_to(mask, (batch_size, n_dest, n_src))


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenAndPositionEmbedding(layers.Layer):
    """Adds a learned embedding of each token's position to the embedding of the token itself.

    Args:
        max_len: the longest sequence (positions 0 .. max_len - 1 have embeddings).
        vocab_size: the number of token ids.
        embed_dim: the width of both embeddings.

    Example:
        >>> layer = TokenAndPositionEmbedding(max_len=80, vocab_size=10_000, embed_dim=256)
        >>> layer(ops.zeros((2, 5), "int32")).shape
        (2, 5, 256)
    """

    def __init__(self, max_len, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.max_len = max_len
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.token_emb = layers.Embedding(vocab_size, embed_dim, dtype=self.dtype_policy, name="token_emb")
        self.pos_emb = layers.Embedding(max_len, embed_dim, dtype=self.dtype_policy, name="pos_emb")

    def build(self, input_shape):
        self.token_emb.build(input_shape)
        self.pos_emb.build((input_shape[-1],))
        self.built = True

    def call(self, x, start_position=0):
        """Embeds `x`; `start_position` offsets the positions when decoding one token at a time."""
        positions = ops.arange(ops.shape(x)[-1]) + start_position
        return self.token_emb(x) + self.pos_emb(positions)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embed_dim,)

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CachedMultiHeadAttention(layers.MultiHeadAttention):
    """Keras' `MultiHeadAttention`, plus a call that attends over a key/value cache (as keras-hub's does).

    `call` is Keras' own: training and the lecture's forward pass use it unchanged. `call_cached`
    serves generation: it projects only the new positions, writes their keys and values into the
    cache, and attends with Keras' `_compute_attention` (its documented extension point), so the
    attention maths is Keras' in both paths and written nowhere else.
    """

    def call_cached(self, x, cache=None, cache_index=None, attention_mask=None):
        """Self-attention of `x` over the cache.

        Args:
            x: [batch, new positions, width].
            cache: (keys, values), each [batch, cache length, heads, key_dim]; ignored when
                `cache_index` is None, for then the keys and values of `x` itself become the cache.
            cache_index: the cache position of `x`'s first position (decoding one token at a time).
            attention_mask: [batch, new positions, cache length], True where a query may look.

        Returns:
            (output [batch, new positions, output width], attention [batch, heads, new positions, cache
            length], the updated (keys, values)).
        """
        query, key, value = self.query_dense(x), self.key_dense(x), self.value_dense(x)
        if cache_index is not None:
            key_cache, value_cache = cache
            start = (0, cache_index, 0, 0)
            key = ops.slice_update(key_cache, start, ops.cast(key, key_cache.dtype))
            value = ops.slice_update(value_cache, start, ops.cast(value, value_cache.dtype))
        output, attention = self._compute_attention(query, key, value, attention_mask=attention_mask,
                                                    return_attention_scores=True)
        return self.output_dense(output), attention, (key, value)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(layers.Layer):
    """One post-norm GPT block that also returns its attention weights, per head.

    Causal self-attention, dropout, residual and LayerNorm; then a ReLU feed-forward network,
    dropout, residual and LayerNorm (the lecture's order). The attention weights are returned so the
    generator and `print_probs` can show where the model looked.

    Args:
        num_heads: attention heads.
        key_dim: size of each head (queries, keys and values); the output is projected to `embed_dim`.
        embed_dim: width of the input and output.
        ff_dim: hidden width of the feed-forward network.
        dropout_rate: dropout after attention and after the feed-forward network (default 0.1).
        epsilon: LayerNormalization epsilon (default 1e-6).

    Returns:
        `(output, attention)`: output [batch, seq, embed_dim]; attention [batch, heads, query, key],
        each row a distribution over the keys at or before the query.

    Example:
        >>> block = TransformerBlock(num_heads=2, key_dim=256, embed_dim=256, ff_dim=256)
        >>> out, att = block(ops.zeros((1, 4, 256)))
        >>> att.shape
        (1, 2, 4, 4)
    """

    def __init__(self, num_heads, key_dim, embed_dim, ff_dim, dropout_rate=0.1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.embed_dim = embed_dim
        self.ff_dim = ff_dim
        self.dropout_rate = dropout_rate
        self.epsilon = epsilon
        policy = self.dtype_policy  # saved with the block only: its sub-layers must take it (mixed precision)
        self.attn = CachedMultiHeadAttention(num_heads, key_dim, output_shape=embed_dim, dtype=policy, name="attn")
        self.dropout_1 = layers.Dropout(dropout_rate, dtype=policy)
        self.ln_1 = layers.LayerNormalization(epsilon=epsilon, dtype=policy, name="ln_1")
        self.ffn_1 = layers.Dense(ff_dim, activation="relu", dtype=policy, name="ffn_1")
        self.ffn_2 = layers.Dense(embed_dim, dtype=policy, name="ffn_2")
        self.dropout_2 = layers.Dropout(dropout_rate, dtype=policy)
        self.ln_2 = layers.LayerNormalization(epsilon=epsilon, dtype=policy, name="ln_2")

    def build(self, input_shape):
        self.attn.build(input_shape, input_shape)
        self.ln_1.build(input_shape)
        self.ffn_1.build(input_shape)
        self.ffn_2.build(tuple(input_shape[:-1]) + (self.ff_dim,))
        self.ln_2.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)  # (B, T, C)
        causal_mask = causal_attention_mask(shape[0], shape[1], shape[1], "bool")  # (B, T, T)
        attention_output, attention_scores = self.attn(  # (B, T, C), (B, heads, T, T)
            inputs, inputs, attention_mask=causal_mask, return_attention_scores=True, training=training)
        out1 = self.ln_1(inputs + self.dropout_1(attention_output, training=training))  # (B, T, C)
        ffn_output = self.dropout_2(self.ffn_2(self.ffn_1(out1)), training=training)  # (B, T, ff) -> (B, T, C)
        return self.ln_2(out1 + ffn_output), attention_scores  # (B, T, C), (B, heads, T, T)

    def call_cached(self, x, cache=None, cache_index=None):
        """The block at inference (no dropout) with a key/value cache, for generation.

        With `cache_index` None, `x` is a whole window and its keys and values become the cache (the
        causal mask as in `call`). With an index, `x` is one new position and attends to the cache
        up to and including it.

        Returns:
            (output, attention [batch, heads, new positions, cache length], updated cache).
        """
        shape = ops.shape(x)
        if cache_index is None:
            mask = causal_attention_mask(shape[0], shape[1], shape[1], "bool")
        else:
            cache_length = ops.shape(cache[0])[1]
            visible = ops.arange(cache_length) <= cache_index
            mask = ops.broadcast_to(visible[None, None, :], (shape[0], shape[1], cache_length))
        attention_output, attention, cache = self.attn.call_cached(x, cache, cache_index, mask)
        out1 = self.ln_1(x + attention_output)
        return self.ln_2(out1 + self.ffn_2(self.ffn_1(out1))), attention, cache

    def compute_output_shape(self, input_shape):
        batch, length = input_shape[0], input_shape[1]
        return tuple(input_shape), (batch, self.num_heads, length, length)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "embed_dim": self.embed_dim, "ff_dim": self.ff_dim, "dropout_rate": self.dropout_rate,
                "epsilon": self.epsilon}
