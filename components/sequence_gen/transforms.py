"""Beam transforms of SequenceGen (no TensorFlow import: they run in the workers).

examples (all splits) ─► (user, event) ─GroupByKey─► latest max_len + 2 events per user
                      ─► (kind, split, serialized example) for retrieval and ranking
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from watchnext.components import tf_example
from watchnext.components.sequence_gen.sequences import (
    TEST_SPLIT,
    TRAIN_SPLIT,
    SequenceEvent,
    leave_one_out,
    most_recent,
)
from watchnext.models import features

SPLITS = (TRAIN_SPLIT, TEST_SPLIT)
METRICS_NAMESPACE = "watchnext.SequenceGen"


def user_event(serialized: bytes) -> tuple[bytes, tuple]:
    example = tf_example.Example.FromString(serialized)
    return tf_example.scalar(example, features.USER_ID), tuple(SequenceEvent.from_example(example))


class _UserSequences(beam.DoFn):
    """All (kind, split, serialized example) of one user."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.users_without_test = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "users_too_short")

    def process(self, user_events: tuple[bytes, Any]):
        user, events = user_events
        kinds = {
            "retrieval": (lambda event: event.click == 1, False),  # plays only
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
        | "GroupUsers" >> beam.GroupByKey()
        | "Sequences" >> beam.ParDo(_UserSequences(max_len))
    )
