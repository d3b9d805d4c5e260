"""Beam transforms of SequenceGen (no TensorFlow import: they run in the workers).

examples (all splits) ─► (user, event) ─LatestEvents─► latest max_len + 2 events per user
                      ─► (kind, split, serialized example) for retrieval and ranking

LatestEvents is a lifted CombineFn: workers prune each user's events to what
the sequences can use and pack them into one bytes chunk before the shuffle,
so the runner holds O(users * max_len) small chunks, not one object per event.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from watchnext.components import tf_example
from watchnext.components.sequence_gen.sequences import (
    TEST_SPLIT,
    TRAIN_SPLIT,
    SequenceEvent,
    is_play,
    latest_of_both_kinds,
    leave_one_out,
    most_recent,
)
from watchnext.models import features

SPLITS = (TRAIN_SPLIT, TEST_SPLIT)
METRICS_NAMESPACE = "watchnext.SequenceGen"


def user_event(serialized: bytes) -> tuple[bytes, tuple]:
    example = tf_example.Example.FromString(serialized)
    return tf_example.scalar(example, features.USER_ID), tuple(SequenceEvent.from_example(example))


class LatestEvents(beam.CombineFn):
    """A user's latest `count` events and latest `count` plays, in time order.

    The accumulator is a list of pickled chunks of event tuples, then the
    events not packed yet (always fewer than `pack_every`; few, because at
    scale most users have only a few dozen events per bundle, and a Python
    event tuple costs ~250 bytes against ~30 packed). Packing matters in
    the workers: a lifted combine keeps up to 100,000 users' accumulators
    until the bundle ends, and a pickled, compressed event costs a few percent
    of a Python tuple. Once the chunks hold more than `slack` * count events the
    accumulator is pruned to what the sequences need, so a user with any
    number of events costs O(count) memory.
    """

    def __init__(self, count: int, slack: int = 4, pack_every: int = 4):
        self.count = count
        self.pack_every = pack_every
        self.max_chunks = max(2, slack * count // pack_every)

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, event: tuple) -> list:
        accumulator.append(event)
        tail = accumulator[-self.pack_every :]
        if len(tail) == self.pack_every and not isinstance(tail[0], bytes):
            accumulator[-self.pack_every :] = [_pack(tail)]
            if len(accumulator) > self.max_chunks:
                accumulator[:] = [_pack(self._latest(accumulator))]
        return accumulator

    def compact(self, accumulator: list) -> list:
        return [_pack(self._latest(accumulator))] if accumulator else accumulator

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        merged: list = []
        for accumulator in accumulators:
            merged.extend(accumulator)
            if len(merged) > self.max_chunks:
                merged = [_pack(self._latest(merged))]
        return merged

    def extract_output(self, accumulator: list) -> list[tuple]:
        return self._latest(accumulator)

    def _latest(self, accumulator: list) -> list[tuple]:
        return latest_of_both_kinds(_events(accumulator), self.count)


def _pack(events: list[tuple]) -> bytes:
    # zlib level 1: a user's events repeat ids and request prefixes, so the local runner, which
    # holds every accumulator of the shuffle, keeps about a third of the pickled bytes.
    return zlib.compress(pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL), 1)


def _events(accumulator: list) -> list[tuple]:
    events = []
    for item in accumulator:
        if isinstance(item, bytes):
            events.extend(pickle.loads(zlib.decompress(item)))
        else:
            events.append(item)
    return events


class _UserSequences(beam.DoFn):
    """All (kind, split, serialized example) of one user."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.users_without_test = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "users_too_short")

    def process(self, user_events: tuple[bytes, Any]):
        user, events = user_events
        kinds = {
            "retrieval": (is_play, False),  # plays only
            "ranking": (lambda event: True, True),
        }
        for kind, (keep, with_labels) in kinds.items():
            candidates = (event for event in map(SequenceEvent._make, events) if keep(event))
            latest = most_recent(candidates, self.max_len + 2)
            pairs = leave_one_out(user, latest, self.max_len, with_labels)
            if kind == "retrieval" and not pairs:
                self.users_without_test.inc()
            for split, feature_lists in pairs:
                yield kind, split, tf_example.serialize(feature_lists)


def build_sequences(examples: beam.PCollection, max_len: int) -> beam.PCollection:
    """(kind, split, serialized example) from the raw examples of every split."""
    return (
        examples
        | "UserEvents" >> beam.Map(user_event)
        | "LatestPerUser" >> beam.CombinePerKey(LatestEvents(max_len + 2))
        | "Sequences" >> beam.ParDo(_UserSequences(max_len))
    )
