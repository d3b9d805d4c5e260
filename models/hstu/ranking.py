"""HSTU ranking mode: target-aware multitask ranking over interleaved item/action tokens.

HSTU paper (Zhai et al., ICML 2024; methods.md section 3): ranking is a causal sequence task in
which item tokens Φ and action tokens a are interleaved and multitask heads read the item positions.

Tokens. A history of n events (item i_k, action a_k = click_k + 2 * like_k in {0, 1, 2, 3}) and a
target (candidate) item i_t become 2n + 1 tokens:

    position:  0     1     2     3    ...  2n-2     2n-1     2n
    token:     Φ_0   a_0   Φ_1   a_1  ...  Φ_{n-1}  a_{n-1}  Φ_t

    x_{2k}   = sqrt(d) * E_item[i_k]       x_{2k+1} = sqrt(d) * E_action[a_k + 1]
    x_{2n}   = sqrt(d) * E_item[i_t]       (E_item shared by history and targets; row 0 of both
                                            tables is padding)

Batches are right-padded: histories of width N (item id 0 = padding, valid events first) give
2N + 1 token columns; row b holds its 2 n_b + 1 valid tokens first (the target right after its last
action), then padding. Padding rows of x are zeroed and every HSTU layer gets the padding mask.
Timestamps are optional (the layers' time-gap bias, `EncoderConfig.use_time_bias`): both tokens of
event k carry t_k and the target carries the request time t_t.

Positions: no absolute position embedding; order enters only through the HSTU relative attention
bias rab^p(i - j) (plus rab^t with timestamps). Why: (1) for ranking, recency relative to the
target is what matters and rab^p hands every query its distance to every key directly, whereas the
index from the start of a window truncated to the latest max_len events is a weak, confounded
signal; (2) item and action tokens already come from different tables, so the model needs no
position parity to tell them apart; (3) a token's state then depends on the history only through
relative offsets, which keeps padding invariance and M-FALCON trivially exact.

Encoder: `num_blocks` `HSTULayer`s from `make_block` with an `EncoderConfig` whose `max_len` counts
history *events*; the layers are built for 2 * max_len + 1 tokens (relative-bias range and the
constant attention normalizer L = 2 * max_len + 1), then an optional final LayerNorm.

Heads at item tokens only. s_k = state at Φ_k sees Φ_0, a_0, ..., a_{k-1}, Φ_k but not a_k (causal
attention gives this for free), s_t = state at Φ_t sees the whole history and the target:

    z_k = W_2 SiLU(W_1 s_k)   (or W s_k if head_hidden_dim = 0),   z_k in R^3
    p_click = sigmoid(z_k0),   p_like = sigmoid(z_k1),   watch_time_log1p = z_k2  (log1p seconds)

Loss, over the item positions P_b = {history events k < n_b} + {target} of each row b:

    l_bk = w_click BCE(click_bk, p_click) + w_like BCE(like_bk, p_like)
           + w_watch (z_bk2 - log1p(watch_time_s_bk))^2
    loss = sum_b sum_{k in P_b} omega_bk l_bk / sum omega_bk,
    omega_bk = sample_weight_b * (history_label_weight if k is a history event else 1)

so padded positions contribute nothing (omega = 0), and history_label_weight = 0 trains on the
target only. Watch time is regressed for every impression (0 s for non-clicks -> log1p = 0).

M-FALCON (`score_candidates`): the 2n history tokens are encoded once (`call_and_cache` per block);
the m candidates are then scored in micro-batches with `call_with_cache`, all at position 2n (and the
request time), each attending to the history and to itself only, never to other candidates. The
naive reference (`naive_score_candidates`) runs one full forward over [history; candidate] per
candidate; the two agree to float rounding (tests: 1e-5).

Interface: `model(inputs)` with `inputs` a dict of dense right-padded arrays (`features` names):
    history_item_ids (b, N) int, history_actions (b, N) int in 0..3, target_item_id (b,) int,
    optional history_timestamps (b, N) and target_timestamp (b,) (int64 epoch seconds; the
    target's time defaults to the last event's),
returning {"click": (b,), "like": (b,), "watch_time_log1p": (b,), "item_logits": (b, N + 1, 3)}.
item_logits holds the head outputs at Φ_0..Φ_{N-1}, then at Φ_t in the last column (0 at padded
events). `fit(x=inputs, y=labels)` with labels a dict of target_click, target_like,
target_watch_time_s (b,) and optionally history_clicks, history_likes, history_watch_times_s
(b, N) (without them only the target is trained), as `ranking_examples_to_arrays` makes them
from SequenceGen ranking examples. With XLA (`jit_compile`, the default) give `fit` one static
batch size (`pad_to_batch_multiple`): the blocked attention's empty-block `cond` does not compile
for a partial last batch.

Example:
    encoder_config = EncoderConfig(embedding_dim=50, dqk=50, dv=50, max_len=100, dropout=0.2)
    model = SequentialRankingModel(num_items=3706, encoder_config=encoder_config)
    inputs, labels = ranking_examples_to_arrays(train_examples, max_len=100)
    model.compile()                                          # Adam(1e-3, beta_2=0.98), XLA
    inputs, labels = pad_to_batch_multiple(inputs, 128), pad_to_batch_multiple(labels, 128)
    model.fit(inputs, labels, batch_size=128, epochs=10)    # static batches (XLA needs them)
    p = model(inputs)["click"]                               # (b,) P(click) of each target
    scores = score_candidates(model, inputs["history_item_ids"], inputs["history_actions"],
                              candidate_item_ids, micro_batch_size=128)   # {"click": (b, m), ...}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops

from watchnext.models import features
from watchnext.models.hstu.config_compile import ConfigCompiledModel, config_from
from watchnext.models.hstu.encoder import HSTU_CONFIG, EncoderConfig, make_block
from watchnext.models.hstu.mfalcon import MicroBatchScorer
from watchnext.models.layers.hstu import dropout

TASKS = ("click", "like", "watch_time_log1p")
NUM_ACTIONS = 4  # action codes click + 2 * like
ITEM_LOGITS = "item_logits"


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """Multitask loss, head and optimization settings of `SequentialRankingModel`.

    Attributes:
        click_weight, like_weight, watch_time_weight: task weights of the summed loss (default
            1, 1, 1: equal weights). The watch-time MSE is on log1p seconds; it starts far above
            the BCEs (log1p of minutes is ~4-8) until the head has learned the mean, so a smaller
            watch_time_weight (e.g. 0.1) keeps it from dominating early training.
        history_label_weight: weight of the history item positions relative to the target
            (1 = every item position counts the same, as in the paper; 0 = target only).
        head_hidden_dim: width of the shared SiLU hidden layer of the heads (0 = linear heads).
        learning_rate, beta_1, beta_2: Adam settings (1e-3, 0.9, 0.98, as in the retrieval model).
        jit_compile: `compile()` default for XLA.
    """

    click_weight: float = 1.0
    like_weight: float = 1.0
    watch_time_weight: float = 1.0
    history_label_weight: float = 1.0
    head_hidden_dim: int = 0
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.98
    jit_compile: bool = True

    def __post_init__(self) -> None:
        if min(self.task_weights + (self.history_label_weight,)) < 0:
            raise ValueError("task weights and history_label_weight must be >= 0")
        if self.head_hidden_dim < 0:
            raise ValueError("head_hidden_dim must be >= 0")

    @property
    def task_weights(self) -> tuple[float, float, float]:
        """(click, like, watch time) weights in `TASKS` order."""
        return (self.click_weight, self.like_weight, self.watch_time_weight)


# -- token layout ----------------------------------------------------------------------------------


class TokenLayout(NamedTuple):
    """Interleaved token columns of a right-padded batch (T = 2N, or 2N + 1 with a target).

    item_ids: (b, T) item id at item tokens, 0 elsewhere; action_ids: (b, T) action code + 1 at
    action tokens, 0 elsewhere; mask: (b, T) bool, True for real tokens; timestamps: (b, T) or None;
    lengths: (b,) int32 history events n_b (the target sits at token 2 n_b).
    """

    item_ids: Any
    action_ids: Any
    mask: Any
    timestamps: Any
    lengths: Any


def _width(x: Any) -> Any:
    """Static length of axis 1 when known, else the dynamic one."""
    return x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]


def _interleave(even: Any, odd: Any) -> Any:
    """(b, N), (b, N) -> (b, 2N) with columns even_0, odd_0, even_1, odd_1, ..."""
    return ops.reshape(ops.stack([even, odd], axis=-1), (-1, 2 * _width(even)))


def _place_target(tokens: Any, target: Any, target_positions: Any) -> Any:
    """Append one column to (b, T) tokens and write target (b,) at each row's target position."""
    tokens = ops.pad(tokens, [(0, 0), (0, 1)])
    at_target = ops.arange(_width(tokens))[None, :] == target_positions[:, None]
    return ops.where(at_target, ops.cast(target, tokens.dtype)[:, None], tokens)


