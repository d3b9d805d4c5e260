"""Tests of models/hstu/retrieval.py (sampled-softmax retrieval training, full-ranking metrics, data
helpers) and a tiny run of benchmarks/hstu_ml1m.py. Tiny encoders (d = 16, max_len <= 12) on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from watchnext.models.hstu.encoder import HSTU_CONFIG, HSTU_LARGE_CONFIG, SASREC_CONFIG, EncoderConfig
from watchnext.models.hstu.retrieval import (
    ACCIDENTAL_HIT_LOGIT,
    RetrievalConfig,
    RetrievalSequenceDataset,
    SequentialRetrievalModel,
    evaluate_full_ranking,
    full_ranking_metrics,
    full_ranking_ranks,
    leave_one_out_split,
    load_sequences,
    metrics_from_ranks,
    ranks_from_scores,
    stochastic_length_subsample,
)

REPO = Path(__file__).resolve().parents[1]
D = 16


def np_(t) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(t))


def tiny_config(base: EncoderConfig = HSTU_CONFIG, max_len: int = 12, **overrides) -> EncoderConfig:
    values = {
        **base.__dict__,
        "embedding_dim": D,
        "dqk": D,
        "dv": D,
        "ffn_dim": D,
        "max_len": max_len,
        "num_blocks": 1,
        "dropout": 0.0,
        **overrides,
    }
    return EncoderConfig(**values)


def tiny_model(num_items: int = 20, base: EncoderConfig = HSTU_CONFIG, seed: int = 0, **retrieval):
    keras.utils.set_random_seed(seed)
    config = RetrievalConfig(**{"num_negatives": 6, "jit_compile": False, **retrieval})
    model = SequentialRetrievalModel(num_items, tiny_config(base), config)
    model.build()
    return model


def successor_sequences(num_users: int = 160, num_items: int = 30, seed: int = 0) -> dict[int, list[int]]:
    """Item i is always followed by i + 1 (wrapping around num_items -> 1)."""
    rng = np.random.default_rng(seed)
    return {
        u: [(start + i) % num_items + 1 for i in range(int(rng.integers(5, 12)))]
        for u, start in enumerate(rng.integers(0, num_items, size=num_users))
    }


def reference_loss(states, targets, negatives, table, temperature, drop_hits=True) -> float:
    """Plain numpy sampled softmax; negatives (b|1, n|1, K) broadcast over positions."""
    table = table / np.linalg.norm(table, axis=-1, keepdims=True)
    b, n = targets.shape
    negatives = np.broadcast_to(negatives, (b, n, negatives.shape[-1]))
    losses = []
    for i in range(b):
        for j in range(n):
            t = targets[i, j]
            if t == 0:
                continue
            negs = [z for z in negatives[i, j] if not (drop_hits and z == t)]
            logits = (
                np.array([states[i, j] @ table[t]] + [states[i, j] @ table[z] for z in negs]) / temperature
            )
            losses.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[0])
    return float(np.mean(losses))


# -- learning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base,negatives,sharing,jit,stochastic",
    [
        (HSTU_CONFIG, "random", "position", False, False),
        (SASREC_CONFIG, "random+in_batch", "sequence", True, True),
    ],
)
def test_learns_successor_pattern(base, negatives, sharing, jit, stochastic):
    data = leave_one_out_split(successor_sequences(), max_len=12)
    model = tiny_model(
        data.num_items,
        base,
        negatives=negatives,
        negative_sharing=sharing,
        learning_rate=1e-2,
        batch_size=32,
        jit_compile=jit,
        stochastic_length=stochastic,
        stochastic_length_alpha=1.6,
    )
    model.compile()
    before = evaluate_full_ranking(model, data.test_histories, data.test_targets, ks=(1, 10), jit_compile=jit)
    if stochastic:  # PyDataset path (Stochastic Length re-drawn every epoch)
        history = model.fit(data.train_dataset(model.retrieval_config), epochs=8, verbose=0)
    else:  # plain numpy path (160 rows: a partial last batch)
        history = model.fit(data.train_inputs, data.train_targets, batch_size=48, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.25 * losses[0]
    after = evaluate_full_ranking(model, data.test_histories, data.test_targets, ks=(1, 10), jit_compile=jit)
    assert before["HR@10"] < 0.7
    assert after["HR@10"] >= 0.95 and after["HR@1"] >= 0.8
    assert after["num_users"] == len(data.test_targets) == 160


# -- loss ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loss_case() -> dict[str, np.ndarray]:
    """States near their target's item vector (so an accidental hit has a large logit), with hits."""
    rng = np.random.default_rng(3)
    table = np_(tiny_model().encoder.item_embedding.embeddings)
    table = table / np.linalg.norm(table, axis=-1, keepdims=True)
    targets = np.array([[3, 7, 2, 0], [5, 5, 9, 11]], dtype="int32")
    states = table[targets] + 0.5 * rng.normal(size=(2, 4, D)) / math.sqrt(D)
    states = (states / np.linalg.norm(states, axis=-1, keepdims=True)).astype("float32")
    negatives = rng.integers(1, 21, size=(2, 4, 5)).astype("int32")
    negatives[0, 0, 1] = 3  # accidental hits
    negatives[1, 1, 4] = 5
    negatives[1, 2, 0] = negatives[1, 2, 3] = 9
    return {"states": states, "targets": targets, "negatives": negatives}


