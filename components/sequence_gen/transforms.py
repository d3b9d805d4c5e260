"""Beam transforms of SequenceGen (no TensorFlow import: they run in the workers).

examples (all splits) ─► (user, event) ─LatestEvents─► latest max_len + 2 events per user
                      ─► (kind, split, serialized example) for retrieval and ranking

LatestEvents is a lifted CombineFn: workers prune each user's events to what
the sequences can use and pack them into one bytes chunk before the shuffle,
so the runner holds O(users * max_len) small chunks, not one object per event.
"""

from __future__ import annotations

import pickle
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

    The accumulator is a list of event tuples and pickled chunks of them; it is
    pruned whenever it grows past `slack` * count, so a user with any number of
    events costs O(count) memory in a worker.
    """

    def __init__(self, count: int, slack: int = 4):
        self.count = count
        self.prune_at = slack * count

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, event: tuple) -> list:
        accumulator.append(event)
        if len(accumulator) > self.prune_at:
            accumulator[:] = self._latest(accumulator)
        return accumulator

    def compact(self, accumulator: list) -> list:
        if not accumulator:
            return accumulator
        return [pickle.dumps(self._latest(accumulator), protocol=pickle.HIGHEST_PROTOCOL)]

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        merged: list = []
        for accumulator in accumulators:
            merged.extend(self._events(accumulator))
            if len(merged) > self.prune_at:
                merged = self._latest(merged)
        return merged

    def extract_output(self, accumulator: list) -> list[tuple]:
        return self._latest(accumulator)

    def _latest(self, accumulator: list) -> list[tuple]:
        return latest_of_both_kinds(self._events(accumulator), self.count)

    @staticmethod
    def _events(accumulator: list) -> list[tuple]:
        events = []
        for item in accumulator:
            if isinstance(item, bytes):
                events.extend(pickle.loads(item))
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


def build_sequences(examples_by_split: list[beam.PCollection], max_len: int) -> beam.PCollection:
    """(kind, split, serialized example) from every split's raw examples."""
    # Parse before flattening: a Flatten of several reads is buffered by the runner.
    events = [
        examples | f"UserEvents[{index}]" >> beam.Map(user_event)
        for index, examples in enumerate(examples_by_split)
    ]
    return (
        events
        | "AllUserEvents" >> beam.Flatten()
        | "LatestPerUser" >> beam.CombinePerKey(LatestEvents(max_len + 2))
        | "Sequences" >> beam.ParDo(_UserSequences(max_len))
    )
