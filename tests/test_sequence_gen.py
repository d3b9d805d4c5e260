"""SequenceGen: ordering with ties, truncation, leave-one-out, bounded memory, runner independence."""

from __future__ import annotations

import os
import random

import pytest
import tensorflow as tf
from examples_helpers import T0, raw_example, write_examples_artifact
from tfx.types import artifact_utils, standard_artifacts

from watchnext.components import examples_io
from watchnext.components.sequence_gen.executor import Executor
from watchnext.components.sequence_gen.sequences import (
    SequenceEvent,
    is_play,
    latest_of_both_kinds,
    leave_one_out,
    most_recent,
)
from watchnext.components.sequence_gen.transforms import LatestEvents
from watchnext.models import features

F = features


def run_sequence_gen(tmp_path, splits, max_len, beam_args=None) -> dict[str, dict[str, list]]:
    source = write_examples_artifact(str(tmp_path / "raw"), splits)
    outputs = {}
    for kind in ("retrieval_sequences", "ranking_sequences"):
        outputs[kind] = standard_artifacts.Examples()
        outputs[kind].uri = str(tmp_path / kind)
    executor = Executor(Executor.Context(beam_pipeline_args=beam_args or ["--direct_num_workers=1"]))
    executor.Do({"examples": [source]}, {k: [a] for k, a in outputs.items()}, {"max_len": max_len})
    result: dict[str, dict[str, list]] = {}
    for kind, artifact in outputs.items():
        result[kind] = {}
        for split in examples_io.split_names(artifact):
            pattern = os.path.join(artifact_utils.get_split_uri([artifact], split), "*.gz")
            dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
            result[kind][split] = [tf.train.Example.FromString(r.numpy()) for r in dataset]
    return result


def values(example: tf.train.Example, name: str) -> list:
    feature = example.features.feature[name]
    return list(getattr(feature, feature.WhichOneof("kind")).value)


def by_user(examples: list[tf.train.Example]) -> dict[bytes, tf.train.Example]:
    return {values(e, F.USER_ID)[0]: e for e in examples}


def event(ts: int, item: str, click: int = 1, position: int = 1, request: bytes = b"r") -> SequenceEvent:
    return SequenceEvent(ts, request, position, item.encode(), click)


def test_most_recent_keeps_the_latest_in_order_with_ties_broken_deterministically():
    events = [event(5, "b"), event(5, "a"), event(1, "z"), event(9, "c"), event(5, "a", position=2)]
    expected = [event(5, "a"), event(5, "b"), event(5, "a", position=2), event(9, "c")]
    for _ in range(5):
        random.shuffle(events)
        assert most_recent(events, 4) == expected


def test_pruning_keeps_what_both_sequence_kinds_need():
    rng = random.Random(5)
    events = [event(rng.randrange(300), f"i{n}", click=int(rng.random() < 0.2)) for n in range(500)]
    kept = latest_of_both_kinds(events, 12)
    assert kept == sorted(kept)
    assert most_recent(kept, 12) == most_recent(events, 12)
    assert most_recent(filter(is_play, kept), 12) == most_recent(filter(is_play, events), 12)
    assert len(kept) <= 24


def test_latest_events_combine_is_bounded_and_order_free():
    rng = random.Random(6)
    events = [tuple(event(rng.randrange(10_000), f"i{n}", click=n % 3 == 0)) for n in range(5_000)]
    combine = LatestEvents(count=10)
    parts = [events[i::7] for i in range(7)]
    accumulators = []
    for part in parts:
        accumulator = combine.create_accumulator()
        for e in part:
            accumulator = combine.add_input(accumulator, e)
            assert len(accumulator) <= combine.max_chunks + combine.pack_every
        accumulators.append(combine.compact(accumulator))
    rng.shuffle(accumulators)
    merged = combine.extract_output(combine.merge_accumulators(accumulators))
    assert merged == latest_of_both_kinds(events, 10)


def test_leave_one_out_truncates_to_max_len():
    latest = [event(t, f"i{t}") for t in range(1, 8)]  # already the last max_len + 2 = 7
    (train_split, train), (test_split, test) = leave_one_out(b"u", latest, max_len=5, with_labels=False)
    assert (train_split, test_split) == ("train", "test")
    assert train[F.HISTORY_ITEM_IDS] == [b"i1", b"i2", b"i3", b"i4", b"i5"]
    assert train[F.TARGET_ITEM_ID] == [b"i6"]
    assert test[F.HISTORY_ITEM_IDS] == [b"i2", b"i3", b"i4", b"i5", b"i6"]
    assert test[F.TARGET_ITEM_ID] == [b"i7"]
    assert test[F.HISTORY_LENGTH] == [5]


