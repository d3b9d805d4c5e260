"""Sequential item encoder with HSTU or SASRec blocks (retrieval setting of the HSTU paper).

    x_i = sqrt(d) * E[item_i] + P[i]          (E shared by inputs and outputs, id 0 = padding)
    x   = Dropout(x) * mask
    x   = Block_L( ... Block_1(x) )           (HSTULayer or SASRecBlock, causal)
    u_i = normalize( [LayerNorm](x_i) )        (final LayerNorm for SASRec only)
    item vectors: normalize(E[j]);  score(i, j) = <u_i, normalize(E[j])>  (cosine; the training
    loss divides by a temperature, 0.05 in the public configs)

Sequences are right-padded with item id 0. The position table has max_len + 1 rows so that one
token (a target or a ranking candidate) can follow a full max_len history; the HSTU attention
normalizer is therefore L = max_len + 1.

Configs of the public MovieLens-1M protocol (item embedding 50, dropout 0.2): `SASREC_CONFIG`
(2 blocks, 1 head, ffn 50), `HSTU_CONFIG` (2 blocks, 1 head, dqk = dv = 50) and
`HSTU_LARGE_CONFIG` (8 blocks, 2 heads, dqk = dv = 25).

Example:
    encoder = SequentialEncoder(num_items=3706, config=HSTU_CONFIG)
    ids = keras.ops.convert_to_tensor([[5, 9, 2, 0, 0]])          # one history of 3 items
    states = encoder(ids)                                           # (1, 5, 50), L2-normalized
    user = encoder.user_vectors(ids)                                # (1, 50): state at item 2
    scores = keras.ops.matmul(user, keras.ops.transpose(encoder.item_vectors(keras.ops.arange(1, 3707))))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
from keras import ops

from watchnext.models.hstu.config_compile import config_from
from watchnext.models.layers.hstu import HSTULayer, dropout
from watchnext.models.layers.sasrec import SASRecBlock


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of `SequentialEncoder`."""

    block_type: str = "hstu"  # "hstu" or "sasrec"
    num_blocks: int = 2
    num_heads: int = 1
    dqk: int = 50  # HSTU per-head Q/K width
    dv: int = 50  # HSTU per-head U/V width
    ffn_dim: int = 50  # SASRec FFN width
    embedding_dim: int = 50
    max_len: int = 200
    dropout: float = 0.2
    use_time_bias: bool = False  # HSTU only: needs timestamps
    attention_impl: str = "blocked"  # HSTU only: "blocked" or "dense"
    block_size: int = 256  # HSTU only: query block of the blocked attention
    final_layer_norm: bool | None = None  # default: True for SASRec, False for HSTU

    def __post_init__(self) -> None:
        if self.block_type not in ("hstu", "sasrec"):
            raise ValueError(f"block_type must be 'hstu' or 'sasrec', got {self.block_type!r}")

    @property
    def uses_final_layer_norm(self) -> bool:
        return self.block_type == "sasrec" if self.final_layer_norm is None else self.final_layer_norm


SASREC_CONFIG = EncoderConfig(block_type="sasrec", num_blocks=2, num_heads=1, ffn_dim=50)
HSTU_CONFIG = EncoderConfig(block_type="hstu", num_blocks=2, num_heads=1, dqk=50, dv=50)
HSTU_LARGE_CONFIG = EncoderConfig(block_type="hstu", num_blocks=8, num_heads=2, dqk=25, dv=25)
CONFIGS = {"sasrec": SASREC_CONFIG, "hstu": HSTU_CONFIG, "hstu_large": HSTU_LARGE_CONFIG}


