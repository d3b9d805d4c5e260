"""M-FALCON candidate scoring (HSTU paper, section 3.4) and the naive reference it must equal.

Ranking head (our choice, documented here): a candidate c is appended as one token after the user's
history (at position len(history), with the request timestamp if the model uses time). Its final
state s_c = normalize(encoder state of that token) has seen the history and c itself (target-aware
scoring), and the score is the cosine with c's own item vector:

    score(c) = < s_c, normalize(E[c]) >

Naive reference (`naive_scores`): one full causal forward over [history; c] per candidate; the score
is read at the last position. Cost O(m * n^2 * d) per layer.

M-FALCON (`mfalcon_scores`): run the history once and keep each block's K/V (`encode_history`);
then score the m candidates in micro-batches of b_m: within a micro-batch all b_m candidates share
the position len(history) and each attends to the history and to itself only, i.e. the attention
mask over [history; candidates] is [1_{b_m x n} | I_{b_m}]. The history never attends to
candidates (causality), so its cached K/V are exact, and the candidate scores equal the naive ones
(tests check 1e-5). Cost O(n^2 d + m n d) per layer: linear in m.

Example:
    encoder = SequentialEncoder(num_items=1000, config=HSTU_CONFIG)
    history = np.array([[3, 17, 42, 0, 0]])             # right-padded with 0
    candidates = np.arange(1, 1001)[None, :]            # (1, m)
    scores = mfalcon_scores(encoder, history, candidates, micro_batch_size=128)   # (1, 1000)
    ranking = np.argsort(-keras.ops.convert_to_numpy(scores)[0])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from watchnext.models.hstu.encoder import SequentialEncoder


def backend_jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile `fn` with the backend's XLA jit (tf.function(jit_compile=True) / jax.jit)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _as_rows(a: Any, dtype: Any) -> np.ndarray:
    """Host array with a leading batch axis."""
    a = np.asarray(ops.convert_to_numpy(a) if not isinstance(a, np.ndarray) else a, dtype=dtype)
    return a[None] if a.ndim == 1 else a


def _pad_columns(a: np.ndarray, width: int) -> np.ndarray:
    """Right-pad a (batch, k) array with zeros to (batch, width)."""
    return a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1])))


def pad_candidates(
    candidates: np.ndarray, times: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Zero-pad (b, m) candidates (and (b, m) per-candidate times) to a multiple of `size` columns.

    times: None, (b, 1) shared by a row's candidates (returned unchanged) or (b, m).
    """
    width = max(1, math.ceil(candidates.shape[1] / size)) * size
    if times is not None and times.shape[1] > 1:
        times = _pad_columns(times, width)
    return _pad_columns(candidates, width), times


class MicroBatchScorer:
    """Base of the M-FALCON scorers: one history step, then every candidate micro-batch in one call.

    The candidate call cuts (b, k * b_m) zero-padded candidates into k micro-batches of b_m and
    scores them one after the other inside one program, so a request pays one dispatch, not k (on
    the CPU a compiled call costs ~1 ms of its own, as much as scoring 256 candidates). Compiled,
    it is traced once per k (per number of micro-batches).

    Args:
        encode: the history step (called once per request batch).
        score: the candidate step, score(chunk (b, b_m), chunk_times, *context) -> (b, b_m, ...),
            where context is what `encode` returned.
        micro_batch_size: b_m candidates per step (the last micro-batch is zero-padded to b_m).
        jit_compile: compile both calls with the backend's XLA jit.
    """

    def __init__(self, encode: Callable, score: Callable, micro_batch_size: int, jit_compile: bool):
        self.micro_batch_size = int(micro_batch_size)
        self._score_step = score
        self._encode = backend_jit(encode) if jit_compile else encode
        self._score_all = backend_jit(self._micro_batches) if jit_compile else self._micro_batches

    def _micro_batches(self, candidates: Any, times: Any, *context: Any) -> Any:
        size = self.micro_batch_size
        per_candidate_times = times is not None and times.shape[1] > 1
        scores = []
        for start in range(0, candidates.shape[1], size):
            chunk_times = times[:, start : start + size] if per_candidate_times else times
            scores.append(self._score_step(candidates[:, start : start + size], chunk_times, *context))
        return scores[0] if len(scores) == 1 else ops.concatenate(scores, axis=1)

    def score_candidates(self, candidates: np.ndarray, times: np.ndarray | None, *context: Any) -> np.ndarray:
        """(b, m) candidates [and (b, 1) / (b, m) times] after the encoded history -> (b, m, ...) numpy."""
        padded, padded_times = pad_candidates(candidates, times, self.micro_batch_size)
        scores = self._score_all(padded, padded_times, *context)
        return np.asarray(ops.convert_to_numpy(scores))[:, : candidates.shape[1]]