def interleave_tokens(
    history_item_ids: Any,
    history_actions: Any,
    target_item_id: Any = None,
    history_timestamps: Any = None,
    target_timestamp: Any = None,
) -> TokenLayout:
    """Token layout Φ_0, a_0, ..., Φ_{n-1}, a_{n-1}[, Φ_t] of right-padded histories (module docstring).

    Without `target_item_id` the layout has 2N columns (the M-FALCON history); with it, 2N + 1.
    A target id of 0 is a padding token (masked out).
    """
    items = ops.cast(history_item_ids, "int32")
    valid = ops.not_equal(items, 0)
    lengths = ops.sum(ops.cast(valid, "int32"), axis=1)
    actions = ops.where(valid, ops.cast(history_actions, "int32") + 1, 0)
    zeros = ops.zeros_like(items)
    item_ids, action_ids = _interleave(items, zeros), _interleave(zeros, actions)
    timestamps = None
    if history_timestamps is not None:
        timestamps = _interleave(history_timestamps, history_timestamps)
    if target_item_id is not None:
        positions = 2 * lengths
        target = ops.reshape(ops.cast(target_item_id, "int32"), (-1,))
        item_ids = _place_target(item_ids, target, positions)
        action_ids = ops.pad(action_ids, [(0, 0), (0, 1)])
        if timestamps is not None:
            if target_timestamp is None:
                target_timestamp = last_event_times(history_timestamps, lengths)
            timestamps = _place_target(timestamps, ops.reshape(target_timestamp, (-1,)), positions)
    mask = ops.logical_or(ops.not_equal(item_ids, 0), ops.not_equal(action_ids, 0))
    return TokenLayout(item_ids, action_ids, mask, timestamps, lengths)


