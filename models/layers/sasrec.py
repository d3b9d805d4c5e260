"""SASRec block (Kang & McAuley, ICDM 2018): causal softmax self-attention + point-wise FFN.

The in-house baseline for HSTU, with the same call interface as `HSTULayer`. The block follows the
SASRec baseline of the public HSTU benchmark (generative-recommenders, configs of 2024-04), which
normalizes only the queries and applies dropout to the attention probabilities (torch
`MultiheadAttention(dropout=rate)`) and inside the FFN:

    Q_in = LayerNorm_1(X)
    P    = Dropout( softmax( Q K^T / sqrt(d_head) + causal/padding mask ) )   Q = Q_in W_q, K = X W_k
    H    = LayerNorm_2( Q_in + W_o concat_heads(P V) )                          V = X W_v
    Y    = mask * ( H + Dropout( W_2 Dropout( ReLU( W_1 H ) ) ) )

Padded keys get -1e9 logits; padded query rows are zeroed (SASRec multiplies by the valid mask).
The attention is a plain dense (n, n) implementation: the causal mask is one `where`, the softmax
is the backend's kernel, queries are pre-scaled by 1/sqrt(d_head) (O(n d)).

Example:
    block = SASRecBlock(num_heads=1, ffn_dim=50, dropout=0.2)
    y = block(keras.random.normal((4, 200, 50)), lengths=ops.convert_to_tensor([200, 10, 1, 77]))
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from watchnext.models.layers.hstu import (
    CachingSequenceBlock,
    dropout,
    mask_value,
    merge_heads,
    resolve_token_mask,
    split_heads,
)


@keras.saving.register_keras_serializable(package="watchnext")
class SASRecBlock(CachingSequenceBlock):
    """One SASRec Transformer block.

    Args:
        num_heads: attention heads.
        head_dim: per-head width of Q, K, V (default: d / num_heads).
        ffn_dim: hidden width of the point-wise feed-forward network.
        dropout: dropout inside and after the FFN.
        attention_dropout: dropout on the attention probabilities; None (default) = `dropout`, as in
            the reference baseline (torch MultiheadAttention gets the same rate).
        epsilon: LayerNorm epsilon (1e-8 as in SASRec).
        seed: dropout seed.

    Call arguments: as `HSTULayer` (x, padding_mask, timestamps [ignored], lengths, training).
    """

    def __init__(
        self,
        num_heads: int = 1,
        head_dim: int | None = None,
        ffn_dim: int = 50,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        epsilon: float = 1e-8,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.head_dim = None if head_dim is None else int(head_dim)
        self.ffn_dim, self.dropout = int(ffn_dim), float(dropout)
        self.attention_dropout = self.dropout if attention_dropout is None else float(attention_dropout)
        self.epsilon = float(epsilon)
        self.supports_masking = True
        self.attention_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="attention_norm")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="ffn_norm")
        self.ffn_in = keras.layers.Dense(self.ffn_dim, activation="relu", name="ffn_in")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        width = self.num_heads * (self.head_dim or d // self.num_heads)
        self.query = keras.layers.Dense(width, name="query")
        self.key = keras.layers.Dense(width, name="key")
        self.value = keras.layers.Dense(width, name="value")
        self.attention_output = keras.layers.Dense(d, name="attention_output")
        self.ffn_out = keras.layers.Dense(d, name="ffn_out")
        for layer in (self.attention_norm, self.query, self.key, self.value, self.ffn_norm, self.ffn_in):
            layer.build(input_shape)
        self.attention_output.build((None, None, width))
        self.ffn_out.build((None, None, self.ffn_dim))
        self.built = True

    def _qkv(self, x: Any) -> tuple[Any, Any, Any, Any]:
        """(normalized input, Q scaled by 1/sqrt(d_head), K, V), heads split."""
        q_in = self.attention_norm(x)
        q = split_heads(self.query(q_in), self.num_heads)
        scale = 1.0 / math.sqrt(int(q.shape[-1]))
        return (
            q_in,
            q * scale,
            split_heads(self.key(x), self.num_heads),
            split_heads(self.value(x), self.num_heads),
        )

    def _finish(self, q_in: Any, attended: Any, token_mask: Any, training: Any) -> Any:
        h = self.ffn_norm(q_in + self.attention_output(merge_heads(attended)))
        ffn = self.ffn_out(self._dropout(self.ffn_in(h), self.dropout, training))
        y = h + self._dropout(ffn, self.dropout, training)
        return y if token_mask is None else y * token_mask[..., None]

    def _dropout(self, x: Any, rate: float, training: Any) -> Any:
        return dropout(x, rate, self.seed_generator, training)

    def _key_bias(self, token_mask: Any, dtype: Any) -> Any:
        """(batch, n) additive key bias: 0 for tokens, mask_value for padding."""
        return (1.0 - token_mask) * ops.cast(mask_value(dtype), dtype)

    def call_and_cache(
        self,
        x: Any,
        padding_mask: Any = None,
        timestamps: Any = None,
        lengths: Any = None,
        training: Any = None,
        mask: Any = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Like `call`, and also return the history cache {k, v, key_bias}."""
        del timestamps
        token_mask = resolve_token_mask(x, padding_mask, lengths, mask)
        q_in, q, k, v = self._qkv(x)
        n = ops.shape(x)[1]
        causal = ops.arange(n)[:, None] >= ops.arange(n)[None, :]
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2))
        logits = ops.where(causal, logits, ops.cast(mask_value(q.dtype), q.dtype))
        key_bias = None
        if token_mask is not None:
            key_bias = self._key_bias(token_mask, q.dtype)
            logits = logits + key_bias[:, None, None, :]
        probs = self._dropout(ops.softmax(logits, axis=-1), self.attention_dropout, training)
        y = self._finish(q_in, ops.matmul(probs, v), token_mask, training)
        return y, {"k": k, "v": v, "key_bias": key_bias}

    def call_with_cache(
        self,
        x: Any,
        cache: dict[str, Any],
        positions: Any = None,
        timestamps: Any = None,
        training: Any = None,
    ) -> Any:
        """M-FALCON step: each new token attends to the cached history and itself (joint softmax)."""
        del positions, timestamps
        q_in, q, k, v = self._qkv(x)
        history_logits = ops.matmul(q, ops.swapaxes(cache["k"], -1, -2))
        if cache["key_bias"] is not None:
            history_logits = history_logits + cache["key_bias"][:, None, None, :]
        self_logits = ops.sum(q * k, axis=-1)
        top = ops.maximum(ops.max(history_logits, axis=-1), self_logits)
        history_weights = ops.exp(history_logits - top[..., None])
        self_weights = ops.exp(self_logits - top)
        total = ops.sum(history_weights, axis=-1) + self_weights
        attended = ops.matmul(history_weights, cache["v"]) + self_weights[..., None] * v
        return self._finish(q_in, attended / total[..., None], None, training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            ffn_dim=self.ffn_dim,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            epsilon=self.epsilon,
            seed=self.seed,
        )
        return config
