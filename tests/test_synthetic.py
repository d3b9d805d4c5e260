"""Tests of the synthetic short-video log generator (pipeline/data/synthetic.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from watchnext.models import features
from watchnext.pipeline.data import synthetic
from watchnext.pipeline.data.raw_log_csv import RawLogCsvWriter

# Small, but with several chunks, a big randomized slice and enough new users to
# measure their behaviour.
SMALL = synthetic.SyntheticConfig(
    seed=11,
    num_requests=3_000,
    slate_size=8,
    num_users=400,
    num_items=300,
    chunk_requests=700,
    randomized_request_share=0.3,
    new_user_request_share=0.045,
)
INT_COLUMNS = {
    features.TIMESTAMP,
    features.POSITION,
    features.POSITION_RANDOMIZED,
    features.USER_FIRST_SEEN_TS,
    features.ITEM_UPLOAD_TS,
    features.USER_AGE,
    features.USER_OCCUPATION,
    features.ITEM_YEAR,
    features.CLICK,
    features.LIKE,
}
FLOAT_COLUMNS = {features.ITEM_DURATION_S, features.WATCH_TIME_S, features.RATING}


def read_columns(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader)
        columns = list(zip(*reader, strict=True))
    return {name: list(values) for name, values in zip(header, columns, strict=True)}


def as_int(values: list[str]) -> np.ndarray:
    return np.array([int(v) for v in values], dtype=np.int64)


def as_float(values: list[str]) -> np.ndarray:
    return np.array([float(v) if v else np.nan for v in values])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> synthetic.GeneratedLogs:
    return synthetic.generate(SMALL, tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def logs(generated) -> dict[str, list[str]]:
    return read_columns(generated.logs_path)


@pytest.fixture(scope="module")
def truth(generated) -> dict[str, list[str]]:
    return read_columns(generated.truth_path)


@pytest.fixture(scope="module")
def ground_truth(generated) -> dict:
    return json.loads(generated.ground_truth_path.read_text(encoding="utf-8"))


def small(**changes) -> synthetic.SyntheticConfig:
    return dataclasses.replace(SMALL, num_requests=400, **changes)


def file_bytes(logs: synthetic.GeneratedLogs) -> list[bytes]:
    paths = (logs.logs_path, logs.truth_path, logs.ground_truth_path)
    return [path.read_bytes() for path in paths]


def test_default_config_gives_about_60k_rows():
    config = synthetic.SyntheticConfig()
    config.validate()
    assert config.num_rows == 60_000


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="candidates_per_request"):
        synthetic.SyntheticConfig(candidates_per_request=5, slate_size=10).validate()
    with pytest.raises(ValueError, match="new_user_request_share"):
        synthetic.SyntheticConfig(new_user_request_share=0.2).validate()


def test_same_seed_gives_identical_files(tmp_path):
    first = synthetic.generate(small(), tmp_path / "a")
    second = synthetic.generate(small(), tmp_path / "b")
    assert file_bytes(first) == file_bytes(second)


def test_different_seed_gives_different_files(tmp_path):
    first = synthetic.generate(small(seed=1), tmp_path / "a")
    second = synthetic.generate(small(seed=2), tmp_path / "b")
    assert first.logs_path.read_bytes() != second.logs_path.read_bytes()
    assert first.truth_path.read_bytes() != second.truth_path.read_bytes()


def test_row_counts_match_files(generated, logs):
    assert generated.num_rows == SMALL.num_rows == len(logs[features.USER_ID])
    assert generated.num_requests == len(set(logs[features.REQUEST_ID])) == SMALL.num_requests
    randomized_rows = sum(v == "1" for v in logs[features.POSITION_RANDOMIZED])
    assert generated.num_randomized_requests * SMALL.slate_size == randomized_rows


def test_header_is_raw_log_columns(generated):
    header = generated.logs_path.read_text(encoding="utf-8").split("\n", 1)[0]
    assert tuple(header.split(",")) == features.RAW_LOG_COLUMNS


def test_rows_are_formatted_like_raw_log_csv_writer(generated, tmp_path):
    with open(generated.logs_path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    rewritten = tmp_path / "rewritten.csv"
    with RawLogCsvWriter(rewritten) as writer:
        writer.write_all(typed_row(row) for row in rows)
    assert rewritten.read_bytes() == generated.logs_path.read_bytes()


def typed_row(row: dict[str, str]) -> dict:
    typed = {}
    for name, text in row.items():
        if text == "":
            typed[name] = None
        elif name in INT_COLUMNS:
            typed[name] = int(text)
        elif name in FLOAT_COLUMNS:
            typed[name] = float(text)
        elif name == features.ITEM_GENRES:
            typed[name] = text.split(features.MULTI_VALUE_SEPARATOR)
        else:
            typed[name] = text
    return typed


def test_enums_and_binary_fields_are_valid(logs):
    assert set(logs[features.DEVICE]) == set(features.DEVICES)
    assert set(logs[features.SURFACE]) <= set(features.SURFACES)
    assert len(set(logs[features.SURFACE])) >= 2
    for name in (features.POSITION_RANDOMIZED, features.CLICK, features.LIKE):
        assert set(logs[name]) == {"0", "1"}
    genres = {g for value in logs[features.ITEM_GENRES] for g in value.split("|")}
    assert genres <= set(synthetic.GENRES)


def test_optional_side_features_are_missing(logs):
    for name in (features.USER_GENDER, features.USER_AGE, features.USER_OCCUPATION, features.ITEM_YEAR):
        assert set(logs[name]) == {""}


def test_each_request_is_one_slate_of_positions_1_to_k(logs):
    k = SMALL.slate_size
    request = np.array(logs[features.REQUEST_ID]).reshape(-1, k)
    assert (request == request[:, :1]).all(), "rows of a request are contiguous"
    position = as_int(logs[features.POSITION]).reshape(-1, k)
    assert (position == np.arange(1, k + 1)).all()
    for shared in (features.TIMESTAMP, features.USER_ID, features.DEVICE, features.SURFACE):
        values = np.array(logs[shared]).reshape(-1, k)
        assert (values == values[:, :1]).all(), shared


def test_items_of_a_request_are_distinct(logs):
    items = np.array(logs[features.ITEM_ID]).reshape(-1, SMALL.slate_size)
    assert all(len(set(row)) == SMALL.slate_size for row in items)


def test_timestamps_increase_within_the_span(logs):
    timestamp = as_int(logs[features.TIMESTAMP])
    assert (np.diff(timestamp) >= 0).all()
    assert timestamp.min() >= SMALL.start_ts
    assert timestamp.max() < SMALL.end_ts
    assert timestamp.max() - timestamp.min() > (SMALL.span_days - 1) * 86_400


def test_user_first_seen_and_item_upload_precede_the_event(logs):
    timestamp = as_int(logs[features.TIMESTAMP])
    assert (as_int(logs[features.USER_FIRST_SEEN_TS]) <= timestamp).all()
    assert (as_int(logs[features.ITEM_UPLOAD_TS]) <= timestamp).all()
    uploads = dict(zip(logs[features.ITEM_ID], logs[features.ITEM_UPLOAD_TS], strict=True))
    fresh_items = [v for v, ts in uploads.items() if int(ts) >= SMALL.start_ts]
    assert fresh_items, "some items are uploaded during the log"


def test_durations_are_short_videos(logs):
    duration = as_float(logs[features.ITEM_DURATION_S])
    assert duration.min() >= SMALL.min_duration_s
    assert duration.max() <= SMALL.max_duration_s


def test_labels_are_zero_or_missing_without_a_click(logs):
    click = as_int(logs[features.CLICK]) == 1
    watch = as_float(logs[features.WATCH_TIME_S])
    like = as_int(logs[features.LIKE])
    rating = as_float(logs[features.RATING])
    assert 0.05 < click.mean() < 0.5
    assert (watch[~click] == 0).all()
    assert (like[~click] == 0).all()
    assert np.isnan(rating[~click]).all()


def test_watch_time_of_clicks_is_positive_and_bounded_by_duration(logs):
    click = as_int(logs[features.CLICK]) == 1
    watch = as_float(logs[features.WATCH_TIME_S])[click]
    duration = as_float(logs[features.ITEM_DURATION_S])[click]
    assert (watch > 0).all()
    assert (watch <= duration).all()
    assert (watch < duration).mean() > 0.5, "most plays do not finish"


def test_ratings_are_1_to_5_for_a_minority_of_clicks(logs):
    click = as_int(logs[features.CLICK]) == 1
    rating = as_float(logs[features.RATING])[click]
    rated = rating[~np.isnan(rating)]
    assert 0 < len(rated) < 0.5 * click.sum()
    assert set(rated.tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(set(rated.tolist())) >= 3


def test_labels_correlate_with_relevance_but_differ(logs, truth):
    click = as_int(logs[features.CLICK]) == 1
    like = as_int(logs[features.LIKE])[click]
    relevance = as_float(truth["relevance_prob"])[click]
    watch_fraction = as_float(truth["watch_fraction"])[click]
    assert 0.05 < like.mean() < 0.6
    like_prob = as_float(truth["like_prob"])[click]
    assert np.corrcoef(like_prob, relevance)[0, 1] < 0.9
    assert np.corrcoef(watch_fraction, relevance)[0, 1] < 0.9
    assert like[like_prob > 0.5].mean() > like[like_prob < 0.2].mean()


def test_watch_time_favors_long_videos(logs):
    click = as_int(logs[features.CLICK]) == 1
    watch = as_float(logs[features.WATCH_TIME_S])[click]
    duration = as_float(logs[features.ITEM_DURATION_S])[click]
    long_videos = duration > np.median(duration)
    assert watch[long_videos].mean() > 1.5 * watch[~long_videos].mean()
    completion = watch / duration
    assert completion[long_videos].mean() < completion[~long_videos].mean()


def click_rate_by_position(logs, randomized: bool) -> np.ndarray:
    rows = as_int(logs[features.POSITION_RANDOMIZED]) == int(randomized)
    position = as_int(logs[features.POSITION])[rows]
    click = as_int(logs[features.CLICK])[rows]
    return np.array([click[position == p].mean() for p in range(1, SMALL.slate_size + 1)])


def test_click_rate_decreases_with_position_on_randomized_slice(logs):
    rate = click_rate_by_position(logs, randomized=True)
    third = SMALL.slate_size // 3
    assert rate[:third].mean() > rate[third:-third].mean() > rate[-third:].mean()
    assert rate[0] > 2 * rate[-1]


def test_ranker_confounds_position_with_relevance(logs, truth):
    position = as_int(logs[features.POSITION])
    randomized = as_int(logs[features.POSITION_RANDOMIZED]) == 1
    relevance = as_float(truth["relevance_prob"])
    k = SMALL.slate_size

    def top_minus_bottom(rows: np.ndarray) -> float:
        return relevance[rows & (position == 1)].mean() - relevance[rows & (position == k)].mean()

    assert top_minus_bottom(~randomized) > 0.1
    assert abs(top_minus_bottom(randomized)) < 0.05


def test_new_users_are_few_recent_and_like_more(logs, truth):
    new_user = as_int(truth["is_new_user"]) == 1
    assert 0.01 < new_user.mean() < 0.05
    age = as_int(logs[features.TIMESTAMP]) - as_int(logs[features.USER_FIRST_SEEN_TS])
    assert (new_user == (age < SMALL.new_user_hours * 3600)).all()
    click = as_int(logs[features.CLICK]) == 1
    like = as_int(logs[features.LIKE]) == 1
    assert like[new_user & click].mean() > 1.2 * like[~new_user & click].mean()
    assert like[new_user].mean() > like[~new_user].mean()


def test_new_users_finish_short_videos_more(logs, truth):
    new_user = as_int(truth["is_new_user"]) == 1
    click = as_int(logs[features.CLICK]) == 1
    duration = as_float(logs[features.ITEM_DURATION_S])
    completion = as_float(logs[features.WATCH_TIME_S]) / duration
    short = click & (duration <= SMALL.short_item_max_duration_s)
    assert completion[short & new_user].mean() > completion[short & ~new_user].mean() + 0.05


def test_new_user_relevance_factors_reweight_taste_and_popularity(tmp_path):
    """With new_user_affinity_factor 0 a new user's relevance depends on the item and surface
    only (no personal taste); regular users keep theirs. The popularity factor rescales it."""

    def relevance_by_item(name: str, **factors: float) -> tuple[dict, dict]:
        """{(item, surface): [relevance of each row]} for new users and for regular users."""
        generated = synthetic.generate(small(**factors), tmp_path / name)
        columns = read_columns(generated.truth_path)
        surface = read_columns(generated.logs_path)[features.SURFACE]
        seen: dict[bool, dict] = {True: {}, False: {}}
        for item, new, srf, prob in zip(
            columns[features.ITEM_ID], columns["is_new_user"], surface, columns["relevance_prob"], strict=True
        ):
            seen[new == "1"].setdefault((item, srf), []).append(round(float(prob), 6))
        return seen[True], seen[False]

    new_rows, regular_rows = relevance_by_item("no_taste", new_user_affinity_factor=0.0)
    assert sum(len(set(probs)) > 1 for probs in regular_rows.values()) > 10
    assert sum(len(probs) > 1 for probs in new_rows.values()) > 5  # items new users saw more than once
    assert all(len(set(probs)) == 1 for probs in new_rows.values())
    doubled, _ = relevance_by_item(
        "double_popularity", new_user_affinity_factor=0.0, new_user_popularity_factor=2.0
    )
    shared = sorted(set(new_rows) & set(doubled))
    assert shared
    assert any(set(new_rows[key]) != set(doubled[key]) for key in shared)


def test_new_items_are_recent_with_few_exposures(logs, truth):
    new_item = as_int(truth["is_new_item"]) == 1
    assert new_item.any()
    age = as_int(logs[features.TIMESTAMP]) - as_int(logs[features.ITEM_UPLOAD_TS])
    prior = as_int(truth["item_prior_exposures"])
    recent = age < SMALL.new_item_days * 86_400
    assert (new_item == (recent & (prior < SMALL.new_item_max_exposures))).all()


def test_item_prior_exposures_count_earlier_rows_across_chunks(logs, truth):
    seen = Counter()
    expected = []
    for item in logs[features.ITEM_ID]:
        expected.append(seen[item])
        seen[item] += 1
    assert as_int(truth["item_prior_exposures"]).tolist() == expected


def test_truth_is_aligned_with_logs(logs, truth):
    assert tuple(truth) == synthetic.TRUTH_COLUMNS
    for name in (
        features.REQUEST_ID,
        features.USER_ID,
        features.ITEM_ID,
        features.POSITION,
        features.DEVICE,
        features.POSITION_RANDOMIZED,
    ):
        assert truth[name] == logs[name], name
    click = as_int(logs[features.CLICK])
    assert (click == as_int(truth["examined"]) * as_int(truth["relevant"])).all()
    click_prob = as_float(truth["click_prob"])
    product = as_float(truth["examine_prob"]) * as_float(truth["relevance_prob"])
    assert np.allclose(click_prob, product, atol=1e-3)


def test_truth_examine_prob_follows_the_propensity_table(logs, truth):
    table = synthetic.examination_propensity(SMALL)
    device = np.array([features.DEVICES.index(d) for d in logs[features.DEVICE]])
    position = as_int(logs[features.POSITION])
    assert np.allclose(as_float(truth["examine_prob"]), table[device, position - 1], atol=1e-4)


def test_ground_truth_propensity_decreases_and_differs_by_device(ground_truth):
    table = ground_truth["examination_propensity"]
    assert table["positions"] == list(range(1, SMALL.slate_size + 1))
    curves = table["by_device"]
    assert set(curves) == set(features.DEVICES)
    for device, curve in curves.items():
        assert all(0 < p <= 1 for p in curve), device
        assert (np.diff(curve) < 0).all(), device
    assert len({tuple(curve) for curve in curves.values()}) == len(features.DEVICES)


def test_ground_truth_records_config_cohorts_and_summary(ground_truth, generated):
    assert ground_truth["config"] == dataclasses.asdict(SMALL)
    assert ground_truth["cohorts"]["new_user"]["new_user_hours"] == SMALL.new_user_hours
    assert ground_truth["cohorts"]["new_item"]["new_item_max_exposures"] == (SMALL.new_item_max_exposures)
    summary = ground_truth["summary"]
    assert summary["num_rows"] == generated.num_rows
    assert summary["new_user_row_share"] == pytest.approx(
        generated.num_new_user_rows / generated.num_rows, abs=1e-6
    )
    randomized = summary["click_rate_by_position"]["randomized"]
    assert randomized[0] > randomized[-1]