def last_event_times(history_timestamps: Any, lengths: Any) -> Any:
    """(b,) time of each row's last valid event (the default request time of a target)."""
    index = ops.maximum(ops.cast(lengths, "int32") - 1, 0)[:, None]
    return ops.take_along_axis(history_timestamps, index, axis=1)[:, 0]


def item_position_states(states: Any, lengths: Any) -> Any:
    """(b, 2N + 1, d) token states -> (b, N + 1, d): states at Φ_0..Φ_{N-1}, then at Φ_t (token 2 n_b)."""
    n = (_width(states) - 1) // 2
    d = int(states.shape[-1])
    history = ops.reshape(states[:, : 2 * n], (-1, n, 2, d))[:, :, 0]
    target = ops.take_along_axis(states, ops.cast(2 * lengths, "int32")[:, None, None], axis=1)
    return ops.concatenate([history, target], axis=1)


def predictions_from_logits(logits: Any) -> dict[str, Any]:
    """{"click": sigmoid(z0), "like": sigmoid(z1), "watch_time_log1p": z2} from (..., 3) head outputs."""
    return {
        TASKS[0]: ops.sigmoid(logits[..., 0]),
        TASKS[1]: ops.sigmoid(logits[..., 1]),
        TASKS[2]: logits[..., 2],
    }


# -- loss --------------------------------------------------------------------------------------------


def binary_crossentropy_with_logits(labels: Any, logits: Any) -> Any:
    """Elementwise BCE(y, sigmoid(z)) = max(z, 0) - z y + log(1 + exp(-|z|)), numerically stable."""
    labels = ops.cast(labels, logits.dtype)
    return ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))


