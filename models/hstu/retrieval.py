"""Retrieval training and evaluation around `SequentialEncoder` (HSTU paper, public ML-1M protocol).

Training objective: autoregressive next-item prediction at every position of a user's sequence
(as SASRec and HSTU do). For a right-padded window (x_0 .. x_{n-1}) with targets y_i = x_{i+1}
(y_i = 0 past the end), the encoder gives L2-normalized states u_i, items have L2-normalized
vectors e_j = normalize(E[j]), and each valid position i contributes a sampled softmax term

    s_i^+   = <u_i, e_{y_i}> / T                                       (T = temperature, 0.05)
    s_ik    = <u_i, e_{z_ik}> / T     if z_ik != y_i,   else -1e9      (accidental-hit removal)
    l_i     = log( exp(s_i^+) + sum_k exp(s_ik) ) - s_i^+
    loss    = sum_i w_i l_i / sum_i w_i,    w_i = [y_i != 0] (times an optional sample weight)

over negatives z_ik (`RetrievalConfig.negatives`):
  * "random": uniform over item ids 1..num_items (our reading of the public configs' sampler);
  * "in_batch": drawn uniformly from the batch's valid target tokens, i.e. with the in-batch
    popularity distribution; no logQ correction is applied;
  * "random+in_batch": `num_negatives` of each, concatenated.
`negative_sharing` says how many draws are made: "position" (reference behaviour: an independent
set of `num_negatives` for every position, logits via a gather of (batch, n, K, d) vectors),
"sequence" (one set per sequence, shared by its positions: a batched matmul; on CPU the loss is
~8x and a whole HSTU train step ~2x cheaper at batch 128 x 200 x 128) or "batch" (one set per batch).
Padding positions (target 0) get weight 0, so neither their states nor their negatives matter.

Stochastic Length (HSTU paper, section 3.3; off by default, the public ML-1M configs do not use
it): with N = max_len and L = floor(N^(alpha/2)), a training window with n > L positions is
replaced, with probability 1 - N^alpha / n^2, by L + 1 of its n + 1 items chosen uniformly at
random with their order kept (so L positions are trained); shorter windows are kept. Expected
attention cost per sequence is then O(N^alpha) instead of O(n^2). alpha = 2 turns it off. Our
encoder pads every batch to max_len, so the saving needs a jagged/bucketed kernel; here it only
changes the data the model sees.

Evaluation (`evaluate_full_ranking`): full ranking for the last position. The user vector of the
test history (the most recent max_len items before the held-out item) is scored against all item
vectors 1..num_items by cosine; rank = number of other items scoring higher than the held-out item
(ties are counted against it, so a constant model gets no credit), and

    HR@K = mean [rank < K],    NDCG@K = mean [rank < K] / log2(rank + 2),    K in (10, 50, 200).

Two rankings (`RANKINGS`, `full_ranking_ranks` gives both from one scoring pass):
  * "history_excluded": the items of the test history are dropped from the user's ranking (the
    held-out item never is). This is what the public HSTU / SASRec numbers measure: the reference
    code (meta-recsys/generative-recommenders, research/ trainer, since its first commit of
    2024-04) evaluates with `filter_invalid_ids=True`, its default, which drops the history ids
    from the top-k. `exclude_seen=True` here.
  * "all_items": every item 1..num_items competes, seen ones included (`exclude_seen=False`, the
    default of `evaluate_full_ranking`: a retrieval stage that does not filter what was seen, as
    the exported `retrieve` signature).

Data (`leave_one_out_split`): per-user time-ordered item lists, raw ids remapped to 1..num_items
(sorted raw id order). For a sequence S of length m >= 2: test history = S[:-1][-max_len:],
test target = S[-1]; training window = the most recent max_len + 1 items of S[:-1] (needs m >= 3),
inputs = window[:-1], targets = window[1:], so up to max_len positions are trained per user.

Example:
    sequences = load_sequences("../shared/data/ml-1m-sasrec/ml-1m.txt")
    data = leave_one_out_split(sequences, max_len=200)
    model = SequentialRetrievalModel(data.num_items, HSTU_CONFIG, RetrievalConfig(epochs=101))
    model.compile()                                     # Adam(1e-3, beta_2=0.98), XLA
    model.fit(data.train_dataset(model.retrieval_config), epochs=model.retrieval_config.epochs)
    metrics = evaluate_full_ranking(model, data.test_histories, data.test_targets, exclude_seen=True)
    metrics["HR@10"], metrics["NDCG@10"]                # comparable with the published numbers
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from watchnext.models.hstu.config_compile import ConfigCompiledModel, config_from
from watchnext.models.hstu.encoder import EncoderConfig, SequentialEncoder, l2_normalize
from watchnext.models.hstu.mfalcon import backend_jit

NEGATIVE_SOURCES = ("random", "in_batch", "random+in_batch")
NEGATIVE_SHARING = ("position", "sequence", "batch")
DEFAULT_KS = (10, 50, 200)
RANKINGS = ("all_items", "history_excluded")
ACCIDENTAL_HIT_LOGIT = -1.0e9


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """Loss, sampling and optimization settings (defaults: the public ML-1M HSTU/SASRec protocol).

    Attributes:
        temperature: T in logits = cosine / T.
        num_negatives: K negatives per draw (per source for "random+in_batch").
        negatives: "random" (uniform over 1..num_items), "in_batch" or "random+in_batch".
        negative_sharing: "position" (independent negatives per position, the reference),
            "sequence" or "batch" (one draw shared by a sequence / by the batch; cheaper).
        stochastic_length: sub-sample long training windows (HSTU Stochastic Length).
        stochastic_length_alpha: alpha; windows are cut to ~max_len^(alpha/2) positions.
        learning_rate, beta_1, beta_2, weight_decay: Adam(W) settings (reference: 1e-3, 0.9,
            0.98, 0).
        batch_size, epochs: training loop settings (reference: 128, 101).
        seed: seed of negative sampling, shuffling and Stochastic Length.
        jit_compile: `compile()` default for XLA.
    """

    temperature: float = 0.05
    num_negatives: int = 128
    negatives: str = "random"
    negative_sharing: str = "position"
    stochastic_length: bool = False
    stochastic_length_alpha: float = 1.7
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.98
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 101
    seed: int = 0
    jit_compile: bool = True

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {self.negatives!r}")
        if self.negative_sharing not in NEGATIVE_SHARING:
            raise ValueError(
                f"negative_sharing must be one of {NEGATIVE_SHARING}, got {self.negative_sharing!r}"
            )
        if self.temperature <= 0 or self.num_negatives < 1:
            raise ValueError("temperature must be > 0 and num_negatives >= 1")
        if not 0.0 < self.stochastic_length_alpha <= 2.0:
            raise ValueError("stochastic_length_alpha must be in (0, 2]")


# -- random draws ----------------------------------------------------------------------------------


def _seed_pair(seed_generator: keras.random.SeedGenerator) -> Any:
    import tensorflow as tf

    return tf.cast(tf.math.floormod(seed_generator.next(), tf.int32.max - 1), tf.int32)


def uniform_ints(shape: Any, minval: int, maxval: Any, seed_generator: keras.random.SeedGenerator) -> Any:
    """int32 uniform in [minval, maxval); on TensorFlow drawn with Philox (fast under XLA on CPU)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(
            shape, seed=_seed_pair(seed_generator), minval=minval, maxval=maxval, dtype=tf.int32, alg="philox"
        )
    return keras.random.randint(shape, minval, maxval, dtype="int32", seed=seed_generator)


