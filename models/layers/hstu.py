"""HSTU: Hierarchical Sequential Transduction Unit (Zhai et al., ICML 2024), in `keras.ops`.

One HSTU layer maps a sequence X of shape (batch, n, d) to Y of the same shape:

    U, V, Q, K = Split( SiLU( f1( LayerNorm(X) ) ) )            f1: one linear map d -> 2*h*dv + 2*h*dqk
    A_ij       = SiLU( <Q_i, K_j> + rab^{p,t}(i, j) ) / L    for j <= i and j not padding, else 0
    Y          = f2( Dropout( LayerNorm(A V) * U ) ) + X      f2: one linear map h*dv -> d

with h heads (Q, K, U, V split per head; LayerNorm(A V) runs over all heads together), no softmax
and a *constant* normalizer L = `max_len` (the reference code divides by the padded length; a
constant keeps a token's output independent of how much padding or how many later tokens the
batch has, which makes blocked attention and M-FALCON exact). Padded query positions keep their
input (Y_i = X_i).

rab^{p,t} is `RelativeAttentionBias`: one learned table over the relative position i - j
(2*max_len - 1 entries, clipped at +-(max_len - 1)) plus, optionally, one over log-bucketized time
gaps (`time_gap_buckets`: floor(ln(max(|t_i - t_j|, 1)) / 0.301), clamped to num_time_buckets - 1).
The bias is shared by all heads. Time gaps are t_query - t_key (the reference code uses the next
item's timestamp for the query; we use the query token's own timestamp, so no future time leaks).

Two attention implementations give the same numbers (tests check 1e-5):
  * "dense": the paper's formula, an (n, n) score matrix with the causal and padding masks
    multiplied after the SiLU. Simple; works with a dynamic sequence length.
  * "blocked" (default): queries are cut into `nb` blocks of B <= block_size rows; query block i
    only multiplies against key blocks 0..i, so about (nb + 1) / (2 nb) of the dense work is done.
    The Python loop over blocks unrolls at trace time, so XLA (`jit_compile=True`) sees static
    shapes. These keep the O(n^2) work small:
      - the position bias of query block i is a contiguous column slice of one (B, n) matrix
        gathered once per call; the causal mask lives in that matrix as a large negative bias
        (SiLU(-1e9) = -0 exactly, gradient 0), so no separate mask pass;
      - a block with at least CUSTOM_BACKWARD_MIN_KEYS keys runs `silu_attention`, whose
        hand-written backward keeps every matrix product in a fast layout (plain autodiff emits
        `transpose(S) @ Q` products, ~4x slower on CPU for large blocks) and reuses the forward
        sigmoid; smaller blocks are faster with plain autodiff;
      - a sequence longer than block_size / 2 is cut into at least two blocks;
      - padded keys are masked by zeroing their rows of V (A_ij V_j = 0), an O(n d) operation;
      - with a padding mask, a query block without any valid token is skipped (`ops.cond`), so
        right-padded batches of short sequences skip their padding tail; a small static batch
        (batch x blocks <= PER_SEQUENCE_SKIP_MAX_BLOCKS, e.g. long sequences) is attended one
        sequence at a time, so each sequence skips its own tail.
    It needs a static sequence length; with a dynamic one the layer falls back to "dense".

Sequences should be right-padded (valid tokens first); any padding mask is correct, but only
trailing padding is skipped.

Example:
    layer = HSTULayer(num_heads=2, dqk=25, dv=25, max_len=200)
    x = keras.random.normal((8, 200, 50))
    lengths = keras.ops.convert_to_tensor([200, 150, 20, 3, 200, 199, 1, 64])
    y = layer(x, lengths=lengths)                       # (8, 200, 50)
    y2 = layer(x, padding_mask=keras.ops.arange(200)[None, :] < lengths[:, None])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

TIME_BUCKET_DIVISOR = 0.301
DEFAULT_BLOCK_SIZE = 256
# Key count from which the hand-written backward of `silu_attention` beats autodiff (XLA, CPU).
CUSTOM_BACKWARD_MIN_KEYS = 512
# A padded batch whose static size times its query blocks is at most this is attended one
# sequence at a time, so each sequence skips its own padding blocks (a larger batch only skips
# blocks that are padding in every sequence: unrolling it would slow tracing more than it saves).
PER_SEQUENCE_SKIP_MAX_BLOCKS = 64


def dropout(x: Any, rate: float, seed_generator: Any, training: Any) -> Any:
    """Inverted dropout, x * keep / (1 - rate).

    Same result as `keras.layers.Dropout`, but on TensorFlow it draws the noise with the Philox
    algorithm explicitly: under XLA on CPU, `tf.random.stateless_uniform(alg="auto_select")` with a
    variable seed (what Keras' Dropout runs) costs ~0.75 us per element, 50x more than Philox.
    """
    if not training or rate <= 0.0:
        return x
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        seed = tf.cast(tf.math.floormod(seed_generator.next(), tf.int32.max - 1), tf.int32)
        noise = tf.random.stateless_uniform(tf.shape(x), seed=seed, alg="philox", dtype=x.dtype)
    else:
        noise = keras.random.uniform(ops.shape(x), dtype=x.dtype, seed=seed_generator)
    return ops.where(noise >= rate, x / (1.0 - rate), ops.zeros_like(x))


def mask_value(dtype: Any) -> float:
    """A bias that drives SiLU (and softmax) to exactly 0 without producing inf or NaN."""
    return -3.0e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1.0e9


def time_gap_buckets(delta_t: Any, num_buckets: int = 128) -> Any:
    """Bucket index of time gaps: floor(ln(max(|dt|, 1)) / 0.301), clamped to [0, num_buckets - 1].

    Subtract timestamps in their own (integer or float64) dtype before calling this; epoch seconds
    lose ~100 s of precision in float32.

    Example:
        time_gap_buckets(ops.convert_to_tensor([0, 1, 2, 3600, -3600]))  # [0, 0, 2, 27, 27]
    """
    gap = ops.abs(ops.cast(delta_t, "float32"))
    bucket = ops.floor(ops.log(ops.maximum(gap, 1.0)) / TIME_BUCKET_DIVISOR)
    return ops.cast(ops.clip(bucket, 0, num_buckets - 1), "int32")


def lengths_to_mask(lengths: Any, n: Any) -> Any:
    """Boolean (batch, n) mask, True for the first `lengths[b]` positions of row b."""
    return ops.arange(n)[None, :] < ops.cast(lengths, "int32")[:, None]


def resolve_token_mask(x: Any, padding_mask: Any = None, lengths: Any = None, keras_mask: Any = None) -> Any:
    """(batch, n) float mask in x's dtype from a padding mask, lengths or a Keras mask; None if none."""
    if padding_mask is None:
        padding_mask = keras_mask
    if padding_mask is None and lengths is not None:
        padding_mask = lengths_to_mask(lengths, ops.shape(x)[1])
    if padding_mask is None:
        return None
    return ops.cast(padding_mask, x.dtype)


def split_heads(t: Any, num_heads: int) -> Any:
    """(batch, n, h * e) -> (batch, h, n, e); the batch may be dynamic, h * e must be static."""
    t = ops.reshape(t, (-1, ops.shape(t)[1], num_heads, int(t.shape[-1]) // num_heads))
    return ops.transpose(t, (0, 2, 1, 3))


def merge_heads(t: Any) -> Any:
    """(batch, h, n, e) -> (batch, n, h * e); the batch may be dynamic, h and e must be static."""
    width = int(t.shape[1]) * int(t.shape[3])
    return ops.reshape(ops.transpose(t, (0, 2, 1, 3)), (-1, ops.shape(t)[2], width))


def block_layout(n: int, block_size: int) -> tuple[int, int]:
    """(number of query blocks, block length B) for a static length n; B is a multiple of 8.

    Blocks hold at most `block_size` rows, and a sequence longer than block_size / 2 gets at least
    two: the second block then skips the fully masked quarter of the causal matrix (measured at
    n = 200: 0.75 of the one-block time).
    """
    num_blocks = max(1, math.ceil(n / block_size))
    if num_blocks == 1 and 2 * n > block_size:
        num_blocks = 2
    block = math.ceil(math.ceil(n / num_blocks) / 8) * 8
    return num_blocks, block


def _sum_to_shape(t: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast gradient back to `shape` (leading axes dropped, size-1 axes kept).

    A bias shared by all leading (batch, head) axes is reduced with a ones-vector product: XLA on
    CPU then reads the (already materialized) gradient once instead of fusing the reduction into
    consumers that recompute it.
    """
    extra = len(t.shape) - len(shape)
    if extra and all(size is not None and size != 1 for size in shape):
        flat = ops.reshape(t, (-1, math.prod(shape)))
        ones = ops.ones((1, ops.shape(flat)[0]), dtype=t.dtype)
        return ops.reshape(ops.matmul(ones, flat), shape)
    if extra:
        t = ops.sum(t, axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and t.shape[i] != 1)
    return ops.sum(t, axis=axes, keepdims=True) if axes else t


@ops.custom_gradient
def silu_attention(q: Any, k_t: Any, v: Any, bias: Any) -> Any:
    """O = SiLU(Q K^T + bias) V for one query block, with a hand-written backward pass.

    Shapes: q (b, h, B, e), k_t = K^T (b, h, e, m), v (b, h, m, f), bias broadcastable to
    (b, h, B, m) -> O (b, h, B, f). With S = Q K^T + bias, A = SiLU(S) and upstream dO:
        dA = dO V^T,  dS = dA * (sigmoid(S) + A (1 - sigmoid(S))),
        dQ = dS K,  dK^T = Q^T dS,  dV^T = dO^T A,  dbias = sum of dS over broadcast axes.
    Every product keeps the large (B, m) operand untransposed (XLA and TF on CPU run
    `transpose(big) @ small` ~4x slower than these forms, and plain autodiff produces two of them).
    """
    scores = ops.matmul(q, k_t) + bias
    gate = ops.sigmoid(scores)
    weights = scores * gate
    output = ops.matmul(weights, v)

    def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any, Any, Any]:
        d_out = args[0] if upstream is None else upstream
        d_weights = ops.matmul(d_out, ops.swapaxes(v, -1, -2))
        d_scores = d_weights * (gate + weights * (1.0 - gate))
        d_q = ops.matmul(d_scores, ops.swapaxes(k_t, -1, -2))
        d_k_t = ops.matmul(ops.swapaxes(q, -1, -2), d_scores)
        d_v = ops.swapaxes(ops.matmul(ops.swapaxes(d_out, -1, -2), weights), -1, -2)
        return d_q, d_k_t, d_v, _sum_to_shape(d_scores, tuple(bias.shape))

    return output, grad


def silu_attention_autodiff(q: Any, k_t: Any, v: Any, bias: Any) -> Any:
    """The same O = SiLU(Q K^T + bias) V as `silu_attention`, differentiated by the backend.

    Faster for small blocks (fewer than `CUSTOM_BACKWARD_MIN_KEYS` keys), where the layout of
    the backward products matters less than the extra work of the hand-written pass.
    """
    return ops.matmul(ops.silu(ops.matmul(q, k_t) + bias), v)


def block_attention(q: Any, k_t: Any, v: Any, bias: Any) -> Any:
    """`silu_attention` for blocks with many keys, `silu_attention_autodiff` for small ones."""
    keys = k_t.shape[-1]
    if keys is not None and keys < CUSTOM_BACKWARD_MIN_KEYS:
        return silu_attention_autodiff(q, k_t, v, bias)
    return silu_attention(q, k_t, v, bias)


@keras.saving.register_keras_serializable(package="watchnext")
class RelativeAttentionBias(keras.layers.Layer):
    """rab^{p,t}(i, j) = w_p[clip(p_i - p_j)] + w_t[bucket(t_i - t_j)], shared by all heads.

    w_p has 2 * max_len - 1 entries (relative positions -(max_len - 1) .. max_len - 1, clipped);
    w_t has `num_time_buckets` entries over `time_gap_buckets` and exists only if `use_time`.

    Example:
        rab = RelativeAttentionBias(max_len=200, use_time=True)
        pos = ops.arange(10)[None, :]
        ts = ops.convert_to_tensor([[0, 5, 9, 60, 61, 3600, 3601, 3700, 90000, 90001]])
        bias = rab(pos, pos, ts, ts)   # (1, 10, 10)
    """

    def __init__(
        self,
        max_len: int,
        num_time_buckets: int = 128,
        use_time: bool = False,
        initializer_stddev: float = 0.02,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_len = int(max_len)
        self.num_time_buckets = int(num_time_buckets)
        self.use_time = bool(use_time)
        self.initializer_stddev = float(initializer_stddev)

    def build(self, input_shape: Any = None) -> None:
        init = keras.initializers.RandomNormal(stddev=self.initializer_stddev)
        self.position_table = self.add_weight(
            shape=(2 * self.max_len - 1,), initializer=init, name="position_table"
        )
        if self.use_time:
            self.time_table = self.add_weight(
                shape=(self.num_time_buckets,), initializer=init, name="time_table"
            )
        self.built = True

    def position_bias_from_relative(self, relative: Any) -> Any:
        """w_p at integer relative positions (any shape)."""
        limit = self.max_len - 1
        index = ops.clip(relative, -limit, limit) + limit
        return ops.take(self.position_table, ops.cast(index, "int32"))

    def time_bias(self, q_timestamps: Any, k_timestamps: Any) -> Any:
        """(..., nq), (..., nk) timestamps -> (..., nq, nk) time bias."""
        delta = q_timestamps[..., :, None] - k_timestamps[..., None, :]
        return ops.take(self.time_table, time_gap_buckets(delta, self.num_time_buckets))

    def causal_rows(self, block: int, n: int, dtype: Any = "float32") -> Any:
        """(block, n) matrix G, G[a, m] = rab^p at relative position n - block + a - m (future: mask).

        Query block i (rows i*B .. i*B + B - 1) against keys 0 .. (i+1)*B - 1 reads the contiguous
        slice G[:, n - (i+1)*B : n]. Negative relative positions (future keys) hold `mask_value`, so
        the causal mask costs no extra pass: SiLU(-1e9) = -0 exactly, with gradient 0.
        G is one (block, n) gather per call; XLA materializes it, so the O(n^2) fusions read plain
        slices (an index-arithmetic Toeplitz inside them would stop their vectorization).
        """
        relative = (n - block) + ops.arange(block)[:, None] - ops.arange(n)[None, :]
        limit = self.max_len - 1
        table = ops.concatenate(
            [ops.cast(self.position_table, dtype), ops.full((1,), mask_value(dtype), dtype=dtype)]
        )
        index = ops.where(relative >= 0, ops.minimum(relative, limit) + limit, 2 * limit + 1)
        return ops.take(table, ops.cast(index, "int32"))

    def call(
        self,
        q_positions: Any,
        k_positions: Any,
        q_timestamps: Any = None,
        k_timestamps: Any = None,
    ) -> Any:
        """Positions (..., nq), (..., nk) [and timestamps of the same shapes] -> bias (..., nq, nk)."""
        relative = q_positions[..., :, None] - k_positions[..., None, :]
        bias = self.position_bias_from_relative(relative)
        if self.use_time and q_timestamps is not None and k_timestamps is not None:
            bias = bias + self.time_bias(q_timestamps, k_timestamps)
        return bias

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            max_len=self.max_len,
            num_time_buckets=self.num_time_buckets,
            use_time=self.use_time,
            initializer_stddev=self.initializer_stddev,
        )
        return config


class CachingSequenceBlock(keras.layers.Layer):
    """Base of the causal sequence blocks (HSTU, SASRec): `call` is `call_and_cache` minus the cache.

    Subclasses implement `call_and_cache(x, padding_mask, timestamps, lengths, training, mask)`
    returning (output, history cache) and `call_with_cache` for M-FALCON scoring.
    The output keeps the input's shape and mask.
    """

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return mask

    def call(
        self,
        x: Any,
        padding_mask: Any = None,
        timestamps: Any = None,
        lengths: Any = None,
        training: Any = None,
        mask: Any = None,
    ) -> Any:
        y, _ = self.call_and_cache(x, padding_mask, timestamps, lengths, training, mask)
        return y


@keras.saving.register_keras_serializable(package="watchnext")
class HSTULayer(CachingSequenceBlock):
    """One HSTU layer (see the module docstring for the equations and the two attention paths).

    Args:
        num_heads: h.
        dqk: per-head width of Q and K.
        dv: per-head width of U and V.
        max_len: longest sequence the position bias distinguishes; also the attention normalizer L.
        dropout: dropout rate on LayerNorm(A V) * U, before f2 (as in the reference code).
        use_time_bias: add the bucketized time-gap bias (needs `timestamps` in `call`).
        num_time_buckets: size of the time-gap table.
        attention_impl: "blocked" (default) or "dense".
        block_size: largest query block of the blocked path.
        skip_empty_blocks: in the blocked path, skip query blocks that hold only padding.
        epsilon: LayerNorm epsilon.
        seed: dropout seed.
        uvqk_init_stddev: f1's kernel starts N(0, uvqk_init_stddev^2), 0.02 as in the reference
            code: U, V, Q, K start small, so each layer starts close to the identity. (With Keras'
            default Glorot init, std ~0.09 at d = 50, the 8-layer HSTU-large sat on a loss plateau
            for its first epochs on ML-1M: loss 6.55 / 4.31 / 4.25 / ... / 4.22 at epoch 6, against
            5.60 / 3.96 after two epochs with 0.02.) f2 keeps Glorot uniform, as there.

    Call arguments:
        x: (batch, n, d) float.
        padding_mask: optional (batch, n) bool/0-1, True for real tokens (also taken from a Keras mask).
        timestamps: optional (batch, n) int or float event times (needed when use_time_bias).
        lengths: optional (batch,) valid lengths of right-padded rows (instead of padding_mask).
        training: dropout switch.

    Example:
        layer = HSTULayer(num_heads=1, dqk=50, dv=50, max_len=200)
        y = layer(keras.random.normal((4, 200, 50)), lengths=ops.convert_to_tensor([200, 10, 1, 77]))
    """

    def __init__(
        self,
        num_heads: int = 1,
        dqk: int = 50,
        dv: int = 50,
        max_len: int = 200,
        dropout: float = 0.0,
        use_time_bias: bool = False,
        num_time_buckets: int = 128,
        attention_impl: str = "blocked",
        block_size: int = DEFAULT_BLOCK_SIZE,
        skip_empty_blocks: bool = True,
        epsilon: float = 1e-6,
        seed: int | None = None,
        uvqk_init_stddev: float = 0.02,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if attention_impl not in ("blocked", "dense"):
            raise ValueError(f"attention_impl must be 'blocked' or 'dense', got {attention_impl!r}")
        self.num_heads, self.dqk, self.dv = int(num_heads), int(dqk), int(dv)
        self.max_len, self.dropout = int(max_len), float(dropout)
        self.use_time_bias, self.num_time_buckets = bool(use_time_bias), int(num_time_buckets)
        self.attention_impl, self.block_size = attention_impl, int(block_size)
        self.skip_empty_blocks, self.epsilon = bool(skip_empty_blocks), float(epsilon)
        self.seed = seed
        self.uvqk_init_stddev = float(uvqk_init_stddev)
        self.supports_masking = True
        width = 2 * self.num_heads * (self.dv + self.dqk)
        self.input_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="input_norm")
        self.f1 = keras.layers.Dense(
            width,
            use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=self.uvqk_init_stddev),
            name="f1_uvqk",
        )
        self.attention_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="attention_norm")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.rab = RelativeAttentionBias(
            max_len=self.max_len,
            num_time_buckets=self.num_time_buckets,
            use_time=self.use_time_bias,
            name="rab",
        )
        self.f2: keras.layers.Dense | None = None

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        self.f2 = keras.layers.Dense(d, name="f2_output")
        self.input_norm.build(input_shape)
        self.f1.build(input_shape)
        self.attention_norm.build((None, None, self.num_heads * self.dv))
        self.f2.build((None, None, self.num_heads * self.dv))
        self.rab.build()
        self.built = True

    # -- pieces -----------------------------------------------------------------------------------

    def project(self, x: Any) -> tuple[Any, Any, Any, Any]:
        """U, V, Q, K = Split(SiLU(f1(LN(x)))), each (batch, h, n, e)."""
        hv, hq = self.num_heads * self.dv, self.num_heads * self.dqk
        z = ops.silu(self.f1(self.input_norm(x)))
        u, v, q, k = z[..., :hv], z[..., hv : 2 * hv], z[..., 2 * hv : 2 * hv + hq], z[..., 2 * hv + hq :]
        return (
            u,
            split_heads(v, self.num_heads),
            split_heads(q, self.num_heads),
            split_heads(k, self.num_heads),
        )

    def finish(self, attended: Any, u: Any, x: Any, token_mask: Any, training: Any) -> Any:
        """Y = X + mask * f2(Dropout(LN(merge(A V) / L) * U))."""
        av = merge_heads(attended) * (1.0 / self.max_len)
        delta = self.f2(dropout(self.attention_norm(av) * u, self.dropout, self.seed_generator, training))
        if token_mask is not None:
            delta = delta * token_mask[..., None]
        return x + delta

    # -- attention paths -------------------------------------------------------------------------

    def dense_attention(self, q: Any, k: Any, v: Any, timestamps: Any, token_mask: Any) -> Any:
        """Reference path: full (n, n) scores, SiLU, then causal and key-padding masks; returns A V * L."""
        n = ops.shape(q)[2]
        positions = ops.arange(n)[None, :]
        bias = self.rab(positions, positions, timestamps, timestamps)
        scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) + ops.cast(bias[:, None], q.dtype)
        weights = ops.silu(scores) * ops.cast(ops.tril(ops.ones((n, n))), q.dtype)
        if token_mask is not None:
            weights = weights * token_mask[:, None, None, :]
        return ops.matmul(weights, v)

    def blocked_attention(self, q: Any, k: Any, v: Any, timestamps: Any, token_mask: Any) -> Any:
        """Causal block attention over query blocks; returns A V * L. Needs a static length n."""
        n = int(q.shape[2])
        num_blocks, block = block_layout(n, self.block_size)
        n_pad = num_blocks * block
        if n_pad > n:
            q, k, v = (_pad_axis(t, n_pad - n, axis=2) for t in (q, k, v))
            timestamps = None if timestamps is None else _pad_axis(timestamps, n_pad - n, axis=1)
            token_mask = None if token_mask is None else _pad_axis(token_mask, n_pad - n, axis=1)
        if token_mask is not None:
            v = v * token_mask[:, None, :, None]
        rows = self.rab.causal_rows(block, n_pad, q.dtype)
        k_t = ops.swapaxes(k, -1, -2)
        batch = q.shape[0]
        if token_mask is None or batch is None or batch * num_blocks > PER_SEQUENCE_SKIP_MAX_BLOCKS:
            attended = self._attend_blocks(q, k_t, v, rows, timestamps, token_mask, num_blocks, block)
        else:  # a small static batch: skip each sequence's own padding blocks
            attended = ops.concatenate(
                [
                    self._attend_blocks(
                        q[s : s + 1],
                        k_t[s : s + 1],
                        v[s : s + 1],
                        rows,
                        None if timestamps is None else timestamps[s : s + 1],
                        token_mask[s : s + 1],
                        num_blocks,
                        block,
                    )
                    for s in range(batch)
                ],
                axis=0,
            )
        return attended[:, :, :n] if n_pad > n else attended

    def _attend_blocks(
        self,
        q: Any,
        k_t: Any,
        v: Any,
        rows: Any,
        timestamps: Any,
        token_mask: Any,
        num_blocks: int,
        block: int,
    ) -> Any:
        """A V * L of padded inputs, query block by query block (empty blocks of the batch skipped)."""
        n_pad = num_blocks * block
        use_time = self.use_time_bias and timestamps is not None
        outputs = []
        for i in range(num_blocks):
            lo, hi = i * block, (i + 1) * block

            def one_block(lo: int = lo, hi: int = hi) -> Any:
                bias = rows[:, n_pad - hi :]
                if use_time:
                    time_bias = self.rab.time_bias(timestamps[:, lo:hi], timestamps[:, :hi])
                    bias = bias + ops.cast(time_bias[:, None], q.dtype)
                return self.attend_block(q[:, :, lo:hi], k_t[..., :hi], v[:, :, :hi], bias)

            outputs.append(self._maybe_skip(one_block, token_mask, lo, hi, num_blocks, v))
        return outputs[0] if num_blocks == 1 else ops.concatenate(outputs, axis=2)

    def attend_block(self, q: Any, k_t: Any, v: Any, bias: Any) -> Any:
        """SiLU(Q K^T + bias) V of one query block of the blocked path (`block_attention`)."""
        return block_attention(q, k_t, v, bias)

    def _maybe_skip(
        self, fn: Callable[[], Any], token_mask: Any, lo: int, hi: int, num_blocks: int, v: Any
    ) -> Any:
        if token_mask is None or not self.skip_empty_blocks or num_blocks == 1:
            return fn()
        shape = ops.shape(v)

        def zeros() -> Any:
            return ops.zeros((shape[0], shape[1], hi - lo, shape[3]), dtype=v.dtype)

        return ops.cond(ops.any(token_mask[:, lo:hi] > 0), fn, zeros)

    def attend(self, q: Any, k: Any, v: Any, timestamps: Any, token_mask: Any) -> Any:
        """A V * L with the configured implementation (dense when the length is dynamic)."""
        if self.attention_impl == "blocked" and q.shape[2] is not None:
            return self.blocked_attention(q, k, v, timestamps, token_mask)
        return self.dense_attention(q, k, v, timestamps, token_mask)

    # -- public calls ----------------------------------------------------------------------------

    def call_and_cache(
        self,
        x: Any,
        padding_mask: Any = None,
        timestamps: Any = None,
        lengths: Any = None,
        training: Any = None,
        mask: Any = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Like `call`, and also return the history cache {k, v (padding rows zeroed), timestamps}."""
        token_mask = resolve_token_mask(x, padding_mask, lengths, mask)
        u, v, q, k = self.project(x)
        attended = self.attend(q, k, v, timestamps, token_mask)
        if token_mask is not None:
            v = v * token_mask[:, None, :, None]
        cache = {"k": k, "v": v, "timestamps": timestamps}
        return self.finish(attended, u, x, token_mask, training), cache

    def call_with_cache(
        self, x: Any, cache: dict[str, Any], positions: Any, timestamps: Any = None, training: Any = None
    ) -> Any:
        """M-FALCON step: each of the m new tokens attends to every cached token and to itself only.

        Equivalent to attention over [history; new] with the mask [1_{m x n} | I_m] (new tokens do
        not see each other), computed without the (m, m) block: the self term is a row-wise dot.

        Args:
            x: (batch, m, d) new tokens (e.g. candidates).
            cache: from `call_and_cache` on the history (batch, n, d).
            positions: (batch, m) or (batch, 1) int positions of the new tokens (history length for
                candidates appended after a right-padded history).
            timestamps: optional (batch, m) / (batch, 1) times of the new tokens.
        """
        u, v, q, k = self.project(x)
        m, n = ops.shape(q)[2], ops.shape(cache["k"])[2]
        positions = ops.broadcast_to(ops.cast(positions, "int32"), (ops.shape(x)[0], m))
        history_positions = ops.arange(n)[None, :]
        use_time = self.use_time_bias and timestamps is not None and cache["timestamps"] is not None
        if use_time:
            timestamps = ops.broadcast_to(timestamps, (ops.shape(x)[0], m))
        bias = self.rab(positions, history_positions, timestamps if use_time else None, cache["timestamps"])
        scores = ops.matmul(q, ops.swapaxes(cache["k"], -1, -2)) + ops.cast(bias[:, None], q.dtype)
        attended = ops.matmul(ops.silu(scores), cache["v"])
        self_bias = self.rab.position_bias_from_relative(ops.zeros_like(positions))
        if use_time:
            self_bias = self_bias + ops.take(self.rab.time_table, time_gap_buckets(0.0))
        self_weight = ops.silu(ops.sum(q * k, axis=-1) + ops.cast(self_bias[:, None], q.dtype))
        attended = attended + self_weight[..., None] * v
        return self.finish(attended, u, x, None, training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            dqk=self.dqk,
            dv=self.dv,
            max_len=self.max_len,
            dropout=self.dropout,
            use_time_bias=self.use_time_bias,
            num_time_buckets=self.num_time_buckets,
            attention_impl=self.attention_impl,
            block_size=self.block_size,
            skip_empty_blocks=self.skip_empty_blocks,
            epsilon=self.epsilon,
            seed=self.seed,
            uvqk_init_stddev=self.uvqk_init_stddev,
        )
        return config


def _pad_axis(t: Any, amount: int, axis: int) -> Any:
    """Zero-pad `amount` entries at the end of `axis`."""
    widths = [(0, 0)] * len(t.shape)
    widths[axis] = (0, amount)
    return ops.pad(t, widths)