class MFalconScorer(MicroBatchScorer):
    """Encode a history once, then score candidates in micro-batches (see the module docstring).

    Args:
        encoder: a built `SequentialEncoder`.
        micro_batch_size, jit_compile: as `MicroBatchScorer`.
    """

    def __init__(self, encoder: SequentialEncoder, micro_batch_size: int = 128, jit_compile: bool = False):
        self.encoder = encoder
        super().__init__(self._encode_history, self._score_micro_batch, micro_batch_size, jit_compile)

    def _encode_history(self, history_ids: Any, history_timestamps: Any) -> tuple[Any, Any]:
        caches = self.encoder.encode_history(history_ids, history_timestamps)
        lengths = ops.sum(ops.cast(ops.not_equal(history_ids, 0), "int32"), axis=1, keepdims=True)
        return caches, lengths

    def _score_micro_batch(self, candidate_ids: Any, timestamps: Any, caches: Any, positions: Any) -> Any:
        states = self.encoder.encode_appended(candidate_ids, caches, positions, timestamps)
        return ops.sum(states * self.encoder.item_vectors(candidate_ids), axis=-1)

    def __call__(
        self,
        history_ids: Any,
        candidate_ids: Any,
        history_timestamps: Any = None,
        candidate_timestamps: Any = None,
    ) -> Any:
        """history_ids (batch, n) right-padded, candidate_ids (batch, m) -> (batch, m) numpy scores.

        candidate_timestamps: optional (batch,) request time or (batch, m) per-candidate times.
        """
        history = _as_rows(history_ids, "int32")
        candidates = _as_rows(candidate_ids, "int32")
        hist_ts = None if history_timestamps is None else _as_rows(history_timestamps, None)
        caches, positions = self._encode(history, hist_ts)
        cand_ts = (
            None if candidate_timestamps is None else np.asarray(ops.convert_to_numpy(candidate_timestamps))
        )
        if cand_ts is not None and cand_ts.ndim == 1:
            cand_ts = cand_ts[:, None]
        return self.score_candidates(candidates, cand_ts, caches, positions)


class NaiveScorer:
    """Reference scorer: one full forward over [history; candidate] per candidate.

    Args:
        encoder: a built `SequentialEncoder`.
        batch_size: candidate sequences per forward call (1 = literally one call per candidate;
            larger values batch independent forwards, the cost per candidate is unchanged).
        jit_compile: compile the forward with the backend's XLA jit.
    """

    def __init__(self, encoder: SequentialEncoder, batch_size: int = 1, jit_compile: bool = False):
        self.encoder = encoder
        self.batch_size = int(batch_size)
        self._forward = backend_jit(self._last_scores) if jit_compile else self._last_scores

    def _last_scores(self, sequences: Any, timestamps: Any) -> Any:
        states = self.encoder(sequences, timestamps=timestamps, training=False)
        return ops.sum(states[:, -1] * self.encoder.item_vectors(sequences[:, -1]), axis=-1)

    def _row(self, history: np.ndarray, candidates: np.ndarray, hist_ts: Any, cand_ts: Any) -> np.ndarray:
        """Scores of one unpadded history against its candidates (cand_ts: (m,) or None)."""
        out = []
        for start in range(0, len(candidates), self.batch_size):
            count = min(self.batch_size, len(candidates) - start)
            take = np.minimum(np.arange(start, start + self.batch_size), start + count - 1)
            seqs = np.concatenate([np.tile(history, (self.batch_size, 1)), candidates[take, None]], axis=1)
            ts = None
            if hist_ts is not None:
                ts = np.concatenate([np.tile(hist_ts, (self.batch_size, 1)), cand_ts[take, None]], axis=1)
            out.append(ops.convert_to_numpy(self._forward(seqs.astype("int32"), ts))[:count])
        return np.concatenate(out)

    def __call__(
        self,
        history_ids: Any,
        candidate_ids: Any,
        history_timestamps: Any = None,
        candidate_timestamps: Any = None,
    ) -> np.ndarray:
        """Same arguments and result as `MFalconScorer.__call__` (returns a numpy array)."""
        history = _as_rows(history_ids, "int32")
        candidates = _as_rows(candidate_ids, "int32")
        hist_ts = None if history_timestamps is None else _as_rows(history_timestamps, None)
        cand_ts = (
            None if candidate_timestamps is None else np.asarray(ops.convert_to_numpy(candidate_timestamps))
        )
        rows = []
        for b in range(history.shape[0]):
            length = int(np.count_nonzero(history[b]))
            row_ts = None if hist_ts is None else hist_ts[b, :length]
            row_cand_ts = None
            if cand_ts is not None:
                row_cand_ts = np.broadcast_to(np.atleast_1d(cand_ts[b]), candidates[b].shape)
            rows.append(self._row(history[b, :length], candidates[b], row_ts, row_cand_ts))
        return np.stack(rows)


def mfalcon_scores(
    encoder: SequentialEncoder,
    history_ids: Any,
    candidate_ids: Any,
    micro_batch_size: int = 128,
    history_timestamps: Any = None,
    candidate_timestamps: Any = None,
    jit_compile: bool = False,
) -> Any:
    """One-shot `MFalconScorer`: (batch, m) scores of candidates after right-padded histories."""
    scorer = MFalconScorer(encoder, micro_batch_size=micro_batch_size, jit_compile=jit_compile)
    return scorer(history_ids, candidate_ids, history_timestamps, candidate_timestamps)


def naive_scores(
    encoder: SequentialEncoder,
    history_ids: Any,
    candidate_ids: Any,
    batch_size: int = 1,
    history_timestamps: Any = None,
    candidate_timestamps: Any = None,
    jit_compile: bool = False,
) -> np.ndarray:
    """One-shot `NaiveScorer`: one full forward per candidate; (batch, m) numpy scores."""
    scorer = NaiveScorer(encoder, batch_size=batch_size, jit_compile=jit_compile)
    return scorer(history_ids, candidate_ids, history_timestamps, candidate_timestamps)