def uniform_floats(shape: Any, seed_generator: keras.random.SeedGenerator) -> Any:
    """float32 uniform in [0, 1); Philox on TensorFlow."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed=_seed_pair(seed_generator), alg="philox")
    return keras.random.uniform(shape, seed=seed_generator)


def _dynamic_shape(x: Any) -> Any:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.shape(x)
    return ops.shape(x)


# -- model -----------------------------------------------------------------------------------------


def _split_inputs(inputs: Any) -> tuple[Any, Any]:
    """item ids, timestamps (or None) from an id tensor or a dict {"item_ids", "timestamps"}."""
    if isinstance(inputs, Mapping):
        return inputs["item_ids"], inputs.get("timestamps")
    return inputs, None


@keras.saving.register_keras_serializable(package="watchnext")
class SequentialRetrievalModel(ConfigCompiledModel, keras.Model):
    """`SequentialEncoder` trained with the sampled-softmax next-item loss (module docstring).

    Args:
        num_items: item ids are 1..num_items, 0 is padding.
        encoder_config: `EncoderConfig` (or dict), e.g. `HSTU_CONFIG`, `SASREC_CONFIG`.
        retrieval_config: `RetrievalConfig` (or dict).

    Call: `model(item_ids)` or `model({"item_ids": ..., "timestamps": ...})` with right-padded
    (batch, n) ids, n <= max_len -> (batch, n, d) L2-normalized states. `fit` takes x = the
    inputs and y = the (batch, n) next-item targets (0 = no target), e.g. a numpy pair or
    `RetrievalSequenceDataset`; `compute_loss` draws the negatives.

    Example:
        model = SequentialRetrievalModel(3416, HSTU_CONFIG, RetrievalConfig(num_negatives=128))
        model.compile()
        model.fit(train_inputs, train_targets, batch_size=128, epochs=1)
        users = model.encoder.user_vectors(test_histories)                  # (U, d)
    """

    def __init__(
        self,
        num_items: int,
        encoder_config: EncoderConfig | dict[str, Any] | None = None,
        retrieval_config: RetrievalConfig | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.retrieval_config = config_from(retrieval_config, RetrievalConfig, RetrievalConfig())
        self.encoder = SequentialEncoder(self.num_items, encoder_config, name="encoder")
        self.negative_seed_generator = keras.random.SeedGenerator(self.retrieval_config.seed)

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.encoder.encoder_config

    def build(self, input_shape: Any = None) -> None:
        self.encoder.build()
        self.built = True

    def call(self, inputs: Any, training: Any = None) -> Any:
        item_ids, timestamps = _split_inputs(inputs)
        return self.encoder(item_ids, timestamps=timestamps, training=training)

    # -- optimizer ------------------------------------------------------------------------------

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """Adam (AdamW when weight_decay > 0) with the config's learning rate and betas."""
        c = self.retrieval_config
        if c.weight_decay > 0:
            return keras.optimizers.AdamW(
                learning_rate=c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2, weight_decay=c.weight_decay
            )
        return keras.optimizers.Adam(learning_rate=c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2)

    @property
    def default_jit_compile(self) -> bool:
        return self.retrieval_config.jit_compile

    # -- loss -----------------------------------------------------------------------------------

    def sample_negatives(self, targets: Any) -> Any:
        """Negative item ids for (batch, n) targets: (batch, n, K'), (batch, 1, K') or (1, 1, K').

        The middle/leading axes follow `negative_sharing`; K' = num_negatives, doubled for
        "random+in_batch". In-batch draws pick uniformly among the batch's non-zero targets.
        """
        c = self.retrieval_config
        shape = _dynamic_shape(targets)
        if c.negative_sharing == "position":
            draw_shape = (shape[0], shape[1], c.num_negatives)
        elif c.negative_sharing == "sequence":
            draw_shape = (shape[0], 1, c.num_negatives)
        else:
            draw_shape = (1, 1, c.num_negatives)
        parts = []
        if c.negatives in ("random", "random+in_batch"):
            parts.append(uniform_ints(draw_shape, 1, self.num_items + 1, self.negative_seed_generator))
        if c.negatives in ("in_batch", "random+in_batch"):
            flat = ops.reshape(ops.cast(targets, "int32"), (-1,))
            valid = ops.cast(ops.not_equal(flat, 0), "int32")
            pool = ops.take(flat, ops.argsort(1 - valid))  # valid targets first (any order)
            num_valid = ops.cast(ops.maximum(ops.sum(valid), 1), "float32")
            index = ops.cast(
                ops.floor(uniform_floats(draw_shape, self.negative_seed_generator) * num_valid), "int32"
            )
            index = ops.minimum(index, ops.cast(num_valid, "int32") - 1)
            parts.append(ops.take(pool, index))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def token_logits(self, states: Any, targets: Any, negative_ids: Any) -> tuple[Any, Any]:
        """(positive logits (batch, n), negative logits (batch, n, K)), both divided by T.

        Negatives equal to the position's target get `ACCIDENTAL_HIT_LOGIT` (exp() = 0).
        `negative_ids` has shape (batch, n, K), (batch, 1, K) or (1, 1, K).
        """
        temperature = self.retrieval_config.temperature
        targets = ops.cast(targets, "int32")
        negative_ids = ops.cast(negative_ids, "int32")
        # normalize(E)[ids] == encoder.item_vectors(ids), but normalizes num_items + 1 rows instead of
        # batch * n * K gathered ones (and their backward), ~3x faster for per-position negatives.
        table = l2_normalize(self.encoder.item_embedding.embeddings)
        positive = ops.sum(states * ops.take(table, targets, axis=0), axis=-1)
        negative_vectors = ops.take(table, negative_ids, axis=0)
        if negative_ids.shape[1] == 1:  # shared by all positions: one (n, d) x (d, K) product per row
            negative = ops.matmul(states, ops.swapaxes(negative_vectors[:, 0], -1, -2))
        else:
            negative = ops.einsum("bnd,bnkd->bnk", states, negative_vectors)
        negative = negative / temperature
        hit = ops.equal(negative_ids, targets[..., None])
        negative = ops.where(hit, ops.full_like(negative, ACCIDENTAL_HIT_LOGIT), negative)
        return positive / temperature, negative

    def sampled_softmax_loss(
        self, states: Any, targets: Any, negative_ids: Any, sample_weight: Any = None
    ) -> Any:
        """Mean over valid positions of log(exp(s+) + sum_k exp(s_k)) - s+ (module docstring)."""
        positive, negative = self.token_logits(states, targets, negative_ids)
        logits = ops.concatenate([positive[..., None], negative], axis=-1)
        token_loss = ops.logsumexp(logits, axis=-1) - positive
        weights = ops.cast(ops.not_equal(targets, 0), token_loss.dtype)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, token_loss.dtype)
            if len(sample_weight.shape) == 1:
                sample_weight = sample_weight[:, None]
            weights = weights * sample_weight
        return ops.sum(token_loss * weights) / ops.maximum(ops.sum(weights), 1e-9)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """Sampled softmax over fresh negatives (y: (batch, n) targets) plus any layer losses."""
        if y is None:
            raise ValueError("SequentialRetrievalModel needs y = (batch, n) next-item targets")
        loss = self.sampled_softmax_loss(y_pred, y, self.sample_negatives(y), sample_weight)
        if self.losses:
            loss = loss + ops.sum(ops.stack(self.losses))
        return loss

    # -- serialization ----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_items=self.num_items,
            encoder_config=dataclasses.asdict(self.encoder_config),
            retrieval_config=dataclasses.asdict(self.retrieval_config),
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequentialRetrievalModel:
        return cls(**config)