@pytest.mark.parametrize("sharing", ["position", "sequence", "batch"])
def test_loss_matches_reference_and_removes_accidental_hits(loss_case, sharing):
    model = tiny_model(temperature=0.05)
    states, targets, negatives = loss_case["states"], loss_case["targets"], loss_case["negatives"]
    if sharing == "sequence":
        negatives = negatives[:, :1]
    elif sharing == "batch":
        negatives = negatives[1:, 2:3]  # holds two hits of target 9 at row 1, position 2
    table = np_(model.encoder.item_embedding.embeddings)
    loss = float(np_(model.sampled_softmax_loss(states, targets, negatives)))
    expected = reference_loss(states, targets, negatives, table, 0.05)
    with_hits = reference_loss(states, targets, negatives, table, 0.05, drop_hits=False)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert abs(with_hits - expected) > 1e-3  # the case really contains hits that matter
    _, negative_logits = model.token_logits(states, targets, negatives)
    hits = np.broadcast_to(negatives, (2, 4, negatives.shape[-1])) == targets[..., None]
    assert np.all(np_(negative_logits)[hits] == ACCIDENTAL_HIT_LOGIT)
    assert np.all(np_(negative_logits)[~hits] > -1.0 / 0.05 - 1e-3)


def test_padding_does_not_affect_loss(loss_case):
    model = tiny_model()
    states, targets, negatives = loss_case["states"], loss_case["targets"], loss_case["negatives"]
    base = float(np_(model.sampled_softmax_loss(states, targets, negatives)))
    # Garbage states and other negatives at the padded position, plus three extra padded columns.
    rng = np.random.default_rng(9)
    padded_states = np.concatenate([states, rng.normal(size=(2, 3, D)).astype("float32")], axis=1)
    padded_states[0, 3] = 50.0
    padded_targets = np.pad(targets, ((0, 0), (0, 3)))
    padded_negatives = np.concatenate([negatives, rng.integers(1, 21, size=(2, 3, 5))], axis=1)
    padded_negatives[0, 3] = 1
    padded = float(np_(model.sampled_softmax_loss(padded_states, padded_targets, padded_negatives)))
    assert padded == pytest.approx(base, rel=1e-6)
    # End to end: the encoder states of valid positions ignore right padding, so the loss does too.
    ids = np.array([[4, 3, 7, 2, 0, 0], [1, 5, 5, 9, 11, 0]], dtype="int32")
    targets = np.array([[3, 7, 2, 6, 0, 0], [5, 5, 9, 11, 12, 0]], dtype="int32")
    negatives = rng.integers(1, 21, size=(2, 1, 6)).astype("int32")
    short = model.sampled_softmax_loss(model(ids), targets, negatives)
    longer = model.sampled_softmax_loss(
        model(np.pad(ids, ((0, 0), (0, 5)))), np.pad(targets, ((0, 0), (0, 5))), negatives
    )
    assert float(np_(longer)) == pytest.approx(float(np_(short)), rel=1e-5)
    # All-padding batch: zero loss, no NaN.
    no_targets = np.zeros_like(loss_case["targets"])
    assert float(np_(model.sampled_softmax_loss(states, no_targets, loss_case["negatives"]))) == 0.0