def multitask_loss(
    item_logits: Any, labels: Any, weights: Any, task_weights: Sequence[float] = (1.0, 1.0, 1.0)
) -> Any:
    """Weighted mean over positions of the weighted task sum (module docstring).

    Args:
        item_logits: (..., 3) head outputs (click logit, like logit, log1p watch time).
        labels: (..., 3) click, like, watch time in seconds.
        weights: (...) per-position weights omega (0 at padding).
        task_weights: (w_click, w_like, w_watch).
    """
    labels = ops.cast(labels, item_logits.dtype)
    watch = ops.log1p(ops.maximum(labels[..., 2], 0.0))
    per_position = (
        task_weights[0] * binary_crossentropy_with_logits(labels[..., 0], item_logits[..., 0])
        + task_weights[1] * binary_crossentropy_with_logits(labels[..., 1], item_logits[..., 1])
        + task_weights[2] * ops.square(item_logits[..., 2] - watch)
    )
    weights = ops.cast(weights, per_position.dtype)
    return ops.sum(per_position * weights) / ops.maximum(ops.sum(weights), 1e-9)


def _stack_labels(y: Mapping[str, Any], history_ids: Any) -> tuple[Any, Any]:
    """(b, N + 1, 3) labels (history events, then the target) and whether history labels were given.

    Without history labels the history columns are zeros (the caller gives them weight 0).
    """
    target_keys = (features.TARGET_CLICK, features.TARGET_LIKE, features.TARGET_WATCH_TIME_S)
    history_keys = (features.HISTORY_CLICKS, features.HISTORY_LIKES, features.HISTORY_WATCH_TIMES_S)
    target = ops.stack([ops.reshape(ops.cast(y[k], "float32"), (-1,)) for k in target_keys], axis=-1)
    has_history = all(k in y for k in history_keys)
    if has_history:
        history = ops.stack([ops.cast(y[k], "float32") for k in history_keys], axis=-1)
    else:
        history = ops.repeat(ops.zeros_like(ops.cast(history_ids, "float32"))[..., None], 3, axis=-1)
    return ops.concatenate([history, target[:, None]], axis=1), has_history


def _position_weights(
    history_ids: Any,
    target_ids: Any,
    history_weight: float,
    sample_weight: Any = None,
    dtype: str = "float32",
) -> Any:
    """(b, N + 1) omega: history_weight at valid history events, 1 at a valid target, times sample weight."""
    history = ops.cast(ops.not_equal(history_ids, 0), dtype) * history_weight
    target = ops.cast(ops.not_equal(ops.reshape(target_ids, (-1,)), 0), dtype)
    weights = ops.concatenate([history, target[:, None]], axis=1)
    if sample_weight is not None:
        weights = weights * ops.reshape(ops.cast(sample_weight, dtype), (-1, 1))
    return weights


