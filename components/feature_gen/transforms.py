"""Beam transforms of FeatureGen (no TensorFlow import: they run in the workers).

    impressions ─► (user, (t, click)) ─CountPerTimestamp─► UserTimeline per user ─┐ side inputs
    impressions ─► (item, t)          ─PackInt64─────────► ItemTimeline per item ─┤ (compact arrays)
    impressions of each split ─► add features (lookups in the timelines) ─► same split

Only compact int64 records are shuffled: per user, (t, impressions, clicks) per
distinct timestamp; per item, its impression times. Full examples stream from
the input files straight to the output files, so memory grows with the number
of requests and impressions times a few bytes, not with the size of the examples.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from watchnext.components import tf_example
from watchnext.components.feature_gen.point_in_time import (
    FeatureGenConfig,
    ItemTimeline,
    UserTimeline,
    derived_features,
    timestamp_counts,
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

    The accumulator is a bytearray that each record appends 8 * width bytes to. A lifted
    combine keeps up to 100,000 keys' accumulators in a worker until the bundle ends, and
    the local runner holds every accumulator of the shuffle: both hold bytes, not a
    Python tuple per record. Records are `width`-tuples of ints, or plain ints if width is 1.
    """

    def __init__(self, width: int):
        self.width = width
        self._format = f"<{width}q"  # struct caches the compiled format

    def create_accumulator(self) -> bytearray:
        return bytearray()

    def add_input(self, accumulator: bytearray, record) -> bytearray:
        values = record if self.width > 1 else (record,)
        accumulator += struct.pack(self._format, *values)
        return accumulator

    def compact(self, accumulator: bytearray) -> bytes:
        return bytes(accumulator)

    def merge_accumulators(self, accumulators: Iterable[bytes | bytearray]) -> bytearray:
        merged = bytearray()
        for accumulator in accumulators:
            merged += accumulator
        return merged

    def extract_output(self, accumulator: bytes | bytearray) -> np.ndarray:
        return np.frombuffer(bytes(accumulator), "<i8").astype(np.int64).reshape(-1, self.width)


class CountPerTimestamp(PackInt64):
    """A user's (t, click) events as `timestamp_counts` rows: (t, impressions, clicks) per distinct t.

    Each event appends a (t, 1, click) record; `compact` (before the shuffle) and
    `extract_output` collapse the records to one row per timestamp, so the shuffle and the
    runner carry a row per request (a slate shares its timestamp), not one per impression.
    """

    def __init__(self):
        super().__init__(width=3)

    def add_input(self, accumulator: bytearray, record) -> bytearray:
        timestamp, click = record
        return super().add_input(accumulator, (timestamp, 1, click))

    def compact(self, accumulator: bytes | bytearray) -> bytes:
        return timestamp_counts(super().extract_output(accumulator)).tobytes()

    def extract_output(self, accumulator: bytes | bytearray) -> np.ndarray:
        return timestamp_counts(super().extract_output(accumulator))


def _user_timeline(user_counts: tuple[bytes, np.ndarray], recent_window: int):
    user, counts = user_counts
    return user, UserTimeline.from_counts(counts, recent_window).to_bytes()


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
    all_examples: beam.PCollection,
    to_enrich: dict[str, beam.PCollection],
    config: FeatureGenConfig,
) -> dict[str, beam.PCollection]:
    """Each split's serialized examples (`to_enrich`) with the FeatureGen features added.

    `all_examples` holds every split's examples (the timelines see all of them). The input
    is read twice (`all_examples` and `to_enrich`: two reads of the same files): enriching
    waits for the timelines, and a second read lets it stream from the files instead of
    buffering every example until then.
    """
    split_events = beam.FlatMap(_user_and_item_events).with_outputs("items", main="users")
    events = all_examples | "Events" >> split_events
    user_events, item_events = events.users, events["items"]
    users = (
        user_events
        | "CountUserEvents" >> beam.CombinePerKey(CountPerTimestamp())
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
