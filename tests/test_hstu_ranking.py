"""Tests of models/hstu/ranking.py: HSTU ranking mode (interleaved item/action tokens, multitask heads,
M-FALCON candidate scoring). Tiny models only (d = 16, histories of <= 5 events = 11 tokens) on CPU.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from watchnext.components.sequence_gen.sequences import SequenceEvent, sequence_example
from watchnext.models import features
from watchnext.models.hstu import (
    EncoderConfig,
    RankingConfig,
    SequentialRankingModel,
    naive_score_candidates,
    ranking_examples_to_arrays,
    score_candidates,
)
from watchnext.models.hstu.ranking import (
    ITEM_LOGITS,
    TASKS,
    interleave_tokens,
    item_position_states,
    pad_to_batch_multiple,
)

D = 16
MAX_LEN = 5
NUM_ITEMS = 20


def np_(t) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(t))


def tiny_model(seed: int = 0, use_time: bool = False, **ranking) -> SequentialRankingModel:
    """2 HSTU blocks of 2 heads; block_size 4 so the 11-token sequences use 3 attention blocks."""
    keras.utils.set_random_seed(seed)
    encoder_config = EncoderConfig(
        embedding_dim=D,
        num_heads=2,
        dqk=8,
        dv=8,
        num_blocks=2,
        max_len=MAX_LEN,
        dropout=0.0,
        block_size=4,
        use_time_bias=use_time,
    )
    model = SequentialRankingModel(
        NUM_ITEMS, encoder_config, RankingConfig(**{"jit_compile": False, **ranking})
    )
    model.build()
    rng = np.random.default_rng(seed)
    for weight in model.weights:  # visible relative-bias values (their initializer is tiny)
        if "table" in weight.path:
            weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    return model


ITEMS = np.array([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]], dtype="int32")
ACTIONS = np.array([[1, 0, 3, 0, 0], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 2, 3, 1]], dtype="int32")
TIMES = np.array(
    [[100, 900, 5000, 0, 0], [70, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 60, 3600, 3700, 90000]], dtype="int64"
)
TARGETS = np.array([6, 8, 9, 11], dtype="int32")
TARGET_TIMES = np.array([5100, 80, 10, 90500], dtype="int64")


def batch(items=ITEMS, actions=ACTIONS, targets=TARGETS, times=None, target_times=None) -> dict:
    x = {
        features.HISTORY_ITEM_IDS: items,
        features.HISTORY_ACTIONS: actions,
        features.TARGET_ITEM_ID: targets,
    }
    if times is not None:
        x[features.HISTORY_TIMESTAMPS] = times
        x[features.TARGET_TIMESTAMP] = target_times
    return x


def labels_for(items: np.ndarray, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    b, n = items.shape
    return {
        features.HISTORY_CLICKS: rng.integers(0, 2, size=(b, n)).astype("float32"),
        features.HISTORY_LIKES: rng.integers(0, 2, size=(b, n)).astype("float32"),
        features.HISTORY_WATCH_TIMES_S: rng.uniform(0, 300, size=(b, n)).astype("float32"),
        features.TARGET_CLICK: rng.integers(0, 2, size=b).astype("float32"),
        features.TARGET_LIKE: rng.integers(0, 2, size=b).astype("float32"),
        features.TARGET_WATCH_TIME_S: rng.uniform(0, 300, size=b).astype("float32"),
    }


# -- token layout ---------------------------------------------------------------------------------


def test_interleaving_on_hand_built_example():
    items = np.array([[3, 4, 5, 0], [7, 0, 0, 0]], dtype="int32")
    actions = np.array([[1, 0, 3, 0], [2, 0, 0, 0]], dtype="int32")
    times = np.array([[10, 20, 30, 0], [5, 0, 0, 0]], dtype="int64")
    layout = interleave_tokens(items, actions, np.array([6, 8]), times, np.array([40, 9]))
    # Φ0 a0 Φ1 a1 Φ2 a2 Φt: item ids at even token positions, action code + 1 at odd ones.
    np.testing.assert_array_equal(
        np_(layout.item_ids), [[3, 0, 4, 0, 5, 0, 6, 0, 0], [7, 0, 8, 0, 0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        np_(layout.action_ids), [[0, 2, 0, 1, 0, 4, 0, 0, 0], [0, 3, 0, 0, 0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(np_(layout.mask), [[1] * 7 + [0] * 2, [1] * 3 + [0] * 6])
    np.testing.assert_array_equal(
        np_(layout.timestamps), [[10, 10, 20, 20, 30, 30, 40, 0, 0], [5, 5, 9, 0, 0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(np_(layout.lengths), [3, 1])
    # Default request time: the last event's; the history-only layout (M-FALCON) has 2N tokens.
    default = interleave_tokens(items, actions, np.array([6, 8]), times)
    np.testing.assert_array_equal(np_(default.timestamps)[[0, 1], [6, 2]], [30, 5])
    history = interleave_tokens(items, actions)
    np.testing.assert_array_equal(np_(history.item_ids), [[3, 0, 4, 0, 5, 0, 0, 0], [7, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(np_(history.action_ids), np_(layout.action_ids)[:, :8])
    # Item-position states: Φ_0..Φ_3 at tokens 0, 2, 4, 6, then the target at token 2 n_b.
    token_index = ops.convert_to_tensor(np.tile(np.arange(9, dtype="float32")[None, :, None], (2, 1, 1)))
    picked = np_(item_position_states(token_index, layout.lengths))[..., 0]
    np.testing.assert_array_equal(picked, [[0, 2, 4, 6, 6], [0, 2, 4, 6, 2]])


# -- forward pass ---------------------------------------------------------------------------------


def test_output_shapes_and_ranges():
    model = tiny_model(head_hidden_dim=8)
    out = model(batch())
    assert set(out) == set(TASKS) | {ITEM_LOGITS}
    for task in TASKS:
        assert np_(out[task]).shape == (4,)
    assert np_(out[ITEM_LOGITS]).shape == (4, MAX_LEN + 1, 3)
    for task in ("click", "like"):
        assert np.all((np_(out[task]) > 0) & (np_(out[task]) < 1))
    logits = np_(out[ITEM_LOGITS])[:, -1]
    np.testing.assert_allclose(np_(out["click"]), 1 / (1 + np.exp(-logits[:, 0])), atol=1e-6)
    np.testing.assert_allclose(np_(out["watch_time_log1p"]), logits[:, 2], atol=1e-6)
    assert np.all(np.isfinite(np_(model(batch(times=TIMES, target_times=TARGET_TIMES))["click"])))


def test_causality_item_state_does_not_see_its_own_action():
    model = tiny_model()
    base = np_(model(batch())[ITEM_LOGITS])
    actions = ACTIONS.copy()
    actions[3, 2] = 0  # a_2 of row 3 (was 2)
    changed = np_(model(batch(actions=actions))[ITEM_LOGITS])
    np.testing.assert_allclose(changed[3, :3], base[3, :3], atol=1e-6)  # Φ_0..Φ_2 do not see a_2
    assert np.max(np.abs(changed[3, 3:] - base[3, 3:])) > 1e-4  # Φ_3, Φ_4 and the target do
    np.testing.assert_allclose(changed[:3], base[:3], atol=1e-6)  # other rows untouched
    assert np.all(base[:, :-1][ITEMS == 0] == 0.0)  # padded history positions hold no logits
    # The last action reaches the target; the target item changes no history position.
    actions = ACTIONS.copy()
    actions[0, 2] = 0
    assert abs(np_(model(batch(actions=actions))["click"])[0] - np_(model(batch())["click"])[0]) > 1e-5
    targets = TARGETS + 1
    other = np_(model(batch(targets=targets))[ITEM_LOGITS])
    np.testing.assert_allclose(other[:, :-1], base[:, :-1], atol=1e-6)


@pytest.mark.parametrize("use_time", [False, True])
def test_padding_invariance(use_time):
    model = tiny_model(use_time=use_time)
    items, actions, times = ITEMS[:3, :3], ACTIONS[:3, :3], TIMES[:3, :3]  # histories of <= 3 events
    narrow = batch(items, actions, TARGETS[:3], times if use_time else None, TARGET_TIMES[:3])
    wide = batch(
        np.pad(items, ((0, 0), (0, 2))),
        np.pad(actions, ((0, 0), (0, 2)), constant_values=3),  # padded actions are ignored too
        TARGETS[:3],
        np.pad(times, ((0, 0), (0, 2)), constant_values=777) if use_time else None,
        TARGET_TIMES[:3],
    )
    out_narrow, out_wide = model(narrow), model(wide)
    for task in TASKS:
        np.testing.assert_allclose(np_(out_wide[task]), np_(out_narrow[task]), atol=1e-5)
    np.testing.assert_allclose(
        np_(out_wide[ITEM_LOGITS])[:, :3], np_(out_narrow[ITEM_LOGITS])[:, :3], atol=1e-5
    )
    # A row's predictions do not depend on the other rows of its batch.
    times = TIMES if use_time else None
    together = np_(model(batch(times=times, target_times=TARGET_TIMES))["click"])
    alone = model(
        batch(
            ITEMS[1:2], ACTIONS[1:2], TARGETS[1:2], None if times is None else times[1:2], TARGET_TIMES[1:2]
        )
    )
    np.testing.assert_allclose(np_(alone["click"]), together[1:2], atol=1e-5)


# -- loss -----------------------------------------------------------------------------------------


def reference_loss(logits, labels, items, targets, task_weights, history_weight=1.0, sample_weight=None):
    """Plain numpy multitask loss over valid item positions (history events and targets)."""
    total, norm = 0.0, 0.0
    for b in range(items.shape[0]):
        rows = [(k, history_weight, "history") for k in range(items.shape[1]) if items[b, k] != 0]
        rows += [(items.shape[1], 1.0, "target")] if targets[b] != 0 else []
        for k, weight, kind in rows:
            if kind == "history":
                click, like, watch = (
                    labels[f"history_{n}"][b, k] for n in ("clicks", "likes", "watch_times_s")
                )
            else:
                click, like, watch = (labels[f"target_{n}"][b] for n in ("click", "like", "watch_time_s"))
            z = logits[b, k].astype("float64")
            p = 1 / (1 + np.exp(-z[:2]))
            bce = -(np.array([click, like]) * np.log(p) + (1 - np.array([click, like])) * np.log(1 - p))
            loss = (
                task_weights[0] * bce[0]
                + task_weights[1] * bce[1]
                + task_weights[2] * (z[2] - np.log1p(watch)) ** 2
            )
            w = weight * (1.0 if sample_weight is None else sample_weight[b])
            total, norm = total + w * loss, norm + w
    return total / norm


def test_loss_matches_numpy_reference_and_ignores_padding():
    model = tiny_model(click_weight=1.0, like_weight=0.5, watch_time_weight=0.2)
    x, y = batch(), labels_for(ITEMS)
    x[features.TARGET_ITEM_ID] = np.array([6, 8, 0, 11], dtype="int32")  # row 2: empty, no target
    y_pred = model(x)
    logits = np_(y_pred[ITEM_LOGITS])
    weights = model.ranking_config.task_weights
    loss = float(np_(model.compute_loss(x, y, y_pred)))
    expected = reference_loss(logits, y, ITEMS, x[features.TARGET_ITEM_ID], weights)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # Labels at padded positions (and at a missing target) change nothing.
    garbage = {k: v.copy() for k, v in y.items()}
    for key in (features.HISTORY_CLICKS, features.HISTORY_LIKES, features.HISTORY_WATCH_TIMES_S):
        garbage[key][ITEMS == 0] = 1e3
    garbage[features.TARGET_WATCH_TIME_S][2] = 1e6
    np.testing.assert_allclose(float(np_(model.compute_loss(x, garbage, y_pred))), loss, rtol=1e-6)
    # Sample weights scale rows; history_label_weight = 0 and missing history labels train the target only.
    sample_weight = np.array([0.5, 2.0, 1.0, 0.0], dtype="float32")
    np.testing.assert_allclose(
        float(np_(model.compute_loss(x, y, y_pred, sample_weight=sample_weight))),
        reference_loss(logits, y, ITEMS, x[features.TARGET_ITEM_ID], weights, sample_weight=sample_weight),
        rtol=1e-5,
    )
    target_only = reference_loss(logits, y, ITEMS, x[features.TARGET_ITEM_ID], weights, history_weight=0.0)
    target_labels = {k: v for k, v in y.items() if k.startswith("target_")}
    np.testing.assert_allclose(
        float(np_(model.compute_loss(x, target_labels, y_pred))), target_only, rtol=1e-5
    )
    target_model = tiny_model(
        click_weight=1.0, like_weight=0.5, watch_time_weight=0.2, history_label_weight=0.0
    )
    np.testing.assert_allclose(float(np_(target_model.compute_loss(x, y, y_pred))), target_only, rtol=1e-5)


# -- M-FALCON -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "use_time,m,micro_batch,per_candidate_times",
    [(False, 7, 3, False), (True, 5, 2, False), (True, 4, 4, True)],
)
def test_mfalcon_equals_naive(use_time, m, micro_batch, per_candidate_times):
    model = tiny_model(seed=1, use_time=use_time, head_hidden_dim=8)
    rng = np.random.default_rng(m)
    candidates = rng.integers(1, NUM_ITEMS + 1, size=(4, m)).astype("int32")
    kwargs, cand_ts = {}, TARGET_TIMES
    if per_candidate_times:
        cand_ts = TARGET_TIMES[:, None] + rng.integers(0, 5000, size=(4, m))
    if use_time:
        kwargs = {"history_timestamps": TIMES, "candidate_timestamps": cand_ts}
    fast = score_candidates(model, ITEMS, ACTIONS, candidates, micro_batch_size=micro_batch, **kwargs)
    slow = naive_score_candidates(model, ITEMS, ACTIONS, candidates, batch_size=3, **kwargs)
    assert set(fast) == set(slow) == set(TASKS)
    for task in TASKS:
        assert fast[task].shape == slow[task].shape == (4, m)
        np.testing.assert_allclose(fast[task], slow[task], atol=1e-5)
    # The naive scores are the model's own target predictions for [history; candidate].
    first_times = cand_ts[:, 0] if per_candidate_times else cand_ts
    x = batch(targets=candidates[:, 0], times=TIMES if use_time else None, target_times=first_times)
    np.testing.assert_allclose(np_(model(x)["click"]), slow["click"][:, 0], atol=1e-5)


def test_mfalcon_candidates_do_not_see_each_other_and_jit():
    model = tiny_model(seed=2)
    candidates = np.arange(1, 12, dtype="int32")[None, :].repeat(4, axis=0)
    full = score_candidates(model, ITEMS, ACTIONS, candidates, micro_batch_size=4, jit_compile=True)
    alone = score_candidates(model, ITEMS, ACTIONS, candidates[:, 5:6], micro_batch_size=1)
    shuffled = score_candidates(model, ITEMS, ACTIONS, candidates[:, ::-1], micro_batch_size=3)
    for task in TASKS:
        np.testing.assert_allclose(alone[task][:, 0], full[task][:, 5], atol=1e-5)
        np.testing.assert_allclose(shuffled[task][:, ::-1], full[task], atol=1e-5)


# -- serialization --------------------------------------------------------------------------------


def test_get_config_round_trip_and_save_load(tmp_path):
    model = tiny_model(seed=3, use_time=True, head_hidden_dim=8, like_weight=0.3, history_label_weight=0.5)
    config = model.get_config()
    clone = SequentialRankingModel.from_config(config)
    assert clone.get_config() == config
    assert clone.ranking_config == model.ranking_config and clone.encoder_config == model.encoder_config
    serialized = keras.saving.serialize_keras_object(model)
    assert serialized["registered_name"].startswith("watchnext>")
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config
    x, y = batch(times=TIMES, target_times=TARGET_TIMES), labels_for(ITEMS)
    model.compile(jit_compile=True)
    x3, y3 = pad_to_batch_multiple(x, 3), pad_to_batch_multiple(y, 3)  # XLA: static batch shape
    assert len(x3[features.TARGET_ITEM_ID]) == 6 and not np.any(x3[features.TARGET_ITEM_ID][4:])
    history = model.fit(x3, y3, batch_size=3, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "ranking.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SequentialRankingModel)
    assert dataclasses.asdict(loaded.ranking_config) == config["ranking_config"]
    for task in (*TASKS, ITEM_LOGITS):
        np.testing.assert_allclose(np_(loaded(x)[task]), np_(model(x)[task]), atol=1e-6)


def test_config_validation():
    for bad in ({"click_weight": -1.0}, {"history_label_weight": -0.1}, {"head_hidden_dim": -2}):
        with pytest.raises(ValueError):
            RankingConfig(**bad)
    with pytest.raises(ValueError):
        SequentialRankingModel(10, EncoderConfig(block_type="sasrec"))


# -- data -----------------------------------------------------------------------------------------


def event(t: int, item: int, click: int = 0, like: int = 0, watch: float = 0.0) -> SequenceEvent:
    return SequenceEvent(t, b"r", 0, item, click, like, watch, 0.0)


def test_ranking_examples_to_arrays():
    history = [event(10 * i, i + 1, i % 2, int(i == 3), 5.0 * i) for i in range(7)]
    target = event(100, 9, 1, 1, 42.0)
    examples = [
        sequence_example(b"u1", history, target, with_labels=True),
        sequence_example(b"u2", history[:2], event(50, 4), with_labels=True),
    ]
    inputs, labels = ranking_examples_to_arrays(examples, max_len=MAX_LEN)
    np.testing.assert_array_equal(inputs[features.HISTORY_ITEM_IDS], [[3, 4, 5, 6, 7], [1, 2, 0, 0, 0]])
    np.testing.assert_array_equal(inputs[features.HISTORY_ACTIONS], [[0, 3, 0, 1, 0], [0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(
        inputs[features.HISTORY_TIMESTAMPS], [[20, 30, 40, 50, 60], [0, 10, 0, 0, 0]]
    )
    np.testing.assert_array_equal(inputs[features.TARGET_ITEM_ID], [9, 4])
    np.testing.assert_array_equal(inputs[features.TARGET_TIMESTAMP], [100, 50])
    assert (
        inputs[features.HISTORY_ITEM_IDS].dtype == np.int32
        and inputs[features.HISTORY_TIMESTAMPS].dtype == np.int64
    )
    np.testing.assert_array_equal(labels[features.HISTORY_CLICKS], [[0, 1, 0, 1, 0], [0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(labels[features.HISTORY_LIKES], [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_allclose(labels[features.HISTORY_WATCH_TIMES_S][0], [10, 15, 20, 25, 30])
    np.testing.assert_array_equal(labels[features.TARGET_CLICK], [1, 0])
    np.testing.assert_allclose(labels[features.TARGET_WATCH_TIME_S], [42.0, 0.0])
    unlabelled = [sequence_example(b"u", history, target, with_labels=False)]
    inputs, labels = ranking_examples_to_arrays(unlabelled, max_len=MAX_LEN, with_timestamps=False)
    assert labels is None and features.HISTORY_TIMESTAMPS not in inputs
    bad = sequence_example(b"u", history, target, with_labels=False)
    bad[features.HISTORY_ACTIONS][-1] = 4
    with pytest.raises(ValueError):
        ranking_examples_to_arrays([bad], max_len=MAX_LEN)


# -- learning -------------------------------------------------------------------------------------


def synthetic_examples(num: int, seed: int) -> list[dict]:
    """click_k = click_{k-1} XOR [item_k > 10]: the target's click needs both its item and the history."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(num):
        n = int(rng.integers(1, MAX_LEN + 1))
        items = rng.integers(1, NUM_ITEMS + 1, size=n + 1)
        clicks = np.zeros(n + 1, dtype=int)
        clicks[0] = rng.integers(0, 2)
        for k in range(1, n + 1):
            clicks[k] = clicks[k - 1] ^ int(items[k] > NUM_ITEMS // 2)
        likes = clicks * rng.integers(0, 2, size=n + 1)
        watch = clicks * rng.uniform(10, 100, size=n + 1)
        events = [
            event(k, int(items[k]), int(clicks[k]), int(likes[k]), float(watch[k])) for k in range(n + 1)
        ]
        examples.append(sequence_example(b"u", events[:-1], events[-1], with_labels=True))
    return examples


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores)] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_learns_history_dependent_click():
    model = tiny_model(seed=0, learning_rate=1e-2, head_hidden_dim=16, watch_time_weight=0.1)
    x, y = ranking_examples_to_arrays(synthetic_examples(512, seed=0), max_len=MAX_LEN)
    x_test, y_test = ranking_examples_to_arrays(synthetic_examples(300, seed=1), max_len=MAX_LEN)
    model.compile()
    before = auc(y_test[features.TARGET_CLICK], np_(model(x_test)["click"]))
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)  # 128 steps
    after = auc(y_test[features.TARGET_CLICK], np_(model(x_test)["click"]))
    assert before < 0.7
    assert after >= 0.9, (before, after, history.history["loss"])
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