# -- model -------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="watchnext")
class SequentialRankingModel(ConfigCompiledModel, keras.Model):
    """HSTU ranking model over interleaved item/action tokens (see the module docstring).

    Args:
        num_items: item ids are 1..num_items (0 is padding).
        encoder_config: `EncoderConfig` (or dict) with block_type "hstu"; `max_len` counts history
            events (the layers see 2 * max_len + 1 tokens).
        ranking_config: `RankingConfig` (or dict).

    Call: `model(inputs)` with the dict of the module docstring -> per-task target predictions and
    "item_logits". `fit(x=inputs, y=labels)`; `compute_loss` implements the multitask loss.
    """

    def __init__(
        self,
        num_items: int,
        encoder_config: EncoderConfig | dict[str, Any] | None = None,
        ranking_config: RankingConfig | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.encoder_config = config_from(encoder_config, EncoderConfig, HSTU_CONFIG)
        self.ranking_config = config_from(ranking_config, RankingConfig, RankingConfig())
        if self.encoder_config.block_type != "hstu":
            raise ValueError("SequentialRankingModel needs HSTU blocks (block_type='hstu')")
        d = self.encoder_config.embedding_dim
        self.item_embedding = keras.layers.Embedding(self.num_items + 1, d, name="item_embedding")
        self.action_embedding = keras.layers.Embedding(NUM_ACTIONS + 1, d, name="action_embedding")
        self.seed_generator = keras.random.SeedGenerator()
        token_config = dataclasses.replace(self.encoder_config, max_len=2 * self.encoder_config.max_len)
        self.blocks = [make_block(token_config, i) for i in range(self.encoder_config.num_blocks)]
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
            if self.encoder_config.uses_final_layer_norm
            else None
        )
        hidden = self.ranking_config.head_hidden_dim
        self.head_hidden = (
            keras.layers.Dense(hidden, activation="silu", name="head_hidden") if hidden else None
        )
        self.head = keras.layers.Dense(len(TASKS), name="task_heads")

    @property
    def max_len(self) -> int:
        """Longest history (events) the model is built for."""
        return self.encoder_config.max_len

    def build(self, input_shape: Any = None) -> None:
        d = self.encoder_config.embedding_dim
        self.item_embedding.build((None, None))
        self.action_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, d))
        if self.final_norm is not None:
            self.final_norm.build((None, None, d))
        if self.head_hidden is not None:
            self.head_hidden.build((None, None, d))
        self.head.build((None, None, self.ranking_config.head_hidden_dim or d))
        self.built = True

    # -- pieces -----------------------------------------------------------------------------------

    def embed(self, item_ids: Any, action_ids: Any, mask: Any, training: Any = None) -> Any:
        """sqrt(d) * (E_item[items] or E_action[actions]), dropout, padding rows zeroed.

        Each token reads one table: id 0 in the other table (a padding row) contributes nothing.
        """
        items = self.item_embedding(item_ids)
        items = items * ops.cast(ops.not_equal(item_ids, 0), items.dtype)[..., None]
        actions = self.action_embedding(action_ids)
        actions = actions * ops.cast(ops.not_equal(action_ids, 0), actions.dtype)[..., None]
        x = (items + actions) * math.sqrt(self.encoder_config.embedding_dim)
        x = dropout(x, self.encoder_config.dropout, self.seed_generator, training)
        return x * ops.cast(mask, x.dtype)[..., None]

    def head_logits(self, states: Any) -> Any:
        """(..., d) states -> (..., 3) task outputs: [final LayerNorm], [SiLU hidden], linear."""
        if self.final_norm is not None:
            states = self.final_norm(states)
        if self.head_hidden is not None:
            states = self.head_hidden(states)
        return self.head(states)

    def item_logits(self, inputs: Mapping[str, Any], training: Any = None) -> Any:
        """(b, N + 1, 3) head outputs at Φ_0..Φ_{N-1} and Φ_t of a full forward (0 at padding)."""
        layout = interleave_tokens(
            inputs[features.HISTORY_ITEM_IDS],
            inputs[features.HISTORY_ACTIONS],
            inputs[features.TARGET_ITEM_ID],
            inputs.get(features.HISTORY_TIMESTAMPS),
            inputs.get(features.TARGET_TIMESTAMP),
        )
        x = self.embed(layout.item_ids, layout.action_ids, layout.mask, training)
        for block in self.blocks:
            x = block(x, padding_mask=layout.mask, timestamps=layout.timestamps, training=training)
        logits = self.head_logits(item_position_states(x, layout.lengths))
        valid = _position_weights(inputs[features.HISTORY_ITEM_IDS], inputs[features.TARGET_ITEM_ID], 1.0)
        return logits * ops.cast(valid, logits.dtype)[..., None]

    def call(self, inputs: Mapping[str, Any], training: Any = None) -> dict[str, Any]:
        """Target predictions {"click", "like", "watch_time_log1p"} (b,) and "item_logits" (b, N + 1, 3)."""
        logits = self.item_logits(inputs, training)
        return {**predictions_from_logits(logits[:, -1]), ITEM_LOGITS: logits}

    # -- loss -----------------------------------------------------------------------------------

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """Multitask loss of the module docstring; y: dict of target (and optional history) labels."""
        if y is None or x is None:
            raise ValueError("SequentialRankingModel needs x = inputs dict and y = labels dict")
        history_ids = x[features.HISTORY_ITEM_IDS]
        labels, has_history = _stack_labels(y, history_ids)
        history_weight = self.ranking_config.history_label_weight if has_history else 0.0
        logits = y_pred[ITEM_LOGITS]
        weights = _position_weights(
            history_ids, x[features.TARGET_ITEM_ID], history_weight, sample_weight, logits.dtype
        )
        loss = multitask_loss(logits, labels, weights, self.ranking_config.task_weights)
        if self.losses:
            loss = loss + ops.sum(ops.stack(self.losses))
        return loss

    # -- M-FALCON pieces ---------------------------------------------------------------------------

    def encode_history(
        self, history_item_ids: Any, history_actions: Any, history_timestamps: Any = None
    ) -> tuple[list[dict[str, Any]], Any]:
        """Run the 2N history tokens once (inference mode): (per-block caches, (b, 1) target position 2n)."""
        layout = interleave_tokens(history_item_ids, history_actions, history_timestamps=history_timestamps)
        x = self.embed(layout.item_ids, layout.action_ids, layout.mask, training=False)
        caches = []
        for block in self.blocks:
            x, cache = block.call_and_cache(
                x, padding_mask=layout.mask, timestamps=layout.timestamps, training=False
            )
            caches.append(cache)
        return caches, 2 * layout.lengths[:, None]

    def score_appended(
        self, candidate_ids: Any, caches: list[dict[str, Any]], positions: Any, timestamps: Any = None
    ) -> Any:
        """(b, m, 3) head outputs of m candidate tokens, each appended alone at `positions` (b, 1)."""
        candidate_ids = ops.cast(candidate_ids, "int32")
        x = self.item_embedding(candidate_ids) * math.sqrt(self.encoder_config.embedding_dim)
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block.call_with_cache(x, cache, positions=positions, timestamps=timestamps, training=False)
        return self.head_logits(x)

    # -- optimizer and serialization ------------------------------------------------------------

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """Adam with the config's learning rate and betas."""
        c = self.ranking_config
        return keras.optimizers.Adam(learning_rate=c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2)

    @property
    def default_jit_compile(self) -> bool:
        return self.ranking_config.jit_compile

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_items=self.num_items,
            encoder_config=dataclasses.asdict(self.encoder_config),
            ranking_config=dataclasses.asdict(self.ranking_config),
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequentialRankingModel:
        return cls(**config)