# -- evaluation ------------------------------------------------------------------------------------


def ranks_from_scores(
    scores: np.ndarray, target_columns: np.ndarray, exclude_columns: Sequence[Iterable[int]] | None = None
) -> np.ndarray:
    """0-based rank of each row's target column: #other columns scoring > target, ties counted too.

    Args:
        scores: (U, C) scores over C candidates.
        target_columns: (U,) column of the held-out item.
        exclude_columns: optional per-row columns to drop from the ranking (e.g. seen items);
            the target column itself is never dropped.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    target_columns = np.asarray(target_columns, dtype=np.int64)
    rows = np.arange(len(target_columns))
    if exclude_columns is not None:
        for row, columns in enumerate(exclude_columns):
            columns = np.asarray([c for c in columns if c != target_columns[row]], dtype=np.int64)
            scores[row, columns] = -np.inf
    target = scores[rows, target_columns][:, None]
    not_target = np.ones_like(scores, dtype=bool)
    not_target[rows, target_columns] = False
    return np.sum((scores >= target) & not_target, axis=1)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K = mean [rank < K]; NDCG@K = mean [rank < K] / log2(rank + 2)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    result: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        result[f"HR@{k}"] = float(np.mean(hit)) if len(ranks) else 0.0
        result[f"NDCG@{k}"] = (
            float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0))) if len(ranks) else 0.0
        )
    return result


def full_ranking_metrics(
    scores: np.ndarray,
    target_columns: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_columns: Sequence[Iterable[int]] | None = None,
) -> dict[str, float]:
    """`metrics_from_ranks(ranks_from_scores(...))` on a score matrix."""
    return metrics_from_ranks(ranks_from_scores(scores, target_columns, exclude_columns), ks)


def full_ranking_ranks(
    model: SequentialRetrievalModel | SequentialEncoder,
    histories: np.ndarray,
    targets: np.ndarray,
    rankings: Sequence[str] = RANKINGS,
    batch_size: int = 512,
    jit_compile: bool = True,
) -> dict[str, np.ndarray]:
    """(U,) 0-based ranks of the held-out items for each of `rankings` (see `RANKINGS`).

    Args:
        model: the trained model (or its encoder).
        histories: (U, n) right-padded item ids (n <= max_len), the test inputs.
        targets: (U,) held-out item ids in 1..num_items.
        rankings: which of `RANKINGS` to compute; all share one scoring pass.
        batch_size: users per scoring call (the last call is zero-padded, so one shape compiles).
        jit_compile: compile the user-vector and scoring step with the backend's XLA jit.
    """
    unknown = [r for r in rankings if r not in RANKINGS]
    if unknown:
        raise ValueError(f"unknown rankings {unknown}; choose from {RANKINGS}")
    encoder = model.encoder if isinstance(model, SequentialRetrievalModel) else model
    histories = np.asarray(histories, dtype=np.int32)
    targets = np.asarray(targets, dtype=np.int64)
    all_items = ops.arange(1, encoder.num_items + 1, dtype="int32")

    def score(ids: Any) -> Any:
        items = encoder.item_vectors(all_items)
        return ops.matmul(encoder.user_vectors(ids), ops.transpose(items))

    step = backend_jit(score) if jit_compile else score
    ranks: dict[str, list[np.ndarray]] = {r: [] for r in rankings}
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        size = len(chunk)
        if size < batch_size and start > 0:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - size, axis=0)])
        scores = np.asarray(ops.convert_to_numpy(step(chunk)))[:size]
        target_columns = targets[start : start + size] - 1
        for ranking in rankings:
            seen = None
            if ranking == "history_excluded":
                seen = [row[row > 0] - 1 for row in histories[start : start + size]]
            ranks[ranking].append(ranks_from_scores(scores, target_columns, seen))
    return {
        r: np.concatenate(chunks) if chunks else np.zeros((0,), dtype=np.int64) for r, chunks in ranks.items()
    }


def evaluate_full_ranking(
    model: SequentialRetrievalModel | SequentialEncoder,
    histories: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 512,
    exclude_seen: bool = False,
    jit_compile: bool = True,
    return_ranks: bool = False,
) -> dict[str, Any]:
    """Full-ranking HR@K / NDCG@K of the held-out items (see the module docstring).

    Args: as `full_ranking_ranks`, and
        ks: cut-offs.
        exclude_seen: drop the history's items from each ranking ("history_excluded", what the
            public benchmark numbers measure); default: rank over all items ("all_items").
        return_ranks: also return the (U,) ranks under "ranks".

    Returns: {"HR@10": ..., "NDCG@10": ..., ..., "num_users": U}.
    """
    ranking = "history_excluded" if exclude_seen else "all_items"
    ranks = full_ranking_ranks(model, histories, targets, (ranking,), batch_size, jit_compile)[ranking]
    result: dict[str, Any] = metrics_from_ranks(ranks, ks)
    result["num_users"] = len(ranks)
    if return_ranks:
        result["ranks"] = ranks
    return result


# -- data ------------------------------------------------------------------------------------------


def load_sequences(path: str | Path) -> dict[int, list[int]]:
    """Per-user time-ordered item lists from either MovieLens format.

    * `user item` per line (SASRec `ml-1m.txt`): the file order is the time order.
    * `UserID::MovieID::Rating::Timestamp` (`ratings.dat`): each user's ratings sorted by
      (timestamp, movie id); every rating counts as an interaction.
    """
    path = Path(path)
    events: dict[int, list[tuple[int, int]]] = {}
    ordered: dict[int, list[int]] = {}
    with path.open(encoding="latin-1") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if "::" in line:
                user, item, _, timestamp = line.split("::")[:4]
                events.setdefault(int(user), []).append((int(timestamp), int(item)))
            else:
                user, item = line.split()[:2]
                ordered.setdefault(int(user), []).append(int(item))
    for user, pairs in events.items():
        ordered[user] = [item for _, item in sorted(pairs)]
    return dict(sorted(ordered.items()))


def remap_item_ids(
    sequences: Mapping[Any, Sequence[int]],
) -> tuple[dict[Any, list[int]], np.ndarray]:
    """Map raw item ids to 1..num_items in increasing raw-id order.

    Returns (remapped sequences, raw_ids) with raw_ids[new_id - 1] = raw id.
    """
    raw_ids = np.array(sorted({int(i) for items in sequences.values() for i in items}), dtype=np.int64)
    lookup = {int(raw): new + 1 for new, raw in enumerate(raw_ids)}
    return {user: [lookup[int(i)] for i in items] for user, items in sequences.items()}, raw_ids


def _right_pad(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.int32)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return out


@dataclasses.dataclass
class LeaveOneOutData:
    """Leave-one-out split (see `leave_one_out_split`); all id arrays are int32, 0 = padding."""

    num_items: int
    max_len: int
    train_windows: list[np.ndarray]  # most recent max_len + 1 items of each S[:-1] (len >= 2)
    train_users: np.ndarray
    test_histories: np.ndarray  # (U, max_len) right-padded S[:-1][-max_len:]
    test_targets: np.ndarray  # (U,) S[-1]
    test_users: np.ndarray
    raw_item_ids: np.ndarray | None = None  # raw id of new id j at index j - 1 (None: not remapped)

    @property
    def train_inputs(self) -> np.ndarray:
        """(U_train, max_len) right-padded window[:-1]."""
        return _right_pad([w[:-1] for w in self.train_windows], self.max_len)

    @property
    def train_targets(self) -> np.ndarray:
        """(U_train, max_len) right-padded window[1:] (next item at each input position)."""
        return _right_pad([w[1:] for w in self.train_windows], self.max_len)

    @property
    def num_train_tokens(self) -> int:
        return int(sum(len(w) - 1 for w in self.train_windows))

    def train_dataset(self, config: RetrievalConfig | None = None, **kwargs: Any) -> RetrievalSequenceDataset:
        """`RetrievalSequenceDataset` over the training windows with the config's batch/SL/seed."""
        config = config or RetrievalConfig()
        return RetrievalSequenceDataset(
            self.train_windows,
            max_len=self.max_len,
            batch_size=config.batch_size,
            stochastic_length=config.stochastic_length,
            alpha=config.stochastic_length_alpha,
            seed=config.seed,
            **kwargs,
        )