def test_short_users_get_only_what_the_protocol_allows():
    assert leave_one_out(b"u", [event(1, "a")], 5, False) == []
    pairs = leave_one_out(b"u", [event(1, "a"), event(2, "b")], 5, False)
    assert [split for split, _ in pairs] == ["test"]


HAND_BUILT = {
    "train": [
        raw_example("u1", "i1", T0 + 10, 1),
        raw_example("u1", "i9", T0 + 15, 0),  # not a play: ranking only
        raw_example("u1", "i2", T0 + 20, 1),
        raw_example("u1", "i3", T0 + 30, 1),
        raw_example("u1", "i4", T0 + 40, 1),
    ],
    "eval": [raw_example("u2", "i1", T0 + 10, 1), raw_example("u2", "i5", T0 + 50, 1)],
}


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory):
    return run_sequence_gen(tmp_path_factory.mktemp("sg"), HAND_BUILT, max_len=2)


def test_retrieval_sequences_use_plays_and_leave_the_last_one_out(hand_built):
    train = by_user(hand_built["retrieval_sequences"]["train"])
    test = by_user(hand_built["retrieval_sequences"]["test"])
    assert set(test) == {b"u1", b"u2"} and set(train) == {b"u1"}
    assert values(test[b"u1"], F.HISTORY_ITEM_IDS) == [b"i2", b"i3"]
    assert values(test[b"u1"], F.TARGET_ITEM_ID) == [b"i4"]
    assert values(test[b"u1"], F.HISTORY_TIMESTAMPS) == [T0 + 20, T0 + 30]
    assert values(train[b"u1"], F.HISTORY_ITEM_IDS) == [b"i1", b"i2"]
    assert values(train[b"u1"], F.TARGET_ITEM_ID) == [b"i3"]
    assert values(test[b"u2"], F.HISTORY_ITEM_IDS) == [b"i1"]


def test_ranking_sequences_keep_every_impression_with_labels(hand_built):
    test = by_user(hand_built["ranking_sequences"]["test"])
    train = by_user(hand_built["ranking_sequences"]["train"])
    assert values(test[b"u1"], F.HISTORY_ITEM_IDS) == [b"i2", b"i3"]
    assert values(train[b"u1"], F.HISTORY_ITEM_IDS) == [b"i9", b"i2"]
    assert values(train[b"u1"], F.HISTORY_CLICKS) == [0, 1]
    assert values(train[b"u1"], F.HISTORY_ACTIONS) == [0, 1]
    assert values(test[b"u1"], F.TARGET_CLICK) == [1]


def test_a_very_long_history_is_handled_with_bounded_state(tmp_path):
    long_user = [raw_example("whale", f"i{n % 997}", T0 + n, 1) for n in range(120_000)]
    result = run_sequence_gen(tmp_path, {"train": long_user}, max_len=200)
    (test,) = result["retrieval_sequences"]["test"]
    assert values(test, F.HISTORY_LENGTH) == [200]
    assert values(test, F.HISTORY_TIMESTAMPS)[-1] == T0 + 119_998
    assert values(test, F.TARGET_TIMESTAMP) == [T0 + 119_999]


def test_in_memory_and_multi_processing_give_identical_output(tmp_path):
    rng = random.Random(3)
    records = [
        raw_example(
            f"u{rng.randrange(40)}", f"i{rng.randrange(50)}", T0 + rng.randrange(500), rng.randrange(2)
        )
        for _ in range(1500)
    ]
    splits = {"train": records[:1000], "eval": records[1000:]}
    a = run_sequence_gen(tmp_path / "a", splits, 20, ["--direct_running_mode=in_memory"])
    b = run_sequence_gen(
        tmp_path / "b", splits, 20, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    for kind in a:
        for split in ("train", "test"):
            assert a[kind][split], f"{kind}/{split} is empty"
            assert sorted(e.SerializeToString(deterministic=True) for e in a[kind][split]) == sorted(
                e.SerializeToString(deterministic=True) for e in b[kind][split]
            )