def test_sample_weight_weights_tokens(loss_case):
    model = tiny_model()
    states, targets, negatives = loss_case["states"], loss_case["targets"], loss_case["negatives"]
    only_row1 = float(np_(model.sampled_softmax_loss(states, targets, negatives, np.array([0.0, 1.0]))))
    row1 = float(np_(model.sampled_softmax_loss(states[1:], targets[1:], negatives[1:])))
    assert only_row1 == pytest.approx(row1, rel=1e-6)


@pytest.mark.parametrize(
    "sharing,shape", [("position", (3, 5, 7)), ("sequence", (3, 1, 7)), ("batch", (1, 1, 7))]
)
@pytest.mark.parametrize("negatives", ["random", "in_batch", "random+in_batch"])
def test_sample_negatives(sharing, shape, negatives):
    model = tiny_model(num_items=50, num_negatives=7, negatives=negatives, negative_sharing=sharing)
    targets = np.array([[4, 9, 9, 0, 0], [13, 0, 0, 0, 0], [2, 4, 40, 41, 42]], dtype="int32")
    draws = np.concatenate([np_(model.sample_negatives(targets)) for _ in range(20)], axis=-1)
    per_draw = 14 if negatives == "random+in_batch" else 7
    assert draws.shape == shape[:2] + (20 * per_draw,)
    assert draws.min() >= 1 and draws.max() <= 50
    pool = set(targets[targets > 0].tolist())
    if negatives == "in_batch":
        assert set(draws.ravel().tolist()) <= pool
        assert len(set(draws.ravel().tolist())) > 5
    if negatives == "random":
        assert len(set(draws.ravel().tolist()) - pool) > 10


# -- metrics -------------------------------------------------------------------------------------


