"""FeatureGen: point-in-time correctness on hand-built logs with ties, and runner independence."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from examples_helpers import DAY, HOUR, T0, raw_example, write_examples_artifact
from tfx.types import artifact_utils, standard_artifacts

from watchnext.components import examples_io, tf_example
from watchnext.components.feature_gen import FeatureGenConfig
from watchnext.components.feature_gen.executor import Executor
from watchnext.components.feature_gen.point_in_time import ItemTimeline, UserTimeline
from watchnext.models import features


def run_feature_gen(tmp_path, splits, beam_args=None) -> dict[str, list[tf.train.Example]]:
    source = write_examples_artifact(str(tmp_path / "raw"), splits)
    output = standard_artifacts.Examples()
    output.uri = str(tmp_path / "impressions")
    executor = Executor(Executor.Context(beam_pipeline_args=beam_args or ["--direct_num_workers=1"]))
    executor.Do({"examples": [source]}, {"impressions": [output]}, {"config": FeatureGenConfig().to_json()})
    result = {}
    for split in examples_io.split_names(output):
        pattern = os.path.join(artifact_utils.get_split_uri([output], split), "*.gz")
        dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
        result[split] = [tf.train.Example.FromString(r.numpy()) for r in dataset]
    return result


def key(example: tf.train.Example) -> tuple:
    value = tf_example.scalar
    return (value(example, features.USER_ID), value(example, features.ITEM_ID), value(example, "timestamp"))


# u1 sees i1 and i2 in the same second (a tie), then i1 again, then i3; u2 sees i1 twice.
HAND_BUILT = {
    "train": [
        raw_example("u1", "i1", T0 + 100, 1),
        raw_example("u1", "i2", T0 + 100, 0),
        raw_example("u1", "i1", T0 + 200, 1),
        raw_example("u1", "i3", T0 + 300, 0),
    ],
    "eval": [
        raw_example("u2", "i1", T0 + 100, 1, first_seen=T0),
        raw_example("u2", "i1", T0 + 250, 1, first_seen=T0),
    ],
}


@pytest.fixture(scope="module")
def hand_built_output(tmp_path_factory):
    return run_feature_gen(tmp_path_factory.mktemp("fg"), HAND_BUILT)


def test_splits_are_kept(hand_built_output):
    assert {s: len(v) for s, v in hand_built_output.items()} == {"train": 4, "eval": 2}
    assert {key(e)[0] for e in hand_built_output["eval"]} == {b"u2"}


def test_features_never_see_their_own_or_later_events(hand_built_output):
    value = tf_example.scalar
    got = {
        key(e): (
            value(e, features.USER_VIEW_COUNT),
            round(value(e, features.USER_RECENT_CLICK_RATE), 4),
            value(e, features.ITEM_EXPOSURE_COUNT),
        )
        for split in hand_built_output.values()
        for e in split
    }
    assert got == {
        # Ties at T0+100: neither impression sees the other (nor u2's at the same second).
        (b"u1", b"i1", T0 + 100): (0, 0.0, 0),
        (b"u1", b"i2", T0 + 100): (0, 0.0, 0),
        (b"u1", b"i1", T0 + 200): (1, 0.5, 2),
        (b"u1", b"i3", T0 + 300): (2, round(2 / 3, 4), 0),
        (b"u2", b"i1", T0 + 100): (0, 0.0, 0),
        (b"u2", b"i1", T0 + 250): (1, 1.0, 3),
    }


def test_cohort_new_item_and_context_features(hand_built_output):
    value = tf_example.scalar
    by_key = {key(e): e for split in hand_built_output.values() for e in split}
    newcomer = by_key[(b"u2", b"i1", T0 + 100)]
    assert value(newcomer, features.USER_IS_NEW) == 1
    assert value(newcomer, features.USER_COHORT) == b"new"
    assert value(newcomer, features.USER_HOURS_SINCE_FIRST_SEEN) == pytest.approx(100 / HOUR)
    regular_first_seen = by_key[(b"u1", b"i1", T0 + 200)]
    assert value(regular_first_seen, features.USER_IS_NEW) == 0
    assert value(regular_first_seen, features.USER_COHORT) == b"light"
    assert value(regular_first_seen, features.ITEM_AGE_DAYS) == pytest.approx(1 + 200 / DAY)
    assert value(regular_first_seen, features.ITEM_IS_NEW) == 1
    assert value(regular_first_seen, features.HOUR_OF_DAY) == ((T0 + 200) // HOUR) % 24
    assert value(regular_first_seen, features.DEVICE) == b"ios", "raw fields pass through"


def test_user_timeline_matches_a_brute_force_count():
    events = [(5, 1), (3, 0), (5, 0), (9, 1), (3, 1), (12, 1), (9, 1), (15, 0)]
    window = 3
    timeline = UserTimeline.from_events(events, recent_window=window)
    assert timeline.timestamps.tolist() == [3, 5, 9, 12, 15]
    for timestamp in timeline.timestamps.tolist():
        # Earlier events, ties ordered by click as the timeline orders them.
        earlier = sorted(e for e in events if e[0] < timestamp)
        recent = [click for _, click in earlier[-window:]]
        views, rate = timeline.at(timestamp)
        assert views == sum(click for _, click in earlier)
        assert rate == pytest.approx(sum(recent) / len(recent) if recent else 0.0)
    with pytest.raises(KeyError):
        timeline.at(4)


@pytest.mark.parametrize("window", [1, 2, 3, 7, 50])
def test_user_timeline_from_counts_matches_brute_force_on_random_ties(window):
    from watchnext.components.feature_gen.point_in_time import timestamp_counts

    rng = np.random.default_rng(window)
    events = [(int(t), int(c)) for t, c in zip(rng.integers(0, 12, 80), rng.integers(0, 2, 80), strict=True)]
    timeline = UserTimeline.from_events(events, recent_window=window)
    for timestamp in timeline.timestamps.tolist():
        earlier = sorted(e for e in events if e[0] < timestamp)
        recent = [click for _, click in earlier[-window:]]
        assert timeline.at(timestamp) == (
            sum(click for _, click in earlier),
            pytest.approx(sum(recent) / len(recent) if recent else 0.0),
        )
    # Counts merged from partial counts of any chunks give the same timeline.
    partial = [timestamp_counts([(t, 1, c) for t, c in events[i : i + 13]]) for i in range(0, 80, 13)]
    merged = UserTimeline.from_counts(timestamp_counts(np.concatenate(partial)), window)
    assert np.array_equal(merged.views, timeline.views)
    assert np.allclose(merged.recent_click_rates, timeline.recent_click_rates)


def test_timelines_survive_their_compact_encoding():
    user = UserTimeline.from_events([(1, 1), (2, 0)], recent_window=5)
    again = UserTimeline.from_bytes(user.to_bytes())
    assert again.at(2) == user.at(2) == (1, 1.0)
    item = ItemTimeline.from_timestamps([7, 3, 7, 7, 10])
    assert [ItemTimeline.from_bytes(item.to_bytes()).exposures_before(t) for t in (3, 7, 10, 11)] == [
        0,
        1,
        4,
        5,
    ]


def test_beam_worker_modules_do_not_import_tensorflow():
    import subprocess
    import sys

    modules = ", ".join(
        f"watchnext.components.{name}.transforms"
        for name in ("log_example_gen", "feature_gen", "sequence_gen")
    )
    code = f"import sys, {modules}; print('tensorflow' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_in_memory_and_multi_processing_give_identical_output(tmp_path):
    from watchnext.pipeline.data import synthetic

    logs = synthetic.generate(synthetic.SyntheticConfig(seed=5, num_requests=120), tmp_path / "logs")
    from watchnext.components.log_example_gen.raw_log import RowParser, load_raw_log_schema

    lines = logs.logs_path.read_text().splitlines()
    parser = RowParser.from_header(load_raw_log_schema(), lines[0], "logs.csv")
    records = [tf_example.serialize(parser.parse(line, n)) for n, line in enumerate(lines[1:], 2)]
    splits = {"train": records[::2], "eval": records[1::2]}

    in_memory = run_feature_gen(tmp_path / "a", splits, ["--direct_running_mode=in_memory"])
    multi = run_feature_gen(
        tmp_path / "b", splits, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    for split in splits:
        assert len(in_memory[split]) == len(splits[split])
        assert sorted(e.SerializeToString(deterministic=True) for e in in_memory[split]) == sorted(
            e.SerializeToString(deterministic=True) for e in multi[split]
        )


def test_pack_int64_combines_partial_accumulators_in_any_grouping():
    import numpy as np

    from watchnext.components.feature_gen.transforms import PackInt64

    pack = PackInt64(width=2)
    first = pack.add_input(pack.add_input(pack.create_accumulator(), (5, 1)), (3, 0))
    second = pack.compact(pack.add_input(pack.create_accumulator(), (9, 1)))
    merged = pack.merge_accumulators([first, second, pack.create_accumulator()])
    assert np.array_equal(pack.extract_output(merged), [[5, 1], [3, 0], [9, 1]])


def test_pack_int64_holds_bytes_not_python_records():
    import numpy as np

    from watchnext.components.feature_gen.transforms import PackInt64

    pack = PackInt64(width=2)
    accumulator = pack.create_accumulator()
    records = [(t, t % 2) for t in range(100)]
    for record in records:
        accumulator = pack.add_input(accumulator, record)
    assert isinstance(accumulator, bytearray) and len(accumulator) == 100 * 2 * 8
    assert isinstance(pack.compact(accumulator), bytes)
    assert np.array_equal(pack.extract_output(accumulator), records)
    single = PackInt64(width=1)
    assert single.extract_output(single.add_input(single.create_accumulator(), 2**40)).tolist() == [[2**40]]


def test_count_per_timestamp_collapses_a_users_events_in_any_grouping():
    from watchnext.components.feature_gen.transforms import CountPerTimestamp

    count = CountPerTimestamp()
    first = count.add_input(count.add_input(count.create_accumulator(), (5, 1)), (3, 0))
    second = count.compact(count.add_input(count.add_input(count.create_accumulator(), (5, 0)), (3, 1)))
    assert len(second) == 2 * 3 * 8, "compacted to one row per timestamp"
    merged = count.merge_accumulators([first, second, count.create_accumulator()])
    assert count.extract_output(merged).tolist() == [[3, 2, 1], [5, 2, 1]]