def leave_one_out_split(
    sequences: Mapping[Any, Sequence[int]] | Sequence[Sequence[int]],
    max_len: int = 200,
    remap: bool = True,
) -> LeaveOneOutData:
    """Leave-one-out train/test split of per-user time-ordered item lists.

    Users with fewer than 2 items are dropped; users with exactly 2 items are test-only (their
    training part has no next-item pair). With `remap`, raw ids become 1..num_items; otherwise
    ids must already be >= 1 and num_items = the largest id.

    Example:
        data = leave_one_out_split({7: [10, 30, 20, 40]}, max_len=2)
        data.train_inputs, data.train_targets   # [[1, 3]], [[3, 2]]  (ids 10, 20, 30, 40 -> 1..4)
        data.test_histories, data.test_targets  # [[3, 2]], [4]
    """
    if not isinstance(sequences, Mapping):
        sequences = dict(enumerate(sequences))
    raw_ids = None
    if remap:
        sequences, raw_ids = remap_item_ids(sequences)
        num_items = len(raw_ids)
    else:
        num_items = max((max(s) for s in sequences.values() if len(s)), default=0)
        if any(min(s) < 1 for s in sequences.values() if len(s)):
            raise ValueError("item ids must be >= 1 (0 is padding) when remap=False")
    windows, train_users, histories, test_targets, test_users = [], [], [], [], []
    for user, items in sequences.items():
        items = np.asarray(items, dtype=np.int32)
        if len(items) < 2:
            continue
        histories.append(items[:-1][-max_len:])
        test_targets.append(items[-1])
        test_users.append(user)
        if len(items) >= 3:
            windows.append(items[:-1][-(max_len + 1) :])
            train_users.append(user)
    return LeaveOneOutData(
        num_items=int(num_items),
        max_len=int(max_len),
        train_windows=windows,
        train_users=np.asarray(train_users),
        test_histories=_right_pad(histories, max_len),
        test_targets=np.asarray(test_targets, dtype=np.int32),
        test_users=np.asarray(test_users),
        raw_item_ids=raw_ids,
    )