def test_rank_metrics_on_hand_made_scores():
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.3],  # target col 2: one higher -> rank 1
            [0.8, 0.1, 0.2, 0.0],  # target col 0: best -> rank 0
            [0.5, 0.5, 0.2, 0.1],  # target col 1 ties col 0: counted against -> rank 1
            [0.9, 0.8, 0.7, 0.0],  # target col 3: worst -> rank 3
        ]
    )
    targets = np.array([2, 0, 1, 3])
    np.testing.assert_array_equal(ranks_from_scores(scores, targets), [1, 0, 1, 3])
    metrics = full_ranking_metrics(scores, targets, ks=(1, 2, 4))
    inv = 1.0 / math.log2(3.0)
    assert metrics["HR@1"] == pytest.approx(0.25) and metrics["NDCG@1"] == pytest.approx(0.25)
    assert metrics["HR@2"] == pytest.approx(0.75)
    assert metrics["NDCG@2"] == pytest.approx((inv + 1.0 + inv) / 4)
    assert metrics["HR@4"] == pytest.approx(1.0)
    assert metrics["NDCG@4"] == pytest.approx((inv + 1.0 + inv + 1.0 / math.log2(5.0)) / 4)
    # Excluding seen columns removes them from the ranking (never the target itself).
    excluded = ranks_from_scores(scores, targets, exclude_columns=[[1], [0], [0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(excluded, [0, 0, 0, 0])
    # Against a brute-force argsort on random scores (no ties).
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    targets = rng.integers(0, 30, size=50)
    brute = np.array([list(np.argsort(-row)).index(t) for row, t in zip(scores, targets, strict=True)])
    np.testing.assert_array_equal(ranks_from_scores(scores, targets), brute)
    expected_ndcg = np.mean(np.where(brute < 10, 1.0 / np.log2(brute + 2), 0.0))
    assert metrics_from_ranks(brute, ks=(10,))["NDCG@10"] == pytest.approx(expected_ndcg)


def test_evaluate_full_ranking_matches_manual_scores():
    model = tiny_model(num_items=20)
    rng = np.random.default_rng(5)
    histories = np.zeros((7, 12), dtype="int32")
    for row, length in enumerate([1, 3, 12, 5, 7, 2, 9]):
        histories[row, :length] = rng.integers(1, 21, size=length)
    targets = rng.integers(1, 21, size=7)
    users = np_(model.encoder.user_vectors(histories))
    scores = users @ np_(model.encoder.item_vectors(np.arange(1, 21))).T
    for exclude in (False, True):
        seen = [row[row > 0] - 1 for row in histories] if exclude else None
        expected = full_ranking_metrics(scores, targets - 1, ks=(1, 5, 10), exclude_columns=seen)
        for jit, batch in ((False, 3), (True, 4)):  # uneven batches, padded last batch
            got = evaluate_full_ranking(
                model,
                histories,
                targets,
                ks=(1, 5, 10),
                batch_size=batch,
                exclude_seen=exclude,
                jit_compile=jit,
            )
            assert got["num_users"] == 7
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, abs=1e-6), (key, exclude, jit)
    both = full_ranking_ranks(model, histories, targets, batch_size=4)
    seen = [row[row > 0] - 1 for row in histories]
    np.testing.assert_array_equal(both["all_items"], ranks_from_scores(scores, targets - 1))
    np.testing.assert_array_equal(both["history_excluded"], ranks_from_scores(scores, targets - 1, seen))
    assert np.all(both["history_excluded"] <= both["all_items"])
    assert np.any(both["history_excluded"] < both["all_items"])  # the histories did hold higher items
    with pytest.raises(ValueError, match="unknown rankings"):
        full_ranking_ranks(model, histories, targets, rankings=("seen_only",))


# -- data ----------------------------------------------------------------------------------------


def test_leave_one_out_split_counts_and_contents():
    sequences = {
        7: [10, 30, 20, 40],
        8: [40, 10],  # test only
        9: [30],  # dropped
        10: list(range(100, 110)),  # longer than max_len
    }
    data = leave_one_out_split(sequences, max_len=3)
    assert data.num_items == 14  # 10, 20, 30, 40 -> 1..4; 100..109 -> 5..14
    np.testing.assert_array_equal(data.raw_item_ids[:4], [10, 20, 30, 40])
    np.testing.assert_array_equal(data.test_users, [7, 8, 10])
    np.testing.assert_array_equal(data.train_users, [7, 10])
    np.testing.assert_array_equal(data.test_targets, [4, 1, 14])
    np.testing.assert_array_equal(data.test_histories, [[1, 3, 2], [4, 0, 0], [11, 12, 13]])
    np.testing.assert_array_equal(data.train_inputs, [[1, 3, 0], [10, 11, 12]])
    np.testing.assert_array_equal(data.train_targets, [[3, 2, 0], [11, 12, 13]])
    assert data.num_train_tokens == 2 + 3
    # Without remapping, ids are kept.
    raw = leave_one_out_split({1: [5, 2, 9]}, max_len=200, remap=False)
    assert raw.num_items == 9 and raw.test_targets.tolist() == [9]
    assert raw.train_inputs.shape == (1, 200) and raw.train_inputs[0, :2].tolist() == [5, 0]
    # Every test target is the user's last item; every train target is the next input.
    synth = leave_one_out_split(successor_sequences(40), max_len=6)
    inputs, targets = synth.train_inputs, synth.train_targets
    assert np.all((inputs[:, 1:] == targets[:, :-1]) | (inputs[:, 1:] == 0))
    assert np.all((targets > 0) == (inputs > 0))


def test_load_sequences_both_formats(tmp_path):
    sasrec = tmp_path / "ml.txt"
    sasrec.write_text("1 5\n1 3\n1 9\n2 4\n2 1\n")
    assert load_sequences(sasrec) == {1: [5, 3, 9], 2: [4, 1]}
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("2::7::5::300\n1::20::5::100\n1::10::3::100\n1::5::4::50\n2::8::1::200\n")
    assert load_sequences(ratings) == {1: [5, 10, 20], 2: [8, 7]}


def test_stochastic_length_subsample():
    rng = np.random.default_rng(0)
    window = np.arange(1, 202, dtype="int32")  # 200 positions, max_len 200
    assert stochastic_length_subsample(window, 200, 2.0, rng) is window  # alpha = 2: off
    short = np.arange(1, 40, dtype="int32")
    assert stochastic_length_subsample(short, 200, 1.4, rng) is short  # 38 <= floor(200^0.7) = 40
    alpha, target = 1.6, math.floor(200**0.8)
    outcomes = [stochastic_length_subsample(window, 200, alpha, rng) for _ in range(400)]
    cut = [o for o in outcomes if len(o) != len(window)]
    assert all(len(o) == target + 1 and np.all(np.diff(o) > 0) and set(o) <= set(window) for o in cut)
    assert len(cut) / 400 == pytest.approx(1 - 200**alpha / 200**2, abs=0.07)


def test_dataset_pads_last_batch_and_reshuffles():
    windows = [np.arange(1, 2 + i, dtype="int32") for i in range(1, 6)]  # 5 windows, 1..5 positions
    ds = RetrievalSequenceDataset(windows, max_len=6, batch_size=2, seed=1)
    assert len(ds) == 3
    batches = [ds[i] for i in range(3)]
    assert all(x.shape == (2, 6) and y.shape == (2, 6) for x, y in batches)
    assert np.all(batches[-1][1][1] == 0)  # the padding row has no targets
    assert sum(int((y > 0).sum()) for _, y in batches) == 15
    first = np.concatenate([x for x, _ in batches])
    ds.on_epoch_end()
    second = np.concatenate([ds[i][0] for i in range(3)])
    assert sorted(map(tuple, first)) == sorted(map(tuple, second)) and not np.array_equal(first, second)


# -- configuration and serialization -------------------------------------------------------------


def test_retrieval_config_validation():
    config = RetrievalConfig()
    assert (config.temperature, config.num_negatives, config.negatives, config.stochastic_length) == (
        0.05,
        128,
        "random",
        False,
    )
    for bad in ({"negatives": "hard"}, {"negative_sharing": "user"}, {"temperature": 0.0}):
        with pytest.raises(ValueError):
            RetrievalConfig(**bad)


def test_get_config_round_trip_and_save_load(tmp_path):
    model = tiny_model(num_items=20, num_negatives=9, negatives="in_batch", negative_sharing="batch", seed=4)
    config = model.get_config()
    clone = SequentialRetrievalModel.from_config(config)
    assert clone.get_config() == config
    assert clone.retrieval_config == model.retrieval_config
    assert clone.encoder_config == model.encoder_config
    serialized = keras.saving.serialize_keras_object(model)
    assert serialized["registered_name"].startswith("watchnext>")
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config
    ids = np.array([[3, 4, 5, 0], [9, 0, 0, 0]], dtype="int32")
    model.compile()
    model.fit(ids, np.array([[4, 5, 6, 0], [10, 0, 0, 0]], dtype="int32"), epochs=1, verbose=0)
    path = tmp_path / "retrieval.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SequentialRetrievalModel)
    np.testing.assert_allclose(np_(loaded(ids)), np_(model(ids)), atol=1e-6)
    assert dataclasses.asdict(loaded.retrieval_config) == config["retrieval_config"]


# -- benchmark -----------------------------------------------------------------------------------


def tiny_data_file(folder: Path) -> Path:
    path = folder / "tiny.txt"
    lines = [f"{u} {i}" for u, items in successor_sequences(24, 15).items() for i in items]
    path.write_text("\n".join(lines) + "\n")
    return path


def import_benchmark():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import hstu_ml1m
    finally:
        sys.path.pop(0)
    return hstu_ml1m


def test_benchmark_tiny_run(tmp_path, capsys, monkeypatch):
    path = tiny_data_file(tmp_path)
    hstu_ml1m = import_benchmark()
    # Narrow versions of the public configs (tracing the real 8-block model costs ~15 s).
    tiny = {
        "sasrec": tiny_config(SASREC_CONFIG),
        "hstu_large": dataclasses.replace(tiny_config(HSTU_LARGE_CONFIG), num_blocks=2, dqk=8, dv=8),
    }
    monkeypatch.setattr(hstu_ml1m, "CONFIGS", tiny)
    argv = ["--data", str(path), "--configs", "sasrec,hstu_large", "--epochs", "1", "--max-len", "8"]
    argv += ["--batch-size", "8", "--num-negatives", "4", "--no-jit", "--eval-every", "1", "--users", "20"]
    report = hstu_ml1m.main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"]["users"] == 20 and printed["data"]["users_in_file"] == 24
    for name in ("sasrec", "hstu_large"):
        result = printed["results"][name]
        assert set(result["metrics"]) == {f"{m}@{k}" for m in ("HR", "NDCG") for k in (10, 50, 200)}
        assert set(result["metrics_all_items"]) == set(result["metrics"])
        for k in (10, 50, 200):  # dropping other items from a ranking cannot lower the target
            assert result["metrics"][f"HR@{k}"] >= result["metrics_all_items"][f"HR@{k}"]
        assert result["train_steps"] == result["steps_per_epoch"] == 3  # 20 users, batch 8
        assert result["epochs_done"] == 1 and len(result["eval_history"]) == 1
        assert result["paper"]["HR@10"] in (0.2853, 0.3294)
    large = printed["results"]["hstu_large"]["encoder_config"]
    assert (large["num_blocks"], large["num_heads"], large["max_len"]) == (2, 2, 8)
    assert set(printed["gain_hstu_large_over_sasrec"]) == {"ours", "ours_all_items", "paper"}
    assert printed["gain_hstu_large_over_sasrec"]["paper"]["HR@10"] == pytest.approx(
        0.3294 / 0.2853 - 1, abs=1e-4
    )
    assert report["results"].keys() == printed["results"].keys()
    # A spent time budget stops training after the first step.
    argv = ["--data", str(path), "--configs", "sasrec", "--epochs", "3", "--max-minutes-per-config", "1e-6"]
    report = hstu_ml1m.main(
        argv + ["--max-len", "8", "--batch-size", "8", "--num-negatives", "4", "--no-jit"]
    )
    result = report["results"]["sasrec"]
    assert result["stopped_by_time_budget"] and result["train_steps"] == 1
    assert result["epochs_done"] == pytest.approx(1 / 3, abs=1e-3)  # 24 users -> 3 steps per epoch
    capsys.readouterr()


def test_benchmark_gain_needs_only_sasrec_and_hstu_large(tmp_path, capsys, monkeypatch):
    hstu_ml1m = import_benchmark()
    tiny = {name: tiny_config(config) for name, config in
            (("sasrec", SASREC_CONFIG), ("hstu", HSTU_CONFIG), ("hstu_large", HSTU_CONFIG))}  # fmt: skip
    monkeypatch.setattr(hstu_ml1m, "CONFIGS", tiny)
    argv = ["--data", str(tiny_data_file(tmp_path)), "--epochs", "2", "--max-len", "8", "--batch-size", "8"]
    argv += ["--num-negatives", "4", "--no-jit", "--checkpoint-dir", str(tmp_path / "run")]
    hstu_ml1m.main(argv + ["--configs", "sasrec,hstu_large"])
    report = hstu_ml1m.main(argv + ["--configs", "sasrec,hstu_large,hstu", "--stop-after-minutes", "1e-9"])
    assert not report["complete"] and report["results"]["hstu"]["status"] == "paused"
    gain = report["gain_hstu_large_over_sasrec"]["ours"]
    large, sasrec = report["results"]["hstu_large"]["metrics"], report["results"]["sasrec"]["metrics"]
    assert sasrec["NDCG@10"] > 0
    assert gain["NDCG@10"] == pytest.approx(large["NDCG@10"] / sasrec["NDCG@10"] - 1, abs=1e-3)
    capsys.readouterr()


def test_benchmark_resumed_run_trains_as_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    hstu_ml1m = import_benchmark()
    monkeypatch.setattr(hstu_ml1m, "CONFIGS", {"sasrec": tiny_config(SASREC_CONFIG), "hstu": tiny_config()})
    data_file = tiny_data_file(tmp_path)
    monkeypatch.setattr(hstu_ml1m, "DATA_CANDIDATES", [tmp_path / "absent.txt", data_file])
    argv = ["--configs", "sasrec,hstu", "--epochs", "3"]
    argv += ["--max-len", "8", "--batch-size", "8", "--num-negatives", "4", "--no-jit", "--eval-every", "1"]
    whole = hstu_ml1m.main(argv + ["--checkpoint-dir", str(tmp_path / "whole")])
    assert whole["complete"] and whole["results"]["hstu"]["runs"] == 1

    resumable = argv + ["--checkpoint-dir", str(tmp_path / "parts")]
    first = hstu_ml1m.main(resumable + ["--stop-after-minutes", "1e-9"])  # pauses after epoch 1
    assert not first["complete"]
    assert first["results"]["sasrec"]["status"] == "paused"
    assert first["results"]["sasrec"]["epochs_completed"] == 1
    assert first["results"]["hstu"] == {"status": "not started"}
    assert (tmp_path / "parts" / "sasrec" / hstu_ml1m.CHECKPOINT_FILE).exists()
    options = json.loads((tmp_path / "parts" / hstu_ml1m.OPTIONS_FILE).read_text())
    assert options["data"] == str(data_file)  # the file found, not the default None
    second = hstu_ml1m.main(resumable)
    assert second["complete"] and "gain_hstu_large_over_sasrec" not in second
    for name in ("sasrec", "hstu"):
        resumed, uninterrupted = second["results"][name], whole["results"][name]
        assert resumed["runs"] == (2 if name == "sasrec" else 1)
        assert (
            resumed["epochs_completed"] == 3 and resumed["train_steps"] == uninterrupted["train_steps"] == 9
        )
        np.testing.assert_allclose(resumed["loss_history"], uninterrupted["loss_history"], atol=1e-5)
        assert [e["epoch"] for e in resumed["eval_history"]] == [1, 2, 3]
        # Wall time adds up over the runs.
        assert resumed["wall_seconds"] >= resumed["train_seconds"] + resumed["eval_seconds"] - 0.2
        earlier = first["results"]["sasrec"]["wall_seconds"] if name == "sasrec" else 0.0
        assert resumed["wall_seconds"] == pytest.approx(earlier + resumed["wall_seconds_this_run"], abs=0.5)
        for metric, value in uninterrupted["metrics"].items():
            assert resumed["metrics"][metric] == pytest.approx(value, abs=1e-4), (name, metric)
    # A finished config is reused, not retrained; other training options are refused.
    assert hstu_ml1m.main(resumable)["results"] == second["results"]
    # A result from before both rankings were evaluated (all items only) is evaluated again from
    # its final state; its evaluation history keeps what it had, labelled as all-items.
    result_file = tmp_path / "parts" / "sasrec" / hstu_ml1m.RESULT_FILE
    old = json.loads(result_file.read_text())
    old["metrics"] = old.pop("metrics_all_items")
    old["eval_history"] = [{"epoch": e["epoch"], **e["all_items"]} for e in old["eval_history"]]
    result_file.write_text(json.dumps(old))
    updated = hstu_ml1m.main(resumable)["results"]["sasrec"]
    assert updated["metrics"] == second["results"]["sasrec"]["metrics"]
    assert updated["metrics_all_items"] == second["results"]["sasrec"]["metrics_all_items"]
    history = second["results"]["sasrec"]["eval_history"]
    assert updated["eval_history"] == [{"epoch": e["epoch"], "all_items": e["all_items"]} for e in history]
    assert json.loads(result_file.read_text()) == updated
    with pytest.raises(SystemExit, match="learning_rate"):
        hstu_ml1m.main(resumable + ["--learning-rate", "0.01"])
    capsys.readouterr()


def test_benchmark_refuses_to_resume_a_differently_configured_model(tmp_path, capsys, monkeypatch):
    hstu_ml1m = import_benchmark()
    monkeypatch.setattr(hstu_ml1m, "CONFIGS", {"hstu": tiny_config()})
    argv = ["--data", str(tiny_data_file(tmp_path)), "--configs", "hstu", "--epochs", "3", "--max-len", "8"]
    argv += ["--batch-size", "8", "--num-negatives", "4", "--no-jit"]
    argv += ["--checkpoint-dir", str(tmp_path / "run")]
    first = hstu_ml1m.main(argv + ["--stop-after-minutes", "1e-9"])
    assert first["results"]["hstu"]["status"] == "paused"
    model_file = tmp_path / "run" / "hstu" / hstu_ml1m.MODEL_FILE
    layers = json.loads(model_file.read_text())
    hstu_layers = [entry for entry in layers if entry["class"] == "HSTULayer"]
    assert hstu_layers and all(e["config"]["uvqk_init_stddev"] == 0.02 for e in hstu_layers)
    # As if the code had changed f1's initializer since the checkpoint was written.
    hstu_layers[0]["config"]["uvqk_init_stddev"] = 0.089
    model_file.write_text(json.dumps(layers))
    refused = r"another model \(layer \d+ \(HSTULayer\): uvqk_init_stddev 0.089 -> 0.02\)"
    with pytest.raises(SystemExit, match=refused):
        hstu_ml1m.main(argv)
    # A checkpoint from before model.json existed resumes, and gets one.
    model_file.unlink()
    second = hstu_ml1m.main(argv)
    assert second["complete"] and second["results"]["hstu"]["runs"] == 2
    rewritten = json.loads(model_file.read_text())
    assert [e["config"]["uvqk_init_stddev"] for e in rewritten if e["class"] == "HSTULayer"] == [0.02]
    capsys.readouterr()
