"""Beam transforms of FeatureGen (no TensorFlow import: they run in the workers).

    impressions ─► (user, (t, click)) ─PackInt64─► UserTimeline per user ─┐ side inputs
    impressions ─► (item, t)          ─PackInt64─► ItemTimeline per item ─┤ (compact arrays)
    impressions of each split ─► add features (lookups in the timelines) ─► same split

Only compact (timestamp, click) pairs are shuffled; full examples stream from
the input files straight to the output files, so memory grows with the number
of events times 8-24 bytes, not with the size of the examples.
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from watchnext.components import tf_example
from watchnext.components.feature_gen.point_in_time import (
    FeatureGenConfig,
    ItemTimeline,
    UserTimeline,
    derived_features,
)
from watchnext.models import features


def _user_and_item_events(serialized: bytes):
    """(user, (t, click)) on the main output and (item, t) on "items", from one parse."""
    example = tf_example.Example.FromString(serialized)
    value = tf_example.scalar
    timestamp = value(example, features.TIMESTAMP)
    yield value(example, features.USER_ID), (timestamp, value(example, features.CLICK, 0))
    yield beam.pvalue.TaggedOutput("items", (value(example, features.ITEM_ID), timestamp))


class PackInt64(beam.CombineFn):
    """Collects a key's fixed-width integer records into one (n, width) int64 array.

    The accumulator is a list of packed chunks (bytes, 8 bytes per number)
    followed by fewer than `pack_every` records not packed yet. Packing as
    records arrive matters in the workers, where a lifted combine keeps up to
    100,000 keys' accumulators until the bundle ends; packing again before
    the shuffle means the runner buffers bytes, not a Python object per record.
    """

    def __init__(self, width: int, pack_every: int = 64):
        self.width = width
        self.pack_every = pack_every

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, record) -> list:
        accumulator.append(record)
        tail = accumulator[-self.pack_every :]
        if len(tail) == self.pack_every and not isinstance(tail[0], bytes):
            accumulator[-self.pack_every :] = [self._pack(tail)]
        return accumulator

    def compact(self, accumulator: list) -> list:
        return [self._pack(accumulator)] if accumulator else accumulator

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        return [chunk for accumulator in accumulators for chunk in self.compact(accumulator)]

    def extract_output(self, accumulator: list) -> np.ndarray:
        return np.frombuffer(self._pack(accumulator), np.int64).reshape(-1, self.width)

    @staticmethod
    def _pack(accumulator: list) -> bytes:
        chunks = [np.frombuffer(c, np.int64) for c in accumulator if isinstance(c, bytes)]
        records = [r for r in accumulator if not isinstance(r, bytes)]
        if records:
            chunks.append(np.asarray(records, np.int64).reshape(-1))
        return np.concatenate(chunks).tobytes() if chunks else b""


def _user_timeline(user_events: tuple[bytes, np.ndarray], recent_window: int):
    user, events = user_events
    return user, UserTimeline.from_events(events, recent_window).to_bytes()


def _item_timeline(item_times: tuple[bytes, np.ndarray]):
    item, timestamps = item_times
    return item, ItemTimeline.from_timestamps(timestamps.reshape(-1)).to_bytes()


def add_features(serialized: bytes, users: dict, items: dict, config: FeatureGenConfig) -> bytes:
    example = tf_example.Example.FromString(serialized)
    value = tf_example.scalar
    timestamp = value(example, features.TIMESTAMP)
    views, rate = UserTimeline.from_bytes(users[value(example, features.USER_ID)]).at(timestamp)
    exposures = ItemTimeline.from_bytes(items[value(example, features.ITEM_ID)]).exposures_before(timestamp)
    derived = derived_features(
        timestamp,
        value(example, features.USER_FIRST_SEEN_TS),
        value(example, features.ITEM_UPLOAD_TS),
        views,
        rate,
        exposures,
        config,
    )
    for name, feature_value in derived.items():
        tf_example.set_values(example, name, [feature_value])
    return example.SerializeToString()


def add_point_in_time_features(
    for_timelines: dict[str, beam.PCollection],
    to_enrich: dict[str, beam.PCollection],
    config: FeatureGenConfig,
) -> dict[str, beam.PCollection]:
    """Each split's serialized examples (`to_enrich`) with the FeatureGen features added.

    The input is read twice (`for_timelines` and `to_enrich`: two reads of the
    same files): enriching waits for the timelines, and a second read lets it
    stream from the files instead of buffering every example until then.
    """
    # Parse before flattening: a Flatten of several reads is buffered by the runner.
    per_split = [
        examples
        | f"Events[{split}]" >> beam.FlatMap(_user_and_item_events).with_outputs("items", main="users")
        for split, examples in for_timelines.items()
    ]
    user_events = [events.users for events in per_split] | "AllUserEvents" >> beam.Flatten()
    item_events = [events["items"] for events in per_split] | "AllItemEvents" >> beam.Flatten()
    users = (
        user_events
        | "PackUsers" >> beam.CombinePerKey(PackInt64(width=2))
        | "UserTimelines" >> beam.Map(_user_timeline, config.recent_window)
    )
    items = (
        item_events
        | "PackItems" >> beam.CombinePerKey(PackInt64(width=1))
        | "ItemTimelines" >> beam.Map(_item_timeline)
    )
    return {
        split: examples
        | f"AddFeatures[{split}]"
        >> beam.Map(add_features, beam.pvalue.AsDict(users), beam.pvalue.AsDict(items), config)
        for split, examples in to_enrich.items()
    }