def stochastic_length_subsample(
    window: np.ndarray, max_len: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """HSTU Stochastic Length on one training window of n + 1 items (n trained positions).

    With L = floor(max_len^(alpha/2)): if n > L, with probability 1 - max_len^alpha / n^2 keep
    L + 1 items chosen uniformly at random in their original order; otherwise keep the window.
    """
    n = len(window) - 1
    target = int(math.floor(max_len ** (alpha / 2.0)))
    if n <= target or rng.random() >= 1.0 - max_len**alpha / float(n * n):
        return window
    keep = np.sort(rng.choice(n + 1, size=target + 1, replace=False))
    return window[keep]


class RetrievalSequenceDataset(keras.utils.PyDataset):
    """Batches of (inputs, targets), each (batch_size, max_len) int32, for `model.fit`.

    Every epoch the windows are reshuffled and, with `stochastic_length`, re-subsampled. The last
    batch is padded with empty rows (all-zero targets carry no loss weight), so every batch has
    one static shape (one XLA compilation). Use the default workers=1 (the epoch's batches are
    drawn in `on_epoch_end`).

    Example:
        ds = RetrievalSequenceDataset(data.train_windows, max_len=200, batch_size=128)
        model.fit(ds, epochs=10)
    """

    def __init__(
        self,
        windows: Sequence[np.ndarray],
        max_len: int,
        batch_size: int = 128,
        shuffle: bool = True,
        stochastic_length: bool = False,
        alpha: float = 1.7,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.windows = [np.asarray(w, dtype=np.int32) for w in windows]
        self.max_len, self.batch_size = int(max_len), int(batch_size)
        self.shuffle, self.stochastic_length, self.alpha = shuffle, stochastic_length, float(alpha)
        self.rng = np.random.default_rng(seed)
        self.epoch_windows_kept = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        order = self.rng.permutation(len(self.windows)) if self.shuffle else np.arange(len(self.windows))
        windows = [self.windows[i] for i in order]
        if self.stochastic_length:
            windows = [stochastic_length_subsample(w, self.max_len, self.alpha, self.rng) for w in windows]
        self.epoch_windows_kept = sum(len(w) - 1 for w in windows)
        rows = math.ceil(len(windows) / self.batch_size) * self.batch_size if windows else 0
        self.inputs = np.zeros((rows, self.max_len), dtype=np.int32)
        self.targets = np.zeros((rows, self.max_len), dtype=np.int32)
        for r, w in enumerate(windows):
            self.inputs[r, : len(w) - 1] = w[:-1]
            self.targets[r, : len(w) - 1] = w[1:]

    def __len__(self) -> int:
        return len(self.inputs) // self.batch_size

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.inputs[rows], self.targets[rows]

    def on_epoch_end(self) -> None:
        self._new_epoch()
