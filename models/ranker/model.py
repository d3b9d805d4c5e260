"""The multitask ranker on transformed features (Keras 3, `keras.ops`).

    x      = [E_user, E_item, E_user ⊙ E_item, mean(E_genre), E_device, E_surface, E_hour, E_views,
              E_age, numerics]
    h      = ReLU(W_b x)  [POSO: C g(x_pc) ⊙ ReLU(W_b x)]        shared bottom layer
    f^t    = MMoE(h)^t | PosoMMoE(h, x_pc)^t | ReLU(W_s h)        deep part, per task t
    z^t    = w_t^T ReLU(V_t f^t) + wide^t(crosses)                task logit / value
    z^click += b(position, device)                                 bias tower (position missing
                                                                   at inference)

Tasks (config.TASKS): click and like are sigmoid probabilities (BCE), watch time
predicts log1p(seconds) (squared error), rating predicts 1-5 (squared error,
masked where the label is 0 = missing). `score` = sum_t w_t prediction_t.

The wide part is one learned weight per task for each hashed cross
(item x device, device x surface, view bucket x new item, hour x surface).
The personalization code of POSO is x_pc = [one_hot(view bucket), user_is_new, item_is_new].

Position: with `position_mode="bias_tower"` the shallow tower's logit is added
to the click logit. In training it reads the logged position (dropped to
missing at rate `position_dropout`); at inference (and in training without a
`position` input) position is missing whatever the inputs hold, as the YouTube
paper serves it: b(missing, device) is a per-device constant (the device's mean
examination), so the order of one request's candidates is the unbiased
relevance order and the click probability stays calibrated per device.
`bias_tower_at_serving=False` leaves the tower out at inference instead. With
`"feature"` position is a deep input, scored at `config.serving_position` when
absent. With `"none"` it is ignored.

Cold users: with `new_user_id_as_oov` a new user's id (user_is_new = 1) is looked up as
the out-of-vocabulary row in training and at serving, so every new user shares one
learned embedding (a new user met at serving is out of the vocabulary anyway).

With `deep="poso_mmoe"` and `poso_bottom` the shared bottom layer is a
`PosoDense` as well (POSO's MLP variant besides its MMoE variant; off by default: it did not
lift new users in `benchmarks/ranking_quality.py`).

Example:
    ranker = MultitaskRanker(RankerConfig(), vocabulary_sizes={"user_id": 1001, ...})
    outputs = ranker(transformed_features, training=False)   # dict: click, like, ..., score
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from watchnext.models import features as F
from watchnext.models.layers import MMoE, PosoDense, PosoMMoE, ShallowBiasTower
from watchnext.models.ranker import config as C
from watchnext.models.ranker.preprocessing import AGE_BOUNDARIES_DAYS, NUM_POSITIONS

VIEW_BUCKETS = 8  # FeatureGen's 7 boundaries -> buckets 0..7
HOURS = 24
# Features the ranker reads (besides position), with the size of their index space
# where it is fixed; vocabulary-sized ones come from the Transform output.
VOCABULARY_FEATURES = (F.USER_ID, F.ITEM_ID, F.ITEM_GENRES)
NUMERIC_FEATURES = (
    F.ITEM_DURATION_S,
    F.USER_HOURS_SINCE_FIRST_SEEN,
    F.ITEM_EXPOSURE_COUNT,
    F.USER_VIEW_COUNT,
    F.USER_RECENT_CLICK_RATE,
    F.USER_IS_NEW,
    F.ITEM_IS_NEW,
)
WIDE_CROSSES = (
    (F.ITEM_ID, F.DEVICE),
    (F.DEVICE, F.SURFACE),
    (F.USER_VIEW_COUNT_BUCKET, F.ITEM_IS_NEW),
    (F.HOUR_OF_DAY, F.SURFACE),
)


def fixed_sizes() -> dict[str, int]:
    return {
        F.DEVICE: len(F.DEVICES) + 1,
        F.SURFACE: len(F.SURFACES) + 1,
        F.HOUR_OF_DAY: HOURS,
        F.USER_VIEW_COUNT_BUCKET: VIEW_BUCKETS,
        F.ITEM_AGE_BUCKET: len(AGE_BOUNDARIES_DAYS) + 1,
        F.USER_IS_NEW: 2,
        F.ITEM_IS_NEW: 2,
    }


@keras.saving.register_keras_serializable(package="watchnext")
class MultitaskRanker(keras.Model):
    """Wide&Deep multitask ranker with MMoE / POSO-MMoE / shared bottom and a bias tower.

    Args:
        config: a `RankerConfig` or its dict.
        vocabulary_sizes: rows of the user, item and genre tables (vocabulary + OOV;
            genres + padding), keyed by `features.USER_ID`, `ITEM_ID`, `ITEM_GENRES`.
    """

    def __init__(self, config: C.RankerConfig | dict, vocabulary_sizes: dict[str, int], **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, C.RankerConfig) else C.RankerConfig.from_dict(config)
        missing = set(VOCABULARY_FEATURES) - set(vocabulary_sizes)
        if missing:
            raise ValueError(f"vocabulary_sizes lacks {sorted(missing)}")
        self.vocabulary_sizes = {k: int(v) for k, v in vocabulary_sizes.items()}
        cfg = self.config
        sizes = {**fixed_sizes(), **self.vocabulary_sizes}
        self.sizes = sizes
        self.embeddings = {
            name: keras.layers.Embedding(
                sizes[name],
                cfg.embedding_dim if name in (F.USER_ID, F.ITEM_ID) else cfg.small_embedding_dim,
                name=f"embed_{name}",
            )
            for name in (
                F.USER_ID,
                F.ITEM_ID,
                F.ITEM_GENRES,
                F.DEVICE,
                F.SURFACE,
                F.HOUR_OF_DAY,
                F.USER_VIEW_COUNT_BUCKET,
                F.ITEM_AGE_BUCKET,
            )
        }
        if cfg.position_mode == C.POSITION_FEATURE:
            self.position_embedding = keras.layers.Embedding(
                NUM_POSITIONS + 1, cfg.small_embedding_dim, name="embed_position"
            )
        if cfg.position_mode == C.POSITION_BIAS_TOWER:
            self.bias_tower = ShallowBiasTower(
                num_positions=NUM_POSITIONS,
                num_devices=sizes[F.DEVICE],
                position_dropout=cfg.position_dropout,
                seed=cfg.seed,
                name="bias_tower",
            )
        self.wide = keras.layers.Embedding(cfg.wide_bins, len(C.TASKS), embeddings_initializer="zeros",
                                           name="wide")  # fmt: skip
        if cfg.deep == C.DEEP_POSO_MMOE and cfg.poso_bottom:
            self.bottom = PosoDense(cfg.bottom_units, activation="relu", scale=cfg.poso_scale, name="bottom")
        else:
            self.bottom = keras.layers.Dense(cfg.bottom_units, activation="relu", name="bottom")
        num_tasks = len(C.TASKS)
        if cfg.deep == C.DEEP_MMOE:
            self.deep = MMoE(cfg.num_experts, list(cfg.expert_units), num_tasks,
                             gate_dropout=cfg.gate_dropout, seed=cfg.seed, name="mmoe")  # fmt: skip
        elif cfg.deep == C.DEEP_POSO_MMOE:
            self.deep = PosoMMoE(cfg.num_experts, list(cfg.expert_units), num_tasks,
                                 gate_dropout=cfg.gate_dropout, scale=cfg.poso_scale, seed=cfg.seed,
                                 name="poso_mmoe")  # fmt: skip
        else:
            self.deep = keras.layers.Dense(cfg.expert_units[-1], activation="relu", name="shared_bottom")
        self.towers = {
            task: keras.Sequential(
                [keras.layers.Dense(cfg.tower_units, activation="relu"), keras.layers.Dense(1)],
                name=f"tower_{task}",
            )
            for task in C.TASKS
        }

    def build(self, input_shape: dict | None = None) -> None:
        """Creates every weight (bias tower included) by one call on zeros of the input shapes."""
        shapes = dict(input_shape or {})
        shapes.setdefault(F.ITEM_GENRE_IDS, (None, 1))
        zeros = {name: ops.zeros((1, *tuple(shape)[1:]), "int32") for name, shape in shapes.items()}
        for name in (*self.embeddings, *NUMERIC_FEATURES, F.USER_VIEW_COUNT_BUCKET):
            zeros.setdefault(name, ops.zeros((1,), "int32"))
        self.call(zeros, training=False)
        if self.config.position_mode == C.POSITION_BIAS_TOWER and not self.bias_tower.built:
            self.bias_tower.build()
        self.built = True

    # ------------------------------------------------------------------ pieces

    def personalization_code(self, inputs: dict) -> Any:
        buckets = ops.clip(self._int(inputs[F.USER_VIEW_COUNT_BUCKET]), 0, VIEW_BUCKETS - 1)
        return ops.concatenate(
            [
                ops.one_hot(buckets, VIEW_BUCKETS),
                self._float(inputs[F.USER_IS_NEW])[:, None],
                self._float(inputs[F.ITEM_IS_NEW])[:, None],
            ],
            axis=-1,
        )

    def deep_input(self, inputs: dict) -> Any:
        embedded = {}
        for name, table in self.embeddings.items():
            if name == F.ITEM_GENRES:
                genre_ids = self._int(inputs[F.ITEM_GENRE_IDS], keep_shape=True)
                mask = ops.cast(genre_ids > 0, "float32")[..., None]
                total = ops.sum(table(genre_ids) * mask, axis=1)
                embedded[name] = total / ops.maximum(ops.sum(mask, axis=1), 1.0)
            else:
                embedded[name] = table(self._index(inputs, name))
        # The user x item cross: an MLP learns a dot product slowly, so it gets the products.
        pieces = [*embedded.values(), embedded[F.USER_ID] * embedded[F.ITEM_ID]]
        pieces.append(ops.stack([self._float(inputs[name]) for name in NUMERIC_FEATURES], axis=-1))
        if self.config.position_mode == C.POSITION_FEATURE:
            pieces.append(self.position_embedding(self._position(inputs, self.config.serving_position)))
        return ops.concatenate(pieces, axis=-1)

    def hidden(self, inputs: dict) -> Any:
        """The shared bottom layer's output `(batch, bottom_units)`."""
        if isinstance(self.bottom, PosoDense):
            return self.bottom(self.deep_input(inputs), self.personalization_code(inputs))
        return self.bottom(self.deep_input(inputs))

    def task_features(self, inputs: dict, training: bool | None = None) -> Any:
        """Per-task inputs of the towers: `(batch, num_tasks, units)` (the layer near the output)."""
        hidden = self.hidden(inputs)
        if self.config.deep == C.DEEP_POSO_MMOE:
            return self.deep(hidden, self.personalization_code(inputs), training=training)
        if self.config.deep == C.DEEP_MMOE:
            return self.deep(hidden, training=training)
        shared = self.deep(hidden)
        return ops.repeat(shared[:, None, :], len(C.TASKS), axis=1)

    def wide_logits(self, inputs: dict) -> Any:
        total = 0.0
        for k, (a, b) in enumerate(WIDE_CROSSES):
            ids = (self._int(inputs[a]) * self.sizes[b] + self._int(inputs[b])) * len(WIDE_CROSSES) + k
            total = total + self.wide(ops.mod(ids, self.config.wide_bins))
        return total

    def bias_logit(self, inputs: dict, training: bool | None = None) -> Any:
        """The bias tower's logit `(batch, 1)`, or None where it does not apply.

        Position 0 is the tower's "missing" row: used at inference whatever `inputs` hold.
        """
        if self.config.position_mode != C.POSITION_BIAS_TOWER:
            return None
        device = self._int(inputs[F.DEVICE])
        if training and F.POSITION in inputs:
            return self.bias_tower(self._position(inputs, 0), device, training=True)
        if training or self.config.bias_tower_at_serving:
            return self.bias_tower(ops.zeros_like(device), device, training=False)
        return None

    # ------------------------------------------------------------------ call

    def call(self, inputs: dict, training: bool | None = None) -> dict[str, Any]:
        mixtures = self.task_features(inputs, training=training)
        wide = self.wide_logits(inputs)
        raw = {task: self.towers[task](mixtures[:, t]) + wide[:, t : t + 1] for t, task in enumerate(C.TASKS)}
        bias = self.bias_logit(inputs, training=training)
        if bias is not None:
            for task in C.ENGAGEMENT_LOGIT_TASKS:
                raw[task] = raw[task] + bias
        outputs = {
            task: ops.sigmoid(value) if task in C.BINARY_TASKS else value for task, value in raw.items()
        }
        outputs = {task: ops.reshape(value, (-1,)) for task, value in outputs.items()}
        outputs["score"] = sum(self.config.score_weight(t) * outputs[t] for t in C.TASKS)
        return outputs

    # ------------------------------------------------------------------ helpers

    def _index(self, inputs: dict, name: str) -> Any:
        """Row of `name`'s table; a new user's id -> the OOV row (the last) with `new_user_id_as_oov`."""
        last = self.sizes[name] - 1
        index = ops.clip(self._int(inputs[name]), 0, last)
        if name == F.USER_ID and self.config.new_user_id_as_oov:
            index = ops.where(self._int(inputs[F.USER_IS_NEW]) > 0, ops.full_like(index, last), index)
        return index

    def _position(self, inputs: dict, default: int) -> Any:
        if F.POSITION not in inputs:
            batch = ops.shape(self._int(inputs[F.DEVICE]))[0]
            return ops.full((batch,), default, dtype="int32")
        position = ops.clip(self._int(inputs[F.POSITION]), 0, NUM_POSITIONS)
        return ops.where(position > 0, position, ops.full_like(position, default))

    @staticmethod
    def _int(value: Any, keep_shape: bool = False) -> Any:
        value = ops.cast(value, "int32")
        return value if keep_shape else ops.reshape(value, (-1,))

    @staticmethod
    def _float(value: Any) -> Any:
        return ops.reshape(ops.cast(value, "float32"), (-1,))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "config": self.config.to_dict(),
            "vocabulary_sizes": dict(self.vocabulary_sizes),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultitaskRanker:
        return cls(**config)
