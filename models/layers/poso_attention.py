"""POSO(MHA): multi-head attention with personalized keys and values."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from watchnext.models.layers.poso_gate import PosoGate


@keras.saving.register_keras_serializable(package="watchnext")
class PosoMultiHeadAttention(keras.layers.Layer):
    """Multi-head attention personalized at three levels by POSO gates on `x_pc`.

    Per head `h` (query `Q = query W_q`, key `K = key W_k`, `N` value
    projections `V^(i) = value W_v^(i)`, all with biases):

        K'      = G^k(x_pc) ⊙ K                            keys lightly personalized
        x_hat_h = C * sum_i g_i(x_pc) softmax(Q K'^T / sqrt(d_h)) V^(i)
                = softmax(Q K'^T / sqrt(d_h)) (sum_i C g_i(x_pc) V^(i))
        output  = concat_h(x_hat_h) W_o + b_o

    Queries are not personalized (they already hold the user features). `G^k`
    is a `PosoGate` with one output per key unit (`num_heads * key_dim`, scaled
    by `C` too, so it is 1 at initialization); `g` is a `PosoGate` with `N`
    outputs shared by all heads. The value projections are mixed before the
    attention product (same result, one attention product instead of `N`).
    At initialization both gates are exactly 1, so the layer equals
    `keras.layers.MultiHeadAttention` whose value kernel (and bias) is the sum
    of the `N` value kernels (and biases). Like the Keras layer, the result
    goes through an output projection to `output_dim` (default: the query's
    last dimension).

    Call arguments:
        query: `(batch, T, d_q)`.
        value: `(batch, S, d_v)`.
        personalization_code: `(batch, d_pc)`.
        key: optional `(batch, S, d_k)`; defaults to `value`.
        attention_mask: optional boolean `(batch, T, S)`; True = may attend.
            A query row with no allowed key attends to nothing (output = bias).
        use_causal_mask: also forbid attending to later positions.
        training: Python bool; attention dropout only when True.
        return_attention_scores: also return the `(batch, num_heads, T, S)` weights.

    Returns:
        `(batch, T, output_dim)`, or `(output, scores)`.

    Example:

    ```python
    history = keras.Input((50, 32))          # embedded watch history
    target = keras.Input((1, 32))            # candidate item as the query
    x_pc = keras.Input((10,))
    out = PosoMultiHeadAttention(num_heads=2, key_dim=16)(target, history, x_pc)   # (None, 1, 32)
    ```

    Args:
        num_heads: number of heads.
        key_dim: size `d_h` of each query/key head.
        value_dim: size of each value head (default: `key_dim`).
        num_value_projections: number `N` of value projections mixed by the gate.
        output_dim: size of the output projection (default: query's last dim).
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        scale: correction factor `C` of both gates.
        gate_hidden_units: hidden width of the gate MLPs (default: their outputs).
        kernel_initializer: initializer of the projection kernels.
        seed: seed of the attention dropout.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        num_value_projections: int = 4,
        output_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        scale: float = 2.0,
        gate_hidden_units: int | None = None,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim or key_dim)
        self.num_value_projections = int(num_value_projections)
        self.output_dim = output_dim
        self.dropout = float(dropout)
        self.use_bias = use_bias
        self.scale = float(scale)
        self.gate_hidden_units = gate_hidden_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        heads = (self.num_heads, self.key_dim)
        self.query_dense = self._projection("abc,cde->abde", (None, *heads), "de", "query")
        self.key_dense = self._projection("abc,cde->abde", (None, *heads), "de", "key")
        values = (self.num_value_projections, self.num_heads, self.value_dim)
        self.value_dense = self._projection("abc,cnde->abnde", (None, *values), "nde", "value")
        self.output_dense: keras.layers.EinsumDense | None = None
        self.key_gate = self._gate(self.num_heads * self.key_dim, "key_gate")
        self.value_gate = self._gate(self.num_value_projections, "value_gate")
        self.softmax = keras.layers.Softmax(axis=-1, dtype=self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=seed, dtype=self.dtype_policy)

    def _projection(self, equation: str, shape: tuple, bias_axes: str, name: str) -> keras.layers.EinsumDense:
        return keras.layers.EinsumDense(
            equation,
            output_shape=shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=keras.initializers.get(keras.initializers.serialize(self.kernel_initializer)),
            dtype=self.dtype_policy,
            name=name,
        )

    def _gate(self, units: int, name: str) -> PosoGate:
        return PosoGate(units, self.gate_hidden_units, scale=self.scale, dtype=self.dtype_policy, name=name)

    def build(
        self,
        query_shape: tuple[int | None, ...],
        value_shape: tuple[int | None, ...],
        personalization_code_shape: tuple[int | None, ...],
        key_shape: tuple[int | None, ...] | None = None,
    ) -> None:
        key_shape = value_shape if key_shape is None else key_shape
        shapes = {
            self.query_dense: query_shape,
            self.key_dense: key_shape,
            self.value_dense: value_shape,
            self.key_gate: personalization_code_shape,
            self.value_gate: personalization_code_shape,
        }
        for sublayer, shape in shapes.items():  # helpers may have built some before `call`
            if not sublayer.built:
                sublayer.build(tuple(shape))
        output_dim = self.output_dim or query_shape[-1]
        self.output_dense = self._projection("abcd,cde->abe", (None, output_dim), "e", "attention_output")
        self.output_dense.build((None, None, self.num_heads, self.value_dim))

    def personalized_keys(self, key: Any, personalization_code: Any) -> Any:
        """`K' = G^k(x_pc) ⊙ K`: `(batch, S, num_heads, key_dim)`."""
        gate = ops.reshape(self.key_gate(personalization_code), (-1, 1, self.num_heads, self.key_dim))
        return self.key_dense(key) * gate

    def personalized_values(self, value: Any, personalization_code: Any) -> Any:
        """`sum_i C g_i(x_pc) V^(i)`: `(batch, S, num_heads, value_dim)`."""
        gate = ops.reshape(self.value_gate(personalization_code), (-1, 1, self.num_value_projections, 1, 1))
        return ops.sum(self.value_dense(value) * gate, axis=2)

    def attention_weights(
        self, query: Any, keys: Any, attention_mask: Any = None, use_causal_mask: bool = False
    ) -> Any:
        """`softmax(Q K'^T / sqrt(d_h))` under the mask: `(batch, num_heads, T, S)`."""
        queries = self.query_dense(query) * ops.cast(1.0 / math.sqrt(self.key_dim), self.compute_dtype)
        scores = ops.einsum("bshd,bthd->bhts", keys, queries)
        mask = self._combined_mask(attention_mask, use_causal_mask, ops.shape(scores))
        return self.softmax(scores, mask=mask)

    @staticmethod
    def _combined_mask(attention_mask: Any, use_causal_mask: bool, scores_shape: Any) -> Any:
        mask = None if attention_mask is None else ops.expand_dims(ops.cast(attention_mask, "bool"), 1)
        if use_causal_mask:
            rows = ops.expand_dims(ops.arange(scores_shape[-2]), -1)
            causal = ops.reshape(rows >= ops.arange(scores_shape[-1]), (1, 1, scores_shape[-2], -1))
            mask = causal if mask is None else ops.logical_and(mask, causal)
        return mask

    def call(
        self,
        query: Any,
        value: Any,
        personalization_code: Any,
        key: Any = None,
        attention_mask: Any = None,
        use_causal_mask: bool = False,
        training: bool | None = None,
        return_attention_scores: bool = False,
    ) -> Any:
        keys = self.personalized_keys(value if key is None else key, personalization_code)
        weights = self.attention_weights(query, keys, attention_mask, use_causal_mask)
        values = self.personalized_values(value, personalization_code)
        heads = ops.einsum("bhts,bshd->bthd", self.dropout_layer(weights, training=training), values)
        output = self.output_dense(heads)
        return (output, weights) if return_attention_scores else output

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "num_value_projections": self.num_value_projections,
                "output_dim": self.output_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "scale": self.scale,
                "gate_hidden_units": self.gate_hidden_units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
