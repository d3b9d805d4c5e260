"""Shallow tower that models selection (position) bias from bias features only.

Reference: Zhao et al., "Recommending What Video to Watch Next: A Multitask
Ranking System", RecSys 2019, section 4.3.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="watchnext")
class ShallowBiasTower(keras.layers.Layer):
    """Bias logit from position, device and their cross, added to engagement logits.

    Inputs are only bias features: the 1-based position `p` of the impression
    in the list (0 = missing) and the device index `d`. With embedding tables
    `E_pos` (`num_positions + 1` rows, row 0 = missing), `E_dev` and
    `E_cross` (one row per `(p, d)` pair, since position bias differs per
    device):

        p  = clip(p, 0, num_positions)          (above the last bucket -> last bucket)
        h  = [E_pos[p], E_dev[d], E_cross[p * num_devices + d]]
        b(p, d) = w^T MLP(h) + b_0                one logit

    With the default `hidden_units=()` the MLP is the identity, so `b(p, d)`
    is a sum of learned per-position, per-device and per-cross terms. The
    ranker adds `b(p, d)` to the engagement logit(s) before the sigmoid.

    Training: `p` is set to missing (0) with probability `position_dropout`,
    per example, so the model does not lean on position (the cross uses the
    dropped position too). Serving: the caller sets position to missing, so
    the score is the unbiased relevance; a missing position has its own
    learned embedding (row 0), as does its cross with every device.

    Call arguments:
        position: integer tensor `(batch,)` or `(batch, 1)`; values <= 0 mean missing.
        device: integer tensor `(batch,)` or `(batch, 1)` in `[0, num_devices)`
            (out-of-range values are clipped).
        training: Python bool; position dropout only when True.

    Returns:
        `(batch, 1)` bias logit.

    Example:

    ```python
    tower = ShallowBiasTower(num_positions=20, num_devices=len(features.DEVICES))
    bias_logit = tower(position, device)             # (batch, 1)
    click_logit = engagement_logit + bias_logit
    table = tower.bias_table()                       # (21, 4) numpy, row p, column d
    ```

    Args:
        num_positions: number of position buckets (positions 1..num_positions).
        num_devices: number of device indices.
        embedding_dim: size of each embedding.
        hidden_units: widths of an optional MLP on the concatenated embeddings.
        position_dropout: probability of setting position to missing in training.
        embeddings_initializer: initializer of the embedding tables.
        seed: seed of the position-dropout draws.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        num_positions: int,
        num_devices: int,
        embedding_dim: int = 4,
        hidden_units: list[int] | tuple[int, ...] = (),
        position_dropout: float = 0.1,
        embeddings_initializer: Any = "uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_positions < 1 or num_devices < 1:
            raise ValueError("ShallowBiasTower needs num_positions >= 1 and num_devices >= 1.")
        if not 0.0 <= position_dropout < 1.0:
            raise ValueError(f"position_dropout must be in [0, 1), got {position_dropout}.")
        self.num_positions = int(num_positions)
        self.num_devices = int(num_devices)
        self.embedding_dim = int(embedding_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.position_dropout = float(position_dropout)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.position_embedding = self._embedding(self.num_positions + 1, "position")
        self.device_embedding = self._embedding(self.num_devices, "device")
        self.cross_embedding = self._embedding((self.num_positions + 1) * self.num_devices, "cross")
        self.hidden = [
            keras.layers.Dense(u, activation="relu", dtype=self.dtype_policy, name=f"hidden_{k}")
            for k, u in enumerate(self.hidden_units)
        ]
        self.logit = keras.layers.Dense(1, dtype=self.dtype_policy, name="logit")

    def _embedding(self, rows: int, name: str) -> keras.layers.Embedding:
        return keras.layers.Embedding(
            rows,
            self.embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            dtype=self.dtype_policy,
            name=f"{name}_embedding",
        )

    @property
    def embeddings(self) -> tuple[keras.layers.Embedding, ...]:
        return (self.position_embedding, self.device_embedding, self.cross_embedding)

    def build(self, position_shape: Any = None, device_shape: Any = None) -> None:
        for embedding in self.embeddings:
            embedding.build((None,))
        width = 3 * self.embedding_dim
        for dense in self.hidden:
            dense.build((None, width))
            width = dense.units
        self.logit.build((None, width))

    def indices(self, position: Any, device: Any, training: bool | None = None) -> tuple[Any, Any, Any]:
        """Embedding rows `(position, device, cross)`, each `(batch,)` int32, after dropout."""
        position = ops.clip(ops.reshape(ops.cast(position, "int32"), (-1,)), 0, self.num_positions)
        device = ops.clip(ops.reshape(ops.cast(device, "int32"), (-1,)), 0, self.num_devices - 1)
        if training and self.position_dropout > 0.0:
            drop = keras.random.uniform(ops.shape(position), seed=self.seed_generator) < self.position_dropout
            position = ops.where(drop, ops.zeros_like(position), position)
        return position, device, position * self.num_devices + device

    def call(self, position: Any, device: Any, training: bool | None = None) -> Any:
        rows = self.indices(position, device, training=training)
        hidden = ops.concatenate(
            [table(ids) for table, ids in zip(self.embeddings, rows, strict=True)], axis=-1
        )
        for dense in self.hidden:
            hidden = dense(hidden)
        return self.logit(hidden)

    def compute_output_shape(self, position_shape: Any, device_shape: Any) -> tuple[int | None, int]:
        return (position_shape[0], 1)

    def bias_table(self) -> np.ndarray:
        """Learned bias logits `(num_positions + 1, num_devices)`; row `p`, column `d`; row 0 = missing.

        Compare a column's rows 1.. with the true propensity curve (e.g. by Spearman correlation).
        """
        grid = np.stack(
            np.meshgrid(np.arange(self.num_positions + 1), np.arange(self.num_devices), indexing="ij"), -1
        ).reshape(-1, 2)
        logits = self(grid[:, 0].astype("int32"), grid[:, 1].astype("int32"), training=False)
        return ops.convert_to_numpy(logits).reshape(self.num_positions + 1, self.num_devices)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_positions": self.num_positions,
                "num_devices": self.num_devices,
                "embedding_dim": self.embedding_dim,
                "hidden_units": list(self.hidden_units),
                "position_dropout": self.position_dropout,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "seed": self.seed,
            }
        )
        return config