# -- candidate scoring -------------------------------------------------------------------------------


def _host(a: Any, dtype: Any = None) -> np.ndarray:
    """Host numpy array with a leading batch axis."""
    a = np.asarray(a if isinstance(a, np.ndarray) else ops.convert_to_numpy(a), dtype=dtype)
    return a[None] if a.ndim == 1 else a


def _candidate_times(
    candidate_timestamps: Any, history_item_ids: np.ndarray, history_timestamps: np.ndarray | None
) -> np.ndarray | None:
    """(b, 1) request times or (b, m) per-candidate times; default: each row's last event time."""
    if candidate_timestamps is None:
        if history_timestamps is None:
            return None
        last = np.maximum(np.count_nonzero(history_item_ids, axis=1) - 1, 0)
        return history_timestamps[np.arange(len(last)), last][:, None]
    times = np.asarray(ops.convert_to_numpy(candidate_timestamps))
    return times[:, None] if times.ndim == 1 else times


class MFalconRankingScorer(MicroBatchScorer):
    """Encode histories once, then score candidates in micro-batches (module docstring).

    Args:
        model: a built `SequentialRankingModel`.
        micro_batch_size, jit_compile: as `MicroBatchScorer`.
    """

    def __init__(self, model: SequentialRankingModel, micro_batch_size: int = 128, jit_compile: bool = False):
        self.model = model
        super().__init__(model.encode_history, self._score_micro_batch, micro_batch_size, jit_compile)

    def _score_micro_batch(self, candidate_ids: Any, timestamps: Any, caches: Any, positions: Any) -> Any:
        return self.model.score_appended(candidate_ids, caches, positions, timestamps)

    def __call__(
        self,
        history_item_ids: Any,
        history_actions: Any,
        candidate_item_ids: Any,
        history_timestamps: Any = None,
        candidate_timestamps: Any = None,
    ) -> dict[str, np.ndarray]:
        """Right-padded histories (b, N), candidates (b, m) -> {task: (b, m)} numpy predictions.

        candidate_timestamps: (b,) request time or (b, m) per-candidate times (with time bias).
        """
        items, candidates = _host(history_item_ids, "int32"), _host(candidate_item_ids, "int32")
        hist_ts = None if history_timestamps is None else _host(history_timestamps)
        caches, positions = self._encode(items, _host(history_actions, "int32"), hist_ts)
        times = _candidate_times(candidate_timestamps, items, hist_ts)
        return _numpy_predictions(self.score_candidates(candidates, times, caches, positions))