def l2_normalize(x: Any, epsilon: float = 1e-12) -> Any:
    """x / max(||x||_2, sqrt(epsilon)) over the last axis; zero rows stay zero."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), epsilon))


def make_block(config: EncoderConfig, index: int) -> keras.layers.Layer:
    """One HSTU or SASRec block as configured."""
    if config.block_type == "sasrec":
        return SASRecBlock(
            num_heads=config.num_heads, ffn_dim=config.ffn_dim, dropout=config.dropout, name=f"sasrec_{index}"
        )
    return HSTULayer(
        num_heads=config.num_heads,
        dqk=config.dqk,
        dv=config.dv,
        max_len=config.max_len + 1,
        dropout=config.dropout,
        use_time_bias=config.use_time_bias,
        attention_impl=config.attention_impl,
        block_size=config.block_size,
        name=f"hstu_{index}",
    )


@keras.saving.register_keras_serializable(package="watchnext")
class SequentialEncoder(keras.Model):
    """Causal sequence encoder; see the module docstring.

    Args:
        num_items: item ids are 1..num_items (0 is padding).
        config: an `EncoderConfig` or its dict (kept as `encoder_config`).

    Call: `encoder(item_ids, timestamps=None, training=None)` with right-padded (batch, n) ids.
    """

    def __init__(self, num_items: int, config: EncoderConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.encoder_config = config_from(config, EncoderConfig, HSTU_CONFIG)
        d = self.encoder_config.embedding_dim
        self.item_embedding = keras.layers.Embedding(self.num_items + 1, d, name="item_embedding")
        self.position_embedding = keras.layers.Embedding(
            self.encoder_config.max_len + 1, d, name="position_embedding"
        )
        self.seed_generator = keras.random.SeedGenerator()
        self.blocks = [make_block(self.encoder_config, i) for i in range(self.encoder_config.num_blocks)]
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=1e-8, name="final_norm")
            if self.encoder_config.uses_final_layer_norm
            else None
        )

    def build(self, input_shape: Any = None) -> None:
        d = self.encoder_config.embedding_dim
        self.item_embedding.build((None, None))
        self.position_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, d))
        if self.final_norm is not None:
            self.final_norm.build((None, None, d))
        self.built = True

    # -- pieces -----------------------------------------------------------------------------------

    def embed(self, item_ids: Any, positions: Any, training: Any = None) -> Any:
        """sqrt(d) * E[ids] + P[positions], dropout, padding rows zeroed."""
        x = self.item_embedding(item_ids) * math.sqrt(self.encoder_config.embedding_dim)
        x = x + self.position_embedding(positions)
        x = dropout(x, self.encoder_config.dropout, self.seed_generator, training)
        return x * ops.cast(ops.not_equal(item_ids, 0), x.dtype)[..., None]

    def head(self, x: Any) -> Any:
        """[final LayerNorm] then L2 normalization."""
        return l2_normalize(self.final_norm(x) if self.final_norm is not None else x)

    def item_vectors(self, item_ids: Any) -> Any:
        """L2-normalized output embeddings of items (shared with the input table)."""
        return l2_normalize(self.item_embedding(item_ids))

    # -- full sequences --------------------------------------------------------------------------

    def call(self, item_ids: Any, timestamps: Any = None, training: Any = None) -> Any:
        """(batch, n) right-padded ids [and timestamps] -> (batch, n, d) normalized states."""
        mask = ops.not_equal(item_ids, 0)
        x = self.embed(item_ids, ops.arange(ops.shape(item_ids)[1])[None, :], training)
        for block in self.blocks:
            x = block(x, padding_mask=mask, timestamps=timestamps, training=training)
        return self.head(x) * ops.cast(mask, x.dtype)[..., None]

    def user_vectors(self, item_ids: Any, timestamps: Any = None) -> Any:
        """(batch, d) state at each row's last valid position (the next-item query)."""
        states = self(item_ids, timestamps=timestamps)
        last = ops.maximum(ops.sum(ops.cast(ops.not_equal(item_ids, 0), "int32"), axis=1) - 1, 0)
        return ops.take_along_axis(states, last[:, None, None], axis=1)[:, 0]

    # -- M-FALCON pieces -------------------------------------------------------------------------

    def encode_history(self, item_ids: Any, timestamps: Any = None) -> list[dict[str, Any]]:
        """Run the (inference-mode) history once and return each block's cache."""
        mask = ops.not_equal(item_ids, 0)
        x = self.embed(item_ids, ops.arange(ops.shape(item_ids)[1])[None, :], training=False)
        caches = []
        for block in self.blocks:
            x, cache = block.call_and_cache(x, padding_mask=mask, timestamps=timestamps, training=False)
            caches.append(cache)
        return caches

    def encode_appended(
        self, item_ids: Any, caches: list[dict[str, Any]], positions: Any, timestamps: Any = None
    ) -> Any:
        """Normalized states of m tokens each appended alone after the cached history.

        item_ids: (batch, m); positions: (batch, 1) position of the appended token (the history
        length); timestamps: optional (batch, m) or (batch, 1).
        """
        x = self.embed(item_ids, ops.broadcast_to(positions, ops.shape(item_ids)), training=False)
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block.call_with_cache(x, cache, positions=positions, timestamps=timestamps, training=False)
        return self.head(x)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_items=self.num_items, config=dataclasses.asdict(self.encoder_config))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequentialEncoder:
        return cls(**config)
