"""MultitaskRanker on transformed features: outputs, position handling, config and save/load."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from watchnext.models import features as F
from watchnext.models.ranker import config as C
from watchnext.models.ranker.model import MultitaskRanker
from watchnext.models.ranker.trainer import compile_ranker, masked_squared_error

VOCABULARY_SIZES = {F.USER_ID: 51, F.ITEM_ID: 31, F.ITEM_GENRES: 6}
BATCH = 64


def transformed_batch(seed: int = 0, with_position: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {
        F.USER_ID: rng.integers(0, 51, BATCH),
        F.ITEM_ID: rng.integers(0, 31, BATCH),
        F.ITEM_GENRE_IDS: rng.integers(0, 6, (BATCH, 3)),
        F.DEVICE: rng.integers(0, 4, BATCH),
        F.SURFACE: rng.integers(0, 4, BATCH),
        F.HOUR_OF_DAY: rng.integers(0, 24, BATCH),
        F.USER_VIEW_COUNT_BUCKET: rng.integers(0, 8, BATCH),
        F.ITEM_AGE_BUCKET: rng.integers(0, 7, BATCH),
        F.USER_IS_NEW: rng.integers(0, 2, BATCH),
        F.ITEM_IS_NEW: rng.integers(0, 2, BATCH),
        **{name: rng.normal(size=BATCH).astype("float32") for name in (
            F.ITEM_DURATION_S, F.USER_HOURS_SINCE_FIRST_SEEN, F.ITEM_EXPOSURE_COUNT, F.USER_VIEW_COUNT)},
        F.USER_RECENT_CLICK_RATE: rng.uniform(size=BATCH).astype("float32"),
    }  # fmt: skip
    if with_position:
        batch[F.POSITION] = rng.integers(0, 21, BATCH)
    return batch


def labels(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rating = np.where(rng.uniform(size=BATCH) < 0.3, rng.integers(1, 6, BATCH), 0).astype("float32")
    return {
        C.TASK_CLICK: rng.integers(0, 2, BATCH).astype("float32"),
        C.TASK_LIKE: rng.integers(0, 2, BATCH).astype("float32"),
        C.TASK_WATCH_TIME: rng.uniform(0, 4, BATCH).astype("float32"),
        C.TASK_RATING: rating,
    }


@pytest.mark.parametrize("deep", C.DEEP_KINDS)
@pytest.mark.parametrize("position_mode", C.POSITION_MODES)
def test_outputs_have_one_value_per_example_and_probabilities_in_range(deep, position_mode):
    model = MultitaskRanker(C.RankerConfig(deep=deep, position_mode=position_mode), VOCABULARY_SIZES)
    outputs = model(transformed_batch(), training=False)
    assert set(outputs) == {*C.TASKS, "score"}
    for name, value in outputs.items():
        assert tuple(value.shape) == (BATCH,), name
    for task in C.BINARY_TASKS:
        value = keras.ops.convert_to_numpy(outputs[task])
        assert ((value > 0) & (value < 1)).all()


def test_score_is_the_configured_combination_of_task_predictions():
    config = C.RankerConfig(score_weights=((C.TASK_CLICK, 2.0), (C.TASK_LIKE, -1.0), (C.TASK_RATING, 0.5)))
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in MultitaskRanker(config, VOCABULARY_SIZES)(
        transformed_batch(), training=False).items()}  # fmt: skip
    expected = 2.0 * outputs[C.TASK_CLICK] - outputs[C.TASK_LIKE] + 0.5 * outputs[C.TASK_RATING]
    np.testing.assert_allclose(outputs["score"], expected, rtol=1e-5, atol=1e-6)


def test_bias_tower_reads_position_in_training_and_scores_it_as_missing_at_inference():
    model = MultitaskRanker(C.RankerConfig(position_dropout=0.0, gate_dropout=0.0), VOCABULARY_SIZES)
    with_position = transformed_batch()
    without_position = transformed_batch(with_position=False)
    model(with_position)
    # Logged positions get +3 over the missing row, so reading them is visible in the click logit.
    table = model.bias_tower.position_embedding.embeddings
    rows = np.zeros(tuple(table.shape), "float32")
    rows[1:] = 3.0
    table.assign(rows)
    model.bias_tower.logit.kernel.assign(np.ones(tuple(model.bias_tower.logit.kernel.shape), "float32"))

    def click(inputs, training, model=model):
        return keras.ops.convert_to_numpy(model(inputs, training=training)[C.TASK_CLICK])

    np.testing.assert_array_equal(click(with_position, False), click(without_position, False))
    np.testing.assert_array_equal(click(without_position, True), click(without_position, False))
    logged = with_position[F.POSITION].reshape(-1) > 0  # position 0 is missing in the logs too
    trained, served = click(with_position, True), click(with_position, False)
    assert logged.any() and (trained[logged] > served[logged]).all()
    np.testing.assert_array_equal(trained[~logged], served[~logged])


def test_bias_tower_at_serving_adds_the_missing_position_logit_per_device_or_nothing():
    config = C.RankerConfig(position_dropout=0.0, gate_dropout=0.0)
    model = MultitaskRanker(config, VOCABULARY_SIZES)
    batch = transformed_batch()
    model(batch)
    logit = model.bias_tower.logit
    logit.bias.assign(np.array([3.0], "float32"))
    device = keras.ops.convert_to_tensor(batch[F.DEVICE].reshape(-1).astype("int32"))
    missing = keras.ops.convert_to_numpy(model.bias_tower(keras.ops.zeros_like(device), device)).reshape(-1)

    def click_logit(ranker):
        probability = keras.ops.convert_to_numpy(ranker(batch, training=False)[C.TASK_CLICK])
        return np.log(probability.astype("float64") / (1.0 - probability))

    with_tower = click_logit(model)
    model.config = dataclasses.replace(config, bias_tower_at_serving=False)
    np.testing.assert_allclose(with_tower - click_logit(model), missing, rtol=1e-3, atol=1e-3)


def test_position_feature_mode_scores_a_missing_position_as_the_serving_position():
    model = MultitaskRanker(
        C.RankerConfig(position_mode=C.POSITION_FEATURE, serving_position=1), VOCABULARY_SIZES
    )
    at_one = transformed_batch()
    at_one[F.POSITION] = np.ones(BATCH, "int64")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(at_one)["score"]),
        keras.ops.convert_to_numpy(model(transformed_batch(with_position=False))["score"]),
        rtol=1e-6,
    )


def test_poso_ranker_personalizes_the_bottom_layer_when_asked():
    from watchnext.models.layers import PosoDense

    poso = MultitaskRanker(C.RankerConfig(deep=C.DEEP_POSO_MMOE, poso_bottom=True), VOCABULARY_SIZES)
    plain_bottom = MultitaskRanker(C.RankerConfig(deep=C.DEEP_POSO_MMOE), VOCABULARY_SIZES)
    mmoe = MultitaskRanker(C.RankerConfig(deep=C.DEEP_MMOE), VOCABULARY_SIZES)
    assert isinstance(poso.bottom, PosoDense)
    assert not isinstance(plain_bottom.bottom, PosoDense) and not isinstance(mmoe.bottom, PosoDense)
    batch = transformed_batch()
    assert tuple(poso.hidden(batch).shape) == (BATCH, poso.config.bottom_units)


@pytest.mark.parametrize("as_oov", [True, False])
def test_new_users_share_the_oov_user_row_when_configured(as_oov):
    model = MultitaskRanker(C.RankerConfig(new_user_id_as_oov=as_oov), VOCABULARY_SIZES)
    batch = transformed_batch()
    batch[F.USER_IS_NEW] = np.ones_like(batch[F.USER_IS_NEW])
    other_users = dict(batch, **{F.USER_ID: (batch[F.USER_ID] + 1) % (VOCABULARY_SIZES[F.USER_ID] - 1)})

    def score(inputs):
        return keras.ops.convert_to_numpy(model(inputs, training=False)["score"])

    assert np.array_equal(score(batch), score(other_users)) == as_oov


def test_masked_squared_error_ignores_missing_ratings():
    y_true = np.array([0.0, 4.0, 0.0, 2.0], "float32")
    y_pred = np.array([9.0, 3.0, -9.0, 2.0], "float32")
    assert float(keras.ops.convert_to_numpy(masked_squared_error(y_true, y_pred))) == pytest.approx(0.5)


def test_config_round_trip_and_unknown_keys_are_refused():
    config = C.RankerConfig(deep=C.DEEP_POSO_MMOE, expert_units=(8, 4), loss_weights=((C.TASK_CLICK, 3.0),))
    assert C.RankerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ranker config keys"):
        C.RankerConfig.from_dict({"deep": "mmoe", "depth": 3})
    with pytest.raises(ValueError, match="position_mode"):
        C.RankerConfig(position_mode="sideways")


@pytest.mark.parametrize("deep", C.DEEP_KINDS)
def test_trained_model_saves_and_loads_with_equal_outputs(tmp_path, deep):
    model = compile_ranker(MultitaskRanker(C.RankerConfig(deep=deep), VOCABULARY_SIZES))
    model.fit(transformed_batch(), labels(), batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "ranker.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config()["config"] == model.get_config()["config"]
    batch = transformed_batch(seed=5)
    for name, value in model(batch).items():
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(loaded(batch)[name]), keras.ops.convert_to_numpy(value), rtol=1e-6
        )


def _ranking_benchmark():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import ranking_quality
    finally:
        sys.path.pop(0)
    return ranking_quality


def test_ranking_benchmark_generates_logs_with_its_biases_and_new_user_behaviour(tmp_path):
    from watchnext.pipeline.data import synthetic

    ranking_quality = _ranking_benchmark()
    config = ranking_quality.logs_config(
        rows=600,
        seed=3,
        fresh_item_ranker_boost=1.25,
        new_user_short_item_relevance_bonus=0.75,
        new_user_popularity_factor=1.5,
    )
    logs = synthetic.generate(config, tmp_path)
    written = json.loads(logs.ground_truth_path.read_text())["config"]
    assert written["fresh_item_ranker_boost"] == 1.25
    assert written["new_user_short_item_relevance_bonus"] == 0.75
    assert written["new_user_popularity_factor"] == 1.5
    assert config.num_requests * config.slate_size >= 600


def test_ranking_benchmark_grouped_auc_weights_groups_by_rows_and_skips_one_class_groups():
    bench = _ranking_benchmark()
    groups = np.array([b"r1"] * 4 + [b"r2"] * 2 + [b"r3"] * 3)
    labels = np.array([1, 0, 1, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.5, 0.4, 0.6])  # r1 perfect, r2 reversed, r3 one class
    assert bench.grouped_auc(labels, scores, groups) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)
    same = bench.paired_grouped_auc_difference(labels, groups, [scores], [scores], resamples=50)
    assert same["mean"] == 0.0 and same["groups"] == 2
    better = bench.paired_grouped_auc_difference(labels, groups, [scores], [-scores], resamples=50)
    assert better["mean"] == pytest.approx((4 * 1.0 + 2 * -1.0) / 6)


def test_ranking_benchmark_reuses_a_prepared_run_only_for_the_same_logs_and_code(tmp_path, monkeypatch):
    ranking_quality = _ranking_benchmark()
    config = ranking_quality.logs_config(rows=600, seed=3)
    why_not = ranking_quality.why_not_prepared
    (tmp_path / "run" / "Transform" / "transformed_examples" / "7").mkdir(parents=True)
    assert "no prepared.json" in why_not(tmp_path, config)  # an interrupted preparation
    record = ranking_quality.preparation_record(config)
    (tmp_path / ranking_quality.PREPARED_FILE).write_text(json.dumps(record))
    assert why_not(tmp_path, config) is None
    assert (
        why_not(tmp_path, ranking_quality.logs_config(rows=600, seed=4))
        == "logs setting seed: 3 there, 4 now"
    )
    monkeypatch.setattr(ranking_quality, "preparing_code_digest", lambda: "changed")
    assert "preparing code" in why_not(tmp_path, config)