def _numpy_predictions(logits: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in predictions_from_logits(logits).items()}


def score_candidates(
    model: SequentialRankingModel,
    history_item_ids: Any,
    history_actions: Any,
    candidate_item_ids: Any,
    micro_batch_size: int = 128,
    history_timestamps: Any = None,
    candidate_timestamps: Any = None,
    jit_compile: bool = False,
) -> dict[str, np.ndarray]:
    """M-FALCON ranking: {task: (b, m)} predictions of each candidate after its row's history."""
    scorer = MFalconRankingScorer(model, micro_batch_size=micro_batch_size, jit_compile=jit_compile)
    return scorer(
        history_item_ids, history_actions, candidate_item_ids, history_timestamps, candidate_timestamps
    )


def _naive_row(
    model: SequentialRankingModel, inputs: dict[str, np.ndarray], candidates: np.ndarray, batch_size: int
) -> np.ndarray:
    """(m, 3) target logits of one unpadded history, one [history; candidate] sequence per candidate."""
    out = []
    for start in range(0, len(candidates), batch_size):
        chunk = candidates[start : start + batch_size]
        batch = {k: np.repeat(v[None], len(chunk), axis=0) for k, v in inputs.items()}
        batch[features.TARGET_ITEM_ID] = chunk[:, 0]
        if chunk.shape[1] > 1:
            batch[features.TARGET_TIMESTAMP] = chunk[:, 1]
        out.append(np.asarray(ops.convert_to_numpy(model.item_logits(batch, training=False)[:, -1])))
    return np.concatenate(out)


def naive_score_candidates(
    model: SequentialRankingModel,
    history_item_ids: Any,
    history_actions: Any,
    candidate_item_ids: Any,
    batch_size: int = 1,
    history_timestamps: Any = None,
    candidate_timestamps: Any = None,
) -> dict[str, np.ndarray]:
    """Reference: one full forward over [history; candidate] per candidate (same result as M-FALCON).

    batch_size: candidate sequences per forward call (each is still its own sequence).
    """
    items, actions = _host(history_item_ids, "int32"), _host(history_actions, "int32")
    candidates = _host(candidate_item_ids, "int32")
    hist_ts = None if history_timestamps is None else _host(history_timestamps)
    times = _candidate_times(candidate_timestamps, items, hist_ts)
    rows = []
    for b in range(items.shape[0]):
        width = max(int(np.count_nonzero(items[b])), 1)
        inputs = {features.HISTORY_ITEM_IDS: items[b, :width], features.HISTORY_ACTIONS: actions[b, :width]}
        row = candidates[b][:, None]
        if hist_ts is not None:
            inputs[features.HISTORY_TIMESTAMPS] = hist_ts[b, :width]
            row = np.stack([candidates[b], np.broadcast_to(times[b], candidates[b].shape)], axis=1)
        rows.append(_naive_row(model, inputs, row, batch_size))
    return _numpy_predictions(np.stack(rows))


# -- data --------------------------------------------------------------------------------------------

_HISTORY_INPUTS = {
    features.HISTORY_ITEM_IDS: "int32",
    features.HISTORY_ACTIONS: "int32",
    features.HISTORY_TIMESTAMPS: "int64",
}
_HISTORY_LABELS = {
    features.HISTORY_CLICKS: "float32",
    features.HISTORY_LIKES: "float32",
    features.HISTORY_WATCH_TIMES_S: "float32",
}
_TARGET_INPUTS = {features.TARGET_ITEM_ID: "int32", features.TARGET_TIMESTAMP: "int64"}
_TARGET_LABELS = {
    features.TARGET_CLICK: "float32",
    features.TARGET_LIKE: "float32",
    features.TARGET_WATCH_TIME_S: "float32",
}


def _history_array(examples: Sequence[Mapping[str, Any]], key: str, max_len: int, dtype: str) -> np.ndarray:
    """(b, max_len) right-padded most recent max_len entries of a history list."""
    out = np.zeros((len(examples), max_len), dtype=dtype)
    for row, example in enumerate(examples):
        values = list(example[key])[-max_len:] if max_len else []
        out[row, : len(values)] = values
    return out


def _target_array(examples: Sequence[Mapping[str, Any]], key: str, dtype: str) -> np.ndarray:
    return np.asarray([example[key][0] for example in examples], dtype=dtype)


def _check_ranking_inputs(inputs: Mapping[str, np.ndarray], examples: Sequence[Mapping[str, Any]]) -> None:
    """Valid history events need item ids >= 1 and action codes 0..3; targets need ids >= 1."""
    items = inputs[features.HISTORY_ITEM_IDS]
    lengths = np.asarray([min(len(e[features.HISTORY_ITEM_IDS]), items.shape[1]) for e in examples])
    valid = np.arange(items.shape[1])[None, :] < lengths[:, None]
    if np.any(items[valid] < 1) or np.any(inputs[features.TARGET_ITEM_ID] < 1):
        raise ValueError("item ids must be mapped to integers >= 1 (0 is padding)")
    actions = inputs[features.HISTORY_ACTIONS][valid]
    if np.any((actions < 0) | (actions >= NUM_ACTIONS)):
        raise ValueError(f"history actions must be codes 0..{NUM_ACTIONS - 1} (click + 2 * like)")


def ranking_examples_to_arrays(
    examples: Sequence[Mapping[str, Any]], max_len: int, with_timestamps: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """SequenceGen ranking examples (dicts of lists, item ids already ints) -> (inputs, labels).

    Histories are truncated to their most recent `max_len` events and right-padded to width
    `max_len`. inputs: history_item_ids / history_actions (b, max_len) int32, history_timestamps
    (b, max_len) int64 and target_timestamp (b,) int64 (if `with_timestamps`), target_item_id (b,)
    int32. labels (None when the examples carry no labels): history_clicks / history_likes /
    history_watch_times_s (b, max_len) float32, target_click / target_like / target_watch_time_s
    (b,) float32.

    Example:
        inputs, labels = ranking_examples_to_arrays(examples, max_len=200)
        model.fit(inputs, labels, batch_size=128)
    """
    keep = [k for k in _TARGET_INPUTS if with_timestamps or k != features.TARGET_TIMESTAMP]
    inputs = {k: _target_array(examples, k, _TARGET_INPUTS[k]) for k in keep}
    for key, dtype in _HISTORY_INPUTS.items():
        if with_timestamps or key != features.HISTORY_TIMESTAMPS:
            inputs[key] = _history_array(examples, key, max_len, dtype)
    _check_ranking_inputs(inputs, examples)
    labelled = [features.TARGET_CLICK in e for e in examples]
    if not any(labelled):
        return inputs, None
    if not all(labelled):
        raise ValueError("either all examples or none must carry labels")
    labels = {k: _target_array(examples, k, dtype) for k, dtype in _TARGET_LABELS.items()}
    labels.update({k: _history_array(examples, k, max_len, dtype) for k, dtype in _HISTORY_LABELS.items()})
    return inputs, labels


def pad_to_batch_multiple(arrays: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Append all-zero rows so that the row count is a multiple of `batch_size`.

    All-zero rows (empty history, target id 0) carry no loss weight, so padding inputs and labels
    this way changes nothing but gives `fit` one static batch shape. Needed with `jit_compile`
    when a layer has several attention blocks: XLA rejects the blocked attention's empty-block
    `cond` on a partial last batch (dynamic batch size).
    """
    rows = len(next(iter(arrays.values())))
    extra = -rows % batch_size
    return {k: np.concatenate([v, np.zeros((extra,) + v.shape[1:], v.dtype)]) for k, v in arrays.items()}
